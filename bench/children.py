"""The child-process plumbing: how the orchestrator starts, talks to and stops its children.

Both ends of one small protocol live here. A child is ``python -m bench ROLE
SPEC`` (SPEC is JSON); it reports JSON lines on stdout (:func:`emit`) and takes
JSON commands, one per stdin line (:class:`Commands`, :func:`sync_command`).
End of stdin means "stop": a child whose orchestrator died goes with it.

The orchestrator's side is :class:`Child`. Children run from the repository
root with that root first on ``PYTHONPATH``, so ``import bench`` works in them
whatever the current directory or the virtual environment; the proxy child
may then put another tree's ``kafka_ws_trio`` ahead of it (``--proxy-package``,
see ``bench.proxy``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

from .plan import CHILD_STOP_TIMEOUT, COMMAND_TIMEOUT, REPO, BenchError


def say(message: str) -> None:
    """A progress line for the person running the bench (stderr, bold)."""
    print(f"\033[1m==> {message}\033[0m", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ child side


def emit(**event: Any) -> None:
    """Report one event to the orchestrator, as a JSON line on stdout."""
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def _checked(line: bytes | str, *expected: str) -> dict[str, Any]:
    if not line:
        raise SystemExit(0)  # the orchestrator is gone: so are we
    command: dict[str, Any] = json.loads(line)
    if command.get("cmd") not in expected:
        raise RuntimeError(f"expected command {' or '.join(map(repr, expected))}, got {command!r}")
    return command


def sync_command(*expected: str) -> dict[str, Any]:
    """The next command, one of ``expected``, read with a blocking read (for the children that are not asyncio)."""
    return _checked(sys.stdin.readline(), *expected)


class Commands:
    """JSON commands from the orchestrator for an asyncio child, one per stdin line."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader

    @classmethod
    async def open(cls) -> Commands:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 20)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        return cls(reader)

    async def next(self, *expected: str) -> dict[str, Any]:
        """The next command, which must be one of ``expected``."""
        return _checked(await asyncio.wait_for(self._reader.readline(), COMMAND_TIMEOUT), *expected)


# ------------------------------------------------------------ orchestrator side


def child_environment() -> dict[str, str]:
    """This process's environment with the repository root first on PYTHONPATH (so children find ``bench``)."""
    env = dict(os.environ)
    rest = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + rest if rest else "")
    return env


class Child:
    """A process the bench started: JSON events out, JSON commands in, stopped by its PID."""

    running: ClassVar[list[Child]] = []

    def __init__(self, name: str, role: str, spec: dict[str, Any], logdir: Path) -> None:
        self.name = name
        self.log_path = logdir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench", role, json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=REPO,
            env=child_environment(),
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
