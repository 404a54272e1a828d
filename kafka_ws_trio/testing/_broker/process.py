"""The broker's process: set up a run folder, launch, wait until it answers, stop, and report.

Each broker owns a run folder under :func:`~.base.home_dir` holding its
config, certificates, data, log and ``state.json``; a per-name lock file makes
concurrent ``up``/``down``/``stop`` calls for one broker take turns.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Final, TypedDict, cast

from .base import DEFAULT_LINE, VERSIONS, BrokerError, Progress, home_dir, resolve_line, stderr_progress
from .certificates import make_certificates
from .jars import ensure_jars
from .properties import ACL_USERS, LISTENERS, SASL_USERNAME, logging_flag, server_properties

#: First port of each line's block of five: away from Kafka's usual 9092,
#: 19092 and 29092, below Linux's ephemeral range (32768 and up, where a
#: random outgoing connection may hold a port at the moment we bind it), and
#: different per line so both can run at once.
DEFAULT_PORT_BASES: Final[dict[str, int]] = {"3.9": 25192, "4": 25092}
#: How long a busy port may take to free up before ``up`` gives up on it.
PORT_WAIT_S: Final = 3.0

DEFAULT_START_TIMEOUT_S: Final = 120.0
DEFAULT_STOP_TIMEOUT_S: Final = 30.0
#: How long a broker that ignored SIGTERM may take to vanish after SIGKILL.
KILL_WAIT_S: Final = 10.0
#: How often a waiting loop looks again at a port, the log, or a pid.
POLL_INTERVAL_S: Final = 0.2
STOP_POLL_INTERVAL_S: Final = 0.1
#: Timeout of one connection attempt when checking that a listener answers.
CONNECT_TIMEOUT_S: Final = 1.0
#: Lines of the broker's log quoted when it fails to start.
LOG_TAIL_LINES: Final = 25
HEAP_MAX: Final = "1g"
HEAP_MIN: Final = "256m"
#: What the broker logs once every listener is open.
READY_LINE: Final = "Kafka Server started"
#: What Kafka logs when a listener's port was taken (SocketServer's "failed to bind").
BIND_FAILED: Final = re.compile(rb"failed to bind to [^\s]*?:(\d+): Address already in use")
#: Launches of one broker when its port is taken between our check and its bind.
LAUNCH_ATTEMPTS: Final = 3
#: How long a port that was taken during a launch may take to free up before the next one.
TAKEN_PORT_WAIT_S: Final = 60.0


class PortTaken(BrokerError):
    """The broker exited while starting because ``port`` was taken after ``up`` had found it free."""

    def __init__(self, port: int, detail: str) -> None:
        super().__init__(f"port {port} on 127.0.0.1 was taken while the broker started; {detail}")
        self.port = port


class _State(TypedDict):
    """What ``state.json`` in a broker's run folder records."""

    pid: int
    marker: str  # a string only the broker's command line holds
    line: str
    env: dict[str, str]
    log: str
    cmd: list[str]  # how to start it again on the same data (see ``stop``)
    ports: list[int]  # the client listeners' ports, to tell when it answers


def _pid_alive(pid: int, marker: str) -> bool:
    """True when ``pid`` is a live process whose command line holds ``marker``.

    The marker guards against a recycled pid: a stale ``state.json`` must never
    make us signal some unrelated process.
    """
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state != "Z" and marker in cmdline


