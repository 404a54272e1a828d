"""The Kafka side of one route: the registry of partition readers, its bound, and idle cleanup.

Readers are keyed by (topic, partition, isolation), not by session, so
sessions reading the same partition share one consumer, one window and one
stream of broker fetches (READ_COMMITTED streams share a reader of their
own). A route opens at most ``max_partition_readers`` of them: past that, the
least recently used idle one makes room, and when none is idle the command
fails with OVERLOADED instead of opening yet another consumer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import attrs
import trio

from .._config import RouteConfig
from .._ports import Deliver, Detach, GroupListener, Produced, StreamOutlet, Transaction, Wake, Withdraw
from .._proto import (
    FETCH_FRAME_OVERHEAD,
    Acks,
    Amount,
    Budget,
    CommandFailed,
    EncodedBatch,
    ErrorCode,
    FilterSet,
    Isolation,
    OutRecord,
    Stream,
    partition_not_found,
    topic_not_found,
)
from ._admin import RouteAdmin
from ._client import Connector, load_kafka_python
from ._context import Counters, KafkaContext
from ._diagnosis import TOPIC_AUTHORIZATION_FAILED, kafka_denial
from ._group import KafkaGroupMember, MemberSlots, join_group
from ._hub import PartitionHub
from ._metadata import METADATA_TTL, Metadata
from ._outages import OutageLog
from ._producer import RouteProducers, route_acks
from ._reader import PartitionReader
from ._taps import TapLag
from ._topic_limits import TopicLimitsCache
from ._transactions import KafkaTransaction, TransactionPool

log = logging.getLogger("kafka_ws_trio.kafka")

#: Seconds between looks at the partitions of a topic that streams over every partition read.
PARTITION_WATCH_INTERVAL: float = METADATA_TTL

Key = tuple[str, int, Isolation]


@attrs.frozen
class TopicStreamStatistics:
    """The push streams of one route reading one topic, summed over them: never per session or stream."""

    #: Streams reading at least one partition of the topic now (a group stream with none assigned is not counted).
    streams: int = 0
    #: Those of them held back by credit: behind the log end on some partition, with no credit left.
    streams_starved: int = 0
    #: Their partitions being fed (a stream over 3 partitions counts 3), and those held back by credit.
    taps: int = 0
    taps_starved: int = 0
    #: Records between each partition's position and its log end as its reader last saw it, summed over the
    #: partitions, and the largest of them (a partition whose position or log end is not known yet adds 0).
    lag: int = 0
    lag_max: int = 0


def topic_stream_statistics(lags: Iterable[tuple[str, TapLag]]) -> dict[str, TopicStreamStatistics]:
    """Sum each topic's stream partitions (``(topic, lag)`` pairs, from every hub) into its statistics.

    A stream counts once per topic however many of its partitions are listed, and is
    starved when any of them is.
    """
    taps: dict[str, list[TapLag]] = {}
    for topic, lag in lags:
        taps.setdefault(topic, []).append(lag)
    found = {}
    for topic, listed in taps.items():
        behind = [tap.lag or 0 for tap in listed]
        found[topic] = TopicStreamStatistics(
            streams=len({id(tap.stream) for tap in listed}),
            streams_starved=len({id(tap.stream) for tap in listed if tap.starved}),
            taps=len(listed),
            taps_starved=sum(1 for tap in listed if tap.starved),
            lag=sum(behind),
            lag_max=max(behind),
        )
    return found


@attrs.frozen
class UpstreamStatistics:
    """Counters of one route's Kafka side."""

    readers_open: int
    consumers_created: int
    consumers_closed: int
    broker_polls: int
    cache_hits: int
    connect_failures: int
    #: Fetches held at a log end right now, waiting for records (tailing sessions).
    fetches_parked: int = 0
    #: Parked fetches answered so far.
    parked_answered: int = 0
    #: Commands refused because ``max_partition_readers`` readers were open and none idle.
    readers_refused: int = 0
    #: Partitions of push streams being fed right now (a stream over 3 partitions counts 3).
    stream_taps: int = 0
    #: Push streams reading at least one partition now, and those held back by credit (behind the log
    #: end with no credit left), and their partitions so held back.
    streams: int = 0
    streams_starved: int = 0
    stream_taps_starved: int = 0
    #: Records the streams are behind the log end, summed over their partitions (see :attr:`topics`).
    stream_lag: int = 0
    #: Batches and records pushed to streams so far.
    stream_batches: int = 0
    stream_records: int = 0
    #: Produced records with their result so far, and how many of those failed.
    records_produced: int = 0
    records_failed: int = 0
    #: Records and bytes handed to Kafka and not yet acknowledged, all sessions together.
    produce_records_in_flight: int = 0
    produce_bytes_in_flight: int = 0
    #: Transactions begun so far, and transactional producers lent to a session now.
    transactions_begun: int = 0
    transactions_open: int = 0
    #: Consumer group members joined so far, and open now (a Kafka consumer each).
    group_members_joined: int = 0
    group_members_open: int = 0
    #: Rebalances the route's group members took part in so far: each assignment a member received
    #: (its first join included), so a rebalance of two members here counts 2.
    group_rebalances: int = 0
    #: The streams by topic: counts, credit-starved streams and lag (their sums are the fields above).
    topics: dict[str, TopicStreamStatistics] = attrs.field(factory=dict)


