"""The per-partition stream pump (``StreamTaps``) over a fake consumer: order, credit, caught_up, idling, markers.

Streams are opened with the sans-IO registry (:class:`Streams`) at named
offsets and attached to the partition hub's taps with a fake outlet that
records what the pump pushes (decoded as a client would) and how often it is
asked whether it is ready. The reader runs the fake in worker threads, so
these tests use the real clock with a short wait at the log end, and wait
for what they expect under generous ceilings only.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

import attrs
import pytest
import trio
import trio.testing
from _fakes import GATE_TIMEOUT, PARTITION, TOPIC, Background, FakeConsumer, context, reader, value_of
from _support import WAIT, settled

from kafka_ws_trio._kafka._hub import PartitionHub
from kafka_ws_trio._proto import (
    AddCredit,
    AtOffset,
    AtOffsets,
    ErrorCode,
    Grant,
    PushBatch,
    Response,
    Seek,
    Stream,
    StreamCaughtUp,
    StreamError,
    StreamRecords,
    Streams,
    Subscribe,
    decode_response,
)

pytestmark = pytest.mark.timeout(60)

#: The fake's wait at the log end (the route's fetch_max_wait): short, so that idle polls come quickly.
POLL_WAIT: Final = 0.03
#: Large enough for every frame of these tests but the one that is meant not to fit.
MAX_MESSAGE: Final = 1 << 20
PLENTY: Final = Grant(records=100_000)


@pytest.fixture
def background(nursery: trio.Nursery) -> Background:
    return Background(nursery)


MakeRig = Callable[..., "Rig"]


@pytest.fixture
async def make_rig(background: Background) -> AsyncIterator[MakeRig]:
    """Rigs whose streams are closed and detached at the end, as a session's close_all does.

    (Cancelling the route with streams attached is tested on its own, at the end.)
    """
    rigs: list[Rig] = []

    def make(fake: FakeConsumer, **settings: Any) -> Rig:
        rigs.append(Rig(background, fake, **settings))
        return rigs[-1]

    yield make
    for rig in rigs:
        rig.close_all()


@attrs.define(eq=False)
class Outlet:
    """A session as the pump sees it: records each push (confirmed first, as the session does) and event."""

    stream: Stream
    batches: list[StreamRecords] = attrs.Factory(list)
    events: list[Response] = attrs.Factory(list)
    ready_calls: int = 0
    wake: Callable[[], None] = lambda: None
    detach: Callable[[], None] = lambda: None

    def ready(self) -> bool:
        self.ready_calls += 1
        return True

    def push(self, batch: PushBatch) -> None:
        if not self.stream.confirm(batch):
            return  # cut before a seek: the session drops it
        head, body = batch.frame()
        decoded = decode_response(head + body)
        assert isinstance(decoded, StreamRecords), decoded
        assert decoded.sequence == self.stream.id
        assert decoded.partition == PARTITION
        self.batches.append(decoded)

    def event(self, frame: bytes) -> None:
        self.events.append(decode_response(frame))

    @property
    def offsets(self) -> list[int]:
        return [record.offset for batch in self.batches for record in batch.records]

    @property
    def next_offset(self) -> int | None:
        return self.batches[-1].next_offset if self.batches else None

    @property
    def caught_up(self) -> int:
        return sum(isinstance(event, StreamCaughtUp) for event in self.events)

    @property
    def errors(self) -> list[StreamError]:
        return [event for event in self.events if isinstance(event, StreamError)]


class Rig:
    """A reader over the fake, its hub's taps, and one connection's streams on partition 0."""

    def __init__(self, background: Background, fake: FakeConsumer, *, max_message_size: int = MAX_MESSAGE) -> None:
        self.background = background
        self.fake = fake
        self.context = context(background, fetch_max_wait=POLL_WAIT)
        self.reader = reader(self.context, fake)
        self.taps = PartitionHub(self.context, self.reader).taps
        self.streams = Streams(max_message_size)
        self.outlets: list[Outlet] = []
        self._ids = 0

    def open(self, at: int, credit: Grant = PLENTY) -> Outlet:
        """A stream reading partition 0 from ``at``, attached to the pump."""
        self._ids += 1
        start = AtOffsets(((PARTITION, at),))
        stream = self.streams.open(Subscribe(self._ids, TOPIC, (PARTITION,), start, credit=credit))
        outlet = Outlet(stream)
        attached = self.taps.attach(stream, outlet)
        assert attached is not None
        outlet.wake, outlet.detach = attached
        self.outlets.append(outlet)
        return outlet

    def close_all(self) -> None:
        """The connection is gone: close every stream and detach it (what ``SessionStreams.close_all`` does)."""
        self.streams.close_all()
        for outlet in self.outlets:
            outlet.detach()

    def grant(self, outlet: Outlet, records: int) -> None:
        """Credit, as a CmdCredit gives it, and the wake the session sends the partition then."""
        self.streams.add_credit(AddCredit(0, outlet.stream.id, Grant(records=records)))
        outlet.wake()

    async def pump_waits(self) -> None:
        """Return once the pump sleeps with no read under way (only the pump runs in the background)."""
        await trio.testing.wait_all_tasks_blocked()
        assert self.background.running == 1, "a read runs beside the pump"


def assert_chained(outlet: Outlet, start: int, end: int) -> None:
    """Each batch takes up at the ``next_offset`` of the one before (its first record may come later)."""
    at = start
    for batch in outlet.batches:
        offsets = [record.offset for record in batch.records]
        assert offsets, "a batch without records"
        assert offsets[0] >= at, (offsets, at)
        assert offsets == sorted(offsets) and offsets[-1] < batch.next_offset
        at = batch.next_offset
    assert at == end


def assert_values(outlet: Outlet) -> None:
    for batch in outlet.batches:
        for record in batch.records:
            assert record.value == value_of(record.offset)
            assert record.key == b"k%06d" % record.offset


# ----------------------------------------------------------------- tests


async def test_streams_get_every_record_once_in_order_across_polls_sharing_one_reader(
    make_rig: MakeRig,
) -> None:
    fake = FakeConsumer(30, per_poll=4)
    rig = make_rig(fake)
    early, late = rig.open(0), rig.open(17)
    assert await settled(lambda: early.caught_up and late.caught_up), "both streams caught up"

    assert early.offsets == list(range(30))
    assert late.offsets == list(range(17, 30))
    for outlet, start in ((early, 0), (late, 17)):
        assert_chained(outlet, start, 30)
        assert_values(outlet)
        assert outlet.batches[-1].high_watermark == 30
        assert outlet.caught_up == 1
        assert outlet.errors == []
        assert outlet.stream.position(PARTITION) == 30
    assert fake.polls >= 8  # 30 records, at most 4 a poll
    assert fake.seeks == [0]  # one pass over the log for both streams, never back


async def test_a_stream_without_credit_gets_nothing_and_costs_no_poll_until_credit_comes(
    make_rig: MakeRig,
) -> None:
    fake = FakeConsumer(10)
    rig = make_rig(fake)
    paused = rig.open(0, credit=Grant())
    await rig.pump_waits()
    assert fake.polls == 0
    assert paused.batches == [] and paused.events == []

    rig.grant(paused, 3)
    assert await settled(lambda: paused.next_offset == 3), "the first grant spent"
    await rig.pump_waits()
    assert paused.offsets == [0, 1, 2]
    polls = fake.polls

    rig.grant(paused, 4)
    assert await settled(lambda: paused.next_offset == 7), "the second grant spent"
    await rig.pump_waits()
    assert paused.offsets == list(range(7))  # resumed where it was
    assert_chained(paused, 0, 7)
    assert fake.polls == polls  # from the window: the first poll read them all
    assert paused.stream.credit.paused
    assert paused.caught_up == 0  # never reached the log end


async def test_caught_up_is_told_once_at_the_log_end_and_again_after_falling_behind(make_rig: MakeRig) -> None:
    fake = FakeConsumer(5, per_poll=2)
    rig = make_rig(fake)
    tail = rig.open(0)
    assert await settled(lambda: tail.caught_up == 1), "caught up"
    polls = fake.polls
    assert await settled(lambda: fake.polls >= polls + 5), "more polls at the log end"
    assert tail.caught_up == 1  # not again on each empty poll
    assert tail.offsets == list(range(5))

    fake.append(5)  # more than a poll brings: the stream is behind for a while
    assert await settled(lambda: tail.caught_up == 2), "caught up again"
    assert tail.offsets == list(range(10))
    assert_chained(tail, 0, 10)
    assert any(batch.next_offset < batch.high_watermark for batch in tail.batches[-3:])
    assert isinstance(tail.events[-1], StreamCaughtUp)
    assert tail.errors == []


async def test_idle_streams_at_the_log_end_are_not_looked_at_again_until_records_come(
    make_rig: MakeRig,
) -> None:
    fake = FakeConsumer(5)
    rig = make_rig(fake)
    outlets = [rig.open(0) for _ in range(50)]
    assert await settled(lambda: all(outlet.caught_up for outlet in outlets)), "every stream caught up"
    looks = sum(outlet.ready_calls for outlet in outlets)
    polls = fake.polls
    assert await settled(lambda: fake.polls >= polls + 10), "ten more polls at the log end"
    assert sum(outlet.ready_calls for outlet in outlets) == looks  # polled again without a round
    assert all(outlet.caught_up == 1 and outlet.offsets == list(range(5)) for outlet in outlets)

    fake.append(3)
    assert await settled(lambda: all(outlet.next_offset == 8 for outlet in outlets)), "the new records delivered"
    for outlet in outlets:
        assert outlet.offsets == list(range(8))
        assert_chained(outlet, 0, 8)
        assert outlet.errors == []


async def test_credit_wakes_a_paused_stream_while_idle_streams_wait_on_a_poll(make_rig: MakeRig) -> None:
    """The paused stream is served from the window while the idle streams' poll is still held."""
    fake = FakeConsumer(5)
    rig = make_rig(fake)
    idle = [rig.open(0) for _ in range(20)]
    paused = rig.open(0, credit=Grant())
    assert await settled(lambda: all(outlet.caught_up for outlet in idle)), "the idle streams caught up"

    polling, release = trio.Event(), threading.Event()

    def hold() -> None:  # in the poll's worker thread: held until the test lets it go
        trio.from_thread.run_sync(polling.set)
        release.wait(GATE_TIMEOUT)

    fake.on_poll = hold
    try:
        await polling.wait()
        rig.grant(paused, 100)
        assert await settled(lambda: paused.next_offset == 5), "the paused stream served"
        assert not release.is_set()
        assert paused.offsets == list(range(5))
    finally:
        release.set()
    assert await settled(lambda: paused.caught_up == 1), "the woken stream caught up"
    assert all(outlet.caught_up == 1 and outlet.offsets == list(range(5)) for outlet in idle)


