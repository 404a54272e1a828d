"""The bench's own Kafka broker, through ``scripts/kafka``: instance ``bench`` on ports 25492..25496.

``scripts/kafka up`` prints ``export NAME=VALUE`` lines; :func:`broker_up`
reads them. The orchestrator calls :func:`broker_down` at the end, also after
a failure or Ctrl-C; ``scripts/bench`` calls ``scripts/kafka down`` again as
the backstop for a hard kill.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import subprocess
from typing import Final

from .children import say
from .plan import BROKER_DOWN_TIMEOUT, BROKER_NAME, BROKER_PORT_BASE, BROKER_UP_TIMEOUT, KAFKA_SCRIPT, BenchError

#: ``scripts/kafka status`` answers within this many seconds.
STATUS_TIMEOUT: Final = 60


def broker_up() -> dict[str, str]:
    """Start the instance; the variables its ``export`` lines set (KAFKA_BOOTSTRAP, KAFKA_VERSION, ...)."""
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
    """The broker's PID, so that the probe can count its CPU (None when scripts/kafka does not say)."""
    done = subprocess.run(
        [str(KAFKA_SCRIPT), "status"], capture_output=True, text=True, timeout=STATUS_TIMEOUT, check=False
    )
    match = re.search(rf"^{BROKER_NAME}: .*\bpid (\d+)", done.stdout, re.MULTILINE)
    return int(match.group(1)) if match else None


def listener_pid(bootstrap: str) -> int | None:
    """The PID of the local process listening on ``bootstrap``'s port (a broker given with --bootstrap), if any.

    So that the probe counts that broker's CPU as the broker's, not as other load.
    None when the address is not local or the process cannot be seen.
    """
    import psutil

    host, _, port = bootstrap.rpartition(":")
    if host not in ("127.0.0.1", "localhost", "::1", "[::1]") or not port.isdigit():
        return None
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.Error:
        return None
    for connection in connections:
        if connection.status == psutil.CONN_LISTEN and connection.laddr.port == int(port) and connection.pid:
            return int(connection.pid)
    return None


def broker_down() -> None:
    say(f"stopping Kafka instance {BROKER_NAME!r}")
    with contextlib.suppress(subprocess.TimeoutExpired):
        subprocess.run([str(KAFKA_SCRIPT), "down", "--name", BROKER_NAME], timeout=BROKER_DOWN_TIMEOUT, check=False)
