"""The PubSub protocol without I/O: frames in, validated commands out; results in, frames out.

Nothing here imports Trio or a Kafka client (the h11 way): the session layer reads a
binary WebSocket frame, calls :func:`decode_request`, does the Kafka work the command
asks for, and sends the frame an ``encode_*`` function returns. Everything is a pure
function or an immutable value, so it is tested synchronously and with hypothesis.

The wire contract is ``schema/pubsub.proto``; ``schema/README.md`` documents every
command, the error message formats and the :class:`ErrorCode` numbers.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Final, TypeAlias

import attrs

from ._pb import pubsub_pb2 as pb

#: The whole message of the error answering CmdEmpty or a command this server does not know.
UNKNOWN_COMMAND_MESSAGE: Final = "unknown command"
#: The whole message of the error answering a frame that is not a PubSubReq (sent with sequence 0).
WRONG_COMMAND_MESSAGE: Final = "wrong command"
#: The reason APISIX gives (and we keep) when the topic does not exist.
NOT_FOUND_TOPIC: Final = "not found topic"
#: The reason APISIX gives (and we keep) when the topic exists but the partition does not.
NOT_FOUND_PARTITION: Final = "not found partition"


class ErrorCode(enum.IntEnum):
    """The ``code`` of an ``ErrorResp``: stable numbers, so that programs need not parse text.

    APISIX always sends 0, which stays valid and means "unspecified". The tens group the
    causes: 1-9 the request itself, 10-19 Kafka's answer, 20-29 reaching Kafka, 30-39
    limits of this server, 40 and up the server's own faults. A number never changes
    meaning; new causes take new numbers.
    """

    #: No specific cause (what APISIX sends for everything).
    UNSPECIFIED = 0
    #: CmdEmpty, or a command number this server does not know.
    UNKNOWN_COMMAND = 1
    #: The frame does not decode as a PubSubReq; the response's sequence is 0.
    WRONG_COMMAND = 2
    #: The command decodes but a field is out of range (empty topic, negative partition ...).
    INVALID_REQUEST = 3
    #: The topic does not exist (reason ``not found topic``).
    TOPIC_NOT_FOUND = 10
    #: The topic exists but the partition does not (reason ``not found partition``).
    PARTITION_NOT_FOUND = 11
    #: Kafka's OFFSET_OUT_OF_RANGE: the fetch offset is outside the partition's log.
    OFFSET_OUT_OF_RANGE = 12
    #: Any other error Kafka answered with; the reason is Kafka's error name.
    KAFKA_ERROR = 13
    #: No broker of the route could be connected to; the reason names the broker.
    BROKER_UNREACHABLE = 20
    #: SASL authentication with the broker failed.
    AUTHENTICATION_FAILED = 21
    #: The TLS handshake with the broker failed (certificate verification included).
    TLS_FAILED = 22
    #: A Kafka call did not finish within its deadline.
    TIMEOUT = 23
    #: A single record does not fit in the maximum message size; the reason names its offset and size.
    RECORD_TOO_LARGE = 30
    #: The server is at one of its bounds and refused the command rather than queue it without limit.
    OVERLOADED = 31
    #: A fault in this server; the log has the details.
    INTERNAL_ERROR = 40


@attrs.frozen
class Ping:
    """CmdPing: answer with :func:`encode_pong` and the same ``state``; never touches Kafka."""

    sequence: int
    state: bytes


@attrs.frozen
class ListOffset:
    """CmdKafkaListOffset, validated: ``topic`` is not empty, ``partition >= 0``, ``timestamp >= -2``.

    ``timestamp`` -1 asks for the log-end offset, -2 for the earliest offset, and a value
    ``>= 0`` (milliseconds) for the first offset whose record timestamp is at or after it.
    """

    sequence: int
    topic: str
    partition: int
    timestamp: int


@attrs.frozen
class Fetch:
    """CmdKafkaFetch, validated: ``topic`` is not empty, ``partition >= 0``, ``offset >= 0``."""

    sequence: int
    topic: str
    partition: int
    offset: int


@attrs.frozen
class UnknownCommand:
    """CmdEmpty, no command at all, or a command number this server does not know.

    Answer with ``encode_error(sequence, ErrorCode.UNKNOWN_COMMAND, UNKNOWN_COMMAND_MESSAGE)``
    so that a newer client does not wait forever on an older server.
    """

    sequence: int


@attrs.frozen
class Malformed:
    """A frame that does not decode as a PubSubReq.

    Answer with ``encode_error(0, ErrorCode.WRONG_COMMAND, WRONG_COMMAND_MESSAGE)``: no
    sequence can be trusted. ``reason`` is the parser's complaint, for the log only.
    """

    reason: str


@attrs.frozen
class Invalid:
    """A ListOffset or Fetch that decodes but has a field out of range.

    ``command`` holds the fields as received; ``reason`` says which one is wrong, in the
    short style of the other reasons (e.g. ``invalid partition: -1``). Answer with code
    ``ErrorCode.INVALID_REQUEST`` and :func:`list_offset_error` or :func:`fetch_error`.
    """

    sequence: int
    command: ListOffset | Fetch
    reason: str


#: What :func:`decode_request` returns; dispatch on the type.
Request: TypeAlias = Ping | ListOffset | Fetch | UnknownCommand | Malformed | Invalid


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


class RecordTooLarge(Exception):
    """A single record does not fit in a response of the maximum message size.

    Attributes:
        offset: the record's offset.
        size: the size in bytes of a response holding this record alone, which is what
            exceeded the limit (so ``size > max_size`` always holds).
    """

    def __init__(self, offset: int, size: int) -> None:
        super().__init__(offset, size)
        self.offset = offset
        self.size = size

    def __str__(self) -> str:
        return f"record at offset {self.offset} needs a {self.size}-byte message"


def decode_request(frame: bytes) -> Request:
    """Decode one binary WebSocket frame into the command it carries.

    Never raises, whatever the bytes: a frame the protobuf parser rejects is
    :class:`Malformed`. Protobuf is lenient, so random bytes may well parse; what parses
    is judged by its content. ``sequence`` may come before or after the command, and an
    explicitly empty sub-message is accepted (its fields take their defaults).

    Args:
        frame: the payload of one binary frame.

    Returns:
        :class:`Ping`, :class:`ListOffset` or :class:`Fetch` for a valid command;
        :class:`Invalid` for a ListOffset or Fetch with a field out of range;
        :class:`UnknownCommand` for CmdEmpty, no command, or a command number (an unknown
        field) this server does not know; :class:`Malformed` for a frame that does not
        parse.
    """
    request = pb.PubSubReq()
    try:
        request.ParseFromString(frame)
    # The contract is "never raises". upb raises DecodeError; the pure-Python
    # implementation can also raise UnicodeDecodeError or RecursionError on hostile
    # input, so anything the parser throws means "not a PubSubReq".
    except Exception as exc:
        return Malformed(reason=str(exc) or type(exc).__name__)
    sequence = request.sequence
    kind = request.WhichOneof("req")
    if kind == "cmd_ping":
        return Ping(sequence=sequence, state=request.cmd_ping.state)
    if kind == "cmd_kafka_list_offset":
        cmd = request.cmd_kafka_list_offset
        list_offset = ListOffset(sequence=sequence, topic=cmd.topic, partition=cmd.partition, timestamp=cmd.timestamp)
        reason = _topic_partition_problem(cmd.topic, cmd.partition)
        if reason is None and cmd.timestamp < -2:
            reason = f"invalid timestamp: {cmd.timestamp}"
        return list_offset if reason is None else Invalid(sequence=sequence, command=list_offset, reason=reason)
    if kind == "cmd_kafka_fetch":
        cmd_fetch = request.cmd_kafka_fetch
        fetch = Fetch(sequence=sequence, topic=cmd_fetch.topic, partition=cmd_fetch.partition, offset=cmd_fetch.offset)
        reason = _topic_partition_problem(cmd_fetch.topic, cmd_fetch.partition)
        if reason is None and cmd_fetch.offset < 0:
            reason = f"invalid offset: {cmd_fetch.offset}"
        return fetch if reason is None else Invalid(sequence=sequence, command=fetch, reason=reason)
    # cmd_empty, no command at all, or a command from a newer protocol (an unknown
    # field this server skipped): all of them are "unknown command".
    return UnknownCommand(sequence=sequence)


def _topic_partition_problem(topic: str, partition: int) -> str | None:
    if not topic:
        return "empty topic"
    if partition < 0:
        return f"invalid partition: {partition}"
    return None


def encode_pong(sequence: int, state: bytes) -> bytes:
    """The frame answering a :class:`Ping`: a PongResp carrying ``state`` unchanged."""
    return pb.PubSubResp(sequence=sequence, pong_resp=pb.PongResp(state=state)).SerializeToString()


def encode_error(sequence: int, code: ErrorCode, message: str) -> bytes:
    """The frame of an ErrorResp.

    Args:
        sequence: the request's sequence; 0 for a :class:`Malformed` frame.
        code: the documented cause.
        message: the whole message, e.g. from :func:`fetch_error` or
            :data:`UNKNOWN_COMMAND_MESSAGE`.
    """
    error = pb.ErrorResp(code=int(code), message=message)
    return pb.PubSubResp(sequence=sequence, error_resp=error).SerializeToString()


def encode_list_offset(sequence: int, offset: int) -> bytes:
    """The frame answering a :class:`ListOffset`: a KafkaListOffsetResp (``offset`` may be -1)."""
    answer = pb.KafkaListOffsetResp(offset=offset)
    return pb.PubSubResp(sequence=sequence, kafka_list_offset_resp=answer).SerializeToString()


# Tag of PubSubResp.kafka_fetch_resp (field 33, length-delimited): varint 266, two bytes.
_FETCH_RESP_TAG_SIZE: Final = 2
# Tag of KafkaFetchResp.messages (field 1, length-delimited): one byte.
_MESSAGE_TAG_SIZE: Final = 1


def _varint_size(value: int) -> int:
    """Bytes in the base-128 varint of a non-negative ``value``."""
    return (value.bit_length() + 6) // 7 or 1


def _int64_field_size(value: int) -> int:
    """Bytes a proto3 int64 field with a one-byte tag takes: none for 0, ten for negatives."""
    if value == 0:
        return 0
    return 1 + (10 if value < 0 else _varint_size(value))


def encode_fetch(sequence: int, records: Sequence[Record], max_size: int) -> tuple[bytes, int]:
    """The frame answering a :class:`Fetch`, holding as many whole records as fit.

    Sizes are computed, not tried: each record is added to the response once, its
    encoded size read with ``ByteSize()``, and the tag and length-prefix overhead added
    arithmetically; the response is serialized once at the end. Cost is linear in the
    records used.

    Args:
        sequence: the request's sequence.
        records: records in offset order, all at or after the requested offset.
        max_size: the largest frame allowed, in bytes.

    Returns:
        ``(frame, count)``: the frame holds ``records[:count]``, the longest prefix whose
        frame is at most ``max_size`` bytes. No records give an empty KafkaFetchResp
        (at most 14 bytes, whatever ``max_size`` is) and a count of 0.

    Raises:
        RecordTooLarge: ``records`` is not empty and even ``records[0]`` alone does not fit.
    """
    response = pb.PubSubResp(sequence=sequence)
    fetch_resp = response.kafka_fetch_resp
    fetch_resp.SetInParent()  # present even when empty: "no records yet", not "no command"
    messages = fetch_resp.messages
    fixed = _int64_field_size(sequence) + _FETCH_RESP_TAG_SIZE
    body = 0  # bytes of the KafkaFetchResp so far
    count = 0
    for record in records:
        message = messages.add(offset=record.offset, timestamp=record.timestamp, key=record.key, value=record.value)
        for header_key, header_value in record.headers:
            message.headers.add(key=header_key, value=header_value)
        size = message.ByteSize()
        grown = body + _MESSAGE_TAG_SIZE + _varint_size(size) + size
        total = fixed + _varint_size(grown) + grown
        if total > max_size:
            del messages[-1]
            if count == 0:
                raise RecordTooLarge(record.offset, total)
            break
        body = grown
        count += 1
    return response.SerializeToString(), count


# --------------------------------------------------------------------------
# Encode once, send many: records as the bytes they take inside a KafkaFetchResp.
#
# A record read from Kafka is encoded once, when it is fetched; every response
# that carries it is then a header plus a join of those bytes. Sessions tailing
# one partition share the work (and often the very same body). The bytes are
# exactly what protobuf would write (fields in number order, proto3 defaults
# left out, ``optional`` fields written when set); tests compare them.

#: Most bytes a fetch frame adds around its body: sequence (tag + 10), the
#: kafka_fetch_resp tag (2) and the body's length (up to 5).
FETCH_FRAME_OVERHEAD: Final = 1 + 10 + 2 + 5

_SMALL_VARINTS: Final = tuple(bytes((n,)) for n in range(128))


def _varint(value: int) -> bytes:
    """The base-128 varint of ``value``; negative numbers as 64-bit two's complement."""
    if 0 <= value < 128:
        return _SMALL_VARINTS[value]
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_message_entry(
    offset: int,
    timestamp: int,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]] = (),
) -> bytes:
    """One record as it stands in ``KafkaFetchResp.messages``: tag, length, ``KafkaMessage``.

    The message itself is serialized by protobuf's C implementation (upb), which
    measured faster than assembling the bytes in Python (2.1 against 2.8 µs for
    a 1 KiB record); only the field tag and length are added here.
    """
    if headers:
        message = pb.KafkaMessage(
            offset=offset,
            timestamp=timestamp,
            key=key,
            value=value,
            headers=[pb.KafkaHeader(key=k, value=v) for k, v in headers],
        ).SerializeToString()
    else:
        message = pb.KafkaMessage(offset=offset, timestamp=timestamp, key=key, value=value).SerializeToString()
    return b"\x0a" + _varint(len(message)) + message


