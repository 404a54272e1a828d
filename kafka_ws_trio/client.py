"""A Trio client for the PubSub protocol (ours, and APISIX's).

Example::

    from kafka_ws_trio.client import open_client

    async with open_client("ws://127.0.0.1:9080/kafka") as client:
        offset = await client.list_offset("demo", 0, EARLIEST)
        records = await client.fetch("demo", 0, offset)

Requests are pipelined: any number of tasks may call methods at once, and each
waits for the response carrying its own ``sequence``.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import re
import socket
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Final, NoReturn, TypeVar, cast

import attrs
import trio
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection, wrap_client_stream

from ._pb import pubsub_pb2 as pb
from ._proto import (
    ErrorAnswer,
    FetchAnswer,
    MalformedResponse,
    OffsetAnswer,
    Pong,
    Record,
    Response,
    decode_response,
    encode_fetch_request,
    encode_list_offset_request,
    encode_ping_request,
)

__all__ = [
    "EARLIEST",
    "LATEST",
    "ConnectFailed",
    "PubSubClient",
    "PubSubError",
    "Record",
    "open_client",
]

_R = TypeVar("_R", Pong, OffsetAnswer, FetchAnswer)

#: ``timestamp`` values of ListOffset.
LATEST: Final = -1
EARLIEST: Final = -2
#: Default bound on one response, matching the proxy's default.
DEFAULT_MAX_MESSAGE_SIZE: Final = 1_048_576
#: Seconds a request waits for its response by default.
DEFAULT_REQUEST_TIMEOUT: Final = 30.0
#: Seconds for the opening handshake.
DEFAULT_CONNECT_TIMEOUT: Final = 10.0
#: Seconds the closing handshake may take when the block is left (trio-websocket's own default).
DISCONNECT_TIMEOUT: Final = 60.0
#: Bytes of a non-HTTP answer quoted in a :class:`ConnectFailed` reason.
QUOTED_ANSWER_BYTES: Final = 24
#: Bytes of the answer's head kept to read its status line; h11 bounds the head itself.
ANSWER_HEAD_BYTES: Final = 16_384


class PubSubError(Exception):
    """The proxy answered with an error response."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"PubSubError({self.code}, {self.message!r})"


class ConnectFailed(HandshakeError):
    """No WebSocket connection could be opened; ``reason`` says what was found instead.

    A :class:`trio_websocket.HandshakeError`, as before, so existing handlers
    still catch it. (An HTTP answer other than ``101`` with a body is still
    trio-websocket's ``ConnectionRejected``, which carries the status and body.)
    """

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"could not connect to the proxy at {address}: {reason}")
        self.address = address
        self.reason = reason


#: An answer as it arrived, with its decoded event (frames that do not decode are dropped).
_Answer = tuple[bytes, Response]


