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
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, Protocol

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
    encode_fetch_head,
    encode_list_offset,
    encode_pong,
    fetch_error,
    list_offset_error,
    websocket_binary_header,
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

#: A response ready to send: a whole frame, or a fetch response as its per-session
#: head and its body (shared between sessions, and written without being copied).
Frame = bytes | tuple[bytes, bytes]


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


#: What a parked fetch is answered with: records (maybe none, at the log end), a
#: failure, or None for "not from here after all: fetch it the normal way".
ParkedResult = EncodedBatch | CommandFailed | None


class ParkingBackend(Backend, Protocol):
    """A backend that can hold a fetch at the log end and answer it when records arrive (the real one can).

    ``park`` returns at once: None when it will not hold this fetch, else a
    function that withdraws it. A held fetch is answered exactly once, unless
    withdrawn, by calling ``deliver`` from another task, within the backend's
    ``deadline``. ``deliver`` must not block.
    """

    def park(
        self, topic: str, partition: int, offset: int, max_bytes: int, deliver: Callable[[ParkedResult], None]
    ) -> Callable[[], None] | None: ...


class FrameWriter(Protocol):
    """Writes a whole WebSocket frame into the connection without waiting (see ``_server._ReplayStream``)."""

    def write_now(self, buffers: Sequence[bytes]) -> bool | None: ...
    async def flush(self) -> None: ...


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
        writer: FrameWriter | None = None,
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
        self._park: Callable[..., Callable[[], None] | None] | None = getattr(backend, "park", None)
        #: Fetches the backend holds for us, by partition: at most one each, as the first in its lane.
        self._parked: dict[tuple[str, int], Callable[[], None]] = {}
        self._writer = writer
        self._nursery: trio.Nursery | None = None

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
                    self._nursery = nursery
                    try:
                        send_jobs, receive_jobs = trio.open_memory_channel[_Job](self._limits.queue_size)
                        async with send_jobs, receive_jobs:
                            nursery.start_soon(self._dispatch, receive_jobs.clone(), nursery)
                            await self._reader(send_jobs)
                            nursery.cancel_scope.cancel()
                    finally:
                        self._unpark_all()
                        self._nursery = None
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
                at_front = not self._order.pending(key)
                if isinstance(request, Fetch) and self._cached is not None and at_front:
                    answer = self._answer_from_memory(request)
                    if answer is not None:
                        await self._send(answer)
                        continue
                ticket = self._order.take_ticket(key)
                if isinstance(request, Fetch) and at_front and self._try_park(request, key):
                    continue
                job = _Job(request, key, ticket)
                self.counters.queued += 1
                await jobs.send(job)

    def _answer_from_memory(self, request: Fetch) -> Frame | None:
        """A fetch the backend holds in memory, answered in the reader: no queue, no worker."""
        assert self._cached is not None
        try:
            batch = self._cached(request.topic, request.partition, request.offset, self._limits.max_message_size)
        except CommandFailed as exc:
            self.counters.errors += 1
            return encode_error(request.sequence, exc.code, fetch_error(request.topic, request.partition, exc.reason))
        return None if batch is None else _fetch_frame(request.sequence, batch)

    # ---------------------------------------------------------------- parking

    def _try_park(self, request: Fetch, key: tuple[str, int]) -> bool:
        """Hand a fetch at the log end to the backend to answer when records arrive: no worker waits for it.

        The fetch keeps its ticket (the first of its partition's lane), so
        later commands for that partition are answered after it.
        """
        if self._park is None or self._nursery is None or len(self._parked) >= self._limits.queue_size:
            return False

        def deliver(result: ParkedResult) -> None:
            if self._parked.pop(key, None) is None:
                return  # withdrawn: the session is ending
            self.counters.in_flight -= 1
            try:
                self._answer_parked(request, key, result)
            except Exception:
                log.exception("%r: bug while answering a parked fetch", self)
                self._scope.cancel()

        withdraw = self._park(request.topic, request.partition, request.offset, self._limits.max_message_size, deliver)
        if withdraw is None:
            return False
        self._parked[key] = withdraw
        self.counters.in_flight += 1
        return True

    def _unpark_all(self) -> None:
        parked, self._parked = self._parked, {}
        self.counters.in_flight -= len(parked)
        for withdraw in parked.values():
            withdraw()

    def _answer_parked(self, request: Fetch, key: tuple[str, int], result: ParkedResult) -> None:
        """Send the answer to a parked fetch: straight into the socket when it takes it, else from a task."""
        if result is None:
            self._spawn(self._work_parked, request, key)
            return
        if isinstance(result, CommandFailed):
            self.counters.errors += 1
            message = fetch_error(request.topic, request.partition, result.reason)
            self._spawn(self._send_in_turn, encode_error(request.sequence, result.code, message), key)
            return
        frame = _fetch_frame(request.sequence, result)
        if not self._send_lock.locked():
            written = self._write_now(frame)
            if written is not None:
                self._order.done(key)
                if not written:
                    self._spawn(self._flush)
                return
        self._spawn(self._send_in_turn, frame, key)

    def _spawn(self, fn: Callable[..., Any], *args: object) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(fn, *args)

    async def _send_in_turn(self, frame: Frame, key: tuple[str, int]) -> None:
        """Send a parked fetch's answer (its ticket is the lane's turn), then let the lane move on."""
        try:
            await self._send(frame)
        finally:
            self._order.done(key)

    async def _work_parked(self, request: Fetch, key: tuple[str, int]) -> None:
        """A parked fetch the backend gave back: answer it like any other command."""
        await self._send_in_turn(await self._respond(request), key)

    async def _flush(self) -> None:
        """Send what a direct write left in the stream; a client that does not take it in time ends the session."""
        assert self._writer is not None
        await self._guarded(self._writer.flush)

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

    async def _respond(self, request: ListOffset | Fetch | Invalid) -> Frame:
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
                    return _fetch_frame(request.sequence, records)
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

    async def _send(self, frame: Frame) -> None:
        """Write one frame; a client that does not take it in time ends the session."""

        async def send() -> None:
            if isinstance(frame, bytes):
                await self._ws.send_message(frame)
                return
            written = self._write_now(frame)
            if written is None:
                await self._ws.send_message(frame[0] + frame[1])
            elif not written:
                assert self._writer is not None
                await self._writer.flush()

        await self._guarded(send)

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
        head, body = frame
        return self._writer.write_now((websocket_binary_header(len(head) + len(body)), head, body))


def _fetch_frame(sequence: int, batch: EncodedBatch) -> tuple[bytes, bytes]:
    return encode_fetch_head(sequence, len(batch.body)), batch.body
