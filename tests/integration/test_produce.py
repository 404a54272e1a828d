"""Produce and transactions through the WebSocket, against the real broker (schema/README.md,
"Produce and transactions"); rows 8 to 10 of the extension checklist, and what the proxy wrote,
read back with kafka-python."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import pytest
import trio
from _streams import StreamClient, stream_client
from _support import running_proxy

from kafka_ws_trio._config import ProxyConfig, ServerConfig
from kafka_ws_trio._proto import ErrorCode, Isolation, StartEdge
from kafka_ws_trio.client import Acks, NotWritten, OutRecord, PubSubClient, PubSubError, Written, open_client
from kafka_ws_trio.testing import KafkaBroker, create_topic, delete_topic, unique_topic_name

pytestmark = pytest.mark.timeout(120)

ROUTE: Final = "/kafka"
#: What one test may take, end to end, on a busy machine.
TEST_LIMIT: Final = 90.0


@pytest.fixture
def topic3(kafka_broker: KafkaBroker) -> Iterator[str]:
    name = create_topic(kafka_broker, partitions=3)
    yield name
    delete_topic(kafka_broker, name)


@asynccontextmanager
async def proxy(broker: KafkaBroker, **route: Any) -> AsyncIterator[str]:
    config = ProxyConfig.single_route(broker.bootstrap, ROUTE, server=ServerConfig(port=0), **route)
    async with running_proxy(config) as server:
        yield server.url + ROUTE


@asynccontextmanager
async def client_of(url: str) -> AsyncIterator[PubSubClient]:
    async with open_client(url, request_timeout=60) as client:
        yield client


def read_back(broker: KafkaBroker, topic: str, *, read_committed: bool = False) -> list[Any]:
    """Every record of ``topic`` as kafka-python sees it, in (partition, offset) order (blocking)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        **broker.client_config(),
        enable_auto_commit=False,
        isolation_level="read_committed" if read_committed else "read_uncommitted",
        consumer_timeout_ms=3000,
    )
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        ends = consumer.end_offsets(partitions)
        records: list[Any] = []
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            for batch in consumer.poll(timeout_ms=1000).values():
                records.extend(batch)
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        consumer.close()


def java_partition(key: bytes, partitions: int) -> int:
    """The partition the Java client's default partitioner picks for ``key`` (murmur2, made positive)."""
    from kafka.partitioner.default import murmur2

    return int((murmur2(key) & 0x7FFFFFFF) % partitions)


async def test_row8_produce_1000_records_with_keys_headers_nulls_and_partitions_reads_back_exactly(
    kafka_broker: KafkaBroker, topic3: str
) -> None:
    """1,000 records: keyed ones (murmur2 picks the partition), explicit partitions, tombstones, empty
    keys and values, headers; the answer has 1,000 results in order, and kafka-python reads exactly them."""
    records = []
    for i in range(1000):
        kind = i % 5
        if kind == 0:
            records.append(OutRecord(key=f"user-{i}".encode(), value=f"v{i}".encode()))
        elif kind == 1:
            records.append(OutRecord(key=f"k{i}".encode(), value=None))  # a tombstone
        elif kind == 2:
            records.append(OutRecord(key=b"", value=b"", partition=i % 3))  # empty, not null
        elif kind == 3:
            records.append(OutRecord(value=f"v{i}".encode(), partition=2, headers=(("h", b"x"), ("e", b""))))
        else:
            records.append(OutRecord(key=None, value=f"v{i}".encode(), timestamp=1_700_000_000_000 + i))
    with trio.fail_after(TEST_LIMIT):
        async with proxy(kafka_broker) as url, client_of(url) as client:
            results = await client.produce(topic3, records)
    assert len(results) == 1000
    assert all(isinstance(result, Written) for result in results), [r for r in results if isinstance(r, NotWritten)]
    written = {(r.partition, r.offset): (i, r) for i, r in enumerate(results) if isinstance(r, Written)}
    assert len(written) == 1000  # no two records share an offset

    stored = await trio.to_thread.run_sync(read_back, kafka_broker, topic3)
    assert len(stored) == 1000
    for record in stored:
        index, result = written[(record.partition, record.offset)]
        sent = records[index]
        assert (record.key, record.value) == (sent.key, sent.value), index
        assert [(k, v) for k, v in record.headers] == list(sent.headers), index
        assert record.timestamp == result.timestamp
        if sent.timestamp:
            assert record.timestamp == sent.timestamp
        if sent.partition is not None:
            assert record.partition == sent.partition
        elif sent.key is not None:
            assert record.partition == java_partition(sent.key, 3), sent.key
    # Results come in request order: the offsets of one partition grow with the index.
    for partition in range(3):
        offsets = [r.offset for r in results if isinstance(r, Written) and r.partition == partition]
        assert offsets == sorted(offsets)


