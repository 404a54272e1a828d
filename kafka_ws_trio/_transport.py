"""Every WebSocket byte the proxy writes itself, and the stream trio-websocket runs on.

trio-websocket (with wsproto) does the handshake, reads frames and writes
most of them. One path goes around it: a fetch answer that many tailing
sessions share is written by one task straight into each socket
(:meth:`ReplayStream.write_now`), and for that we frame the message
ourselves. That is only correct while no WebSocket extension is in use and
the closing handshake has not begun, so the stream checks both, by state:

* extensions: it reads the handshake response it carries (with h11) and
  writes directly only after a ``101`` that names no
  ``Sec-WebSocket-Extensions``;
* closing: it is bound to the connection and writes directly only while the
  connection's ``closed`` is None (trio-websocket sets it before it sends a
  close frame).

The stream also knows where frames end, since every write it carries is whole
frames (or the rest of one). When a write is cut short, the peer holds part of
a frame, and anything written after it would be read as that frame's payload.
A cancelled send (``send_timeout``, the session ending) keeps the frame's rest
pending: it goes out before anything written later, so a session that gives up
on a slow client can still send its close frame (1008) behind it, for a client
that reads again. A broken socket, or a close with a rest still pending (the
client never read it), aborts the TCP connection (an RST) instead.

Over TLS (``wss://``) there is no socket to write frames into: the bytes must
go through the ``trio.SSLStream``. Then :meth:`ReplayStream.write_now` always
declines (the session sends the normal way) and every write goes through the
stream whole. A write through it cut short, cancelled or failed, leaves an
unknown part of a frame sent (trio's SSLStream is broken from then on anyway),
so it aborts the connection too.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import sys
import weakref
from typing import Final, Protocol

import h11
import trio


def websocket_binary_header(size: int) -> bytes:
    """RFC 6455 header of one unmasked, unfragmented binary frame of ``size`` bytes (server to client).

    The same bytes wsproto writes when no extension is negotiated, so a frame
    can be written straight to the socket.
    """
    if size < 126:
        return bytes((0x82, size))
    if size < 0x10000:
        return bytes((0x82, 126)) + size.to_bytes(2, "big")
    return bytes((0x82, 127)) + size.to_bytes(8, "big")


#: The made-up request :func:`handshake_extensions` reads a response as the answer to.
_UPGRADE_REQUEST_HEADERS: Final = [("Host", "proxy"), ("Connection", "Upgrade"), ("Upgrade", "websocket")]


def handshake_extensions(response: bytes) -> list[bytes] | None:
    """The ``Sec-WebSocket-Extensions`` values of a ``101`` response head; None if ``response`` is not one.

    The handshake response is what decides which extensions are in use
    (RFC 6455, 9.1), so that is what the direct write path trusts. Parsed by
    h11 as a client would, after a made-up upgrade request (h11 reads a
    response only as the answer to one).
    """
    reader = h11.Connection(h11.CLIENT)
    reader.send(h11.Request(method="GET", target="/", headers=_UPGRADE_REQUEST_HEADERS))
    reader.send(h11.EndOfMessage())
    reader.receive_data(response)
    try:
        event = reader.next_event()
    except h11.RemoteProtocolError:
        return None
    if not isinstance(event, h11.InformationalResponse) or event.status_code != 101:
        return None
    return [value for name, value in event.headers if name == b"sec-websocket-extensions"]


#: Whether this platform can write a frame's parts to a socket in one call (not Windows).
_WRITEV: Final = hasattr(os, "writev")
#: SO_LINGER on, with a zero timeout: ``close()`` then resets the connection and drops unsent bytes.
_LINGER_RESET: Final = struct.pack("HH" if sys.platform == "win32" else "ii", 1, 0)
#: A send to a socket already closed raises these (as in trio's SocketStream).
_CLOSED_ERRNOS: Final = frozenset({errno.EBADF, errno.ENOTSOCK})


class ClosingState(Protocol):
    """What the stream reads of its WebSocket connection (trio-websocket's ``WebSocketConnection``)."""

    @property
    def closed(self) -> object:
        """None until the connection starts closing (set before the close frame is sent)."""
        ...


def _socket_under(stream: trio.abc.Stream) -> trio.socket.SocketType | None:
    """The TCP socket at the bottom of ``stream`` (a SocketStream, or TLS over one); None if there is none."""
    if isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    return stream.socket if isinstance(stream, trio.SocketStream) else None


class ReplayStream(trio.abc.Stream):
    """The stream trio-websocket runs on: replays the request head, writes without waiting, aborts cut frames.

    It runs on any ``trio.abc.Stream``; only a plain ``trio.SocketStream``
    gets the direct writes below (over TLS, say, :meth:`write_now` declines).
    It first gives back bytes already read from the socket (the request
    head, read to route the connection). It also lets a session write a
    whole frame straight into the socket's kernel buffer from any task,
    without a checkpoint (:meth:`write_now`): that is how one task delivers a
    shared response to every session tailing a partition. Whatever the kernel
    does not take at once stays pending and goes out before anything else
    written later, so frames never interleave. A cancelled write keeps its
    frame's rest pending the same way; a failed one, or a close with a rest
    still pending, aborts the connection (see the module's docstring).
    """

    __slots__ = (
        "_aborted",
        "_connection",
        "_extensions",
        "_handshake_seen",
        "_lock",
        "_pending",
        "_prefix",
        "_socket",
        "_stream",
        "_tcp",
    )

    def __init__(self, stream: trio.abc.Stream, prefix: bytes) -> None:
        self._stream = stream
        #: The socket frames are written into directly; None when ``stream`` is not a plain
        #: SocketStream (TLS): then every byte goes through ``stream``.
        self._socket = stream.socket if isinstance(stream, trio.SocketStream) else None
        #: The TCP socket under everything, which :meth:`abort` resets; None for a stream without one.
        self._tcp = self._socket if self._socket is not None else _socket_under(stream)
        self._prefix = prefix
        self._lock = trio.Lock()
        #: The rest of a frame :meth:`write_now` started: the peer holds its first part.
        self._pending = b""
        #: The first bytes written are the handshake response; None until it is seen.
        self._extensions: list[bytes] | None = None
        #: Without a socket of our own the response is not read: its extensions stay unknown,
        #: so direct writes stay off.
        self._handshake_seen = self._socket is None
        #: Weak: the connection holds this stream, and a cycle would keep every closed
        #: connection's objects alive until the cyclic collector runs (measured: +6 MiB
        #: RSS over 2,000 short sessions with ``tune_gc``).
        self._connection: weakref.ref[ClosingState] | None = None
        self._aborted = False

    def bind(self, connection: ClosingState) -> None:
        """Follow ``connection`` (once accepted): no direct write once it starts closing (or is gone)."""
        self._connection = weakref.ref(connection)

    @property
    def aborted(self) -> bool:
        """Whether the connection was reset (a write failed inside a frame, or it closed with a rest pending)."""
        return self._aborted

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._prefix:
            await trio.lowlevel.checkpoint()
            data, self._prefix = self._prefix, b""
            return data
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data`` (whole frames, or the handshake response) after what :meth:`write_now` left pending.

        Cancelled inside a frame, the frame's rest stays pending (sent before
        anything later; a frame not begun is dropped). Failed inside a frame,
        it aborts the connection: the peer must not read later bytes as that
        frame's rest.
        """
        # The lock is taken without a checkpoint when free (the common case);
        # the socket send below is the checkpoint.
        try:
            self._lock.acquire_nowait()
        except trio.WouldBlock:
            await self._lock.acquire()
        try:
            sock = self._socket
            if sock is None:
                await self._send_through(data)
                return
            if not self._handshake_seen:
                self._handshake_seen = True
                self._extensions = handshake_extensions(bytes(data))
            boundary = len(self._pending)  # where the pending frame ends and ``data`` begins
            out = memoryview(self._pending + bytes(data) if self._pending else data)
            self._pending = b""
            await self._send_whole(sock, out, boundary)
        finally:
            self._lock.release()

    async def _send_through(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data`` through the stream (TLS): all of it, or the connection is aborted."""
        if self._aborted:
            await trio.lowlevel.checkpoint()
            raise trio.ClosedResourceError("the connection was closed (aborted)")
        if not data:  # a flush: write_now never leaves anything pending here
            await trio.lowlevel.checkpoint()
            return
        try:
            await self._stream.send_all(data)
        except BaseException:
            # Cancelled or failed, the stream cannot say how much of the frame went out.
            self.abort()
            raise

    async def _send_whole(self, sock: trio.socket.SocketType, out: memoryview, boundary: int) -> None:
        """Send all of ``out``, whose frames end at ``boundary`` and at its end; abort if cut elsewhere."""
        if self._aborted or sock.fileno() < 0:
            await trio.lowlevel.checkpoint()
            raise trio.ClosedResourceError("the connection was closed" + (" (aborted)" if self._aborted else ""))
        if not out:
            await trio.lowlevel.checkpoint()
            return
        sent = 0
        try:
            while sent < len(out):
                sent += await sock.send(out[sent:])
        except OSError as exc:
            self._abort_unless_at(sent, boundary, len(out))
            if exc.errno in _CLOSED_ERRNOS:
                raise trio.ClosedResourceError("the connection was closed") from None
            raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc
        except BaseException:  # cancelled (send_timeout, the session ending)
            self._keep_rest(out, sent, boundary)
            raise

    def _keep_rest(self, out: memoryview, sent: int, boundary: int) -> None:
        """After a cancelled send: keep the rest of the frame the peer has begun, drop what was not begun."""
        if sent < boundary:
            self._pending = bytes(out[sent:boundary])
        elif boundary < sent < len(out):
            self._pending = bytes(out[sent:])

    def _abort_unless_at(self, sent: int, boundary: int, size: int) -> None:
        if sent not in (boundary, size):
            self.abort()

    def abort(self) -> None:
        """Reset the TCP connection at once: unsent bytes are dropped and nothing more is written."""
        self._aborted = True
        self._pending = b""
        tcp = self._tcp
        if tcp is None or tcp.fileno() < 0:
            return
        try:
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        except OSError:
            pass  # closed in order after all; still nothing more is written
        tcp.close()  # wakes a task blocked on the socket with ClosedResourceError

    def write_now(self, head: bytes, body: bytes) -> bool | None:
        """Write the binary message ``head + body`` into the socket as one frame, without waiting.

        Returns None when nothing was written because framing it ourselves is
        not known to be safe (no ``101`` seen, an extension in use, the
        connection closing), a send is in progress, the socket is closed
        or broken, or there is no socket to write into (TLS): send it the
        normal way instead. True when all of it went
        out; False when part of it is pending and the caller must get
        :meth:`flush` called.
        """
        if not self._direct_writes_allowed():
            return None
        sock = self._socket
        fd = sock.fileno() if sock is not None else -1  # (None never gets here: its extensions stay unknown)
        if fd < 0:
            return None
        buffers = (websocket_binary_header(len(head) + len(body)), head, body)
        try:
            written = os.writev(fd, buffers)
        except BlockingIOError:
            written = 0
        except OSError:
            return None
        if written == sum(map(len, buffers)):
            return True
        self._pending = b"".join(buffers)[written:]
        return False

    def _direct_writes_allowed(self) -> bool:
        connection = self._connection() if self._connection is not None else None
        return (
            _WRITEV
            and self._extensions == []
            and connection is not None
            and connection.closed is None
            and not self._lock.locked()
            and not self._pending
            and not self._aborted
        )

    async def flush(self) -> None:
        """Send what :meth:`write_now` left pending."""
        await self.send_all(b"")

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        """Close the connection; with part of a frame still pending, abort it instead."""
        if self._pending:
            self.abort()
        await self._stream.aclose()

    def __repr__(self) -> str:
        # trio-websocket names the peer of a stream that is not its own kind by this (``ws.remote``).
        try:
            peer = self._tcp.getpeername() if self._tcp is not None else None
        except OSError:
            peer = None  # closed, or reset
        where = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "?"
        over = "" if self._socket is not None else f", through {type(self._stream).__name__}"
        return f"ReplayStream({where}{over})"
