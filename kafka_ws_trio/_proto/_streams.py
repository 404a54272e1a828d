"""Push streams without I/O: credit, cutting a partition's records into batches, framing, one connection's streams.

The Kafka edge reads a partition once and offers each read to every stream
on it as a :class:`Chunk`; :meth:`Stream.cut` decides what one stream gets
from it, spends the credit and moves the stream's position, and the
:class:`PushBatch` it returns is written as a per-session head plus a body
that streams at the same place share. The rules are PROTOCOL.md 5.3 (and
schema/README.md, "Streams"):

- **Credit.** A batch goes out only while the stream has record credit and,
  once bytes were ever granted, byte credit. It holds at most as many records
  as the record credit left and passes the byte credit by at most one record.
  Byte credit counts each record's encoded size: the bytes it takes inside
  ``StreamBatch.messages`` (field tag, length and the ``KafkaMessage``), which
  is also the size of its entry in :class:`~._entries.Entries`. The overshoot
  is owed: byte credit may go below zero, and a grant pays the debt before the
  stream resumes, so that the bytes granted minus the bytes received since the
  first byte grant are the credit left, exactly, on both ends. A grant that would take a kind of credit past
  :data:`MAX_CREDIT_RECORDS` or :data:`MAX_CREDIT_BYTES` is refused whole
  (``CREDIT_LIMIT``).
- **Pausing.** A stream without credit is not touched: its position does not
  move, not even past records its filter would reject.
- **Filters.** Rejected records use no credit and are not sent, but the
  position moves past them. A batch's ``next_offset`` is the offset of the
  next accepted record of the read, or the read's end when there is none. When
  no accepted record is left from the position, the position moves to the
  read's end and nothing is pushed: a ``StreamBatch`` without records would
  only say that rejected records went by. A client that resumes from its last
  ``next_offset`` reads those records again, and they are rejected again.
- **Seek.** Each partition has an epoch that a seek increments. A batch cut
  before the seek is not sent after it (:meth:`Stream.confirm`), and its
  credit is given back.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from typing import Final

import attrs

from ._entries import Entries, record_too_large, varint
from ._errors import CommandFailed, ErrorCode
from ._events import (
    AddCredit,
    AtOffset,
    AtOffsets,
    AtTimestamp,
    Filter,
    Grant,
    Seek,
    SeekTarget,
    StartEdge,
    Subscribe,
)
from ._filters import ACCEPT_ALL, FilterSet, Headers, Matcher

#: The most record credit a stream may hold: what an int32 counts, far more than a client can take in.
MAX_CREDIT_RECORDS: Final = 2**31 - 1
#: The most byte credit a stream may hold (1 TiB).
MAX_CREDIT_BYTES: Final = 2**40
#: Streams one connection may have open (route setting ``max_streams`` to be).
DEFAULT_MAX_STREAMS: Final = 64
#: Partitions one stream may read (the route setting ``max_stream_partitions``).
DEFAULT_MAX_PARTITIONS: Final = 1024
#: Record credit a subscribe without ``credit`` starts with (route setting ``default_grant`` to be).
DEFAULT_GRANT_RECORDS: Final = 1000
#: The grant of a subscribe that names none: records only, so that a client that never
#: grants bytes is never held back by byte credit it did not ask for.
DEFAULT_GRANT: Final = Grant(records=DEFAULT_GRANT_RECORDS)

#: Most bytes a StreamBatch frame adds around its records: sequence (tag + 10), the
#: stream_batch tag (2), its length (5), partition (tag + 5), next_offset and
#: high_watermark (tag + 10 each).
STREAM_FRAME_OVERHEAD: Final = 11 + 2 + 5 + 6 + 11 + 11

#: Records from this average encoded size up are re-tagged through memoryviews instead of
#: slices (see :func:`batch_body`).
MEMORYVIEW_FROM: Final = 4096

#: ``(field 2 << 3) | length-delimited``: the tag of ``StreamBatch.messages``.
_MESSAGES_TAG: Final = b"\x12"
#: The tag of ``PubSubResp.stream_batch`` (field 36, length-delimited), as a varint.
_STREAM_BATCH_TAG: Final = b"\xa2\x02"


# ------------------------------------------------------------------ framing


def batch_body(entries: Sequence[bytes]) -> bytes:
    """``StreamBatch.messages`` from entries encoded for ``KafkaFetchResp.messages``.

    The two differ only in their first byte, the field tag (0x0a there, 0x12
    here), so each record is joined without its first byte. Measured with
    timeit on CPython 3.11, ns per record, bodies of up to 200 records (a
    loaded 2-core machine: two runs, read the ratios):

    ===========  ================  ================  ======================
    record       ``b"".join``      slices            memoryviews
                 (a fetch body)    ``e[1:]``         ``memoryview(e)[1:]``
    ===========  ================  ================  ======================
    50 B         18                159-168           518-534
    500 B        36                267-298           493-631
    1,000 B      55                345-390           510-623
    4,000 B      295-406           644-1,034         665-984
    8,000 B      372-381           1,035-1,052       846-900
    16,000 B     745-883           1,753-1,896       1,246-1,677
    64,000 B     2,820-3,467       6,344-6,370       3,417-3,443
    ===========  ================  ================  ======================

    A memoryview copies the record once but costs two objects; a slice copies
    it twice, which is cheaper until records reach a few KiB, so the average
    record size (:data:`MEMORYVIEW_FROM`) picks one. Joining first and then
    patching the tags in a ``bytearray`` measured like slices for small
    records and worst for large ones (the whole body copied three times).
    A chunk builds each distinct body once for every stream that gets it
    (:meth:`Chunk.batch`), so this is paid per record, not per session.
    """
    if not entries:
        return b""
    if sum(map(len, entries)) >= MEMORYVIEW_FROM * len(entries):
        return _MESSAGES_TAG.join([b"", *[memoryview(entry)[1:] for entry in entries]])
    return _MESSAGES_TAG.join([b"", *[entry[1:] for entry in entries]])


def encode_stream_batch_fields(partition: int, next_offset: int, high_watermark: int) -> bytes:
    """StreamBatch's fields other than its records, the same for every stream that gets the same records."""
    fields = b""
    if partition:
        fields += b"\x08" + varint(partition)
    if next_offset:
        fields += b"\x18" + varint(next_offset)
    if high_watermark:
        fields += b"\x20" + varint(high_watermark)
    return fields


