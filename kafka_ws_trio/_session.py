"""One WebSocket session: a reader, a bounded command queue and a worker pool.

The shape (see the design card in the README):

* the **reader** is the only caller of ``get_message()``. It hands each frame
  to the sans-IO :class:`~kafka_ws_trio._proto.ServerConnection`, sends at
  once what needs no Kafka (ping, unknown and malformed commands), and puts
  Kafka commands on a bounded queue. A full queue blocks the reader: that is
  backpressure, not an error.
* a dispatcher takes commands off the queue in order and starts a **worker**
  task for each, at most ``workers`` at once, against the route's
  :class:`~kafka_ws_trio._ports.Backend`. The queue is a plain list and the
  dispatcher a task that runs only while the queue holds commands: an idle
  session holds no task but its reader (and trio-websocket's), and no channel. Commands run concurrently, but the
  responses for one topic-partition are sent in request order (the
  connection's ordering lanes). A fetch whose records the backend already
  holds in memory, for a partition with nothing in flight, is answered by the
  reader itself; one at the log end is parked with the backend, which answers
  it when records arrive, with no task of ours waiting.
* **responses** are written one at a time under a lock, each with a deadline:
  a client that stops reading is disconnected instead of holding memory.

Everything lives in one nursery; when the peer goes away the reader returns
and the nursery is cancelled, so nothing the session started outlives it.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, Final, Protocol, TypeVar, runtime_checkable

import attrs
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from ._config import DEFAULT_QUEUE_SIZE, DEFAULT_SEND_TIMEOUT, DEFAULT_WORKERS
from ._ports import (
    Backend,
    CachingBackend,
    FrameWriter,
    GroupBackend,
    ParkedResult,
    ParkingBackend,
    ProducingBackend,
    StreamingBackend,
    Transaction,
    Withdraw,
)
from ._producing import SessionProducer
from ._proto import (
    Access,
    AddCredit,
    Amount,
    Auth,
    AuthAction,
    Command,
    CommandFailed,
    Commit,
    ErrorCode,
    Fetch,
    Frame,
    GroupAction,
    GroupOffsets,
    KafkaCommand,
    Key,
    ListOffset,
    ProduceAction,
    PushBatch,
    Reply,
    Result,
    Seek,
    ServerConnection,
    Stream,
    StreamAction,
    StreamCommand,
    StreamLimits,
    Subscribe,
    Ticket,
    Unsubscribe,
    answer_code,
    encode_error,
    encode_group_offsets_answer,
    encode_ok,
    fetch_frame,
    kind_of,
)
from ._streaming import After, SessionStreams

log = logging.getLogger("kafka_ws_trio.session")
audit = logging.getLogger("kafka_ws_trio.audit")

#: Seconds allowed for the closing handshake of a session we end.
CLOSE_TIMEOUT: Final = 2.0
#: Added to the backend's own deadline before the session gives up on a command.
COMMAND_DEADLINE_MARGIN: Final = 2.0
#: A stream command may take this many backend deadlines: the topic's partitions, their
#: start offsets (a few at a time) and opening their readers.
STREAM_COMMAND_DEADLINES: Final = 4

#: WebSocket close codes (RFC 6455).
#: Seconds between a draining session's looks at what it still has to answer.
DRAIN_POLL_INTERVAL: Final = 0.005
CLOSE_GOING_AWAY: Final = 1001
CLOSE_POLICY_VIOLATION: Final = 1008
CLOSE_INTERNAL_ERROR: Final = 1011
#: The reason of the 1008 that closes a session whose credential expired (PROTOCOL.md 5.6).
TOKEN_EXPIRED: Final = "token expired"
#: Refused commands of one session written to the audit log at WARNING; later ones go at DEBUG.
AUDITED_DENIALS: Final = 20

_session_ids = itertools.count(1)
_T = TypeVar("_T")

#: Checks a fresh credential for the session's principal (CmdAuth) and takes its rights: the new expiry
#: (seconds since the epoch; None: never), or CommandFailed (TOKEN_REFUSED) with the reason.
Reauthenticate = Callable[[str], Awaitable[float | None]]


@runtime_checkable
class QuotaHolding(Access, Protocol):
    """An :class:`~kafka_ws_trio._proto.Access` that also says how long to hold a client that does not wait for its
    ``retry_after`` (``_auth.SessionAccess``)."""

    def quota_hold(self) -> float:
        """Seconds the session should take no further command after the refusal it just made; 0.0: none."""
        ...


@attrs.frozen
class SessionLimits:
    """The bounds of one session; memory per session is computable from them."""

    max_message_size: int
    #: At least 1 each: a queue of 0 would leave the reader waiting for room no dispatcher makes.
    queue_size: int = attrs.field(default=DEFAULT_QUEUE_SIZE, validator=attrs.validators.ge(1))
    workers: int = attrs.field(default=DEFAULT_WORKERS, validator=attrs.validators.ge(1))
    send_timeout: float = DEFAULT_SEND_TIMEOUT


@attrs.define
class SessionCounters:
    """Counters one session adds to; the server sums them for ``statistics()``."""

    commands: int = 0
    errors: int = 0
    text_frames: int = 0
    in_flight: int = 0
    queued: int = 0
    #: Commands the principal's rights or quotas refused.
    denied: int = 0
    #: Payload bytes of the WebSocket messages received and sent.
    bytes_in: int = 0
    bytes_out: int = 0


#: Upper bounds (seconds) of the buckets of the command latency histogram (a last one, +Inf, takes the rest).
LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Tally:
    """What all the sessions of a server count together, for its metrics.

    One object the server hands every session: a session adds to it as it goes, so
    nothing is summed at a scrape and nothing is kept per session. Memory is fixed:
    the command kinds and error codes are a few fixed names and numbers.
    """

    __slots__ = (
        "bytes_in",
        "bytes_out",
        "commands",
        "frames_in",
        "frames_out",
        "latency",
        "latency_sum",
        "refused",
        "results",
    )

    def __init__(self) -> None:
        #: Commands received, by kind (``_proto.kind_of``).
        self.commands: Counter[str] = Counter()
        #: Commands the principal's rights or quotas refused, by error code.
        self.refused: Counter[int] = Counter()
        #: Commands answered, by kind and the answer's error code (0: not an error).
        self.results: Counter[tuple[str, int]] = Counter()
        #: WebSocket messages and their payload bytes, received and sent.
        self.frames_in = self.bytes_in = self.frames_out = self.bytes_out = 0
        #: Per kind of command answered by a worker: how many took at most each bucket's seconds (not
        #: cumulative; the last is +Inf), and their sum.
        self.latency: dict[str, list[int]] = {}
        self.latency_sum: dict[str, float] = {}

    def answered(self, kind: str, frame: Frame) -> None:
        """One command of ``kind`` answered with ``frame`` (a fetch answer's head and body: never an error)."""
        self.results[kind, 0 if isinstance(frame, tuple) else answer_code(frame)] += 1

    def took(self, kind: str, seconds: float) -> None:
        """One command of ``kind`` answered ``seconds`` after the reader took it."""
        counts = self.latency.get(kind)
        if counts is None:
            counts = self.latency[kind] = [0] * (len(LATENCY_BUCKETS) + 1)
        counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum[kind] = self.latency_sum.get(kind, 0.0) + seconds


@attrs.frozen
class _Job:
    request: KafkaCommand | StreamCommand | GroupOffsets
    ticket: Ticket
    #: A stream command's stream, as open when the reader took the command: it acts on that one only.
    stream: Stream | None = None
    #: When the reader took it (Trio's clock), for the latency histogram.
    taken: float = attrs.field(factory=trio.current_time)


class Session:
    """Serves one accepted WebSocket until the peer leaves or the server stops."""

    __slots__ = (
        "_answering",
        "_backend",
        "_busy",
        "_cache",
        "_connection",
        "_consume",
        "_counters",
        "_dispatching",
        "_draining",
        "_ending",
        "_expired",
        "_expiry",
        "_flushing",
        "_jobs",
        "_lanes",
        "_limits",
        "_nursery",
        "_outbox",
        "_paced",
        "_parked",
        "_parking",
        "_producer",
        "_reading",
        "_reauthenticate",
        "_room",
        "_route",
        "_scope",
        "_send_lock",
        "_streams",
        "_tally",
        "_too_slow",
        "_turns",
        "_worker_free",
        "_writer",
        "_ws",
        "expires_at",
        "id",
        "principal",
    )

    def __init__(
        self,
        ws: WebSocketConnection,
        backend: Backend,
        limits: SessionLimits,
        *,
        route: str = "",
        counters: SessionCounters | None = None,
        writer: FrameWriter | None = None,
        stream_limits: StreamLimits | None = None,
        produce_limit: Amount | None = None,
        access: Access | None = None,
        consume: Callable[[int], float] | None = None,
        principal: str = "",
        expires_at: float | None = None,
        reauthenticate: Reauthenticate | None = None,
        tally: Tally | None = None,
    ) -> None:
        self.id = next(_session_ids)
        #: Who the session is (for logs), and when its credential expires (seconds since the epoch; None: never).
        self.principal = principal
        self.expires_at = expires_at
        self._ws = ws
        self._backend = backend
        self._limits = limits
        self._route = route
        self._counters = counters if counters is not None else SessionCounters()
        self._streams: SessionStreams | None = None
        if isinstance(backend, StreamingBackend):
            self._streams = SessionStreams(
                backend,
                limits.max_message_size,
                stream_limits or StreamLimits(),
                self,
                limits.workers,
                self._spawn,
                self._open_transaction,
            )
        self._producer: SessionProducer | None = None
        if isinstance(backend, ProducingBackend) and produce_limit is not None:
            self._producer = SessionProducer(
                backend, produce_limit, limits.queue_size, limits.max_message_size, self._reply_soon, self._spawn
            )
        self._connection = ServerConnection(
            limits.max_message_size,
            streams=self._streams is not None,
            produce=self._producer is not None,
            groups=isinstance(backend, GroupBackend),
            access=access,
            reauth=reauthenticate is not None,
        )
        self._reauthenticate = reauthenticate
        #: The server's shared counts (a private one when the session runs alone, as in tests).
        self._tally = tally if tally is not None else Tally()
        #: Cancels the wait for the credential's expiry (a fresh credential sets another); None: none runs.
        self._expiry: trio.CancelScope | None = None
        self._lanes = self._connection.lanes
        #: Workers waiting for their ticket's turn.
        self._turns: dict[Ticket, trio.Event] = {}
        self._send_lock = trio.Lock()
        self._scope = trio.CancelScope()
        self._too_slow = False
        self._expired = False
        #: Set by :meth:`drain`: the close code and reason to end with once the commands in hand are answered.
        self._ending: tuple[int, str, float] | None = None
        #: The reader's wait (a frame, the consume quota, a refusal's hold) while it waits; drain() cancels it.
        self._reading: trio.CancelScope | None = None
        #: Charges delivered bytes to the principal's consume quota: the seconds to wait before delivering more.
        self._consume = consume
        #: Set while delivery waits for the consume quota (see :meth:`_charge`); None while it does not.
        self._paced: trio.Event | None = None
        #: Commands the reader took, waiting for a worker, in order: at most ``queue_size``.
        self._jobs: list[_Job] = []
        #: Whether the dispatcher task runs (it does only while ``_jobs`` holds commands, or it waits for a worker).
        self._dispatching = False
        #: Set when the dispatcher takes a command off a full queue; made only while the reader waits for room.
        self._room: trio.Event | None = None
        #: Worker tasks running, at most ``workers``; and, only while the dispatcher waits for one to end, its event.
        self._busy = 0
        #: Answers on their way in tasks of their own (a parked fetch's, a produce's): a drain waits for them.
        self._answering = 0
        self._worker_free: trio.Event | None = None
        self._cache = backend if isinstance(backend, CachingBackend) else None
        self._parking = backend if isinstance(backend, ParkingBackend) else None
        #: Fetches the backend holds for us, by partition: at most one each, as the first in its lane.
        self._parked: dict[Key, Withdraw] = {}
        self._writer = writer
        self._nursery: trio.Nursery | None = None
        #: Stream pushes waiting for the socket (at most one batch: streams wait while any does), and events;
        #: None while none waits (an empty deque is 760 bytes, held by every idle session otherwise).
        self._outbox: deque[tuple[Stream | None, PushBatch | bytes]] | None = None
        self._draining = False
        self._flushing = False

    def __repr__(self) -> str:
        return f"<Session {self.id} route={self._route!r}>"

    @property
    def streams_open(self) -> int:
        """Push streams open on this session now."""
        return len(self._streams) if self._streams is not None else 0

    @property
    def _producing(self) -> int:
        """Produce and txn commands taken and not answered yet."""
        return self._producer.pending if self._producer is not None else 0

    def _open_transaction(self) -> Transaction | None:
        return self._producer.transaction if self._producer is not None else None

    @property
    def counters(self) -> SessionCounters:
        """This session's counters; ``errors`` counts every error response the connection produced."""
        self._counters.errors = self._connection.errors + (self._producer.errors if self._producer else 0)
        return self._counters

    async def run(self) -> None:
        """Serve until the peer disconnects; never raises except ``trio.Cancelled``.

        Cancellation: cancelling ``run`` stops the reader and every worker of
        this session at once; nothing it started keeps running.
        """
        try:
            try:
                with self._scope:
                    async with trio.open_nursery() as nursery:
                        self._nursery = nursery
                        self._arm_expiry()
                        try:
                            await self._reader()
                            if self._ending is not None:
                                await self._settle(self._ending[2])
                            nursery.cancel_scope.cancel()
                        finally:
                            self._jobs.clear()
                            self._counters.queued = 0  # what was queued is dropped with the session
                            self._unpark_all()
                            if self._streams is not None:
                                self._streams.close_all()
                            self._outbox = None
                            self._nursery = None
            finally:
                if self._producer is not None:
                    await self._producer.aclose()  # every task of ours is done; shielded: aborts an open transaction
                # The streams hold this session (as their pusher and spawner), so while it holds
                # them the two are a reference cycle, and every closed session, with its connection,
                # socket and buffers, would wait for the cyclic collector, which tune_gc makes rare
                # (churn: +19% RSS over 10,000 sessions). Let go once no task of ours can use them.
                self._streams = None
        except Exception:  # also an ExceptionGroup of Exceptions; never Cancelled
            log.exception("%r: internal error; closing the session", self)
            await self._close(CLOSE_INTERNAL_ERROR, "internal error")
            return
        if self._ending is not None:
            await self._close(*self._ending[:2])
        elif self._expired:
            await self._close(CLOSE_POLICY_VIOLATION, TOKEN_EXPIRED)
        elif self._too_slow:
            log.warning("%r: client did not read a response for %gs; closing", self, self._limits.send_timeout)
            await self._close(CLOSE_POLICY_VIOLATION, "client too slow")

    def drain(self, code: int, reason: str, within: float) -> None:
        """Take no more commands; once those taken are answered, close with ``code`` and ``reason``.

        Commands waiting in the queue, in a worker or parked at a log end are answered
        first, for at most ``within`` seconds; pushes of open streams go on meanwhile.
        """
        if self._ending is not None:
            return
        self._ending = (code, reason, within)
        if self._reading is not None:
            self._reading.cancel()

    async def _settle(self, within: float) -> None:
        """Wait until every command the reader took is answered, for at most ``within`` seconds."""
        with trio.move_on_after(within):
            # Polling on purpose: the answers come from workers and from parked fetches, and nothing
            # signals "all of them"; a drain is rare, and short.
            while self._unanswered():  # noqa: ASYNC110
                await trio.sleep(DRAIN_POLL_INTERVAL)

    def _unanswered(self) -> bool:
        """Whether some command the reader took is still to be answered (queued, at work, parked, on its way)."""
        counters = self._counters
        return bool(self._jobs or counters.queued or counters.in_flight or self._answering or self._producing)

    def _arm_expiry(self) -> None:
        """Wait for :attr:`expires_at` (and no longer for the one before), in the session's nursery."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if self.expires_at is not None and self._nursery is not None:
            self._expiry = trio.CancelScope()
            self._nursery.start_soon(self._expire, self.expires_at, self._expiry)

    async def _expire(self, expires_at: float, scope: trio.CancelScope) -> None:
        """Close the session with 1008 when its credential expires (PROTOCOL.md 5.6)."""
        with scope:
            await trio.sleep(max(0.0, expires_at - time.time()))
        if scope.cancelled_caught:
            return  # a fresh credential moved the expiry
        audit.info("%r: the token of %s expired; closing", self, self.principal, extra={"event": "token_expired"})
        self._expired = True
        self._scope.cancel()

    async def _close(self, code: int, reason: str) -> None:
        with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
            await self._ws.aclose(code, reason)

    # ----------------------------------------------------------------- reader

    async def _reader(self) -> None:
        while True:
            if self._ending is not None:
                return  # draining: take no more commands
            # drain() cancels this scope: the waits for the consume quota and for the next frame end at once.
            reading = self._reading = trio.CancelScope()
            try:
                with reading:
                    if self._paced is not None:
                        await self._paced.wait()
                    frame = await self._ws.get_message()
            except ConnectionClosed:
                return
            finally:
                self._reading = None
            if reading.cancelled_caught:
                return  # drain() stopped the wait
            tally = self._tally
            tally.frames_in += 1
            tally.bytes_in += len(frame)
            self._counters.bytes_in += len(frame)
            if isinstance(frame, str):
                # APISIX skips text frames; so do we, but we count them.
                self._counters.text_frames += 1
                continue
            self._counters.commands += 1
            action = self._connection.receive(frame)
            kind = self._connection.kind
            tally.commands[kind] += 1
            if isinstance(action, Reply):
                if action.denied:
                    self._counters.denied += 1
                    tally.refused[action.code] += 1
                    # The first ones of a session in full; then only at debug level, so that a client
                    # hammering a quota cannot grow the log without bound.
                    level = logging.WARNING if self._counters.denied <= AUDITED_DENIALS else logging.DEBUG
                    audit.log(
                        level,
                        "%r: command refused for %s: %s",
                        self,
                        self.principal or "-",
                        action.note,
                        extra={"event": "command_refused"},
                    )
                elif action.note:
                    log.debug("%r: frame does not decode: %s", self, action.note)
                tally.answered(kind, action.frame)
                await self._send(action.frame)
                if action.denied:
                    holding = self._reading = trio.CancelScope()  # a drain ends the hold too
                    try:
                        with holding:
                            await self._hold_after_refusal()
                    finally:
                        self._reading = None
                continue
            if isinstance(action, StreamAction):
                await self._take_stream(action)
            elif isinstance(action, ProduceAction):
                assert self._producer is not None  # the connection hands out ProduceActions only with a producer
                await self._producer.take(action.request)
            elif isinstance(action, GroupAction):
                # It keeps no partition's order: a ticket with no lane, its turn comes at once.
                await self._queue(_Job(action.request, self._lanes.take(())))
            elif isinstance(action, AuthAction):
                await self._take_credential(action.request)
            else:
                await self._take(action)

    async def _take_credential(self, request: Auth) -> None:
        """A fresh credential (CmdAuth): checked before the next frame is read, then ok or TOKEN_REFUSED.

        The session is held meanwhile (one check at a time per session; the server bounds
        its time). Taken, it replaces the old one's rights and expiry; refused, the old one stays.
        """
        assert self._reauthenticate is not None  # the connection hands out AuthActions only then
        try:
            expires_at = await self._reauthenticate(request.token)
        except CommandFailed as exc:
            self._connection.errors += 1
            audit.warning(
                "%r: fresh credential refused for %s: %s",
                self,
                self.principal or "-",
                exc.reason,
                extra={"event": "credential_refused"},
            )
            await self._answer("auth", encode_error(request.sequence, exc.code, exc.reason))
            return
        self.expires_at = expires_at
        self._arm_expiry()
        audit.info("%r: fresh credential taken for %s", self, self.principal, extra={"event": "credential_taken"})
        await self._answer("auth", encode_ok(request.sequence))

    async def _answer(self, kind: str, frame: bytes) -> None:
        """Send the answer to a command of ``kind``, counted by its error code."""
        self._tally.answered(kind, frame)
        await self._send(frame)

    async def _hold_after_refusal(self) -> None:
        """After a quota refusal the client did not wait for, take no frame until its ``retry_after`` has passed.

        A client that sends over its quota without waiting would otherwise make the proxy
        spend a refusal's CPU on every frame, as fast as it can send them. Held, its frames
        wait in its socket (backpressure, as with a full queue), and are then read in order
        and answered, later. Streams keep the credit they have, and answers already
        under way go out; the hold's deadline is the ``retry_after`` the client was told.
        """
        access = self._connection.access
        if isinstance(access, QuotaHolding):
            hold = access.quota_hold()
            if hold > 0:
                await trio.sleep(hold)

    async def _take(self, command: Command) -> None:
        """Answer a Kafka command from memory, park it, or queue it for a worker."""
        request = command.request
        at_front = self._lanes.idle(command.keys)
        if isinstance(request, Fetch) and at_front and self._cache is not None:
            answer = self._answer_from_memory(request)
            if answer is not None:
                self._tally.answered("fetch", answer)
                await self._send(answer)
                return
        ticket = self._lanes.take(command.keys)
        if isinstance(request, Fetch) and at_front and self._try_park(request, ticket):
            return
        await self._queue(_Job(request, ticket))

    async def _take_stream(self, action: StreamAction) -> None:
        """Credit at once; a subscribe registered at once (its bounds and id checked) and then queued like the rest.

        A stream's commands share the stream's lane, so they run, and are answered, in the order they came.
        """
        streams, request = self._streams, action.request
        assert streams is not None  # the connection hands out StreamActions only with streams
        try:
            if isinstance(request, AddCredit):
                streams.registry.add_credit(request)
                streams.wake(request.subscription)
                return
            if isinstance(request, Subscribe):
                stream = streams.open(request)
            else:
                # The stream open now, not whichever holds the id when a worker runs the command:
                # a seek or unsubscribe sent before a subscribe of its id must not act on that stream.
                stream = streams.registry.get(request.subscription)
        except CommandFailed as exc:
            await self._answer(kind_of(request), self._stream_error(request.sequence, exc))
            return
        ticket = self._lanes.take(action.keys)
        await self._queue(_Job(request, ticket, stream))

    def _stream_error(self, sequence: int, failure: CommandFailed) -> bytes:
        """A stream command's error response: the failure's reason is the whole message."""
        self._connection.errors += 1
        return encode_error(sequence, failure.code, failure.reason)

    async def _respond_stream(self, request: StreamCommand, stream: Stream) -> tuple[Frame, After | None]:
        """Carry out a queued stream command on ``stream``: its answer, and what runs once the answer is sent."""
        streams = self._streams
        assert streams is not None
        deadline = self._backend.deadline * STREAM_COMMAND_DEADLINES + COMMAND_DEADLINE_MARGIN

        async def run() -> tuple[Frame, After | None]:
            with trio.fail_after(deadline):
                if isinstance(request, Subscribe):
                    return await streams.start(stream)
                if isinstance(request, Seek):
                    return await streams.seek(request, stream)
                if isinstance(request, Commit):
                    return await streams.commit(request, stream)
                if isinstance(request, AddCredit):  # pragma: no cover - credit is never queued
                    raise AssertionError("credit is handled by the reader")
                return await streams.unsubscribe(stream, request.sequence), None

        outcome = await self._outcome(request, run, deadline)
        if isinstance(outcome, CommandFailed):
            return self._stream_error(request.sequence, outcome), None
        return outcome

    async def _respond_group(self, request: GroupOffsets) -> Frame:
        """The answer to a CmdGroupOffsets: the group's committed offsets, or an error response."""
        backend = self._backend
        assert isinstance(backend, GroupBackend)  # the connection hands out GroupActions only then
        deadline = backend.deadline + COMMAND_DEADLINE_MARGIN

        async def run() -> Sequence[tuple[int, int]]:
            with trio.fail_after(deadline):
                return await backend.group_offsets(request.group, request.topic)

        outcome = await self._outcome(request, run, deadline)
        if isinstance(outcome, CommandFailed):
            message = (
                f"failed to read group offsets, group: {request.group}, topic: {request.topic}, err: {outcome.reason}"
            )
            return self._stream_error(request.sequence, CommandFailed(outcome.code, message))
        return encode_group_offsets_answer(request.sequence, outcome)

    async def _outcome(self, request: object, call: Callable[[], Awaitable[_T]], deadline: float) -> _T | CommandFailed:
        """What ``call`` returns, or the failure it ends in: its own, a timeout, or a bug (logged)."""
        try:
            return await call()
        except CommandFailed as exc:
            return exc
        except trio.TooSlowError:
            return CommandFailed(ErrorCode.TIMEOUT, f"timed out after {deadline:.0f}s")
        except Exception:
            log.exception("%r: bug while handling %r", self, request)
            return CommandFailed(ErrorCode.INTERNAL_ERROR, "internal error")

    def _answer_from_memory(self, request: Fetch) -> Frame | None:
        """A fetch the backend holds in memory, answered in the reader: no queue, no worker."""
        assert self._cache is not None
        try:
            batch = self._cache.fetch_cached(
                request.topic, request.partition, request.offset, self._limits.max_message_size
            )
        except CommandFailed as exc:
            return self._connection.answer(request, exc)
        return None if batch is None else fetch_frame(request.sequence, batch)

    # ---------------------------------------------------------------- parking

    def _try_park(self, request: Fetch, ticket: Ticket) -> bool:
        """Hand a fetch at the log end to the backend to answer when records arrive: no worker waits for it.

        The fetch keeps its ticket (the first of its partition's lane), so
        later commands for that partition are answered after it.
        """
        if self._parking is None or self._nursery is None or len(self._parked) >= self._limits.queue_size:
            return False
        key = ticket.keys[0]

        def deliver(result: ParkedResult) -> None:
            if self._parked.pop(key, None) is None:
                return  # withdrawn: the session is ending
            self._counters.in_flight -= 1
            try:
                self._answer_parked(request, ticket, result)
            except Exception:
                log.exception("%r: bug while answering a parked fetch", self)
                self._scope.cancel()

        withdraw = self._parking.park(
            request.topic, request.partition, request.offset, self._limits.max_message_size, deliver
        )
        if withdraw is None:
            return False
        self._parked[key] = withdraw
        self._counters.in_flight += 1
        return True

    def _unpark_all(self) -> None:
        parked, self._parked = self._parked, {}
        self._counters.in_flight -= len(parked)
        for withdraw in parked.values():
            withdraw()

    def _answer_parked(self, request: Fetch, ticket: Ticket, result: ParkedResult) -> None:
        """Send the answer to a parked fetch: straight into the socket when it takes it, else from a task."""
        if result is None:
            self._spawn_answer(self._work_parked, request, ticket)
            return
        frame = self._connection.answer(request, result)
        self._tally.answered("fetch", frame)
        if isinstance(frame, tuple) and not self._send_lock.locked():
            written = self._write_now(frame)
            if written is not None:
                self._done(ticket)
                if not written:
                    self._spawn(self._flush)
                return
        self._spawn_answer(self._send_in_turn, frame, ticket)

    def _reply_soon(self, kind: str, frame: bytes, after: Callable[[], None] | None, code: int) -> None:
        """Send a ``kind`` command's answer from a callback: straight into the socket when it is free, else from a task.

        ``after`` runs once the frame is in the socket's hands (or the session has ended), so
        that what the answer stands for (a produce's room in flight) is held until then. ``code``
        is the answer's result in the metrics (the producer knows it: a ProduceResp that wrote
        nothing counts as its first record's error).
        """
        if self._nursery is None:
            if after is not None:
                after()
            return  # the session is ending
        self._tally.results[kind, int(code)] += 1  # an int: an IntEnum's str() is its name on Python 3.10
        if not self._outbox and not self._flushing and not self._send_lock.locked():
            written = self._write_now((frame, b""))
            if written is not None:
                if not written:
                    self._spawn(self._flush)
                if after is not None:
                    after()
                return
        self._spawn_answer(self._send_then, frame, after)

    async def _send_then(self, frame: bytes, after: Callable[[], None] | None) -> None:
        try:
            await self._send(frame)
        finally:
            if after is not None:
                after()

    def _spawn(self, fn: Callable[..., Any], *args: object) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(fn, *args)

    def _spawn_answer(self, fn: Callable[..., Awaitable[None]], *args: object) -> None:
        """Spawn a task that sends an answer, counted in :attr:`_answering` until it ends."""
        if self._nursery is not None:
            self._answering += 1
            self._nursery.start_soon(self._answer_task, fn, args)

    async def _answer_task(self, fn: Callable[..., Awaitable[None]], args: tuple[object, ...]) -> None:
        try:
            await fn(*args)
        finally:
            self._answering -= 1

    async def _send_in_turn(self, frame: Frame, ticket: Ticket) -> None:
        """Send a parked fetch's answer (its ticket is the lane's turn), then let the lane move on."""
        try:
            await self._send(frame)
        finally:
            self._done(ticket)

    async def _work_parked(self, request: Fetch, ticket: Ticket) -> None:
        """A parked fetch the backend gave back: answer it like any other command."""
        frame = await self._respond(request)
        self._tally.answered("fetch", frame)
        await self._send_in_turn(frame, ticket)

    async def _flush(self) -> None:
        """Send what a direct write left in the stream; a client that does not take it in time ends the session."""
        assert self._writer is not None
        await self._guarded(self._writer.flush)

    # ---------------------------------------------------------------- workers

    async def _queue(self, job: _Job) -> None:
        """Put a command on the queue for a worker, waiting while it is full (backpressure on the reader).

        A checkpoint, as a channel's send is: cancelled before the command is queued, or after.
        """
        self._counters.queued += 1  # from the moment the reader holds it, as while a channel's send waited
        await trio.lowlevel.checkpoint_if_cancelled()
        while len(self._jobs) >= self._limits.queue_size:
            room = self._room = self._room or trio.Event()
            await room.wait()
        self._jobs.append(job)
        if not self._dispatching:
            self._dispatching = True
            self._spawn(self._dispatch)
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def _dispatch(self) -> None:
        """Start a worker task per command, at most ``workers`` at once, in queue order; end when none is left.

        Workers exist only while they have work, and so does this task: an idle
        session holds its reader, nothing more.
        """
        try:
            while self._jobs:
                job = self._jobs.pop(0)
                if self._room is not None:
                    self._room.set()
                    self._room = None
                await self._worker_slot()
                self._counters.queued -= 1
                self._spawn(self._work, job)
        finally:
            self._dispatching = False

    async def _worker_slot(self) -> None:
        """Take one of the ``workers`` slots, waiting for a worker to end when all are taken (a semaphore's acquire)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._busy < self._limits.workers:
            self._busy += 1
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        while self._busy >= self._limits.workers:
            free = self._worker_free = self._worker_free or trio.Event()
            await free.wait()
        self._busy += 1

    async def _work(self, job: _Job) -> None:
        self._counters.in_flight += 1
        try:
            after: After | None = None
            request = job.request
            if isinstance(request, Subscribe | Seek | Unsubscribe | AddCredit | Commit):
                # A stream command changes its stream: it runs only once the command before it
                # in the stream's lane is answered, so that an unsubscribe or a seek right
                # behind a subscribe finds the stream opened, not half-way.
                await self._wait_turn(job.ticket)
                assert job.stream is not None  # the reader found it
                frame, after = await self._respond_stream(request, job.stream)
            elif isinstance(request, GroupOffsets):
                frame = await self._respond_group(request)
            else:
                frame = await self._respond(request)
                await self._wait_turn(job.ticket)
            kind = kind_of(request)
            self._tally.answered(kind, frame)
            try:
                await self._send(frame)
                if after is not None:
                    after()
            finally:
                self._done(job.ticket)
            self._tally.took(kind, trio.current_time() - job.taken)
        finally:
            self._counters.in_flight -= 1
            self._busy -= 1
            if self._worker_free is not None:
                self._worker_free.set()
                self._worker_free = None

    async def _wait_turn(self, ticket: Ticket) -> None:
        if not self._lanes.ready(ticket):
            turn = self._turns[ticket] = trio.Event()
            await turn.wait()

    def _done(self, ticket: Ticket) -> None:
        for front in self._lanes.done(ticket):
            turn = self._turns.pop(front, None)
            if turn is not None:
                turn.set()

    async def _respond(self, request: KafkaCommand) -> Frame:
        """The response frame for one Kafka command; failures become error frames."""
        outcome = await self._outcome(request, partial(self._call_backend, request), self._backend.deadline)
        return self._connection.answer(request, outcome)

    async def _call_backend(self, request: KafkaCommand) -> Result:
        if not isinstance(request, ListOffset | Fetch):
            raise CommandFailed(ErrorCode.INVALID_REQUEST, request.reason)
        with trio.fail_after(self._backend.deadline + COMMAND_DEADLINE_MARGIN):
            if isinstance(request, ListOffset):
                return await self._backend.list_offset(request.topic, request.partition, request.timestamp)
            return await self._backend.fetch(
                request.topic, request.partition, request.offset, self._limits.max_message_size
            )

    # ---------------------------------------------------------------- sending

    async def _send(self, frame: Frame) -> None:
        """Write one frame; a client that does not take it in time ends the session."""
        await self._guarded(partial(self._write, frame))
        if not isinstance(frame, bytes):  # records: a fetch answer
            self._charge(len(frame[0]) + len(frame[1]))

    def _charge(self, size: int) -> None:
        """Count ``size`` bytes of records delivered against the consume quota; over it, pause delivery.

        While paused, no stream pushes (``push_ready`` is False) and the reader takes no
        command, so a fetching client's next answer waits too: delivery slows down, and
        nothing is dropped.
        """
        if self._consume is None or self._paced is not None:
            if self._consume is not None:
                self._consume(size)
            return
        wait = self._consume(size)
        if wait > 0:
            self._paced = trio.Event()
            self._spawn(self._pace, wait)

    async def _pace(self, wait: float) -> None:
        assert self._consume is not None and self._paced is not None
        while wait > 0:
            await trio.sleep(wait)
            wait = self._consume(0)  # what is still owed (more may have been charged meanwhile)
        self._paced.set()
        self._paced = None
        self._wake_streams()

    async def _write(self, frame: Frame) -> None:
        """Write one frame; the caller holds the send lock (see :meth:`_guarded`)."""
        if isinstance(frame, bytes):
            await self._ws.send_message(frame)
            self._sent(len(frame))
            return
        written = self._write_now(frame)
        if written is None:
            await self._ws.send_message(frame[0] + frame[1])
            self._sent(len(frame[0]) + len(frame[1]))
        elif not written:
            assert self._writer is not None
            await self._writer.flush()

    # ----------------------------------------------------------------- pushes

    def push_ready(self) -> bool:
        """Whether a stream push would go out now: none waits for the socket (the ``Pusher`` Protocol)."""
        return not self._outbox and not self._flushing and not self._too_slow and self._paced is None

    def push(self, stream: Stream | None, item: PushBatch | bytes) -> None:
        """Send a stream's batch or event without blocking: straight into the socket when it is free, else queued.

        A batch is confirmed right before it is written, so one cut before a seek
        or an unsubscribe of its stream is dropped (and its credit given back).
        """
        if self._nursery is None:
            return  # the session is ending
        if not self._outbox and not self._flushing and not self._send_lock.locked():
            frame = self._confirmed(stream, item)
            if frame is None:
                return
            written = self._write_now(frame) if self._writer is not None else None
            if written is not None:
                self._charge(len(frame[0]) + len(frame[1]))
            if written is True:
                return
            if written is False:
                self._flushing = True
                self._spawn(self._flush_pushes)
                return
            item = frame[0] + frame[1]  # confirmed: queue the frame itself
        if self._outbox is None:
            self._outbox = deque()
        self._outbox.append((stream, item))
        if not self._draining:
            self._draining = True
            self._spawn(self._drain)

    def _confirmed(self, stream: Stream | None, item: PushBatch | bytes) -> tuple[bytes, bytes] | None:
        """The frame of a push still to be sent, or None when its stream closed or its partition was moved since."""
        if isinstance(item, bytes):
            return (item, b"") if stream is None or stream.open else None
        return item.frame() if item.stream.confirm(item) else None

    async def _drain(self) -> None:
        """Send queued pushes in order, each under the send lock and ``send_timeout``; then wake the streams."""
        try:
            while self._outbox and not self._too_slow:
                if self._paced is not None:
                    await self._paced.wait()
                await self._guarded(self._send_next_push)
        finally:
            self._draining = False
            self._wake_streams()

    async def _send_next_push(self) -> None:
        if not self._outbox:
            return
        stream, item = self._outbox.popleft()
        if not self._outbox:
            self._outbox = None
        frame = self._confirmed(stream, item)
        if frame is not None:
            await self._write(frame)
            self._charge(len(frame[0]) + len(frame[1]))

    async def _flush_pushes(self) -> None:
        try:
            await self._flush()
        finally:
            self._flushing = False
            if self._outbox and not self._draining:
                self._draining = True
                self._spawn(self._drain)
            self._wake_streams()

    def _wake_streams(self) -> None:
        if self._streams is not None and self.push_ready():
            self._streams.wake_all()

    async def _guarded(self, send: Callable[[], Awaitable[None]]) -> None:
        """Run ``send`` alone and within ``send_timeout``; a client that does not take it in time ends the session."""
        async with self._send_lock:
            try:
                with trio.fail_after(self._limits.send_timeout):
                    await send()
            except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the reader sees the close too and ends the session
            except trio.TooSlowError:
                self._too_slow = True
                self._scope.cancel()

    def _write_now(self, frame: tuple[bytes, bytes]) -> bool | None:
        """Write a fetch response straight into the socket (see :class:`FrameWriter`); None: not done."""
        if self._writer is None:
            return None
        written = self._writer.write_now(*frame)
        if written is not None:
            self._sent(len(frame[0]) + len(frame[1]))
        return written

    def _sent(self, size: int) -> None:
        """Count one message of ``size`` payload bytes sent."""
        self._tally.frames_out += 1
        self._tally.bytes_out += size
        self._counters.bytes_out += size
