"""The route's producers: one shared kafka-python producer per acks level, and the thread that feeds them.

kafka-python's ``KafkaProducer`` is thread-safe and batches the records of
every caller (``produce_linger``, ``produce_batch_bytes``), so one producer per
acks level serves all the route's sessions; the ``acks=all`` one is
idempotent unless the route says otherwise. Producers are made on first use,
in a thread, within the route's deadline.

``send()`` may block (it waits for metadata), so the Trio side never calls it:
a :class:`Feeder` thread does, taking records in the order they were handed
over. Each record's future calls back from kafka-python's sender thread; when
the last record of a command has its result, the command's ``done`` runs on
the Trio thread (``run_sync_soon``). The records buffered are bounded by the
route's ``produce_route_*`` budget, which the sessions take from before they
hand records over (kafka-python 3 has no buffer bound of its own).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Final

import trio

from .._ports import Produced
from .._proto import (
    Acks,
    CommandFailed,
    ErrorCode,
    NotWritten,
    OutRecord,
    ProduceResult,
    Written,
    produce_error,
)
from ._context import KafkaContext
from ._diagnosis import diagnose, kafka_failure
from ._settings import delivery_timeout, producer_config
from ._topic_limits import TopicLimits

log = logging.getLogger("kafka_ws_trio.kafka")

#: Seconds allowed for closing one producer (it first sends what it holds).
PRODUCER_CLOSE_TIMEOUT: Final = 5.0
#: Seconds past kafka-python's delivery timeout before the proxy fails a record itself.
DELIVERY_MARGIN: Final = 2.0
#: Seconds between the watchdog's looks at the oldest command still unanswered.
WATCH_TICK: Final = 0.5
#: kafka-python's ``acks`` for each level a command may ask for.
KAFKA_ACKS: Final = {Acks.ALL: -1, Acks.LEADER: 1, Acks.NONE: 0}
_ROUTE_ACKS: Final = {"all": Acks.ALL, "leader": Acks.LEADER, "none": Acks.NONE}


class Feeder:
    """One thread that runs jobs (calls to ``send()``) in the order they were put; started on first use."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._jobs: collections.deque[Callable[[], None] | None] = collections.deque()
        self._wakeup = threading.Event()
        self._thread: threading.Thread | None = None

    def put(self, job: Callable[[], None]) -> None:
        """Run ``job`` in the feeder thread after the jobs put before it; never blocks."""
        self._jobs.append(job)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        # Set only when clear: the thread clears it before it takes the jobs, so a job put while it
        # is set is taken in that pass. Setting costs a lock and a notify, one per command otherwise.
        if not self._wakeup.is_set():
            self._wakeup.set()

    def _run(self) -> None:
        jobs = self._jobs
        while True:
            self._wakeup.wait()
            self._wakeup.clear()
            while jobs:
                job = jobs.popleft()
                if job is None:
                    return
                try:
                    job()
                except Exception:  # a job settles its own records; this is a bug
                    log.exception("bug in a producer job")

    async def barrier(self) -> None:
        """Return once the jobs put so far have run (the caller bounds the wait)."""
        reached = trio.Event()
        token = trio.lowlevel.current_trio_token()

        def mark() -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(reached.set)

        self.put(mark)
        await reached.wait()

    async def aclose(self) -> None:
        """Let the jobs put so far run, then stop the thread (shielded, bounded)."""
        thread = self._thread
        if thread is None:
            return
        self._jobs.append(None)
        self._wakeup.set()
        with trio.move_on_after(PRODUCER_CLOSE_TIMEOUT, shield=True):
            await trio.to_thread.run_sync(thread.join)