async def test_row9_produce_to_a_missing_topic_and_an_oversized_record_fail_per_record(
    kafka_broker: KafkaBroker, topic3: str
) -> None:
    """A missing topic fails every record with ``not found topic`` (and creates no topic); an oversized
    record and a partition the topic lacks fail alone, the others of their command are written."""
    missing = f"{topic3}-missing"
    with trio.fail_after(TEST_LIMIT):
        async with proxy(kafka_broker, produce_max_record_bytes=10_000) as url, client_of(url) as client:
            results = await client.produce(missing, [b"a", OutRecord(key=b"k", value=b"b", partition=1)])
            assert [(r.code, r.message) for r in results if isinstance(r, NotWritten)] == [
                (
                    ErrorCode.TOPIC_NOT_FOUND,
                    f"failed to produce message, topic: {missing}, partition: -1, err: not found topic",
                ),
                (
                    ErrorCode.TOPIC_NOT_FOUND,
                    f"failed to produce message, topic: {missing}, partition: 1, err: not found topic",
                ),
            ]
            mixed = await client.produce(
                topic3,
                [
                    OutRecord(value=b"before", partition=0),
                    OutRecord(value=b"x" * 20_000, partition=0),
                    OutRecord(value=b"nowhere", partition=7),
                    OutRecord(value=b"after", partition=0),
                ],
            )
    assert isinstance(mixed[0], Written) and isinstance(mixed[3], Written)
    too_large, nowhere = mixed[1], mixed[2]
    assert isinstance(too_large, NotWritten) and too_large.code == ErrorCode.RECORD_TOO_LARGE
    assert "more than produce_max_record_bytes (10000)" in too_large.message
    assert isinstance(nowhere, NotWritten) and nowhere.code == ErrorCode.PARTITION_NOT_FOUND
    assert (
        nowhere.message
        == f"failed to produce message, topic: {topic3}, partition: 7, err: not found partition (the topic has 3)"
    )
    stored = await trio.to_thread.run_sync(read_back, kafka_broker, topic3)
    assert [r.value for r in stored] == [b"before", b"after"]

    def topics() -> set[str]:
        from kafka import KafkaConsumer

        consumer = KafkaConsumer(**kafka_broker.client_config())
        try:
            return set(consumer.topics())
        finally:
            consumer.close()

    assert missing not in await trio.to_thread.run_sync(topics)


async def test_row9_a_record_larger_than_the_broker_allows_fails_alone(kafka_broker: KafkaBroker) -> None:
    """The topic's own max.message.bytes (smaller than the route's bound): Kafka refuses that record only."""
    topic = create_topic(kafka_broker, partitions=1, config={"max.message.bytes": "5000"})
    try:
        with trio.fail_after(TEST_LIMIT):
            async with proxy(kafka_broker) as url, client_of(url) as client:
                results = await client.produce(topic, [b"small-1", b"y" * 8000, b"small-2"])
        assert isinstance(results[0], Written) and isinstance(results[2], Written), results
        assert isinstance(results[1], NotWritten) and results[1].code == ErrorCode.RECORD_TOO_LARGE, results[1]
        stored = await trio.to_thread.run_sync(read_back, kafka_broker, topic)
        assert [r.value for r in stored] == [b"small-1", b"small-2"]
    finally:
        delete_topic(kafka_broker, topic)


