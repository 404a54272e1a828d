"""The route's topic map over a fake consumer: one metadata call per burst, and cancelled refreshes.

``Metadata`` keeps every topic of the cluster and refreshes the map with one
call at a time; lookups arriving meanwhile wait for it. The fake connector
opens consumers over a fake whose ``topics()`` the tests can hold.
"""

from __future__ import annotations

import threading
from typing import cast

import pytest
import trio
import trio.testing
from _fakes import TOPIC, Background, FakeConsumer, context, signal

from kafka_ws_trio._kafka import KafkaContext, ThreadedConsumer
from kafka_ws_trio._kafka._client import Connector
from kafka_ws_trio._kafka._metadata import Metadata
from kafka_ws_trio._proto import CommandFailed, ErrorCode

pytestmark = pytest.mark.timeout(30)

PARTITIONS = frozenset({0, 1, 2})


@pytest.fixture
def background(nursery: trio.Nursery) -> Background:
    return Background(nursery)


class FakeConnector:
    """Opens consumers over one fake; ``opening`` (when set) holds every open until the test sets it."""

    def __init__(self, ctx: KafkaContext, fake: FakeConsumer) -> None:
        self._context = ctx
        self.fake = fake
        self.opened = 0
        self.opening: trio.Event | None = None

    async def open(self) -> ThreadedConsumer:
        if self.opening is not None:
            await self.opening.wait()
        await trio.lowlevel.checkpoint()
        self.opened += 1
        return ThreadedConsumer(self._context, self.fake)


def metadata_over(ctx: KafkaContext, fake: FakeConsumer) -> tuple[Metadata, FakeConnector]:
    connector = FakeConnector(ctx, fake)
    return Metadata(ctx, cast(Connector, connector)), connector


async def test_a_burst_of_lookups_costs_one_metadata_call(background: Background) -> None:
    fake = FakeConsumer()
    fake.gate = threading.Event()
    asking = trio.Event()
    fake.on_topics = signal(asking)
    metadata, connector = metadata_over(context(background), fake)
    found: dict[str, frozenset[int]] = {}

    async def lookup(topic: str) -> None:
        found[topic] = await metadata.partitions_of(topic)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(lookup, TOPIC)
        for index in range(9):
            nursery.start_soon(lookup, f"missing-{index}")
        await asking.wait()
        await trio.testing.wait_all_tasks_blocked()
        fake.gate.set()
    assert found[TOPIC] == PARTITIONS
    assert all(found[f"missing-{index}"] == frozenset() for index in range(9))
    assert fake.topic_calls == 1
    # Within their time to live, known and missing topics are answered from the map.
    assert await metadata.partitions_of(TOPIC) == PARTITIONS
    assert await metadata.partitions_of("missing-0") == frozenset()
    assert fake.topic_calls == 1
    assert connector.opened == 1


async def test_a_missing_topic_has_no_partitions(background: Background) -> None:
    fake = FakeConsumer()
    metadata, _ = metadata_over(context(background), fake)
    assert await metadata.partitions_of("no-such-topic") == frozenset()
    assert await metadata.partitions_of(TOPIC) == PARTITIONS
    assert fake.topic_calls == 1


@pytest.mark.parametrize("while_", ["opening the consumer", "waiting for a thread"])
async def test_a_cancelled_first_refresh_is_not_taken_for_an_empty_map(background: Background, while_: str) -> None:
    """Bug 3: the task doing the first refresh is cancelled; a lookup waiting on it still finds the topic."""
    fake = FakeConsumer()
    ctx = context(background, threads=1)
    metadata, connector = metadata_over(ctx, fake)
    connector.opening = trio.Event()
    owner_scope = trio.CancelScope()
    found: list[frozenset[int]] = []

    async def owner() -> None:
        with owner_scope:
            await metadata.partitions_of(TOPIC)

    async def waiting_lookup() -> None:
        found.append(await metadata.partitions_of(TOPIC))

    async with trio.open_nursery() as nursery, ctx.limiter:
        if while_ == "waiting for a thread":
            connector.opening.set()
        nursery.start_soon(owner)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(waiting_lookup)
        await trio.testing.wait_all_tasks_blocked()
        owner_scope.cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert fake.topic_calls == 0
        connector.opening.set()
    assert owner_scope.cancelled_caught, "the owner was not cancelled while it refreshed: the test proves nothing"
    assert found == [PARTITIONS]
    assert fake.topic_calls == 1


class GoneBroker(FakeConsumer):
    """A consumer whose broker has gone: every metadata call fails."""

    def topics(self) -> set[str]:
        raise OSError("broker gone")


async def test_a_failed_refresh_fails_with_the_reason_and_the_next_one_opens_a_new_consumer(
    background: Background,
) -> None:
    """Found by the stream outage test: the failed refresh closed its consumer while holding the
    consumer's lock, which closing takes too, and the RuntimeError ended the proxy."""
    fake = GoneBroker()
    metadata, connector = metadata_over(context(background), fake)
    for attempt in (1, 2):
        with pytest.raises(CommandFailed) as failed:
            await metadata.partitions_of(TOPIC)
        # Nothing listens on the route's port: the failure is diagnosed as an unreachable broker.
        assert failed.value.code == ErrorCode.BROKER_UNREACHABLE
        assert fake.closed
        assert connector.opened == attempt
