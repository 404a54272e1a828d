"""Run a real Apache Kafka broker on loopback, for tests, demos and benchmarks.

This module is the code behind ``scripts/kafka`` and the ``kafka_broker``
pytest fixture. It uses only the standard library (plus ``java``, ``mvn``,
``openssl`` and ``keytool`` on PATH) so that it can run before any virtual
environment exists: ``python3 kafka_ws_trio/testing/_broker.py up``.

One broker is a single KRaft node acting as broker and controller, bound to
127.0.0.1, with four client listeners (PLAINTEXT, SSL, SASL_PLAINTEXT and
SASL_SSL) plus the controller listener. Jars come from Maven Central through
a small pom shipped beside this file and are cached; each running broker owns
a run folder holding its config, certificates, data and log.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypedDict, cast

#: Each supported release line maps to one pinned release: the newest of that
#: line whose artifacts Maven Central serves completely. (4.4.0 is listed there
#: but its kafka-tools-api jar is missing, so the 4 line stays on 4.3.1.)
VERSIONS: dict[str, str] = {"3.9": "3.9.2", "4": "4.3.1"}
DEFAULT_LINE = "4"

#: First port of each line's block of five: away from Kafka's usual 9092,
#: 19092 and 29092, below Linux's ephemeral range (32768 and up, where a
#: random outgoing connection may hold a port at the moment we bind it), and
#: different per line so both can run at once.
DEFAULT_PORT_BASES: dict[str, int] = {"3.9": 25192, "4": 25092}
#: How long a busy port may take to free up before ``up`` gives up on it.
PORT_WAIT_S = 3.0
LISTENERS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL", "CONTROLLER")

DEFAULT_START_TIMEOUT_S = 120.0
DEFAULT_STOP_TIMEOUT_S = 30.0
HEAP_MAX = "1g"
HEAP_MIN = "256m"
SASL_USERNAME = "kwt-user"
READY_LINE = "Kafka Server started"

POM_FILE = Path(__file__).with_name("kafka-broker-pom.xml")
REPO_ROOT = Path(__file__).resolve().parents[2]

Progress = Callable[[str], None]


class BrokerError(Exception):
    """A broker could not be set up, started or stopped; the message says why."""


def _stderr(message: str) -> None:
    print(f"[kafka] {message}", file=sys.stderr, flush=True)


def home_dir() -> Path:
    """Where jars are cached and brokers keep their run folders.

    ``$KAFKA_WS_TRIO_HOME`` wins; inside a checkout of the project it is the
    ignored ``.kafka`` folder of the repo; otherwise a per-user cache folder.
    """
    env = os.environ.get("KAFKA_WS_TRIO_HOME")
    if env:
        return Path(env).expanduser().resolve()
    if (REPO_ROOT / "setup.cfg").is_file() and (REPO_ROOT / "scripts" / "kafka").is_file():
        return REPO_ROOT / ".kafka"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "kafka-ws-trio"


def resolve_line(line: str) -> str:
    """Map ``3.9``/``39``/``3``/``4``/``4.x`` or a pinned version to a line key."""
    aliases = {"3.9": "3.9", "39": "3.9", "3": "3.9", "kafka39": "3.9", "4": "4", "kafka4": "4"}
    if line in aliases:
        return aliases[line]
    for key, version in VERSIONS.items():
        if line == version or (line.startswith("4.") and key == "4"):
            return key
    raise BrokerError(f"unknown Kafka version {line!r}; choose one of: {', '.join(VERSIONS)}")


# --------------------------------------------------------------------------
# Jars


def ensure_jars(line: str, progress: Progress = _stderr) -> Path:
    """Download the broker's jars for ``line`` once; return the folder holding them."""
    version = VERSIONS[line]
    target = home_dir() / "jars" / version
    marker = target / ".complete"
    if marker.is_file():
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("Maven ('mvn') is not on PATH; install it (Debian: apt-get install maven)")
    progress(f"downloading Kafka {version} and its dependencies from Maven Central ...")
    staging = target.with_name(f".{version}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    cmd = [
        mvn,
        "-B",
        "-q",
        "-f",
        str(POM_FILE),
        "dependency:copy-dependencies",
        f"-Dkafka.version={version}",
        f"-Dkafka.line={line.split('.')[0]}",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={staging}",
    ]
    started = time.monotonic()
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        tail = (result.stdout + result.stderr).strip().splitlines()[-15:]
        raise BrokerError(
            f"Maven could not fetch Kafka {version}:\n  "
            + "\n  ".join(tail)
            + "\nCheck that Maven Central is reachable, then run again."
        )
    jars = sorted(p.name for p in staging.glob("*.jar"))
    if not any(name.startswith(f"kafka_2.13-{version}") for name in jars):
        raise BrokerError(f"Maven finished but no kafka_2.13-{version} jar is in {staging}")
    (staging / ".complete").write_text(version + "\n")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    progress(f"fetched {len(jars)} jars in {time.monotonic() - started:.1f}s into {target}")
    return target