@pytest.mark.parametrize("acks", [Acks.ALL, Acks.LEADER, Acks.NONE])
async def test_each_acks_level_writes_and_none_answers_offset_minus_one(
    kafka_broker: KafkaBroker, topic3: str, acks: Acks
) -> None:
    with trio.fail_after(TEST_LIMIT):
        async with proxy(kafka_broker) as url, client_of(url) as client:
            results = await client.produce(topic3, [OutRecord(value=b"a", partition=1)], acks=acks)
    assert isinstance(results[0], Written)
    assert results[0].partition == 1
    assert (results[0].offset == -1) == (acks == Acks.NONE)


# ---------------------------------------------------------------- row 10


@asynccontextmanager
async def two_streams(url: str, topic: str) -> AsyncIterator[StreamClient]:
    """A raw client with stream 1 READ_COMMITTED and stream 2 READ_UNCOMMITTED on ``topic``, from the start."""
    async with stream_client(url) as streams:
        await streams.subscribe(1, topic, start=StartEdge.EARLIEST, isolation=Isolation.READ_COMMITTED)
        await streams.subscribe(2, topic, start=StartEdge.EARLIEST)
        yield streams


async def produce_then_raise(client: PubSubClient, topic: str, values: list[bytes]) -> None:
    """A transaction whose block produces ``values`` and then raises: the client aborts it."""
    async with client.transaction():
        await client.produce(topic, values)
        raise RuntimeError("abort")


async def produce_in_transaction(
    client: PubSubClient, topic: str, records: list[OutRecord], *, then_wait: float = 0
) -> None:
    async with client.transaction():
        await client.produce(topic, records)
        await trio.sleep(then_wait)


def seen(streams: StreamClient, stream_id: int) -> list[bytes | None]:
    return [record.value for batch in streams.records(stream_id).values() for record in batch]


async def test_row10_transactions_abort_hides_commit_shows_and_a_closed_connection_aborts(
    kafka_broker: KafkaBroker,
) -> None:
    topic = create_topic(kafka_broker, partitions=1)
    try:
        with trio.fail_after(TEST_LIMIT):
            async with proxy(kafka_broker) as url, two_streams(url, topic) as streams:
                async with client_of(url) as client:
                    # begin, produce, abort: READ_UNCOMMITTED sees the records, READ_COMMITTED never does.
                    with pytest.raises(RuntimeError, match="abort"):
                        await produce_then_raise(client, topic, [b"aborted-1", b"aborted-2"])
                    await streams.until(lambda: len(seen(streams, 2)) == 2, "the aborted records, uncommitted")
                    # begin, produce, commit: both see them.
                    async with client.transaction():
                        await client.produce(topic, [b"committed-1", b"committed-2"])
                    await streams.until(lambda: len(seen(streams, 1)) == 2, "the committed records")
                    await streams.until(lambda: len(seen(streams, 2)) == 4, "every record, uncommitted")
                # A connection closed mid-transaction: its transaction is aborted.
                async with client_of(url) as leaving:
                    await leaving._answer(lambda s: _txn_frame(s, 1), _ok_type())
                    await leaving.produce(topic, [b"left-open"])  # not transactional: plain record
                    await leaving._answer(lambda s: _produce_frame(s, topic, b"in-closed-txn", True), _produce_type())
                async with client_of(url) as after, after.transaction():
                    await after.produce(topic, [b"committed-3"])
                # The two streams read on their own: each is waited for (stream 2 may come second).
                await streams.until(lambda: seen(streams, 1)[-1:] == [b"committed-3"], "the last commit")
                await streams.until(lambda: seen(streams, 2)[-1:] == [b"committed-3"], "the last commit, uncommitted")
                assert seen(streams, 1) == [b"committed-1", b"committed-2", b"left-open", b"committed-3"]
                assert seen(streams, 2) == [
                    b"aborted-1",
                    b"aborted-2",
                    b"committed-1",
                    b"committed-2",
                    b"left-open",
                    b"in-closed-txn",
                    b"committed-3",
                ]
        stored = await trio.to_thread.run_sync(lambda: read_back(kafka_broker, topic, read_committed=True))
        assert [r.value for r in stored] == [b"committed-1", b"committed-2", b"left-open", b"committed-3"]
    finally:
        delete_topic(kafka_broker, topic)


