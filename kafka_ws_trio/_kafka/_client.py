"""kafka-python consumers used with discipline: one thread at a time, a deadline on every call.

kafka-python is blocking and not thread-safe, so every call runs in a worker
thread through the server's :class:`trio.CapacityLimiter`, under the
consumer's own lock. Calls kafka-python bounds itself (poll, offset lookups)
get a ``timeout_ms``; the ones it does not bound (metadata) are guarded by a
kill switch that closes the consumer from another thread when the deadline
passes, which makes the blocked call return. Closing is shielded and
time-limited.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Final, Protocol

import outcome
import trio

from .._config import RouteConfig
from .._proto import CommandFailed, ErrorCode, Isolation
from . import _fast_records as fast_records
from ._context import KafkaContext
from ._diagnosis import diagnose, kafka_failure
from ._settings import consumer_config

log = logging.getLogger("kafka_ws_trio.kafka")

#: Seconds allowed for closing one kafka-python client.
CLOSE_TIMEOUT: Final = 5.0
#: Extra seconds the kill switch waits past a call's own deadline.
KILL_SWITCH_MARGIN: Final = 1.0
#: How long a failed connection attempt is reported without trying again,
#: so a burst of commands to a dead cluster costs one attempt, not one each.
CONNECT_FAILURE_TTL: Final = 1.0


class ConsumerLike(Protocol):
    """The part of ``kafka.KafkaConsumer`` the edge uses (kafka-python ships no types)."""

    def assign(self, partitions: list[Any]) -> None: ...
    def seek(self, partition: Any, offset: int) -> None: ...
    def position(self, partition: Any, timeout_ms: int | None = ...) -> int | None: ...
    def poll(self, timeout_ms: int = ..., max_records: int | None = ...) -> dict[Any, list[Any]]: ...
    def beginning_offsets(self, partitions: list[Any], timeout_ms: int | None = ...) -> dict[Any, int]: ...
    def end_offsets(self, partitions: list[Any], timeout_ms: int | None = ...) -> dict[Any, int]: ...
    def highwater(self, partition: Any) -> int | None: ...
    def offsets_for_times(self, timestamps: dict[Any, int], timeout_ms: int | None = ...) -> dict[Any, Any]: ...
    def partitions_for_topic(self, topic: str) -> set[int] | None: ...
    def topics(self) -> set[str]: ...
    def close(self) -> None: ...


def load_kafka_python() -> None:
    """Import the parts of kafka-python the edge uses (blocking: run it in a thread).

    Done once as a route starts, so that the first command does not pay for it:
    the import took a fifth of the proxy's samples in a profiled stream read.
    """
    import kafka
    import kafka.errors
    import kafka.net.compat  # noqa: F401


class ThreadedConsumer:
    """One kafka-python consumer and the lock that keeps it to one thread at a time."""

    def __init__(self, context: KafkaContext, consumer: ConsumerLike) -> None:
        self._context = context
        self.consumer = consumer
        self.lock = trio.Lock()
        self.closed = False

    async def call(self, fn: Callable[[], Any], deadline: float) -> Any:
        """Run ``fn`` (which uses the consumer) in a thread; the caller holds ``lock``.

        If ``fn`` has not returned ``deadline`` seconds after its thread
        started (plus a margin), the consumer is closed from another thread,
        which makes a stuck kafka-python call return; the consumer is then
        unusable and its owner replaces it.
        """
        # When the thread started (it may wait for a Kafka thread token first). Set in
        # the thread without a round trip to Trio: that would cost each call a pass of
        # the run loop, which under load is most of a poll's latency.
        started_at: list[float] = []
        kill_scope = trio.CancelScope(shield=True)

        def in_thread() -> outcome.Outcome[Any]:
            started_at.append(time.monotonic())
            # Captured, so that fn's exception is not wrapped in the nursery's ExceptionGroup.
            captured: outcome.Outcome[Any] = outcome.capture(fn)
            return captured

        async def kill_switch() -> None:
            with kill_scope:
                allowed = deadline + KILL_SWITCH_MARGIN
                left = allowed
                while left > 0:
                    await trio.sleep(left)
                    left = started_at[0] + allowed - time.monotonic() if started_at else allowed
                log.warning("a Kafka call overran its %.1fs deadline; closing its consumer", deadline)
                self.closed = True
                await trio.to_thread.run_sync(self.consumer.close)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(kill_switch)
            try:
                result = await trio.to_thread.run_sync(in_thread, limiter=self._context.limiter)
            finally:
                kill_scope.cancel()
        return result.unwrap()

    async def aclose(self) -> None:
        """Close the consumer: shielded, time-limited, and never twice."""
        with trio.move_on_after(CLOSE_TIMEOUT, shield=True) as scope:
            async with self.lock:
                if not self.closed:
                    self.closed = True
                    await trio.to_thread.run_sync(self.consumer.close)
                    self._context.counters.consumers_closed += 1
        if scope.cancelled_caught:
            log.warning("closing a Kafka consumer took longer than %.0fs; left to finish in its thread", CLOSE_TIMEOUT)


def new_consumer(route: RouteConfig, config: dict[str, Any], what: str = "connect") -> ConsumerLike:
    """In a thread: a kafka-python consumer with ``config``, connected, or CommandFailed naming why not."""
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError
    from kafka.net.compat import KafkaNetClient

    unreachable = diagnose(route, tcp_only=True)
    if unreachable is not None:
        raise unreachable
    made: list[Any] = []

    def client_factory(**settings: Any) -> Any:
        client = KafkaNetClient(**settings)
        made.append(client)
        return client

    try:
        consumer = KafkaConsumer(**config, kafka_client=client_factory)
    except KafkaError as exc:
        # A failed constructor leaves its I/O thread running: stop it.
        for client in made:
            with contextlib.suppress(Exception):
                client.close()
        raise (diagnose(route) or kafka_failure(exc, what)) from exc
    return consumer  # type: ignore[no-any-return]


class Connector:
    """Opens the route's consumers; a failure is repeated at once for a moment instead of retried by every caller."""

    def __init__(self, context: KafkaContext) -> None:
        self._context = context
        self._failure: tuple[float, CommandFailed] | None = None

    def _new_consumer(self, isolation: Isolation) -> ConsumerLike:
        """In a thread: a consumer connected to the route's brokers, or CommandFailed naming why not."""
        consumer = new_consumer(self._context.route, consumer_config(self._context.route, isolation))
        fast_records.install(consumer)
        return consumer

    async def open(self, isolation: Isolation = Isolation.READ_UNCOMMITTED) -> ThreadedConsumer:
        """A new connected consumer; raises :class:`CommandFailed` within the route's deadline."""
        context = self._context
        now = trio.current_time()
        if self._failure is not None and now - self._failure[0] < CONNECT_FAILURE_TTL:
            raise self._failure[1]
        try:
            with trio.fail_after(context.deadline):
                consumer = await trio.to_thread.run_sync(self._new_consumer, isolation, limiter=context.limiter)
        except CommandFailed as exc:
            context.counters.connect_failures += 1
            self._failure = (trio.current_time(), exc)
            context.outages.failed(exc)
            raise
        except trio.TooSlowError:
            failure = CommandFailed(ErrorCode.TIMEOUT, "connecting to Kafka timed out")
            context.outages.failed(failure)
            raise failure from None
        self._failure = None
        context.counters.consumers_created += 1
        return ThreadedConsumer(context, consumer)
