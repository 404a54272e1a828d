"""The console command and the trio.run script against a real broker, as a user runs them:
separate processes. The parts that need no broker are in tests/unit/test_cli_usage.py."""

from __future__ import annotations

import functools
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import trio
from _support import listening_url
from trio_websocket import ConnectionClosed, open_websocket_url

from kafka_ws_trio.testing import KafkaBroker, Record, create_topic, produce

COMMAND = str(Path(sys.executable).parent / "kafka-ws-trio")
START_TIMEOUT = 30


async def _start(args: list[str], nursery: trio.Nursery, stderr: int = subprocess.DEVNULL) -> tuple[trio.Process, str]:
    """Start a server process; return it and the URL from its 'listening on' line."""
    run = functools.partial(trio.run_process, args, stdout=subprocess.PIPE, stderr=stderr, check=False)
    process: trio.Process = await nursery.start(run)
    url = await listening_url(process, START_TIMEOUT)
    return process, url


@pytest.mark.timeout(90)
async def test_serve_exits_0_on_sigterm_and_closes_sessions_with_1001(kafka_broker: KafkaBroker) -> None:
    async with trio.open_nursery() as nursery:
        process, url = await _start([COMMAND, "serve", "--kafka", kafka_broker.bootstrap, "--port", "0"], nursery)
        async with open_websocket_url(url + "/kafka") as ws:
            process.send_signal(signal.SIGTERM)
            with trio.fail_after(15), pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
            assert closed.value.reason.code == 1001
        with trio.fail_after(15):
            assert await process.wait() == 0


@pytest.mark.timeout(90)
async def test_serve_says_it_is_listening_in_one_line(kafka_broker: KafkaBroker) -> None:
    async with trio.open_nursery() as nursery:
        args = [COMMAND, "serve", "--kafka", kafka_broker.bootstrap, "--port", "0"]
        process, _ = await _start(args, nursery, stderr=subprocess.PIPE)
        process.send_signal(signal.SIGINT)
        assert process.stdout is not None
        assert process.stderr is not None
        with trio.fail_after(15):
            rest_of_stdout = b"".join([chunk async for chunk in process.stdout])
            stderr = b"".join([chunk async for chunk in process.stderr]).decode()
            assert await process.wait() == 0
    assert rest_of_stdout == b""
    # What it logged before the signal: nothing (the one line is on stdout, with the URL).
    lines = stderr.splitlines()
    assert "got SIGINT" in lines[0], stderr
    assert "listening" not in stderr


@pytest.mark.timeout(90)
async def test_offsets_and_tail_print_what_the_proxy_reads(kafka_broker: KafkaBroker, kafka_topic: str) -> None:
    produce(kafka_broker, kafka_topic, [Record(b"v1", key=b"k1", headers=[("h", b"x")]), Record(b"v2")])
    async with trio.open_nursery() as nursery:
        process, url = await _start([COMMAND, "serve", "--kafka", kafka_broker.bootstrap, "--port", "0"], nursery)
        route = url + "/kafka"
        try:
            with trio.fail_after(30):
                earliest = await trio.run_process(
                    [COMMAND, "offsets", route, "--topic", kafka_topic, "--at", "earliest"], capture_stdout=True
                )
                latest = await trio.run_process(
                    [COMMAND, "offsets", route, "--topic", kafka_topic], capture_stdout=True
                )
                tail = await trio.run_process(
                    [COMMAND, "tail", route, "--topic", kafka_topic, "--from", "earliest"], capture_stdout=True
                )
                missing = await trio.run_process(
                    [COMMAND, "tail", route, "--topic", "no-such-topic"], capture_stderr=True, check=False
                )
                at_end = await trio.run_process(
                    [COMMAND, "tail", route, "--topic", kafka_topic, "--from", "latest"],
                    capture_stdout=True,
                    capture_stderr=True,
                )
                just_one = await trio.run_process(
                    [COMMAND, "tail", route, "--topic", kafka_topic, "--from", "earliest", "--max", "1"],
                    capture_stdout=True,
                )
        finally:
            process.send_signal(signal.SIGINT)
    assert earliest.stdout.decode().strip() == "0"
    assert latest.stdout.decode().strip() == "2"
    lines = tail.stdout.decode().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("offset=0 ")
    assert "key=k1 h=x" in lines[0]
    assert lines[0].endswith("\tv1")
    assert lines[1].startswith("offset=1 ")
    assert "key=null" in lines[1]
    assert lines[1].endswith("\tv2")
    assert missing.returncode == 1
    assert b"not found topic" in missing.stderr
    assert at_end.stdout == b""
    assert at_end.stderr.decode().splitlines()[0] == (
        "kafka-ws-trio: no records at or after offset 2; use --follow to wait for new ones"
    )
    assert len(just_one.stdout.decode().splitlines()) == 1