class KafkaUpstream:
    """The Kafka side of one route: every backend Protocol the session knows (``_ports``).

    Start it with ``await nursery.start(upstream.run)``; cancelling ``run``
    closes every consumer it opened.
    """

    def __init__(
        self,
        route: RouteConfig,
        limiter: trio.CapacityLimiter,
        proxy_members: MemberSlots | None = None,
        route_members: MemberSlots | None = None,
        *,
        probe_denials: bool = False,
    ) -> None:
        """``probe_denials``: a topic missing from the map is asked about, so that a topic Kafka's ACLs
        hide from the route's login is NOT_AUTHORIZED, not "not found" (a principal's own login)."""
        self.route = route
        self.counters = Counters()
        self.context = KafkaContext(
            route=route, limiter=limiter, counters=self.counters, outages=OutageLog(route.uri), spawn=self._spawn
        )
        self._connector = Connector(self.context)
        self._admin = RouteAdmin(self.context)
        self._metadata = Metadata(self.context, self._connector, self._kafka_denial if probe_denials else None)
        self._hubs: dict[Key, PartitionHub] = {}
        self._filters = FilterSet()
        #: Who wants to hear of each topic's partitions, and the topics a task watches.
        self._watchers: dict[str, list[Callable[[frozenset[int]], None]]] = {}
        self._watching: set[str] = set()
        #: Readers being closed (still holding their consumer), and slots taken by readers being opened.
        self._closing = 0
        self._reserved = 0
        #: Set (and replaced) each time a reader's consumer has been closed: a slot is free.
        self._slot_freed = trio.Event()
        self._opening: dict[Key, trio.Event] = {}
        self._nursery: trio.Nursery | None = None
        #: What Fetch and ListOffset commands see: READ_COMMITTED never shows aborted or open transactions.
        self._fetch_isolation = (
            Isolation.READ_COMMITTED if route.fetch_isolation == "read_committed" else Isolation.READ_UNCOMMITTED
        )
        self._producers = RouteProducers(self.context)
        self._topic_limits = TopicLimitsCache(self.context, self._admin)
        self._transactions = TransactionPool(self.context, self._producers.feeder)
        self._produce_budget = Budget(Amount(route.produce_route_records, route.produce_route_bytes), "produce_route")
        #: Group members: the route's own bound, then the proxy's (shared by its routes).
        self._member_slots = [
            route_members or MemberSlots(route.max_group_members, "max_group_members", f"on route {route.uri}")
        ]
        if proxy_members is not None:
            self._member_slots.append(proxy_members)
        #: Members' calls run in threads of their own (one each at most): a member polls for as long as
        #: its group rebalances, or Kafka is away, and must not hold the partition readers' threads.
        self._member_context = attrs.evolve(self.context, limiter=trio.CapacityLimiter(route.max_group_members))

    @property
    def deadline(self) -> float:
        """Seconds within which a command returns or fails: connecting, then one call."""
        return self.context.deadline

    def statistics(self) -> UpstreamStatistics:
        counters = self.counters
        topics = topic_stream_statistics(
            (topic, lag) for (topic, _, _), hub in self._hubs.items() for lag in hub.taps.lags()
        )
        return UpstreamStatistics(
            readers_open=len(self._hubs) + self._closing,
            consumers_created=counters.consumers_created,
            consumers_closed=counters.consumers_closed,
            broker_polls=counters.broker_polls,
            cache_hits=counters.cache_hits,
            connect_failures=counters.connect_failures,
            fetches_parked=sum(len(hub.waiting) for hub in self._hubs.values()),
            parked_answered=counters.parked_answered,
            readers_refused=counters.readers_refused,
            stream_taps=sum(len(hub.taps) for hub in self._hubs.values()),
            streams=sum(topic.streams for topic in topics.values()),
            streams_starved=sum(topic.streams_starved for topic in topics.values()),
            stream_taps_starved=sum(topic.taps_starved for topic in topics.values()),
            stream_lag=sum(topic.lag for topic in topics.values()),
            stream_batches=counters.stream_batches,
            stream_records=counters.stream_records,
            records_produced=self._producers.records_sent,
            records_failed=self._producers.records_failed,
            produce_records_in_flight=self._produce_budget.records,
            produce_bytes_in_flight=self._produce_budget.bytes,
            transactions_begun=self._transactions.begun,
            transactions_open=self._transactions.in_use,
            group_members_joined=counters.group_members_joined,
            group_members_open=self._member_slots[0].used,
            group_rebalances=counters.group_rebalances,
            topics=topics,
        )

    def _spawn(self, task: Callable[[], Awaitable[None]]) -> bool:
        # Not once the route is being cancelled: a task cut short there (a stream's read) would
        # start its successor (the pump) in the cancelled nursery, which would cut it short too, and so on.
        if self._nursery is None or self._nursery.cancel_scope.cancel_called:
            return False
        self._nursery.start_soon(task)
        return True

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the readers' background tasks and close idle readers until cancelled; then close every consumer."""
        await trio.to_thread.run_sync(load_kafka_python)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                while True:
                    await trio.sleep(max(self.route.idle_timeout / 4, 0.05))
                    await self._close_idle()
        finally:
            self._nursery = None
            with trio.CancelScope(shield=True):
                hubs = list(self._hubs.values())
                self._hubs.clear()
                async with trio.open_nursery() as nursery:
                    for hub in hubs:
                        nursery.start_soon(hub.reader.client.aclose)
                    nursery.start_soon(self._metadata.aclose)
                    nursery.start_soon(self._producers.aclose)
                    nursery.start_soon(self._admin.aclose)
                    nursery.start_soon(self._transactions.aclose)

    async def _close_idle(self) -> None:
        now = trio.current_time()
        for key, hub in list(self._hubs.items()):
            if self._hubs.get(key) is not hub:
                continue  # an opener made room with it while an earlier one closed
            if hub.reader.users == 0 and now - hub.reader.last_used >= self.route.idle_timeout:
                log.debug("closing idle reader %r", hub.reader)
                await self._close(key, hub)

    async def _close(self, key: Key, hub: PartitionHub) -> None:
        if self._hubs.get(key) is hub:
            del self._hubs[key]  # new sessions open a fresh reader from now on
        self._closing += 1  # still counted open until its consumer is closed
        try:
            await hub.reader.client.aclose()
        finally:
            self._closing -= 1
            self._slot_freed.set()
            self._slot_freed = trio.Event()

    # --------------------------------------------------------------- readers

    async def _hub(self, topic: str, partition: int, isolation: Isolation = Isolation.READ_UNCOMMITTED) -> PartitionHub:
        key = (topic, partition, isolation)
        while True:
            hub = self._hubs.get(key)
            if hub is not None and not hub.reader.closed:
                return hub
            opening = self._opening.get(key)
            if opening is None:
                break
            await opening.wait()
        # Claim the key before the first checkpoint, so one task opens it and the rest wait.
        opening = self._opening[key] = trio.Event()
        try:
            partitions = await self._metadata.partitions_of(topic)
            if not partitions:
                raise topic_not_found()
            if partition not in partitions:
                raise partition_not_found()
            stale = self._hubs.pop(key, None)
            if stale is not None:
                await self._close(key, stale)
            await self._reserve(key)
            try:
                client = await self._connector.open(isolation)
                try:
                    reader = PartitionReader(self.context, topic, partition, client, isolation)
                    async with client.lock:
                        await client.call(lambda: client.consumer.assign([reader.tp]), self.context.call_budget)
                except BaseException:
                    await client.aclose()  # shielded: runs even when we are cancelled
                    raise
                hub = self._hubs[key] = PartitionHub(self.context, reader)
                return hub
            finally:
                self._reserved -= 1  # the slot is now the hub's, or free again
        finally:
            del self._opening[key]
            opening.set()

    async def _reserve(self, key: Key) -> None:
        """Take one of the route's ``max_partition_readers`` slots for a reader about to open.

        Readers open, being closed and being opened all hold a slot. When none
        is free, the least recently used idle reader gives up its slot (it is
        closed before this returns); while other readers are still closing,
        wait for one; when every reader is busy, refuse with OVERLOADED.
        Checking and taking a slot happen with no checkpoint between them.
        """
        limit = self.route.max_partition_readers
        while len(self._hubs) + self._closing + self._reserved >= limit:
            idle = [(hub.reader.last_used, k, hub) for k, hub in self._hubs.items() if hub.reader.users == 0]
            if idle:
                _, oldest_key, oldest = min(idle, key=lambda item: item[0])
                log.debug("closing idle reader %r to make room for %s/%d", oldest.reader, *key[:2])
                del self._hubs[oldest_key]
                self._reserved += 1  # its slot is ours from now on: no other opener may take it
                try:
                    await oldest.reader.client.aclose()  # shielded, time-limited
                except BaseException:
                    self._reserved -= 1
                    raise
                return
            if self._closing:
                await self._slot_freed.wait()
                continue
            self.counters.readers_refused += 1
            raise CommandFailed(
                ErrorCode.OVERLOADED,
                f"too many partitions read at once: {limit} partition readers are busy on route "
                f"{self.route.uri} (max_partition_readers)",
            )
        self._reserved += 1

    # ------------------------------------------------------- Backend protocol

    async def list_offset(self, topic: str, partition: int, timestamp: int) -> int:
        """ListOffset as the route's Fetch commands see the partition (``fetch_isolation``)."""
        return await self.stream_offset(topic, partition, timestamp, self._fetch_isolation)

    async def fetch(self, topic: str, partition: int, offset: int, max_bytes: int) -> EncodedBatch:
        reader = (await self._hub(topic, partition, self._fetch_isolation)).reader
        with reader.in_use():
            return await reader.fetch(offset, max_bytes - FETCH_FRAME_OVERHEAD)

    def _fetch_hub(self, topic: str, partition: int) -> PartitionHub | None:
        """The open hub Fetch commands use for the partition (of the route's ``fetch_isolation``), if any."""
        return self._hubs.get((topic, partition, self._fetch_isolation))

    def fetch_cached(self, topic: str, partition: int, offset: int, max_bytes: int) -> EncodedBatch | None:
        """The answer to a fetch when memory holds it, without waiting; else None."""
        hub = self._fetch_hub(topic, partition)
        if hub is None or hub.reader.closed:
            return None
        found = hub.reader.from_window(offset, max_bytes - FETCH_FRAME_OVERHEAD)
        if found is not None:
            hub.reader.last_used = trio.current_time()
        return found

    def park(self, topic: str, partition: int, offset: int, max_bytes: int, deliver: Deliver) -> Withdraw | None:
        """Hold a fetch at the partition's log end until records arrive; None when not held (fetch it instead)."""
        hub = self._fetch_hub(topic, partition)
        if hub is None:
            return None
        return hub.park(offset, max_bytes - FETCH_FRAME_OVERHEAD, deliver)

    # ------------------------------------------------------ StreamingBackend

    @property
    def filters(self) -> FilterSet:
        """The route's stream filters: equal filters of every session share one matcher."""
        return self._filters

    async def _kafka_denial(self, topic: str) -> None:
        """Raise NOT_AUTHORIZED when Kafka refuses the route's login even a look at ``topic``."""

        def describe(admin: Any) -> list[dict[str, Any]]:
            return list(admin.describe_topics([topic]))

        found = await self._admin.call(describe, "describing a topic")
        if any(entry.get("error_code") == TOPIC_AUTHORIZATION_FAILED for entry in found):
            raise kafka_denial("TOPIC_AUTHORIZATION_FAILED")

    async def partitions_of(self, topic: str) -> frozenset[int]:
        partitions = await self._metadata.partitions_of(topic)
        if not partitions:
            raise topic_not_found()
        return partitions

    # ---------------------------------------------------------- GroupBackend

    @property
    def serves_groups(self) -> bool:
        return self.route.groups

    def _check_groups_on(self) -> None:
        if not self.route.groups:
            raise CommandFailed(ErrorCode.INVALID_REQUEST, "consumer groups are off on this route (groups = false)")

    async def join(self, group: str, topic: str, listener: GroupListener) -> KafkaGroupMember:
        self._check_groups_on()
        return await join_group(self._member_context, group, topic, listener, self._member_slots)

    async def group_offsets(self, group: str, topic: str) -> list[tuple[int, int]]:
        """The committed offsets of ``group`` for ``topic`` (admin OffsetFetch; the group is not joined)."""
        self._check_groups_on()
        await self.partitions_of(topic)  # not found topic, as for the other commands

        def fetch(admin: Any) -> list[tuple[int, int]]:
            found = admin.list_group_offsets({group: None}).get(group, {})
            pairs = []
            for tp, committed in found.items():
                offset = getattr(committed, "offset", -1)
                if tp.topic == topic and offset is not None and offset >= 0:
                    pairs.append((tp.partition, offset))
            return sorted(pairs)

        return await self._admin.call(fetch, "reading the group's offsets")

    # --------------------------------------------------------------- produce

    @property
    def produce_budget(self) -> Budget:
        return self._produce_budget

    @property
    def produce_timeout(self) -> float:
        return self._producers.timeout

    @property
    def transaction_timeout(self) -> float:
        return self.route.transaction_timeout

    async def produce(
        self, topic: str, records: Sequence[OutRecord], acks: Acks, done: Produced, transaction: Transaction | None
    ) -> None:
        # A topic not in the map is looked up again unless the map is newer than this command:
        # a producer that has just created its topic must not be told it does not exist.
        partitions = await self._metadata.partitions_of(topic, missing_since=trio.current_time())
        if not partitions:
            raise topic_not_found()
        limits = await self._topic_limits.of(topic)
        if transaction is None:
            producer = await self._producers.producer(route_acks(self.context, acks))
            self._producers.hand_over(producer, topic, partitions, limits, records, done)
        else:
            assert isinstance(transaction, KafkaTransaction)
            self._producers.hand_over(
                transaction.producer, topic, partitions, limits, records, done, transaction.still_open
            )

    async def begin_transaction(self) -> KafkaTransaction:
        return await self._transactions.begin()

    async def stream_offset(self, topic: str, partition: int, timestamp: int, isolation: Isolation) -> int:
        """ListOffset for a stream: its isolation's reader, so READ_COMMITTED's latest is the last stable offset."""
        reader = (await self._hub(topic, partition, isolation)).reader
        with reader.in_use():
            return await reader.list_offset(timestamp)

    async def attach(self, stream: Stream, partition: int, outlet: StreamOutlet) -> tuple[Wake, Detach]:
        """Feed ``partition`` of ``stream`` from its reader (opened within ``max_partition_readers``)."""
        hub = await self._hub(stream.topic, partition, stream.subscribe.isolation)
        attached = hub.taps.attach(stream, outlet)
        if attached is None:
            raise CommandFailed(ErrorCode.INTERNAL_ERROR, "proxy shutting down")
        return attached

    def watch(self, topic: str, notify: Callable[[frozenset[int]], None]) -> Callable[[], None]:
        """Tell ``notify`` the topic's partitions every :data:`PARTITION_WATCH_INTERVAL`; one task per topic."""
        notified = self._watchers.setdefault(topic, [])
        notified.append(notify)
        if topic not in self._watching and self._spawn(lambda: self._watch(topic)):
            self._watching.add(topic)

        def unwatch() -> None:
            if notify in notified:
                notified.remove(notify)

        return unwatch

    async def _watch(self, topic: str) -> None:
        try:
            while self._watchers.get(topic):
                await trio.sleep(PARTITION_WATCH_INTERVAL)
                try:
                    with trio.fail_after(self.deadline):
                        partitions = await self._metadata.partitions_of(topic)
                except (CommandFailed, trio.TooSlowError):
                    continue  # Kafka cannot be reached: the streams' readers report it
                except Exception:
                    # A bug: logged, and the next look tries again (raised, it would end the route).
                    log.exception("bug while looking up the partitions of %s", topic)
                    continue
                for notify in list(self._watchers.get(topic, ())):
                    try:
                        notify(partitions)
                    except Exception:
                        log.exception("bug while telling a stream about the partitions of %s", topic)
        finally:
            self._watching.discard(topic)
            if not self._watchers.get(topic):
                self._watchers.pop(topic, None)
