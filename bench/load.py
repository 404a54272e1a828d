"""The session load clients: asyncio on uvloop, one process driving hundreds of sessions.

One worker per scenario (:data:`WORKERS`): a pipelined reader for fetch
throughput, a stream reader for the stream reads, tailing sessions (by Fetch
or by stream) for fan-out, silent sessions (with or without a stream) for the
idle tests, short-lived sessions for churn, one session after another for
first byte, for produce a pipelined writer (throughput), one command after
another (latency) and paced writing sessions (fan-in), and for consumer groups
members reading their share of a topic, members of which one leaves, and
members opened one at a time; for authentication and quotas, handshakes with
tokens (one after another, then many at once) and a principal producing over
its quota as fast as it is answered. Each reports to the orchestrator
through ``bench.children``.

Requests are built by the package's client codec (``kafka_ws_trio._proto``).
Answers on the cold paths (a ListOffset, a subscribe, a stream event, a churn
or first-byte session, a produce warm-up or latency answer) are read with its
``decode_response``; answers on the hot paths (the pipelined read, record
batches of streams, fan-out's tailing sessions, the produce throughput and
fan-in answers) are read straight from the protobuf message, because
``decode_response`` builds a ``Record`` for every record: 2.6 µs per 1 KiB
record against 0.37 µs for reading only the counts, offsets and timestamps
these clients need (measured on the bench machine). Fan-out at 1,000 sessions
delivers about a million records a second to the clients, so the full decode
would make the clients, not the proxy, what the figures measure.

Streams grant credit the way a real client would (:class:`Credit`), and every
stream batch is checked against the previous one (:func:`batch_problem`): a
record lost or repeated fails the scenario.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode

from kafka_ws_trio._pb import pubsub_pb2
from kafka_ws_trio._proto import (
    Acks,
    ErrorAnswer,
    ErrorCode,
    FetchAnswer,
    Grant,
    OffsetAnswer,
    OkAnswer,
    OutRecord,
    ProduceAnswer,
    Response,
    StartEdge,
    StreamCaughtUp,
    StreamError,
    StreamPartitions,
    SubscribeAnswer,
    Written,
    decode_response,
    encode_credit_request,
    encode_fetch_request,
    encode_list_offset_request,
    encode_produce_request,
    encode_subscribe_request,
    encode_unsubscribe_request,
)

from .children import Commands, emit
from .plan import (
    BUCKET_MS,
    COARSE_FROM,
    EARLIEST,
    GROUP_JOIN_TIMEOUT,
    LATEST,
    OPEN_CONCURRENCY,
    PARTITION,
    READ_TIMEOUT,
    ROUTE,
    STREAM_CREDIT_RECORDS,
    STREAM_ID,
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


def _tokens(spec: dict[str, Any]) -> list[str]:
    """The handshake tokens of ``spec["token_file"]`` (one a line; the bench writes them into its run's folder).

    Kept out of the spec itself, so that no token stands on a command line.
    """
    path = spec.get("token_file")
    return Path(path).read_text().split() if path else []


def _route_path(token: str | None) -> str:
    """The route's path; with a token, carrying it as ``access_token`` (PROTOCOL.md 5.6), as a browser would."""
    return ROUTE if token is None else f"{ROUTE}?{urlencode({'access_token': token})}"


async def _open_many(
    spec: dict[str, Any],
    count: int,
    on_message: Callable[[int], Callable[[bytes], None] | None],
    prepare: Callable[[WsClient], Awaitable[None]] | None = None,
) -> tuple[dict[int, WsClient], int, str]:
    """Open sessions 0..count-1, OPEN_CONCURRENCY handshakes (each followed by ``prepare``) at a time.

    With a ``token_file`` in the spec, every session presents its first token (one principal).
    Returns the clients by index, the number that failed, and the first failure.
    """
    path = _route_path(next(iter(_tokens(spec)), None))
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)
    clients: dict[int, WsClient] = {}
    failures = 0
    first_error = ""

    async def one(index: int) -> None:
        nonlocal failures, first_error
        async with gate:
            try:
                client = await WsClient.connect(spec["host"], spec["port"], path, on_message(index))
                if prepare is not None:
                    try:
                        await prepare(client)
                    except BaseException:
                        client.abort()
                        raise
                clients[index] = client
            except (OSError, RuntimeError, asyncio.TimeoutError) as exc:
                failures += 1
                first_error = first_error or f"{type(exc).__name__}: {exc}"

    await asyncio.gather(*(one(i) for i in range(count)))
    return clients, failures, first_error


def _subscribe_request(topic: str, start: StartEdge, credit: Grant) -> bytes:
    """The one stream a load-client session opens: every partition of ``topic``, as a browser would."""
    return encode_subscribe_request(STREAM_ID, topic, start=start, credit=credit)


class Credit:
    """A stream's credit, kept the way a real client keeps it.

    The window, STREAM_CREDIT_RECORDS records, is granted whole (with the
    subscribe, or at once after it); each time half of it has been consumed,
    what was consumed is granted again. Records only: counting bytes the way
    the server does (each entry's encoded size) would cost the client a
    message size per record.
    """

    __slots__ = ("consumed", "grants", "sequence")

    def __init__(self) -> None:
        self.consumed = 0
        self.grants = 0
        self.sequence = STREAM_ID  # credit commands take the next sequences (any would do)

    def grant(self, client: WsClient, records: int) -> None:
        self.sequence += 1
        self.grants += 1
        client.send(encode_credit_request(self.sequence, STREAM_ID, Grant(records=records)))

    def took(self, client: WsClient, count: int) -> None:
        """``count`` records arrived: top the window up once half of it is used."""
        self.consumed += count
        if self.consumed >= STREAM_CREDIT_RECORDS // 2:
            self.grant(client, self.consumed)
            self.consumed = 0


def batch_problem(batch: Any, expected: int, every_offset: bool) -> str | None:
    """What is wrong with a StreamBatch (None: nothing), given where its partition was to continue.

    In the bench's topics (no filter, no compaction, no transactions) a batch
    takes up exactly at ``expected`` and its offsets run on without a gap to
    ``next_offset``. The first and last offsets and the count prove that a
    batch neither skips nor repeats across batches; ``every_offset`` also
    checks each offset inside it (0.65 µs a record, so only where the reader
    can afford it).
    """
    messages = batch.messages
    count = len(messages)
    where = f"partition {batch.partition}"
    if not count:
        if batch.next_offset != expected:
            return f"{where}: an empty batch moved it from {expected} to {batch.next_offset}"
        return None
    first, last = messages[0].offset, messages[-1].offset
    if first != expected:
        what = "lost" if first > expected else "repeated"
        return f"{where}: a batch starts at {first} where {expected} was next (records {what})"
    if last - first + 1 != count or batch.next_offset != last + 1:
        return f"{where}: {count} records at offsets {first}..{last}, next_offset {batch.next_offset}"
    if every_offset and [m.offset for m in messages] != list(range(first, last + 1)):
        return f"{where}: offsets {first}..{last} are not contiguous"
    return None


