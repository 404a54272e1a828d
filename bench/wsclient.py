"""The client half of RFC 6455 that the load clients need, on asyncio: one class, :class:`WsClient`.

Why not wsproto (which trio-websocket brings along)? Measured on the bench
machine (``/tmp/wsbench.py``, Python 3.11): wsproto's ``Connection`` took
14.1 µs to receive one small binary message and send one, against 1.1 µs for
the few lines below. The fan-out at 1,000 sessions moves about 8,500 answers
and as many requests a second, so wsproto would cost the client processes
about an eighth of a core more, on a two-core machine where every client
cycle is taken from the proxy under test. The clients must stay small next to
the proxy, so the framing stays hand-written: the HTTP upgrade, frames parsed
in Python, requests masked with a zero key (masking is then a no-op the server
cannot tell from any other key), ping and close answered. Only the server's
side of the bench is the product; this client is a measuring instrument.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import os
from collections.abc import Callable
from typing import Final

from .plan import REQUEST_TIMEOUT

#: Client frames must be masked; a zero key makes masking a no-op, which the server cannot tell.
_ZERO_MASK: Final = b"\x00\x00\x00\x00"
_OP_CONTINUATION, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING = 0x0, 0x1, 0x2, 0x8, 0x9
_MAX_HANDSHAKE: Final = 65536


class WsClient(asyncio.Protocol):
    """The client half of RFC 6455 that the PubSub protocol uses: binary messages, close, ping.

    Received messages go to ``on_message`` when one is given, else to an inbox
    that :meth:`recv` reads.
    """

    def __init__(self, request: bytes, on_message: Callable[[bytes], None] | None = None) -> None:
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.on_message = on_message
        self.transport: asyncio.Transport | None = None
        self._request = request
        self._buffer = bytearray()
        self._open = False
        self._parts: list[bytes] = []
        self._close_sent = False
        self._inbox: collections.deque[bytes] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None

    @classmethod
    async def connect(
        cls, host: str, port: int, path: str, on_message: Callable[[bytes], None] | None = None
    ) -> WsClient:
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        client = cls(request, on_message)
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(loop.create_connection(lambda: client, host, port), REQUEST_TIMEOUT)
        try:
            await asyncio.wait_for(asyncio.shield(client.opened), REQUEST_TIMEOUT)
        except BaseException:
            client.abort()
            raise
        return client

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport subclass
        transport.write(self._request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("connection closed during the handshake"))
        if not self.lost.done():
            self.lost.set_result(None)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError("connection closed"))

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        if not self._open:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > _MAX_HANDSHAKE:
                    self._fail("handshake response too long")
                return
            status = bytes(buffer[: buffer.find(b"\r\n")])
            del buffer[: end + 4]
            if not status.startswith(b"HTTP/1.1 101"):
                self._fail(status.decode(errors="replace"))
                return
            self._open = True
            self.opened.set_result(None)
        self._read_frames()

    # ------------------------------------------------------------------------ frames

    def _read_frames(self) -> None:
        buffer = self._buffer
        while True:
            available = len(buffer)
            if available < 2:
                return
            second = buffer[1]
            length = second & 0x7F
            head = 2
            if length == 126:
                if available < 4:
                    return
                length = int.from_bytes(buffer[2:4], "big")
                head = 4
            elif length == 127:
                if available < 10:
                    return
                length = int.from_bytes(buffer[2:10], "big")
                head = 10
            if second & 0x80:
                self._fail("the server masked a frame")
                return
            if available < head + length:
                return
            first = buffer[0]
            with memoryview(buffer) as view:
                payload = bytes(view[head : head + length])
            del buffer[: head + length]
            opcode = first & 0x0F
            if opcode in (_OP_BINARY, _OP_TEXT, _OP_CONTINUATION):
                if not first & 0x80:
                    self._parts.append(payload)
                    continue
                if self._parts:
                    self._parts.append(payload)
                    payload = b"".join(self._parts)
                    self._parts.clear()
                self._deliver(payload)
            elif opcode == _OP_CLOSE:
                if not self._close_sent:
                    self._send_frame(0x80 | _OP_CLOSE, payload[:2])
                    self._close_sent = True
                if self.transport is not None:
                    self.transport.close()
                return
            elif opcode == _OP_PING:
                self._send_frame(0x8A, payload)

    def _deliver(self, payload: bytes) -> None:
        if self.on_message is not None:
            self.on_message(payload)
            return
        self._inbox.append(payload)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _send_frame(self, first: int, payload: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        size = len(payload)
        if size < 126:
            head = bytes((first, 0x80 | size))
        elif size < 65536:
            head = bytes((first, 0xFE)) + size.to_bytes(2, "big")
        else:
            head = bytes((first, 0xFF)) + size.to_bytes(8, "big")
        self.transport.write(head + _ZERO_MASK + payload)

    def _fail(self, reason: str) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(reason))
        self.abort()

    # ----------------------------------------------------------------------- public

    def send(self, payload: bytes) -> None:
        """Send one binary message."""
        self._send_frame(0x80 | _OP_BINARY, payload)

    async def recv(self) -> bytes:
        """The next message (only when no ``on_message`` was given)."""
        if not self._inbox:
            if self.lost.done():
                raise ConnectionError("connection closed")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(self._waiter, REQUEST_TIMEOUT)
            finally:
                self._waiter = None
        return self._inbox.popleft()

    async def close(self, timeout: float = 5.0) -> None:
        """Close politely: a close frame (1000), then wait for the server to end the connection."""
        if self.transport is None or self.transport.is_closing():
            return
        if not self._close_sent:
            self._send_frame(0x80 | _OP_CLOSE, (1000).to_bytes(2, "big"))
            self._close_sent = True
        try:
            await asyncio.wait_for(asyncio.shield(self.lost), timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            self.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.close()
