"""Measure kafka-ws-trio against a real broker: ``scripts/bench [--quick] [--json FILE]``.

One file, three roles, chosen by the first argument:

* no role: the **orchestrator**. It starts a Kafka broker of its own through
  ``scripts/kafka`` (instance ``bench``, ports 25492..25496), loads the topics,
  runs every scenario with the proxy in a process of its own and the load
  clients in further processes, prints a table and, with ``--json FILE``,
  writes every figure. Whatever happens, it stops each process it started,
  by PID, and ``scripts/kafka down --name bench`` at the end.
* ``_proxy SPEC``: the proxy under test. ``serve_proxy`` in a plain
  ``trio.run``; it prints one JSON line when it listens and answers each
  ``{"cmd": "stats"}`` line on stdin with ``attrs.asdict(server.statistics())``.
  End of stdin is its graceful shutdown.
* ``_worker SPEC``: one load-client process. The session clients are asyncio on
  uvloop speaking WebSocket through the few lines of RFC 6455 a client needs
  (:class:`WsClient`) and protobuf through upb, so that one process drives
  hundreds of sessions; the direct Kafka readers and the paced producer are
  kafka-python and confluent-kafka. Workers report JSON lines on stdout,
  take JSON commands on stdin, and exit when stdin closes.

Every wait has a deadline. See ``docs/BENCHMARKS.md`` for what each figure
means and what limits it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import json
import math
import os
import platform
import queue
import re
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Final

import attrs

REPO: Final = Path(__file__).resolve().parents[1]
KAFKA_SCRIPT: Final = REPO / "scripts" / "kafka"
BROKER_NAME: Final = "bench"
BROKER_PORT_BASE: Final = 25492  # below the ephemeral port range, like scripts/kafka's defaults
ROUTE: Final = "/kafka"
PARTITION: Final = 0
LATEST: Final = -1
EARLIEST: Final = -2

#: Fan-out: the producer's pace and the size of its records.
FANOUT_RATE: Final = 1000
FANOUT_RECORD_BYTES: Final = 100
#: Churn and first byte read a small topic: a fetch there is one short frame.
SMALL_TOPIC_RECORDS: Final = 10
SMALL_RECORD_BYTES: Final = 100
#: Fan-out latency is read from every record delivered to about this many sessions, spread evenly.
LATENCY_SESSIONS: Final = 100
#: Sessions one client process drives in the fan-out and holds in the idle test.
FANOUT_SESSIONS_PER_PROC: Final = 250
IDLE_SESSIONS_PER_PROC: Final = 2500
#: Handshakes one client process keeps in flight while opening sessions.
OPEN_CONCURRENCY: Final = 100
#: Sessions each churn process runs at the same time.
CHURN_CONCURRENCY: Final = 16
#: Seconds to wait before counting a quiet proxy's threads: trio's thread cache
#: lets an idle worker thread go after 10 s, so both counts see the same pool.
SETTLE_SECONDS: Final = 11.0
#: "Flat": the broker fetch rate at the most sessions is at most this times the rate at the fewest.
FLAT_FACTOR: Final = 1.5
#: Latency histogram buckets, in milliseconds; from COARSE_FROM buckets on, ten are merged into one (1 ms).
BUCKET_MS: Final = 0.1
COARSE_FROM: Final = 1000
#: A client process busier than this (% of a core) may be what limits a figure: the table says so.
CLIENT_BOUND_PCT: Final = 80.0

#: Deadlines, seconds.
BROKER_UP_TIMEOUT: Final = 600.0
BROKER_DOWN_TIMEOUT: Final = 120.0
CHILD_START_TIMEOUT: Final = 60.0
CHILD_STOP_TIMEOUT: Final = 20.0
STATS_TIMEOUT: Final = 15.0
READ_TIMEOUT: Final = 300.0
REQUEST_TIMEOUT: Final = 30.0
COMMAND_TIMEOUT: Final = 1800.0
LOAD_TIMEOUT: Final = 300.0

CLIENT_DESCRIPTION: Final = (
    "asyncio on uvloop with a minimal RFC 6455 client (frames parsed in Python, requests masked "
    "with a zero key) and upb protobuf; sessions split over several processes"
)


@attrs.frozen
class Plan:
    """How big each scenario is."""

    name: str
    fetch_records: int
    fetch_repeats: int
    fanout_sessions: tuple[int, ...]
    fanout_warmup: float
    fanout_window: float
    idle_sessions: int
    churn_sessions: int
    churn_warmup_sessions: int
    first_byte_samples: int


QUICK: Final = Plan(
    name="quick",
    fetch_records=50_000,
    fetch_repeats=1,
    fanout_sessions=(10, 100, 500),
    fanout_warmup=3.0,
    fanout_window=10.0,
    idle_sessions=2_000,
    churn_sessions=2_000,
    churn_warmup_sessions=200,
    first_byte_samples=200,
)
FULL: Final = Plan(
    name="full",
    fetch_records=200_000,
    fetch_repeats=3,
    fanout_sessions=(10, 100, 1_000),
    fanout_warmup=5.0,
    fanout_window=30.0,
    idle_sessions=10_000,
    churn_sessions=10_000,
    churn_warmup_sessions=500,
    first_byte_samples=1_000,
)

SCENARIOS: Final = ("first_byte", "fetch", "fanout", "idle", "churn")


class BenchError(Exception):
    """A scenario could not be run; the message says why."""


def raise_nofile() -> None:
    """Raise this process's open-file limit to the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def cpu_seconds() -> float:
    """User plus system CPU seconds of this process so far."""
    times = os.times()
    return times.user + times.system


