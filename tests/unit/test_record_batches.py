"""Kafka record batches decoded straight into fetch entries (pure logic; kafka-python only as the reference).

Batches are built with kafka-python's own builder, and what the decoder makes
is compared with what kafka-python reads from the same bytes, encoded with
:func:`encode_message_entry`: the bytes clients receive must not change.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from kafka.record.memory_records import MemoryRecords, MemoryRecordsBuilder
from kafka.record.util import calc_crc32c

from kafka_ws_trio._kafka._batches import (
    CONTROL_FLAG,
    LOG_APPEND_TIME_FLAG,
    Batch,
    CorruptBatch,
    LegacyBatch,
    TransactionFilter,
    batches,
    decode_records,
)
from kafka_ws_trio._kafka._fast_records import _decompress, entry_records_class
from kafka_ws_trio._proto import encode_message_entry

Record = tuple[int, bytes | None, bytes | None, list[tuple[str, bytes | None]]]

CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
BASE_TIME = 1_700_000_000_000


def build(
    records: Sequence[Record],
    base_offset: int = 0,
    codec: int = 0,
    *,
    producer_id: int = -1,
    transactional: bool = False,
    extra_attributes: int = 0,
    offset_step: int = 1,
) -> bytes:
    """One v2 batch of ``records`` (timestamp delta, key, value, headers) at ``base_offset``."""
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=codec,
        is_transactional=transactional,
        producer_id=producer_id,
        producer_epoch=0 if producer_id >= 0 else -1,
        base_sequence=0 if producer_id >= 0 else -1,
        batch_size=1 << 30,
    )
    for index, (delta, key, value, headers) in enumerate(records):
        builder.append(index * offset_step, timestamp=BASE_TIME + delta, key=key, value=value, headers=headers)
    data = builder.build()
    data[0:8] = struct.pack(">q", base_offset)
    if extra_attributes:
        (attributes,) = struct.unpack_from(">h", data, 21)
        struct.pack_into(">h", data, 21, attributes | extra_attributes)
        struct.pack_into(">I", data, 17, calc_crc32c(memoryview(data)[21:]))
    return bytes(data)


def reference(raw: bytes, skip_below: int = 0) -> list[tuple[int, bytes, bytes | None, list[Any]]]:
    """What kafka-python reads from ``raw``, encoded the way the reader used to."""
    out = []
    records = MemoryRecords(raw)
    while (batch := records.next_batch()) is not None:
        for record in batch:
            if record.offset >= skip_below:
                entry = encode_message_entry(record.offset, record.timestamp, record.key, record.value, record.headers)
                out.append((record.offset, entry, record.key, record.headers))
    return out


def decoded(raw: bytes, skip_below: int = 0, **options: Any) -> list[Any]:
    options.setdefault("crc32c", calc_crc32c)
    out = []
    for batch in batches(raw, skip_below, decompress=_decompress, **options):
        assert isinstance(batch, Batch)
        out += [(offset, entry, key, list(headers)) for offset, entry, key, headers in batch.records]
    return out


header_names = st.text(max_size=8)
headers = st.lists(st.tuples(header_names, st.none() | st.binary(max_size=8)), max_size=3)
records = st.lists(
    st.tuples(
        st.integers(-5, 100_000), st.none() | st.binary(max_size=20), st.none() | st.binary(max_size=300), headers
    ),
    min_size=1,
    max_size=12,
)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=150)
@given(
    st.lists(records, min_size=1, max_size=3),
    st.integers(0, 1 << 40),
    st.sampled_from(sorted(CODECS.values())),
    st.integers(0, 40),
)
def test_a_fetch_decodes_to_the_entries_kafka_python_and_the_encoder_make(
    batch_records: list[list[Record]], base_offset: int, codec: int, skip: int
) -> None:
    raw = b""
    offset = base_offset
    for chunk in batch_records:
        raw += build(chunk, offset, codec)
        offset += len(chunk)
    assert decoded(raw, base_offset + skip) == reference(raw, base_offset + skip)


def test_every_codec_round_trips_a_large_batch() -> None:
    chunk: list[Record] = [(i % 7, b"k%d" % i, bytes([i % 256]) * 1024, []) for i in range(500)]
    for name, codec in CODECS.items():
        raw = build(chunk, 123_456_789, codec)
        assert decoded(raw) == reference(raw), name


def test_offsets_and_timestamps_of_zero_are_left_out_as_protobuf_does() -> None:
    raw = build([(-BASE_TIME, None, b"v", [])], 0)
    ((offset, entry, key, _),) = decoded(raw)
    assert (offset, key) == (0, None)
    assert entry == encode_message_entry(0, 0, None, b"v") == b"\x0a\x03\x22\x01v"


def test_records_below_the_fetch_offset_are_left_out_and_the_next_offset_is_the_batchs() -> None:
    raw = build([(0, None, b"%d" % i, []) for i in range(10)], 100)
    (batch,) = batches(raw, 104, decompress=_decompress, crc32c=calc_crc32c)
    assert isinstance(batch, Batch)
    assert [record[0] for record in batch.records] == list(range(104, 110))
    assert batch.next_offset == 110


def test_compacted_gaps_keep_their_offsets_and_the_batch_still_ends_at_its_last_offset() -> None:
    raw = build([(0, None, b"a", []), (0, None, b"b", [])], 50, offset_step=3)
    (batch,) = batches(raw, 0, decompress=_decompress, crc32c=calc_crc32c)
    assert isinstance(batch, Batch)
    assert [record[0] for record in batch.records] == [50, 53]
    assert batch.next_offset == 54


def test_log_append_time_stamps_every_record_with_the_batchs_max_timestamp() -> None:
    records = [(0, None, b"a", []), (9, None, b"b", [])]
    plain = DefaultRecordBatch(build(records))
    max_timestamp = plain.max_timestamp
    raw = build(records, extra_attributes=LOG_APPEND_TIME_FLAG)
    got = decoded(raw)
    assert [entry for _, entry, _, _ in got] == [
        encode_message_entry(0, max_timestamp, None, b"a"),
        encode_message_entry(1, max_timestamp, None, b"b"),
    ]


def test_a_batch_cut_off_at_the_end_of_the_fetch_is_not_decoded() -> None:
    whole = build([(0, None, b"x" * 50, [])], 0)
    second = build([(0, None, b"y" * 50, [])], 1)
    got = list(batches(whole + second[:-10], 0, decompress=_decompress, crc32c=calc_crc32c))
    assert len(got) == 1
    assert list(batches(whole[:30], 0, decompress=_decompress, crc32c=calc_crc32c)) == []


def test_a_failed_crc_is_a_corrupt_batch_and_no_check_trusts_the_bytes() -> None:
    raw = bytearray(build([(0, None, b"value", [])], 0))
    raw[-3] ^= 0xFF  # inside the value
    with pytest.raises(CorruptBatch, match="CRC"):
        decoded(bytes(raw))
    assert len(decoded(bytes(raw), crc32c=None)) == 1


@settings(max_examples=300)
@given(st.data())
def test_mutated_batches_decode_or_raise_corrupt_batch_never_anything_else(data: st.DataObject) -> None:
    raw = bytearray(build([(0, b"key", b"value" * 5, [("h", b"1")]), (3, None, None, [])], 7))
    for _ in range(data.draw(st.integers(1, 4))):
        where = data.draw(st.integers(0, len(raw) - 1))
        raw[where] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        for batch in batches(bytes(raw[:cut]), 0, decompress=lambda codec, body: body, crc32c=None):
            assert isinstance(batch, (Batch, LegacyBatch))
    except CorruptBatch:
        pass


def test_decode_records_refuses_trailing_bytes_and_short_records() -> None:
    raw = build([(0, None, b"v", [])], 0)
    body = raw[61:]
    with pytest.raises(CorruptBatch, match="after the batch"):
        decode_records(body + b"\x00", 1, 0, BASE_TIME, None, 0)
    with pytest.raises(CorruptBatch):
        decode_records(body[:-1], 1, 0, BASE_TIME, None, 0)


def test_header_names_that_are_not_utf8_reach_the_wire_with_the_bad_bytes_replaced() -> None:
    raw = build([(0, None, b"v", [("name", b"1")])], 0)
    bad = raw.replace(b"name", b"n\xffme")
    bad = bad[:17] + struct.pack(">I", calc_crc32c(memoryview(bad)[21:])) + bad[21:]
    ((_, entry, _, got_headers),) = decoded(bad)
    assert got_headers == [("n\ufffdme", b"1")]
    assert entry == encode_message_entry(0, BASE_TIME, None, b"v", [("n\ufffdme", b"1")])


def _control(base_offset: int, producer_id: int, *, abort: bool) -> bytes:
    key = struct.pack(">hh", 0, 0 if abort else 1)
    return build(
        [(0, key, b"\x00\x00\x00\x00\x00\x00", [])],
        base_offset,
        producer_id=producer_id,
        transactional=True,
        extra_attributes=CONTROL_FLAG,
    )


def _transactional(base_offset: int, producer_id: int, values: list[bytes]) -> bytes:
    return build([(0, None, v, []) for v in values], base_offset, producer_id=producer_id, transactional=True)


def test_control_batches_are_left_out_and_move_the_next_offset() -> None:
    raw = _transactional(0, 7, [b"a", b"b"]) + _control(2, 7, abort=False) + build([(0, None, b"c", [])], 3)
    got = list(batches(raw, 0, decompress=_decompress, crc32c=calc_crc32c))
    assert [(len(b.records), b.next_offset) for b in got if isinstance(b, Batch)] == [(2, 2), (0, 3), (1, 4)]


def test_read_committed_leaves_out_aborted_transactions_until_their_marker() -> None:
    # Producer 7 aborts its transaction at 0-1; producer 8 commits 2-3; producer 7 then commits 6.
    raw = (
        _transactional(0, 7, [b"aborted-1", b"aborted-2"])
        + _transactional(2, 8, [b"kept-1", b"kept-2"])
        + _control(4, 7, abort=True)
        + _control(5, 8, abort=False)
        + _transactional(6, 7, [b"kept-3"])
        + _control(7, 7, abort=False)
    )
    filtered = [
        entry[1]
        for batch in batches(
            raw, 0, decompress=_decompress, crc32c=calc_crc32c, transactions=TransactionFilter([(7, 0)])
        )
        if isinstance(batch, Batch)
        for entry in batch.records
    ]
    assert [e.endswith(v) for e, v in zip(filtered, [b"kept-1", b"kept-2", b"kept-3"], strict=True)] == [True] * 3
    everything = decoded(raw)
    assert len(everything) == 5  # READ_UNCOMMITTED: every data record, no markers


def test_legacy_batches_are_handed_back_whole() -> None:
    builder = MemoryRecordsBuilder(magic=1, compression_type=0, batch_size=1 << 20)
    builder.append(timestamp=BASE_TIME, key=b"k", value=b"old")
    builder.close()
    legacy = bytes(builder.buffer())
    modern = build([(0, None, b"new", [])], 1)
    got = list(batches(legacy + modern, 0, decompress=_decompress, crc32c=calc_crc32c))
    assert isinstance(got[0], LegacyBatch) and got[0].data == legacy
    assert isinstance(got[1], Batch) and len(got[1].records) == 1


def test_kafka_pythons_fetcher_gets_encoded_tuples_from_the_partition_records_hook() -> None:
    from kafka import TopicPartition

    builder = MemoryRecordsBuilder(magic=1, compression_type=0, batch_size=1 << 20)
    builder.append(timestamp=BASE_TIME, key=b"k", value=b"old")
    builder.close()
    raw = bytes(builder.buffer()) + build([(0, None, b"%d" % i, []) for i in range(1, 6)], 1)
    tp = TopicPartition("t", 0)
    part = entry_records_class()(2, tp, MemoryRecords(raw))
    first = part.take(2)
    assert [record[0] for record in first] == [2, 3] and part.next_fetch_offset == 4
    rest = part.take(10)
    assert [record[0] for record in rest] == [4, 5]
    assert rest == [r for r in reference(raw, 4)]
    assert part.next_fetch_offset == 6 and not part  # drained
    old = entry_records_class()(0, tp, MemoryRecords(raw)).take(1)
    assert old == [(0, encode_message_entry(0, BASE_TIME, b"k", b"old"), b"k", ())]


@given(st.integers(-(1 << 63), (1 << 63) - 1))
def test_varint_writes_what_protobuf_writes_for_every_int64(value: int) -> None:
    from kafka_ws_trio._pb import pubsub_pb2 as pb
    from kafka_ws_trio._proto import varint

    assert b"\x08" + varint(value) == pb.KafkaMessage(offset=value).SerializeToString() or value == 0


def test_an_empty_control_batch_under_read_committed_is_left_out_not_corrupt() -> None:
    """Review finding: the log cleaner keeps a control batch with no records; it is no abort marker."""
    empty = bytearray(build([(0, None, b"x", [])], 9, producer_id=7, transactional=True))
    empty = empty[:61]  # the header alone: no records
    struct.pack_into(">i", empty, 8, 61 - 12)  # its length
    struct.pack_into(">i", empty, 57, 0)  # its record count
    (attributes,) = struct.unpack_from(">h", empty, 21)
    struct.pack_into(">h", empty, 21, attributes | CONTROL_FLAG)
    struct.pack_into(">I", empty, 17, calc_crc32c(memoryview(empty)[21:]))
    raw = bytes(empty) + build([(0, None, b"after", [])], 10)
    got = list(batches(raw, 0, decompress=_decompress, crc32c=calc_crc32c, transactions=TransactionFilter([])))
    assert [(len(b.records), b.next_offset) for b in got if isinstance(b, Batch)] == [(0, 10), (1, 11)]


@pytest.mark.parametrize("length", [-12, -1, 0, 13])
def test_a_batch_length_below_any_formats_minimum_is_corrupt(length: int) -> None:
    raw = bytearray(build([(0, None, b"v", [])], 0))
    struct.pack_into(">i", raw, 8, length)
    with pytest.raises(CorruptBatch):
        list(batches(bytes(raw), 0, decompress=_decompress, crc32c=None))


@pytest.mark.parametrize("magic", [3, 0x80, 0xFF])
def test_an_unknown_magic_is_corrupt(magic: int) -> None:
    raw = bytearray(build([(0, None, b"v", [])], 0))
    raw[16] = magic
    with pytest.raises(CorruptBatch, match="magic"):
        list(batches(bytes(raw), 0, decompress=_decompress, crc32c=None))


def test_records_that_do_not_decompress_are_corrupt() -> None:
    raw = bytearray(build([(0, None, b"v" * 100, [])], 0, CODECS["gzip"]))
    raw[-20:-10] = b"\x00" * 10
    with pytest.raises(CorruptBatch, match="decompress"):
        list(batches(bytes(raw), 0, decompress=_decompress, crc32c=None))


def test_a_corrupt_fetch_drains_the_partition_records_so_kafka_pythons_fetcher_does_not_spin() -> None:
    """Review finding: an iterator that raised stayed truthy, take() then gave [] for ever, and
    kafka-python's fetched_records looped on it holding the consumer."""
    from kafka import TopicPartition
    from kafka.errors import CorruptRecordError

    raw = bytearray(build([(0, None, b"value", [])], 0))
    raw[-3] ^= 0xFF
    part = entry_records_class()(0, TopicPartition("t", 0), MemoryRecords(bytes(raw)))
    with pytest.raises(CorruptRecordError, match="CRC"):
        part.take(10)
    assert not part  # drained: the fetcher fetches again (and fails again) instead of looping


def test_the_hook_counts_bytes_and_records_for_kafka_pythons_metrics() -> None:
    from kafka import TopicPartition

    raw = build([(0, None, b"%d" % i, []) for i in range(3)], 0)
    part = entry_records_class()(0, TopicPartition("t", 0), MemoryRecords(raw))
    assert len(part.take(10)) == 3
    assert (part.records_read, part.bytes_read) == (3, len(raw))
