"""1,000 push streams that stop granting credit, and clients that stop reading while their streams hold credit.

The proxy runs as ``kafka-ws-trio serve`` (its resident memory is sampled) with a short
``send_timeout``. A two-partition topic holds a backlog of 16 KiB records, and more are
produced while the pressure lasts.

* **Paused streams:** ``mode().paused_streams`` streams (1,000 in fast mode), 50 to a
  connection, each granted ``PAUSED_CREDIT`` records at subscribe and never again.
  Their clients read everything they are sent. Once their credit is spent they cost
  the proxy their position and nothing else (schema/README.md, "Credit"), so the
  records produced meanwhile must not pile up anywhere for them. At the end the
  streams of two connections are granted one more record: each of them gets exactly
  one more, the others none.
* **Stuck clients:** ``STUCK_CONNECTIONS`` connections with ``STUCK_STREAMS`` streams
  each, granted far more than the backlog, that never read their socket. A stuck
  session may hold one batch waiting for the socket and the one being written; after
  ``send_timeout`` it is closed (the proxy logs it, and the connection is gone); its
  close code is the second test's business: 1008, once its client reads again.
* **Memory:** the proxy's RSS, sampled throughout, stays under a bound computed from
  the config (see :func:`memory_bound`).
* **Everyone else:** a control stream on its own connection gets every record produced
  while the pressure lasts, in order, each within ``LATENCY_LIMIT`` (generous: a busy
  machine must not fail it; how fast is printed).
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

import _reliability
import attrs
import pytest
import trio
from _reliability import (
    WAIT,
    mode,
    never_reading,
    percentile,
    produce_acknowledged,
    read_until_closed,
    settled,
    stream_clients,
)
from _support import running_proxy
from integration._streams import QUIET, StreamClient, stream_client
from trio_websocket import WebSocketConnection

from kafka_ws_trio._config import ProxyConfig, ServerConfig
from kafka_ws_trio._proto import AtOffsets, Grant, StartEdge, StreamRecords, encode_subscribe_request
from kafka_ws_trio.testing import KafkaBroker, create_topic

pytestmark = pytest.mark.reliability

KiB: Final = 1024
MiB: Final = 1024 * KiB
PARTITIONS: Final = 2
RECORD_SIZE: Final = 16 * KiB
#: Records in the topic before the streams open (8 MiB, 4 MiB a partition: inside the window, CACHE_BYTES).
BACKLOG: Final = 512
MAX_MESSAGE_SIZE: Final = MiB
SEND_TIMEOUT: Final = 3
#: Paused streams per connection, and the records each is granted once.
PAUSED_PER_CONNECTION: Final = 50
PAUSED_CREDIT: Final = 2
#: Connections that stop reading, and their streams (the most a connection may have), each granted more
#: than the whole backlog and each starting at an offset of its own (so that no two share a batch): one
#: connection asks for 64 x 8 MiB, far more than the socket buffers between it and the proxy hold.
STUCK_CONNECTIONS: Final = 4
STUCK_STREAMS: Final = 64
STUCK_CREDIT: Final = 1_000_000
#: Seconds between two records produced while the pressure lasts (each acknowledged first).
PRODUCE_INTERVAL: Final = 0.02
#: The route's window settings, written to the proxy's config: what one partition reader may hold is
#: cache_bytes + shared_body_bytes + 2 x fetch_max_bytes (docs/ARCHITECTURE.md, "Per route").
CACHE_BYTES: Final = 12 * MiB
SHARED_BODY_BYTES: Final = 4 * MiB
FETCH_MAX_BYTES: Final = MiB
#: What a stuck session may hold (docs/ARCHITECTURE.md, "Per stream": a session's pushes waiting for the socket
#: are at most one batch): the batch queued, the one being written and the framed copy trio-websocket makes of it.
HELD_PER_STUCK_SESSION: Final = 3
#: What one paused stream may cost: its state, its filter's share, its place in each partition's tap
#: list and its session's share (measured: about 3 KiB; five times that allowed).
PER_STREAM: Final = 16 * KiB
#: What one more connection costs with nothing queued (docs/BENCHMARKS.md measured about 35 KiB).
PER_SESSION: Final = 128 * KiB
#: Allocator and interpreter noise, kafka-python's buffers, protobuf arenas while encoding.
SLACK: Final = 32 * MiB
#: The longest a control record may take from the producer to the control client.
LATENCY_LIMIT: Final = 2 * WAIT
#: By when the stuck sessions must be closed: send_timeout once their socket is full, the closing
#: handshake's 2 s, and slack.
CLOSED_WITHIN: Final = SEND_TIMEOUT + 2 + 2 * WAIT
CONTROL: Final = 1
#: The proxy's log line for a session closed for not reading.
TOO_SLOW_LOG: Final = "did not read a response"


def memory_bound(baseline: int, paused_streams: int, sessions: int) -> int:
    """The most the proxy may hold, from the config: its memory once warm (``baseline``), plus

    * the topic's partition readers, ``PARTITIONS x (cache_bytes + shared_body_bytes + 2 x fetch_max_bytes)``
      (counted whole, though the baseline holds the backlog's part of them already),
    * ``STUCK_CONNECTIONS x HELD_PER_STUCK_SESSION x max_message_size`` for the stuck sessions,
    * ``paused_streams x PER_STREAM`` for the paused streams, which hold no records,
    * ``sessions x PER_SESSION`` for the connections opened after the baseline,
    * and ``SLACK``.

    Whatever kept records for the paused streams, or more than one batch for a stuck
    session, would pass it: the records produced under pressure alone are
    ``mode().pressure_seconds / PRODUCE_INTERVAL x RECORD_SIZE`` at most, each of them
    kept once per paused stream would be gigabytes.
    """
    readers = PARTITIONS * (CACHE_BYTES + SHARED_BODY_BYTES + 2 * FETCH_MAX_BYTES)
    stuck = STUCK_CONNECTIONS * HELD_PER_STUCK_SESSION * MAX_MESSAGE_SIZE
    return baseline + readers + stuck + paused_streams * PER_STREAM + sessions * PER_SESSION + SLACK


def record(n: int) -> tuple[int, bytes]:
    """Record n: to partition n % PARTITIONS, 16 KiB starting with its number."""
    head = b"record-%d-" % n
    return n % PARTITIONS, head + bytes(RECORD_SIZE - len(head))


@pytest.fixture(scope="module")
def backlog_topic(kafka_broker: KafkaBroker) -> str:
    """A topic of PARTITIONS partitions holding BACKLOG records."""
    topic = create_topic(kafka_broker, partitions=PARTITIONS)
    trio.run(produce_acknowledged, kafka_broker, topic, [record(n) for n in range(BACKLOG)])
    return topic


@attrs.define
class Sampler:
    """The proxy's RSS, sampled until stopped."""

    proxy: _reliability.ProxyProcess
    peak: int = 0
    samples: int = 0

    async def run(self, stop: trio.Event) -> None:
        while not stop.is_set():
            self.peak = max(self.peak, self.proxy.rss())
            self.samples += 1
            await trio.sleep(0.1)


async def subscribe_paused(clients: list[StreamClient], topic: str, count: int) -> None:
    """``count`` streams, PAUSED_PER_CONNECTION to a client, each granted PAUSED_CREDIT records from offset 0."""
    start = AtOffsets(tuple((p, 0) for p in range(PARTITIONS)))
    streams = [min(PAUSED_PER_CONNECTION, count - first) for first in range(0, count, PAUSED_PER_CONNECTION)]
    for client, many in zip(clients, streams, strict=True):
        for stream_id in range(1, many + 1):
            frame = encode_subscribe_request(stream_id, topic, start=start, credit=Grant(records=PAUSED_CREDIT))
            await client.send(frame)
    for client, many in zip(clients, streams, strict=True):
        await client.until(lambda c=client, n=many: len(c.subscribed) == n, f"{many} subscribes answered", 4 * WAIT)  # type: ignore[misc]


def paused_records(clients: list[StreamClient]) -> list[int]:
    """How many records each paused stream got."""
    return [client.counts[stream_id] for client in clients for stream_id in client.subscribed]


@asynccontextmanager
async def stuck_clients(url: str, topic: str, count: int) -> AsyncIterator[list[WebSocketConnection]]:
    """``count`` connections that subscribe STUCK_STREAMS streams with plenty of credit and never read."""
    async with never_reading(url, count, 2 * MAX_MESSAGE_SIZE) as connections:
        for ws in connections:
            for stream_id in range(1, STUCK_STREAMS + 1):
                start = AtOffsets(tuple((p, stream_id) for p in range(PARTITIONS)))
                frame = encode_subscribe_request(stream_id, topic, start=start, credit=Grant(records=STUCK_CREDIT))
                await ws.send_message(frame)
        yield connections


@pytest.mark.timeout(mode().limit(300, 900))
async def test_paused_and_stuck_streams_cost_bounded_memory_and_slow_no_other_stream(
    kafka_broker: KafkaBroker, backlog_topic: str, tmp_path: Path
) -> None:
    run = mode()
    topic = backlog_topic
    config = _reliability.write_config(
        tmp_path / "proxy.toml",
        kafka_broker.bootstrap,
        server={"max_message_size": MAX_MESSAGE_SIZE, "send_timeout": SEND_TIMEOUT},
        route={
            "max_streams": max(64, PAUSED_PER_CONNECTION, STUCK_STREAMS),
            "cache_bytes": CACHE_BYTES,
            "shared_body_bytes": SHARED_BODY_BYTES,
            "fetch_max_bytes": FETCH_MAX_BYTES,
        },
    )
    async with (
        _reliability.proxy_process(config, tmp_path / "proxy.log") as proxy,
        trio.open_nursery() as nursery,
        stream_client(proxy.url) as control,
    ):
        # The control stream reads the backlog first: the partitions' windows fill, then the baseline.
        await control.subscribe(CONTROL, topic, start=StartEdge.EARLIEST, credit=Grant(records=STUCK_CREDIT))
        await control.until(lambda: control.count(CONTROL) >= BACKLOG, "the backlog on the control stream", 4 * WAIT)
        await trio.sleep(1.0)  # let the allocator settle
        baseline = proxy.rss()
        mark = len(control.received)
        sampler = Sampler(proxy, peak=baseline)
        stop = trio.Event()
        nursery.start_soon(sampler.run, stop)

        async with stream_clients(proxy.url, math.ceil(run.paused_streams / PAUSED_PER_CONNECTION)) as paused:
            await subscribe_paused(paused, topic, run.paused_streams)
            assert await settled(lambda: min(paused_records(paused)) >= PAUSED_CREDIT, 4 * WAIT), (
                "the paused streams did not all get their first grant"
            )
            paused_open = proxy.rss()  # the paused streams and their sessions, before the pressure
            connections = len(paused) + 1
            produced = 0

            def under_pressure() -> Iterator[tuple[int, bytes]]:
                """Records for pressure_seconds, one PRODUCE_INTERVAL after the last was acknowledged."""
                nonlocal produced
                end = trio.current_time() + run.pressure_seconds
                while trio.current_time() < end:
                    yield record(BACKLOG + produced)
                    produced += 1

            async with stuck_clients(proxy.url, topic, STUCK_CONNECTIONS) as stuck:
                stuck_at = trio.current_time()
                # The control stream takes them; nobody else may keep them.
                await produce_acknowledged(kafka_broker, topic, under_pressure(), PRODUCE_INTERVAL)
                # The stuck sessions end after send_timeout; the proxy says why.
                assert await settled(
                    lambda: proxy.log_text().count(TOO_SLOW_LOG) >= STUCK_CONNECTIONS,
                    max(0.0, CLOSED_WITHIN - (trio.current_time() - stuck_at)),
                ), f"stuck sessions still open after {CLOSED_WITHIN}s: {proxy.log_text()[-3000:]}"
                closed_after = trio.current_time() - stuck_at
                assert await settled(lambda: proxy.established() == connections), (
                    f"{proxy.established()} connections open, {connections} wanted"
                )
                reasons = [await read_until_closed(ws) for ws in stuck]
            # Every control record produced under pressure came, in order.
            total = BACKLOG + produced
            await control.until(lambda: control.count(CONTROL) >= total, f"all {total} records on the control stream")
            stop.set()
            latencies = [
                arrival - r.timestamp / 1000
                for response, arrival in zip(control.received[mark:], control.arrivals[mark:], strict=True)
                if isinstance(response, StreamRecords)
                for r in response.records
            ]
            # The paused streams stayed paused, and resume where they were: one more record for one more credit.
            resumed = paused[:2]
            for client in resumed:
                for stream_id in sorted(client.subscribed):
                    await client.credit(stream_id, records=1)
            await trio.sleep(QUIET)
            assert await settled(lambda: min(paused_records(resumed)) >= PAUSED_CREDIT + 1), (
                "a paused stream did not resume"
            )
            got = sorted(set(paused_records(resumed))), sorted(set(paused_records(paused[2:])))
            final = proxy.rss()
    bound = memory_bound(baseline, run.paused_streams, len(paused) + STUCK_CONNECTIONS)
    print(
        f"\nstream pressure: {run.paused_streams} paused streams over {len(paused)} connections, "
        f"{STUCK_CONNECTIONS} stuck connections x {STUCK_STREAMS} streams, {produced} records produced in "
        f"{run.pressure_seconds:.0f}s; proxy RSS baseline {baseline / MiB:.1f} MiB, peak {sampler.peak / MiB:.1f} MiB "
        f"(+{(sampler.peak - baseline) / MiB:.1f}), {paused_open / MiB:.1f} MiB once the paused streams were open, "
        f"bound {bound / MiB:.1f} MiB, at the end {final / MiB:.1f} MiB ({sampler.samples} samples); "
        f"stuck sessions closed {closed_after:.1f}s after they stopped reading, their clients then read "
        f"{[n for n, _ in reasons]} messages and close codes {[r.code for _, r in reasons]}; control latency p50 "
        f"{percentile(latencies, 0.5) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms over {len(latencies)} records"
    )
    assert sampler.peak <= bound, f"proxy RSS peaked at {sampler.peak / MiB:.1f} MiB, over the bound {bound / MiB:.1f}"
    assert len(latencies) == produced, f"{len(latencies)} of {produced} records came to the control stream"
    assert max(latencies) < LATENCY_LIMIT, f"a control record took {max(latencies):.1f}s"
    records = control.records(CONTROL)
    for partition in range(PARTITIONS):
        offsets = [r.offset for r in records[partition]]
        assert offsets == list(range(len(offsets))), f"control stream, partition {partition}: {offsets}"
    assert got == ([PAUSED_CREDIT + 1], [PAUSED_CREDIT]), (
        f"records per paused stream: resumed {got[0]}, others {got[1]}"
    )
    # Each stuck client, reading at last, finds its connection closed: see the next test for the close code.
    assert all(reason.code in (1008, 1006) for _, reason in reasons), reasons


@pytest.mark.timeout(90)
async def test_a_stream_client_that_stops_reading_is_closed_with_1008_after_send_timeout(
    kafka_broker: KafkaBroker, backlog_topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    """It reads again as soon as the proxy gives up on it: what reached it, then the close frame 1008."""
    caplog.set_level(logging.WARNING, logger="kafka_ws_trio")
    server_config = ServerConfig(port=0, max_message_size=MAX_MESSAGE_SIZE, send_timeout=SEND_TIMEOUT)
    config = ProxyConfig.single_route(kafka_broker.bootstrap, server=server_config)
    async with running_proxy(config) as server, stuck_clients(server.url + "/kafka", backlog_topic, 1) as (ws,):
        started = trio.current_time()
        gave_up = await settled(
            lambda: any(TOO_SLOW_LOG in r.getMessage() for r in caplog.records), CLOSED_WITHIN, 0.01
        )
        assert gave_up, f"the proxy did not give up on the stuck client within {CLOSED_WITHIN}s"
        took = trio.current_time() - started
        messages, reason = await read_until_closed(ws)
    print(
        f"\nstuck stream client: given up after {took:.1f}s; then it read {messages} messages and close code {reason}"
    )
    assert reason.code == 1008, reason