async def test_a_stream_at_a_transaction_marker_at_the_log_end_catches_up_past_it(make_rig: MakeRig) -> None:
    fake = FakeConsumer(5)
    fake.append_marker()  # offset 5: the log end is 6
    rig = make_rig(fake)
    at_marker, reader_of_all = rig.open(5), rig.open(0)
    assert await settled(lambda: at_marker.caught_up and reader_of_all.caught_up), "both caught up"

    assert at_marker.batches == [] and at_marker.errors == []
    assert at_marker.stream.position(PARTITION) == 6
    assert reader_of_all.offsets == list(range(5)) and reader_of_all.errors == []
    assert reader_of_all.stream.position(PARTITION) == 6
    assert_chained(reader_of_all, 0, 5)  # its batch ended before the marker; the position moved past it

    fake.append(2)
    past = (at_marker, reader_of_all)
    assert await settled(lambda: all(outlet.next_offset == 8 for outlet in past)), "records after the marker"
    assert at_marker.offsets == [6, 7]
    assert reader_of_all.offsets == [0, 1, 2, 3, 4, 6, 7]


async def test_a_transaction_marker_between_records_is_passed_with_next_offset_chaining(
    make_rig: MakeRig,
) -> None:
    fake = FakeConsumer(3)
    fake.append_marker()  # offset 3
    fake.append(3)  # offsets 4, 5, 6
    rig = make_rig(fake)
    outlet = rig.open(0)
    assert await settled(lambda: outlet.caught_up == 1), "caught up"
    assert outlet.offsets == [0, 1, 2, 4, 5, 6]
    assert_chained(outlet, 0, 7)
    assert_values(outlet)
    assert outlet.errors == []


