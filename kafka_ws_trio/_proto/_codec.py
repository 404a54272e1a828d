"""Bytes to events and back, for both ends of the connection.

Server side: :func:`decode_request` turns a binary frame into a request event
and the ``encode_*`` functions build response frames. Client side: the
``encode_*_request`` functions build request frames and
:func:`decode_response` reads a response. The wire contract is
``schema/pubsub.proto``; ``schema/README.md`` documents every command.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Final

from .._pb import pubsub_pb2 as pb
from ._errors import ErrorCode
from ._events import (
    ErrorAnswer,
    Fetch,
    FetchAnswer,
    Invalid,
    ListOffset,
    Malformed,
    MalformedResponse,
    OffsetAnswer,
    Ping,
    Pong,
    Record,
    Request,
    Response,
    UnknownCommand,
    UnknownResponse,
)

#: Kafka's rule for topic names: 1 to 249 characters, ASCII letters, digits, '.', '_' and '-'.
MAX_TOPIC_LENGTH: Final = 249
_TOPIC_NAME: Final = re.compile(r"[a-zA-Z0-9._-]+")  # the length is checked first
#: Characters of an invalid topic name echoed back in its error message.
ECHOED_TOPIC_CHARS: Final = 64


def topic_name_problem(topic: str) -> str | None:
    """Why ``topic`` is not a valid Kafka topic name, or None when it is."""
    if not topic:
        return "empty topic"
    if len(topic) > MAX_TOPIC_LENGTH:
        return f"invalid topic: {len(topic)} characters, at most {MAX_TOPIC_LENGTH} allowed"
    if _TOPIC_NAME.fullmatch(topic) is None or topic in (".", ".."):
        return "invalid topic: only ASCII letters, digits, '.', '_' and '-' are allowed"
    return None


def _echoed(topic: str) -> str:
    return topic if len(topic) <= ECHOED_TOPIC_CHARS else topic[:ECHOED_TOPIC_CHARS] + "..."


# ------------------------------------------------------------------ server


def decode_request(frame: bytes) -> Request:
    """Decode one binary WebSocket frame into the command it carries.

    Never raises, whatever the bytes: a frame the protobuf parser rejects is
    :class:`Malformed`. Protobuf is lenient, so random bytes may well parse; what parses
    is judged by its content. ``sequence`` may come before or after the command, and an
    explicitly empty sub-message is accepted (its fields take their defaults).

    Returns:
        :class:`Ping`, :class:`ListOffset` or :class:`Fetch` for a valid command;
        :class:`Invalid` for a ListOffset or Fetch with a field out of range (a topic
        name Kafka would refuse included); :class:`UnknownCommand` for CmdEmpty, no
        command, or a command number (an unknown field) this server does not know;
        :class:`Malformed` for a frame that does not parse.
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
        return _judged(
            sequence,
            cmd.topic,
            cmd.partition,
            f"invalid timestamp: {cmd.timestamp}" if cmd.timestamp < -2 else None,
            lambda topic: ListOffset(sequence, topic, cmd.partition, cmd.timestamp),
        )
    if kind == "cmd_kafka_fetch":
        cmd_fetch = request.cmd_kafka_fetch
        return _judged(
            sequence,
            cmd_fetch.topic,
            cmd_fetch.partition,
            f"invalid offset: {cmd_fetch.offset}" if cmd_fetch.offset < 0 else None,
            lambda topic: Fetch(sequence, topic, cmd_fetch.partition, cmd_fetch.offset),
        )
    # cmd_empty, no command at all, or a command from a newer protocol (an unknown
    # field this server skipped): all of them are "unknown command".
    return UnknownCommand(sequence=sequence)


def _judged(
    sequence: int,
    topic: str,
    partition: int,
    field_problem: str | None,
    build: Callable[[str], ListOffset | Fetch],
) -> ListOffset | Fetch | Invalid:
    """The command, or :class:`Invalid` naming its first problem: topic name, partition, then its own field."""
    topic_problem = topic_name_problem(topic)
    if topic_problem is not None:
        return Invalid(sequence=sequence, command=build(_echoed(topic)), reason=topic_problem, queued=False)
    command = build(topic)
    reason = f"invalid partition: {partition}" if partition < 0 else field_problem
    return command if reason is None else Invalid(sequence=sequence, command=command, reason=reason)


