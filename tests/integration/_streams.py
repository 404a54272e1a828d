"""A tiny raw-frame client for push streams, for the tests that run a real proxy.

It writes commands with the codec's client helpers and reads every frame the
proxy sends in a task of its own, decoded, in arrival order: a test sends
commands and then waits until what it has received satisfies a condition.
Answers and pushes are told apart by their type, as a client must; answers
to commands other than subscribe are matched by sequence, so tests give
those commands sequences that no stream uses (:meth:`StreamClient.sequence`).
"""

from __future__ import annotations

import collections
import itertools
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, Final, TypeVar

import trio
from _support import WAIT
from trio_websocket import ConnectionClosed, open_websocket_url

from kafka_ws_trio._pb import pubsub_pb2 as pb
from kafka_ws_trio._proto import (
    ErrorAnswer,
    Grant,
    OffsetAnswer,
    Record,
    Response,
    SeekTarget,
    StreamCaughtUp,
    StreamEnded,
    StreamError,
    StreamPartitions,
    StreamRecords,
    SubscribeAnswer,
    decode_response,
    encode_credit_request,
    encode_list_offset_request,
    encode_seek_request,
    encode_subscribe_request,
    encode_unsubscribe_request,
)

#: What the proxy pushes on a stream, as opposed to what answers a command.
PUSHES: Final = (StreamRecords, StreamCaughtUp, StreamError, StreamPartitions, StreamEnded)
#: Sequences of commands other than subscribe start here, far from the stream ids tests pick.
COMMAND_SEQUENCES: Final = 1_000_000
#: How long a test listens to show that nothing more comes (a push that should not come would
#: come within milliseconds; a busy machine can only make this check pass, never fail).
QUIET: Final = 0.5

_Push = TypeVar("_Push", StreamRecords, StreamCaughtUp, StreamError, StreamPartitions, StreamEnded)


