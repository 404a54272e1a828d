"""Helpers for the tests that run a real proxy: start it, speak raw PubSub frames to it
through two independent WebSocket libraries, and send it raw HTTP.

Plain functions and classes, imported by the test modules; the fixtures built on them
live in ``conftest.py``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, Final, Protocol

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from kafka_ws_trio._config import ProxyConfig
from kafka_ws_trio._pb import pubsub_pb2 as pb
from kafka_ws_trio._proto import encode_fetch_request, encode_list_offset_request, encode_ping_request
from kafka_ws_trio._server import BackendFactory, ProxyServer, serve_proxy

#: Seconds any single wait for the proxy may take before the test fails.
WAIT: Final = 10.0
#: What a failing Kafka call may take beyond its route's request_timeout: the proxy's own
#: probe of the brokers that names the cause (a TCP connect and a TLS handshake on loopback,
#: a second at most), plus slack for a busy machine. What the bound catches, kafka-python
#: left to its own timeouts, takes 30 s and more.
DIAGNOSIS_MARGIN: Final = 4.0
#: The WebSocket libraries the protocol-level tests drive the proxy with.
WS_LIBRARIES: Final = ("trio-websocket", "websockets")

_IDLE_TRIO_WORKER: Final = re.compile(r"Trio thread \d+")

#: Which of the test runs that may run at once this one is: tox.ini gives each environment its
#: own (``./scripts/test`` runs them in parallel); 0 for a run outside tox.
TEST_SLOT: Final = int(os.environ.get("KAFKA_WS_TRIO_TEST_SLOT", "0"))
#: Ports between one slot's block and the next slot's, for a test's own broker or demo.
SLOT_PORT_STRIDE: Final = 10


def own_port_base(base: int) -> int:
    """The first port of a block a test reserves for its own broker, moved for this run's slot.

    The blocks are 100 apart (25292, 25392, ...) and a broker takes 5 ports, so the
    slots 0..9 of one block never meet another block.
    """
    return base + SLOT_PORT_STRIDE * TEST_SLOT


def own_broker_name(name: str) -> str:
    """The instance name of a test's own broker, told apart per slot (the brokers' home is shared)."""
    return f"{name}-{TEST_SLOT}" if TEST_SLOT else name


async def stop_process(process: trio.Process, grace: float, *, group: bool = False) -> None:
    """End a child this test started: SIGTERM, up to ``grace`` seconds to exit, then SIGKILL
    (to its whole process group when ``group``, for a child started in a session of its own).
    Shielded, so it runs to the end inside a cancelled or failing test."""
    with trio.CancelScope(shield=True):
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            with trio.move_on_after(grace):
                await process.wait()
        if process.returncode is None:
            if group:
                os.killpg(process.pid, signal.SIGKILL)
            else:
                process.kill()
            await process.wait()


@asynccontextmanager
async def running_proxy(
    config: ProxyConfig, *, backend_factory: BackendFactory | None = None
) -> AsyncIterator[ProxyServer]:
    """Serve ``config`` for the block; leaving it shuts the proxy down gracefully."""
    async with trio.open_nursery() as nursery:
        server: ProxyServer = await nursery.start(partial(serve_proxy, config, backend_factory=backend_factory))
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()


async def stoppable_proxy(
    config: ProxyConfig, stop: trio.CancelScope, *, task_status: trio.TaskStatus[ProxyServer] = trio.TASK_STATUS_IGNORED
) -> None:
    """``serve_proxy`` until ``stop`` is cancelled: a shutdown the test's own clients (outside it) live through.

    Use as ``server = await nursery.start(stoppable_proxy, config, stop)``, then ``stop.cancel()``.
    """
    with stop:
        await serve_proxy(config, task_status=task_status)


async def settled(condition: Callable[[], bool], seconds: float = WAIT) -> bool:
    """Wait until ``condition()`` holds, for a state nothing signals (a statistics counter,
    the thread list); False if it still does not after ``seconds``.

    Use as ``assert await settled(lambda: ...), "what did not happen"``.
    """
    with trio.move_on_after(seconds):
        # Polling on purpose: no event tells when a counter or the thread list changes.
        while not condition():  # noqa: ASYNC110
            await trio.sleep(0.01)
        return True
    return False


async def listening_url(process: trio.Process, seconds: float) -> str:
    """The URL of a ``kafka-ws-trio serve`` child, from the 'listening on' line on its stdout."""
    assert process.stdout is not None
    seen = b""
    with trio.fail_after(seconds):
        while b"listening on ws://" not in seen or not seen.endswith(b"\n"):
            chunk = await process.stdout.receive_some()
            assert chunk, f"the server exited before listening: {seen!r}"
            seen += chunk
    return seen.split(b"listening on ", 1)[1].split()[0].decode()


async def serves(url: str) -> bool:
    """Whether a new session on ``url`` opens and answers a ping (False: the upgrade was refused, e.g. 404)."""
    from trio_websocket import ConnectionRejected

    try:
        async with open_websocket_url(url) as ws:
            await ws.send_message(encode_ping_request(1, b"p"))
            await ws.get_message()
            return True
    except ConnectionRejected:
        return False


async def watch_close(
    url: str, outcome: list[tuple[int, str]], *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Open a session on ``url`` (started once it has answered a ping), then add the code and reason it is
    closed with to ``outcome``; within 60 s. Use as ``await nursery.start(watch_close, url, outcome)``."""
    async with open_websocket_url(url) as ws:
        await ws.send_message(encode_ping_request(1, b"p"))
        await ws.get_message()
        task_status.started()
        with trio.fail_after(60):
            try:
                await ws.get_message()
            except ConnectionClosed as closed:
                outcome.append((closed.reason.code, closed.reason.reason or ""))
                return
    raise AssertionError(f"the session on {url} got a message, not its close")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# ------------------------------------------------------------------ frames