def percentile(sorted_values: list[float], fraction: float) -> float:
    """The value below which ``fraction`` of the (sorted) values lie; nearest rank."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def histogram_percentile(hist: dict[int, int], missing: int, fraction: float) -> float | None:
    """Percentile in ms of a histogram of BUCKET_MS buckets; ``missing`` samples count as infinite.

    Returns None when the percentile falls among the missing samples.
    """
    total = sum(hist.values()) + missing
    if total == 0:
        return None
    rank = max(1, math.ceil(fraction * total))
    seen = 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen >= rank:
            return round(bucket * BUCKET_MS, 1)
    return None


# ======================================================================================
# Load clients (run in worker processes)


def _pb() -> Any:
    from kafka_ws_trio._pb import pubsub_pb2

    return pubsub_pb2


def fetch_request(pb: Any, sequence: int, topic: str, offset: int) -> bytes:
    request = pb.PubSubReq(sequence=sequence)
    command = request.cmd_kafka_fetch
    command.topic, command.partition, command.offset = topic, PARTITION, offset
    return request.SerializeToString()  # type: ignore[no-any-return]


def list_offset_request(pb: Any, sequence: int, topic: str, timestamp: int) -> bytes:
    request = pb.PubSubReq(sequence=sequence)
    command = request.cmd_kafka_list_offset
    command.topic, command.partition, command.timestamp = topic, PARTITION, timestamp
    return request.SerializeToString()  # type: ignore[no-any-return]


#: Client frames must be masked; a zero key makes masking a no-op, which the server cannot tell.
_ZERO_MASK: Final = b"\x00\x00\x00\x00"
_OP_CONTINUATION, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING = 0x0, 0x1, 0x2, 0x8, 0x9
_MAX_HANDSHAKE: Final = 65536


class WsClient(asyncio.Protocol):
    """The client half of RFC 6455 that the PubSub protocol uses: binary messages, close, ping.

    Received messages go to ``on_message`` when one is given, else to an inbox
    that :meth:`recv` reads.
    """

    def __init__(self, request: bytes, on_message: Callable[[bytes], None] | None = None) -> None:
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.on_message = on_message
        self.transport: asyncio.Transport | None = None
        self._request = request
        self._buffer = bytearray()
        self._open = False
        self._parts: list[bytes] = []
        self._close_sent = False
        self._inbox: collections.deque[bytes] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None

    @classmethod
    async def connect(
        cls, host: str, port: int, path: str, on_message: Callable[[bytes], None] | None = None
    ) -> WsClient:
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        client = cls(request, on_message)
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(loop.create_connection(lambda: client, host, port), REQUEST_TIMEOUT)
        try:
            await asyncio.wait_for(asyncio.shield(client.opened), REQUEST_TIMEOUT)
        except BaseException:
            client.abort()
            raise
        return client

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport subclass
        transport.write(self._request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("connection closed during the handshake"))
        if not self.lost.done():
            self.lost.set_result(None)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError("connection closed"))

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        if not self._open:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > _MAX_HANDSHAKE:
                    self._fail("handshake response too long")
                return
            status = bytes(buffer[: buffer.find(b"\r\n")])
            del buffer[: end + 4]
            if not status.startswith(b"HTTP/1.1 101"):
                self._fail(status.decode(errors="replace"))
                return
            self._open = True
            self.opened.set_result(None)
        self._read_frames()

    # ------------------------------------------------------------------------ frames

    def _read_frames(self) -> None:
        buffer = self._buffer
        while True:
            available = len(buffer)
            if available < 2:
                return
            second = buffer[1]
            length = second & 0x7F
            head = 2
            if length == 126:
                if available < 4:
                    return
                length = int.from_bytes(buffer[2:4], "big")
                head = 4
            elif length == 127:
                if available < 10:
                    return
                length = int.from_bytes(buffer[2:10], "big")
                head = 10
            if second & 0x80:
                self._fail("the server masked a frame")
                return
            if available < head + length:
                return
            first = buffer[0]
            with memoryview(buffer) as view:
                payload = bytes(view[head : head + length])
            del buffer[: head + length]
            opcode = first & 0x0F
            if opcode in (_OP_BINARY, _OP_TEXT, _OP_CONTINUATION):
                if not first & 0x80:
                    self._parts.append(payload)
                    continue
                if self._parts:
                    self._parts.append(payload)
                    payload = b"".join(self._parts)
                    self._parts.clear()
                self._deliver(payload)
            elif opcode == _OP_CLOSE:
                if not self._close_sent:
                    self._send_frame(0x80 | _OP_CLOSE, payload[:2])
                    self._close_sent = True
                if self.transport is not None:
                    self.transport.close()
                return
            elif opcode == _OP_PING:
                self._send_frame(0x8A, payload)

    def _deliver(self, payload: bytes) -> None:
        if self.on_message is not None:
            self.on_message(payload)
            return
        self._inbox.append(payload)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _send_frame(self, first: int, payload: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        size = len(payload)
        if size < 126:
            head = bytes((first, 0x80 | size))
        elif size < 65536:
            head = bytes((first, 0xFE)) + size.to_bytes(2, "big")
        else:
            head = bytes((first, 0xFF)) + size.to_bytes(8, "big")
        self.transport.write(head + _ZERO_MASK + payload)

    def _fail(self, reason: str) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(reason))
        self.abort()

    # ----------------------------------------------------------------------- public

    def send(self, payload: bytes) -> None:
        """Send one binary message."""
        self._send_frame(0x80 | _OP_BINARY, payload)

    async def recv(self) -> bytes:
        """The next message (only when no ``on_message`` was given)."""
        if not self._inbox:
            if self.lost.done():
                raise ConnectionError("connection closed")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(self._waiter, REQUEST_TIMEOUT)
            finally:
                self._waiter = None
        return self._inbox.popleft()

    async def close(self, timeout: float = 5.0) -> None:
        """Close politely: a close frame (1000), then wait for the server to end the connection."""
        if self.transport is None or self.transport.is_closing():
            return
        if not self._close_sent:
            self._send_frame(0x80 | _OP_CLOSE, (1000).to_bytes(2, "big"))
            self._close_sent = True
        try:
            await asyncio.wait_for(asyncio.shield(self.lost), timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            self.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.close()


def emit(**event: Any) -> None:
    """Report one event to the orchestrator, as a JSON line on stdout."""
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


class Commands:
    """JSON commands from the orchestrator, one per stdin line; end of stdin ends the worker."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader

    @classmethod
    async def open(cls) -> Commands:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 20)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        return cls(reader)

    async def next(self, expected: str) -> dict[str, Any]:
        line = await asyncio.wait_for(self._reader.readline(), COMMAND_TIMEOUT)
        if not line:
            raise SystemExit(0)  # the orchestrator is gone: so are we
        command: dict[str, Any] = json.loads(line)
        if command.get("cmd") != expected:
            raise RuntimeError(f"expected command {expected!r}, got {command!r}")
        return command


def _sync_command(expected: str) -> dict[str, Any]:
    line = sys.stdin.readline()
    if not line:
        raise SystemExit(0)
    command: dict[str, Any] = json.loads(line)
    if command.get("cmd") != expected:
        raise RuntimeError(f"expected command {expected!r}, got {command!r}")
    return command


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


class _PipelinedRead:
    """One session reading [start, end) with ``depth`` Fetch requests in flight.

    Offsets are contiguous, so the next response's first offset is predictable:
    requests go out at ``next``, ``next + step``, ... where ``step`` is the median
    size of the latest responses (one short response, the rest of a poll, does
    not throw the predictions off). Responses for one partition come back in request order;
    when one ends short of the next request in flight, the gap is asked for at
    once, and records that arrive twice are counted as duplicates.
    """

    def __init__(self, pb: Any, topic: str, start: int, end: int, depth: int) -> None:
        self.pb = pb
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
        self.client.send(fetch_request(self.pb, self._sequence, self.topic, offset))

    def begin(self) -> None:
        self.t_first = time.perf_counter()
        self._request(self.start)

    def on_message(self, payload: bytes) -> None:
        if self.done.done():
            return
        self.frames += 1
        self.frame_bytes += len(payload)
        response = self.pb.PubSubResp.FromString(payload)
        sequence, offset = self._in_flight.popleft()
        if response.sequence != sequence or response.WhichOneof("resp") != "kafka_fetch_resp":
            self.done.set_exception(RuntimeError(f"unexpected answer to fetch at {offset}: {response}"))
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
    pb = _pb()
    reader = _PipelinedRead(pb, spec["topic"], spec["start"], spec["end"], spec["depth"])
    client = await WsClient.connect(spec["host"], spec["port"], ROUTE)
    client.send(list_offset_request(pb, 0, spec["topic"], EARLIEST))  # opens the partition reader: warm
    pb.PubSubResp.FromString(await client.recv())
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


