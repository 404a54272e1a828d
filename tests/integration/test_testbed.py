"""The test bed itself: a real broker, reachable on every listener, started and
stopped by the project's own scripts. These run against both release lines
(tox factors kafka4 and kafka39)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _support import own_broker_name, own_port_base
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from kafka_ws_trio.testing import KafkaBroker, Record, _broker, create_topic, produce

LISTENER_CASES = [
    ("PLAINTEXT", None),
    ("SSL", None),
    ("SASL_PLAINTEXT", "PLAIN"),
    ("SASL_PLAINTEXT", "SCRAM-SHA-256"),
    ("SASL_PLAINTEXT", "SCRAM-SHA-512"),
    ("SASL_SSL", "PLAIN"),
    ("SASL_SSL", "SCRAM-SHA-256"),
    ("SASL_SSL", "SCRAM-SHA-512"),
]


def _consume(config: dict[str, object], topic: str, first: int, count: int, timeout: float = 30.0) -> list[bytes]:
    consumer = KafkaConsumer(**config, enable_auto_commit=False, request_timeout_ms=10_000)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, first)
        values: list[bytes] = []
        deadline = time.monotonic() + timeout
        while len(values) < count and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                values.extend(r.value for r in records)
        return values
    finally:
        consumer.close()


@pytest.mark.parametrize(("listener", "mechanism"), LISTENER_CASES, ids=[f"{a}-{b}" for a, b in LISTENER_CASES])
def test_produce_and_consume_on_every_listener(
    kafka_broker: KafkaBroker, kafka_topic: str, listener: str, mechanism: str | None
) -> None:
    config = kafka_broker.client_config(listener, mechanism=mechanism or "PLAIN")  # type: ignore[arg-type]
    values = [f"{listener}-{mechanism}-{i}".encode() for i in range(5)]
    offsets = produce(kafka_broker, kafka_topic, values, **config)
    assert offsets == [0, 1, 2, 3, 4]
    assert _consume(config, kafka_topic, 0, 5) == values


def test_ssl_listener_verifies_the_broker_certificate(kafka_broker: KafkaBroker, kafka_topic: str) -> None:
    """Without the test CA the broker's certificate must be rejected: proof that
    the SSL case above really verified it against KAFKA_CA_FILE."""
    config = kafka_broker.client_config("SSL")
    config["ssl_cafile"] = None  # the system's CAs only
    with pytest.raises(KafkaError):
        KafkaProducer(**config, bootstrap_timeout_ms=4_000, max_block_ms=4_000)


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_wrong_password_is_refused(kafka_broker: KafkaBroker, mechanism: str) -> None:
    log = Path(kafka_broker.log_file) if kafka_broker.log_file else None
    log_size = log.stat().st_size if log else 0
    wrong = kafka_broker.client_config("SASL_PLAINTEXT", mechanism=mechanism, password="not-the-password")  # type: ignore[arg-type]
    with pytest.raises(KafkaError):
        KafkaProducer(**wrong, bootstrap_timeout_ms=3_000, max_block_ms=3_000)
    # The same settings with the right password work, so the password was the reason ...
    right = kafka_broker.client_config("SASL_PLAINTEXT", mechanism=mechanism)  # type: ignore[arg-type]
    KafkaProducer(**right, bootstrap_timeout_ms=10_000).close()
    # ... and the broker itself logged the refusal, when we know where it logs.
    if log is not None:
        with log.open("rb") as f:
            f.seek(log_size)
            new = f.read().decode(errors="replace")
        assert "Failed authentication" in new


def test_records_keep_keys_headers_and_compression(kafka_broker: KafkaBroker) -> None:
    topic = create_topic(kafka_broker)
    records = [
        Record(b"v0", key=b"k0", headers=[("h", b"1"), ("e", b"")]),
        Record(None, key=b"tombstone"),
        Record(b"", key=None),
    ]
    assert produce(kafka_broker, topic, records, compression_type="gzip") == [0, 1, 2]
    consumer = KafkaConsumer(**kafka_broker.client_config(), enable_auto_commit=False)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, 0)
        got = []
        deadline = time.monotonic() + 30
        while len(got) < 3 and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                got.extend(batch)
    finally:
        consumer.close()
    assert [(r.key, r.value) for r in got] == [(b"k0", b"v0"), (b"tombstone", None), (None, b"")]
    assert list(got[0].headers) == [("h", b"1"), ("e", b"")]


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


@pytest.mark.slow
def test_kafka_up_then_down_leaves_no_process_and_no_data(repo_root: Path) -> None:
    """`scripts/kafka up` twice prints the same lines; `down` leaves nothing behind."""
    line = os.environ.get("KAFKA_WS_TRIO_BROKER", "4")
    name = own_broker_name(f"lifecycle-{line.replace('.', '')}")
    base = own_port_base(25292)
    script = [str(repo_root / "scripts" / "kafka")]
    run_dir = _broker.home_dir() / "run" / name
    env = {**os.environ, "PYTHON": sys.executable}
    try:
        first = subprocess.run(
            [*script, "up", "--version", line, "--name", name, "--port-base", str(base)],
            capture_output=True,
            text=True,
            timeout=180,
            env=env,
        )
        assert first.returncode == 0, first.stderr
        assert "# started: yes" in first.stdout
        exports = [ln for ln in first.stdout.splitlines() if ln.startswith("export ")]
        keys = {ln.split("=", 1)[0].removeprefix("export ") for ln in exports}
        assert {
            "KAFKA_VERSION",
            "KAFKA_BOOTSTRAP",
            "KAFKA_BOOTSTRAP_SSL",
            "KAFKA_BOOTSTRAP_SASL",
            "KAFKA_BOOTSTRAP_SASL_SSL",
            "KAFKA_CA_FILE",
            "KAFKA_SASL_USERNAME",
            "KAFKA_SASL_PASSWORD",
        } <= keys
        assert f"export KAFKA_BOOTSTRAP=127.0.0.1:{base}" in exports
        assert f"export KAFKA_VERSION={_broker.VERSIONS[line]}" in exports
        assert run_dir.is_dir()
        assert _processes_mentioning(str(run_dir))

        again = subprocess.run(
            [*script, "up", "--version", line, "--name", name, "--port-base", str(base)],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert again.returncode == 0, again.stderr
        assert [ln for ln in again.stdout.splitlines() if ln.startswith("export ")] == exports
        assert "# started: no" in again.stdout

        status = subprocess.run([*script, "status"], capture_output=True, text=True, timeout=60, env=env)
        assert name in status.stdout
        assert f"127.0.0.1:{base}" in status.stdout
    finally:
        down = subprocess.run([*script, "down", "--name", name], capture_output=True, text=True, timeout=120, env=env)
    assert down.returncode == 0, down.stderr
    assert _processes_mentioning(str(run_dir)) == []
    assert not run_dir.exists()
    assert _broker._port_free(base)
