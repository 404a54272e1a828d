"""One session's push streams: opening, credit, seek and closing, against a ``StreamingBackend``.

The sans-IO :class:`~kafka_ws_trio._proto.Streams` keeps the state (ids,
positions, credit, epochs); this module does what needs Kafka or time:
finding a stream's partitions and where each starts, attaching each
partition to its reader's fan-out, and detaching them. Pushes themselves
are written by the session (:class:`Pusher`); a stream's partitions are fed
by the partition readers' pumps, never by a task of this session.

Order on the wire:
- a subscribe's answer comes before any push of its stream: the partitions
  are attached held, and released once the answer is sent;
- after the answer to an unsubscribe nothing of the stream is pushed: it is
  closed (so nothing more is cut, and pushes already cut are dropped) first;
- after the answer to a seek, no batch of that partition from before the seek
  arrives (its epoch moved), and none after it arrives before the answer (the
  stream is held while the seek runs).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Any, Protocol

import attrs
import trio

from ._ports import Detach, GroupBackend, GroupMember, StreamingBackend, Transaction, Wake
from ._proto import (
    AtOffset,
    AtTimestamp,
    CommandFailed,
    Commit,
    ErrorCode,
    PushBatch,
    Seek,
    StartEdge,
    Stream,
    StreamLimits,
    Streams,
    Subscribe,
    encode_ok,
    encode_stream_event_ended,
    encode_stream_event_error,
    encode_stream_event_partitions,
    encode_subscribe_answer,
    unknown_stream,
)

#: What runs once a stream command's answer is sent (before the stream's next command).
After = Callable[[], None]
#: Looks in a row that find a stream's topic gone before the stream is ended (one could be a glitch).
TOPIC_GONE_LOOKS = 2
#: Seconds before a group stream tries again to start partitions it was given but could not start.
GROUP_RETRY_INTERVAL = 1.0

log = logging.getLogger("kafka_ws_trio.session")


class Pusher(Protocol):
    """The session's side of pushing (``_session``)."""

    def push_ready(self) -> bool:
        """Whether a push would be written now (nothing of the session's pushes waits to be sent)."""
        ...

    def push(self, stream: Stream | None, item: PushBatch | bytes) -> None:
        """Send a batch (confirmed just before it is written) or an event frame of ``stream``; never blocks.

        An event of a stream that has closed by the time it is written is dropped, unless
        ``stream`` is None: the stream's last words (``ended``), sent whatever happens.
        """
        ...


@attrs.define(eq=False)
class _Outlet:
    """A stream as the partition readers see it (a ``StreamOutlet``), and what its session keeps of it.

    One object a stream (slotted): what the session knows of a stream lives here,
    not in dicts by stream id, each of which would cost every session its own.
    """

    pusher: Pusher
    stream: Stream
    #: Commands under way that must finish before the stream pushes again (subscribe, seek).
    holds: int = 0
    #: The partitions fed to it, with how to wake each one's pump and how to detach from it.
    feeds: dict[int, tuple[Wake, Detach]] = attrs.Factory(dict)
    #: How it stops watching its topic's partitions; None until it is opened.
    unwatch: Callable[[], None] | None = None
    #: Looks in a row that did not find its topic.
    topic_missing: int = 0
    #: Partitions already reported as past the stream's bound; None until one is.
    reported_left_out: set[int] | None = None
    #: Whether a task is adding partitions the topic gained to it.
    adding: bool = False
    #: A group stream's membership: what its member tells it, the member, and the scope its work runs in.
    membership: _Membership | None = None
    member: GroupMember | None = None
    member_scope: trio.CancelScope | None = None

    def ready(self) -> bool:
        return self.holds == 0 and self.stream.open and self.pusher.push_ready()

    def push(self, batch: PushBatch) -> None:
        self.pusher.push(self.stream, batch)

    def event(self, frame: bytes) -> None:
        self.pusher.push(self.stream, frame)


def start_failure(exc: CommandFailed | trio.TooSlowError) -> CommandFailed:
    """Why a partition could not be started now (its error event): Kafka's failure, or its deadline."""
    return exc if isinstance(exc, CommandFailed) else CommandFailed(ErrorCode.TIMEOUT, "timed out")


