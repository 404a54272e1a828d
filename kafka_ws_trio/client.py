"""A Trio client for the PubSub protocol (ours, and APISIX's).

Example::

    from kafka_ws_trio.client import open_client

    async with open_client("ws://127.0.0.1:9080/kafka") as client:
        offset = await client.list_offset("demo", 0, EARLIEST)
        records = await client.fetch("demo", 0, offset)

Requests are pipelined: any number of tasks may call methods at once, and each
waits for the response carrying its own ``sequence``.

Streams (not in APISIX): ``client.subscribe(topic, ...)`` opens a push stream
the proxy keeps feeding, with credit granted and topped up by the client as
the caller takes batches, so that a slow caller holds back the proxy, not
this process's memory::

    async with client.subscribe("demo", start=EARLIEST) as stream:
        async for batch in stream:
            ...  # batch.partition, batch.records
        # stream.positions: where each partition continues (resume with start=stream.positions)

A stream in a Kafka consumer group (``group=``) gets the partitions the group assigns it,
follows rebalances (``stream.assignment``, ``on_partitions``) and commits where the group
goes on::

    async with client.subscribe("demo", group="billing", start=EARLIEST) as stream:
        async for batch in stream:
            ...
            await stream.commit(stream.positions)

Writing (not in APISIX): ``client.produce(topic, records)`` writes a batch and
answers one result per record; ``client.transaction()`` makes a block's
produces commit or abort together::

    results = await client.produce("demo", [OutRecord(key=b"k", value=b"v"), b"plain value"])
    async with client.transaction():
        await client.produce("orders", [b"one", b"two"])
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import re
import socket
import ssl
import urllib.parse
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Final, NoReturn, TypeAlias, TypeVar, cast

import attrs
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, HandshakeError, WebSocketConnection, wrap_client_stream

from ._pb import pubsub_pb2 as pb
from ._proto import (
    Acks,
    AtOffset,
    AtOffsets,
    AtTimestamp,
    ErrorAnswer,
    FetchAnswer,
    Filter,
    Grant,
    GroupOffsetsAnswer,
    HeaderMatch,
    Isolation,
    MalformedResponse,
    NotWritten,
    OffsetAnswer,
    OkAnswer,
    OutRecord,
    Pong,
    ProduceAnswer,
    ProduceResult,
    Record,
    Response,
    Start,
    StartEdge,
    StreamCaughtUp,
    StreamError,
    StreamPartitions,
    StreamRecords,
    SubscribeAnswer,
    TxnAction,
    Written,
    decode_response,
    encode_auth_request,
    encode_commit_request,
    encode_credit_request,
    encode_fetch_request,
    encode_group_offsets_request,
    encode_list_offset_request,
    encode_ping_request,
    encode_produce_request,
    encode_seek_request,
    encode_subscribe_request,
    encode_txn_request,
    encode_unsubscribe_request,
    read_varint,
)
from ._proto import StreamEnded as _Ended

__all__ = [
    "EARLIEST",
    "LATEST",
    "Acks",
    "NotWritten",
    "OutRecord",
    "ProduceResult",
    "Written",
    "Batch",
    "CaughtUp",
    "ConnectFailed",
    "Filter",
    "HeaderMatch",
    "OnPartitions",
    "PartitionsChanged",
    "PubSubClient",
    "PubSubError",
    "Record",
    "Stream",
    "StreamEnded",
    "StreamProblem",
    "open_client",
]

log = logging.getLogger("kafka_ws_trio.client")

_R = TypeVar("_R", Pong, OffsetAnswer, FetchAnswer, OkAnswer, SubscribeAnswer, ProduceAnswer, GroupOffsetsAnswer)

#: ``timestamp`` values of ListOffset.
LATEST: Final = -1
EARLIEST: Final = -2
#: Default bound on one response, matching the proxy's default.
DEFAULT_MAX_MESSAGE_SIZE: Final = 1_048_576
#: Seconds a request waits for its response by default.
DEFAULT_REQUEST_TIMEOUT: Final = 30.0
#: Seconds for the opening handshake.
DEFAULT_CONNECT_TIMEOUT: Final = 10.0
#: Seconds the closing handshake may take when the block is left (trio-websocket's own default).
DISCONNECT_TIMEOUT: Final = 60.0
#: Bytes of a non-HTTP answer quoted in a :class:`ConnectFailed` reason.
QUOTED_ANSWER_BYTES: Final = 24
#: Characters of the body of a 401 or 403 refusal quoted in a :class:`ConnectFailed` reason.
QUOTED_REFUSAL_CHARS: Final = 200
#: Bytes of the answer's head kept to read its status line; h11 bounds the head itself.
ANSWER_HEAD_BYTES: Final = 16_384
#: Records a stream may hold unread by default (its window): granted at subscribe, topped up as batches are taken.
DEFAULT_WINDOW: Final = 1000
#: Seconds leaving a stream's block waits for the proxy to confirm the unsubscribe.
UNSUBSCRIBE_TIMEOUT: Final = 5.0
#: Credit grants remembered per client, so that a grant the proxy refuses is reported on its stream.
MAX_TRACKED_GRANTS: Final = 256
#: The most byte credit a stream may hold (schema/README.md "Credit"): a byte count that never runs out.
MAX_CREDIT_BYTES: Final = 2**40


class PubSubError(Exception):
    """The proxy answered with an error response."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"PubSubError({self.code}, {self.message!r})"


class ConnectFailed(HandshakeError):
    """No WebSocket connection could be opened; ``reason`` says what was found instead.

    A :class:`trio_websocket.HandshakeError`, as before, so existing handlers
    still catch it. A refusal of the credentials (HTTP 401 or 403) is one
    too, with ``status`` set and the server's text in ``reason``. (Any other
    HTTP answer but ``101`` is still trio-websocket's ``ConnectionRejected``,
    which carries the status and body.)
    """

    def __init__(self, address: str, reason: str, *, status: int | None = None) -> None:
        super().__init__(f"could not connect to the proxy at {address}: {reason}")
        self.address = address
        self.reason = reason
        #: The HTTP status of a refusal of the credentials (401 or 403); None for any other failure.
        self.status = status


class StreamEnded(PubSubError):
    """The proxy ended the stream (its ``ended`` event: the topic was deleted, say); nothing of it follows.

    Iterating the stream raises it once everything pushed before the event has been taken.
    ``code`` and ``message`` are the proxy's reason.
    """

    def __init__(self, stream_id: int, code: int, message: str) -> None:
        super().__init__(code, message)
        self.stream_id = stream_id

    def __str__(self) -> str:
        return f"stream {self.stream_id} ended: {self.message} (code {self.code})"


