"""Fakes for the Kafka edge's session tests: an in-memory consumer, and a place for background tasks.

``FakeConsumer`` implements the part of ``kafka.KafkaConsumer`` the edge uses
(``_kafka._client.ConsumerLike``) over a list of records, from the worker
threads the edge runs it in. Tests can hold a call at its start (``gate``)
and learn, in Trio, that it started (``on_poll`` / ``on_topics``), so that
sessions can be lined up behind one poll without sleeping.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import attrs
import trio
from kafka import TopicPartition
from trio_websocket import ConnectionClosed

from kafka_ws_trio._config import ProxyConfig, RouteConfig
from kafka_ws_trio._kafka import Counters, KafkaContext, OutageLog, ThreadedConsumer
from kafka_ws_trio._kafka._reader import PartitionReader
from kafka_ws_trio._pb import pubsub_pb2 as pb
from kafka_ws_trio._proto import EncodedBatch

TOPIC: Final = "fake-topic"
PARTITION: Final = 0
TP: Final = TopicPartition(TOPIC, PARTITION)
#: Seconds a gated call waits to be let through before the test counts as hung.
GATE_TIMEOUT: Final = 20.0
#: Plenty for any answer in these tests.
ANY_SIZE: Final = 1 << 20


@attrs.frozen
class FakeRecord:
    """What the edge reads of a kafka-python ConsumerRecord."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]] = ()


def value_of(offset: int) -> bytes:
    """Every record's value names its offset, in a fixed width (so all records encode to the same size)."""
    return b"value-%06d" % offset


class FakeConsumer:
    """An in-memory partition log (offset = index) behind kafka-python's consumer calls, thread-safe."""

    def __init__(self, records: int = 0, *, per_poll: int | None = None) -> None:
        self._changed = threading.Condition()
        self.log: list[FakeRecord] = []
        #: At most this many records per poll (kafka-python's fetch size does the same); None: max_records.
        self.per_poll = per_poll
        #: Where the next poll reads (kafka-python's position); None before the first seek.
        self.at: int | None = None
        self.assigned: list[Any] = []
        self.polls = 0
        self.seeks: list[int] = []
        self.topic_calls = 0
        self.topic_map: dict[str, set[int]] = {TOPIC: {0, 1, 2}}
        self.closed = False
        #: When set to an unset Event, calls to poll/topics wait for it at their start.
        self.gate: threading.Event | None = None
        #: Called (in the calling thread) when a poll or a metadata call starts.
        self.on_poll: Callable[[], None] | None = None
        self.on_topics: Callable[[], None] | None = None
        #: An exception every poll raises (a broker gone).
        self.poll_error: Exception | None = None
        #: Offsets that hold a transaction's commit or abort marker: in the log, never handed out.
        self.markers: set[int] = set()
        self.append(records)

    # ------------------------------------------------------------- the log

    def append(self, count: int) -> None:
        """Add ``count`` records at the log end, waking a poll waiting there."""
        with self._changed:
            for _ in range(count):
                offset = len(self.log)
                self.log.append(FakeRecord(offset, 1_700_000_000_000 + offset, b"k%06d" % offset, value_of(offset)))
            self._changed.notify_all()

    def append_record(self, value: bytes) -> None:
        """Add one record with this value at the log end (its key names its offset, as :meth:`append`'s do)."""
        with self._changed:
            offset = len(self.log)
            self.log.append(FakeRecord(offset, 1_700_000_000_000 + offset, b"k%06d" % offset, value))
            self._changed.notify_all()

    def append_marker(self) -> None:
        """Add a transaction marker at the log end: it takes an offset, and no poll hands it out.

        Like kafka-python skipping a control batch: a poll that starts at markers moves the
        position past them and returns nothing for them (``position()`` shows the move); a
        poll that reads records stops before one.
        """
        with self._changed:
            offset = len(self.log)
            self.log.append(FakeRecord(offset, 1_700_000_000_000 + offset, None, None))
            self.markers.add(offset)
            self._changed.notify_all()

    def _wait_at_gate(self) -> None:
        gate = self.gate
        if gate is not None and not gate.wait(GATE_TIMEOUT):
            raise AssertionError("the test never opened the gate")

    # ------------------------------------------------------- ConsumerLike

    def assign(self, partitions: list[Any]) -> None:
        self.assigned = list(partitions)

    def seek(self, partition: Any, offset: int) -> None:
        assert partition == TP
        self.seeks.append(offset)
        self.at = offset

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, list[Any]]:
        with self._changed:
            self.polls += 1
        if self.on_poll is not None:
            self.on_poll()
        self._wait_at_gate()
        if self.poll_error is not None:
            raise self.poll_error
        assert self.at is not None, "the edge polled before seeking"
        limit = min((n for n in (max_records, self.per_poll) if n is not None), default=1 << 30)
        with self._changed:
            self._changed.wait_for(lambda: len(self.log) > (self.at or 0) or self.closed, timeout_ms / 1000)
            at, end = self.at, len(self.log)
            got: list[FakeRecord] = []
            if at < end and at in self.markers:
                while at < end and at in self.markers:
                    at += 1
            else:
                while at < end and len(got) < limit and at not in self.markers:
                    got.append(self.log[at])
                    at += 1
            self.at = at
        return {TP: got} if got else {}

    def position(self, partition: Any, timeout_ms: int | None = None) -> int | None:
        return self.at

    def highwater(self, partition: Any) -> int | None:
        return len(self.log)

    def end_offsets(self, partitions: list[Any], timeout_ms: int | None = None) -> dict[Any, int]:
        return {tp: len(self.log) for tp in partitions}

    def beginning_offsets(self, partitions: list[Any], timeout_ms: int | None = None) -> dict[Any, int]:
        return {tp: 0 for tp in partitions}

    def offsets_for_times(self, timestamps: dict[Any, int], timeout_ms: int | None = None) -> dict[Any, Any]:
        found: dict[Any, Any] = {}
        for tp, stamp in timestamps.items():
            found[tp] = next((r for r in self.log if r.timestamp >= stamp), None)
        return found

    def topics(self) -> set[str]:
        with self._changed:
            self.topic_calls += 1
        if self.on_topics is not None:
            self.on_topics()
        self._wait_at_gate()
        return set(self.topic_map)

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return self.topic_map.get(topic)

    def close(self) -> None:
        with self._changed:
            self.closed = True
            self._changed.notify_all()


