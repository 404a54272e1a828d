"""kafka-python's consumer, handing out records already encoded for the wire.

kafka-python's fetcher builds its per-partition record iterator from the
class in its ``PartitionRecords`` attribute. Each consumer's fetcher gets a
subclass whose iterator decodes the fetched batches with :mod:`._batches`
and yields ``(offset, entry, key, headers)`` tuples instead of
``ConsumerRecord``s; everything else (fetch sessions, positions, errors,
pausing, metrics) stays kafka-python's. A poll's answer then goes into the
reader's :class:`~kafka_ws_trio._proto.Entries` without another pass.

If a kafka-python release moves the attribute, :func:`install` says so once
in the log and leaves the consumer as it is: the reader takes
``ConsumerRecord``s too (slower, same bytes).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from typing import Any

from .._proto import encode_message_entry
from ._batches import Batch, CorruptBatch, DecodedRecord, LegacyBatch, TransactionFilter, batches

log = logging.getLogger("kafka_ws_trio.kafka")

_warned = False


def _decompress(codec: int, data: bytes) -> bytes:
    """A batch's records uncompressed with kafka-python's codecs (1 gzip, 2 snappy, 3 lz4, 4 zstd)."""
    from kafka import codec as codecs
    from kafka.errors import UnsupportedCodecError

    decoders = {1: codecs.gzip_decode, 2: codecs.snappy_decode, 3: codecs.lz4_decode, 4: codecs.zstd_decode}
    decoder = decoders.get(codec)
    if decoder is None:
        raise UnsupportedCodecError(f"record batch compressed with unknown codec {codec}")
    try:
        return bytes(decoder(data))
    except (ImportError, NotImplementedError, TypeError) as exc:
        # kafka-python's stand-ins when the codec's library is missing.
        raise UnsupportedCodecError(f"cannot read records compressed with codec {codec}: {exc}") from exc
    except Exception as exc:  # each codec's library has errors of its own (BadGzipFile, ZstdError, ...)
        raise CorruptBatch(f"records compressed with codec {codec} that do not decompress: {exc}") from exc


@functools.cache
def entry_records_class() -> type[Any]:
    """The ``PartitionRecords`` subclass (built once, on first use: kafka-python loads lazily)."""
    from kafka.consumer.fetcher import Fetcher
    from kafka.errors import CorruptRecordError
    from kafka.protocol.consumer import IsolationLevel
    from kafka.record import MemoryRecords
    from kafka.record.util import calc_crc32c

    class EntryRecords(Fetcher.PartitionRecords):  # type: ignore[misc]
        """One partition's fetched records as ``(offset, entry, key, headers)`` tuples."""

        def _maybe_skip_record(self, record: Any) -> bool:
            return False  # records before the fetch offset never leave the decoder

        def _unpack_records(
            self, tp: Any, records: Any, key_deserializer: Any, value_deserializer: Any
        ) -> Iterator[DecodedRecord]:
            transactions = None
            if self.isolation_level == IsolationLevel.READ_COMMITTED:
                transactions = TransactionFilter([(t.producer_id, t.first_offset) for t in self.aborted_transactions])
            decoded = batches(
                bytes(records._buffer),
                self.fetch_offset,
                decompress=_decompress,
                crc32c=calc_crc32c if self.check_crcs else None,
                transactions=transactions,
            )
            try:
                for batch in decoded:
                    if isinstance(batch, LegacyBatch):
                        yield from self._legacy(batch.data)
                        continue
                    yield from self._records(batch)
            except Exception as exc:
                # Drained, or kafka-python's fetcher would take this exhausted iterator for records
                # still to come and loop on it forever; drained, it fetches again and fails again.
                self.drain()
                if isinstance(exc, CorruptBatch):
                    raise CorruptRecordError(f"{tp.topic}-{tp.partition}: {exc}") from exc
                raise
            self.drain()

        def _records(self, batch: Batch) -> Iterator[DecodedRecord]:
            self.leader_epoch = batch.leader_epoch
            for record in batch.records:
                self.next_fetch_offset = record[0] + 1
                yield record
            self.records_read += len(batch.records)
            self.bytes_read += batch.size
            self.next_fetch_offset = batch.next_offset

        def _legacy(self, data: bytes) -> Iterator[DecodedRecord]:
            """A batch in message format 0 or 1, read by kafka-python and encoded here."""
            legacy = MemoryRecords(data).next_batch()
            for record in legacy:
                if self.check_crcs and not record.validate_crc():
                    raise CorruptRecordError(f"record at offset {record.offset} failed its CRC check")
                if record.offset < self.fetch_offset:
                    continue
                entry = encode_message_entry(record.offset, record.timestamp, record.key, record.value, ())
                self.records_read += 1
                self.next_fetch_offset = record.offset + 1
                yield (record.offset, entry, record.key, ())

    return EntryRecords


def install(consumer: Any) -> bool:
    """Make ``consumer`` hand out encoded records; False (said once in the log) when this kafka-python cannot."""
    global _warned
    fetcher = getattr(consumer, "_fetcher", None)
    try:
        from kafka.record import MemoryRecords

        usable = hasattr(fetcher, "PartitionRecords") and hasattr(MemoryRecords(b""), "_buffer")
        made = entry_records_class() if usable else None
    except ImportError:
        made = None
    if made is None:
        if not _warned:
            _warned = True
            log.warning("this kafka-python release has no fetcher hook the proxy knows; records are read the slow way")
        return False
    fetcher.PartitionRecords = made  # type: ignore[union-attr]
    return True
