"""The partition window's rules, without Kafka: what it keeps, what it answers, when it reads ahead.

The window is pure bookkeeping (``kafka_ws_trio._proto._window``); the
partition reader feeds it each poll and asks it for answers. These tests
feed it polls by hand, and a state machine checks that, whatever the order
of polls and fetches, it stays within its limits and answers exactly the
records it was given, in offset order, with none left out.
"""

from __future__ import annotations

from typing import Final

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from kafka_ws_trio._proto import CommandFailed, EncodedBatch, Entries, ErrorCode, Window, WindowLimits
from kafka_ws_trio._proto._window import READ_AHEAD_GUARD

# A hang guard, not a speed bound: the state machine took over 30 s beside a running bench.
pytestmark = pytest.mark.timeout(120)

#: Large enough that no limit in a test is reached unless the test means it to be.
ROOMY: Final = WindowLimits(max_records=1_000, max_bytes=1_000_000, body_bytes=1_000_000)
#: A max_body every test's answers fit in.
ANY_SIZE: Final = 1_000_000


def entry(offset: int, size: int = 10) -> bytes:
    """Stand-in encoded record bytes of ``size`` bytes that name their offset (the window never parses them)."""
    label = b"%d:" % offset
    return (label + b"." * size)[:size] if size >= len(label) else label


def entries(offsets: list[int] | range, size: int = 10) -> Entries:
    return Entries.of(list(offsets), [entry(offset, size) for offset in offsets])


def offsets_in(batch: EncodedBatch | None, size: int = 10) -> list[int]:
    """The offsets an answer carries, read back from the stand-in bytes (every entry ``size`` bytes)."""
    assert batch is not None
    chunks = [batch.body[i : i + size] for i in range(0, len(batch.body), size)]
    assert len(chunks) == batch.count
    return [int(chunk.split(b":")[0]) for chunk in chunks]


def window_of(start: int, stop: int, limits: WindowLimits = ROOMY) -> Window:
    window = Window(limits)
    window.add(start, entries(range(start, stop)), stop)
    return window


# ------------------------------------------------------------------ answers


def test_an_empty_window_answers_nothing() -> None:
    window = Window(ROOMY)
    assert window.get(0, ANY_SIZE) is None
    assert not window.covers(0)
    assert not window.holds(0)
    assert window.start is None
    assert window.next is None


def test_answers_come_only_from_inside_start_to_next() -> None:
    window = window_of(10, 15)
    assert (window.start, window.next) == (10, 15)
    assert window.get(9, ANY_SIZE) is None
    assert window.get(15, ANY_SIZE) is None
    batch = window.get(10, ANY_SIZE)
    assert offsets_in(batch) == [10, 11, 12, 13, 14]
    assert batch is not None
    assert batch.next_offset == 15
    assert offsets_in(window.get(13, ANY_SIZE)) == [13, 14]


def test_an_answer_holds_what_fits_in_max_body() -> None:
    window = window_of(0, 5)
    assert offsets_in(window.get(1, 29)) == [1, 2]
    with pytest.raises(CommandFailed) as failed:
        window.get(1, 9)
    assert failed.value.code == ErrorCode.RECORD_TOO_LARGE


def test_offsets_without_records_in_the_window_answer_none_but_gaps_are_skipped() -> None:
    # Records 0 and 5 (compaction removed 1-4); the poll ended at 8 (say, transaction markers at 6 and 7).
    window = Window(ROOMY)
    window.add(0, entries([0, 5]), 8)
    assert offsets_in(window.get(1, ANY_SIZE)) == [5]
    assert window.holds(1)
    assert window.covers(6)
    assert not window.holds(6)
    assert window.get(6, ANY_SIZE) is None


# -------------------------------------------------------------------- polls


def test_a_poll_that_continues_the_window_extends_it() -> None:
    window = window_of(0, 5)
    window.add(5, entries(range(5, 8)), 8)
    assert (window.start, window.next) == (0, 8)
    assert offsets_in(window.get(3, ANY_SIZE)) == [3, 4, 5, 6, 7]


def test_an_older_poll_does_not_evict_the_window() -> None:
    window = window_of(100, 110)
    window.add(0, entries(range(5)), 5)  # one client reading history
    assert (window.start, window.next) == (100, 110)
    assert window.get(0, ANY_SIZE) is None
    assert offsets_in(window.get(108, ANY_SIZE)) == [108, 109]


def test_a_newer_poll_that_does_not_continue_the_window_replaces_it() -> None:
    window = window_of(0, 5)
    window.add(50, entries(range(50, 53)), 53)
    assert (window.start, window.next) == (50, 53)
    assert window.get(2, ANY_SIZE) is None
    assert offsets_in(window.get(50, ANY_SIZE)) == [50, 51, 52]


