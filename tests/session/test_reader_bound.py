"""The route's bound on partition readers (``max_partition_readers``), over fake consumers.

Every reader holds a consumer with its own I/O thread, so a route opens at
most ``max_partition_readers`` of them. Readers open, being closed and being
opened each hold a slot; a new partition takes the least recently used idle
reader's slot, waits while another reader is closing, and is refused with
OVERLOADED only when every reader is busy. The fake connector counts the
consumers open at any moment, and their ``close`` can be held by the test
(a slow close), so that openers can be lined up behind it without sleeping.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from typing import Final

import pytest
import trio
import trio.testing
from _fakes import GATE_TIMEOUT, FakeConsumer, route

from kafka_ws_trio._kafka import KafkaContext, KafkaUpstream, ThreadedConsumer
from kafka_ws_trio._kafka._hub import PartitionHub
from kafka_ws_trio._proto import CommandFailed, ErrorCode, Isolation

pytestmark = pytest.mark.timeout(30)

TOPIC: Final = "bound-topic"
PARTITIONS: Final = frozenset(range(8))
#: Longer than any test: the route's idle closer never runs on its own (tests call it).
NEVER_IDLE: Final = 3600.0
#: Worker threads for Kafka calls: enough for every close and call a test holds at once.
THREADS: Final = 8
#: Seconds a test waits for a close it expects to start before failing (it takes milliseconds).
STEP_TIMEOUT: Final = 5.0
#: A failure the fake connector raises when told to (a broker gone).
UNREACHABLE: Final = CommandFailed(ErrorCode.BROKER_UNREACHABLE, "fake broker gone")


class Broker:
    """The route's fake cluster: its topics, a connector over fake consumers, and a count of them.

    ``closing`` (a threading Event) holds every consumer's close at its start
    while it is unset: a slow close. Opens, closes started and consumers open
    are counted in Trio, so a test can wait for the n-th close to start.
    """

    def __init__(self) -> None:
        self.context: KafkaContext | None = None
        self.topics: dict[str, frozenset[int]] = {TOPIC: PARTITIONS}
        #: Lookups of topics not in ``topics`` wait for this (a metadata refresh) while it is unset.
        self.refreshed = trio.Event()
        self.refreshed.set()
        self.closing = threading.Event()
        self.closing.set()
        self.consumers: list[FakeConsumer] = []
        self.open_now = 0
        #: The most consumers open at any one moment.
        self.most_open = 0
        self.closes_started = 0
        self._close_started = trio.Event()
        #: Raised by the next open (then cleared).
        self.open_error: CommandFailed | None = None
        #: While set to an unset Event, opens wait for it (a reader being opened).
        self.opening: trio.Event | None = None
        self.open_started = trio.Event()

    async def partitions_of(self, topic: str) -> frozenset[int]:
        if topic not in self.topics:
            await self.refreshed.wait()
        await trio.lowlevel.checkpoint()
        return self.topics.get(topic, frozenset())

    async def open(self, isolation: Isolation = Isolation.READ_UNCOMMITTED) -> ThreadedConsumer:
        assert self.context is not None
        self.open_started.set()
        if self.opening is not None:
            await self.opening.wait()
        await trio.lowlevel.checkpoint()
        if self.open_error is not None:
            error, self.open_error = self.open_error, None
            raise error
        consumer = CountedConsumer(self)
        self.consumers.append(consumer)
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        return ThreadedConsumer(self.context, consumer)

    def _started_closing(self) -> None:
        self.closes_started += 1
        self._close_started.set()
        self._close_started = trio.Event()

    def _closed(self) -> None:
        self.open_now -= 1

    async def closes_have_started(self, count: int) -> None:
        """Return once ``count`` closes have started (held ones included), and Trio has nothing else to do."""
        with trio.fail_after(STEP_TIMEOUT):
            while self.closes_started < count:
                await self._close_started.wait()
        await trio.testing.wait_all_tasks_blocked()


class CountedConsumer(FakeConsumer):
    """A fake consumer whose close tells its broker when it starts and ends, and waits for ``broker.closing``."""

    def __init__(self, broker: Broker) -> None:
        super().__init__()
        self._broker = broker
        self._token = trio.lowlevel.current_trio_token()

    def close(self) -> None:
        broker = self._broker
        trio.from_thread.run_sync(broker._started_closing, trio_token=self._token)
        if not broker.closing.wait(GATE_TIMEOUT):
            raise AssertionError("the test never let the close finish")
        super().close()
        trio.from_thread.run_sync(broker._closed, trio_token=self._token)


@pytest.fixture
async def broker(nursery: trio.Nursery) -> AsyncIterator[Broker]:
    fake = Broker()
    yield fake
    # Torn down before the nursery, whose cancellation closes every consumer: let those closes finish.
    fake.closing.set()
    fake.refreshed.set()
    if fake.opening is not None:
        fake.opening.set()


async def upstream(
    nursery: trio.Nursery, broker: Broker, monkeypatch: pytest.MonkeyPatch, readers: int
) -> KafkaUpstream:
    """A running route with room for ``readers`` partition readers, over ``broker``."""
    kafka = KafkaUpstream(route(max_partition_readers=readers, idle_timeout=NEVER_IDLE), trio.CapacityLimiter(THREADS))
    broker.context = kafka.context
    monkeypatch.setattr(kafka._metadata, "partitions_of", broker.partitions_of)
    monkeypatch.setattr(kafka._connector, "open", broker.open)
    await nursery.start(kafka.run)
    return kafka


def open_partitions(kafka: KafkaUpstream) -> set[int]:
    return {partition for topic, partition, _ in kafka._hubs if topic == TOPIC}


async def open_each(kafka: KafkaUpstream, partitions: range) -> list[PartitionHub]:
    return [await kafka._hub(TOPIC, partition) for partition in partitions]


async def test_readers_within_the_bound_open_without_closing_anything(
    nursery: trio.Nursery, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    kafka = await upstream(nursery, broker, monkeypatch, readers=3)
    hubs = await open_each(kafka, range(3))
    assert len({id(hub) for hub in hubs}) == 3
    # A partition already open is shared, not opened again.
    assert await kafka._hub(TOPIC, 1) is hubs[1]
    assert len(broker.consumers) == 3
    assert broker.closes_started == 0
    assert kafka.statistics().readers_open == 3
    assert kafka.statistics().consumers_closed == 0
    assert kafka.statistics().readers_refused == 0


async def test_at_the_bound_the_least_recently_used_idle_reader_makes_room(
    nursery: trio.Nursery, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    kafka = await upstream(nursery, broker, monkeypatch, readers=3)
    hubs = await open_each(kafka, range(3))
    with hubs[0].reader.in_use():  # partition 0 is used after 1 and 2 were opened: 1 is now the oldest
        pass
    assert hubs[0].reader.last_used > hubs[2].reader.last_used > hubs[1].reader.last_used
    await kafka._hub(TOPIC, 3)
    assert open_partitions(kafka) == {0, 2, 3}
    assert hubs[1].reader.closed
    assert [consumer.closed for consumer in broker.consumers] == [False, True, False, False]
    assert broker.closes_started == 1
    assert broker.most_open == 3
    assert kafka.statistics().readers_open == 3
    assert kafka.statistics().readers_refused == 0


@pytest.mark.parametrize("newcomers", [1, 2, 3])
async def test_concurrent_openers_behind_a_slow_close_each_take_one_idle_readers_slot(
    nursery: trio.Nursery, broker: Broker, monkeypatch: pytest.MonkeyPatch, newcomers: int
) -> None:
    readers = 3
    kafka = await upstream(nursery, broker, monkeypatch, readers=readers)
    await open_each(kafka, range(readers))
    broker.closing.clear()
    outcomes: dict[int, str] = {}

    async def open_partition(partition: int) -> None:
        try:
            await kafka._hub(TOPIC, partition)
        except CommandFailed as failure:
            outcomes[partition] = f"refused: {failure!r}"
        else:
            outcomes[partition] = "open"

    async with trio.open_nursery() as openers:
        for partition in range(readers, readers + newcomers):
            openers.start_soon(open_partition, partition)
        try:
            await broker.closes_have_started(newcomers)
            # Every opener is behind a close it started; none has closed a second reader.
            assert broker.closes_started == newcomers
            assert kafka.statistics().readers_open <= readers
        finally:
            broker.closing.set()
    assert outcomes == dict.fromkeys(range(readers, readers + newcomers), "open")
    assert broker.closes_started == newcomers
    assert kafka.statistics().consumers_closed == newcomers
    assert kafka.statistics().readers_refused == 0
    assert broker.most_open <= readers
    assert len(open_partitions(kafka)) == readers
    assert set(range(readers, readers + newcomers)) <= open_partitions(kafka)


async def test_every_reader_busy_refuses_with_overloaded_naming_the_bound(
    nursery: trio.Nursery, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    kafka = await upstream(nursery, broker, monkeypatch, readers=2)
    first, second = await open_each(kafka, range(2))
    with first.reader.in_use(), second.reader.in_use():
        with pytest.raises(CommandFailed) as refused:
            await kafka.fetch(TOPIC, 2, 0, 1 << 20)
        assert refused.value.code == ErrorCode.OVERLOADED
        assert "max_partition_readers" in refused.value.reason
        assert kafka.statistics().readers_refused == 1
        assert kafka.counters.readers_refused == 1
    assert broker.closes_started == 0
    assert len(broker.consumers) == 2
    assert open_partitions(kafka) == {0, 1}
    # Once readers are idle again, a slot can be taken: partition 1's, released before partition 0's.
    await kafka._hub(TOPIC, 2)
    assert open_partitions(kafka) == {0, 2}
    assert kafka.statistics().readers_refused == 1


async def test_a_reader_being_opened_holds_its_slot(
    nursery: trio.Nursery, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    kafka = await upstream(nursery, broker, monkeypatch, readers=1)
    broker.opening = trio.Event()
    async with trio.open_nursery() as openers:
        openers.start_soon(kafka._hub, TOPIC, 0)
        with trio.fail_after(STEP_TIMEOUT):
            await broker.open_started.wait()
        try:
            with trio.fail_after(STEP_TIMEOUT), pytest.raises(CommandFailed) as refused:
                await kafka._hub(TOPIC, 1)  # refused at once, not held behind the open
        finally:
            broker.opening.set()
        assert refused.value.code == ErrorCode.OVERLOADED
    assert open_partitions(kafka) == {0}
    assert broker.most_open == 1


async def test_an_opener_waits_for_a_reader_being_closed_instead_of_being_refused(
    nursery: trio.Nursery, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    kafka = await upstream(nursery, broker, monkeypatch, readers=2)
    old, busy = await open_each(kafka, range(2))
    outcome: list[str] = []

    async def open_partition() -> None:
        try:
            await kafka._hub(TOPIC, 2)
        except CommandFailed as failure:
            outcome.append(f"refused: {failure!r}")
        else:
            outcome.append("open")

    with busy.reader.in_use():
        broker.closing.clear()
        old.reader.last_used -= NEVER_IDLE  # idle long enough for the idle closer
        nursery.start_soon(kafka._close_idle)
        await broker.closes_have_started(1)
        assert open_partitions(kafka) == {1}
        async with trio.open_nursery() as openers:
            openers.start_soon(open_partition)
            try:
                await trio.testing.wait_all_tasks_blocked()
                assert outcome == []  # waiting for the close, not refused
                assert len(broker.consumers) == 2
            finally:
                broker.closing.set()
    assert outcome == ["open"]
    assert open_partitions(kafka) == {1, 2}
    assert broker.closes_started == 1
    assert broker.most_open == 2
    assert kafka.statistics().readers_refused == 0


async def test_lookups_of_missing_topics_hold_no_slot(
    nursery: trio.Nursery, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    kafka = await upstream(nursery, broker, monkeypatch, readers=2)
    broker.refreshed = trio.Event()  # the lookups of missing names wait for a metadata refresh
    missing: list[ErrorCode] = []

    async def look_up(topic: str) -> None:
        try:
            await kafka.fetch(topic, 0, 0, 1 << 20)
        except CommandFailed as failure:
            missing.append(failure.code)

    async with trio.open_nursery() as lookups:
        for index in range(3):
            lookups.start_soon(look_up, f"missing-{index}")
        await trio.testing.wait_all_tasks_blocked()
        hub = await kafka._hub(TOPIC, 0)
        assert not hub.reader.closed
        assert kafka.statistics().readers_open == 1
        broker.refreshed.set()
    assert missing == [ErrorCode.TOPIC_NOT_FOUND] * 3
    assert kafka.statistics().readers_refused == 0
    # Both slots are usable: a second partition opens without closing the first.
    await kafka._hub(TOPIC, 1)
    assert open_partitions(kafka) == {0, 1}
    assert broker.closes_started == 0


async def test_a_failed_open_gives_its_slot_back(
    nursery: trio.Nursery, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    kafka = await upstream(nursery, broker, monkeypatch, readers=1)
    broker.open_error = UNREACHABLE
    with pytest.raises(CommandFailed) as failed:
        await kafka._hub(TOPIC, 0)
    assert failed.value is UNREACHABLE
    assert kafka.statistics().readers_open == 0
    await kafka._hub(TOPIC, 1)
    assert open_partitions(kafka) == {1}
    assert kafka.statistics().readers_refused == 0
    assert broker.closes_started == 0
