"""The route's admin client: one kafka-python ``KafkaAdminClient``, made on first use, one call at a time.

Used for what consumers and producers cannot ask: a topic's configuration
(``_topic_limits``) and a consumer group's committed offsets. It follows the
consumers' discipline (``ThreadedConsumer``): one thread at a time, a deadline
and a kill switch on every call; a call that fails closes it, and the next
call makes a new one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import trio

from .._proto import CommandFailed, ErrorCode
from ._client import ThreadedConsumer
from ._context import KafkaContext
from ._diagnosis import diagnose, kafka_failure
from ._settings import admin_config

_T = TypeVar("_T")


def _new_admin(context: KafkaContext) -> Any:
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    route = context.route
    unreachable = diagnose(route, tcp_only=True)
    if unreachable is not None:
        raise unreachable
    try:
        return KafkaAdminClient(**admin_config(route))
    except KafkaError as exc:
        raise (diagnose(route) or kafka_failure(exc, "connect")) from exc


class RouteAdmin:
    """The route's admin client, opened when first needed and again after a failure."""

    def __init__(self, context: KafkaContext) -> None:
        self._context = context
        self._client: ThreadedConsumer | None = None
        self._opening = trio.Lock()

    async def call(self, fn: Callable[[Any], _T], what: str) -> _T:
        """``fn(admin)`` in a thread, within the route's call budget.

        Raises :class:`CommandFailed` (a kafka-python error named as ``what`` failing);
        the admin client is then closed, and the next call opens a new one.
        """
        client = await self._admin()
        error: Exception | None = None
        async with client.lock:
            try:
                result: _T = await client.call(lambda: fn(client.consumer), self._context.call_budget)
            except Exception as exc:
                error = exc
        if error is not None:
            await client.aclose()
            if self._client is client:
                self._client = None
            failure = error if isinstance(error, CommandFailed) else kafka_failure(error, what)
            raise failure from error
        return result

    async def _admin(self) -> ThreadedConsumer:
        async with self._opening:
            if self._client is None or self._client.closed:
                context = self._context
                try:
                    with trio.fail_after(context.deadline):
                        admin = await trio.to_thread.run_sync(_new_admin, context, limiter=context.limiter)
                except trio.TooSlowError:
                    raise CommandFailed(ErrorCode.TIMEOUT, "connecting to Kafka timed out") from None
                context.counters.consumers_created += 1  # a Kafka client, closed (and counted) like one
                self._client = ThreadedConsumer(context, admin)
            return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
