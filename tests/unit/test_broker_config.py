"""Unit tests of the broker manager's pure parts (no broker is started here)."""

from __future__ import annotations

import shlex
import subprocess
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
