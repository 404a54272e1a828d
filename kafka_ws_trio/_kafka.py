"""The Kafka edge: one kafka-python consumer per topic-partition, shared by sessions.

kafka-python is blocking and not thread-safe, so:

* every call runs in a worker thread through one :class:`trio.CapacityLimiter`
  the server owns, and never two threads touch one consumer at once (each
  consumer has its own :class:`trio.Lock`);
* every call has a deadline. Calls kafka-python bounds itself (poll, offset
  lookups) get a ``timeout_ms``; the ones it does not bound (metadata) are
  guarded by a kill switch that closes the consumer from another thread when
  the deadline passes, which makes the blocked call return;
* consumers live in a registry owned by the route's :class:`KafkaUpstream`,
  keyed by (topic, partition), not by session. Sessions reading the same
  partition share its :class:`_PartitionReader` and its bounded cache of
  recent records: many sessions tailing one partition cost the broker one
  stream of fetches. Idle readers are closed after ``idle_timeout``;
* closing a consumer happens in a shielded, time-limited scope.

kafka-python reports a wrong password or a bad certificate only as "Unable
to bootstrap" after its timeout; :func:`_diagnose` then probes the brokers
itself (TCP, then TLS) to name the real cause.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import itertools
import logging
import socket
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol

import attrs
import outcome
import trio

from ._config import RouteConfig
from ._proto import CommandFailed, partition_not_found, topic_not_found
from ._proto import FETCH_FRAME_OVERHEAD, EncodedBatch, ErrorCode, encode_message_entry
from ._ports import ParkedResult

log = logging.getLogger("kafka_ws_trio.kafka")

#: Seconds allowed for closing one kafka-python client.
CLOSE_TIMEOUT: Final = 5.0
#: How long a topic's partition list is trusted before it is asked again.
METADATA_TTL: Final = 10.0
#: How long "no such topic" is trusted (short: topics get created).
MISSING_TOPIC_TTL: Final = 1.0
#: How long a failed connection attempt is reported without trying again,
#: so a burst of commands to a dead cluster costs one attempt, not one each.
CONNECT_FAILURE_TTL: Final = 1.0
#: Records kafka-python hands over per poll.
MAX_POLL_RECORDS: Final = 2000
#: A poll that returns records within this many seconds, or within BUFFERED_SHARE of the time
#: since the previous poll returned, most likely answered from the fetch kafka-python sent
#: ahead at the end of that poll (no round trip to the broker): its records are as old as
#: that gap (a round of every tailing session) ...
BUFFERED_POLL: Final = 0.001
BUFFERED_SHARE: Final = 0.25
#: ... so the poll asks once more, waiting at most this many milliseconds, for what came since.
FRESH_POLL_MS: Final = 10
#: Bytes of records one partition's cache may hold, besides ``cache_records``.
DEFAULT_CACHE_BYTES: Final = 16 * 1024 * 1024
#: Seconds for each TCP or TLS probe of a broker when naming a failure.
PROBE_TIMEOUT: Final = 1.0
#: Extra seconds the kill switch waits past a call's own deadline.
KILL_SWITCH_MARGIN: Final = 1.0

#: Bytes of joined response bodies a partition keeps for sessions asking the same
#: thing (tailing sessions); on top of the window's own DEFAULT_CACHE_BYTES.
SHARED_BODY_BYTES: Final = 4 * 1024 * 1024
#: How many of the latest fetches of a partition reading ahead keeps in the window.
READ_AHEAD_GUARD: Final = 8
#: A fetch at most this many offsets ahead of the consumer reads forward instead of seeking ...
READ_AHEAD_RECORDS: Final = 10_000
#: ... in at most this many polls.
READ_AHEAD_POLLS: Final = 4

_EMPTY: Final = EncodedBatch(b"", 0)
#: Failures that say Kafka cannot be reached (as opposed to a bad request).
_CONNECTION_FAILURES: Final = frozenset(
    {ErrorCode.BROKER_UNREACHABLE, ErrorCode.TIMEOUT, ErrorCode.AUTHENTICATION_FAILED, ErrorCode.TLS_FAILED}
)

_client_ids = itertools.count(1)


class ConsumerLike(Protocol):
    """The part of ``kafka.KafkaConsumer`` the edge uses (kafka-python ships no types)."""

    def assign(self, partitions: list[Any]) -> None: ...
    def seek(self, partition: Any, offset: int) -> None: ...
    def poll(self, timeout_ms: int = ..., max_records: int | None = ...) -> dict[Any, list[Any]]: ...
    def beginning_offsets(self, partitions: list[Any], timeout_ms: int | None = ...) -> dict[Any, int]: ...
    def end_offsets(self, partitions: list[Any], timeout_ms: int | None = ...) -> dict[Any, int]: ...
    def highwater(self, partition: Any) -> int | None: ...
    def offsets_for_times(self, timestamps: dict[Any, int], timeout_ms: int | None = ...) -> dict[Any, Any]: ...
    def partitions_for_topic(self, topic: str) -> set[int] | None: ...
    def topics(self) -> set[str]: ...
    def close(self) -> None: ...


@attrs.frozen
class UpstreamStatistics:
    """Counters of one route's Kafka side."""

    readers_open: int
    consumers_created: int
    consumers_closed: int
    broker_polls: int
    cache_hits: int
    connect_failures: int
    #: Fetches held at a log end right now, waiting for records (tailing sessions).
    fetches_parked: int = 0
    #: Parked fetches answered so far.
    parked_answered: int = 0


