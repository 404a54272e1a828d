"""Streams over a partition that transactions write to (schema/README.md, "Streams", ``isolation``):
a READ_COMMITTED stream never shows records of aborted or still-open transactions, and
no stream stalls on the commit and abort markers transactions leave in the log.

The records are written by kafka-python's transactional producer, from a thread, against
the real broker; the proxy runs in the test's Trio loop.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, Final

import pytest
import trio
from _streams import StreamClient, stream_client
from _support import running_proxy

from kafka_ws_trio._config import ProxyConfig, ServerConfig
from kafka_ws_trio._proto import Isolation, StartEdge, StreamError
from kafka_ws_trio.testing import KafkaBroker, create_topic, delete_topic

pytestmark = pytest.mark.timeout(90)

ROUTE: Final = "/kafka"
#: What one test may take, end to end, on a busy machine.
TEST_LIMIT: Final = 75.0
#: Seconds a producer call may take (the first transaction also finds the coordinator).
PRODUCER_TIMEOUT: Final = 30.0


class Transactions:
    """A transactional kafka-python producer for one partition; every call blocks (run it in a thread)."""

    def __init__(self, broker: KafkaBroker, topic: str) -> None:
        from kafka import KafkaProducer

        self.topic = topic
        self._producer = KafkaProducer(
            **broker.client_config(), transactional_id=f"kwt-test-{uuid.uuid4().hex}", request_timeout_ms=20_000
        )
        self._producer.init_transactions()

    def write(self, values: list[bytes], *, then: str) -> None:
        """One transaction with ``values`` (each acknowledged), then "commit", "abort" or "leave open"."""
        producer = self._producer
        producer.begin_transaction()
        for value in values:
            producer.send(self.topic, value=value, partition=0).get(timeout=PRODUCER_TIMEOUT)
        if then == "commit":
            producer.commit_transaction()
        elif then == "abort":
            producer.abort_transaction()
        else:
            assert then == "leave open", then

    def commit(self) -> None:
        self._producer.commit_transaction()

    def close(self) -> None:
        self._producer.close(timeout=10)


@pytest.fixture
def topic(kafka_broker: KafkaBroker) -> Iterator[str]:
    name = create_topic(kafka_broker, partitions=1)
    yield name
    delete_topic(kafka_broker, name)


@asynccontextmanager
async def transactions(broker: KafkaBroker, topic: str) -> AsyncIterator[Callable[..., Any]]:
    """``await run(method, *args)`` calls the topic's transactional producer in a thread; closed afterwards."""
    producer = await trio.to_thread.run_sync(Transactions, broker, topic)

    async def run(method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await trio.to_thread.run_sync(partial(method, producer, *args, **kwargs))

    try:
        yield run
    finally:
        await trio.to_thread.run_sync(producer.close)


@asynccontextmanager
async def proxy_client(broker: KafkaBroker) -> AsyncIterator[StreamClient]:
    config = ProxyConfig.single_route(broker.bootstrap, ROUTE, server=ServerConfig(port=0))
    async with running_proxy(config) as server, stream_client(server.url + ROUTE) as client:
        yield client


def values(client: StreamClient, stream_id: int) -> list[bytes | None]:
    return [record.value for record in client.records(stream_id).get(0, [])]


def errors(client: StreamClient, stream_id: int) -> list[str]:
    return [event.message for event in client.pushes(stream_id, StreamError)]


COMMITTED: Final = [b"committed-1", b"committed-2", b"committed-3"]
ABORTED: Final = [b"aborted-1", b"aborted-2"]
OPEN: Final = [b"open-1"]
LATER: Final = [b"later-1", b"later-2"]


async def test_a_read_committed_stream_never_shows_aborted_or_open_transactions_and_a_read_uncommitted_one_does(
    kafka_broker: KafkaBroker, topic: str
) -> None:
    """Committed, aborted, then an open transaction: READ_COMMITTED gets the committed records, catches up
    at the last stable offset (its high_watermark) with the open one still open, and gets that one once it
    commits; READ_UNCOMMITTED gets every record as it is written."""
    with trio.fail_after(TEST_LIMIT):
        async with transactions(kafka_broker, topic) as run, proxy_client(kafka_broker) as client:
            await run(Transactions.write, COMMITTED, then="commit")
            await run(Transactions.write, ABORTED, then="abort")
            await run(Transactions.write, OPEN, then="leave open")
            await client.subscribe(1, topic, start=StartEdge.EARLIEST, isolation=Isolation.READ_COMMITTED)
            await client.subscribe(2, topic, start=StartEdge.EARLIEST)
            await client.until(lambda: client.caught_up(1) == {0}, "the READ_COMMITTED stream caught up")
            await client.until(lambda: len(values(client, 2)) == 6, "every record on the READ_UNCOMMITTED stream")
            assert values(client, 1) == COMMITTED
            assert values(client, 2) == COMMITTED + ABORTED + OPEN
            # The last stable offset is the open transaction's first record: the lag there is 0.
            open_offset = client.records(2)[0][-1].offset
            last = client.batches(1)[-1]
            assert last.high_watermark == open_offset, last
            assert last.next_offset <= open_offset, last

            await run(Transactions.commit)
            await client.until(lambda: len(values(client, 1)) == 4, "the open transaction's record, once committed")
            assert values(client, 1) == COMMITTED + OPEN
            assert errors(client, 1) == errors(client, 2) == []


async def test_a_stream_passes_the_markers_transactions_leave_and_catches_up_without_an_error(
    kafka_broker: KafkaBroker, topic: str
) -> None:
    """Each transaction ends with a marker at an offset of its own, which no consumer is handed:
    a stream at the log end right after one must catch up (not wait for a record that never comes,
    then time out), and go on with the records written after it, for both isolations."""
    with trio.fail_after(TEST_LIMIT):
        async with transactions(kafka_broker, topic) as run, proxy_client(kafka_broker) as client:
            await run(Transactions.write, COMMITTED, then="commit")
            await client.subscribe(1, topic, start=StartEdge.EARLIEST)
            await client.subscribe(2, topic, start=StartEdge.EARLIEST, isolation=Isolation.READ_COMMITTED)
            for stream_id in (1, 2):
                await client.until(lambda s=stream_id: client.caught_up(s) == {0}, f"stream {stream_id} caught up")
                # Past the marker that follows the last record.
                assert client.batches(stream_id)[-1].next_offset >= len(COMMITTED), stream_id
            await run(Transactions.write, ABORTED, then="abort")
            await run(Transactions.write, LATER, then="commit")
            await client.until(lambda: values(client, 1) == COMMITTED + ABORTED + LATER, "stream 1's records")
            await client.until(lambda: values(client, 2) == COMMITTED + LATER, "stream 2's records")
            for stream_id in (1, 2):
                offsets = [record.offset for batch in client.batches(stream_id) for record in batch.records]
                assert offsets == sorted(set(offsets)), (stream_id, offsets)
                assert errors(client, stream_id) == [], stream_id
