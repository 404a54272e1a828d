"""Fetches parked at a partition's log end, answered by the hub's pump, over a fake consumer.

A session fetching at the log end parks its fetch with the partition's hub
instead of holding a task; one pump polls for all of them and hands every
waiter the same answer through its ``deliver``. These tests park fake
waiters and append records to the fake log while the pump waits for them.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing
from _fakes import ANY_SIZE, Background, FakeConsumer, context, offsets_in, reader, signal
from kafka.errors import KafkaTimeoutError

from kafka_ws_trio._kafka import KafkaContext
from kafka_ws_trio._kafka._hub import PartitionHub
from kafka_ws_trio._kafka._reader import PartitionReader
from kafka_ws_trio._ports import ParkedResult
from kafka_ws_trio._proto import CommandFailed, EncodedBatch, ErrorCode

pytestmark = pytest.mark.timeout(30)

#: Records in the fake log before the test parks anything: the log end is here.
LOG_END = 5
#: A wait at the log end long enough that records appended by the test arrive within it.
LONG_WAIT = 2.0


@pytest.fixture
def background(nursery: trio.Nursery) -> Background:
    return Background(nursery)


class Waiter:
    """A session's parked fetch: what it was answered with."""

    def __init__(self) -> None:
        self.results: list[ParkedResult] = []
        self.answered = trio.Event()

    def deliver(self, result: ParkedResult) -> None:
        self.results.append(result)
        self.answered.set()


async def primed(background: Background, fake: FakeConsumer) -> tuple[KafkaContext, PartitionReader, PartitionHub]:
    """A reader that has read the fake log to its end (so it knows where the end is), and its hub."""
    ctx = context(background, fetch_max_wait=LONG_WAIT)
    partition = reader(ctx, fake)
    assert offsets_in(await partition.fetch(0, ANY_SIZE)) == list(range(LOG_END))
    assert partition.log_end == LOG_END
    assert background.started == 0
    return ctx, partition, PartitionHub(ctx, partition)


async def test_records_reach_every_parked_waiter_once_with_the_same_body(background: Background) -> None:
    fake = FakeConsumer(LOG_END)
    ctx, _, hub = await primed(background, fake)
    polling = trio.Event()
    fake.on_poll = signal(polling)
    waiters = [Waiter() for _ in range(3)]
    for waiter in waiters:
        assert callable(hub.park(LOG_END, ANY_SIZE, waiter.deliver))
    gone = Waiter()
    withdraw = hub.park(LOG_END, ANY_SIZE, gone.deliver)
    assert withdraw is not None
    withdraw()
    assert len(hub.waiting) == 3
    assert background.started == 1  # one pump for all of them

    await polling.wait()  # the pump's poll waits at the log end
    fake.append(3)
    for waiter in waiters:
        await waiter.answered.wait()
    await background.settled()  # nobody waits any more: the pump stops

    bodies = [waiter.results for waiter in waiters]
    assert all(len(results) == 1 for results in bodies), bodies
    first = bodies[0][0]
    assert isinstance(first, EncodedBatch)
    assert offsets_in(first) == [5, 6, 7]
    assert all(results[0] is first for results in bodies)  # one shared body
    assert gone.results == []
    assert ctx.counters.parked_answered == 3
    assert ctx.counters.broker_polls == 2  # the priming fetch, then one poll for every waiter
    assert hub.waiting == []


async def test_park_refuses_a_fetch_that_is_not_at_the_log_end(background: Background) -> None:
    fake = FakeConsumer(LOG_END)
    ctx = context(background, fetch_max_wait=LONG_WAIT)
    partition = reader(ctx, fake)
    hub = PartitionHub(ctx, partition)
    assert hub.park(0, ANY_SIZE, Waiter().deliver) is None  # no poll yet: the log end is unknown
    assert offsets_in(await partition.fetch(0, ANY_SIZE)) == list(range(LOG_END))
    assert hub.park(LOG_END - 1, ANY_SIZE, Waiter().deliver) is None
    assert hub.park(LOG_END + 1, ANY_SIZE, Waiter().deliver) is None
    assert background.started == 0
    assert hub.waiting == []


async def test_park_refuses_while_the_reader_is_failing(background: Background) -> None:
    fake = FakeConsumer(LOG_END)
    _, partition, hub = await primed(background, fake)
    fake.poll_error = KafkaTimeoutError()
    with pytest.raises(CommandFailed) as failed:
        await partition.fetch(LOG_END, ANY_SIZE)
    assert failed.value.code == ErrorCode.BROKER_UNREACHABLE
    assert partition.failing
    assert hub.park(LOG_END, ANY_SIZE, Waiter().deliver) is None
    assert background.started == 0


async def test_park_refuses_on_a_closed_reader(background: Background) -> None:
    fake = FakeConsumer(LOG_END)
    _, partition, hub = await primed(background, fake)
    await partition.client.aclose()
    assert hub.park(LOG_END, ANY_SIZE, Waiter().deliver) is None


async def test_a_pump_cancelled_at_shutdown_answers_its_waiters_with_an_error() -> None:
    fake = FakeConsumer(LOG_END)
    waiters = [Waiter() for _ in range(2)]
    async with trio.open_nursery() as route:  # the route's nursery: cancelled at shutdown
        ctx, partition, hub = await primed(Background(route), fake)
        async with partition.client.lock:  # another call holds the consumer: the pump waits for it
            for waiter in waiters:
                assert hub.park(LOG_END, ANY_SIZE, waiter.deliver) is not None
            await trio.testing.wait_all_tasks_blocked()
            route.cancel_scope.cancel()
    for waiter in waiters:
        assert len(waiter.results) == 1
        failure = waiter.results[0]
        assert isinstance(failure, CommandFailed)
        assert failure.code == ErrorCode.INTERNAL_ERROR
        assert "shutting down" in failure.reason
    assert ctx.counters.parked_answered == 2
    assert fake.polls == 1  # only the priming fetch's
