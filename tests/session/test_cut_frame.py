"""A frame cut by ``send_timeout`` is finished before the 1008 close frame, never broken by it.

A client that stops reading makes the session's send wait; after
``send_timeout`` the send is cancelled with part of the frame written. Any
byte written right after that (the 1008 close frame) would be read by the
client as the rest of the cut frame (issue 8, bug 5). The transport keeps
the frame's rest and sends it first, so a client that reads again gets the
whole frame and then the close frame; one that never does is reset (see
tests/session/test_transport.py).

Real sockets against :func:`serve_proxy`, with a fake backend: no broker.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from typing import Final

import pytest
import trio
from _support import WAIT, fetch, http_get, running_proxy, settled

from kafka_ws_trio._config import ProxyConfig, ServerConfig
from kafka_ws_trio._proto import Record

pytestmark = pytest.mark.timeout(60)

ROUTE: Final = "/kafka"
#: A response far larger than the kernel buffers between the proxy and a client that does not read.
RECORD_SIZE: Final = 1 << 20
RECORDS: Final = 16
MAX_MESSAGE_SIZE: Final = 2 * RECORD_SIZE * RECORDS
#: Seconds the proxy waits for a client to take a response.
SEND_TIMEOUT: Final = 0.5
#: The client's receive buffer: tiny, so the proxy's send blocks early.
CLIENT_RECEIVE_BUFFER: Final = 4096
#: The client's receive buffer once it reads again.
FAST_RECEIVE_BUFFER: Final = 4 << 20
OPCODE_BINARY: Final = 0x2
OPCODE_CLOSE: Final = 0x8
#: The close frame the session sends a client too slow to read (1008, "client too slow").
CLOSE_TOO_SLOW: Final = b"\x88\x11" + (1008).to_bytes(2, "big") + b"client too slow"


class BigBackend:
    """Every fetch answers with many large records."""

    deadline = 5.0

    async def list_offset(self, topic: str, partition: int, timestamp: int) -> int:
        await trio.lowlevel.checkpoint()
        return 0

    async def fetch(self, topic: str, partition: int, offset: int, max_bytes: int) -> Sequence[Record]:
        await trio.lowlevel.checkpoint()
        return [Record(offset=offset + n, timestamp=1, key=None, value=b"v" * RECORD_SIZE) for n in range(RECORDS)]


def client_frame(payload: bytes) -> bytes:
    """A masked binary frame (client to server); the all-zero mask leaves the payload as is."""
    assert len(payload) < 0x10000
    size = (
        bytes((0x80 | len(payload),)) if len(payload) < 126 else bytes((0x80 | 126,)) + len(payload).to_bytes(2, "big")
    )
    return b"\x82" + size + b"\x00\x00\x00\x00" + payload


def server_frames(data: bytes) -> tuple[list[int], int]:
    """The opcodes of the whole frames in ``data`` (unmasked, server to client), and how many bytes are left over."""
    opcodes = []
    at = 0
    while at + 2 <= len(data):
        size = data[at + 1] & 0x7F
        start = at + 2
        if size == 126:
            size, start = int.from_bytes(data[at + 2 : at + 4], "big"), at + 4
        elif size == 127:
            size, start = int.from_bytes(data[at + 2 : at + 10], "big"), at + 10
        if start + size > len(data):
            break
        opcodes.append(data[at] & 0x0F)
        at = start + size
    return opcodes, len(data) - at


async def receive_until_end(sock: trio.socket.SocketType) -> tuple[bytes, str]:
    """Everything the peer sent, and how the stream ended (``eof`` or ``reset``)."""
    data = bytearray()
    with trio.fail_after(WAIT):
        while True:
            try:
                chunk = await sock.recv(1 << 20)
            except ConnectionResetError:
                return bytes(data), "reset"
            if not chunk:
                return bytes(data), "eof"
            data += chunk


async def test_a_frame_cut_by_send_timeout_is_finished_before_the_1008_close_frame(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="kafka_ws_trio")
    config = ProxyConfig.single_route(
        "127.0.0.1:9", server=ServerConfig(port=0, max_message_size=MAX_MESSAGE_SIZE, send_timeout=SEND_TIMEOUT)
    )
    async with running_proxy(config, backend_factory=lambda route, limiter: BigBackend()) as server:
        with trio.socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CLIENT_RECEIVE_BUFFER)
            await sock.connect(("127.0.0.1", server.port))
            await sock.send(http_get(ROUTE, upgrade=True))
            head = b""
            with trio.fail_after(WAIT):
                while b"\r\n\r\n" not in head:
                    chunk = await sock.recv(1)  # byte by byte: nothing after the head is taken here
                    assert chunk, head
                    head += chunk
            assert head.startswith(b"HTTP/1.1 101 "), head
            await sock.send(client_frame(fetch(1, "topic", 0, 0)))
            # The proxy gives up on the response it cannot send; only then does the client read.
            assert await settled(
                lambda: any("did not read" in r.getMessage() for r in caplog.records), SEND_TIMEOUT + WAIT
            ), "the proxy never gave up on the unread response"
            # The session gives its close (the frame's rest, then the close frame) 2 s: read the rest fast,
            # through a large buffer (a loaded machine once took longer through the tiny one, and got a reset).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, FAST_RECEIVE_BUFFER)
            data, end = await receive_until_end(sock)
    # Read as frames: the whole response, then the close frame (written inside the cut frame, it
    # would land in its payload and the frames would not add up).
    opcodes, left_over = server_frames(data)
    assert (opcodes, left_over) == ([OPCODE_BINARY, OPCODE_CLOSE], 0), f"frames {opcodes}, ended by {end}"
    assert data.endswith(CLOSE_TOO_SLOW)
    assert end == "eof"