def encode_sequence(sequence: int) -> bytes:
    """``PubSubResp.sequence`` as it starts a frame (nothing for 0, proto3's default)."""
    return b"\x08" + varint(sequence) if sequence else b""


def encode_stream_batch_head(
    sequence: int, partition: int, next_offset: int, high_watermark: int, body_size: int
) -> bytes:
    """The bytes before a StreamBatch's records: ``head + body`` is the whole PubSubResp frame.

    ``partition``, ``next_offset`` and ``high_watermark`` are written before the
    records (protobuf accepts fields in any order), so that the head is small and
    per session while the body is shared, as with fetch answers.
    """
    fields = encode_stream_batch_fields(partition, next_offset, high_watermark)
    return _head(encode_sequence(sequence), fields, body_size)


def _head(sequence_field: bytes, fields: bytes, body_size: int) -> bytes:
    return sequence_field + _STREAM_BATCH_TAG + varint(len(fields) + body_size) + fields


# ------------------------------------------------------------------- credit


@attrs.define(slots=True)
class Credit:
    """What a stream may still be sent (PROTOCOL.md 5.3)."""

    records: int = 0
    #: May be below zero: the last batch passed it by part of a record, which the next grant pays first.
    bytes: int = 0
    #: Whether bytes were ever granted: from then on byte credit holds the stream back too.
    counts_bytes: bool = False

    @property
    def paused(self) -> bool:
        """Whether no batch may be sent now."""
        return self.records <= 0 or (self.counts_bytes and self.bytes <= 0)

    @property
    def byte_budget(self) -> int | None:
        """The byte credit a batch may use (it may pass it by one record); None when bytes do not count."""
        return self.bytes if self.counts_bytes else None

    def grant(self, grant: Grant, stream_id: int) -> None:
        """Add ``grant``, or refuse all of it when a kind would pass its bound.

        Raises:
            CommandFailed: CREDIT_LIMIT, naming the bound; the credit is unchanged.
        """
        records = self.records + grant.records
        size = self.bytes + grant.bytes
        for total, kind, bound in ((records, "records", MAX_CREDIT_RECORDS), (size, "bytes", MAX_CREDIT_BYTES)):
            if total > bound:
                raise CommandFailed(
                    ErrorCode.CREDIT_LIMIT,
                    f"stream {stream_id} would hold {total} {kind} of credit,"
                    f" more than the most a stream may hold ({bound})",
                )
        self.records = records
        self.bytes = size
        if grant.bytes:
            self.counts_bytes = True

    def spend(self, records: int, size: int) -> int:
        """Take the cost of a batch (``records`` records, ``size`` bytes); the bytes charged (0: bytes do not count)."""
        self.records -= records
        if not self.counts_bytes:
            return 0
        self.bytes -= size
        return size

    def refund(self, records: int, charged: int) -> None:
        """Give back what a batch that was never sent took, within the bounds."""
        self.records = min(self.records + records, MAX_CREDIT_RECORDS)
        self.bytes = min(self.bytes + charged, MAX_CREDIT_BYTES)