def subscribe_failure(topic: str, failure: CommandFailed, partition: int | None = None) -> CommandFailed:
    where = "" if partition is None else f", partition: {partition}"
    return CommandFailed(failure.code, f"failed to subscribe, topic: {topic}{where}, err: {failure.reason}")


class SessionStreams:
    """The push streams of one session."""

    __slots__ = ("_backend", "_lookups", "_outlets", "_pusher", "_spawn", "_transaction", "registry")

    def __init__(
        self,
        backend: StreamingBackend,
        max_message_size: int,
        limits: StreamLimits,
        pusher: Pusher,
        workers: int,
        spawn: Callable[..., Any],
        transaction: Callable[[], Transaction | None] = lambda: None,
    ) -> None:
        self._backend = backend
        self._spawn = spawn
        #: The session's open transaction, if any: a group stream's commit then goes into it.
        self._transaction = transaction
        groups = isinstance(backend, GroupBackend) and backend.serves_groups
        self.registry = Streams(max_message_size, limits, backend.filters, groups=groups)
        self._pusher = pusher
        #: The open streams' outlets (their partitions, watch, holds), by stream id.
        self._outlets: dict[int, _Outlet] = {}
        #: Kafka lookups one subscribe makes at once (its partitions' start offsets).
        self._lookups = max(1, workers)

    def __len__(self) -> int:
        return len(self.registry)

    # ------------------------------------------------------------- subscribe

    def open(self, command: Subscribe) -> Stream:
        """Register the stream (bounds, id, credit); raises :class:`CommandFailed`. Kafka is asked by :meth:`start`."""
        stream = self.registry.open(command)
        self._outlets[stream.id] = _Outlet(self._pusher, stream, holds=1)
        return stream

    async def start(self, stream: Stream) -> tuple[bytes, After | None]:
        """Find the stream's partitions and starts, attach them held; the answer, and what releases them.

        On failure the stream is closed again and :class:`CommandFailed` raised.
        """
        if stream.in_group:
            return await self._start_group(stream)
        topic = stream.topic
        try:
            try:
                available = await self._backend.partitions_of(topic)
            except CommandFailed as exc:
                raise subscribe_failure(topic, exc) from None
            named = stream.subscribe.partitions
            if named:
                missing = [p for p in named if p not in available]
                if missing:
                    failure = CommandFailed(ErrorCode.PARTITION_NOT_FOUND, "not found partition")
                    raise subscribe_failure(topic, failure, missing[0])
                stream.add_partitions(named)
            else:
                stream.add_partitions(sorted(available))
            await self._place_all(stream)
            for partition in stream.partitions:
                await self._attach(stream, partition)
        except BaseException:
            self._forget(stream)
            if self.registry.find(stream.id) is stream:
                self.registry.close(stream.id)
            raise
        unwatch = self._backend.watch(topic, partial(self._partitions_seen, stream))
        outlet = self._outlet_of(stream)
        if outlet is None:  # pragma: no cover - nothing closes a stream between its last attach and here
            unwatch()
        else:
            outlet.unwatch = unwatch
        positions = [(p, stream.position(p) or 0) for p in stream.partitions]
        return encode_subscribe_answer(stream.id, positions), lambda: self._release(stream)

    async def _place_all(self, stream: Stream) -> None:
        """Look up where each partition without a named offset starts, a few at a time.

        A named offset is not checked here (a thousand clients resuming would cost two
        lookups each): one outside the log is found by the partition's pump, which
        moves it to the log's nearest end and says so in an error event.
        """
        limiter = trio.CapacityLimiter(self._lookups)

        async def place(partition: int) -> None:
            async with limiter:
                epoch = stream.epoch(partition)
                try:
                    offset = await self._lookup(stream, partition, stream.start_of(partition))
                except CommandFailed as exc:
                    raise subscribe_failure(stream.topic, exc, partition) from None
                stream.place(partition, offset, epoch=epoch)

        async with trio.open_nursery() as nursery:
            for partition in (p for p in stream.partitions if stream.position(p) is None):
                nursery.start_soon(place, partition)

    async def _lookup(self, stream: Stream, partition: int, target: StartEdge | AtTimestamp | AtOffset) -> int:
        """The offset a start or seek target names in one partition of ``stream`` (as its isolation sees it)."""
        topic, isolation = stream.topic, stream.subscribe.isolation

        async def offset_at(timestamp: int) -> int:
            return await self._backend.stream_offset(topic, partition, timestamp, isolation)

        if isinstance(target, AtOffset):
            # A named offset must be in the log (its end included): refused now, not found out by the pump.
            earliest = await offset_at(-2)
            latest = await offset_at(-1)
            if not earliest <= target.offset <= latest:
                raise CommandFailed(ErrorCode.OFFSET_OUT_OF_RANGE, "OFFSET_OUT_OF_RANGE")
            return target.offset
        if isinstance(target, AtTimestamp):
            found = await offset_at(target.ms)
            if found >= 0:
                return found
            target = StartEdge.LATEST  # no record at or after that time: wait for the next one
        return await offset_at(-2 if target == StartEdge.EARLIEST else -1)

    async def _attach(self, stream: Stream, partition: int) -> None:
        outlet = self._outlet_of(stream)
        if outlet is None or not stream.open:
            raise CommandFailed(ErrorCode.INTERNAL_ERROR, "the stream was closed while it opened")
        try:
            handles = await self._backend.attach(stream, partition, outlet)
        except CommandFailed as exc:
            raise subscribe_failure(stream.topic, exc, partition) from None
        if self._outlet_of(stream) is not outlet:  # pragma: no cover - closed during the attach
            handles[1]()
            raise CommandFailed(ErrorCode.INTERNAL_ERROR, "the stream was closed while it opened")
        outlet.feeds[partition] = handles

    # ------------------------------------------------- partitions added later

    def _outlet_of(self, stream: Stream) -> _Outlet | None:
        """``stream``'s outlet; None once it is closed, even if a new stream has taken its id."""
        outlet = self._outlets.get(stream.id)
        return outlet if outlet is not None and outlet.stream is stream else None

    def _partitions_seen(self, stream: Stream, partitions: frozenset[int]) -> None:
        """The topic's partitions, after a metadata refresh: start reading the ones not fed yet."""
        outlet = self._outlet_of(stream)
        if outlet is None or not stream.open:
            return
        if not partitions:
            outlet.topic_missing += 1
            if outlet.topic_missing >= TOPIC_GONE_LOOKS:
                self.end(stream, CommandFailed(ErrorCode.TOPIC_NOT_FOUND, "not found topic"))
            return
        outlet.topic_missing = 0
        if not stream.follows_topic or stream.in_group or outlet.adding:
            return
        missing = [p for p in sorted(partitions) if p not in outlet.feeds]
        if missing:
            outlet.adding = True
            self._spawn(self._add_partitions, stream, outlet, missing)

    async def _add_partitions(self, stream: Stream, outlet: _Outlet, partitions: list[int]) -> None:
        """Read partitions added to the topic from their earliest record, announced before any of their records.

        The stream is held meanwhile, so the ``partitions`` event comes first. A
        partition that cannot be started now (Kafka down) gets an error event and
        is tried again at the next refresh; partitions past the stream's bound are
        reported once.
        """
        if self._outlet_of(stream) is not outlet:
            outlet.adding = False
            return
        _, left_out = stream.gain_partitions(partitions)
        reading = set(stream.partitions)
        outlet.holds += 1
        try:
            placed: list[tuple[int, int]] = []
            for partition in (p for p in partitions if p in reading):
                try:
                    with trio.fail_after(self._backend.deadline * 2):
                        epoch = stream.epoch(partition)
                        offset = await self._lookup(stream, partition, StartEdge.EARLIEST)
                        stream.place(partition, offset, epoch=epoch)
                        handles = await self._backend.attach(stream, partition, outlet)
                except (CommandFailed, trio.TooSlowError) as exc:
                    failure = start_failure(exc)
                    frame = encode_stream_event_error(stream.id, failure.code, failure.reason, partition)
                    self._pusher.push(stream, frame)
                    break
                if not stream.open:
                    handles[1]()
                    return
                outlet.feeds[partition] = handles
                placed.append((partition, offset))
            if placed:
                assigned = [p for p, _ in placed]
                self._pusher.push(stream, encode_stream_event_partitions(stream.id, assigned, [], placed))
            if left_out is not None:
                reported = outlet.reported_left_out
                if reported is None:
                    reported = outlet.reported_left_out = set()
                if not set(partitions) - reading <= reported:
                    reported |= set(partitions) - reading
                    frame = encode_stream_event_error(stream.id, left_out.code, left_out.reason, None)
                    self._pusher.push(stream, frame)
        finally:
            outlet.adding = False
            self._release(stream)

    # ------------------------------------------------------------- groups

    async def _start_group(self, stream: Stream) -> tuple[bytes, After | None]:
        """Join the stream's group; the answer, once the group's first assignment is placed and attached.

        The member's work runs in the session's nursery until the stream closes; then it
        leaves the group. On failure the stream is closed and its member has left.
        """
        backend = self._backend
        assert isinstance(backend, GroupBackend)  # the registry opens group streams only then
        topic = stream.topic
        outlet = self._outlet_of(stream)
        if outlet is None:  # pragma: no cover - nothing closes a stream before its subscribe runs
            raise CommandFailed(ErrorCode.INTERNAL_ERROR, "the stream was closed while it opened")
        member: GroupMember | None = None
        try:
            try:
                await backend.partitions_of(topic)
                membership = outlet.membership = _Membership(self, stream, outlet)
                member = await backend.join(stream.subscribe.group, topic, membership)
            except CommandFailed as exc:
                raise subscribe_failure(topic, exc) from None
            outlet.member = member
            outlet.member_scope = trio.CancelScope()
            self._spawn(self._run_member, stream, outlet, member)
            await membership.first.wait()
            if membership.failure is not None:
                raise subscribe_failure(topic, membership.failure)
        except BaseException:
            self._forget(stream)
            if self.registry.find(stream.id) is stream:
                self.registry.close(stream.id)
            if member is not None:
                await member.leave()  # shielded and time-limited
            raise
        outlet.unwatch = self._backend.watch(topic, partial(self._partitions_seen, stream))
        positions = [(p, stream.position(p) or 0) for p in stream.partitions]
        return encode_subscribe_answer(stream.id, positions), membership.answered

    async def _run_member(self, stream: Stream, outlet: _Outlet, member: GroupMember) -> None:
        """The member's work, until the stream closes (its scope is cancelled) or the membership cannot go on."""
        assert outlet.member_scope is not None
        assert outlet.membership is not None
        with outlet.member_scope:
            try:
                await member.run()
            except CommandFailed as exc:
                self._member_failed(stream, outlet.membership, exc)
            except Exception:
                log.exception("bug in the group member of stream %d", stream.id)
                failure = CommandFailed(ErrorCode.INTERNAL_ERROR, "internal error in the group member")
                self._member_failed(stream, outlet.membership, failure)

    def _member_failed(self, stream: Stream, membership: _Membership, failure: CommandFailed) -> None:
        """The membership cannot go on: before the first assignment the subscribe fails, after it the stream ends."""
        if not membership.first.is_set():
            membership.failure = failure
            membership.first.set()  # the subscribe, waiting for it, fails with this
            return
        self.end(stream, failure)

    async def commit(self, command: Commit, stream: Stream) -> tuple[bytes, After | None]:
        """Commit offsets of a group stream (those named, or what it delivered); the answer once Kafka has them.

        While the session has a transaction open, the offsets go into it instead (answered once
        Kafka has added them): they count only if it commits.
        """
        self._still_open(stream)
        if not stream.in_group:
            raise CommandFailed(
                ErrorCode.INVALID_REQUEST, f"stream {stream.id} is not in a consumer group; only group streams commit"
            )
        outlet = self._outlets[stream.id]
        assert outlet.member is not None  # the subscribe, which joined, was answered before this runs
        if command.offsets is None:
            offsets = stream.delivered()
        else:
            stream.check_assigned(partition for partition, _ in command.offsets)
            offsets = list(command.offsets)
        try:
            await outlet.member.commit(offsets, self._transaction())
        except CommandFailed as exc:
            raise CommandFailed(exc.code, f"failed to commit, topic: {stream.topic}, err: {exc.reason}") from None
        return encode_ok(command.sequence), None

    def _release(self, stream: Stream) -> None:
        """A hold on ``stream`` ends (never on a stream that has since taken its id)."""
        outlet = self._outlet_of(stream)
        if outlet is not None:
            outlet.holds -= 1
            self.wake(stream.id)

    # ---------------------------------------------------------------- credit

    def wake(self, stream_id: int) -> None:
        """Have every partition of the stream look at it again (credit came, a hold ended)."""
        outlet = self._outlets.get(stream_id)
        if outlet is not None:
            for wake, _ in outlet.feeds.values():
                wake()

    def wake_all(self) -> None:
        """Every stream of the session may take pushes again (what waited to be sent has gone)."""
        for outlet in self._outlets.values():
            for wake, _ in outlet.feeds.values():
                wake()

    # ------------------------------------------------------- seek, unsubscribe

    def _still_open(self, stream: Stream) -> None:
        """Raise UNKNOWN_STREAM unless ``stream`` is still open under its id (it may have ended meanwhile)."""
        if self.registry.find(stream.id) is not stream:
            raise unknown_stream(stream.id)

    async def seek(self, command: Seek, stream: Stream) -> tuple[bytes, After | None]:
        """Move one partition of ``stream`` (the one the seek named when it came); the answer, and what
        lets the stream push again."""
        self._still_open(stream)
        outlet = self._outlets[stream.id]
        stream.position(command.partition)  # raises for a partition the stream does not read
        outlet.holds += 1
        try:
            # The target first (an offset is checked against the log): a seek that fails moves nothing.
            try:
                offset = await self._lookup(stream, command.partition, command.to)
            except CommandFailed as exc:
                reason = f"failed to seek, topic: {stream.topic}, partition: {command.partition}, err: {exc.reason}"
                raise CommandFailed(exc.code, reason) from None
            epoch = stream.seek(command.partition, command.to)
            stream.place(command.partition, offset, epoch=epoch)
        except BaseException:
            self._release(stream)
            raise
        return encode_ok(command.sequence), lambda: self._release(stream)

    async def unsubscribe(self, stream: Stream, sequence: int) -> bytes:
        """Close ``stream`` (nothing of it is pushed from now on); the answer.

        A group stream leaves its group first (an ``auto_commit`` one commits what it
        delivered as its partitions are revoked), so the answer means it is done.
        """
        self._still_open(stream)
        outlet = self._outlet_of(stream)
        member = outlet.member if outlet is not None else None
        self.registry.close(stream.id)
        self._forget(stream)
        if member is not None:
            await member.leave()
        return encode_ok(sequence)

    def end(self, stream: Stream, failure: CommandFailed) -> None:
        """The stream cannot go on (its topic is gone): push ``ended`` and close it; its id is free again."""
        if not stream.open or self.registry.find(stream.id) is not stream:
            return
        self._pusher.push(None, encode_stream_event_ended(stream.id, failure.code, failure.reason))
        self.registry.close(stream.id)
        self._forget(stream)

    def _forget(self, stream: Stream) -> None:
        outlet = self._outlet_of(stream)
        if outlet is None:
            return
        del self._outlets[stream.id]
        if outlet.member_scope is not None:
            outlet.member_scope.cancel()  # its member leaves the group (shielded) as its work ends
        if outlet.unwatch is not None:
            outlet.unwatch()
        for _, detach in outlet.feeds.values():
            detach()

    def close_all(self) -> None:
        """The session is ending: close every stream and detach every partition."""
        streams: Sequence[Stream] = list(self.registry)
        self.registry.close_all()
        for stream in streams:
            self._forget(stream)


