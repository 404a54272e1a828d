"""One topic-partition read for every session that asks, through one consumer.

Records are encoded once, as they arrive, into the bytes they take in a
fetch response (:mod:`kafka_ws_trio._proto`'s window). A fetch inside the
window is answered from memory; one outside it polls the consumer, and
sessions asking for that offset meanwhile share the poll (at the log end,
that is every tailing session). When an answer reaches the window's end
while the log holds more, the next records are polled ahead, so the
client's next fetch finds them in memory.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Final

import attrs
import trio

from .._proto import (
    CONNECTION_FAILURES,
    EMPTY_BATCH,
    CommandFailed,
    EncodedBatch,
    Entries,
    ErrorCode,
    Isolation,
    Window,
    WindowLimits,
    encode_message_entry,
)
from ._client import CONNECT_FAILURE_TTL, ThreadedConsumer
from ._context import KafkaContext
from ._diagnosis import named_failure
from ._settings import MAX_POLL_RECORDS

log = logging.getLogger("kafka_ws_trio.kafka")

#: A poll that returns records within this many seconds, or within BUFFERED_SHARE of the time
#: since the previous poll returned, most likely answered from the fetch kafka-python sent
#: ahead at the end of that poll (no round trip to the broker): its records are as old as
#: that gap (a round of every tailing session) ...
BUFFERED_POLL: Final = 0.001
BUFFERED_SHARE: Final = 0.25
#: ... so the poll asks once more, waiting at most this many milliseconds, for what came since.
FRESH_POLL_MS: Final = 10
#: Seconds a READ_COMMITTED reader's last stable offset is taken as known between lookups.
STABLE_END_TTL: Final = 1.0
#: A fetch at most this many offsets ahead of the consumer reads forward instead of seeking ...
READ_AHEAD_RECORDS: Final = 10_000
#: ... in at most this many polls.
READ_AHEAD_POLLS: Final = 4


def _offset(message: Any) -> int:
    """A polled record's offset: a decoded tuple's first item, or a ConsumerRecord's attribute."""
    return message[0] if type(message) is tuple else message.offset  # type: ignore[no-any-return]


def _entries_of(messages: list[Any]) -> Entries:
    """A poll's records as Entries.

    Consumers with the fast decoder (:mod:`._fast_records`) hand out ``(offset, entry,
    key, headers)`` tuples, already encoded; kafka-python's own ConsumerRecords (a
    release the hook does not fit, or a stand-in consumer) are encoded here, once each.
    """
    if type(messages[0]) is tuple:
        offsets, entries, keys, headers = (list(column) for column in zip(*messages, strict=True))
        return Entries.of(offsets, entries, keys, headers)
    return Entries.of(
        [m.offset for m in messages],
        [encode_message_entry(m.offset, m.timestamp, m.key, m.value, m.headers) for m in messages],
        [m.key for m in messages],
        [m.headers for m in messages],
    )


@attrs.define
class _Poll:
    """A poll in progress at one offset; sessions asking for the same offset share it."""

    done: trio.Event = attrs.Factory(trio.Event)
    entries: Entries = attrs.Factory(Entries)
    #: The offset after what the poll read: past its last record, or past records the consumer
    #: does not hand out (transaction markers, aborted records under READ_COMMITTED).
    end: int = 0
    failure: CommandFailed | None = None
    #: False when the task polling was cancelled before it had an answer: sharers must ask again.
    completed: bool = False


@attrs.define
class _Lookup:
    """An offset lookup in progress; callers asking for the same timestamp meanwhile share it."""

    done: trio.Event = attrs.Factory(trio.Event)
    #: Set once the lookup holds the consumer (its request may be on the wire): later callers
    #: do not take its answer, which may be older than their own call.
    sent: bool = False
    #: The answer or the failure; both None when the task looking up was cancelled (ask again).
    offset: int | None = None
    failure: CommandFailed | None = None


