"""Bytes to events and back, for both ends of the connection.

Server side: :func:`decode_request` turns a binary frame into a request event
and the ``encode_*`` functions build response frames. Client side: the
``encode_*_request`` functions build request frames and
:func:`decode_response` reads a response. The wire contract is
``schema/pubsub.proto``; ``schema/README.md`` documents every command.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from .._pb import pubsub_pb2 as pb
from ._entries import read_varint
from ._errors import ErrorCode
from ._events import (
    AddCredit,
    AtOffset,
    AtOffsets,
    AtTimestamp,
    Auth,
    Commit,
    ErrorAnswer,
    Fetch,
    FetchAnswer,
    Filter,
    Grant,
    GroupOffsets,
    GroupOffsetsAnswer,
    HeaderMatch,
    Invalid,
    Isolation,
    ListOffset,
    Malformed,
    MalformedResponse,
    OffsetAnswer,
    OkAnswer,
    Ping,
    Pong,
    Record,
    Request,
    Response,
    Seek,
    SeekTarget,
    Start,
    StartEdge,
    StreamCaughtUp,
    StreamEnded,
    StreamError,
    StreamPartitions,
    StreamRecords,
    Subscribe,
    SubscribeAnswer,
    UnknownCommand,
    UnknownResponse,
    Unsubscribe,
)
from ._produce import PRODUCE_DECODERS, decode_produce_answer
from ._rules import Decoder, echoed, judged, known, not_negative, refuse, topic_name_problem, valid_topic

# ------------------------------------------------------------------ server

#: The longest consumer group name a subscribe may give (Kafka sets no bound; this keeps logs and keys small).
MAX_GROUP_NAME: Final = 255


def decode_request(frame: bytes) -> Request:
    """Decode one binary WebSocket frame into the command it carries.

    Never raises, whatever the bytes: a frame the protobuf parser rejects is
    :class:`Malformed`. Protobuf is lenient, so random bytes may well parse; what parses
    is judged by its content. ``sequence`` may come before or after the command, and an
    explicitly empty sub-message is accepted (its fields take their defaults).

    Returns:
        :class:`Ping`, :class:`ListOffset` or :class:`Fetch` for a valid command;
        :class:`Invalid` for a ListOffset or Fetch with a field out of range (a topic
        name Kafka would refuse included); :class:`Subscribe`, :class:`AddCredit`,
        :class:`Unsubscribe`, :class:`Seek` or :class:`Commit` for a valid stream
        command, and :class:`Rejected` (``INVALID_REQUEST``, ``invalid <command>:
        <problem>``) for one that cannot be valid; :class:`UnknownCommand` for
        CmdEmpty, no command, or a command number (an unknown field) this server does
        not know; :class:`Malformed` for a frame that does not parse.
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
    decoder = (
        _STREAM_DECODERS.get(kind or "")
        or PRODUCE_DECODERS.get(kind or "")
        or _GROUP_DECODERS.get(kind or "")
        or _AUTH_DECODERS.get(kind or "")
    )
    if decoder is not None:
        return decoder(sequence, request)
    # cmd_empty, no command at all, or a command from a newer protocol (an unknown field
    # this server skipped): all of them are "unknown command".
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
        return Invalid(sequence=sequence, command=build(echoed(topic)), reason=topic_problem, queued=False)
    command = build(topic)
    reason = f"invalid partition: {partition}" if partition < 0 else field_problem
    return command if reason is None else Invalid(sequence=sequence, command=command, reason=reason)


# ---------------------------------------------------------- stream commands
#
# The rules (schema/README.md, "Streams"): the first problem found, in field order, is
# reported as ``invalid <command>: <problem>``. What only the connection can judge (an
# unknown stream id, the route's bounds, a partition the topic does not have, a group)
# is left to it.


def _partition_set(partitions: Sequence[int]) -> frozenset[int]:
    """The partitions a stream names, each at most once and none negative."""
    seen: set[int] = set()
    for partition in partitions:
        not_negative(partition, "partition")
        if partition in seen:
            refuse(f"partition {partition} listed twice")
        seen.add(partition)
    return frozenset(seen)