class PubSubClient:
    """A connected client; make one with :func:`open_client`.

    Frames are built and read by the same sans-IO codec the proxy uses
    (:mod:`kafka_ws_trio._proto`); this class only matches answers to
    requests by their ``sequence``.
    """

    def __init__(self, ws: WebSocketConnection, request_timeout: float) -> None:
        self._ws = ws
        self._timeout = request_timeout
        self._sequences = itertools.count(1)
        self._waiting: dict[int, trio.MemorySendChannel[_Answer]] = {}
        self._closed: ConnectionClosed | None = None

    @property
    def websocket(self) -> WebSocketConnection:
        """The underlying trio-websocket connection."""
        return self._ws

    async def _read_responses(self) -> None:
        try:
            while True:
                frame = await self._ws.get_message()
                if isinstance(frame, str):
                    continue
                response = decode_response(frame)
                if isinstance(response, MalformedResponse):
                    continue  # no sequence to match it to
                waiter = self._waiting.pop(response.sequence, None)
                if waiter is not None:
                    # The request may have been cancelled (its channel closed) just now.
                    with contextlib.suppress(trio.BrokenResourceError):
                        waiter.send_nowait((frame, response))
        except ConnectionClosed as exc:
            self._closed = exc
        finally:
            for waiter in self._waiting.values():
                waiter.close()
            self._waiting.clear()

    async def _exchange(self, build: Callable[[int], bytes]) -> _Answer:
        """Send the frame ``build(sequence)`` makes and wait for the answer carrying that sequence."""
        sequence = next(self._sequences)
        send, receive = trio.open_memory_channel[_Answer](1)
        if self._closed is not None:
            raise self._closed
        self._waiting[sequence] = send
        try:
            with trio.fail_after(self._timeout):
                await self._ws.send_message(build(sequence))
                async with receive:
                    try:
                        return await receive.receive()
                    except trio.EndOfChannel:
                        raise self._closed or ConnectionClosed(None) from None
        finally:
            self._waiting.pop(sequence, None)

    async def request(self, request: pb.PubSubReq) -> pb.PubSubResp:
        """Send ``request`` (its sequence is set here) and return the raw response.

        Raises:
            trio.TooSlowError: no response within the request timeout.
            ConnectionClosed: the connection closed before the response came.
        """

        def build(sequence: int) -> bytes:
            request.sequence = sequence
            return request.SerializeToString()

        frame, _ = await self._exchange(build)
        return pb.PubSubResp.FromString(frame)

    async def _answer(self, build: Callable[[int], bytes], expected: type[_R]) -> _R:
        _, response = await self._exchange(build)
        if isinstance(response, ErrorAnswer):
            raise PubSubError(response.code, response.message)
        if not isinstance(response, expected):
            raise PubSubError(
                0, f"unexpected response {type(response).__name__} to a request expecting {expected.__name__}"
            )
        return response

    async def ping(self, state: bytes = b"") -> bytes:
        """Round-trip ``state`` through the proxy; returns what came back."""
        return (await self._answer(lambda sequence: encode_ping_request(sequence, state), Pong)).state

    async def list_offset(self, topic: str, partition: int, timestamp: int = LATEST) -> int:
        """The offset for ``timestamp``: ``LATEST`` (-1), ``EARLIEST`` (-2) or milliseconds."""
        answer = await self._answer(
            lambda sequence: encode_list_offset_request(sequence, topic, partition, timestamp), OffsetAnswer
        )
        return answer.offset

    async def fetch(self, topic: str, partition: int, offset: int) -> list[Record]:
        """Records at or after ``offset``; an empty list at the log end."""
        answer = await self._answer(
            lambda sequence: encode_fetch_request(sequence, topic, partition, offset), FetchAnswer
        )
        return list(answer.records)

    async def tail(self, topic: str, partition: int, offset: int) -> AsyncIterator[Record]:
        """Yield records from ``offset`` on, forever (waiting at the log end)."""
        while True:
            for record in await self.fetch(topic, partition, offset):
                yield record
                offset = record.offset + 1


@attrs.frozen
class _Target:
    """Where a ``ws://`` or ``wss://`` URL points (read by trio-websocket's rules)."""

    host: str
    port: int
    resource: str
    tls: bool

    @classmethod
    def parse(cls, url: str) -> _Target:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("ws", "wss"):
            raise ValueError('WebSocket URL scheme must be "ws:" or "wss:"')
        if parts.hostname is None:
            raise ValueError("URL host must not be None")
        tls = parts.scheme == "wss"
        resource = (parts.path or "/") + (f"?{parts.query}" if "?" in url else "")
        return cls(parts.hostname, parts.port or (443 if tls else 80), resource, tls)

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def host_header(self) -> str:
        return self.address.rsplit(":", 1)[0] if self.port in (80, 443) else self.address


def _describe(error: BaseException) -> str:
    """An error's text, or its type's name when the text is empty (a reason is never blank)."""
    return str(error) or type(error).__name__


