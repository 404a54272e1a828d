"""The protocol's events: what a client asks (requests) and what the server answers (responses).

Frozen values, the h11 way: the codec turns bytes into them and back, the
connection state machine and the I/O layers pass them around. Field names
follow ``schema/pubsub.proto``.
"""

from __future__ import annotations

import enum
from typing import TypeAlias

import attrs

# ---------------------------------------------------------------- requests


@attrs.frozen
class Ping:
    """CmdPing: answer with a pong carrying the same ``state``; never touches Kafka."""

    sequence: int
    state: bytes


@attrs.frozen
class ListOffset:
    """CmdKafkaListOffset, validated: ``topic`` is a valid name, ``partition >= 0``, ``timestamp >= -2``.

    ``timestamp`` -1 asks for the log-end offset, -2 for the earliest offset, and a value
    ``>= 0`` (milliseconds) for the first offset whose record timestamp is at or after it.
    """

    sequence: int
    topic: str
    partition: int
    timestamp: int


@attrs.frozen
class Fetch:
    """CmdKafkaFetch, validated: ``topic`` is a valid name, ``partition >= 0``, ``offset >= 0``."""

    sequence: int
    topic: str
    partition: int
    offset: int


@attrs.frozen
class UnknownCommand:
    """CmdEmpty, no command at all, or a command number this server does not know.

    Answered with ``unknown command`` (code UNKNOWN_COMMAND) so that a newer
    client does not wait forever on an older server.
    """

    sequence: int


@attrs.frozen
class Malformed:
    """A frame that does not decode as a PubSubReq.

    Answered with ``wrong command`` and sequence 0: no sequence can be trusted.
    ``reason`` is the parser's complaint, for the log only.
    """

    reason: str


@attrs.frozen
class Invalid:
    """A ListOffset or Fetch that decodes but has a field out of range.

    ``command`` holds the fields as received (a topic name that is not a valid
    Kafka name is shortened, so that a huge one is never echoed back);
    ``reason`` says which field is wrong, e.g. ``invalid partition: -1``.
    ``queued`` is False when the topic name itself is invalid: such a command
    belongs to no partition, so it is answered at once, before anything is
    queued; other invalid commands keep their place in their partition's order.
    """

    sequence: int
    command: ListOffset | Fetch
    reason: str
    queued: bool = True


# ------------------------------------------------------------ stream requests


class StartEdge(enum.IntEnum):
    """Where a stream starts, or a seek goes, in a partition when no offset is named."""

    #: The log end: only records written from now on.
    LATEST = 0
    #: The earliest record still in the log.
    EARLIEST = 1


class Isolation(enum.IntEnum):
    """Which records a stream shows (Kafka's ``isolation.level``)."""

    READ_UNCOMMITTED = 0
    #: Never records of aborted or still-open transactions.
    READ_COMMITTED = 1


@attrs.frozen
class AtTimestamp:
    """The first record at or after ``ms`` (milliseconds since the epoch), per partition."""

    ms: int


@attrs.frozen
class AtOffsets:
    """Per-partition start offsets, as ``(partition, offset)`` pairs in request order; others start at LATEST."""

    offsets: tuple[tuple[int, int], ...]


@attrs.frozen
class AtOffset:
    """One offset: where a :class:`Seek` moves its partition to."""

    offset: int


#: Where a stream starts.
Start: TypeAlias = StartEdge | AtTimestamp | AtOffsets
#: Where a seek moves a partition.
SeekTarget: TypeAlias = StartEdge | AtTimestamp | AtOffset


@attrs.frozen
class HeaderMatch:
    """A header a record must carry: with ``value`` None, any value (null included) will do."""

    key: str
    value: bytes | None = None


@attrs.frozen
class Filter:
    """Which records a stream delivers; every part that is set must match.

    ``key_equals`` empty accepts any key, ``key_prefix`` None any key, ``headers`` empty any headers.
    """

    key_equals: tuple[bytes, ...] = ()
    key_prefix: bytes | None = None
    headers: tuple[HeaderMatch, ...] = ()


@attrs.frozen
class Grant:
    """A grant of credit: ``records`` and ``bytes`` to add; 0 adds none of that kind."""

    records: int = 0
    bytes: int = 0