class _TimedRead:
    """A timed read by one session: frames counted, the clock stopped by the last record, failed by the first fault.

    Subclasses say what starts the read (:meth:`_start`) and what a frame means (:meth:`_received`).
    """

    def __init__(self, client: WsClient) -> None:
        self.client = client
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.records = self.frames = self.frame_bytes = 0
        self.t_first = self.t_done = 0.0

    def begin(self) -> None:
        self.t_first = time.perf_counter()
        self._start()

    def on_message(self, payload: bytes) -> None:
        if self.done.done():
            return
        self.frames += 1
        self.frame_bytes += len(payload)
        self._received(payload)

    def _finish(self) -> None:
        self.t_done = time.perf_counter()
        self.done.set_result(None)

    def _fail(self, problem: str) -> None:
        if not self.done.done():
            self.done.set_exception(RuntimeError(problem))

    def _start(self) -> None:
        raise NotImplementedError

    def _received(self, payload: bytes) -> None:
        raise NotImplementedError

    def details(self) -> dict[str, Any]:
        """What the read reports besides its records, time, frames and CPU."""
        return {"frame_bytes": self.frame_bytes}


async def _timed(reader: _TimedRead, commands: Commands) -> None:
    """Report ready, run the read on "go", report its figures; the session closes after the clock stops."""
    emit(event="ready")
    await commands.next("go")
    cpu0 = cpu_seconds()
    reader.begin()
    await asyncio.wait_for(reader.done, READ_TIMEOUT)
    cpu = cpu_seconds() - cpu0
    await reader.client.close()
    emit(
        event="result",
        records=reader.records,
        seconds=reader.t_done - reader.t_first,
        frames=reader.frames,
        cpu_seconds=cpu,
        details=reader.details(),
    )


def _counted_event(reader: Any, answer: Response) -> bool:
    """Count a ``caught_up`` or ``error`` stream event on ``reader``; False for any other answer.

    ``reader`` has ``caught_up``, ``errors`` and ``first_error``: the server retries
    past an error by itself, so errors are counted and the first one kept.
    """
    if isinstance(answer, StreamCaughtUp):
        reader.caught_up += 1
    elif isinstance(answer, StreamError):
        reader.errors += 1
        reader.first_error = reader.first_error or answer.message
    else:
        return False
    return True


class StreamRead(_TimedRead):
    """One stream reading every partition of a topic from its start to ``ends``, each record counted once.

    The clock starts with the first grant. Every batch is checked with every
    offset (:func:`batch_problem`), a record past a partition's end is an
    error too, and stream events other than ``caught_up`` and ``error`` end
    the read with an error.
    """

    def __init__(self, client: WsClient, starts: dict[int, int], ends: dict[int, int]) -> None:
        super().__init__(client)
        self.next = dict(starts)
        self.ends = ends
        self.left = sum(ends[p] - starts[p] for p in ends)
        self.credit = Credit()
        self.caught_up = self.errors = 0
        self.first_error = ""

    def _start(self) -> None:
        self.credit.grant(self.client, STREAM_CREDIT_RECORDS)

    def _received(self, payload: bytes) -> None:
        response = _RESPONSE(payload)
        if response.WhichOneof("resp") != "stream_batch":
            self._event(payload)
            return
        batch = response.stream_batch
        partition = batch.partition
        expected = self.next.get(partition)
        if expected is None:
            self._fail(f"a batch of partition {partition}, which the stream does not read")
            return
        problem = batch_problem(batch, expected, every_offset=True)
        if problem is None and batch.next_offset > self.ends[partition]:
            problem = f"partition {partition}: records past its end {self.ends[partition]}"
        if problem is not None:
            self._fail(problem)
            return
        count = len(batch.messages)
        self.next[partition] = batch.next_offset
        self.records += count
        self.left -= count
        if not self.left:
            self._finish()
            return
        self.credit.took(self.client, count)

    def _event(self, payload: bytes) -> None:
        answer = decode_response(payload)
        if not _counted_event(self, answer):
            self._fail(f"unexpected {answer}")

    def details(self) -> dict[str, Any]:
        return {
            **super().details(),
            "grants": self.credit.grants,
            "caught_up_events": self.caught_up,
            "error_events": self.errors,
            "first_error_event": self.first_error,
        }


async def _subscribed(client: WsClient) -> dict[int, int]:
    """The next answer, which must be the stream's subscribe answer; where each partition starts."""
    answer = decode_response(await client.recv())
    if not isinstance(answer, SubscribeAnswer):
        raise RuntimeError(f"subscribe answered {answer}")
    return dict(answer.positions)


async def worker_stream(spec: dict[str, Any], commands: Commands) -> None:
    """One stream reading every partition of a topic from offset 0 to ``ends`` (see :class:`StreamRead`).

    The stream is opened paused before the clock starts, so the proxy has
    found its partitions, opened their readers and attached them.
    """
    ends = {int(partition): end for partition, end in spec["ends"].items()}
    client = await WsClient.connect(spec["host"], spec["port"], ROUTE)
    client.send(_subscribe_request(spec["topic"], StartEdge.EARLIEST, Grant()))
    starts = await _subscribed(client)
    if starts != dict.fromkeys(ends, 0):
        raise RuntimeError(f"the stream starts at {starts}, not at offset 0 of partitions {sorted(ends)}")
    reader = StreamRead(client, starts, ends)
    client.on_message = reader.on_message
    await _timed(reader, commands)


