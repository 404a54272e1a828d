"""Routes shared by a fleet of proxies: a compacted Kafka topic every proxy tails (``[server.route_store]``).

Each record's key is a route's uri. Its value is JSON: ``{"route": {...}}``, the
keys of the route's ``[[routes]]`` table, or ``{"deleted": true}``, which hides a
route of the proxies' files; a null value (a tombstone) removes the uri's entry,
so the file's route shows again. Kafka keeps the last record of each uri, like
APISIX's etcd keeps the last value of a key, with nothing new to run.

:class:`KafkaRouteStore` reads the topic from its start, and calls ``apply``
with every entry once it has caught up with the end, then again after each
batch of changes. ``put`` writes an entry, acknowledged by every in-sync
replica. One thread at a time uses its clients, each call within the
connection's ``request_timeout``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import trio

from .._config import RouteConfig, RouteStoreConfig
from ._settings import admin_config, consumer_config, producer_config

log = logging.getLogger("kafka_ws_trio.route_store")

#: What ``apply`` gets: per uri, the route's table, or None for a deleted one.
Entries = dict[str, dict[str, Any] | None]
#: Milliseconds one poll of the topic waits for records.
POLL_MS: Final = 500
#: Seconds between attempts to read the store while it cannot be read (its brokers away, say).
RETRY_SECONDS: Final = 5.0


def store_connection(config: RouteStoreConfig) -> RouteConfig:
    """The store's connection as a route's (its brokers, TLS and SASL), for the clients' settings."""
    return RouteConfig("/_route_store", config.nodes, tls=config.tls, sasl=config.sasl)


def encode_entry(table: dict[str, Any] | None) -> bytes:
    """A record's value: the route's table, or a deletion."""
    return json.dumps({"deleted": True} if table is None else {"route": table}, sort_keys=True).encode()


def decode_entry(value: bytes | None) -> tuple[bool, dict[str, Any] | None]:
    """(whether the uri has an entry, its table or None for a deletion); a tombstone has no entry.

    Raises:
        ValueError: not a value :func:`encode_entry` writes.
    """
    if value is None:
        return False, None
    document = json.loads(value)
    if document == {"deleted": True}:
        return True, None
    if isinstance(document, dict) and isinstance(document.get("route"), dict) and len(document) == 1:
        return True, document["route"]
    raise ValueError("neither {'route': {...}} nor {'deleted': true}")


