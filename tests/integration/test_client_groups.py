"""The Trio client's consumer groups (``subscribe(topic, group=...)``, ``Stream.commit``,
``Stream.assignment``, ``on_partitions``) against a real proxy and a real broker, and the
README's "Consumer groups" example run exactly as printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import pytest
import trio
from _support import running_proxy, settled

from kafka_ws_trio._config import ProxyConfig, ServerConfig
from kafka_ws_trio._proto import ErrorCode
from kafka_ws_trio.client import (
    EARLIEST,
    Batch,
    PartitionsChanged,
    PubSubClient,
    PubSubError,
    Stream,
    StreamEvent,
    open_client,
)
from kafka_ws_trio.testing import KafkaBroker, create_topic, delete_topic, produce, unique_topic_name

pytestmark = pytest.mark.timeout(150)

ROUTE: Final = "/kafka"
#: What one test may take, end to end, on a busy machine (each join and rebalance can take seconds).
TEST_LIMIT: Final = 120.0
#: How long a rebalance may take to reach every member on a busy machine.
REBALANCE: Final = 30.0


@pytest.fixture
def topics(kafka_broker: KafkaBroker) -> Iterator[Callable[..., str]]:
    made: list[str] = []

    def make(partitions: int, per_partition: int = 0) -> str:
        topic = create_topic(kafka_broker, partitions=partitions)
        made.append(topic)
        for p in range(partitions):
            if per_partition:
                produce(kafka_broker, topic, [f"p{p}-{n}".encode() for n in range(per_partition)], partition=p)
        return topic

    yield make
    for name in made:
        delete_topic(kafka_broker, name)


@asynccontextmanager
async def proxy_url(broker: KafkaBroker) -> AsyncIterator[str]:
    config = ProxyConfig.single_route(broker.bootstrap, ROUTE, server=ServerConfig(port=0))
    async with running_proxy(config) as server:
        yield server.url + ROUTE


class Member:
    """A group stream whose events a task of its own takes as they come, checking at each
    ``on_partitions`` call that the stream's assignment and positions already follow it."""

    def __init__(self) -> None:
        self.stream: Stream | None = None
        #: Every event taken, in order, with the stream's assignment right after it was taken.
        self.taken: list[tuple[StreamEvent, frozenset[int]]] = []
        #: The ``on_partitions`` calls, in order, and the stream's state at each.
        self.calls: list[tuple[tuple[int, ...], tuple[int, ...], dict[int, int]]] = []
        self.seen_at_calls: list[tuple[frozenset[int], set[int]]] = []
        self.first: frozenset[int] = frozenset()

    def on_partitions(self, assigned: tuple[int, ...], revoked: tuple[int, ...], positions: dict[int, int]) -> None:
        assert self.stream is not None
        self.calls.append((assigned, revoked, positions))
        self.seen_at_calls.append((self.stream.assignment, set(self.stream.positions)))

    @property
    def assignment(self) -> frozenset[int]:
        assert self.stream is not None
        return self.stream.assignment

    def changes(self) -> list[PartitionsChanged]:
        return [event for event, _ in self.taken if isinstance(event, PartitionsChanged)]

    def records(self) -> dict[int, list[int]]:
        found: dict[int, list[int]] = {}
        for event, _ in self.taken:
            if isinstance(event, Batch):
                found.setdefault(event.partition, []).extend(record.offset for record in event.records)
        return found

    async def take(self, stream: Stream) -> None:
        async for event in stream.events():
            self.taken.append((event, stream.assignment))


@asynccontextmanager
async def member(client: PubSubClient, topic: str, group: str, **options: Any) -> AsyncIterator[Member]:
    """A member of ``group`` whose events are taken for the block."""
    joined = Member()
    async with client.subscribe(topic, group=group, on_partitions=joined.on_partitions, **options) as stream:
        joined.stream = stream
        joined.first = stream.assignment
        async with trio.open_nursery() as nursery:
            nursery.start_soon(joined.take, stream)
            yield joined
            nursery.cancel_scope.cancel()


def distinct(records: dict[int, list[int]]) -> dict[int, list[int]]:
    return {partition: sorted(set(offsets)) for partition, offsets in records.items()}