async def test_a_detached_tap_gets_nothing_more_and_the_pump_ends_with_the_last_tap(
    make_rig: MakeRig,
) -> None:
    fake = FakeConsumer(5)
    rig = make_rig(fake)
    gone, staying = rig.open(0), rig.open(0)
    assert await settled(lambda: gone.caught_up and staying.caught_up), "both caught up"
    gone.detach()
    assert len(rig.taps) == 1

    fake.append(3)
    assert await settled(lambda: staying.next_offset == 8), "the staying stream got the new records"
    assert staying.offsets == list(range(8))
    assert gone.offsets == list(range(5))
    events = len(gone.events)

    staying.detach()
    assert len(rig.taps) == 0
    with trio.fail_after(WAIT):
        await rig.background.settled()  # the pump and its reads are over
    fake.append(2)
    await trio.testing.wait_all_tasks_blocked()
    assert rig.background.running == 0
    assert gone.offsets == list(range(5)) and len(gone.events) == events
    assert staying.offsets == list(range(8))


async def test_a_stream_past_the_log_end_is_moved_into_it_beside_a_stream_tailing_the_partition(
    make_rig: MakeRig,
) -> None:
    fake = FakeConsumer(3)
    rig = make_rig(fake)
    tail = rig.open(0)
    assert await settled(lambda: tail.caught_up == 1), "the tailing stream caught up"
    far = rig.open(1_000)  # reads start at the lowest position, the tail's: the pump must still look at it
    assert await settled(lambda: bool(far.errors)), "an error event for the stream past the log end"
    assert [(e.code, e.message) for e in far.errors] == [
        (
            ErrorCode.OFFSET_OUT_OF_RANGE,
            "OFFSET_OUT_OF_RANGE: offset 1000 is outside the log, which holds offsets 0 to 2; going on from 3",
        )
    ]
    assert far.stream.position(PARTITION) == 3

    fake.append(2)
    assert await settled(lambda: tail.offsets[-1:] == [4] and far.offsets[-1:] == [4]), "records 3 and 4 on both"
    assert tail.offsets == list(range(5))
    assert far.offsets == [3, 4]
    assert len(far.errors) == 1  # moved once, not again on every round


