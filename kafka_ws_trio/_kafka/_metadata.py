"""Which topics a route's cluster has, and their partitions: one shared map, refreshed by one call at a time."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

import attrs
import trio

from .._proto import CommandFailed
from ._client import Connector, ConsumerLike, ThreadedConsumer
from ._context import KafkaContext
from ._diagnosis import diagnose, kafka_failure

#: How long a topic's partition list is trusted before it is asked again.
METADATA_TTL: Final = 10.0
#: How long "no such topic" is trusted (short: topics get created).
MISSING_TOPIC_TTL: Final = 1.0
#: Missing topics whose probe's answer (denied by Kafka, or truly missing) is remembered for MISSING_TOPIC_TTL;
#: past this many, the memory starts afresh.
MAX_PROBES_KEPT: Final = 1024

#: Raises CommandFailed when Kafka's ACLs hide ``topic`` from the route's login; returns when it is truly missing.
DenialProbe = Callable[[str], Awaitable[None]]


def _all_topics_sync(consumer: ConsumerLike) -> dict[str, frozenset[int]]:
    """In a thread: every topic of the cluster and its partitions (one metadata request)."""
    names = consumer.topics()  # always asks the cluster; partitions_for_topic then reads its cache
    return {name: frozenset(consumer.partitions_for_topic(name) or ()) for name in names}


@attrs.define
class _Refresh:
    """A refresh in progress; lookups arriving meanwhile wait for it instead of asking again."""

    done: trio.Event = attrs.Factory(trio.Event)
    failure: CommandFailed | None = None
    #: False when the task doing it was cancelled before it had an answer: waiters must ask again.
    completed: bool = False


class Metadata:
    """The topic map of one route, with its own consumer."""

    def __init__(self, context: KafkaContext, connector: Connector, denial_probe: DenialProbe | None = None) -> None:
        self._context = context
        self._connector = connector
        #: Asked about a topic the map lacks: Kafka lists only the topics a login may describe.
        self._denial_probe = denial_probe
        self._probed: dict[str, tuple[float, CommandFailed | None]] = {}
        self._client: ThreadedConsumer | None = None
        self._topics: dict[str, frozenset[int]] = {}
        self._stamp: float | None = None
        self._refreshing: _Refresh | None = None

    async def partitions_of(self, topic: str, *, missing_since: float | None = None) -> frozenset[int]:
        """The partitions of ``topic`` (empty when it does not exist).

        The map holds every topic of the cluster, so a burst of lookups (say,
        of topics that do not exist) costs one metadata request, not one each.
        A topic the map lacks is taken as missing for ``MISSING_TOPIC_TTL``; with
        ``missing_since`` (a Trio time), only if the map was read after then, so a
        topic created just before is found (a produce must not call it missing).
        """
        partitions = await self._lookup(topic, missing_since)
        if not partitions and self._denial_probe is not None:
            await self._probe(topic)
        return partitions

    async def _lookup(self, topic: str, missing_since: float | None) -> frozenset[int]:
        if self._stamp is not None:
            age = trio.current_time() - self._stamp
            partitions = self._topics.get(topic)
            if partitions is not None and age < METADATA_TTL:
                return partitions
            fresh_enough = missing_since is None or self._stamp >= missing_since
            if partitions is None and age < MISSING_TOPIC_TTL and fresh_enough:
                return frozenset()
        await self._refresh()
        return self._topics.get(topic, frozenset())

    async def _probe(self, topic: str) -> None:
        """Raise Kafka's denial if it hides ``topic`` from this login; either answer is kept a while."""
        now = trio.current_time()
        known = self._probed.get(topic)
        if known is not None and now - known[0] < MISSING_TOPIC_TTL:
            if known[1] is not None:
                raise known[1]
            return
        assert self._denial_probe is not None
        denial = None
        try:
            await self._denial_probe(topic)
        except CommandFailed as exc:
            denial = exc
        if len(self._probed) >= MAX_PROBES_KEPT:
            self._probed.clear()
        self._probed[topic] = (now, denial)
        if denial is not None:
            raise denial

    async def _refresh(self) -> None:
        while (shared := self._refreshing) is not None:
            await shared.done.wait()
            if shared.failure is not None:
                raise shared.failure
            if shared.completed:
                return
            # The task refreshing it was cancelled (its client left): the map is not
            # fresh, and an empty one would read as "not found topic". Ask again.
        refresh = self._refreshing = _Refresh()
        try:
            if self._client is None or self._client.closed:
                self._client = await self._connector.open()
            client = self._client
            error: Exception | None = None
            async with client.lock:
                try:
                    topics = await client.call(lambda: _all_topics_sync(client.consumer), self._context.call_budget)
                except Exception as exc:
                    error = exc
            if error is not None:
                # Closed after the lock is let go: closing takes the consumer's lock itself.
                context = self._context
                failure = await trio.to_thread.run_sync(diagnose, context.route, limiter=context.limiter)
                await client.aclose()
                self._client = None
                failure = failure or kafka_failure(error, "metadata")
                context.outages.failed(failure)  # (the connector reports its own failures)
                raise failure from error
            self._topics = topics
            self._stamp = trio.current_time()
            refresh.completed = True
        except CommandFailed as exc:
            refresh.failure = exc
            raise
        finally:
            refresh.done.set()
            self._refreshing = None

    async def aclose(self) -> None:
        """Close the metadata consumer (shielded, time-limited)."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
