"""One principal over its produce quota must not slow another principal's stream (issue 13).

Principal B writes as fast as it is answered, far over its ``produce_records_per_second``,
and never waits the ``retry_after`` it is told; principal A, on the same route, streams a
topic that a producer writes to meanwhile. A gets every record, in order, and its pings
are answered; B gets ``QUOTA_EXCEEDED`` with a ``retry_after_ms``, keeps its sessions, gets
one answer per command, has no more written than its quota allows, and is held after a
refusal it did not wait for (schema/README.md "Authentication, rights and quotas"), so
it gets about two refusals per ``retry_after`` a session however fast it sends.

How long anything takes is measured by ``scripts/bench`` (its ``quota_isolation``
scenario); here only behaviour is checked, with deadlines no working proxy comes near.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Iterator
from functools import partial
from typing import Final

import attrs
import pytest
import trio
from _reliability import WAIT, mode, settled
from _support import running_proxy
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from kafka_ws_trio import ErrorCode, ProxyConfig, ServerConfig
from kafka_ws_trio._auth._keys import new_key
from kafka_ws_trio._config import RouteConfig
from kafka_ws_trio._config._access import AclRuleConfig, ApiKeyConfig, QuotaConfig
from kafka_ws_trio._proto import (
    ErrorAnswer,
    OutRecord,
    Pong,
    ProduceAnswer,
    Written,
    decode_response,
    encode_ping_request,
    encode_produce_request,
)
from kafka_ws_trio.client import EARLIEST, open_client
from kafka_ws_trio.testing import KafkaBroker, create_topic, delete_topic, produce

pytestmark = pytest.mark.reliability

READER: Final = "reader-a"
WRITER: Final = "writer-b"
#: B's quota. The bucket holds one second of it (the default burst_seconds), so the first
#: RATE records go at once, and a refused one-record command is told to wait at most 1/RATE s.
RATE: Final = 20
BURST: Final = RATE
MAX_RETRY_AFTER_MS: Final = 1000 // RATE
#: B's sessions, and the one-record produce commands each keeps in flight.
WRITER_SESSIONS: Final = 3
IN_FLIGHT: Final = 4
#: B floods at least this long, and until A has every record.
FLOOD_SECONDS: Final = mode().limit(8.0, 60.0)
#: A's records, written in chunks spread over the first part of the flood.
READER_RECORDS: Final = 200
CHUNKS: Final = 10
CHUNK_INTERVAL: Final = 0.6 * FLOOD_SECONDS / CHUNKS
#: Seconds between A's pings, and between samples of the proxy's statistics.
PING_INTERVAL: Final = 0.2
SAMPLE_INTERVAL: Final = 0.1
#: Slack for float arithmetic in the bounds that follow from the token bucket and the hold.
SLACK_SECONDS: Final = 0.05
PROBLEMS_SHOWN: Final = 10

_RETRY_AFTER: Final = re.compile(r"retry_after_ms=(\d+)$")


@attrs.frozen
class Topics:
    reader: str
    writer: str


@pytest.fixture
def topics(kafka_broker: KafkaBroker) -> Iterator[Topics]:
    made = Topics(create_topic(kafka_broker), create_topic(kafka_broker))
    yield made
    delete_topic(kafka_broker, made.reader)
    delete_topic(kafka_broker, made.writer)


def quota_route(broker: KafkaBroker, topics: Topics, keys: list[ApiKeyConfig]) -> ProxyConfig:
    """API keys only; A may read its topic, B may write its own; B's produce quota (A writes nothing)."""
    rules = (
        AclRuleConfig(principals=(READER,), operations=("read",), topics=(topics.reader,)),
        AclRuleConfig(principals=(WRITER,), operations=("write",), topics=(topics.writer,)),
    )
    route = RouteConfig(
        "/kafka",
        broker.bootstrap,
        auth=("api_key",),
        api_keys=tuple(keys),
        acl=rules,
        quotas=QuotaConfig(produce_records_per_second=RATE),
    )
    return ProxyConfig(ServerConfig(port=0), (route,))


def api_key(principal: str) -> tuple[str, ApiKeyConfig]:
    key, stored = new_key(principal)
    return key, ApiKeyConfig(id=principal, principal=principal, hash=stored)


