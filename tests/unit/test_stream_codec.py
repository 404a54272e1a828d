"""The stream commands and pushes in the codec (schema/README.md, "Streams"): round trips both ways,
every validation rule with its exact message, the documented hex examples, and a decoder that never
raises. Synchronous, no broker, no Trio."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import attrs
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from kafka_ws_trio._pb import pubsub_pb2 as pb
from kafka_ws_trio._proto import (
    ECHOED_TOPIC_CHARS,
    MAX_GROUP_NAME,
    UNKNOWN_COMMAND_MESSAGE,
    AddCredit,
    AtOffset,
    AtOffsets,
    AtTimestamp,
    Commit,
    ErrorAnswer,
    ErrorCode,
    Filter,
    Grant,
    GroupAction,
    GroupOffsets,
    GroupOffsetsAnswer,
    HeaderMatch,
    Isolation,
    OkAnswer,
    Record,
    Rejected,
    Reply,
    Request,
    Response,
    Seek,
    SeekTarget,
    ServerConnection,
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
    decode_request,
    decode_response,
    encode_commit_request,
    encode_credit_request,
    encode_error,
    encode_group_offsets_answer,
    encode_group_offsets_request,
    encode_ok,
    encode_seek_request,
    encode_stream_event_caught_up,
    encode_stream_event_ended,
    encode_stream_event_error,
    encode_stream_event_partitions,
    encode_subscribe_answer,
    encode_subscribe_request,
    encode_unsubscribe_request,
)

README = Path(__file__).resolve().parents[2] / "schema" / "README.md"

INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
PARTITIONS = st.integers(0, 2**31 - 1)
NON_NEGATIVE_INT64 = st.integers(0, 2**63 - 1)
TOPICS = st.from_regex(r"[a-zA-Z0-9._-]{1,249}", fullmatch=True).filter(lambda name: name not in (".", ".."))
OPTIONAL_BYTES = st.none() | st.binary(max_size=16)
GRANTS = st.builds(Grant, records=NON_NEGATIVE_INT64, bytes=NON_NEGATIVE_INT64)
FILTERS = st.builds(
    Filter,
    key_equals=st.lists(st.binary(max_size=8), max_size=3).map(tuple),
    key_prefix=OPTIONAL_BYTES,
    headers=st.lists(st.builds(HeaderMatch, key=st.text(max_size=8), value=OPTIONAL_BYTES), max_size=3).map(tuple),
)
SEEK_TARGETS = st.one_of(
    st.sampled_from(StartEdge),
    st.builds(AtTimestamp, NON_NEGATIVE_INT64),
    st.builds(AtOffset, NON_NEGATIVE_INT64),
)
RECORDS = st.builds(
    Record,
    offset=NON_NEGATIVE_INT64,
    timestamp=INT64,
    key=OPTIONAL_BYTES,
    value=OPTIONAL_BYTES,
    headers=st.lists(st.tuples(st.text(max_size=8), OPTIONAL_BYTES), max_size=3).map(tuple),
)
PAIRS = st.lists(st.tuples(INT32, INT64), max_size=5).map(tuple)


@st.composite
def subscribes(draw: st.DrawFn) -> Subscribe:
    """Any valid Subscribe: distinct partitions, offsets only for listed partitions, nothing negative."""
    partitions = tuple(draw(st.lists(PARTITIONS, unique=True, max_size=6)))
    offset_partitions = st.sampled_from(partitions) if partitions else PARTITIONS
    offsets = st.lists(st.tuples(offset_partitions, NON_NEGATIVE_INT64), unique_by=lambda pair: pair[0], max_size=4)
    start = draw(
        st.one_of(
            st.sampled_from(StartEdge),
            st.builds(AtTimestamp, NON_NEGATIVE_INT64),
            offsets.map(lambda pairs: AtOffsets(tuple(pairs))),
        )
    )
    # A group assigns the partitions, so a group stream names none.
    group = "" if partitions else draw(st.text(max_size=12))
    return Subscribe(
        sequence=draw(INT64),
        topic=draw(TOPICS),
        partitions=partitions,
        start=start,
        filter=draw(FILTERS),
        credit=draw(st.none() | GRANTS),
        isolation=draw(st.sampled_from(Isolation)),
        group=group,
        auto_commit=draw(st.booleans()) if group else False,
    )


def subscribe_frame(subscribe: Subscribe) -> bytes:
    """The client's frame for ``subscribe``, built from its own fields."""
    fields = attrs.asdict(subscribe, recurse=False)
    return encode_subscribe_request(fields.pop("sequence"), fields.pop("topic"), **fields)