class StreamClient:
    """One WebSocket connection to the proxy, with everything received kept in order."""

    def __init__(self, send: Callable[[bytes], Any]) -> None:
        self._send = send
        #: Every frame received, decoded, in arrival order; :attr:`frames` holds the same frames raw.
        self.received: list[Response] = []
        self.frames: list[bytes] = []
        #: When each frame came (``time.time()``, the clock Kafka's record timestamps use).
        self.arrivals: list[float] = []
        #: Whether the proxy closed the connection.
        self.closed = False
        #: Records received per stream, and the streams whose subscribe was answered: kept as frames
        #: come, so that waiting on many streams does not read every frame again each time.
        self.counts: collections.Counter[int] = collections.Counter()
        self.subscribed: set[int] = set()
        self._arrived = trio.Event()
        self._sequences = itertools.count(COMMAND_SEQUENCES)

    def sequence(self) -> int:
        """A sequence for a command other than subscribe, used by no stream."""
        return next(self._sequences)

    async def send(self, frame: bytes) -> None:
        await self._send(frame)

    def _take(self, frame: bytes) -> None:
        response = decode_response(frame)
        self.frames.append(frame)
        self.received.append(response)
        self.arrivals.append(time.time())
        if isinstance(response, StreamRecords):
            self.counts[response.sequence] += len(response.records)
        elif isinstance(response, SubscribeAnswer):
            self.subscribed.add(response.sequence)
        self._arrived.set()
        self._arrived = trio.Event()

    # ------------------------------------------------------------- waiting

    async def until(self, condition: Callable[[], bool], what: str, seconds: float = WAIT) -> None:
        """Wait until ``condition()`` holds, looking again at each frame; fail naming ``what`` after ``seconds``."""
        with trio.move_on_after(seconds):
            while not condition():
                if self.closed:
                    raise AssertionError(f"the proxy closed the connection before {what}")
                await self._arrived.wait()
            return
        raise AssertionError(f"no {what} within {seconds} s; received {self.received[-5:]} last")

    async def answer(self, sequence: int, after: int = 0) -> Response:
        """The first answer (not a push) with ``sequence`` received at index ``after`` or later."""
        found: list[Response] = []

        def arrived() -> bool:
            found.extend(r for r in self.received[after:] if not isinstance(r, PUSHES) and _sequence(r) == sequence)
            return bool(found)

        await self.until(arrived, f"answer to sequence {sequence}")
        return found[0]

    async def ask(self, sequence: int, frame: bytes) -> Response:
        """Send a command and wait for its answer."""
        mark = len(self.received)
        await self.send(frame)
        return await self.answer(sequence, mark)

    # ------------------------------------------------------------ commands

    async def subscribe(self, stream_id: int, topic: str, **options: Any) -> SubscribeAnswer:
        """Open the stream ``stream_id`` (``options``: :func:`encode_subscribe_request`'s keywords); its answer."""
        answer = await self.ask(stream_id, encode_subscribe_request(stream_id, topic, **options))
        assert isinstance(answer, SubscribeAnswer), answer
        return answer

    async def credit(self, stream_id: int, records: int = 0, bytes: int = 0) -> int:
        """Grant credit to a stream (answered only when it fails); the command's sequence."""
        sequence = self.sequence()
        await self.send(encode_credit_request(sequence, stream_id, Grant(records=records, bytes=bytes)))
        return sequence

    async def seek(self, stream_id: int, partition: int, to: SeekTarget) -> Response:
        sequence = self.sequence()
        return await self.ask(sequence, encode_seek_request(sequence, stream_id, partition, to))

    async def unsubscribe(self, stream_id: int) -> Response:
        sequence = self.sequence()
        return await self.ask(sequence, encode_unsubscribe_request(sequence, stream_id))

    async def list_offset(self, topic: str, partition: int, timestamp: int) -> int:
        """ListOffset through the proxy: -1 the log end, -2 the earliest, else the first record at or after ms."""
        sequence = self.sequence()
        answer = await self.ask(sequence, encode_list_offset_request(sequence, topic, partition, timestamp))
        assert isinstance(answer, OffsetAnswer), answer
        return answer.offset

    # ------------------------------------------------------ what was pushed

    def pushes(self, stream_id: int, kind: type[_Push], since: int = 0) -> list[_Push]:
        """The pushes of one kind of stream ``stream_id``, from index ``since`` of :attr:`received` on."""
        return [r for r in self.received[since:] if isinstance(r, kind) and r.sequence == stream_id]

    def batches(self, stream_id: int, since: int = 0) -> list[StreamRecords]:
        return self.pushes(stream_id, StreamRecords, since)

    def records(self, stream_id: int, since: int = 0) -> dict[int, list[Record]]:
        """The records of a stream by partition, in the order they came."""
        by_partition: dict[int, list[Record]] = {}
        for batch in self.batches(stream_id, since):
            by_partition.setdefault(batch.partition, []).extend(batch.records)
        return by_partition

    def offsets(self, stream_id: int) -> dict[int, list[int]]:
        """The offsets of the records a stream was sent, by partition, in the order they came."""
        return {p: [r.offset for r in records] for p, records in self.records(stream_id).items()}

    def count(self, stream_id: int, since: int = 0) -> int:
        """How many records the stream was sent (from index ``since`` of :attr:`received` on)."""
        if not since:
            return self.counts[stream_id]
        return sum(len(batch.records) for batch in self.batches(stream_id, since))

    def caught_up(self, stream_id: int, since: int = 0) -> set[int]:
        """The partitions the stream was told reached their high watermark."""
        return {event.partition for event in self.pushes(stream_id, StreamCaughtUp, since)}

    def record_sizes(self, stream_id: int, since: int = 0) -> list[int]:
        """The encoded size of each record the stream was sent (what byte credit counts), in order."""
        return [
            size
            for frame, response in zip(self.frames[since:], self.received[since:], strict=True)
            if isinstance(response, StreamRecords) and response.sequence == stream_id
            for size in message_sizes(frame)
        ]

    def index(self, response: Response) -> int:
        """Where ``response`` (an object taken from :attr:`received`) stands in :attr:`received`."""
        return next(i for i, r in enumerate(self.received) if r is response)

    def pushed_after(self, stream_id: int, index: int) -> list[Response]:
        """Every push of ``stream_id`` received after index ``index`` of :attr:`received`."""
        return [r for r in self.received[index + 1 :] if isinstance(r, PUSHES) and r.sequence == stream_id]


