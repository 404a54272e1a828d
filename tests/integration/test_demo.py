"""The demo, run as in ``./scripts/demo | tee log``: the commands it prints work, and after Ctrl-C
the broker it started is stopped even though its output is gone.

The printed ``produce`` command writes a record that the printed ``tail`` command shows.

Ctrl-C reaches the whole pipeline, so ``tee`` is gone before the demo starts
shutting down; its next write used to raise BrokenPipeError before the broker
was stopped, leaving a Kafka JVM behind (issue 9).
"""

from __future__ import annotations

import os
import re
import select
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Final

import pytest
from _support import own_port_base

from kafka_ws_trio.testing import _broker

#: A port block of its own (the test brokers use 25092-25592): the demo starts its own broker here.
PORT_BASE: Final = own_port_base(25692)
READY: Final = b"Press Ctrl-C to stop."
#: The command as the demo prints it (./scripts/demo installs it there); the tests run this Python's.
PRINTED_COMMAND: Final = ".venv/bin/kafka-ws-trio"
COMMAND: Final = str(Path(sys.executable).parent / "kafka-ws-trio")
#: Seconds the printed commands may take to show what the test waits for.
COMMAND_TIMEOUT: Final = 60.0


def _printed(output: bytes, start: str) -> str:
    """The command line the demo printed that starts with ``start``, to run here."""
    found = re.search(rb"^ +(" + re.escape(start.encode()) + rb".*)$", output, re.MULTILINE)
    assert found, f"the demo printed no command starting {start!r}: {output[-2000:]!r}"
    return found.group(1).decode().replace(PRINTED_COMMAND, COMMAND)


def _read_until(process: subprocess.Popen[bytes], needle: bytes, shown: bytes = b"") -> bytes:
    """What ``process`` writes on stdout, until ``needle`` is in it (within ``COMMAND_TIMEOUT``)."""
    assert process.stdout is not None
    deadline = time.monotonic() + COMMAND_TIMEOUT
    while needle not in shown:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([process.stdout], [], [], max(0.0, left))
        assert ready and left > 0, f"no {needle!r} within {COMMAND_TIMEOUT} s: {shown[-2000:]!r}"
        chunk = os.read(process.stdout.fileno(), 65536)
        assert chunk, f"it exited before {needle!r}: {shown[-2000:]!r}"
        shown += chunk
    return shown


def _tail_shows_what_produce_writes(seen: bytes) -> None:
    """Run the demo's printed tail, then its printed produce: the tail shows the produced record."""
    tail_command = _printed(seen, f"{PRINTED_COMMAND} tail ")
    produce_command = _printed(seen, f"echo hello | {PRINTED_COMMAND} produce ")
    tail = subprocess.Popen(shlex.split(tail_command), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        shown = _read_until(tail, b"\n")  # a ticker event: the tail is following
        produced = subprocess.run(
            ["bash", "-c", produce_command], capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
        )
        assert produced.returncode == 0, produced.stderr
        assert produced.stdout.startswith("wrote 1 record to demo\n  partition 0: 1 record, offset "), produced.stdout
        _read_until(tail, b"\thello\n", shown)
    finally:
        tail.kill()
        tail.wait()
        assert tail.stdout is not None
        tail.stdout.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.timeout(240)
def test_the_demos_printed_tail_shows_its_printed_produce_and_ctrl_c_stops_its_broker_with_the_pipe_gone(
    repo_root: Path, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_BOOTSTRAP")}
    env["KAFKA_WS_TRIO_HOME"] = str(tmp_path / "home")
    read_end, write_end = os.pipe()
    command = [sys.executable, str(repo_root / "scripts" / "demo.py"), "--port", "0"]
    demo = subprocess.Popen(
        [*command, "--kafka-name", "demo-pipe", "--kafka-port-base", str(PORT_BASE)],
        stdout=write_end,
        stderr=write_end,
        env=env,
        start_new_session=True,
    )
    os.close(write_end)
    broker_pid = None
    try:
        seen = b""
        deadline = time.monotonic() + 180
        while READY not in seen:
            assert time.monotonic() < deadline, f"the demo did not come up: {seen[-2000:]!r}"
            chunk = os.read(read_end, 65536)
            assert chunk, f"the demo exited early: {seen[-2000:]!r}"
            seen += chunk
        found = re.search(rb"is up on .*?, pid (\d+)", seen)
        assert found, seen[-2000:]
        broker_pid = int(found.group(1))
        assert _alive(broker_pid)
        _tail_shows_what_produce_writes(seen)
        os.close(read_end)  # the reader is gone, as tee is after Ctrl-C
        read_end = -1
        os.killpg(demo.pid, signal.SIGINT)
        assert demo.wait(timeout=60) == 0
        deadline = time.monotonic() + 30
        while _alive(broker_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(broker_pid), "the demo left its Kafka broker running"
        assert _broker._port_free(PORT_BASE)
    finally:
        if read_end >= 0:
            os.close(read_end)
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
        if broker_pid is not None and _alive(broker_pid):
            os.kill(broker_pid, signal.SIGKILL)