@pytest.mark.timeout(90)
async def test_trio_run_script_serves_and_stops_on_ctrl_c(
    kafka_broker: KafkaBroker, tmp_path: Path, repo_root: Path
) -> None:
    config = tmp_path / "proxy.toml"
    config.write_text(f'[server]\nport = 0\n[[routes]]\nuri = "/kafka"\nnodes = ["{kafka_broker.bootstrap}"]\n')
    async with trio.open_nursery() as nursery:
        process, url = await _start([sys.executable, str(repo_root / "scripts" / "serve.py"), str(config)], nursery)
        from kafka_ws_trio.client import open_client

        async with open_client(url + "/kafka") as client:
            assert await client.ping(b"hello") == b"hello"
        process.send_signal(signal.SIGINT)
        with trio.fail_after(15):
            assert await process.wait() == 0


#: Seconds a wrong-port or wrong-scheme failure may take: the old client waited out its 10 s connect timeout.
QUICK_FAILURE_S = 5.0


@pytest.mark.timeout(90)
async def test_the_kafka_port_and_wss_to_a_plain_proxy_are_named_at_once(kafka_broker: KafkaBroker) -> None:
    kafka_port = kafka_broker.bootstrap.rsplit(":", 1)[1]
    async with trio.open_nursery() as nursery:
        process, url = await _start([COMMAND, "serve", "--kafka", kafka_broker.bootstrap, "--port", "0"], nursery)
        proxy = url.removeprefix("ws://")
        try:
            with trio.fail_after(30):
                started = trio.current_time()
                kafka = await trio.run_process(
                    [COMMAND, "offsets", f"ws://127.0.0.1:{kafka_port}/kafka", "--topic", "t"],
                    capture_stderr=True,
                    check=False,
                )
                kafka_took = trio.current_time() - started
                started = trio.current_time()
                tls = await trio.run_process(
                    [COMMAND, "offsets", f"wss://{proxy}/kafka", "--topic", "t"], capture_stderr=True, check=False
                )
                tls_took = trio.current_time() - started
        finally:
            process.send_signal(signal.SIGINT)
    assert kafka.returncode == 1
    assert kafka.stderr.decode().splitlines()[0] == (
        f"kafka-ws-trio: error: could not connect to the proxy at 127.0.0.1:{kafka_port}: "
        "not a WebSocket server (it closed the connection without an HTTP answer to the upgrade request)"
    )
    assert tls.returncode == 1
    assert tls.stderr.decode().splitlines()[0] == (
        f"kafka-ws-trio: error: could not connect to the proxy at {proxy}: "
        "TLS handshake failed ([SSL: WRONG_VERSION_NUMBER] wrong version number); is the proxy serving plain ws://?"
    )
    assert b"Traceback" not in kafka.stderr + tls.stderr
    assert kafka_took < QUICK_FAILURE_S
    assert tls_took < QUICK_FAILURE_S


def _delete_records_before(broker: KafkaBroker, topic: str, offset: int) -> None:
    """What retention does to old records: partition 0's log now starts at ``offset``."""
    from kafka import TopicPartition
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(**broker.client_config())
    try:
        admin.delete_records({TopicPartition(topic, 0): offset}, timeout_ms=30_000)
    finally:
        admin.close()


@pytest.mark.timeout(90)
async def test_tail_from_an_offset_out_of_range_names_the_range(kafka_broker: KafkaBroker) -> None:
    short, empty, trimmed = (create_topic(kafka_broker) for _ in range(3))
    produce(kafka_broker, short, [b"a", b"b"])
    produce(kafka_broker, trimmed, [b"a", b"b", b"c", b"d"])
    await trio.to_thread.run_sync(_delete_records_before, kafka_broker, trimmed, 3)
    async with trio.open_nursery() as nursery:
        process, url = await _start([COMMAND, "serve", "--kafka", kafka_broker.bootstrap, "--port", "0"], nursery)
        route = url + "/kafka"
        try:
            with trio.fail_after(60):
                results = [
                    await trio.run_process(
                        [COMMAND, "tail", route, "--topic", topic, "--from", start], capture_stderr=True, check=False
                    )
                    for topic, start in ((short, "999"), (empty, "5"), (trimmed, "1"))
                ]
        finally:
            process.send_signal(signal.SIGINT)
    first_lines = [result.stderr.decode().splitlines()[0] for result in results]
    assert first_lines == [
        f"kafka-ws-trio: error: offset 999 is out of range for {short} partition 0: "
        "it holds offsets 0 to 1 (the next record gets 2); use --from earliest or --from latest",
        f"kafka-ws-trio: error: offset 5 is out of range for {empty} partition 0: "
        "it holds no records now (the next record gets offset 0); use --from earliest or --from latest",
        f"kafka-ws-trio: error: offset 1 is out of range for {trimmed} partition 0: "
        "it holds only offset 3 (the next record gets 4); use --from earliest or --from latest",
    ]
    assert [result.returncode for result in results] == [1, 1, 1]
    assert all(b"Traceback" not in result.stderr for result in results)