@attrs.define
class _Counters:
    consumers_created: int = 0
    consumers_closed: int = 0
    broker_polls: int = 0
    cache_hits: int = 0
    connect_failures: int = 0
    parked_answered: int = 0


def _ssl_context(route: RouteConfig) -> ssl.SSLContext | None:
    """The TLS context for the route's brokers, or None for plaintext."""
    tls = route.tls
    if tls is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.verify:
        if tls.ca_file:
            context.load_verify_locations(cafile=tls.ca_file)
        else:
            context.load_default_certs()
        context.check_hostname = True
        context.verify_mode = ssl.CERT_REQUIRED
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.cert_file:
        password = tls.key_password.reveal() if tls.key_password is not None else None
        context.load_cert_chain(tls.cert_file, tls.key_file, password=password)
    return context


def consumer_config(route: RouteConfig) -> dict[str, Any]:
    """kafka-python settings for one of this route's consumers (secrets included)."""
    request_timeout_ms = int(route.request_timeout * 1000)
    config: dict[str, Any] = {
        "bootstrap_servers": list(route.nodes),
        "client_id": f"{route.client_id}-{next(_client_ids)}",
        "group_id": None,
        "enable_auto_commit": False,
        "auto_offset_reset": "none",
        "security_protocol": route.security_protocol,
        "bootstrap_timeout_ms": request_timeout_ms,
        # kafka-python requires fetch_max_wait_ms < request_timeout_ms.
        "request_timeout_ms": max(request_timeout_ms, int(route.fetch_max_wait * 1000) + 1000),
        "fetch_max_wait_ms": int(route.fetch_max_wait * 1000),
        "max_partition_fetch_bytes": route.fetch_max_bytes,
        "fetch_max_bytes": route.fetch_max_bytes,
        "max_poll_records": MAX_POLL_RECORDS,
        "reconnect_backoff_max_ms": 1000,
    }
    context = _ssl_context(route)
    if context is not None:
        config["ssl_context"] = context
    if route.sasl is not None:
        config["sasl_mechanism"] = route.sasl.mechanism
        config["sasl_plain_username"] = route.sasl.username
        config["sasl_plain_password"] = route.sasl.password.reveal()
    return config


def _split_node(node: str) -> tuple[str, int]:
    host, _, port = node.rpartition(":")
    return host.strip("[]"), int(port)


def _diagnose(route: RouteConfig, *, tcp_only: bool = False) -> CommandFailed | None:
    """Name why the route's brokers cannot be used, probing them directly (blocking).

    Returns None when ``tcp_only`` and some broker accepts TCP connections.
    Bounded by PROBE_TIMEOUT per node for the TCP connect and again for TLS.
    """
    context = None if tcp_only else _ssl_context(route)
    reachable = []
    for node in route.nodes:
        host, port = _split_node(node)
        try:
            sock = socket.create_connection((host, port), timeout=PROBE_TIMEOUT)
        except OSError:
            continue
        with sock:
            if context is not None:
                try:
                    with context.wrap_socket(sock, server_hostname=host):
                        pass
                except ssl.SSLCertVerificationError as exc:
                    return CommandFailed(ErrorCode.TLS_FAILED, f"TLS certificate verify failed: {exc.verify_message}")
                except (ssl.SSLError, OSError) as exc:
                    return CommandFailed(ErrorCode.TLS_FAILED, f"TLS handshake failed with {node}: {exc}")
        reachable.append(node)
    if not reachable:
        return CommandFailed(ErrorCode.BROKER_UNREACHABLE, f"broker unreachable: {', '.join(route.nodes)}")
    if tcp_only:
        return None
    if route.sasl is not None:
        return CommandFailed(ErrorCode.AUTHENTICATION_FAILED, "SASL authentication failed")
    return CommandFailed(ErrorCode.BROKER_UNREACHABLE, f"broker not responding: {', '.join(reachable)}")


def _named_failure(route: RouteConfig, exc: Exception, what: str) -> CommandFailed:
    """A kafka-python failure as a command failure; a timeout is probed to name its cause."""
    failure = _kafka_failure(exc, what)
    if failure.code == ErrorCode.TIMEOUT:
        return _diagnose(route) or failure
    return failure


def _kafka_failure(exc: Exception, what: str) -> CommandFailed:
    """Turn a kafka-python exception into a command failure with Kafka's own error name."""
    from kafka.errors import KafkaTimeoutError, OffsetOutOfRangeError, UnknownTopicOrPartitionError

    if isinstance(exc, OffsetOutOfRangeError):
        return CommandFailed(ErrorCode.OFFSET_OUT_OF_RANGE, "OFFSET_OUT_OF_RANGE")
    if isinstance(exc, UnknownTopicOrPartitionError):
        return topic_not_found()
    if isinstance(exc, KafkaTimeoutError):
        return CommandFailed(ErrorCode.TIMEOUT, f"{what} timed out")
    name = getattr(exc, "message", None)
    if isinstance(name, str) and name:
        if name == "NOT_LEADER_FOR_PARTITION":
            name = "NOT_LEADER_OR_FOLLOWER"  # Kafka's current name for errno 6
        return CommandFailed(ErrorCode.KAFKA_ERROR, name)
    return CommandFailed(ErrorCode.KAFKA_ERROR, f"{type(exc).__name__}: {exc}")


