"""Kafka's record batches (message format v2) decoded straight into fetch-response entries.

kafka-python turns each record of a fetch into a ``DefaultRecord`` and then a
``ConsumerRecord`` (copying the value twice on the way), and the reader then
encoded it again for the wire. That was most of the proxy's time per record
(a stream profile: 38% decoding, 18% encoding). Here one pass over a batch
reads each record's varints and writes the protobuf entry it becomes (the
bytes :func:`~kafka_ws_trio._proto.encode_message_entry` would make; tests
compare them), keeping the key and headers for stream filters.

Pure: no kafka-python, no I/O. Decompression and the CRC-32C are passed in
(the Kafka edge gives kafka-python's codecs). Batches in the old formats
(magic 0 and 1) are handed back whole, as :class:`LegacyBatch`, for
kafka-python to read.

The format (Kafka's protocol guide, "Record Batch"): a 61-byte header, then
the records, compressed together when the batch says so. Each record is
length, attributes (int8), timestamp delta, offset delta, key length, key,
value length, value, header count and headers, the integers as zigzag varints
and a length of -1 meaning null.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Sequence
from typing import Final, TypeAlias

import attrs

from .._proto import varint

#: The batch header: base offset, length, partition leader epoch, magic, CRC, attributes,
#: last offset delta, base timestamp, max timestamp, producer id, producer epoch,
#: base sequence, record count.
BATCH_HEADER: Final = struct.Struct(">qiibIhiqqqhii")
#: Bytes before the length's end (base offset and length): the rest of a batch is ``length`` bytes.
LOG_OVERHEAD: Final = 12
#: Where the magic byte sits, and where the bytes the CRC covers begin (the attributes).
MAGIC_AT: Final = 16
#: The fewest bytes after the length any batch or message has (format 0: CRC, magic, attributes,
#: key and value lengths).
MIN_LENGTH: Final = 14
CRC_FROM: Final = 21

COMPRESSION_MASK: Final = 0x07
LOG_APPEND_TIME_FLAG: Final = 0x08
TRANSACTIONAL_FLAG: Final = 0x10
CONTROL_FLAG: Final = 0x20
#: A control record's type (the int16 after the version in its key): 0 aborts, 1 commits.
ABORT_MARKER: Final = 0

#: A decoded record: offset, its fetch-response entry, key and headers (the reader's parallel lists).
Headers: TypeAlias = Sequence[tuple[str, bytes | None]]
DecodedRecord: TypeAlias = tuple[int, bytes, bytes | None, Headers]

#: Protobuf varints of 0 to 16,383 (one or two bytes), looked up instead of computed: lengths
#: and most offsets within a record take one of these. About 0.6 MiB, once per process.
_VARINTS: Final = tuple(varint(n) for n in range(0x4000))


class CorruptBatch(ValueError):
    """Bytes that are not a well-formed record batch (cut short, wrong lengths, a failed CRC)."""


@attrs.frozen
class Batch:
    """One batch's records at or after the fetch offset; none for a control batch or an aborted one."""

    records: list[DecodedRecord]
    #: The offset after the batch (its last offset delta counts records compaction removed).
    next_offset: int
    leader_epoch: int
    #: Its bytes in the fetch response (for kafka-python's fetch-size metrics).
    size: int = 0


@attrs.frozen
class LegacyBatch:
    """A batch in message format 0 or 1, whole, for kafka-python to read."""

    data: bytes


def _zigzag(data: bytes, pos: int) -> tuple[int, int]:
    """The zigzag varint at ``pos`` and the position after it."""
    byte = data[pos]
    if byte < 0x80:
        return (byte >> 1) ^ -(byte & 1), pos + 1
    result = byte & 0x7F
    shift = 7
    while True:
        pos += 1
        byte = data[pos]
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (result >> 1) ^ -(result & 1), pos + 1
        shift += 7
        if shift > 63:
            raise CorruptBatch("a varint longer than 10 bytes")


def _header_entry(name: bytes, value: bytes | None) -> tuple[str, bytes]:
    """A header as the filters see it (name as text) and as its ``KafkaHeader`` field bytes."""
    try:
        text = name.decode("utf-8")
    except UnicodeDecodeError:
        # Protobuf strings must be UTF-8: the wire gets the name with the bad bytes replaced.
        text = name.decode("utf-8", "replace")
        name = text.encode("utf-8")
    body = b"\x0a" + varint(len(name)) + name if name else b""
    if value is not None:
        body += b"\x12" + varint(len(value)) + value
    return text, b"\x2a" + varint(len(body)) + body