def _sequence(response: Response) -> int | None:
    return getattr(response, "sequence", None)


@asynccontextmanager
async def stream_client(url: str) -> AsyncIterator[StreamClient]:
    """Connect to ``url`` (trio-websocket) and receive every frame in the background."""
    async with open_websocket_url(url, connect_timeout=WAIT, disconnect_timeout=WAIT) as ws:
        client = StreamClient(ws.send_message)

        async def receive() -> None:
            try:
                while True:
                    frame = await ws.get_message()
                    assert isinstance(frame, bytes), f"the proxy sent a text frame: {frame!r}"
                    client._take(frame)
            except ConnectionClosed:
                client.closed = True
                client._arrived.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            try:
                yield client
            finally:
                nursery.cancel_scope.cancel()


# ---------------------------------------------------------- raw frames


def _varint(data: bytes, index: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[index]
        index += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, index


def _fields(message: bytes) -> Iterator[tuple[int, int, int, int]]:
    """Each field of a protobuf message as (number, start of its tag, start of its value, end), in wire order."""
    index = 0
    while index < len(message):
        start = index
        key, index = _varint(message, index)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            _, value_end = _varint(message, index)
        elif wire_type == 1:
            value_end = index + 8
        elif wire_type == 2:
            length, index = _varint(message, index)
            value_end = index + length
        elif wire_type == 5:
            value_end = index + 4
        else:
            raise AssertionError(f"wire type {wire_type} in {message!r}")
        yield number, start, index, value_end
        index = value_end


def message_sizes(frame: bytes) -> list[int]:
    """The bytes each record takes in a StreamBatch frame, tag and length prefix included, read off the wire."""
    stream_batch = pb.PubSubResp.DESCRIPTOR.fields_by_name["stream_batch"].number
    messages = pb.StreamBatch.DESCRIPTOR.fields_by_name["messages"].number
    for number, _, value_start, end in _fields(frame):
        if number == stream_batch:
            body = frame[value_start:end]
            return [field_end - start for n, start, _, field_end in _fields(body) if n == messages]
    raise AssertionError(f"not a stream_batch: {frame!r}")


def assert_taken_over_at_the_commit(
    survivor: dict[int, list[int]],
    leaver: dict[int, list[int]],
    taken_over: set[int],
    partitions: int,
    per_partition: int,
) -> None:
    """Rows 11 and 12: the leaver read each of its partitions from 0 and committed what it was sent; the
    survivor read those from where the leaver stopped, and its own from 0, to the end: nothing lost or twice."""
    for partition in range(partitions):
        got = survivor.get(partition, [])
        if partition in taken_over:
            committed = len(leaver.get(partition, []))
            assert leaver.get(partition, []) == list(range(committed)), (partition, leaver)
            assert got == list(range(committed, per_partition)), (partition, got)
        else:
            assert got == list(range(per_partition)), (partition, got)


#: Seconds a group subscribe may take to be answered (the answer waits for the group's first assignment).
JOIN_WAIT: Final = 30.0


async def join(client: StreamClient, stream_id: int, topic: str, group: str, **options: object) -> SubscribeAnswer:
    """Subscribe ``stream_id`` in ``group``; the answer, which comes with the group's first assignment."""
    mark = len(client.received)
    await client.send(encode_subscribe_request(stream_id, topic, group=group, **options))  # type: ignore[arg-type]
    found: list[SubscribeAnswer | ErrorAnswer] = []

    def answered() -> bool:
        found.extend(
            r
            for r in client.received[mark:]
            if isinstance(r, SubscribeAnswer | ErrorAnswer) and r.sequence == stream_id
        )
        return bool(found)

    await client.until(answered, f"the answer to the group subscribe {stream_id}", JOIN_WAIT)
    assert isinstance(found[0], SubscribeAnswer), found[0]
    return found[0]


def owned(client: StreamClient, stream_id: int, answer: SubscribeAnswer) -> set[int]:
    """The partitions the stream owns now: its answer's, then each ``partitions`` event applied in order."""
    partitions = {p for p, _ in answer.positions}
    for event in client.pushes(stream_id, StreamPartitions):
        partitions -= set(event.revoked)
        partitions |= set(event.assigned)
    return partitions
