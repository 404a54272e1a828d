"""A client that does not wait for its ``retry_after`` is held (issue 13): after a produce quota refusal that
came before the time the client was last told, the session reads nothing more from it until the new
``retry_after`` has passed. A client that waits is never held, and every command is still answered.

The watch itself is pure (times passed in); the session runs on Trio's mock clock with a fake
WebSocket and a fake producing backend, with the real route access and token buckets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed

from kafka_ws_trio._auth import Principal
from kafka_ws_trio._auth._quotas import RetryWatch
from kafka_ws_trio._auth._route import RouteAccess, SessionAccess
from kafka_ws_trio._config import RouteConfig
from kafka_ws_trio._config._access import QuotaConfig
from kafka_ws_trio._pb import pubsub_pb2 as pb
from kafka_ws_trio._ports import Produced, Transaction
from kafka_ws_trio._proto import (
    Acks,
    Amount,
    Budget,
    ErrorCode,
    OutRecord,
    Record,
    Written,
    encode_ping_request,
    encode_produce_request,
)
from kafka_ws_trio._session import Session, SessionLimits

#: Ten records a second, a bucket of ten: one record is there again 0.1 s after the last was taken.
RATE: Final = 10
ONE_RECORD: Final = 1 / RATE
TOPIC: Final = "t"


# ------------------------------------------------------------------ the watch, pure


def test_a_client_that_comes_back_when_told_is_never_held() -> None:
    watch = RetryWatch()
    watch.refused(0.1, now=10.0)
    assert watch.hold(10.0) == 0.0, "a first refusal holds nothing"
    watch.refused(0.1, now=10.1)  # exactly when it was told
    assert watch.hold(10.1) == 0.0
    watch.refused(0.5, now=11.0)
    assert watch.hold(11.0) == 0.0


def test_a_refusal_before_the_time_told_holds_until_the_new_retry_after() -> None:
    watch = RetryWatch()
    watch.refused(0.1, now=10.0)
    watch.refused(0.08, now=10.02)  # sent again 20 ms later: it did not wait
    assert watch.hold(10.02) == pytest.approx(0.08)
    assert watch.hold(10.07) == pytest.approx(0.03), "the hold counts down"
    assert watch.hold(10.1) == 0.0
    assert watch.hold(11.0) == 0.0


def test_a_hold_lasts_the_retry_after_the_client_was_told_whole_milliseconds_at_least_one() -> None:
    watch = RetryWatch()
    watch.refused(0.0004, now=10.0)
    watch.refused(1e-15, now=10.0)  # a hair, as the bucket's rounding can leave: told retry_after_ms=1
    assert watch.hold(10.0) == pytest.approx(0.001)
    watch.refused(0.0101, now=10.0005)
    assert watch.hold(10.0005) == pytest.approx(0.011)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def session_access(clock: FakeClock, **quotas: float) -> SessionAccess:
    route = RouteConfig("/kafka", "127.0.0.1:9092", quotas=QuotaConfig(**quotas))  # type: ignore[arg-type]
    return RouteAccess(route).session_access(Principal("p"), clock)


def test_the_session_access_holds_only_after_a_produce_refused_before_its_retry_time() -> None:
    clock = FakeClock()
    access = session_access(clock, produce_records_per_second=RATE, burst_seconds=1)
    assert access.quota_hold() == 0.0, "nothing refused yet"
    assert access.produce_wait(RATE, 10) == 0.0  # the whole burst
    assert access.quota_hold() == 0.0
    first = access.produce_wait(1, 1)
    assert first == pytest.approx(ONE_RECORD)
    assert access.quota_hold() == 0.0, "the client has not had the chance to wait yet"
    clock.now += 0.02
    again = access.produce_wait(1, 1)
    assert again == pytest.approx(ONE_RECORD - 0.02)
    hold = access.quota_hold()
    assert again <= hold <= again + 0.001  # the wait as told: whole milliseconds
    clock.now += hold
    assert access.quota_hold() == 0.0
    assert access.produce_wait(1, 1) == 0.0, "the record is there once the hold is over"


def test_the_bytes_quota_holds_the_same_way() -> None:
    clock = FakeClock()
    access = session_access(clock, produce_bytes_per_second=1000, burst_seconds=1)
    assert access.produce_wait(1, 1000) == 0.0
    assert access.produce_wait(1, 500) == pytest.approx(0.5)
    assert access.produce_wait(1, 500) == pytest.approx(0.5)
    assert access.quota_hold() == pytest.approx(0.5)


# ------------------------------------------------------------------ the session, on the mock clock


class FakeProducer:
    """Writes every command handed over, acknowledged at once (from a task of its own)."""

    deadline = 5.0
    produce_timeout = 3.0
    transaction_timeout = 10.0

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self.produce_budget = Budget(Amount(10_000, 10**8), "produce_route")
        self.written = 0

    async def list_offset(self, topic: str, partition: int, timestamp: int) -> int:
        raise AssertionError("not used")

    async def fetch(self, topic: str, partition: int, offset: int, max_bytes: int) -> Sequence[Record]:
        raise AssertionError("not used")

    async def produce(
        self, topic: str, records: Sequence[OutRecord], acks: Acks, done: Produced, transaction: Transaction | None
    ) -> None:
        self.written += len(records)
        self._nursery.start_soon(self._acknowledge, done, len(records))

    async def _acknowledge(self, done: Produced, count: int) -> None:
        await trio.lowlevel.checkpoint()
        done(tuple(Written(0, index, 0) for index in range(count)))

    async def begin_transaction(self) -> Transaction:
        raise AssertionError("not used")


class ClientSocket:
    """The session's side of a client's socket: ``frames`` are what the client sends (read in order, as the
    session asks for them; one paired with a time is sent that many seconds after the start), and each
    answer is kept with the (mock) time it was written. Times are seconds since the start."""

    def __init__(self, frames: Sequence[bytes | tuple[float, bytes]]) -> None:
        self._frames = [frame if isinstance(frame, tuple) else (0.0, frame) for frame in frames]
        self._start = trio.current_time()
        self.read_at: list[float] = []
        self.answers: list[tuple[float, pb.PubSubResp]] = []
        self.all_answered = trio.Event()

    def now(self) -> float:
        return trio.current_time() - self._start

    async def get_message(self) -> bytes:
        await trio.lowlevel.checkpoint()
        if len(self.read_at) == len(self._frames):
            await trio.sleep_forever()  # the client sends nothing more, and stays
        sent_at, frame = self._frames[len(self.read_at)]
        await trio.sleep_until(self._start + sent_at)
        self.read_at.append(self.now())
        return frame

    async def send_message(self, frame: bytes) -> None:
        response = pb.PubSubResp()
        response.ParseFromString(frame)
        self.answers.append((self.now(), response))
        if len(self.answers) == len(self._frames):
            self.all_answered.set()

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        raise ConnectionClosed(None)  # type: ignore[arg-type]  # never called: the test cancels the session

    def refused(self) -> list[float]:
        return [at for at, answer in self.answers if answer.error_resp.code == ErrorCode.QUOTA_EXCEEDED]

    def written(self) -> int:
        return sum(1 for _, answer in self.answers if answer.HasField("produce_resp"))


def produce(sequence: int) -> bytes:
    return encode_produce_request(sequence, TOPIC, [OutRecord(value=b"x")])


async def serve(client: ClientSocket, *, deadline: float) -> FakeProducer:
    """Run a session for ``client`` (ten records a second, one principal) until every frame is answered."""
    route = RouteConfig("/kafka", "127.0.0.1:9092", quotas=QuotaConfig(produce_records_per_second=RATE))  # type: ignore[arg-type]
    access = RouteAccess(route).session_access(Principal("writer"), trio.current_time)
    async with trio.open_nursery() as nursery:
        backend = FakeProducer(nursery)
        session = Session(
            client,  # type: ignore[arg-type]
            backend,
            SessionLimits(max_message_size=1 << 20),
            produce_limit=Amount(1000, 10**6),
            access=access,
            principal="writer",
        )
        nursery.start_soon(session.run)
        with trio.fail_after(deadline):
            await client.all_answered.wait()
        nursery.cancel_scope.cancel()
    return backend


async def test_a_client_that_sends_without_waiting_is_read_at_its_quotas_pace_and_every_command_is_answered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """500 produces in the socket at once. Unheld, all would be read and refused at the same instant; held,
    the session reads them about as fast as the quota frees records: at most two refusals per retry_after."""
    commands = 500
    client = ClientSocket([produce(sequence) for sequence in range(1, commands + 1)])
    backend = await serve(client, deadline=60)
    took = client.now()
    assert len(client.answers) == commands, "every command is answered"
    assert client.written() + len(client.refused()) == commands
    assert backend.written == client.written(), "nothing refused was written"
    # After the burst, each retry_after (0.1 s) lets one record through, with about two refusals: the one
    # the client was told to wait after, and the one it did not wait for, which holds the session. (A few
    # more where the bucket's float arithmetic leaves a hair to wait: told retry_after_ms=1, held 1 ms.)
    after_burst = client.written() - RATE
    assert after_burst == pytest.approx(took / ONE_RECORD, abs=2)
    assert after_burst > 100
    assert len(client.refused()) <= 2 * after_burst + 6


async def test_frames_behind_an_ignored_refusal_wait_for_its_retry_after_and_then_are_answered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The burst, two refusals back to back, then a ping: it is read only once the second refusal's
    retry_after has passed, and answered."""
    frames = [produce(sequence) for sequence in range(1, RATE + 3)] + [encode_ping_request(99)]
    client = ClientSocket(frames)
    await serve(client, deadline=10)
    first, second = client.refused()
    assert second == first, "the second refusal is read at once: the first holds nothing"
    ping_read = client.read_at[-1]
    assert ping_read - second == pytest.approx(ONE_RECORD, abs=0.001)
    assert [answer.sequence for _, answer in client.answers][-1] == 99
    assert client.answers[-1][1].HasField("pong_resp")


async def test_a_client_that_waits_for_retry_after_is_never_held(autojump_clock: trio.testing.MockClock) -> None:
    """The burst, a refused produce and a ping, then the produce again after its retry_after, the way a
    client that honours retry_after sends them: each is read when it is sent, and answered."""
    frames: list[bytes | tuple[float, bytes]] = [produce(sequence) for sequence in range(1, RATE + 2)]
    frames += [encode_ping_request(99), (ONE_RECORD, produce(100)), (ONE_RECORD, encode_ping_request(101))]
    client = ClientSocket(frames)
    await serve(client, deadline=10)
    (refused,) = client.refused()
    assert refused == 0.0
    assert client.read_at[-3:] == [0.0, ONE_RECORD, ONE_RECORD], "nothing was held"
    by_sequence = {answer.sequence: (at, answer) for at, answer in client.answers}
    assert by_sequence[99][0] == 0.0 and by_sequence[99][1].HasField("pong_resp")
    assert by_sequence[100][1].HasField("produce_resp"), "taken after retry_after"
    assert by_sequence[101][0] == ONE_RECORD
    assert client.written() == RATE + 1
