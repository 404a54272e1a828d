"""Shared parts of the reliability suite: its fast and long modes, the proxy as a process of
its own, TOML config files, brokers a test may kill, acknowledged producing, clients that
stop reading and stream clients, and small waiting helpers.

Imported by the test modules beside it (pytest puts this folder on ``sys.path``).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from functools import partial
from pathlib import Path
from typing import Final

import attrs
import psutil
import pytest
import trio
from _support import stop_process
from integration._streams import StreamClient, stream_client
from trio_websocket import CloseReason, ConnectionClosed, WebSocketConnection, open_websocket_url

from kafka_ws_trio.testing import KafkaBroker, _broker

#: ``pytest tests/reliability --reliability-long`` (or RELIABILITY_LONG=1) selects the long mode.
LONG_OPTION: Final = "--reliability-long"
LONG_ENV: Final = "RELIABILITY_LONG"

#: The console script installed beside this interpreter.
PROXY_COMMAND: Final = str(Path(sys.executable).parent / "kafka-ws-trio")
#: Seconds for a proxy process to print its "listening on" line.
START_TIMEOUT: Final = 30.0
#: Seconds a proxy process gets to exit after SIGTERM before it is killed.
STOP_TIMEOUT: Final = 30.0
#: Seconds any single wait for an answer may take before a test fails.
WAIT: Final = 10.0
#: File descriptors a proxy or client process may need (1,000 sessions and their Kafka sockets).
FILE_DESCRIPTORS: Final = 8192


@attrs.frozen
class Mode:
    """How hard the suite pushes: ``FAST`` for ``./scripts/test``, ``LONG`` for deliberate runs."""

    name: str
    #: Frames drawn by hypothesis, each sent alone and answered before the next.
    hypothesis_frames: int
    #: Seeded random and mutated frames, pipelined over several sessions.
    random_frames: int
    #: Sessions the random frames are spread over.
    fuzz_sessions: int
    #: Sessions fetching while the proxy is sent SIGTERM.
    shutdown_sessions: int
    #: Clients that never read, and the Fetch requests each tries to send.
    unread_clients: int
    unread_requests: int
    #: Sustained load: sessions, seconds, client processes, and seconds between one session's requests.
    load_sessions: int
    load_seconds: float
    load_processes: int
    load_interval: float
    #: Records produced before and after the broker is killed.
    outage_records: int
    #: Seeded random stream commands (mutations of valid ones) sent beside a control stream.
    stream_fuzz_frames: int
    #: Streams (and the connections they are spread over) kept open while the broker is killed.
    outage_streams: int
    outage_connections: int
    #: Streams that stop granting credit, and seconds the proxy's memory is sampled under them.
    paused_streams: int
    pressure_seconds: float

    def limit(self, fast: float, long: float) -> float:
        """A time limit that depends on the mode."""
        return long if self is LONG else fast


FAST: Final = Mode(
    name="fast",
    hypothesis_frames=600,
    random_frames=4_000,
    fuzz_sessions=4,
    shutdown_sessions=40,
    unread_clients=2,
    unread_requests=400,
    load_sessions=100,
    load_seconds=10.0,
    load_processes=1,
    load_interval=0.2,
    outage_records=200,
    stream_fuzz_frames=1_500,
    outage_streams=100,
    outage_connections=10,
    paused_streams=1_000,
    pressure_seconds=5.0,
)
LONG: Final = Mode(
    name="long",
    hypothesis_frames=20_000,
    random_frames=100_000,
    fuzz_sessions=8,
    shutdown_sessions=300,
    unread_clients=4,
    unread_requests=2_000,
    load_sessions=1_000,
    load_seconds=60.0,
    load_processes=4,
    load_interval=2.0,
    outage_records=2_000,
    stream_fuzz_frames=50_000,
    outage_streams=300,
    outage_connections=20,
    paused_streams=4_000,
    pressure_seconds=30.0,
)

_mode = FAST


def mode() -> Mode:
    """The mode of this run, set by the reliability conftest before any test module is imported."""
    return _mode


def set_mode(long: bool) -> None:
    global _mode
    _mode = LONG if long else FAST


# ------------------------------------------------------------ config files


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def write_config(
    path: Path,
    nodes: str | Sequence[str],
    *,
    server: Mapping[str, object] | None = None,
    route: Mapping[str, object] | None = None,
) -> Path:
    """Write a proxy config file: ``[server]`` (port 0 unless given) and one route, ``/kafka``."""
    server_table = {"port": 0, **(server or {})}
    route_table = {"uri": "/kafka", "nodes": [nodes] if isinstance(nodes, str) else list(nodes), **(route or {})}
    lines = ["[server]"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in server_table.items()]
    lines += ["", "[[routes]]"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in route_table.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


# --------------------------------------------------------- proxy process


def allow_file_descriptors() -> None:
    """Let this process and the processes it starts open enough sockets for the biggest load.

    Raises the soft limit up to the hard one; child processes inherit it.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = FILE_DESCRIPTORS if hard == resource.RLIM_INFINITY else min(FILE_DESCRIPTORS, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


@attrs.define
class ProxyProcess:
    """A ``kafka-ws-trio serve`` process and the URL of its ``/kafka`` route."""

    process: trio.Process
    url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss(self) -> int:
        """Resident memory of the proxy process, in bytes."""
        return int(psutil.Process(self.pid).memory_info().rss)

    def cpu_seconds(self) -> float:
        """User and system CPU time the proxy process has used."""
        times = psutil.Process(self.pid).cpu_times()
        return float(times.user + times.system)

    def established(self) -> int:
        """TCP connections from clients the proxy holds (its own Kafka connections excluded)."""
        port = int(self.url.rsplit(":", 1)[1].split("/", 1)[0])
        connections = psutil.Process(self.pid).net_connections(kind="tcp")
        return sum(1 for c in connections if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@asynccontextmanager
async def proxy_process(config: Path, log: Path) -> AsyncIterator[ProxyProcess]:
    """Run ``kafka-ws-trio serve --config CONFIG`` for the block, its stderr going to ``log``.

    Leaving the block sends SIGTERM if the process still runs and waits for it to
    exit (SIGKILL after :data:`STOP_TIMEOUT`), so nothing outlives the test.
    """
    allow_file_descriptors()
    async with trio.open_nursery() as nursery:
        with await trio.to_thread.run_sync(log.open, "wb") as stderr:
            run = partial(
                trio.run_process,
                [PROXY_COMMAND, "serve", "--config", str(config)],
                stdout=subprocess.PIPE,
                stderr=stderr,
                check=False,
            )
            process: trio.Process = await nursery.start(run)
        try:
            assert process.stdout is not None
            seen = b""
            with trio.fail_after(START_TIMEOUT):
                while b"listening on ws://" not in seen or not seen.endswith(b"\n"):
                    chunk = await process.stdout.receive_some()
                    if not chunk:
                        text = await trio.Path(log).read_text(errors="replace")
                        raise AssertionError(f"the proxy exited before listening:\n{text}")
                    seen += chunk
            url = seen.split(b"listening on ", 1)[1].split()[0].decode() + "/kafka"
            yield ProxyProcess(process, url, log)
        finally:
            await stop_process(process, STOP_TIMEOUT)


def spawn_python(script: Path, args: Sequence[str]) -> list[str]:
    """The command line running ``script`` with this interpreter."""
    return [sys.executable, str(script), *args]


def child_environment() -> dict[str, str]:
    """The environment for client processes: ours, with faulthandler on."""
    return {**os.environ, "PYTHONFAULTHANDLER": "1"}


# ------------------------------------------------------------ own brokers


#: Seconds to wait for a broker's ports to be free (a closed socket's TIME_WAIT lasts 60 s).
PORT_WAIT: Final = 90.0


@attrs.frozen
class OwnBroker:
    """A broker of one test's own, which it may kill and restart: instance ``name`` on ports ``port_base`` on.

    Its ports must be below Linux's ephemeral range (32768-60999), like the other test
    brokers (25092 ...): 39592..39596 were seen taken by other tests' client sockets for minutes.
    """

    name: str
    port_base: int

    @property
    def ports(self) -> range:
        return range(self.port_base, self.port_base + len(_broker.LISTENERS))

    def wait_for_ports(self) -> None:
        """Wait until the broker's ports are free (a socket of a killed broker may linger)."""
        deadline = time.monotonic() + PORT_WAIT
        while not all(_broker.port_free(port) for port in self.ports):
            if time.monotonic() > deadline:
                pytest.fail(f"ports {self.ports.start}..{self.ports.stop - 1} stayed busy for {PORT_WAIT:.0f}s")
            time.sleep(0.5)

    def start(self) -> dict[str, str]:
        """Start (or restart, on its data) the broker once its ports are free.

        ``_broker.up`` itself launches it again when a port is taken between its check and the bind.
        """
        self.wait_for_ports()
        return _broker.up("4", name=self.name, port_base=self.port_base)

    def kill(self) -> None:
        """SIGKILL the broker, like a crash; its data stays for :meth:`start`."""
        _broker.stop(self.name, kill=True)

    @contextmanager
    def running(self) -> Iterator[KafkaBroker]:
        """The broker, up for the block; stopped and deleted afterwards, whatever happens."""
        try:
            yield KafkaBroker.from_env(self.start())
        finally:
            _broker.down(self.name)


async def produce_acknowledged(
    broker: KafkaBroker, topic: str, records: Iterable[tuple[int, bytes]], interval: float = 0.0
) -> None:
    """Write each ``(partition, value)`` in order, one at a time, each acknowledged by the broker.

    A producer of its own for each call: the producer is not what is tested, and
    kafka-python's was seen not to reconnect within 30 s after a killed broker came back.
    """
    from kafka import KafkaProducer

    producer = await trio.to_thread.run_sync(
        partial(KafkaProducer, **broker.client_config(), acks="all", linger_ms=0, request_timeout_ms=10_000)
    )
    try:
        for partition, value in records:
            send = partial(producer.send, topic, value=value, partition=partition)
            await trio.to_thread.run_sync(lambda: send().get(timeout=30))  # noqa: B023 - run at once
            if interval:
                await trio.sleep(interval)
    finally:
        await trio.to_thread.run_sync(partial(producer.close, timeout=10))


# ----------------------------------------------------------------- waiting


async def settled(condition: Callable[[], bool], within: float = WAIT, interval: float = 0.05) -> bool:
    """Wait until ``condition()`` holds, for a state nothing signals; False after ``within`` s."""
    with trio.move_on_after(within):
        while not condition():  # noqa: ASYNC110 - polling: nothing signals these states
            await trio.sleep(interval)
        return True
    return False


@asynccontextmanager
async def stream_clients(url: str, count: int) -> AsyncIterator[list[StreamClient]]:
    """``count`` connections with the integration tests' raw-frame stream client, for the block.

    An exception of the block comes out as itself, not wrapped in an exception group
    once per connection (past ten, Python no longer shows what is inside).
    """
    failure: Exception | None = None
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(stream_client(url)) for _ in range(count)]
        try:
            yield clients
        except Exception as exc:
            failure = exc
    if failure is not None:
        raise failure


async def hold_open(
    url: str, max_message_size: int, *, task_status: trio.TaskStatus[WebSocketConnection] = trio.TASK_STATUS_IGNORED
) -> None:
    """A connection for ``nursery.start`` that is never read: trio-websocket stops reading its socket
    once one message waits (``message_queue_size`` 1). It stays open until cancelled."""
    async with open_websocket_url(url, max_message_size=max_message_size, connect_timeout=WAIT) as ws:
        task_status.started(ws)
        await trio.sleep_forever()


@asynccontextmanager
async def never_reading(url: str, count: int, max_message_size: int) -> AsyncIterator[list[WebSocketConnection]]:
    """``count`` connections (:func:`hold_open`) that never read, for the block."""
    async with trio.open_nursery() as nursery:
        yield [await nursery.start(hold_open, url, max_message_size) for _ in range(count)]
        nursery.cancel_scope.cancel()


async def read_until_closed(ws: WebSocketConnection) -> tuple[int, CloseReason]:
    """Read every message that reached the client; return how many, and why the connection ended."""
    messages = 0
    with trio.fail_after(WAIT):
        while True:
            try:
                await ws.get_message()
            except ConnectionClosed as exc:
                return messages, exc.reason
            messages += 1


def percentile(values: Sequence[float], fraction: float) -> float:
    """The value below which ``fraction`` of ``values`` lie (nearest rank); 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]
