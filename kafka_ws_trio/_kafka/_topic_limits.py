"""What a topic allows one record: its ``max.message.bytes``, and whether it is compacted (keys required).

The proxy checks each produced record against these before it hands it to
the shared producer, because kafka-python's idempotent producer takes a
record the broker refuses for good (too large, no key on a compacted topic)
as a fatal error: it would fail every record in flight, of every session,
and refuse all later ones. Looked up with one admin client per route
(DescribeConfigs, through the same one-thread-at-a-time discipline as the
consumers) and kept for ``METADATA_TTL``.
"""

from __future__ import annotations

from typing import Any, Final

import attrs
import trio

from .._proto import CommandFailed, ErrorCode
from ._client import ThreadedConsumer
from ._context import KafkaContext
from ._diagnosis import diagnose, kafka_failure
from ._metadata import METADATA_TTL
from ._settings import admin_config

#: Kafka's default for a topic that does not set max.message.bytes (message.max.bytes).
KAFKA_DEFAULT_MAX_MESSAGE_BYTES: Final = 1_048_588
_KEYS: Final = ("max.message.bytes", "cleanup.policy")


@attrs.frozen
class TopicLimits:
    #: Bytes of the largest record batch the topic accepts.
    max_message_bytes: int = KAFKA_DEFAULT_MAX_MESSAGE_BYTES
    #: Whether the topic is compacted: every record needs a key.
    compacted: bool = False


def _describe(admin: Any, topic: str) -> TopicLimits:
    """In a thread: the topic's limits from DescribeConfigs (defaults for what the broker does not say)."""
    from kafka.admin import ConfigResource

    resource = ConfigResource("TOPIC", topic, dict.fromkeys(_KEYS))
    found = admin.describe_configs([resource], config_filter="all").get("topic", {}).get(topic, {})
    size = found.get("max.message.bytes", {}).get("value")
    policy = found.get("cleanup.policy", {}).get("value") or ""
    return TopicLimits(
        max_message_bytes=int(size) if size else KAFKA_DEFAULT_MAX_MESSAGE_BYTES,
        compacted="compact" in policy.split(","),
    )


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


class TopicLimitsCache:
    """The limits of the topics a route writes to, looked up once per ``METADATA_TTL``."""

    def __init__(self, context: KafkaContext) -> None:
        self._context = context
        self._client: ThreadedConsumer | None = None
        self._opening = trio.Lock()
        self._known: dict[str, tuple[float, TopicLimits]] = {}

    async def of(self, topic: str) -> TopicLimits:
        """``topic``'s limits; raises :class:`CommandFailed` when Kafka cannot tell within the deadline."""
        known = self._known.get(topic)
        if known is not None and trio.current_time() - known[0] < METADATA_TTL:
            return known[1]
        client = await self._admin()
        context = self._context
        error: Exception | None = None
        async with client.lock:
            try:
                limits: TopicLimits = await client.call(lambda: _describe(client.consumer, topic), context.call_budget)
            except Exception as exc:
                error = exc
        if error is not None:
            await client.aclose()
            self._client = None
            failure = error if isinstance(error, CommandFailed) else kafka_failure(error, "describing the topic")
            raise failure from error
        if len(self._known) > 4 * 1024:  # a bound on what is remembered: forget the lot, it is only a cache
            self._known.clear()
        self._known[topic] = (trio.current_time(), limits)
        return limits

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
