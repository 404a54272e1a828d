"""The proxy server: routes, sessions, statistics and graceful shutdown."""

from __future__ import annotations

import logging
import ssl
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, Final, Literal, NoReturn

import attrs
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, wrap_server_stream

from ._auth import ApiKeys, Credential, KeyEntry
from ._auth._kafka_logins import KafkaLogins
from ._auth._route import RouteAccess, SessionAccess, Unauthorized
from ._config import ConfigError, ProxyConfig, RouteConfig, ServerConfig
from ._config._toml import parse_route
from ._http import (
    MAX_REQUEST_HEAD,
    RECEIVE_BYTES,
    SHUTTING_DOWN,
    Admitted,
    BodyReader,
    Handler,
    HandshakeCount,
    HeadReader,
    RequestHead,
    Respond,
    Router,
    Upgrade,
    WebSocketEndpoint,
    admit,
    admit_client,
    read_body,
    read_head,
    refuse_no_room,
    send_response,
)
from ._kafka import IdentityPool, KafkaUpstream, MemberSlots, UpstreamStatistics
from ._kafka._diagnosis import diagnose
from ._kafka._route_store import KafkaRouteStore, store_connection
from ._ops import Answer, Family, Histogram, MetricsEndpoint, Readiness, healthz
from ._ops._admin import MAX_BODY as ADMIN_MAX_BODY
from ._ops._admin import PREFIX as ADMIN_PREFIX
from ._ops._admin import AdminApi, ChangeUnavailable, unfinished
from ._ports import Backend
from ._proto import Amount, CommandFailed, ErrorCode, Grant, StreamLimits
from ._session import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY_VIOLATION,
    LATENCY_BUCKETS,
    Session,
    SessionCounters,
    SessionLimits,
    Tally,
)
from ._transport import ReplayStream

log = logging.getLogger("kafka_ws_trio.server")
audit = logging.getLogger("kafka_ws_trio.audit")

#: Inbound frames trio-websocket buffers per connection before our reader takes them.
#: Small on purpose: our own bounded command queue is where requests wait.
WS_MESSAGE_QUEUE_SIZE: Final = 4
#: Seconds a client has to answer our close.
CLOSE_TIMEOUT: Final = 5.0
#: Threads checking handshake credentials at once (an API key costs one scrypt: CPU and 16 MiB each).
HANDSHAKE_THREADS: Final = 4
#: The ``event`` of the log record saying the server is listening (the CLI prints its own line instead).
LISTENING_EVENT: Final = "listening"
#: The close code counted for a session whose connection ended without a closing handshake (RFC 6455, 7.1.5).
CLOSE_ABNORMAL: Final = 1006
#: The oldest TLS version a ``wss://`` listener accepts.
TLS_MINIMUM_VERSION: Final = ssl.TLSVersion.TLSv1_2
#: The answer, in plain HTTP, to a plain HTTP request on a TLS listener (a ``ws://`` client).
PLAIN_HTTP_ON_TLS: Final = Respond(400, b"this port speaks TLS: connect with wss://\n")


def _no_key_password() -> str:
    # Without this callback OpenSSL would ask for the password on the terminal.
    raise ssl.SSLError("the private key is encrypted and tls_key_password is not set")


def _listener_context(server: ServerConfig) -> ssl.SSLContext:
    """A server-side TLS context holding ``server``'s certificate and key (OSError if they do not load)."""
    assert server.tls_cert_file is not None
    password = server.tls_key_password.reveal if server.tls_key_password is not None else _no_key_password
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_MINIMUM_VERSION
    context.load_cert_chain(server.tls_cert_file, server.tls_key_file, password=password)
    return context


class _ListenerTls:
    """The listeners' TLS: the context they wrap connections in, and the certificate in use.

    A context's certificate cannot be replaced in place safely: a load that
    fails half-way (the new certificate read, then a key that does not match
    it) leaves the context with no usable key, and every handshake fails.
    So a reload loads a whole new context, and the listeners' context hands
    each handshake to the one in use from its SNI callback, which OpenSSL
    calls on every ClientHello, with or without a server name. A connection
    keeps the context it started with.
    """

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self._current = context
        context.sni_callback = self._pick

    def use(self, context: ssl.SSLContext) -> None:
        """Hand new handshakes ``context``'s certificate."""
        self._current = context

    def _pick(self, connection: ssl.SSLObject | ssl.SSLSocket, _name: str | None, _context: ssl.SSLContext) -> None:
        if self._current is not self.context:
            connection.context = self._current


async def _tls_handshake(stream: trio.SSLStream[trio.SocketStream]) -> bool:
    """Do a client's TLS handshake; False, logged at debug level only, when it fails.

    Port scanners, clients that do not trust our certificate and plain
    ``ws://`` clients all end here: none of them is the server's problem. A
    plain HTTP request gets :data:`PLAIN_HTTP_ON_TLS`, in plain HTTP.
    """
    try:
        await stream.do_handshake()
    except trio.BrokenResourceError as exc:
        cause = exc.__cause__
        log.debug("TLS handshake with %s failed: %s", _peer(stream), cause or "the connection broke")
        if isinstance(cause, ssl.SSLError) and cause.reason == "HTTP_REQUEST":
            await send_response(stream.transport_stream, PLAIN_HTTP_ON_TLS)
        return False
    return True


def _peer_ip(stream: trio.abc.Stream) -> str:
    """The client's IP address, for the handshake limit per address ("?" when there is none)."""
    return _peer(stream).rpartition(":")[0].strip("[]") or "?"


def _peer(stream: trio.abc.Stream) -> str:
    """The client's address, for the audit log (``host:port``; ``?`` once the socket is gone)."""
    transport = getattr(stream, "transport_stream", stream)  # under TLS, the TCP stream inside
    try:
        host, port = getattr(transport, "socket").getpeername()[:2]  # noqa: B009  (not every Stream has one)
    except (AttributeError, OSError):
        return "?"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Slot:
    """One admitted WebSocket connection, counted from admission until its session ends; released once."""

    __slots__ = ("_server",)

    def __init__(self, server: ProxyServer) -> None:
        self._server: ProxyServer | None = server
        server._admitted += 1

    def release(self) -> None:
        if self._server is not None:
            self._server._admitted -= 1
            self._server = None