class Background:
    """Where the edge's background tasks run in a test (the route's nursery), and a way to wait for them."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self.started = 0
        self.running = 0
        self._changed = trio.Event()

    def spawn(self, task: Callable[[], Awaitable[None]]) -> bool:
        if self._nursery.cancel_scope.cancel_called:
            return False  # as the route does: no task starts in a nursery being cancelled
        self.started += 1
        self.running += 1

        async def run() -> None:
            try:
                await task()
            finally:
                self.running -= 1
                self._changed.set()
                self._changed = trio.Event()

        self._nursery.start_soon(run)
        return True

    async def settled(self) -> None:
        """Return once no background task runs."""
        while self.running:
            await self._changed.wait()


def route(**settings: Any) -> RouteConfig:
    """A route to a port nothing listens on (the fakes never connect), with ``settings``."""
    base = ProxyConfig.single_route("127.0.0.1:9").routes[0]
    return attrs.evolve(base, **settings)


def context(background: Background, *, threads: int = 4, **settings: Any) -> KafkaContext:
    """A route's context whose tasks run in ``background``, with ``threads`` worker threads for Kafka calls."""
    return KafkaContext(
        route=route(**settings),
        limiter=trio.CapacityLimiter(threads),
        counters=Counters(),
        outages=OutageLog("/kafka"),
        spawn=background.spawn,
    )


def reader(ctx: KafkaContext, fake: FakeConsumer) -> PartitionReader:
    return PartitionReader(ctx, TOPIC, PARTITION, ThreadedConsumer(ctx, fake))


def offsets_in(batch: EncodedBatch | None) -> list[int]:
    """The offsets of the records an answer carries, each checked against what the fake log wrote."""
    assert batch is not None
    messages = pb.KafkaFetchResp.FromString(batch.body).messages
    assert len(messages) == batch.count
    for message in messages:
        assert message.value == value_of(message.offset)
        assert message.key == b"k%06d" % message.offset
    return [message.offset for message in messages]


def signal(event: trio.Event) -> Callable[[], None]:
    """A hook for a fake's worker thread that sets ``event`` in Trio."""
    return lambda: trio.from_thread.run_sync(event.set)


class FakeWebSocket:
    """Frames in through a channel; sends either recorded or blocked forever (a client that never reads)."""

    def __init__(self, *, reads_responses: bool = True) -> None:
        self.incoming_send, self._incoming = trio.open_memory_channel[bytes](100)
        self.sent: list[pb.PubSubResp] = []
        self.sent_event = trio.Event()
        self.closed_with: tuple[int, str] | None = None
        self._reads = reads_responses

    async def get_message(self) -> bytes:
        try:
            return await self._incoming.receive()
        except trio.EndOfChannel:
            raise ConnectionClosed(None) from None  # type: ignore[arg-type]

    async def send_message(self, frame: bytes) -> None:
        if not self._reads:
            await trio.sleep_forever()
        response = pb.PubSubResp()
        response.ParseFromString(frame)
        self.sent.append(response)
        self.sent_event.set()
        self.sent_event = trio.Event()

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed_with = (code, reason or "")