def _offset_pairs(
    entries: Sequence[pb.PartitionOffset], partitions: frozenset[int] = frozenset()
) -> tuple[tuple[int, int], ...]:
    """Per-partition offsets: each partition once, and one of ``partitions`` when that is not empty."""
    named: set[int] = set()
    for entry in entries:
        if entry.partition < 0:
            refuse(f"offsets name partition {entry.partition}")
        if entry.partition in named:
            refuse(f"offsets name partition {entry.partition} twice")
        if partitions and entry.partition not in partitions:
            refuse(f"offsets name partition {entry.partition}, which is not in partitions")
        if entry.offset < 0:
            refuse(f"offset {entry.offset} for partition {entry.partition}")
        named.add(entry.partition)
    return tuple((entry.partition, entry.offset) for entry in entries)


def _start(command: pb.CmdSubscribe, partitions: frozenset[int]) -> Start:
    kind = command.WhichOneof("start")
    if kind == "edge":
        return known(StartEdge, command.edge, "edge")
    if kind == "timestamp":
        return AtTimestamp(not_negative(command.timestamp, "timestamp"))
    if kind == "offsets":
        return AtOffsets(_offset_pairs(command.offsets.entries, partitions))
    return StartEdge.LATEST


def _grant(credit: pb.Credit, prefix: str) -> Grant:
    """A credit grant: 0 of a kind grants none of it, a negative amount is refused."""
    return Grant(
        records=not_negative(credit.records, f"{prefix}records"),
        bytes=not_negative(credit.bytes, f"{prefix}bytes"),
    )


def _filter(message: pb.Filter) -> Filter:
    return Filter(
        key_equals=tuple(message.key_equals),
        key_prefix=message.key_prefix if message.HasField("key_prefix") else None,
        headers=tuple(
            HeaderMatch(header.key, header.value if header.HasField("value") else None) for header in message.headers
        ),
    )


def _subscribe(sequence: int, request: pb.PubSubReq) -> Subscribe:
    command = request.cmd_subscribe
    topic = valid_topic(command.topic)
    partitions = tuple(command.partitions)
    start = _start(command, _partition_set(partitions))
    filter_ = _filter(command.filter)
    # Present but empty (Credit{}) is a grant of nothing: the stream starts paused.
    # Absent is the route's default grant.
    credit = _grant(command.credit, "credit ") if command.HasField("credit") else None
    isolation = known(Isolation, command.isolation, "isolation")
    if command.auto_commit and not command.group:
        refuse("auto_commit without a group")
    if command.group:
        if partitions:
            refuse("partitions with a group: the group assigns them")
        _valid_group(command.group)
    return Subscribe(
        sequence=sequence,
        topic=topic,
        partitions=partitions,
        start=start,
        filter=filter_,
        credit=credit,
        isolation=isolation,
        group=command.group,  # kept: the connection decides whether it serves groups
        auto_commit=command.auto_commit,
    )


def _credit(sequence: int, request: pb.PubSubReq) -> AddCredit:
    command = request.cmd_credit
    return AddCredit(sequence=sequence, subscription=command.subscription, grant=_grant(command.credit, ""))


def _unsubscribe(sequence: int, request: pb.PubSubReq) -> Unsubscribe:
    return Unsubscribe(sequence=sequence, subscription=request.cmd_unsubscribe.subscription)


def _seek(sequence: int, request: pb.PubSubReq) -> Seek:
    command = request.cmd_seek
    partition = not_negative(command.partition, "partition")
    kind = command.WhichOneof("to")
    to: SeekTarget
    if kind == "edge":
        to = known(StartEdge, command.edge, "edge")
    elif kind == "timestamp":
        to = AtTimestamp(not_negative(command.timestamp, "timestamp"))
    elif kind == "offset":
        to = AtOffset(not_negative(command.offset, "offset"))
    else:
        refuse("no target")
    return Seek(sequence=sequence, subscription=command.subscription, partition=partition, to=to)


def _valid_group(group: str) -> str:
    """A consumer group name a command may give: not empty, at most :data:`MAX_GROUP_NAME` characters."""
    if not group:
        refuse("empty group")
    if len(group) > MAX_GROUP_NAME:
        refuse(f"group name of {len(group)} characters, more than {MAX_GROUP_NAME}")
    return group


