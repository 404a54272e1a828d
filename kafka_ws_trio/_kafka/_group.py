"""Consumer group members: a kafka-python consumer with ``group_id`` per group stream, fetching nothing itself.

Kafka's group coordinator assigns the partitions, so members on many proxy
processes form one group without any coordination of ours. A member's
consumer only keeps the membership: it joins, heartbeats, commits and leaves.
Its partitions stay paused, and the stream reads them from the route's
shared partition readers like any other stream, so credit, filters and
isolation work exactly as on plain streams.

Threads. kafka-python 3 runs each client's network I/O in an I/O thread of
its own and calls the rebalance listener there. The member's own calls
(poll, commit, close) run one at a time under the consumer's lock, in the
server's Kafka threads, each with a deadline, like the partition readers'.

Revocation is the one moment that must be exact: before the coordinator may
give a partition to another member, this member must have stopped sending
it. The listener therefore hops to the Trio thread synchronously
(``trio.from_thread.run_sync``), which detaches the partitions and returns
what was delivered; an ``auto_commit`` stream's offsets are committed right
there, while the member still owns the partitions. Assignments need no such
hurry: the listener only pauses the new partitions and notes them, and the
member tells the stream after its poll returns, with the group's committed
offsets.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

import trio

from .._ports import GroupListener, Transaction
from .._proto import CommandFailed, ErrorCode
from ._client import ThreadedConsumer, new_consumer
from ._context import KafkaContext
from ._diagnosis import kafka_failure
from ._settings import group_config
from ._transactions import KafkaTransaction

log = logging.getLogger("kafka_ws_trio.kafka")

#: Milliseconds one poll of a member may wait: long enough for a join or sync round trip to finish in it.
POLL_MS: Final = 100
#: Seconds between a member's polls (the heartbeats run in kafka-python's I/O thread meanwhile).
POLL_INTERVAL: Final = 0.2
#: Seconds a member waits before polling again after a poll failed.
RETRY_INTERVAL: Final = 1.0
#: Looks at the topic's metadata before joining, and the seconds between them.
METADATA_TRIES: Final = 20
METADATA_RETRY: Final = 0.1


class MemberSlots:
    """A bound on group members held at once: one for the whole proxy, one per route."""

    def __init__(self, limit: int, setting: str, where: str) -> None:
        self.limit = limit
        self.used = 0
        self._setting = setting
        self._where = where

    def take(self) -> None:
        """Take a slot; raises OVERLOADED, naming the setting, when none is free."""
        if self.used >= self.limit:
            raise CommandFailed(
                ErrorCode.OVERLOADED,
                f"{self.used} consumer group members are open {self._where}, the most {self._setting}"
                f" ({self.limit}) allows",
            )
        self.used += 1

    def give(self) -> None:
        self.used -= 1


def _moved_on(exc: Exception) -> CommandFailed | None:
    """COMMIT_FAILED when Kafka refused a commit because the membership moved on (a rebalance), else None."""
    from kafka import errors

    moved_on = (
        errors.CommitFailedError,
        errors.RebalanceInProgressError,
        errors.IllegalGenerationError,
        errors.UnknownMemberIdError,
        errors.FencedInstanceIdError,
    )
    if isinstance(exc, moved_on):
        return CommandFailed(
            ErrorCode.COMMIT_FAILED,
            f"Kafka refused the commit ({type(exc).__name__}): the group rebalanced or this member left it",
        )
    return None


def _commit_failure(exc: Exception) -> CommandFailed:
    """A commit Kafka refused: COMMIT_FAILED when the membership moved on, else Kafka's own error."""
    return _moved_on(exc) or kafka_failure(exc, "committing")


def _joining(coordinator: Any) -> bool:
    """Whether the member is rejoining its group: a rebalance it must finish by polling."""
    return bool(coordinator.need_rejoin()) or getattr(coordinator, "_join_task", None) is not None


def _is_fatal(exc: Exception) -> bool:
    """Whether a failure of the membership will not go away by trying again."""
    from kafka import errors

    return isinstance(
        exc,
        errors.GroupAuthorizationFailedError
        | errors.TopicAuthorizationFailedError
        | errors.InvalidGroupIdError
        | errors.InvalidSessionTimeoutError
        | errors.IllegalStateError,
    )