# --------------------------------------------------------------------------
# Certificates


def _run(what: str, template: str, **values: object) -> None:
    """Run ``template`` split into words, each word formatted with ``values``.

    Formatting after splitting keeps a value with spaces in one argument.
    """
    cmd = [word.format(**values) for word in shlex.split(template)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BrokerError(f"{what} failed ({cmd[0]} exited {result.returncode}):\n{result.stderr.strip()}")


def make_certificates(certs: Path, store_password: str) -> dict[str, Path]:
    """Create a CA, a broker keystore signed by it, and a client certificate.

    openssl makes the CA and signs; keytool makes the broker's key pair and
    the PKCS12 key and trust stores the broker reads.
    """
    for tool in ("openssl", "keytool"):
        if shutil.which(tool) is None:
            raise BrokerError(f"'{tool}' is not on PATH; it is needed to make the broker's certificates")
    certs.mkdir(parents=True, exist_ok=True)
    p = {
        name: certs / name
        for name in (
            "ca.key",
            "ca.pem",
            "broker.p12",
            "trust.p12",
            "broker.csr",
            "broker.pem",
            "san.ext",
            "client.key",
            "client.csr",
            "client.pem",
        )
    }
    p["san.ext"].write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    pw = store_password
    sign = "openssl x509 -req -in {csr} -CA {ca} -CAkey {key} -CAcreateserial -days 3650 -sha256 -out {out}"
    _run(
        "creating the test CA",
        "openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj '/CN=kafka-ws-trio test CA' "
        "-keyout {key} -out {out}",
        key=p["ca.key"],
        out=p["ca.pem"],
    )
    _run(
        "creating the broker key pair",
        "keytool -genkeypair -keystore {ks} -storetype PKCS12 -storepass {pw} -keypass {pw} -alias broker "
        "-keyalg RSA -keysize 2048 -validity 3650 -dname CN=localhost -ext SAN=DNS:localhost,IP:127.0.0.1",
        ks=p["broker.p12"],
        pw=pw,
    )
    _run(
        "creating the broker CSR",
        "keytool -certreq -keystore {ks} -storepass {pw} -alias broker -file {csr}",
        ks=p["broker.p12"],
        pw=pw,
        csr=p["broker.csr"],
    )
    _run(
        "signing the broker certificate",
        sign + " -extfile {ext}",
        csr=p["broker.csr"],
        ca=p["ca.pem"],
        key=p["ca.key"],
        out=p["broker.pem"],
        ext=p["san.ext"],
    )
    for store, alias, pem in (
        ("broker.p12", "ca", "ca.pem"),
        ("broker.p12", "broker", "broker.pem"),
        ("trust.p12", "ca", "ca.pem"),
    ):
        _run(
            f"importing {pem} into {store}",
            "keytool -importcert -noprompt -keystore {ks} -storetype PKCS12 -storepass {pw} -alias {alias} -file {pem}",
            ks=p[store],
            pw=pw,
            alias=alias,
            pem=p[pem],
        )
    # A client key pair for mutual TLS, signed by the same CA.
    _run(
        "creating the client key",
        "openssl req -newkey rsa:2048 -nodes -subj '/CN=kafka-ws-trio client' -keyout {key} -out {csr}",
        key=p["client.key"],
        csr=p["client.csr"],
    )
    _run(
        "signing the client certificate",
        sign,
        csr=p["client.csr"],
        ca=p["ca.pem"],
        key=p["ca.key"],
        out=p["client.pem"],
    )
    return {
        "ca": p["ca.pem"],
        "keystore": p["broker.p12"],
        "truststore": p["trust.p12"],
        "client_cert": p["client.pem"],
        "client_key": p["client.key"],
    }


# --------------------------------------------------------------------------
# Config files


def _jaas_lines(listener: str, password: str) -> list[str]:
    lower = listener.lower()
    plain = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{SASL_USERNAME}" password="{password}" user_{SASL_USERNAME}="{password}";'
    )
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    return [
        f"listener.name.{lower}.plain.sasl.jaas.config={plain}",
        f"listener.name.{lower}.scram-sha-256.sasl.jaas.config={scram}",
        f"listener.name.{lower}.scram-sha-512.sasl.jaas.config={scram}",
    ]