def request(sequence: int = 5, **command: object) -> bytes:
    return pb.PubSubReq(sequence=sequence, **command).SerializeToString()


def rejected(frame: bytes) -> str:
    """The message of the Rejected that ``frame`` decodes to."""
    decoded = decode_request(frame)
    assert isinstance(decoded, Rejected), decoded
    assert decoded.code == ErrorCode.INVALID_REQUEST
    return decoded.message


# ------------------------------------------------------------------ round trips


@given(subscribes())
@example(Subscribe(0, "t"))
@example(Subscribe(-1, "t", start=AtOffsets(()), credit=Grant()))
@example(Subscribe(2**63 - 1, "t", (), AtOffsets(((0, 0),)), Filter(key_prefix=b""), Grant(0, 1), group="g"))
def test_subscribe_round_trip(subscribe: Subscribe) -> None:
    assert decode_request(subscribe_frame(subscribe)) == subscribe


def test_subscribe_without_start_filter_or_credit_has_the_defaults() -> None:
    decoded = decode_request(encode_subscribe_request(3, "orders"))
    assert decoded == Subscribe(3, "orders", (), StartEdge.LATEST, Filter(), None, Isolation.READ_UNCOMMITTED)


def test_an_empty_credit_is_a_paused_start_and_no_credit_is_the_route_default() -> None:
    paused = decode_request(encode_subscribe_request(3, "orders", credit=Grant()))
    assert isinstance(paused, Subscribe)
    assert paused.credit == Grant(0, 0)
    default = decode_request(encode_subscribe_request(3, "orders"))
    assert isinstance(default, Subscribe)
    assert default.credit is None


def test_a_group_is_kept_for_the_connection_to_judge() -> None:
    decoded = decode_request(encode_subscribe_request(3, "orders", group="billing", auto_commit=True))
    assert isinstance(decoded, Subscribe)
    assert (decoded.group, decoded.auto_commit) == ("billing", True)


@given(sequence=INT64, subscription=INT64, grant=GRANTS)
@example(sequence=0, subscription=0, grant=Grant())
def test_credit_round_trip(sequence: int, subscription: int, grant: Grant) -> None:
    decoded = decode_request(encode_credit_request(sequence, subscription, grant))
    assert decoded == AddCredit(sequence, subscription, grant)


def test_a_credit_without_a_grant_grants_nothing() -> None:
    assert decode_request(request(4, cmd_credit=pb.CmdCredit(subscription=7))) == AddCredit(4, 7, Grant(0, 0))


@given(sequence=INT64, subscription=INT64)
def test_unsubscribe_round_trip(sequence: int, subscription: int) -> None:
    assert decode_request(encode_unsubscribe_request(sequence, subscription)) == Unsubscribe(sequence, subscription)


@given(sequence=INT64, subscription=INT64, partition=PARTITIONS, to=SEEK_TARGETS)
@example(sequence=1, subscription=1, partition=0, to=AtOffset(0))
@example(sequence=1, subscription=1, partition=0, to=StartEdge.LATEST)
@example(sequence=1, subscription=1, partition=0, to=AtTimestamp(0))
def test_seek_round_trip(sequence: int, subscription: int, partition: int, to: SeekTarget) -> None:
    decoded = decode_request(encode_seek_request(sequence, subscription, partition, to))
    assert decoded == Seek(sequence, subscription, partition, to)


@given(
    sequence=INT64,
    subscription=INT64,
    offsets=st.none()
    | st.lists(st.tuples(PARTITIONS, NON_NEGATIVE_INT64), min_size=1, unique_by=lambda pair: pair[0], max_size=5).map(
        tuple
    ),
)
@example(sequence=6, subscription=7, offsets=None)
@example(sequence=0, subscription=0, offsets=((0, 0),))
def test_commit_round_trip(sequence: int, subscription: int, offsets: tuple[tuple[int, int], ...] | None) -> None:
    assert decode_request(encode_commit_request(sequence, subscription, offsets)) == Commit(
        sequence, subscription, offsets
    )


def test_a_commit_with_an_empty_offset_list_commits_what_was_delivered() -> None:
    frame = request(6, cmd_commit=pb.CmdCommit(subscription=7, offsets=pb.OffsetList()))
    assert decode_request(frame) == Commit(6, 7, None)


