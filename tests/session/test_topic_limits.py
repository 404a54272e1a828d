"""The topic-limits cache over a fake DescribeConfigs, on the mock clock: one look-up per topic at a
time whoever asks, stale limits served while a due look-up runs in the background, failures not
remembered, a look-up cut short asked again. Found by the produce fan-in bench: every command did a
look-up of its own, one after another, once the limits were due, and the route stalled."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from _fakes import Background, context

from kafka_ws_trio._kafka._admin import RouteAdmin
from kafka_ws_trio._kafka._metadata import METADATA_TTL
from kafka_ws_trio._kafka._topic_limits import TopicLimits, TopicLimitsCache
from kafka_ws_trio._proto import CommandFailed, ErrorCode


class Described(TopicLimitsCache):
    """DescribeConfigs answered after ``delay`` seconds of Trio time, counted."""

    def __init__(self, background: Background, delay: float = 0.5) -> None:
        made = context(background)
        super().__init__(made, RouteAdmin(made))
        self.calls = 0
        self.delay = delay
        self.fail: CommandFailed | None = None
        self.size = 5000

    async def _describe(self, topic: str) -> TopicLimits:
        self.calls += 1
        await trio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        return TopicLimits(max_message_bytes=self.size)


async def test_many_callers_share_one_look_up(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        cache = Described(Background(nursery))
        found: list[TopicLimits] = []

        async def ask() -> None:
            found.append(await cache.of("t"))

        async with trio.open_nursery() as callers:
            for _ in range(100):
                callers.start_soon(ask)
    assert cache.calls == 1
    assert found == [TopicLimits(max_message_bytes=5000)] * 100


async def test_due_limits_are_served_at_once_while_one_look_up_runs_in_the_background(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        background = Background(nursery)
        cache = Described(background)
        assert (await cache.of("t")).max_message_bytes == 5000
        await trio.sleep(METADATA_TTL + 1)
        cache.size = 6000
        before = trio.current_time()
        for _ in range(50):
            assert (await cache.of("t")).max_message_bytes == 5000  # the old limits, without waiting
        assert trio.current_time() == before
        await background.settled()
        assert (await cache.of("t")).max_message_bytes == 6000
        assert cache.calls == 2


async def test_a_failure_is_raised_to_every_waiter_and_not_remembered(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        cache = Described(Background(nursery))
        cache.fail = CommandFailed(ErrorCode.BROKER_UNREACHABLE, "broker unreachable: 127.0.0.1:9")
        failures: list[CommandFailed] = []

        async def ask() -> None:
            with pytest.raises(CommandFailed) as raised:
                await cache.of("t")
            failures.append(raised.value)

        async with trio.open_nursery() as callers:
            for _ in range(10):
                callers.start_soon(ask)
        assert [f.code for f in failures] == [ErrorCode.BROKER_UNREACHABLE] * 10
        assert cache.calls == 1
        cache.fail = None
        assert (await cache.of("t")).max_message_bytes == 5000  # asked again, not the failure
        assert cache.calls == 2


async def test_a_look_up_cut_short_is_asked_again_by_those_waiting(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        cache = Described(Background(nursery))
        results: list[TopicLimits] = []

        async def first() -> None:
            with trio.move_on_after(0.1):  # the command running the look-up goes away
                await cache.of("t")

        async def second() -> None:
            await trio.sleep(0.05)
            results.append(await cache.of("t"))

        async with trio.open_nursery() as callers:
            callers.start_soon(first)
            callers.start_soon(second)
    assert results == [TopicLimits(max_message_bytes=5000)]
    assert cache.calls == 2
