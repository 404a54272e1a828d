"""The sans-IO protocol core: synchronous tests and properties, no broker, no Trio."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from kafka_ws_trio._pb import pubsub_pb2 as pb
from kafka_ws_trio._proto import (
    ECHOED_TOPIC_CHARS,
    FETCH_FRAME_OVERHEAD,
    NOT_FOUND_TOPIC,
    UNKNOWN_COMMAND_MESSAGE,
    WRONG_COMMAND_MESSAGE,
    EncodedBatch,
    ErrorCode,
    Fetch,
    Invalid,
    ListOffset,
    Malformed,
    Ping,
    Record,
    RecordTooLarge,
    Request,
    UnknownCommand,
    decode_request,
    encode_error,
    encode_fetch,
    encode_fetch_head,
    encode_list_offset,
    encode_message_entry,
    encode_pong,
    fetch_error,
    fetch_frame,
    list_offset_error,
)
from kafka_ws_trio._transport import websocket_binary_header

INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
SEQUENCE_EXTREMES = [0, 1, -1, 2**63 - 1, -(2**63)]
# Kafka topic names: 1-249 ASCII letters, digits, '.', '_' and '-' (not "." or "..").
TOPICS = st.from_regex(r"[a-zA-Z0-9._-]{1,249}", fullmatch=True).filter(lambda name: name not in (".", ".."))
OPTIONAL_BYTES = st.none() | st.binary(max_size=64)
RECORDS = st.builds(
    Record,
    offset=st.integers(0, 2**63 - 1),
    timestamp=INT64,
    key=OPTIONAL_BYTES,
    value=OPTIONAL_BYTES | st.binary(min_size=100, max_size=3000),
    headers=st.lists(st.tuples(st.text(max_size=10), OPTIONAL_BYTES), max_size=3).map(tuple),
)


def request(sequence: int = 0, **command: object) -> bytes:
    return pb.PubSubReq(sequence=sequence, **command).SerializeToString()


def response(frame: bytes) -> pb.PubSubResp:
    return pb.PubSubResp.FromString(frame)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field written by hand (numbers below 2048, payloads below 128 bytes)."""
    tag = (number << 3) | 2
    assert tag < 0x4000
    assert len(payload) < 0x80
    tag_bytes = bytes([tag]) if tag < 0x80 else bytes([tag & 0x7F | 0x80, tag >> 7])
    return tag_bytes + bytes([len(payload)]) + payload


# --- decoding -------------------------------------------------------------------------


@given(st.binary(max_size=200))
@example(b"")
@example(b"\xff")
@example(b"\x08")
@example(b"\x0a\xff\xff\xff\xff\x0f")
def test_decode_never_raises(frame: bytes) -> None:
    assert isinstance(decode_request(frame), Request)  # every kind, stream commands and Rejected included


@given(
    st.lists(st.sampled_from([b"\x08\x01", b"\x82\x02\x00", b"\x8a\x02\x00", b"\xfa\x01\x00", b"\x92\x02\x02\x10\x01"]))
)
def test_decode_never_raises_on_spliced_fields(fields: list[bytes]) -> None:
    decode_request(b"".join(fields))


@given(sequence=INT64, state=st.binary(max_size=100))
def test_ping_round_trip(sequence: int, state: bytes) -> None:
    assert decode_request(request(sequence, cmd_ping=pb.CmdPing(state=state))) == Ping(sequence, state)
    pong = response(encode_pong(sequence, state))
    assert pong.sequence == sequence
    assert pong.WhichOneof("resp") == "pong_resp"
    assert pong.pong_resp.state == state


@given(sequence=INT64, topic=TOPICS, partition=st.integers(0, 2**31 - 1), timestamp=st.integers(-2, 2**63 - 1))
def test_list_offset_round_trip(sequence: int, topic: str, partition: int, timestamp: int) -> None:
    cmd = pb.CmdKafkaListOffset(topic=topic, partition=partition, timestamp=timestamp)
    decoded = decode_request(request(sequence, cmd_kafka_list_offset=cmd))
    assert decoded == ListOffset(sequence, topic, partition, timestamp)


@given(sequence=INT64, offset=INT64)
def test_list_offset_response(sequence: int, offset: int) -> None:
    answer = response(encode_list_offset(sequence, offset))
    assert answer.sequence == sequence
    assert answer.WhichOneof("resp") == "kafka_list_offset_resp"
    assert answer.kafka_list_offset_resp.offset == offset


