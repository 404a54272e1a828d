"""The partition reader over a fake consumer: polls, window hits, shared polls, read-ahead.

The reader runs the fake in real worker threads (``trio.to_thread``), as it
runs kafka-python, so these tests use the real clock. A poll is held at its
start with the fake's gate when a test must line sessions up behind it.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
import trio
import trio.testing
from _fakes import (
    ANY_SIZE,
    TOPIC,
    Background,
    FakeConsumer,
    context,
    offsets_in,
    reader,
    signal,
    value_of,
)
from kafka.errors import KafkaTimeoutError

from kafka_ws_trio._kafka import MAX_POLL_RECORDS
from kafka_ws_trio._proto import EMPTY_BATCH, CommandFailed, EncodedBatch, ErrorCode, encode_message_entry

pytestmark = pytest.mark.timeout(30)

#: The size of one fake record in a response (all but offset 0, whose offset protobuf leaves out, are this size).
ENTRY_SIZE = len(encode_message_entry(1, 1_700_000_000_001, b"k000001", value_of(1)))


@pytest.fixture
def background(nursery: trio.Nursery) -> Background:
    return Background(nursery)


async def test_a_fetch_from_history_reads_through_polls(background: Background) -> None:
    fake = FakeConsumer(2_500, per_poll=1_000)
    ctx = context(background, fetch_max_wait=0.05)
    partition = reader(ctx, fake)
    seen: list[int] = []
    offset = 0
    while offset < 2_500:
        batch = await partition.fetch(offset, 100 * ENTRY_SIZE)
        got = offsets_in(batch)
        assert got, f"an empty answer at {offset}, before the log end"
        seen += got
        offset = batch.next_offset
    assert seen == list(range(2_500))
    assert await partition.fetch(2_500, ANY_SIZE) is EMPTY_BATCH  # the log end, after the wait
    assert fake.seeks == [0]  # read forward from where the consumer was, never back
    assert ctx.counters.broker_polls >= 3
    assert fake.assigned == []  # assigning is the upstream's job, not the reader's
    assert partition.tp.topic == TOPIC


async def test_a_second_fetch_of_the_same_offset_is_a_window_hit(background: Background) -> None:
    fake = FakeConsumer(10)
    ctx = context(background)
    partition = reader(ctx, fake)
    first = await partition.fetch(0, ANY_SIZE)
    assert offsets_in(first) == list(range(10))
    polls, hits = ctx.counters.broker_polls, ctx.counters.cache_hits
    assert polls == fake.polls == 1

    second = await partition.fetch(0, ANY_SIZE)
    assert second is first  # the same shared body, not joined again
    later = await partition.fetch(6, ANY_SIZE)
    assert offsets_in(later) == [6, 7, 8, 9]
    assert ctx.counters.cache_hits == hits + 2
    assert ctx.counters.broker_polls == polls
    assert fake.polls == 1


async def test_sessions_asking_the_same_offset_at_once_share_one_poll(background: Background) -> None:
    fake = FakeConsumer(10)
    fake.gate = threading.Event()
    polling = trio.Event()
    fake.on_poll = signal(polling)
    ctx = context(background)
    partition = reader(ctx, fake)
    answers: list[EncodedBatch] = []

    async def session() -> None:
        answers.append(await partition.fetch(0, ANY_SIZE))

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(session)
        await polling.wait()
        await trio.testing.wait_all_tasks_blocked()
        fake.gate.set()
    assert len(answers) == 5
    assert all(offsets_in(answer) == list(range(10)) for answer in answers)
    assert fake.polls == ctx.counters.broker_polls == 1


async def test_lookups_waiting_behind_a_poll_share_one_answer_and_a_later_one_asks_again(
    background: Background,
) -> None:
    """Twenty subscribes at LATEST queued behind a poll cost one end-offset lookup, not twenty;
    a lookup that starts after that one was sent does not take its (older) answer."""
    fake = FakeConsumer(10)
    fake.gate = threading.Event()
    polling = trio.Event()
    fake.on_poll = signal(polling)
    ends = fake.end_offsets
    lookups: list[int] = []

    def counted_end_offsets(partitions: list[Any], timeout_ms: int | None = None) -> dict[Any, int]:
        lookups.append(len(fake.log))
        return ends(partitions, timeout_ms)

    fake.end_offsets = counted_end_offsets  # type: ignore[method-assign]
    partition = reader(context(background), fake)
    answers: list[int] = []

    async def subscribe() -> None:
        answers.append(await partition.list_offset(-1))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(partition.fetch, 0, ANY_SIZE)  # a poll holds the consumer
        await polling.wait()
        for _ in range(20):
            nursery.start_soon(subscribe)
        await trio.testing.wait_all_tasks_blocked()
        fake.gate.set()
    assert answers == [10] * 20
    assert lookups == [10]

    fake.append(5)
    assert await partition.list_offset(-1) == 15  # a new lookup: answers are not kept
    assert lookups == [10, 15]


async def test_a_failed_poll_fails_every_session_sharing_it(background: Background) -> None:
    fake = FakeConsumer(10)
    fake.gate = threading.Event()
    polling = trio.Event()
    fake.on_poll = signal(polling)
    fake.poll_error = KafkaTimeoutError()
    ctx = context(background)
    partition = reader(ctx, fake)
    failures: list[CommandFailed] = []

    async def session() -> None:
        with pytest.raises(CommandFailed) as failed:
            await partition.fetch(0, ANY_SIZE)
        failures.append(failed.value)

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(session)
        await polling.wait()
        await trio.testing.wait_all_tasks_blocked()
        fake.gate.set()
    # Nothing listens on the route's port: the timeout is diagnosed as an unreachable broker.
    assert [failure.code for failure in failures] == [ErrorCode.BROKER_UNREACHABLE] * 3
    assert fake.polls == 1
    assert partition.failing


async def test_read_ahead_polls_the_next_records_after_an_answer_reaches_the_window_end(
    background: Background,
) -> None:
    fake = FakeConsumer(30, per_poll=10)
    ctx = context(background)
    partition = reader(ctx, fake)

    assert offsets_in(await partition.fetch(0, ANY_SIZE)) == list(range(10))
    assert background.started == 1  # the answer reached the window's end, the log holds more
    await background.settled()
    assert fake.polls == ctx.counters.broker_polls == 2
    assert partition.window.next == 20

    hits = ctx.counters.cache_hits
    assert offsets_in(await partition.fetch(10, ANY_SIZE)) == list(range(10, 20))
    assert fake.polls == 2  # answered from what was read ahead
    assert ctx.counters.cache_hits == hits + 1
    await background.settled()
    assert offsets_in(await partition.fetch(20, ANY_SIZE)) == list(range(20, 30))
    assert fake.polls == 3
    assert fake.seeks == [0]
    assert background.started == 2  # the window reaches the log end: nothing more to read ahead


@pytest.mark.parametrize(
    ("cache_records", "reads_ahead"),
    [
        # Asked at 0 and 5, window [0, 10): a poll of MAX_POLL_RECORDS more would need 10 + MAX - 0 records.
        (MAX_POLL_RECORDS + 9, False),
        (MAX_POLL_RECORDS + 10, True),
    ],
)
async def test_read_ahead_does_not_push_out_records_recent_fetches_asked_for(
    background: Background, cache_records: int, reads_ahead: bool
) -> None:
    fake = FakeConsumer(30, per_poll=10)
    ctx = context(background, cache_records=cache_records)
    partition = reader(ctx, fake)
    assert offsets_in(await partition.fetch(0, 5 * ENTRY_SIZE)) == [0, 1, 2, 3, 4]
    assert offsets_in(await partition.fetch(5, 5 * ENTRY_SIZE)) == [5, 6, 7, 8, 9]  # reaches the window end
    assert background.started == int(reads_ahead)
    await background.settled()
    assert fake.polls == 1 + int(reads_ahead)


@pytest.mark.parametrize(
    "how",
    ["client left while the poll waited for the consumer", "deadline passed while the poll waited for a thread"],
)
async def test_a_cancelled_shared_poll_is_not_taken_for_the_log_end(background: Background, how: str) -> None:
    """Bug 2: the task owning a shared poll is cancelled mid-poll; the session sharing it still gets the records.

    A poll is cancellable while it waits for the consumer (another call holds
    it) or for a worker thread (all busy); once its thread runs, Trio lets it
    finish. Either wait is held here by the test.
    """
    fake = FakeConsumer(10)
    ctx = context(background, threads=1)
    partition = reader(ctx, fake)
    busy = partition.client.lock if "consumer" in how else ctx.limiter
    owner_scope = trio.CancelScope()
    answers: list[EncodedBatch] = []

    async def owner() -> None:
        with owner_scope:
            await partition.fetch(0, ANY_SIZE)

    async def sharer() -> None:
        answers.append(await partition.fetch(0, ANY_SIZE))

    async with trio.open_nursery() as nursery, busy:
        nursery.start_soon(owner)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(sharer)
        await trio.testing.wait_all_tasks_blocked()
        if "client left" in how:
            owner_scope.cancel()
        else:
            owner_scope.deadline = trio.current_time()
        await trio.testing.wait_all_tasks_blocked()
        assert fake.polls == 0
    assert owner_scope.cancelled_caught, "the owner was not cancelled while it waited: the test proves nothing"
    assert len(answers) == 1
    assert offsets_in(answers[0]) == list(range(10))
    assert fake.polls == 1  # the sharer's own poll


async def test_only_a_read_at_the_log_end_waits_for_fresh_records_behind_it_one_poll_is_enough(
    background: Background,
) -> None:
    """Behind the log end kafka-python's read-ahead holds the records asked for: a second,
    "fresh" poll would wait for the fetch after them and stall every read of history."""
    fake = FakeConsumer(5_000, per_poll=1_000)
    ctx = context(background)
    partition = reader(ctx, fake)
    partition.wants_fresh = lambda: True  # streams or tailing sessions on the partition

    entries, end = await partition.read_span(0)  # the log end is not known yet: fresh records taken too
    assert (fake.polls, end) == (2, 2_000)
    entries, end = await partition.read_span(2_000)  # behind the log end (5,000): one poll
    assert (fake.polls, end, entries.offsets[0]) == (3, 3_000, 2_000)

    tail = FakeConsumer(10)
    tailing = reader(ctx, tail)
    tailing.wants_fresh = lambda: True
    await tailing.read_span(0)
    polls = tail.polls
    tail.append(5)
    entries, end = await tailing.read_span(10)  # at the log end as last seen: a tailing read, fresh
    assert (tail.polls, end, entries.offsets) == (polls + 2, 15, list(range(10, 15)))