def _txn_frame(sequence: int, action: int) -> bytes:
    from kafka_ws_trio._proto import TxnAction, encode_txn_request

    return encode_txn_request(sequence, TxnAction(action))


def _produce_frame(sequence: int, topic: str, value: bytes, transactional: bool) -> bytes:
    from kafka_ws_trio._proto import encode_produce_request

    return encode_produce_request(sequence, topic, [OutRecord(value=value)], transactional=transactional)


def _ok_type() -> Any:
    from kafka_ws_trio._proto import OkAnswer

    return OkAnswer


def _produce_type() -> Any:
    from kafka_ws_trio._proto import ProduceAnswer

    return ProduceAnswer


async def test_transaction_commands_out_of_turn_get_their_own_codes(kafka_broker: KafkaBroker, topic3: str) -> None:
    with trio.fail_after(TEST_LIMIT):
        async with proxy(kafka_broker) as url, client_of(url) as client:
            with pytest.raises(PubSubError) as commit_first:
                await client._answer(lambda s: _txn_frame(s, 2), _ok_type())
            assert commit_first.value.code == ErrorCode.TXN_NOT_OPEN
            with pytest.raises(PubSubError) as transactional_first:
                await client._answer(lambda s: _produce_frame(s, topic3, b"v", True), _produce_type())
            assert transactional_first.value.code == ErrorCode.TXN_NOT_OPEN
            await client._answer(lambda s: _txn_frame(s, 1), _ok_type())
            with pytest.raises(PubSubError) as twice:
                await client._answer(lambda s: _txn_frame(s, 1), _ok_type())
            assert twice.value.code == ErrorCode.TXN_ALREADY_OPEN
            await client._answer(lambda s: _txn_frame(s, 3), _ok_type())


async def test_a_transaction_left_open_past_the_timeout_is_aborted_and_says_so(
    kafka_broker: KafkaBroker, topic3: str
) -> None:
    with trio.fail_after(TEST_LIMIT):
        async with proxy(kafka_broker, transaction_timeout=1.0) as url, client_of(url) as client:
            with pytest.raises(PubSubError) as expired:
                await produce_in_transaction(client, topic3, [OutRecord(value=b"late", partition=0)], then_wait=3)
            assert expired.value.code == ErrorCode.TXN_TIMED_OUT
            assert "transaction_timeout" in expired.value.message
    stored = await trio.to_thread.run_sync(lambda: read_back(kafka_broker, topic3, read_committed=True))
    assert stored == []


async def test_a_produce_past_the_session_bound_waits_then_fails_overloaded(
    kafka_broker: KafkaBroker, topic3: str
) -> None:
    """A command larger than the session may ever have in flight is refused at once, naming the bound."""
    with trio.fail_after(TEST_LIMIT):
        async with proxy(kafka_broker, produce_session_records=5) as url, client_of(url) as client:
            with pytest.raises(PubSubError) as refused:
                await client.produce(topic3, [b"v"] * 6)
            assert refused.value.code == ErrorCode.OVERLOADED
            assert "more than produce_session_records (5)" in refused.value.message
            assert all(isinstance(r, Written) for r in await client.produce(topic3, [b"v"] * 5))


JAVA_PRODUCER: Final = Path(__file__).parent / "java" / "KeyedProducer.java"


