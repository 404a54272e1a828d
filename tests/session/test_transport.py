"""``_transport.ReplayStream`` on real TCP sockets: when it may frame messages itself, and how it ends a cut frame.

* Direct writes happen only after the stream carried a ``101`` that names no
  WebSocket extension, and only while its connection is not closing (state,
  not a look at the bytes).
* A write cancelled inside a frame keeps the frame's rest, which goes out before
  anything written later (the close frame of a session giving up on a slow
  client); closing with a rest never sent aborts the connection with an RST; a
  write cancelled on a frame boundary drops the frame it had not begun.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Final

import attrs
import pytest
import trio
import trio.testing
from trio_websocket import WebSocketConnection, open_websocket, wrap_server_stream

from kafka_ws_trio._transport import ReplayStream, handshake_extensions, websocket_binary_header

pytestmark = pytest.mark.timeout(30)

#: Seconds any wait in these tests may take.
WAIT: Final = 10.0
SWITCHING: Final = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
)
#: Socket buffers small enough that a 1 MiB write cannot go out at once.
SMALL_BUFFER: Final = 4096
BIG: Final = 1 << 20


@attrs.define
class Connection:
    """Stands in for trio-websocket's connection: only its ``closed``."""

    closed: object = None


@asynccontextmanager
async def tcp_pair(*, small_buffers: bool = False) -> AsyncIterator[tuple[ReplayStream, trio.SocketStream]]:
    """A ReplayStream on the server end of a loopback TCP connection, and the client end."""
    listener = trio.socket.socket()
    with listener:
        await listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = trio.socket.socket()
        if small_buffers:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
        await client.connect(listener.getsockname())
        server, _ = await listener.accept()
    if small_buffers:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
    stream = ReplayStream(trio.SocketStream(server), b"")
    peer = trio.SocketStream(client)
    async with stream, peer:
        yield stream, peer


async def opened(stream: ReplayStream, peer: trio.SocketStream, response: bytes = SWITCHING + b"\r\n") -> Connection:
    """Take ``stream`` through an accepted handshake, as the server does; returns its (open) connection.

    The stream follows the connection by a weak reference, as it follows
    trio-websocket's: keep the returned object while the test writes.
    """
    await stream.send_all(response)
    await receive_exactly(peer, len(response))
    connection = Connection()
    stream.bind(connection)
    return connection


async def receive_exactly(peer: trio.SocketStream, size: int) -> bytes:
    data = bytearray()
    with trio.fail_after(WAIT):
        while len(data) < size:
            chunk = await peer.receive_some(1 << 20)
            assert chunk, "the stream ended early"
            data += chunk
    return bytes(data)


async def receive_until_end(peer: trio.SocketStream) -> tuple[bytes, str]:
    """Everything left, and how the connection ended: ``eof`` or ``reset``."""
    data = bytearray()
    with trio.fail_after(WAIT):
        while True:
            try:
                chunk = await peer.receive_some(1 << 20)
            except trio.BrokenResourceError as exc:
                return bytes(data), "reset" if isinstance(exc.__cause__, ConnectionResetError) else repr(exc)
            if not chunk:
                return bytes(data), "eof"
            data += chunk


def fill_send_buffer(stream: ReplayStream) -> None:
    """Write to the socket around the stream until the kernel takes no more (whole writes, as far as it knows)."""
    assert stream._socket is not None
    raw = socket.socket(fileno=stream._socket.fileno())
    raw.setblocking(False)
    try:
        while True:
            raw.send(b"f" * SMALL_BUFFER)
    except BlockingIOError:
        pass
    finally:
        raw.detach()


# ------------------------------------------------------------ extensions


