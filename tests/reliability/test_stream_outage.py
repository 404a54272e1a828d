"""The broker is killed (SIGKILL) under 100 push streams and restarted on its data.

``mode().outage_streams`` streams (100 in fast mode) over ``mode().outage_connections``
WebSockets read every partition of a two-partition topic from the earliest record,
with credit for all of it. Records are produced before the kill and after the
restart. Throughout:

* every stream gets ``error`` events during the outage (codes that name an unreachable
  or failing broker), never ``ended``, and no connection is closed;
* every stream resumes by itself: nobody resubscribes, seeks or reconnects;
* each stream ends with every record exactly once, in offset order per partition
  (the union of what it received before and after the outage is the whole topic);
* pings are answered on every connection afterwards.

The broker is our own instance (``reliability-stream-kill`` on ports 25992..25996),
deleted afterwards whatever happens.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

import pytest
import trio
from _reliability import WAIT, OwnBroker, mode, produce_acknowledged, settled, stream_clients
from _support import own_broker_name, own_port_base
from integration._streams import QUIET, StreamClient

from kafka_ws_trio._config import ProxyConfig, ServerConfig
from kafka_ws_trio._proto import (
    ErrorCode,
    Grant,
    Pong,
    StartEdge,
    StreamEnded,
    StreamError,
    encode_ping_request,
    encode_subscribe_request,
)
from kafka_ws_trio._server import ProxyServer, serve_proxy
from kafka_ws_trio.testing import KafkaBroker, create_topic

pytestmark = pytest.mark.reliability

BROKER: Final = OwnBroker(own_broker_name("reliability-stream-kill"), port_base=own_port_base(25992))
PARTITIONS: Final = 2
#: The route's Kafka deadline: short, so that the outage shows quickly.
REQUEST_TIMEOUT: Final = 2.0
#: Seconds the broker stays down after every stream was told about it.
OUTAGE: Final = 3.0
#: Error codes that describe a broker that is down or coming back.
OUTAGE_CODES: Final = {ErrorCode.BROKER_UNREACHABLE, ErrorCode.TIMEOUT, ErrorCode.KAFKA_ERROR}
#: Seconds after the kill by which every stream must have had an error event: a read's
#: deadline (request_timeout), the proxy's probe of the broker, its retry pause, and slack.
ERRORS_WITHIN: Final = 4 * REQUEST_TIMEOUT + 2 + WAIT
#: Seconds without a record delivered after which a stream still missing some has stalled: before the
#: kill, and after the restart (reconnecting included). How long delivery takes as such depends on the
#: machine (300 streams x 2,000 records in long mode) and is printed, not bounded.
STALL: Final = 2 * WAIT
RECOVERY_STALL: Final = 60.0


@pytest.fixture
def own_broker() -> Iterator[KafkaBroker]:
    """A broker this test may kill; deleted afterwards, whatever happens."""
    with BROKER.running() as broker:
        yield broker


def produced(first: int, count: int) -> list[tuple[int, bytes]]:
    """(partition, value) of records ``first`` .. ``first + count - 1``: record n goes to partition n % PARTITIONS."""
    return [(n % PARTITIONS, b"record-%d" % n) for n in range(first, first + count)]


def whole_topic(count: int) -> dict[int, list[tuple[int, bytes | None]]]:
    """What a stream over the whole topic must end with, by partition: (offset, value), in order."""
    topic: dict[int, list[tuple[int, bytes | None]]] = {p: [] for p in range(PARTITIONS)}
    for partition, data in produced(0, count):
        topic[partition].append((len(topic[partition]), data))
    return topic


async def open_streams(client: StreamClient, topic: str, count: int, credit: int) -> None:
    """Subscribe streams 1 .. ``count`` at once, every partition from the earliest record; wait for every answer."""
    for stream_id in range(1, count + 1):
        frame = encode_subscribe_request(stream_id, topic, start=StartEdge.EARLIEST, credit=Grant(records=credit))
        await client.send(frame)
    await client.until(lambda: len(client.subscribed) == count, f"answers to {count} subscribes", 4 * WAIT)


async def delivered(clients: list[StreamClient], streams: list[tuple[int, int]], count: int, stall: float) -> bool:
    """Wait until every stream has ``count`` records; False once none came for ``stall`` s or a connection closed."""

    def total() -> int:
        return sum(min(clients[index].count(stream_id), count) for index, stream_id in streams)

    seen, since = total(), trio.current_time()
    while seen < count * len(streams):
        if any(client.closed for client in clients):
            return False
        await trio.sleep(0.2)
        now = total()
        if now > seen:
            seen, since = now, trio.current_time()
        elif trio.current_time() - since > stall:
            return False
    return True


def told_of_the_outage(client: StreamClient, stream_id: int, since: int) -> list[StreamError]:
    return client.pushes(stream_id, StreamError, since)


@pytest.mark.timeout(mode().limit(300, 900))
async def test_streams_resume_by_themselves_after_the_broker_is_killed_and_restarted(own_broker: KafkaBroker) -> None:
    run = mode()
    per_connection = run.outage_streams // run.outage_connections
    records = run.outage_records
    topic = await trio.to_thread.run_sync(lambda: create_topic(own_broker, partitions=PARTITIONS))
    config = ProxyConfig.single_route(
        own_broker.bootstrap,
        server=ServerConfig(port=0),
        request_timeout=REQUEST_TIMEOUT,
        max_streams=max(64, per_connection),
    )
    streams = [
        (index, stream_id) for index in range(run.outage_connections) for stream_id in range(1, per_connection + 1)
    ]
    async with trio.open_nursery() as proxy_nursery:
        server: ProxyServer = await proxy_nursery.start(serve_proxy, config)
        async with stream_clients(server.url + "/kafka", run.outage_connections) as clients:
            for client in clients:
                await open_streams(client, topic, per_connection, records)

            await produce_acknowledged(own_broker, topic, produced(0, records // 2))
            assert await delivered(clients, streams, records // 2, STALL), "not every stream read the first half"

            marks = [len(client.received) for client in clients]
            killed = trio.current_time()
            await trio.to_thread.run_sync(BROKER.kill)

            def every_stream_told() -> bool:
                return all(told_of_the_outage(clients[index], stream_id, marks[index]) for index, stream_id in streams)

            assert await settled(every_stream_told, ERRORS_WITHIN, 0.2), (
                f"{sum(1 for i, s in streams if not told_of_the_outage(clients[i], s, marks[i]))} streams got no error "
                f"event within {ERRORS_WITHIN:.0f}s of the kill"
            )
            all_told = trio.current_time() - killed
            await trio.sleep(OUTAGE)  # the broker stays down a while

            await trio.to_thread.run_sync(BROKER.start)
            restarted = trio.current_time()
            await produce_acknowledged(own_broker, topic, produced(records // 2, records - records // 2))
            produced_all = trio.current_time()
            assert await delivered(clients, streams, records, RECOVERY_STALL), (
                f"after the restart, {sum(1 for i, s in streams if clients[i].count(s) < records)} streams "
                f"still miss records, and none came for {RECOVERY_STALL:.0f}s (connections closed: "
                f"{sum(client.closed for client in clients)})"
            )
            recovered = trio.current_time() - produced_all
            await trio.sleep(QUIET)  # anything duplicated would come now
            for client in clients:
                sequence = client.sequence()
                assert await client.ask(sequence, encode_ping_request(sequence, b"after")) == Pong(sequence, b"after")
            statistics = server.statistics()
        proxy_nursery.cancel_scope.cancel()

    errors = [e for i, s in streams for e in told_of_the_outage(clients[i], s, marks[i])]
    print(
        f"\nstream outage: {len(streams)} streams over {len(clients)} connections, {records} records; every stream "
        f"got an error event within {all_told:.1f}s of SIGKILL ({len(errors)} error events, codes "
        f"{sorted({e.code for e in errors})}, e.g. {errors[0].message!r}); restart took "
        f"{restarted - killed - all_told - OUTAGE:.1f}s; every stream had every record {recovered:.1f}s after the "
        f"last was produced"
    )
    wanted = whole_topic(records)
    for index, stream_id in streams:
        client = clients[index]
        got = client.records(stream_id)
        by_partition = {p: [(r.offset, r.value) for r in got.get(p, [])] for p in range(PARTITIONS)}
        assert by_partition == wanted, (
            f"connection {index}, stream {stream_id}: records missing, repeated or out of order"
        )
        unexpected = [e for e in client.pushes(stream_id, StreamError) if e.code not in OUTAGE_CODES]
        assert not unexpected, f"connection {index}, stream {stream_id}: {unexpected[:3]}"
        assert not client.pushes(stream_id, StreamEnded), f"connection {index}, stream {stream_id} ended"
    # Nobody reconnected: the same connections carried everything.
    assert not any(client.closed for client in clients)
    assert statistics.sessions_total == statistics.sessions_open == len(clients)