@given(sequence=INT64, topic=TOPICS, partition=st.integers(0, 2**31 - 1), offset=st.integers(0, 2**63 - 1))
def test_fetch_round_trip(sequence: int, topic: str, partition: int, offset: int) -> None:
    cmd = pb.CmdKafkaFetch(topic=topic, partition=partition, offset=offset)
    assert decode_request(request(sequence, cmd_kafka_fetch=cmd)) == Fetch(sequence, topic, partition, offset)


@given(sequence=INT64, code=st.sampled_from(ErrorCode), message=st.text(max_size=100))
def test_error_round_trip(sequence: int, code: ErrorCode, message: str) -> None:
    error = response(encode_error(sequence, code, message))
    assert error.sequence == sequence
    assert error.WhichOneof("resp") == "error_resp"
    assert (error.error_resp.code, error.error_resp.message) == (code, message)


@pytest.mark.parametrize("sequence", SEQUENCE_EXTREMES)
def test_sequence_extremes_echo(sequence: int) -> None:
    assert decode_request(request(sequence, cmd_ping=pb.CmdPing(state=b"test"))) == Ping(sequence, b"test")
    assert decode_request(request(sequence, cmd_empty=pb.CmdEmpty())) == UnknownCommand(sequence)
    for frame in (
        encode_pong(sequence, b""),
        encode_error(sequence, ErrorCode.UNKNOWN_COMMAND, UNKNOWN_COMMAND_MESSAGE),
        encode_list_offset(sequence, -1),
        encode_fetch(sequence, [], 100)[0],
    ):
        assert response(frame).sequence == sequence


def test_protocol_examples() -> None:
    fetch = bytes.fromhex("08068a02110a0d746573742d636f6e73756d6572180e")
    assert decode_request(fetch) == Fetch(6, "test-consumer", 0, 14)
    list_offset = bytes.fromhex("080192021a0a0d746573742d636f6e73756d657218feffffffffffffffff01")
    assert decode_request(list_offset) == ListOffset(1, "test-consumer", 0, -2)


def test_sequence_after_command() -> None:
    command = bytes.fromhex("8a02110a0d746573742d636f6e73756d6572180e")
    assert decode_request(command + b"\x08\x06") == Fetch(6, "test-consumer", 0, 14)
    assert decode_request(field(32, b"\x0a\x02hi") + b"\x08\x7f") == Ping(127, b"hi")


def test_explicit_empty_sub_messages() -> None:
    assert decode_request(b"\x08\x05" + field(32, b"")) == Ping(5, b"")
    assert decode_request(b"\x08\x05" + field(31, b"")) == UnknownCommand(5)
    empty_fetch = decode_request(b"\x08\x05" + field(33, b""))
    assert empty_fetch == Invalid(5, Fetch(5, "", 0, 0), "empty topic", queued=False)
    # A ListOffset with only a topic: partition 0 and timestamp 0 are explicit defaults.
    assert decode_request(field(34, field(1, b"t"))) == ListOffset(0, "t", 0, 0)


def test_no_command_is_unknown_command() -> None:
    assert decode_request(b"") == UnknownCommand(0)
    assert decode_request(b"\x08\x09") == UnknownCommand(9)


# 35-39 are the stream commands and 40-41 are planned (produce, transactions): 60 and up are free.
@pytest.mark.parametrize("number", [60, 1000])
def test_unknown_command_number_keeps_its_sequence(number: int) -> None:
    payload = field(1, b"some-newer-command")
    assert decode_request(b"\x08\x2a" + field(number, payload)) == UnknownCommand(42)


def test_unknown_field_number_60_after_sequence() -> None:
    frame = b"\x08\x03\xe2\x03\x02\x08\x01"  # sequence 3; field 60 holding {1: 1}
    assert decode_request(frame) == UnknownCommand(3)


@pytest.mark.parametrize(
    "frame",
    [
        b"\xff",  # a tag that never ends
        b"\x08",  # sequence without a value
        b"\x82\x02\x05\x0a",  # cmd_ping longer than the frame
        field(34, field(1, b"\xff\xfe")),  # topic that is not UTF-8
        b"\x07",  # wire type 7 does not exist
    ],
)
def test_malformed(frame: bytes) -> None:
    decoded = decode_request(frame)
    assert isinstance(decoded, Malformed)
    assert decoded.reason


