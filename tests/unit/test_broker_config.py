"""Unit tests of the broker manager's pure parts (no broker is started here)."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from kafka_ws_trio.testing import BrokerError, KafkaBroker, _broker, start_broker


@pytest.mark.parametrize(
    ("given", "line"), [("4", "4"), ("kafka4", "4"), ("4.3.1", "4"), ("3.9", "3.9"), ("39", "3.9"), ("3.9.2", "3.9")]
)
def test_release_lines_resolve(given: str, line: str) -> None:
    assert _broker.resolve_line(given) == line


def test_unknown_release_line_is_refused() -> None:
    with pytest.raises(BrokerError, match=r"unknown Kafka version '2\.8'"):
        _broker.resolve_line("2.8")


def test_each_line_is_pinned_to_one_release() -> None:
    assert set(_broker.VERSIONS) == {"3.9", "4"}
    assert _broker.VERSIONS["3.9"].startswith("3.9.")
    assert _broker.VERSIONS["4"].startswith("4.")
    bases = sorted(_broker.DEFAULT_PORT_BASES.values())
    assert bases[1] - bases[0] >= len(_broker.LISTENERS), "the two lines' port blocks overlap"


def test_server_properties_make_a_single_kraft_node(tmp_path: Path) -> None:
    ports = {name: 40000 + i for i, name in enumerate(_broker.LISTENERS)}
    certs = {k: tmp_path / f"{k}.p12" for k in ("keystore", "truststore")}
    text = _broker.server_properties(ports, tmp_path / "data", certs, "storepw", "saslpw")
    props = dict(line.split("=", 1) for line in text.splitlines())
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:40004"
    assert props["log.retention.ms"] == "-1"  # records with old timestamps stay
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert "CONTROLLER" not in props["advertised.listeners"]
    for listener in props["listeners"].split(","):
        assert "://127.0.0.1:" in listener, "every listener binds loopback only"
    assert props["sasl.enabled.mechanisms"] == "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"
    assert 'user_kwt-user="saslpw"' in props["listener.name.sasl_ssl.plain.sasl.jaas.config"]


def test_env_lines_are_shell_safe() -> None:
    env = {"KAFKA_VERSION": "4.3.1", "KAFKA_CA_FILE": "/tmp/a dir/ca.pem", "KAFKA_STARTED": "1"}
    text = _broker.env_lines(env)
    assert "KAFKA_STARTED" not in text.replace("# started", "")
    assert text.endswith("# started: yes\n")
    out = subprocess.run(
        ["bash", "-c", text + 'printf %s "$KAFKA_CA_FILE"'], capture_output=True, text=True, check=True
    ).stdout
    assert out == "/tmp/a dir/ca.pem"
    assert shlex.quote("/tmp/a dir/ca.pem") in text


def test_broker_from_env_prefers_an_existing_bootstrap() -> None:
    env = {"KAFKA_BOOTSTRAP": "10.0.0.1:9092", "KAFKA_SASL_PASSWORD": "s3cret", "KAFKA_VERSION": "9.9"}
    broker = start_broker(env=env)
    assert broker.bootstrap == "10.0.0.1:9092"
    assert broker.started is False
    assert "s3cret" not in repr(broker)


def test_missing_listener_is_a_clear_error() -> None:
    broker = KafkaBroker(version="x", bootstrap="127.0.0.1:1")
    with pytest.raises(BrokerError, match="no SASL_SSL listener"):
        broker.client_config("SASL_SSL")


def test_client_config_for_each_listener() -> None:
    broker = KafkaBroker(
        version="x",
        bootstrap="h:1",
        bootstrap_ssl="h:2",
        bootstrap_sasl="h:3",
        bootstrap_sasl_ssl="h:4",
        ca_file="/ca.pem",
        sasl_username="u",
        sasl_password="p",
    )
    assert broker.client_config() == {"bootstrap_servers": "h:1", "security_protocol": "PLAINTEXT"}
    ssl = broker.client_config("SSL")
    assert ssl["ssl_cafile"] == "/ca.pem"
    assert ssl["bootstrap_servers"] == "h:2"
    sasl = broker.client_config("SASL_SSL", mechanism="SCRAM-SHA-512", password="bad")
    assert sasl["sasl_mechanism"] == "SCRAM-SHA-512"
    assert sasl["sasl_plain_password"] == "bad"
    assert sasl["ssl_cafile"] == "/ca.pem"
    assert sasl["bootstrap_servers"] == "h:4"


def _fake_broker(tmp_path: Path, first_run_says: str) -> tuple[dict[str, object], Path]:
    """A stand-in broker command: its first launch prints ``first_run_says`` and exits 1, later ones get ready."""
    launches = tmp_path / "launches"
    script = tmp_path / "fake_broker.py"
    script.write_text(
        "import pathlib, sys, time\n"
        f"launches = pathlib.Path({str(launches)!r})\n"
        "n = int(launches.read_text()) if launches.exists() else 0\n"
        "launches.write_text(str(n + 1))\n"
        f"if n == 0:\n    print({first_run_says!r}, flush=True)\n    sys.exit(1)\n"
        f"print({_broker.process.READY_LINE!r}, flush=True)\n"
        "time.sleep(60)\n"
    )
    state: dict[str, object] = {
        "pid": 0,
        "marker": str(script),
        "line": "4",
        "env": {},
        "log": str(tmp_path / "broker.log"),
        "cmd": [sys.executable, str(script)],
        "ports": [],
    }
    return state, launches


def test_a_port_taken_between_the_check_and_the_bind_is_tried_again(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    said = f"ERROR [KafkaServer] Socket server failed to bind to 127.0.0.1:{port}: Address already in use."
    state, launches = _fake_broker(tmp_path, said)
    progress: list[str] = []
    try:
        _broker.process._launch_retrying(tmp_path, state, 20.0, progress.append)  # type: ignore[arg-type]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(state["pid"]), signal.SIGKILL)  # type: ignore[call-overload]
    assert launches.read_text() == "2"
    again = f"port {port} on 127.0.0.1 was taken while the broker started; starting it again once free"
    assert progress == [f"starting the broker (log: {tmp_path / 'broker.log'})", again, progress[-1]]


def test_a_broker_failing_for_another_reason_is_not_started_again(tmp_path: Path) -> None:
    state, launches = _fake_broker(tmp_path, "ERROR Exiting Kafka due to fatal exception")
    with pytest.raises(BrokerError, match="exited with code 1 while starting") as failed:
        _broker.process._launch_retrying(tmp_path, state, 20.0, lambda _: None)  # type: ignore[arg-type]
    assert not isinstance(failed.value, _broker.process.PortTaken)
    assert "fatal exception" in str(failed.value)
    assert launches.read_text() == "1"
