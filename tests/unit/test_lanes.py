"""Ordering lanes: per partition, answers leave in request order; a command may span partitions; no deadlock."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kafka_ws_trio._proto import Key, Lanes, Ticket

KEYS = st.sampled_from([("a", 0), ("a", 1), ("b", 0), ("c", 3)])


def test_a_ticket_spanning_two_partitions_waits_for_both() -> None:
    lanes = Lanes()
    first = lanes.take([("a", 0)])
    second = lanes.take([("a", 1)])
    both = lanes.take([("a", 0), ("a", 1)])
    assert not lanes.ready(both)
    assert lanes.done(first) == []  # ("a", 1) still has `second` in front
    assert lanes.done(second) == [both]
    assert lanes.done(both) == []
    assert len(lanes) == 0


def test_finishing_out_of_turn_is_refused() -> None:
    lanes = Lanes()
    lanes.take([("a", 0)])
    later = lanes.take([("a", 0)])
    with pytest.raises(ValueError, match="out of turn"):
        lanes.done(later)


def test_idle_means_nothing_pending_on_any_of_the_partitions() -> None:
    lanes = Lanes()
    ticket = lanes.take([("a", 0)])
    assert not lanes.idle([("a", 0), ("b", 0)])
    assert lanes.idle([("b", 0)])
    lanes.done(ticket)
    assert lanes.idle([("a", 0)])


@given(st.lists(st.lists(KEYS, min_size=1, max_size=3), min_size=1, max_size=30), st.randoms())
def test_any_ready_ticket_may_finish_and_every_partition_keeps_request_order(
    key_sets: list[list[Key]], rng: random.Random
) -> None:
    lanes = Lanes()
    tickets = [lanes.take(keys) for keys in key_sets]
    ready = [t for t in tickets if lanes.ready(t)]
    assert ready, "the oldest ticket is always ready"
    finished: list[Ticket] = []
    while ready:
        ticket = ready.pop(rng.randrange(len(ready)))
        finished.append(ticket)
        ready += lanes.done(ticket)
        assert all(lanes.ready(t) for t in ready)
    assert len(finished) == len(tickets), "some ticket never got its turn"
    assert len(lanes) == 0
    for key in {key for keys in key_sets for key in keys}:
        order = [t.number for t in finished if key in t.keys]
        assert order == sorted(order), f"{key} answered out of order"