@pytest.mark.parametrize(
    ("cmd", "reason"),
    [
        (pb.CmdKafkaListOffset(topic="", partition=0, timestamp=-1), "empty topic"),
        (pb.CmdKafkaListOffset(topic="t", partition=-1, timestamp=-1), "invalid partition: -1"),
        (pb.CmdKafkaListOffset(topic="t", partition=0, timestamp=-3), "invalid timestamp: -3"),
        (pb.CmdKafkaListOffset(topic="", partition=-5, timestamp=-9), "empty topic"),
    ],
)
def test_invalid_list_offset(cmd: pb.CmdKafkaListOffset, reason: str) -> None:
    expected = ListOffset(7, cmd.topic, cmd.partition, cmd.timestamp)
    queued = bool(cmd.topic)  # a bad topic name belongs to no partition: answered before anything is queued
    assert decode_request(request(7, cmd_kafka_list_offset=cmd)) == Invalid(7, expected, reason, queued=queued)


@pytest.mark.parametrize(
    ("cmd", "reason"),
    [
        (pb.CmdKafkaFetch(topic="", partition=0, offset=0), "empty topic"),
        (pb.CmdKafkaFetch(topic="t", partition=-(2**31), offset=0), f"invalid partition: {-(2**31)}"),
        (pb.CmdKafkaFetch(topic="t", partition=0, offset=-1), "invalid offset: -1"),
        (pb.CmdKafkaFetch(topic="t", partition=0, offset=-(2**63)), f"invalid offset: {-(2**63)}"),
    ],
)
def test_invalid_fetch(cmd: pb.CmdKafkaFetch, reason: str) -> None:
    expected = Fetch(-7, cmd.topic, cmd.partition, cmd.offset)
    queued = bool(cmd.topic)
    assert decode_request(request(-7, cmd_kafka_fetch=cmd)) == Invalid(-7, expected, reason, queued=queued)


@pytest.mark.parametrize(
    "topic",
    ["a" * 250, "a" * (1 << 20), "with space", "slash/topic", "ünïcode", "colon:", ".", "..", "tab\t"],
)
def test_topic_names_kafka_would_refuse_are_invalid_and_not_queued(topic: str) -> None:
    for frame in (
        request(3, cmd_kafka_fetch=pb.CmdKafkaFetch(topic=topic, partition=0, offset=0)),
        request(3, cmd_kafka_list_offset=pb.CmdKafkaListOffset(topic=topic, partition=0, timestamp=-1)),
    ):
        decoded = decode_request(frame)
        assert isinstance(decoded, Invalid)
        assert decoded.reason.startswith("invalid topic")
        assert not decoded.queued
        # A huge name is never echoed back whole.
        assert len(decoded.command.topic) <= ECHOED_TOPIC_CHARS + 3


@pytest.mark.parametrize("topic", ["a", "a" * 249, "Orders_v2.eu-west-1", "__consumer_offsets", "..."])
def test_topic_names_kafka_accepts_are_valid(topic: str) -> None:
    frame = request(3, cmd_kafka_fetch=pb.CmdKafkaFetch(topic=topic, partition=0, offset=0))
    assert decode_request(frame) == Fetch(3, topic, 0, 0)


@pytest.mark.parametrize("timestamp", [-2, -1, 0, 1500000000000, 9999999999999])
def test_list_offset_timestamps_accepted(timestamp: int) -> None:
    cmd = pb.CmdKafkaListOffset(topic="test-consumer", partition=0, timestamp=timestamp)
    assert decode_request(request(1, cmd_kafka_list_offset=cmd)) == ListOffset(1, "test-consumer", 0, timestamp)


# --- errors ---------------------------------------------------------------------------


def test_error_messages_match_apisix() -> None:
    assert list_offset_error("not-exist", 0, NOT_FOUND_TOPIC) == (
        "failed to list offset, topic: not-exist, partition: 0, err: not found topic"
    )
    assert fetch_error("test-consumer", 0, "OFFSET_OUT_OF_RANGE") == (
        "failed to fetch message, topic: test-consumer, partition: 0, err: OFFSET_OUT_OF_RANGE"
    )
    assert UNKNOWN_COMMAND_MESSAGE == "unknown command"
    assert WRONG_COMMAND_MESSAGE == "wrong command"


