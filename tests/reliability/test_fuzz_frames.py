"""Fuzzing a live proxy over WebSocket, against a real broker.

Random and mutated frames (seeded, pipelined over several sessions) and frames drawn
by hypothesis (one at a time, so that a failure shrinks): truncated, wrong wire types,
huge lengths, deep nesting, every command with fields out of range, frames at and just
over ``max_message_size``. Throughout:

* the proxy never crashes and logs no error;
* every frame is answered exactly once: a frame that decodes with its own sequence and
  the kind of answer its command calls for, a frame that does not with ``wrong
  command`` and sequence 0 (see ``_fuzz.judge``);
* a frame over ``max_message_size`` closes its connection with 1009, and a new
  connection carries on (every random fuzz session sends one at the limit and one over
  it, whatever the seed; more come at random);
* a control session keeps getting correct answers, each within its request timeout
  (how fast is printed, not asserted).

Fast mode sends a few thousand frames; long mode (``--reliability-long``) over 100,000.
``RELIABILITY_SEED=N`` replays one run of the random frames; the seed is printed first,
so that it shows with any failure.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Final

import _fuzz
import _reliability
import attrs
import pytest
import trio
from _reliability import WAIT, mode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trio_websocket import CloseReason, ConnectionClosed, WebSocketConnection, connect_websocket_url, open_websocket_url

from kafka_ws_trio._config import ProxyConfig, ServerConfig
from kafka_ws_trio._pb import pubsub_pb2 as pb
from kafka_ws_trio._proto import decode_request
from kafka_ws_trio._server import ProxyServer, serve_proxy
from kafka_ws_trio.client import open_client
from kafka_ws_trio.testing import KafkaBroker, Record, create_topic, produce

pytestmark = pytest.mark.reliability

#: Small, so that frames over it are cheap to send.
MAX_MESSAGE_SIZE: Final = 65_536
#: Records in the fuzz topic.
RECORDS: Final = 40
#: Frames one fuzz session has sent and not yet seen answered.
WINDOW: Final = 32
#: One in this many random frames is sized at or just over ``MAX_MESSAGE_SIZE``, beyond the
#: one of each kind every session sends.
SIZED_EVERY: Final = 500
#: Problems reported in full; the rest are counted.
PROBLEMS_SHOWN: Final = 20


@pytest.fixture(scope="module")
def targets(kafka_broker: KafkaBroker) -> _fuzz.Targets:
    """The fuzz topic: RECORDS records, one batch each, a millisecond apart (their timestamps are set)."""
    topic = create_topic(kafka_broker)
    first = int(time.time() * 1000) - 60_000
    timestamps = tuple(first + n for n in range(RECORDS))
    records = [
        Record(_fuzz.record_value(n), key=f"k{n}".encode(), headers=[("h", b"v")], timestamp_ms=timestamps[n])
        for n in range(RECORDS)
    ]
    produce(kafka_broker, topic, records, batch_per_record=True)
    return _fuzz.Targets(topic=topic, timestamps=timestamps)


@asynccontextmanager
async def fuzz_proxy(kafka_broker: KafkaBroker) -> AsyncIterator[ProxyServer]:
    config = ProxyConfig.single_route(
        kafka_broker.bootstrap,
        server=ServerConfig(port=0, max_message_size=MAX_MESSAGE_SIZE),
        fetch_max_wait=0.01,  # a fetch at the log end answers at once: more frames per second
    )
    async with trio.open_nursery() as nursery:
        server: ProxyServer = await nursery.start(serve_proxy, config)
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()


@attrs.define
class Control:
    """What the control session saw while the fuzzing went on."""

    rounds: int = 0
    slowest: float = 0.0


async def control_session(url: str, targets: _fuzz.Targets, control: Control) -> None:
    """Ping, ListOffset and Fetch with checked answers, until cancelled."""
    async with open_client(url, request_timeout=WAIT) as client:
        while True:
            started = trio.current_time()
            assert await client.ping(b"control") == b"control"
            assert await client.list_offset(targets.topic, 0, -1) == targets.end
            offset = control.rounds % targets.end
            records = await client.fetch(targets.topic, 0, offset)
            assert records, f"the control session got no records at {offset}"
            assert [r.value for r in records] == [_fuzz.record_value(r.offset) for r in records]
            assert records[0].offset == offset
            control.slowest = max(control.slowest, trio.current_time() - started)
            control.rounds += 1
            await trio.sleep(0.01)


@asynccontextmanager
async def with_control(url: str, targets: _fuzz.Targets) -> AsyncIterator[Control]:
    control = Control()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(control_session, url, targets, control)
        yield control
        nursery.cancel_scope.cancel()
    # Each round's answers were checked and came within the client's request timeout; how
    # slow the slowest was depends on the machine, so it is printed, never asserted.
    assert control.rounds > 0, "the control session never finished a round"


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r for r in caplog.records if r.name.startswith("kafka_ws_trio") and r.levelno >= logging.ERROR]
    assert not errors, "the proxy logged errors:\n" + "\n".join(r.getMessage() for r in errors[:PROBLEMS_SHOWN])


# ------------------------------------------------------- random frames


@attrs.define
class Tally:
    """What the random fuzzing sent and found."""

    seed: int
    sent: int = 0
    answered: int = 0
    #: Frames of exactly, or just under, ``MAX_MESSAGE_SIZE`` sent (each must be answered).
    at_the_limit: int = 0
    closed_1009: int = 0
    kinds: Counter[str] = attrs.Factory(Counter)
    problems: list[str] = attrs.Factory(list)

    def problem(self, text: str, frame: bytes) -> None:
        self.problems.append(f"{text}\n    frame: {frame[:200].hex()}{'...' if len(frame) > 200 else ''}")


class FuzzConnection:
    """One WebSocket with frames in flight, each answered response matched to a frame sent."""

    def __init__(self, ws: WebSocketConnection, targets: _fuzz.Targets, tally: Tally) -> None:
        self.ws = ws
        self.targets = targets
        self.tally = tally
        self.pending: defaultdict[int, list[bytes]] = defaultdict(list)
        self.in_flight = 0
        self.window = trio.Semaphore(WINDOW)
        self.drained = trio.Event()

    async def send(self, frame: bytes) -> None:
        await self.window.acquire()
        self.pending[_fuzz.expected_sequence(frame)].append(frame)
        self.in_flight += 1
        self.drained = trio.Event()
        self.tally.sent += 1
        self.tally.kinds[type(decode_request(frame)).__name__] += 1
        await self.ws.send_message(frame)

    async def receive_answers(self) -> None:
        """Match answers to frames until cancelled; an answer matching none is a problem."""
        while True:
            reply = await self.ws.get_message()
            if isinstance(reply, str):
                self.tally.problems.append(f"the proxy sent a text frame: {reply[:100]!r}")
                continue
            try:
                response = pb.PubSubResp.FromString(reply)
            except Exception as exc:
                self.tally.problems.append(f"an answer does not parse ({exc}): {reply[:100].hex()}")
                continue
            if len(reply) > MAX_MESSAGE_SIZE:
                self.tally.problems.append(f"an answer of {len(reply)} bytes is over max_message_size")
            candidates = self.pending.get(response.sequence, [])
            verdicts = [_fuzz.judge(frame, response, self.targets) for frame in candidates]
            if None not in verdicts:
                why = verdicts[0] if verdicts else "no frame in flight has this sequence"
                self.tally.problems.append(f"unexpected answer (sequence {response.sequence}): {why}")
                continue
            candidates.pop(verdicts.index(None))
            if not candidates:
                del self.pending[response.sequence]
            self.tally.answered += 1
            self.in_flight -= 1
            self.window.release()
            if self.in_flight == 0:
                self.drained.set()

    async def drain(self) -> None:
        """Wait until every frame sent is answered; report the ones that are not within WAIT."""
        if self.in_flight == 0:
            return
        with trio.move_on_after(WAIT):
            await self.drained.wait()
            return
        for frames in self.pending.values():
            for frame in frames:
                self.tally.problem(f"never answered: {decode_request(frame)}", frame)
        self.pending.clear()
        self.window = trio.Semaphore(WINDOW)
        self.in_flight = 0

    async def finish(self) -> None:
        """Drain, then check with a sentinel ping that no stray answer is still on its way."""
        await self.drain()
        sentinel = _fuzz.sized_frame(32, 7_777_777)
        await self.send(sentinel)
        await self.drain()


def at_the_limit(rng: random.Random) -> bytes:
    """A ping of exactly ``MAX_MESSAGE_SIZE`` bytes or just under: it must be answered."""
    return _fuzz.sized_frame(MAX_MESSAGE_SIZE + rng.choice([-2, -1, 0]), rng.randint(1, 2**40))


def over_the_limit(rng: random.Random) -> bytes:
    """A frame just over ``MAX_MESSAGE_SIZE``, or well over: the connection must close with 1009."""
    return rng.randbytes(MAX_MESSAGE_SIZE + rng.choice([1, 2, 1000]))


def near_the_limit(rng: random.Random) -> bytes:
    """A frame at the limit (answered) or just over it (the connection closes with 1009)."""
    return at_the_limit(rng) if rng.randrange(2) else over_the_limit(rng)


async def fuzz_session(url: str, targets: _fuzz.Targets, frames: int, tally: Tally, rng: random.Random) -> None:
    """Send ``frames`` fuzz frames, pipelined, reconnecting after each frame over the limit.

    One frame at the limit and one over it go out at places the seed chooses, so that
    every run, whatever its seed, tests both; more come at random.
    """
    source = _fuzz.RandomSource(rng)
    left = frames
    forced_at, forced_over = rng.sample(range(frames), 2) if frames >= 2 else (-1, 0)
    while left > 0:
        # One connection, until a frame over the limit closes it.
        async with open_websocket_url(url, max_message_size=2 * MAX_MESSAGE_SIZE, connect_timeout=WAIT) as ws:
            connection = FuzzConnection(ws, targets, tally)
            oversized: bytes | None = None
            async with trio.open_nursery() as nursery:
                nursery.start_soon(connection.receive_answers)
                while left > 0 and oversized is None:
                    left -= 1
                    index = frames - left - 1
                    frame = _fuzz.frame(source, targets)
                    if index == forced_at:
                        frame = at_the_limit(rng)
                    elif index == forced_over:
                        frame = over_the_limit(rng)
                    elif rng.randrange(SIZED_EVERY) == 0:
                        frame = near_the_limit(rng)
                    if len(frame) > MAX_MESSAGE_SIZE:
                        oversized = frame
                        break
                    if len(frame) >= MAX_MESSAGE_SIZE - 2:
                        tally.at_the_limit += 1
                    with trio.fail_after(WAIT):
                        await connection.send(frame)
                await connection.finish()
                nursery.cancel_scope.cancel()
            if oversized is not None:
                reason = await close_reason(ws, oversized)
                if reason is not None and reason.code == 1009:
                    tally.closed_1009 += 1
                else:
                    tally.problem(f"a frame over the limit got {reason or 'an answer'}, not close code 1009", oversized)


async def close_reason(ws: WebSocketConnection, frame: bytes) -> CloseReason | None:
    """Send ``frame`` and return why the connection closed; None when it was answered instead.

    The proxy may close before the whole frame is sent: then sending fails with the reason.
    """
    with trio.fail_after(WAIT):
        try:
            await ws.send_message(frame)
            await ws.get_message()
        except ConnectionClosed as exc:
            return exc.reason
    return None


@pytest.mark.timeout(mode().limit(120, 1800))
async def test_random_and_mutated_frames_are_each_answered_once(
    kafka_broker: KafkaBroker, targets: _fuzz.Targets, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="kafka_ws_trio")
    seed = int(os.environ.get("RELIABILITY_SEED") or random.randrange(2**32))
    # First thing, so that pytest shows it with any failure, an exception included.
    print(f"\nrandom fuzz: RELIABILITY_SEED={seed} replays this run")
    tally = Tally(seed)
    run = mode()
    per_session = run.random_frames // run.fuzz_sessions
    started = trio.current_time()
    async with fuzz_proxy(kafka_broker) as server:
        url = server.url + "/kafka"
        async with with_control(url, targets) as control, trio.open_nursery() as nursery:
            for index in range(run.fuzz_sessions):
                rng = random.Random(f"{seed}-{index}")
                nursery.start_soon(fuzz_session, url, targets, per_session, tally, rng)
        # Still serving after all that.
        async with open_client(url, request_timeout=WAIT) as client:
            assert await client.list_offset(targets.topic, 0, -2) == 0
        statistics = server.statistics()
    elapsed = trio.current_time() - started
    print(
        f"\nrandom fuzz (seed {seed}): {tally.sent} frames in {elapsed:.1f}s "
        f"({tally.sent / elapsed:.0f}/s), {tally.answered} answered, {tally.at_the_limit} at the limit, "
        f"{tally.closed_1009} closed with 1009; "
        f"decoded as {dict(tally.kinds)}; control rounds {control.rounds}, slowest {control.slowest * 1000:.0f} ms; "
        f"proxy commands {statistics.commands_total}, sessions {statistics.sessions_total}"
    )
    shown = "\n".join(tally.problems[:PROBLEMS_SHOWN])
    assert not tally.problems, f"seed {seed}: {len(tally.problems)} problems, the first ones:\n{shown}"
    assert tally.answered == tally.sent, f"seed {seed}: {tally.sent} frames sent, {tally.answered} answered"
    assert tally.sent >= run.random_frames * 0.9, f"seed {seed}: only {tally.sent} frames sent"
    # Each session sent one frame at the limit and one over it, whatever the seed.
    assert tally.at_the_limit >= run.fuzz_sessions, f"seed {seed}: {tally.at_the_limit} frames at the limit"
    assert tally.closed_1009 >= run.fuzz_sessions, f"seed {seed}: {tally.closed_1009} closed with 1009"
    no_errors_logged(caplog)


# ------------------------------------------------------- hypothesis frames


class Exchanger:
    """Sends one frame and returns the next answer, reconnecting after a close; runs in Trio."""

    def __init__(self, nursery: trio.Nursery, url: str) -> None:
        self.nursery = nursery
        self.url = url
        self.ws: WebSocketConnection | None = None
        self.reconnects = 0

    async def exchange(self, frame: bytes) -> bytes | str:
        if self.ws is None or self.ws.closed is not None:
            if self.ws is not None:
                self.reconnects += 1
            with trio.fail_after(WAIT):
                self.ws = await connect_websocket_url(self.nursery, self.url, max_message_size=2 * MAX_MESSAGE_SIZE)
        with trio.fail_after(WAIT):
            await self.ws.send_message(frame)
            return await self.ws.get_message()


@pytest.mark.timeout(mode().limit(120, 1800))
async def test_hypothesis_frames_are_each_answered_once(
    kafka_broker: KafkaBroker, targets: _fuzz.Targets, tmp_path: Path
) -> None:
    """Hypothesis draws the frames, so that a failing one shrinks to a small example.

    The proxy runs in a process of its own here: hypothesis checks that nothing touches
    the global ``random`` module while it draws, and kafka-python's threads in this
    process would.
    """
    examples = mode().hypothesis_frames
    seen: Counter[str] = Counter()

    def run_hypothesis(exchange: partial[bytes | str]) -> None:
        """In a thread: hypothesis drives, each frame goes through the Trio loop."""

        @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(st.data())
        def each_frame_is_answered(data: st.DataObject) -> None:
            frame = _fuzz.frame(_fuzz.HypothesisSource(data), targets)
            seen[type(decode_request(frame)).__name__] += 1
            reply = trio.from_thread.run(exchange, frame)
            assert isinstance(reply, bytes), f"a text frame: {reply!r}"
            problem = _fuzz.judge(frame, pb.PubSubResp.FromString(reply), targets)
            assert problem is None, f"{problem}\nframe: {frame.hex()}"

        each_frame_is_answered()

    config = _reliability.write_config(
        tmp_path / "proxy.toml",
        kafka_broker.bootstrap,
        server={"max_message_size": MAX_MESSAGE_SIZE},
        route={"fetch_max_wait": 0.01},
    )
    started = trio.current_time()
    async with _reliability.proxy_process(config, tmp_path / "proxy.log") as proxy:
        async with with_control(proxy.url, targets) as control, trio.open_nursery() as nursery:
            exchanger = Exchanger(nursery, proxy.url)
            await trio.to_thread.run_sync(run_hypothesis, partial(exchanger.exchange))
            # Nothing stray after the last answer: the next one is the sentinel's.
            sentinel = _fuzz.sized_frame(32, 8_888_888)
            reply = await exchanger.exchange(sentinel)
            assert isinstance(reply, bytes)
            assert pb.PubSubResp.FromString(reply).sequence == 8_888_888
            nursery.cancel_scope.cancel()
        assert proxy.process.returncode is None, "the proxy exited"
    elapsed = trio.current_time() - started
    print(
        f"\nhypothesis fuzz: {sum(seen.values())} frames in {elapsed:.1f}s, decoded as {dict(seen)}; "
        f"reconnects {exchanger.reconnects}; control rounds {control.rounds}, "
        f"slowest {control.slowest * 1000:.0f} ms"
    )
    assert exchanger.reconnects == 0, "the proxy closed a connection that sent only frames under the limit"
    assert proxy.process.returncode == 0
    log = proxy.log_text()
    assert " ERROR " not in log and "Traceback" not in log, log[-5000:]


@pytest.mark.timeout(60)
async def test_frames_at_and_over_the_limit(kafka_broker: KafkaBroker, targets: _fuzz.Targets) -> None:
    """At ``max_message_size``: answered. One byte over: 1009, and a new connection works."""
    async with fuzz_proxy(kafka_broker) as server:
        url = server.url + "/kafka"
        for size in (MAX_MESSAGE_SIZE - 1, MAX_MESSAGE_SIZE, MAX_MESSAGE_SIZE + 1, 4 * MAX_MESSAGE_SIZE):
            async with open_websocket_url(url, max_message_size=8 * MAX_MESSAGE_SIZE, connect_timeout=WAIT) as ws:
                frame = _fuzz.sized_frame(size, size)
                if size > MAX_MESSAGE_SIZE:
                    reason = await close_reason(ws, frame)
                    assert reason is not None, f"a frame of {size} bytes was answered"
                    assert reason.code == 1009, reason
                else:
                    await ws.send_message(frame)
                    with trio.fail_after(WAIT):
                        reply = await ws.get_message()
                    assert isinstance(reply, bytes)
                    assert _fuzz.judge(frame, pb.PubSubResp.FromString(reply), targets) is None
                    assert len(reply) == size
            async with open_client(url, request_timeout=WAIT) as client:
                assert await client.ping(b"after") == b"after"
        assert await _reliability.settled(lambda: server.statistics().sessions_open == 0), server.statistics()