@pytest.mark.parametrize(
    ("entries", "problem"),
    [
        ([(-1, 3)], "offsets name partition -1"),
        ([(2, 3), (2, 4)], "offsets name partition 2 twice"),
        ([(2, -3)], "offset -3 for partition 2"),
    ],
)
def test_a_commit_that_cannot_be_valid_is_refused(entries: list[tuple[int, int]], problem: str) -> None:
    offsets = pb.OffsetList(entries=[pb.PartitionOffset(partition=p, offset=o) for p, o in entries])
    assert (
        rejected(request(6, cmd_commit=pb.CmdCommit(subscription=7, offsets=offsets))) == f"invalid commit: {problem}"
    )


def test_a_group_subscribe_naming_partitions_or_a_name_too_long_is_refused() -> None:
    named = request(5, cmd_subscribe=pb.CmdSubscribe(topic="t", partitions=[0], group="g"))
    assert rejected(named) == "invalid subscribe: partitions with a group: the group assigns them"
    long_name = "g" * (MAX_GROUP_NAME + 1)
    too_long = request(5, cmd_subscribe=pb.CmdSubscribe(topic="t", group=long_name))
    assert rejected(too_long) == f"invalid subscribe: group name of {MAX_GROUP_NAME + 1} characters, more than 255"
    longest = decode_request(request(5, cmd_subscribe=pb.CmdSubscribe(topic="t", group="g" * MAX_GROUP_NAME)))
    assert isinstance(longest, Subscribe) and longest.group == "g" * MAX_GROUP_NAME


@given(INT64)
def test_ok_round_trip(sequence: int) -> None:
    assert decode_response(encode_ok(sequence)) == OkAnswer(sequence)


@given(INT64, PAIRS)
def test_subscribe_answer_round_trip(sequence: int, positions: tuple[tuple[int, int], ...]) -> None:
    assert decode_response(encode_subscribe_answer(sequence, positions)) == SubscribeAnswer(sequence, positions)


@given(INT64, INT32)
def test_caught_up_round_trip(sequence: int, partition: int) -> None:
    assert decode_response(encode_stream_event_caught_up(sequence, partition)) == StreamCaughtUp(sequence, partition)


@given(INT64, st.sampled_from(ErrorCode), st.text(max_size=40), st.none() | INT32)
@example(1, ErrorCode.TIMEOUT, "", 0)
def test_stream_error_round_trip(sequence: int, code: ErrorCode, message: str, partition: int | None) -> None:
    decoded = decode_response(encode_stream_event_error(sequence, code, message, partition))
    assert decoded == StreamError(sequence, code, message, partition)


@given(INT64, st.lists(INT32).map(tuple), st.lists(INT32).map(tuple), PAIRS)
def test_partitions_event_round_trip(
    sequence: int, assigned: tuple[int, ...], revoked: tuple[int, ...], positions: tuple[tuple[int, int], ...]
) -> None:
    decoded = decode_response(encode_stream_event_partitions(sequence, assigned, revoked, positions))
    assert decoded == StreamPartitions(sequence, assigned, revoked, positions)


@given(INT64, st.sampled_from(ErrorCode), st.text(max_size=40))
def test_ended_round_trip(sequence: int, code: ErrorCode, message: str) -> None:
    assert decode_response(encode_stream_event_ended(sequence, code, message)) == StreamEnded(sequence, code, message)


def batch_body(partition: int, records: list[Record], next_offset: int, high_watermark: int) -> bytes:
    """A StreamBatch in the server's order: the three numbers first, then the records."""
    numbers = pb.StreamBatch(partition=partition, next_offset=next_offset, high_watermark=high_watermark)
    messages = pb.StreamBatch(
        messages=[
            pb.KafkaMessage(
                offset=r.offset,
                timestamp=r.timestamp,
                key=r.key,
                value=r.value,
                headers=[pb.KafkaHeader(key=k, value=v) for k, v in r.headers],
            )
            for r in records
        ]
    )
    return numbers.SerializeToString() + messages.SerializeToString()


@given(sequence=INT64, partition=INT32, records=st.lists(RECORDS, max_size=4), next_offset=INT64, hw=INT64)
def test_stream_batch_decodes_in_either_field_order(
    sequence: int, partition: int, records: list[Record], next_offset: int, hw: int
) -> None:
    body = batch_body(partition, records, next_offset, hw)
    expected = StreamRecords(sequence, partition, tuple(records), next_offset, hw)
    framed = pb.PubSubResp(sequence=sequence, stream_batch=pb.StreamBatch.FromString(body)).SerializeToString()
    assert decode_response(framed) == expected
    # The server's own field order, written by hand: numbers before messages.
    head = pb.PubSubResp(sequence=sequence).SerializeToString()
    by_hand = head + b"\xa2\x02" + _varint(len(body)) + body
    assert decode_response(by_hand) == expected


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def test_an_empty_stream_batch_is_a_batch_of_no_records() -> None:
    frame = pb.PubSubResp(sequence=7, stream_batch=pb.StreamBatch()).SerializeToString()
    assert decode_response(frame) == StreamRecords(7, 0, (), 0, 0)