def batch_stop(entries: Entries, first: int, records: int, byte_budget: int | None, max_body: int) -> int:
    """Where a batch of ``entries`` that starts at index ``first`` ends (exclusive).

    It holds at most ``records`` entries and at most ``max_body`` bytes of them,
    and with a ``byte_budget`` it ends with the entry that reaches the budget:
    every entry in it starts below the budget, so it passes it by less than one
    entry. ``records`` and ``byte_budget`` must be positive.

    Raises:
        CommandFailed: RECORD_TOO_LARGE, the entry at ``first`` alone is larger than ``max_body``.
    """
    ends = entries.ends
    before = ends[first - 1] if first else entries.base
    stop = min(len(ends), first + records)
    if byte_budget is not None:
        stop = min(stop, bisect.bisect_left(ends, before + byte_budget, first, stop) + 1)
    fitting = bisect.bisect_right(ends, before + max_body, first, stop)
    if fitting == first:
        size = ends[first] - before
        raise record_too_large(entries.offsets[first], size, max_body + STREAM_FRAME_OVERHEAD)
    return fitting


# ------------------------------------------------------------------- chunks


class Chunk:
    """One read of a partition as the streams on it see it: its records, what filters make of them, shared bodies.

    The read of ``partition`` covers offsets ``[start, end)``: ``entries`` holds
    its records (a partition has no record at some offsets: compaction,
    transaction markers), encoded as for a fetch; ``keys[i]`` and ``headers[i]``
    are the key and headers of ``entries``' record i (both may be empty when no
    stream on the partition filters). A chunk keeps the lists it is given and is
    meant to be offered to the streams at once, before they change.

    Each distinct filter runs at most once on it, when a stream with that
    filter first takes records from it; and streams that get the same records
    share one body.
    """

    __slots__ = (
        "_bodies",
        "_body_bytes",
        "_selections",
        "end",
        "entries",
        "headers",
        "high_watermark",
        "keys",
        "partition",
        "start",
    )

    def __init__(
        self,
        partition: int,
        entries: Entries,
        start: int,
        end: int,
        high_watermark: int,
        keys: Sequence[bytes | None] = (),
        headers: Sequence[Headers] = (),
    ) -> None:
        self.partition = partition
        self.entries = entries
        self.start = start
        self.end = end
        self.high_watermark = high_watermark
        self.keys = keys
        self.headers = headers
        self._selections: dict[Matcher, Entries] = {}
        self._bodies: dict[tuple[Matcher | None, int, int], tuple[bytes, bytes]] = {}
        self._body_bytes = 0

    def covers(self, offset: int) -> bool:
        """Whether a stream at ``offset`` can continue from this chunk."""
        return self.start <= offset < self.end

    def selection(self, matcher: Matcher | None) -> Entries:
        """The records ``matcher`` accepts (all of them for None), evaluated once per chunk."""
        if matcher is None:
            return self.entries
        chosen = self._selections.get(matcher)
        if chosen is None:
            accepted = matcher.accepted(self.keys, self.headers)
            offsets, entries = self.entries.offsets, self.entries.entries
            chosen = Entries.of([offsets[i] for i in accepted], [entries[i] for i in accepted])
            self._selections[matcher] = chosen
        return chosen

    def batch(self, matcher: Matcher | None, first: int, stop: int, next_offset: int) -> tuple[bytes, bytes]:
        """StreamBatch's other fields and its records ``selection(matcher)[first:stop]``, built once and shared.

        The shared bodies hold at most as many bytes as the chunk's records;
        past that, the ones held are let go.
        """
        key = (matcher, first, stop)
        shared = self._bodies.get(key)
        if shared is None:
            body = batch_body(self.selection(matcher).entries[first:stop])
            shared = (encode_stream_batch_fields(self.partition, next_offset, self.high_watermark), body)
            if self._body_bytes + len(body) > self.entries.size:
                self._bodies.clear()
                self._body_bytes = 0
            self._bodies[key] = shared
            self._body_bytes += len(body)
        return shared