def test_trimming_by_max_records_keeps_the_newest() -> None:
    window = window_of(0, 10, WindowLimits(max_records=4, max_bytes=ANY_SIZE, body_bytes=ANY_SIZE))
    assert (window.start, window.next) == (6, 10)
    assert window.entries.offsets == [6, 7, 8, 9]
    assert window.get(5, ANY_SIZE) is None
    window.add(10, entries([10]), 11)
    assert window.entries.offsets == [7, 8, 9, 10]
    assert window.start == 7


def test_trimming_by_max_bytes_keeps_the_newest_within_the_budget() -> None:
    # Records of 10 bytes, 25 bytes allowed: two records fit, three do not.
    window = window_of(0, 5, WindowLimits(max_records=100, max_bytes=25, body_bytes=ANY_SIZE))
    assert window.entries.size <= 25
    assert window.entries.offsets == [3, 4]
    assert window.start == 3
    window.add(5, entries([5]), 6)
    assert window.entries.offsets == [4, 5]


# ------------------------------------------------------------- shared bodies


def test_the_same_offset_and_max_body_get_the_same_body() -> None:
    window = window_of(0, 5)
    first = window.get(1, ANY_SIZE)
    assert first is not None
    assert window.get(1, ANY_SIZE) is first  # shared, not joined again
    assert window.body_cache_bytes == len(first.body)
    other = window.get(1, 25)
    assert other is not first
    assert offsets_in(other) == [1, 2]


def test_a_single_record_answer_is_the_windows_own_bytes_and_not_counted() -> None:
    window = window_of(0, 5)
    batch = window.get(4, ANY_SIZE)
    assert batch is not None
    assert batch.body is window.entries.entries[4]
    assert window.body_cache_bytes == 0


def test_shared_bodies_stay_within_body_bytes() -> None:
    window = window_of(0, 5, WindowLimits(max_records=100, max_bytes=ANY_SIZE, body_bytes=25))
    too_large = window.get(0, ANY_SIZE)  # 50 bytes: never kept
    assert too_large is not None
    assert window.get(0, ANY_SIZE) is not too_large
    assert window.body_cache_bytes == 0
    kept = window.get(0, 20)
    assert kept is not None
    assert window.get(0, 20) is kept
    assert window.body_cache_bytes == 20
    newer = window.get(1, 20)  # 20 more would pass 25: the old ones go
    assert newer is not None
    assert window.body_cache_bytes == 20
    assert window.get(1, 20) is newer
    assert window.get(0, 20) is not kept


def test_a_poll_that_changes_the_window_drops_the_shared_bodies() -> None:
    window = window_of(0, 5)
    before = window.get(0, ANY_SIZE)
    window.add(5, entries([5]), 6)
    assert window.body_cache_bytes == 0
    after = window.get(0, ANY_SIZE)
    assert after is not before
    assert offsets_in(after) == [0, 1, 2, 3, 4, 5]


# ---------------------------------------------------------------- read-ahead


def test_read_ahead_is_wanted_when_an_answer_reached_the_end_and_the_log_holds_more() -> None:
    window = window_of(0, 10)
    assert not window.wants_read_ahead(20, 5, 50)  # nothing served yet
    window.get(0, 49)  # records 0-3: not the end
    assert not window.wants_read_ahead(20, 5, 50)
    window.get(4, ANY_SIZE)  # 4-9: the end
    assert window.wants_read_ahead(20, 5, 50)
    assert not window.wants_read_ahead(10, 5, 50)  # the window ends at the log end
    assert not window.wants_read_ahead(None, 5, 50)  # the log end is unknown


def test_read_ahead_is_not_wanted_when_it_would_push_recent_asks_out_by_records() -> None:
    window = window_of(0, 10, WindowLimits(max_records=12, max_bytes=ANY_SIZE, body_bytes=ANY_SIZE))
    window.get(0, ANY_SIZE)  # a client still reading from 0: a poll of 3 would trim record 0
    assert not window.wants_read_ahead(100, 3, 30)
    assert window.wants_read_ahead(100, 2, 20)


def test_read_ahead_is_not_wanted_when_it_would_push_recent_asks_out_by_bytes() -> None:
    window = window_of(0, 10, WindowLimits(max_records=100, max_bytes=120, body_bytes=ANY_SIZE))
    window.get(0, ANY_SIZE)  # 100 bytes held from the ask at 0
    assert not window.wants_read_ahead(100, 5, 21)
    assert window.wants_read_ahead(100, 5, 20)


def test_read_ahead_forgets_asks_older_than_its_guard() -> None:
    window = window_of(0, 10, WindowLimits(max_records=12, max_bytes=ANY_SIZE, body_bytes=ANY_SIZE))
    window.get(0, ANY_SIZE)
    assert not window.wants_read_ahead(100, 5, 50)
    for _ in range(READ_AHEAD_GUARD):
        window.get(9, ANY_SIZE)  # later asks at the end: the one at 0 is no longer recent
    assert window.wants_read_ahead(100, 5, 50)