@attrs.frozen
class Subscribe:
    """CmdSubscribe, validated: open a push stream whose id is ``sequence``.

    ``partitions`` empty means every partition, including ones added later.
    ``credit`` None means the route's default grant; ``Grant()`` (sent as an empty
    Credit) grants nothing, so the stream starts paused.
    """

    sequence: int
    topic: str
    partitions: tuple[int, ...] = ()
    start: Start = StartEdge.LATEST
    filter: Filter = Filter()
    credit: Grant | None = None
    isolation: Isolation = Isolation.READ_UNCOMMITTED
    group: str = ""
    auto_commit: bool = False


@attrs.frozen
class AddCredit:
    """CmdCredit, validated: add ``grant`` to the stream ``subscription``; answered only when it fails."""

    sequence: int
    subscription: int
    grant: Grant


@attrs.frozen
class Unsubscribe:
    """CmdUnsubscribe: close the stream ``subscription``; answered with ok."""

    sequence: int
    subscription: int


@attrs.frozen
class Commit:
    """CmdCommit, validated: commit offsets of the group stream ``subscription``; answered with ok.

    ``offsets`` holds ``(partition, offset)`` pairs, each partition once; None (no
    offsets, or an empty list) commits the positions the stream has delivered.
    """

    sequence: int
    subscription: int
    offsets: tuple[tuple[int, int], ...] | None = None


@attrs.frozen
class GroupOffsets:
    """CmdGroupOffsets, validated: read the committed offsets of ``group`` for ``topic`` (without joining)."""

    sequence: int
    group: str
    topic: str


@attrs.frozen
class Auth:
    """CmdAuth, validated: a fresh credential for the session's principal; answered with ok."""

    sequence: int
    token: str = attrs.field(repr=False)


@attrs.frozen
class Seek:
    """CmdSeek, validated: move ``partition`` of the stream ``subscription`` to ``to``; answered with ok."""

    sequence: int
    subscription: int
    partition: int
    to: SeekTarget


# ------------------------------------------------------------ produce requests


class Acks(enum.IntEnum):
    """How many replicas must have a produced record before it is acknowledged."""

    #: The route's default (``acks=all`` with idempotence, unless the route says otherwise).
    ROUTE_DEFAULT = 0
    #: Not waited for: the result's offset is -1.
    NONE = 1
    #: The partition leader has it.
    LEADER = 2
    #: Every in-sync replica has it.
    ALL = 3


class TxnAction(enum.IntEnum):
    """What a :class:`Txn` does to the connection's transaction."""

    BEGIN = 1
    COMMIT = 2
    ABORT = 3


@attrs.frozen
class OutRecord:
    """A record to write: None for ``key`` or ``value`` is null (a null value is a tombstone).

    ``partition`` None lets the producer pick (murmur2 of the key, as the Java
    client does; without a key, the library's default); ``timestamp`` 0 is the
    time the proxy received it.
    """

    key: bytes | None = None
    value: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    partition: int | None = None
    timestamp: int = 0

    @property
    def size(self) -> int:
        """The bytes of its key, value and headers: what the in-flight bounds count."""
        size = len(self.key or b"") + len(self.value or b"")
        for key, value in self.headers:
            size += len(key.encode()) + len(value)
        return size


@attrs.frozen
class Produce:
    """CmdProduce, validated: write ``records`` (at least one) to ``topic``; answered with one result per record."""

    sequence: int
    topic: str
    records: tuple[OutRecord, ...]
    acks: Acks = Acks.ROUTE_DEFAULT
    #: Part of the connection's open transaction.
    transactional: bool = False


@attrs.frozen
class Txn:
    """CmdTxn, validated: begin, commit or abort the connection's transaction; answered with ok."""

    sequence: int
    action: TxnAction


#: The commands that write, in the order they came: their own lane.
ProduceCommand: TypeAlias = Produce | Txn


@attrs.frozen
class Rejected:
    """A stream or produce command that decodes but cannot be valid: answered at once with this error.

    ``code`` is an ``ErrorCode`` value, ``message`` the whole message of the error response;
    ``command`` names the command (``"subscribe"``, ``"produce"`` ...), so that a connection
    that does not serve it can answer "unknown command" instead.
    """

    sequence: int
    code: int
    message: str
    command: str = attrs.field(default="", eq=False)


#: The stream commands, validated.
StreamCommand: TypeAlias = Subscribe | AddCredit | Unsubscribe | Seek | Commit

#: A decoded request; dispatch on the type.
Request: TypeAlias = (
    Ping
    | ListOffset
    | Fetch
    | UnknownCommand
    | Malformed
    | Invalid
    | StreamCommand
    | ProduceCommand
    | GroupOffsets
    | Auth
    | Rejected
)
#: The requests that need Kafka (or keep a partition's order).
KafkaCommand: TypeAlias = ListOffset | Fetch | Invalid


