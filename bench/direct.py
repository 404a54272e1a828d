"""The processes that talk to Kafka without the proxy: the direct clients the proxy is compared with, and the producer.

They are synchronous (kafka-python and confluent-kafka bring their own threads)
and take their commands with a blocking read. The direct readers are set up
the way the proxy's own consumer is (the orchestrator passes the proxy's fetch
settings in the spec), and the direct kafka-python producer exactly as the
proxy's shared producer is (the orchestrator passes what
``kafka_ws_trio._kafka._settings.producer_config`` gives the route), so that a
ratio compares the proxy with what its own library does alone.
"""

from __future__ import annotations

import collections
import json
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from .children import emit, sync_command
from .plan import PARTITION, READ_TIMEOUT, REQUEST_TIMEOUT, cpu_seconds, raise_nofile

#: Seconds a direct producer may take to close (it has nothing left to send by then).
CLOSE_SECONDS: Final = 10.0


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
    """Produce ``rate`` records a second, each stamped with the wall clock when it is handed over.

    To PARTITION, or with ``partitions`` in the spec to each partition of the topic in turn.
    """
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
    partitions = spec.get("partitions", 0)
    while not stop.is_set():
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        stamp = int(time.time() * 1000)
        partition = sent % partitions if partitions else PARTITION
        producer.produce(spec["topic"], value=value, partition=partition, timestamp=stamp, on_delivery=delivered)
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


def worker_kafka_python_producer(spec: dict[str, Any]) -> None:
    """Write records of ``value_bytes`` to ``topic`` (one partition) with a kafka-python producer like the proxy's.

    ``spec["config"]`` is the proxy's own producer settings for the route (acks=all,
    idempotence, linger, batch size, timeouts). Records have no key and no partition, as
    the load clients' records have, so the default partitioner picks (the only) one.
    ``warmup`` records are written one by one before the clock (metadata, the producer
    id, the connection). Then, by ``mode``:

    * ``throughput``: ``count`` records sent as fast as ``send()`` takes them, at most
      ``in_flight`` unacknowledged at a time (the proxy's session holds as many at most;
      kafka-python itself has no bound, and unbounded it would buffer the whole run and age
      the last batches towards ``delivery_timeout_ms``); the clock stops with the last
      acknowledgement. Every record must be written, at offsets that follow one another.
    * ``latency``: ``count`` sends one after another, each acknowledged (``.get()``) before
      the next; the time of each, in ms.
    """
    from kafka import KafkaProducer

    producer = KafkaProducer(**spec["config"])
    topic, count = spec["topic"], spec["count"]
    value = os.urandom(spec["value_bytes"])
    try:
        for _ in range(spec["warmup"]):
            producer.send(topic, value=value).get(timeout=REQUEST_TIMEOUT)
        emit(event="ready")
        sync_command("go")
        cpu0 = cpu_seconds()
        if spec["mode"] == "latency":
            latencies: list[float] = []
            for _ in range(count):
                started = time.perf_counter()
                producer.send(topic, value=value).get(timeout=REQUEST_TIMEOUT)
                latencies.append((time.perf_counter() - started) * 1000.0)
            emit(event="result", latencies_ms=latencies, cpu_seconds=cpu_seconds() - cpu0)
            return
        window = spec["in_flight"]
        futures: list[Any] = []
        started = time.perf_counter()
        for index in range(count):
            if index >= window:
                futures[index - window].get(timeout=READ_TIMEOUT)
            futures.append(producer.send(topic, value=value))
        futures[-1].get(timeout=READ_TIMEOUT)
        seconds = time.perf_counter() - started
        # One partition, idempotent: the last acknowledgement comes last (checked, not assumed).
        late = sum(not future.is_done for future in futures)
        if late:
            for future in futures:
                future.get(timeout=READ_TIMEOUT)
            seconds = time.perf_counter() - started
        cpu = cpu_seconds() - cpu0
        offsets = sorted(future.get(timeout=READ_TIMEOUT).offset for future in futures)
        if offsets != list(range(offsets[0], offsets[0] + count)):
            raise RuntimeError(f"{count} records written at offsets {offsets[0]}..{offsets[-1]} with gaps or repeats")
        emit(
            event="result",
            records=count,
            seconds=seconds,
            value_bytes=count * len(value),
            cpu_seconds=cpu,
            acknowledged_late=late,
        )
    finally:
        producer.close(timeout=CLOSE_SECONDS)


def _commands() -> queue.Queue[dict[str, Any] | None]:
    """The orchestrator's commands, read by a thread of their own (None: stdin closed), for a loop that must poll."""
    commands: queue.Queue[dict[str, Any] | None] = queue.Queue()

    def read() -> None:
        for line in sys.stdin:
            if line.strip():
                commands.put(json.loads(line))
        commands.put(None)

    threading.Thread(target=read, name="commands", daemon=True).start()
    return commands