def test_error_codes_are_stable() -> None:
    assert {code.name: code.value for code in ErrorCode} == {
        "UNSPECIFIED": 0,
        "UNKNOWN_COMMAND": 1,
        "WRONG_COMMAND": 2,
        "INVALID_REQUEST": 3,
        "TOPIC_NOT_FOUND": 10,
        "PARTITION_NOT_FOUND": 11,
        "OFFSET_OUT_OF_RANGE": 12,
        "KAFKA_ERROR": 13,
        "BROKER_UNREACHABLE": 20,
        "AUTHENTICATION_FAILED": 21,
        "TLS_FAILED": 22,
        "TIMEOUT": 23,
        "RECORD_TOO_LARGE": 30,
        "OVERLOADED": 31,
        "INTERNAL_ERROR": 40,
        "UNKNOWN_STREAM": 50,
        "DUPLICATE_STREAM": 51,
        "TOO_MANY_STREAMS": 52,
        "TOO_MANY_PARTITIONS": 53,
        "CREDIT_LIMIT": 54,
        "NOT_AUTHORIZED": 60,
        "GROUP_NOT_AUTHORIZED": 61,
        "QUOTA_EXCEEDED": 62,
        "TOKEN_REFUSED": 63,
        "TXN_NOT_OPEN": 70,
        "TXN_ALREADY_OPEN": 71,
        "TXN_FENCED": 72,
        "TXN_TIMED_OUT": 73,
        "TXN_ABORTED": 74,
        "NOT_ASSIGNED": 75,
        "COMMIT_FAILED": 76,
    }


def test_wrong_command_response() -> None:
    error = response(encode_error(0, ErrorCode.WRONG_COMMAND, WRONG_COMMAND_MESSAGE))
    assert error.sequence == 0
    assert (error.error_resp.code, error.error_resp.message) == (2, "wrong command")


# --- fetch responses ------------------------------------------------------------------


def decoded_records(frame: bytes) -> list[Record]:
    answer = response(frame)
    assert answer.WhichOneof("resp") == "kafka_fetch_resp"
    return [
        Record(
            offset=message.offset,
            timestamp=message.timestamp,
            key=message.key if message.HasField("key") else None,
            value=message.value if message.HasField("value") else None,
            headers=tuple((h.key, h.value if h.HasField("value") else None) for h in message.headers),
        )
        for message in answer.kafka_fetch_resp.messages
    ]


def varint_size(value: int) -> int:
    return len(pb.KafkaListOffsetResp(offset=value).SerializeToString()) - 1 if value else 1


def predicted_fetch_size(sequence: int, frame: bytes) -> int:
    """The frame's length from the wire format's arithmetic: tags, length prefixes, message sizes."""
    body = sum(1 + varint_size(m.ByteSize()) + m.ByteSize() for m in response(frame).kafka_fetch_resp.messages)
    sequence_field = 0 if sequence == 0 else 1 + varint_size(sequence)
    return sequence_field + 2 + varint_size(body) + body


@given(sequence=INT64, records=st.lists(RECORDS, max_size=12), max_size=st.integers(14, 20000))
@example(sequence=-1, records=[Record(0, 0, None, b"x" * 200)] * 3, max_size=428)
def test_fetch_fits_the_longest_prefix(sequence: int, records: list[Record], max_size: int) -> None:
    alone = len(encode_fetch(sequence, records[:1], 2**31)[0])
    if records and alone > max_size:
        with pytest.raises(RecordTooLarge) as caught:
            encode_fetch(sequence, records, max_size)
        assert (caught.value.offset, caught.value.size) == (records[0].offset, alone)
        return
    frame, count = encode_fetch(sequence, records, max_size)
    assert len(frame) <= max_size
    assert len(frame) == predicted_fetch_size(sequence, frame)
    assert response(frame).sequence == sequence
    assert decoded_records(frame) == records[:count]
    assert (count > 0) == bool(records)
    if count < len(records):
        bigger, _ = encode_fetch(sequence, records[: count + 1], 2**31)
        assert len(bigger) > max_size


def test_fetch_stops_at_the_first_record_that_does_not_fit() -> None:
    records = [Record(offset, 0, None, b"v" * size) for offset, size in enumerate([10, 10, 500, 1])]
    frame, count = encode_fetch(1, records, 100)
    assert count == 2
    assert [r.offset for r in decoded_records(frame)] == [0, 1]


def test_fetch_of_nothing_is_an_empty_list() -> None:
    frame, count = encode_fetch(9, [], 14)
    assert count == 0
    answer = response(frame)
    assert answer.WhichOneof("resp") == "kafka_fetch_resp"
    assert list(answer.kafka_fetch_resp.messages) == []


def test_record_too_large_names_offset_and_size() -> None:
    with pytest.raises(RecordTooLarge) as caught:
        encode_fetch(1, [Record(41, 0, None, b"x" * 2000), Record(42, 0, None, b"")], 1000)
    assert caught.value.offset == 41
    assert caught.value.size == len(encode_fetch(1, [Record(41, 0, None, b"x" * 2000)], 10**6)[0])
    assert "41" in str(caught.value)


