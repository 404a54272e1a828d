"""The push streams as /metrics sees them (issue 14): lag and credit starvation per partition, summed per topic.

``StreamTaps.lags`` reads each stream's place on a partition against the log end its
reader last saw; ``topic_stream_statistics`` sums those per topic, never per stream or
session. Both are pure reads of state the pump keeps: no Trio run, no broker.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

import attrs

from kafka_ws_trio._kafka._taps import StreamTaps, TapLag
from kafka_ws_trio._kafka._upstream import TopicStreamStatistics, topic_stream_statistics
from kafka_ws_trio._proto._events import AtOffsets, Grant, Subscribe
from kafka_ws_trio._proto._streams import Stream, StreamLimits, Streams

TOPIC = "orders"


@attrs.define
class FakeReader:
    """What the taps read of a partition reader: its partition and the log end as its last poll saw it."""

    partition: int = 0
    highwater: int | None = 20
    log_end: int | None = 20

    def in_background(self, task: Callable[[], Awaitable[None]]) -> bool:
        return True  # the pump is not run: only the taps' bookkeeping is looked at


class FakeOutlet:
    def ready(self) -> bool:
        return True


def streams() -> Streams:
    return Streams(1 << 20, StreamLimits())


def open_stream(
    on: Streams, stream_id: int, offsets: dict[int, int] | None = None, *, credit: int = 0, topic: str = TOPIC
) -> Stream:
    """A stream over the partitions of ``offsets``, placed there (a partition mapped to -1 is left unplaced)."""
    offsets = {0: 5} if offsets is None else offsets
    placed = tuple((p, o) for p, o in offsets.items() if o >= 0)
    command = Subscribe(stream_id, topic, tuple(offsets), AtOffsets(placed), credit=Grant(records=credit))
    return on.open(command)


def taps_on(reader: FakeReader) -> StreamTaps:
    return StreamTaps(cast(Any, None), cast(Any, reader))


def attach(taps: StreamTaps, stream: Stream) -> Callable[[], None]:
    attached = taps.attach(stream, cast(Any, FakeOutlet()))
    assert attached is not None
    return attached[1]


def by_stream(taps: StreamTaps) -> dict[int, tuple[int | None, bool]]:
    return {lag.stream.id: (lag.lag, lag.starved) for lag in taps.lags()}


def test_a_stream_behind_the_log_end_without_credit_is_starved_and_one_with_credit_is_not() -> None:
    reader, connection = FakeReader(highwater=20, log_end=20), streams()
    taps = taps_on(reader)
    attach(taps, open_stream(connection, 1, credit=0))
    attach(taps, open_stream(connection, 2, credit=10))
    attach(taps, open_stream(connection, 3, {0: 20}, credit=0))  # at the log end: nothing waits for credit
    attach(taps, open_stream(connection, 4, {0: 25}, credit=0))  # placed past it (a seek ahead): no lag
    assert by_stream(taps) == {1: (15, True), 2: (15, False), 3: (0, False), 4: (0, False)}


def test_credit_granted_ends_the_starvation_and_the_lag_follows_the_position() -> None:
    reader, connection = FakeReader(highwater=20, log_end=20), streams()
    taps = taps_on(reader)
    stream = open_stream(connection, 1, credit=0)
    attach(taps, stream)
    assert by_stream(taps) == {1: (15, True)}
    stream.credit.grant(Grant(records=3), stream.id)
    assert by_stream(taps) == {1: (15, False)}
    stream.place(0, 18, epoch=stream.epoch(0))
    stream.credit.spend(3, 0)
    assert by_stream(taps) == {1: (2, True)}


def test_the_log_end_is_the_larger_of_the_high_watermark_and_the_window_s_end() -> None:
    connection = streams()
    for highwater, log_end in ((30, 20), (20, 30), (None, 30), (30, None)):
        taps = taps_on(FakeReader(highwater=highwater, log_end=log_end))
        attach(taps, open_stream(connection, 100 + len(connection)))
        assert [lag.lag for lag in taps.lags()] == [25], (highwater, log_end)


def test_a_lag_that_cannot_be_known_yet_is_none_and_never_starved() -> None:
    connection = streams()
    before_first_poll = taps_on(FakeReader(highwater=None, log_end=None))
    attach(before_first_poll, open_stream(connection, 1, credit=0))
    assert by_stream(before_first_poll) == {1: (None, False)}
    unplaced = taps_on(FakeReader())
    attach(unplaced, open_stream(connection, 2, {0: -1}, credit=0))  # its start is being looked up
    assert by_stream(unplaced) == {2: (None, False)}


def test_detached_closed_and_revoked_streams_are_not_counted() -> None:
    reader, connection = FakeReader(), streams()
    taps = taps_on(reader)
    detach = attach(taps, open_stream(connection, 1))
    attach(taps, open_stream(connection, 2))
    revoked = open_stream(connection, 3)
    attach(taps, revoked)
    attach(taps, open_stream(connection, 4))
    detach()
    connection.close(2)
    revoked.revoke([0])  # a group took the partition; its tap is detached right after
    assert list(by_stream(taps)) == [4]


def test_topics_sum_their_partitions_and_count_each_stream_once() -> None:
    connection = streams()
    a = open_stream(connection, 1, {0: 0, 1: 0})
    b = open_stream(connection, 2, {0: 0})
    c = open_stream(connection, 3, {0: 0}, topic="payments")
    lags = [
        (TOPIC, TapLag(a, 10, True)),
        (TOPIC, TapLag(a, 0, False)),  # the same stream's other partition, caught up
        (TOPIC, TapLag(b, 4, False)),
        (TOPIC, TapLag(b, None, False)),  # not placed yet: counted as a partition, adds no lag
        ("payments", TapLag(c, 7, True)),
    ]
    assert topic_stream_statistics(lags) == {
        TOPIC: TopicStreamStatistics(streams=2, streams_starved=1, taps=4, taps_starved=1, lag=14, lag_max=10),
        "payments": TopicStreamStatistics(streams=1, streams_starved=1, taps=1, taps_starved=1, lag=7, lag_max=7),
    }
    assert topic_stream_statistics([]) == {}


def test_a_stream_starved_on_two_partitions_is_one_starved_stream() -> None:
    connection = streams()
    a = open_stream(connection, 1, {0: 0, 1: 0})
    found = topic_stream_statistics([(TOPIC, TapLag(a, 3, True)), (TOPIC, TapLag(a, 5, True))])
    assert found[TOPIC] == TopicStreamStatistics(streams=1, streams_starved=1, taps=2, taps_starved=2, lag=8, lag_max=5)
