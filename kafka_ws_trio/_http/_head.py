"""The HTTP request head, read with h11, and the plain responses the front sends (sans-IO).

Bytes go in, a :class:`RequestHead` or a :class:`Respond` comes out: no
sockets and no Trio, so every outcome is tested synchronously. The bytes
read stay available (:attr:`HeadReader.received`): an upgrade is handed to
trio-websocket, which reads the same head again.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Final

import attrs
import h11

#: Bytes of request head read to route a connection; a longer head gets 431.
MAX_REQUEST_HEAD: Final = 16 * 1024

NOT_HTTP: Final = b"not an HTTP request\n"


@attrs.frozen
class Respond:
    """Answer with a plain-text HTTP response and close the connection."""

    status: int
    body: bytes
    #: Headers besides the plain-text ones (``WWW-Authenticate`` on a 401, ``Retry-After`` on a 429).
    headers: tuple[tuple[str, str], ...] = ()
    #: What the body is (the ops endpoints answer JSON and Prometheus' text format).
    content_type: str = "text/plain; charset=utf-8"


@attrs.frozen
class RequestHead:
    """The parts of a request head the router looks at; header names are lower case."""

    method: str
    target: str
    headers: tuple[tuple[bytes, bytes], ...]

    @property
    def path(self) -> str:
        """The target without its query string; routes match it whole."""
        return self.target.split("?", 1)[0]

    def tokens(self, name: bytes) -> frozenset[str]:
        """The comma-separated tokens of every ``name`` header, lower case (``Connection: keep-alive, Upgrade``)."""
        return frozenset(
            token.strip().lower()
            for header, value in self.headers
            if header == name
            for token in value.decode("latin-1").split(",")
        )

    @property
    def is_websocket_upgrade(self) -> bool:
        """A GET asking to switch to WebSocket (RFC 6455, 4.1); the handshake checks the rest."""
        return (
            self.method == "GET" and "websocket" in self.tokens(b"upgrade") and "upgrade" in self.tokens(b"connection")
        )


class HeadReader:
    """Reads one request head, at most ``max_size`` bytes, with h11.

    Feed it what the socket gives until it answers: a :class:`RequestHead`,
    or the :class:`Respond` for a request it cannot take (400 for what is
    not HTTP or ends early, 431 for a head over ``max_size``).
    """

    def __init__(self, max_size: int = MAX_REQUEST_HEAD) -> None:
        self._connection = h11.Connection(h11.SERVER, max_incomplete_event_size=max_size)
        self._max_size = max_size
        #: Bytes given to h11: never more than ``max_size`` (h11 itself bounds only a head still incomplete).
        self._parsed = 0
        #: Every byte fed so far (the head, and whatever followed it in the same reads).
        self.received = bytearray()

    def feed(self, data: bytes | bytearray) -> RequestHead | Respond | None:
        """Take the next bytes from the socket (``b""`` at its end); None: send more."""
        self.received += data
        room = self._max_size - self._parsed
        if data and room <= 0:
            return self._too_large()
        piece = bytes(data[:room])
        self._parsed += len(piece)
        self._connection.receive_data(piece)
        try:
            event = self._connection.next_event()
        except h11.RemoteProtocolError as exc:
            if exc.error_status_hint == HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE:
                return self._too_large()
            return Respond(HTTPStatus.BAD_REQUEST, NOT_HTTP)
        if event is h11.NEED_DATA:
            return self._too_large() if self._parsed >= self._max_size else None
        if isinstance(event, h11.Request):
            return RequestHead(
                method=event.method.decode("ascii"),
                target=event.target.decode("latin-1"),
                headers=tuple((name, value) for name, value in event.headers),
            )
        return Respond(HTTPStatus.BAD_REQUEST, NOT_HTTP)  # the peer closed before sending anything

    def _too_large(self) -> Respond:
        return Respond(
            HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, b"request head larger than %d bytes\n" % self._max_size
        )


def render(response: Respond) -> bytes:
    """The bytes of ``response``: status line, plain-text headers, body; the connection closes after it."""
    writer = h11.Connection(h11.SERVER)
    status = HTTPStatus(response.status)
    head = h11.Response(
        status_code=status.value,
        reason=status.phrase,
        headers=[
            ("Content-Type", response.content_type),
            ("Content-Length", str(len(response.body))),
            ("Connection", "close"),
            *response.headers,
        ],
    )
    data = writer.send(head)
    assert data is not None  # h11 returns None only for ConnectionClosed
    body = writer.send(h11.Data(data=response.body))
    end = writer.send(h11.EndOfMessage())
    return data + (body or b"") + (end or b"")


class BodyReader:
    """Reads the body that follows a head :class:`HeadReader` read, at most ``max_size`` bytes, with h11.

    Feed it what the socket gives (``b""`` at its end) until it answers: the
    body, or the :class:`Respond` refusing it (413 over ``max_size``, 400 for a
    body that is not HTTP or ends early).
    """

    def __init__(self, head: HeadReader, max_size: int) -> None:
        self._connection = head._connection
        self._max_size = max_size
        self._body = bytearray()
        #: What came after the part of the first reads the head reader gave h11.
        self._pending = bytes(head.received[head._parsed :])

    def feed(self, data: bytes | bytearray | None) -> bytes | Respond | None:
        """Take the next bytes from the socket (None: only what came with the head; ``b""``: its end).

        Returns None when it needs more.
        """
        if self._pending:
            self._connection.receive_data(self._pending)
            self._pending = b""
        if data is not None:
            self._connection.receive_data(bytes(data))
        while True:
            try:
                event = self._connection.next_event()
            except h11.RemoteProtocolError:
                return Respond(HTTPStatus.BAD_REQUEST, b"the request body is not HTTP\n")
            if event is h11.NEED_DATA:
                return None
            if isinstance(event, h11.Data):
                self._body += event.data
                if len(self._body) > self._max_size:
                    too_large = b"request body larger than %d bytes\n" % self._max_size
                    return Respond(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, too_large)
            elif isinstance(event, h11.EndOfMessage):
                return bytes(self._body)
            else:
                return Respond(HTTPStatus.BAD_REQUEST, b"the request body ended early\n")
