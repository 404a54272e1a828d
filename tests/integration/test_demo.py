"""``./scripts/demo | tee log`` and Ctrl-C: the broker the demo started is stopped even though its output is gone.

Ctrl-C reaches the whole pipeline, so ``tee`` is gone before the demo starts
shutting down; its next write used to raise BrokenPipeError before the broker
was stopped, leaving a Kafka JVM behind (issue 9).
"""

from __future__ import annotations

import os
import re
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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.timeout(240)
def test_the_demo_stops_its_broker_after_ctrl_c_when_its_output_pipe_is_gone(repo_root: Path, tmp_path: Path) -> None:
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
