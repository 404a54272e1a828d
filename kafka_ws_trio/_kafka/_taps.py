"""A partition's push streams: one read offered to every stream on the partition.

Each stream that reads the partition is a tap here. One pump task per
partition (not per stream) serves all of them: it offers what the window
holds to the taps whose position it covers, polls the log end for taps that
are there, and reads history for taps behind the window, one read at a time,
from the earliest position asked for. Each read becomes a :class:`Chunk`, so
each distinct filter runs once on it and streams at the same place share one
encoded body; :meth:`Stream.cut` decides, per stream, what its credit buys.

A tap without credit, or whose session has not sent its last push yet, is
skipped and costs nothing but its place in the list; the session wakes the
pump when that changes. When no tap can take anything, the pump sleeps until
woken, and it ends when the last tap detaches.
"""

from __future__ import annotations

import bisect
import logging
from functools import partial
from typing import Final

import attrs
import trio

from .._ports import Detach, StreamOutlet, Wake
from .._proto import (
    CONNECTION_FAILURES,
    Chunk,
    CommandFailed,
    ErrorCode,
    Stream,
    encode_stream_event_caught_up,
    encode_stream_event_error,
)
from ._context import KafkaContext
from ._reader import PartitionReader
from ._settings import MAX_POLL_RECORDS

log = logging.getLogger("kafka_ws_trio.kafka")

#: Most records of the window offered to the taps at one position in one round (a batch
#: holds at most a frame's worth anyway; the rest is offered again in the next round).
WINDOW_CHUNK_RECORDS: Final = 4096
#: Seconds between attempts while Kafka cannot be reached (each attempt has its own deadline).
RETRY_PAUSE: Final = 1.0


@attrs.frozen
class TapLag:
    """One stream's place on a partition, as :meth:`StreamTaps.lags` finds it for the statistics."""

    stream: Stream
    #: Records from its position to the partition's log end as the reader last saw it (the high watermark;
    #: for READ_COMMITTED, the last stable offset); None while its position or the log end is not known yet.
    lag: int | None
    #: Whether it is behind the log end with no credit left: records wait for the client's next grant.
    starved: bool


@attrs.define(eq=False)
class _Tap:
    """One stream reading this partition."""

    stream: Stream
    outlet: StreamOutlet
    #: Whether the last thing it was told is that it reached the high watermark, and the partition's
    #: seek epoch then: a seek starts the partition over, so it is told again when it catches up.
    caught_up: bool = False
    caught_up_epoch: int = 0
    #: The seek epoch at which its next record turned out too large to send: it waits for a seek.
    stuck_at: int | None = None
    #: The failure it was last told about, so that an outage is reported once, not every retry.
    told: ErrorCode | None = None
    #: The seek epoch at which a read was made at its position because that was past the log end
    #: as last seen: once per placing, so that a tap there is moved into the log (or finds the log grew)
    #: even while the reads for the others start lower.
    checked_past_end: int | None = None
    detached: bool = False

    def position(self, partition: int) -> int | None:
        if self.detached or not self.stream.open:
            return None
        return self.stream.position(partition)

    def wants(self, partition: int) -> bool:
        """Whether it could take a batch now: open, placed, with credit, not stuck, its session ready."""
        stream = self.stream
        if self.position(partition) is None or stream.credit.paused or not self.outlet.ready():
            return False
        return self.stuck_at is None or self.stuck_at != stream.epoch(partition)


