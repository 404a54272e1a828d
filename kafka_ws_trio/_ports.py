"""What the session and the Kafka side agree on: small Protocols, and nothing else.

The session (``_session``) and the Kafka edge (``_kafka``) both import this
module and neither imports the other; the server wires them together. Tests
put fakes on either side of it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, TypeAlias, runtime_checkable

from ._proto import (
    Acks,
    Budget,
    CommandFailed,
    EncodedBatch,
    FilterSet,
    Isolation,
    OutRecord,
    ProduceResult,
    PushBatch,
    Record,
    Stream,
)


class Backend(Protocol):
    """What a session needs from Kafka, for one route.

    Both methods raise :class:`CommandFailed` for every expected failure and
    must return or raise within :attr:`deadline` seconds.
    """

    @property
    def deadline(self) -> float: ...

    async def list_offset(self, topic: str, partition: int, timestamp: int) -> int: ...

    async def fetch(
        self, topic: str, partition: int, offset: int, max_bytes: int
    ) -> Sequence[Record] | EncodedBatch: ...


@runtime_checkable
class CachingBackend(Backend, Protocol):
    """A backend that can answer some fetches from memory at once, without a task (the real one can)."""

    def fetch_cached(self, topic: str, partition: int, offset: int, max_bytes: int) -> EncodedBatch | None:
        """The answer when memory holds it, else None; raises :class:`CommandFailed` (a record too large)."""
        ...


#: What a parked fetch is answered with: records (maybe none, at the log end), a
#: failure, or None for "not from here after all: fetch it the normal way".
ParkedResult: TypeAlias = EncodedBatch | CommandFailed | None
#: Called once with a parked fetch's answer; must not block.
Deliver: TypeAlias = Callable[[ParkedResult], None]
#: Withdraws a parked fetch (the session is ending); its answer is then never delivered.
Withdraw: TypeAlias = Callable[[], None]


@runtime_checkable
class ParkingBackend(Backend, Protocol):
    """A backend that can hold a fetch at the log end and answer it when records arrive (the real one can)."""

    def park(self, topic: str, partition: int, offset: int, max_bytes: int, deliver: Deliver) -> Withdraw | None:
        """Hold the fetch; returns at once.

        None when it will not hold this fetch (fetch it the normal way), else a
        function that withdraws it. A held fetch is answered exactly once,
        unless withdrawn, by calling ``deliver`` from another task within the
        backend's ``deadline``.
        """
        ...


class FrameWriter(Protocol):
    """Writes one whole binary WebSocket message into the connection without waiting (``_transport``)."""

    def write_now(self, head: bytes, body: bytes) -> bool | None:
        """Write the message ``head + body``: True sent, False part pending (call :meth:`flush`), None not written."""
        ...

    async def flush(self) -> None:
        """Send what :meth:`write_now` left pending."""
        ...


class StreamOutlet(Protocol):
    """Where a stream's pushes go: the session that owns the stream (``_streaming``).

    The Kafka edge calls these from its own tasks; none of them blocks.
    """

    def ready(self) -> bool:
        """Whether the session takes a batch now; when it does not, it wakes the partition when it does."""
        ...

    def push(self, batch: PushBatch) -> None:
        """Send a batch cut for the stream (the session confirms it first: a seek may have come since)."""
        ...

    def event(self, frame: bytes) -> None:
        """Send a StreamEvent frame of the stream (caught up, an error it works around, ...)."""
        ...


#: Stops feeding one partition of a stream (the stream closed or the session ended).
Detach: TypeAlias = Callable[[], None]
#: Tells one partition of a stream that it may take batches again (credit came, pushes drained).
Wake: TypeAlias = Callable[[], None]


@runtime_checkable
class StreamingBackend(Backend, Protocol):
    """A backend that feeds push streams from the partition readers it shares (the real one can)."""

    @property
    def filters(self) -> FilterSet:
        """The route's filters: equal filters of all its sessions share one matcher, run once per record."""
        ...

    async def partitions_of(self, topic: str) -> frozenset[int]:
        """The topic's partitions; raises :class:`CommandFailed` (``not found topic``, reaching Kafka)."""
        ...

    def watch(self, topic: str, notify: Callable[[frozenset[int]], None]) -> Callable[[], None]:
        """Call ``notify`` with the topic's partitions after each refresh, until the returned function is called.

        How streams over every partition learn of partitions added to the topic.
        ``notify`` must not block.
        """
        ...

    async def stream_offset(self, topic: str, partition: int, timestamp: int, isolation: Isolation) -> int:
        """Like :meth:`Backend.list_offset`, as a stream of ``isolation`` sees the partition.

        READ_COMMITTED: the latest offset (``-1``) is the last stable offset.
        """
        ...

    async def attach(self, stream: Stream, partition: int, outlet: StreamOutlet) -> tuple[Wake, Detach]:
        """Feed ``partition`` of ``stream`` from the partition's reader, from the stream's position there.

        Raises :class:`CommandFailed` when the reader cannot be opened (``max_partition_readers``, Kafka down).
        """
        ...