class Sending:
    """The records of one produce command on their way: results fill in from any thread, ``done`` runs once.

    Kafka's delivery timeout should end every record; :meth:`expire` ends those it has not,
    from the route's watchdog, and then later results are ignored.
    """

    __slots__ = ("_done", "_finished", "_left", "_lock", "_token", "acknowledged", "partitions", "results", "topic")

    def __init__(
        self,
        topic: str,
        results: list[ProduceResult | None],
        partitions: list[int],
        done: Produced,
        *,
        acknowledged: bool,
    ) -> None:
        self.topic = topic
        #: False with acks=0: Kafka answers nothing, so no offset is known (reported as -1).
        self.acknowledged = acknowledged
        #: One per record; None until it has its result.
        self.results = results
        #: Each record's partition as far as known before Kafka answers (-1: the producer picks).
        self.partitions = partitions
        self._left = sum(result is None for result in results)
        self._finished = False
        self._lock = threading.Lock()
        self._done = done
        self._token = trio.lowlevel.current_trio_token()
        if self._left == 0:
            self._finished = True
            self._token.run_sync_soon(self._finish)

    @property
    def finished(self) -> bool:
        return self._finished

    def written(self, index: int, metadata: Any) -> None:
        offset = metadata.offset if self.acknowledged else -1
        self.settle(index, Written(metadata.partition, offset, metadata.timestamp))

    def failed(self, index: int, partition: int, exc: BaseException) -> None:
        failure = produce_failure(exc)
        self.settle(index, NotWritten(partition, failure.code, produce_error(self.topic, partition, failure.reason)))

    def settle(self, index: int, result: ProduceResult) -> None:
        """Record one record's result (any thread); the last one sends them all to the Trio thread."""
        with self._lock:
            if self._finished:
                return  # expired: its answer has gone
            self.results[index] = result
            self._left -= 1
            last = self._left == 0
            if last:
                self._finished = True
        if last:
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(self._finish)

    def expire(self, reason: str) -> bool:
        """On the Trio thread: fail every record still without a result with TIMEOUT; False when none was left."""
        with self._lock:
            if self._finished:
                return False
            self._finished = True
            for index, result in enumerate(self.results):
                if result is None:
                    partition = self.partitions[index]
                    message = produce_error(self.topic, partition, reason)
                    self.results[index] = NotWritten(partition, ErrorCode.TIMEOUT, message)
        self._finish()
        return True

    def _finish(self) -> None:
        results = tuple(self.results)
        assert all(result is not None for result in results)
        done, self._done = self._done, _ignore
        self.results, self.partitions = [], []  # the watchdog may keep this a while: not its records
        done(results)  # type: ignore[arg-type]


def _ignore(results: tuple[ProduceResult, ...]) -> None:
    """What a finished command's ``done`` becomes: it has been called once already."""


def send_job(
    producer: Any,
    sending: Sending,
    records: Sequence[tuple[int, OutRecord]],
    now_ms: int,
    still_open: Callable[[], bool] | None = None,
) -> Callable[[], None]:
    """The feeder's job: ``send()`` each record, its result going to ``sending``.

    ``still_open`` (a transaction's): records are sent only while it returns True, so that none
    reaches a transaction that has ended, or the next one on the same producer. After a send that
    timed out (kafka-python waited ``max_block_ms`` for the topic's metadata), the job's other
    records fail at once instead of each waiting as long, holding up the route's other commands.
    """
    topic = sending.topic

    def job() -> None:
        given_up: BaseException | None = None
        for index, record in records:
            partition = -1 if record.partition is None else record.partition
            if given_up is not None:
                sending.failed(index, partition, given_up)
                continue
            if still_open is not None and not still_open():
                sending.failed(index, partition, TransactionEnded())
                continue
            try:
                future = producer.send(
                    topic,
                    value=record.value,
                    key=record.key,
                    headers=list(record.headers),
                    partition=record.partition,
                    timestamp_ms=record.timestamp or now_ms,
                )
            except Exception as exc:
                sending.failed(index, partition, exc)
                if _is_timeout(exc):
                    given_up = exc
                continue
            future.add_callback(sending.written, index)
            future.add_errback(sending.failed, index, partition)

    return job


class TransactionEnded(Exception):
    """A record of a transaction that ended before the feeder reached it (aborted, expired)."""