def client_went_away(exc: BaseException) -> bool:
    """Whether ``exc`` only says the client's connection ended: alone, or every one of a nursery's group."""
    inner = getattr(exc, "exceptions", None)  # an ExceptionGroup (a backport's on Python 3.10)
    if isinstance(inner, tuple) and inner:
        return all(client_went_away(one) for one in inner)
    return isinstance(exc, ConnectionClosed | trio.BrokenResourceError | trio.ClosedResourceError)


#: The per-route figures of :class:`UpstreamStatistics` as metrics (``upstream_<field>``), labelled by route
#: and, for a principal's own Kafka login (``kafka_credentials``), by principal ("" for the route's own).
_UPSTREAM_METRICS: Final[dict[str, tuple[str, Literal["counter", "gauge"]]]] = {
    "readers_open": ("partition readers open (a Kafka consumer each)", "gauge"),
    "consumers_created": ("Kafka consumers created", "counter"),
    "consumers_closed": ("Kafka consumers closed", "counter"),
    "broker_polls": ("polls of Kafka by partition readers", "counter"),
    "cache_hits": ("fetches answered from a reader's window without asking Kafka", "counter"),
    "connect_failures": ("failed attempts to reach the route's brokers", "counter"),
    "fetches_parked": ("fetches held at a log end, waiting for records", "gauge"),
    "parked_answered": ("parked fetches answered", "counter"),
    "readers_refused": ("commands refused because max_partition_readers were busy", "counter"),
    "stream_taps": ("partitions of push streams being fed", "gauge"),
    "streams": ("push streams reading at least one partition", "gauge"),
    "streams_starved": ("push streams behind the log end with no credit left", "gauge"),
    "stream_taps_starved": ("partitions of push streams behind the log end with no credit left", "gauge"),
    "stream_lag": ("records push streams are behind the log end, summed over their partitions", "gauge"),
    "stream_batches": ("batches pushed to streams", "counter"),
    "stream_records": ("records pushed to streams", "counter"),
    "records_produced": ("records produced, with their result", "counter"),
    "records_failed": ("produced records that failed", "counter"),
    "produce_records_in_flight": ("records handed to Kafka and not acknowledged yet", "gauge"),
    "produce_bytes_in_flight": ("bytes handed to Kafka and not acknowledged yet", "gauge"),
    "transactions_begun": ("transactions begun", "counter"),
    "transactions_open": ("transactional producers lent to a session now", "gauge"),
    "group_members_joined": ("consumer group members joined", "counter"),
    "group_members_open": ("consumer group members open now", "gauge"),
    "group_rebalances": ("assignments received by consumer group members (one per member per rebalance)", "counter"),
}


def _labelled(name: str, help: str, label: str, counts: Mapping[Any, int]) -> Family:
    """A counter with one label, from counts by that label's value."""

    def text(key: Any) -> str:
        return str(int(key)) if isinstance(key, int) else str(key)  # an IntEnum as its number on every Python

    return Family(name, help, "counter", (label,), tuple(((text(key),), float(n)) for key, n in sorted(counts.items())))


#: The close reason of sessions drained by a shutdown (code 1001).
SHUTTING_DOWN_REASON: Final = "server shutting down"


def _by_kind(results: Mapping[tuple[str, int], int]) -> dict[str, dict[int, int]]:
    """Counts by (kind, code) as counts by kind, then code (plain keys: the statistics turn into JSON as they are)."""
    nested: dict[str, dict[int, int]] = {}
    for (kind, code), n in results.items():
        nested.setdefault(kind, {})[code] = n
    return nested


def _code_name(code: int) -> str:
    """An answer's result in the metrics: OK, an error code's name, or its number when it has none."""
    if code == 0:
        return "OK"
    try:
        return ErrorCode(code).name
    except ValueError:
        return str(int(code))


#: The keys of secret values, which a route store must not hold (their ``*_env`` forms are fine).
_SECRET_KEYS: Final = frozenset({"password", "key_password", "secret", "text"})


def _refuse_secret_values(table: Mapping[str, Any], path: str = "") -> None:
    """Raise ConfigError for a secret given as a value in ``table`` (at any depth): the store's topic is readable."""
    for key, value in table.items():
        where = f"{path}.{key}" if path else key
        if key in _SECRET_KEYS and isinstance(value, str):
            raise ConfigError(
                f"a route store must not hold secrets: give it as {key}_env, the name of a variable every proxy has",
                key=where,
            )
        if isinstance(value, Mapping):
            _refuse_secret_values(value, where)


@attrs.frozen
class RouteChanges:
    """What :meth:`ProxyServer.update_routes` did, by route uri."""

    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.deleted)


def _respond(answer: Answer) -> Respond:
    return Respond(answer.status, answer.body, content_type=answer.content_type)


#: Builds the Kafka side of one route; tests inject fakes here.
BackendFactory = Callable[[RouteConfig, trio.CapacityLimiter], "KafkaUpstream | Backend"]


def _stream_limits(route: RouteConfig) -> StreamLimits:
    """The bounds of the streams of one session on ``route`` (its quota of streams, when lower)."""
    quota = route.quotas.streams_per_connection if route.quotas is not None else None
    if quota is not None and quota < route.max_streams:
        max_streams, setting = quota, "quotas.streams_per_connection"
    else:
        max_streams, setting = route.max_streams, "max_streams"
    return StreamLimits(
        max_streams=max_streams,
        max_streams_setting=setting,
        max_partitions=route.max_stream_partitions,
        default_grant=Grant(records=route.stream_credit_records, bytes=route.stream_credit_bytes),
    )


def _produce_limit(route: RouteConfig) -> Amount | None:
    """What one session on ``route`` may have in flight to Kafka; None when the route does not produce."""
    if not route.produce:
        return None
    return Amount(route.produce_session_records, route.produce_session_bytes)


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
    #: Sessions closed so far, by WebSocket close code (1006: the connection ended without a close).
    sessions_closed: dict[int, int] = attrs.field(factory=dict)
    #: WebSocket upgrades refused before the handshake by the route's access checks, by HTTP status.
    handshakes_refused: dict[int, int] = attrs.field(factory=dict)
    #: Commands received by kind (``ping``, ``fetch``, ``subscribe`` ...), and those the principal's rights
    #: or quotas refused, by error code (60, 61, 62).
    commands_by_kind: dict[str, int] = attrs.field(factory=dict)
    commands_refused: dict[int, int] = attrs.field(factory=dict)
    #: Commands answered, by kind, then by the answer's error code (0: not an error response).
    command_results: dict[str, dict[int, int]] = attrs.field(factory=dict)
    #: WebSocket messages and their payload bytes, received and sent.
    frames_in: int = 0
    bytes_in: int = 0
    frames_out: int = 0
    bytes_out: int = 0
    #: Per kind, the seconds from the reader taking a command to its answer being written: counts per
    #: bucket of ``latency_buckets`` (not cumulative, +Inf last) and their sum.
    latency_buckets: tuple[float, ...] = LATENCY_BUCKETS
    latency: dict[str, tuple[tuple[int, ...], float]] = attrs.field(factory=dict)