def _all_topics_sync(consumer: ConsumerLike) -> dict[str, frozenset[int]]:
    """In a thread: every topic of the cluster and its partitions (one metadata request)."""
    names = consumer.topics()  # always asks the cluster; partitions_for_topic then reads its cache
    return {name: frozenset(consumer.partitions_for_topic(name) or ()) for name in names}


def _encode(message: Any) -> bytes:
    """A kafka-python ConsumerRecord as the bytes it takes in a fetch response (done once per record)."""
    return encode_message_entry(message.offset, message.timestamp, message.key, message.value, message.headers)


class _Client:
    """One kafka-python consumer and the lock that keeps it to one thread at a time."""

    def __init__(self, upstream: KafkaUpstream, consumer: ConsumerLike) -> None:
        self._upstream = upstream
        self.consumer = consumer
        self.lock = trio.Lock()
        self.closed = False

    async def call(self, fn: Callable[[], Any], deadline: float) -> Any:
        """Run ``fn`` (which uses the consumer) in a thread; the caller holds ``lock``.

        If ``fn`` has not returned ``deadline`` seconds after its thread
        started (plus a margin), the consumer is closed from another thread,
        which makes a stuck kafka-python call return; the client is then
        unusable and the registry replaces it.
        """
        # When the thread started (it may wait for a Kafka thread token first). Set in
        # the thread without a round trip to Trio: that would cost each call a pass of
        # the run loop, which under load is most of a poll's latency.
        started_at: list[float] = []
        kill_scope = trio.CancelScope(shield=True)

        def in_thread() -> outcome.Outcome[Any]:
            started_at.append(time.monotonic())
            # Captured, so that fn's exception is not wrapped in the nursery's ExceptionGroup.
            captured: outcome.Outcome[Any] = outcome.capture(fn)
            return captured

        async def kill_switch() -> None:
            with kill_scope:
                allowed = deadline + KILL_SWITCH_MARGIN
                left = allowed
                while left > 0:
                    await trio.sleep(left)
                    left = started_at[0] + allowed - time.monotonic() if started_at else allowed
                log.warning("a Kafka call overran its %.1fs deadline; closing its consumer", deadline)
                self.closed = True
                await trio.to_thread.run_sync(self.consumer.close)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(kill_switch)
            try:
                result = await trio.to_thread.run_sync(in_thread, limiter=self._upstream.limiter)
            finally:
                kill_scope.cancel()
        return result.unwrap()

    async def aclose(self) -> None:
        """Close the consumer: shielded, time-limited, and never twice."""
        with trio.move_on_after(CLOSE_TIMEOUT, shield=True) as scope:
            async with self.lock:
                if not self.closed:
                    self.closed = True
                    await trio.to_thread.run_sync(self.consumer.close)
                    self._upstream.counters.consumers_closed += 1
        if scope.cancelled_caught:
            log.warning("closing a Kafka consumer took longer than %.0fs; left to finish in its thread", CLOSE_TIMEOUT)


class _Entries:
    """Encoded records in offset order, with running byte totals to slice them fast.

    ``ends[i]`` is the total size of every entry up to and including ``i``,
    counted from the first entry ever appended, so dropping entries from the
    front changes no other number (``base`` is the total before ``entries[0]``).
    """

    __slots__ = ("base", "ends", "entries", "offsets")

    def __init__(self) -> None:
        self.offsets: list[int] = []
        self.entries: list[bytes] = []
        self.ends: list[int] = []
        self.base = 0

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def size(self) -> int:
        return (self.ends[-1] if self.ends else self.base) - self.base

    def append(self, offset: int, entry: bytes) -> None:
        self.offsets.append(offset)
        self.entries.append(entry)
        self.ends.append((self.ends[-1] if self.ends else self.base) + len(entry))

    def extend(self, other: _Entries) -> None:
        start = self.ends[-1] if self.ends else self.base
        self.offsets += other.offsets
        self.entries += other.entries
        self.ends += itertools.accumulate(map(len, other.entries), initial=start)
        del self.ends[len(self.ends) - len(other.entries) - 1]  # the running total's start value

    def drop_front(self, count: int) -> None:
        if count <= 0:
            return
        self.base = self.ends[count - 1]
        del self.offsets[:count], self.entries[:count], self.ends[:count]

    def take(self, offset: int, max_body: int) -> EncodedBatch | None:
        """The entries at or after ``offset`` that fit in ``max_body`` bytes; None when there are none.

        Raises:
            CommandFailed: the first of them alone is larger than ``max_body``.
        """
        first = bisect.bisect_left(self.offsets, offset)
        if first == len(self.offsets):
            return None
        before = self.ends[first - 1] if first else self.base
        last = bisect.bisect_right(self.ends, before + max_body, lo=first)
        if last == first:
            size = self.ends[first] - before
            raise CommandFailed(
                ErrorCode.RECORD_TOO_LARGE,
                f"record at offset {self.offsets[first]} is {size} bytes encoded, "
                f"more than fits in max_message_size ({max_body + FETCH_FRAME_OVERHEAD})",
            )
        after = self.offsets[last - 1] + 1
        if last - first == 1:
            return EncodedBatch(self.entries[first], 1, after)
        return EncodedBatch(b"".join(self.entries[first:last]), last - first, after)