def _is_timeout(exc: BaseException) -> bool:
    from kafka.errors import KafkaTimeoutError

    return isinstance(exc, KafkaTimeoutError)


def produce_failure(exc: BaseException) -> CommandFailed:
    """A record's failure, from kafka-python's exception, in the proxy's codes."""
    from kafka.errors import (
        InvalidProducerEpochError,
        KafkaTimeoutError,
        MessageSizeTooLargeError,
        ProducerFencedError,
        RecordListTooLargeError,
    )

    if isinstance(exc, MessageSizeTooLargeError | RecordListTooLargeError):
        # Raised by send() with its own text (larger than max_request_size), or Kafka's answer.
        detail = str(exc).split(": ", 1)[-1] if "when serialized" in str(exc) else exc.message
        return CommandFailed(ErrorCode.RECORD_TOO_LARGE, f"RECORD_TOO_LARGE: {detail}")
    if isinstance(exc, ProducerFencedError | InvalidProducerEpochError):
        return CommandFailed(ErrorCode.TXN_FENCED, exc.message)
    if isinstance(exc, KafkaTimeoutError):
        return CommandFailed(ErrorCode.TIMEOUT, f"not acknowledged in time ({exc})")
    if isinstance(exc, TransactionEnded):
        return CommandFailed(ErrorCode.TXN_NOT_OPEN, "the transaction ended before this record was sent")
    if isinstance(exc, ValueError | TypeError | AssertionError):
        return CommandFailed(ErrorCode.INVALID_REQUEST, str(exc))
    if isinstance(exc, Exception):
        return kafka_failure(exc, "produce")
    return CommandFailed(ErrorCode.INTERNAL_ERROR, type(exc).__name__)


def route_acks(context: KafkaContext, acks: Acks) -> Acks:
    """The acks level a command gets: its own, or the route's default."""
    return _ROUTE_ACKS[context.route.produce_acks] if acks == Acks.ROUTE_DEFAULT else acks


