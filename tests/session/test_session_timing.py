"""Session logic with fakes and Trio's mock clock: no Kafka, no sockets, no threads."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio
import trio.testing
from _fakes import FakeWebSocket

from kafka_ws_trio._pb import pubsub_pb2 as pb
from kafka_ws_trio._proto import ErrorCode, Lanes, Record, encode_fetch_request, encode_ping_request
from kafka_ws_trio._session import CLOSE_POLICY_VIOLATION, Session, SessionLimits


class SlowBackend:
    """Answers after a per-partition delay in Trio time, to reorder completions."""

    deadline = 5.0

    def __init__(self, delays: dict[int, float]) -> None:
        self.delays = delays

    async def list_offset(self, topic: str, partition: int, timestamp: int) -> int:
        await trio.sleep(self.delays.get(partition, 0))
        return 100 + partition

    async def fetch(self, topic: str, partition: int, offset: int, max_bytes: int) -> Sequence[Record]:
        await trio.sleep(self.delays.get(offset, 0))
        return [Record(offset=offset, timestamp=0, key=None, value=b"v")]


def _fetch(sequence: int, partition: int, offset: int) -> bytes:
    return encode_fetch_request(sequence, "t", partition, offset)


class HugeRecordBackend(SlowBackend):
    """Hands over a record that no response of the session's size limit can hold."""

    async def fetch(self, topic: str, partition: int, offset: int, max_bytes: int) -> Sequence[Record]:
        return [Record(offset=offset, timestamp=0, key=None, value=b"x" * (max_bytes * 2))]


async def test_every_error_response_is_counted_once(autojump_clock: trio.testing.MockClock) -> None:
    ws = FakeWebSocket()
    session = Session(ws, HugeRecordBackend({}), SessionLimits(max_message_size=4096))  # type: ignore[arg-type]
    frames = [
        _fetch(1, 0, 7),  # the record is too large: RECORD_TOO_LARGE
        encode_fetch_request(2, "t", 0, -1),  # invalid offset, answered in its partition's turn
        encode_fetch_request(3, "bad topic", 0, 0),  # invalid topic name, answered at once
        b"\xff",  # malformed
        pb.PubSubReq(sequence=5, cmd_empty=pb.CmdEmpty()).SerializeToString(),  # unknown command
        encode_ping_request(6, b"ok"),  # not an error
    ]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        for frame in frames:
            await ws.incoming_send.send(frame)
        with trio.fail_after(10):
            while len(ws.sent) < len(frames):
                await ws.sent_event.wait()
        await ws.incoming_send.aclose()
    codes = {r.sequence: r.error_resp.code for r in ws.sent if r.WhichOneof("resp") == "error_resp"}
    assert codes == {
        1: ErrorCode.RECORD_TOO_LARGE,
        2: ErrorCode.INVALID_REQUEST,
        3: ErrorCode.INVALID_REQUEST,
        0: ErrorCode.WRONG_COMMAND,
        5: ErrorCode.UNKNOWN_COMMAND,
    }
    assert session.counters.errors == 5
    assert session.counters.commands == len(frames)


async def test_same_partition_answers_keep_request_order_even_when_later_ones_finish_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Offset 1 takes 3 s, offset 2 takes 1 s, offset 3 is instant: completion order 3, 2, 1.
    ws = FakeWebSocket()
    session = Session(ws, SlowBackend({1: 3.0, 2: 1.0}), SessionLimits(max_message_size=4096))  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        for sequence, offset in ((10, 1), (11, 2), (12, 3)):
            await ws.incoming_send.send(_fetch(sequence, 0, offset))
        with trio.fail_after(10):
            while len(ws.sent) < 3:
                await ws.sent_event.wait()
        await ws.incoming_send.aclose()
    assert [r.sequence for r in ws.sent] == [10, 11, 12]


async def test_other_partitions_may_overtake(autojump_clock: trio.testing.MockClock) -> None:
    ws = FakeWebSocket()
    session = Session(ws, SlowBackend({1: 3.0}), SessionLimits(max_message_size=4096))  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        await ws.incoming_send.send(_fetch(1, 0, 1))  # slow, partition 0
        await ws.incoming_send.send(_fetch(2, 5, 7))  # fast, partition 5
        with trio.fail_after(10):
            while len(ws.sent) < 2:
                await ws.sent_event.wait()
        await ws.incoming_send.aclose()
    assert [r.sequence for r in ws.sent] == [2, 1]


async def test_a_client_that_stops_reading_is_closed_after_send_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ws = FakeWebSocket(reads_responses=False)
    limits = SessionLimits(max_message_size=4096, send_timeout=30.0)
    session = Session(ws, SlowBackend({}), limits)  # type: ignore[arg-type]
    await ws.incoming_send.send(_fetch(1, 0, 0))
    start = trio.current_time()
    with trio.fail_after(60):
        await session.run()
    assert trio.current_time() - start == pytest.approx(30.0, abs=0.5)
    assert ws.closed_with == (CLOSE_POLICY_VIOLATION, "client too slow")


def test_partition_order_table_forgets_finished_lanes() -> None:
    lanes = Lanes()
    tickets = [lanes.take([("t", 0)]) for _ in range(3)]
    for ticket in tickets:
        assert lanes.ready(ticket)
        lanes.done(ticket)
    assert len(lanes) == 0


class GatedBackend(SlowBackend):
    """Fetches wait until ``gate`` is set; ``running`` counts those under way, ``most`` the most at once."""

    def __init__(self) -> None:
        super().__init__({})
        self.gate = trio.Event()
        self.running = self.most = 0

    async def fetch(self, topic: str, partition: int, offset: int, max_bytes: int) -> Sequence[Record]:
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await self.gate.wait()
        finally:
            self.running -= 1
        return [Record(offset=offset, timestamp=0, key=None, value=b"v")]


async def test_workers_and_queue_size_bound_what_a_session_takes_in(autojump_clock: trio.testing.MockClock) -> None:
    # With every worker busy, the reader takes queue_size more commands, one more that waits for a
    # worker, and one it holds while it waits for room; then it stops reading. Once the backend
    # answers, all are answered, each partition's in order.
    ws = FakeWebSocket()
    backend = GatedBackend()
    session = Session(ws, backend, SessionLimits(max_message_size=4096, queue_size=3, workers=2))  # type: ignore[arg-type]
    frames = [_fetch(sequence, sequence % 3, sequence) for sequence in range(1, 21)]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        for frame in frames:
            await ws.incoming_send.send(frame)
        await trio.testing.wait_all_tasks_blocked()
        assert (backend.running, session.counters.commands) == (2, 2 + 1 + 3 + 1)
        assert (session.counters.in_flight, session.counters.queued) == (2, 1 + 3 + 1)
        backend.gate.set()
        with trio.fail_after(10):
            while len(ws.sent) < len(frames):
                await ws.sent_event.wait()
        await trio.testing.wait_all_tasks_blocked()
        assert (session.counters.in_flight, session.counters.queued, backend.most) == (0, 0, 2)
        await ws.incoming_send.aclose()
    assert sorted(r.sequence for r in ws.sent) == list(range(1, 21))
    for partition in range(3):
        answered = [r.sequence for r in ws.sent if r.sequence % 3 == partition]
        assert answered == sorted(answered)


@pytest.mark.parametrize("bound", ["queue_size", "workers"])
def test_a_session_needs_room_for_one_command_and_one_worker(bound: str) -> None:
    """A queue of 0 would leave the reader waiting for room that no dispatcher makes (review finding)."""
    with pytest.raises(ValueError, match=bound):
        SessionLimits(max_message_size=4096, **{bound: 0})
