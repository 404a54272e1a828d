"""Encode once, send many: records as the bytes they take inside a KafkaFetchResp.

A record read from Kafka is encoded once, when it is fetched; every response
that carries it is then a head plus a join of those bytes. Sessions tailing
one partition share the work (and often the very same body). The bytes are
exactly what protobuf would write (fields in number order, proto3 defaults
left out, ``optional`` fields written when set); tests compare them.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from typing import Final

import attrs

from .._pb import pubsub_pb2 as pb
from ._errors import CommandFailed, ErrorCode

#: Most bytes a fetch frame adds around its body: sequence (tag + 10), the
#: kafka_fetch_resp tag (2) and the body's length (up to 5).
FETCH_FRAME_OVERHEAD: Final = 1 + 10 + 2 + 5

_SMALL_VARINTS: Final = tuple(bytes((n,)) for n in range(128))


def read_varint(data: bytes, at: int) -> tuple[int, int]:
    """The base-128 varint at ``data[at:]`` and the index after it; ValueError if ``data`` ends first."""
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def varint(value: int) -> bytes:
    """The base-128 varint of ``value``; negative numbers as 64-bit two's complement."""
    if 0 <= value < 128:
        return _SMALL_VARINTS[value]
    if value < 0:
        value += 1 << 64
    if value < 0x4000:
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    if value < 0x200000:
        return bytes(((value & 0x7F) | 0x80, ((value >> 7) & 0x7F) | 0x80, value >> 14))
    if value < 0x10000000:
        return bytes(((value & 0x7F) | 0x80, ((value >> 7) & 0x7F) | 0x80, ((value >> 14) & 0x7F) | 0x80, value >> 21))
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
    return b"\x0a" + varint(len(message)) + message


@attrs.frozen
class EncodedBatch:
    """Records already encoded with :func:`encode_message_entry`, joined: a fetch response's body."""

    body: bytes
    count: int
    #: The offset after the batch's last record (0 when not known): where the client reads next.
    next_offset: int = 0


#: A batch of no records: the answer at the log end.
EMPTY_BATCH: Final = EncodedBatch(b"", 0)


def encode_fetch_head(sequence: int, body_size: int) -> bytes:
    """The bytes before a fetch response's body: ``head + body`` is the whole frame.

    Lets one shared body go to many sessions without being copied for each.
    """
    head = b"\x08" + varint(sequence) if sequence else b""
    return head + b"\x8a\x02" + varint(body_size)


def record_too_large(offset: int, size: int, max_message_size: int) -> CommandFailed:
    """The failure for one record that does not fit in a response on its own."""
    return CommandFailed(
        ErrorCode.RECORD_TOO_LARGE,
        f"record at offset {offset} is {size} bytes encoded, more than fits in max_message_size ({max_message_size})",
    )


class Entries:
    """Encoded records in offset order, with running byte totals to slice them fast.

    ``ends[i]`` is the total size of every entry up to and including ``i``,
    counted from the first entry ever appended, so dropping entries from the
    front changes no other number (``base`` is the total before ``entries[0]``).
    ``keys[i]`` and ``headers[i]`` are record i's key and headers, kept (as
    references to what the Kafka client made) for stream filters.
    """

    __slots__ = ("base", "ends", "entries", "headers", "keys", "offsets")

    def __init__(self) -> None:
        self.offsets: list[int] = []
        self.entries: list[bytes] = []
        self.ends: list[int] = []
        self.keys: list[bytes | None] = []
        self.headers: list[Sequence[tuple[str, bytes | None]]] = []
        self.base = 0

    @classmethod
    def of(
        cls,
        offsets: list[int],
        entries: list[bytes],
        keys: list[bytes | None] | None = None,
        headers: list[Sequence[tuple[str, bytes | None]]] | None = None,
    ) -> Entries:
        """Entries from parallel lists (taken over, not copied), totals built with C-level operations.

        Without ``keys`` and ``headers``, every record counts as having a null key and no headers.
        """
        made = cls()
        made.offsets = offsets
        made.entries = entries
        made.ends = list(itertools.accumulate(map(len, entries)))
        made.keys = [None] * len(offsets) if keys is None else keys
        made.headers = [()] * len(offsets) if headers is None else headers
        return made

    def slice(self, first: int, stop: int) -> Entries:
        """Entries ``first`` to ``stop`` (positions, not offsets) as a new Entries; the bytes are shared, not copied."""
        made = Entries.of(
            self.offsets[first:stop], self.entries[first:stop], self.keys[first:stop], self.headers[first:stop]
        )
        return made

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def size(self) -> int:
        return self.end_total - self.base

    @property
    def end_total(self) -> int:
        """The running total after the last entry (``base`` when empty)."""
        return self.ends[-1] if self.ends else self.base

    def total_before(self, offset: int) -> int:
        """The running total before the first entry at or after ``offset``."""
        kept = bisect.bisect_left(self.offsets, offset)
        return self.ends[kept - 1] if kept else self.base

    def append(
        self, offset: int, entry: bytes, key: bytes | None = None, headers: Sequence[tuple[str, bytes | None]] = ()
    ) -> None:
        self.offsets.append(offset)
        self.entries.append(entry)
        self.ends.append(self.end_total + len(entry))
        self.keys.append(key)
        self.headers.append(headers)

    def extend(self, other: Entries) -> None:
        start = self.end_total
        self.offsets += other.offsets
        self.entries += other.entries
        self.keys += other.keys
        self.headers += other.headers
        self.ends += itertools.accumulate(map(len, other.entries), initial=start)
        del self.ends[len(self.ends) - len(other.entries) - 1]  # the running total's start value

    def drop_front(self, count: int) -> None:
        if count <= 0:
            return
        self.base = self.ends[count - 1]
        del self.offsets[:count], self.entries[:count], self.ends[:count], self.keys[:count], self.headers[:count]

    def take(self, offset: int, max_body: int) -> EncodedBatch | None:
        """The entries at or after ``offset`` that fit in ``max_body`` bytes; None when there are none.

        Raises:
            CommandFailed: the first of them alone is larger than ``max_body``.
        """
        first = bisect.bisect_left(self.offsets, offset)
        if first == len(self.offsets):
            return None
        before = self.ends[first - 1] if first else self.base
        last = bisect.bisect_right(self.ends, before + max_body, lo=first)
        if last == first:
            raise record_too_large(self.offsets[first], self.ends[first] - before, max_body + FETCH_FRAME_OVERHEAD)
        after = self.offsets[last - 1] + 1
        if last - first == 1:
            return EncodedBatch(self.entries[first], 1, after)
        return EncodedBatch(b"".join(self.entries[first:last]), last - first, after)