class PipelinedRead(_TimedRead):
    """One session reading [start, end) with ``depth`` Fetch requests in flight.

    Offsets are contiguous, so the next response's first offset is predictable:
    requests go out at ``next``, ``next + step``, ... where ``step`` is the median
    size of the latest responses (one short response, the rest of a poll, does
    not throw the predictions off). Responses for one partition come back in request order;
    when one ends short of the next request in flight, the gap is asked for at
    once, and records that arrive twice are counted as duplicates.
    """

    def __init__(self, client: WsClient, topic: str, start: int, end: int, depth: int) -> None:
        super().__init__(client)
        self.topic = topic
        self.start = start
        self.end = end
        self.depth = depth
        self._seen = bytearray(end - start)
        self._in_flight: collections.deque[tuple[int, int]] = collections.deque()
        self._sequence = 0
        self._frontier = start
        self._step = 0
        self._sizes: collections.deque[int] = collections.deque(maxlen=5)
        self.hw = start
        self.duplicates = self.fills = self.value_bytes = 0

    def _request(self, offset: int) -> None:
        self._sequence += 1
        self._in_flight.append((self._sequence, offset))
        self.client.send(_fetch_request(self._sequence, self.topic, offset))

    def _start(self) -> None:
        self._request(self.start)

    def _received(self, payload: bytes) -> None:
        response = _RESPONSE(payload)
        sequence, offset = self._in_flight.popleft()
        if response.sequence != sequence or response.WhichOneof("resp") != "kafka_fetch_resp":
            self._fail(f"unexpected answer to fetch at {offset}: {decode_response(payload)}")
            return
        messages = response.kafka_fetch_resp.messages
        count = len(messages)
        if count:
            self.value_bytes += sum(len(m.value) for m in messages)
            first, last = messages[0].offset, messages[-1].offset
            low, high = first - self.start, min(last + 1, self.end) - self.start
            if last - first + 1 != count:
                self._fail(f"offsets {first}..{last} are not contiguous ({count} records)")
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
            self._finish()
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

    def details(self) -> dict[str, Any]:
        return {
            **super().details(),
            "value_bytes": self.value_bytes,
            "duplicates": self.duplicates,
            "gap_fills": self.fills,
        }


async def worker_fetch(spec: dict[str, Any], commands: Commands) -> None:
    """One session reading [start, end) through the proxy, ``depth`` fetches in flight (see :class:`PipelinedRead`)."""
    client = await WsClient.connect(spec["host"], spec["port"], ROUTE)
    client.send(_list_offset_request(0, spec["topic"], EARLIEST))  # opens the partition reader before the clock
    await _offset_of(client)
    reader = PipelinedRead(client, spec["topic"], spec["start"], spec["end"], spec["depth"])
    client.on_message = reader.on_message
    await _timed(reader, commands)


class _Latencies:
    """Latencies in BUCKET_MS buckets, by the second they belong to.

    Fan-out: receipt time minus CreateTime of sampled deliveries, by the record's
    second. Produce fan-in: a command's send to its answer, by the second it was sent.
    """

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

    def add_latency(self, second: int, latency_ms: float) -> None:
        """One sample taken in ``second`` (a produce command's send, wall clock)."""
        self.by_second[second][int(latency_ms / BUCKET_MS)] += 1

    def histogram(self, first_second: int, last_second: int) -> list[tuple[int, int]]:
        """Deliveries of records created in [first_second, last_second), coarse beyond COARSE_FROM buckets."""
        hist: collections.Counter[int] = collections.Counter()
        for second in range(first_second, last_second):
            for bucket, count in self.by_second.get(second, {}).items():
                hist[bucket if bucket < COARSE_FROM else bucket - bucket % 10] += count
        return sorted(hist.items())


