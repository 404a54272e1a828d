"""``kafka-ws-trio produce`` against the real broker through a real proxy (``kafka-ws-trio serve``),
both run as processes, as a user runs them; what it wrote is read back with kafka-python.
Its option checks and pure parts are in tests/unit/test_cli_produce_usage.py."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import pytest

from kafka_ws_trio.testing import KafkaBroker, create_topic, delete_topic

pytestmark = pytest.mark.timeout(120)

COMMAND = str(Path(sys.executable).parent / "kafka-ws-trio")
#: Seconds the proxy may take to say it is listening, and a produce command to finish.
START_TIMEOUT: Final = 30.0
RUN_TIMEOUT: Final = 60.0


@contextmanager
def _serving(*args: str, log: Path) -> Iterator[str]:
    """``kafka-ws-trio serve`` for the block; its route's URL (stderr goes to ``log``)."""
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [COMMAND, "serve", *args], stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL
        )
    assert process.stdout is not None
    try:
        ready, _, _ = select.select([process.stdout], [], [], START_TIMEOUT)
        assert ready, f"the proxy did not start within {START_TIMEOUT} s: {log.read_text()}"
        line = process.stdout.readline().decode()
        assert "listening on ws://" in line, f"{line!r} {log.read_text()}"
        yield line.split("listening on ", 1)[1].split()[0] + "/kafka"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