def test_null_and_empty_stay_distinct() -> None:
    records = [
        Record(0, 1, None, None),  # tombstone with a null key
        Record(1, 2, b"", b""),
        Record(2, 3, b"k", None, headers=(("h-null", None), ("h-empty", b""), ("", b"v"))),
    ]
    frame, count = encode_fetch(5, records, 10**6)
    assert count == 3
    assert decoded_records(frame) == records
    first = response(frame).kafka_fetch_resp.messages[0]
    assert not first.HasField("key")
    assert not first.HasField("value")


@pytest.mark.parametrize("sequence", SEQUENCE_EXTREMES)
def test_fetch_frame_may_be_exactly_max_size(sequence: int) -> None:
    records = [Record(2**40, -1, b"k", b"x" * 300, headers=(("h", None),))] * 2
    whole, _ = encode_fetch(sequence, records, 10**6)
    assert encode_fetch(sequence, records, len(whole)) == (whole, 2)
    assert encode_fetch(sequence, records, len(whole) - 1)[1] == 1


# -------------------------------------------------------- encode once, send many

OPTIONAL_BYTES = st.none() | st.binary(max_size=40)
HEADERS = st.lists(st.tuples(st.text(max_size=8), OPTIONAL_BYTES), max_size=3)
ENTRIES = st.tuples(INT64, INT64, OPTIONAL_BYTES, OPTIONAL_BYTES, HEADERS)


def _reference_message(
    offset: int, timestamp: int, key: bytes | None, value: bytes | None, headers: list
) -> pb.KafkaMessage:  # type: ignore[type-arg]
    return pb.KafkaMessage(
        offset=offset,
        timestamp=timestamp,
        key=key,
        value=value,
        headers=[pb.KafkaHeader(key=k, value=v) for k, v in headers],
    )


@given(ENTRIES)
@example((0, 0, None, None, []))
@example((0, -1, b"", b"", [("", None), ("", b"")]))
def test_an_encoded_entry_is_byte_identical_to_protobuf(entry: tuple) -> None:  # type: ignore[type-arg]
    expected = pb.KafkaFetchResp(messages=[_reference_message(*entry)]).SerializeToString()
    assert encode_message_entry(*entry) == expected


@given(INT64, st.lists(ENTRIES, max_size=4))
def test_an_encoded_fetch_frame_is_byte_identical_to_protobuf(sequence: int, entries: list) -> None:  # type: ignore[type-arg]
    body = b"".join(encode_message_entry(*entry) for entry in entries)
    frame = b"".join(fetch_frame(sequence, EncodedBatch(body, len(entries))))
    expected = pb.PubSubResp(sequence=sequence)
    expected.kafka_fetch_resp.SetInParent()
    expected.kafka_fetch_resp.messages.extend(_reference_message(*entry) for entry in entries)
    assert frame == expected.SerializeToString()
    assert len(frame) <= len(body) + FETCH_FRAME_OVERHEAD
    decoded = pb.PubSubResp.FromString(frame)
    assert decoded.sequence == sequence
    assert len(decoded.kafka_fetch_resp.messages) == len(entries)


# ------------------------------------------------ frames written directly


@given(size=st.one_of(st.integers(0, 140), st.integers(65_500, 65_600), st.integers(0, 300_000)))
@example(size=125)
@example(size=126)
@example(size=65_535)
@example(size=65_536)
def test_websocket_binary_header_is_what_wsproto_writes(size: int) -> None:
    """A frame written straight to the socket is byte for byte the frame wsproto (trio-websocket) would write."""
    from wsproto.frame_protocol import FrameProtocol

    payload = bytes(size)
    expected = FrameProtocol(client=False, extensions=[]).send_data(payload, fin=True)
    assert websocket_binary_header(size) + payload == expected


@given(
    sequence=INT64,
    values=st.lists(st.binary(max_size=300), max_size=20),
)
def test_fetch_head_and_shared_body_make_the_fetch_frame(sequence: int, values: list[bytes]) -> None:
    """``encode_fetch_head`` + a shared body parses as the fetch response with every record."""
    body = b"".join(
        encode_message_entry(offset, 1_700_000_000_000, None, value, []) for offset, value in enumerate(values)
    )
    frame = encode_fetch_head(sequence, len(body)) + body
    assert frame == b"".join(fetch_frame(sequence, EncodedBatch(body, len(values))))
    response = pb.PubSubResp.FromString(frame)
    assert response.sequence == sequence
    assert response.WhichOneof("resp") == "kafka_fetch_resp"
    assert [m.value for m in response.kafka_fetch_resp.messages] == values