def test_a_stream_event_of_a_newer_server_is_an_unknown_response() -> None:
    assert decode_response(pb.PubSubResp(sequence=7, stream_event=pb.StreamEvent()).SerializeToString()) == (
        UnknownResponse(7)
    )
    only_partition = pb.PubSubResp(sequence=7, stream_event=pb.StreamEvent(partition=3)).SerializeToString()
    assert decode_response(only_partition) == UnknownResponse(7)
    # An event number this schema does not have (field 9 of StreamEvent), skipped as unknown.
    assert decode_response(b"\x08\x07\xaa\x02\x02\x48\x01") == UnknownResponse(7)


def test_the_events_enums_are_the_schemas() -> None:
    assert {edge.name: edge.value for edge in StartEdge} == dict(pb.StartEdge.items())
    assert {level.name: level.value for level in Isolation} == dict(pb.Isolation.items())


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (pb.CmdSubscribe(), "invalid subscribe: empty topic"),
        (pb.CmdSubscribe(topic="t", partitions=[0, -1]), "invalid subscribe: partition -1"),
        (pb.CmdSubscribe(topic="t", partitions=[-(2**31)]), f"invalid subscribe: partition {-(2**31)}"),
        (pb.CmdSubscribe(topic="t", partitions=[3, 1, 3]), "invalid subscribe: partition 3 listed twice"),
        (pb.CmdSubscribe(topic="t", edge=2), "invalid subscribe: edge 2"),  # type: ignore[arg-type]
        (pb.CmdSubscribe(topic="t", edge=-1), "invalid subscribe: edge -1"),  # type: ignore[arg-type]
        (pb.CmdSubscribe(topic="t", timestamp=-1), "invalid subscribe: timestamp -1"),
        (pb.CmdSubscribe(topic="t", timestamp=-(2**63)), f"invalid subscribe: timestamp {-(2**63)}"),
        (
            pb.CmdSubscribe(topic="t", offsets=pb.OffsetList(entries=[pb.PartitionOffset(partition=-2, offset=0)])),
            "invalid subscribe: offsets name partition -2",
        ),
        (
            pb.CmdSubscribe(
                topic="t",
                offsets=pb.OffsetList(
                    entries=[pb.PartitionOffset(partition=1, offset=5), pb.PartitionOffset(partition=1, offset=9)]
                ),
            ),
            "invalid subscribe: offsets name partition 1 twice",
        ),
        (
            pb.CmdSubscribe(
                topic="t", partitions=[0, 1], offsets=pb.OffsetList(entries=[pb.PartitionOffset(partition=5)])
            ),
            "invalid subscribe: offsets name partition 5, which is not in partitions",
        ),
        (
            pb.CmdSubscribe(topic="t", offsets=pb.OffsetList(entries=[pb.PartitionOffset(partition=0, offset=-3)])),
            "invalid subscribe: offset -3 for partition 0",
        ),
        (pb.CmdSubscribe(topic="t", credit=pb.Credit(records=-5)), "invalid subscribe: credit records -5"),
        (pb.CmdSubscribe(topic="t", credit=pb.Credit(records=1, bytes=-1)), "invalid subscribe: credit bytes -1"),
        (pb.CmdSubscribe(topic="t", isolation=2), "invalid subscribe: isolation 2"),  # type: ignore[arg-type]
        (pb.CmdSubscribe(topic="t", auto_commit=True), "invalid subscribe: auto_commit without a group"),
        # The first problem in field order is the one reported.
        (pb.CmdSubscribe(partitions=[-1], timestamp=-1), "invalid subscribe: empty topic"),
        (pb.CmdSubscribe(topic="t", partitions=[-1], timestamp=-1), "invalid subscribe: partition -1"),
        (
            pb.CmdSubscribe(topic="t", timestamp=-1, credit=pb.Credit(records=-1)),
            "invalid subscribe: timestamp -1",
        ),
        (
            pb.CmdSubscribe(topic="t", credit=pb.Credit(records=-1, bytes=-1), isolation=9),  # type: ignore[arg-type]
            "invalid subscribe: credit records -1",
        ),
    ],
)
def test_invalid_subscribe(command: pb.CmdSubscribe, message: str) -> None:
    assert decode_request(request(9, cmd_subscribe=command)) == Rejected(9, ErrorCode.INVALID_REQUEST, message)