class KafkaGroupMember:
    """One stream's membership of a group: its consumer, its poll loop, its commits (a ``GroupMember``)."""

    def __init__(
        self,
        context: KafkaContext,
        client: ThreadedConsumer,
        group: str,
        topic: str,
        listener: GroupListener,
        slots: Sequence[MemberSlots],
    ) -> None:
        self._context = context
        self._client = client
        self.group = group
        self.topic = topic
        self._listener = listener
        self._slots = slots
        self._token = trio.lowlevel.current_trio_token()
        #: Partitions the group gave that the stream has not been told of (the I/O thread adds to it).
        self._new: set[int] = set()
        #: Whether the group has assigned this member partitions (maybe none) at least once.
        self._assigned_once = False
        #: Assignments received (one per rebalance) and not yet added to the route's counters: the I/O
        #: thread counts them here, under the lock, and the Trio side moves them over after each poll.
        self._rebalances = 0
        self._new_lock = threading.Lock()
        #: What an auto_commit stream last committed, so that nothing unchanged is sent again.
        self._committed: dict[int, int] = {}
        self._left = trio.Event()
        self._leaving = False

    def __repr__(self) -> str:
        return f"<group member of {self.group!r} on {self.topic!r}>"

    # ------------------------------------------------ kafka-python's I/O thread

    def listener(self) -> Any:
        """The rebalance listener kafka-python calls in its I/O thread."""
        from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener

        member = self

        class Listener(AsyncConsumerRebalanceListener):  # type: ignore[misc]
            async def on_partitions_revoked(self, revoked: Any) -> None:
                await member._on_revoked(revoked, lost=False)

            async def on_partitions_lost(self, lost: Any) -> None:
                await member._on_revoked(lost, lost=True)

            async def on_partitions_assigned(self, assigned: Any) -> None:
                member._on_assigned(assigned)

        return Listener()

    def _ours(self, partitions: Any) -> frozenset[int]:
        return frozenset(tp.partition for tp in partitions if tp.topic == self.topic)

    def _on_assigned(self, assigned: Any) -> None:
        """Pause the new partitions at once (the member never fetches) and note them for the stream."""
        consumer = self._client.consumer
        ours = [tp for tp in assigned if tp.topic == self.topic]
        if ours:
            consumer.pause(*ours)  # type: ignore[attr-defined]
        with self._new_lock:
            self._new.update(tp.partition for tp in ours)
            self._assigned_once = True
            self._rebalances += 1

    async def _on_revoked(self, revoked: Any, *, lost: bool) -> None:
        """Stop the stream sending the partitions before the coordinator moves them; commit what it delivered."""
        partitions = self._ours(revoked)
        if not partitions:
            return
        with self._new_lock:
            self._new -= partitions
        try:
            offsets = trio.from_thread.run_sync(
                lambda: self._listener.revoked(partitions, lost=lost), trio_token=self._token
            )
        except trio.RunFinishedError:
            return  # the proxy has stopped: nothing is sent any more
        except Exception:
            log.exception("%r: bug while revoking partitions %s", self, sorted(partitions))
            return
        if offsets:
            await self._commit_on_revoke(offsets)

    async def _commit_on_revoke(self, offsets: Sequence[tuple[int, int]]) -> None:
        """Commit inside the revocation, while the member still owns the partitions (kafka-python's own loop)."""
        coordinator = getattr(self._client.consumer, "_coordinator", None)
        commit = getattr(coordinator, "_commit_offsets_sync_async", None)
        if commit is None:  # pragma: no cover - a kafka-python release without it
            log.warning("%r: this kafka-python cannot commit during a rebalance; offsets not committed", self)
            return
        try:
            await commit(self._offsets(offsets), timeout_ms=int(self._context.route.request_timeout * 1000))
        except Exception as exc:
            failure = _commit_failure(exc)
            log.warning("%r: commit before a rebalance failed: %s", self, failure.reason)
            self._tell_trouble(failure)
            return
        for partition, offset in offsets:
            self._committed[partition] = offset

    def _tell_trouble(self, failure: CommandFailed) -> None:
        try:
            trio.from_thread.run_sync(lambda: self._listener.trouble(failure), trio_token=self._token)
        except trio.RunFinishedError:
            pass  # the proxy has stopped: there is no one to tell

    def _offsets(self, offsets: Sequence[tuple[int, int]]) -> dict[Any, Any]:
        from kafka.structs import OffsetAndMetadata, TopicPartition

        return {
            TopicPartition(self.topic, partition): OffsetAndMetadata(offset, "", -1) for partition, offset in offsets
        }

    # ------------------------------------------------------------ Trio side

    def _count_rebalances(self) -> None:
        """Add the assignments the I/O thread noted to the route's counters (on the Trio thread)."""
        with self._new_lock:
            seen, self._rebalances = self._rebalances, 0
        self._context.counters.group_rebalances += seen

    async def _call(self, fn: Any) -> Any:
        async with self._client.lock:
            if self._client.closed:
                raise CommandFailed(ErrorCode.INTERNAL_ERROR, "the group member has left")
            return await self._client.call(fn, self._context.call_budget)

    async def run(self) -> None:
        """Poll (joins, rejoins, runs the listener), tell the stream of new partitions, commit; leave at the end."""
        route = self._context.route
        next_commit = trio.current_time() + route.group_commit_interval
        try:
            while True:
                try:
                    joining = await self._call(self._poll)
                except CommandFailed:
                    raise
                except Exception as exc:
                    failure = kafka_failure(exc, "keeping the group membership")
                    if _is_fatal(exc) or self._client.closed:
                        raise failure from None
                    log.info("%r: %s", self, failure.reason)
                    self._listener.trouble(failure)
                    await trio.sleep(RETRY_INTERVAL)
                    continue
                finally:
                    self._count_rebalances()
                if self._assigned_once:
                    committed = await self._committed_of_new()
                    if committed is not None:
                        await self._listener.assigned(committed)
                if trio.current_time() >= next_commit:
                    next_commit = trio.current_time() + route.group_commit_interval
                    await self._auto_commit()
                if joining:
                    await trio.lowlevel.checkpoint()  # a join is under way: poll again at once (see _poll)
                else:
                    await trio.sleep(POLL_INTERVAL)
        finally:
            await self.leave()

    def _poll(self) -> bool:
        """In a thread: poll once, and again at once while a join is under way; whether one still is.

        kafka-python 3.0.12 keeps a JoinGroup that a poll's timeout cut short for the next
        poll to await, but a join that *finished* while no poll waited for it is dropped, and
        the next poll starts a new one: a new rebalance of the whole group, every time (found by
        the fleet test: the leader rejoined every second and a member never kept partitions).
        So while a join is in flight, polls follow each other with no gap, within a bound that
        keeps the call well inside its deadline.
        """
        consumer: Any = self._client.consumer
        consumer.poll(timeout_ms=POLL_MS)
        coordinator = getattr(consumer, "_coordinator", None)
        if coordinator is None:  # pragma: no cover - a kafka-python without it: polls as before
            return False
        until = time.monotonic() + max(POLL_MS / 1000, self._context.call_budget / 2)
        while _joining(coordinator) and time.monotonic() < until:
            consumer.poll(timeout_ms=POLL_MS)
        return _joining(coordinator)

    async def _committed_of_new(self) -> Mapping[int, int | None] | None:
        """The partitions given since the stream was last told, with the group's committed offsets.

        None when the committed offsets could not be read now: the stream is told at a later round.
        """
        with self._new_lock:
            new = sorted(self._new)
        if not new:
            return {}
        from kafka.structs import TopicPartition

        tps = [TopicPartition(self.topic, partition) for partition in new]
        timeout_ms = int(self._context.route.request_timeout * 1000)

        def fetch() -> Any:
            return self._client.consumer._coordinator.fetch_committed_offsets(tps, timeout_ms=timeout_ms)  # type: ignore[attr-defined]

        try:
            found = await self._call(fetch)
        except CommandFailed:
            raise
        except Exception as exc:
            self._listener.trouble(kafka_failure(exc, "reading the group's committed offsets"))
            return None
        with self._new_lock:
            still = self._new & set(new)  # a revocation may have come meanwhile
            self._new -= still
        committed: dict[int, int | None] = {}
        for tp in tps:
            if tp.partition in still:
                entry = found.get(tp)
                offset = getattr(entry, "offset", None)
                committed[tp.partition] = offset if offset is not None and offset >= 0 else None
        return committed

    async def _auto_commit(self) -> None:
        offsets = [pair for pair in self._listener.to_commit() if self._committed.get(pair[0]) != pair[1]]
        if not offsets:
            return
        try:
            await self.commit(offsets)
        except CommandFailed as exc:
            if exc.code == ErrorCode.INTERNAL_ERROR:
                raise
            self._listener.trouble(exc)

    async def commit(self, offsets: Sequence[tuple[int, int]], transaction: Transaction | None = None) -> None:
        if not offsets:
            return
        prepared = self._offsets(offsets)
        if transaction is not None:
            assert isinstance(transaction, KafkaTransaction)
            # KIP-447: the member's generation goes along, so a member that lost its partitions is fenced.
            metadata = self._client.consumer.group_metadata()  # type: ignore[attr-defined]
            await transaction.send_offsets(prepared, metadata, _moved_on)
            return
        timeout_ms = int(self._context.route.request_timeout * 1000)
        try:
            await self._call(lambda: self._client.consumer.commit(prepared, timeout_ms=timeout_ms))  # type: ignore[attr-defined]
        except CommandFailed:
            raise
        except Exception as exc:
            raise _commit_failure(exc) from None
        for partition, offset in offsets:
            self._committed[partition] = offset

    async def leave(self) -> None:
        """Close the consumer (kafka-python revokes, which commits for auto_commit, then sends LeaveGroup)."""
        if self._leaving:
            with trio.move_on_after(self._context.deadline, shield=True):
                await self._left.wait()
            return
        self._leaving = True
        try:
            await self._client.aclose()  # shielded and time-limited
        finally:
            self._count_rebalances()  # closing may have revoked; a rebalance finished before it still counts
            for slot in self._slots:
                slot.give()
            self._left.set()