class _Following:
    """What the tailing sessions of one fan-out process share: latencies, totals, and a progress signal."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.loop = asyncio.get_running_loop()
        self.latencies = _Latencies()
        self.progress = asyncio.Event()  # set whenever some session's position moves
        self.frames = self.records = self.errors = self.broken = 0
        self.first_broken = ""

    def broke(self, problem: str) -> None:
        """A stream lost, repeated or misplaced records, or could not open: the scenario fails."""
        self.broken += 1
        self.first_broken = self.first_broken or problem


class _FetchTail:
    """A session tailing the partition with one Fetch at a time, from the log end a ListOffset names."""

    __slots__ = ("client", "next", "sampled", "sequence", "shared")

    def __init__(self, shared: _Following, sampled: bool) -> None:
        self.shared = shared
        self.client: WsClient | None = None
        self.next = -1
        self.sequence = 0
        self.sampled = sampled

    def start(self) -> None:
        assert self.client is not None
        self.client.send(_list_offset_request(0, self.shared.topic, LATEST))

    def fetch(self) -> None:
        if self.client is not None and not self.client.lost.done():
            self.sequence += 1
            self.client.send(_fetch_request(self.sequence, self.shared.topic, self.next))

    def on_message(self, payload: bytes) -> None:
        shared = self.shared
        response = _RESPONSE(payload)
        if response.WhichOneof("resp") == "kafka_fetch_resp":  # the hot path
            messages = response.kafka_fetch_resp.messages
            shared.frames += 1
            if messages:
                if self.sampled:
                    shared.latencies.add([m.timestamp for m in messages])
                shared.records += len(messages)
                self.next = messages[-1].offset + 1
                shared.progress.set()
            self.fetch()
            return
        answer = decode_response(payload)
        if isinstance(answer, OffsetAnswer):
            self.next = answer.offset
            shared.progress.set()
            self.fetch()
        else:
            shared.errors += 1
            shared.loop.call_later(0.1, self.fetch)


class _StreamTail:
    """A session tailing the topic with one stream from its log end, granting credit as it goes.

    Every batch is checked (:func:`batch_problem`): each offset for the
    sessions sampled for latency (they read every record's timestamp anyway),
    the first, last and count for the others.
    """

    __slots__ = ("client", "credit", "next", "sampled", "shared")

    def __init__(self, shared: _Following, sampled: bool) -> None:
        self.shared = shared
        self.client: WsClient | None = None
        self.next = -1
        self.sampled = sampled
        self.credit = Credit()

    def start(self) -> None:
        assert self.client is not None
        self.client.send(_subscribe_request(self.shared.topic, StartEdge.LATEST, Grant(records=STREAM_CREDIT_RECORDS)))

    def on_message(self, payload: bytes) -> None:
        shared = self.shared
        response = _RESPONSE(payload)
        if response.WhichOneof("resp") == "stream_batch":  # the hot path
            batch = response.stream_batch
            shared.frames += 1
            problem = batch_problem(batch, self.next, self.sampled)
            if problem is not None:
                shared.broke(problem)
            messages = batch.messages
            if messages:
                if self.sampled:
                    shared.latencies.add([m.timestamp for m in messages])
                shared.records += len(messages)
                assert self.client is not None
                self.credit.took(self.client, len(messages))
            self.next = batch.next_offset
            shared.progress.set()
            return
        answer = decode_response(payload)
        if isinstance(answer, SubscribeAnswer):
            self.next = answer.positions[0][1]  # the bench's fan-out topics have one partition
            shared.progress.set()
        elif isinstance(answer, StreamError):
            shared.errors += 1  # the server retries by itself
        elif not isinstance(answer, StreamCaughtUp):
            shared.broke(f"unexpected {answer}")


#: How fan-out sessions tail the partition: spec["via"].
_TAILS: Final[dict[str, type[_FetchTail | _StreamTail]]] = {"fetch": _FetchTail, "stream": _StreamTail}


async def worker_fanout(spec: dict[str, Any], commands: Commands) -> None:
    """Sessions tailing one partition (by Fetch or by stream); a histogram of receipt time minus CreateTime.

    Only every ``sample_every``-th session (by its index across all processes)
    reads each record's timestamp: that per-record Python work is what a load
    client spends most on, and on a small machine it takes CPU from the proxy.
    The others only follow their position.
    """
    shared = _Following(spec["topic"])
    tail = _TAILS[spec["via"]]
    every, first_index = spec["sample_every"], spec["first_index"]
    tails: list[_FetchTail | _StreamTail] = [
        tail(shared, (first_index + i) % every == 0) for i in range(spec["sessions"])
    ]
    started = time.time()
    clients, failures, first_error = await _open_many(spec, len(tails), lambda i: tails[i].on_message)
    for index, client in clients.items():
        tails[index].client = client
        tails[index].start()
    live = [t for t in tails if t.client is not None]

    async def until(done: Callable[[], bool], seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not done() and time.monotonic() < deadline:
            shared.progress.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(shared.progress.wait(), max(0.0, deadline - time.monotonic()))

    await until(lambda: all(t.next >= 0 for t in live), spec["place_timeout"])
    emit(
        event="ready",
        opened=len(clients),
        placed=sum(1 for t in live if t.next >= 0),
        failed=failures,
        first_error=first_error or shared.first_broken,
        seconds=time.time() - started,
    )
    await commands.next("go")
    cpu0, wall0, frames0 = cpu_seconds(), time.monotonic(), shared.frames
    finish = await commands.next("finish")
    cpu1, wall1, frames1 = cpu_seconds(), time.monotonic(), shared.frames
    end = finish["end"]
    await until(lambda: all(t.next >= end for t in live), finish["wait"])
    lagging = sum(1 for t in live if t.next < end or t.client is None or t.client.lost.done())
    for client in clients.values():
        client.abort()
    emit(
        event="result",
        sessions=len(live),
        sampled=sum(1 for t in live if t.sampled),
        hist=shared.latencies.histogram(finish["t0"], finish["t1"]),
        lagging=lagging,
        errors=shared.errors,
        broken=shared.broken,
        first_broken=shared.first_broken,
        frames=frames1 - frames0,
        records=shared.records,
        cpu_seconds=cpu1 - cpu0,
        wall_seconds=wall1 - wall0,
    )


async def worker_idle(spec: dict[str, Any], commands: Commands) -> None:
    """Open sessions, hold them without a word, close them when told.

    With a ``topic``, each session first opens one stream over it from its log
    end (the route's default credit) and waits for the answer; nothing is
    written to the topic, so what the server pushes while they are held is
    counted (a ``caught_up`` event each is all there should be).
    """
    topic = spec.get("topic")
    pushes = 0

    def pushed(_payload: bytes) -> None:
        nonlocal pushes
        pushes += 1

    async def subscribe(client: WsClient) -> None:
        assert topic is not None
        client.send(_subscribe_request(topic, StartEdge.LATEST, Grant(records=STREAM_CREDIT_RECORDS)))
        await _subscribed(client)
        client.on_message = pushed

    await commands.next("go")
    started, cpu0 = time.time(), cpu_seconds()
    clients, failures, first_error = await _open_many(
        spec, spec["sessions"], lambda _: None, subscribe if topic is not None else None
    )
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
    emit(event="result", closed=len(clients), seconds=time.time() - closing, pushes=pushes)


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


# ------------------------------------------------------------------ produce


def _produce_request(sequence: int, topic: str, records: tuple[OutRecord, ...]) -> bytes:
    """A CmdProduce asking for acks=all (what every produce scenario measures, whatever the route's default)."""
    return encode_produce_request(sequence, topic, records, acks=Acks.ALL)


def _all_written(answer: Response, sequence: int) -> tuple[Written, ...]:
    """The results of the answer to command ``sequence``, every one of which must be Written."""
    if not isinstance(answer, ProduceAnswer) or answer.sequence != sequence:
        raise RuntimeError(f"produce {sequence} answered {answer}")
    written = tuple(result for result in answer.results if isinstance(result, Written))
    if len(written) != len(answer.results):
        failed = next(result for result in answer.results if not isinstance(result, Written))
        raise RuntimeError(f"produce {sequence}: {len(answer.results) - len(written)} records not written: {failed}")
    return written


async def _produce_once(client: WsClient, sequence: int, topic: str, records: tuple[OutRecord, ...]) -> Written:
    """Send one command and wait for its answer (warm-ups); the last record's result."""
    client.send(_produce_request(sequence, topic, records))
    return _all_written(decode_response(await client.recv()), sequence)[-1]


class ProduceRun(_TimedRead):
    """One session writing ``count`` records in commands of ``per_command``, ``depth`` commands in flight.

    The clock starts with the first command and stops with the answer that
    completes the count; each answer sends the next command. Every answer must
    be one of the commands in flight with one result per record, every record
    Written, and each offset of [``base``, ``base + count``) written exactly
    once: a record refused, lost or repeated fails the run.
    """

    def __init__(
        self, client: WsClient, topic: str, count: int, per_command: int, depth: int, value: bytes, base: int
    ) -> None:
        super().__init__(client)
        self.topic = topic
        self.count = count
        self.depth = depth
        self.base = base
        self.batch = tuple(OutRecord(value=value) for _ in range(per_command))
        self.sequence = 0
        self.commands = 0
        self._unsent = count
        self._in_flight: dict[int, int] = {}  # sequence -> records
        self._seen = bytearray(count)

    def _send(self) -> None:
        records = self.batch[: self._unsent]
        self.sequence += 1
        self.commands += 1
        self._in_flight[self.sequence] = len(records)
        self._unsent -= len(records)
        self.client.send(_produce_request(self.sequence, self.topic, records))

    def _start(self) -> None:
        while self._unsent and len(self._in_flight) < self.depth:
            self._send()

    def _received(self, payload: bytes) -> None:
        response = _RESPONSE(payload)
        sent = self._in_flight.pop(response.sequence, None)
        if sent is None or response.WhichOneof("resp") != "produce_resp":
            self._fail(f"unexpected answer: {decode_response(payload)}")
            return
        results = response.produce_resp.results
        if len(results) != sent:
            self._fail(f"command {response.sequence} of {sent} records answered with {len(results)} results")
            return
        seen, base, count = self._seen, self.base, self.count
        for result in results:
            if result.HasField("error"):
                self._fail(f"command {response.sequence}: not written: {result.error.message}")
                return
            index = result.offset - base
            if not 0 <= index < count or seen[index]:
                self._fail(f"offset {result.offset} is outside {base}..{base + count - 1} or written twice")
                return
            seen[index] = 1
        self.records += sent
        if self.records == count:
            self._finish()
        elif self._unsent:
            self._send()

    def details(self) -> dict[str, Any]:
        return {**super().details(), "commands": self.commands, "commands_in_flight": self.depth}


async def worker_produce(spec: dict[str, Any], commands: Commands) -> None:
    """One session writing ``count`` records through the proxy (see :class:`ProduceRun`).

    One command of one record is answered before the clock starts, so the
    proxy has made its producer and looked up the topic (partitions, limits).
    """
    client = await WsClient.connect(spec["host"], spec["port"], ROUTE)
    value = os.urandom(spec["value_bytes"])
    warm = await _produce_once(client, 1, spec["topic"], (OutRecord(value=value),))
    reader = ProduceRun(
        client, spec["topic"], spec["count"], spec["per_command"], spec["depth"], value, base=warm.offset + 1
    )
    reader.sequence = 1
    client.on_message = reader.on_message
    await _timed(reader, commands)


async def worker_produce_latency(spec: dict[str, Any], commands: Commands) -> None:
    """One session: ``warmup`` commands of one record, then ``count`` timed ones, each answered before the next.

    A command's time runs from before it is encoded to its answer's arrival
    (as the direct producer's runs from ``send()`` to ``.get()`` returning).
    """
    client = await WsClient.connect(spec["host"], spec["port"], ROUTE)
    topic = spec["topic"]
    record = (OutRecord(value=os.urandom(spec["value_bytes"])),)
    sequence = 0
    for _ in range(spec["warmup"]):
        sequence += 1
        await _produce_once(client, sequence, topic, record)
    emit(event="ready")
    await commands.next("go")
    cpu0 = cpu_seconds()
    latencies: list[float] = []
    for _ in range(spec["count"]):
        sequence += 1
        started = time.perf_counter()
        client.send(_produce_request(sequence, topic, record))
        payload = await client.recv()
        latencies.append((time.perf_counter() - started) * 1000.0)
        _all_written(decode_response(payload), sequence)
    cpu = cpu_seconds() - cpu0
    await client.close()
    emit(event="result", latencies_ms=latencies, cpu_seconds=cpu)


class _FanIn:
    """What the writing sessions of one fan-in process share: the record, latencies, counts, the first error."""

    def __init__(self, topic: str, value: bytes) -> None:
        self.topic = topic
        self.record = (OutRecord(value=value),)
        self.latencies = _Latencies()
        self.sent_by_second: collections.Counter[int] = collections.Counter()
        self.sent = self.written = self.error_answers = self.not_written = self.strays = 0
        self.first_error = ""
        self.answered = asyncio.Event()  # set whenever an answer arrives

    def failed(self, problem: str) -> None:
        self.first_error = self.first_error or problem


class _Writer:
    """A fan-in session: a command of one record whenever the pacer says; each one's send time until its answer."""

    __slots__ = ("client", "pending", "sequence", "shared")

    def __init__(self, shared: _FanIn) -> None:
        self.shared = shared
        self.client: WsClient | None = None
        self.sequence = 0
        #: Commands not answered yet: sequence -> (perf_counter at the send, the wall-clock second of it).
        self.pending: dict[int, tuple[float, int]] = {}

    def send(self) -> None:
        client = self.client
        if client is None or client.lost.done():
            return
        shared = self.shared
        self.sequence += 1
        second = int(time.time())
        self.pending[self.sequence] = (time.perf_counter(), second)
        client.send(_produce_request(self.sequence, shared.topic, shared.record))
        shared.sent += 1
        shared.sent_by_second[second] += 1

    def on_message(self, payload: bytes) -> None:
        now = time.perf_counter()
        shared = self.shared
        shared.answered.set()
        response = _RESPONSE(payload)
        sent = self.pending.pop(response.sequence, None)
        if sent is None:
            shared.strays += 1
            shared.failed(f"an answer to no command in flight: {decode_response(payload)}")
            return
        if response.WhichOneof("resp") != "produce_resp":
            shared.error_answers += 1
            shared.failed(str(decode_response(payload)))
            return
        results = response.produce_resp.results
        if len(results) != 1 or results[0].HasField("error"):
            shared.not_written += 1
            shared.failed(str(decode_response(payload)))
            return
        shared.written += 1
        shared.latencies.add_latency(sent[1], (now - sent[0]) * 1000.0)


async def worker_produce_fanin(spec: dict[str, Any], commands: Commands) -> None:
    """Sessions each sending ``rate`` commands of one record a second; a histogram of send-to-answer times.

    The sessions' sends are spread evenly over each 1/rate s period, across all
    processes (by each session's index of ``total_sessions``), and kept to
    their schedule (a late send is made at once, and the next keeps its time).
    Before "ready" one command per process is answered, so the proxy's producer
    exists. Sending starts on "go" and stops on "finish", which names the window
    [t0, t1) of wall-clock seconds whose commands are measured; the answers of
    those still in flight are waited for up to ``wait`` seconds, and the ones
    that never come are reported as unanswered.
    """
    shared = _FanIn(spec["topic"], os.urandom(spec["value_bytes"]))
    writers = [_Writer(shared) for _ in range(spec["sessions"])]
    started = time.time()
    clients, failures, first_error = await _open_many(spec, len(writers), lambda _: None)
    if clients:
        await _produce_once(clients[min(clients)], 0, shared.topic, shared.record)
    for index, client in clients.items():
        writers[index].client = client
        client.on_message = writers[index].on_message
    live = [w for w in writers if w.client is not None]
    emit(event="ready", opened=len(clients), failed=failures, first_error=first_error, seconds=time.time() - started)
    await commands.next("go")
    loop = asyncio.get_running_loop()
    interval = 1.0 / spec["rate"]
    sending = True

    def tick(writer: _Writer, due: float) -> None:
        if sending:
            writer.send()
            loop.call_at(due + interval, tick, writer, due + interval)

    begin = loop.time() + 0.05
    for index, writer in enumerate(writers):
        if writer.client is not None:
            due = begin + interval * ((spec["first_index"] + index) % spec["total_sessions"]) / spec["total_sessions"]
            loop.call_at(due, tick, writer, due)
    cpu0, wall0 = cpu_seconds(), time.monotonic()
    finish = await commands.next("finish")
    sending = False
    cpu, wall = cpu_seconds() - cpu0, time.monotonic() - wall0
    deadline = time.monotonic() + finish["wait"]
    while any(w.pending for w in live) and time.monotonic() < deadline:
        shared.answered.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(shared.answered.wait(), max(0.0, deadline - time.monotonic()))
    t0, t1 = finish["t0"], finish["t1"]
    unanswered = [second for w in live for _, second in w.pending.values()]
    lost = sum(1 for w in live if w.client is not None and w.client.lost.done())
    for client in clients.values():
        client.abort()
    emit(
        event="result",
        sessions=len(live),
        hist=shared.latencies.histogram(t0, t1),
        sent_in_window=sum(shared.sent_by_second[s] for s in range(t0, t1)),
        unanswered_in_window=sum(1 for second in unanswered if t0 <= second < t1),
        unanswered=len(unanswered),
        sent=shared.sent,
        written=shared.written,
        error_answers=shared.error_answers,
        not_written=shared.not_written,
        strays=shared.strays,
        sessions_lost=lost,
        first_error=shared.first_error,
        cpu_seconds=cpu,
        wall_seconds=wall,
    )


# ------------------------------------------------------------------ consumer groups


class GroupMember:
    """A session with one group stream (STREAM_ID): what it owns as the group changes it, every batch checked.

    Every answer comes through :meth:`on_message`: the subscribe's answer or its
    refusal (``answered``), ``partitions`` events (kafka-python's rebalances are
    eager: "revoked: all", then "assigned: the new set" with start positions),
    record batches (each checked against where its partition was to continue, as
    the stream load clients check theirs), and the unsubscribe's answer (``left``).
    With ``ends``, a record past a partition's end is an error and ``done`` is set
    once every partition the member owns has reached its end. A partition in
    ``watch`` has the time of its first record after that noted in ``first_record``.
    """

    def __init__(self, ends: dict[int, int] | None = None) -> None:
        loop = asyncio.get_running_loop()
        self.client: WsClient | None = None
        self.ends = ends
        self.credit = Credit()
        self.owned: dict[int, int] = {}  # partition -> where it continues
        self.answered: asyncio.Future[Response] = loop.create_future()
        self.left: asyncio.Future[float] = loop.create_future()
        self.done: asyncio.Future[float] = loop.create_future()
        #: Each partitions event: (monotonic time, assigned, revoked, start positions of the assigned).
        self.changes: list[tuple[float, list[int], list[int], dict[int, int]]] = []
        self.by_partition: collections.Counter[int] = collections.Counter()
        self.records = self.caught_up = self.errors = 0
        self.first_error = ""
        self.watch: set[int] = set()
        self.first_record: dict[int, float] = {}
        self.progress = asyncio.Event()  # set whenever a watched partition's first record arrives

    async def connect(self, spec: dict[str, Any]) -> None:
        self.client = await WsClient.connect(spec["host"], spec["port"], ROUTE, self.on_message)

    async def join(
        self, topic: str, group: str, start: StartEdge, credit: Grant, auto_commit: bool = False
    ) -> tuple[float, Response]:
        """Subscribe with ``group``; the seconds until the answer (the group's first assignment) and the answer."""
        assert self.client is not None
        started = time.monotonic()
        request = encode_subscribe_request(
            STREAM_ID, topic, group=group, start=start, credit=credit, auto_commit=auto_commit
        )
        self.client.send(request)
        answer = await asyncio.wait_for(asyncio.shield(self.answered), GROUP_JOIN_TIMEOUT)
        return time.monotonic() - started, answer

    async def leave(self) -> float:
        """Unsubscribe (the member leaves the group); the monotonic time its answer arrived."""
        assert self.client is not None
        self.client.send(encode_unsubscribe_request(self.credit.sequence + 1, STREAM_ID))
        return await asyncio.wait_for(asyncio.shield(self.left), GROUP_JOIN_TIMEOUT)

    def on_message(self, payload: bytes) -> None:
        response = _RESPONSE(payload)
        if response.WhichOneof("resp") == "stream_batch":  # the hot path
            self._batch(response.stream_batch)
        else:
            self._answer(decode_response(payload))
        ends = self.ends
        if (
            ends is not None
            and self.owned
            and not self.done.done()
            and all(self.owned[p] >= ends[p] for p in self.owned)
        ):
            self.done.set_result(time.monotonic())

    def _answer(self, answer: Response) -> None:
        if isinstance(answer, StreamPartitions):
            positions = dict(answer.positions)
            self.changes.append((time.monotonic(), sorted(answer.assigned), sorted(answer.revoked), positions))
            for partition in answer.revoked:
                self.owned.pop(partition, None)
            self.owned.update(positions)
        elif isinstance(answer, (SubscribeAnswer, ErrorAnswer)) and not self.answered.done():
            if isinstance(answer, SubscribeAnswer):
                self.owned = dict(answer.positions)
            self.answered.set_result(answer)
        elif isinstance(answer, OkAnswer) and not self.left.done():
            self.left.set_result(time.monotonic())
        elif not _counted_event(self, answer):
            self._broke(f"unexpected {answer}")

    def _batch(self, batch: Any) -> None:
        partition = batch.partition
        expected = self.owned.get(partition)
        if expected is None:
            self._broke(f"a batch of partition {partition}, which the member does not own")
            return
        problem = batch_problem(batch, expected, every_offset=False)
        if problem is None and self.ends is not None and batch.next_offset > self.ends[partition]:
            problem = f"partition {partition}: records past its end {self.ends[partition]}"
        if problem is not None:
            self._broke(problem)
            return
        self.owned[partition] = batch.next_offset
        count = len(batch.messages)
        if count:
            self.records += count
            self.by_partition[partition] += count
            if partition in self.watch and partition not in self.first_record:
                self.first_record[partition] = time.monotonic()
                self.progress.set()
            assert self.client is not None
            self.credit.took(self.client, count)

    def _broke(self, problem: str) -> None:
        """A record lost, repeated or misplaced, or an answer out of place: every wait on this member fails."""
        for future in (self.answered, self.left, self.done):
            if not future.done():
                future.set_exception(RuntimeError(problem))
        self.progress.set()


async def _joined(member: GroupMember, *args: Any, **kwargs: Any) -> float:
    """Join (see :meth:`GroupMember.join`), which must succeed; the seconds it took."""
    seconds, answer = await member.join(*args, **kwargs)
    if not isinstance(answer, SubscribeAnswer):
        raise RuntimeError(f"the group subscribe answered {answer}")
    return seconds


async def _answer_states(commands: Commands, members: list[GroupMember]) -> dict[str, Any]:
    """Answer each "state" with what every member owns, until "go" (which is returned)."""
    while True:
        command = await commands.next("state", "go")
        if command["cmd"] == "go":
            return command
        emit(event="state", members=[sorted(m.owned) for m in members], records=[m.records for m in members])


async def worker_group_read(spec: dict[str, Any], commands: Commands) -> None:
    """One group member reading its share of a topic to ``ends`` (group_throughput).

    It joins paused (``credit {}``) from EARLIEST before the clock, so the group
    has settled before anything is read; on "go" it grants its credit window and
    reads every partition it owns to its end. It reports the monotonic clock (one
    clock for every process of the machine) at "go" and at its last record. A
    rebalance after "go" fails the read.
    """
    ends = {int(partition): end for partition, end in spec["ends"].items()}
    member = GroupMember(ends)
    await member.connect(spec)
    join_seconds = await _joined(member, spec["topic"], spec["group"], StartEdge.EARLIEST, Grant())
    emit(event="ready", join_seconds=join_seconds)
    await _answer_states(commands, [member])
    cpu0, t_start = cpu_seconds(), time.monotonic()
    owned = sorted(member.owned)
    assert member.client is not None
    member.credit.grant(member.client, STREAM_CREDIT_RECORDS)
    t_done = await asyncio.wait_for(member.done, READ_TIMEOUT)
    cpu = cpu_seconds() - cpu0
    late = [change for change in member.changes if change[0] >= t_start]
    if late:
        raise RuntimeError(f"the group rebalanced during the timed read: {late[0][1:3]}")
    await member.client.close()
    emit(
        event="result",
        records=member.records,
        partitions=owned,
        by_partition={str(p): n for p, n in sorted(member.by_partition.items())},
        t_start=t_start,
        t_done=t_done,
        cpu_seconds=cpu,
        grants=member.credit.grants,
        caught_up_events=member.caught_up,
        error_events=member.errors,
        first_error_event=member.first_error,
    )


async def worker_group_rebalance(spec: dict[str, Any], commands: Commands) -> None:
    """Members of one group tail a topic from LATEST (auto_commit); on "go" the last one leaves (group_rebalance).

    The leaver unsubscribes; from its answer, the time until the first member has
    received a record of every partition the leaver owned. Also: when the first
    member's revocation and assignment events came, and whether each partition it
    took over starts exactly where the leaver's delivered position was (what the
    leaver's auto_commit committed when it left): a record lost or read twice
    across the hand-over shows there.
    """
    members = [GroupMember() for _ in range(spec["members"])]
    for member in members:
        await member.connect(spec)
    credit = Grant(records=STREAM_CREDIT_RECORDS)
    joins = await asyncio.gather(
        *(_joined(m, spec["topic"], spec["group"], StartEdge.LATEST, credit, auto_commit=True) for m in members)
    )
    emit(event="ready", join_seconds=joins)
    await _answer_states(commands, members)
    survivor, leaver = members[0], members[-1]
    handed = sorted(leaver.owned)
    survivor.watch = set(handed)
    t_sent = time.monotonic()
    t_ok = await leaver.leave()
    delivered = {p: leaver.owned[p] for p in handed}
    leaver_records = leaver.records
    deadline = t_ok + spec["wait"]
    while not survivor.watch <= survivor.first_record.keys() and time.monotonic() < deadline:
        survivor.progress.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(survivor.progress.wait(), max(0.0, deadline - time.monotonic()))
        if survivor.done.done() and survivor.done.exception() is not None:
            raise RuntimeError(str(survivor.done.exception()))
    missing = sorted(survivor.watch - survivor.first_record.keys())
    starts: dict[int, int] = {}
    for _, assigned, _, positions in (c for c in survivor.changes if c[0] >= t_sent):
        for partition in assigned:
            starts.setdefault(partition, positions[partition])
    changes = [
        {"at_seconds": round(t - t_ok, 4), "assigned": assigned, "revoked": revoked}
        for t, assigned, revoked, _ in survivor.changes
        if t >= t_sent
    ]
    emit(
        event="result",
        handed_over=handed,
        unsubscribe_seconds=t_ok - t_sent,
        # From the unsubscribe's answer to each handed-over partition's first record at the survivor.
        first_record_seconds={str(p): survivor.first_record[p] - t_ok for p in sorted(survivor.first_record)},
        takeover_seconds=None if missing else max(survivor.first_record[p] for p in handed) - t_ok,
        missing=missing,
        survivor_changes=changes,
        survivor_owns=sorted(survivor.owned),
        handover_mismatches={
            str(p): {"leaver_delivered": delivered[p], "survivor_started": starts.get(p)}
            for p in handed
            if starts.get(p) != delivered[p]
        },
        leaver_records_after_answer=leaver.records - leaver_records,
        records=[m.records for m in members],
        error_events=sum(m.errors for m in members),
        first_error_event=next((m.first_error for m in members if m.first_error), ""),
    )
    for member in members:
        assert member.client is not None
        await member.client.close()


async def worker_group_members(spec: dict[str, Any], commands: Commands) -> None:
    """Group members opened one at a time on "open", each a session with one group stream of a group of its own.

    Before "ready" one plain stream over every partition of the topic is opened and
    held, so that the partition readers exist before the orchestrator's baseline and
    each member adds only its membership. Each member subscribes from LATEST with a
    credit window; "opened" says how its subscribe was answered (a refusal's code and
    message). "close" closes every member's session and the plain one.
    """
    topic = spec["topic"]
    held = await WsClient.connect(spec["host"], spec["port"], ROUTE)
    held.send(_subscribe_request(topic, StartEdge.LATEST, Grant(records=STREAM_CREDIT_RECORDS)))
    await _subscribed(held)
    emit(event="ready")
    members: list[GroupMember] = []
    while (await commands.next("open", "close"))["cmd"] == "open":
        member = GroupMember()
        await member.connect(spec)
        group = f"{spec['group']}-{len(members) + 1}"
        try:
            seconds, answer = await member.join(topic, group, StartEdge.LATEST, Grant(records=STREAM_CREDIT_RECORDS))
        except asyncio.TimeoutError:
            emit(event="opened", ok=False, code=None, message=f"no answer within {GROUP_JOIN_TIMEOUT:.0f}s")
            continue
        if isinstance(answer, SubscribeAnswer):
            members.append(member)
            emit(event="opened", ok=True, seconds=seconds, partitions=len(member.owned))
        else:
            assert member.client is not None
            await member.client.close()
            code = answer.code if isinstance(answer, ErrorAnswer) else None
            emit(event="opened", ok=False, seconds=seconds, code=code, message=str(getattr(answer, "message", answer)))
    started = time.monotonic()
    await asyncio.gather(*(m.client.close() for m in members if m.client is not None))
    await held.close()
    emit(event="closed", seconds=time.monotonic() - started)


# ------------------------------------------------------------------ authentication and quotas


async def _first_byte(spec: dict[str, Any], path: str) -> tuple[float, float]:
    """One session: connect with ``path``, ListOffset, close; ms to the handshake's answer and to the ListOffset's."""
    started = time.perf_counter()
    client = await WsClient.connect(spec["host"], spec["port"], path)
    handshake = time.perf_counter() - started
    try:
        client.send(_list_offset_request(1, spec["topic"], LATEST))
        answer = decode_response(await client.recv())
        elapsed = time.perf_counter() - started
    finally:
        await client.close()
    if not isinstance(answer, OffsetAnswer):
        raise RuntimeError(f"ListOffset answered {answer}")
    return handshake * 1000.0, elapsed * 1000.0


async def worker_auth_handshake(spec: dict[str, Any], commands: Commands) -> None:
    """Handshakes with the tokens of ``token_file`` (none: no credential), one after another, then many at once.

    Each session presents the next token (cycled when there are fewer than
    sessions), in the query as a browser would. On "go": ``warmup`` untimed
    sessions, then ``sequential`` timed ones one after another (connect,
    handshake, ListOffset answered, close), reported as "sequential"; on
    "concurrent", ``concurrent`` sessions, ``concurrency`` at a time, that only
    connect, complete the handshake and close: handshakes a second. A refused
    handshake in the sequential part fails the worker; in the concurrent part it
    is counted.
    """
    tokens: list[str | None] = [*_tokens(spec)] or [None]
    used = 0

    def next_path() -> str:
        nonlocal used
        used += 1
        return _route_path(tokens[(used - 1) % len(tokens)])

    emit(event="ready", tokens=len(tokens) if tokens != [None] else 0)
    await commands.next("go")
    for _ in range(spec["warmup"]):
        await _first_byte(spec, next_path())
    cpu0 = cpu_seconds()
    timings = [await _first_byte(spec, next_path()) for _ in range(spec["sequential"])]
    emit(
        event="sequential",
        handshake_ms=[handshake for handshake, _ in timings],
        first_byte_ms=[first for _, first in timings],
        cpu_seconds=cpu_seconds() - cpu0,
    )
    await commands.next("concurrent")
    remaining = spec["concurrent"]
    handshakes: list[float] = []
    failed = 0
    first_error = ""

    async def lane() -> None:
        nonlocal remaining, failed, first_error
        while remaining > 0:
            remaining -= 1
            path = next_path()
            started = time.perf_counter()
            try:
                client = await WsClient.connect(spec["host"], spec["port"], path)
            except (OSError, asyncio.TimeoutError) as exc:
                failed += 1
                first_error = first_error or f"{type(exc).__name__}: {exc}"
                continue
            handshakes.append((time.perf_counter() - started) * 1000.0)
            await client.close()

    cpu0, started = cpu_seconds(), time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(spec["concurrency"])))
    emit(
        event="result",
        handshake_ms=handshakes,
        seconds=time.perf_counter() - started,
        failed=failed,
        first_error=first_error,
        cpu_seconds=cpu_seconds() - cpu0,
    )


class _Hammer:
    """Sessions of one principal producing over its quota: each answer sends the next command at once.

    Counts the commands sent, the ones refused with QUOTA_EXCEEDED, the records
    written, and any other answer (a record not written, another error).
    """

    def __init__(self, topic: str, value: bytes) -> None:
        self.topic = topic
        self.record = (OutRecord(value=value),)
        self.sending = False
        self.sent = self.refused = self.written = self.other = 0
        self.first_other = ""

    def send(self, client: WsClient) -> None:
        if not self.sending or client.lost.done():
            return
        self.sent += 1  # sequences need not differ between sessions: the count serves as one
        client.send(_produce_request(self.sent, self.topic, self.record))

    def answered(self, client: WsClient) -> Callable[[bytes], None]:
        def on_message(payload: bytes) -> None:
            response = _RESPONSE(payload)
            kind = response.WhichOneof("resp")
            if kind == "error_resp" and response.error_resp.code == ErrorCode.QUOTA_EXCEEDED:
                self.refused += 1
            elif kind == "produce_resp" and not any(r.HasField("error") for r in response.produce_resp.results):
                self.written += len(response.produce_resp.results)
            else:
                self.other += 1
                self.first_other = self.first_other or str(decode_response(payload))
            self.send(client)

        return on_message


async def worker_quota_hammer(spec: dict[str, Any], commands: Commands) -> None:
    """``sessions`` sessions of one principal, each keeping ``in_flight`` one-record produce commands in flight.

    The principal is over its ``produce_records_per_second`` quota almost at
    once, so most commands are answered QUOTA_EXCEEDED, and each answer sends
    the next command straight away, ignoring ``retry_after``: as many commands
    as the proxy will answer (it holds a session that does not wait, so about
    two refusals per retry_after a session). Sending starts on "go" and stops on "finish"; the counts, and this
    process's CPU, are over that span.
    """
    hammer = _Hammer(spec["topic"], os.urandom(spec["value_bytes"]))
    clients, failures, first_error = await _open_many(spec, spec["sessions"], lambda _: None)
    emit(event="ready", opened=len(clients), failed=failures, first_error=first_error)
    await commands.next("go")
    hammer.sending = True
    for client in clients.values():
        client.on_message = hammer.answered(client)
        for _ in range(spec["in_flight"]):
            hammer.send(client)
    cpu0, wall0 = cpu_seconds(), time.monotonic()
    await commands.next("finish")
    hammer.sending = False
    cpu, wall = cpu_seconds() - cpu0, time.monotonic() - wall0
    counts = {"sent": hammer.sent, "refused": hammer.refused, "written": hammer.written, "other": hammer.other}
    lost = sum(1 for client in clients.values() if client.lost.done())
    for client in clients.values():
        client.abort()
    emit(
        event="result",
        sessions=len(clients),
        sessions_lost=lost,
        first_other=hammer.first_other,
        cpu_seconds=cpu,
        wall_seconds=wall,
        **counts,
    )


WORKERS: Final[dict[str, Callable[[dict[str, Any], Commands], Awaitable[None]]]] = {
    "fetch": worker_fetch,
    "stream": worker_stream,
    "fanout": worker_fanout,
    "idle": worker_idle,
    "churn": worker_churn,
    "first_byte": worker_first_byte,
    "produce": worker_produce,
    "produce_latency": worker_produce_latency,
    "produce_fanin": worker_produce_fanin,
    "group_read": worker_group_read,
    "group_rebalance": worker_group_rebalance,
    "group_members": worker_group_members,
    "auth_handshake": worker_auth_handshake,
    "quota_hammer": worker_quota_hammer,
}


def run(spec: dict[str, Any]) -> None:
    """The load-client process: the worker ``spec["kind"]`` on uvloop."""
    import uvloop

    raise_nofile()

    async def main() -> None:
        commands = await Commands.open()
        await WORKERS[spec["kind"]](spec, commands)

    uvloop.run(main())
