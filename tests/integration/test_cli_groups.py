"""``kafka-ws-trio tail --group G [--commit]`` as a user runs it (a separate process) against a
real proxy and broker, and the flag combinations it refuses."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

import pytest
import trio
from _support import running_proxy

from kafka_ws_trio._config import ProxyConfig, ServerConfig
from kafka_ws_trio.testing import KafkaBroker, create_topic, produce, unique_topic_name

pytestmark = pytest.mark.timeout(180)

COMMAND: Final = str(Path(sys.executable).parent / "kafka-ws-trio")
ROUTE: Final = "/kafka"
#: What one test may take, end to end: each run of tail joins the group, which can take seconds.
TEST_LIMIT: Final = 150.0


@asynccontextmanager
async def proxy_url(broker: KafkaBroker) -> AsyncIterator[str]:
    config = ProxyConfig.single_route(broker.bootstrap, ROUTE, server=ServerConfig(port=0))
    async with running_proxy(config) as server:
        yield server.url + ROUTE


async def tail(*args: str) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process([COMMAND, "tail", *args], capture_stdout=True, capture_stderr=True, check=False)


def printed(result: subprocess.CompletedProcess[bytes]) -> list[tuple[int, int, str]]:
    """(partition, offset, value) of each line printed, sorted (partitions interleave)."""
    assert result.returncode == 0, result.stderr
    assert b"Traceback" not in result.stderr
    lines = []
    for line in result.stdout.decode().splitlines():
        where, offset = line.split()[:2]
        lines.append((int(where.removeprefix("partition=")), int(offset.removeprefix("offset=")), line.split("\t")[1]))
    return sorted(lines)


async def test_tail_group_commit_prints_the_records_and_the_next_run_goes_on_after_them(
    kafka_broker: KafkaBroker,
) -> None:
    topic = create_topic(kafka_broker, partitions=2)
    for p in range(2):
        produce(kafka_broker, topic, [f"old-{p}-{n}".encode() for n in range(3)], partition=p)
    group = unique_topic_name("group")
    with trio.fail_after(TEST_LIMIT):
        async with proxy_url(kafka_broker) as url:
            command = (url, "--topic", topic, "--group", group, "--commit")
            first = await tail(*command)
            second = await tail(*command)
            for p in range(2):  # in a thread: the proxy runs in this Trio loop
                await trio.to_thread.run_sync(lambda p=p: produce(kafka_broker, topic, [f"new-{p}"], partition=p))
            third = await tail(*command)
    assert printed(first) == [(p, n, f"old-{p}-{n}") for p in range(2) for n in range(3)]
    assert first.stderr == b""
    assert printed(second) == [], "nothing old: it goes on after the commit"
    assert second.stderr.decode().splitlines()[0] == (
        "kafka-ws-trio: no records in any of 2 partitions from where they started; use --follow to wait for new ones"
    )
    assert printed(third) == [(0, 3, "new-0"), (1, 3, "new-1")]


async def test_tail_group_without_commit_leaves_the_group_where_it_was(kafka_broker: KafkaBroker) -> None:
    topic = create_topic(kafka_broker)
    produce(kafka_broker, topic, [b"a", b"b"])
    group = unique_topic_name("group")
    with trio.fail_after(TEST_LIMIT):
        async with proxy_url(kafka_broker) as url:
            runs = [await tail(url, "--topic", topic, "--group", group) for _ in range(2)]
    assert printed(runs[0]) == printed(runs[1]) == [(0, 0, "a"), (0, 1, "b")]


async def test_tail_group_commit_with_max_commits_only_what_it_printed(kafka_broker: KafkaBroker) -> None:
    """--max cuts a batch: the commit is past the last record printed, not past the batch."""
    topic = create_topic(kafka_broker)
    produce(kafka_broker, topic, [f"v{n}".encode() for n in range(10)])
    group = unique_topic_name("group")
    with trio.fail_after(TEST_LIMIT):
        async with proxy_url(kafka_broker) as url:
            command = (url, "--topic", topic, "--group", group, "--commit")
            first = await tail(*command, "--max", "3")
            rest = await tail(*command)
    assert printed(first) == [(0, n, f"v{n}") for n in range(3)]
    assert printed(rest) == [(0, n, f"v{n}") for n in range(3, 10)]


@pytest.mark.parametrize(
    ("flags", "first_line"),
    [
        (
            ["--commit"],
            "kafka-ws-trio: error: --commit needs --group: only a consumer group has offsets to commit",
        ),
        (
            ["--commit", "--partition", "all"],
            "kafka-ws-trio: error: --commit needs --group: only a consumer group has offsets to commit",
        ),
        (
            ["--group", "g", "--partition", "0"],
            "kafka-ws-trio: error: --group and --partition do not go together: the group assigns the partitions",
        ),
        (
            ["--group", "g", "--commit", "--from", "5"],
            "kafka-ws-trio: error: --from OFFSET names an offset of one partition, and --group reads the ones "
            "the group assigns; use earliest, latest or a time",
        ),
        (["--group", "", "--commit"], "kafka-ws-trio: error: --group takes a group name, not an empty one"),
    ],
)
async def test_tail_refuses_group_flags_that_do_not_go_together(flags: list[str], first_line: str) -> None:
    with trio.fail_after(30):
        # Refused before connecting: nothing listens at this address.
        result = await tail("ws://127.0.0.1:9/kafka", "--topic", "t", *flags)
    assert result.returncode == 1
    assert result.stdout == b""
    assert result.stderr.decode().splitlines()[0] == first_line
    assert b"Traceback" not in result.stderr


async def offsets(*args: str) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process([COMMAND, "offsets", *args], capture_stdout=True, capture_stderr=True, check=False)


async def test_offsets_group_prints_each_committed_partition_with_its_lag(kafka_broker: KafkaBroker) -> None:
    """``offsets --group``: after ``tail --group --commit`` read 3 of 5 records of partition 1 (and
    nothing of partition 0, which has none), one line with the committed offset and the lag."""
    topic = create_topic(kafka_broker, partitions=2)
    produce(kafka_broker, topic, [f"r{n}".encode() for n in range(5)], partition=1)
    group = unique_topic_name("group")
    with trio.fail_after(TEST_LIMIT):
        async with proxy_url(kafka_broker) as url:
            before = await offsets(url, "--topic", topic, "--group", group)
            assert before.returncode == 0 and before.stdout == b"", before
            assert before.stderr.decode().splitlines()[0] == (
                f"group {group} has committed no offsets for topic {topic}"
            )
            read = await tail(url, "--topic", topic, "--group", group, "--commit", "--from", "earliest", "--max", "3")
            assert len(printed(read)) == 3
            after = await offsets(url, "--topic", topic, "--group", group)
            assert after.returncode == 0, after.stderr
            assert after.stdout.decode().splitlines() == ["partition=1 committed=3 latest=5 lag=2"]
            missing = await offsets(url, "--topic", "no-such-topic", "--group", group)
            assert missing.returncode == 1
            assert missing.stderr.decode().splitlines()[0] == (
                f"kafka-ws-trio: error: the proxy answered: failed to read group offsets, group: {group},"
                " topic: no-such-topic, err: not found topic (code 10)"
            )