@attrs.frozen
class Record:
    """One Kafka record as a fetch response carries it.

    ``None`` for ``key``, ``value`` or a header value means null, which stays distinct from
    ``b""`` on the wire (a null value is a tombstone).
    """

    offset: int
    #: Milliseconds since the epoch.
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()


# --------------------------------------------------------------- responses


@attrs.frozen
class Pong:
    """PongResp: the ``state`` of the ping it answers."""

    sequence: int
    state: bytes


@attrs.frozen
class OffsetAnswer:
    """KafkaListOffsetResp: the offset found (-1 when none, e.g. a timestamp after the last record)."""

    sequence: int
    offset: int


@attrs.frozen
class FetchAnswer:
    """KafkaFetchResp: records in offset order; none at the log end."""

    sequence: int
    records: tuple[Record, ...]


@attrs.frozen
class ErrorAnswer:
    """ErrorResp: a documented ``code`` (an ``ErrorCode`` value, or one this client does not know) and the message."""

    sequence: int
    code: int
    message: str


@attrs.frozen
class UnknownResponse:
    """A PubSubResp with no response this client knows (a newer server's)."""

    sequence: int


@attrs.frozen
class MalformedResponse:
    """A frame that does not decode as a PubSubResp; ``reason`` is the parser's complaint."""

    reason: str


@attrs.frozen
class OkAnswer:
    """OkResp: the command (unsubscribe, seek, transaction) is done."""

    sequence: int


@attrs.frozen
class GroupOffsetsAnswer:
    """GroupOffsetsResp: ``(partition, offset)`` for each partition the group has committed, in partition order."""

    sequence: int
    committed: tuple[tuple[int, int], ...]


@attrs.frozen
class SubscribeAnswer:
    """SubscribeResp: the stream ``sequence`` is open; ``positions`` are ``(partition, offset)`` where each starts."""

    sequence: int
    positions: tuple[tuple[int, int], ...]


@attrs.frozen
class StreamRecords:
    """A pushed StreamBatch of the stream ``sequence``: records of one partition in offset order.

    ``next_offset`` is where the partition continues; ``high_watermark - next_offset`` is the lag.
    """

    sequence: int
    partition: int
    records: tuple[Record, ...]
    next_offset: int
    high_watermark: int


@attrs.frozen
class StreamCaughtUp:
    """A pushed StreamEvent: ``partition`` of the stream reached its high watermark."""

    sequence: int
    partition: int


@attrs.frozen
class StreamError:
    """A pushed StreamEvent: a problem the stream retries past by itself (``partition`` None: the whole stream)."""

    sequence: int
    code: int
    message: str
    partition: int | None = None


@attrs.frozen
class StreamPartitions:
    """A pushed StreamEvent: partitions gained (with where they start) or lost."""

    sequence: int
    assigned: tuple[int, ...]
    revoked: tuple[int, ...]
    positions: tuple[tuple[int, int], ...]


@attrs.frozen
class StreamEnded:
    """A pushed StreamEvent: the stream is over for this reason; nothing of it follows."""

    sequence: int
    code: int
    message: str


@attrs.frozen
class Written:
    """A produced record's outcome: written at ``offset`` (-1 with ``Acks.NONE``), with ``timestamp``."""

    partition: int
    offset: int
    timestamp: int


@attrs.frozen
class NotWritten:
    """A produced record's outcome: it failed (``partition`` -1 when none was picked); the others may not have."""

    partition: int
    code: int
    message: str


#: One record's outcome in a :class:`ProduceAnswer`.
ProduceResult: TypeAlias = Written | NotWritten


@attrs.frozen
class ProduceAnswer:
    """ProduceResp: one result per record of the command, in its order."""

    sequence: int
    results: tuple[ProduceResult, ...]


#: What a server pushes on a stream (as opposed to answering a command).
Push: TypeAlias = StreamRecords | StreamCaughtUp | StreamError | StreamPartitions | StreamEnded

#: A decoded response; dispatch on the type.
Response: TypeAlias = (
    Pong
    | OffsetAnswer
    | FetchAnswer
    | ErrorAnswer
    | OkAnswer
    | GroupOffsetsAnswer
    | SubscribeAnswer
    | ProduceAnswer
    | Push
    | UnknownResponse
    | MalformedResponse
)
