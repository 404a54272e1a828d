"""The partition window's encoded-record list (pure logic; no Kafka)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kafka_ws_trio._proto import CommandFailed, Entries, ErrorCode

SIZES = st.lists(st.integers(1, 50), min_size=1, max_size=30)


def _build(sizes: list[int], first_offset: int = 0, *, by_extend: bool = False) -> Entries:
    entries = Entries()
    chunk = Entries()
    for index, size in enumerate(sizes):
        (chunk if by_extend else entries).append(first_offset + 2 * index, bytes([index % 256]) * size)
    if by_extend:
        entries.extend(chunk)
    return entries


@given(SIZES, st.integers(0, 80), st.integers(1, 200), st.integers(0, 29), st.booleans())
def test_take_returns_the_longest_run_from_the_offset_that_fits(
    sizes: list[int], offset: int, budget: int, dropped: int, by_extend: bool
) -> None:
    entries = _build(sizes, by_extend=by_extend)
    dropped = min(dropped, len(sizes) - 1)
    entries.drop_front(dropped)
    kept = list(zip(range(2 * dropped, 2 * len(sizes), 2), sizes[dropped:], strict=True))
    assert entries.size == sum(size for _, size in kept)
    wanted = [(o, s) for o, s in kept if o >= offset]
    if not wanted:
        assert entries.take(offset, budget) is None
        return
    if wanted[0][1] > budget:
        with pytest.raises(CommandFailed) as failed:
            entries.take(offset, budget)
        assert failed.value.code == ErrorCode.RECORD_TOO_LARGE
        assert f"offset {wanted[0][0]}" in failed.value.reason
        return
    fit = []
    total = 0
    for o, s in wanted:
        if total + s > budget:
            break
        fit.append((o, s))
        total += s
    batch = entries.take(offset, budget)
    assert batch is not None
    assert batch.count == len(fit)
    assert len(batch.body) == total
    assert batch.body == b"".join(bytes([(o // 2) % 256]) * s for o, s in fit)