def test_the_handshake_response_is_read_for_extensions() -> None:
    assert handshake_extensions(SWITCHING + b"\r\n") == []
    offered = SWITCHING + b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
    assert handshake_extensions(offered) == [b"permessage-deflate"]
    assert handshake_extensions(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n") is None
    assert handshake_extensions(b"HTTP/1.1 101 Switching") is None  # not a whole head
    assert handshake_extensions(b"\x82\x05hello") is None


async def test_direct_writes_start_after_a_101_without_extensions() -> None:
    async with tcp_pair() as (stream, peer):
        assert stream.write_now(b"", b"early") is None, "a direct write before the handshake response"
        _connection = await opened(stream, peer)
        assert stream.write_now(b"he", b"llo") is True
        assert await receive_exactly(peer, 7) == websocket_binary_header(5) + b"hello"


async def test_no_direct_write_when_the_handshake_names_an_extension() -> None:
    """If an extension were ever negotiated, our frames would be wrong: the direct path must refuse."""
    async with tcp_pair() as (stream, peer):
        _connection = await opened(stream, peer, SWITCHING + b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n")
        assert stream.write_now(b"", b"x") is None
        await stream.send_all(b"\x82\x01y")  # the normal way still works
        assert await receive_exactly(peer, 3) == b"\x82\x01y"


async def test_no_direct_write_after_a_rejected_handshake() -> None:
    async with tcp_pair() as (stream, peer):
        _connection = await opened(stream, peer, b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
        assert stream.write_now(b"", b"x") is None


async def test_no_direct_write_before_the_stream_follows_a_connection() -> None:
    async with tcp_pair() as (stream, _):
        await stream.send_all(SWITCHING + b"\r\n")
        assert stream.write_now(b"", b"x") is None


# --------------------------------------------------------------- closing


async def test_no_direct_write_once_the_connection_is_closing() -> None:
    """Known by the connection's state, whatever the bytes: here the close frame has not even been written yet."""
    async with tcp_pair() as (stream, peer):
        connection = await opened(stream, peer)
        assert stream.write_now(b"", b"a") is True
        connection.closed = "closing"
        assert stream.write_now(b"", b"b") is None
        assert await receive_exactly(peer, 3) == b"\x82\x01a"


async def test_a_binary_frame_starting_like_a_close_does_not_stop_direct_writes() -> None:
    """The old check looked at the first byte of each write; the state does not care what the bytes are."""
    async with tcp_pair() as (stream, peer):
        _connection = await opened(stream, peer)
        await stream.send_all(b"\x88\x02\x03\xe9")
        assert stream.write_now(b"", b"x") is True
        assert await receive_exactly(peer, 7) == b"\x88\x02\x03\xe9\x82\x01x"


async def accept_one(
    listener: trio.socket.SocketType,
    nursery: trio.Nursery,
    *,
    task_status: trio.TaskStatus[tuple[ReplayStream, WebSocketConnection]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The server end of one WebSocket connection, set up as the proxy does (stream bound once accepted)."""
    server_socket, _ = await listener.accept()
    stream = ReplayStream(trio.SocketStream(server_socket), b"")
    request = await wrap_server_stream(nursery, stream)
    ws = await request.accept()
    stream.bind(ws)
    task_status.started((stream, ws))


async def test_with_trio_websocket_direct_writes_follow_the_real_connection() -> None:
    """A real handshake, with the client offering permessage-deflate: nothing is negotiated, direct writes work
    and stop once the connection closes."""
    listener = trio.socket.socket()
    with listener, trio.fail_after(WAIT):
        await listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        host, port = listener.getsockname()
        async with trio.open_nursery() as nursery:
            accepted = trio.Event()
            server: list[tuple[ReplayStream, WebSocketConnection]] = []

            async def serve() -> None:
                server.append(await nursery.start(accept_one, listener, nursery))
                accepted.set()

            nursery.start_soon(serve)
            offer = [(b"Sec-WebSocket-Extensions", b"permessage-deflate; client_max_window_bits")]
            async with open_websocket(host, port, "/", use_ssl=False, extra_headers=offer) as client:
                await accepted.wait()
                [(stream, ws)] = server
                assert stream.write_now(b"he", b"llo") is True
                assert await client.get_message() == b"hello"
                await ws.send_message(b"normal")
                assert stream.write_now(b"", b"again") is True
                assert await client.get_message() == b"normal"
                assert await client.get_message() == b"again"
                await ws.aclose()
                assert stream.write_now(b"", b"late") is None
            nursery.cancel_scope.cancel()


# ------------------------------------------------------------ cut frames


async def cancel_mid_frame(stream: ReplayStream, send: Callable[[], Awaitable[None]]) -> None:
    """Run ``send`` until it waits on the full socket with part of its frame written, then cancel it."""
    with trio.move_on_after(WAIT) as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            await trio.testing.wait_all_tasks_blocked()  # the send waits on a full socket, part of it written
            nursery.cancel_scope.cancel()
    assert not scope.cancelled_caught


async def test_a_send_cut_inside_a_frame_sends_its_rest_before_the_next_frame() -> None:
    """As a session giving up on a slow client does: its close frame follows the whole cut frame."""
    big_frame = b"\x82\x7f" + BIG.to_bytes(8, "big") + b"z" * BIG
    close_frame = b"\x88\x02\x03\xf0"
    async with tcp_pair(small_buffers=True) as (stream, peer):
        _connection = await opened(stream, peer)
        await cancel_mid_frame(stream, lambda: stream.send_all(big_frame))
        assert not stream.aborted
        assert stream.write_now(b"", b"x") is None  # a rest is pending: nothing may go around it
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.send_all, close_frame)
            data = await receive_exactly(peer, len(big_frame) + len(close_frame))
        assert data.endswith(big_frame + close_frame)


async def test_closing_with_the_rest_of_a_cut_frame_unsent_aborts_the_connection() -> None:
    async with tcp_pair(small_buffers=True) as (stream, peer):
        _connection = await opened(stream, peer)
        await cancel_mid_frame(stream, lambda: stream.send_all(b"\x82\x7f" + BIG.to_bytes(8, "big") + b"z" * BIG))
        await stream.aclose()
        assert stream.aborted
        with pytest.raises(trio.ClosedResourceError):
            await stream.send_all(b"\x88\x02\x03\xf0")
        data, end = await receive_until_end(peer)
        assert end == "reset"
        assert 0 < len(data) < BIG, "the frame was not cut"
        assert b"\x88" not in data


async def test_a_send_cancelled_on_a_frame_boundary_leaves_the_connection_open() -> None:
    async with tcp_pair(small_buffers=True) as (stream, peer):
        _connection = await opened(stream, peer)
        fill_send_buffer(stream)
        with trio.move_on_after(WAIT) as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stream.send_all, b"\x82\x01a")
                await trio.testing.wait_all_tasks_blocked()  # not one byte of it went out
                nursery.cancel_scope.cancel()
        assert not scope.cancelled_caught
        assert not stream.aborted
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.send_all, b"\x82\x01b")
            data = bytearray()
            while not data.endswith(b"\x82\x01b"):
                data += await receive_exactly(peer, 1)
        assert b"\x82\x01a" not in data


async def test_a_pending_frame_whose_flush_is_cancelled_stays_pending_until_sent_or_aborted() -> None:
    async with tcp_pair(small_buffers=True) as (stream, peer):
        _connection = await opened(stream, peer)
        assert stream.write_now(b"", b"p" * BIG) is False
        await cancel_mid_frame(stream, stream.flush)
        assert not stream.aborted
        await stream.aclose()  # the rest never went out: the peer must not take what came for a whole frame
        assert stream.aborted
        data, end = await receive_until_end(peer)
        assert (end, 0 < len(data) < BIG) == ("reset", True)


async def test_closing_with_part_of_a_frame_pending_aborts_the_connection() -> None:
    async with tcp_pair(small_buffers=True) as (stream, peer):
        _connection = await opened(stream, peer)
        assert stream.write_now(b"", b"p" * BIG) is False
        await stream.aclose()
        assert stream.aborted
        _, end = await receive_until_end(peer)
        assert end == "reset"


async def test_closing_between_frames_is_orderly() -> None:
    async with tcp_pair() as (stream, peer):
        _connection = await opened(stream, peer)
        assert stream.write_now(b"", b"x") is True
        await stream.aclose()
        assert not stream.aborted
        assert await receive_until_end(peer) == (b"\x82\x01x", "eof")


# ---------------------------------------------------------------- direct writes, once allowed


async def test_write_now_frames_head_and_body_in_order_with_later_sends() -> None:
    async with tcp_pair() as (stream, peer):
        _connection = await opened(stream, peer)
        assert stream.write_now(b"he", b"llo") is True
        await stream.send_all(b"after")
        assert await receive_exactly(peer, 12) == b"\x82\x05helloafter"


async def test_what_the_kernel_does_not_take_goes_out_before_later_writes() -> None:
    async with tcp_pair(small_buffers=True) as (stream, peer):
        _connection = await opened(stream, peer)
        payload = bytes(range(256)) * (BIG // 256)  # more than both socket buffers hold
        frame = websocket_binary_header(len(payload)) + payload
        written = stream.write_now(payload[:10], payload[10:])
        assert written is False, "the whole frame fit in the socket buffers: the test would not test anything"
        # While part of a frame is pending nothing else may be written directly.
        assert stream.write_now(b"", b"other") is None
        received = bytearray()

        async def read_all() -> None:
            received.extend(await receive_exactly(peer, len(frame) + 5))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_all)
            await stream.send_all(b"later")  # first sends what write_now left pending
        assert bytes(received) == frame + b"later"
        assert stream.write_now(b"", b"again") is True
        assert await receive_exactly(peer, 7) == b"\x82\x05again"


async def test_flush_sends_the_pending_rest_of_a_frame() -> None:
    async with tcp_pair(small_buffers=True) as (stream, peer):
        _connection = await opened(stream, peer)
        payload = b"x" * BIG
        frame = websocket_binary_header(len(payload)) + payload
        assert stream.write_now(b"", payload) is False
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.flush)
            assert await receive_exactly(peer, len(frame)) == frame


async def test_no_direct_write_while_a_send_is_in_progress() -> None:
    async with tcp_pair(small_buffers=True) as (stream, peer):
        _connection = await opened(stream, peer)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.send_all, b"y" * BIG)
            await trio.testing.wait_all_tasks_blocked()  # send_all is now blocked on the full socket
            assert stream.write_now(b"", b"frame") is None
            assert await receive_exactly(peer, BIG) == b"y" * BIG


async def test_no_direct_write_on_a_closed_stream() -> None:
    async with tcp_pair() as (stream, peer):
        _connection = await opened(stream, peer)
        await stream.aclose()
        assert stream.write_now(b"", b"x") is None


async def test_no_direct_write_once_the_connection_is_gone() -> None:
    """The stream holds its connection weakly (no reference cycle keeps closed sessions alive)."""
    async with tcp_pair() as (stream, peer):
        connection = await opened(stream, peer)
        assert stream.write_now(b"", b"x") is True
        del connection
        assert stream.write_now(b"", b"y") is None
        assert await receive_exactly(peer, 3) == b"\x82\x01x"


async def test_the_stream_names_its_peer() -> None:
    """trio-websocket's ``ws.remote`` of a stream it does not know is its repr (the session's log line)."""
    async with tcp_pair() as (stream, peer):
        host, port = peer.socket.getsockname()[:2]
        assert repr(stream) == f"ReplayStream({host}:{port})"
        await stream.aclose()
        assert repr(stream) == "ReplayStream(?)"


# ------------------------------------------------------ any other stream (TLS)


async def test_over_a_stream_that_is_no_socket_writes_go_through_it_and_direct_ones_are_declined() -> None:
    """Over TLS there is no socket to frame into: write_now declines, so the session sends the normal way."""
    server_end, client_end = trio.testing.memory_stream_pair()
    stream = ReplayStream(server_end, b"GET / HTTP/1.1\r\n\r\n")
    assert await stream.receive_some() == b"GET / HTTP/1.1\r\n\r\n"  # the bytes read to route it, first
    await stream.send_all(SWITCHING + b"\r\n")
    connection = Connection()
    stream.bind(connection)
    assert stream.write_now(b"he", b"llo") is None  # a 101 without extensions, an open connection: still no
    frame = websocket_binary_header(5) + b"hello"
    await stream.send_all(frame)
    await stream.flush()  # nothing pending
    with trio.fail_after(WAIT):
        assert await client_end.receive_some() == SWITCHING + b"\r\n" + frame
    await client_end.send_all(b"from the client")
    assert await stream.receive_some() == b"from the client"
    assert not stream.aborted
    assert repr(stream) == "ReplayStream(?, through StapledStream)"
    await stream.aclose()


async def test_over_a_stream_that_is_no_socket_a_cut_write_aborts_the_connection() -> None:
    """A cancelled send_all may have sent part of a frame, and the stream cannot say how much."""
    server_end, client_end = trio.testing.lockstep_stream_pair()  # a send waits for the peer to read
    stream = ReplayStream(server_end, b"")
    with trio.move_on_after(0.1) as scope:
        await stream.send_all(b"a frame nobody reads")
    assert scope.cancelled_caught
    assert stream.aborted
    with pytest.raises(trio.ClosedResourceError, match="aborted"):
        await stream.send_all(b"a close frame")
    await stream.aclose()
    await client_end.aclose()