def server_properties(
    ports: dict[str, int], data: Path, certs: dict[str, Path], store_password: str, sasl_password: str
) -> str:
    def addr(name: str) -> str:
        return f"{name}://127.0.0.1:{ports[name]}"

    client = [name for name in LISTENERS if name != "CONTROLLER"]
    lines = [
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@127.0.0.1:{ports['CONTROLLER']}",
        "controller.listener.names=CONTROLLER",
        "listeners=" + ",".join(addr(name) for name in LISTENERS),
        "advertised.listeners=" + ",".join(addr(name) for name in client),
        "listener.security.protocol.map=" + ",".join(f"{n}:{n}" for n in client) + ",CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name=PLAINTEXT",
        f"log.dirs={data}",
        "num.partitions=1",
        # A single node: every internal topic has one replica.
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=4",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        # Tests must create their topics; a read must never create one.
        "auto.create.topics.enable=false",
        "delete.topic.enable=true",
        "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
        *_jaas_lines("SASL_PLAINTEXT", sasl_password),
        *_jaas_lines("SASL_SSL", sasl_password),
        f"ssl.keystore.location={certs['keystore']}",
        "ssl.keystore.type=PKCS12",
        f"ssl.keystore.password={store_password}",
        f"ssl.key.password={store_password}",
        f"ssl.truststore.location={certs['truststore']}",
        "ssl.truststore.type=PKCS12",
        f"ssl.truststore.password={store_password}",
        # Clients may present a certificate (mutual TLS) but need not.
        "listener.name.ssl.ssl.client.auth=requested",
    ]
    return "\n".join(lines) + "\n"


LOG4J1 = """\
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
"""

LOG4J2 = """\
status = warn
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
"""


def _logging_flag(line: str, run: Path) -> str:
    if line == "3.9":
        path = run / "log4j.properties"
        path.write_text(LOG4J1)
        return f"-Dlog4j.configuration=file:{path}"
    path = run / "log4j2.properties"
    path.write_text(LOG4J2)
    return f"-Dlog4j2.configurationFile={path}"


# --------------------------------------------------------------------------
# Process handling


def _pid_alive(pid: int, marker: str) -> bool:
    """True when ``pid`` is a live process whose command line holds ``marker``."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state != "Z" and marker in cmdline


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def _log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def _locked(run_root: Path, name: str) -> Iterator[None]:
    run_root.mkdir(parents=True, exist_ok=True)
    with open(run_root / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run_dir(name: str) -> Path:
    return home_dir() / "run" / name


class _State(TypedDict):
    """What ``state.json`` in a broker's run folder records."""

    pid: int
    marker: str  # a string only the broker's command line holds
    line: str
    env: dict[str, str]
    log: str
    cmd: list[str]  # how to start it again on the same data (see ``stop``)
    ports: list[int]  # the client listeners' ports, to tell when it answers


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


def _cluster_id() -> str:
    """A random KRaft cluster id: 16 bytes, URL-safe base64, never starting with "-".

    The storage tool would read an id starting with "-" as an option; the first
    character only encodes the top six bits, so any other letter is as good.
    """
    encoded = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    return "A" + encoded[1:] if encoded.startswith("-") else encoded