async def _tail(route: str, topic: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    """``kafka-ws-trio tail`` to its end; stderr is a pipe, not a terminal."""
    command = [COMMAND, "tail", route, "--topic", topic, *args]
    return await trio.run_process(command, capture_stdout=True, capture_stderr=True, check=False)


def _lines(result: subprocess.CompletedProcess[bytes]) -> list[str]:
    assert result.returncode == 0, result.stderr
    return sorted(result.stdout.decode().splitlines())


def _partition_offset(line: str) -> tuple[int, int]:
    where, offset = line.split()[:2]
    return int(where.removeprefix("partition=")), int(offset.removeprefix("offset="))


@pytest.mark.timeout(120)
async def test_tail_reads_every_partition_from_a_time_naming_the_partition_of_each_record(
    kafka_broker: KafkaBroker,
) -> None:
    topic = create_topic(kafka_broker, partitions=3)
    now = int(time.time() * 1000)
    hour_ago = now - 3_600_000
    for partition in range(3):  # two records an hour old, then two of now, in each partition
        produce(kafka_broker, topic, [Record(b"old", timestamp_ms=hour_ago + n) for n in range(2)], partition=partition)
        produce(kafka_broker, topic, [Record(b"new", timestamp_ms=now + n) for n in range(2)], partition=partition)
    iso = datetime.fromtimestamp((hour_ago + 1) / 1000, tz=timezone.utc).isoformat(timespec="milliseconds")
    async with trio.open_nursery() as nursery:
        process, url = await _start([COMMAND, "serve", "--kafka", kafka_broker.bootstrap, "--port", "0"], nursery)
        route = url + "/kafka"
        try:
            with trio.fail_after(60):
                everything = await _tail(route, topic, "--partition", "all")
                recent = await _tail(route, topic, "--partition", "all", "--from", "-5m")
                since = await _tail(route, topic, "--partition", "all", "--from", iso.replace("+00:00", "Z"))
                one = await _tail(route, topic, "--partition", "2", "--from", "-5m")
                at_end = await _tail(route, topic, "--partition", "all", "--from", "latest")
        finally:
            process.send_signal(signal.SIGINT)
    assert [_partition_offset(line) for line in _lines(everything)] == [(p, o) for p in range(3) for o in range(4)]
    assert all(line.endswith("\told") == (line.split()[1] in ("offset=0", "offset=1")) for line in _lines(everything))
    assert [_partition_offset(line) for line in _lines(recent)] == [(p, o) for p in range(3) for o in (2, 3)]
    assert [_partition_offset(line) for line in _lines(since)] == [(p, o) for p in range(3) for o in (1, 2, 3)]
    assert [line.split()[0] for line in _lines(one)] == ["offset=2", "offset=3"], "one partition: not named"
    assert everything.stderr == recent.stderr == b"", "no status line when stderr is not a terminal"
    assert at_end.stdout == b""
    assert at_end.stderr.decode().splitlines() == [
        "kafka-ws-trio: no records in any of 3 partitions from where they started; use --follow to wait for new ones"
    ]


@pytest.mark.timeout(120)
async def test_tail_filters_by_key_key_prefix_and_header(kafka_broker: KafkaBroker) -> None:
    topic = create_topic(kafka_broker)
    produce(
        kafka_broker,
        topic,
        [
            Record(b"0", key=b"eu-1", headers=[("src", b"web")]),
            Record(b"1", key=b"us-2", headers=[("src", b"app")]),
            Record(b"2", key=b"eu-3"),
            Record(b"3", key=None, headers=[("src", b"web")]),
            Record(b"4", key=b"us-2", headers=[("trace", b"")]),
        ],
    )
    async with trio.open_nursery() as nursery:
        process, url = await _start([COMMAND, "serve", "--kafka", kafka_broker.bootstrap, "--port", "0"], nursery)
        route = url + "/kafka"
        try:
            with trio.fail_after(60):
                keys = await _tail(route, topic, "--key", "eu-3", "--key", "us-2")
                prefix = await _tail(route, topic, "--key-prefix", "eu-", "--header", "src=web")
                present = await _tail(route, topic, "--header", "src")
                none = await _tail(route, topic, "--key", "nobody")
        finally:
            process.send_signal(signal.SIGINT)

    def values(result: subprocess.CompletedProcess[bytes]) -> list[str]:
        return [line.rsplit("\t", 1)[1] for line in _lines(result)]

    assert values(keys) == ["1", "2", "4"]
    assert values(prefix) == ["0"]
    assert values(present) == ["0", "1", "3"]
    assert none.stdout == b""
    assert none.stderr.decode().splitlines() == [
        "kafka-ws-trio: no matching records at or after offset 0; use --follow to wait for new ones"
    ]