async def worker_fanout(spec: dict[str, Any], commands: Commands) -> None:
    """Sessions tailing one partition; a histogram of receipt time minus CreateTime.

    Only every ``sample_every``-th session (by its index across all processes)
    reads each record's timestamp: that per-record Python work is what a load
    client spends most on, and on a small machine it takes CPU from the proxy.
    The others only follow their position.
    """
    pb = _pb()
    topic = spec["topic"]
    loop = asyncio.get_running_loop()
    by_second: collections.defaultdict[int, collections.Counter[int]] = collections.defaultdict(collections.Counter)
    totals = {"errors": 0, "frames": 0, "records": 0}
    progress = asyncio.Event()  # set whenever some session's position moves
    scale = 1.0 / BUCKET_MS

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
                self.client.send(fetch_request(pb, self.sequence, topic, self.next))

        def on_message(self, payload: bytes) -> None:
            response = pb.PubSubResp.FromString(payload)
            kind = response.WhichOneof("resp")
            if kind == "kafka_fetch_resp":
                messages = response.kafka_fetch_resp.messages
                totals["frames"] += 1
                if messages and self.sampled:
                    now = time.time() * 1000.0
                    stamps = [m.timestamp for m in messages]
                    first, last = stamps[0] // 1000, stamps[-1] // 1000
                    if first == last:
                        by_second[first].update([int((now - s) * scale) for s in stamps])
                    else:
                        for s in stamps:
                            by_second[s // 1000][int((now - s) * scale)] += 1
                if messages:
                    totals["records"] += len(messages)
                    self.next = messages[-1].offset + 1
                    progress.set()
                self.fetch()
            elif kind == "kafka_list_offset_resp":
                self.next = response.kafka_list_offset_resp.offset
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
        client.send(list_offset_request(pb, 0, topic, LATEST))
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
    end, first_second, last_second = finish["end"], finish["t0"], finish["t1"]
    await until(lambda: all(t.next >= end for t in live), finish["wait"])
    lagging = sum(1 for t in live if t.next < end or t.client is None or t.client.lost.done())
    hist: collections.Counter[int] = collections.Counter()
    for second in range(first_second, last_second):
        for bucket, count in by_second.get(second, {}).items():
            hist[bucket if bucket < COARSE_FROM else bucket - bucket % 10] += count
    for client in clients.values():
        client.abort()
    emit(
        event="result",
        sessions=len(live),
        sampled=sum(1 for t in live if t.sampled),
        hist=sorted(hist.items()),
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
    pb = _pb()
    topic = spec["topic"]
    remaining = spec["sessions"]
    outcome = {"ok": 0, "failed": 0}
    first_error = ""

    async def session() -> None:
        client = await WsClient.connect(spec["host"], spec["port"], ROUTE)
        try:
            client.send(list_offset_request(pb, 1, topic, EARLIEST))
            answer = pb.PubSubResp.FromString(await client.recv())
            if answer.WhichOneof("resp") != "kafka_list_offset_resp":
                raise RuntimeError(f"ListOffset answered {answer}")
            client.send(fetch_request(pb, 2, topic, answer.kafka_list_offset_resp.offset))
            answer = pb.PubSubResp.FromString(await client.recv())
            if answer.WhichOneof("resp") != "kafka_fetch_resp" or not answer.kafka_fetch_resp.messages:
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
    pb = _pb()
    emit(event="ready")
    await commands.next("go")
    cpu0 = cpu_seconds()
    latencies: list[float] = []
    for index in range(spec["warmup"] + spec["samples"]):
        started = time.perf_counter()
        client = await WsClient.connect(spec["host"], spec["port"], ROUTE)
        client.send(list_offset_request(pb, 1, spec["topic"], LATEST))
        answer = pb.PubSubResp.FromString(await client.recv())
        elapsed = time.perf_counter() - started
        await client.close()
        if answer.WhichOneof("resp") != "kafka_list_offset_resp":
            raise RuntimeError(f"ListOffset answered {answer}")
        if index >= spec["warmup"]:
            latencies.append(elapsed * 1000.0)
    emit(event="result", latencies_ms=latencies, cpu_seconds=cpu_seconds() - cpu0)


def worker_kafka_python(spec: dict[str, Any]) -> None:
    """Read [start, end) with a direct kafka-python consumer set up like the proxy's own."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=spec["bootstrap"],
        group_id=None,
        enable_auto_commit=False,
        fetch_max_bytes=spec["fetch_max_bytes"],
        max_partition_fetch_bytes=spec["fetch_max_bytes"],
        max_poll_records=spec["max_poll_records"],
        fetch_max_wait_ms=spec["fetch_max_wait_ms"],
    )
    try:
        tp = TopicPartition(spec["topic"], PARTITION)
        consumer.assign([tp])
        consumer.end_offsets([tp])  # connected and bootstrapped before the clock starts
        consumer.seek(tp, spec["start"])
        emit(event="ready")
        _sync_command("go")
        cpu0, started = cpu_seconds(), time.perf_counter()
        wanted = spec["end"] - spec["start"]
        records = value_bytes = 0
        deadline = time.monotonic() + READ_TIMEOUT
        while records < wanted:
            if time.monotonic() > deadline:
                raise RuntimeError(f"kafka-python read {records} of {wanted} records in {READ_TIMEOUT:.0f}s")
            for batch in consumer.poll(timeout_ms=1000).values():
                records += len(batch)
                value_bytes += sum(len(r.value) for r in batch)
        seconds = time.perf_counter() - started
        emit(
            event="result", records=records, seconds=seconds, value_bytes=value_bytes, cpu_seconds=cpu_seconds() - cpu0
        )
    finally:
        consumer.close()


def worker_confluent(spec: dict[str, Any]) -> None:
    """Read [start, end) with a direct confluent-kafka consumer: the ceiling for one Python process."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": spec["bootstrap"],
            "group.id": "kwt-bench-direct",
            "enable.auto.commit": False,
            # As long a wait as the proxy's fetch_max_wait (librdkafka's 500 ms default stalls small
            # records), and a prefetch queue that does not pause at librdkafka's 100,000 records.
            "fetch.wait.max.ms": spec["fetch_max_wait_ms"],
            "queued.min.messages": 1_000_000,
        }
    )
    try:
        consumer.get_watermark_offsets(TopicPartition(spec["topic"], PARTITION), timeout=REQUEST_TIMEOUT)
        emit(event="ready")
        _sync_command("go")
        cpu0, started = cpu_seconds(), time.perf_counter()
        consumer.assign([TopicPartition(spec["topic"], PARTITION, spec["start"])])
        wanted = spec["end"] - spec["start"]
        records = value_bytes = 0
        deadline = time.monotonic() + READ_TIMEOUT
        while records < wanted:
            if time.monotonic() > deadline:
                raise RuntimeError(f"confluent-kafka read {records} of {wanted} records in {READ_TIMEOUT:.0f}s")
            for message in consumer.consume(num_messages=10_000, timeout=1.0):
                if message.error() is not None:
                    raise RuntimeError(f"confluent-kafka: {message.error()}")
                records += 1
                value_bytes += len(message.value())
        seconds = time.perf_counter() - started
        emit(
            event="result", records=records, seconds=seconds, value_bytes=value_bytes, cpu_seconds=cpu_seconds() - cpu0
        )
    finally:
        consumer.close()