@attrs.define
class _Poll:
    """A poll in progress at one offset; sessions asking for the same offset share it."""

    done: trio.Event = attrs.Factory(trio.Event)
    entries: _Entries = attrs.Factory(_Entries)
    failure: CommandFailed | None = None


@attrs.define(slots=True)
class _Waiter:
    """A fetch parked at a partition's log end (see :meth:`_PartitionReader.park`)."""

    offset: int
    max_body: int
    deliver: Callable[[ParkedResult], None]
    withdrawn: bool = False

    def withdraw(self) -> None:
        self.withdrawn = True


class _PartitionReader:
    """Reads one topic-partition for every session that asks, through one consumer.

    Records are encoded once, as they arrive, into the bytes they take in a
    fetch response; a response is then a header and a join of those bytes.
    A window of recent records ``[start, next)`` answers any fetch inside it
    from memory, and sessions asking for the same offset with the same size
    limit share one joined body. A fetch outside the window polls the
    consumer; sessions asking for that offset meanwhile share the poll (at the
    log end, that is every tailing session). The window follows the newest
    data: reading older records for one client does not evict it.
    """

    def __init__(self, upstream: KafkaUpstream, topic: str, partition: int, client: _Client) -> None:
        from kafka import TopicPartition

        self._upstream = upstream
        self._route = upstream.route
        self.topic = topic
        self.partition = partition
        self.tp = TopicPartition(topic, partition)
        self.client = client
        self._window = _Entries()
        #: The window covers offsets [start, next).
        self._start: int | None = None
        self._next: int | None = None
        #: Joined bodies recently sent, by (offset, max_body); cleared when the window changes.
        self._bodies: dict[tuple[int, int], EncodedBatch] = {}
        self._bodies_bytes = 0
        #: The last failure to reach Kafka and when: repeated at once for a moment, so
        #: that commands queued behind a failing call do not each wait a deadline.
        self._failure: tuple[float, CommandFailed] | None = None
        #: Where the consumer will read next; None when unknown (seek first).
        self._position: int | None = None
        self._polls: dict[int, _Poll] = {}
        #: Fetches parked at the log end, and whether a pump task is answering them.
        self._waiters: list[_Waiter] = []
        self._pumping = False
        #: The offset after the furthest record any answer has held, whether a task is
        #: reading ahead of it, and the log end offset as of the last poll (None: unknown).
        self._served_to = 0
        self._reading_ahead = False
        self._highwater: int | None = None
        #: The offsets the latest fetches asked for: reading ahead must not push them out of the window.
        self._asked: deque[int] = deque(maxlen=READ_AHEAD_GUARD)
        #: When the consumer's last poll returned (time.monotonic(), in its thread).
        self._polled_at = 0.0
        self.users = 0
        self.last_used = trio.current_time()

    # ---------------------------------------------------------------- window

    def from_window(self, offset: int, max_body: int) -> EncodedBatch | None:
        """Records at ``offset`` from memory, or None when the window does not hold any."""
        if self._start is None or self._next is None or not (self._start <= offset < self._next):
            return None
        key = (offset, max_body)
        batch = self._bodies.get(key)
        if batch is None:
            batch = self._window.take(offset, max_body)
            if batch is None:
                return None  # [offset, next) holds no records (compaction, transaction markers)
            if batch.count > 1:  # a single entry is the window's own bytes, not a copy
                if self._bodies_bytes + len(batch.body) > SHARED_BODY_BYTES:
                    self._bodies.clear()
                    self._bodies_bytes = 0
                self._bodies[key] = batch
                self._bodies_bytes += len(batch.body)
        self._upstream.counters.cache_hits += 1
        self._served(offset, batch)
        return batch

    def _remember(self, start: int, entries: _Entries, position: int) -> None:
        """Add a poll's result to the window, unless it is older than what the window holds."""
        contiguous = self._next == start
        if not contiguous and self._next is not None and position <= self._next:
            return  # older data, read for one client: keep the window on the newest records
        self._bodies.clear()
        self._bodies_bytes = 0
        if not contiguous:
            self._window = _Entries()
            self._start = start
        self._window.extend(entries)
        self._next = position
        window = self._window
        excess_records = len(window) - self._route.cache_records
        if excess_records > 0 or window.size > DEFAULT_CACHE_BYTES:
            drop = max(excess_records, 0)
            while drop < len(window) and window.ends[-1] - window.ends[drop] > DEFAULT_CACHE_BYTES:
                drop += 1
            drop = min(drop, len(window))
            if drop:
                self._start = window.offsets[drop - 1] + 1
                window.drop_front(drop)

    # ----------------------------------------------------------------- fetch

    async def fetch(self, offset: int, max_body: int) -> EncodedBatch:
        """Records from ``offset`` on, at most ``max_body`` bytes of them; empty at the log end after a bounded wait."""
        found = self.from_window(offset, max_body)
        if found is not None:
            return found
        entries = await self._read(offset)
        return self.from_window(offset, max_body) or entries.take(offset, max_body) or _EMPTY

    # ------------------------------------------------------------ read-ahead

    def _served(self, offset: int, batch: EncodedBatch) -> None:
        """Note how far answers reach; a reader near the window's end gets the next records polled early."""
        self._asked.append(offset)
        if batch.next_offset > self._served_to:
            self._served_to = batch.next_offset
        if not self._reading_ahead and self._wants_reading_ahead():
            self._reading_ahead = self._in_background(self._read_ahead)

    def _in_background(self, task: Callable[[], Awaitable[None]]) -> bool:
        """Start ``task`` in the upstream's nursery, counted as a user of this reader while it runs.

        False when the upstream is not running (no nursery to start it in).
        """
        nursery = self._upstream.nursery
        if nursery is None:
            return False

        async def counted() -> None:
            try:
                await task()
            finally:
                self.users -= 1
                self.last_used = trio.current_time()

        self.users += 1  # now, not when the task first runs: the idle closer must not get in between
        nursery.start_soon(counted)
        return True

    def _wants_reading_ahead(self) -> bool:
        """Whether an answer reached the window's end while the log holds more: the client's next fetch is there.

        Not when the poll could push out of the window records that recent
        fetches asked for: a client pipelining its fetches still needs them,
        and a seek back would throw away what kafka-python has read.
        """
        end, highwater = self._next, self._highwater
        if (
            end is None
            or highwater is None
            or not self._served_to == end < highwater
            or self._failure is not None
            or self.client.closed
            or not self._asked
        ):
            return False
        lowest = min(self._asked)
        if end + MAX_POLL_RECORDS - lowest > self._route.cache_records:
            return False
        window = self._window
        kept = bisect.bisect_left(window.offsets, lowest)
        before = window.ends[kept - 1] if kept else window.base
        newest = window.ends[-1] if window.ends else window.base
        return newest - before + self._route.fetch_max_bytes <= DEFAULT_CACHE_BYTES

    async def _read_ahead(self) -> None:
        """Poll the records after the window's end while the answer that reached it is sent and read.

        One poll at a time: the next answer that reaches the new end starts the next one.
        """
        try:
            offset = self._next
            assert offset is not None  # _wants_reading_ahead requires it
            with trio.move_on_after(self._upstream.deadline):
                await self._read(offset)
        except CommandFailed:
            pass  # the next fetch meets the failure itself
        finally:
            self._reading_ahead = False

    def _holds(self, offset: int) -> bool:
        """Whether the window has a record at or after ``offset`` (so a fetch there needs no poll)."""
        window = self._window
        return (
            self._start is not None
            and self._next is not None
            and self._start <= offset < self._next
            and bool(window.offsets)
            and offset <= window.offsets[-1]
        )

    async def _read(self, offset: int) -> _Entries:
        """Poll until the window holds ``offset`` or the log end is reached; the last poll's records.

        Sessions asking for the same offset meanwhile share this poll.
        """
        shared = self._polls.get(offset)
        if shared is not None:
            await shared.done.wait()
            if shared.failure is not None:
                raise shared.failure
            return shared.entries
        poll = self._polls[offset] = _Poll()
        try:
            async with self.client.lock:
                self._check_open()
                self._check_recent_failure()
                for attempt in range(READ_AHEAD_POLLS):
                    if self._holds(offset):
                        return poll.entries
                    # A fetch a little ahead of the consumer (a client pipelining its
                    # requests) reads forward from where the consumer is: a seek
                    # would throw away what kafka-python has already fetched.
                    ahead = (
                        attempt < READ_AHEAD_POLLS - 1  # the last attempt seeks
                        and self._position is not None
                        and self._position == self._next
                        and self._position < offset <= self._position + READ_AHEAD_RECORDS
                    )
                    start = self._position if ahead and self._position is not None else offset
                    seek = self._position != start
                    try:
                        # Tailing sessions parked here want the newest records, not the read-ahead's.
                        fresh = bool(self._waiters)
                        read: tuple[_Entries, int] = await self.client.call(
                            functools.partial(self._poll_sync, start, seek, fresh), self._upstream.call_budget
                        )
                        entries, position = read
                    except CommandFailed as exc:
                        self._position = None  # unknown after a failure: seek next time
                        poll.failure = exc
                        if exc.code in _CONNECTION_FAILURES:
                            self._failure = (trio.current_time(), exc)
                        raise
                    self._position = position
                    self._upstream.counters.broker_polls += 1
                    self._remember(start, entries, position)
                    poll.entries = entries
                    if ahead and not len(entries):
                        # Nothing after the consumer's position: that is the log end, and offset is past it.
                        failure = CommandFailed(ErrorCode.OFFSET_OUT_OF_RANGE, "OFFSET_OUT_OF_RANGE")
                        poll.failure = failure
                        raise failure
                    if not ahead or position > offset:
                        return entries
                raise AssertionError("the last attempt returns or raises")  # pragma: no cover
        finally:
            poll.done.set()
            if self._polls.get(offset) is poll:
                del self._polls[offset]

    # --------------------------------------------------------------- parking

    def park(self, offset: int, max_body: int, deliver: Callable[[ParkedResult], None]) -> Callable[[], None] | None:
        """Hold a fetch at the log end; :meth:`_pump` answers it when a poll lands. None: not held.

        Tailing sessions then cost no task each while they wait, and one task
        writes every waiting session's answer (the same shared body) as soon as
        records arrive.
        """
        if offset != self._next or self._failure is not None or self.client.closed or self._upstream.nursery is None:
            return None
        waiter = _Waiter(offset, max_body, deliver)
        self._waiters.append(waiter)
        if not self._pumping:
            self._pumping = self._in_background(self._pump)
        return waiter.withdraw

    async def _pump(self) -> None:
        """Poll at the log end while fetches are parked there, answering them after each poll."""
        try:
            while self._waiters:
                offset = self._next
                assert offset is not None  # park() requires it
                entries = _Entries()
                failure: CommandFailed | None = None
                try:
                    with trio.fail_after(self._upstream.deadline):
                        entries = await self._read(offset)
                except CommandFailed as exc:
                    failure = exc
                except trio.TooSlowError:
                    failure = CommandFailed(ErrorCode.TIMEOUT, f"fetch timed out after {self._upstream.deadline:.0f}s")
                except Exception:
                    log.exception("bug while reading %s/%d for parked fetches", self.topic, self.partition)
                    failure = CommandFailed(ErrorCode.INTERNAL_ERROR, "internal error")
                self._answer_waiters(offset, entries, failure)
        finally:
            self._pumping = False
            if self._waiters:  # only when cancelled (shutdown): nobody may wait for an answer that never comes
                self._answer_waiters(None, _Entries(), CommandFailed(ErrorCode.INTERNAL_ERROR, "proxy shutting down"))

    @property
    def waiting(self) -> list[_Waiter]:
        """The fetches parked here and not withdrawn."""
        return [waiter for waiter in self._waiters if not waiter.withdrawn]

    def _answer_waiters(self, polled: int | None, entries: _Entries, failure: CommandFailed | None) -> None:
        """Answer every parked fetch the poll at ``polled`` settles; keep the ones parked at a newer log end."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if waiter.withdrawn:
                continue
            result: ParkedResult
            if failure is not None:
                result = failure
            else:
                try:
                    result = self.from_window(waiter.offset, waiter.max_body) or entries.take(
                        waiter.offset, waiter.max_body
                    )
                except CommandFailed as exc:
                    result = exc
                if result is None:
                    if waiter.offset == self._next and waiter.offset != polled:
                        self._waiters.append(waiter)  # parked after this poll began: wait for the next
                        continue
                    # At the log end after a full wait: an empty answer. Behind the window: fetch normally.
                    result = _EMPTY if waiter.offset == self._next else None
            self._upstream.counters.parked_answered += 1
            try:
                waiter.deliver(result)
            except Exception:
                log.exception("bug while answering a parked fetch on %s/%d", self.topic, self.partition)

    def _check_recent_failure(self) -> None:
        if self._failure is not None:
            stamp, failure = self._failure
            if trio.current_time() - stamp < CONNECT_FAILURE_TTL:
                raise failure
            self._failure = None

    def _check_open(self) -> None:
        if self.client.closed:
            raise CommandFailed(ErrorCode.BROKER_UNREACHABLE, "connection to Kafka was reset; try again")

    def _poll_sync(self, offset: int, seek: bool, fresh: bool) -> tuple[_Entries, int]:
        """In a thread: read from ``offset``; when nothing comes, find out why.

        ``fresh``: if the records come from kafka-python's read-ahead, also take what came since.
        Only for tailing: a reader of history wants polls no larger than one fetch,
        which is what a response holds (larger ones made the pipelined client's
        predictions miss and cost two thirds of the throughput).
        """
        consumer = self.client.consumer
        give_up = time.monotonic() + self._route.request_timeout
        wait_ms = int(self._route.fetch_max_wait * 1000)
        if seek:
            consumer.seek(self.tp, offset)
        while True:
            asked = time.monotonic()
            try:
                batches = consumer.poll(timeout_ms=wait_ms, max_records=MAX_POLL_RECORDS)
                messages = batches.get(self.tp)
                took = time.monotonic() - asked
                gap = asked - self._polled_at
                buffered = took < BUFFERED_POLL or took < BUFFERED_SHARE * gap
                if fresh and messages and len(messages) < MAX_POLL_RECORDS and buffered:
                    # kafka-python answered from a fetch it made ahead, at the end of the previous
                    # poll: those records may be as old as the time since. What came meanwhile is
                    # one round trip away; take it too, so tailing sessions get it now, not a poll later.
                    since = consumer.poll(timeout_ms=FRESH_POLL_MS, max_records=MAX_POLL_RECORDS - len(messages))
                    more = since.get(self.tp)
                    if more and more[0].offset > messages[-1].offset:
                        messages = messages + more
            except Exception as exc:
                raise _named_failure(self._route, exc, "fetch") from exc
            finally:
                self._polled_at = time.monotonic()
            self._highwater = consumer.highwater(self.tp)
            if messages:
                entries = _Entries()
                entries.offsets = [message.offset for message in messages]
                entries.entries = [_encode(message) for message in messages]
                entries.ends = list(itertools.accumulate(map(len, entries.entries)))
                return entries, entries.offsets[-1] + 1
            # Nothing came: the log end, data not fetched yet, or a broker that
            # is gone. poll() cannot tell these apart; the log end offset can.
            end = self._end_offset_sync()
            if offset == end:
                return _Entries(), offset
            if offset > end:
                raise CommandFailed(ErrorCode.OFFSET_OUT_OF_RANGE, "OFFSET_OUT_OF_RANGE")
            remaining = give_up - time.monotonic()
            if remaining <= 0:
                raise CommandFailed(ErrorCode.TIMEOUT, "fetch timed out")
            wait_ms = int(min(remaining, self._route.request_timeout) * 1000)

    def _end_offset_sync(self) -> int:
        consumer = self.client.consumer
        try:
            ends = consumer.end_offsets([self.tp], timeout_ms=int(self._route.request_timeout * 1000))
        except Exception as exc:
            raise _named_failure(self._route, exc, "list offsets") from exc
        return int(ends[self.tp])

    # ------------------------------------------------------------ list offset

    async def list_offset(self, timestamp: int) -> int:
        async with self.client.lock:
            self._check_open()
            self._check_recent_failure()
            try:
                result: int = await self.client.call(
                    lambda: self._list_offset_sync(timestamp), self._upstream.call_budget
                )
            except CommandFailed as exc:
                if exc.code in _CONNECTION_FAILURES:
                    self._failure = (trio.current_time(), exc)
                raise
            return result

    def _list_offset_sync(self, timestamp: int) -> int:
        consumer = self.client.consumer
        timeout_ms = int(self._route.request_timeout * 1000)
        if timestamp == -1:
            return self._end_offset_sync()
        try:
            if timestamp == -2:
                return int(consumer.beginning_offsets([self.tp], timeout_ms=timeout_ms)[self.tp])
            found = consumer.offsets_for_times({self.tp: timestamp}, timeout_ms=timeout_ms)
        except Exception as exc:
            raise _named_failure(self._route, exc, "list offsets") from exc
        hit = found.get(self.tp)
        return -1 if hit is None else int(hit.offset)


class KafkaUpstream:
    """The Kafka side of one route: metadata, the partition-reader registry, idle cleanup.

    Implements the session's ``Backend`` protocol. Start it with
    ``await nursery.start(upstream.run)``; cancelling ``run`` closes every
    consumer it opened.
    """

    def __init__(self, route: RouteConfig, limiter: trio.CapacityLimiter) -> None:
        self.route = route
        self.limiter = limiter
        self.counters = _Counters()
        self._readers: dict[tuple[str, int], _PartitionReader] = {}
        self._closing = 0
        self._opening: dict[tuple[str, int], trio.Event] = {}
        self._meta: _Client | None = None
        self._topics: dict[str, frozenset[int]] = {}
        self._topics_stamp: float | None = None
        self._refreshing: _Poll | None = None
        self._connect_failure: tuple[float, CommandFailed] | None = None
        #: Where partition readers run their pumps; set while :meth:`run` runs.
        self.nursery: trio.Nursery | None = None

    @property
    def call_budget(self) -> float:
        """Seconds one thread call may take: a wait at the log end, a Kafka request, probing the brokers."""
        return self.route.fetch_max_wait + self.route.request_timeout + 2 * PROBE_TIMEOUT * len(self.route.nodes)

    @property
    def deadline(self) -> float:
        """Seconds within which a command returns or fails: connecting, then one call."""
        return self.route.request_timeout + self.call_budget

    def statistics(self) -> UpstreamStatistics:
        return UpstreamStatistics(
            readers_open=len(self._readers) + self._closing,
            consumers_created=self.counters.consumers_created,
            consumers_closed=self.counters.consumers_closed,
            broker_polls=self.counters.broker_polls,
            cache_hits=self.counters.cache_hits,
            connect_failures=self.counters.connect_failures,
            fetches_parked=sum(len(reader.waiting) for reader in self._readers.values()),
            parked_answered=self.counters.parked_answered,
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the readers' pumps and close idle readers until cancelled; then close every consumer."""
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                task_status.started()
                while True:
                    await trio.sleep(max(self.route.idle_timeout / 4, 0.05))
                    await self._close_idle()
        finally:
            self.nursery = None
            with trio.CancelScope(shield=True):
                readers = list(self._readers.values())
                self._readers.clear()
                async with trio.open_nursery() as nursery:
                    for reader in readers:
                        nursery.start_soon(reader.client.aclose)
                    if self._meta is not None:
                        nursery.start_soon(self._meta.aclose)
                self._meta = None

    async def _close_idle(self) -> None:
        now = trio.current_time()
        for key, reader in list(self._readers.items()):
            if reader.users == 0 and now - reader.last_used >= self.route.idle_timeout:
                del self._readers[key]  # new sessions open a fresh reader from now on
                log.debug("closing idle reader for %s/%d", *key)
                self._closing += 1  # still counted open until its consumer is closed
                try:
                    await reader.client.aclose()
                finally:
                    self._closing -= 1

    # ------------------------------------------------------------- consumers

    def _new_consumer(self) -> ConsumerLike:
        """In a thread: a consumer connected to the route's brokers, or CommandFailed naming why not."""
        from kafka import KafkaConsumer
        from kafka.errors import KafkaError
        from kafka.net.compat import KafkaNetClient

        unreachable = _diagnose(self.route, tcp_only=True)
        if unreachable is not None:
            raise unreachable
        made: list[Any] = []

        def client_factory(**config: Any) -> Any:
            client = KafkaNetClient(**config)
            made.append(client)
            return client

        try:
            return KafkaConsumer(**consumer_config(self.route), kafka_client=client_factory)  # type: ignore[no-any-return]
        except KafkaError as exc:
            # A failed constructor leaves its I/O thread running: stop it.
            for client in made:
                with contextlib.suppress(Exception):
                    client.close()
            raise (_diagnose(self.route) or _kafka_failure(exc, "connect")) from exc

    async def _open_client(self) -> _Client:
        now = trio.current_time()
        if self._connect_failure is not None and now - self._connect_failure[0] < CONNECT_FAILURE_TTL:
            raise self._connect_failure[1]
        try:
            with trio.fail_after(self.deadline):
                consumer = await trio.to_thread.run_sync(self._new_consumer, limiter=self.limiter)
        except CommandFailed as exc:
            self.counters.connect_failures += 1
            self._connect_failure = (trio.current_time(), exc)
            raise
        except trio.TooSlowError:
            raise CommandFailed(ErrorCode.TIMEOUT, "connecting to Kafka timed out") from None
        self._connect_failure = None
        self.counters.consumers_created += 1
        return _Client(self, consumer)

    # -------------------------------------------------------------- metadata

    async def _partitions_of(self, topic: str) -> frozenset[int]:
        """The partitions of ``topic`` (empty when it does not exist), from a shared metadata map.

        The map holds every topic of the cluster and is refreshed by one call at
        a time that every waiting lookup shares, so a burst of lookups (say, of
        topics that do not exist) costs one metadata request, not one each.
        """
        if self._topics_stamp is not None:
            age = trio.current_time() - self._topics_stamp
            partitions = self._topics.get(topic)
            if partitions is not None and age < METADATA_TTL:
                return partitions
            if partitions is None and age < MISSING_TOPIC_TTL:
                return frozenset()
        await self._refresh_topics()
        return self._topics.get(topic, frozenset())

    async def _refresh_topics(self) -> None:
        shared = self._refreshing
        if shared is not None:
            await shared.done.wait()
            if shared.failure is not None:
                raise shared.failure
            return
        refresh = self._refreshing = _Poll()
        try:
            if self._meta is None or self._meta.closed:
                self._meta = await self._open_client()
            meta = self._meta
            async with meta.lock:
                try:
                    topics = await meta.call(lambda: _all_topics_sync(meta.consumer), self.call_budget)
                except Exception as exc:
                    failure = await trio.to_thread.run_sync(_diagnose, self.route, limiter=self.limiter)
                    await meta.aclose()
                    self._meta = None
                    raise (failure or _kafka_failure(exc, "metadata")) from exc
            self._topics = topics
            self._topics_stamp = trio.current_time()
        except CommandFailed as exc:
            refresh.failure = exc
            raise
        finally:
            refresh.done.set()
            self._refreshing = None

    async def _reader(self, topic: str, partition: int) -> _PartitionReader:
        key = (topic, partition)
        while True:
            reader = self._readers.get(key)
            if reader is not None and not reader.client.closed:
                return reader
            opening = self._opening.get(key)
            if opening is None:
                break
            await opening.wait()
        # Claim the key before the first checkpoint, so one task opens it and the rest wait.
        opening = self._opening[key] = trio.Event()
        try:
            partitions = await self._partitions_of(topic)
            if not partitions:
                raise topic_not_found()
            if partition not in partitions:
                raise partition_not_found()
            stale = self._readers.pop(key, None)
            if stale is not None:
                await stale.client.aclose()
            client = await self._open_client()
            try:
                reader = _PartitionReader(self, topic, partition, client)
                async with client.lock:
                    await client.call(lambda: client.consumer.assign([reader.tp]), self.call_budget)
            except BaseException:
                await client.aclose()  # shielded: runs even when we are cancelled
                raise
            self._readers[key] = reader
            return reader
        finally:
            del self._opening[key]
            opening.set()

    # ------------------------------------------------------- Backend protocol

    async def list_offset(self, topic: str, partition: int, timestamp: int) -> int:
        reader = await self._reader(topic, partition)
        reader.users += 1
        try:
            return await reader.list_offset(timestamp)
        finally:
            reader.users -= 1
            reader.last_used = trio.current_time()

    def fetch_cached(self, topic: str, partition: int, offset: int, max_bytes: int) -> EncodedBatch | None:
        """The answer to a fetch when memory holds it, without waiting; else None."""
        reader = self._readers.get((topic, partition))
        if reader is None or reader.client.closed:
            return None
        found = reader.from_window(offset, max_bytes - FETCH_FRAME_OVERHEAD)
        if found is not None:
            reader.last_used = trio.current_time()
        return found

    def park(
        self, topic: str, partition: int, offset: int, max_bytes: int, deliver: Callable[[ParkedResult], None]
    ) -> Callable[[], None] | None:
        """Hold a fetch at the partition's log end until records arrive; None when not held (fetch it instead)."""
        reader = self._readers.get((topic, partition))
        if reader is None:
            return None
        return reader.park(offset, max_bytes - FETCH_FRAME_OVERHEAD, deliver)

    async def fetch(self, topic: str, partition: int, offset: int, max_bytes: int) -> EncodedBatch:
        reader = await self._reader(topic, partition)
        reader.users += 1
        try:
            return await reader.fetch(offset, max_bytes - FETCH_FRAME_OVERHEAD)
        finally:
            reader.users -= 1
            reader.last_used = trio.current_time()