def encode_pong(sequence: int, state: bytes) -> bytes:
    """The frame answering a :class:`Ping`: a PongResp carrying ``state`` unchanged."""
    return pb.PubSubResp(sequence=sequence, pong_resp=pb.PongResp(state=state)).SerializeToString()


def encode_error(sequence: int, code: ErrorCode, message: str) -> bytes:
    """The frame of an ErrorResp.

    Args:
        sequence: the request's sequence; 0 for a :class:`Malformed` frame.
        code: the documented cause.
        message: the whole message, e.g. from ``fetch_error`` or ``UNKNOWN_COMMAND_MESSAGE``.
    """
    error = pb.ErrorResp(code=int(code), message=message)
    return pb.PubSubResp(sequence=sequence, error_resp=error).SerializeToString()


def encode_list_offset(sequence: int, offset: int) -> bytes:
    """The frame answering a :class:`ListOffset`: a KafkaListOffsetResp (``offset`` may be -1)."""
    answer = pb.KafkaListOffsetResp(offset=offset)
    return pb.PubSubResp(sequence=sequence, kafka_list_offset_resp=answer).SerializeToString()


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
    """The frame answering a :class:`Fetch` from :class:`Record` values, holding as many whole records as fit.

    (The Kafka edge answers with already encoded bodies instead; this is for
    backends that hand over records, such as test fakes.) Sizes are computed,
    not tried: each record is added once, its size read with ``ByteSize()``,
    and the framing overhead added arithmetically.

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


# ------------------------------------------------------------------ client


def encode_ping_request(sequence: int, state: bytes = b"") -> bytes:
    """The frame of a CmdPing."""
    return pb.PubSubReq(sequence=sequence, cmd_ping=pb.CmdPing(state=state)).SerializeToString()


def encode_list_offset_request(sequence: int, topic: str, partition: int, timestamp: int) -> bytes:
    """The frame of a CmdKafkaListOffset (``timestamp`` -1: latest, -2: earliest, else milliseconds)."""
    command = pb.CmdKafkaListOffset(topic=topic, partition=partition, timestamp=timestamp)
    return pb.PubSubReq(sequence=sequence, cmd_kafka_list_offset=command).SerializeToString()


def encode_fetch_request(sequence: int, topic: str, partition: int, offset: int) -> bytes:
    """The frame of a CmdKafkaFetch."""
    command = pb.CmdKafkaFetch(topic=topic, partition=partition, offset=offset)
    return pb.PubSubReq(sequence=sequence, cmd_kafka_fetch=command).SerializeToString()


def decode_record(message: pb.KafkaMessage) -> Record:
    """A KafkaMessage as a :class:`Record`, null (absent) key, value and header values as None."""
    return Record(
        offset=message.offset,
        timestamp=message.timestamp,
        key=message.key if message.HasField("key") else None,
        value=message.value if message.HasField("value") else None,
        headers=tuple((h.key, h.value if h.HasField("value") else None) for h in message.headers),
    )


def decode_response(frame: bytes) -> Response:
    """Decode one response frame; never raises (a frame that does not parse is :class:`MalformedResponse`)."""
    response = pb.PubSubResp()
    try:
        response.ParseFromString(frame)
    except Exception as exc:  # see decode_request: any parser failure means "not a PubSubResp"
        return MalformedResponse(reason=str(exc) or type(exc).__name__)
    sequence = response.sequence
    kind = response.WhichOneof("resp")
    if kind == "pong_resp":
        return Pong(sequence=sequence, state=response.pong_resp.state)
    if kind == "kafka_list_offset_resp":
        return OffsetAnswer(sequence=sequence, offset=response.kafka_list_offset_resp.offset)
    if kind == "kafka_fetch_resp":
        records = tuple(decode_record(message) for message in response.kafka_fetch_resp.messages)
        return FetchAnswer(sequence=sequence, records=records)
    if kind == "error_resp":
        return ErrorAnswer(sequence=sequence, code=response.error_resp.code, message=response.error_resp.message)
    return UnknownResponse(sequence=sequence)