ONLY_ALLOWED = "only ASCII letters, digits, '.', '_' and '-' are allowed"


@pytest.mark.parametrize(
    ("topic", "message"),
    [
        ("bad/name", f'invalid subscribe: invalid topic "bad/name": {ONLY_ALLOWED}'),
        ("..", f'invalid subscribe: invalid topic "..": {ONLY_ALLOWED}'),
        ('say "hi"\n', f'invalid subscribe: invalid topic "say \\"hi\\"\\n": {ONLY_ALLOWED}'),
        ("tüpic", f'invalid subscribe: invalid topic "t\\u00fcpic": {ONLY_ALLOWED}'),
        ("a" * 250, f'invalid subscribe: invalid topic "{"a" * 64}...": 250 characters, at most 249 allowed'),
    ],
)
def test_invalid_topic_names_are_echoed_shortened_and_quoted(topic: str, message: str) -> None:
    assert rejected(request(cmd_subscribe=pb.CmdSubscribe(topic=topic))) == message


@given(st.text(min_size=1, max_size=300).filter(lambda name: re.fullmatch(r"[a-zA-Z0-9._-]{1,249}", name) is None))
def test_an_invalid_topic_name_gives_one_short_line(topic: str) -> None:
    message = rejected(request(cmd_subscribe=pb.CmdSubscribe(topic=topic)))
    assert "\n" not in message
    assert message.isascii()
    quoted = re.fullmatch(r'invalid subscribe: invalid topic (".*"): .*', message)
    assert quoted is not None
    echoed = json.loads(quoted.group(1))
    assert echoed == (topic if len(topic) <= ECHOED_TOPIC_CHARS else topic[:ECHOED_TOPIC_CHARS] + "...")


@pytest.mark.parametrize(
    ("credit", "message"),
    [
        (pb.Credit(records=-5), "invalid credit: records -5"),
        (pb.Credit(records=5, bytes=-1), "invalid credit: bytes -1"),
        (pb.Credit(records=-(2**63), bytes=-1), f"invalid credit: records {-(2**63)}"),
    ],
)
def test_invalid_credit(credit: pb.Credit, message: str) -> None:
    frame = request(-4, cmd_credit=pb.CmdCredit(subscription=7, credit=credit))
    assert decode_request(frame) == Rejected(-4, ErrorCode.INVALID_REQUEST, message)


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (pb.CmdSeek(subscription=7, partition=-1, offset=0), "invalid seek: partition -1"),
        (pb.CmdSeek(subscription=7, partition=0), "invalid seek: no target"),
        (pb.CmdSeek(subscription=7, partition=0, edge=5), "invalid seek: edge 5"),  # type: ignore[arg-type]
        (pb.CmdSeek(subscription=7, partition=0, timestamp=-1), "invalid seek: timestamp -1"),
        (pb.CmdSeek(subscription=7, partition=0, offset=-3), "invalid seek: offset -3"),
        (pb.CmdSeek(subscription=7, partition=-1), "invalid seek: partition -1"),  # partition comes first
    ],
)
def test_invalid_seek(command: pb.CmdSeek, message: str) -> None:
    assert decode_request(request(2, cmd_seek=command)) == Rejected(2, ErrorCode.INVALID_REQUEST, message)


@pytest.mark.parametrize("subscription", [0, -1, 2**63 - 1, -(2**63)])
def test_any_int64_may_name_a_stream(subscription: int) -> None:
    assert decode_request(encode_unsubscribe_request(1, subscription)) == Unsubscribe(1, subscription)
    assert decode_request(encode_credit_request(1, subscription, Grant(1))) == AddCredit(1, subscription, Grant(1))


def test_zero_is_a_valid_start_and_seek_target() -> None:
    start = decode_request(encode_subscribe_request(1, "t", start=AtTimestamp(0)))
    assert isinstance(start, Subscribe)
    assert start.start == AtTimestamp(0)
    assert decode_request(encode_seek_request(1, 7, 0, AtOffset(0))) == Seek(1, 7, 0, AtOffset(0))


# ------------------------------------------------------------------ never raises


