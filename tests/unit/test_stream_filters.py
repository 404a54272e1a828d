"""Stream filters (schema/README.md, "Filters"): what they accept; each distinct filter runs once per record."""

from __future__ import annotations

import random
from collections.abc import Sequence

from hypothesis import given
from hypothesis import strategies as st

from kafka_ws_trio._proto._entries import Entries, encode_message_entry
from kafka_ws_trio._proto._events import Filter, Grant, HeaderMatch, Subscribe
from kafka_ws_trio._proto._filters import ACCEPT_ALL, FilterSet, Headers, Matcher, canonical, compile_filter
from kafka_ws_trio._proto._streams import Chunk, Streams


def accepts(filter_: Filter, key: bytes | None, headers: Headers = ()) -> bool:
    matcher = compile_filter(filter_)
    return matcher is None or matcher.matches(key, headers)


def reference(filter_: Filter, key: bytes | None, headers: Headers) -> bool:
    """The rules written out plainly, one record at a time."""
    if filter_.key_equals and not any(key is not None and key == wanted for wanted in filter_.key_equals):
        return False
    if filter_.key_prefix is not None and (key is None or key[: len(filter_.key_prefix)] != filter_.key_prefix):
        return False
    for match in filter_.headers:
        found = False
        for name, value in headers:
            if name == match.key and (match.value is None or (value is not None and value == match.value)):
                found = True
        if not found:
            return False
    return True


# ------------------------------------------------------------------ the rules


def test_the_empty_filter_compiles_to_nothing_to_evaluate() -> None:
    assert compile_filter(Filter()) is None
    assert compile_filter(ACCEPT_ALL) is None
    assert FilterSet().acquire(Filter()) is None


def test_key_equals_accepts_exactly_the_listed_keys() -> None:
    only = Filter(key_equals=(b"a", b"b"))
    assert accepts(only, b"a")
    assert accepts(only, b"b")
    assert not accepts(only, b"ab")
    assert not accepts(only, b"")


def test_a_null_key_equals_no_listed_key_not_even_the_empty_one() -> None:
    assert accepts(Filter(key_equals=(b"",)), b"")
    assert not accepts(Filter(key_equals=(b"",)), None)


def test_a_null_key_never_matches_a_prefix_not_even_the_empty_one() -> None:
    assert not accepts(Filter(key_prefix=b"user-"), None)
    assert not accepts(Filter(key_prefix=b""), None)
    assert accepts(Filter(key_prefix=b""), b"")
    assert accepts(Filter(key_prefix=b"user-"), b"user-7")
    assert not accepts(Filter(key_prefix=b"user-"), b"use")


def test_key_equals_and_key_prefix_must_both_hold() -> None:
    both = Filter(key_equals=(b"user-1", b"admin-1"), key_prefix=b"user-")
    assert accepts(both, b"user-1")
    assert not accepts(both, b"admin-1")
    assert not accepts(both, b"user-2")
    assert not accepts(Filter(key_equals=(b"admin-1",), key_prefix=b"user-"), b"admin-1")


def test_a_header_match_without_a_value_needs_only_the_header_even_with_a_null_value() -> None:
    present = Filter(headers=(HeaderMatch("trace"),))
    assert accepts(present, None, [("trace", b"1")])
    assert accepts(present, None, [("trace", None)])
    assert accepts(present, None, [("trace", b"")])
    assert not accepts(present, None, [("other", b"1")])
    assert not accepts(present, None, [])


def test_a_header_match_with_a_value_needs_exactly_that_value_and_a_null_one_never_has_it() -> None:
    valued = Filter(headers=(HeaderMatch("type", b"order"),))
    assert accepts(valued, b"k", [("type", b"order")])
    assert not accepts(valued, b"k", [("type", b"orders")])
    assert not accepts(valued, b"k", [("type", None)])
    assert not accepts(Filter(headers=(HeaderMatch("type", b""),)), b"k", [("type", None)])
    assert accepts(Filter(headers=(HeaderMatch("type", b""),)), b"k", [("type", b"")])


def test_a_repeated_header_name_matches_when_any_of_its_values_does() -> None:
    valued = Filter(headers=(HeaderMatch("tag", b"blue"),))
    assert accepts(valued, None, [("tag", b"red"), ("tag", b"blue")])


def test_every_header_match_must_hold() -> None:
    both = Filter(headers=(HeaderMatch("type", b"order"), HeaderMatch("trace")))
    assert accepts(both, None, [("trace", None), ("type", b"order")])
    assert not accepts(both, None, [("type", b"order")])
    assert not accepts(both, None, [("trace", b"x")])


def test_a_matcher_returns_the_indexes_of_the_records_it_accepts_in_order() -> None:
    matcher = Matcher(Filter(key_prefix=b"a", headers=(HeaderMatch("h"),)))
    keys = [b"ab", b"b", None, b"a", b"a"]
    headers: list[Headers] = [[("h", None)], [("h", b"")], [("h", b"")], [], [("x", b""), ("h", b"1")]]
    assert matcher.accepted(keys, headers) == [0, 4]
    assert matcher.checked == 5