class _Route:
    """One route as served: its config, access control and Kafka side, and the sessions on it.

    A changed or deleted route is retired (:meth:`ProxyServer.update_routes`): new
    sessions go to its successor, its own sessions are closed with 1001, and its
    Kafka side is stopped once they are gone.
    """

    def __init__(self, config: RouteConfig, server: ServerConfig) -> None:
        self.config = config
        self.uri = config.uri
        #: Authentication, rules and quotas (reads key and JWKS files: now, not per handshake).
        self.access = RouteAccess(config, server.allowed_origins)
        #: Which Kafka login each principal uses, on a route with kafka_credentials.
        self.logins = KafkaLogins(config.kafka_credentials) if config.kafka_credentials is not None else None
        self.stream_limits = _stream_limits(config)
        self.produce_limit = _produce_limit(config)
        self.backend: KafkaUpstream | Backend | None = None
        self.pool: IdentityPool | None = None
        #: Cancels the route's Kafka side (its upstream and pool).
        self.scope = trio.CancelScope()
        self.sessions: dict[Session, WebSocketConnection] = {}
        self.retired = False
        #: Why it was retired ("route changed", "route deleted"): the close reason its sessions get.
        self.retired_reason = ""


class ProxyServer:
    """A running proxy, as handed out by ``await nursery.start(serve_proxy, config)``."""

    #: The listeners' TLS; set by :meth:`_run` when the config has a certificate.
    _tls: _ListenerTls | None = None

    def __init__(self, config: ProxyConfig, limiter: trio.CapacityLimiter) -> None:
        self.config = config
        #: The routes served now, by uri (retired ones are not here, though their sessions may still run).
        self._routes = {route.uri: _Route(route, config.server) for route in config.routes}
        #: The fleet's route store (routes laid over the file's), and the entries it holds.
        self._file_routes = config.routes
        self._store = KafkaRouteStore(config.server.route_store) if config.server.route_store is not None else None
        self._store_entries: dict[str, dict[str, Any] | None] = {}
        #: The store offset the routes served now were built from (everything before it is applied), and
        #: the event set (then replaced) each time it moves.
        self._store_applied = 0
        self._store_moved = trio.Event()
        self._backend_factory: BackendFactory | None = None
        self._nursery: trio.Nursery | None = None
        self._limiter = limiter
        #: Consumer group members, all routes together (``server.max_group_members``).
        self._members = MemberSlots(config.server.max_group_members, "server.max_group_members", "on this proxy")
        self._scope = trio.CancelScope(shield=True)
        self._sessions_changed = trio.Event()
        self._listeners: list[trio.SocketListener] = []
        self._sessions: dict[Session, WebSocketConnection] = {}
        self._closed_counters = SessionCounters()
        self._sessions_total = 0
        self._sessions_rejected = 0
        #: What the sessions count together (the metrics), sessions closed by code, upgrades refused by status.
        self._tally = Tally()
        #: Each open session's route, principal, peer and when it opened (the admin API lists them).
        self._session_info: dict[Session, tuple[str, str, str, float]] = {}
        self._closed_by_code: Counter[int] = Counter()
        self._handshakes_refused: Counter[int] = Counter()
        self._limits = SessionLimits(
            max_message_size=config.server.max_message_size,
            queue_size=config.server.queue_size,
            workers=config.server.workers,
            send_timeout=config.server.send_timeout,
        )
        self._shutting_down = False
        #: The shutdown's wait of ``shutdown_delay``, while it runs (:meth:`end_shutdown_delay` ends it).
        self._delaying: trio.CancelScope | None = None
        #: What /readyz answers, and /metrics (built at each scrape from statistics()).
        self.readiness = Readiness(route.uri for route in config.routes)
        self._metrics = MetricsEndpoint(self._families)
        self._probes: dict[str, Handler] = {
            "/healthz": lambda _: _respond(healthz()),
            "/readyz": lambda request: _respond(self.readiness.respond(request.target.partition("?")[2])),
        }
        self._router = self._route_table()
        # /metrics and /admin/ are answered by _serve_ops itself (async: a render thread, a change).
        self._ops_router = Router(self._probes)
        #: One scrape renders at a time, in a thread of its own (listing the process's open files takes a
        #: few ms at thousands of sessions).
        self._scrape_threads = trio.CapacityLimiter(1)
        self._ops_listeners: list[trio.SocketListener] = []
        #: The admin API (on the ops port), with the keys that may call it; None without admin keys.
        self._admin_keys = (
            ApiKeys(KeyEntry(key.id, key.principal, key.hash) for key in config.server.admin_keys)
            if config.server.admin_keys
            else None
        )
        self._admin = AdminApi(self, self._admin_key) if self._admin_keys is not None else None
        self._handshakes = HandshakeCount(config.server.max_handshakes, config.server.max_handshakes_per_ip)
        self._handshake_threads = trio.CapacityLimiter(HANDSHAKE_THREADS)
        #: Connections admitted to a WebSocket handshake and not ended yet (sessions, and ones on the way).
        self._admitted = 0

    async def change_route(self, uri: str, table: dict[str, Any] | None) -> None:
        """Serve ``table`` as route ``uri``, or delete it (None): here, or in the route store for the whole fleet.

        With a route store the change is written there, and this returns once this
        proxy serves it; secrets must then be ``*_env`` keys, never values in the topic.

        Raises:
            ConfigError: the routes would not be valid (none left; a bad table; a secret's value for the store).
            ChangeUnavailable: not now: the server is shutting down, or the route store did not take the
                change (or did not confirm it in time: the message then says it may still take effect).
        """
        if self._shutting_down:
            raise ChangeUnavailable("the server is shutting down; nothing was changed")
        routes = {route.uri: route for route in self.config.routes}
        if table is None:
            routes.pop(uri, None)
        else:
            if self._store is not None:
                _refuse_secret_values(table)
            routes[uri] = parse_route(table)
        if self._store is None:
            await self.update_routes(list(routes.values()))
            return
        attrs.evolve(self.config, routes=tuple(routes.values()))  # the same checks, before anything is written
        try:
            offset = await self._store.put(uri, table)
        except OSError as exc:
            raise ChangeUnavailable(str(exc)) from None
        with trio.move_on_after(self.config.server.handshake_timeout):
            while self._store_applied <= offset:
                await self._store_moved.wait()

    def route_source(self, uri: str) -> dict[str, Any] | None:
        """The table the route store holds for ``uri`` (its ``*_env`` keys kept); None without one."""
        return self._store_entries.get(uri)

    async def _apply_store(self, entries: dict[str, dict[str, Any] | None]) -> None:
        """Serve the file's routes with the store's laid over them (a bad entry is logged and left out)."""
        assert self._store is not None
        if self._shutting_down:
            return  # the routes are being drained: nothing is served any more
        read_to = self._store.read_to
        merged = {route.uri: route for route in self._file_routes}
        for uri, table in entries.items():
            if table is None:
                merged.pop(uri, None)
                continue
            try:
                merged[uri] = parse_route(table)
            except ConfigError as exc:
                log.error("route store: the entry for %s is not a valid route; left out: %s", uri, exc)
        if not merged:
            log.error("route store: it leaves no route to serve; the routes served now stay")
        else:
            try:
                await self.update_routes(list(merged.values()))
            except (ConfigError, OSError, ValueError) as exc:
                log.error("route store: its routes could not be served; the routes served now stay: %s", exc)
        self._store_entries = entries
        self._store_applied = read_to
        self._store_moved.set()
        self._store_moved = trio.Event()

    @property
    def route_configs(self) -> tuple[RouteConfig, ...]:
        """The routes served now."""
        return self.config.routes

    def session_list(self) -> list[dict[str, Any]]:
        """Every open session: id, route, principal, peer, age in seconds, streams open (for the admin API)."""
        now = trio.current_time()
        return [
            {
                "id": session.id,
                "route": route,
                "principal": principal,
                "peer": peer,
                "age_seconds": round(now - opened, 1),
                "streams": session.streams_open,
            }
            for session, (route, principal, peer, opened) in sorted(self._session_info.items(), key=lambda i: i[0].id)
        ]

    def close_session(self, session_id: int) -> bool:
        """Close one session (1008, ``closed by an operator``); whether it was open."""
        for session, ws in self._sessions.items():
            if session.id == session_id:
                assert self._nursery is not None
                audit.info("session %d closed by an operator", session_id, extra={"event": "session_closed_by_admin"})
                self._nursery.start_soon(ws.aclose, CLOSE_POLICY_VIOLATION, "closed by an operator")
                return True
        return False

    def _route_table(self) -> Router:
        """The proxy port's paths: the probes, then the routes (a route of the same path wins)."""
        routes: dict[str, Handler] = {uri: WebSocketEndpoint(uri) for uri in self._routes}
        return Router({**self._probes, **routes})

    @property
    def ops_port(self) -> int | None:
        """The port of the ops listener (/metrics, /healthz, /readyz); None when the config has none."""
        if not self._ops_listeners:
            return None
        return int(self._ops_listeners[0].socket.getsockname()[1])

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
        """``ws://host:port`` of the server (``wss://`` with TLS); append a route's uri to connect."""
        return f"{'wss' if self.config.server.tls else 'ws'}://{self.config.server.host}:{self.port}"

    def reload_tls(self) -> bool:
        """Read the listener's certificate and key files again: new TLS handshakes use them from now on.

        Sessions already open keep the certificate they began with. When
        the files do not load (missing, not PEM, not a pair, a wrong
        password), the certificate in use stays, and the problem is logged
        with the file's name. Nothing is awaited: the files are read at once.

        Returns:
            Whether the new certificate is in use; False also when the
            server does not listen with TLS.
        """
        server = self.config.server
        if self._tls is None:
            log.warning("no TLS certificate to reload: the server listens without TLS (ws://)")
            return False
        try:
            attrs.evolve(server)  # the config's checks of the files, whose messages name the file
            context = _listener_context(server)
        except ConfigError as exc:
            log.error("could not reload the TLS certificate; the one loaded before stays in use: %s", exc)
            return False
        except OSError as exc:
            log.error(
                "could not reload the TLS certificate from %s with the key in %s; the one loaded before "
                "stays in use: %s",
                server.tls_cert_file,
                server.tls_key_file,
                exc,
            )
            return False
        self._tls.use(context)
        log.info("reloaded TLS certificate from %s", server.tls_cert_file)
        return True

    def _serving(self) -> list[trio.SocketListener] | list[trio.SSLListener[trio.SocketStream]]:
        """The listeners connections are accepted from: the TCP ones, wrapped in TLS when configured."""
        if self._tls is None:
            return self._listeners
        # The handshake is not done on accept: _serve_connection does it, within its deadline.
        return [trio.SSLListener(tcp, self._tls.context, https_compatible=True) for tcp in self._listeners]

    def statistics(self) -> ProxyStatistics:
        """Counters and gauges of the whole server at this moment."""
        total = self._closed_counters
        commands, errors, text_frames, queued, in_flight = total.commands, total.errors, total.text_frames, 0, 0
        for session in self._sessions:  # one pass: a scrape runs this, on the event loop, at every session count
            counters = session.counters
            commands += counters.commands
            errors += counters.errors
            text_frames += counters.text_frames
            queued += counters.queued
            in_flight += counters.in_flight
        tally = self._tally
        return ProxyStatistics(
            sessions_open=len(self._sessions),
            sessions_total=self._sessions_total,
            sessions_rejected=self._sessions_rejected,
            commands_total=commands,
            errors_total=errors,
            text_frames_total=text_frames,
            commands_queued=queued,
            commands_in_flight=in_flight,
            kafka_threads_busy=self._limiter.borrowed_tokens,
            upstreams={
                **{
                    uri: r.backend.statistics()
                    for uri, r in self._routes.items()
                    if isinstance(r.backend, KafkaUpstream)
                },
                **{
                    f"{uri} as {principal}": statistics
                    for uri, r in self._routes.items()
                    if r.pool is not None
                    for principal, statistics in r.pool.statistics().items()
                },
            },
            sessions_closed=dict(self._closed_by_code),
            handshakes_refused=dict(self._handshakes_refused),
            commands_by_kind=dict(tally.commands),
            commands_refused=dict(tally.refused),
            command_results=_by_kind(tally.results),
            frames_in=tally.frames_in,
            bytes_in=tally.bytes_in,
            frames_out=tally.frames_out,
            bytes_out=tally.bytes_out,
            latency={kind: (tuple(counts), tally.latency_sum[kind]) for kind, counts in tally.latency.items()},
        )

    async def _serve_connection(self, stream: trio.SocketStream | trio.SSLStream[trio.SocketStream]) -> None:
        """One TCP connection: route it by its request head, then hand it to trio-websocket.

        The HTTP front (``_http``) reads the head with h11 and answers
        everything but a WebSocket upgrade on a route itself: an unknown path
        gets 404 even on a plain GET (trio-websocket would answer 400 first),
        and a full server 503 before any handshake. On a TLS listener the
        TLS handshake comes first, within the same deadline. Never raises:
        an exception here would stop the whole server.
        """
        try:
            deadline = trio.current_time() + self.config.server.handshake_timeout
            routed = None
            ip = _peer_ip(stream)
            refusal = self._handshakes.enter(ip)
            try:
                with trio.move_on_at(deadline):
                    if isinstance(stream, trio.SSLStream) and not await _tls_handshake(stream):
                        return
                    if refusal is not None:
                        await send_response(stream, refusal)
                        return
                    routed = await self._route(stream)
            finally:
                self._handshakes.leave(ip, refusal)
            if routed is None:
                return
            route, admitted, received = routed
            slot = _Slot(self)
            access = route.access
            pool = route.pool
            assert route.backend is not None  # set before the listeners open, and before update_routes serves it
            backend = route.backend
            leased = None
            try:
                if pool is not None and admitted.kafka_login is not None:
                    with trio.move_on_at(deadline):
                        leased = await pool.lease(admitted.principal.name, admitted.kafka_login)
                        if leased is None:
                            refusal = refuse_no_room(route.uri, _peer(stream), route.uri, admitted.principal.name)
                            self._handshakes_refused[refusal.status] += 1
                            await send_response(stream, refusal)
                    if leased is None:
                        return
                    backend = leased
                async with trio.open_nursery() as nursery:
                    replay = ReplayStream(stream, received)
                    request = None
                    with trio.move_on_at(deadline):
                        request = await wrap_server_stream(
                            nursery,
                            replay,
                            message_queue_size=WS_MESSAGE_QUEUE_SIZE,
                            max_message_size=self.config.server.max_message_size,
                            receive_buffer_size=RECEIVE_BYTES,
                        )
                    if request is not None:
                        await self._serve_request(request, replay, route, slot, admitted, backend, _peer(stream))
                    nursery.cancel_scope.cancel()  # trio-websocket's reader task
            finally:
                if leased is not None:
                    assert pool is not None
                    pool.release(leased)
                slot.release()
                access.closed(admitted.principal)  # counted as open since admit_client admitted it
        except Exception as exc:
            if not client_went_away(exc):
                log.exception("unexpected error while serving a connection")
        finally:
            with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
                await stream.aclose()

    def _families(self) -> list[Family | Histogram]:
        """The Prometheus metrics: :meth:`statistics` now, family by family (built at each scrape)."""
        stats = self.statistics()
        families: list[Family | Histogram] = [
            Family.single("sessions_open", "WebSocket sessions open now", "gauge", stats.sessions_open),
            Family.single("sessions_opened", "WebSocket sessions opened since start", "counter", stats.sessions_total),
            Family.single(
                "sessions_rejected",
                "upgrades refused because max_sessions were open",
                "counter",
                stats.sessions_rejected,
            ),
            Family.single("commands", "commands received (binary frames)", "counter", stats.commands_total),
            Family.single("command_errors", "error responses sent", "counter", stats.errors_total),
            Family.single(
                "text_frames", "text frames received (skipped, as APISIX does)", "counter", stats.text_frames_total
            ),
            Family.single("commands_queued", "commands waiting for a session worker", "gauge", stats.commands_queued),
            Family.single(
                "commands_in_flight", "commands a session worker is carrying out", "gauge", stats.commands_in_flight
            ),
            Family.single(
                "kafka_threads_busy", "threads calling Kafka now (of kafka_threads)", "gauge", stats.kafka_threads_busy
            ),
            Family.single(
                "ready", "1 when /readyz (nothing excluded) answers 200", "gauge", float(self.readiness.ready)
            ),
            Family.single("frames_in", "WebSocket messages received", "counter", stats.frames_in),
            Family.single("bytes_in", "payload bytes of the WebSocket messages received", "counter", stats.bytes_in),
            Family.single("frames_out", "WebSocket messages sent", "counter", stats.frames_out),
            Family.single("bytes_out", "payload bytes of the WebSocket messages sent", "counter", stats.bytes_out),
            _labelled("sessions_closed", "sessions closed, by WebSocket close code", "code", stats.sessions_closed),
            _labelled(
                "handshakes_refused",
                "upgrades refused by the access checks (401, 403, 429) or for want of a Kafka login place (503)",
                "status",
                stats.handshakes_refused,
            ),
            _labelled("commands_by_kind", "commands received, by kind", "kind", stats.commands_by_kind),
            _labelled(
                "commands_refused",
                "commands refused by the principal's rights (60, 61) or quotas (62), by error code",
                "code",
                stats.commands_refused,
            ),
            Family(
                "command_results",
                "commands answered, by kind and error code (code 0, result OK: not an error response)",
                "counter",
                ("kind", "code", "result"),
                tuple(
                    ((kind, str(int(code)), _code_name(code)), float(n))
                    for kind, codes in sorted(stats.command_results.items())
                    for code, n in sorted(codes.items())
                ),
            ),
        ]
        upstreams = sorted(stats.upstreams.items())
        for field, (help, kind) in _UPSTREAM_METRICS.items():
            samples = tuple(
                (tuple(key.split(" as ", 1)) if " as " in key else (key, ""), float(getattr(up, field)))
                for key, up in upstreams
            )
            families.append(Family(f"upstream_{field}", help, kind, ("route", "principal"), samples))
        # The streams by topic: one series per route, principal and topic, never per session or stream.
        by_topic = [
            ((*(key.split(" as ", 1) if " as " in key else (key, "")), topic), figures)
            for key, up in upstreams
            for topic, figures in sorted(up.topics.items())
        ]
        for field, name, help in (
            ("streams", "streams", "push streams reading the topic"),
            ("streams_starved", "streams_starved", "push streams on the topic behind the log end with no credit left"),
            ("taps", "stream_taps", "partitions of the topic fed to push streams"),
            ("taps_starved", "stream_taps_starved", "of those, partitions behind the log end with no credit left"),
            ("lag", "stream_lag", "records push streams are behind the topic's log end, summed over their partitions"),
            ("lag_max", "stream_lag_max", "records the push stream partition furthest behind the log end lags by"),
        ):
            samples = tuple((labels, float(getattr(figures, field))) for labels, figures in by_topic)
            families.append(Family(f"upstream_topic_{name}", help, "gauge", ("route", "principal", "topic"), samples))
        families.append(
            Histogram(
                "command_seconds",
                "seconds from a command's receipt to its answer being written, by kind (commands a worker answers)",
                ("kind",),
                stats.latency_buckets,
                tuple(((kind,), counts, total) for kind, (counts, total) in sorted(stats.latency.items())),
            )
        )
        return families

    async def _serve_ops(self, stream: trio.SocketStream) -> None:
        """One connection to the ops listener: one request answered (metrics or a probe), then closed."""
        try:
            with trio.move_on_after(self.config.server.handshake_timeout) as deadline:
                reader = HeadReader(MAX_REQUEST_HEAD)
                head = await read_head(stream, reader)
                decision: Respond | Upgrade
                if isinstance(head, Respond):
                    decision = head
                elif head.path == "/metrics":
                    decision = await self._scrape(deadline)
                elif head.path.startswith(ADMIN_PREFIX):
                    decision = await self._admin_request(stream, head, reader, deadline)
                else:
                    decision = self._ops_router.decide(head)
                if isinstance(decision, Upgrade):  # no WebSocket route lives here
                    decision = Respond(404, b"no WebSocket routes on the ops port\n")
                await send_response(stream, decision)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away
        except Exception:
            log.exception("unexpected error while serving the ops port")
        finally:
            with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
                await stream.aclose()

    async def _admin_request(
        self, stream: trio.SocketStream, head: RequestHead, reader: HeadReader, deadline: trio.CancelScope
    ) -> Respond:
        """An admin API request: its body read (bounded), then answered; 404 when no admin key is configured.

        The body is read within the request's ``deadline`` (``handshake_timeout``); the change then gets
        :attr:`admin_timeout` (a store write is a Kafka round trip), and an answer of 503 if it runs out.
        """
        if self._admin is None:
            return Respond(404, b"no admin API: [server] admin_keys is empty\n")
        body = await read_body(stream, BodyReader(reader, ADMIN_MAX_BODY))
        if isinstance(body, Respond):
            return body
        limit = self.admin_timeout
        deadline.deadline = trio.current_time() + limit + CLOSE_TIMEOUT  # then the answer has time to go out
        answer: Answer | None = None
        with trio.move_on_after(limit):
            answer = await self._admin.handle(head.method, head.path, head.headers, body)
        if answer is None:
            answer = unfinished(limit)
        # A change that overran its limit (a thread is not cancellable) still gets time to send its answer.
        deadline.deadline = max(deadline.deadline, trio.current_time() + CLOSE_TIMEOUT)
        if answer.status == 401:
            audit.warning(
                "admin request refused (401) from %s: %s %s",
                _peer(stream),
                head.method,
                head.path,
                extra={"event": "admin_refused", "peer": _peer(stream)},
            )
        elif head.method != "GET":
            audit.info(
                "admin %s %s from %s: %d",
                head.method,
                head.path,
                _peer(stream),
                answer.status,
                extra={"event": "admin_change", "peer": _peer(stream), "status": answer.status},
            )
        return _respond(answer)

    async def _scrape(self, deadline: trio.CancelScope) -> Respond:
        """``GET /metrics``: the families taken here, on the loop; rendered in a thread (one at a time).

        A scrape that cannot get the thread before its request's ``deadline`` (less the time to send
        an answer) gets 503 rather than a connection closed without one.
        """
        families = self._metrics.snapshot()
        answer: Answer | None = None
        with trio.move_on_at(deadline.deadline - CLOSE_TIMEOUT):
            answer = await trio.to_thread.run_sync(self._metrics.respond, families, limiter=self._scrape_threads)
        if answer is None:
            return Respond(503, b"another scrape is still being rendered; try again\n")
        return _respond(answer)

    @property
    def admin_timeout(self) -> float:
        """Seconds an admin request has for its change: ``handshake_timeout``, and with a route store its
        write (at most twice the store's ``request_timeout``: the producer's wait for metadata, then its ack)."""
        server = self.config.server
        if server.route_store is None:
            return server.handshake_timeout
        return server.handshake_timeout + 2 * store_connection(server.route_store).request_timeout

    async def _admin_key(self, key: str) -> bool:
        """Whether ``key`` is one of ``[server] admin_keys`` (a scrypt, in the handshake threads)."""
        assert self._admin_keys is not None
        keys = self._admin_keys
        return await trio.to_thread.run_sync(lambda: keys.principal(key) is not None, limiter=self._handshake_threads)

    async def _check_readiness(self) -> None:
        """Every ``ready_check_interval``: does some broker of each route answer (TCP)? What /readyz reports."""
        limiter = trio.CapacityLimiter(1)  # one probe at a time: they are only a few sockets
        while True:
            for route in list(self.config.routes):
                failure = await trio.to_thread.run_sync(partial(diagnose, route, tcp_only=True), limiter=limiter)
                if route.uri in self.readiness.problems:  # not deleted meanwhile
                    self.readiness.checked(route.uri, failure.reason if failure is not None else None)
            await trio.sleep(self.config.server.ready_check_interval)

    async def _route(self, stream: trio.abc.Stream) -> tuple[_Route, Admitted, bytes] | None:
        """Read the request head and answer it, unless it is an admitted upgrade: then it, who, and the bytes read."""
        reader = HeadReader(MAX_REQUEST_HEAD)
        head = await read_head(stream, reader)
        decision = self._router.decide(head) if isinstance(head, RequestHead) else head
        if isinstance(decision, Upgrade):
            assert isinstance(head, RequestHead)
            refusal = admit(
                shutting_down=self._shutting_down,
                sessions=self._admitted,
                max_sessions=self.config.server.max_sessions,
            )
            if refusal is None:
                route = self._routes[decision.uri]
                client = await admit_client(route.access, head, _peer(stream), self._handshake_threads, route.logins)
                if isinstance(client, Admitted):
                    return route, client, bytes(reader.received)
                refusal = client
                self._handshakes_refused[refusal.status] += 1
            elif not self._shutting_down:
                self._sessions_rejected += 1
            decision = refusal
        await send_response(stream, decision)
        return None

    async def _serve_request(
        self,
        request: WebSocketRequest,
        stream: ReplayStream,
        route: _Route,
        slot: _Slot,
        admitted: Admitted,
        backend: KafkaUpstream | Backend,
        peer: str,
    ) -> None:
        if self._shutting_down or route.retired:  # began during the handshake
            await request.reject(SHUTTING_DOWN.status, body=SHUTTING_DOWN.body)
            return
        uri = route.uri
        # The first subprotocol offered besides a bearer token: a token is never echoed (PROTOCOL.md 5.6).
        subprotocol = admitted.subprotocols[0] if admitted.subprotocols else None
        ws = await request.accept(subprotocol=subprotocol)
        stream.bind(ws)
        access = route.access
        principal = admitted.principal
        session_access = access.session_access(principal, trio.current_time)
        session = Session(
            ws,
            backend,
            self._limits,
            route=uri,
            writer=stream,
            stream_limits=route.stream_limits,
            produce_limit=route.produce_limit,
            access=None if access.open else session_access,
            consume=session_access.consume_wait if access.paces_consumers else None,
            principal=principal.name,
            expires_at=principal.expires_at,
            reauthenticate=None if access.open else partial(self._reauthenticate, access, session_access),
            tally=self._tally,
        )
        self._sessions[session] = ws
        route.sessions[session] = ws
        self._session_info[session] = (uri, principal.name, peer, trio.current_time())
        self._sessions_total += 1
        fields = {"session": session.id, "route": uri, "principal": principal.name, "peer": peer}
        log.info(
            "session %d opened on %s from %s as %s",
            session.id,
            uri,
            peer,
            principal.name,
            extra={"event": "session_opened", **fields},
        )
        ending = self._ending_reason(route)
        if ending is not None:
            # Shutdown or a route change began during the accept, after its drain looked at the sessions.
            session.drain(CLOSE_GOING_AWAY, ending, self.config.server.grace_period)
        opened = trio.current_time()
        try:
            await session.run()
        finally:
            with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
                await ws.aclose()
            # An int, not wsproto's CloseReason: an IntEnum's str() is its name on Python 3.10.
            code = int(ws.closed.code) if ws.closed is not None else CLOSE_ABNORMAL
            self._closed_by_code[code] += 1
            counters = session.counters
            duration = round(trio.current_time() - opened, 3)
            log.info(
                "session %d closed (%d) after %.1fs: %d commands, %d errors, %d bytes in, %d bytes out",
                session.id,
                code,
                duration,
                counters.commands,
                counters.errors,
                counters.bytes_in,
                counters.bytes_out,
                extra={
                    "event": "session_closed",
                    **fields,
                    "close_code": int(code),
                    "duration": duration,
                    "commands": counters.commands,
                    "errors": counters.errors,
                    "bytes_in": counters.bytes_in,
                    "bytes_out": counters.bytes_out,
                },
            )
            slot.release()  # with the session gone from statistics(), its slot is free
            del self._sessions[session]
            del route.sessions[session]
            del self._session_info[session]
            self._sessions_changed.set()
            self._sessions_changed = trio.Event()
            for field in ("commands", "errors", "text_frames"):
                setattr(
                    self._closed_counters,
                    field,
                    getattr(self._closed_counters, field) + getattr(session.counters, field),
                )

    async def _reauthenticate(self, access: RouteAccess, session: SessionAccess, token: str) -> float | None:
        """A session's fresh credential (CmdAuth): the same principal, still admitted; its rights replace the old.

        Checked like a handshake's, in the handshake threads, within ``handshake_timeout``.
        Returns the new expiry; raises TOKEN_REFUSED with the reason (never the token).
        """
        fresh = None
        with trio.move_on_after(self.config.server.handshake_timeout):
            try:
                fresh = await trio.to_thread.run_sync(
                    access.authenticate, Credential(token, "command"), limiter=self._handshake_threads
                )
            except Unauthorized as exc:
                raise CommandFailed(ErrorCode.TOKEN_REFUSED, f"token refused: {exc}") from None
        if fresh is None:
            raise CommandFailed(
                ErrorCode.TOKEN_REFUSED, "token refused: it could not be checked in time; send it again"
            )
        if fresh.name != session.principal.name:
            raise CommandFailed(ErrorCode.TOKEN_REFUSED, "token refused: it names another principal")
        if not access.admits(fresh):
            raise CommandFailed(ErrorCode.TOKEN_REFUSED, "token refused: not allowed on this route")
        session.principal = fresh
        return fresh.expires_at

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
                self._nursery = nursery
                self._backend_factory = backend_factory
                for route in self._routes.values():
                    await nursery.start(self._run_route, route)
                if self._store is not None:
                    # Serve what the fleet's store holds before taking clients; a store that cannot be read
                    # soon leaves the file's routes served meanwhile (it is read as soon as it can be).
                    caught_up = trio.Event()
                    nursery.start_soon(self._store.run, self._apply_store, caught_up)
                    with trio.move_on_after(2 * server.handshake_timeout):
                        await caught_up.wait()
                    if not caught_up.is_set():
                        log.warning("serving the file's routes until the route store can be read")
                if server.tls:
                    self._tls = _ListenerTls(_listener_context(server))
                self._listeners = await trio.open_tcp_listeners(server.port, host=server.host)
                await nursery.start(trio.serve_listeners, self._serve_connection, self._serving())
                if server.ops_port is not None:
                    self._ops_listeners = await trio.open_tcp_listeners(server.ops_port, host=server.ops_host)
                    await nursery.start(trio.serve_listeners, self._serve_ops, self._ops_listeners)
                nursery.start_soon(self._check_readiness)
                log.info(
                    "kafka-ws-trio listening on %s (routes: %s)",
                    self.url,
                    ", ".join(r.uri for r in self.config.routes),
                    extra={"event": LISTENING_EVENT},
                )
                task_status.started(self)

    async def _run_route(self, route: _Route, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """A route's Kafka side (its upstream, and its pool of Kafka logins), until the route is retired."""
        with route.scope:
            async with trio.open_nursery() as nursery:
                config = route.config
                if self._backend_factory is not None:
                    route.backend = self._backend_factory(config, self._limiter)
                else:
                    upstream = KafkaUpstream(config, self._limiter, self._members)
                    await nursery.start(upstream.run)
                    route.backend = upstream
                    if config.kafka_credentials is not None:
                        pool = IdentityPool(
                            config, self._limiter, self._members, config.kafka_credentials.max_identities
                        )
                        await nursery.start(pool.run)
                        route.pool = pool
                task_status.started()
                await trio.sleep_forever()

    async def update_routes(self, routes: Sequence[RouteConfig]) -> RouteChanges:
        """Serve ``routes`` from now on, without a restart.

        A route whose uri is new starts serving; one whose uri is gone, or whose
        settings differ in any way, is retired: its sessions are closed with 1001
        (``route deleted`` or ``route changed``; clients reconnect, to the new
        settings), and its Kafka clients are closed once they are gone, after at
        most ``grace_period``. Sessions on routes that did not change are not
        touched. New sessions use the new routes as soon as this returns.

        Raises:
            ConfigError: ``routes`` is not a valid set of routes (none, or one uri twice).
            RuntimeError: the server is not running, or is shutting down.
        """
        config = attrs.evolve(self.config, routes=tuple(routes))
        if self._nursery is None or self._shutting_down:
            raise RuntimeError("the server is not running")
        new = {route.uri: route for route in config.routes}
        changes = RouteChanges(
            added=tuple(uri for uri in new if uri not in self._routes),
            changed=tuple(uri for uri in new if uri in self._routes and self._routes[uri].config != new[uri]),
            deleted=tuple(uri for uri in self._routes if uri not in new),
        )
        # Built first (they read key and JWKS files, and may fail), then started: until the swap
        # below nothing served has changed, and a failure or a cancellation leaves nothing behind.
        fresh = {uri: _Route(new[uri], config.server) for uri in (*changes.added, *changes.changed)}
        started: list[_Route] = []
        try:
            for route in fresh.values():
                await self._nursery.start(self._run_route, route)
                started.append(route)
        except BaseException:
            for route in started:
                route.scope.cancel()
            raise
        # The swap, with no checkpoint in it: a session is routed by the old routes or by the new ones.
        for uri, route in fresh.items():
            old = self._routes.get(uri)
            self._routes[uri] = route
            if old is not None:
                self._retire(old, "route changed")
        for uri in changes.deleted:
            self._retire(self._routes.pop(uri), "route deleted")
        self.config = config
        self._router = self._route_table()
        self.readiness.problems = {
            uri: None if uri in changes.added or uri in changes.changed else self.readiness.problems.get(uri)
            for uri in new
        }
        if changes:
            log.info(
                "routes updated: added %s, changed %s, deleted %s",
                ", ".join(changes.added) or "none",
                ", ".join(changes.changed) or "none",
                ", ".join(changes.deleted) or "none",
                extra={"event": "routes_updated"},
            )
        return changes

    def end_shutdown_delay(self) -> bool:
        """Go on to drain the sessions now if the shutdown is in its ``shutdown_delay``; whether it was."""
        if self._delaying is None:
            return False
        self._delaying.cancel()
        return True

    def _ending_reason(self, route: _Route) -> str | None:
        """Why a session on ``route`` is to be drained now (shutdown, or the route retired); None: it is not."""
        if self._shutting_down:
            return SHUTTING_DOWN_REASON
        return route.retired_reason if route.retired else None

    def _retire(self, route: _Route, reason: str) -> None:
        """Stop serving ``route``: close its sessions with 1001, then its Kafka side (in the background)."""
        route.retired = True
        route.retired_reason = reason
        assert self._nursery is not None
        self._nursery.start_soon(self._drain, route, reason)

    async def _drain(self, route: _Route, reason: str) -> None:
        """Close a retired route's sessions with 1001 once their commands in hand are answered, then its Kafka side."""
        await self._close_sessions(route.sessions, reason)
        route.scope.cancel()

    async def _close_sessions(self, sessions: Mapping[Session, WebSocketConnection], reason: str) -> None:
        """Drain ``sessions`` (a live view: it shrinks as they end) and close them with 1001, within ``grace_period``.

        Each takes no more commands, answers the ones it holds (pushes go on meanwhile), then
        closes; one still open when the grace period ends is closed at once.
        """
        grace = self.config.server.grace_period
        for session in list(sessions):
            session.drain(CLOSE_GOING_AWAY, reason, grace)
        with trio.move_on_after(grace):
            while sessions:
                await self._sessions_changed.wait()
        with trio.move_on_after(CLOSE_TIMEOUT):
            async with trio.open_nursery() as nursery:
                for ws in list(sessions.values()):
                    nursery.start_soon(ws.aclose, CLOSE_GOING_AWAY, reason)

    async def _shutdown(self) -> None:
        """Turn /readyz to 503, serve ``shutdown_delay`` more, then refuse new sessions, drain the open ones, stop.

        Draining is as for a retired route: commands in hand are answered, then the
        session is closed with 1001, all within ``grace_period``; whatever is left
        after that is cancelled.
        """
        self.readiness.shutting_down = True  # /readyz turns 503 at once: a balancer drains us first
        delay = self.config.server.shutdown_delay
        if delay > 0 and not self.readiness.ever_ready:
            log.info("shutting down: never ready, so no balancer sends clients here; no shutdown_delay")
        elif delay > 0:
            log.info(
                "shutting down: /readyz answers 503; serving %gs more (shutdown_delay; a second signal ends it), "
                "then closing %d sessions",
                delay,
                len(self._sessions),
                extra={"event": "shutdown_delay"},
            )
            self._delaying = trio.CancelScope(deadline=trio.current_time() + delay)
            try:
                with self._delaying:
                    await trio.sleep_forever()
            finally:
                self._delaying = None
        self._shutting_down = True
        await self._close_sessions(self._sessions, SHUTTING_DOWN_REASON)
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
        Cancelling the task is a graceful shutdown: ``/readyz`` answers 503,
        and after ``config.server.shutdown_delay`` seconds (0 by default; none
        for a proxy never found ready; :meth:`ProxyServer.end_shutdown_delay`
        ends it) new connections are refused and every open session is
        drained: it answers the commands it holds, then is sent close code
        1001 ("going away").
        After at most ``config.server.grace_period`` more seconds whatever is
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