@attrs.frozen
class Batch:
    """Records of one partition, in offset order, as a stream delivered them."""

    partition: int
    records: tuple[Record, ...]
    #: Where the partition continues: past the last record, and past offsets the filter rejected.
    next_offset: int
    #: The partition's log end when the batch was read.
    high_watermark: int

    @property
    def lag(self) -> int:
        """Records in the partition past this batch when it was read."""
        return max(0, self.high_watermark - self.next_offset)


@attrs.frozen
class CaughtUp:
    """``partition`` reached its high watermark: everything written to it so far has been delivered."""

    partition: int


@attrs.frozen
class StreamProblem:
    """A problem the proxy works around by itself, so the stream goes on (its ``error`` event).

    For example Kafka unreachable (the stream resumes where it was), or a record too large to
    send (its partition waits for a :meth:`Stream.seek` past it). ``partition`` None: the whole stream.
    """

    code: int
    message: str
    partition: int | None = None


@attrs.frozen
class PartitionsChanged:
    """Partitions joined the stream (``assigned``, starting at ``positions``) or left it (``revoked``)."""

    assigned: tuple[int, ...]
    revoked: tuple[int, ...]
    positions: tuple[tuple[int, int], ...]


#: What a stream's ``on_partitions`` is called with: the partitions assigned, the ones revoked, and
#: where the assigned ones start (partition -> offset).
OnPartitions: TypeAlias = Callable[[tuple[int, ...], tuple[int, ...], dict[int, int]], object]
#: What :meth:`Stream.events` yields.
StreamEvent: TypeAlias = Batch | CaughtUp | StreamProblem | PartitionsChanged
#: A push as a stream keeps it until the caller takes it, with its cost in byte credit.
_Pending: TypeAlias = tuple[StreamEvent | StreamEnded, int]
#: The pushes of a stream, as the codec decodes them.
_PUSHES: Final = (StreamRecords, StreamCaughtUp, StreamError, StreamPartitions, _Ended)
_Push: TypeAlias = StreamRecords | StreamCaughtUp | StreamError | StreamPartitions | _Ended
#: Protobuf field numbers of a StreamBatch push and of its records.
_STREAM_BATCH_FIELD: Final = pb.PubSubResp.DESCRIPTOR.fields_by_name["stream_batch"].number
_MESSAGES_FIELD: Final = pb.StreamBatch.DESCRIPTOR.fields_by_name["messages"].number


def _ms(moment: datetime) -> int:
    """Milliseconds since the epoch (a naive datetime is local time, as ``datetime.timestamp`` reads it)."""
    ms = round(moment.timestamp() * 1000)
    if ms < 0:
        raise ValueError(f"{moment.isoformat()} is before 1970, when Kafka's time starts")
    return ms


def _stream_start(start: int | datetime | Mapping[int, int]) -> Start:
    if isinstance(start, Mapping):
        if any(offset < 0 for offset in start.values()):
            raise ValueError(f"offsets are 0 or more: {dict(start)}")
        return AtOffsets(tuple(sorted(start.items())))
    if isinstance(start, datetime):
        return AtTimestamp(_ms(start))
    if start == LATEST:
        return StartEdge.LATEST
    if start == EARLIEST:
        return StartEdge.EARLIEST
    raise ValueError(
        f"start takes EARLIEST, LATEST, a datetime or offsets by partition (such as stream.positions), not {start!r}"
    )


def _fields(data: bytes, start: int, end: int, number: int) -> Iterator[tuple[int, int, int]]:
    """Where each length-delimited field ``number`` of the message in ``data[start:end]`` starts, and its
    payload starts and ends (``data`` is known to parse: protobuf read it first)."""
    pos = start
    while pos < end:
        field_start = pos
        key, pos = read_varint(data, pos)
        wire = key & 7
        if wire == 2:
            size, pos = read_varint(data, pos)
            if key >> 3 == number:
                yield field_start, pos, pos + size
            pos += size
        elif wire == 0:
            pos = read_varint(data, pos)[1]
        else:
            pos += 8 if wire == 1 else 4


def _records_size(frame: bytes) -> int:
    """What a StreamBatch frame's records cost in byte credit: their ``messages`` entries as encoded,
    tag and length prefix included (schema/README.md "Credit")."""
    for _, body, end in _fields(frame, 0, len(frame), _STREAM_BATCH_FIELD):
        return sum(stop - first for first, _, stop in _fields(frame, body, end, _MESSAGES_FIELD))
    return 0