def port_free(port: int) -> bool:
    """True when ``port`` on 127.0.0.1 can be bound now (a listener in TIME_WAIT does not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=CONNECT_TIMEOUT_S):
            return True
    except OSError:
        return False


def _log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def _locked(run_root: Path, name: str) -> Iterator[None]:
    """Hold the lock of broker ``name``, so two processes never set it up or tear it down at once."""
    run_root.mkdir(parents=True, exist_ok=True)
    with open(run_root / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run_dir(name: str) -> Path:
    return home_dir() / "run" / name


def _read_state(name: str) -> _State | None:
    path = _run_dir(name) / "state.json"
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or not isinstance(state.get("pid"), int):
        return None
    return cast("_State", state)


def _state_alive(state: _State) -> bool:
    return _pid_alive(state["pid"], state["marker"])


def cluster_id() -> str:
    """A random KRaft cluster id: 16 bytes, URL-safe base64, never starting with "-".

    The storage tool would read an id starting with "-" as an option; the first
    character only encodes the top six bits, so any other letter is as good.
    """
    encoded = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    return "A" + encoded[1:] if encoded.startswith("-") else encoded


def default_name(line: str) -> str:
    """The instance name ``up`` uses for ``line`` when none is given: ``kafka4`` or ``kafka39``."""
    return f"kafka{resolve_line(line).replace('.', '')}"


def up(
    line: str = DEFAULT_LINE,
    *,
    name: str | None = None,
    port_base: int | None = None,
    timeout: float = DEFAULT_START_TIMEOUT_S,
    progress: Progress = stderr_progress,
) -> dict[str, str]:
    """Start a broker of ``line`` (or find the one already up) and return its env.

    The returned mapping holds the ``KAFKA_*`` variables printed by
    ``scripts/kafka up`` plus ``KAFKA_STARTED`` ("1" when this call started
    the broker, "0" when it was already running) and ``KAFKA_BROKER_NAME``.

    Raises:
        BrokerError: the broker could not be fetched, configured or started
            within ``timeout`` seconds; the message includes the log's tail.
    """
    line = resolve_line(line)
    name = name or default_name(line)
    run = _run_dir(name)
    with _locked(run.parent, name):
        state = _read_state(name)
        if state is not None and _state_alive(state):
            env = dict(state["env"])
            env["KAFKA_STARTED"] = "0"
            progress(f"Kafka {env['KAFKA_VERSION']} ({name}) is already up, pid {state['pid']}")
            return env
        if state is not None and (run / "data").is_dir() and state.get("cmd"):
            # Stopped by `stop`: start it again on the same data, ports and credentials.
            progress(f"restarting {name} on its existing data")
            _launch_retrying(run, state, timeout, progress)
            env = dict(state["env"])
            env["KAFKA_STARTED"] = "1"
            return env
        if run.exists():
            shutil.rmtree(run)
        base = port_base if port_base is not None else DEFAULT_PORT_BASES[line]
        ports = {listener: base + i for i, listener in enumerate(LISTENERS)}
        wait_until = time.monotonic() + PORT_WAIT_S
        while (busy := [p for p in ports.values() if not port_free(p)]) and time.monotonic() < wait_until:
            time.sleep(POLL_INTERVAL_S)
        if busy:
            raise BrokerError(
                f"port(s) {', '.join(map(str, busy))} on 127.0.0.1 are in use; "
                f"stop what holds them or pass --port-base N (uses N..N+{len(LISTENERS) - 1})"
            )
        jars = ensure_jars(line, progress)
        version = VERSIONS[line]
        started = time.monotonic()
        progress(f"setting up Kafka {version} ({name}) in {run}")
        run.mkdir(parents=True)
        store_password = secrets.token_hex(12)
        sasl_password = secrets.token_hex(12)
        certs = make_certificates(run / "certs", store_password)
        data = run / "data"
        config = run / "server.properties"
        config.write_text(server_properties(ports, data, certs, store_password, sasl_password))
        config.chmod(0o600)
        java = shutil.which("java")
        if java is None:
            raise BrokerError(
                "'java' is not on PATH; Kafka needs Java 17 (Debian: apt-get install openjdk-17-jre-headless)"
            )
        jvm = [
            java,
            f"-Xmx{HEAP_MAX}",
            f"-Xms{HEAP_MIN}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            logging_flag(line, run),
            "-cp",
            f"{jars}/*",
        ]
        progress("formatting KRaft storage")
        scram = [
            f"SCRAM-SHA-{bits}=[name={user},password={sasl_password}]"
            for bits in (256, 512)
            for user in (SASL_USERNAME, *ACL_USERS)
        ]
        fmt = subprocess.run(
            [
                *jvm,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id(),
                "-c",
                str(config),
                "--ignore-formatted",
                *(arg for s in scram for arg in ("--add-scram", s)),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if fmt.returncode != 0:
            raise BrokerError(f"formatting KRaft storage failed:\n{(fmt.stdout + fmt.stderr).strip()[-3000:]}")
        log = run / "broker.log"
        marker = str(config)
        env = {
            "KAFKA_VERSION": version,
            "KAFKA_BOOTSTRAP": f"127.0.0.1:{ports['PLAINTEXT']}",
            "KAFKA_BOOTSTRAP_SSL": f"127.0.0.1:{ports['SSL']}",
            "KAFKA_BOOTSTRAP_SASL": f"127.0.0.1:{ports['SASL_PLAINTEXT']}",
            "KAFKA_BOOTSTRAP_SASL_SSL": f"127.0.0.1:{ports['SASL_SSL']}",
            "KAFKA_CA_FILE": str(certs["ca"]),
            "KAFKA_CLIENT_CERT_FILE": str(certs["client_cert"]),
            "KAFKA_CLIENT_KEY_FILE": str(certs["client_key"]),
            "KAFKA_SASL_USERNAME": SASL_USERNAME,
            "KAFKA_SASL_PASSWORD": sasl_password,
            "KAFKA_ACL_USERS": ",".join(ACL_USERS),
            "KAFKA_BROKER_NAME": name,
            "KAFKA_BROKER_LOG": str(log),
        }
        fresh: _State = {
            "pid": 0,
            "marker": marker,
            "line": line,
            "env": env,
            "log": str(log),
            "cmd": [*jvm, "kafka.Kafka", str(config)],
            "ports": [ports[n] for n in LISTENERS if n != "CONTROLLER"],
        }
        _launch_retrying(run, fresh, timeout, progress)
        progress(
            f"Kafka {version} is up on 127.0.0.1:{base}..{base + len(LISTENERS) - 1}, "
            f"pid {fresh['pid']}, in {time.monotonic() - started:.1f}s"
        )
        env["KAFKA_STARTED"] = "1"
        return env


def _launch_retrying(run: Path, state: _State, timeout: float, progress: Progress) -> None:
    """:func:`_launch`, again on the same data once the port is free, when a port was taken meanwhile.

    ``up`` checks the ports before the JVM binds them, seconds later on a busy machine;
    another process may take one in between (seen once in a full test run beside the bench).
    """
    for attempt in range(1, LAUNCH_ATTEMPTS + 1):
        try:
            _launch(run, state, timeout, progress)
            return
        except PortTaken as exc:
            if attempt == LAUNCH_ATTEMPTS:
                raise
            progress(f"port {exc.port} on 127.0.0.1 was taken while the broker started; starting it again once free")
            deadline = time.monotonic() + TAKEN_PORT_WAIT_S
            while not port_free(exc.port) and time.monotonic() < deadline:
                time.sleep(POLL_INTERVAL_S)


def _launch(run: Path, state: _State, timeout: float, progress: Progress) -> None:
    """Start the broker ``state`` describes, record its pid, and wait until it answers."""
    log = Path(state["log"])
    progress(f"starting the broker (log: {log})")
    log_start = log.stat().st_size if log.exists() else 0
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            state["cmd"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the caller's terminal must not hit the broker
        )
    state["pid"] = proc.pid
    state_path = run / "state.json"
    state_path.write_text(json.dumps(state, indent=2))
    state_path.chmod(0o600)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            code = proc.returncode
            detail = f"the broker exited with code {code} while starting; last lines of {log}:\n{_log_tail(log)}"
            with open(log, "rb") as f:
                f.seek(log_start)
                taken = BIND_FAILED.search(f.read())
            if taken:
                raise PortTaken(int(taken.group(1)), detail)
            raise BrokerError(detail)
        with open(log, "rb") as f:
            f.seek(log_start)
            ready = READY_LINE.encode() in f.read()
        if ready and all(_port_open(p) for p in state["ports"]):
            return
        if time.monotonic() > deadline:
            _stop_pid(proc.pid, state["marker"], DEFAULT_STOP_TIMEOUT_S)
            raise BrokerError(f"the broker did not start within {timeout:.0f}s; last lines of {log}:\n{_log_tail(log)}")
        time.sleep(POLL_INTERVAL_S)


def _stop_pid(pid: int, marker: str, timeout: float) -> None:
    """SIGTERM ``pid``, SIGKILL it if it outlives ``timeout``, and wait until it is gone."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, KILL_WAIT_S)):
        if not _pid_alive(pid, marker):
            return
        os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # reap it when it is our own child
            if not _pid_alive(pid, marker):
                return
            time.sleep(STOP_POLL_INTERVAL_S)
    raise BrokerError(f"broker pid {pid} did not exit after SIGKILL")


