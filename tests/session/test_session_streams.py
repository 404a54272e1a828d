"""A session's streams over a fake backend: what a closed stream's late work may touch once its id is reused."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from kafka_ws_trio._proto import FilterSet, StreamLimits, Subscribe
from kafka_ws_trio._streaming import SessionStreams

pytestmark = pytest.mark.timeout(30)

TOPIC = "topic"


class FakeBackend:
    """Partitions of one topic; lookups of partition 1 wait for ``slow``; attaches are recorded."""

    deadline = 5.0

    def __init__(self) -> None:
        self.filters = FilterSet()
        self.partitions = frozenset({0})
        self.watchers: list[Any] = []
        self.slow = trio.Event()
        self.attached: list[tuple[int, int]] = []
        self.detached: list[tuple[int, int]] = []

    async def partitions_of(self, topic: str) -> frozenset[int]:
        return self.partitions

    def watch(self, topic: str, notify: Any) -> Any:
        self.watchers.append(notify)
        return lambda: self.watchers.remove(notify)

    async def stream_offset(self, topic: str, partition: int, timestamp: int, isolation: Any) -> int:
        if partition == 1:
            await self.slow.wait()
        return 0

    async def attach(self, stream: Any, partition: int, outlet: Any) -> tuple[Any, Any]:
        key = (id(stream), partition)
        self.attached.append(key)
        return (lambda: None), (lambda: self.detached.append(key))


class FakePusher:
    def __init__(self) -> None:
        self.pushed: list[tuple[Any, bytes]] = []

    def push(self, stream: Any, frame: bytes) -> None:
        self.pushed.append((stream, frame))

    def push_ready(self) -> bool:
        return True


async def test_a_closed_streams_late_partition_work_leaves_the_stream_that_took_its_id_alone(
    nursery: trio.Nursery,
) -> None:
    """Review finding: the late task released the hold of whatever stream held the id by then,
    so the new stream could push before its subscribe was answered, then never again."""
    backend = FakeBackend()
    streams = SessionStreams(
        backend,  # type: ignore[arg-type]
        1 << 20,
        StreamLimits(),
        FakePusher(),
        workers=2,
        spawn=nursery.start_soon,
    )
    first = streams.open(Subscribe(5, TOPIC))  # every partition, including ones added later
    _, release = await streams.start(first)
    assert release is not None
    release()
    first_outlet = streams._outlets[5]
    assert first_outlet.holds == 0

    backend.watchers[0](frozenset({0, 1}))  # the topic grew: a task adds partition 1 (its lookup waits)
    await trio.testing.wait_all_tasks_blocked()
    assert first_outlet.holds == 1

    await streams.unsubscribe(first, 6)
    second = streams.open(Subscribe(5, TOPIC))  # the id is free again
    second_outlet = streams._outlets[5]
    assert second_outlet is not first_outlet and second_outlet.holds == 1  # held until its answer

    backend.slow.set()  # the first stream's late task ends
    await trio.testing.wait_all_tasks_blocked()
    assert second_outlet.holds == 1, "the closed stream's task released the new stream's hold"
    assert not second_outlet.ready()
    assert streams._outlets[5] is second_outlet

    _, release = await streams.start(second)
    assert release is not None
    release()
    assert second_outlet.holds == 0 and second_outlet.ready()
    # The new stream can be grown in its turn: the old task's end did not leave it marked as adding.
    backend.slow = trio.Event()
    backend.slow.set()
    backend.watchers[-1](frozenset({0, 1}))
    await trio.testing.wait_all_tasks_blocked()
    assert sorted(second_outlet.feeds) == [0, 1]
    assert second_outlet.holds == 0