class StreamTaps:
    """The push streams of one partition reader, and the pump that feeds them."""

    def __init__(self, context: KafkaContext, reader: PartitionReader) -> None:
        self._context = context
        self._reader = reader
        self._partition = reader.partition
        self._taps: list[_Tap] = []
        self._pumping = False
        #: Whether a read for the streams runs beside the pump (one at a time).
        self._reading = False
        self._woken = trio.Event()
        #: Whether anything that may change a round happened since the last round began: a wake from
        #: outside (credit, a drained session, attach, detach, seek) or a read that found records.
        self._changed = True
        #: The log end where the last round's read found nothing, when every stream that wanted
        #: records waited there: until something changes, the pump polls there again without a round.
        self._idle_at: int | None = None

    def __len__(self) -> int:
        return sum(1 for tap in self._taps if not tap.detached)

    def lags(self) -> list[TapLag]:
        """Each stream on the partition now: how far behind the log end it is, and whether credit holds it back.

        For the statistics, at the moment they are asked for: it reads the positions
        and credit the pump keeps anyway, and adds nothing to the pump's work. The log
        end is as of the reader's last poll, so a partition nobody polls (every stream on
        it paused) shows the lag of that moment, not of records written since.
        """
        reader, partition = self._reader, self._partition
        known = reader.highwater is not None or reader.log_end is not None
        found = []
        for tap in self._taps:
            stream = tap.stream
            if tap.detached or not stream.open or not stream.reads(partition):
                continue  # (a group's revoked partition is no longer the stream's, even before its tap goes)
            position = stream.position(partition)
            lag = max(0, self._highwater() - position) if known and position is not None else None
            found.append(TapLag(stream, lag, bool(lag) and stream.credit.paused))
        return found

    def attach(self, stream: Stream, outlet: StreamOutlet) -> tuple[Wake, Detach] | None:
        """Feed ``stream`` from this partition; None when the route is not running."""
        tap = _Tap(stream, outlet)
        if not self._pumping:
            self._pumping = self._reader.in_background(self._pump)
            if not self._pumping:
                return None
        self._taps.append(tap)
        self.wake()

        def detach() -> None:
            tap.detached = True
            self.wake()

        return self.wake, detach

    def wake(self) -> None:
        """Have the pump look at every tap again (credit came, a session drained its pushes)."""
        self._changed = True
        self._rouse()

    def _rouse(self) -> None:
        """Wake the pump (start it again if it ended while a tap is attached), without asking for a round."""
        self._woken.set()
        if not self._pumping and any(not tap.detached for tap in self._taps):
            self._pumping = self._reader.in_background(self._pump)

    # -------------------------------------------------------------------- pump

    async def _pump(self) -> None:
        try:
            while True:
                if not self._changed and self._idle_at is not None:
                    await self._poll_again(self._idle_at)
                    continue
                self._changed, self._idle_at = False, None
                self._taps = [tap for tap in self._taps if not tap.detached and tap.stream.open]
                if not self._taps:
                    return
                self._woken = trio.Event()
                wanting = [tap for tap in self._taps if tap.wants(self._partition)]
                if not wanting:
                    ahead = None if self._reading else self._read_ahead_offset()
                    if ahead is None:
                        await self._woken.wait()
                    else:
                        await self._read_ahead(ahead)
                    continue
                if not await self._serve(wanting):
                    return  # the route is shutting down: no read can start, and none will end to wake us
        except Exception:
            log.exception("bug while feeding streams of %r", self._reader)
            for tap in self._taps:
                tap.outlet.event(self._error(tap, CommandFailed(ErrorCode.INTERNAL_ERROR, "internal error")))
            # Not raised: that would end the route's nursery, every session of the route with it.
            # The next wake (credit, a drained session) starts the pump again.
        finally:
            self._pumping = False

    def _read_ahead_offset(self) -> int | None:
        """Where to poll while every stream with credit waits for its session to send: the window's end.

        Only when the log holds more and the window has room for another poll
        above the lowest of those streams, so that they find their next records in
        memory as soon as their sessions are free, and reading Kafka overlaps with
        writing to the sockets.
        """
        reader, partition = self._reader, self._partition
        window = reader.window
        end, start, high = window.next, window.start, reader.highwater
        if end is None or start is None or high is None or end >= high or reader.failing:
            return None
        positions = [
            position
            for tap in self._taps
            if not tap.stream.credit.paused and (position := tap.position(partition)) is not None
        ]
        if not positions or min(positions) < start:
            return None
        lowest = min(positions)
        route = self._context.route
        entries = window.entries
        if end - lowest + MAX_POLL_RECORDS > route.cache_records:
            return None
        if entries.end_total - entries.total_before(lowest) + route.fetch_max_bytes > route.cache_bytes:
            return None
        return end

    async def _read_ahead(self, offset: int) -> None:
        with trio.move_on_after(self._context.deadline):
            try:
                await self._reader.read(offset)
            except CommandFailed:
                pass  # the streams meet the failure when they read

    async def _serve(self, wanting: list[_Tap]) -> bool:
        """One round: offer the window, then make one read for the taps it does not cover.

        False when the route is shutting down (a read could not start): the pump must end,
        or it would go round again at once, never waiting, and hold the whole Trio run.
        """
        reader, partition = self._reader, self._partition
        window = reader.window
        uncovered: list[_Tap] = []
        by_position: dict[int, list[_Tap]] = {}
        for tap in wanting:
            position = tap.position(partition)
            assert position is not None  # wants() checked it
            if window.covers(position):
                by_position.setdefault(position, []).append(tap)
            else:
                uncovered.append(tap)
        for position, taps in by_position.items():
            offsets = window.entries.offsets
            index = bisect.bisect_left(offsets, position)
            # (Past the window's last record but inside it, the chunk is empty: the reader went past a
            # transaction marker or aborted records there, and the cut moves the streams over them.)
            stop = min(len(offsets), index + WINDOW_CHUNK_RECORDS)
            end = offsets[stop] if stop < len(offsets) else window.next
            assert end is not None
            held = window.entries.slice(index, stop)
            self._offer(Chunk(partition, held, position, end, self._highwater(), held.keys, held.headers), taps)
        if not uncovered:
            await trio.lowlevel.checkpoint()
            return True
        if not self._reading:
            # The read runs beside the pump, which meanwhile keeps serving from memory the streams
            # that credit wakes (a poll at the log end may wait fetch_max_wait); its end wakes the pump.
            positions = {tap.position(partition) or 0 for tap in uncovered}
            start = self._past_end(uncovered)
            if start is None:
                start = min(positions)
            alone = not by_position and len(positions) == 1
            self._reading = self._reader.in_background(partial(self._read_for, start, alone=alone))
            if not self._reading:
                return False  # the route is not running: it is shutting down
        else:
            # The read under way was asked for by an earlier round: look at every tap again after it.
            self._changed = True
        await self._woken.wait()
        return True

    def _past_end(self, uncovered: list[_Tap]) -> int | None:
        """The position of a tap past the log end as last seen, not read at since it was placed there.

        Reads start at the lowest position the window does not cover, so a tap placed
        past the log end (a subscribe or seek to an offset the log does not hold yet) is
        never the one read for while another tails the partition: without this read it
        would wait forever, instead of being moved into the log with its error event.
        """
        partition, end = self._partition, self._reader.highwater
        if end is None:
            return None  # no poll yet: the first read finds out where the log ends
        for tap in uncovered:
            position, epoch = tap.position(partition), tap.stream.epoch(partition)
            if position is not None and position > end and tap.checked_past_end != epoch:
                tap.checked_past_end = epoch
                return position
        return None

    async def _poll_again(self, offset: int) -> None:
        """Poll the log end again for the streams that already wait there, without looking at each.

        Nothing changed since a read there found nothing (a change sets ``_changed``),
        so the same streams wait at the same place and were told they caught up:
        what idle streams cost is then one poll per wait, not a look at every one.
        """
        self._woken = trio.Event()
        if not self._reading:
            self._reading = self._reader.in_background(partial(self._read_for, offset, alone=True, quiet=True))
            if not self._reading:
                self._idle_at = None
                return
        await self._woken.wait()

    async def _read_for(self, start: int, *, alone: bool = False, quiet: bool = False) -> None:
        """Read from ``start`` for the streams the window does not cover, and offer what came to them.

        ``alone``: every stream that wanted records waited at ``start``; if the log ends
        there, the pump may poll again without a round (``_idle_at``). ``quiet``: this is
        such a poll, and the streams at ``start`` were told they caught up already.
        """
        reader, partition = self._reader, self._partition
        found_end = False
        try:
            try:
                with trio.fail_after(self._context.deadline):
                    entries, end = await reader.read_span(start)
            except trio.TooSlowError:
                await self._trouble(self._at(start), CommandFailed(ErrorCode.TIMEOUT, "read timed out"))
                return
            except CommandFailed as exc:
                await self._trouble(self._at(start), exc)
                return
            if end == start:
                # Nothing after start: the log end (for READ_COMMITTED, the last stable offset), as a
                # lookup just confirmed. The streams there have caught up.
                found_end = True
                if not quiet:
                    for tap in self._at(start):
                        self._note_position(tap, start, start, at_log_end=True)
                return
            # Records, or none but an end past start (a transaction marker, aborted records): the cut
            # moves each stream to the end, pushing nothing when nothing is left for it.
            chunk = Chunk(partition, entries, start, end, self._highwater(), entries.keys, entries.headers)
            self._offer(chunk, [tap for tap in self._taps if not tap.detached])
        except Exception:  # a bug: the streams hear of it and the route goes on
            log.exception("bug while reading for the streams of %r", self._reader)
            for tap in self._at(start):
                tap.outlet.event(self._error(tap, CommandFailed(ErrorCode.INTERNAL_ERROR, "internal error")))
        finally:
            self._reading = False
            if found_end and alone:
                self._idle_at = start  # used only while nothing changes: a round clears it
                self._rouse()
            else:
                self.wake()

    def _at(self, offset: int) -> list[_Tap]:
        """The streams (with credit, their sessions ready) whose position here is ``offset``."""
        return [tap for tap in self._taps if tap.position(self._partition) == offset and tap.wants(self._partition)]

    def _highwater(self) -> int:
        reader = self._reader
        return max(reader.highwater or 0, reader.log_end or 0)

    def _offer(self, chunk: Chunk, taps: list[_Tap]) -> None:
        partition = chunk.partition
        self._changed = True  # positions move: the next round looks at every tap
        for tap in taps:
            stream = tap.stream
            if not tap.wants(partition):
                continue  # changed since the round began (its session is busy sending, a seek, credit spent)
            try:
                batch = stream.cut(chunk)
            except CommandFailed as exc:  # a record too large for a frame: it waits for a seek
                tap.stuck_at = stream.epoch(partition)
                tap.outlet.event(self._error(tap, exc))
                continue
            tap.told = None
            if batch is not None:
                self._context.counters.stream_batches += 1
                self._context.counters.stream_records += batch.count
                tap.outlet.push(batch)
            position = tap.position(partition)
            if position is not None:
                self._note_position(tap, position, chunk.high_watermark)

    def _note_position(self, tap: _Tap, position: int, high_watermark: int, *, at_log_end: bool = False) -> None:
        """Tell the tap when it reaches the high watermark (each time it does, not while it stays there).

        Only ``at_log_end`` announces it: a poll there just found nothing after the
        position. A high watermark that came with records may be older than the
        records written since (kafka-python hands out what it fetched ahead), and
        a stream told it caught up too early would stop short (``tail`` without
        ``--follow``); such a watermark can only say that the tap is behind.
        """
        tap.told = None
        if position >= high_watermark and at_log_end:
            epoch = tap.stream.epoch(self._partition)
            if not tap.caught_up or tap.caught_up_epoch != epoch:
                tap.caught_up, tap.caught_up_epoch = True, epoch
                tap.outlet.event(encode_stream_event_caught_up(tap.stream.id, self._partition))
        else:
            tap.caught_up = False if position < high_watermark else tap.caught_up

    def _error(self, tap: _Tap, failure: CommandFailed) -> bytes:
        return encode_stream_event_error(tap.stream.id, failure.code, failure.reason, self._partition)

    async def _trouble(self, taps: list[_Tap], failure: CommandFailed) -> None:
        """A read failed: tell each tap once per cause, fix what can be fixed, and pause before the next try."""
        if failure.code == ErrorCode.OFFSET_OUT_OF_RANGE:
            await self._move_into_log(taps)
            return
        for tap in taps:
            if tap.told != failure.code:
                tap.told = failure.code
                tap.outlet.event(self._error(tap, failure))
        if failure.code not in CONNECTION_FAILURES:
            log.warning("streams on %r: %s", self._reader, failure.reason)
        await trio.sleep(RETRY_PAUSE)  # beside the pump: a pause before the next read, not of the pump

    async def _move_into_log(self, taps: list[_Tap]) -> None:
        """Taps whose position left the log (retention deleted it, or the log was cut): go to its nearest end."""
        reader, partition = self._reader, self._partition
        try:
            with trio.fail_after(self._context.deadline * 2):
                earliest = await reader.list_offset(-2)
                latest = await reader.list_offset(-1)
        except (CommandFailed, trio.TooSlowError):
            await trio.sleep(RETRY_PAUSE)
            return  # the next read fails again and brings us back here
        for tap in taps:
            position = tap.position(partition)
            if position is None:
                continue
            target = earliest if position < earliest else latest if position > latest else position
            if target != position:
                tap.stream.place(partition, target, epoch=tap.stream.epoch(partition))
                reason = (
                    f"OFFSET_OUT_OF_RANGE: offset {position} is outside the log, which holds offsets "
                    f"{earliest} to {latest - 1}; going on from {target}"
                )
                tap.outlet.event(self._error(tap, CommandFailed(ErrorCode.OFFSET_OUT_OF_RANGE, reason)))