# ------------------------------------------------------------------ sharing


def test_spellings_of_one_filter_share_one_matcher() -> None:
    filters = FilterSet()
    first = filters.acquire(Filter(key_equals=(b"b", b"a"), headers=(HeaderMatch("x", b"1"), HeaderMatch("y"))))
    second = filters.acquire(
        Filter(key_equals=(b"a", b"b", b"a"), headers=(HeaderMatch("y"), HeaderMatch("x", b"1"), HeaderMatch("y")))
    )
    other = filters.acquire(Filter(key_equals=(b"a",)))
    assert first is not None
    assert second is first
    assert other is not first
    assert len(filters) == 2
    assert filters.holders(first) == 2


def test_a_matcher_is_dropped_when_the_last_stream_holding_it_lets_go() -> None:
    filters = FilterSet()
    wanted = Filter(key_prefix=b"p")
    first, second = filters.acquire(wanted), filters.acquire(wanted)
    assert first is not None
    filters.release(first)
    assert filters.holders(first) == 1
    filters.release(second)
    assert len(filters) == 0
    assert filters.holders(first) == 0
    assert filters.acquire(wanted) is not first


def test_one_filter_evaluation_per_record_per_distinct_filter() -> None:
    keys = [b"a", b"b", None, b"ab", b"b"]
    entries = Entries.of(list(range(5)), [encode_message_entry(o, 0, k, b"v") for o, k in enumerate(keys)])
    shared = FilterSet()
    sessions = [Streams(1 << 20, filters=shared) for _ in range(10)]
    spellings = [Filter(key_prefix=b"a"), Filter(key_equals=(b"b", b"a")), Filter(key_equals=(b"a", b"b"))]
    streams = []
    for index, streams_of_session in enumerate(sessions):
        stream = streams_of_session.open(
            Subscribe(sequence=1, topic="t", partitions=(0,), filter=spellings[index % 3], credit=Grant(records=100))
        )
        stream.place(0, 0, epoch=0)
        streams.append(stream)
    chunk = Chunk(0, entries, 0, 5, 5, keys, [()] * 5)
    delivered = []
    for stream in streams:
        batch = stream.cut(chunk)
        assert batch is not None
        delivered.append(batch.count)
    assert len(shared) == 2
    matchers = {stream.matcher for stream in streams}
    assert all(matcher is not None and matcher.checked == len(keys) for matcher in matchers)
    assert delivered == [2, 3, 3] * 3 + [2]


def test_streams_with_the_empty_filter_never_evaluate_anything() -> None:
    session = Streams(1 << 20)
    stream = session.open(Subscribe(sequence=1, topic="t", partitions=(0,)))
    assert stream.matcher is None
    assert len(session.filters) == 0


# --------------------------------------------------------------- properties

KEYS = st.one_of(st.none(), st.sampled_from([b"", b"a", b"ab", b"abc", b"b", b"ba"]))
NAMES = st.sampled_from(["", "h", "i"])
VALUES = st.one_of(st.none(), st.sampled_from([b"", b"x", b"xy"]))
HEADERS = st.lists(st.tuples(NAMES, VALUES), max_size=4)
FILTERS = st.builds(
    Filter,
    key_equals=st.lists(st.sampled_from([b"", b"a", b"ab", b"b"]), max_size=3).map(tuple),
    key_prefix=st.one_of(st.none(), st.sampled_from([b"", b"a", b"ab", b"b"])),
    headers=st.lists(st.builds(HeaderMatch, NAMES, VALUES), max_size=3).map(tuple),
)


@given(FILTERS, st.lists(st.tuples(KEYS, HEADERS), max_size=12))
def test_a_compiled_filter_accepts_exactly_what_the_rules_say(
    filter_: Filter, records: Sequence[tuple[bytes | None, list[tuple[str, bytes | None]]]]
) -> None:
    keys = [key for key, _ in records]
    headers = [header for _, header in records]
    expected = [i for i, (key, header) in enumerate(records) if reference(filter_, key, header)]
    matcher = compile_filter(filter_)
    if matcher is None:
        assert expected == list(range(len(records)))
        return
    assert matcher.accepted(keys, headers) == expected
    assert [i for i, (key, header) in enumerate(records) if matcher.matches(key, header)] == expected


@given(FILTERS, st.randoms(use_true_random=False), st.lists(st.tuples(KEYS, HEADERS), max_size=8))
def test_the_canonical_form_accepts_the_same_records_and_ignores_order_and_repeats(
    filter_: Filter, shuffler: random.Random, records: Sequence[tuple[bytes | None, list[tuple[str, bytes | None]]]]
) -> None:
    keys = list(filter_.key_equals) * 2
    shuffler.shuffle(keys)
    headers = list(filter_.headers) * 2
    shuffler.shuffle(headers)
    respelled = Filter(key_equals=tuple(keys), key_prefix=filter_.key_prefix, headers=tuple(headers))
    assert canonical(respelled) == canonical(filter_)
    for key, header in records:
        assert reference(canonical(filter_), key, header) == reference(filter_, key, header)