def running() -> list[str]:
    """Names of the brokers this home has started and that are still up."""
    root = home_dir() / "run"
    if not root.is_dir():
        return []
    names = []
    for child in sorted(root.iterdir()):
        state = _read_state(child.name) if child.is_dir() else None
        if state is not None and _state_alive(state):
            names.append(child.name)
    return names


def down(
    name: str | None = None, *, timeout: float = DEFAULT_STOP_TIMEOUT_S, progress: Progress = stderr_progress
) -> list[str]:
    """Stop a broker (all of this home's brokers when ``name`` is None) and delete its data.

    Returns the names of the brokers that were stopped.
    """
    root = home_dir() / "run"
    names = [name] if name else sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    stopped = []
    for each in names:
        with _locked(root, each):
            state = _read_state(each)
            if state is not None and _state_alive(state):
                progress(f"stopping {each} (pid {state['pid']})")
                _stop_pid(state["pid"], state["marker"], timeout)
                stopped.append(each)
            shutil.rmtree(_run_dir(each), ignore_errors=True)
    if not stopped:
        progress("no broker was running" if not name else f"{name} was not running")
    return stopped


def stop(
    name: str, *, kill: bool = False, timeout: float = DEFAULT_STOP_TIMEOUT_S, progress: Progress = stderr_progress
) -> bool:
    """Stop a broker but keep its data, so that ``up --name NAME`` starts it again.

    With ``kill`` it gets SIGKILL, like a crash. Returns False when it was not running.
    """
    root = home_dir() / "run"
    with _locked(root, name):
        state = _read_state(name)
        if state is None or not _state_alive(state):
            progress(f"{name} was not running")
            return False
        progress(f"{'killing' if kill else 'stopping'} {name} (pid {state['pid']}); its data stays")
        if kill:
            os.kill(state["pid"], signal.SIGKILL)
        _stop_pid(state["pid"], state["marker"], timeout)
        return True


def status() -> list[str]:
    """One line per running broker: its name, version, pid and every listener's address."""
    lines = []
    for name in running():
        state = _read_state(name)
        if state is None:
            continue
        env = state["env"]
        lines.append(
            f"{name}: Kafka {env.get('KAFKA_VERSION')} up, pid {state['pid']}, "
            f"PLAINTEXT {env.get('KAFKA_BOOTSTRAP')}, SSL {env.get('KAFKA_BOOTSTRAP_SSL')}, "
            f"SASL_PLAINTEXT {env.get('KAFKA_BOOTSTRAP_SASL')}, SASL_SSL {env.get('KAFKA_BOOTSTRAP_SASL_SSL')}"
        )
    return lines