def worker_producer(spec: dict[str, Any]) -> None:
    """Produce ``rate`` records a second, each stamped with the wall clock when it is handed over."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": spec["bootstrap"], "acks": "all"})  # librdkafka defaults: linger.ms 5
    stop = threading.Event()
    command: dict[str, Any] = {}
    per_second: collections.Counter[int] = collections.Counter()
    last_offset = [-1]
    failures = [0]

    def delivered(error: Any, message: Any) -> None:
        if error is not None:
            failures[0] += 1
        else:
            last_offset[0] = max(last_offset[0], message.offset())

    def listen() -> None:
        command.update(_sync_command("stop"))
        stop.set()

    producer.list_topics(spec["topic"], timeout=REQUEST_TIMEOUT)
    emit(event="ready")
    _sync_command("go")
    threading.Thread(target=listen, daemon=True).start()
    value = b"x" * spec["value_bytes"]
    interval = 1.0 / spec["rate"]
    started = due = time.monotonic()
    cpu0 = cpu_seconds()
    sent = 0
    while not stop.is_set():
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        stamp = int(time.time() * 1000)
        producer.produce(spec["topic"], value=value, partition=PARTITION, timestamp=stamp, on_delivery=delivered)
        producer.poll(0)
        per_second[stamp // 1000] += 1
        sent += 1
        due += interval
    elapsed = time.monotonic() - started
    left = producer.flush(REQUEST_TIMEOUT)
    in_window = sum(per_second[s] for s in range(command["t0"], command["t1"]))
    emit(
        event="result",
        sent=sent,
        rate=sent / elapsed,
        in_window=in_window,
        last_offset=last_offset[0],
        undelivered=left + failures[0],
        cpu_seconds=cpu_seconds() - cpu0,
    )


ASYNC_WORKERS: Final = {
    "fetch": worker_fetch,
    "fanout": worker_fanout,
    "idle": worker_idle,
    "churn": worker_churn,
    "first_byte": worker_first_byte,
}
SYNC_WORKERS: Final = {
    "kafka_python": worker_kafka_python,
    "confluent": worker_confluent,
    "producer": worker_producer,
}


def worker_main(spec: dict[str, Any]) -> None:
    raise_nofile()
    kind = spec["kind"]
    if kind in SYNC_WORKERS:
        SYNC_WORKERS[kind](spec)
        return
    import uvloop

    async def run() -> None:
        commands = await Commands.open()
        await ASYNC_WORKERS[kind](spec, commands)

    uvloop.run(run())


# ======================================================================================
# The proxy under test (its own process)


def proxy_main(spec: dict[str, Any]) -> None:
    import logging

    import trio

    from kafka_ws_trio import tune_gc

    raise_nofile()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    tune_gc()  # as `kafka-ws-trio serve` does
    trio.run(_serve_for_bench, spec)


async def _serve_for_bench(spec: dict[str, Any]) -> None:
    import trio

    from kafka_ws_trio import ProxyConfig, ServerConfig, serve_proxy

    server = {"max_sessions": spec["max_sessions"], "log_level": "WARNING", **spec["server"], "port": 0}
    config = ProxyConfig.single_route([spec["bootstrap"]], ROUTE, server=ServerConfig(**server), **spec["route"])
    out = trio.lowlevel.FdStream(os.dup(1))
    commands = trio.lowlevel.FdStream(os.dup(0))

    async def say(event: dict[str, Any]) -> None:
        await out.send_all((json.dumps(event) + "\n").encode())

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_proxy, config)
        await say({"event": "ready", "port": server.port, "pid": os.getpid()})
        pending = b""
        while True:
            chunk = await commands.receive_some(65536)
            if not chunk:
                break  # the orchestrator closed stdin: shut down gracefully
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                if line.strip() and json.loads(line).get("cmd") == "stats":
                    await say({"event": "stats", "t": time.time(), **attrs.asdict(server.statistics())})
        nursery.cancel_scope.cancel()


# ======================================================================================
# The orchestrator


def say(message: str) -> None:
    print(f"\033[1m==> {message}\033[0m", file=sys.stderr, flush=True)


class Child:
    """A process the bench started: JSON events out, JSON commands in, stopped by its PID."""

    running: ClassVar[list[Child]] = []

    def __init__(self, name: str, role: str, spec: dict[str, Any], logdir: Path) -> None:
        self.name = name
        self.log_path = logdir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), role, json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=REPO,
        )
        self.pid = self.proc.pid
        self._events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, name=f"read-{name}", daemon=True).start()
        Child.running.append(self)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                self._events.put(json.loads(raw))
            except ValueError:
                pass
        self._events.put(None)

    def send(self, cmd: str, **fields: Any) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps({"cmd": cmd, **fields}) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            raise BenchError(f"{self.name} is gone (exit code {self.proc.poll()}):\n{self.tail()}") from None

    def expect(self, event: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                item = self._events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise BenchError(f"{self.name}: no {event!r} within {timeout:.0f}s; its log:\n{self.tail()}") from None
            if item is None:
                code = self.proc.wait(CHILD_STOP_TIMEOUT)
                raise BenchError(f"{self.name} exited with code {code} before {event!r}; its log:\n{self.tail()}")
            if item.get("event") == event:
                return item

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join("    " + line for line in text[-lines:])

    def stop(self, timeout: float = CHILD_STOP_TIMEOUT) -> int | None:
        """Close stdin (the polite way to stop), then SIGTERM and SIGKILL by PID."""
        if self.proc.poll() is None and self.proc.stdin is not None:
            with contextlib.suppress(OSError, ValueError):
                self.proc.stdin.close()
        for sig, wait in ((None, timeout), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            if sig is not None and self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, sig)
            try:
                self.proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        self._log.close()
        if self in Child.running:
            Child.running.remove(self)
        return self.proc.poll()

    @classmethod
    def stop_all(cls) -> None:
        for child in reversed(list(cls.running)):
            child.stop(timeout=5.0)


class Proxy:
    """The proxy process, its psutil handle, and its statistics on request."""

    def __init__(self, name: str, spec: dict[str, Any], logdir: Path) -> None:
        import psutil

        self.child = Child(name, "_proxy", spec, logdir)
        ready = self.child.expect("ready", CHILD_START_TIMEOUT)
        self.port: int = ready["port"]
        self.process = psutil.Process(self.child.pid)

    def stats(self) -> dict[str, Any]:
        self.child.send("stats")
        return self.child.expect("stats", STATS_TIMEOUT)

    def wait_sessions(self, count: int, timeout: float) -> dict[str, Any]:
        """Poll statistics until exactly ``count`` sessions are open."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if stats["sessions_open"] == count:
                return stats
            if time.monotonic() > deadline:
                raise BenchError(
                    f"the proxy has {stats['sessions_open']} sessions open, not {count}, after {timeout:.0f}s"
                )
            time.sleep(0.2)

    def polls(self, stats: dict[str, Any]) -> int:
        return int(stats["upstreams"][ROUTE]["broker_polls"])

    def stop(self) -> None:
        code = self.child.stop()
        if code not in (0, None):
            say(f"the proxy exited with code {code}; see {self.child.log_path}")


def rss_mib(process: Any) -> float:
    return float(process.memory_info().rss) / 2**20


def _busy_seconds(times: Any) -> float:
    """CPU seconds the machine spent working (guest time is already in user; steal and idle are not work)."""
    return float(sum(getattr(times, field, 0.0) for field in ("user", "nice", "system", "irq", "softirq")))


class Probe:
    """CPU of every process in a scenario and the proxy's RSS, sampled from outside with psutil."""

    def __init__(self, proxy: Proxy | None, broker_pid: int | None) -> None:
        import psutil

        self._psutil = psutil
        self._proxy = proxy.process if proxy is not None else None
        self._roles: dict[str, list[Any]] = {"broker": [], "clients": [], "bench": [psutil.Process()]}
        if broker_pid:
            with contextlib.suppress(psutil.Error):
                self._roles["broker"].append(psutil.Process(broker_pid))
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rss_start = self.rss_peak = self.rss_end = 0.0

    def add_clients(self, children: list[Child]) -> None:
        for child in children:
            with contextlib.suppress(self._psutil.Error):
                process = self._psutil.Process(child.pid)
                self._roles["clients"].append(process)
                self._sample_cpu(process)

    def _processes(self) -> Iterator[Any]:
        if self._proxy is not None:
            yield self._proxy
        for processes in self._roles.values():
            yield from processes

    def _sample_cpu(self, process: Any) -> None:
        with contextlib.suppress(self._psutil.Error):
            times = process.cpu_times()
            value = times.user + times.system
            self._first.setdefault(process.pid, value)
            self._last[process.pid] = value

    def _sample(self) -> None:
        for process in self._processes():
            self._sample_cpu(process)
        if self._proxy is not None:
            with contextlib.suppress(self._psutil.Error):
                self.rss_peak = max(self.rss_peak, rss_mib(self._proxy))

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self._sample()

    def start(self) -> None:
        self._wall0 = time.monotonic()
        self._machine0 = self._psutil.cpu_times()
        if self._proxy is not None:
            self.rss_start = self.rss_peak = rss_mib(self._proxy)
        self._sample()
        self._thread = threading.Thread(target=self._run, name="probe", daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, Any]:
        self._sample()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        wall = time.monotonic() - self._wall0
        busy = _busy_seconds(self._psutil.cpu_times()) - _busy_seconds(self._machine0)

        def used(process: Any) -> float:
            return self._last.get(process.pid, 0.0) - self._first.get(process.pid, 0.0)

        result: dict[str, Any] = {"wall_seconds": round(wall, 2)}
        ours = 0.0
        if self._proxy is not None:
            proxy_cpu = used(self._proxy)
            ours += proxy_cpu
            self.rss_end = rss_mib(self._proxy) if self._proxy.is_running() else self.rss_peak
            result.update(
                proxy_cpu_seconds=round(proxy_cpu, 2),
                proxy_cpu_pct=round(100 * proxy_cpu / wall, 1),
                proxy_rss_mib=round(self.rss_peak, 1),
                proxy_rss_mib_start=round(self.rss_start, 1),
                proxy_rss_mib_end=round(self.rss_end, 1),
            )
        for role, processes in self._roles.items():
            seconds = [used(p) for p in processes]
            ours += sum(seconds)
            result[f"{role}_cpu_pct"] = round(100 * sum(seconds) / wall, 1)
            if role == "clients":
                result["client_procs"] = len(processes)
                result["client_proc_max_cpu_pct"] = round(100 * max(seconds, default=0.0) / wall, 1)
        result["machine_cpu_pct"] = round(100 * busy / wall, 1)
        result["other_load_cpu_pct"] = round(max(0.0, 100 * (busy - ours) / wall), 1)
        return result


