"""What a topic allows one record: its ``max.message.bytes``, and whether it is compacted (keys required).

The proxy checks each produced record against these before it hands it to
the shared producer, because kafka-python's idempotent producer takes a
record the broker refuses for good (too large, no key on a compacted topic)
as a fatal error: it would fail every record in flight, of every session,
and refuse all later ones. Looked up with the route's admin client
(DescribeConfigs, ``_admin``) and kept for ``METADATA_TTL``.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Final

import attrs
import trio

from .._proto import CommandFailed, ErrorCode
from ._admin import RouteAdmin
from ._context import KafkaContext
from ._metadata import METADATA_TTL

#: Kafka's default for a topic that does not set max.message.bytes (message.max.bytes).
KAFKA_DEFAULT_MAX_MESSAGE_BYTES: Final = 1_048_588
_KEYS: Final = (
    "max.message.bytes",
    "cleanup.policy",
    "message.timestamp.type",
    "message.timestamp.before.max.ms",
    "message.timestamp.after.max.ms",
)
#: Topics whose limits are remembered at most; past that the memory is dropped and rebuilt.
MAX_TOPICS_KNOWN: Final = 4096


@attrs.frozen
class TopicLimits:
    #: Bytes of the largest record batch the topic accepts.
    max_message_bytes: int = KAFKA_DEFAULT_MAX_MESSAGE_BYTES
    #: Whether the topic is compacted: every record needs a key.
    compacted: bool = False
    #: How far (ms) a record's own timestamp may lie before and after the broker's clock; None: any
    #: (the topic stamps records with the time it appends them, or the broker does not say).
    before_max_ms: int | None = None
    after_max_ms: int | None = None


def _describe(admin: Any, *, topic: str) -> TopicLimits:
    """In a thread: the topic's limits from DescribeConfigs (defaults for what the broker does not say)."""
    from kafka.admin import ConfigResource

    resource = ConfigResource("TOPIC", topic, dict.fromkeys(_KEYS))
    found = admin.describe_configs([resource], config_filter="all").get("topic", {}).get(topic, {})

    def value(key: str) -> str | None:
        found_value: str | None = found.get(key, {}).get("value")
        return found_value

    size = value("max.message.bytes")
    policy = value("cleanup.policy") or ""
    create_time = (value("message.timestamp.type") or "CreateTime") == "CreateTime"
    before, after = value("message.timestamp.before.max.ms"), value("message.timestamp.after.max.ms")
    return TopicLimits(
        max_message_bytes=int(size) if size else KAFKA_DEFAULT_MAX_MESSAGE_BYTES,
        compacted="compact" in policy.split(","),
        before_max_ms=int(before) if create_time and before else None,
        after_max_ms=int(after) if create_time and after else None,
    )


@attrs.define(eq=False)
class _Known:
    """A topic's limits and when they were looked up; ``refreshing`` is set while a look-up runs."""

    limits: TopicLimits | None = None
    at: float = 0.0
    refreshing: trio.Event | None = None
    failure: CommandFailed | None = None

    def ended(self) -> bool:
        """Whether the last look-up ended with an answer or a failure (not cut short)."""
        return self.limits is not None or self.failure is not None

    def result(self) -> TopicLimits:
        """The limits once a look-up has ended: its failure when it found none."""
        if self.limits is None:
            raise self.failure or CommandFailed(ErrorCode.TIMEOUT, "describing the topic was cut short")
        return self.limits


class TopicLimitsCache:
    """The limits of the topics a route writes to, looked up once per ``METADATA_TTL``.

    One look-up per topic at a time, whoever asks: the others wait for it. Once a topic's
    limits are known, a look-up that is due runs in the background and callers keep the
    limits they have meanwhile, so a busy route never waits for DescribeConfigs after
    the first produce to a topic.
    """

    def __init__(self, context: KafkaContext, admin: RouteAdmin) -> None:
        self._context = context
        self._admin = admin
        self._known: dict[str, _Known] = {}

    async def of(self, topic: str) -> TopicLimits:
        """``topic``'s limits; raises :class:`CommandFailed` when Kafka cannot tell within the deadline."""
        known = self._known.get(topic)
        if known is None:
            if len(self._known) >= MAX_TOPICS_KNOWN:  # a bound on what is remembered: it is only a cache
                self._known.clear()
            known = self._known[topic] = _Known()
        if known.limits is not None:
            if trio.current_time() - known.at >= METADATA_TTL and known.refreshing is None:
                known.refreshing = trio.Event()
                if not self._context.spawn(partial(self._look_up, topic, known)):
                    known.refreshing = None
            return known.limits
        while True:
            if known.refreshing is None:
                known.refreshing = trio.Event()
                await self._look_up(topic, known)
                return known.result()
            await known.refreshing.wait()
            if known.ended():
                return known.result()
            # The look-up was cut short (the command that ran it was cancelled): ask again.

    async def _look_up(self, topic: str, known: _Known) -> None:
        """Ask Kafka once; whoever waits on ``known.refreshing`` is woken, whatever happens."""
        done = known.refreshing
        known.failure = None
        try:
            known.limits, known.at = await self._describe(topic), trio.current_time()
        except CommandFailed as exc:
            known.failure = exc
        finally:
            known.refreshing = None
            if done is not None:
                done.set()

    async def _describe(self, topic: str) -> TopicLimits:
        return await self._admin.call(partial(_describe, topic=topic), "describing the topic")