# ------------------------------------------------------------------ streams


@attrs.frozen
class StreamLimits:
    """The bounds of one connection's streams (route settings to be)."""

    #: Streams open at once on one connection.
    max_streams: int = attrs.field(default=DEFAULT_MAX_STREAMS, validator=attrs.validators.ge(1))
    #: The setting that bound comes from, as a refusal names it.
    max_streams_setting: str = "max_streams"
    #: Partitions one stream may read.
    max_partitions: int = attrs.field(default=DEFAULT_MAX_PARTITIONS, validator=attrs.validators.ge(1))
    #: The credit of a subscribe that names none.
    default_grant: Grant = DEFAULT_GRANT


@attrs.define(slots=True, eq=False)
class PushBatch:
    """Records one stream is to be sent from one partition, cut and paid for; see :meth:`Stream.confirm`.

    Read-only in spirit; not frozen because it is made once per stream and
    batch on the fan-out path, where a frozen attrs class took three times as long.
    """

    stream: Stream
    partition: int
    #: The partition's seek epoch when the batch was cut.
    epoch: int
    #: How many records, and their encoded size (what byte credit counts).
    count: int
    size: int
    #: The byte credit it took (0 when bytes were never granted).
    charged: int
    next_offset: int
    high_watermark: int
    #: StreamBatch's partition, next_offset and high_watermark, encoded.
    fields: bytes = attrs.field(repr=False)
    #: ``StreamBatch.messages``, shared with streams that got the same records.
    body: bytes = attrs.field(repr=False)

    def frame(self) -> tuple[bytes, bytes]:
        """The PubSubResp as its per-session head and its shared body."""
        return _head(self.stream.sequence_field, self.fields, len(self.body)), self.body


@attrs.define(slots=True)
class _Partition:
    #: Where the next batch starts; None until the start (or a seek's target) is known.
    position: int | None = None
    #: Incremented by each seek.
    epoch: int = 0
    #: Where the client has been sent everything before: the ``next_offset`` of the last batch
    #: written, else where the partition was placed. What a group commits when asked for
    #: "what was delivered". None until placed.
    delivered: int | None = None