def java_client_partitions(broker: KafkaBroker, topic: str, keys: list[str]) -> dict[str, int]:
    """Where the Java client (kafka-clients, from the broker's own jars) writes each key (blocking)."""
    from kafka_ws_trio.testing._broker.base import home_dir

    jars = home_dir() / "jars" / broker.version
    assert (jars / f"kafka-clients-{broker.version}.jar").is_file(), f"no kafka-clients jar in {jars}"
    command = ["java", "-cp", f"{jars}/*", str(JAVA_PRODUCER), broker.bootstrap, topic, *keys]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line.split() for line in done.stdout.splitlines() if line.strip()]
    return {keys[int(index)]: int(partition) for index, partition, _ in lines}


async def test_row8_keyed_records_land_where_the_java_client_puts_the_same_keys(kafka_broker: KafkaBroker) -> None:
    """Another client's records: the Java client writes 40 keys, the proxy the same 40 keys, to a
    7-partition topic; each key lands on the same partition both times."""
    topic = create_topic(kafka_broker, partitions=7)
    keys = [f"order-{i}" for i in range(40)] + ["", "é-unicode", "a-little-bit-longer-string"]
    try:
        java = await trio.to_thread.run_sync(java_client_partitions, kafka_broker, topic, keys)
        with trio.fail_after(TEST_LIMIT):
            async with proxy(kafka_broker) as url, client_of(url) as client:
                results = await client.produce(topic, [OutRecord(key=key.encode(), value=b"proxy") for key in keys])
        ours = {key: result.partition for key, result in zip(keys, results, strict=True)}
        assert len(set(java.values())) > 1  # the keys do spread
        assert ours == java
    finally:
        delete_topic(kafka_broker, topic)


async def test_a_read_committed_route_fetches_only_committed_records_and_lists_the_last_stable_offset(
    kafka_broker: KafkaBroker,
) -> None:
    """fetch_isolation = "read_committed": Fetch never shows aborted or open transactions, and ListOffset
    -1 answers the last stable offset (the first offset of the transaction still open).

    The client reads as the contract says, from the offset after the last record it got (schema/README.md,
    "Fetch"). Fetching offset 0 again would not do: a fetch inside what the partition's reader has read
    is answered from memory, under either isolation, and needs no look at Kafka."""
    topic = create_topic(kafka_broker, partitions=1)
    try:
        with trio.fail_after(TEST_LIMIT):
            async with proxy(kafka_broker, fetch_isolation="read_committed") as url, client_of(url) as client:
                async with client.transaction():
                    await client.produce(topic, [b"committed"])
                with pytest.raises(RuntimeError):
                    await produce_then_raise(client, topic, [b"aborted"])
                async with client_of(url) as writer:
                    await writer._answer(lambda s: _txn_frame(s, 1), _ok_type())
                    answer = await writer._answer(
                        lambda s: _produce_frame(s, topic, b"still-open", True), _produce_type()
                    )
                    open_at = answer.results[0]
                    assert isinstance(open_at, Written)
                    # Shown to a read_uncommitted reader, but not here.
                    assert await client.list_offset(topic, 0, -1) == open_at.offset
                    [committed] = await client.fetch(topic, 0, 0)
                    assert committed.value == b"committed"
                    # Past it lie the commit's marker, the aborted record, the abort's marker, and then
                    # the open transaction: nothing to show yet.
                    assert await client.fetch(topic, 0, committed.offset + 1) == []
                    await writer._answer(lambda s: _txn_frame(s, 2), _ok_type())

                # The last stable offset moves once the commit's marker is written, which may come just
                # after the commit's answer. Until then a fetch there answers empty after a short wait,
                # and the client asks again.
                while not (after := await client.fetch(topic, 0, committed.offset + 1)):
                    pass
                assert [(record.offset, record.value) for record in after] == [(open_at.offset, b"still-open")]
    finally:
        delete_topic(kafka_broker, topic)