def end_offset(broker: KafkaBroker, topic: str) -> int:
    """The log end of ``topic``'s partition 0, as Kafka tells it (blocking)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**broker.client_config(), enable_auto_commit=False, request_timeout_ms=30_000)
    try:
        partition = TopicPartition(topic, 0)
        return int(consumer.end_offsets([partition])[partition])
    finally:
        consumer.close()


# ------------------------------------------------------------------ B


@attrs.define
class WriterTally:
    """What one of B's sessions sent and was answered."""

    index: int
    sent: int = 0
    #: Sequences of the commands sent and not answered yet.
    outstanding: set[int] = attrs.Factory(set)
    #: Offsets of the records written, and the retry_after_ms of each refusal, in the order answered.
    written: list[int] = attrs.Factory(list)
    retry_after_ms: list[int] = attrs.Factory(list)
    problems: list[str] = attrs.Factory(list)
    #: Before the first command was sent, and when the last answer came (trio's clock, the proxy's too).
    started: float = 0.0
    ended: float = 0.0

    def take(self, frame: bytes | str) -> None:
        """One answer: it must be the first to a command in flight, and say written or QUOTA_EXCEEDED."""
        if isinstance(frame, str):
            self.problems.append(f"session {self.index}: a text frame {frame[:80]!r}")
            return
        answer = decode_response(frame)
        sequence = getattr(answer, "sequence", None)
        if sequence not in self.outstanding:
            self.problems.append(f"session {self.index}: {answer!r} answers no command in flight (a second answer?)")
            return
        self.outstanding.discard(sequence)
        if isinstance(answer, ProduceAnswer) and len(answer.results) == 1 and isinstance(answer.results[0], Written):
            self.written.append(answer.results[0].offset)
        elif isinstance(answer, ErrorAnswer) and answer.code == ErrorCode.QUOTA_EXCEEDED:
            told = _RETRY_AFTER.search(answer.message)
            if told is None:
                self.problems.append(f"session {self.index}: a refusal without retry_after_ms: {answer.message!r}")
            else:
                self.retry_after_ms.append(int(told.group(1)))
        else:
            self.problems.append(f"session {self.index}: {answer!r} is neither written nor QUOTA_EXCEEDED")

    def held_refusals_fit(self) -> tuple[float, float]:
        """What the hold guarantees: (the least time the refusals must have spanned, the time they had).

        Take the session's refusals in order, told w1, w2, ...: after refusal k, either the next
        one came at least wk later (the client waited), or it came sooner and the proxy then
        read nothing until its own w(k+1) had passed. So each step of one or two refusals
        takes at least one told wait, and refusals 1..N take at least the sum of the
        ceil((N-2)/2) smallest of w1..w(N-1). A session the proxy does not hold gets about a
        thousand refusals a second here, whose waits add up to several times the flood.
        """
        waits = sorted(ms / 1000 for ms in self.retry_after_ms[:-1])
        steps = max(0, (len(self.retry_after_ms) - 1) // 2)  # ceil((N-2)/2)
        return sum(waits[:steps]), self.ended - self.started


async def writer_session(
    url: str,
    key: str,
    topic: str,
    tally: WriterTally,
    go: trio.Event,
    flood_over: trio.Event,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """One of B's sessions: IN_FLIGHT one-record produces, the next sent as each is answered, ignoring retry_after.

    Once the flood is over it takes the answers still due, then a ping shows the session still serves.
    """
    sequences = itertools.count(1)

    async def send_next(ws: WebSocketConnection) -> None:
        sequence = next(sequences)
        tally.outstanding.add(sequence)
        tally.sent += 1
        record = OutRecord(value=f"b-{tally.index}-{sequence}".encode())
        await ws.send_message(encode_produce_request(sequence, topic, [record]))

    bearer = [(b"Authorization", b"Bearer " + key.encode())]
    async with open_websocket_url(url, extra_headers=bearer, connect_timeout=WAIT) as ws:
        task_status.started()
        await go.wait()
        try:
            tally.started = trio.current_time()
            for _ in range(IN_FLIGHT):
                await send_next(ws)
            while tally.outstanding:
                frame: bytes | str | None = None
                with trio.move_on_after(WAIT):
                    frame = await ws.get_message()
                if frame is None:
                    raise AssertionError(
                        f"session {tally.index}: {len(tally.outstanding)} commands in flight, no answer for {WAIT:g}s"
                    )
                tally.ended = trio.current_time()
                tally.take(frame)
                if not flood_over.is_set():
                    await send_next(ws)
            ping = next(sequences)
            with trio.fail_after(WAIT):
                await ws.send_message(encode_ping_request(ping, b"still here"))
                pong = await ws.get_message()
            answer = decode_response(pong) if isinstance(pong, bytes) else pong
            assert answer == Pong(sequence=ping, state=b"still here"), f"session {tally.index}: {answer!r}"
        except ConnectionClosed as exc:
            raise AssertionError(f"writer session {tally.index} was closed: {exc.reason}") from None


# ------------------------------------------------------------------ test


@pytest.mark.timeout(mode().limit(120, 300))
async def test_a_principal_over_its_quota_does_not_hold_up_another_principals_stream(
    kafka_broker: KafkaBroker, topics: Topics, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="kafka_ws_trio")
    reader_key, reader_entry = api_key(READER)
    writer_key, writer_entry = api_key(WRITER)
    expected = [f"a-{n:04d}".encode() for n in range(READER_RECORDS)]
    chunks = [expected[i : i + READER_RECORDS // CHUNKS] for i in range(0, READER_RECORDS, READER_RECORDS // CHUNKS)]
    tallies = [WriterTally(index) for index in range(WRITER_SESSIONS)]
    received: list[tuple[int, bytes | None]] = []
    ping_seconds: list[float] = []
    sessions_seen: list[int] = []
    go, flood_over, all_received, all_written = trio.Event(), trio.Event(), trio.Event(), trio.Event()

    async def write_reader_topic() -> None:
        for number, chunk in enumerate(chunks):
            await trio.sleep_until(flood_started + number * CHUNK_INTERVAL)
            await trio.to_thread.run_sync(partial(produce, kafka_broker, topics.reader, chunk))
        all_written.set()

    async def receive_all() -> None:
        async for batch in stream:
            received.extend((record.offset, record.value) for record in batch.records)
            if len(received) >= READER_RECORDS:
                break
        all_received.set()

    async def reader_is_not_held_up() -> None:
        """A's records all come, the last within WAIT of its write; then the flood ends (FLOOD_SECONDS at the least)."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive_all)
            await all_written.wait()
            with trio.fail_after(WAIT):
                await all_received.wait()
        await trio.sleep_until(flood_started + FLOOD_SECONDS)  # the flood goes on at least this long
        flood_over.set()

    async def ping_throughout() -> None:
        for number in itertools.count():
            started = trio.current_time()
            with trio.fail_after(WAIT):
                assert await reader.ping(b"%d" % number) == b"%d" % number
            ping_seconds.append(trio.current_time() - started)
            if flood_over.is_set():
                return
            with trio.move_on_after(PING_INTERVAL):
                await flood_over.wait()

    async def sample_sessions() -> None:
        while not flood_over.is_set():
            sessions_seen.append(server.statistics().sessions_open)
            with trio.move_on_after(SAMPLE_INTERVAL):
                await flood_over.wait()

    async with (
        running_proxy(quota_route(kafka_broker, topics, [reader_entry, writer_entry])) as server,
        open_client(f"{server.url}/kafka", token=reader_key, request_timeout=WAIT) as reader,
        reader.subscribe(topics.reader, start=EARLIEST) as stream,
    ):
        url = f"{server.url}/kafka"
        async with trio.open_nursery() as nursery:
            for tally in tallies:
                await nursery.start(writer_session, url, writer_key, topics.writer, tally, go, flood_over)
            everyone = WRITER_SESSIONS + 1
            assert await settled(lambda: server.statistics().sessions_open == everyone), server.statistics()
            flood_started = trio.current_time()
            go.set()
            nursery.start_soon(write_reader_topic)
            nursery.start_soon(reader_is_not_held_up)
            nursery.start_soon(ping_throughout)
            nursery.start_soon(sample_sessions)
        flood_seconds = trio.current_time() - flood_started
        await trio.sleep(0.2)  # a record delivered twice would arrive by now
        leftover = stream.buffered
        positions = stream.positions
    written_to_kafka = await trio.to_thread.run_sync(end_offset, kafka_broker, topics.writer)

    offsets = sorted(offset for tally in tallies for offset in tally.written)
    span = max(t.ended for t in tallies) - min(t.started for t in tallies)
    print(
        f"\nquota isolation: flood {flood_seconds:.1f}s; B: {sum(t.sent for t in tallies)} commands over "
        f"{WRITER_SESSIONS} sessions, {len(offsets)} records written (quota {RATE}/s, burst {BURST}, "
        f"{span:.1f}s: at most {BURST + RATE * span:.0f}), refusals per session "
        f"{[len(t.retry_after_ms) for t in tallies]}, mean retry_after_ms "
        f"{[round(sum(t.retry_after_ms) / max(1, len(t.retry_after_ms)), 1) for t in tallies]}; "
        f"A: {len(received)} records, {len(ping_seconds)} pings, slowest {max(ping_seconds) * 1000:.0f} ms; "
        f"sessions open {min(sessions_seen)}..{max(sessions_seen)} over {len(sessions_seen)} samples; "
        f"refusals' least time by the hold / time taken, per session: "
        + ", ".join("{:.2f}s/{:.2f}s".format(*tally.held_refusals_fit()) for tally in tallies)
    )

    # A: every record once, in order, none after; its pings answered throughout (each within WAIT, above).
    assert [value for _, value in received] == expected, "A's stream lost, repeated or reordered records"
    assert [offset for offset, _ in received] == list(range(READER_RECORDS))
    assert leftover == 0 and positions == {0: READER_RECORDS}, f"{leftover} records more came: {positions}"
    assert len(ping_seconds) >= 2, "A pinged during the flood and after it"

    # B: one answer per command, each written or refused with a retry_after; sessions kept open.
    problems = [problem for tally in tallies for problem in tally.problems]
    assert not problems, f"{len(problems)} problems, the first ones:\n" + "\n".join(problems[:PROBLEMS_SHOWN])
    for tally in tallies:
        assert not tally.outstanding, f"session {tally.index}: {len(tally.outstanding)} commands never answered"
        assert tally.retry_after_ms, f"session {tally.index} was never refused: the quota did not apply"
        least, most = min(tally.retry_after_ms), max(tally.retry_after_ms)
        assert least >= 1 and most <= MAX_RETRY_AFTER_MS, f"session {tally.index}: retry_after_ms {least}..{most}"
        assert tally.sent == len(tally.written) + len(tally.retry_after_ms)
    assert sessions_seen and all(n == WRITER_SESSIONS + 1 for n in sessions_seen), (
        f"sessions open during the flood: {sorted(set(sessions_seen))}; expected B's {WRITER_SESSIONS} and A's"
    )

    # B's records: each written once, all of them in Kafka, no more than the quota lets through.
    assert offsets == list(range(len(offsets))), "B's written records have gaps or repeats"
    assert written_to_kafka == len(offsets), f"Kafka holds {written_to_kafka} of B's records, B was told {len(offsets)}"
    assert len(offsets) >= BURST, "the burst was not taken at once"
    assert len(offsets) <= BURST + RATE * (span + SLACK_SECONDS), (
        f"B had {len(offsets)} records written in {span:.2f}s with a quota of {RATE}/s and a burst of {BURST}"
    )

    # B's refusals: bounded by the hold, about two per retry_after a session.
    for tally in tallies:
        needed, had = tally.held_refusals_fit()
        assert needed <= had + SLACK_SECONDS, (
            f"session {tally.index}: {len(tally.retry_after_ms)} refusals in {had:.2f}s, but the waits they were "
            f"told add up to {needed:.2f}s between every second one: the proxy did not hold the session"
        )

    # The proxy: nothing went wrong inside it.
    errors = [r for r in caplog.records if r.name.startswith("kafka_ws_trio") and r.levelno >= logging.ERROR]
    unexpected = [r for r in caplog.records if "unexpected error" in r.getMessage()]
    assert not errors and not unexpected, "the proxy logged:\n" + "\n".join(
        r.getMessage() for r in (errors + unexpected)[:PROBLEMS_SHOWN]
    )