def _group_offsets(sequence: int, request: pb.PubSubReq) -> GroupOffsets:
    command = request.cmd_group_offsets
    group = _valid_group(command.group)
    return GroupOffsets(sequence=sequence, group=group, topic=valid_topic(command.topic))


def _commit(sequence: int, request: pb.PubSubReq) -> Commit:
    command = request.cmd_commit
    offsets = _offset_pairs(command.offsets.entries)
    return Commit(sequence=sequence, subscription=command.subscription, offsets=offsets or None)


#: The stream commands by their oneof name in PubSubReq.req.
_STREAM_DECODERS: Final[dict[str, Decoder]] = {
    "cmd_subscribe": judged("subscribe", _subscribe),
    "cmd_credit": judged("credit", _credit),
    "cmd_unsubscribe": judged("unsubscribe", _unsubscribe),
    "cmd_seek": judged("seek", _seek),
    "cmd_commit": judged("commit", _commit),
}
#: Commands that read a consumer group's state without joining it.
_GROUP_DECODERS: Final[dict[str, Decoder]] = {
    "cmd_group_offsets": judged("group offsets", _group_offsets),
}


def _auth(sequence: int, request: pb.PubSubReq) -> Auth:
    if not request.cmd_auth.token:
        refuse("empty token")
    return Auth(sequence=sequence, token=request.cmd_auth.token)


#: A fresh credential in the middle of a session.
_AUTH_DECODERS: Final[dict[str, Decoder]] = {"cmd_auth": judged("auth", _auth)}


# ------------------------------------------------------------ server answers


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


#: PubSubResp.error_resp's field number; ErrorResp.code is field 1 (a varint) inside it.
_ERROR_RESP_FIELD: Final = 31


def answer_code(frame: bytes) -> int:
    """The error code an answer frame carries: an ErrorResp's ``code``, else 0 (for the metrics).

    It reads only the frame's head (the sequence, then the tag of the oneof answer), so a
    large fetch answer costs a few bytes. A frame it cannot read counts as 0.
    """
    try:
        at = 0
        while at < len(frame):
            tag, at = read_varint(frame, at)
            field, wire = tag >> 3, tag & 7
            if wire == 0:
                _, at = read_varint(frame, at)
                continue
            if field != _ERROR_RESP_FIELD or wire != 2:
                return 0  # the oneof answer is another one
            size, at = read_varint(frame, at)
            end = at + size
            while at < end:
                tag, at = read_varint(frame, at)
                if tag == 0x08:  # ErrorResp.code, a varint
                    code, _ = read_varint(frame, at)
                    return code
                if tag & 7 != 2:
                    return 0
                size, at = read_varint(frame, at)
                at += size
            return 0
    except ValueError:
        return 0
    return 0


def encode_list_offset(sequence: int, offset: int) -> bytes:
    """The frame answering a :class:`ListOffset`: a KafkaListOffsetResp (``offset`` may be -1)."""
    answer = pb.KafkaListOffsetResp(offset=offset)
    return pb.PubSubResp(sequence=sequence, kafka_list_offset_resp=answer).SerializeToString()


def encode_ok(sequence: int) -> bytes:
    """The frame of an OkResp: the command (an unsubscribe or a seek) is done."""
    return pb.PubSubResp(sequence=sequence, ok_resp=pb.OkResp()).SerializeToString()


def encode_group_offsets_answer(sequence: int, committed: Sequence[tuple[int, int]]) -> bytes:
    """The frame answering a :class:`GroupOffsets`: ``(partition, offset)`` pairs, in partition order."""
    answer = pb.GroupOffsetsResp(committed=pb.OffsetList(entries=_offset_list(sorted(committed))))
    return pb.PubSubResp(sequence=sequence, group_offsets_resp=answer).SerializeToString()


def _offset_list(pairs: Sequence[tuple[int, int]]) -> list[pb.PartitionOffset]:
    return [pb.PartitionOffset(partition=partition, offset=offset) for partition, offset in pairs]