class Stream:
    """One push stream of a connection: its id, partitions, positions, credit and filter."""

    __slots__ = (
        "_max_body",
        "_max_partitions",
        "_partitions",
        "credit",
        "id",
        "matcher",
        "open",
        "sequence_field",
        "subscribe",
    )

    def __init__(self, command: Subscribe, max_partitions: int, max_body: int) -> None:
        #: The stream's id: the sequence of its subscribe, and of everything pushed for it.
        self.id = command.sequence
        #: The id as the first field of every frame pushed for the stream.
        self.sequence_field = encode_sequence(command.sequence)
        self.subscribe = command
        #: The shared matcher of its filter (from the connection's :class:`FilterSet`); None: it accepts every record.
        self.matcher: Matcher | None = None
        self.credit = Credit()
        #: False once unsubscribed (or the connection is gone): nothing more is cut or sent.
        self.open = True
        self._partitions: dict[int, _Partition] = {}
        self._max_partitions = max_partitions
        self._max_body = max_body

    def __repr__(self) -> str:
        return f"<Stream {self.id} on {self.subscribe.topic!r}, {len(self._partitions)} partitions, {self.credit}>"

    @property
    def topic(self) -> str:
        return self.subscribe.topic

    @property
    def filter(self) -> Filter:
        """The stream's filter, in canonical form."""
        return ACCEPT_ALL if self.matcher is None else self.matcher.filter

    @property
    def follows_topic(self) -> bool:
        """Whether the stream reads every partition of its topic, and those added later."""
        return not self.subscribe.partitions

    @property
    def partitions(self) -> list[int]:
        """The partitions it reads, in the order they were added."""
        return list(self._partitions)

    def add_partitions(self, partitions: Iterable[int]) -> list[int]:
        """Read these partitions too (all or none); the ones new to the stream, in order.

        For the partitions a stream starts with. Those the subscribe names an
        offset for are placed there; the others wait for :meth:`place`.

        Raises:
            CommandFailed: TOO_MANY_PARTITIONS; then none of them is added.
        """
        new = self._new(partitions)
        if len(self._partitions) + len(new) > self._max_partitions:
            raise self._too_many(len(self._partitions) + len(new))
        start = self.subscribe.start
        named = dict(start.offsets) if isinstance(start, AtOffsets) else {}
        for partition in new:
            offset = named.get(partition)
            self._partitions[partition] = _Partition(offset, delivered=offset)
        return new

    def gain_partitions(self, partitions: Iterable[int]) -> tuple[list[int], CommandFailed | None]:
        """Partitions added to the topic: read as many as the bound allows, in the order given.

        Returns the ones added (they wait for :meth:`place`) and, when some had
        to be left out, the TOO_MANY_PARTITIONS failure to report in an error event.
        """
        new = self._new(partitions)
        room = self._max_partitions - len(self._partitions)
        for partition in new[:room]:
            self._partitions[partition] = _Partition()
        left_out = None if len(new) <= room else self._too_many(len(self._partitions) + len(new) - room)
        return new[:room], left_out

    @property
    def in_group(self) -> bool:
        """Whether a consumer group assigns the stream's partitions (PROTOCOL.md 5.4)."""
        return bool(self.subscribe.group)

    def assign(self, placed: Sequence[tuple[int, int]]) -> tuple[list[tuple[int, int]], CommandFailed | None]:
        """Partitions a group assigned, each at its start offset: read as many as the bound allows, in order.

        Returns the ``(partition, offset)`` pairs added and, when some had to be
        left out, the TOO_MANY_PARTITIONS failure to report in an error event.
        """
        starts = dict(placed)
        added, left_out = self.gain_partitions(starts)
        for partition in added:
            state = self._partitions[partition]
            state.position = state.delivered = starts[partition]
        return [(partition, starts[partition]) for partition in added], left_out

    def revoke(self, partitions: Iterable[int]) -> list[tuple[int, int]]:
        """Stop reading these partitions (the group took them); where each was delivered up to.

        Batches of them cut but not yet written are dropped by :meth:`confirm`.
        Partitions the stream does not read are ignored.
        """
        delivered = []
        for partition in partitions:
            state = self._partitions.pop(partition, None)
            if state is not None and state.delivered is not None:
                delivered.append((partition, state.delivered))
        return delivered

    def delivered(self, partitions: Iterable[int] | None = None) -> list[tuple[int, int]]:
        """``(partition, offset)``: where the client has everything before, for each placed partition.

        Raises:
            CommandFailed: NOT_ASSIGNED, a partition named that the stream does not read.
        """
        chosen = self._partitions if partitions is None else partitions
        pairs = []
        for partition in chosen:
            state = self._partitions.get(partition)
            if state is None:
                raise not_assigned(self.id, partition)
            if state.delivered is not None:
                pairs.append((partition, state.delivered))
        return pairs

    def reads(self, partition: int) -> bool:
        """Whether the stream reads ``partition`` now."""
        return partition in self._partitions

    def check_assigned(self, partitions: Iterable[int]) -> None:
        """Raise NOT_ASSIGNED unless the stream reads every one of ``partitions``."""
        for partition in partitions:
            if partition not in self._partitions:
                raise not_assigned(self.id, partition)

    def _new(self, partitions: Iterable[int]) -> list[int]:
        return [p for p in dict.fromkeys(partitions) if p not in self._partitions]

    def _too_many(self, total: int) -> CommandFailed:
        return CommandFailed(
            ErrorCode.TOO_MANY_PARTITIONS,
            f"stream {self.id} would read {total} partitions, more than max_stream_partitions ({self._max_partitions})",
        )

    def start_of(self, partition: int) -> StartEdge | AtTimestamp | AtOffset:
        """Where ``partition`` starts by the subscribe: an offset it names, else its edge or timestamp."""
        start = self.subscribe.start
        if isinstance(start, AtOffsets):
            offset = dict(start.offsets).get(partition)
            return StartEdge.LATEST if offset is None else AtOffset(offset)
        return start

    def _state(self, partition: int) -> _Partition:
        state = self._partitions.get(partition)
        if state is None:
            raise CommandFailed(ErrorCode.INVALID_REQUEST, f"stream {self.id} does not read partition {partition}")
        return state

    def position(self, partition: int) -> int | None:
        """Where the partition's next batch starts; None while its start or seek target is being looked up."""
        return self._state(partition).position

    def epoch(self, partition: int) -> int:
        """The partition's seek epoch: pass it to :meth:`place` with the offset looked up under it."""
        return self._state(partition).epoch

    def place(self, partition: int, offset: int, *, epoch: int) -> bool:
        """Set where the partition starts, found for a start or seek under ``epoch``; False if a seek came since."""
        state = self._state(partition)
        if state.epoch != epoch:
            return False
        state.position = state.delivered = offset
        return True

    def seek(self, partition: int, to: SeekTarget) -> int:
        """Move the partition: batches cut before are dropped. Returns the new epoch.

        An :class:`AtOffset` target is placed at once; for an edge or a timestamp
        the partition waits (nothing is cut) until :meth:`place` gets the offset.

        Raises:
            CommandFailed: INVALID_REQUEST, the stream does not read this partition.
        """
        state = self._state(partition)
        state.epoch += 1
        state.position = to.offset if isinstance(to, AtOffset) else None
        if state.position is not None:
            state.delivered = state.position
        return state.epoch

    def cut(self, chunk: Chunk) -> PushBatch | None:
        """The batch this stream gets from ``chunk``, paid for; None when nothing is to be sent.

        None also when the stream is closed or paused, does not read the chunk's
        partition, or its position there is unknown or outside the chunk; and
        when every record of the chunk from the position is rejected by the
        filter, in which case the position moves to the chunk's end (without a
        push and without spending credit).

        Raises:
            CommandFailed: RECORD_TOO_LARGE, the next record does not fit in a
            frame on its own; nothing changes.
        """
        state = self._partitions.get(chunk.partition)
        if not self.open or state is None or state.position is None or not chunk.covers(state.position):
            return None
        credit = self.credit
        if credit.paused:
            return None
        selection = chunk.selection(self.matcher)
        offsets = selection.offsets
        first = bisect.bisect_left(offsets, state.position)
        if first == len(offsets):
            state.position = chunk.end
            return None
        stop = batch_stop(selection, first, credit.records, credit.byte_budget, self._max_body)
        before = selection.ends[first - 1] if first else selection.base
        size = selection.ends[stop - 1] - before
        next_offset = offsets[stop] if stop < len(offsets) else chunk.end
        count = stop - first
        charged = credit.spend(count, size)
        state.position = next_offset
        fields, body = chunk.batch(self.matcher, first, stop, next_offset)
        return PushBatch(
            self, chunk.partition, state.epoch, count, size, charged, next_offset, chunk.high_watermark, fields, body
        )

    def confirm(self, batch: PushBatch) -> bool:
        """Call right before writing ``batch``: True to write it.

        False when a seek of its partition or the stream's end came after it was
        cut; then it must not be sent, and its credit is given back.
        """
        assert batch.stream is self
        state = self._partitions.get(batch.partition)
        if self.open and state is not None and state.epoch == batch.epoch:
            state.delivered = batch.next_offset
            return True
        if self.open:
            self.credit.refund(batch.count, batch.charged)
        return False