@attrs.frozen
class EncodedBatch:
    """Records already encoded with :func:`encode_message_entry`, joined: a fetch response's body."""

    body: bytes
    count: int
    #: The offset after the batch's last record (0 when not known): where the client reads next.
    next_offset: int = 0


def encode_fetch_head(sequence: int, body_size: int) -> bytes:
    """The bytes before a fetch response's body: ``head + body`` is the whole frame.

    Lets one shared body go to many sessions without being copied for each
    (see :func:`encode_fetch_frame`).
    """
    head = b"\x08" + _varint(sequence) if sequence else b""
    return head + b"\x8a\x02" + _varint(body_size)


def encode_fetch_frame(sequence: int, batch: EncodedBatch) -> bytes:
    """The frame answering a :class:`Fetch` with an encoded body (never more than
    ``len(batch.body) + FETCH_FRAME_OVERHEAD`` bytes)."""
    return encode_fetch_head(sequence, len(batch.body)) + batch.body


def websocket_binary_header(size: int) -> bytes:
    """RFC 6455 header of one unmasked, unfragmented binary frame of ``size`` bytes (server to client).

    The same bytes wsproto writes when no extension is negotiated (the proxy
    negotiates none), so a frame can be written straight to the socket.
    """
    if size < 126:
        return bytes((0x82, size))
    if size < 0x10000:
        return bytes((0x82, 126)) + size.to_bytes(2, "big")
    return bytes((0x82, 127)) + size.to_bytes(8, "big")


def list_offset_error(topic: str, partition: int, reason: str) -> str:
    """The message of an error answering a ListOffset, in the format APISIX clients match on."""
    return f"failed to list offset, topic: {topic}, partition: {partition}, err: {reason}"


def fetch_error(topic: str, partition: int, reason: str) -> str:
    """The message of an error answering a Fetch, in the format APISIX clients match on."""
    return f"failed to fetch message, topic: {topic}, partition: {partition}, err: {reason}"