def encode_subscribe_answer(sequence: int, positions: Sequence[tuple[int, int]]) -> bytes:
    """The frame answering a :class:`Subscribe`: where each partition starts, as ``(partition, offset)`` pairs."""
    answer = pb.SubscribeResp(positions=pb.OffsetList(entries=_offset_list(positions)))
    return pb.PubSubResp(sequence=sequence, subscribe_resp=answer).SerializeToString()


def _stream_event(sequence: int, event: pb.StreamEvent) -> bytes:
    return pb.PubSubResp(sequence=sequence, stream_event=event).SerializeToString()


def encode_stream_event_caught_up(sequence: int, partition: int) -> bytes:
    """The push saying that ``partition`` of the stream ``sequence`` reached its high watermark."""
    return _stream_event(sequence, pb.StreamEvent(caught_up=partition))


def encode_stream_event_error(sequence: int, code: ErrorCode, message: str, partition: int | None) -> bytes:
    """The push of a problem the stream ``sequence`` retries past by itself; ``partition`` None: the whole stream."""
    return _stream_event(
        sequence, pb.StreamEvent(error=pb.ErrorResp(code=int(code), message=message), partition=partition)
    )


def encode_stream_event_partitions(
    sequence: int, assigned: Sequence[int], revoked: Sequence[int], positions: Sequence[tuple[int, int]]
) -> bytes:
    """The push of partitions the stream ``sequence`` gained (starting at ``positions``) or lost."""
    changed = pb.PartitionsChanged(assigned=assigned, revoked=revoked, positions=_offset_list(positions))
    return _stream_event(sequence, pb.StreamEvent(partitions=changed))


def encode_stream_event_ended(sequence: int, code: ErrorCode, message: str) -> bytes:
    """The push ending the stream ``sequence``; nothing of it follows."""
    return _stream_event(sequence, pb.StreamEvent(ended=pb.ErrorResp(code=int(code), message=message)))


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


#: The events' enums as the generated code types them (same names, same numbers).
_PB_EDGE: Final = {StartEdge.LATEST: pb.LATEST, StartEdge.EARLIEST: pb.EARLIEST}
_PB_ISOLATION: Final = {Isolation.READ_UNCOMMITTED: pb.READ_UNCOMMITTED, Isolation.READ_COMMITTED: pb.READ_COMMITTED}


def encode_subscribe_request(
    sequence: int,
    topic: str,
    *,
    partitions: Sequence[int] = (),
    start: Start | None = None,
    filter: Filter | None = None,
    credit: Grant | None = None,
    isolation: Isolation = Isolation.READ_UNCOMMITTED,
    group: str = "",
    auto_commit: bool = False,
) -> bytes:
    """The frame of a CmdSubscribe opening the stream ``sequence``; the keywords are :class:`Subscribe`'s fields.

    ``start`` None writes no start (the server starts at LATEST); an edge is written even when it is
    LATEST. ``filter`` None writes no filter. ``credit`` None writes no credit (the route's default
    grant), while ``Grant()`` writes an empty one: the stream starts paused.
    """
    command = pb.CmdSubscribe(
        topic=topic, partitions=partitions, isolation=_PB_ISOLATION[isolation], group=group, auto_commit=auto_commit
    )
    if isinstance(start, StartEdge):
        command.edge = _PB_EDGE[start]
    elif isinstance(start, AtTimestamp):
        command.timestamp = start.ms
    elif isinstance(start, AtOffsets):
        command.offsets.SetInParent()  # present even when empty
        command.offsets.entries.extend(_offset_list(start.offsets))
    if filter is not None:
        command.filter.SetInParent()
        command.filter.key_equals.extend(filter.key_equals)
        if filter.key_prefix is not None:
            command.filter.key_prefix = filter.key_prefix
        command.filter.headers.extend(pb.HeaderMatch(key=match.key, value=match.value) for match in filter.headers)
    if credit is not None:
        command.credit.SetInParent()  # present even when empty: a grant of nothing
        command.credit.records = credit.records
        command.credit.bytes = credit.bytes
    return pb.PubSubReq(sequence=sequence, cmd_subscribe=command).SerializeToString()