def up(
    line: str = DEFAULT_LINE,
    *,
    name: str | None = None,
    port_base: int | None = None,
    timeout: float = DEFAULT_START_TIMEOUT_S,
    progress: Progress = _stderr,
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
    name = name or f"kafka{line.replace('.', '')}"
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
            _launch(run, state, timeout, progress)
            env = dict(state["env"])
            env["KAFKA_STARTED"] = "1"
            return env
        if run.exists():
            shutil.rmtree(run)
        base = port_base if port_base is not None else DEFAULT_PORT_BASES[line]
        ports = {listener: base + i for i, listener in enumerate(LISTENERS)}
        wait_until = time.monotonic() + PORT_WAIT_S
        while (busy := [p for p in ports.values() if not _port_free(p)]) and time.monotonic() < wait_until:
            time.sleep(0.2)
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
            _logging_flag(line, run),
            "-cp",
            f"{jars}/*",
        ]
        progress("formatting KRaft storage")
        scram = [f"SCRAM-SHA-{bits}=[name={SASL_USERNAME},password={sasl_password}]" for bits in (256, 512)]
        fmt = subprocess.run(
            [
                *jvm,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                _cluster_id(),
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
        _launch(run, fresh, timeout, progress)
        progress(
            f"Kafka {version} is up on 127.0.0.1:{base}..{base + len(LISTENERS) - 1}, "
            f"pid {fresh['pid']}, in {time.monotonic() - started:.1f}s"
        )
        env["KAFKA_STARTED"] = "1"
        return env


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
            raise BrokerError(
                f"the broker exited with code {proc.returncode} while starting; last lines of {log}:\n{_log_tail(log)}"
            )
        with open(log, "rb") as f:
            f.seek(log_start)
            ready = READY_LINE.encode() in f.read()
        if ready and all(_port_open(p) for p in state["ports"]):
            return
        if time.monotonic() > deadline:
            _stop_pid(proc.pid, state["marker"], DEFAULT_STOP_TIMEOUT_S)
            raise BrokerError(f"the broker did not start within {timeout:.0f}s; last lines of {log}:\n{_log_tail(log)}")
        time.sleep(0.2)


def _stop_pid(pid: int, marker: str, timeout: float) -> None:
    """SIGTERM ``pid``, SIGKILL it if it outlives ``timeout``, and wait until it is gone."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        if not _pid_alive(pid, marker):
            return
        os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # reap it when it is our own child
            if not _pid_alive(pid, marker):
                return
            time.sleep(0.1)
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
    name: str | None = None, *, timeout: float = DEFAULT_STOP_TIMEOUT_S, progress: Progress = _stderr
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
    name: str, *, kill: bool = False, timeout: float = DEFAULT_STOP_TIMEOUT_S, progress: Progress = _stderr
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


def env_lines(env: dict[str, str]) -> str:
    """Shell lines to ``eval``; a last comment line says whether ``up`` started the broker."""
    keys = [k for k in env if k != "KAFKA_STARTED"]
    started = "yes" if env.get("KAFKA_STARTED") == "1" else "no (it was already up)"
    return "".join(f"export {k}={shlex.quote(env[k])}\n" for k in keys) + f"# started: {started}\n"


# --------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None, prog: str = "scripts/kafka") -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run a real Apache Kafka broker (KRaft, one node) on 127.0.0.1 for tests and demos.",
        epilog='Typical use:  eval "$(scripts/kafka up)"  ...  scripts/kafka down',
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{up,down,stop,status}")
    p_up = sub.add_parser("up", help="start a broker (or find the running one) and print its env as shell lines")
    p_up.add_argument(
        "--version",
        default=DEFAULT_LINE,
        metavar="LINE",
        help=f"release line: {' or '.join(VERSIONS)} (pinned to {', '.join(VERSIONS.values())}); "
        f"default {DEFAULT_LINE}",
    )
    p_up.add_argument(
        "--port-base",
        type=int,
        metavar="N",
        help="use ports N..N+4 (default: " + ", ".join(f"{v} for {k}" for k, v in DEFAULT_PORT_BASES.items()) + ")",
    )
    p_up.add_argument("--name", help="instance name, to run several brokers of one line (default kafka4 / kafka39)")
    p_up.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_START_TIMEOUT_S,
        metavar="S",
        help=f"seconds to wait for the broker to answer (default {DEFAULT_START_TIMEOUT_S:.0f})",
    )
    p_down = sub.add_parser("down", help="stop brokers started by 'up' and delete their data")
    p_down.add_argument("--name", help="stop only this instance (default: all)")
    p_down.add_argument("--version", metavar="LINE", help="stop only the default instance of this line")
    p_stop = sub.add_parser("stop", help="stop a broker but keep its data ('up --name NAME' starts it again)")
    p_stop.add_argument("--name", default=f"kafka{DEFAULT_LINE}", help="the instance (default kafka4)")
    p_stop.add_argument("--kill", action="store_true", help="SIGKILL instead of a clean shutdown")
    sub.add_parser("status", help="say which brokers are running")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            env = up(args.version, name=args.name, port_base=args.port_base, timeout=args.timeout)
            sys.stdout.write(env_lines(env))
        elif args.command == "down":
            name = args.name or (f"kafka{resolve_line(args.version).replace('.', '')}" if args.version else None)
            down(name)
        elif args.command == "stop":
            stop(args.name, kill=args.kill)
        else:
            lines = status()
            print("\n".join(lines) if lines else "no broker is running")
    except BrokerError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