@pytest.fixture(scope="module")
def proxy(kafka_broker: KafkaBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A proxy in front of the test broker, shared by this module's tests."""
    log = tmp_path_factory.mktemp("proxy") / "serve.log"
    with _serving("--kafka", kafka_broker.bootstrap, "--port", "0", log=log) as url:
        yield url


@pytest.fixture
def topic3(kafka_broker: KafkaBroker) -> Iterator[str]:
    name = create_topic(kafka_broker, partitions=3)
    yield name
    delete_topic(kafka_broker, name)


def _produce(url: str, topic: str, *options: str, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    """``kafka-ws-trio produce`` to its end, ``stdin`` as its input; stderr is a pipe, not a terminal."""
    command = [COMMAND, "produce", url, "--topic", topic, *options]
    result = subprocess.run(command, input=stdin, capture_output=True, timeout=RUN_TIMEOUT, check=False)
    return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(), result.stderr.decode())


def _stored(broker: KafkaBroker, topic: str) -> list[Any]:
    """Every record of ``topic`` as kafka-python reads it, in (partition, offset) order."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**broker.client_config(), enable_auto_commit=False, consumer_timeout_ms=3000)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        ends = consumer.end_offsets(partitions)
        records: list[Any] = []
        deadline = time.monotonic() + RUN_TIMEOUT
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            assert time.monotonic() < deadline, "the records did not come back"
            for batch in consumer.poll(timeout_ms=1000).values():
                records.extend(batch)
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        consumer.close()


def _topics(broker: KafkaBroker) -> set[str]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(**broker.client_config())
    try:
        return set(consumer.topics())
    finally:
        consumer.close()


def _murmur2_partition(key: bytes, partitions: int) -> int:
    """The partition the Java client's default partitioner picks for ``key``."""
    from kafka.partitioner.default import murmur2

    return int((murmur2(key) & 0x7FFFFFFF) % partitions)


def test_produce_writes_each_line_of_stdin_as_a_record_in_order_and_sums_up_the_offsets(
    kafka_broker: KafkaBroker, kafka_topic: str, proxy: str
) -> None:
    lines = [f"line {i}" for i in range(247)] + ["", "naïve ☃", "last, with no newline after it"]
    result = _produce(proxy, kafka_topic, stdin="\n".join(lines).encode())
    assert (result.returncode, result.stderr) == (0, ""), "no status line when stderr is not a terminal"
    assert result.stdout == f"wrote 250 records to {kafka_topic}\n  partition 0: 250 records, offsets 0 to 249\n"
    stored = _stored(kafka_broker, kafka_topic)
    assert [r.value for r in stored] == [line.encode() for line in lines]
    assert {(r.key, tuple(r.headers)) for r in stored} == {(None, ())}


def test_produce_writes_each_files_whole_content_as_one_record(
    kafka_broker: KafkaBroker, kafka_topic: str, proxy: str, tmp_path: Path
) -> None:
    contents = [b'{"a": 1,\n "b": [2, 3]}\n', bytes(range(256)) * 3, b""]
    paths = []
    for name, content in zip(("doc.json", "all-bytes.bin", "empty"), contents, strict=True):
        (tmp_path / name).write_bytes(content)
        paths.append(str(tmp_path / name))
    result = _produce(proxy, kafka_topic, "--file", *paths[:2], "--file", paths[2], stdin=b"not read\n")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"wrote 3 records to {kafka_topic}\n  partition 0: 3 records, offsets 0 to 2\n"
    assert [r.value for r in _stored(kafka_broker, kafka_topic)] == contents


def test_produce_puts_the_key_headers_and_partition_on_every_record(
    kafka_broker: KafkaBroker, topic3: str, proxy: str
) -> None:
    options = ["--key", "k1", "--header", "source=cli", "--header", "empty=", "--partition", "2"]
    pinned = _produce(proxy, topic3, *options, stdin=b"a\nb\n")
    keyed = _produce(proxy, topic3, "--key", "user-7", stdin=b"c\nd\ne\n")
    home = _murmur2_partition(b"user-7", 3)
    assert pinned.returncode == keyed.returncode == 0, pinned.stderr + keyed.stderr
    assert pinned.stdout == f"wrote 2 records to {topic3}\n  partition 2: 2 records, offsets 0 to 1\n"
    first = 2 if home == 2 else 0
    assert keyed.stdout == (
        f"wrote 3 records to {topic3}\n  partition {home}: 3 records, offsets {first} to {first + 2}\n"
    )
    stored = [(r.partition, r.key, r.value, list(r.headers)) for r in _stored(kafka_broker, topic3)]
    headers = [("source", b"cli"), ("empty", b"")]
    assert sorted(stored) == sorted(
        [(2, b"k1", b"a", headers), (2, b"k1", b"b", headers)] + [(home, b"user-7", v, []) for v in (b"c", b"d", b"e")]
    )


def test_produce_acks_none_writes_without_offsets_and_leader_with_them(
    kafka_broker: KafkaBroker, kafka_topic: str, proxy: str
) -> None:
    unacknowledged = _produce(proxy, kafka_topic, "--acks", "none", stdin=b"x\ny\n")
    leader = _produce(proxy, kafka_topic, "--acks", "leader", stdin=b"z\n")
    assert unacknowledged.returncode == leader.returncode == 0, unacknowledged.stderr + leader.stderr
    assert unacknowledged.stdout == (
        f"wrote 2 records to {kafka_topic}\n  partition 0: 2 records, offsets not known (acks none)\n"
    )
    assert leader.stdout == f"wrote 1 record to {kafka_topic}\n  partition 0: 1 record, offset 2\n"
    assert [r.value for r in _stored(kafka_broker, kafka_topic)] == [b"x", b"y", b"z"]


def test_produce_to_a_missing_topic_says_so_in_one_line_and_creates_nothing(
    kafka_broker: KafkaBroker, kafka_topic: str, proxy: str
) -> None:
    missing = f"{kafka_topic}-missing"
    result = _produce(proxy, missing, stdin=b"a\nb\n")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"kafka-ws-trio: error: topic '{missing}' not found; nothing was written (the proxy does not create topics)"
    ]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert missing not in _topics(kafka_broker)


def test_produce_to_a_topic_name_kafka_would_refuse_gets_the_proxys_refusal_in_one_line(proxy: str) -> None:
    result = _produce(proxy, "bad topic!", stdin=b"a\n")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "kafka-ws-trio: error: the proxy refused a produce command: invalid produce: invalid topic "
        "\"bad topic!\": only ASCII letters, digits, '.', '_' and '-' are allowed (code 3)"
    ]
    assert result.stdout == ""


