"""The processes that talk to Kafka without the proxy: the direct readers the proxy is compared with, and the producer.

They are synchronous (kafka-python and confluent-kafka bring their own threads)
and take their commands with a blocking read. The direct readers are set up
the way the proxy's own consumer is (the orchestrator passes the proxy's fetch
settings in the spec), so that the ratio compares the proxy with what its own
library does alone.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from .children import emit, sync_command
from .plan import PARTITION, READ_TIMEOUT, REQUEST_TIMEOUT, cpu_seconds, raise_nofile


def worker_kafka_python(spec: dict[str, Any]) -> None:
    """Read [start, end) with a direct kafka-python consumer set up like the proxy's own."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=spec["bootstrap"],
        group_id=None,
        enable_auto_commit=False,
        fetch_max_bytes=spec["fetch_max_bytes"],
        max_partition_fetch_bytes=spec["fetch_max_bytes"],
        max_poll_records=spec["max_poll_records"],
        fetch_max_wait_ms=spec["fetch_max_wait_ms"],
    )
    try:
        tp = TopicPartition(spec["topic"], PARTITION)
        consumer.assign([tp])
        consumer.end_offsets([tp])  # connected and bootstrapped before the clock starts
        consumer.seek(tp, spec["start"])
        emit(event="ready")
        sync_command("go")
        cpu0, started = cpu_seconds(), time.perf_counter()
        wanted = spec["end"] - spec["start"]
        records = value_bytes = 0
        deadline = time.monotonic() + READ_TIMEOUT
        while records < wanted:
            if time.monotonic() > deadline:
                raise RuntimeError(f"kafka-python read {records} of {wanted} records in {READ_TIMEOUT:.0f}s")
            for batch in consumer.poll(timeout_ms=1000).values():
                records += len(batch)
                value_bytes += sum(len(r.value) for r in batch)
        seconds = time.perf_counter() - started
        emit(
            event="result", records=records, seconds=seconds, value_bytes=value_bytes, cpu_seconds=cpu_seconds() - cpu0
        )
    finally:
        consumer.close()


def worker_confluent(spec: dict[str, Any]) -> None:
    """Read [start, end) with a direct confluent-kafka consumer: the ceiling for one Python process."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": spec["bootstrap"],
            "group.id": "kwt-bench-direct",
            "enable.auto.commit": False,
            # As long a wait as the proxy's fetch_max_wait (librdkafka's 500 ms default stalls small
            # records), and a prefetch queue that does not pause at librdkafka's 100,000 records.
            "fetch.wait.max.ms": spec["fetch_max_wait_ms"],
            "queued.min.messages": 1_000_000,
        }
    )
    try:
        consumer.get_watermark_offsets(TopicPartition(spec["topic"], PARTITION), timeout=REQUEST_TIMEOUT)
        emit(event="ready")
        sync_command("go")
        cpu0, started = cpu_seconds(), time.perf_counter()
        consumer.assign([TopicPartition(spec["topic"], PARTITION, spec["start"])])
        wanted = spec["end"] - spec["start"]
        records = value_bytes = 0
        deadline = time.monotonic() + READ_TIMEOUT
        while records < wanted:
            if time.monotonic() > deadline:
                raise RuntimeError(f"confluent-kafka read {records} of {wanted} records in {READ_TIMEOUT:.0f}s")
            for message in consumer.consume(num_messages=10_000, timeout=1.0):
                if message.error() is not None:
                    raise RuntimeError(f"confluent-kafka: {message.error()}")
                records += 1
                value_bytes += len(message.value())
        seconds = time.perf_counter() - started
        emit(
            event="result", records=records, seconds=seconds, value_bytes=value_bytes, cpu_seconds=cpu_seconds() - cpu0
        )
    finally:
        consumer.close()


def worker_producer(spec: dict[str, Any]) -> None:
    """Produce ``rate`` records a second, each stamped with the wall clock when it is handed over."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": spec["bootstrap"], "acks": "all"})  # librdkafka defaults: linger.ms 5
    stop = threading.Event()
    command: dict[str, Any] = {}
    per_second: collections.Counter[int] = collections.Counter()
    last_offset = [-1]
    failures = [0]

    def delivered(error: Any, message: Any) -> None:
        if error is not None:
            failures[0] += 1
        else:
            last_offset[0] = max(last_offset[0], message.offset())

    def listen() -> None:
        command.update(sync_command("stop"))
        stop.set()

    producer.list_topics(spec["topic"], timeout=REQUEST_TIMEOUT)
    emit(event="ready")
    sync_command("go")
    threading.Thread(target=listen, daemon=True).start()
    value = b"x" * spec["value_bytes"]
    interval = 1.0 / spec["rate"]
    started = due = time.monotonic()
    cpu0 = cpu_seconds()
    sent = 0
    while not stop.is_set():
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        stamp = int(time.time() * 1000)
        producer.produce(spec["topic"], value=value, partition=PARTITION, timestamp=stamp, on_delivery=delivered)
        producer.poll(0)
        per_second[stamp // 1000] += 1
        sent += 1
        due += interval
    elapsed = time.monotonic() - started
    left = producer.flush(REQUEST_TIMEOUT)
    in_window = sum(per_second[s] for s in range(command["t0"], command["t1"]))
    emit(
        event="result",
        sent=sent,
        rate=sent / elapsed,
        in_window=in_window,
        last_offset=last_offset[0],
        undelivered=left + failures[0],
        cpu_seconds=cpu_seconds() - cpu0,
    )


WORKERS: Final[dict[str, Callable[[dict[str, Any]], None]]] = {
    "kafka_python": worker_kafka_python,
    "confluent": worker_confluent,
    "producer": worker_producer,
}


def run(spec: dict[str, Any]) -> None:
    """The direct-client process: the worker ``spec["kind"]``."""
    raise_nofile()
    WORKERS[spec["kind"]](spec)
