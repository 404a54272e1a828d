"""Every WebSocket byte the proxy writes itself, and the stream trio-websocket runs on.

trio-websocket (with wsproto) does the handshake, reads frames and writes
most of them. One path goes around it: a fetch answer that many tailing
sessions share is written by one task straight into each socket
(:meth:`ReplayStream.write_now`), and for that we frame the message
ourselves. That is only correct while no WebSocket extension is negotiated
(the proxy offers none).
"""

from __future__ import annotations

import os
from typing import Final

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


#: Whether this platform can write a frame's parts to a socket in one call (not Windows).
_WRITEV: Final = hasattr(os, "writev")


class ReplayStream(trio.abc.Stream):
    """The stream trio-websocket runs on: replays the request head, and can write without waiting.

    It first gives back bytes already read from the socket (the request
    head, read to route the connection). It also lets a session write a
    whole frame straight into the socket's kernel buffer from any task,
    without a checkpoint (:meth:`write_now`): that is how one task delivers a
    shared response to every session tailing a partition. Whatever the kernel
    does not take at once stays pending and goes out before anything else
    written later, so frames never interleave.
    """

    def __init__(self, stream: trio.SocketStream, prefix: bytes) -> None:
        self._stream = stream
        self._prefix = prefix
        self._lock = trio.Lock()
        self._pending = b""
        self._close_sent = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._prefix:
            await trio.lowlevel.checkpoint()
            data, self._prefix = self._prefix, b""
            return data
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        # The lock is taken without a checkpoint when free (the common case);
        # the socket send below is the checkpoint.
        try:
            self._lock.acquire_nowait()
        except trio.WouldBlock:
            await self._lock.acquire()
        try:
            if data[:1] == b"\x88":  # a close frame: nothing may follow it
                self._close_sent = True
            if self._pending:
                data, self._pending = self._pending + bytes(data), b""
            await self._stream.send_all(data)
        finally:
            self._lock.release()

    def write_now(self, head: bytes, body: bytes) -> bool | None:
        """Write the binary message ``head + body`` into the socket as one frame, without waiting.

        Returns None when nothing was written because a send is in progress,
        the close frame has gone out or the socket is closed or broken (send
        the normal way instead); True when all of it went out; False when
        part of it is pending and the caller must get :meth:`flush` called.
        """
        if self._lock.locked() or self._pending or self._close_sent or not _WRITEV:
            return None
        fd = self._stream.socket.fileno()
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

    async def flush(self) -> None:
        """Send what :meth:`write_now` left pending."""
        await self.send_all(b"")

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._stream.aclose()


