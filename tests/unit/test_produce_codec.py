"""CmdProduce, CmdTxn and ProduceResp in the codec (schema/README.md, "Produce and transactions"):
round trips both ways, every validation rule with its exact message, and what a connection without
a producer answers. Synchronous, no broker, no Trio."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_stream_codec import check_documented_example, documented_frames

from kafka_ws_trio._pb import pubsub_pb2 as pb
from kafka_ws_trio._proto import (
    MAX_PRODUCE_RECORDS,
    PRODUCE_RESULT_BOUND,
    UNKNOWN_COMMAND_MESSAGE,
    Acks,
    ErrorAnswer,
    ErrorCode,
    NotWritten,
    OkAnswer,
    OutRecord,
    Produce,
    ProduceAction,
    ProduceAnswer,
    Rejected,
    Reply,
    ServerConnection,
    Txn,
    TxnAction,
    Written,
    decode_request,
    decode_response,
    encode_error,
    encode_ok,
    encode_produce_answer,
    encode_produce_request,
    encode_txn_request,
    produce_answer_code,
    produce_error,
)

INT64 = st.integers(-(2**63), 2**63 - 1)
INT32 = st.integers(0, 2**31 - 1)
BLOBS = st.none() | st.binary(max_size=20)
HEADERS = st.lists(st.tuples(st.text(max_size=8), st.binary(max_size=8)), max_size=3).map(tuple)


@st.composite
def out_records(draw: st.DrawFn) -> OutRecord:
    key = draw(BLOBS)
    value = draw(st.binary(max_size=20)) if key is None else draw(BLOBS)  # never both null
    return OutRecord(
        key=key,
        value=value,
        headers=draw(HEADERS),
        partition=draw(st.none() | INT32),
        timestamp=draw(st.integers(0, 2**63 - 1)),
    )


def produce_frame(sequence: int = 7, **fields: object) -> bytes:
    return pb.PubSubReq(sequence=sequence, cmd_produce=pb.CmdProduce(**fields)).SerializeToString()  # type: ignore[arg-type]


@given(
    sequence=INT64,
    topic=st.from_regex(r"[a-zA-Z0-9._-]{1,30}", fullmatch=True).filter(lambda t: t not in (".", "..")),
    records=st.lists(out_records(), min_size=1, max_size=5).map(tuple),
    acks=st.sampled_from(Acks),
    transactional=st.booleans(),
)
def test_produce_round_trips(
    sequence: int, topic: str, records: tuple[OutRecord, ...], acks: Acks, transactional: bool
) -> None:
    frame = encode_produce_request(sequence, topic, records, acks=acks, transactional=transactional)
    assert decode_request(frame) == Produce(sequence, topic, records, acks, transactional)


def test_null_and_empty_keys_and_values_stay_distinct() -> None:
    records = (
        OutRecord(key=b"k", value=None),
        OutRecord(key=b"", value=b""),
        OutRecord(key=None, value=b""),
    )
    decoded = decode_request(encode_produce_request(1, "t", records))
    assert isinstance(decoded, Produce)
    assert [(r.key, r.value) for r in decoded.records] == [(b"k", None), (b"", b""), (None, b"")]


@given(sequence=INT64, action=st.sampled_from(TxnAction))
def test_txn_round_trips(sequence: int, action: TxnAction) -> None:
    assert decode_request(encode_txn_request(sequence, action)) == Txn(sequence, action)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"topic": "", "records": [pb.ProduceRecord(value=b"v")]}, "invalid produce: empty topic"),
        (
            {"topic": "a b", "records": [pb.ProduceRecord(value=b"v")]},
            "invalid produce: invalid topic \"a b\": only ASCII letters, digits, '.', '_' and '-' are allowed",
        ),
        ({"topic": "t"}, "invalid produce: no records"),
        (
            {"topic": "t", "records": [pb.ProduceRecord(value=b"v"), pb.ProduceRecord(partition=-1, value=b"v")]},
            "invalid produce: record 1: partition -1",
        ),
        (
            {"topic": "t", "records": [pb.ProduceRecord()]},
            "invalid produce: record 0: neither key nor value (a tombstone needs a key)",
        ),
        (
            {"topic": "t", "records": [pb.ProduceRecord(value=b"v", headers=[pb.KafkaHeader(key="h")])]},
            "invalid produce: record 0: header 'h' has a null value, which the producer cannot write",
        ),
        (
            {"topic": "t", "records": [pb.ProduceRecord(value=b"v", timestamp=-5)]},
            "invalid produce: record 0: timestamp -5",
        ),
        ({"topic": "t", "records": [pb.ProduceRecord(value=b"v")], "acks": 9}, "invalid produce: acks 9"),
    ],
)
def test_a_produce_that_cannot_be_valid_is_rejected_whole(fields: dict[str, object], message: str) -> None:
    assert decode_request(produce_frame(**fields)) == Rejected(7, ErrorCode.INVALID_REQUEST, message)


def test_more_records_than_one_command_may_carry_is_rejected_before_they_are_read() -> None:
    records = [pb.ProduceRecord(value=b"")] * (MAX_PRODUCE_RECORDS + 1)
    expected = f"invalid produce: {MAX_PRODUCE_RECORDS + 1} records, at most {MAX_PRODUCE_RECORDS} in one command"
    assert decode_request(produce_frame(topic="t", records=records)) == Rejected(7, ErrorCode.INVALID_REQUEST, expected)
    at_most = decode_request(produce_frame(topic="t", records=records[:MAX_PRODUCE_RECORDS]))
    assert isinstance(at_most, Produce)
    assert len(at_most.records) == MAX_PRODUCE_RECORDS


@pytest.mark.parametrize("action", [0, 4, -1])
def test_a_txn_without_a_known_action_is_rejected(action: int) -> None:
    frame = pb.PubSubReq(sequence=3, cmd_txn=pb.CmdTxn(action=action)).SerializeToString()  # type: ignore[arg-type]
    assert decode_request(frame) == Rejected(3, ErrorCode.INVALID_REQUEST, f"invalid txn: action {action}")


RESULTS = st.one_of(
    st.builds(Written, partition=INT32, offset=st.integers(-1, 2**62), timestamp=st.integers(-1, 2**62)),
    st.builds(NotWritten, partition=st.integers(-1, 2**31 - 1), code=st.sampled_from(ErrorCode), message=st.text()),
)


@given(sequence=INT64, results=st.lists(RESULTS, max_size=6).map(tuple))
def test_produce_answer_round_trips(sequence: int, results: tuple[Written | NotWritten, ...]) -> None:
    assert decode_response(encode_produce_answer(sequence, results)) == ProduceAnswer(sequence, results)


def test_a_failed_record_carries_offset_minus_one_and_its_error() -> None:
    frame = encode_produce_answer(4, [NotWritten(2, ErrorCode.RECORD_TOO_LARGE, produce_error("t", 2, "too big"))])
    result = pb.PubSubResp.FromString(frame).produce_resp.results[0]
    assert (result.partition, result.offset, result.error.code) == (2, -1, ErrorCode.RECORD_TOO_LARGE)
    assert result.error.message == "failed to produce message, topic: t, partition: 2, err: too big"


def test_a_connection_that_produces_hands_produce_and_txn_to_the_session() -> None:
    connection = ServerConnection(1024, produce=True)
    produce = encode_produce_request(5, "t", [OutRecord(value=b"v")])
    assert connection.receive(produce) == ProduceAction(Produce(5, "t", (OutRecord(value=b"v"),)))
    assert connection.receive(encode_txn_request(6, TxnAction.BEGIN)) == ProduceAction(Txn(6, TxnAction.BEGIN))
    rejected = connection.receive(produce_frame(8, topic="t"))
    assert isinstance(rejected, Reply)
    assert decode_response(rejected.frame) == ErrorAnswer(8, ErrorCode.INVALID_REQUEST, "invalid produce: no records")
    assert connection.errors == 1


@pytest.mark.parametrize(
    "frame",
    [
        encode_produce_request(5, "t", [OutRecord(value=b"v")]),
        encode_txn_request(5, TxnAction.COMMIT),
        produce_frame(5, topic="t"),  # a produce that would be rejected: still "unknown" here
    ],
)
def test_a_connection_without_a_producer_does_not_know_produce_commands(frame: bytes) -> None:
    connection = ServerConnection(1024, streams=True, produce=False)
    reply = connection.receive(frame)
    assert isinstance(reply, Reply)
    assert decode_response(reply.frame) == ErrorAnswer(5, ErrorCode.UNKNOWN_COMMAND, UNKNOWN_COMMAND_MESSAGE)


# ------------------------------------------------------------------ the documented examples

NOT_FOUND_2 = "failed to produce message, topic: orders, partition: 2, err: not found partition (the topic has 2)"
TXN_NOT_OPEN = "no transaction is open (send TXN_BEGIN first)"
#: schema/README.md, "Produce and transactions", "Examples": each frame in the page's order, what it
#: decodes to, and the codec call that writes it.
DOCUMENTED = [
    (
        "request",
        Produce(
            13,
            "orders",
            (OutRecord(key=b"eu-1", value=b"pallet", headers=(("src", b"web"),)), OutRecord(key=b"eu-1", partition=2)),
        ),
        encode_produce_request(
            13,
            "orders",
            [OutRecord(key=b"eu-1", value=b"pallet", headers=(("src", b"web"),)), OutRecord(key=b"eu-1", partition=2)],
        ),
    ),
    (
        "answer",
        ProduceAnswer(
            13, (Written(1, 41, 1_700_000_000_000), NotWritten(2, ErrorCode.PARTITION_NOT_FOUND, NOT_FOUND_2))
        ),
        encode_produce_answer(
            13, [Written(1, 41, 1_700_000_000_000), NotWritten(2, ErrorCode.PARTITION_NOT_FOUND, NOT_FOUND_2)]
        ),
    ),
    ("request", Txn(14, TxnAction.BEGIN), encode_txn_request(14, TxnAction.BEGIN)),
    ("answer", OkAnswer(14), encode_ok(14)),
    (
        "request",
        Produce(15, "orders", (OutRecord(value=b"x"),), Acks.ALL, True),
        encode_produce_request(15, "orders", [OutRecord(value=b"x")], acks=Acks.ALL, transactional=True),
    ),
    ("request", Txn(16, TxnAction.COMMIT), encode_txn_request(16, TxnAction.COMMIT)),
    (
        "answer",
        ErrorAnswer(17, ErrorCode.TXN_NOT_OPEN, TXN_NOT_OPEN),
        encode_error(17, ErrorCode.TXN_NOT_OPEN, TXN_NOT_OPEN),
    ),
    (
        "request",
        Rejected(18, ErrorCode.INVALID_REQUEST, "invalid produce: no records"),
        produce_frame(18, topic="orders"),
    ),
    (
        "answer",
        ErrorAnswer(18, ErrorCode.INVALID_REQUEST, "invalid produce: no records"),
        encode_error(18, ErrorCode.INVALID_REQUEST, "invalid produce: no records"),
    ),
]


def test_the_produce_examples_are_the_documented_ones() -> None:
    assert [kind for kind, _ in documented_frames("Produce and transactions")] == [kind for kind, _, _ in DOCUMENTED]


@pytest.mark.parametrize("index", range(len(DOCUMENTED)))
def test_each_produce_example_decodes_to_its_values_and_is_what_the_codec_writes(index: int) -> None:
    check_documented_example("Produce and transactions", DOCUMENTED, index)


def test_an_answer_too_large_for_the_frame_limit_is_made_to_fit() -> None:
    """Repeated messages become "as record <i>", then messages are cut; the worst case of a command's
    records always fits max_message_size (PRODUCE_RESULT_BOUND bytes a record)."""
    long = produce_error("t" * 249, -1, "x" * 300)
    results = [NotWritten(-1, ErrorCode.TIMEOUT, long)] * 3 + [Written(0, 5, 1)]
    compact = decode_response(encode_produce_answer(1, results, 1000))
    assert isinstance(compact, ProduceAnswer)
    assert [getattr(r, "message", None) for r in compact.results] == [long, "as record 0", "as record 0", None]
    distinct = [NotWritten(2**31 - 1, ErrorCode.RECORD_TOO_LARGE, f"{i}: " + "y" * 500) for i in range(10_000)]
    limit = 10_000 * PRODUCE_RESULT_BOUND
    frame = encode_produce_answer(1, distinct, limit)
    assert len(frame) <= limit
    cut = decode_response(frame)
    assert isinstance(cut, ProduceAnswer)
    assert all(isinstance(r, NotWritten) and len(r.message) <= 24 for r in cut.results)
    assert encode_produce_answer(1, results) == encode_produce_answer(1, results, 1 << 20)  # fits: unchanged


def test_a_produce_answer_counts_as_an_error_only_when_no_record_was_written() -> None:
    failed = NotWritten(partition=-1, code=int(ErrorCode.TOPIC_NOT_FOUND), message="not found topic")
    timed_out = NotWritten(partition=0, code=int(ErrorCode.TIMEOUT), message="timed out")
    written = Written(partition=0, offset=5, timestamp=1)
    assert produce_answer_code([failed, timed_out]) == int(ErrorCode.TOPIC_NOT_FOUND)
    assert produce_answer_code([written, failed]) == 0
    assert produce_answer_code([failed, written]) == 0
    assert produce_answer_code([]) == 0
