"""What to do with a request head: a table of path → handler (sans-IO).

The WebSocket routes of the config are entries of the table today;
``/healthz``, ``/metrics`` and ``/admin`` will be entries too, each a
function of the request head. Admission (503) depends on the server's live
state, so it is a separate pure function the server calls with that state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Final, Protocol, TypeAlias

import attrs

from ._head import RequestHead, Respond


@attrs.frozen
class Upgrade:
    """Hand the connection to the WebSocket handshake, for route ``uri``."""

    uri: str


Decision: TypeAlias = Upgrade | Respond


class Handler(Protocol):
    """Decides about one request to its path."""

    def __call__(self, request: RequestHead) -> Decision: ...


#: Headers the WebSocket handshake (wsproto) reads as ASCII text, and the Host, which it reads as IDNA.
_TEXT_HEADERS: Final = frozenset(
    {b"connection", b"upgrade", b"sec-websocket-extensions", b"sec-websocket-protocol", b"sec-websocket-key"}
)


def unreadable_header(request: RequestHead) -> str | None:
    """The name of a header the WebSocket handshake could not read as text, or None.

    wsproto would raise on it inside trio-websocket's reader, which answers
    nothing; the endpoint answers 400 instead.
    """
    for name, value in request.headers:
        try:
            if name == b"host":
                value.decode("idna")
            elif name in _TEXT_HEADERS:
                value.decode("ascii")
        except UnicodeError:
            return name.decode("ascii", "replace")
    return None


@attrs.frozen
class WebSocketEndpoint:
    """A route of the config: WebSocket upgrades only; a plain request gets 400 (as APISIX answers)."""

    uri: str

    def __call__(self, request: RequestHead) -> Decision:
        if not request.is_websocket_upgrade:
            return Respond(HTTPStatus.BAD_REQUEST, b"this path takes WebSocket connections only\n")
        unreadable = unreadable_header(request)
        if unreadable is not None:
            return Respond(HTTPStatus.BAD_REQUEST, f"the {unreadable} header is not readable text\n".encode())
        return Upgrade(self.uri)


class Router:
    """Maps a request's path (without its query string) to its handler; no handler: 404."""

    def __init__(self, table: Mapping[str, Handler]) -> None:
        self._table = dict(table)

    @classmethod
    def for_routes(cls, uris: Iterable[str]) -> Router:
        """The router of a config: one WebSocket endpoint per route uri."""
        return cls({uri: WebSocketEndpoint(uri) for uri in uris})

    def decide(self, request: RequestHead) -> Decision:
        handler = self._table.get(request.path)
        if handler is None:
            return Respond(HTTPStatus.NOT_FOUND, f"no route for {request.path}\n".encode())
        return handler(request)


SHUTTING_DOWN: Final = Respond(HTTPStatus.SERVICE_UNAVAILABLE, b"server is shutting down\n")
TOO_MANY_SESSIONS: Final = Respond(HTTPStatus.SERVICE_UNAVAILABLE, b"too many sessions\n")


def admit(*, shutting_down: bool, sessions: int, max_sessions: int) -> Respond | None:
    """Whether one more WebSocket session may start: None, or the 503 that refuses it."""
    if shutting_down:
        return SHUTTING_DOWN
    if sessions >= max_sessions:
        return TOO_MANY_SESSIONS
    return None


TOO_MANY_HANDSHAKES: Final = Respond(HTTPStatus.SERVICE_UNAVAILABLE, b"too many connections in their handshake\n")
TOO_MANY_FROM_ADDRESS: Final = Respond(
    HTTPStatus.TOO_MANY_REQUESTS,
    b"too many connections in their handshake from this address\n",
    (("Retry-After", "1"),),
)


class HandshakeCount:
    """Connections in their handshake, all together and per IP address, each under its bound.

    A connection :meth:`enter`\\ s when it is accepted and :meth:`leave`\\ s when it
    is upgraded or answered; one over a bound is answered at once (503, or 429
    from an address with too many), without reading its request. Memory: one
    entry per address with a handshake under way.
    """

    def __init__(self, max_total: int, max_per_address: int) -> None:
        self.max_total = max_total
        self.max_per_address = max_per_address
        self.total = 0
        self.by_address: dict[str, int] = {}

    def enter(self, address: str) -> Respond | None:
        """Count a connection from ``address`` in its handshake; the refusal when over a bound (not counted then)."""
        if self.total >= self.max_total:
            return TOO_MANY_HANDSHAKES
        if self.by_address.get(address, 0) >= self.max_per_address:
            return TOO_MANY_FROM_ADDRESS
        self.total += 1
        self.by_address[address] = self.by_address.get(address, 0) + 1
        return None

    def leave(self, address: str, refusal: Respond | None) -> None:
        """The handshake of a connection :meth:`enter` answered ``refusal`` is over."""
        if refusal is not None:
            return
        self.total -= 1
        left = self.by_address[address] - 1
        if left:
            self.by_address[address] = left
        else:
            del self.by_address[address]
