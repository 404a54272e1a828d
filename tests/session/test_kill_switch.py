"""The deadline on every blocking kafka-python call (``ThreadedConsumer.call``'s kill switch).

kafka-python does not bound every call itself; the proxy closes the consumer
from another thread when a call overruns, which makes the call return. These
tests use a stand-in consumer whose calls block until it is closed (no broker
is needed to check the deadline logic), in real threads on the real clock.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import trio
import trio.testing

from kafka_ws_trio._config import ProxyConfig
from kafka_ws_trio._kafka import KILL_SWITCH_MARGIN, KafkaUpstream, ThreadedConsumer

pytestmark = pytest.mark.timeout(30)


class BlockingConsumer:
    """Calls made through it block until ``close()``, like a kafka-python call stuck on a dead socket."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.closes = 0

    def close(self) -> None:
        self.closes += 1
        self.released.set()

    def stuck_call(self) -> str:
        if not self.released.wait(20):
            return "never released"
        raise ConnectionError("consumer closed under the call")


def upstream(tokens: int) -> KafkaUpstream:
    route = ProxyConfig.single_route("127.0.0.1:9").routes[0]  # never connected to in these tests
    return KafkaUpstream(route, trio.CapacityLimiter(tokens))


async def test_a_call_that_overruns_its_deadline_is_ended_by_closing_its_consumer() -> None:
    consumer = BlockingConsumer()
    client = ThreadedConsumer(upstream(1).context, consumer)  # type: ignore[arg-type]
    deadline = 0.2
    started = time.monotonic()
    with pytest.raises(ConnectionError):
        await client.call(consumer.stuck_call, deadline)
    took = time.monotonic() - started
    assert deadline + KILL_SWITCH_MARGIN * 0.9 <= took < deadline + KILL_SWITCH_MARGIN + 5
    assert client.closed
    assert consumer.closes == 1


async def test_a_call_within_its_deadline_is_left_alone() -> None:
    consumer = BlockingConsumer()
    client = ThreadedConsumer(upstream(1).context, consumer)  # type: ignore[arg-type]
    assert await client.call(lambda: "done", 0.2) == "done"
    await trio.sleep(0.2 + KILL_SWITCH_MARGIN + 0.3)  # past the deadline: the kill switch must be gone
    assert not client.closed
    assert consumer.closes == 0


async def test_the_deadline_counts_from_when_the_call_gets_a_thread() -> None:
    """A call waiting for a Kafka thread token is not yet running: the wait is not held against it."""
    shared = upstream(1)
    busy = ThreadedConsumer(shared.context, BlockingConsumer())  # type: ignore[arg-type]
    queued_consumer = BlockingConsumer()
    queued = ThreadedConsumer(shared.context, queued_consumer)  # type: ignore[arg-type]
    hold = 0.2 + KILL_SWITCH_MARGIN + 0.8  # the only token is taken for longer than queued's deadline + margin
    results: list[Any] = []

    async def take_the_token() -> None:
        results.append(await busy.call(lambda: time.sleep(hold) or "busy", 10))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(take_the_token)
        await trio.testing.wait_all_tasks_blocked()
        results.append(await queued.call(lambda: "queued", 0.2))
    assert sorted(results) == ["busy", "queued"]
    assert not queued.closed and queued_consumer.closes == 0