def check_follows_events(joined: Member) -> None:
    """The assignment after each event taken is the first one with every change so far applied, and
    each ``on_partitions`` call came with the change, once the stream's state already followed it."""
    owned = set(joined.first)
    for event, assignment in joined.taken:
        if isinstance(event, PartitionsChanged):
            owned = (owned - set(event.revoked)) | set(event.assigned)
        assert assignment == owned, (event, assignment, owned)
    changes = joined.changes()
    assert joined.calls == [(c.assigned, c.revoked, dict(c.positions)) for c in changes]
    owned = set(joined.first)
    for change, (assignment, positioned) in zip(changes, joined.seen_at_calls, strict=True):
        owned = (owned - set(change.revoked)) | set(change.assigned)
        assert assignment == owned and positioned == owned, (change, assignment, positioned)


async def test_two_clients_in_a_group_split_four_partitions_and_the_survivor_takes_all(
    kafka_broker: KafkaBroker, topics: Callable[..., str]
) -> None:
    topic = topics(4, 5)
    group = unique_topic_name("group")
    with trio.fail_after(TEST_LIMIT):
        async with proxy_url(kafka_broker) as url, open_client(url) as one, open_client(url) as two:
            async with member(one, topic, group, start=EARLIEST) as first:
                assert first.first == {0, 1, 2, 3}, "alone in the group, it gets every partition"
                async with member(two, topic, group, start=EARLIEST) as second:
                    split = await settled(
                        lambda: (
                            bool(first.assignment)
                            and bool(second.assignment)
                            and not first.assignment & second.assignment
                            and first.assignment | second.assignment == {0, 1, 2, 3}
                        ),
                        REBALANCE,
                    )
                    assert split, (first.assignment, second.assignment)
                # The second member left with its block: the survivor gets all four back.
                assert await settled(lambda: first.assignment == {0, 1, 2, 3}, REBALANCE), first.assignment
                # Every record comes to the survivor, which reads each partition it got back from
                # where the group places it (nothing was committed: the start, EARLIEST).
                everything = {p: list(range(5)) for p in range(4)}
                assert await settled(lambda: distinct(first.records()) == everything, REBALANCE), first.records()
            check_follows_events(first)
            check_follows_events(second)
            assert any(change.revoked for change in first.changes()), "the second member's join revoked some"


async def test_a_commit_is_where_the_next_member_of_the_group_starts(
    kafka_broker: KafkaBroker, topics: Callable[..., str]
) -> None:
    """commit(offsets) stores those; commit() stores what the proxy delivered; a later member of
    the group starts each partition there, whatever its own start says."""
    topic = topics(2, 10)
    group = unique_topic_name("group")
    with trio.fail_after(TEST_LIMIT):
        async with proxy_url(kafka_broker) as url, open_client(url) as client:
            async with client.subscribe(topic, group=group, start=EARLIEST, window=3) as stream:
                assert stream.assignment == {0, 1}
                assert stream.positions == {0: 0, 1: 0}
                await stream.commit({0: 4, 1: 6})
                await stream.commit({})  # nothing to commit: nothing sent
            async with client.subscribe(topic, group=group, start=EARLIEST, follow=False) as stream:
                assert stream.positions == {0: 4, 1: 6}
                offsets = [(batch.partition, record.offset) async for batch in stream for record in batch.records]
                assert sorted(offsets) == [(0, n) for n in range(4, 10)] + [(1, n) for n in range(6, 10)]
                await stream.commit()  # what the proxy delivered: everything
            async with client.subscribe(topic, group=group, start=EARLIEST) as stream:
                assert stream.positions == {0: 10, 1: 10}
            with pytest.raises(PubSubError) as plain:
                async with client.subscribe(topic, start=EARLIEST) as stream:
                    await stream.commit()
            assert plain.value.code == ErrorCode.INVALID_REQUEST, plain.value