def decode_records(
    data: bytes, count: int, base_offset: int, base_timestamp: int, fixed_timestamp: int | None, skip_below: int
) -> list[DecodedRecord]:
    """``count`` records from ``data`` (a batch's uncompressed record bytes), those below ``skip_below`` left out.

    ``fixed_timestamp``: every record's timestamp (a batch stamped with the log append time), or None.
    The hot loop of the proxy: one-byte varints (most of them) are read inline, and each
    entry is one join (its length worked out from the parts, the value copied once).
    """
    out: list[DecodedRecord] = []
    append = out.append
    zigzag = _zigzag
    varints = _VARINTS
    pos = 0
    last_ts = None
    ts_field = b""
    try:
        for _ in range(count):
            byte = data[pos]
            if byte < 0x80:
                length = (byte >> 1) ^ -(byte & 1)
                pos += 1
            elif data[pos + 1] < 0x80:
                length = (byte & 0x7F) | (data[pos + 1] << 7)
                length = (length >> 1) ^ -(length & 1)
                pos += 2
            else:
                length, pos = zigzag(data, pos)
            start = pos
            byte = data[pos + 1]  # after the attributes (int8, unused in v2)
            if byte < 0x80:
                ts_delta = (byte >> 1) ^ -(byte & 1)
                pos += 2
            else:
                ts_delta, pos = zigzag(data, pos + 1)
            byte = data[pos]
            if byte < 0x80:
                offset_delta = (byte >> 1) ^ -(byte & 1)
                pos += 1
            else:
                offset_delta, pos = zigzag(data, pos)
            byte = data[pos]
            if byte < 0x80:
                key_len = (byte >> 1) ^ -(byte & 1)
                pos += 1
            else:
                key_len, pos = zigzag(data, pos)
            key: bytes | None = None
            if key_len >= 0:
                key = data[pos : pos + key_len]
                pos += key_len
            byte = data[pos]
            if byte < 0x80:
                value_len = (byte >> 1) ^ -(byte & 1)
                pos += 1
            elif data[pos + 1] < 0x80:
                value_len = (byte & 0x7F) | (data[pos + 1] << 7)
                value_len = (value_len >> 1) ^ -(value_len & 1)
                pos += 2
            else:
                value_len, pos = zigzag(data, pos)
            value_at = pos
            if value_len > 0:
                pos += value_len
            byte = data[pos]
            headers: list[tuple[str, bytes | None]] = []
            header_fields = b""
            if byte:
                header_count, pos = zigzag(data, pos)
                if header_count < 0:
                    raise CorruptBatch(f"a record with {header_count} headers")
                for _ in range(header_count):
                    name_len, pos = zigzag(data, pos)
                    if name_len < 0:
                        raise CorruptBatch("a header with a null name")
                    name = data[pos : pos + name_len]
                    pos += name_len
                    header_len, pos = zigzag(data, pos)
                    header_value: bytes | None = None
                    if header_len >= 0:
                        header_value = data[pos : pos + header_len]
                        pos += header_len
                    text, field = _header_entry(name, header_value)
                    headers.append((text, header_value))
                    header_fields += field
            else:
                pos += 1
            if pos - start != length or pos > len(data):
                raise CorruptBatch(f"a record said it was {length} bytes and took {pos - start}")
            offset = base_offset + offset_delta
            if offset < skip_below:
                continue
            timestamp = base_timestamp + ts_delta if fixed_timestamp is None else fixed_timestamp
            if timestamp != last_ts:
                last_ts = timestamp
                ts_field = b"\x10" + varint(timestamp) if timestamp else b""
            offset_field = b"\x08" + (varints[offset] if offset < 0x4000 else varint(offset)) if offset else b""
            size = len(offset_field) + len(ts_field) + len(header_fields)
            if key is None:
                key_head = b""
            else:
                key_head = b"\x1a" + (varints[key_len] if key_len < 0x4000 else varint(key_len))
                size += len(key_head) + key_len
            if value_len >= 0:
                value_head = b"\x22" + (varints[value_len] if value_len < 0x4000 else varint(value_len))
                size += len(value_head) + value_len
                value = data[value_at : value_at + value_len]
            else:
                value_head = value = b""
            entry = b"".join(
                (
                    b"\x0a",
                    varints[size] if size < 0x4000 else varint(size),
                    offset_field,
                    ts_field,
                    key_head,
                    key or b"",
                    value_head,
                    value,
                    header_fields,
                )
            )
            append((offset, entry, key, headers))
    except IndexError:
        raise CorruptBatch("a record cut short") from None
    if pos != len(data):
        raise CorruptBatch(f"{len(data) - pos} bytes after the batch's {count} records")
    return out


