"""A partition's window of recent encoded records, and when to read ahead of it.

Pure bookkeeping, no I/O: the Kafka edge feeds it each poll's records and asks
it for answers. It lives here so that its rules (what the window keeps, which
joined bodies it shares, when a poll ahead pays off) are tested with plain
synchronous tests.
"""

from __future__ import annotations

from collections import deque
from typing import Final

import attrs

from ._entries import EncodedBatch, Entries

#: How many of the latest fetches of a partition reading ahead keeps in the window.
READ_AHEAD_GUARD: Final = 8


@attrs.frozen
class WindowLimits:
    """The bounds of one partition's window: at most ``max_bytes + body_bytes`` plus per-entry overhead."""

    #: Records kept.
    max_records: int
    #: Bytes of encoded records kept.
    max_bytes: int
    #: Bytes of joined response bodies kept for sessions asking the same thing.
    body_bytes: int


class Window:
    """Encoded records ``[start, next)`` of one partition, following the newest data.

    Any fetch inside the window is answered from memory, and sessions asking
    for the same offset with the same size limit share one joined body. A
    poll's result joins the window when it continues it or is newer; reading
    older records for one client does not evict it.
    """

    def __init__(self, limits: WindowLimits) -> None:
        self.limits = limits
        self.entries = Entries()
        #: The window covers offsets [start, next); None until the first poll.
        self.start: int | None = None
        self.next: int | None = None
        #: Joined bodies recently handed out, by (offset, max_body); cleared when the window changes.
        self._bodies: dict[tuple[int, int], EncodedBatch] = {}
        self._bodies_bytes = 0
        #: The offset after the furthest record any answer has held.
        self.served_to = 0
        #: The offsets the latest answers started at: reading ahead must not push them out.
        self.asked: deque[int] = deque(maxlen=READ_AHEAD_GUARD)

    @property
    def body_cache_bytes(self) -> int:
        """Bytes of shared bodies held right now."""
        return self._bodies_bytes

    def covers(self, offset: int) -> bool:
        """Whether ``offset`` is inside ``[start, next)``."""
        return self.start is not None and self.next is not None and self.start <= offset < self.next

    def holds(self, offset: int) -> bool:
        """Whether the window has a record at or after ``offset`` (so a fetch there needs no poll)."""
        offsets = self.entries.offsets
        return self.covers(offset) and bool(offsets) and offset <= offsets[-1]

    def get(self, offset: int, max_body: int) -> EncodedBatch | None:
        """Records at ``offset`` from memory, or None when the window does not hold any.

        Raises:
            CommandFailed: RECORD_TOO_LARGE, the first record alone exceeds ``max_body``.
        """
        if not self.covers(offset):
            return None
        key = (offset, max_body)
        batch = self._bodies.get(key)
        if batch is None:
            batch = self.entries.take(offset, max_body)
            if batch is None:
                return None  # [offset, next) holds no records (compaction, transaction markers)
            if batch.count > 1:  # a single entry is the window's own bytes, not a copy
                if self._bodies_bytes + len(batch.body) > self.limits.body_bytes:
                    self._bodies.clear()
                    self._bodies_bytes = 0
                if len(batch.body) <= self.limits.body_bytes:
                    self._bodies[key] = batch
                    self._bodies_bytes += len(batch.body)
        self.note_served(offset, batch)
        return batch

    def note_served(self, offset: int, batch: EncodedBatch) -> None:
        """Remember that an answer from ``offset`` went out (for :meth:`wants_read_ahead`)."""
        self.asked.append(offset)
        if batch.next_offset > self.served_to:
            self.served_to = batch.next_offset

    def add(self, start: int, entries: Entries, position: int) -> None:
        """Add a poll's result (read from ``start``, the consumer now at ``position``), unless older than the window."""
        contiguous = self.next == start
        if not contiguous and self.next is not None and position <= self.next:
            return  # older data, read for one client: keep the window on the newest records
        self._bodies.clear()
        self._bodies_bytes = 0
        if not contiguous:
            self.entries = Entries()
            self.start = start
        self.entries.extend(entries)
        self.next = position
        self._trim()

    def _trim(self) -> None:
        window, limits = self.entries, self.limits
        excess_records = len(window) - limits.max_records
        if excess_records <= 0 and window.size <= limits.max_bytes:
            return
        drop = max(excess_records, 0)
        while (
            drop < len(window)
            and window.end_total - (window.ends[drop - 1] if drop else window.base) > limits.max_bytes
        ):
            drop += 1
        drop = min(drop, len(window))
        if drop:
            self.start = window.offsets[drop - 1] + 1
            window.drop_front(drop)

    def wants_read_ahead(self, highwater: int | None, poll_records: int, poll_bytes: int) -> bool:
        """Whether an answer reached the window's end while the log holds more: the client's next fetch is there.

        Not when a poll of up to ``poll_records`` records and ``poll_bytes``
        bytes could push out of the window records that recent fetches asked
        for: a client pipelining its fetches still needs them, and a seek back
        would throw away what the consumer has read.
        """
        end = self.next
        if end is None or highwater is None or not self.served_to == end < highwater or not self.asked:
            return False
        lowest = min(self.asked)
        if end + poll_records - lowest > self.limits.max_records:
            return False
        return self.entries.end_total - self.entries.total_before(lowest) + poll_bytes <= self.limits.max_bytes