def mutated(data: st.DataObject, frame: bytes) -> bytes:
    """One to four blind edits of ``frame``: truncate, flip a bit, insert, delete, duplicate."""
    edited = bytearray(frame)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(edited)))
        operation = data.draw(st.integers(0, 4))
        if operation == 0:
            del edited[at:]
        elif operation == 1 and edited:
            edited[min(at, len(edited) - 1)] ^= 1 << data.draw(st.integers(0, 7))
        elif operation == 2:
            edited[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        elif operation == 3:
            del edited[at : at + data.draw(st.integers(1, 8))]
        else:
            edited[at:at] = edited[at : at + data.draw(st.integers(1, 16))]
    return bytes(edited)


VALID_STREAM_FRAMES = st.one_of(
    subscribes().map(subscribe_frame),
    st.builds(encode_credit_request, INT64, INT64, GRANTS),
    st.builds(encode_unsubscribe_request, INT64, INT64),
    st.builds(encode_seek_request, INT64, INT64, PARTITIONS, SEEK_TARGETS),
)


def assert_a_sound_request(decoded: Request) -> None:
    assert isinstance(decoded, Request)
    if isinstance(decoded, Rejected):
        assert decoded.code == ErrorCode.INVALID_REQUEST
        assert re.fullmatch(r"invalid (subscribe|credit|seek): [^\n]+", decoded.message), decoded.message


@given(VALID_STREAM_FRAMES, st.data())
def test_decode_never_raises_on_mutated_stream_frames(frame: bytes, data: st.DataObject) -> None:
    assert_a_sound_request(decode_request(mutated(data, frame)))


@given(st.sampled_from([35, 36, 37, 38, 39]), st.binary(max_size=120), INT64)
def test_decode_never_raises_on_any_stream_command_body(number: int, body: bytes, sequence: int) -> None:
    tag = _varint(number << 3 | 2)
    assert_a_sound_request(decode_request(_varint(8) + _varint(sequence % 2**64) + tag + _varint(len(body)) + body))


@given(st.binary(max_size=200))
def test_decode_response_never_raises(frame: bytes) -> None:
    assert isinstance(decode_response(frame), Response)


# ------------------------------------------------------------------ the connection, until streams are served


@pytest.mark.parametrize(
    "frame",
    [
        encode_subscribe_request(21, "orders"),
        encode_credit_request(21, 7, Grant(1)),
        encode_unsubscribe_request(21, 7),
        encode_seek_request(21, 7, 0, StartEdge.EARLIEST),
        request(21, cmd_subscribe=pb.CmdSubscribe(topic="orders", partitions=[-1])),  # Rejected
        request(21, cmd_commit=pb.CmdCommit(subscription=7)),
    ],
)
def test_stream_commands_are_answered_unknown_command_until_streams_are_served(frame: bytes) -> None:
    connection = ServerConnection(max_message_size=1 << 20)
    reply = connection.receive(frame)
    assert reply == Reply(encode_error(21, ErrorCode.UNKNOWN_COMMAND, UNKNOWN_COMMAND_MESSAGE))
    assert connection.errors == 1


# ------------------------------------------------------------------ the documented examples

#: schema/README.md, "Streams", "Examples": each frame in the order the page shows it, what it
#: decodes to, and the codec call that writes it (None: the batch, which the page writes in the
#: server's field order).
DOCUMENTED = [
    (
        "request",
        Subscribe(7, "orders", (0, 1), StartEdge.EARLIEST, Filter(key_prefix=b"eu-"), Grant(records=100)),
        encode_subscribe_request(
            7,
            "orders",
            partitions=[0, 1],
            start=StartEdge.EARLIEST,
            filter=Filter(key_prefix=b"eu-"),
            credit=Grant(100),
        ),
    ),
    ("answer", SubscribeAnswer(7, ((0, 12), (1, 40))), encode_subscribe_answer(7, [(0, 12), (1, 40)])),
    ("push", StreamRecords(7, 1, (Record(40, 1_700_000_000_000, b"eu-1", b"pallet"),), 41, 45), None),
    ("push", StreamCaughtUp(7, 1), encode_stream_event_caught_up(7, 1)),
    (
        "push",
        StreamError(7, ErrorCode.BROKER_UNREACHABLE, "broker unreachable: 127.0.0.1:59092", 1),
        encode_stream_event_error(7, ErrorCode.BROKER_UNREACHABLE, "broker unreachable: 127.0.0.1:59092", 1),
    ),
    ("push", StreamPartitions(7, (2,), (), ((2, 0),)), encode_stream_event_partitions(7, [2], [], [(2, 0)])),
    (
        "push",
        StreamEnded(7, ErrorCode.TOPIC_NOT_FOUND, "not found topic"),
        encode_stream_event_ended(7, ErrorCode.TOPIC_NOT_FOUND, "not found topic"),
    ),
    (
        "request",
        Subscribe(8, "orders", start=AtOffsets(((0, 42),)), credit=Grant()),
        encode_subscribe_request(8, "orders", start=AtOffsets(((0, 42),)), credit=Grant()),
    ),
    ("request", AddCredit(9, 7, Grant(100, 1 << 20)), encode_credit_request(9, 7, Grant(100, 1 << 20))),
    ("request", Seek(10, 7, 1, AtOffset(0)), encode_seek_request(10, 7, 1, AtOffset(0))),
    ("answer", OkAnswer(10), encode_ok(10)),
    ("request", Unsubscribe(11, 7), encode_unsubscribe_request(11, 7)),
    ("answer", OkAnswer(11), encode_ok(11)),
    (
        "request",
        Rejected(12, ErrorCode.INVALID_REQUEST, "invalid subscribe: partition -1"),
        encode_subscribe_request(12, "orders", partitions=[-1]),
    ),
    (
        "answer",
        ErrorAnswer(12, ErrorCode.INVALID_REQUEST, "invalid subscribe: partition -1"),
        encode_error(12, ErrorCode.INVALID_REQUEST, "invalid subscribe: partition -1"),
    ),
]

_FRAME_LINE = re.compile(r"^(request|answer|push) {2,}(.*)$", re.MULTILINE)
_TOKEN = re.compile(r'"([^"]*)"|([0-9a-f]{2})(?![0-9a-f])')


def documented_frames(section: str) -> list[tuple[str, bytes]]:
    """The frames the README's section shows: hex bytes, with "quoted" text standing for its ASCII bytes."""
    text = README.read_text()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    frames = []
    for kind, line in _FRAME_LINE.findall(body):
        data = b"".join(
            quoted.encode() if quoted or not hex_byte else bytes.fromhex(hex_byte)
            for quoted, hex_byte in _TOKEN.findall(re.split(r" {4,}", line)[0])  # what follows is a comment
        )
        frames.append((kind, data))
    return frames


def test_the_streams_examples_are_the_documented_ones() -> None:
    assert [kind for kind, _ in documented_frames("Streams")] == [kind for kind, _, _ in DOCUMENTED]


def check_documented_example(section: str, documented: Sequence[tuple[str, object, bytes | None]], index: int) -> None:
    """Frame ``index`` of the section: of its kind, decoding to its values, and what the codec writes (unless None)."""
    kind, expected, written = documented[index]
    documented_kind, frame = documented_frames(section)[index]
    assert documented_kind == kind
    decoded = decode_request(frame) if kind == "request" else decode_response(frame)
    assert decoded == expected
    if written is not None:
        assert frame == written, "the codec writes other bytes than the page shows"


@pytest.mark.parametrize("index", range(len(DOCUMENTED)))
def test_each_streams_example_decodes_to_its_values(index: int) -> None:
    check_documented_example("Streams", DOCUMENTED, index)


NOT_ASSIGNED_0 = "partition 0 is not assigned to stream 20 (or was revoked)"
PARTITIONS_WITH_GROUP = "invalid subscribe: partitions with a group: the group assigns them"
#: schema/README.md, "Consumer groups", "Examples": each frame in the page's order, what it decodes
#: to, and the codec call that writes it.
DOCUMENTED_GROUPS = [
    (
        "request",
        Subscribe(20, "orders", start=StartEdge.EARLIEST, credit=Grant(records=100), group="billing"),
        encode_subscribe_request(20, "orders", start=StartEdge.EARLIEST, credit=Grant(100), group="billing"),
    ),
    ("answer", SubscribeAnswer(20, ((0, 12), (2, 7))), encode_subscribe_answer(20, [(0, 12), (2, 7)])),
    ("request", Commit(21, 20), encode_commit_request(21, 20)),
    ("answer", OkAnswer(21), encode_ok(21)),
    ("request", Commit(22, 20, ((2, 40),)), encode_commit_request(22, 20, [(2, 40)])),
    ("answer", OkAnswer(22), encode_ok(22)),
    ("push", StreamPartitions(20, (), (0, 2), ()), encode_stream_event_partitions(20, [], [0, 2], [])),
    ("push", StreamPartitions(20, (2,), (), ((2, 40),)), encode_stream_event_partitions(20, [2], [], [(2, 40)])),
    ("request", Commit(23, 20, ((0, 15),)), encode_commit_request(23, 20, [(0, 15)])),
    (
        "answer",
        ErrorAnswer(23, ErrorCode.NOT_ASSIGNED, NOT_ASSIGNED_0),
        encode_error(23, ErrorCode.NOT_ASSIGNED, NOT_ASSIGNED_0),
    ),
    (
        "request",
        Rejected(24, ErrorCode.INVALID_REQUEST, PARTITIONS_WITH_GROUP),
        encode_subscribe_request(24, "orders", partitions=[0], group="billing"),
    ),
    (
        "answer",
        ErrorAnswer(24, ErrorCode.INVALID_REQUEST, PARTITIONS_WITH_GROUP),
        encode_error(24, ErrorCode.INVALID_REQUEST, PARTITIONS_WITH_GROUP),
    ),
]


def test_the_consumer_groups_examples_are_the_documented_ones() -> None:
    assert [kind for kind, _ in documented_frames("Consumer groups")] == [kind for kind, _, _ in DOCUMENTED_GROUPS]


@pytest.mark.parametrize("index", range(len(DOCUMENTED_GROUPS)))
def test_each_consumer_groups_example_decodes_to_its_values_and_is_what_the_codec_writes(index: int) -> None:
    check_documented_example("Consumer groups", DOCUMENTED_GROUPS, index)


def test_the_documented_auto_commit_variant_is_what_the_codec_writes() -> None:
    """The page says the group subscribe with auto_commit ends in 50 01 and has the length byte 19."""
    _, plain = documented_frames("Consumer groups")[0]
    with_auto_commit = encode_subscribe_request(
        20, "orders", start=StartEdge.EARLIEST, credit=Grant(100), group="billing", auto_commit=True
    )
    assert with_auto_commit == plain[:4] + b"\x19" + plain[5:] + b"\x50\x01"


def test_the_documented_batch_puts_the_numbers_before_the_messages() -> None:
    batch = next(frame for kind, frame in documented_frames("Streams") if kind == "push" and frame[2:4] == b"\xa2\x02")
    body = batch[5:]
    assert [body[0], body[2], body[4], body[6]] == [0x08, 0x18, 0x20, 0x12]  # fields 1, 3, 4, then 2


def test_the_unknown_command_example_uses_a_free_number() -> None:
    [frame] = [frame for kind, frame in documented_frames("Commands") if kind == "request" and frame[:2] == b"\x08\x2a"]
    assert decode_request(frame) == UnknownCommand(42)
    assert frame[2:4] == b"\xe2\x03"  # field 60: 35 to 41 are taken or planned


# ------------------------------------------------------------ group offsets


@given(sequence=INT64, group=st.text(min_size=1, max_size=MAX_GROUP_NAME), topic=TOPICS)
def test_group_offsets_round_trip(sequence: int, group: str, topic: str) -> None:
    assert decode_request(encode_group_offsets_request(sequence, group, topic)) == GroupOffsets(sequence, group, topic)


@given(sequence=INT64, committed=st.lists(st.tuples(PARTITIONS, NON_NEGATIVE_INT64), unique_by=lambda p: p[0]))
def test_group_offsets_answer_round_trip_in_partition_order(sequence: int, committed: list[tuple[int, int]]) -> None:
    answer = decode_response(encode_group_offsets_answer(sequence, committed))
    assert answer == GroupOffsetsAnswer(sequence, tuple(sorted(committed)))


@pytest.mark.parametrize(
    ("group", "topic", "problem"),
    [
        ("", "t", "empty group"),
        ("g" * (MAX_GROUP_NAME + 1), "t", f"group name of {MAX_GROUP_NAME + 1} characters, more than 255"),
        ("g", "", "empty topic"),
        ("g", "a b", "invalid topic \"a b\": only ASCII letters, digits, '.', '_' and '-' are allowed"),
    ],
)
def test_group_offsets_that_cannot_be_valid_are_refused(group: str, topic: str, problem: str) -> None:
    assert rejected(encode_group_offsets_request(5, group, topic)) == f"invalid group offsets: {problem}"


def test_group_offsets_are_an_unknown_command_where_groups_are_not_served() -> None:
    frame = encode_group_offsets_request(5, "g", "t")
    reply = ServerConnection(1 << 20, streams=True).receive(frame)
    assert isinstance(reply, Reply)
    assert decode_response(reply.frame) == ErrorAnswer(5, ErrorCode.UNKNOWN_COMMAND, UNKNOWN_COMMAND_MESSAGE)
    assert isinstance(ServerConnection(1 << 20, groups=True).receive(frame), GroupAction)