def encode_credit_request(sequence: int, subscription: int, grant: Grant) -> bytes:
    """The frame of a CmdCredit adding ``grant`` to the stream ``subscription``."""
    command = pb.CmdCredit(subscription=subscription, credit=pb.Credit(records=grant.records, bytes=grant.bytes))
    return pb.PubSubReq(sequence=sequence, cmd_credit=command).SerializeToString()


def encode_unsubscribe_request(sequence: int, subscription: int) -> bytes:
    """The frame of a CmdUnsubscribe closing the stream ``subscription``."""
    command = pb.CmdUnsubscribe(subscription=subscription)
    return pb.PubSubReq(sequence=sequence, cmd_unsubscribe=command).SerializeToString()


def encode_seek_request(sequence: int, subscription: int, partition: int, to: SeekTarget) -> bytes:
    """The frame of a CmdSeek moving ``partition`` of the stream ``subscription`` to ``to``."""
    command = pb.CmdSeek(subscription=subscription, partition=partition)
    if isinstance(to, StartEdge):
        command.edge = _PB_EDGE[to]
    elif isinstance(to, AtTimestamp):
        command.timestamp = to.ms
    else:
        command.offset = to.offset
    return pb.PubSubReq(sequence=sequence, cmd_seek=command).SerializeToString()


def encode_commit_request(sequence: int, subscription: int, offsets: Sequence[tuple[int, int]] | None = None) -> bytes:
    """The frame of a CmdCommit for the group stream ``subscription``; ``offsets`` None: what was delivered."""
    command = pb.CmdCommit(subscription=subscription)
    if offsets:
        command.offsets.entries.extend(_offset_list(offsets))
    return pb.PubSubReq(sequence=sequence, cmd_commit=command).SerializeToString()


def encode_auth_request(sequence: int, token: str) -> bytes:
    """The frame of a CmdAuth: a fresh credential for the session's principal."""
    return pb.PubSubReq(sequence=sequence, cmd_auth=pb.CmdAuth(token=token)).SerializeToString()


def encode_group_offsets_request(sequence: int, group: str, topic: str) -> bytes:
    """The frame of a CmdGroupOffsets: the committed offsets of ``group`` for ``topic``."""
    command = pb.CmdGroupOffsets(group=group, topic=topic)
    return pb.PubSubReq(sequence=sequence, cmd_group_offsets=command).SerializeToString()


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
    if kind == "ok_resp":
        return OkAnswer(sequence=sequence)
    if kind == "subscribe_resp":
        return SubscribeAnswer(sequence=sequence, positions=_pairs(response.subscribe_resp.positions.entries))
    if kind == "stream_batch":
        batch = response.stream_batch
        return StreamRecords(
            sequence=sequence,
            partition=batch.partition,
            records=tuple(decode_record(message) for message in batch.messages),
            next_offset=batch.next_offset,
            high_watermark=batch.high_watermark,
        )
    if kind == "stream_event":
        return _decode_stream_event(sequence, response.stream_event)
    if kind == "produce_resp":
        return decode_produce_answer(sequence, response.produce_resp)
    if kind == "group_offsets_resp":
        return GroupOffsetsAnswer(sequence=sequence, committed=_pairs(response.group_offsets_resp.committed.entries))
    return UnknownResponse(sequence=sequence)


def _pairs(entries: Sequence[pb.PartitionOffset]) -> tuple[tuple[int, int], ...]:
    return tuple((entry.partition, entry.offset) for entry in entries)


def _decode_stream_event(sequence: int, event: pb.StreamEvent) -> Response:
    kind = event.WhichOneof("event")
    if kind == "caught_up":
        return StreamCaughtUp(sequence=sequence, partition=event.caught_up)
    if kind == "error":
        partition = event.partition if event.HasField("partition") else None
        return StreamError(sequence=sequence, code=event.error.code, message=event.error.message, partition=partition)
    if kind == "partitions":
        changed = event.partitions
        return StreamPartitions(
            sequence=sequence,
            assigned=tuple(changed.assigned),
            revoked=tuple(changed.revoked),
            positions=_pairs(changed.positions),
        )
    if kind == "ended":
        return StreamEnded(sequence=sequence, code=event.ended.code, message=event.ended.message)
    return UnknownResponse(sequence=sequence)  # an event of a newer server
