"""Produce and transactions against the real broker: what a review of the first version found, each
test failing before its fix. Records of an aborted transaction must not reach the producer's next
transaction; a client leaving during TXN_BEGIN must not keep the pool's producer; answered commands
must not be kept alive past the route's in-flight bound; a 10,000-record answer must fit the frame limit."""

from __future__ import annotations

import gc
from typing import Any, Final

import pytest
import trio
from _support import running_proxy
from trio_websocket import ConnectionClosed

from kafka_ws_trio._config import ProxyConfig, ServerConfig
from kafka_ws_trio._proto import (
    OkAnswer,
    OutRecord,
    ProduceAnswer,
    TxnAction,
    encode_produce_request,
    encode_txn_request,
)
from kafka_ws_trio.client import PubSubError, Written, open_client
from kafka_ws_trio.testing import KafkaBroker, create_topic, delete_topic, unique_topic_name

pytestmark = pytest.mark.timeout(120)
ROUTE: Final = "/kafka"


def config(broker: KafkaBroker, **route: Any) -> ProxyConfig:
    return ProxyConfig.single_route(broker.bootstrap, ROUTE, server=ServerConfig(port=0), **route)


def read_committed(broker: KafkaBroker, topic: str) -> list[bytes]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        **broker.client_config(), enable_auto_commit=False, isolation_level="read_committed", consumer_timeout_ms=3000
    )
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning()
        end = consumer.end_offsets([tp])[tp]
        values: list[bytes] = []
        while consumer.position(tp) < end:
            for batch in consumer.poll(timeout_ms=1000).values():
                values.extend(r.value for r in batch)
        return values
    finally:
        consumer.close()


async def test_records_of_an_aborted_transaction_are_not_committed_by_the_next_one(kafka_broker: KafkaBroker) -> None:
    """BEGIN; produce 10,000 records (txn) and at once ABORT; BEGIN; produce 'second'; COMMIT.
    Only 'second' may be committed."""
    topic = create_topic(kafka_broker, partitions=1)
    try:
        with trio.fail_after(90):
            async with (
                running_proxy(config(kafka_broker)) as server,
                open_client(server.url + ROUTE, request_timeout=60) as client,
            ):
                await client._answer(lambda s: encode_txn_request(s, TxnAction.BEGIN), OkAnswer)
                first = [OutRecord(value=b"aborted-%05d" % i) for i in range(10_000)]
                p1: list[Any] = []
                async with trio.open_nursery() as nursery:

                    async def produce_first() -> None:
                        answer = await client._answer(
                            lambda s: encode_produce_request(s, topic, first, transactional=True), ProduceAnswer
                        )
                        p1.append(answer)

                    nursery.start_soon(produce_first)
                    await trio.sleep(0.01)  # the produce frame goes first
                    await client._answer(lambda s: encode_txn_request(s, TxnAction.ABORT), OkAnswer)
                    await client._answer(lambda s: encode_txn_request(s, TxnAction.BEGIN), OkAnswer)
                    await client._answer(
                        lambda s: encode_produce_request(s, topic, [OutRecord(value=b"second")], transactional=True),
                        ProduceAnswer,
                    )
                    await client._answer(lambda s: encode_txn_request(s, TxnAction.COMMIT), OkAnswer)
        written = sum(isinstance(r, Written) for r in p1[0].results)
        print(f"records of the aborted transaction's produce answered Written: {written}")
        values = await trio.to_thread.run_sync(read_committed, kafka_broker, topic)
        leaked = [v for v in values if v.startswith(b"aborted-")]
        assert values == [b"second"], f"{len(leaked)} records of the ABORTed transaction were committed"
    finally:
        delete_topic(kafka_broker, topic)


async def test_a_client_that_leaves_during_txn_begin_does_not_keep_the_producer(kafka_broker: KafkaBroker) -> None:
    """transaction_producers = 1: a client sends TXN_BEGIN and leaves at once (the first producer is being made)."""
    topic = create_topic(kafka_broker, partitions=1)
    try:
        with trio.fail_after(90):
            async with running_proxy(config(kafka_broker, transaction_producers=1, request_timeout=3.0)) as server:
                url = server.url + ROUTE
                async with open_client(url) as leaving:
                    await leaving.websocket.send_message(encode_txn_request(1, TxnAction.BEGIN))
                    await trio.sleep(0.1)  # the proxy is making the producer / running init_transactions
                await trio.sleep(3)  # producer made, init_transactions done, by now
                upstream = server._routes[ROUTE].backend
                print("transactions_open after the client left:", upstream.statistics().transactions_open)
                async with open_client(url, request_timeout=60) as client:
                    try:
                        async with client.transaction():
                            await client.produce(topic, [b"x"])
                    except PubSubError as exc:
                        pytest.fail(f"the pool's only producer was never given back: {exc.code} {exc.message}")
    finally:
        delete_topic(kafka_broker, topic)


async def test_the_watchdog_does_not_keep_answered_commands_and_their_records(kafka_broker: KafkaBroker) -> None:
    """produce_route_bytes = 1 MiB bounds what the producers hold; 200 answered commands of 100 KB each."""
    topic = create_topic(kafka_broker, partitions=1)
    try:
        with trio.fail_after(90):
            async with (
                running_proxy(
                    config(kafka_broker, produce_route_bytes=1 << 20, produce_session_bytes=1 << 20)
                ) as server,
                open_client(server.url + ROUTE, request_timeout=60) as client,
            ):
                for i in range(200):
                    results = await client.produce(topic, [OutRecord(value=bytes([i % 256]) * 100_000)])
                    assert isinstance(results[0], Written)
                producers = server._routes[ROUTE].backend._producers
                budget = server._routes[ROUTE].backend.produce_budget
                due = list(producers._due)
                finished = sum(sending.finished for _, sending, _ in due)
                gc.collect()
                held = sum(
                    len(r.value)
                    for o in gc.get_objects()
                    if type(o).__name__ == "Produce" and getattr(o, "topic", None) == topic
                    for r in o.records
                )
                print(
                    f"route budget bytes {budget.bytes}; watchdog entries {len(due)} ({finished} answered);"
                    f" Produce objects still alive hold {held} bytes of values"
                )
                assert held <= (1 << 20), f"{held} bytes of answered commands kept alive, bound is 1 MiB"
    finally:
        delete_topic(kafka_broker, topic)


async def test_the_answer_to_a_10000_record_command_fits_the_clients_frame_limit(kafka_broker: KafkaBroker) -> None:
    """10,000 one-byte records to a missing topic with a 40-character name: every record fails."""
    missing = unique_topic_name("orders-eu-west-1-production-v2")  # 44 characters, never created
    with trio.fail_after(90):
        async with (
            running_proxy(config(kafka_broker)) as server,
            open_client(server.url + ROUTE, request_timeout=60) as client,
        ):
            try:
                results = await client.produce(missing, [b"v"] * 10_000)
            except ConnectionClosed as exc:
                pytest.fail(f"the client lost the connection instead of getting the answer: {exc}")
            assert len(results) == 10_000