#: ``decompress(codec, data)``: a batch's records, uncompressed (codec 1 gzip, 2 snappy, 3 lz4, 4 zstd).
Decompress: TypeAlias = Callable[[int, bytes], bytes]
#: CRC-32C of some bytes (given as a memoryview, not copied).
Crc32c: TypeAlias = Callable[[memoryview], int]


class TransactionFilter:
    """What a READ_COMMITTED reader leaves out: batches of aborted transactions.

    ``aborted`` are the fetch response's (producer id, first offset) pairs. A
    producer's records count as aborted from its transaction's first offset
    to the abort marker that ends it.
    """

    def __init__(self, aborted: Sequence[tuple[int, int]]) -> None:
        self._pending = sorted(aborted, key=lambda pair: pair[1], reverse=True)
        self._aborting: set[int] = set()

    def skips(self, producer_id: int, last_offset: int, control: bool, abort_marker: bool) -> bool:
        """Whether a transactional batch is left out; its control records end its producer's abort."""
        while self._pending and self._pending[-1][1] <= last_offset:
            self._aborting.add(self._pending.pop()[0])
        if control:
            if abort_marker:
                self._aborting.discard(producer_id)
            return True
        return producer_id in self._aborting


def batches(
    raw: bytes,
    skip_below: int,
    *,
    decompress: Decompress,
    crc32c: Crc32c | None,
    transactions: TransactionFilter | None = None,
) -> Iterator[Batch | LegacyBatch]:
    """Each whole batch in ``raw`` (a fetch response's records; a batch cut off at the end is dropped).

    ``crc32c``: check each batch's CRC with it (None: trust the bytes). ``transactions``:
    leave out aborted transactions (READ_COMMITTED). Control batches are always left
    out, their offsets still counted.
    """
    pos = 0
    size = len(raw)
    view = memoryview(raw)
    while size - pos >= LOG_OVERHEAD + 5:
        length = int.from_bytes(raw[pos + 8 : pos + 12], "big", signed=True)
        if length < MIN_LENGTH:
            raise CorruptBatch(f"a batch of {length} bytes")
        end = pos + LOG_OVERHEAD + length
        if end > size:
            return
        magic = raw[pos + MAGIC_AT]
        if magic in (0, 1):
            yield LegacyBatch(raw[pos:end])
            pos = end
            continue
        if magic != 2:
            raise CorruptBatch(f"a batch in an unknown format (magic {magic})")
        if length < BATCH_HEADER.size - LOG_OVERHEAD:
            raise CorruptBatch(f"a batch of {length} bytes, shorter than its header")
        (
            base_offset,
            _,
            leader_epoch,
            _,
            crc,
            attributes,
            last_delta,
            base_timestamp,
            max_timestamp,
            producer_id,
            _,
            _,
            count,
        ) = BATCH_HEADER.unpack_from(raw, pos)
        if crc32c is not None and crc32c(view[pos + CRC_FROM : end]) != crc:
            raise CorruptBatch(f"the batch at offset {base_offset} failed its CRC check")
        body = raw[pos + BATCH_HEADER.size : end]
        batch_size, pos = end - pos, end
        last_offset = base_offset + last_delta
        control = bool(attributes & CONTROL_FLAG)
        if transactions is not None and attributes & TRANSACTIONAL_FLAG:
            marker = control and count > 0 and _is_abort_marker(body, attributes, decompress)
            if transactions.skips(producer_id, last_offset, control, marker):
                yield Batch([], last_offset + 1, leader_epoch, batch_size)
                continue
        if control:
            yield Batch([], last_offset + 1, leader_epoch, batch_size)
            continue
        codec = attributes & COMPRESSION_MASK
        if codec:
            body = decompress(codec, body)
        fixed = max_timestamp if attributes & LOG_APPEND_TIME_FLAG else None
        records = decode_records(body, count, base_offset, base_timestamp, fixed, skip_below)
        yield Batch(records, last_offset + 1, leader_epoch, batch_size)


def _is_abort_marker(body: bytes, attributes: int, decompress: Decompress) -> bool:
    """Whether a control batch's (first) record is a transaction's abort marker."""
    codec = attributes & COMPRESSION_MASK
    data = decompress(codec, body) if codec else body
    try:
        _, pos = _zigzag(data, 0)  # length
        pos += 1  # attributes
        _, pos = _zigzag(data, pos)  # timestamp delta
        _, pos = _zigzag(data, pos)  # offset delta
        key_len, pos = _zigzag(data, pos)
        if key_len < 4:
            raise CorruptBatch("a control record without its version and type")
        return int.from_bytes(data[pos + 2 : pos + 4], "big", signed=True) == ABORT_MARKER
    except IndexError:
        raise CorruptBatch("a control record cut short") from None