class _Membership:
    """A group stream as its member sees it (a ``GroupListener``): revocations, assignments, auto commits.

    Order on the wire: a ``partitions`` event comes before any record of a partition it
    assigns (the stream is held while they are placed and attached) and after the last
    record of a partition it revokes (detached, and its cut batches dropped, first). Before
    the subscribe's answer is sent, changes are kept and pushed right after it.
    """

    def __init__(self, streams: SessionStreams, stream: Stream, outlet: _Outlet) -> None:
        self._streams = streams
        self._stream = stream
        self._outlet = outlet
        #: Set once the group's first assignment is placed (the subscribe's answer waits for it),
        #: or the membership failed before it (``failure``).
        self.first = trio.Event()
        self.failure: CommandFailed | None = None
        #: Whether the subscribe's answer has been sent; events wait in ``_deferred`` until then.
        self._sent = False
        self._deferred: list[bytes] = []
        #: Partitions given but not started yet (a lookup or attach failed), with their committed offsets.
        self._waiting: dict[int, int | None] = {}
        self._retry_at = 0.0

    def _emit(self, frame: bytes) -> None:
        if self._sent:
            self._streams._pusher.push(self._stream, frame)
        else:
            self._deferred.append(frame)

    def answered(self) -> None:
        """The subscribe's answer is sent: push what changed since, then let the stream go."""
        self._sent = True
        deferred, self._deferred = self._deferred, []
        for frame in deferred:
            self._streams._pusher.push(self._stream, frame)
        self._streams._release(self._stream)

    def revoked(self, partitions: frozenset[int], *, lost: bool) -> Sequence[tuple[int, int]]:
        stream, outlet = self._stream, self._outlet
        for partition in partitions:
            self._waiting.pop(partition, None)
            handles = outlet.feeds.pop(partition, None)
            if handles is not None:
                handles[1]()  # detach: the partition's pump cuts nothing more for it
        read = sorted(p for p in partitions if stream.reads(p))
        delivered = stream.revoke(partitions)  # batches cut and not yet written are dropped
        if read and stream.open:
            self._emit(encode_stream_event_partitions(stream.id, [], read, []))
        return delivered if stream.subscribe.auto_commit and not lost else []

    async def assigned(self, committed: Mapping[int, int | None]) -> None:
        self._waiting.update(committed)
        now = trio.current_time()
        if self.first.is_set() and (not committed and (not self._waiting or now < self._retry_at)):
            return
        stream, outlet, streams = self._stream, self._outlet, self._streams
        if not stream.open:
            self.first.set()
            return
        placed: list[tuple[int, int]] = []
        outlet.holds += 1
        try:
            for partition, offset in sorted(self._waiting.items()):
                started = await self._start(partition, offset)
                if started is not None:
                    placed.append((partition, started))
                    self._waiting.pop(partition, None)
        finally:
            self._retry_at = trio.current_time() + GROUP_RETRY_INTERVAL
            # The first assignment is told by the subscribe's answer, not by an event.
            if placed and stream.open and self.first.is_set():
                assigned = [p for p, _ in placed]
                self._emit(encode_stream_event_partitions(stream.id, assigned, [], placed))
            streams._release(stream)
            self.first.set()

    async def _start(self, partition: int, committed: int | None) -> int | None:
        """Place and attach one partition the group gave: at its committed offset, else where the subscribe says.

        None when it could not start now (an error event says why; it is tried again), or was revoked meanwhile.
        """
        stream, outlet, streams = self._stream, self._outlet, self._streams
        added = False
        try:
            with trio.fail_after(streams._backend.deadline * 2):
                if committed is None:
                    offset = await streams._lookup(stream, partition, stream.start_of(partition))
                else:
                    offset = committed
                if partition not in self._waiting or not stream.open:
                    return None  # revoked while it was looked up
                new, left_out = stream.assign([(partition, offset)])
                if left_out is not None:
                    # Past max_stream_partitions: reported once, not tried again (it stays the member's,
                    # unread, until the next rebalance).
                    self._waiting.pop(partition, None)
                    self._emit(encode_stream_event_error(stream.id, left_out.code, left_out.reason, partition))
                if not new:
                    return None
                added = True
                handles = await streams._backend.attach(stream, partition, outlet)
        except (CommandFailed, trio.TooSlowError) as exc:
            if added:
                stream.revoke([partition])
            failure = start_failure(exc)
            self._emit(encode_stream_event_error(stream.id, failure.code, failure.reason, partition))
            return None
        if partition not in self._waiting or not stream.reads(partition) or not stream.open:
            handles[1]()  # revoked (or closed) while it was attached
            return None
        outlet.feeds[partition] = handles
        return offset

    def to_commit(self) -> Sequence[tuple[int, int]]:
        stream = self._stream
        return stream.delivered() if stream.subscribe.auto_commit and stream.open else []

    def trouble(self, failure: CommandFailed) -> None:
        if self._stream.open:
            self._emit(encode_stream_event_error(self._stream.id, failure.code, failure.reason, None))


#: A stream command's work: the answer and what runs once it is sent.
StreamWork = Callable[[], Awaitable[tuple[bytes, After | None]]]