class PartitionReader:
    """Reads one topic-partition for every session that asks, through one consumer."""

    def __init__(
        self,
        context: KafkaContext,
        topic: str,
        partition: int,
        client: ThreadedConsumer,
        isolation: Isolation = Isolation.READ_UNCOMMITTED,
    ) -> None:
        from kafka import TopicPartition

        self._context = context
        self._route = context.route
        self.topic = topic
        self.partition = partition
        #: Which records its consumer hands out (READ_COMMITTED readers feed such streams only).
        self.isolation = isolation
        self.tp = TopicPartition(topic, partition)
        self.client = client
        self.window = Window(
            WindowLimits(
                max_records=self._route.cache_records,
                max_bytes=self._route.cache_bytes,
                body_bytes=self._route.shared_body_bytes,
            )
        )
        #: The last failure to reach Kafka and when: repeated at once for a moment, so
        #: that commands queued behind a failing call do not each wait a deadline.
        self._failure: tuple[float, CommandFailed] | None = None
        #: Where the consumer will read next; None when unknown (seek first).
        self._position: int | None = None
        self._polls: dict[int, _Poll] = {}
        self._lookups: dict[int, _Lookup] = {}
        self._reading_ahead = False
        #: The log end offset as of the last poll (None: unknown); READ_COMMITTED: the last stable offset.
        self._highwater: int | None = None
        #: When the last stable offset was last looked up (time.monotonic(), READ_COMMITTED only).
        self._stable_end_at = -STABLE_END_TTL
        #: When the consumer's last poll returned (time.monotonic(), in its thread).
        self._polled_at = 0.0
        #: Whether sessions tail the log end here and want the newest records (set by the hub).
        self.wants_fresh: Callable[[], bool] = lambda: False
        #: Tasks and commands using this reader right now; the idle closer leaves it alone while any do.
        self.users = 0
        self.last_used = trio.current_time()

    def __repr__(self) -> str:
        committed = " READ_COMMITTED" if self.isolation == Isolation.READ_COMMITTED else ""
        return f"<PartitionReader {self.topic}/{self.partition}{committed}>"

    # ------------------------------------------------------------------ state

    @property
    def closed(self) -> bool:
        return self.client.closed

    @property
    def log_end(self) -> int | None:
        """The offset after the newest record the window knows of (None before the first poll)."""
        return self.window.next

    @property
    def highwater(self) -> int | None:
        """The partition's log end offset as the last poll saw it (None before the first poll)."""
        return self._highwater

    @property
    def failing(self) -> bool:
        """Whether a recent call failed to reach Kafka."""
        return self._failure is not None

    @contextlib.contextmanager
    def in_use(self) -> Iterator[None]:
        """Count the caller as a user while the block runs."""
        self.users += 1
        try:
            yield
        finally:
            self.users -= 1
            self.last_used = trio.current_time()

    def in_background(self, task: Callable[[], Awaitable[None]]) -> bool:
        """Start ``task`` in the route's nursery, counted as a user of this reader while it runs.

        False when the route is not running (no nursery to start it in).
        """
        self.users += 1  # now, not when the task first runs: the idle closer must not get in between

        async def counted() -> None:
            try:
                await task()
            finally:
                self.users -= 1
                self.last_used = trio.current_time()

        if self._context.spawn(counted):
            return True
        self.users -= 1
        return False

    # ---------------------------------------------------------------- window

    def from_window(self, offset: int, max_body: int) -> EncodedBatch | None:
        """Records at ``offset`` from memory, or None when the window does not hold any."""
        batch = self.window.get(offset, max_body)
        if batch is None:
            return None
        self._context.counters.cache_hits += 1
        if not self._reading_ahead and self._wants_reading_ahead():
            self._reading_ahead = self.in_background(self._read_ahead)
        return batch

    # ----------------------------------------------------------------- fetch

    async def fetch(self, offset: int, max_body: int) -> EncodedBatch:
        """Records from ``offset`` on, at most ``max_body`` bytes of them; empty at the log end after a bounded wait."""
        found = self.from_window(offset, max_body)
        if found is not None:
            return found
        entries = await self.read(offset)
        found = self.from_window(offset, max_body)
        if found is not None:
            return found
        return entries.take(offset, max_body) or EMPTY_BATCH

    # ------------------------------------------------------------ read-ahead

    def _wants_reading_ahead(self) -> bool:
        if self._failure is not None or self.client.closed:
            return False
        return self.window.wants_read_ahead(self._highwater, MAX_POLL_RECORDS, self._route.fetch_max_bytes)

    async def _read_ahead(self) -> None:
        """Poll the records after the window's end while the answer that reached it is sent and read.

        One poll at a time: the next answer that reaches the new end starts the next one.
        """
        try:
            offset = self.window.next
            assert offset is not None  # wants_read_ahead requires it
            with trio.move_on_after(self._context.deadline):
                await self.read(offset)
        except CommandFailed:
            pass  # the next fetch meets the failure itself
        finally:
            self._reading_ahead = False

    # ------------------------------------------------------------------ polls

    async def read(self, offset: int) -> Entries:
        """Poll until the window holds ``offset`` or the log end is reached; the last poll's records."""
        entries, _ = await self.read_span(offset)
        return entries

    async def read_span(self, offset: int) -> tuple[Entries, int]:
        """Like :meth:`read`, with the offset after what the last poll read.

        That offset is past the last record, or past records the consumer does
        not hand out (a transaction's commit or abort marker; aborted records
        under READ_COMMITTED), so no records and an end past ``offset`` is not
        the log end. Equal to ``offset`` with no records: the log end.

        Sessions asking for the same offset meanwhile share this poll. If the
        task polling is cancelled (its client left, or its deadline passed),
        the others do not take that for the log end: they poll themselves.
        """
        while (shared := self._polls.get(offset)) is not None:
            await shared.done.wait()
            if shared.failure is not None:
                raise shared.failure
            if shared.completed:
                return shared.entries, shared.end
        poll = self._polls[offset] = _Poll(end=offset)
        try:
            await self._poll_until_held(offset, poll)
            poll.completed = True
            return poll.entries, poll.end
        except CommandFailed as exc:
            poll.failure = exc
            raise
        finally:
            poll.done.set()
            if self._polls.get(offset) is poll:
                del self._polls[offset]

    async def _poll_until_held(self, offset: int, poll: _Poll) -> None:
        async with self.client.lock:
            self._check_open()
            self._check_recent_failure()
            for attempt in range(READ_AHEAD_POLLS):
                if self.window.holds(offset):
                    return
                # A fetch a little ahead of the consumer (a client pipelining its
                # requests) reads forward from where the consumer is: a seek
                # would throw away what kafka-python has already fetched.
                position = self._position
                ahead = (
                    attempt < READ_AHEAD_POLLS - 1  # the last attempt seeks
                    and position is not None
                    and position == self.window.next
                    and position < offset <= position + READ_AHEAD_RECORDS
                )
                start = position if ahead and position is not None else offset
                seek = position != start
                # Tailing sessions parked here want the newest records, not the read-ahead's; but only
                # a read at the log end (as last seen) tails. Behind it, kafka-python's read-ahead holds
                # the very records asked for, and waiting for the fetch after it would stall the read.
                fresh = self.wants_fresh() and (self._highwater is None or start >= self._highwater)
                try:
                    read: tuple[Entries, int] = await self.client.call(
                        functools.partial(self._poll_sync, start, seek, fresh), self._context.call_budget
                    )
                    entries, position = read
                except CommandFailed as exc:
                    self._position = None  # unknown after a failure: seek next time
                    if exc.code in CONNECTION_FAILURES:
                        self._failure = (trio.current_time(), exc)
                        self._context.outages.failed(exc)
                    raise
                self._context.outages.recovered()
                self._position = position
                self._context.counters.broker_polls += 1
                self.window.add(start, entries, position)
                poll.entries, poll.end = entries, position
                if ahead and position == start:
                    # Nothing after the consumer's position: that is the log end, and offset is past it.
                    raise CommandFailed(ErrorCode.OFFSET_OUT_OF_RANGE, "OFFSET_OUT_OF_RANGE")
                if not ahead or position > offset:
                    return
            raise AssertionError("the last attempt returns or raises")  # pragma: no cover

    def _check_recent_failure(self) -> None:
        if self._failure is not None:
            stamp, failure = self._failure
            if trio.current_time() - stamp < CONNECT_FAILURE_TTL:
                raise failure
            self._failure = None

    def _check_open(self) -> None:
        if self.client.closed:
            raise CommandFailed(ErrorCode.BROKER_UNREACHABLE, "connection to Kafka was reset; try again")

    def _poll_sync(self, offset: int, seek: bool, fresh: bool) -> tuple[Entries, int]:
        """In a thread: read from ``offset``; when nothing comes, find out why.

        ``fresh``: if the records come from kafka-python's read-ahead, also take what came since.
        Only for tailing: a reader of history wants polls no larger than one fetch,
        which is what a response holds (larger ones made the pipelined client's
        predictions miss and cost two thirds of the throughput).
        """
        consumer = self.client.consumer
        give_up = time.monotonic() + self._route.request_timeout
        wait_ms = int(self._route.fetch_max_wait * 1000)
        if seek:
            consumer.seek(self.tp, offset)
        while True:
            asked = time.monotonic()
            try:
                batches = consumer.poll(timeout_ms=wait_ms, max_records=MAX_POLL_RECORDS)
                messages = batches.get(self.tp)
                took = time.monotonic() - asked
                gap = asked - self._polled_at
                buffered = took < BUFFERED_POLL or took < BUFFERED_SHARE * gap
                if fresh and messages and len(messages) < MAX_POLL_RECORDS and buffered:
                    # kafka-python answered from a fetch it made ahead, at the end of the previous
                    # poll: those records may be as old as the time since. What came meanwhile is
                    # one round trip away; take it too, so tailing sessions get it now, not a poll later.
                    since = consumer.poll(timeout_ms=FRESH_POLL_MS, max_records=MAX_POLL_RECORDS - len(messages))
                    more = since.get(self.tp)
                    if more and _offset(more[0]) > _offset(messages[-1]):
                        messages = messages + more
            except Exception as exc:
                raise named_failure(self._route, exc, "fetch") from exc
            finally:
                self._polled_at = time.monotonic()
            if messages:
                entries = _entries_of(messages)
                self._note_highwater_sync(entries.offsets[-1] + 1)
                return entries, entries.offsets[-1] + 1
            # The consumer moved past records it does not hand out: a transaction's marker,
            # or records of aborted transactions under READ_COMMITTED. Not the log end.
            moved = consumer.position(self.tp, timeout_ms=int(self._route.request_timeout * 1000))
            if moved is not None and moved > offset:
                self._note_highwater_sync(moved)
                return Entries(), moved
            # Nothing came: the log end, data not fetched yet, or a broker that
            # is gone. poll() cannot tell these apart; the log end offset can.
            end = self._end_offset_sync()
            self._note_highwater_sync(end, looked_up=True)
            if offset == end:
                return Entries(), offset
            if offset > end:
                raise CommandFailed(ErrorCode.OFFSET_OUT_OF_RANGE, "OFFSET_OUT_OF_RANGE")
            remaining = give_up - time.monotonic()
            if remaining <= 0:
                raise CommandFailed(ErrorCode.TIMEOUT, "fetch timed out")
            wait_ms = int(min(remaining, self._route.request_timeout) * 1000)

    def _note_highwater_sync(self, read_to: int, *, looked_up: bool = False) -> None:
        """In a thread, after a poll: the log end a client's lag is measured against.

        READ_UNCOMMITTED: the high watermark the last fetch carried. READ_COMMITTED:
        the last stable offset (kafka-python keeps no record of the one fetches carry),
        looked up at most every :data:`STABLE_END_TTL` seconds and otherwise at least
        ``read_to``: such a consumer is never handed records past it.
        """
        if self.isolation == Isolation.READ_UNCOMMITTED:
            self._highwater = self.client.consumer.highwater(self.tp)
            return
        now = time.monotonic()
        if not looked_up and now - self._stable_end_at >= STABLE_END_TTL:
            try:
                read_to = self._end_offset_sync()
            except CommandFailed:
                pass  # the next poll meets the failure
            else:
                looked_up = True
        if looked_up:
            self._stable_end_at = now
            self._highwater = read_to
        else:
            self._highwater = max(self._highwater or 0, read_to)

    def _end_offset_sync(self) -> int:
        consumer = self.client.consumer
        try:
            ends = consumer.end_offsets([self.tp], timeout_ms=int(self._route.request_timeout * 1000))
        except Exception as exc:
            raise named_failure(self._route, exc, "list offsets") from exc
        return int(ends[self.tp])

    # ------------------------------------------------------------ list offset

    async def list_offset(self, timestamp: int) -> int:
        """ListOffset for ``timestamp`` (-1 the log end, -2 the earliest, else the first record at or after it).

        Callers asking for the same timestamp while a lookup waits for the
        consumer (behind a poll, at most ``fetch_max_wait``) share its answer, so a
        thousand streams subscribing at LATEST cost one lookup, not a thousand in a
        row. An answer is never kept past its lookup, and one already sent is not
        taken by a later caller. If the task looking up is cancelled, the others ask again.
        """
        while (shared := self._lookups.get(timestamp)) is not None:
            joined_in_time = not shared.sent
            await shared.done.wait()
            if not joined_in_time:
                continue
            if shared.failure is not None:
                raise CommandFailed(shared.failure.code, shared.failure.reason)
            if shared.offset is not None:
                return shared.offset
        lookup = self._lookups[timestamp] = _Lookup()
        try:
            lookup.offset = await self._list_offset_now(timestamp, lookup)
            return lookup.offset
        except CommandFailed as exc:
            lookup.failure = exc
            raise
        finally:
            lookup.done.set()
            del self._lookups[timestamp]

    async def _list_offset_now(self, timestamp: int, lookup: _Lookup) -> int:
        async with self.client.lock:
            lookup.sent = True
            self._check_open()
            self._check_recent_failure()
            try:
                result: int = await self.client.call(
                    lambda: self._list_offset_sync(timestamp), self._context.call_budget
                )
            except CommandFailed as exc:
                if exc.code in CONNECTION_FAILURES:
                    self._failure = (trio.current_time(), exc)
                    self._context.outages.failed(exc)
                raise
            self._context.outages.recovered()
            return result

    def _list_offset_sync(self, timestamp: int) -> int:
        consumer = self.client.consumer
        timeout_ms = int(self._route.request_timeout * 1000)
        if timestamp == -1:
            return self._end_offset_sync()
        try:
            if timestamp == -2:
                return int(consumer.beginning_offsets([self.tp], timeout_ms=timeout_ms)[self.tp])
            found = consumer.offsets_for_times({self.tp: timestamp}, timeout_ms=timeout_ms)
        except Exception as exc:
            raise named_failure(self._route, exc, "list offsets") from exc
        hit = found.get(self.tp)
        return -1 if hit is None else int(hit.offset)
