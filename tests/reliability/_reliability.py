"""Shared parts of the reliability suite: its fast and long modes, the proxy as a process of
its own, TOML config files, and small waiting helpers.

Imported by the test modules beside it (pytest puts this folder on ``sys.path``).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Final

import attrs
import psutil
import trio
from _support import stop_process

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


# ----------------------------------------------------------------- waiting


async def settled(condition: Callable[[], bool], within: float = WAIT, interval: float = 0.05) -> bool:
    """Wait until ``condition()`` holds, for a state nothing signals; False after ``within`` s."""
    with trio.move_on_after(within):
        while not condition():  # noqa: ASYNC110 - polling: nothing signals these states
            await trio.sleep(interval)
        return True
    return False


def percentile(values: Sequence[float], fraction: float) -> float:
    """The value below which ``fraction`` of ``values`` lie (nearest rank); 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]
