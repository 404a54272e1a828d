"""The proxy server: routes, sessions, statistics and graceful shutdown."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Final, NoReturn

import attrs
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, WebSocketServer, serve_websocket

from ._config import ProxyConfig, RouteConfig
from ._kafka import KafkaUpstream, UpstreamStatistics
from ._session import CLOSE_GOING_AWAY, Backend, Session, SessionCounters, SessionLimits

log = logging.getLogger("kafka_ws_trio.server")

#: Inbound frames trio-websocket buffers per connection before our reader takes them.
#: Small on purpose: our own bounded command queue is where requests wait.
WS_MESSAGE_QUEUE_SIZE: Final = 4
#: Seconds a client has to finish the opening handshake, and to answer our close.
HANDSHAKE_TIMEOUT: Final = 10.0
CLOSE_TIMEOUT: Final = 5.0

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
        self._ws_server: WebSocketServer | None = None
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
        assert self._ws_server is not None
        return self._ws_server.port

    @property
    def ports(self) -> list[int]:
        """Every listening port."""
        assert self._ws_server is not None
        return [listener.port for listener in self._ws_server.listeners if not isinstance(listener, str)]

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

    async def _handle(self, request: WebSocketRequest) -> None:
        """trio-websocket's handler: must never raise, or it would stop the server."""
        try:
            await self._serve_request(request)
        except ConnectionClosed:
            pass  # the client left during the handshake
        except Exception:
            log.exception("unexpected error while serving %s", request.path)

    async def _serve_request(self, request: WebSocketRequest) -> None:
        path = request.path.split("?", 1)[0]
        route = self.config.route_for(path)
        if route is None:
            await request.reject(404, body=f"no route for {path}\n".encode())
            return
        if self._shutting_down:
            await request.reject(503, body=b"server is shutting down\n")
            return
        if len(self._sessions) >= self.config.server.max_sessions:
            self._sessions_rejected += 1
            await request.reject(503, body=b"too many sessions\n")
            return
        subprotocol = request.proposed_subprotocols[0] if request.proposed_subprotocols else None
        ws = await request.accept(subprotocol=subprotocol)
        session = Session(ws, self._backends[route.uri], self._limits, route=route.uri)
        self._sessions[session] = ws
        self._sessions_total += 1
        log.debug("%r opened from %s", session, ws.remote)
        try:
            await session.run()
        finally:
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
                self._ws_server = await nursery.start(
                    partial(
                        serve_websocket,
                        self._handle,
                        server.host,
                        server.port,
                        None,
                        message_queue_size=WS_MESSAGE_QUEUE_SIZE,
                        max_message_size=server.max_message_size,
                        connect_timeout=HANDSHAKE_TIMEOUT,
                        disconnect_timeout=CLOSE_TIMEOUT,
                    )
                )
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