# ------------------------------------------------------------- state machine

SIZES = st.integers(1, 30)


class WindowMachine(RuleBasedStateMachine):
    """Polls and fetches in any order, against a model of what the window must hold.

    The model keeps every record added since the window last started over,
    and expects the window to hold its longest suffix within both limits.
    """

    @initialize(
        max_records=st.integers(1, 12),
        max_bytes=st.integers(1, 200),
        body_bytes=st.integers(0, 200),
    )
    def start(self, max_records: int, max_bytes: int, body_bytes: int) -> None:
        self.limits = WindowLimits(max_records=max_records, max_bytes=max_bytes, body_bytes=body_bytes)
        self.window = Window(self.limits)
        self.records: list[tuple[int, bytes]] = []  # since the window last started over
        self.start_offset: int | None = None
        self.next_offset: int | None = None

    def _add(self, start: int, gaps_and_sizes: list[tuple[int, int]], tail: int) -> None:
        new: list[tuple[int, bytes]] = []
        offset = start
        for gap, size in gaps_and_sizes:
            offset += gap
            new.append((offset, b"%d:" % offset + b"." * size))
            offset += 1
        position = offset + tail
        self.window.add(start, Entries.of([o for o, _ in new], [e for _, e in new]), position)
        if self.next_offset != start:
            self.records = []
            self.start_offset = start
        self.records += new
        self.next_offset = position
        # Trim the model: the longest suffix within both limits.
        kept = 0
        size = 0
        for _, data in reversed(self.records):
            if kept + 1 > self.limits.max_records or size + len(data) > self.limits.max_bytes:
                break
            kept += 1
            size += len(data)
        dropped = self.records[: len(self.records) - kept]
        if dropped:
            self.start_offset = dropped[-1][0] + 1
        self.records = self.records[len(self.records) - kept :]

    @rule(
        polled=st.lists(st.tuples(st.integers(0, 2), SIZES), max_size=8),
        tail=st.integers(0, 2),
    )
    def poll_continuing(self, polled: list[tuple[int, int]], tail: int) -> None:
        self._add(0 if self.next_offset is None else self.next_offset, polled, tail)

    @rule(skip=st.integers(1, 20), polled=st.lists(st.tuples(st.integers(0, 2), SIZES), max_size=8))
    def poll_newer(self, skip: int, polled: list[tuple[int, int]]) -> None:
        self._add((self.next_offset or 0) + skip, polled, 0)

    @precondition(lambda self: self.start_offset is not None and self.start_offset > 0)
    @rule(data=st.data())
    def poll_older(self, data: st.DataObject) -> None:
        assert self.start_offset is not None
        start = data.draw(st.integers(0, self.start_offset - 1))
        before = (self.window.start, self.window.next, list(self.window.entries.offsets))
        self.window.add(start, entries([start], 5), start + 1)
        assert (self.window.start, self.window.next, list(self.window.entries.offsets)) == before

    @rule(at=st.integers(-2, 60), max_body=st.integers(1, 120))
    def fetch(self, at: int, max_body: int) -> None:
        if self.start_offset is None or self.next_offset is None:
            assert self.window.get(at, max_body) is None
            return
        if not self.start_offset <= at < self.next_offset:
            assert self.window.get(at, max_body) is None
            return
        wanted = [(offset, data) for offset, data in self.records if offset >= at]
        if not wanted:
            assert self.window.get(at, max_body) is None
            return
        if len(wanted[0][1]) > max_body:
            with pytest.raises(CommandFailed):
                self.window.get(at, max_body)
            return
        fit: list[tuple[int, bytes]] = []
        total = 0
        for offset, data in wanted:
            if total + len(data) > max_body:
                break
            fit.append((offset, data))
            total += len(data)
        batch = self.window.get(at, max_body)
        assert batch is not None
        assert batch.body == b"".join(data for _, data in fit)
        assert batch.count == len(fit)
        assert batch.next_offset == fit[-1][0] + 1

    @invariant()
    def within_limits_and_like_the_model(self) -> None:
        if self.start_offset is None:
            return
        window = self.window
        assert len(window.entries) <= self.limits.max_records
        assert window.entries.size <= self.limits.max_bytes
        assert window.body_cache_bytes <= self.limits.body_bytes
        assert window.entries.offsets == [offset for offset, _ in self.records]
        assert window.entries.entries == [data for _, data in self.records]
        assert window.start == self.start_offset
        assert window.next == self.next_offset


WindowMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
test_window_machine = WindowMachine.TestCase
