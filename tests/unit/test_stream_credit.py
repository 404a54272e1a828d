"""Push streams without I/O (PROTOCOL.md 5.3): credit, batches, framing, and one connection's streams."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from kafka_ws_trio._pb import pubsub_pb2 as pb
from kafka_ws_trio._proto._entries import Entries, encode_message_entry
from kafka_ws_trio._proto._errors import CommandFailed, ErrorCode
from kafka_ws_trio._proto._events import (
    AddCredit,
    AtOffset,
    AtOffsets,
    AtTimestamp,
    Filter,
    Grant,
    HeaderMatch,
    Record,
    Seek,
    StartEdge,
    Subscribe,
)
from kafka_ws_trio._proto._filters import FilterSet
from kafka_ws_trio._proto._streams import (
    DEFAULT_GRANT,
    MAX_CREDIT_BYTES,
    MAX_CREDIT_RECORDS,
    MEMORYVIEW_FROM,
    STREAM_FRAME_OVERHEAD,
    Chunk,
    PushBatch,
    Stream,
    StreamLimits,
    Streams,
    batch_body,
    encode_stream_batch_head,
)

BIG = 1 << 20


def log(keys: Sequence[bytes | None], *, offsets: Sequence[int] | None = None, value: bytes = b"v") -> list[Record]:
    """Records with these keys, at these offsets (0, 1, 2 ... by default)."""
    at = range(len(keys)) if offsets is None else offsets
    return [Record(offset, 1_700_000_000_000 + offset, key, value) for offset, key in zip(at, keys, strict=True)]


def chunk_of(
    records: Sequence[Record], start: int, end: int, high_watermark: int | None = None, partition: int = 0
) -> Chunk:
    """The read of ``[start, end)`` of ``partition`` its hub would offer the streams on it."""
    inside = [r for r in records if start <= r.offset < end]
    entries = Entries.of(
        [r.offset for r in inside],
        [encode_message_entry(r.offset, r.timestamp, r.key, r.value, r.headers) for r in inside],
    )
    return Chunk(
        partition,
        entries,
        start,
        end,
        end if high_watermark is None else high_watermark,
        [r.key for r in inside],
        [r.headers for r in inside],
    )


def subscribe(sequence: int = 7, *, partitions: tuple[int, ...] = (0,), **fields: object) -> Subscribe:
    return Subscribe(sequence=sequence, topic="orders", partitions=partitions, **fields)


HUNDRED = Grant(records=100)
EVERYTHING = Filter()


def open_stream(credit: Grant | None = HUNDRED, filter_: Filter = EVERYTHING, max_message_size: int = BIG) -> Stream:
    """A stream on partition 0, placed at offset 0."""
    stream = Streams(max_message_size).open(subscribe(credit=credit, filter=filter_))
    assert stream.place(0, 0, epoch=0)
    return stream


def parsed(batch: PushBatch) -> pb.PubSubResp:
    return pb.PubSubResp.FromString(b"".join(batch.frame()))


def as_record(message: pb.KafkaMessage) -> Record:
    return Record(
        message.offset,
        message.timestamp,
        message.key if message.HasField("key") else None,
        message.value if message.HasField("value") else None,
        tuple((h.key, h.value if h.HasField("value") else None) for h in message.headers),
    )


def sent(batch: PushBatch) -> list[int]:
    return [message.offset for message in parsed(batch).stream_batch.messages]


def failure(call: object, *args: object) -> CommandFailed:
    with pytest.raises(CommandFailed) as failed:
        call(*args)
    assert "\n" not in failed.value.reason
    return failed.value


def entry_size(record: Record) -> int:
    return len(encode_message_entry(record.offset, record.timestamp, record.key, record.value, record.headers))


# ------------------------------------------------------------------- credit


def test_a_stream_at_zero_credit_sends_nothing() -> None:
    stream = open_stream(credit=Grant())
    records = log([b"a", b"b"])
    assert stream.credit.paused
    assert stream.cut(chunk_of(records, 0, 2)) is None
    assert stream.position(0) == 0


def test_a_paused_stream_does_not_move_even_past_records_its_filter_rejects() -> None:
    stream = open_stream(credit=Grant(), filter_=Filter(key_equals=(b"wanted",)))
    assert stream.cut(chunk_of(log([b"a", b"b"]), 0, 2)) is None
    assert stream.position(0) == 0


def test_a_grant_resumes_a_paused_stream() -> None:
    session = Streams(BIG)
    stream = session.open(subscribe(credit=Grant()))
    stream.place(0, 0, epoch=0)
    assert session.add_credit(AddCredit(sequence=8, subscription=7, grant=Grant(records=1))) is stream
    batch = stream.cut(chunk_of(log([b"a", b"b"]), 0, 2))
    assert batch is not None
    assert sent(batch) == [0]


def test_a_batch_never_holds_more_records_than_the_record_credit() -> None:
    stream = open_stream(credit=Grant(records=3))
    chunk = chunk_of(log([b"k"] * 10), 0, 10)
    batch = stream.cut(chunk)
    assert batch is not None
    assert sent(batch) == [0, 1, 2]
    assert batch.next_offset == 3
    assert stream.credit.records == 0
    assert stream.cut(chunk) is None


def test_byte_credit_counts_only_once_bytes_were_granted() -> None:
    stream = open_stream(credit=Grant(records=10))
    chunk = chunk_of(log([b"k"] * 10), 0, 10)
    batch = stream.cut(chunk)
    assert batch is not None
    assert batch.count == 10
    assert batch.charged == 0
    assert stream.credit.bytes == 0


def test_byte_credit_is_overshot_by_at_most_one_record() -> None:
    records = log([b"k"] * 10, value=b"x" * 90)
    sizes = [entry_size(r) for r in records]
    stream = open_stream(credit=Grant(records=10, bytes=sizes[0] + sizes[1] + sizes[2] // 2))
    batch = stream.cut(chunk_of(records, 0, 10))
    assert batch is not None
    assert sent(batch) == [0, 1, 2]  # the third record starts inside the credit and passes it
    assert batch.size == batch.charged == sum(sizes[:3])
    assert stream.credit.bytes == sizes[2] // 2 - sizes[2]
    assert stream.credit.paused


def test_a_record_that_reaches_the_byte_credit_exactly_ends_the_batch() -> None:
    records = log([b"k"] * 10, value=b"x" * 90)
    sizes = [entry_size(r) for r in records]
    stream = open_stream(credit=Grant(records=10, bytes=sizes[0] + sizes[1]))
    batch = stream.cut(chunk_of(records, 0, 10))
    assert batch is not None
    assert batch.count == 2
    assert stream.credit.bytes == 0
    assert stream.credit.paused


def test_an_overshoot_is_paid_by_the_next_byte_grant_before_the_stream_resumes() -> None:
    records = log([b"k"] * 10, value=b"x" * 90)
    session = Streams(BIG)
    stream = session.open(subscribe(credit=Grant(records=10, bytes=1)))
    stream.place(0, 0, epoch=0)
    chunk = chunk_of(records, 0, 10)
    assert stream.cut(chunk) is not None
    session.add_credit(AddCredit(sequence=9, subscription=7, grant=Grant(bytes=entry_size(records[0]) - 1)))
    assert stream.credit.bytes == 0
    assert stream.cut(chunk) is None
    session.add_credit(AddCredit(sequence=10, subscription=7, grant=Grant(bytes=1)))
    batch = stream.cut(chunk)
    assert batch is not None
    assert sent(batch) == [1]


def test_a_record_grant_alone_leaves_byte_credit_in_force_once_bytes_were_granted() -> None:
    records = log([b"k"] * 4, value=b"x" * 90)
    session = Streams(BIG)
    stream = session.open(subscribe(credit=Grant(records=1, bytes=1)))
    stream.place(0, 0, epoch=0)
    assert stream.cut(chunk_of(records, 0, 4)) is not None
    session.add_credit(AddCredit(sequence=9, subscription=7, grant=Grant(records=5)))
    assert stream.credit.paused
    assert stream.cut(chunk_of(records, 0, 4)) is None


@pytest.mark.parametrize(
    ("held", "grant", "bound"),
    [
        (Grant(records=MAX_CREDIT_RECORDS), Grant(records=1), MAX_CREDIT_RECORDS),
        (Grant(records=1, bytes=MAX_CREDIT_BYTES - 5), Grant(records=1, bytes=6), MAX_CREDIT_BYTES),
        (Grant(records=1), Grant(records=2**62), MAX_CREDIT_RECORDS),
    ],
)
def test_a_grant_past_the_bound_is_refused_whole_and_changes_nothing(held: Grant, grant: Grant, bound: int) -> None:
    session = Streams(BIG)
    stream = session.open(subscribe(credit=held))
    before = (stream.credit.records, stream.credit.bytes, stream.credit.counts_bytes)
    refused = failure(session.add_credit, AddCredit(sequence=9, subscription=7, grant=grant))
    assert refused.code == ErrorCode.CREDIT_LIMIT
    assert str(bound) in refused.reason
    assert "stream 7" in refused.reason
    assert (stream.credit.records, stream.credit.bytes, stream.credit.counts_bytes) == before


def test_credit_may_be_granted_up_to_the_bound_exactly() -> None:
    stream = open_stream(credit=Grant(records=MAX_CREDIT_RECORDS, bytes=MAX_CREDIT_BYTES))
    assert (stream.credit.records, stream.credit.bytes) == (MAX_CREDIT_RECORDS, MAX_CREDIT_BYTES)


# ------------------------------------------------------------------ filters


def test_rejected_records_use_no_credit_and_move_next_offset() -> None:
    session = Streams(BIG)
    stream = session.open(subscribe(credit=Grant(records=1), filter=Filter(key_equals=(b"a",))))
    stream.place(0, 0, epoch=0)
    chunk = chunk_of(log([b"a", b"b", b"b", b"a", b"b"]), 0, 5)
    first = stream.cut(chunk)
    assert first is not None
    assert sent(first) == [0]
    assert first.next_offset == 3  # past the rejected 1 and 2, at the next accepted record
    session.add_credit(AddCredit(sequence=8, subscription=7, grant=Grant(records=1)))
    second = stream.cut(chunk)
    assert second is not None
    assert sent(second) == [3]
    assert second.next_offset == 5  # past the rejected 4: the end of what was read
    assert stream.credit.records == 0
    assert stream.position(0) == 5


def test_a_read_of_only_rejected_records_moves_the_position_without_a_push() -> None:
    stream = open_stream(credit=Grant(records=5, bytes=100), filter_=Filter(key_prefix=b"user-"))
    assert stream.cut(chunk_of(log([b"admin", None, b"use"]), 0, 4)) is None
    assert stream.position(0) == 4
    assert (stream.credit.records, stream.credit.bytes) == (5, 100)


def test_a_header_filter_selects_the_records_sent() -> None:
    records = [
        Record(0, 0, None, b"0", (("type", b"order"),)),
        Record(1, 0, None, b"1", (("type", None),)),
        Record(2, 0, None, b"2", (("type", b"refund"), ("type", b"order"))),
    ]
    stream = open_stream(filter_=Filter(headers=(HeaderMatch("type", b"order"),)))
    batch = stream.cut(chunk_of(records, 0, 3))
    assert batch is not None
    assert [as_record(m) for m in parsed(batch).stream_batch.messages] == [records[0], records[2]]


# -------------------------------------------------------------- positions


def test_next_offset_skips_offsets_the_partition_does_not_hold() -> None:
    stream = open_stream(credit=Grant(records=2))
    records = log([b"a", b"b", b"c"], offsets=[0, 5, 9])
    batch = stream.cut(chunk_of(records, 0, 12))
    assert batch is not None
    assert (sent(batch), batch.next_offset) == ([0, 5], 9)


def test_a_stream_outside_the_chunk_takes_nothing_from_it() -> None:
    stream = open_stream()
    records = log([b"a"] * 10)
    assert stream.place(0, 3, epoch=0)
    assert stream.cut(chunk_of(records, 4, 10)) is None  # behind the read: its records are elsewhere
    assert stream.cut(chunk_of(records, 0, 3)) is None  # past it
    assert stream.position(0) == 3
    assert stream.credit.records == 100


def test_a_chunk_read_from_before_the_position_gives_only_what_follows_it() -> None:
    stream = open_stream()
    records = log([b"a"] * 10)
    assert stream.place(0, 4, epoch=0)
    batch = stream.cut(chunk_of(records, 0, 10, high_watermark=12))
    assert batch is not None
    assert sent(batch) == [4, 5, 6, 7, 8, 9]
    resp = parsed(batch)
    assert (resp.stream_batch.next_offset, resp.stream_batch.high_watermark) == (10, 12)


def test_a_batch_fits_in_the_maximum_message_size() -> None:
    records = log([b"k"] * 50, value=b"x" * 100)
    size = entry_size(records[0])
    max_message_size = STREAM_FRAME_OVERHEAD + 7 * size + size // 2
    stream = open_stream(max_message_size=max_message_size)
    batch = stream.cut(chunk_of(records, 0, 50))
    assert batch is not None
    assert batch.count == 7
    assert sum(map(len, batch.frame())) <= max_message_size


def test_a_record_too_large_for_a_frame_of_its_own_is_refused_and_nothing_changes() -> None:
    records = log([b"k"], value=b"x" * 2000)
    stream = open_stream(max_message_size=1024)
    refused = failure(stream.cut, chunk_of(records, 0, 1))
    assert refused.code == ErrorCode.RECORD_TOO_LARGE
    assert "offset 0" in refused.reason
    assert "1024" in refused.reason
    assert (stream.position(0), stream.credit.records) == (0, 100)


# ------------------------------------------------------------------ framing


def test_a_batch_frame_parses_to_exactly_the_records_with_the_stream_id_as_sequence() -> None:
    records = [
        Record(3, 1, b"k", b"v", (("h", b"1"), ("n", None))),
        Record(4, 2, None, None),
        Record(6, 3, b"", b""),
    ]
    session = Streams(BIG)
    stream = session.open(subscribe(-5, partitions=(2,)))
    stream.place(2, 3, epoch=0)
    batch = stream.cut(chunk_of(records, 3, 8, high_watermark=9, partition=2))
    assert batch is not None
    resp = parsed(batch)
    assert resp.sequence == -5
    assert resp.WhichOneof("resp") == "stream_batch"
    assert resp.stream_batch.partition == 2
    assert resp.stream_batch.next_offset == 8
    assert resp.stream_batch.high_watermark == 9
    assert [as_record(m) for m in resp.stream_batch.messages] == records


def test_streams_at_the_same_place_share_one_body_and_differ_only_in_their_head() -> None:
    chunk = chunk_of(log([b"a", b"b", b"c"]), 0, 3)
    batches = []
    for sequence in (1, 2, 300):
        stream = Streams(BIG).open(subscribe(sequence))
        stream.place(0, 0, epoch=0)
        batch = stream.cut(chunk)
        assert batch is not None
        batches.append(batch)
    assert batches[0].body is batches[1].body is batches[2].body
    assert [parsed(batch).sequence for batch in batches] == [1, 2, 300]


OPTIONAL_BYTES = st.none() | st.binary(max_size=40)
FRAMED_RECORDS = st.lists(
    st.builds(
        Record,
        offset=st.integers(0, 2**63 - 1),
        timestamp=st.integers(-(2**63), 2**63 - 1),
        key=OPTIONAL_BYTES,
        value=OPTIONAL_BYTES | st.binary(min_size=MEMORYVIEW_FROM, max_size=MEMORYVIEW_FROM + 200),
        headers=st.lists(st.tuples(st.text(max_size=8), OPTIONAL_BYTES), max_size=3).map(tuple),
    ),
    max_size=6,
)


@given(
    FRAMED_RECORDS,
    st.integers(-(2**63), 2**63 - 1),
    st.integers(0, 2**31 - 1),
    st.integers(-(2**63), 2**63 - 1),
    st.integers(-(2**63), 2**63 - 1),
)
def test_a_framed_batch_parses_with_protobuf_to_exactly_its_records(
    records: list[Record], sequence: int, partition: int, next_offset: int, high_watermark: int
) -> None:
    entries = [encode_message_entry(r.offset, r.timestamp, r.key, r.value, r.headers) for r in records]
    body = batch_body(entries)
    assert len(body) == sum(map(len, entries))
    head = encode_stream_batch_head(sequence, partition, next_offset, high_watermark, len(body))
    assert len(head) <= STREAM_FRAME_OVERHEAD
    resp = pb.PubSubResp.FromString(head + body)
    assert resp.sequence == sequence
    assert resp.WhichOneof("resp") == "stream_batch"
    batch = resp.stream_batch
    assert (batch.partition, batch.next_offset, batch.high_watermark) == (partition, next_offset, high_watermark)
    assert [as_record(m) for m in batch.messages] == records


# ------------------------------------------------------ a connection's streams


def test_a_stream_id_is_its_subscribe_sequence_and_an_open_one_cannot_be_reused() -> None:
    session = Streams(BIG)
    stream = session.open(subscribe(42))
    assert stream.id == 42
    assert session.get(42) is stream
    refused = failure(session.open, subscribe(42))
    assert refused.code == ErrorCode.DUPLICATE_STREAM
    assert "42" in refused.reason
    assert session.get(42) is stream


def test_an_id_is_free_again_after_unsubscribe_and_the_old_stream_is_over() -> None:
    session = Streams(BIG)
    old = session.open(subscribe(42, filter=Filter(key_prefix=b"a")))
    assert session.close(42) is old
    assert not old.open
    assert len(session.filters) == 0
    assert old.cut(chunk_of(log([b"a"]), 0, 1)) is None
    assert session.open(subscribe(42)) is not old


def test_a_command_about_an_unknown_stream_names_its_id() -> None:
    session = Streams(BIG)
    session.open(subscribe(1))
    for call, argument in [
        (session.add_credit, AddCredit(sequence=5, subscription=99, grant=Grant(records=1))),
        (session.seek, Seek(sequence=5, subscription=99, partition=0, to=AtOffset(0))),
        (session.close, 99),
        (session.get, 99),
    ]:
        refused = failure(call, argument)
        assert refused.code == ErrorCode.UNKNOWN_STREAM
        assert "99" in refused.reason


def test_more_streams_than_max_streams_are_refused_naming_the_bound() -> None:
    session = Streams(BIG, StreamLimits(max_streams=3))
    for sequence in range(3):
        session.open(subscribe(sequence))
    refused = failure(session.open, subscribe(3))
    assert refused.code == ErrorCode.TOO_MANY_STREAMS
    assert "max_streams (3)" in refused.reason
    session.close(0)
    session.open(subscribe(3))
    assert len(session) == 3


def test_more_partitions_than_max_partitions_are_refused_at_subscribe() -> None:
    session = Streams(BIG, StreamLimits(max_partitions=4))
    refused = failure(session.open, subscribe(1, partitions=(0, 1, 2, 3, 4)))
    assert refused.code == ErrorCode.TOO_MANY_PARTITIONS
    assert "max_stream_partitions (4)" in refused.reason
    assert 1 not in session
    every = session.open(subscribe(2, partitions=()))
    assert every.follows_topic
    assert every.add_partitions([0, 1, 2]) == [0, 1, 2]
    refused = failure(every.add_partitions, [2, 3, 4])
    assert refused.code == ErrorCode.TOO_MANY_PARTITIONS
    assert every.partitions == [0, 1, 2]


def test_partitions_added_to_the_topic_past_max_partitions_are_left_out_and_said_so() -> None:
    every = Streams(BIG, StreamLimits(max_partitions=4)).open(subscribe(2, partitions=()))
    assert every.gain_partitions([0, 1]) == ([0, 1], None)
    added, left_out = every.gain_partitions([1, 2, 3, 4, 5])
    assert added == [2, 3]
    assert left_out is not None
    assert left_out.code == ErrorCode.TOO_MANY_PARTITIONS
    assert left_out.reason == "stream 2 would read 6 partitions, more than max_stream_partitions (4)"
    assert every.partitions == [0, 1, 2, 3]
    assert every.position(3) is None


def test_a_group_subscribe_is_refused_where_groups_are_not_served() -> None:
    session = Streams(BIG)
    refused = failure(session.open, subscribe(1, partitions=(), group="billing"))
    assert refused.code == ErrorCode.INVALID_REQUEST
    assert refused.reason == "consumer groups are not available on this route"
    assert len(session) == 0
    stream = Streams(BIG, groups=True).open(subscribe(1, partitions=(), group="billing"))
    assert stream.in_group and stream.partitions == []


def group_stream(credit: Grant | None = HUNDRED, **fields: object) -> Stream:
    return Streams(BIG, groups=True).open(subscribe(partitions=(), credit=credit, group="g", **fields))


def test_an_assigned_partition_starts_where_it_is_placed_and_delivered_follows_what_was_written() -> None:
    stream = group_stream()
    added, left_out = stream.assign([(0, 5), (1, 0)])
    assert added == [(0, 5), (1, 0)] and left_out is None
    assert stream.delivered() == [(0, 5), (1, 0)]
    batch = stream.cut(chunk_of(log([b"a"] * 10), 0, 10))
    assert batch is not None and sent(batch) == [5, 6, 7, 8, 9]
    assert stream.delivered() == [(0, 5), (1, 0)], "cut is not delivered: it may still be dropped"
    assert stream.confirm(batch)
    assert stream.delivered() == [(0, 10), (1, 0)]
    assert stream.delivered([1]) == [(1, 0)]


def test_a_revoked_partition_returns_what_was_delivered_and_its_cut_batches_are_dropped() -> None:
    stream = group_stream()
    stream.assign([(0, 0), (1, 0)])
    first = stream.cut(chunk_of(log([b"a"] * 3), 0, 3))
    assert first is not None and stream.confirm(first)
    pending = stream.cut(chunk_of(log([b"a"] * 5), 0, 5))
    assert pending is not None and sent(pending) == [3, 4]
    credit = stream.credit.records
    assert stream.revoke([0, 7]) == [(0, 3)]
    assert not stream.reads(0) and stream.reads(1)
    assert not stream.confirm(pending), "a batch of a revoked partition must not be written"
    assert stream.credit.records == credit + 2, "its credit comes back"
    assert stream.cut(chunk_of(log([b"a"] * 8), 0, 8)) is None
    assert failure(stream.delivered, [0]).code == ErrorCode.NOT_ASSIGNED
    assert failure(stream.check_assigned, [1, 0]).code == ErrorCode.NOT_ASSIGNED


def test_assignment_past_the_partition_bound_adds_what_fits_and_reports_the_rest() -> None:
    stream = Streams(BIG, StreamLimits(max_partitions=2), groups=True).open(
        subscribe(partitions=(), group="g", credit=HUNDRED)
    )
    added, left_out = stream.assign([(0, 1), (1, 2), (2, 3)])
    assert added == [(0, 1), (1, 2)]
    assert left_out is not None and left_out.code == ErrorCode.TOO_MANY_PARTITIONS


def test_a_seek_moves_what_a_group_stream_delivered_to_the_new_position() -> None:
    stream = group_stream()
    stream.assign([(0, 9)])
    stream.seek(0, AtOffset(2))
    assert stream.delivered() == [(0, 2)]
    epoch = stream.seek(0, StartEdge.EARLIEST)
    assert stream.delivered() == [(0, 2)], "not placed yet: unchanged"
    assert stream.place(0, 0, epoch=epoch)
    assert stream.delivered() == [(0, 0)]


def test_a_subscribe_without_credit_starts_with_the_default_grant_and_an_empty_grant_paused() -> None:
    session = Streams(BIG, StreamLimits(default_grant=Grant(records=5, bytes=9)))
    assert (session.open(subscribe(1)).credit.records, session.open(subscribe(2, credit=None)).credit.bytes) == (5, 9)
    assert session.open(subscribe(3, credit=Grant())).credit.paused
    assert Streams(BIG).open(subscribe(1)).credit.records == DEFAULT_GRANT.records


def test_an_initial_grant_past_the_bound_opens_nothing() -> None:
    session = Streams(BIG)
    refused = failure(session.open, subscribe(1, credit=Grant(records=MAX_CREDIT_RECORDS + 1)))
    assert refused.code == ErrorCode.CREDIT_LIMIT
    assert len(session) == 0


def test_offsets_named_at_subscribe_place_their_partitions_and_the_others_wait() -> None:
    session = Streams(BIG)
    stream = session.open(subscribe(1, partitions=(0, 1), start=AtOffsets(((1, 40),))))
    assert stream.position(1) == 40
    assert stream.position(0) is None
    assert stream.start_of(0) == StartEdge.LATEST
    assert stream.start_of(1) == AtOffset(40)
    assert stream.cut(chunk_of(log([b"a"]), 0, 1)) is None
    assert stream.place(0, 0, epoch=stream.epoch(0))
    assert stream.cut(chunk_of(log([b"a"]), 0, 1)) is not None
    by_time = session.open(subscribe(2, partitions=(0,), start=AtTimestamp(1000)))
    assert by_time.start_of(0) == AtTimestamp(1000)


def test_a_batch_cut_before_a_seek_is_not_sent_after_it_and_its_credit_comes_back() -> None:
    session = Streams(BIG)
    stream = session.open(subscribe(credit=Grant(records=10, bytes=10_000)))
    stream.place(0, 0, epoch=0)
    batch = stream.cut(chunk_of(log([b"a"] * 4), 0, 4))
    assert batch is not None
    session.seek(Seek(sequence=8, subscription=7, partition=0, to=AtOffset(2)))
    assert not stream.confirm(batch)
    assert (stream.credit.records, stream.credit.bytes) == (10, 10_000)
    assert stream.position(0) == 2
    after = stream.cut(chunk_of(log([b"a"] * 4), 0, 4))
    assert after is not None
    assert stream.confirm(after)
    assert sent(after) == [2, 3]


def test_a_seek_of_another_partition_leaves_a_batch_alone() -> None:
    session = Streams(BIG)
    stream = session.open(subscribe(partitions=(0, 1)))
    stream.place(0, 0, epoch=0)
    batch = stream.cut(chunk_of(log([b"a"]), 0, 1))
    assert batch is not None
    session.seek(Seek(sequence=8, subscription=7, partition=1, to=StartEdge.EARLIEST))
    assert stream.confirm(batch)


def test_a_seek_to_an_edge_waits_for_its_offset_and_an_older_lookup_cannot_overwrite_it() -> None:
    session = Streams(BIG)
    stream = session.open(subscribe())
    started = stream.epoch(0)
    session.seek(Seek(sequence=8, subscription=7, partition=0, to=StartEdge.EARLIEST))
    assert stream.position(0) is None
    sought = stream.epoch(0)
    assert not stream.place(0, 100, epoch=started)  # the subscribe's LATEST, looked up too late
    assert stream.position(0) is None
    assert stream.place(0, 0, epoch=sought)
    assert stream.position(0) == 0


def test_a_batch_cut_before_unsubscribe_is_not_sent() -> None:
    session = Streams(BIG)
    stream = session.open(subscribe())
    stream.place(0, 0, epoch=0)
    batch = stream.cut(chunk_of(log([b"a"]), 0, 1))
    assert batch is not None
    session.close(7)
    assert not stream.confirm(batch)


def test_a_seek_of_a_partition_the_stream_does_not_read_is_refused() -> None:
    session = Streams(BIG)
    session.open(subscribe(partitions=(0, 1)))
    refused = failure(session.seek, Seek(sequence=8, subscription=7, partition=5, to=AtOffset(0)))
    assert refused.code == ErrorCode.INVALID_REQUEST
    assert refused.reason == "stream 7 does not read partition 5"


def test_closing_the_connection_ends_every_stream_and_lets_go_of_the_filters() -> None:
    shared = FilterSet()
    session = Streams(BIG, filters=shared)
    streams = [session.open(subscribe(n, filter=Filter(key_prefix=b"x"))) for n in range(3)]
    session.close_all()
    assert len(session) == 0
    assert len(shared) == 0
    assert not any(stream.open for stream in streams)


def test_error_messages_read_as_schema_readme_documents_them() -> None:
    session = Streams(BIG, StreamLimits(max_streams=1, max_partitions=2))
    session.open(subscribe(7, credit=Grant(records=MAX_CREDIT_RECORDS)))
    messages = [
        failure(session.get, 8).reason,
        failure(session.open, subscribe(7)).reason,
        failure(session.open, subscribe(8)).reason,
        failure(Streams(BIG, StreamLimits(max_partitions=2)).open, subscribe(7, partitions=(0, 1, 2))).reason,
        failure(session.add_credit, AddCredit(sequence=9, subscription=7, grant=Grant(records=1))).reason,
        failure(session.add_credit, AddCredit(sequence=9, subscription=7, grant=Grant(bytes=2**40 + 1))).reason,
        failure(session.seek, Seek(sequence=9, subscription=7, partition=3, to=AtOffset(0))).reason,
    ]
    assert messages == [
        "no stream 8 is open on this connection",
        "stream 7 is already open; a subscribe needs a sequence no open stream uses",
        "1 streams are open on this connection, the most max_streams (1) allows",
        "stream 7 would read 3 partitions, more than max_stream_partitions (2)",
        "stream 7 would hold 2147483648 records of credit, more than the most a stream may hold (2147483647)",
        "stream 7 would hold 1099511627777 bytes of credit, more than the most a stream may hold (1099511627776)",
        "stream 7 does not read partition 3",
    ]


def test_the_limits_refuse_bounds_below_one() -> None:
    with pytest.raises(ValueError, match="max_streams"):
        StreamLimits(max_streams=0)
    with pytest.raises(ValueError, match="max_partitions"):
        StreamLimits(max_partitions=0)


# ------------------------------------------------------------- state machine

WANTED_KEYS = [b"a", b"b", b"c", None]


class OnePartition(RuleBasedStateMachine):
    """Grants, reads offered in pieces, seeks and late sends, checked against a plain model.

    The model counts credit granted and spent, and what was delivered since the
    last seek, which must be every accepted record from the seek's offset up to
    the stream's position: in order, none lost, none twice.
    """

    @initialize(
        layout=st.lists(
            st.tuples(st.integers(0, 2), st.sampled_from(WANTED_KEYS), st.integers(0, 60)), min_size=10, max_size=40
        ),
        wanted=st.none()
        | st.sets(st.sampled_from([b"a", b"b", b"c"]), min_size=1).map(lambda keys: tuple(sorted(keys))),
        room=st.integers(130, 600),
        first=st.integers(0, 10),
    )
    def start(
        self, layout: list[tuple[int, bytes | None, int]], wanted: tuple[bytes, ...] | None, room: int, first: int
    ) -> None:
        offset = 0
        self.records: list[Record] = []
        for gap, key, size in layout:
            offset += gap
            self.records.append(Record(offset, offset, key, b"x" * size))
            offset += 1
        self.log_end = offset + 2
        self.filter = Filter() if wanted is None else Filter(key_equals=wanted)
        self.accepted = [r.offset for r in self.records if wanted is None or r.key in wanted]
        self.largest = max(map(entry_size, self.records), default=0)
        self.max_message_size = STREAM_FRAME_OVERHEAD + room
        self.session = Streams(self.max_message_size)
        self.stream = self.session.open(subscribe(3, credit=Grant(records=first), filter=self.filter))
        assert self.stream.place(0, 0, epoch=0)
        self.granted_records = first
        self.granted_bytes = 0
        self.counts_bytes = False
        self.spent_records = 0  # records of batches delivered or waiting to be sent
        self.charged_bytes = 0
        self.segment_start = 0
        self.delivered: list[int] = []
        self.waiting: list[PushBatch] = []

    @rule(records=st.integers(0, 8), size=st.sampled_from([0, 0, 0, 1, 50, 200, 1000]))
    def grant(self, records: int, size: int) -> None:
        self.session.add_credit(AddCredit(sequence=1, subscription=3, grant=Grant(records=records, bytes=size)))
        self.granted_records += records
        self.granted_bytes += size
        self.counts_bytes = self.counts_bytes or size > 0

    @rule(of_bytes=st.booleans(), beyond=st.integers(1, 3))
    def grant_past_the_bound(self, of_bytes: bool, beyond: int) -> None:
        credit = self.stream.credit
        before = (credit.records, credit.bytes, credit.counts_bytes)
        if of_bytes:
            grant = Grant(records=1, bytes=MAX_CREDIT_BYTES - credit.bytes + beyond)
        else:
            grant = Grant(records=MAX_CREDIT_RECORDS - credit.records + beyond, bytes=1)
        with pytest.raises(CommandFailed) as refused:
            self.session.add_credit(AddCredit(sequence=1, subscription=3, grant=grant))
        assert refused.value.code == ErrorCode.CREDIT_LIMIT
        assert (credit.records, credit.bytes, credit.counts_bytes) == before

    @rule(back=st.integers(0, 3), span=st.integers(1, 12), send_now=st.booleans())
    def offer_a_read(self, back: int, span: int, send_now: bool) -> None:
        position = self.stream.position(0)
        if position is None:
            return
        start = max(0, position - back)
        end = min(self.log_end, start + span)
        credit = self.stream.credit
        records_before, bytes_before, paused = credit.records, credit.bytes, credit.paused
        batch = self.stream.cut(chunk_of(self.records, start, end))
        if paused or not start <= position < end:
            assert batch is None
            assert self.stream.position(0) == position
            return
        ahead = [o for o in self.accepted if position <= o < end]
        if batch is None:
            assert not ahead, "a read with accepted records sent none"
            assert self.stream.position(0) == end
            return
        offsets = sent(batch)
        assert 1 <= len(offsets) <= records_before
        assert offsets == ahead[: len(offsets)]
        remaining = ahead[len(offsets) :]
        assert batch.next_offset == (remaining[0] if remaining else end)
        assert self.stream.position(0) == batch.next_offset
        sizes = [entry_size(r) for r in self.records if r.offset in offsets]
        assert batch.size == sum(sizes)
        if self.counts_bytes:
            assert bytes_before > 0
            assert batch.size - sizes[-1] < bytes_before
            assert batch.charged == batch.size
        else:
            assert batch.charged == 0
        assert sum(map(len, batch.frame())) <= self.max_message_size
        self.spent_records += batch.count
        self.charged_bytes += batch.charged
        self.waiting.append(batch)
        if send_now:
            self.send_waiting()

    @precondition(lambda self: self.waiting)
    @rule()
    def send_waiting(self) -> None:
        for batch in self.waiting:
            assert self.stream.confirm(batch)
            self.delivered += sent(batch)
        self.waiting = []

    @rule(to=st.integers(0, 120), by_edge=st.booleans())
    def seek(self, to: int, by_edge: bool) -> None:
        to %= self.log_end + 1
        before = self.stream.epoch(0)
        self.session.seek(
            Seek(sequence=2, subscription=3, partition=0, to=StartEdge.EARLIEST if by_edge else AtOffset(to))
        )
        for batch in self.waiting:
            assert not self.stream.confirm(batch)
            self.spent_records -= batch.count
            self.charged_bytes -= batch.charged
        self.waiting = []
        if by_edge:
            assert self.stream.position(0) is None
            assert not self.stream.place(0, 0, epoch=before)
            assert self.stream.place(0, to, epoch=self.stream.epoch(0))
        self.segment_start = to
        self.delivered = []

    @invariant()
    def credit_is_what_was_granted_less_what_was_taken(self) -> None:
        credit = self.stream.credit
        assert credit.records >= 0
        assert credit.records == self.granted_records - self.spent_records
        assert credit.counts_bytes == self.counts_bytes
        if self.counts_bytes:
            assert credit.bytes == self.granted_bytes - self.charged_bytes
            assert self.charged_bytes < self.granted_bytes + self.largest

    @invariant()
    def delivered_records_are_every_accepted_one_once_in_order(self) -> None:
        position = self.stream.position(0)
        if self.waiting or position is None:
            return
        assert self.delivered == [o for o in self.accepted if self.segment_start <= o < position]


OnePartition.TestCase.settings = settings(max_examples=60, stateful_step_count=30)
test_one_partition_stream = OnePartition.TestCase
