"""The server stream's direct write (``ReplayStream.write_now``), on a real socket pair.

A partition's pump writes a parked fetch's answer straight into each session's
socket, from its own task and without a checkpoint. These tests pin down what
keeps that safe: a frame is never split by another write, what the kernel does
not take goes out before anything written later, and nothing is written while
a normal send is in progress or after the close frame.
"""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing

from kafka_ws_trio._transport import ReplayStream, websocket_binary_header

pytestmark = pytest.mark.timeout(30)


def stream_pair(*, small_buffers: bool = False) -> tuple[ReplayStream, trio.SocketStream]:
    """The server side wrapped like the proxy wraps it, and the peer."""
    left, right = socket.socketpair()
    if small_buffers:
        for sock in (left, right):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    server = trio.SocketStream(trio.socket.from_stdlib_socket(left))
    peer = trio.SocketStream(trio.socket.from_stdlib_socket(right))
    return ReplayStream(server, b""), peer


async def receive_exactly(peer: trio.SocketStream, size: int) -> bytes:
    data = bytearray()
    with trio.fail_after(10):
        while len(data) < size:
            chunk = await peer.receive_some(1 << 20)
            assert chunk, "the stream ended early"
            data += chunk
    return bytes(data)


async def test_write_now_writes_every_buffer_in_order() -> None:
    stream, peer = stream_pair()
    async with stream, peer:
        assert stream.write_now(b"he", b"llo") is True
        await stream.send_all(b"after")
        assert await receive_exactly(peer, 12) == b"\x82\x05helloafter"


async def test_what_the_kernel_does_not_take_goes_out_before_later_writes() -> None:
    stream, peer = stream_pair(small_buffers=True)
    async with stream, peer:
        payload = bytes(range(256)) * 4096  # 1 MiB: more than both socket buffers hold
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
    stream, peer = stream_pair(small_buffers=True)
    async with stream, peer:
        payload = b"x" * (1 << 20)
        frame = websocket_binary_header(len(payload)) + payload
        assert stream.write_now(b"", payload) is False
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.flush)
            assert await receive_exactly(peer, len(frame)) == frame


async def test_no_direct_write_while_a_send_is_in_progress() -> None:
    stream, peer = stream_pair(small_buffers=True)
    async with stream, peer:
        big = b"y" * (1 << 20)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.send_all, big)
            await trio.testing.wait_all_tasks_blocked()  # send_all is now blocked on the full socket
            assert stream.write_now(b"", b"frame") is None
            assert await receive_exactly(peer, len(big)) == big


async def test_no_direct_write_after_the_close_frame() -> None:
    stream, peer = stream_pair()
    async with stream, peer:
        await stream.send_all(b"\x88\x02\x03\xe9")  # close, code 1001
        assert stream.write_now(b"", b"x") is None
        assert await receive_exactly(peer, 4) == b"\x88\x02\x03\xe9"


async def test_no_direct_write_on_a_closed_stream() -> None:
    stream, peer = stream_pair()
    async with peer:
        await stream.aclose()
        assert stream.write_now(b"", b"x") is None