def _connect_failure(error: OSError, host: str) -> str:
    """Why the TCP connection failed. trio reports a refused connection as an OSError without
    an errno whose ``__cause__`` groups one error per address tried."""
    if isinstance(error, OSError) and error.errno is None:
        tried = getattr(error.__cause__, "exceptions", ())
        error = next((e for e in tried if isinstance(e, OSError) and e.errno is not None), error)
    if isinstance(error, socket.gaierror):
        return f"the name {host!r} does not resolve ({error.strerror or _describe(error)})"
    if error.errno == errno.ECONNREFUSED:
        return "nothing is listening there (connection refused); is the proxy running, and on that port?"
    return error.strerror or _describe(error)


def _tls_failure(error: BaseException) -> str:
    """Why the TLS handshake failed; the common cause is a proxy serving plain ``ws://``."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"its TLS certificate is not trusted ({error.verify_message})"
    text = str(error.args[1]) if isinstance(error, ssl.SSLError) and len(error.args) > 1 else str(error)
    text = re.sub(r"\s*\(_ssl\.c:\d+\)$", "", text) or type(error).__name__
    return f"TLS handshake failed ({text}); is the proxy serving plain ws://?"


class _AnswerWatch(trio.abc.Stream):
    """The client's stream: until a ``101`` arrives, it names what the server did instead.

    trio-websocket reads the answer to the upgrade request in its reader
    task. When the peer closes or resets the connection first, or answers
    with bytes that are not HTTP (a Kafka broker closes at once), that task
    just ends, and the handshake waits out the whole connect timeout before
    failing without a reason. Raising :class:`ConnectFailed` here, inside the
    reader task, fails the handshake at once, with the reason. Once the
    status line says ``101`` (or the handshake is given up), the stream only
    passes bytes through.
    """

    def __init__(self, stream: trio.abc.Stream, address: str) -> None:
        self._stream = stream
        self._address = address
        self._head = b""
        self._status_line: str | None = None
        self._watching = True

    def stop_watching(self) -> None:
        """Pass everything through from now on: the handshake has been given up (timed out or
        cancelled) and the stream is about to be closed under the reader, which must end quietly."""
        self._watching = False

    def _fail(self, reason: str) -> NoReturn:
        raise ConnectFailed(self._address, reason)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        try:
            await self._stream.send_all(data)
        except trio.BrokenResourceError as exc:
            if not self._watching:
                raise
            self._fail(f"the connection broke while sending the upgrade request ({_describe(exc.__cause__ or exc)})")

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        # The flag is read after the wait: the handshake may have been given up meanwhile.
        try:
            data = await self._stream.receive_some(max_bytes)
        except trio.BrokenResourceError as exc:
            if not self._watching:
                raise
            self._fail(self._ended(f"reset the connection ({_describe(exc.__cause__ or exc)})"))
        except trio.ClosedResourceError:
            if not self._watching:
                raise
            # Only trio-websocket closes the stream this early: wsproto refused the answer.
            self._fail(f"its answer to the upgrade request is not valid HTTP ({self._head[:QUOTED_ANSWER_BYTES]!r})")
        if self._watching:
            if not data:
                self._fail(self._ended("closed the connection"))
            self._read_head(bytes(data))
        return data

    def _ended(self, what: str) -> str:
        if not self._head:
            return f"not a WebSocket server (it {what} without an HTTP answer to the upgrade request)"
        if self._status_line is None:
            return f"it {what} in the middle of its answer ({self._head[:QUOTED_ANSWER_BYTES]!r})"
        return f"it answered {self._status_line!r} instead of switching to WebSocket, then {what}"

    def _read_head(self, data: bytes) -> None:
        if self._status_line is not None:
            return  # not a 101: wsproto reads the rest and rejects it
        self._head = (self._head + data)[:ANSWER_HEAD_BYTES]
        if not b"HTTP/".startswith(self._head[:5]):
            if self._head[:1] in (b"\x15", b"\x16") and self._head[1:2] == b"\x03":
                self._fail("it answered in TLS; use wss://")
            self._fail(f"not a WebSocket server (it answered {self._head[:QUOTED_ANSWER_BYTES]!r}, which is not HTTP)")
        end = self._head.find(b"\r\n")
        if end >= 0:
            self._status_line = self._head[:end].decode("latin-1")
            self._watching = self._status_line.split(maxsplit=2)[1:2] != ["101"]

    async def aclose(self) -> None:
        await self._stream.aclose()


async def _connect(
    nursery: trio.Nursery, target: _Target, *, max_message_size: int, connect_timeout: float
) -> WebSocketConnection:
    """Open the TCP (and TLS) connection and do the opening handshake; every failure is a ConnectFailed."""
    waiting_for = "the TCP connection was not accepted"
    try:
        with trio.fail_after(connect_timeout):
            try:
                tcp = await trio.open_tcp_stream(target.host, target.port)
            except OSError as exc:
                raise ConnectFailed(target.address, _connect_failure(exc, target.host)) from exc
            watched: _AnswerWatch | None = None
            try:
                stream: trio.abc.Stream = tcp
                if target.tls:
                    waiting_for = "the TLS handshake did not finish"
                    stream = trio.SSLStream(
                        tcp, ssl.create_default_context(), server_hostname=target.host, https_compatible=True
                    )
                    try:
                        await stream.do_handshake()
                    except trio.BrokenResourceError as exc:
                        raise ConnectFailed(target.address, _tls_failure(exc.__cause__ or exc)) from exc
                waiting_for = "no answer to the WebSocket upgrade request came"
                watched = _AnswerWatch(stream, target.address)
                # trio-websocket's annotation is narrower than what it uses: WebSocketConnection
                # takes any trio.abc.Stream (the server side runs on one, see _transport).
                return await wrap_client_stream(
                    nursery,
                    cast("trio.SocketStream", watched),
                    target.host_header,
                    target.resource,
                    max_message_size=max_message_size,
                )
            except BaseException:
                if watched is not None:
                    watched.stop_watching()
                await trio.aclose_forcefully(tcp)
                raise
    except trio.TooSlowError:
        raise ConnectFailed(target.address, f"{waiting_for} within {connect_timeout:g} s") from None


def _raise_sole(error: BaseException) -> NoReturn:
    """Raise the one error inside nested one-member exception groups (else ``error`` itself).

    The nursery in :func:`open_client` wraps whatever leaves its block; the
    caller gets its own exception back, as trio-websocket's
    ``open_websocket_url`` gave it, without the group as its context.
    """
    sole = error
    while isinstance(members := getattr(sole, "exceptions", None), tuple) and len(members) == 1:
        sole = members[0]
    context = sole.__context__
    try:
        raise sole
    finally:
        sole.__context__ = context


@asynccontextmanager
async def open_client(
    url: str,
    *,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
) -> AsyncIterator[PubSubClient]:
    """Connect to a proxy route such as ``ws://127.0.0.1:9080/kafka``.

    Raises :class:`ConnectFailed` naming what was found when no WebSocket
    connection can be opened (nothing listening, a name that does not
    resolve, a TLS or non-WebSocket server, no answer within
    ``connect_timeout``); trio-websocket's ``ConnectionRejected`` when the
    server answers with an HTTP error such as 404.

    Cancellation: leaving the block closes the connection; pending requests
    then fail with ``ConnectionClosed``.
    """
    target = _Target.parse(url)
    try:
        async with trio.open_nursery() as nursery:
            ws = await _connect(nursery, target, max_message_size=max_message_size, connect_timeout=connect_timeout)
            client = PubSubClient(ws, request_timeout)
            nursery.start_soon(client._read_responses)
            try:
                yield client
            finally:
                with trio.move_on_after(DISCONNECT_TIMEOUT):
                    await ws.aclose()
                nursery.cancel_scope.cancel()
    except BaseException as exc:
        _raise_sole(exc)
