"""The route's consumers decode fetched batches themselves (real broker), to the bytes kafka-python gives."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
import trio
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from kafka_ws_trio._config import ProxyConfig
from kafka_ws_trio._kafka import Counters, KafkaContext, OutageLog
from kafka_ws_trio._kafka._client import Connector
from kafka_ws_trio._kafka._fast_records import entry_records_class
from kafka_ws_trio._proto import Isolation, encode_message_entry
from kafka_ws_trio.testing import KafkaBroker, create_topic

pytestmark = pytest.mark.timeout(120)

CODECS = (None, "gzip", "snappy", "lz4", "zstd")
PER_CODEC = 300


def _context(broker: KafkaBroker) -> KafkaContext:
    return KafkaContext(
        route=ProxyConfig.single_route(broker.bootstrap).routes[0],
        limiter=trio.CapacityLimiter(1),
        counters=Counters(),
        outages=OutageLog("/kafka"),
        spawn=lambda *args: False,
    )


@contextlib.contextmanager
def _closing(consumer: Any) -> Iterator[Any]:
    try:
        yield consumer
    finally:
        consumer.close()


def _read_all(consumer: Any, tp: TopicPartition, count: int) -> list[Any]:
    consumer.assign([tp])
    consumer.seek(tp, 0)
    got: list[Any] = []
    give_up = time.monotonic() + 60
    while len(got) < count and time.monotonic() < give_up:
        got += consumer.poll(timeout_ms=500).get(tp, [])
    return got


def test_the_routes_consumers_hand_out_every_codecs_records_encoded_as_kafka_pythons_would_be(
    kafka_broker: KafkaBroker,
) -> None:
    topic = create_topic(kafka_broker)
    producers = [
        KafkaProducer(**kafka_broker.client_config(), compression_type=codec, linger_ms=50, acks="all")
        for codec in CODECS
    ]
    try:
        for index, producer in enumerate(producers):
            for n in range(PER_CODEC):
                headers = [("n", b"%d" % n)] if n % 3 == 0 else []
                key = None if n % 5 == 0 else b"key-%d" % n
                producer.send(topic, key=key, value=b"v" * (n % 700) + bytes([index]), headers=headers, partition=0)
            producer.flush(timeout=30)
    finally:
        for producer in producers:
            producer.close(timeout=10)
    total = PER_CODEC * len(CODECS)
    tp = TopicPartition(topic, 0)

    with _closing(Connector(_context(kafka_broker))._new_consumer(Isolation.READ_UNCOMMITTED)) as ours:
        assert ours._fetcher.PartitionRecords is entry_records_class()
        fast = _read_all(ours, tp, total)
    with _closing(KafkaConsumer(**kafka_broker.client_config(), group_id=None, enable_auto_commit=False)) as plain:
        slow = _read_all(plain, tp, total)

    assert len(fast) == len(slow) == total
    assert all(type(record) is tuple for record in fast)
    assert fast == [
        (r.offset, encode_message_entry(r.offset, r.timestamp, r.key, r.value, r.headers), r.key, r.headers)
        for r in slow
    ]