@attrs.define
class Bench:
    """Everything one run shares: the plan, the broker, where logs go, the results so far."""

    plan: Plan
    bootstrap: str
    broker_pid: int | None
    logdir: Path
    client_procs: int
    depth: int
    profile_dir: Path | None
    #: ServerConfig and RouteConfig fields to override (what-if runs); empty for a standard run.
    server_options: dict[str, Any] = attrs.Factory(dict)
    route_options: dict[str, Any] = attrs.Factory(dict)
    results: dict[str, Any] = attrs.Factory(dict)
    topics: dict[str, tuple[str, int]] = attrs.Factory(dict)

    # ------------------------------------------------------------------ helpers

    def proxy(self, name: str, max_sessions: int = 20_000) -> Proxy:
        """Start a fresh proxy process on the default config (plus any --server/--route overrides)."""
        spec = {
            "bootstrap": self.bootstrap,
            "max_sessions": max_sessions,
            "server": self.server_options,
            "route": self.route_options,
        }
        return Proxy(name, spec, self.logdir)

    def spec(self, proxy: Proxy, **fields: Any) -> dict[str, Any]:
        return {"host": "127.0.0.1", "port": proxy.port, **fields}

    def workers(self, name: str, specs: list[dict[str, Any]]) -> list[Child]:
        children = [Child(f"{name}-{i}", "_worker", spec, self.logdir) for i, spec in enumerate(specs)]
        return children

    @contextlib.contextmanager
    def profiled(self, proxy: Proxy, name: str, seconds: float) -> Iterator[None]:
        """With --profile, sample the proxy with py-spy while the block runs."""
        if self.profile_dir is None:
            yield
            return
        py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
        if py_spy is None:
            say("py-spy is not installed; no profile")
            yield
            return
        out = self.profile_dir / f"{name}.txt"
        proc = subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(proxy.child.pid),
                "--rate",
                "200",
                "--nonblocking",
                "--format",
                "raw",
                "--output",
                str(out),
                "--duration",
                str(max(1, math.ceil(seconds))),
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(self.logdir / f"py-spy-{name}.log", "wb"),  # noqa: SIM115
        )
        try:
            yield
        finally:
            try:
                proc.wait(seconds + 30)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)

    def create_topic(self, key: str, count: int, value_bytes: int) -> tuple[str, int]:
        """A fresh topic holding ``count`` records of ``value_bytes`` each (cached per run)."""
        if key in self.topics:
            return self.topics[key]
        from confluent_kafka import Producer

        from kafka_ws_trio.testing import KafkaBroker, create_topic, unique_topic_name

        broker = KafkaBroker(version="?", bootstrap=self.bootstrap)
        topic = create_topic(broker, unique_topic_name(f"bench-{key}"))
        if count:
            started = time.monotonic()
            producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 20, "acks": "all"})
            value = os.urandom(value_bytes)
            for _ in range(count):
                while True:
                    try:
                        producer.produce(topic, value=value, partition=PARTITION)
                        break
                    except BufferError:
                        producer.poll(0.05)
                producer.poll(0)
            left = producer.flush(LOAD_TIMEOUT)
            if left:
                raise BenchError(f"{left} records for {topic} were not delivered within {LOAD_TIMEOUT:.0f}s")
            say(f"loaded {count:,} records of {value_bytes} B into {topic} in {time.monotonic() - started:.1f}s")
        self.topics[key] = (topic, count)
        return topic, count

    # ---------------------------------------------------------------- scenarios

    def run_first_byte(self) -> None:
        topic, _ = self.create_topic("small", SMALL_TOPIC_RECORDS, SMALL_RECORD_BYTES)
        proxy = self.proxy("proxy-first-byte")
        try:
            (worker,) = self.workers(
                "first-byte",
                [self.spec(proxy, kind="first_byte", topic=topic, warmup=20, samples=self.plan.first_byte_samples)],
            )
            worker.expect("ready", CHILD_START_TIMEOUT)
            probe = Probe(proxy, self.broker_pid)
            probe.add_clients([worker])
            probe.start()
            with self.profiled(proxy, "first_byte", 5):
                worker.send("go")
                result = worker.expect("result", READ_TIMEOUT)
            resources = probe.stop()
            worker.stop()
        finally:
            proxy.stop()
        latencies = sorted(result["latencies_ms"])
        self.results["first_byte"] = {
            "samples": len(latencies),
            "p50_ms": round(percentile(latencies, 0.50), 2),
            "p99_ms": round(percentile(latencies, 0.99), 2),
            "max_ms": round(latencies[-1], 2),
            "what": "TCP connect, WebSocket handshake, ListOffset(latest) answered; one session after another",
            **resources,
        }

    def _read_once(self, kind: str, proxy: Proxy, topic: str, count: int) -> tuple[dict[str, Any], dict[str, Any]]:
        from kafka_ws_trio._config import DEFAULT_FETCH_MAX_BYTES, DEFAULT_FETCH_MAX_WAIT
        from kafka_ws_trio._kafka import MAX_POLL_RECORDS

        spec: dict[str, Any] = {"kind": kind, "topic": topic, "start": 0, "end": count}
        if kind == "fetch":
            spec = self.spec(proxy, depth=self.depth, **spec)
        else:
            # The direct readers fetch the way the proxy's own consumer does.
            route = self.route_options
            spec.update(
                bootstrap=self.bootstrap,
                fetch_max_bytes=route.get("fetch_max_bytes", DEFAULT_FETCH_MAX_BYTES),
                max_poll_records=MAX_POLL_RECORDS,
                fetch_max_wait_ms=int(route.get("fetch_max_wait", DEFAULT_FETCH_MAX_WAIT) * 1000),
            )
        (worker,) = self.workers(f"read-{kind}", [spec])
        try:
            worker.expect("ready", CHILD_START_TIMEOUT)
            probe = Probe(proxy if kind == "fetch" else None, self.broker_pid)
            probe.add_clients([worker])
            probe.start()
            worker.send("go")
            result = worker.expect("result", READ_TIMEOUT)
            resources = probe.stop()
        finally:
            worker.stop()
        if result["records"] < count:
            raise BenchError(f"{kind} read {result['records']} of {count} records")
        return result, resources

    def run_fetch(self, record_bytes: int, key: str) -> None:
        topic, count = self.create_topic(f"fetch-{record_bytes}b", self.plan.fetch_records, record_bytes)
        proxy = self.proxy(f"proxy-fetch-{record_bytes}b")
        rates: dict[str, list[float]] = {"kafka_python": [], "confluent": [], "fetch": []}
        proxy_runs: list[tuple[dict[str, Any], dict[str, Any]]] = []
        try:
            # Untimed: the broker's JIT warms up on its fetch path (the first timed runs were slower).
            self._read_once("kafka_python", proxy, topic, count)
            for repeat in range(self.plan.fetch_repeats):
                for kind in ("kafka_python", "confluent", "fetch"):
                    if kind == "fetch" and repeat == 0:
                        with self.profiled(proxy, f"fetch_{record_bytes}b", 3):
                            result, resources = self._read_once(kind, proxy, topic, count)
                    else:
                        result, resources = self._read_once(kind, proxy, topic, count)
                    rates[kind].append(count / result["seconds"])
                    if kind == "fetch":
                        proxy_runs.append((result, resources))
                say(
                    f"fetch {record_bytes} B, run {repeat + 1}: proxy {rates['fetch'][-1]:,.0f}/s, "
                    f"kafka-python {rates['kafka_python'][-1]:,.0f}/s, confluent-kafka {rates['confluent'][-1]:,.0f}/s"
                )
        finally:
            proxy.stop()
        median = {kind: sorted(values)[len(values) // 2] for kind, values in rates.items()}
        # The proxy run whose rate is the median, for its resources and details.
        result, resources = min(proxy_runs, key=lambda run: abs(count / run[0]["seconds"] - median["fetch"]))
        self.results[key] = {
            "records": count,
            "record_bytes": record_bytes,
            "repeats": self.plan.fetch_repeats,
            "ratio_vs_kafka_python": round(median["fetch"] / median["kafka_python"], 3),
            "proxy_records_per_s": round(median["fetch"]),
            "kafka_python_records_per_s": round(median["kafka_python"]),
            "confluent_kafka_records_per_s": round(median["confluent"]),
            "proxy_mb_per_s": round(median["fetch"] * record_bytes / 1e6, 1),
            "runs_records_per_s": {kind: [round(v) for v in values] for kind, values in rates.items()},
            "pipeline_depth": self.depth,
            "frames": result["frames"],
            "duplicates": result["duplicates"],
            "gap_fills": result["gap_fills"],
            "client_cpu_pct": round(100 * result["cpu_seconds"] / result["seconds"], 1),
            **resources,
        }

    def run_fanout(self) -> None:
        topic, _ = self.create_topic("fanout", 0, FANOUT_RECORD_BYTES)
        runs: dict[str, Any] = {}
        for sessions in self.plan.fanout_sessions:
            runs[str(sessions)] = self._fanout_once(topic, sessions)
            run = runs[str(sessions)]
            say(
                f"fan-out {sessions}: p50 {_late(run, 'p50_ms')} ms, p99 {_late(run, 'p99_ms')} ms, "
                f"{run['broker_fetch_requests_per_s']} broker polls/s, proxy CPU {run['proxy_cpu_pct']}%"
            )
        largest = runs[str(max(self.plan.fanout_sessions))]
        smallest = runs[str(min(self.plan.fanout_sessions))]
        flat = largest["broker_fetch_requests_per_s"] <= FLAT_FACTOR * max(smallest["broker_fetch_requests_per_s"], 1.0)
        self.results["fanout"] = {
            "sessions": largest["sessions"],
            "p50_ms": largest["p50_ms"],
            "p99_ms": largest["p99_ms"],
            "broker_fetch_requests_per_s": largest["broker_fetch_requests_per_s"],
            "proxy_rss_mib": largest["proxy_rss_mib"],
            "broker_fetch_rate_flat": flat,
            "produce_rate": FANOUT_RATE,
            "record_bytes": FANOUT_RECORD_BYTES,
            "by_sessions": runs,
        }

    def _fanout_once(self, topic: str, sessions: int) -> dict[str, Any]:
        procs = min(self.client_procs, math.ceil(sessions / FANOUT_SESSIONS_PER_PROC))
        shares = [sessions // procs + (1 if i < sessions % procs else 0) for i in range(procs)]
        proxy = self.proxy(f"proxy-fanout-{sessions}")
        children: list[Child] = []
        try:
            (producer,) = self.workers(
                f"producer-{sessions}",
                [
                    {
                        "kind": "producer",
                        "bootstrap": self.bootstrap,
                        "topic": topic,
                        "rate": FANOUT_RATE,
                        "value_bytes": FANOUT_RECORD_BYTES,
                    }
                ],
            )
            children.append(producer)
            producer.expect("ready", CHILD_START_TIMEOUT)
            producer.send("go")
            every = max(1, sessions // LATENCY_SESSIONS)
            firsts = [sum(shares[:i]) for i in range(len(shares))]
            clients = self.workers(
                f"fanout-{sessions}",
                [
                    self.spec(proxy, kind="fanout", topic=topic, sessions=n, sample_every=every, first_index=first)
                    for n, first in zip(shares, firsts, strict=True)
                ],
            )
            children.extend(clients)
            opened = failed = 0
            for client in clients:
                ready = client.expect("ready", CHILD_START_TIMEOUT + sessions / 10)
                opened += ready["opened"]
                failed += ready["failed"]
                if ready["failed"]:
                    say(f"{client.name}: {ready['failed']} sessions failed to open: {ready['first_error']}")
            if opened < sessions:
                raise BenchError(f"only {opened} of {sessions} fan-out sessions opened")
            time.sleep(self.plan.fanout_warmup)
            t0 = math.ceil(time.time())
            t1 = t0 + round(self.plan.fanout_window)
            time.sleep(max(0.0, t0 - time.time()))
            probe = Probe(proxy, self.broker_pid)
            probe.add_clients([*clients, producer])
            before = proxy.stats()
            probe.start()
            for client in clients:
                client.send("go")
            with self.profiled(proxy, f"fanout_{sessions}", t1 - time.time()):
                time.sleep(max(0.0, t1 - time.time()))
            after = proxy.stats()
            resources = probe.stop()
            producer.send("stop", t0=t0, t1=t1)
            produced = producer.expect("result", CHILD_START_TIMEOUT)
            wait = max(15.0, self.plan.fanout_window)  # for records of the window still on their way
            for client in clients:
                client.send("finish", end=produced["last_offset"] + 1, t0=t0, t1=t1, wait=wait)
            results = [client.expect("result", wait + CHILD_START_TIMEOUT) for client in clients]
        finally:
            for child in children:
                child.stop()
            proxy.stop()
        hist: collections.Counter[int] = collections.Counter()
        for result in results:
            hist.update({bucket: count for bucket, count in result["hist"]})
        received = sum(hist.values())
        sampled = sum(r["sampled"] for r in results)
        expected = produced["in_window"] * sampled
        missing = max(0, expected - received)
        seconds = after["t"] - before["t"]
        p50 = histogram_percentile(hist, missing, 0.50)
        p99 = histogram_percentile(hist, missing, 0.99)
        client_cpu = [100 * r["cpu_seconds"] / r["wall_seconds"] for r in results]
        return {
            "sessions": sessions,
            # None: the percentile lies among deliveries that never came (within the wait).
            "p50_ms": p50,
            "p99_ms": p99,
            "max_ms": round(max(hist) * BUCKET_MS, 1) if hist else None,
            "broker_fetch_requests_per_s": round((proxy.polls(after) - proxy.polls(before)) / seconds, 1),
            "window_seconds": t1 - t0,
            "wait_seconds": wait,
            "records_in_window": produced["in_window"],
            "latency_sessions": sampled,
            "deliveries": received,
            "deliveries_missing": missing,
            "sessions_lagging_at_end": sum(r["lagging"] for r in results),
            "errors": sum(r["errors"] for r in results),
            "produce_rate_achieved": round(produced["rate"], 1),
            "client_proc_cpu_pct": [round(c, 1) for c in client_cpu],
            "frames_per_s": round(sum(r["frames"] for r in results) / max(r["wall_seconds"] for r in results), 1),
            **resources,
        }

    def run_idle(self) -> None:
        sessions = self.plan.idle_sessions
        procs = math.ceil(sessions / IDLE_SESSIONS_PER_PROC)
        shares = [sessions // procs + (1 if i < sessions % procs else 0) for i in range(procs)]
        proxy = self.proxy("proxy-idle", max_sessions=sessions + 1000)
        try:
            self._warm(proxy, 10)
            time.sleep(1.0)
            clients = self.workers("idle", [self.spec(proxy, kind="idle", sessions=n) for n in shares])
            probe = Probe(proxy, self.broker_pid)
            probe.add_clients(clients)
            probe.start()
            for client in clients:
                client.send("go")
            readies = [client.expect("ready", CHILD_START_TIMEOUT + sessions / 20) for client in clients]
            opened = sum(r["opened"] for r in readies)
            if opened < sessions:
                errors = "; ".join(r["first_error"] for r in readies if r["first_error"])
                raise BenchError(f"only {opened} of {sessions} idle sessions opened: {errors}")
            proxy.wait_sessions(sessions, 60.0)
            open_seconds = max(r["finished"] for r in readies) - min(r["started"] for r in readies)
            time.sleep(2.0)
            rss_open = rss_mib(proxy.process)
            resources = probe.stop()
            closing = time.monotonic()
            for client in clients:
                client.send("close")
            for client in clients:
                client.expect("result", 120.0)
            proxy.wait_sessions(0, 60.0)
            close_seconds = time.monotonic() - closing
            for client in clients:
                client.stop()
        finally:
            proxy.stop()
        growth = rss_open - resources["proxy_rss_mib_start"]
        self.results["idle_sessions"] = {
            "sessions": sessions,
            "rss_per_session_kib": round(growth * 1024 / sessions, 1),
            "open_seconds": round(open_seconds, 2),
            "opens_per_s": round(sessions / open_seconds, 1),
            "close_seconds": round(close_seconds, 2),
            "proxy_rss_mib_before": resources["proxy_rss_mib_start"],
            "proxy_rss_mib_open": round(rss_open, 1),
            **resources,
        }

    def _warm(self, proxy: Proxy, sessions: int) -> None:
        """A few sessions through the proxy, so lazy imports and first allocations are behind us."""
        topic, _ = self.create_topic("small", SMALL_TOPIC_RECORDS, SMALL_RECORD_BYTES)
        (worker,) = self.workers(
            "warm", [self.spec(proxy, kind="churn", topic=topic, sessions=sessions, concurrency=1)]
        )
        try:
            worker.expect("ready", CHILD_START_TIMEOUT)
            worker.send("go")
            worker.expect("result", READ_TIMEOUT)
        finally:
            worker.stop()
        proxy.wait_sessions(0, 30.0)

    def _churn_batch(
        self, proxy: Proxy, topic: str, sessions: int, name: str
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        procs = self.client_procs
        shares = [sessions // procs + (1 if i < sessions % procs else 0) for i in range(procs)]
        clients = self.workers(
            name,
            [self.spec(proxy, kind="churn", topic=topic, sessions=n, concurrency=CHURN_CONCURRENCY) for n in shares],
        )
        try:
            for client in clients:
                client.expect("ready", CHILD_START_TIMEOUT)
            probe = Probe(proxy, self.broker_pid)
            probe.add_clients(clients)
            probe.start()
            for client in clients:
                client.send("go")
            results = [client.expect("result", READ_TIMEOUT + sessions / 20) for client in clients]
            resources = probe.stop()
        finally:
            for client in clients:
                client.stop()
        failed = sum(r["failed"] for r in results)
        if failed:
            errors = "; ".join(r["first_error"] for r in results if r["first_error"])
            say(f"{name}: {failed} of {sessions} sessions failed: {errors}")
        return results, resources

    def _settled(self, proxy: Proxy) -> dict[str, float]:
        proxy.wait_sessions(0, 60.0)
        time.sleep(SETTLE_SECONDS)
        process = proxy.process
        return {"threads": process.num_threads(), "fds": process.num_fds(), "rss_mib": rss_mib(process)}

    def run_churn(self) -> None:
        topic, _ = self.create_topic("small", SMALL_TOPIC_RECORDS, SMALL_RECORD_BYTES)
        sessions = self.plan.churn_sessions
        proxy = self.proxy("proxy-churn")
        try:
            self._churn_batch(proxy, topic, self.plan.churn_warmup_sessions, "churn-warm")
            before = self._settled(proxy)
            with self.profiled(proxy, "churn", 10):
                results, resources = self._churn_batch(proxy, topic, sessions, "churn")
            after = self._settled(proxy)
            stats = proxy.stats()
        finally:
            proxy.stop()
        seconds = max(r["seconds"] for r in results)
        self.results["churn"] = {
            "sessions": sessions,
            "per_s": round(sessions / seconds, 1),
            "failed": sum(r["failed"] for r in results),
            "leaked_threads": max(0, int(after["threads"] - before["threads"])),
            "leaked_fds": max(0, int(after["fds"] - before["fds"])),
            "rss_growth_pct": round(100 * (after["rss_mib"] - before["rss_mib"]) / before["rss_mib"], 2),
            "before": before,
            "after": after,
            "concurrency": CHURN_CONCURRENCY * self.client_procs,
            "proxy_sessions_total": stats["sessions_total"],
            "proxy_errors_total": stats["errors_total"],
            **resources,
        }


# ======================================================================================
# Targets and the table


@attrs.frozen
class Target:
    figure: str
    target: str
    check: Callable[[dict[str, Any]], bool]


def _fanout_p99_ok(results: dict[str, Any]) -> bool:
    fanout = results["fanout"]
    return bool(fanout["sessions"] >= 500 and fanout["p99_ms"] is not None and fanout["p99_ms"] <= 250)


TARGETS: Final = (
    Target(
        "fetch_throughput.ratio_vs_kafka_python",
        ">= 0.8",
        lambda r: r["fetch_throughput"]["ratio_vs_kafka_python"] >= 0.8,
    ),
    Target("fanout.p99_ms", "<= 250 at >= 500 sessions", _fanout_p99_ok),
    Target(
        "fanout.broker_fetch_rate_flat",
        f"rate at most sessions <= {FLAT_FACTOR}x rate at fewest",
        lambda r: bool(r["fanout"]["broker_fetch_rate_flat"]),
    ),
    Target("idle_sessions.rss_per_session_kib", "<= 32", lambda r: r["idle_sessions"]["rss_per_session_kib"] <= 32),
    Target("churn.leaked_threads", "== 0", lambda r: r["churn"]["leaked_threads"] == 0),
    Target("churn.leaked_fds", "== 0", lambda r: r["churn"]["leaked_fds"] == 0),
    Target("churn.rss_growth_pct", "<= 5", lambda r: r["churn"]["rss_growth_pct"] <= 5),
    Target("first_byte.p50_ms", "<= 10", lambda r: r["first_byte"]["p50_ms"] <= 10),
)


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    verdicts = []
    for target in TARGETS:
        section, _, field = target.figure.partition(".")
        if section not in results:
            continue
        verdicts.append(
            {
                "figure": target.figure,
                "value": results[section].get(field),
                "target": target.target,
                "pass": target.check(results),
            }
        )
    return verdicts


def _n(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _late(run: dict[str, Any], key: str) -> str:
    """A fan-out percentile in ms, or "> WAIT" when it lies among deliveries still missing after the wait."""
    value = run[key]
    return _n(value, 1) if value is not None else f"> {run['wait_seconds'] * 1000:,.0f}"


def table_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(scenario, figure, measured, target and verdict, what it is up against)."""
    verdict = {v["figure"]: ("PASS" if v["pass"] else "FAIL") for v in results.get("targets", [])}

    def judged(figure: str, target: str) -> str:
        return f"{target} {verdict[figure]}" if figure in verdict else target

    def load(section: dict[str, Any]) -> str:
        bound = " CLIENT-BOUND" if section["client_proc_max_cpu_pct"] > CLIENT_BOUND_PCT else ""
        return (
            f"proxy CPU {section['proxy_cpu_pct']:.0f}% of a core, RSS {section['proxy_rss_mib']:.0f} MiB; "
            f"broker {section['broker_cpu_pct']:.0f}%, clients {section['clients_cpu_pct']:.0f}% "
            f"(max {section['client_proc_max_cpu_pct']:.0f}%/proc{bound}), "
            f"other load {section['other_load_cpu_pct']:.0f}%"
        )

    rows: list[tuple[str, str, str, str, str]] = []
    for key, label in (("fetch_throughput", "fetch 1 KiB"), ("fetch_throughput_100b", "fetch 100 B")):
        if key not in results:
            continue
        f = results[key]
        ceiling = f"confluent-kafka direct {_n(f['confluent_kafka_records_per_s'])}/s"
        rows += [
            (label, "proxy records/s", _n(f["proxy_records_per_s"]), "", ceiling),
            (
                "",
                "proxy MB/s (values)",
                _n(f["proxy_mb_per_s"], 1),
                "",
                f"kafka-python direct {_n(f['kafka_python_records_per_s'])}/s",
            ),
            (
                "",
                "ratio vs kafka-python",
                _n(f["ratio_vs_kafka_python"], 2),
                judged("fetch_throughput.ratio_vs_kafka_python", ">= 0.8") if key == "fetch_throughput" else "",
                load(f) + f"; pipelined client {f['client_cpu_pct']:.0f}%",
            ),
        ]
    if "fanout" in results:
        fan = results["fanout"]
        for sessions, run in fan["by_sessions"].items():
            top = int(sessions) == fan["sessions"]
            rows += [
                (
                    f"fanout {sessions}",
                    "p50 / p99 ms",
                    f"{_late(run, 'p50_ms')} / {_late(run, 'p99_ms')}",
                    judged("fanout.p99_ms", "p99 <= 250") if top else "",
                    load(run),
                ),
                (
                    "",
                    "broker polls/s",
                    _n(run["broker_fetch_requests_per_s"], 1),
                    judged("fanout.broker_fetch_rate_flat", "flat") if top else "",
                    f"{_n(run['deliveries'])} deliveries to {run['latency_sessions']} sampled sessions, "
                    f"{_n(run['deliveries_missing'])} missing, "
                    f"{_n(run['frames_per_s'])} frames/s to clients",
                ),
            ]
    if "idle_sessions" in results:
        idle = results["idle_sessions"]
        rows += [
            (
                f"idle {idle['sessions']:,}",
                "RSS KiB/session",
                _n(idle["rss_per_session_kib"], 1),
                judged("idle_sessions.rss_per_session_kib", "<= 32"),
                f"RSS {idle['proxy_rss_mib_before']:.0f} -> {idle['proxy_rss_mib_open']:.0f} MiB",
            ),
            (
                "",
                "open seconds",
                _n(idle["open_seconds"], 1),
                "",
                f"{_n(idle['opens_per_s'])} handshakes/s; " + load(idle),
            ),
        ]
    if "churn" in results:
        churn = results["churn"]
        before, after = churn["before"], churn["after"]
        rows += [
            (f"churn {churn['sessions']:,}", "sessions/s", _n(churn["per_s"]), "", load(churn)),
            (
                "",
                "leaked threads",
                str(churn["leaked_threads"]),
                judged("churn.leaked_threads", "== 0"),
                f"{before['threads']} -> {after['threads']}",
            ),
            (
                "",
                "leaked fds",
                str(churn["leaked_fds"]),
                judged("churn.leaked_fds", "== 0"),
                f"{before['fds']} -> {after['fds']}",
            ),
            (
                "",
                "RSS growth %",
                _n(churn["rss_growth_pct"], 2),
                judged("churn.rss_growth_pct", "<= 5"),
                f"{before['rss_mib']:.1f} -> {after['rss_mib']:.1f} MiB",
            ),
        ]
    if "first_byte" in results:
        first = results["first_byte"]
        rows += [
            (
                "first byte",
                "p50 / p99 ms",
                f"{_n(first['p50_ms'], 2)} / {_n(first['p99_ms'], 2)}",
                judged("first_byte.p50_ms", "p50 <= 10"),
                load(first),
            )
        ]
    rows.append(("produce", "-", "n/a", "", "produce does not exist yet"))
    return rows


def print_table(results: dict[str, Any]) -> None:
    meta = results["meta"]
    changes = ", ".join(line[3:] for line in meta["package_changes"]) or "none"
    print(
        f"{meta['plan']['name']} run of {meta['commit']} (package sources {meta['package_sha256']}, "
        f"uncommitted package changes: {changes}); {meta['cpus']} CPUs, Kafka {meta['kafka_version']}, "
        f"Python {meta['python']}"
    )
    rows = table_rows(results)
    header = ("scenario", "figure", "measured", "target", "up against")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = [
        " | ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)) + " | " + row[4]
        for row in [header, *rows]
    ]
    lines.insert(1, "-+-".join("-" * w for w in widths) + "-+-" + "-" * 10)
    print("\n".join(lines))
    failed = [v["figure"] for v in results.get("targets", []) if not v["pass"]]
    passed = len(results.get("targets", [])) - len(failed)
    print(f"\ntargets: {passed} pass, {len(failed)} fail" + (f" ({', '.join(failed)})" if failed else ""))


# ======================================================================================
# Broker and main


def broker_up() -> dict[str, str]:
    say(f"starting Kafka instance {BROKER_NAME!r} on ports {BROKER_PORT_BASE}..{BROKER_PORT_BASE + 4}")
    done = subprocess.run(
        [str(KAFKA_SCRIPT), "up", "--name", BROKER_NAME, "--port-base", str(BROKER_PORT_BASE)],
        stdout=subprocess.PIPE,
        text=True,
        timeout=BROKER_UP_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError("the broker did not start (see the messages above)")
    env = {}
    for line in done.stdout.splitlines():
        if line.startswith("export "):
            name, _, value = line[len("export ") :].partition("=")
            env[name] = shlex.split(value)[0] if value else ""
    return env


def broker_pid() -> int | None:
    done = subprocess.run([str(KAFKA_SCRIPT), "status"], capture_output=True, text=True, timeout=60, check=False)
    match = re.search(rf"^{BROKER_NAME}: .*\bpid (\d+)", done.stdout, re.MULTILINE)
    return int(match.group(1)) if match else None


def broker_down() -> None:
    say(f"stopping Kafka instance {BROKER_NAME!r}")
    with contextlib.suppress(subprocess.TimeoutExpired):
        subprocess.run([str(KAFKA_SCRIPT), "down", "--name", BROKER_NAME], timeout=BROKER_DOWN_TIMEOUT, check=False)


def _git_commit() -> str:
    done = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or "unknown"


def _package_state() -> dict[str, Any]:
    """Which code was measured: uncommitted changes under kafka_ws_trio/, and a digest of its sources."""
    import hashlib

    done = subprocess.run(
        ["git", "status", "--porcelain", "--", "kafka_ws_trio"], cwd=REPO, capture_output=True, text=True, check=False
    )
    digest = hashlib.sha256()
    for path in sorted((REPO / "kafka_ws_trio").rglob("*.py")):
        digest.update(path.relative_to(REPO).as_posix().encode() + b"\0" + path.read_bytes())
    return {"package_changes": done.stdout.splitlines(), "package_sha256": digest.hexdigest()[:16]}


def run_meta(plan: Plan, args: argparse.Namespace, kafka_version: str) -> dict[str, Any]:
    import psutil
    from google.protobuf.internal import api_implementation

    return {
        "plan": attrs.asdict(plan),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "commit": _git_commit(),
        **_package_state(),
        "python": platform.python_version(),
        "protobuf_backend": api_implementation.Type(),
        "kafka_version": kafka_version,
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "nofile_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "client": CLIENT_DESCRIPTION,
        "client_procs": args.client_procs,
        "pipeline_depth": args.pipeline,
        # Anything here means a what-if run, not the proxy's defaults.
        "server_overrides": args.server_options,
        "route_overrides": args.route_options,
    }


def _options(pairs: list[str]) -> dict[str, Any]:
    """KEY=VALUE strings as a dict; VALUE is read as JSON when it parses (numbers), else kept as text."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"expected KEY=VALUE, got {pair!r}")
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    return options


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Measure kafka-ws-trio: fetch throughput, fan-out latency, idle sessions, churn, first byte.",
    )
    parser.add_argument("--quick", action="store_true", help="a reduced run of every scenario (under 5 minutes)")
    parser.add_argument("--json", metavar="FILE", type=Path, help="write every figure to FILE")
    parser.add_argument("--only", metavar="LIST", help=f"comma-separated scenarios to run, of: {', '.join(SCENARIOS)}")
    parser.add_argument("--bootstrap", metavar="HOST:PORT", help="use this running broker instead of starting one")
    parser.add_argument("--client-procs", type=int, default=4, metavar="N", help="load-client processes (default 4)")
    parser.add_argument(
        "--pipeline",
        type=int,
        default=4,
        metavar="K",
        help="fetches in flight when reading through the proxy (default 4)",
    )
    parser.add_argument(
        "--server",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="what-if: override a [server] setting of the proxy, e.g. workers=1 (repeatable)",
    )
    parser.add_argument(
        "--route",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="what-if: override a [[routes]] setting of the proxy, e.g. fetch_max_wait=0.05 (repeatable)",
    )
    parser.add_argument(
        "--profile", metavar="DIR", type=Path, help="record py-spy profiles of the proxy (collapsed stacks) into DIR"
    )
    args = parser.parse_args(argv)
    try:
        args.server_options = _options(args.server)
        args.route_options = _options(args.route)
    except ValueError as exc:
        parser.error(str(exc))
    args.scenarios = SCENARIOS if not args.only else tuple(s.strip() for s in args.only.split(","))
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    return args


def _terminate(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    raise_nofile()
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    plan = QUICK if args.quick else FULL
    logdir = Path(tempfile.mkdtemp(prefix="kwt-bench-"))
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    own_broker = args.bootstrap is None
    status = 1
    results: dict[str, Any] = {}
    try:
        env = broker_up() if own_broker else {"KAFKA_BOOTSTRAP": args.bootstrap}
        bench = Bench(
            plan=plan,
            bootstrap=env["KAFKA_BOOTSTRAP"],
            broker_pid=broker_pid() if env["KAFKA_BOOTSTRAP"] == f"127.0.0.1:{BROKER_PORT_BASE}" else None,
            logdir=logdir,
            client_procs=args.client_procs,
            depth=args.pipeline,
            profile_dir=args.profile,
            server_options=args.server_options,
            route_options=args.route_options,
            results=results,
        )
        results["meta"] = run_meta(plan, args, env.get("KAFKA_VERSION", "unknown"))
        say(f"{plan.name} run; logs in {logdir}")
        steps: dict[str, Callable[[], None]] = {
            "first_byte": bench.run_first_byte,
            "fetch": lambda: (bench.run_fetch(1024, "fetch_throughput"), bench.run_fetch(100, "fetch_throughput_100b")),
            "fanout": bench.run_fanout,
            "idle": bench.run_idle,
            "churn": bench.run_churn,
        }
        for name in args.scenarios:
            say(f"scenario: {name}")
            steps[name]()
        results["produce"] = None
        results["produce_note"] = "produce does not exist yet: the proxy only reads (ListOffset, Fetch)"
        results["targets"] = evaluate(results)
        results["meta"]["seconds"] = round(time.monotonic() - started, 1)
        print_table(results)
        status = 0
    except BenchError as exc:
        say(f"bench failed: {exc}")
    except KeyboardInterrupt:
        say("interrupted; stopping everything the bench started")
        status = 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        Child.stop_all()
        if own_broker:
            broker_down()
        if args.json is not None and results:
            args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
            say(f"wrote {args.json}")
    say(f"done in {time.monotonic() - started:.0f}s")
    return status


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "_proxy":
        with contextlib.suppress(KeyboardInterrupt):
            proxy_main(json.loads(sys.argv[2]))
    elif len(sys.argv) > 2 and sys.argv[1] == "_worker":
        with contextlib.suppress(KeyboardInterrupt):
            worker_main(json.loads(sys.argv[2]))
    else:
        sys.exit(main(sys.argv[1:]))
