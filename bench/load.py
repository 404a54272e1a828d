"""The session load clients: asyncio on uvloop, one process driving hundreds of sessions.

One worker per scenario (:data:`WORKERS`): a pipelined reader for fetch
throughput, tailing sessions for fan-out, silent sessions for the idle test,
short-lived sessions for churn, and one session after another for first byte.
Each reports to the orchestrator through ``bench.children``.

Requests are built by the package's client codec (``kafka_ws_trio._proto``).
Answers on the cold paths (a ListOffset, a churn or first-byte session) are
read with its ``decode_response``; answers on the hot paths (the pipelined
read and fan-out's tailing sessions) are read straight from the protobuf
message, because ``decode_response`` builds a ``Record`` for every record:
2.6 µs per 1 KiB record against 0.37 µs for reading only the counts, offsets
and timestamps these clients need (measured on the bench machine). Fan-out at
1,000 sessions delivers about a million records a second to the clients, so the
full decode would make the clients, not the proxy, what the figures measure.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from kafka_ws_trio._pb import pubsub_pb2
from kafka_ws_trio._proto import (
    FetchAnswer,
    OffsetAnswer,
    decode_response,
    encode_fetch_request,
    encode_list_offset_request,
)

from .children import Commands, emit
from .plan import (
    BUCKET_MS,
    COARSE_FROM,
    EARLIEST,
    LATEST,
    OPEN_CONCURRENCY,
    PARTITION,
    READ_TIMEOUT,
    REQUEST_TIMEOUT,
    ROUTE,
    cpu_seconds,
    raise_nofile,
)
from .wsclient import WsClient

#: The fast path's parser (see the module docstring): upb, reading only what the hot paths count.
_RESPONSE: Final = pubsub_pb2.PubSubResp.FromString


def _fetch_request(sequence: int, topic: str, offset: int) -> bytes:
    return encode_fetch_request(sequence, topic, PARTITION, offset)


def _list_offset_request(sequence: int, topic: str, timestamp: int) -> bytes:
    return encode_list_offset_request(sequence, topic, PARTITION, timestamp)


async def _offset_of(client: WsClient) -> int:
    """The next answer, which must be a ListOffset answer; its offset."""
    answer = decode_response(await client.recv())
    if not isinstance(answer, OffsetAnswer):
        raise RuntimeError(f"ListOffset answered {answer}")
    return answer.offset


async def _open_many(
    spec: dict[str, Any], count: int, on_message: Callable[[int], Callable[[bytes], None] | None]
) -> tuple[dict[int, WsClient], int, str]:
    """Open sessions 0..count-1, OPEN_CONCURRENCY handshakes at a time.

    Returns the clients by index, the number that failed, and the first failure.
    """
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)
    clients: dict[int, WsClient] = {}
    failures = 0
    first_error = ""

    async def one(index: int) -> None:
        nonlocal failures, first_error
        async with gate:
            try:
                clients[index] = await WsClient.connect(spec["host"], spec["port"], ROUTE, on_message(index))
            except (OSError, asyncio.TimeoutError) as exc:
                failures += 1
                first_error = first_error or f"{type(exc).__name__}: {exc}"

    await asyncio.gather(*(one(i) for i in range(count)))
    return clients, failures, first_error


class PipelinedRead:
    """One session reading [start, end) with ``depth`` Fetch requests in flight.

    Offsets are contiguous, so the next response's first offset is predictable:
    requests go out at ``next``, ``next + step``, ... where ``step`` is the median
    size of the latest responses (one short response, the rest of a poll, does
    not throw the predictions off). Responses for one partition come back in request order;
    when one ends short of the next request in flight, the gap is asked for at
    once, and records that arrive twice are counted as duplicates.
    """

    def __init__(self, topic: str, start: int, end: int, depth: int) -> None:
        self.topic = topic
        self.start = start
        self.end = end
        self.depth = depth
        self.client: WsClient | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._seen = bytearray(end - start)
        self._in_flight: collections.deque[tuple[int, int]] = collections.deque()
        self._sequence = 0
        self._frontier = start
        self._step = 0
        self._sizes: collections.deque[int] = collections.deque(maxlen=5)
        self.hw = start
        self.records = self.duplicates = self.fills = self.frames = self.frame_bytes = self.value_bytes = 0
        self.t_first = self.t_done = 0.0

    def _request(self, offset: int) -> None:
        assert self.client is not None
        self._sequence += 1
        self._in_flight.append((self._sequence, offset))
        self.client.send(_fetch_request(self._sequence, self.topic, offset))

    def begin(self) -> None:
        self.t_first = time.perf_counter()
        self._request(self.start)

    def on_message(self, payload: bytes) -> None:
        if self.done.done():
            return
        self.frames += 1
        self.frame_bytes += len(payload)
        response = _RESPONSE(payload)
        sequence, offset = self._in_flight.popleft()
        if response.sequence != sequence or response.WhichOneof("resp") != "kafka_fetch_resp":
            self.done.set_exception(RuntimeError(f"unexpected answer to fetch at {offset}: {decode_response(payload)}"))
            return
        messages = response.kafka_fetch_resp.messages
        count = len(messages)
        if count:
            self.value_bytes += sum(len(m.value) for m in messages)
            first, last = messages[0].offset, messages[-1].offset
            low, high = first - self.start, min(last + 1, self.end) - self.start
            if last - first + 1 != count:
                self.done.set_exception(RuntimeError(f"offsets {first}..{last} are not contiguous ({count} records)"))
                return
            new = self._seen.count(0, low, high)
            self._seen[low:high] = b"\x01" * (high - low)
            self.records += new
            self.duplicates += count - new
            self._sizes.append(count)
            self._step = sorted(self._sizes)[len(self._sizes) // 2]
            found = self._seen.find(0, self.hw - self.start)
            self.hw = self.end if found < 0 else self.start + found
        if self.hw >= self.end:
            self.t_done = time.perf_counter()
            self.done.set_result(None)
            return
        if not self._in_flight or min(o for _, o in self._in_flight) > self.hw:
            # Nothing in flight starts at or before the first record still missing.
            if self._in_flight:
                self.fills += 1  # a speculative request overshot: this is a gap
            self._request(self.hw)
            self._frontier = max(self._frontier, self.hw + max(self._step, 1))
        while self._step and len(self._in_flight) < self.depth and self._frontier < self.end:
            self._request(self._frontier)
            self._frontier += self._step


async def worker_fetch(spec: dict[str, Any], commands: Commands) -> None:
    """One session reading [start, end) through the proxy, ``depth`` fetches in flight (see :class:`PipelinedRead`)."""
    reader = PipelinedRead(spec["topic"], spec["start"], spec["end"], spec["depth"])
    client = await WsClient.connect(spec["host"], spec["port"], ROUTE)
    client.send(_list_offset_request(0, spec["topic"], EARLIEST))  # opens the partition reader before the clock
    await _offset_of(client)
    client.on_message = reader.on_message
    reader.client = client
    emit(event="ready")
    await commands.next("go")
    cpu0 = cpu_seconds()
    reader.begin()
    await asyncio.wait_for(reader.done, READ_TIMEOUT)
    cpu = cpu_seconds() - cpu0
    seconds = reader.t_done - reader.t_first
    await client.close()
    emit(
        event="result",
        records=reader.records,
        seconds=seconds,
        value_bytes=reader.value_bytes,
        frames=reader.frames,
        frame_bytes=reader.frame_bytes,
        duplicates=reader.duplicates,
        gap_fills=reader.fills,
        cpu_seconds=cpu,
    )


class _Latencies:
    """Receipt time minus CreateTime of sampled deliveries, in BUCKET_MS buckets, by the record's second."""

    def __init__(self) -> None:
        self.by_second: collections.defaultdict[int, collections.Counter[int]] = collections.defaultdict(
            collections.Counter
        )

    def add(self, stamps: list[int]) -> None:
        now = time.time() * 1000.0
        scale = 1.0 / BUCKET_MS
        first, last = stamps[0] // 1000, stamps[-1] // 1000
        if first == last:
            self.by_second[first].update([int((now - s) * scale) for s in stamps])
        else:
            for s in stamps:
                self.by_second[s // 1000][int((now - s) * scale)] += 1

    def histogram(self, first_second: int, last_second: int) -> list[tuple[int, int]]:
        """Deliveries of records created in [first_second, last_second), coarse beyond COARSE_FROM buckets."""
        hist: collections.Counter[int] = collections.Counter()
        for second in range(first_second, last_second):
            for bucket, count in self.by_second.get(second, {}).items():
                hist[bucket if bucket < COARSE_FROM else bucket - bucket % 10] += count
        return sorted(hist.items())


async def worker_fanout(spec: dict[str, Any], commands: Commands) -> None:
    """Sessions tailing one partition; a histogram of receipt time minus CreateTime.

    Only every ``sample_every``-th session (by its index across all processes)
    reads each record's timestamp: that per-record Python work is what a load
    client spends most on, and on a small machine it takes CPU from the proxy.
    The others only follow their position.
    """
    topic = spec["topic"]
    loop = asyncio.get_running_loop()
    latencies = _Latencies()
    totals = {"errors": 0, "frames": 0, "records": 0}
    progress = asyncio.Event()  # set whenever some session's position moves

    class _Tail:
        __slots__ = ("client", "next", "sampled", "sequence")

        def __init__(self, sampled: bool) -> None:
            self.client: WsClient | None = None
            self.next = -1
            self.sequence = 0
            self.sampled = sampled

        def fetch(self) -> None:
            if self.client is not None and not self.client.lost.done():
                self.sequence += 1
                self.client.send(_fetch_request(self.sequence, topic, self.next))

        def on_message(self, payload: bytes) -> None:
            response = _RESPONSE(payload)
            if response.WhichOneof("resp") == "kafka_fetch_resp":  # the hot path
                messages = response.kafka_fetch_resp.messages
                totals["frames"] += 1
                if messages:
                    if self.sampled:
                        latencies.add([m.timestamp for m in messages])
                    totals["records"] += len(messages)
                    self.next = messages[-1].offset + 1
                    progress.set()
                self.fetch()
                return
            answer = decode_response(payload)
            if isinstance(answer, OffsetAnswer):
                self.next = answer.offset
                progress.set()
                self.fetch()
            else:
                totals["errors"] += 1
                loop.call_later(0.1, self.fetch)

    every, first_index = spec["sample_every"], spec["first_index"]
    tails = [_Tail((first_index + i) % every == 0) for i in range(spec["sessions"])]
    started = time.time()
    clients, failures, first_error = await _open_many(spec, len(tails), lambda i: tails[i].on_message)
    for index, client in clients.items():
        tails[index].client = client
        client.send(_list_offset_request(0, topic, LATEST))
    live = [t for t in tails if t.client is not None]

    async def until(done: Callable[[], bool], seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not done() and time.monotonic() < deadline:
            progress.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(progress.wait(), max(0.0, deadline - time.monotonic()))

    await until(lambda: all(t.next >= 0 for t in live), REQUEST_TIMEOUT)
    emit(event="ready", opened=len(clients), failed=failures, first_error=first_error, seconds=time.time() - started)
    await commands.next("go")
    cpu0, wall0, frames0 = cpu_seconds(), time.monotonic(), totals["frames"]
    finish = await commands.next("finish")
    cpu1, wall1, frames1 = cpu_seconds(), time.monotonic(), totals["frames"]
    end = finish["end"]
    await until(lambda: all(t.next >= end for t in live), finish["wait"])
    lagging = sum(1 for t in live if t.next < end or t.client is None or t.client.lost.done())
    for client in clients.values():
        client.abort()
    emit(
        event="result",
        sessions=len(live),
        sampled=sum(1 for t in live if t.sampled),
        hist=latencies.histogram(finish["t0"], finish["t1"]),
        lagging=lagging,
        errors=totals["errors"],
        frames=frames1 - frames0,
        records=totals["records"],
        cpu_seconds=cpu1 - cpu0,
        wall_seconds=wall1 - wall0,
    )


async def worker_idle(spec: dict[str, Any], commands: Commands) -> None:
    """Open sessions, hold them without a word, close them when told."""
    await commands.next("go")
    started, cpu0 = time.time(), cpu_seconds()
    clients, failures, first_error = await _open_many(spec, spec["sessions"], lambda _: None)
    emit(
        event="ready",
        opened=len(clients),
        failed=failures,
        first_error=first_error,
        started=started,
        finished=time.time(),
        cpu_seconds=cpu_seconds() - cpu0,
    )
    await commands.next("close")
    closing = time.time()
    gate = asyncio.Semaphore(OPEN_CONCURRENCY * 4)

    async def close(client: WsClient) -> None:
        async with gate:
            await client.close()

    await asyncio.gather(*(close(c) for c in clients.values()))
    emit(event="result", closed=len(clients), seconds=time.time() - closing)


async def worker_churn(spec: dict[str, Any], commands: Commands) -> None:
    """Sessions that connect, ListOffset, Fetch and leave, ``concurrency`` at a time."""
    topic = spec["topic"]
    remaining = spec["sessions"]
    outcome = {"ok": 0, "failed": 0}
    first_error = ""

    async def session() -> None:
        client = await WsClient.connect(spec["host"], spec["port"], ROUTE)
        try:
            client.send(_list_offset_request(1, topic, EARLIEST))
            offset = await _offset_of(client)
            client.send(_fetch_request(2, topic, offset))
            answer = decode_response(await client.recv())
            if not isinstance(answer, FetchAnswer) or not answer.records:
                raise RuntimeError(f"Fetch answered {answer}")
        finally:
            await client.close()

    async def lane() -> None:
        nonlocal remaining, first_error
        while remaining > 0:
            remaining -= 1
            try:
                await session()
                outcome["ok"] += 1
            except (OSError, RuntimeError, asyncio.TimeoutError) as exc:
                outcome["failed"] += 1
                first_error = first_error or f"{type(exc).__name__}: {exc}"

    emit(event="ready")
    await commands.next("go")
    started, cpu0 = time.perf_counter(), cpu_seconds()
    await asyncio.gather(*(lane() for _ in range(spec["concurrency"])))
    emit(
        event="result",
        seconds=time.perf_counter() - started,
        cpu_seconds=cpu_seconds() - cpu0,
        first_error=first_error,
        **outcome,
    )


async def worker_first_byte(spec: dict[str, Any], commands: Commands) -> None:
    """One session after another: connect, ListOffset, time to its answer."""
    emit(event="ready")
    await commands.next("go")
    cpu0 = cpu_seconds()
    latencies: list[float] = []
    for index in range(spec["warmup"] + spec["samples"]):
        started = time.perf_counter()
        client = await WsClient.connect(spec["host"], spec["port"], ROUTE)
        client.send(_list_offset_request(1, spec["topic"], LATEST))
        answer = decode_response(await client.recv())
        elapsed = time.perf_counter() - started
        await client.close()
        if not isinstance(answer, OffsetAnswer):
            raise RuntimeError(f"ListOffset answered {answer}")
        if index >= spec["warmup"]:
            latencies.append(elapsed * 1000.0)
    emit(event="result", latencies_ms=latencies, cpu_seconds=cpu_seconds() - cpu0)


WORKERS: Final[dict[str, Callable[[dict[str, Any], Commands], Awaitable[None]]]] = {
    "fetch": worker_fetch,
    "fanout": worker_fanout,
    "idle": worker_idle,
    "churn": worker_churn,
    "first_byte": worker_first_byte,
}


def run(spec: dict[str, Any]) -> None:
    """The load-client process: the worker ``spec["kind"]`` on uvloop."""
    import uvloop

    raise_nofile()

    async def main() -> None:
        commands = await Commands.open()
        await WORKERS[spec["kind"]](spec, commands)

    uvloop.run(main())