def unknown_stream(stream_id: int) -> CommandFailed:
    return CommandFailed(ErrorCode.UNKNOWN_STREAM, f"no stream {stream_id} is open on this connection")


def not_assigned(stream_id: int, partition: int) -> CommandFailed:
    return CommandFailed(
        ErrorCode.NOT_ASSIGNED, f"partition {partition} is not assigned to stream {stream_id} (or was revoked)"
    )


class Streams:
    """One connection's open streams, by id (the sequence of the subscribe that opened each).

    Commands that fail raise :class:`CommandFailed` whose ``reason`` is the
    whole message of the error response, one line naming what was wrong.
    """

    __slots__ = ("_max_body", "_open", "filters", "groups", "limits")

    def __init__(
        self,
        max_message_size: int,
        limits: StreamLimits = StreamLimits(),
        filters: FilterSet | None = None,
        *,
        groups: bool = False,
    ) -> None:
        self.limits = limits
        #: Whether a subscribe may join a consumer group (the backend can hold group members).
        self.groups = groups
        #: Where the streams' matchers come from: the route's set, so that all its sessions share them.
        self.filters = FilterSet() if filters is None else filters
        self._max_body = max_message_size - STREAM_FRAME_OVERHEAD
        self._open: dict[int, Stream] = {}

    def __len__(self) -> int:
        return len(self._open)

    def __iter__(self) -> Iterator[Stream]:
        return iter(list(self._open.values()))

    def __contains__(self, stream_id: object) -> bool:
        return stream_id in self._open

    def get(self, stream_id: int) -> Stream:
        """The open stream ``stream_id``.

        Raises:
            CommandFailed: UNKNOWN_STREAM.
        """
        stream = self._open.get(stream_id)
        if stream is None:
            raise unknown_stream(stream_id)
        return stream

    def find(self, stream_id: int) -> Stream | None:
        """The open stream ``stream_id``, or None."""
        return self._open.get(stream_id)

    def open(self, command: Subscribe) -> Stream:
        """Open the stream ``command`` asks for, with its partitions (if it names them) and its first grant.

        Its partitions' positions are placed where the subscribe names offsets;
        the others wait for :meth:`Stream.place`. A stream over every partition
        gets them with :meth:`Stream.add_partitions`.

        Raises:
            CommandFailed: DUPLICATE_STREAM, INVALID_REQUEST (a consumer group where groups are not served),
            TOO_MANY_STREAMS, TOO_MANY_PARTITIONS or CREDIT_LIMIT; nothing is opened.
        """
        limits = self.limits
        stream_id = command.sequence
        if stream_id in self._open:
            raise CommandFailed(
                ErrorCode.DUPLICATE_STREAM,
                f"stream {stream_id} is already open; a subscribe needs a sequence no open stream uses",
            )
        if command.group and not self.groups:
            raise CommandFailed(ErrorCode.INVALID_REQUEST, "consumer groups are not available on this route")
        if len(self._open) >= limits.max_streams:
            raise CommandFailed(
                ErrorCode.TOO_MANY_STREAMS,
                f"{len(self._open)} streams are open on this connection, the most {limits.max_streams_setting} "
                f"({limits.max_streams}) allows",
            )
        stream = Stream(command, limits.max_partitions, self._max_body)
        stream.add_partitions(command.partitions)
        stream.credit.grant(limits.default_grant if command.credit is None else command.credit, stream_id)
        stream.matcher = self.filters.acquire(command.filter)
        self._open[stream_id] = stream
        return stream

    def add_credit(self, command: AddCredit) -> Stream:
        """Add the grant to its stream (which resumes if it was paused and now has credit).

        Raises:
            CommandFailed: UNKNOWN_STREAM or CREDIT_LIMIT (the credit is unchanged).
        """
        stream = self.get(command.subscription)
        stream.credit.grant(command.grant, stream.id)
        return stream

    def seek(self, command: Seek) -> Stream:
        """Move one partition of a stream (:meth:`Stream.seek`); the stream is returned.

        For an edge or a timestamp, look the offset up and pass it to
        :meth:`Stream.place` with ``stream.epoch(partition)`` as it is now.

        Raises:
            CommandFailed: UNKNOWN_STREAM, or INVALID_REQUEST for a partition the stream does not read.
        """
        stream = self.get(command.subscription)
        stream.seek(command.partition, command.to)
        return stream

    def close(self, stream_id: int) -> Stream:
        """Close a stream (unsubscribe): nothing of it is cut or sent from now on.

        Raises:
            CommandFailed: UNKNOWN_STREAM.
        """
        stream = self.get(stream_id)
        del self._open[stream_id]
        self._end(stream)
        return stream

    def close_all(self) -> None:
        """Close every stream (the connection is gone)."""
        streams, self._open = self._open, {}
        for stream in streams.values():
            self._end(stream)

    def _end(self, stream: Stream) -> None:
        stream.open = False
        self.filters.release(stream.matcher)
