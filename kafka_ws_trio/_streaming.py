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

from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, Protocol

import attrs
import trio

from ._ports import Detach, StreamingBackend, Wake
from ._proto import (
    AtOffset,
    AtTimestamp,
    CommandFailed,
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

    def ready(self) -> bool:
        return self.holds == 0 and self.stream.open and self.pusher.push_ready()

    def push(self, batch: PushBatch) -> None:
        self.pusher.push(self.stream, batch)

    def event(self, frame: bytes) -> None:
        self.pusher.push(self.stream, frame)


def subscribe_failure(topic: str, failure: CommandFailed, partition: int | None = None) -> CommandFailed:
    where = "" if partition is None else f", partition: {partition}"
    return CommandFailed(failure.code, f"failed to subscribe, topic: {topic}{where}, err: {failure.reason}")


class SessionStreams:
    """The push streams of one session."""

    __slots__ = ("_backend", "_lookups", "_outlets", "_pusher", "_spawn", "registry")

    def __init__(
        self,
        backend: StreamingBackend,
        max_message_size: int,
        limits: StreamLimits,
        pusher: Pusher,
        workers: int,
        spawn: Callable[..., Any],
    ) -> None:
        self._backend = backend
        self._spawn = spawn
        self.registry = Streams(max_message_size, limits, backend.filters)
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
        if not stream.follows_topic or outlet.adding:
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
                    failure = exc if isinstance(exc, CommandFailed) else CommandFailed(ErrorCode.TIMEOUT, "timed out")
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

    def unsubscribe(self, stream: Stream, sequence: int) -> bytes:
        """Close ``stream`` (nothing of it is pushed from now on); the answer."""
        self._still_open(stream)
        self.registry.close(stream.id)
        self._forget(stream)
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


#: A stream command's work: the answer and what runs once it is sent.
StreamWork = Callable[[], Awaitable[tuple[bytes, After | None]]]
