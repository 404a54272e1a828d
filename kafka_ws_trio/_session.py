"""One WebSocket session: a reader, a bounded command queue and a worker pool.

The shape (see the design card in the README):

* the **reader** is the only caller of ``get_message()``. It decodes each frame
  with the sans-IO core, answers what needs no Kafka (ping, unknown and
  malformed commands) at once, and puts Kafka commands on a bounded queue.
  A full queue blocks the reader: that is backpressure, not an error.
* a dispatcher takes commands off the queue in order and starts a **worker**
  task for each, at most ``workers`` at once, against the route's
  :class:`Backend`. Commands run concurrently, but the responses for one
  topic-partition are sent in request order (tickets, see
  :class:`_PartitionOrder`). A fetch whose records the backend already holds
  in memory, for a partition with nothing in flight, is answered by the
  reader itself.
* **responses** are written one at a time under a lock, each with a deadline:
  a client that stops reading is disconnected instead of holding memory.

Everything lives in one nursery; when the peer goes away the reader returns
and the nursery is cancelled, so nothing the session started outlives it.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from typing import Final, Protocol

import attrs
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from ._config import DEFAULT_QUEUE_SIZE, DEFAULT_SEND_TIMEOUT, DEFAULT_WORKERS
from ._errors import CommandFailed
from ._protocol import (
    EncodedBatch,
    ErrorCode,
    Fetch,
    Invalid,
    ListOffset,
    Malformed,
    Ping,
    Record,
    RecordTooLarge,
    UnknownCommand,
    decode_request,
    encode_error,
    encode_fetch,
    encode_fetch_frame,
    encode_list_offset,
    encode_pong,
    fetch_error,
    list_offset_error,
)

log = logging.getLogger("kafka_ws_trio.session")

#: Seconds allowed for the closing handshake of a session we end.
CLOSE_TIMEOUT: Final = 2.0
#: Added to the backend's own deadline before the session gives up on a command.
COMMAND_DEADLINE_MARGIN: Final = 2.0

#: WebSocket close codes (RFC 6455).
CLOSE_GOING_AWAY: Final = 1001
CLOSE_POLICY_VIOLATION: Final = 1008
CLOSE_INTERNAL_ERROR: Final = 1011

_session_ids = itertools.count(1)


class Backend(Protocol):
    """What a session needs from Kafka, for one route. Injected; faked in unit tests.

    Both methods raise :class:`CommandFailed` for every expected failure and
    must return or raise within :attr:`deadline` seconds.
    """

    @property
    def deadline(self) -> float: ...

    async def list_offset(self, topic: str, partition: int, timestamp: int) -> int: ...

    async def fetch(
        self, topic: str, partition: int, offset: int, max_bytes: int
    ) -> Sequence[Record] | EncodedBatch: ...


class CachingBackend(Backend, Protocol):
    """A backend that can answer some fetches from memory at once (the real one can)."""

    def fetch_cached(self, topic: str, partition: int, offset: int, max_bytes: int) -> EncodedBatch | None: ...


@attrs.frozen
class SessionLimits:
    """The bounds of one session; memory per session is computable from them."""

    max_message_size: int
    queue_size: int = DEFAULT_QUEUE_SIZE
    workers: int = DEFAULT_WORKERS
    send_timeout: float = DEFAULT_SEND_TIMEOUT


@attrs.define
class SessionCounters:
    """Counters one session adds to; the server sums them for ``statistics()``."""

    commands: int = 0
    errors: int = 0
    text_frames: int = 0
    in_flight: int = 0
    queued: int = 0


@attrs.define
class _Lane:
    issued: int = 0
    turn: int = 0
    changed: trio.Event = attrs.Factory(trio.Event)


class _PartitionOrder:
    """Keeps responses for one topic-partition in request order.

    The reader takes a ticket per command; a worker with a finished response
    waits until every earlier ticket of its partition has been sent. Workers
    take commands in queue order, so an earlier ticket is always already in
    some worker's hands: no deadlock. Lanes with nothing pending are dropped,
    so the table holds at most queue_size + workers entries.
    """

    def __init__(self) -> None:
        self._lanes: dict[tuple[str, int], _Lane] = {}

    def take_ticket(self, key: tuple[str, int]) -> int:
        lane = self._lanes.setdefault(key, _Lane())
        ticket = lane.issued
        lane.issued += 1
        return ticket

    def pending(self, key: tuple[str, int]) -> bool:
        """Whether commands for this partition are queued or running."""
        return key in self._lanes

    async def wait_turn(self, key: tuple[str, int], ticket: int) -> None:
        lane = self._lanes[key]
        while lane.turn != ticket:
            await lane.changed.wait()

    def done(self, key: tuple[str, int]) -> None:
        lane = self._lanes[key]
        lane.turn += 1
        lane.changed.set()
        lane.changed = trio.Event()
        if lane.turn == lane.issued:
            del self._lanes[key]


@attrs.frozen
class _Job:
    request: ListOffset | Fetch | Invalid
    key: tuple[str, int]
    ticket: int


def _key(request: ListOffset | Fetch | Invalid) -> tuple[str, int]:
    command = request.command if isinstance(request, Invalid) else request
    return (command.topic, command.partition)


class Session:
    """Serves one accepted WebSocket until the peer leaves or the server stops."""

    def __init__(
        self,
        ws: WebSocketConnection,
        backend: Backend,
        limits: SessionLimits,
        *,
        route: str = "",
        counters: SessionCounters | None = None,
    ) -> None:
        self.id = next(_session_ids)
        self._ws = ws
        self._backend = backend
        self._limits = limits
        self._route = route
        self.counters = counters if counters is not None else SessionCounters()
        self._send_lock = trio.Lock()
        self._order = _PartitionOrder()
        self._scope = trio.CancelScope()
        self._too_slow = False
        self._workers = trio.Semaphore(limits.workers)
        self._cached = getattr(backend, "fetch_cached", None)

    def __repr__(self) -> str:
        return f"<Session {self.id} route={self._route!r}>"

    async def run(self) -> None:
        """Serve until the peer disconnects; never raises except ``trio.Cancelled``.

        Cancellation: cancelling ``run`` stops the reader and every worker of
        this session at once; nothing it started keeps running.
        """
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    send_jobs, receive_jobs = trio.open_memory_channel[_Job](self._limits.queue_size)
                    async with send_jobs, receive_jobs:
                        nursery.start_soon(self._dispatch, receive_jobs.clone(), nursery)
                        await self._reader(send_jobs)
                        nursery.cancel_scope.cancel()
        except Exception:  # also an ExceptionGroup of Exceptions; never Cancelled
            log.exception("%r: internal error; closing the session", self)
            await self._close(CLOSE_INTERNAL_ERROR, "internal error")
            return
        if self._too_slow:
            log.warning("%r: client did not read a response for %.0fs; closing", self, self._limits.send_timeout)
            await self._close(CLOSE_POLICY_VIOLATION, "client too slow")

    async def _close(self, code: int, reason: str) -> None:
        with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
            await self._ws.aclose(code, reason)

    # ----------------------------------------------------------------- reader

    async def _reader(self, jobs: trio.MemorySendChannel[_Job]) -> None:
        while True:
            try:
                frame = await self._ws.get_message()
            except ConnectionClosed:
                return
            if isinstance(frame, str):
                # APISIX skips text frames; so do we, but we count them.
                self.counters.text_frames += 1
                continue
            self.counters.commands += 1
            request = decode_request(frame)
            if isinstance(request, Ping):
                await self._send(encode_pong(request.sequence, request.state))
            elif isinstance(request, UnknownCommand):
                await self._send_error(request.sequence, ErrorCode.UNKNOWN_COMMAND, "unknown command")
            elif isinstance(request, Malformed):
                log.debug("%r: frame does not decode: %s", self, request.reason)
                await self._send_error(0, ErrorCode.WRONG_COMMAND, "wrong command")
            else:
                key = _key(request)
                if isinstance(request, Fetch) and self._cached is not None and not self._order.pending(key):
                    answer = self._answer_from_memory(request)
                    if answer is not None:
                        await self._send(answer)
                        continue
                job = _Job(request, key, self._order.take_ticket(key))
                self.counters.queued += 1
                await jobs.send(job)

    def _answer_from_memory(self, request: Fetch) -> bytes | None:
        """A fetch the backend holds in memory, answered in the reader: no queue, no worker."""
        assert self._cached is not None
        try:
            batch = self._cached(request.topic, request.partition, request.offset, self._limits.max_message_size)
        except CommandFailed as exc:
            self.counters.errors += 1
            return encode_error(request.sequence, exc.code, fetch_error(request.topic, request.partition, exc.reason))
        return None if batch is None else encode_fetch_frame(request.sequence, batch)

    # ---------------------------------------------------------------- workers

    async def _dispatch(self, jobs: trio.MemoryReceiveChannel[_Job], nursery: trio.Nursery) -> None:
        """Start a worker task per command, at most ``workers`` at once, in queue order.

        Workers exist only while they have work: an idle session holds its
        reader and this task, nothing more.
        """
        async with jobs:
            async for job in jobs:
                await self._workers.acquire()
                self.counters.queued -= 1
                nursery.start_soon(self._work, job)

    async def _work(self, job: _Job) -> None:
        self.counters.in_flight += 1
        try:
            frame = await self._respond(job.request)
            await self._order.wait_turn(job.key, job.ticket)
            try:
                await self._send(frame)
            finally:
                self._order.done(job.key)
        finally:
            self.counters.in_flight -= 1
            self._workers.release()

    async def _respond(self, request: ListOffset | Fetch | Invalid) -> bytes:
        """The response frame for one Kafka command; failures become error frames."""
        command = request.command if isinstance(request, Invalid) else request
        describe = list_offset_error if isinstance(command, ListOffset) else fetch_error
        try:
            if isinstance(request, Invalid):
                raise CommandFailed(ErrorCode.INVALID_REQUEST, request.reason)
            with trio.fail_after(self._backend.deadline + COMMAND_DEADLINE_MARGIN):
                if isinstance(request, ListOffset):
                    offset = await self._backend.list_offset(request.topic, request.partition, request.timestamp)
                    return encode_list_offset(request.sequence, offset)
                records = await self._backend.fetch(
                    request.topic, request.partition, request.offset, self._limits.max_message_size
                )
                if isinstance(records, EncodedBatch):
                    return encode_fetch_frame(request.sequence, records)
                try:
                    frame, _ = encode_fetch(request.sequence, records, self._limits.max_message_size)
                except RecordTooLarge as exc:
                    raise CommandFailed(
                        ErrorCode.RECORD_TOO_LARGE,
                        f"record at offset {exc.offset} is {exc.size} bytes encoded, "
                        f"more than max_message_size {self._limits.max_message_size}",
                    ) from None
                return frame
        except CommandFailed as exc:
            failure = exc
        except trio.TooSlowError:
            failure = CommandFailed(ErrorCode.TIMEOUT, f"timed out after {self._backend.deadline:.0f}s")
        except Exception:
            log.exception("%r: bug while handling %r", self, request)
            failure = CommandFailed(ErrorCode.INTERNAL_ERROR, "internal error")
        self.counters.errors += 1
        return encode_error(request.sequence, failure.code, describe(command.topic, command.partition, failure.reason))

    # ---------------------------------------------------------------- sending

    async def _send_error(self, sequence: int, code: ErrorCode, message: str) -> None:
        self.counters.errors += 1
        await self._send(encode_error(sequence, code, message))

    async def _send(self, frame: bytes) -> None:
        """Write one frame; a client that does not take it in time ends the session."""
        async with self._send_lock:
            try:
                with trio.fail_after(self._limits.send_timeout):
                    await self._ws.send_message(frame)
            except ConnectionClosed:
                pass  # the reader sees the close too and ends the session
            except trio.TooSlowError:
                self._too_slow = True
                self._scope.cancel()
