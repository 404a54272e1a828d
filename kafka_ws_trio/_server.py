"""The proxy server: routes, sessions, statistics and graceful shutdown."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final, NoReturn

import attrs
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, wrap_server_stream

from ._config import ProxyConfig, RouteConfig
from ._kafka import KafkaUpstream, UpstreamStatistics
from ._ports import Backend
from ._session import CLOSE_GOING_AWAY, Session, SessionCounters, SessionLimits
from ._transport import ReplayStream

log = logging.getLogger("kafka_ws_trio.server")

#: Inbound frames trio-websocket buffers per connection before our reader takes them.
#: Small on purpose: our own bounded command queue is where requests wait.
WS_MESSAGE_QUEUE_SIZE: Final = 4
#: Seconds a client has to finish the opening handshake, and to answer our close.
HANDSHAKE_TIMEOUT: Final = 10.0
CLOSE_TIMEOUT: Final = 5.0
#: Bytes of HTTP request head read to route a connection; a longer head gets 431.
MAX_REQUEST_HEAD: Final = 16 * 1024
#: Bytes read from a socket at a time, also by trio-websocket.
RECEIVE_BYTES: Final = 64 * 1024
async def _read_head(stream: trio.abc.Stream) -> bytes | None:
    """Bytes up to the end of the HTTP request head (maybe a little more); None if it never ends."""
    head = bytearray()
    while b"\r\n\r\n" not in head:
        if len(head) > MAX_REQUEST_HEAD:
            return None
        chunk = await stream.receive_some(RECEIVE_BYTES)
        if not chunk:
            return None
        head += chunk
    return bytes(head)


def _request_path(head: bytes) -> str | None:
    """The path of the request line ``GET /path?query HTTP/1.1``, or None when it is not one."""
    parts = head.split(b"\r\n", 1)[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
        return None
    return parts[1].split(b"?", 1)[0].decode("latin-1")


async def _respond_http(stream: trio.abc.Stream, status: str, body: str) -> None:
    data = body.encode()
    await stream.send_all(
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(data)}\r\n"
        f"Connection: close\r\n\r\n".encode()
        + data
    )


#: Builds the Kafka side of one route; tests inject fakes here.
BackendFactory = Callable[[RouteConfig, trio.CapacityLimiter], "KafkaUpstream | Backend"]


@attrs.frozen
class ProxyStatistics:
    """A snapshot of the server, from :meth:`ProxyServer.statistics`."""

    sessions_open: int
    sessions_total: int
    sessions_rejected: int
    commands_total: int
    errors_total: int
    text_frames_total: int
    commands_queued: int
    commands_in_flight: int
    kafka_threads_busy: int
    upstreams: dict[str, UpstreamStatistics]


class ProxyServer:
    """A running proxy, as handed out by ``await nursery.start(serve_proxy, config)``."""

    def __init__(self, config: ProxyConfig, limiter: trio.CapacityLimiter) -> None:
        self.config = config
        self._backends: dict[str, KafkaUpstream | Backend] = {}
        self._limiter = limiter
        self._scope = trio.CancelScope(shield=True)
        self._sessions_changed = trio.Event()
        self._listeners: list[trio.SocketListener] = []
        self._sessions: dict[Session, WebSocketConnection] = {}
        self._closed_counters = SessionCounters()
        self._sessions_total = 0
        self._sessions_rejected = 0
        self._limits = SessionLimits(
            max_message_size=config.server.max_message_size,
            queue_size=config.server.queue_size,
            workers=config.server.workers,
            send_timeout=config.server.send_timeout,
        )
        self._shutting_down = False

    @property
    def port(self) -> int:
        """The TCP port the server listens on (the kernel's choice when configured as 0)."""
        return self.ports[0]

    @property
    def ports(self) -> list[int]:
        """Every listening port (one per address the host resolved to)."""
        return [int(listener.socket.getsockname()[1]) for listener in self._listeners]

    @property
    def url(self) -> str:
        """``ws://host:port`` of the server; append a route's uri to connect."""
        return f"ws://{self.config.server.host}:{self.port}"

    def statistics(self) -> ProxyStatistics:
        """Counters and gauges of the whole server at this moment."""
        live = list(self._sessions)
        total = self._closed_counters
        return ProxyStatistics(
            sessions_open=len(live),
            sessions_total=self._sessions_total,
            sessions_rejected=self._sessions_rejected,
            commands_total=total.commands + sum(s.counters.commands for s in live),
            errors_total=total.errors + sum(s.counters.errors for s in live),
            text_frames_total=total.text_frames + sum(s.counters.text_frames for s in live),
            commands_queued=sum(s.counters.queued for s in live),
            commands_in_flight=sum(s.counters.in_flight for s in live),
            kafka_threads_busy=self._limiter.borrowed_tokens,
            upstreams={uri: b.statistics() for uri, b in self._backends.items() if isinstance(b, KafkaUpstream)},
        )

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        """One TCP connection: route it by its request head, then hand it to trio-websocket.

        Routing before the WebSocket handshake lets an unknown path get 404
        even on a plain GET (trio-websocket would answer 400 first). Never
        raises: an exception here would stop the whole server.
        """
        try:
            async with trio.open_nursery() as nursery:
                request = None
                with trio.move_on_after(HANDSHAKE_TIMEOUT):
                    head = await _read_head(stream)
                    path = _request_path(head) if head is not None else None
                    if head is None or path is None:
                        await _respond_http(stream, "400 Bad Request", "not an HTTP request\n")
                        return
                    if self.config.route_for(path) is None:
                        await _respond_http(stream, "404 Not Found", f"no route for {path}\n")
                        return
                    replay = ReplayStream(stream, head)
                    request = await wrap_server_stream(
                        nursery,
                        replay,
                        message_queue_size=WS_MESSAGE_QUEUE_SIZE,
                        max_message_size=self.config.server.max_message_size,
                        receive_buffer_size=RECEIVE_BYTES,
                    )
                if request is not None:
                    await self._serve_request(request, replay)
                nursery.cancel_scope.cancel()  # trio-websocket's reader task
        except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away
        except Exception:
            log.exception("unexpected error while serving a connection")
        finally:
            with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
                await stream.aclose()

    async def _serve_request(self, request: WebSocketRequest, stream: ReplayStream) -> None:
        route = self.config.route_for(request.path.split("?", 1)[0])
        assert route is not None  # _serve_connection routed it
        if self._shutting_down:
            await request.reject(503, body=b"server is shutting down\n")
            return
        if len(self._sessions) >= self.config.server.max_sessions:
            self._sessions_rejected += 1
            await request.reject(503, body=b"too many sessions\n")
            return
        subprotocol = request.proposed_subprotocols[0] if request.proposed_subprotocols else None
        ws = await request.accept(subprotocol=subprotocol)
        session = Session(ws, self._backends[route.uri], self._limits, route=route.uri, writer=stream)
        self._sessions[session] = ws
        self._sessions_total += 1
        log.debug("%r opened from %s", session, ws.remote)
        try:
            await session.run()
        finally:
            with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
                await ws.aclose()
            del self._sessions[session]
            self._sessions_changed.set()
            self._sessions_changed = trio.Event()
            for field in ("commands", "errors", "text_frames"):
                setattr(
                    self._closed_counters,
                    field,
                    getattr(self._closed_counters, field) + getattr(session.counters, field),
                )
            log.debug("%r closed", session)

    async def _run(
        self,
        backend_factory: BackendFactory | None,
        *,
        task_status: trio.TaskStatus[ProxyServer] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Everything the server runs, inside a shielded scope only :meth:`_shutdown` cancels."""
        server = self.config.server
        with self._scope:
            async with trio.open_nursery() as nursery:
                for route in self.config.routes:
                    if backend_factory is None:
                        upstream = KafkaUpstream(route, self._limiter)
                        await nursery.start(upstream.run)
                        self._backends[route.uri] = upstream
                    else:
                        self._backends[route.uri] = backend_factory(route, self._limiter)
                self._listeners = await trio.open_tcp_listeners(server.port, host=server.host)
                await nursery.start(trio.serve_listeners, self._serve_connection, self._listeners)
                log.info(
                    "kafka-ws-trio listening on %s (routes: %s)", self.url, ", ".join(r.uri for r in self.config.routes)
                )
                task_status.started(self)

    async def _shutdown(self) -> None:
        """Refuse new sessions, close the open ones with 1001, then stop everything.

        Sessions get ``grace_period`` seconds to finish their closing
        handshake; whatever is left after that is cancelled.
        """
        self._shutting_down = True
        with trio.move_on_after(self.config.server.grace_period):
            async with trio.open_nursery() as nursery:
                for ws in list(self._sessions.values()):
                    nursery.start_soon(ws.aclose, CLOSE_GOING_AWAY, "server shutting down")
            while self._sessions:
                await self._sessions_changed.wait()
        self._scope.cancel()


async def serve_proxy(
    config: ProxyConfig,
    *,
    backend_factory: BackendFactory | None = None,
    task_status: trio.TaskStatus[ProxyServer] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve the proxy described by ``config`` until cancelled.

    Use it from any Trio program::

        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve_proxy, config)
            print(server.port, server.statistics())

    Args:
        config: what to listen on and which routes lead to which Kafka clusters.
        backend_factory: builds each route's Kafka side; the default talks to
            real brokers with kafka-python. Tests pass fakes.
        task_status: for ``nursery.start``; receives the :class:`ProxyServer`
            once the listening socket is bound.

    Cancellation:
        Cancelling the task is a graceful shutdown: new connections are
        refused, every open session is sent close code 1001 ("going away"),
        and after at most ``config.server.grace_period`` seconds whatever is
        still running is cancelled. Kafka clients are closed under a shielded,
        time-limited scope before this raises ``Cancelled``.
    """
    server = ProxyServer(config, trio.CapacityLimiter(config.server.kafka_threads))
    async with trio.open_nursery() as nursery:
        await nursery.start(server._run, backend_factory)
        task_status.started(server)
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await server._shutdown()
    raise AssertionError("unreachable")  # pragma: no cover