class GroupListener(Protocol):
    """How a group member tells its stream what the group decided (``_streaming``); called on the Trio thread."""

    def revoked(self, partitions: frozenset[int], *, lost: bool) -> Sequence[tuple[int, int]]:
        """The group takes ``partitions``: send nothing more of them, from now on; must not block.

        Returns the ``(partition, offset)`` pairs to commit before they go (what was
        delivered, for an ``auto_commit`` stream; nothing when ``lost``: the member is
        no longer in the group, so a commit would be refused).
        """
        ...

    async def assigned(self, committed: Mapping[int, int | None]) -> None:
        """The group gave these partitions, with the group's committed offsets (None: none committed).

        Called after every round of the member's work, with nothing when nothing is new,
        so that partitions that could not be started yet are tried again.
        """
        ...

    def to_commit(self) -> Sequence[tuple[int, int]]:
        """What an ``auto_commit`` stream commits now (what it delivered); nothing for other streams."""
        ...

    def trouble(self, failure: CommandFailed) -> None:
        """A problem the member works around by itself (Kafka unreachable, a commit on revoke refused)."""
        ...


class GroupMember(Protocol):
    """One member of a consumer group, for one stream: Kafka's coordinator assigns it partitions."""

    async def run(self) -> None:
        """Keep up the membership until cancelled, then leave the group (shielded, time-limited).

        Raises :class:`CommandFailed` when the membership cannot go on (not authorized, the
        member's consumer stopped answering): the stream then ends.
        """
        ...

    async def commit(self, offsets: Sequence[tuple[int, int]], transaction: Transaction | None = None) -> None:
        """Commit ``(partition, offset)`` pairs for the group; returns once Kafka has them.

        With ``transaction``, the offsets are sent to it instead: they count as committed
        only if it commits (read-process-write, exactly once).

        Raises :class:`CommandFailed`: COMMIT_FAILED (the group rebalanced meanwhile), TIMEOUT,
        KAFKA_ERROR; with a transaction, its failures (TXN_NOT_OPEN, TXN_FENCED ...).
        """
        ...

    async def leave(self) -> None:
        """Leave the group now (the partitions' revocation commits for ``auto_commit``); never raises, idempotent."""
        ...


@runtime_checkable
class GroupBackend(StreamingBackend, Protocol):
    """A backend whose streams can join consumer groups."""

    @property
    def serves_groups(self) -> bool:
        """Whether the route lets a subscribe join a group."""
        ...

    async def group_offsets(self, group: str, topic: str) -> Sequence[tuple[int, int]]:
        """``(partition, offset)`` for each partition of ``topic`` that ``group`` has committed, without joining it.

        Raises :class:`CommandFailed` (``not found topic``, reaching Kafka) within the backend's deadline.
        """
        ...

    async def join(self, group: str, topic: str, listener: GroupListener) -> GroupMember:
        """A new member of ``group`` subscribed to ``topic``; its assignments arrive once :meth:`GroupMember.run` runs.

        Raises :class:`CommandFailed`: OVERLOADED at the route's or the proxy's bound on members, or Kafka unreachable.
        """
        ...


#: Called once, on the Trio thread, with one result per record of a produce, in its order; must not block.
Produced: TypeAlias = Callable[[tuple[ProduceResult, ...]], None]


class Transaction(Protocol):
    """A transaction the backend opened for one session; its producer is the session's until it ends."""

    async def commit(self) -> None:
        """Commit what was produced in it; raises :class:`CommandFailed` (then it was aborted). Ends it either way."""
        ...

    async def abort(self) -> None:
        """Abort it; never raises, and ends it within the backend's deadline (a producer that fails is dropped)."""
        ...


@runtime_checkable
class ProducingBackend(Backend, Protocol):
    """A backend that writes records: the route's shared producers and its pool of transactional ones."""

    @property
    def produce_budget(self) -> Budget:
        """The route's bound on records and bytes handed to Kafka and not yet acknowledged, shared by its sessions."""
        ...

    @property
    def produce_timeout(self) -> float:
        """Seconds within which every handed record has its result (Kafka's delivery timeout)."""
        ...

    @property
    def transaction_timeout(self) -> float:
        """Seconds a transaction may stay open before its session aborts it."""
        ...

    async def produce(
        self, topic: str, records: Sequence[OutRecord], acks: Acks, done: Produced, transaction: Transaction | None
    ) -> None:
        """Hand ``records`` to the producer of ``acks`` (or of ``transaction``); returns once they are handed.

        Calls hand records over in the order the calls are made. ``done`` is called
        once all have their results, within :attr:`produce_timeout`. Raises
        :class:`CommandFailed` when none can be written (the topic does not exist,
        Kafka cannot be reached); ``done`` is then never called. Handing over is the
        last thing it does: cancelled or failed, it has handed nothing over.
        """
        ...

    async def begin_transaction(self) -> Transaction:
        """A transaction on a producer of the route's pool; :class:`CommandFailed` (OVERLOADED: none is free)."""
        ...
