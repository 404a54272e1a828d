"""The broker is killed (SIGKILL) mid-stream and restarted on its data.

Three sessions stay on their WebSockets throughout: a reader that drives offsets and
reads the whole topic, one asking for the log end, one pinging. During the outage the
Kafka commands get error responses, each within the proxy's deadline, and pings are
still answered while those commands wait; after the restart the same connections work again. A producer
writes records before the kill and after the restart; the reader ends with every one
of them exactly once, in order.

The broker is our own instance (``reliability-kill`` on ports 25592..25596), deleted
afterwards whatever happens.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from functools import partial
from typing import Any, Final

import attrs
import pytest
import trio
from _reliability import WAIT, OwnBroker, mode, produce_acknowledged, settled
from _support import own_broker_name, own_port_base

from kafka_ws_trio._config import ProxyConfig, ServerConfig
from kafka_ws_trio._proto import ErrorCode
from kafka_ws_trio._server import ProxyServer, serve_proxy
from kafka_ws_trio.client import PubSubClient, PubSubError, open_client
from kafka_ws_trio.testing import KafkaBroker, _broker, create_topic

pytestmark = pytest.mark.reliability

BROKER: Final = OwnBroker(own_broker_name("reliability-kill"), port_base=own_port_base(25592))
#: The route's Kafka deadline: short, so that the outage shows quickly.
REQUEST_TIMEOUT: Final = 2.0
#: What a command may take at most during the outage: the proxy's own deadline
#: (connecting, then one call: request_timeout + fetch_max_wait + request_timeout +
#: probing the broker) plus its margin, plus slack for a loaded machine.
COMMAND_DEADLINE: Final = 4 * REQUEST_TIMEOUT + 2 + 2 + 5
#: The client's own limit: a request without any answer by then is a hang.
CLIENT_TIMEOUT: Final = 30.0
#: Seconds the broker stays down after the first error responses came.
OUTAGE: Final = 3.0
#: Seconds between two records produced.
PRODUCE_INTERVAL: Final = 0.01
#: Error codes that describe a broker that is down or coming back.
OUTAGE_CODES: Final = {ErrorCode.BROKER_UNREACHABLE, ErrorCode.TIMEOUT, ErrorCode.KAFKA_ERROR}
#: Seconds after the restart by which every session must work again.
RECOVERY_LIMIT: Final = 60.0


@pytest.fixture
def own_broker() -> Iterator[KafkaBroker]:
    """A broker this test may kill; deleted afterwards, whatever happens."""
    with BROKER.running() as broker:
        yield broker


@attrs.define
class Watch:
    """What one session saw: when its answers came, and which failed how."""

    name: str
    successes: list[float] = attrs.Factory(list)
    #: (when it came, code, message, seconds since the request was sent)
    errors: list[tuple[float, int, str, float]] = attrs.Factory(list)
    slowest: float = 0.0

    def first_success_after(self, moment: float) -> float | None:
        return next((t for t in self.successes if t >= moment), None)

    def errors_between(self, start: float, end: float) -> list[tuple[float, int, str, float]]:
        return [e for e in self.errors if start <= e[0] <= end]

    def answered_during(self, start: float, end: float) -> bool:
        return any(start <= t <= end for t in self.successes)


async def timed(watch: Watch, call: Any) -> Any:
    """Run one request, noting its latency and its outcome; return the result or None on an error."""
    started = trio.current_time()
    try:
        result = await call()
    except PubSubError as exc:
        watch.errors.append((trio.current_time(), exc.code, exc.message, trio.current_time() - started))
        return None
    finally:
        watch.slowest = max(watch.slowest, trio.current_time() - started)
    watch.successes.append(trio.current_time())
    return result


async def read_topic(
    client: PubSubClient, topic: str, watch: Watch, values: list[bytes | None], offsets: list[int], stop: trio.Event
) -> None:
    """Drive offsets from 0 until ``stop``: after an error, ask again for the same offset."""
    offset = 0
    while not stop.is_set():
        records = await timed(watch, partial(client.fetch, topic, 0, offset))
        if records is None:
            await trio.sleep(0.1)
            continue
        for record in records:
            offsets.append(record.offset)
            values.append(record.value)
            offset = record.offset + 1


async def ask_log_end(client: PubSubClient, topic: str, watch: Watch, stop: trio.Event) -> None:
    while not stop.is_set():
        await timed(watch, lambda: client.list_offset(topic, 0, -1))
        await trio.sleep(0.1)


async def ping(client: PubSubClient, watch: Watch, stop: trio.Event) -> None:
    while not stop.is_set():
        state = await timed(watch, lambda: client.ping(b"still there"))
        assert state == b"still there"
        await trio.sleep(0.05)


def value(n: int) -> bytes:
    return f"value-{n}".encode()


async def produce(broker: KafkaBroker, topic: str, first: int, count: int) -> None:
    """Write ``value-N`` records ``first`` .. ``first + count - 1`` to partition 0, one at a time, each acknowledged."""
    records = [(0, value(n)) for n in range(first, first + count)]
    await produce_acknowledged(broker, topic, records, PRODUCE_INTERVAL)


@pytest.mark.timeout(mode().limit(240, 600))
async def test_broker_killed_and_restarted_mid_stream(own_broker: KafkaBroker) -> None:
    records = mode().outage_records
    topic = await trio.to_thread.run_sync(create_topic, own_broker)
    config = ProxyConfig.single_route(
        own_broker.bootstrap, server=ServerConfig(port=0), request_timeout=REQUEST_TIMEOUT
    )
    reader, lister, pinger = Watch("reader"), Watch("log end"), Watch("ping")
    values: list[bytes | None] = []
    offsets: list[int] = []
    async with trio.open_nursery() as proxy_nursery:
        server: ProxyServer = await proxy_nursery.start(serve_proxy, config)
        url = server.url + "/kafka"
        async with (
            open_client(url, request_timeout=CLIENT_TIMEOUT) as reading,
            open_client(url, request_timeout=CLIENT_TIMEOUT) as listing,
            open_client(url, request_timeout=CLIENT_TIMEOUT) as pinging,
            trio.open_nursery() as sessions,
        ):
            # The sessions stop between requests, never in the middle of one.
            stop = trio.Event()
            sessions.start_soon(read_topic, reading, topic, reader, values, offsets, stop)
            sessions.start_soon(ask_log_end, listing, topic, lister, stop)
            sessions.start_soon(ping, pinging, pinger, stop)

            await produce(own_broker, topic, 0, records // 2)
            assert await settled(lambda: len(values) >= records // 2), f"read {len(values)} records"

            killed = trio.current_time()
            await trio.to_thread.run_sync(BROKER.kill)

            def outage_seen() -> bool:
                now = trio.current_time()
                return bool(reader.errors_between(killed, now) and lister.errors_between(killed, now))

            assert await settled(outage_seen, COMMAND_DEADLINE + WAIT), "no error responses after SIGKILL"
            first_errors = trio.current_time() - killed
            await trio.sleep(OUTAGE)  # the broker stays down a while: more error responses

            await trio.to_thread.run_sync(BROKER.start)
            restarted = trio.current_time()
            await produce(own_broker, topic, records // 2, records - records // 2)
            assert await settled(lambda: len(values) >= records, RECOVERY_LIMIT), f"read {len(values)} records"
            await trio.sleep(0.5)  # anything duplicated would come now
            stop.set()
            statistics = server.statistics()
        proxy_nursery.cancel_scope.cancel()

    recovery = {w.name: (w.first_success_after(restarted) or float("inf")) - restarted for w in (reader, lister)}
    outage_errors = {w.name: w.errors_between(killed, restarted) for w in (reader, lister)}
    all_errors = outage_errors["reader"] + outage_errors["log end"] or [(0.0, 0, "", 0.0)]
    print(
        f"\nbroker outage: first error responses {first_errors:.1f}s after SIGKILL; "
        f"error responses during the outage: reader {len(outage_errors['reader'])}, "
        f"log end {len(outage_errors['log end'])}; recovery after the restart: "
        + ", ".join(f"{name} {seconds:.2f}s" for name, seconds in recovery.items())
        + f"; error responses took {min(e[3] for e in all_errors):.1f}..{max(e[3] for e in all_errors):.1f}s "
        f"(request_timeout {REQUEST_TIMEOUT:.0f}s, codes {sorted({e[1] for e in all_errors})}); "
        f"slowest answer {max(reader.slowest, lister.slowest):.1f}s, slowest ping {pinger.slowest * 1000:.0f} ms; "
        f"{len(values)} records read"
    )
    assert offsets == list(range(records)), "records missing or duplicated (offsets)"
    assert values == [value(n) for n in range(records)], "records missing, duplicated or out of order"
    for watch in (reader, lister):
        assert outage_errors[watch.name], f"the {watch.name} session got no error response during the outage"
        unexpected = [e for e in watch.errors if e[1] not in OUTAGE_CODES]
        assert not unexpected, f"{watch.name}: {unexpected[:5]}"
        assert watch.slowest < COMMAND_DEADLINE, f"{watch.name} waited {watch.slowest:.1f}s for an answer"
        assert recovery[watch.name] < RECOVERY_LIMIT, f"{watch.name} never recovered"
    assert not pinger.errors
    # A ping never touches Kafka: while a Kafka command waited on the dead broker (some
    # answer at once, from what the proxy knows; the others wait up to request_timeout),
    # pings were still answered. Compared in order, not against a latency bound, so that a
    # busy machine does not fail it.
    outage = outage_errors["reader"] + outage_errors["log end"]
    waits = [(came - took, came) for came, _, _, took in outage if took >= REQUEST_TIMEOUT / 2]
    # (Should the proxy one day answer every command at once, no ping could wait behind one.)
    pinged = [wait for wait in waits if pinger.answered_during(*wait)]
    assert pinged or not waits, f"no ping was answered while any of {len(waits)} Kafka commands waited"
    # Nobody reconnected: the same three WebSockets carried everything.
    assert statistics.sessions_total == 3
    assert statistics.sessions_open == 3


@pytest.mark.timeout(10)
def test_a_new_cluster_id_never_looks_like_an_option(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new broker's storage is formatted with ``kafka-storage format -t ID``.

    The id is URL-safe base64, so one in 64 starts with "-"; kafka-storage then reads it
    as an option and fails ("argument --cluster-id/-t: expected one argument"), and the
    broker does not start (seen while running this suite). Kafka's own Uuid.randomUuid()
    never makes such an id, for this reason. A uuid whose first six bits are 111110
    gives one.
    """
    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID(bytes=b"\xf8" + bytes(15)))
    cluster_id = _broker._cluster_id()
    assert not cluster_id.startswith("-"), f"kafka-storage would take the cluster id {cluster_id!r} for an option"