async def test_a_record_too_large_for_the_frame_stops_the_stream_once_until_a_seek(make_rig: MakeRig) -> None:
    fake = FakeConsumer(3)
    fake.append_record(b"x" * 2_000)  # offset 3: larger than the stream's frame
    fake.append(2)  # offsets 4 and 5
    rig = make_rig(fake, max_message_size=1_000)
    outlet = rig.open(0)
    assert await settled(lambda: bool(outlet.errors)), "the error event"
    await rig.pump_waits()
    assert outlet.offsets == [0, 1, 2]
    [error] = outlet.errors
    assert error.code == ErrorCode.RECORD_TOO_LARGE
    assert error.partition == PARTITION
    assert "offset 3" in error.message
    assert outlet.stream.position(PARTITION) == 3

    polls = fake.polls
    outlet.wake()  # a wake (credit, a drained session) is no seek: it still waits, and is not told again
    await rig.pump_waits()
    await trio.sleep(10 * POLL_WAIT)
    await rig.pump_waits()
    assert fake.polls == polls
    assert len(outlet.errors) == 1

    rig.streams.seek(Seek(0, outlet.stream.id, PARTITION, AtOffset(4)))
    outlet.wake()
    assert await settled(lambda: outlet.caught_up == 1), "caught up after the seek"
    assert outlet.offsets == [0, 1, 2, 4, 5]
    assert outlet.next_offset == 6
    assert len(outlet.errors) == 1


#: Seconds after which the test below detaches the stream itself, should the route's end hang.
RESCUE: Final = 5.0


async def test_cancelling_the_route_with_a_stream_attached_ends_the_pump() -> None:
    """Found by this test: the cancelled read's end started the pump again in the cancelled nursery,
    whose read was cancelled in turn, and so on (5,000 tasks in 5 s, and the route never ended)."""
    fake = FakeConsumer(5)
    rescued = False
    async with trio.open_nursery() as outside:
        async with trio.open_nursery() as route:
            rig = Rig(Background(route), fake)
            outlet = rig.open(0)
            assert await settled(lambda: outlet.caught_up == 1), "caught up"

            async def rescue() -> None:  # what the session's close_all would do, much later
                nonlocal rescued
                await trio.sleep(RESCUE)
                rescued = True
                outlet.detach()

            outside.start_soon(rescue)
            route.cancel_scope.cancel()  # the route shuts down while the stream idles at the log end
        outside.cancel_scope.cancel()
    assert not rescued, f"still running after {RESCUE} s: {rig.background.started} pump and read tasks started"


class Refusing(Background):
    """A route that, once ``refuse`` is set, starts no task (as a route does once it is shutting down)."""

    refuse = False

    def spawn(self, task: Callable[[], Awaitable[None]]) -> bool:
        return False if self.refuse else super().spawn(task)


@pytest.mark.timeout(15)
async def test_a_pump_that_cannot_start_a_read_ends_instead_of_going_round_without_waiting(
    nursery: trio.Nursery,
) -> None:
    """Found in a fresh-clone run: a stream wanting records the window lacks, when no read can start
    (the route shutting down), sent the pump round its loop at once, for ever, never waiting: the whole
    Trio run hung (the route-cancel test above timed out after 60 s). It must end, and start again
    on the next wake once reads can start."""
    background = Refusing(nursery)
    rig = Rig(background, FakeConsumer(5))
    outlet = rig.open(0, credit=Grant())  # paused: the pump waits, and no read runs
    await rig.pump_waits()
    background.refuse = True
    rig.grant(outlet, 100)  # now it wants offset 0, which no window holds
    with trio.fail_after(5):
        await trio.testing.wait_all_tasks_blocked()
    assert background.running == 0, "the pump ended"
    background.refuse = False
    outlet.wake()
    assert await settled(lambda: outlet.caught_up == 1), "fed again once reads can start"
    assert outlet.offsets == [0, 1, 2, 3, 4]
    rig.close_all()