def new_producer(context: KafkaContext, acks: Acks, transactional_id: str | None = None) -> Any:
    """In a thread: a kafka-python producer for the route, or CommandFailed naming why not."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    route = context.route
    unreachable = diagnose(route, tcp_only=True)
    if unreachable is not None:
        raise unreachable
    try:
        return KafkaProducer(**producer_config(route, KAFKA_ACKS[acks], transactional_id))
    except KafkaError as exc:
        raise (diagnose(route) or kafka_failure(exc, "connect")) from exc


async def close_producer(producer: Any) -> None:
    """Close a producer in a thread: it sends what it holds first (shielded, bounded, never raising)."""
    with trio.move_on_after(2 * PRODUCER_CLOSE_TIMEOUT + 1, shield=True):
        await trio.to_thread.run_sync(_close, producer)


def _close(producer: Any) -> None:
    """In a thread: close, or when what it holds cannot be sent in time, stop its sender thread anyway.

    kafka-python's ``close()`` first flushes, and raises when that times out, before it would
    force its sender thread to stop: a producer stuck after an outage would keep its thread.
    """
    try:
        producer.close(PRODUCER_CLOSE_TIMEOUT)
    except Exception as exc:
        log.warning("closing a Kafka producer: %s; stopping it without sending what it holds", exc)
        sender = getattr(producer, "_sender", None)
        if sender is not None:
            sender.force_close()
            sender.join(PRODUCER_CLOSE_TIMEOUT)


#: Bytes a record in a batch of its own takes beyond its key, value and headers, at most: the
#: batch header (61) and the record's varints, plus ``HEADER_OVERHEAD_BOUND`` per header.
RECORD_OVERHEAD_BOUND: Final = 61 + 5 * 8
HEADER_OVERHEAD_BOUND: Final = 2 * 5


def encoded_size(record: OutRecord) -> int:
    """Bytes of ``record`` in a batch of its own, as kafka-python works it out (and refuses above max_request_size)."""
    from kafka.record.default_records import DefaultRecordBatchBuilder

    size: int = DefaultRecordBatchBuilder.estimate_size_in_bytes(record.key, record.value, list(record.headers))
    return size


#: Milliseconds inside the topic's timestamp bounds a record's timestamp must stay: the broker's
#: clock may differ from the proxy's a little, and a record it refuses costs every record in flight.
TIMESTAMP_MARGIN_MS: Final = 60_000


def _timestamp_refusal(timestamp: int, limits: TopicLimits) -> str | None:
    """Why Kafka would refuse a record with this CreateTime (INVALID_TIMESTAMP), or None."""
    now = int(time.time() * 1000)
    if limits.after_max_ms is not None and timestamp - now > limits.after_max_ms - TIMESTAMP_MARGIN_MS:
        return (
            f"timestamp {timestamp} is {timestamp - now} ms ahead of now; the topic takes at most "
            f"{limits.after_max_ms} (message.timestamp.after.max.ms), less a minute for clocks"
        )
    if limits.before_max_ms is not None and now - timestamp > limits.before_max_ms - TIMESTAMP_MARGIN_MS:
        return (
            f"timestamp {timestamp} is {now - timestamp} ms in the past; the topic takes at most "
            f"{limits.before_max_ms} (message.timestamp.before.max.ms), less a minute for clocks"
        )
    return None


class RouteProducers:
    """The route's shared producers by acks level, made on first use; and its feeder thread."""

    def __init__(self, context: KafkaContext) -> None:
        self._context = context
        self._producers: dict[Acks, Any] = {}
        self._opening = trio.Lock()
        self.feeder = Feeder(f"kafka-ws-trio producer {context.route.uri}")
        #: Records handed to Kafka so far, and how many failed.
        self.records_sent = 0
        self.records_failed = 0
        #: Commands handed over, oldest first, with the time by which each must have its results
        #: (the same delay for all, so the deadlines grow), and whether the watchdog runs.
        self._due: collections.deque[tuple[float, Sending, Any]] = collections.deque()
        self._watching = False
        #: Seconds a record may take: Kafka's delivery timeout, and a margin.
        self.timeout = delivery_timeout(context.route) + DELIVERY_MARGIN
        #: Producers replaced because a command's records outlived the timeout.
        self.producers_replaced = 0

    async def producer(self, acks: Acks) -> Any:
        """The shared producer for ``acks`` (never ROUTE_DEFAULT), made within the route's deadline."""
        producer = self._producers.get(acks)
        if producer is not None:
            return producer
        context = self._context
        async with self._opening:
            producer = self._producers.get(acks)
            if producer is None:
                try:
                    with trio.fail_after(context.deadline):
                        producer = await trio.to_thread.run_sync(new_producer, context, acks, limiter=context.limiter)
                except CommandFailed as exc:
                    context.outages.failed(exc)
                    raise
                except trio.TooSlowError:
                    raise CommandFailed(ErrorCode.TIMEOUT, "connecting to Kafka timed out") from None
                self._producers[acks] = producer
        return producer

    def hand_over(
        self,
        producer: Any,
        topic: str,
        partitions: frozenset[int],
        limits: TopicLimits,
        records: Sequence[OutRecord],
        done: Produced,
        still_open: Callable[[], bool] | None = None,
    ) -> None:
        """Give ``records`` to the feeder for ``producer``; a record Kafka would refuse for good fails now.

        Refused here: a partition the topic lacks, a record larger than the route or the topic
        allows, a record without a key for a compacted topic.
        """
        results: list[ProduceResult | None] = []
        to_send: list[tuple[int, OutRecord]] = []
        for index, record in enumerate(records):
            failure = self._refusal(record, partitions, limits)
            if failure is None:
                results.append(None)
                to_send.append((index, record))
            else:
                partition = -1 if record.partition is None else record.partition
                results.append(NotWritten(partition, failure.code, produce_error(topic, partition, failure.reason)))

        def counted(results: tuple[ProduceResult, ...]) -> None:
            self.records_sent += len(results)
            failed = sum(isinstance(result, NotWritten) for result in results)
            self.records_failed += failed
            if failed:
                self._drop_if_broken(producer)
            done(results)

        placed = [-1 if record.partition is None else record.partition for record in records]
        sending = Sending(topic, results, placed, counted, acknowledged=producer.config["acks"] != 0)
        if to_send:
            self.feeder.put(send_job(producer, sending, to_send, int(time.time() * 1000), still_open))
            self._due.append((trio.current_time() + self.timeout, sending, producer))
            if not self._watching:
                self._watching = self._context.spawn(self._watch)

    async def _watch(self) -> None:
        """Fail what outlives the timeout, and replace the producer that held it.

        kafka-python's delivery timeout should make this needless; but after a broker was
        killed, its idempotent producer was seen holding batches it neither sent nor
        expired (waiting for a new producer id), with every later record behind them.
        """
        due = self._due
        try:
            while due:
                deadline, sending, producer = due[0]
                if not sending.finished and trio.current_time() < deadline:
                    # Looked at again every tick, so that answered commands behind it leave soon.
                    await trio.sleep_until(min(deadline, trio.current_time() + WATCH_TICK))
                    continue
                due.popleft()
                if sending.expire(f"not acknowledged within {self.timeout:g}s"):
                    self._replace(producer, "records outlived the delivery timeout")
        finally:
            self._watching = False

    def _refusal(self, record: OutRecord, partitions: frozenset[int], limits: TopicLimits) -> CommandFailed | None:
        """Why ``record`` cannot be written whatever Kafka says now."""
        if record.partition is not None and record.partition not in partitions:
            return CommandFailed(
                ErrorCode.PARTITION_NOT_FOUND, f"not found partition (the topic has {len(partitions)})"
            )
        if record.key is None and limits.compacted:
            return CommandFailed(ErrorCode.INVALID_REQUEST, "the topic is compacted: every record needs a key")
        if record.timestamp:
            refused = _timestamp_refusal(record.timestamp, limits)
            if refused is not None:
                return CommandFailed(ErrorCode.INVALID_REQUEST, refused)
        route_limit = self._context.route.produce_max_record_bytes
        limit = min(route_limit, limits.max_message_bytes)
        overhead = RECORD_OVERHEAD_BOUND + HEADER_OVERHEAD_BOUND * len(record.headers)
        if record.size + overhead > limit:  # only then is the exact size worth working out
            size = encoded_size(record)
            if size > limit:
                bound = (
                    f"produce_max_record_bytes ({route_limit})"
                    if route_limit <= limits.max_message_bytes
                    else f"the topic's max.message.bytes ({limits.max_message_bytes})"
                )
                return CommandFailed(ErrorCode.RECORD_TOO_LARGE, f"RECORD_TOO_LARGE: {size} bytes, more than {bound}")
        return None

    def _drop_if_broken(self, producer: Any) -> None:
        """A shared producer that kafka-python has put in a fatal state fails every record: replace it."""
        manager = getattr(producer, "_transaction_manager", None)
        if manager is not None and manager.has_fatal_error():
            self._replace(producer, f"it failed for good ({manager.last_error})")

    def _replace(self, producer: Any, why: str) -> None:
        """Stop using a shared producer (the next command makes a new one) and close it in the background.

        A transactional one is left to its transaction, whose end fails and drops it.
        """
        for acks, shared in list(self._producers.items()):
            if shared is producer:
                del self._producers[acks]
                self.producers_replaced += 1
                log.warning("replacing the route's acks=%s producer: %s", acks.name.lower(), why)
                self._context.spawn(partial(close_producer, producer))

    async def aclose(self) -> None:
        """Stop the feeder, then close every producer (each sends what it holds first)."""
        await self.feeder.aclose()
        producers, self._producers = list(self._producers.values()), {}
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as nursery:
                for producer in producers:
                    nursery.start_soon(close_producer, producer)