async def join_group(
    context: KafkaContext, group: str, topic: str, listener: GroupListener, slots: Sequence[MemberSlots]
) -> KafkaGroupMember:
    """A new member of ``group`` subscribed to ``topic`` (slots taken first; given back if it fails)."""
    taken: list[MemberSlots] = []
    try:
        for slot in slots:
            slot.take()
            taken.append(slot)
        client = await _open_member(context, group)
    except BaseException:
        for slot in taken:
            slot.give()
        raise
    member = KafkaGroupMember(context, client, group, topic, listener, slots)

    def subscribe() -> None:
        consumer: Any = client.consumer
        consumer.subscribe([topic], listener=member.listener())
        # The topic's metadata, now that it is subscribed and before the first join: a leader
        # that assigns without it gives nobody anything, and one whose metadata changes after it
        # assigned rebalances the group again at once. (topics() refreshes the metadata; a topic
        # just created may not be in the first answer, though the proxy has seen it.)
        for _ in range(METADATA_TRIES):
            if topic in consumer.topics():
                break
            time.sleep(METADATA_RETRY)

    try:
        await member._call(subscribe)
    except BaseException:
        await member.leave()
        raise
    context.counters.group_members_joined += 1
    return member


async def _open_member(context: KafkaContext, group: str) -> ThreadedConsumer:
    """A connected consumer with ``group_id`` set; raises :class:`CommandFailed` within the route's deadline."""
    route = context.route

    def open_consumer() -> Any:
        return new_consumer(route, group_config(route, group), "joining the group")

    try:
        with trio.fail_after(context.deadline):
            consumer = await trio.to_thread.run_sync(open_consumer, limiter=context.limiter)
    except trio.TooSlowError:
        raise CommandFailed(ErrorCode.TIMEOUT, "connecting to Kafka timed out") from None
    context.counters.consumers_created += 1
    return ThreadedConsumer(context, consumer)