def test_produce_lists_the_records_kafka_refused_where_they_came_from_and_exits_1(
    kafka_broker: KafkaBroker, proxy: str, tmp_path: Path
) -> None:
    topic = create_topic(kafka_broker, partitions=1, config={"max.message.bytes": "5000"})
    try:
        big = b"x" * 8000
        refused = (
            f"failed to produce message, topic: {topic}, partition: -1, err: RECORD_TOO_LARGE: 8086 bytes, "
            "more than the topic's max.message.bytes (5000)"
        )
        lines = _produce(proxy, topic, stdin=b"\n".join([b"small-0", *[big] * 23, b"small-1"]) + b"\n")
        (tmp_path / "big.bin").write_bytes(big)
        (tmp_path / "ok.txt").write_bytes(b"small-2")
        files = _produce(proxy, topic, "--file", str(tmp_path / "ok.txt"), str(tmp_path / "big.bin"))
        assert (lines.returncode, files.returncode) == (1, 1)
        assert lines.stderr == files.stderr == ""
        assert lines.stdout.splitlines() == [
            f"wrote 2 of 25 records to {topic}",
            "  partition 0: 2 records, offsets 0 to 1",
            "23 records failed:",
            *[f"  record {i} (line {i + 1}): {refused}" for i in range(1, 21)],
            "  ... and 3 more",
        ]
        assert files.stdout.splitlines() == [
            f"wrote 1 of 2 records to {topic}",
            "  partition 0: 1 record, offset 2",
            "1 record failed:",
            f"  record 1 ({tmp_path / 'big.bin'}): {refused}",
        ]
        assert [r.value for r in _stored(kafka_broker, topic)] == [b"small-0", b"small-1", b"small-2"]
    finally:
        delete_topic(kafka_broker, topic)


def test_produce_to_a_route_that_does_not_take_produce_says_so_in_one_line(
    kafka_broker: KafkaBroker, kafka_topic: str, tmp_path: Path
) -> None:
    config = tmp_path / "proxy.toml"
    config.write_text(
        f'[server]\nport = 0\n[[routes]]\nuri = "/kafka"\nnodes = ["{kafka_broker.bootstrap}"]\nproduce = false\n'
    )
    with _serving("--config", str(config), log=tmp_path / "serve.log") as url:
        result = _produce(url, kafka_topic, stdin=b"a\n")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "kafka-ws-trio: error: the proxy does not take produce commands (APISIX, an older kafka-ws-trio, "
        "or a route with produce = false); nothing was written"
    ]
    assert result.stdout == ""
    assert _stored(kafka_broker, kafka_topic) == []


def test_produce_draws_a_status_line_on_a_terminal_and_clears_it(
    kafka_broker: KafkaBroker, kafka_topic: str, proxy: str
) -> None:
    controller, terminal = os.openpty()
    try:
        process = subprocess.Popen(
            [COMMAND, "produce", proxy, "--topic", kafka_topic, "--batch", "10"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=terminal,
        )
        os.close(terminal)
        terminal = -1
        out, _ = process.communicate(b"".join(b"%d\n" % i for i in range(500)), timeout=RUN_TIMEOUT)
        drawn = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # Linux: EIO once the process has closed the terminal's last copy
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        if terminal >= 0:
            os.close(terminal)
        os.close(controller)
    assert process.returncode == 0
    assert out.decode() == f"wrote 500 records to {kafka_topic}\n  partition 0: 500 records, offsets 0 to 499\n"
    assert drawn.startswith(b"\r0 records sent, 0 acknowledged, 0 failed; 0/s\x1b[K"), drawn[:200]
    assert drawn.endswith(b"\r\x1b[K"), "cleared before the summary"
    assert b"\n" not in drawn.replace(b"\r\n", b""), "drawn over itself"


def test_ctrl_c_stops_reading_and_sums_up_what_was_written(
    kafka_broker: KafkaBroker, kafka_topic: str, proxy: str
) -> None:
    """An interactive run: lines go out as they come, and Ctrl-C ends it with its summary (exit 0: all written)."""
    process = subprocess.Popen(
        [COMMAND, "produce", proxy, "--topic", kafka_topic],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdin is not None
        process.stdin.write(b"one\ntwo\nthree\n")
        process.stdin.flush()  # and left open, as a terminal is
        deadline = time.monotonic() + RUN_TIMEOUT
        while len(_stored(kafka_broker, kafka_topic)) < 3:
            assert time.monotonic() < deadline, "the lines were not written while stdin stayed open"
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=RUN_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert (process.returncode, err) == (0, b"")
    assert out.decode() == (
        f"wrote 3 records to {kafka_topic}\n  partition 0: 3 records, offsets 0 to 2\n"
        "stopped by Ctrl-C before the input ended\n"
    )