#: Request frames, written by the same sans-IO codec the proxy and the client use. The
#: conformance tests that pin raw protobuf bytes write their frames by hand instead.
ping: Final = encode_ping_request
list_offset: Final = encode_list_offset_request
fetch: Final = encode_fetch_request


def varint(value: int) -> bytes:
    """Protobuf's base-128 varint; negative numbers as their 64-bit two's complement."""
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def length_delimited(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (a sub-message), written by hand."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def sequence_field(sequence: int) -> bytes:
    """``PubSubReq.sequence`` (field 1, varint), written by hand."""
    return varint(1 << 3) + varint(sequence)


def parse(frame: bytes) -> pb.PubSubResp:
    return pb.PubSubResp.FromString(frame)


def expect_error(response: pb.PubSubResp, sequence: int, code: int, message: str) -> None:
    assert response.WhichOneof("resp") == "error_resp", response
    assert (response.sequence, response.error_resp.code, response.error_resp.message) == (sequence, code, message)


def fetched(response: pb.PubSubResp, sequence: int) -> Sequence[pb.KafkaMessage]:
    """The messages of a fetch response to the request with ``sequence``."""
    assert response.WhichOneof("resp") == "kafka_fetch_resp", response
    assert response.sequence == sequence
    return response.kafka_fetch_resp.messages


def listed(response: pb.PubSubResp, sequence: int) -> int:
    """The offset of a list-offset response to the request with ``sequence``."""
    assert response.WhichOneof("resp") == "kafka_list_offset_resp", response
    assert response.sequence == sequence
    offset: int = response.kafka_list_offset_resp.offset
    return offset


def message_fields(message: pb.KafkaMessage) -> tuple[Any, ...]:
    """A fetched message as (offset, timestamp, key, value, headers); None where the field is null."""
    return (
        message.offset,
        message.timestamp,
        message.key if message.HasField("key") else None,
        message.value if message.HasField("value") else None,
        [(h.key, h.value if h.HasField("value") else None) for h in message.headers],
    )


# ------------------------------------------------------ WebSocket clients


class FrameClient(Protocol):
    """One WebSocket connection to the proxy, whichever library holds it."""

    async def send(self, frame: bytes | str) -> None: ...

    async def receive(self) -> bytes: ...


class TrioFrames:
    """A trio-websocket connection (the library the proxy itself is built on)."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws

    async def send(self, frame: bytes | str) -> None:
        await self.ws.send_message(frame)

    async def receive(self) -> bytes:
        with trio.fail_after(WAIT):
            frame = await self.ws.get_message()
        assert isinstance(frame, bytes), f"the proxy sent a text frame: {frame!r}"
        return frame


class WebsocketsFrames:
    """A connection made by the ``websockets`` library's blocking client, run in threads.

    Independent of trio-websocket and wsproto, so it shows that the proxy speaks
    RFC 6455 and not only to its own library.
    """

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    async def send(self, frame: bytes | str) -> None:
        await trio.to_thread.run_sync(self.connection.send, frame)

    async def receive(self) -> bytes:
        frame = await trio.to_thread.run_sync(self.connection.recv, WAIT)
        assert isinstance(frame, bytes), f"the proxy sent a text frame: {frame!r}"
        return frame


@asynccontextmanager
async def open_frames(library: str, url: str) -> AsyncIterator[FrameClient]:
    """Connect to ``url`` with ``library`` (one of :data:`WS_LIBRARIES`)."""
    if library == "trio-websocket":
        async with open_websocket_url(url, connect_timeout=WAIT, disconnect_timeout=WAIT) as ws:
            yield TrioFrames(ws)
        return
    assert library == "websockets", library
    connection = await trio.to_thread.run_sync(_websockets_connect, url)
    try:
        yield WebsocketsFrames(connection)
    finally:
        await trio.to_thread.run_sync(connection.__exit__, None, None, None)


def _websockets_connect(url: str) -> Any:
    """Open a ``websockets`` connection; blocking, so run it in a thread."""
    from websockets.sync.client import connect

    host, _, port = url.removeprefix("ws://").partition("/")[0].rpartition(":")
    # Our own socket: websockets (15 and later) would otherwise go through any HTTP proxy
    # the environment names, and this works the same from websockets 12 on.
    sock = socket.create_connection((host, int(port)), timeout=WAIT)
    sock.settimeout(None)
    connection = connect(url, sock=sock, open_timeout=WAIT, close_timeout=WAIT, compression=None)
    # Entered as a context manager, the way websockets 17.1 and later want it used.
    return connection.__enter__()


async def request(client: FrameClient, frame: bytes) -> pb.PubSubResp:
    """Send one request frame and parse the next response (for one request at a time)."""
    await client.send(frame)
    return parse(await client.receive())


async def fetch_all(client: FrameClient, topic: str, partition: int, start: int, end: int) -> list[pb.KafkaMessage]:
    """Fetch until every offset below ``end`` has come, following the offsets returned."""
    messages: list[pb.KafkaMessage] = []
    offset = start
    while offset < end:
        response = await request(client, fetch(offset, topic, partition, offset))
        assert response.WhichOneof("resp") == "kafka_fetch_resp", response
        assert response.kafka_fetch_resp.messages, f"no records at {offset} though the log ends at {end}"
        messages.extend(response.kafka_fetch_resp.messages)
        offset = messages[-1].offset + 1
    return messages


# ------------------------------------------------------------------ HTTP


#: The headers that turn an HTTP/1.1 GET into a WebSocket opening handshake.
UPGRADE_HEADERS: Final = (
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
)


def http_get(path: str, *, upgrade: bool) -> bytes:
    headers = UPGRADE_HEADERS if upgrade else b""
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers + b"\r\n"


async def http_status(port: int, raw_request: bytes) -> int:
    """Send ``raw_request`` over a fresh TCP connection; return the status of the answer."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(raw_request)
        received = b""
        with trio.fail_after(WAIT):
            while b"\r\n" not in received:
                chunk = await stream.receive_some()
                assert chunk, f"connection closed after {received!r}"
                received += chunk
    status_line = received.split(b"\r\n", 1)[0].decode()
    match = re.fullmatch(r"HTTP/1\.[01] (\d{3})( .*)?", status_line)
    assert match, status_line
    return int(match[1])


# -------------------------------------------------------------- resources


def threads_except_idle_workers() -> set[threading.Thread]:
    """Every live thread except Trio's idle cached workers.

    Trio keeps a finished ``to_thread`` worker for 10 s in case more work comes
    (``trio._core._thread_cache.IDLE_TIMEOUT``), under its default name. A worker that
    is running something carries the name of what it runs, so it is still counted.
    """
    return {t for t in threading.enumerate() if not _IDLE_TRIO_WORKER.fullmatch(t.name)}


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def describe_threads(threads: Iterable[threading.Thread]) -> list[str]:
    return sorted(t.name for t in threads)


# -------------------------------------------------------------- certificates

#: openssl req options for a throwaway EC key and certificate (two days).
OPENSSL_EC: Final = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2")


def openssl_in(folder: Path) -> Callable[..., None]:
    """A function running ``openssl`` with its arguments in ``folder``; fails the test when openssl is missing."""
    if shutil.which("openssl") is None:  # ./scripts/test installs it: missing, it is a failure, never a skip
        raise AssertionError("needs openssl on PATH (Debian: apt-get install openssl)")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)

    return openssl