class KafkaRouteStore:
    """One proxy's view of the route store: start with ``await nursery.start(store.run, apply)``."""

    def __init__(self, config: RouteStoreConfig) -> None:
        self.topic = config.topic
        self._replication = config.replication_factor if config.replication_factor is not None else -1
        self._connection = store_connection(config)
        self._limiter = trio.CapacityLimiter(1)
        self._consumer: Any = None
        self._producer: Any = None
        self._entries: Entries = {}
        #: The offset after the last record read: what ``put`` waits to see read.
        self.read_to = 0

    async def run(self, apply: Callable[[Entries], Awaitable[None]], caught_up: trio.Event) -> None:
        """Tail the topic until cancelled; ``caught_up`` is set once the first catch-up is applied.

        While the store cannot be read (its brokers away, the topic not readable), it
        tries again every :data:`RETRY_SECONDS`, saying so in the log once per reason.
        """
        said = ""
        while True:
            try:
                await self._tail(apply, caught_up)
            except Exception as exc:  # kafka-python's errors, and OSError: all mean "not readable now"
                reason = f"{type(exc).__name__}: {exc}"
                if reason != said:
                    log.warning(
                        "route store %s on %s cannot be read (%s); trying again every %gs",
                        self.topic,
                        ", ".join(self._connection.nodes),
                        reason,
                        RETRY_SECONDS,
                        extra={"event": "route_store_unreadable", "reason": reason},
                    )
                    said = reason
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(self._connection.request_timeout):
                    await trio.to_thread.run_sync(self._close, limiter=self._limiter)
            await trio.sleep(RETRY_SECONDS)

    async def _tail(self, apply: Callable[[Entries], Awaitable[None]], caught_up: trio.Event) -> None:
        await trio.to_thread.run_sync(self._open, limiter=self._limiter)
        unapplied = True  # entries read (or, at first, the topic's start) that apply has not had yet
        while True:
            changed, at_end = await trio.to_thread.run_sync(self._poll, unapplied, limiter=self._limiter)
            unapplied = unapplied or changed
            if unapplied and at_end:
                await apply(dict(self._entries))
                unapplied = False
                caught_up.set()

    async def put(self, uri: str, table: dict[str, Any] | None) -> int:
        """Write ``uri``'s entry (a table, or None to delete the route); the offset it was written at.

        Raises:
            OSError: the store cannot be written now (its message says why); TimeoutError (an OSError):
                the write was not confirmed in time, and may still take effect.
        """
        if self._producer is None:  # not open (nor being opened): say so now, not after the open's wait
            raise OSError(f"the route store {self.topic} cannot be read or written now (see the log)")
        return await trio.to_thread.run_sync(self._put, uri, table, limiter=self._limiter)

    # -------------------------------------------------------------- in a thread

    def _open(self) -> None:
        from kafka import KafkaConsumer, KafkaProducer, TopicPartition
        from kafka.admin import KafkaAdminClient, NewTopic
        from kafka.errors import TopicAlreadyExistsError

        route = self._connection
        admin = KafkaAdminClient(**admin_config(route))
        try:
            if self.topic not in set(admin.list_topics()):
                topic = NewTopic(self.topic, 1, self._replication, topic_configs={"cleanup.policy": "compact"})
                try:
                    admin.create_topics([topic], timeout_ms=int(route.request_timeout * 1000))
                    copies = "the broker's default" if self._replication < 0 else self._replication
                    log.info("created the route store's topic %s (compacted; replicas: %s)", self.topic, copies)
                except TopicAlreadyExistsError:
                    pass  # another proxy made it meanwhile
        finally:
            admin.close()
        self._entries = {}  # read again from the start
        self.read_to = 0
        self._tp = TopicPartition(self.topic, 0)
        self._consumer = KafkaConsumer(**consumer_config(route))
        self._consumer.assign([self._tp])
        self._consumer.seek_to_beginning(self._tp)
        self._producer = KafkaProducer(**producer_config(route, -1))

    def _poll(self, unapplied: bool) -> tuple[bool, bool]:
        """Read what came; (whether an entry changed, whether the end of the topic is reached).

        The end is asked of the broker only when something waits to be applied: a quiet
        store costs one fetch per poll, not a ListOffsets too (the end is then reported False).
        """
        batches = self._consumer.poll(timeout_ms=POLL_MS)
        changed = False
        for records in batches.values():
            for record in records:
                self.read_to = record.offset + 1
                uri = record.key.decode("utf-8") if record.key is not None else ""
                try:
                    present, table = decode_entry(record.value)
                except ValueError as exc:
                    log.error(
                        "route store %s: record %d for %r is not a route entry: %s", self.topic, record.offset, uri, exc
                    )
                    continue
                if present:
                    self._entries[uri] = table
                else:
                    self._entries.pop(uri, None)
                changed = True
        if not (unapplied or changed):
            return False, False
        end = self._consumer.end_offsets([self._tp], timeout_ms=int(self._connection.request_timeout * 1000))[self._tp]
        position = self._consumer.position(self._tp)
        return changed, position is not None and position >= end

    def _put(self, uri: str, table: dict[str, Any] | None) -> int:
        if self._producer is None:
            raise OSError(f"the route store {self.topic} cannot be read or written now (see the log)")
        from kafka.errors import KafkaTimeoutError

        wait = self._connection.request_timeout
        try:
            future = self._producer.send(self.topic, key=uri.encode("utf-8"), value=encode_entry(table), partition=0)
            return int(future.get(timeout=wait).offset)
        except KafkaTimeoutError:
            # Handed over, unconfirmed: the producer may still write it (it retries until its delivery timeout).
            raise TimeoutError(
                f"the route store {self.topic} did not confirm the change within {wait:g}s; "
                "it may still take effect (GET to see)"
            ) from None
        except Exception as exc:
            raise OSError(f"the route store {self.topic} did not take the change: {exc}") from None

    def _close(self) -> None:
        consumer, producer = self._consumer, self._producer
        self._consumer = self._producer = None
        for client in (consumer, producer):
            if client is not None:
                client.close()