def worker_kafka_python_group(spec: dict[str, Any]) -> None:
    """One member of a consumer group read directly with kafka-python: it joins paused, then reads to ``ends``.

    Set up like the direct reader (the proxy's fetch settings) plus ``group_id``, no
    auto-commit, and ``earliest`` for partitions without a committed offset (a fresh
    group has none), with the route's group session timeout and heartbeat. Until "go"
    its partitions stay paused (the rebalance listener pauses each assignment), it keeps
    polling (joins and rebalances happen in poll), and it answers each "state" with its
    assignment, so that the orchestrator sees when the group has settled. After "go" it
    reads every partition it owns up to ``ends`` and reports the monotonic clock (one
    clock for every process of the machine) at "go" and at its last record. A rebalance
    after "go" fails the read: the figures would no longer be one group's read.
    """
    from kafka import ConsumerRebalanceListener, KafkaConsumer

    ends = {int(partition): end for partition, end in spec["ends"].items()}
    going = threading.Event()
    problems: list[str] = []
    started = time.monotonic()
    first_assignment: list[float] = []
    consumer = KafkaConsumer(
        bootstrap_servers=spec["bootstrap"],
        group_id=spec["group"],
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=spec["fetch_max_bytes"],
        max_partition_fetch_bytes=spec["fetch_max_bytes"],
        max_poll_records=spec["max_poll_records"],
        fetch_max_wait_ms=spec["fetch_max_wait_ms"],
        session_timeout_ms=spec["session_timeout_ms"],
        heartbeat_interval_ms=spec["heartbeat_interval_ms"],
    )

    class Paused(ConsumerRebalanceListener):  # type: ignore[misc]
        def on_partitions_revoked(self, revoked: Any) -> None:
            if going.is_set() and revoked:
                problems.append(f"the group rebalanced during the timed read: {sorted(tp.partition for tp in revoked)}")

        def on_partitions_assigned(self, assigned: Any) -> None:
            if not going.is_set():
                consumer.pause(*assigned)
                if assigned and not first_assignment:
                    first_assignment.append(time.monotonic() - started)

    commands = _commands()
    by_partition: collections.Counter[int] = collections.Counter()
    following: dict[int, int] = {}
    records = value_bytes = early = 0

    def take(polled: Any) -> None:
        nonlocal records, value_bytes
        for tp, batch in polled.items():
            partition = tp.partition
            expected = following.get(partition, 0)
            if batch[0].offset != expected:
                problems.append(f"partition {partition}: a batch starts at {batch[0].offset} where {expected} was next")
            following[partition] = batch[-1].offset + 1
            by_partition[partition] += len(batch)
            records += len(batch)
            value_bytes += sum(len(r.value) for r in batch)

    try:
        consumer.subscribe([spec["topic"]], listener=Paused())
        emit(event="ready")
        deadline = time.monotonic() + READ_TIMEOUT
        while not going.is_set():
            if time.monotonic() > deadline:
                raise RuntimeError(f"no 'go' within {READ_TIMEOUT:.0f}s")
            take(consumer.poll(timeout_ms=100))
            while not commands.empty():
                command = commands.get()
                if command is None:
                    return
                if command["cmd"] == "go":
                    going.set()
                else:
                    emit(event="state", members=[sorted(tp.partition for tp in consumer.assignment())])
        early = records
        cpu0, t_start = cpu_seconds(), time.monotonic()
        owned = sorted(tp.partition for tp in consumer.assignment())
        consumer.resume(*consumer.assignment())
        deadline = t_start + READ_TIMEOUT
        while any(following.get(p, 0) < ends[p] for p in owned) and not problems:
            if time.monotonic() > deadline:
                raise RuntimeError(f"kafka-python group member read {records} records in {READ_TIMEOUT:.0f}s")
            take(consumer.poll(timeout_ms=1000))
        t_done = time.monotonic()
        if problems:
            raise RuntimeError(problems[0])
        emit(
            event="result",
            records=records,
            records_before_go=early,
            partitions=owned,
            by_partition={str(p): n for p, n in sorted(by_partition.items())},
            value_bytes=value_bytes,
            t_start=t_start,
            t_done=t_done,
            cpu_seconds=cpu_seconds() - cpu0,
            first_assignment_seconds=first_assignment[0] if first_assignment else None,
        )
    finally:
        consumer.close()


WORKERS: Final[dict[str, Callable[[dict[str, Any]], None]]] = {
    "kafka_python": worker_kafka_python,
    "confluent": worker_confluent,
    "producer": worker_producer,
    "kafka_python_producer": worker_kafka_python_producer,
    "kafka_python_group": worker_kafka_python_group,
}


def run(spec: dict[str, Any]) -> None:
    """The direct-client process: the worker ``spec["kind"]``."""
    raise_nofile()
    WORKERS[spec["kind"]](spec)
