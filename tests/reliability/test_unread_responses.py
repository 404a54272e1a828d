"""Clients that send many Fetch requests for large records and never read the answers.

* Memory: the proxy runs in a process of its own (``kafka-ws-trio serve``) and its
  resident memory is sampled while the stuck clients hang on. Each stuck session may
  hold at most ``workers`` finished responses waiting for the socket plus the one being
  written (and its framed copy), each at most ``max_message_size``; the bound asserted
  is that, times the stuck clients, plus a fixed slack, above the proxy's memory after
  warming up (its partition cache already full).
* Other sessions are unaffected: a control session keeps getting correct answers, each
  within its request timeout, while the stuck clients hang on (how fast is printed, not
  asserted: latency belongs to ``scripts/bench``).
* With ``send_timeout = 2`` (from a TOML file), a stuck session is closed: the client
  sees 1008 when it finally reads, or the connection simply drops, and the proxy's
  ``sessions_open`` goes down.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

import _reliability
import attrs
import pytest
import trio
from _reliability import WAIT, mode, never_reading, percentile, read_until_closed, settled
from trio_websocket import WebSocketConnection, open_websocket_url

from kafka_ws_trio._config import load_config
from kafka_ws_trio._proto import encode_fetch_request
from kafka_ws_trio._server import ProxyServer, serve_proxy
from kafka_ws_trio.client import PubSubClient, open_client
from kafka_ws_trio.testing import KafkaBroker, create_topic, produce

pytestmark = pytest.mark.reliability

MiB: Final = 1024 * 1024
RECORD_SIZE: Final = 256 * 1024
#: 12 MiB of records: under the proxy's 16 MiB partition cache, so after warming up
#: every fetch is answered from memory and only the sessions' own buffers can grow.
RECORDS: Final = 48
MAX_MESSAGE_SIZE: Final = MiB
WORKERS: Final = 8
QUEUE_SIZE: Final = 64
#: Responses one stuck session may hold: one per worker, plus the one being written and
#: the framed copy trio-websocket makes of it.
HELD_PER_SESSION: Final = WORKERS + 2
#: Allocator and interpreter noise, kafka-python's buffers, protobuf arenas while encoding.
SLACK: Final = 32 * MiB
#: Seconds the stuck clients hang on while memory is sampled, and how many times they come.
STUCK_FOR: Final = 5.0
ROUNDS: Final = 2
#: What a second round of stuck clients may add to the first round's peak.
LEAK_SLACK: Final = 8 * MiB
SEND_TIMEOUT: Final = 2
#: The session's closing handshake gets CLOSE_TIMEOUT (2 s) after the send times out.
CLOSED_WITHIN: Final = SEND_TIMEOUT + 2 + WAIT


@pytest.fixture(scope="module")
def big_topic(kafka_broker: KafkaBroker) -> str:
    topic = create_topic(kafka_broker)
    values = [bytes([n]) * RECORD_SIZE for n in range(RECORDS)]
    produce(kafka_broker, topic, values)
    return topic


def fetch_frame(sequence: int, topic: str, offset: int) -> bytes:
    return encode_fetch_request(sequence, topic, 0, offset)


async def send_without_reading(ws: WebSocketConnection, topic: str, requests: int) -> int:
    """Send Fetch requests for large records, never reading; return how many went out.

    Stops early when the proxy stops reading too (a send blocks for a second).
    """
    for sequence in range(requests):
        with trio.move_on_after(1.0) as blocked:
            await ws.send_message(fetch_frame(sequence, topic, sequence % RECORDS))
        if blocked.cancelled_caught:
            return sequence
    return requests


@attrs.define
class Latencies:
    samples: list[float] = attrs.Factory(list)

    async def round(self, client: PubSubClient, topic: str, offset: int) -> None:
        started = trio.current_time()
        assert await client.ping(b"ok") == b"ok"
        assert await client.list_offset(topic, 0, -1) == RECORDS
        records = await client.fetch(topic, 0, offset)
        assert records, f"no records at {offset}"
        assert records[0].value == bytes([offset]) * RECORD_SIZE
        self.samples.append(trio.current_time() - started)


async def control_rounds(client: PubSubClient, topic: str, latencies: Latencies, stop: trio.Event) -> None:
    """Rounds until ``stop``; never cancelled in the middle of a request (see test_client_cancellation)."""
    offset = 0
    while not stop.is_set():
        await latencies.round(client, topic, offset)
        offset = (offset + 5) % RECORDS
        await trio.sleep(0.05)


@asynccontextmanager
async def stuck_clients(url: str, topic: str, count: int, requests: int) -> AsyncIterator[list[int]]:
    """``count`` connections that send ``requests`` fetches each and never read; the list says how many went."""
    async with never_reading(url, count, 2 * MAX_MESSAGE_SIZE) as connections:
        yield [await send_without_reading(ws, topic, requests) for ws in connections]


@pytest.mark.timeout(mode().limit(120, 300))
async def test_clients_that_never_read_cost_bounded_memory_and_slow_no_one(
    kafka_broker: KafkaBroker, big_topic: str, tmp_path: Path
) -> None:
    run = mode()
    config = _reliability.write_config(
        tmp_path / "proxy.toml",
        kafka_broker.bootstrap,
        server={
            "max_message_size": MAX_MESSAGE_SIZE,
            "workers": WORKERS,
            "queue_size": QUEUE_SIZE,
            "send_timeout": 300,  # they stay stuck while we measure
        },
    )
    async with (
        _reliability.proxy_process(config, tmp_path / "proxy.log") as proxy,
        open_client(proxy.url, request_timeout=WAIT, max_message_size=2 * MAX_MESSAGE_SIZE) as control,
    ):
        warm = Latencies()
        for offset in range(0, RECORDS, 3):  # fills the partition cache
            await warm.round(control, big_topic, offset)
        await trio.sleep(1.0)  # let the allocator settle after the warm-up
        baseline = proxy.rss()
        bound = baseline + run.unread_clients * HELD_PER_SESSION * MAX_MESSAGE_SIZE + SLACK

        # Twice: what the first round's sessions held must be reused by the second's, not added to.
        latencies = Latencies()
        peaks = []
        # Control rounds finished while each round of stuck clients hung on.
        control_rounds_while_stuck = []
        for _ in range(ROUNDS):
            peak = baseline
            async with (
                stuck_clients(proxy.url, big_topic, run.unread_clients, run.unread_requests) as sent,
                trio.open_nursery() as nursery,
            ):
                stop = trio.Event()
                nursery.start_soon(control_rounds, control, big_topic, latencies, stop)
                before = len(latencies.samples)
                end = trio.current_time() + STUCK_FOR
                while trio.current_time() < end:
                    peak = max(peak, proxy.rss())
                    await trio.sleep(0.1)
                assert proxy.established() == run.unread_clients + 1, "a stuck client was dropped early"
                stop.set()
            control_rounds_while_stuck.append(len(latencies.samples) - before)
            peaks.append(peak)
            # The stuck clients are gone: their sessions end.
            assert await settled(lambda: proxy.established() == 1), f"{proxy.established()} connections left"
        await latencies.round(control, big_topic, 0)
        after = proxy.rss()

    print(
        f"\nnever-reading clients: {run.unread_clients} sent {sent} fetches for {RECORD_SIZE // 1024} KiB records, "
        f"{ROUNDS} times; proxy RSS baseline {baseline / MiB:.1f} MiB, peaks "
        + ", ".join(f"{p / MiB:.1f} MiB (+{(p - baseline) / MiB:.1f})" for p in peaks)
        + f", bound {bound / MiB:.1f} MiB, at the end {after / MiB:.1f} MiB; "
        f"control rounds {control_rounds_while_stuck}, p50 {percentile(latencies.samples, 0.5) * 1000:.0f} ms, "
        f"max {max(latencies.samples) * 1000:.0f} ms"
    )
    assert all(n > QUEUE_SIZE + WORKERS for n in sent), f"the stuck clients sent too little to fill anything: {sent}"
    assert max(peaks) <= bound, f"proxy RSS peaked at {max(peaks) / MiB:.1f} MiB, over the bound {bound / MiB:.1f} MiB"
    assert peaks[-1] <= peaks[0] + LEAK_SLACK, f"memory grew from round to round: {[p // MiB for p in peaks]} MiB"
    # Every control round was answered correctly within its request timeout (Latencies.round);
    # that some finished while each round of stuck clients hung on shows the control session
    # was not held up. No latency bound: a busy machine must not fail this test.
    assert all(control_rounds_while_stuck), f"control rounds while stuck: {control_rounds_while_stuck}"


@pytest.mark.timeout(90)
async def test_a_client_that_never_reads_is_closed_after_send_timeout(
    kafka_broker: KafkaBroker, big_topic: str, tmp_path: Path
) -> None:
    path = _reliability.write_config(
        tmp_path / "proxy.toml",
        kafka_broker.bootstrap,
        server={"max_message_size": MAX_MESSAGE_SIZE, "send_timeout": SEND_TIMEOUT},
    )
    config = load_config(path)
    assert config.server.send_timeout == SEND_TIMEOUT
    async with trio.open_nursery() as nursery:
        server: ProxyServer = await nursery.start(serve_proxy, config)
        url = server.url + "/kafka"
        async with open_client(url, request_timeout=WAIT, max_message_size=2 * MAX_MESSAGE_SIZE) as control:
            latencies = Latencies()
            await latencies.round(control, big_topic, 0)
            async with open_websocket_url(url, max_message_size=2 * MAX_MESSAGE_SIZE, connect_timeout=WAIT) as stuck:
                sent = await send_without_reading(stuck, big_topic, 200)
                assert server.statistics().sessions_open == 2
                started = trio.current_time()
                closed = await settled(lambda: server.statistics().sessions_open == 1, CLOSED_WITHIN)
                took = trio.current_time() - started
                assert closed, f"the stuck session is still open after {CLOSED_WITHIN}s: {server.statistics()}"
                # Now the client reads what reached it, then learns how the connection ended.
                answers, reason = await read_until_closed(stuck)
                code = reason.code
            await latencies.round(control, big_topic, 1)
            assert server.statistics().sessions_open == 1
        nursery.cancel_scope.cancel()
    print(
        f"\nsend_timeout {SEND_TIMEOUT}s: the stuck session (sent {sent} fetches) closed {took:.1f}s after the last "
        f"send; its client then read {answers} answers and close code {code}"
    )
    assert code in (1008, 1006), f"closed with {reason}, not 1008 (policy) or a dropped connection"