async def test_the_route_statistics_count_produced_records_and_transactions(
    kafka_broker: KafkaBroker, topic3: str
) -> None:
    config = ProxyConfig.single_route(kafka_broker.bootstrap, ROUTE, server=ServerConfig(port=0))
    with trio.fail_after(TEST_LIMIT):
        async with running_proxy(config) as server, client_of(server.url + ROUTE) as client:
            await client.produce(topic3, [b"a", OutRecord(value=b"b", partition=9)])
            async with client.transaction():
                await client.produce(topic3, [b"c"])
                during = server.statistics().upstreams[ROUTE]
            after = server.statistics().upstreams[ROUTE]
    assert (during.transactions_open, after.transactions_open, after.transactions_begun) == (1, 0, 1)
    assert (after.records_produced, after.records_failed) == (3, 1)
    assert (after.produce_records_in_flight, after.produce_bytes_in_flight) == (0, 0)


def test_the_readme_writing_example_runs_as_printed(kafka_broker: KafkaBroker, repo_root: Path, tmp_path: Path) -> None:
    readme = (repo_root / "README.md").read_text()
    section = re.search(r"^### Writing\n(.*?)(?=^#+ )", readme, re.DOTALL | re.MULTILINE)
    assert section, "the README lost its Writing section"
    [program] = re.findall(r"^```python\n(.*?)^```", section[1], re.DOTALL | re.MULTILINE)
    [expected] = re.findall(r"^```text\n(.*?)^```", section[1], re.DOTALL | re.MULTILINE)
    (tmp_path / "writing.py").write_text(program)
    env = {name: value for name, value in os.environ.items() if not name.startswith("KAFKA_")}
    env["KAFKA_BOOTSTRAP"] = kafka_broker.bootstrap
    result = subprocess.run(
        [sys.executable, "writing.py"], capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected


async def test_a_fenced_transaction_gets_txn_fenced_and_its_records_are_never_committed(
    kafka_broker: KafkaBroker, topic3: str
) -> None:
    """Two proxies given the same transaction_id_prefix (a configuration mistake): the second one's
    transaction fences the first's, whose commit is refused with TXN_FENCED; the first proxy then
    makes a new producer for its next transaction."""
    prefix = f"fenced-{topic3}-"
    settings = {"transaction_id_prefix": prefix, "transaction_producers": 1}
    with trio.fail_after(TEST_LIMIT):
        async with (
            proxy(kafka_broker, **settings) as first_url,
            proxy(kafka_broker, **settings) as second_url,
            client_of(first_url) as first,
            client_of(second_url) as second,
        ):
            await first._answer(lambda s: _txn_frame(s, 1), _ok_type())
            await first._answer(lambda s: _produce_frame(s, topic3, b"fenced", True), _produce_type())
            async with second.transaction():
                await second.produce(topic3, [OutRecord(value=b"winner", partition=0)])
            with pytest.raises(PubSubError) as fenced:
                await first._answer(lambda s: _txn_frame(s, 2), _ok_type())
            assert fenced.value.code == ErrorCode.TXN_FENCED, fenced.value
            async with first.transaction():
                await first.produce(topic3, [OutRecord(value=b"after", partition=0)])
    stored = await trio.to_thread.run_sync(lambda: read_back(kafka_broker, topic3, read_committed=True))
    assert sorted(r.value for r in stored) == [b"after", b"winner"]


async def test_a_topic_created_right_after_a_produce_found_it_missing_is_written_to(
    kafka_broker: KafkaBroker,
) -> None:
    """The proxy remembers a missing topic for a moment (so that a burst to a missing topic costs one
    metadata request), but a produce arriving after the topic was created finds it."""
    name = unique_topic_name()
    with trio.fail_after(TEST_LIMIT):
        async with proxy(kafka_broker) as url, client_of(url) as client:
            [missing] = await client.produce(name, [b"early"])
            assert isinstance(missing, NotWritten) and missing.code == ErrorCode.TOPIC_NOT_FOUND
            await trio.to_thread.run_sync(lambda: create_topic(kafka_broker, name))
            try:
                [written] = await client.produce(name, [b"right after"])
                assert isinstance(written, Written), written
            finally:
                await trio.to_thread.run_sync(delete_topic, kafka_broker, name)