async def test_a_revoked_partition_leaves_the_assignment_and_positions_and_its_commit_is_not_assigned(
    kafka_broker: KafkaBroker, topics: Callable[..., str]
) -> None:
    topic = topics(2, 3)
    group = unique_topic_name("group")
    with trio.fail_after(TEST_LIMIT):
        async with (
            proxy_url(kafka_broker) as url,
            open_client(url) as one,
            open_client(url) as two,
            member(one, topic, group, start=EARLIEST) as first,
        ):
            assert first.first == {0, 1}
            async with member(two, topic, group, start=EARLIEST) as second:
                assert await settled(lambda: len(first.assignment) == 1 and len(second.assignment) == 1, REBALANCE)
                [lost] = {0, 1} - first.assignment
                assert first.stream is not None
                assert set(first.stream.positions) == set(first.assignment), first.stream.positions
                with pytest.raises(PubSubError) as refused:
                    await first.stream.commit({lost: 1})
                assert refused.value.code == ErrorCode.NOT_ASSIGNED, refused.value
                assert refused.value.message == (
                    f"partition {lost} is not assigned to stream {first.stream.id} (or was revoked)"
                )
                [kept] = first.assignment
                await first.stream.commit({kept: 1})  # what it still owns commits
            check_follows_events(first)
            check_follows_events(second)


async def test_a_group_stream_refuses_partitions_and_auto_commit_needs_a_group_before_sending(
    kafka_broker: KafkaBroker, topics: Callable[..., str]
) -> None:
    topic = topics(1)
    with trio.fail_after(TEST_LIMIT):
        async with proxy_url(kafka_broker) as url, open_client(url) as client:
            with pytest.raises(ValueError, match="a group stream takes no partitions: the group assigns them"):
                async with client.subscribe(topic, group="g", partitions=[0]):
                    pass
            with pytest.raises(ValueError, match="auto_commit needs a group"):
                async with client.subscribe(topic, auto_commit=True):
                    pass
            with pytest.raises(ValueError, match="group must be a name"):
                async with client.subscribe(topic, group=""):
                    pass
            assert not client._streams, "no stream was opened"
            assert await client.ping(b"still here") == b"still here"
            # A plain stream is as before: its assignment is the partitions it reads.
            async with client.subscribe(topic, start=EARLIEST) as stream:
                assert stream.group is None
                assert stream.assignment == {0}


def test_the_readme_consumer_groups_example_runs_as_printed(
    kafka_broker: KafkaBroker, repo_root: Path, tmp_path: Path
) -> None:
    readme = (repo_root / "README.md").read_text()
    section = re.search(r"^### Consumer groups\n(.*?)(?=^#+ )", readme, re.DOTALL | re.MULTILINE)
    assert section, "the README lost its Consumer groups section"
    [program] = re.findall(r"^```python\n(.*?)^```", section[1], re.DOTALL | re.MULTILINE)
    [expected] = re.findall(r"^```text\n(.*?)^```", section[1], re.DOTALL | re.MULTILINE)
    (tmp_path / "groups.py").write_text(program)
    env = {name: value for name, value in os.environ.items() if not name.startswith("KAFKA_")}
    env["KAFKA_BOOTSTRAP"] = kafka_broker.bootstrap
    result = subprocess.run(
        [sys.executable, "groups.py"], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected


async def test_a_member_the_group_gives_nothing_ends_at_once_without_follow(
    kafka_broker: KafkaBroker, topics: Callable[..., str]
) -> None:
    """One partition, two members: the second gets nothing, and with ``follow=False`` its iteration ends
    (there is nothing for it to read); the first, with the partition, reads it to the end."""
    topic = topics(1, 3)
    group = unique_topic_name("group")
    with trio.fail_after(TEST_LIMIT):
        async with (
            proxy_url(kafka_broker) as url,
            open_client(url) as one,
            open_client(url) as two,
            one.subscribe(topic, group=group, start=EARLIEST, follow=False) as first,
        ):
            async with two.subscribe(topic, group=group, start=EARLIEST, follow=False) as second:
                assert second.assignment == frozenset()
                assert [batch async for batch in second] == []
            # (The first member's partition was revoked and given back as the second joined and left.)
            offsets = [record.offset async for batch in first for record in batch.records]
            assert sorted(set(offsets)) == [0, 1, 2]