class Stream:
    """A push stream, open for the block of :meth:`PubSubClient.subscribe`.

    ``async for batch in stream`` yields batches holding records; :meth:`events` yields
    everything: batches (empty ones too: a filter rejected what was read, and
    ``next_offset`` moved), :class:`CaughtUp`, :class:`StreamProblem` and
    :class:`PartitionsChanged`. Either way a :class:`StreamProblem` does not end the
    iteration (plain iteration logs it as a warning, on logger ``kafka_ws_trio.client``),
    the proxy's ``ended`` event raises :class:`StreamEnded`, and a lost connection raises
    ``ConnectionClosed`` once the batches that came before it are taken. With
    ``follow=False`` the iteration ends once every partition has caught up.

    :attr:`positions`, :attr:`caught_up` and :attr:`lag` describe what the caller has taken
    so far, in the order the proxy sent it.

    Credit: the stream is granted its window when it opens, and the client grants again
    what the caller has taken once that is half the window (records, or bytes when a byte
    window is set), when the caller asks for more. So the stream holds at most ``window``
    records the caller has not taken (:attr:`buffered`; with ``window_bytes``, at most that
    many bytes of them plus one record), and the proxy waits while the caller does not take
    them. A proxy pushing past the credit ends the iteration with a :class:`PubSubError`
    instead of growing the buffer.

    Consumer groups (a stream opened with ``group=``): :attr:`assignment` is the set of
    partitions the group has given the stream, as of what the caller has taken: the first
    assignment when the block is entered, then each :class:`PartitionsChanged` applied as it
    is taken (by :meth:`events` or by plain iteration, which takes them silently). A rebalance
    arrives as such events, in order with the batches: the revocation after the last batch of
    the partitions revoked, the assignment before the first batch of the new ones (Kafka's
    default assignors first revoke all of a member's partitions, then assign its new set). The
    subscribe's ``on_partitions`` is called for each of them, at the same point.
    :meth:`commit` stores where the group goes on.
    """

    def __init__(
        self,
        client: PubSubClient,
        stream_id: int,
        topic: str,
        *,
        window: int,
        window_bytes: int,
        follow: bool,
        group: str | None = None,
        on_partitions: OnPartitions | None = None,
    ) -> None:
        self.id = stream_id
        self.topic = topic
        #: The consumer group the stream is a member of; None for a plain stream.
        self.group = group
        self._on_partitions = on_partitions
        self._client = client
        self._window = window
        self._window_bytes = window_bytes
        self._follow = follow
        #: The credit the proxy may still use, as far as this client has granted it (the proxy may
        #: not have got the latest grant yet): records, and bytes (without a byte window, a byte
        #: count that never runs out). A push past it is a broken proxy, not a reason to buffer more.
        self._credit_records = window
        self._credit_bytes = window_bytes or MAX_CREDIT_BYTES
        self._pending: deque[_Pending] = deque()
        #: Pushes of a partition being moved by a seek, until its answer says whether they still count.
        self._held: dict[int, list[_Pending]] = {}
        self._buffered_records = 0
        #: Taken (or dropped) since the last grant: what the next grant gives back.
        self._taken_records = 0
        self._taken_bytes = 0
        self._positions: dict[int, int] = {}
        self._assignment: set[int] = set()
        #: Whether the stream has ever read a partition (a group may give it none).
        self._ever_assigned = False
        self._high_watermarks: dict[int, int] = {}
        self._caught_up: set[int] = set()
        self._arrived = trio.Event()
        self._seeking = trio.Lock()
        #: Raised once the pending pushes are taken (the connection was lost).
        self._failure: BaseException | None = None
        #: Raised at once (the proxy pushed past the credit).
        self._broken: PubSubError | None = None
        #: The proxy has closed the stream (ended) or cannot hold it any more (connection lost).
        self._closed_by_proxy = False

    def __repr__(self) -> str:
        return f"<Stream {self.id} of {self.topic!r}: positions {self._positions}>"

    @property
    def positions(self) -> dict[int, int]:
        """Partition -> the offset it continues at, as of what the caller has taken: store it, and
        subscribe again with ``start=positions`` to go on with nothing lost or repeated."""
        return dict(self._positions)

    @property
    def assignment(self) -> frozenset[int]:
        """The partitions the stream reads now, as of what the caller has taken.

        A group stream: those the group assigned it (its first assignment once the block is
        entered, possibly none when the group has more members than the topic has partitions;
        then each :class:`PartitionsChanged` applied as it is taken). A plain stream: the
        partitions it was opened on, and those added to the topic later.
        """
        return frozenset(self._assignment)

    @property
    def caught_up(self) -> frozenset[int]:
        """The partitions whose last news is that they reached their high watermark."""
        return frozenset(self._caught_up)

    @property
    def lag(self) -> dict[int, int]:
        """Partition -> records written that the stream has not delivered yet (known once a batch or
        a caught-up event of the partition has been taken)."""
        return {
            partition: max(0, high - self._positions[partition])
            for partition, high in self._high_watermarks.items()
            if partition in self._positions
        }

    @property
    def buffered(self) -> int:
        """Records that came and the caller has not taken yet: never more than the window."""
        return self._buffered_records

    async def __aiter__(self) -> AsyncIterator[Batch]:
        while (event := await self._next()) is not None:
            if isinstance(event, Batch) and event.records:
                yield event
            elif isinstance(event, StreamProblem):
                where = "" if event.partition is None else f" partition {event.partition}"
                log.warning("stream %d of %s%s: %s (code %d)", self.id, self.topic, where, event.message, event.code)

    async def events(self) -> AsyncIterator[StreamEvent]:
        """Everything the proxy pushes, in order (see the class)."""
        while (event := await self._next()) is not None:
            yield event

    async def seek(self, partition: int, to: int | datetime) -> None:
        """Move ``partition`` to ``to``: an offset, ``EARLIEST``, ``LATEST`` or a datetime (the first
        record at or after it, else the log end).

        The last three are looked up first (ListOffset), so :attr:`positions` holds the
        partition's new offset as soon as this returns. Batches of the partition from before
        the seek, taken or not, are dropped; the next one starts at the new position.

        Raises:
            ValueError: the stream does not read ``partition``, or ``to`` is not one of the above.
            PubSubError: the proxy refused the seek (the partition goes on where it was).
        """
        if partition not in self._positions:
            raise ValueError(f"stream {self.id} does not read partition {partition}")
        offset = await self._offset_for(partition, to)
        async with self._seeking:
            self._held[partition] = [item for item in self._pending if _partition_of(item[0]) == partition]
            self._pending = deque(item for item in self._pending if _partition_of(item[0]) != partition)

            def settle(answer: Response) -> None:
                held = self._held.pop(partition, [])
                if isinstance(answer, OkAnswer):
                    for event, size in held:
                        if isinstance(event, Batch):
                            self._took(event, size)
                    self._positions[partition] = offset
                    self._high_watermarks.pop(partition, None)
                    self._caught_up.discard(partition)
                else:
                    self._pending.extend(held)
                self._arrived.set()  # what was dropped may be granted again

            await self._client._answer(
                lambda sequence: encode_seek_request(sequence, self.id, partition, AtOffset(offset)),
                OkAnswer,
                on_answer=settle,
            )

    async def commit(self, offsets: Mapping[int, int] | None = None) -> None:
        """Commit ``offsets`` (partition -> the offset the group goes on at) for the stream's group;
        returns once Kafka has them.

        ``offsets`` None commits what the proxy has *delivered*: per partition, past the last
        batch it sent, which includes batches still in the stream's buffer that the caller has
        not taken (:attr:`buffered`). To commit only what the caller has taken (and, say,
        processed), pass :attr:`positions`. An empty mapping commits nothing and sends nothing.
        Inside :meth:`PubSubClient.transaction` the offsets become part of the transaction.
        A member that joins the group later starts each partition at its committed offset.

        Raises:
            PubSubError: the proxy refused, with its code: ``NOT_ASSIGNED`` (a partition the
                stream does not own, or no longer owns: it was revoked), ``COMMIT_FAILED``
                (Kafka refused: the group rebalanced or this member left it; commit again
                after the :class:`PartitionsChanged` events, for what is still assigned),
                ``INVALID_REQUEST`` (not a group stream, or a negative offset),
                ``UNKNOWN_STREAM`` (the stream is closed).
        """
        if offsets is not None and not offsets:
            return
        pairs = None if offsets is None else sorted(offsets.items())
        await self._client._answer(lambda sequence: encode_commit_request(sequence, self.id, pairs), OkAnswer)

    async def _offset_for(self, partition: int, to: int | datetime) -> int:
        if isinstance(to, datetime):
            offset = await self._client.list_offset(self.topic, partition, _ms(to))
            return offset if offset >= 0 else await self._client.list_offset(self.topic, partition, LATEST)
        if to in (EARLIEST, LATEST):
            return await self._client.list_offset(self.topic, partition, to)
        if to < 0:
            raise ValueError(f"seek takes an offset (0 or more), EARLIEST, LATEST or a datetime, not {to!r}")
        return to

    # ---------------------------------------------- taking, in the caller's task

    def _finished(self) -> bool:
        if self._follow:
            return False
        if not self._positions:
            # A group member that the group gave nothing (more members than partitions) has nothing
            # to read; one whose partitions were all revoked waits for the assignment that follows.
            return self.group is not None and not self._ever_assigned and not self._pending
        return self._caught_up >= self._positions.keys()

    async def _next(self) -> StreamEvent | None:
        """The next push, with the stream's state moved past it; None when a ``follow=False`` stream is done."""
        while True:
            if self._broken is not None:
                raise self._broken
            await self._grant_taken()
            if self._finished():
                return None
            if self._pending:
                event, size = self._pending.popleft()
                return self._take(event, size)
            if self._failure is not None:
                raise self._failure
            self._arrived = trio.Event()
            await self._arrived.wait()

    def _take(self, event: StreamEvent | StreamEnded, size: int) -> StreamEvent:
        if isinstance(event, StreamEnded):
            raise event
        if isinstance(event, Batch):
            self._took(event, size)
            self._positions[event.partition] = event.next_offset
            self._high_watermarks[event.partition] = event.high_watermark
            if event.next_offset < event.high_watermark:
                self._caught_up.discard(event.partition)
        elif isinstance(event, CaughtUp):
            if event.partition in self._positions:
                self._caught_up.add(event.partition)
                self._high_watermarks[event.partition] = self._positions[event.partition]
        elif isinstance(event, PartitionsChanged):
            for partition in event.revoked:
                self._assignment.discard(partition)
                self._positions.pop(partition, None)
                self._high_watermarks.pop(partition, None)
                self._caught_up.discard(partition)
            self._assignment.update(event.assigned)
            self._positions.update(event.positions)
            self._ever_assigned = self._ever_assigned or bool(event.assigned)
            if self._on_partitions is not None:
                self._on_partitions(event.assigned, event.revoked, dict(event.positions))
        return event

    def _took(self, batch: Batch, size: int) -> None:
        records = len(batch.records)
        self._buffered_records -= records
        self._taken_records += records
        self._taken_bytes += size

    async def _grant_taken(self) -> None:
        """Grant back what was taken, once it is half the window (of records, or of bytes)."""
        if self._closed_by_proxy or not (
            self._taken_records >= max(1, self._window // 2)
            or (self._window_bytes and self._taken_bytes >= max(1, self._window_bytes // 2))
        ):
            return
        grant = Grant(records=self._taken_records, bytes=self._taken_bytes if self._window_bytes else 0)
        self._taken_records = self._taken_bytes = 0
        with contextlib.suppress(ConnectionClosed):  # the reader tells every stream of the loss
            await self._client._grant(self, grant)

    # ---------------------------------------------- the client's reader task (never blocks)

    def _opened(self, positions: Iterable[tuple[int, int]]) -> None:
        self._positions.update(positions)
        self._assignment.update(self._positions)
        self._ever_assigned = bool(self._positions)

    def _pushed(self, push: _Push, frame: bytes) -> None:
        if self._broken is not None or self._closed_by_proxy:
            return
        size = 0
        event: StreamEvent | StreamEnded
        if isinstance(push, StreamRecords):
            event = Batch(push.partition, push.records, push.next_offset, push.high_watermark)
            size = _records_size(frame) if self._window_bytes else 0
            if push.records and (self._credit_records < len(push.records) or self._credit_bytes <= 0):
                self._broken = PubSubError(
                    0,
                    f"stream {self.id}: the proxy pushed past the credit granted ({len(push.records)} records "
                    f"with {self._credit_records} records and {self._credit_bytes} bytes of credit left)",
                )
                self._pending.clear()
                self._arrived.set()
                return
            self._credit_records -= len(push.records)
            self._credit_bytes -= size
            self._buffered_records += len(push.records)
        elif isinstance(push, StreamCaughtUp):
            event = CaughtUp(push.partition)
        elif isinstance(push, StreamError):
            event = StreamProblem(push.code, push.message, push.partition)
        elif isinstance(push, StreamPartitions):
            event = PartitionsChanged(push.assigned, push.revoked, push.positions)
        else:
            event = StreamEnded(self.id, push.code, push.message)
            self._closed_by_proxy = True
        partition = _partition_of(event)
        held = None if partition is None or isinstance(event, StreamProblem) else self._held.get(partition)
        if held is not None:
            held.append((event, size))  # from before the seek under way, unless it fails
        else:
            self._pending.append((event, size))
        self._arrived.set()

    def _refused_grant(self, answer: ErrorAnswer) -> None:
        self._pending.append((StreamProblem(answer.code, f"credit refused: {answer.message}"), 0))
        self._arrived.set()

    def _lost(self, error: BaseException) -> None:
        self._failure = error
        self._closed_by_proxy = True
        self._arrived.set()


_ACKS_BY_NAME: Final = {"all": Acks.ALL, "leader": Acks.LEADER, "none": Acks.NONE, "route": Acks.ROUTE_DEFAULT}


def _out_record(record: OutRecord | bytes | str) -> OutRecord:
    if isinstance(record, OutRecord):
        return record
    return OutRecord(value=record.encode() if isinstance(record, str) else bytes(record))


def _partition_of(event: StreamEvent | StreamEnded) -> int | None:
    return event.partition if isinstance(event, Batch | CaughtUp | StreamProblem) else None


#: An answer as it arrived, with its decoded event (frames that do not decode are dropped).
_Answer = tuple[bytes, Response]


class PubSubClient:
    """A connected client; make one with :func:`open_client`.

    Frames are built and read by the same sans-IO codec the proxy uses
    (:mod:`kafka_ws_trio._proto`); this class only matches answers to
    requests by their ``sequence``.
    """

    def __init__(self, ws: WebSocketConnection, request_timeout: float) -> None:
        self._ws = ws
        self._timeout = request_timeout
        self._sequences = itertools.count(1)
        self._waiting: dict[int, trio.MemorySendChannel[_Answer]] = {}
        #: Run by the reader as an answer arrives, before anything after it is read (a seek's).
        self._on_answer: dict[int, Callable[[Response], None]] = {}
        self._streams: dict[int, Stream] = {}
        #: The latest credit grants sent, by sequence: the proxy answers one only to refuse it.
        self._grants: OrderedDict[int, Stream] = OrderedDict()
        self._closed: ConnectionClosed | None = None
        self._transaction_open = False

    @property
    def websocket(self) -> WebSocketConnection:
        """The underlying trio-websocket connection."""
        return self._ws

    async def _read_responses(self) -> None:
        try:
            while True:
                frame = await self._ws.get_message()
                if isinstance(frame, str):
                    continue
                response = decode_response(frame)
                if isinstance(response, MalformedResponse):
                    continue  # no sequence to match it to
                if isinstance(response, _PUSHES):  # told from answers by their kind, not their sequence
                    stream = self._streams.get(response.sequence)
                    if stream is not None:
                        stream._pushed(response, frame)
                    continue
                settle = self._on_answer.pop(response.sequence, None)
                if settle is not None:
                    settle(response)
                waiter = self._waiting.pop(response.sequence, None)
                if waiter is not None:
                    # The request may have been cancelled (its channel closed) just now.
                    with contextlib.suppress(trio.BrokenResourceError):
                        waiter.send_nowait((frame, response))
                elif isinstance(response, ErrorAnswer) and (refused := self._grants.pop(response.sequence, None)):
                    refused._refused_grant(response)
        except ConnectionClosed as exc:
            self._closed = exc
        finally:
            for waiter in self._waiting.values():
                waiter.close()
            self._waiting.clear()
            self._on_answer.clear()
            for stream in self._streams.values():
                stream._lost(self._closed or ConnectionClosed(None))

    async def _exchange(
        self,
        build: Callable[[int], bytes],
        *,
        sequence: int | None = None,
        on_answer: Callable[[Response], None] | None = None,
    ) -> _Answer:
        """Send the frame ``build(sequence)`` makes and wait for the answer carrying that sequence.

        ``sequence`` None takes the next one; ``on_answer`` runs in the reader as the answer
        arrives, even when nobody waits for it any more.
        """
        if sequence is None:
            sequence = next(self._sequences)
        send, receive = trio.open_memory_channel[_Answer](1)
        if self._closed is not None:
            raise self._closed
        self._waiting[sequence] = send
        if on_answer is not None:
            self._on_answer[sequence] = on_answer
        try:
            with trio.fail_after(self._timeout):
                await self._ws.send_message(build(sequence))
                async with receive:
                    try:
                        return await receive.receive()
                    except trio.EndOfChannel:
                        raise self._closed or ConnectionClosed(None) from None
        finally:
            self._waiting.pop(sequence, None)

    async def request(self, request: pb.PubSubReq) -> pb.PubSubResp:
        """Send ``request`` (its sequence is set here) and return the raw response.

        Raises:
            trio.TooSlowError: no response within the request timeout.
            ConnectionClosed: the connection closed before the response came.
        """

        def build(sequence: int) -> bytes:
            request.sequence = sequence
            return request.SerializeToString()

        frame, _ = await self._exchange(build)
        return pb.PubSubResp.FromString(frame)

    async def _answer(
        self,
        build: Callable[[int], bytes],
        expected: type[_R],
        *,
        sequence: int | None = None,
        on_answer: Callable[[Response], None] | None = None,
    ) -> _R:
        _, response = await self._exchange(build, sequence=sequence, on_answer=on_answer)
        if isinstance(response, ErrorAnswer):
            raise PubSubError(response.code, response.message)
        if not isinstance(response, expected):
            raise PubSubError(
                0, f"unexpected response {type(response).__name__} to a request expecting {expected.__name__}"
            )
        return response

    async def ping(self, state: bytes = b"") -> bytes:
        """Round-trip ``state`` through the proxy; returns what came back."""
        return (await self._answer(lambda sequence: encode_ping_request(sequence, state), Pong)).state

    async def refresh_token(self, token: str) -> None:
        """Hand the proxy a fresh token for this session's principal (schema/README.md, "Refreshing a token").

        The session then lives until the new token expires, with the new token's rights.
        Raises :class:`PubSubError`: ``TOKEN_REFUSED`` (63) when the token does not verify,
        names another principal or has no rights on the route (the old token stays in force),
        ``unknown command`` on a route that takes no credentials.
        """
        await self._answer(lambda sequence: encode_auth_request(sequence, token), OkAnswer)

    async def list_offset(self, topic: str, partition: int, timestamp: int = LATEST) -> int:
        """The offset for ``timestamp``: ``LATEST`` (-1), ``EARLIEST`` (-2) or milliseconds."""
        answer = await self._answer(
            lambda sequence: encode_list_offset_request(sequence, topic, partition, timestamp), OffsetAnswer
        )
        return answer.offset

    async def group_offsets(self, group: str, topic: str) -> dict[int, int]:
        """``{partition: offset}``: what consumer group ``group`` has committed for ``topic``.

        Partitions the group never committed are left out. The group is not joined: its
        members are not disturbed. A kafka-python or Java consumer group's offsets read the
        same way. Raises :class:`PubSubError` (``not found topic``; ``unknown command`` from a
        proxy without consumer groups).
        """
        answer = await self._answer(
            lambda sequence: encode_group_offsets_request(sequence, group, topic), GroupOffsetsAnswer
        )
        return dict(answer.committed)

    async def fetch(self, topic: str, partition: int, offset: int) -> list[Record]:
        """Records at or after ``offset``; an empty list at the log end."""
        answer = await self._answer(
            lambda sequence: encode_fetch_request(sequence, topic, partition, offset), FetchAnswer
        )
        return list(answer.records)

    async def tail(self, topic: str, partition: int, offset: int) -> AsyncIterator[Record]:
        """Yield records from ``offset`` on, forever (waiting at the log end).

        One Fetch at a time: each asks from the offset after the last record of the answer
        before, so no record comes twice (no fetches are pipelined ahead of the answers). A
        stream (:meth:`subscribe`) reads ahead within its window instead.
        """
        while True:
            for record in await self.fetch(topic, partition, offset):
                yield record
                offset = record.offset + 1

    @asynccontextmanager
    async def subscribe(
        self,
        topic: str,
        *,
        partitions: Iterable[int] | None = None,
        start: int | datetime | Mapping[int, int] = LATEST,
        filter: Filter | None = None,
        window: int = DEFAULT_WINDOW,
        window_bytes: int = 0,
        follow: bool = True,
        read_committed: bool = False,
        group: str | None = None,
        auto_commit: bool = False,
        on_partitions: OnPartitions | None = None,
    ) -> AsyncIterator[Stream]:
        """Open a push stream of ``topic`` for the block (schema/README.md "Streams").

        Args:
            partitions: The partitions to read; None: all of them, and the ones added later.
            start: Where each partition starts: ``LATEST`` (only records written from now on),
                ``EARLIEST``, a datetime (the first record at or after it), or offsets by
                partition, such as a stream's :attr:`Stream.positions` (partitions not named
                start at the log end).
            filter: Which records the proxy sends (a :class:`Filter`); None: all.
            window: Records the stream may hold that the caller has not taken; the proxy
                stops while the window is full.
            window_bytes: The same in bytes (of records as encoded); 0: no byte limit.
            follow: False: the iteration ends once every partition has caught up.
            read_committed: Leave out records of aborted and still-open transactions; the
                stream then stops at the partition's last stable offset.
            group: Join this Kafka consumer group: the group assigns the partitions (so
                ``partitions`` must be None), and each starts at the group's committed
                offset, else where ``start`` says. The block is entered once the group's
                first assignment is known (:attr:`Stream.assignment`, possibly empty when the
                group has more members than the topic has partitions); joining can take
                seconds, within the client's ``request_timeout``. Leaving the block leaves the
                group. Commit with :meth:`Stream.commit`.
            auto_commit: A group stream only: the proxy commits what it has delivered every
                commit interval (a route setting), when partitions are revoked and when the
                stream closes. What was delivered includes batches the caller has not taken
                yet: use :meth:`Stream.commit` with :attr:`Stream.positions` for what was taken.
            on_partitions: Called as ``on_partitions(assigned, revoked, positions)`` for each
                :class:`PartitionsChanged` (a group's rebalance, or partitions added to the
                topic), in the caller's task, when the iteration takes the event: after
                :attr:`Stream.assignment` and :attr:`Stream.positions` follow it, before the
                batches after it. ``positions`` maps each assigned partition to where it
                starts. Not called for the first assignment, which the block starts with.
                What it raises propagates from the iteration.

        Leaving the block unsubscribes (waiting up to ``UNSUBSCRIBE_TIMEOUT`` for the proxy).

        Raises:
            PubSubError: the proxy refused the subscribe (``unknown command`` from a proxy
                that does not serve streams, such as APISIX; ``INVALID_REQUEST`` from a route
                without consumer groups; ``OVERLOADED`` past the route's group members).
            ValueError: ``start``, ``window`` or ``window_bytes`` is out of range; ``partitions``
                with a ``group``; an empty ``group``; ``auto_commit`` without a ``group``.
        """
        if window < 1 or window_bytes < 0:
            raise ValueError(f"window must be 1 or more and window_bytes 0 or more, not {window} and {window_bytes}")
        if group is not None and not group:
            raise ValueError("group must be a name, not empty (None: a plain stream)")
        if group is not None and partitions is not None:
            raise ValueError("a group stream takes no partitions: the group assigns them")
        if auto_commit and group is None:
            raise ValueError("auto_commit needs a group: only a group stream commits")
        begin = _stream_start(start)
        isolation = Isolation.READ_COMMITTED if read_committed else Isolation.READ_UNCOMMITTED
        listed = tuple(partitions or ())
        stream_id = next(self._sequences)
        stream = Stream(
            self,
            stream_id,
            topic,
            window=window,
            window_bytes=window_bytes,
            follow=follow,
            group=group,
            on_partitions=on_partitions,
        )
        self._streams[stream_id] = stream  # before the request: pushes follow its answer at once
        may_be_open = True
        try:
            try:
                answer = await self._answer(
                    lambda sequence: encode_subscribe_request(
                        sequence,
                        topic,
                        partitions=listed,
                        start=begin,
                        filter=filter,
                        credit=Grant(records=window, bytes=window_bytes),
                        isolation=isolation,
                        group=group or "",
                        auto_commit=auto_commit,
                    ),
                    SubscribeAnswer,
                    sequence=stream_id,
                )
            except PubSubError:
                may_be_open = False
                raise
            stream._opened(answer.positions)
            yield stream
        finally:
            del self._streams[stream_id]
            if may_be_open and not stream._closed_by_proxy:
                await self._unsubscribe(stream_id)

    async def produce(
        self,
        topic: str,
        records: Iterable[OutRecord | bytes | str],
        *,
        acks: Acks | str = Acks.ROUTE_DEFAULT,
    ) -> list[ProduceResult]:
        """Write ``records`` to ``topic`` in one command; one result per record, in order.

        A record is an :class:`OutRecord` (key, value, headers, partition, timestamp), or
        ``bytes``/``str`` for a value alone. ``acks`` is an :class:`Acks` or ``"all"``,
        ``"leader"``, ``"none"``; the default is the route's (``all``, idempotent). Inside
        :meth:`transaction` the records are part of the transaction.

        Each result is :class:`Written` (partition, offset, timestamp) or
        :class:`NotWritten` (partition, code, message): records fail one by one, for
        example ``not found topic`` or ``RECORD_TOO_LARGE``.

        Raises:
            PubSubError: the command was refused whole (``OVERLOADED``, an invalid record,
                ``unknown command`` from a proxy that does not take writes).
            ValueError: no records, or an unknown ``acks``.
        """
        level = _ACKS_BY_NAME[acks] if isinstance(acks, str) else acks
        batch = tuple(_out_record(record) for record in records)
        if not batch:
            raise ValueError("produce needs at least one record")
        transactional = self._transaction_open
        answer = await self._answer(
            lambda sequence: encode_produce_request(sequence, topic, batch, acks=level, transactional=transactional),
            ProduceAnswer,
        )
        return list(answer.results)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """A Kafka transaction for the block: :meth:`produce` calls inside it commit together.

        The block's end commits; an exception aborts and propagates. A connection that
        closes mid-transaction has it aborted by the proxy. One transaction at a time.

        Raises:
            PubSubError: the proxy could not begin or commit it (``TXN_ABORTED``,
                ``TXN_FENCED``, ``TXN_TIMED_OUT``, ``OVERLOADED`` when its transactional
                producers are all in use).
            RuntimeError: a transaction is already open on this client.
        """
        if self._transaction_open:
            raise RuntimeError("a transaction is already open on this client")
        await self._answer(lambda sequence: encode_txn_request(sequence, TxnAction.BEGIN), OkAnswer)
        self._transaction_open = True
        try:
            yield
        except BaseException:
            self._transaction_open = False
            with trio.CancelScope(shield=True), contextlib.suppress(PubSubError, ConnectionClosed, trio.TooSlowError):
                await self._answer(lambda sequence: encode_txn_request(sequence, TxnAction.ABORT), OkAnswer)
            raise
        self._transaction_open = False
        await self._answer(lambda sequence: encode_txn_request(sequence, TxnAction.COMMIT), OkAnswer)

    async def _unsubscribe(self, stream_id: int) -> None:
        """Close a stream, even in a cancelled block; a stream the proxy no longer has is fine."""
        with (
            trio.CancelScope(shield=True),
            trio.move_on_after(UNSUBSCRIBE_TIMEOUT),
            contextlib.suppress(PubSubError, ConnectionClosed, trio.TooSlowError),
        ):
            await self._answer(lambda sequence: encode_unsubscribe_request(sequence, stream_id), OkAnswer)

    async def _grant(self, stream: Stream, grant: Grant) -> None:
        """Send a credit grant (answered only when refused: the reader then tells the stream)."""
        if self._closed is not None:
            raise self._closed
        stream._credit_records += grant.records
        stream._credit_bytes += grant.bytes
        sequence = next(self._sequences)
        self._grants[sequence] = stream
        if len(self._grants) > MAX_TRACKED_GRANTS:
            self._grants.popitem(last=False)
        await self._ws.send_message(encode_credit_request(sequence, stream.id, grant))


@attrs.frozen
class _Target:
    """Where a ``ws://`` or ``wss://`` URL points (read by trio-websocket's rules)."""

    host: str
    port: int
    resource: str
    tls: bool

    @classmethod
    def parse(cls, url: str) -> _Target:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("ws", "wss"):
            raise ValueError('WebSocket URL scheme must be "ws:" or "wss:"')
        if parts.hostname is None:
            raise ValueError("URL host must not be None")
        tls = parts.scheme == "wss"
        resource = (parts.path or "/") + (f"?{parts.query}" if "?" in url else "")
        return cls(parts.hostname, parts.port or (443 if tls else 80), resource, tls)

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def host_header(self) -> str:
        return self.address.rsplit(":", 1)[0] if self.port in (80, 443) else self.address


def _describe(error: BaseException) -> str:
    """An error's text, or its type's name when the text is empty (a reason is never blank)."""
    return str(error) or type(error).__name__


def _connect_failure(error: OSError, host: str) -> str:
    """Why the TCP connection failed. trio reports a refused connection as an OSError without
    an errno whose ``__cause__`` groups one error per address tried."""
    if isinstance(error, OSError) and error.errno is None:
        tried = getattr(error.__cause__, "exceptions", ())
        error = next((e for e in tried if isinstance(e, OSError) and e.errno is not None), error)
    if isinstance(error, socket.gaierror):
        return f"the name {host!r} does not resolve ({error.strerror or _describe(error)})"
    if error.errno == errno.ECONNREFUSED:
        return "nothing is listening there (connection refused); is the proxy running, and on that port?"
    return error.strerror or _describe(error)


def _tls_failure(error: BaseException) -> str:
    """Why the TLS handshake failed; the common cause is a proxy serving plain ``ws://``."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"its TLS certificate is not trusted ({error.verify_message})"
    text = str(error.args[1]) if isinstance(error, ssl.SSLError) and len(error.args) > 1 else str(error)
    text = re.sub(r"\s*\(_ssl\.c:\d+\)$", "", text) or type(error).__name__
    return f"TLS handshake failed ({text}); is the proxy serving plain ws://?"


def _refusal(rejected: ConnectionRejected, token_sent: bool) -> str:
    """Why the proxy refused the credentials, in its own words (its answer's body, on one line)."""
    text = " ".join((rejected.body or b"").decode("utf-8", "replace").split())
    if len(text) > QUOTED_REFUSAL_CHARS:
        text = text[: QUOTED_REFUSAL_CHARS - 3] + "..."
    said = f": {text!r}" if text else " without a reason"
    if rejected.status_code == 403:
        return f"it refused the connection with HTTP 403 Forbidden{said}; the client may not use this route"
    advice = "the token was not accepted" if token_sent else "no token was sent"
    return f"it refused the connection with HTTP 401 Unauthorized{said}; {advice}"


def _bearer(token: str) -> list[tuple[bytes, bytes]]:
    """The ``Authorization`` header carrying ``token``; the errors never show the token."""
    if not isinstance(token, str):
        raise TypeError(f"token must be a str, not {type(token).__name__}")
    if not token or not all("!" <= ch <= "~" for ch in token):
        raise ValueError("token must be non-empty and printable ASCII, without spaces (the token is not shown)")
    return [(b"Authorization", b"Bearer " + token.encode("ascii"))]


class _AnswerWatch(trio.abc.Stream):
    """The client's stream: until a ``101`` arrives, it names what the server did instead.

    trio-websocket reads the answer to the upgrade request in its reader
    task. When the peer closes or resets the connection first, or answers
    with bytes that are not HTTP (a Kafka broker closes at once), that task
    just ends, and the handshake waits out the whole connect timeout before
    failing without a reason. Raising :class:`ConnectFailed` here, inside the
    reader task, fails the handshake at once, with the reason. Once the
    status line says ``101`` (or the handshake is given up), the stream only
    passes bytes through.
    """

    def __init__(self, stream: trio.abc.Stream, address: str) -> None:
        self._stream = stream
        self._address = address
        self._head = b""
        self._status_line: str | None = None
        self._watching = True

    def stop_watching(self) -> None:
        """Pass everything through from now on: the handshake has been given up (timed out or
        cancelled) and the stream is about to be closed under the reader, which must end quietly."""
        self._watching = False

    def _fail(self, reason: str) -> NoReturn:
        raise ConnectFailed(self._address, reason)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        try:
            await self._stream.send_all(data)
        except trio.BrokenResourceError as exc:
            if not self._watching:
                raise
            self._fail(f"the connection broke while sending the upgrade request ({_describe(exc.__cause__ or exc)})")

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        # The flag is read after the wait: the handshake may have been given up meanwhile.
        try:
            data = await self._stream.receive_some(max_bytes)
        except trio.BrokenResourceError as exc:
            if not self._watching:
                raise
            self._fail(self._ended(f"reset the connection ({_describe(exc.__cause__ or exc)})"))
        except trio.ClosedResourceError:
            if not self._watching:
                raise
            # Only trio-websocket closes the stream this early: wsproto refused the answer.
            self._fail(f"its answer to the upgrade request is not valid HTTP ({self._head[:QUOTED_ANSWER_BYTES]!r})")
        if self._watching:
            if not data:
                self._fail(self._ended("closed the connection"))
            self._read_head(bytes(data))
        return data

    def _ended(self, what: str) -> str:
        if not self._head:
            return f"not a WebSocket server (it {what} without an HTTP answer to the upgrade request)"
        if self._status_line is None:
            return f"it {what} in the middle of its answer ({self._head[:QUOTED_ANSWER_BYTES]!r})"
        return f"it answered {self._status_line!r} instead of switching to WebSocket, then {what}"

    def _read_head(self, data: bytes) -> None:
        if self._status_line is not None:
            return  # not a 101: wsproto reads the rest and rejects it
        self._head = (self._head + data)[:ANSWER_HEAD_BYTES]
        if not b"HTTP/".startswith(self._head[:5]):
            if self._head[:1] in (b"\x15", b"\x16") and self._head[1:2] == b"\x03":
                self._fail("it answered in TLS; use wss://")
            self._fail(f"not a WebSocket server (it answered {self._head[:QUOTED_ANSWER_BYTES]!r}, which is not HTTP)")
        end = self._head.find(b"\r\n")
        if end >= 0:
            self._status_line = self._head[:end].decode("latin-1")
            self._watching = self._status_line.split(maxsplit=2)[1:2] != ["101"]

    async def aclose(self) -> None:
        await self._stream.aclose()


async def _connect(
    nursery: trio.Nursery,
    target: _Target,
    *,
    max_message_size: int,
    connect_timeout: float,
    token: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    subprotocols: Iterable[str] = (),
) -> WebSocketConnection:
    """Open the TCP (and TLS) connection and do the opening handshake; every failure is a ConnectFailed.

    But for an HTTP refusal: trio-websocket's reader task raises ConnectionRejected
    into the nursery (:func:`open_client` turns a 401 or 403 into a ConnectFailed).
    """
    headers = _bearer(token) if token is not None else None
    waiting_for = "the TCP connection was not accepted"
    try:
        with trio.fail_after(connect_timeout):
            try:
                tcp = await trio.open_tcp_stream(target.host, target.port)
            except OSError as exc:
                raise ConnectFailed(target.address, _connect_failure(exc, target.host)) from exc
            watched: _AnswerWatch | None = None
            try:
                stream: trio.abc.Stream = tcp
                if target.tls:
                    waiting_for = "the TLS handshake did not finish"
                    stream = trio.SSLStream(
                        tcp,
                        ssl_context or ssl.create_default_context(),
                        server_hostname=target.host,
                        https_compatible=True,
                    )
                    try:
                        await stream.do_handshake()
                    except trio.BrokenResourceError as exc:
                        raise ConnectFailed(target.address, _tls_failure(exc.__cause__ or exc)) from exc
                waiting_for = "no answer to the WebSocket upgrade request came"
                watched = _AnswerWatch(stream, target.address)
                # trio-websocket's annotation is narrower than what it uses: WebSocketConnection
                # takes any trio.abc.Stream (the server side runs on one, see _transport).
                return await wrap_client_stream(
                    nursery,
                    cast("trio.SocketStream", watched),
                    target.host_header,
                    target.resource,
                    subprotocols=subprotocols,
                    extra_headers=headers,
                    max_message_size=max_message_size,
                )
            except BaseException:
                if watched is not None:
                    watched.stop_watching()
                await trio.aclose_forcefully(tcp)
                raise
    except trio.TooSlowError:
        raise ConnectFailed(target.address, f"{waiting_for} within {connect_timeout:g} s") from None


def _sole(error: BaseException) -> BaseException:
    """The one error inside nested one-member exception groups (else ``error`` itself)."""
    while isinstance(members := getattr(error, "exceptions", None), tuple) and len(members) == 1:
        error = members[0]
    return error


def _credentials_refused(error: BaseException, target: _Target, token_sent: bool) -> ConnectFailed | None:
    """The ConnectFailed for a handshake refused with 401 or 403; None for any other error."""
    rejected = _sole(error)
    if not isinstance(rejected, ConnectionRejected) or rejected.status_code not in (401, 403):
        return None
    refused = ConnectFailed(target.address, _refusal(rejected, token_sent), status=rejected.status_code)
    refused.__cause__ = rejected
    return refused


def _raise_sole(error: BaseException) -> NoReturn:
    """Raise the one error inside nested one-member exception groups (else ``error`` itself).

    The nursery in :func:`open_client` wraps whatever leaves its block; the
    caller gets its own exception back, as trio-websocket's
    ``open_websocket_url`` gave it, without the group as its context.
    """
    sole = _sole(error)
    context = sole.__context__
    try:
        raise sole
    finally:
        sole.__context__ = context


@asynccontextmanager
async def open_client(
    url: str,
    *,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    token: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    subprotocols: Iterable[str] = (),
) -> AsyncIterator[PubSubClient]:
    """Connect to a proxy route such as ``ws://127.0.0.1:9080/kafka`` (or ``wss://``).

    Args:
        url: The route's URL.
        max_message_size: The largest message taken from the proxy.
        request_timeout: Seconds a request waits for its response.
        connect_timeout: Seconds for the TCP and TLS connection and the opening handshake.
        token: Sent as ``Authorization: Bearer TOKEN`` in the opening
            handshake, for a proxy that asks for an API key or a JWT. It
            appears in no exception message or repr.
        ssl_context: Used for a ``wss://`` URL instead of the default one
            (the system's CAs), e.g. ``ssl.create_default_context(cafile=...)``
            to trust a private CA.
        subprotocols: WebSocket subprotocols offered, in order of preference;
            ``client.websocket.subprotocol`` is the one the proxy chose.

    Raises:
        ConnectFailed: No WebSocket connection could be opened, naming what
            was found (nothing listening, a name that does not resolve, a
            TLS certificate not trusted, a TLS or non-WebSocket server, no
            answer within ``connect_timeout``), or the proxy refused the
            credentials (``status`` 401 or 403, with the proxy's reason).
        trio_websocket.ConnectionRejected: The proxy answered with another
            HTTP error, such as 404.
        ValueError: ``url`` is not a ``ws://`` or ``wss://`` URL, the token
            is not printable ASCII, or ``ssl_context`` is given for ``ws://``.

    Cancellation: leaving the block closes the connection; pending requests
    then fail with ``ConnectionClosed``.
    """
    target = _Target.parse(url)
    if ssl_context is not None and not target.tls:
        raise ValueError("ssl_context is for wss:// URLs; this one is ws://")
    if token is not None:
        _bearer(token)  # refused before connecting
    try:
        async with trio.open_nursery() as nursery:
            ws = await _connect(
                nursery,
                target,
                max_message_size=max_message_size,
                connect_timeout=connect_timeout,
                token=token,
                ssl_context=ssl_context,
                subprotocols=tuple(subprotocols),
            )
            client = PubSubClient(ws, request_timeout)
            nursery.start_soon(client._read_responses)
            try:
                yield client
            finally:
                with trio.move_on_after(DISCONNECT_TIMEOUT):
                    await ws.aclose()
                nursery.cancel_scope.cancel()
    except BaseException as exc:
        _raise_sole(_credentials_refused(exc, target, token is not None) or exc)
