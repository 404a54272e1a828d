"""Fetches parked at the log end, against a real broker.

A session that fetches at a partition's log end does not hold a worker: the
fetch is parked with the partition's reader, and the reader's pump answers
every parked fetch when its poll lands, writing the shared response straight
into each session's socket. These tests check what a client sees: records
exactly once and in order, answers in request order per partition, an empty
answer after the wait, sessions that leave or stop reading while parked, and
shutdown with fetches parked. The last test covers the other end of the same
reader: a session reading history front to back gets its next records polled
while its answer is on the way.
"""

from __future__ import annotations

import base64
import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import pytest
import trio
from _support import (
    WAIT,
    TrioFrames,
    fetch,
    fetched,
    list_offset,
    listed,
    open_frames,
    parse,
    ping,
    running_proxy,
    settled,
)
from trio_websocket import ConnectionClosed

from kafka_ws_trio._config import ProxyConfig, ServerConfig
from kafka_ws_trio._kafka import UpstreamStatistics
from kafka_ws_trio._server import ProxyServer
from kafka_ws_trio.client import open_client
from kafka_ws_trio.testing import KafkaBroker, produce

pytestmark = pytest.mark.timeout(60)

ROUTE: Final = "/kafka"
#: Long enough that a parked fetch is still waiting when the test produces.
LONG_WAIT: Final = 3.0


def config(broker: KafkaBroker, *, fetch_max_wait: float = LONG_WAIT, **server_options: float) -> ProxyConfig:
    return ProxyConfig.single_route(
        broker.bootstrap, server=ServerConfig(port=0, **server_options), fetch_max_wait=fetch_max_wait
    )


def upstream_of(server: ProxyServer) -> UpstreamStatistics:
    return server.statistics().upstreams[ROUTE]


async def test_tailing_sessions_get_every_record_once_in_order_from_parked_fetches(
    kafka_broker: KafkaBroker, kafka_topic: str
) -> None:
    sessions = 30
    produce(kafka_broker, kafka_topic, [b"first"])
    batches = [[f"batch{b}-{n}".encode() for n in range(b + 1)] for b in range(5)]
    expected = [b"first"] + [value for batch in batches for value in batch]
    received: list[list[bytes | None]] = [[] for _ in range(sessions)]
    async with running_proxy(config(kafka_broker)) as server:
        url = server.url + ROUTE

        async def tail(n: int) -> None:
            async with open_client(url) as client:
                offset = 0
                while len(received[n]) < len(expected):
                    for record in await client.fetch(kafka_topic, 0, offset):
                        received[n].append(record.value)
                        offset = record.offset + 1

        with trio.fail_after(45):
            async with trio.open_nursery() as nursery:
                for n in range(sessions):
                    nursery.start_soon(tail, n)
                for batch in batches:
                    # Every session has what came before and waits at the log end, parked.
                    assert await settled(lambda: upstream_of(server).fetches_parked == sessions), upstream_of(server)
                    await trio.to_thread.run_sync(produce, kafka_broker, kafka_topic, batch)
        stats = server.statistics()
        upstream = upstream_of(server)
    assert all(values == expected for values in received), received
    assert upstream.parked_answered >= sessions * len(batches)
    assert (stats.errors_total, stats.commands_in_flight, upstream.fetches_parked) == (0, 0, 0)


async def test_a_parked_fetch_is_answered_before_later_commands_for_its_partition(
    kafka_broker: KafkaBroker, kafka_topic: str
) -> None:
    produce(kafka_broker, kafka_topic, [b"r0"])
    async with running_proxy(config(kafka_broker)) as server, open_frames("trio-websocket", server.url + ROUTE) as ws:
        await ws.send(fetch(1, kafka_topic, 0, 0))
        assert [m.value for m in fetched(parse(await ws.receive()), 1)] == [b"r0"]
        await ws.send(fetch(2, kafka_topic, 0, 1))
        assert await settled(lambda: upstream_of(server).fetches_parked == 1), "the fetch at the log end was not parked"
        await ws.send(list_offset(3, kafka_topic, 0, -1))
        await ws.send(ping(4, b"p"))
        # A ping is not ordered with partition commands: answered while the fetch is parked.
        pong = parse(await ws.receive())
        assert (pong.sequence, pong.WhichOneof("resp")) == (4, "pong_resp")
        await trio.to_thread.run_sync(produce, kafka_broker, kafka_topic, [b"r1"])
        assert [m.value for m in fetched(parse(await ws.receive()), 2)] == [b"r1"]
        assert listed(parse(await ws.receive()), 3) in (1, 2)


async def test_a_parked_fetch_with_nothing_new_is_answered_empty_after_the_wait(
    kafka_broker: KafkaBroker, kafka_topic: str
) -> None:
    wait = 0.5
    produce(kafka_broker, kafka_topic, [b"only"])
    async with running_proxy(config(kafka_broker, fetch_max_wait=wait)) as server:
        async with open_frames("trio-websocket", server.url + ROUTE) as ws:
            await ws.send(fetch(1, kafka_topic, 0, 0))
            assert len(fetched(parse(await ws.receive()), 1)) == 1
            answered = upstream_of(server).parked_answered
            for sequence in range(2, 5):
                started = trio.current_time()
                await ws.send(fetch(sequence, kafka_topic, 0, 1))
                assert list(fetched(parse(await ws.receive()), sequence)) == []
                took = trio.current_time() - started
                assert wait * 0.8 <= took < wait + WAIT / 2, f"an empty answer after {took:.2f}s"
        assert upstream_of(server).parked_answered - answered == 3


async def test_sessions_leaving_while_parked_disturb_no_one(kafka_broker: KafkaBroker, kafka_topic: str) -> None:
    produce(kafka_broker, kafka_topic, [b"r0"])
    leave = trio.Event()
    received: list[list[bytes]] = []
    async with running_proxy(config(kafka_broker)) as server:
        url = server.url + ROUTE

        async def client(stays: bool) -> None:
            async with open_frames("trio-websocket", url) as ws:
                await ws.send(fetch(1, kafka_topic, 0, 0))
                assert len(fetched(parse(await ws.receive()), 1)) == 1
                await ws.send(fetch(2, kafka_topic, 0, 1))
                if stays:
                    received.append([m.value for m in fetched(parse(await ws.receive()), 2)])
                else:
                    await leave.wait()  # then disconnect with the fetch still parked

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for n in range(20):
                    nursery.start_soon(client, n % 2 == 0)
                assert await settled(lambda: upstream_of(server).fetches_parked == 20), upstream_of(server)
                leave.set()
                assert await settled(lambda: server.statistics().sessions_open == 10)
                assert upstream_of(server).fetches_parked == 10
                await trio.to_thread.run_sync(produce, kafka_broker, kafka_topic, [b"r1", b"r2"])
        stats = server.statistics()
        assert received == [[b"r1", b"r2"]] * 10
        assert (stats.errors_total, stats.commands_in_flight, upstream_of(server).fetches_parked) == (0, 0, 0)


# ------------------------------------------------- a client that stops reading


@asynccontextmanager
async def raw_websocket(port: int, path: str) -> AsyncIterator[trio.SocketStream]:
    """A WebSocket client on a plain socket with a tiny receive buffer, so that it can stop reading
    and leave the proxy's side of the connection full."""
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect(("127.0.0.1", port))
    stream = trio.SocketStream(sock)
    async with stream:
        key = base64.b64encode(os.urandom(16)).decode()
        await stream.send_all(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = b""
        with trio.fail_after(WAIT):
            while b"\r\n\r\n" not in head:
                head += await stream.receive_some(1)  # byte by byte: leave the first frame unread
        assert head.startswith(b"HTTP/1.1 101"), head
        yield stream


def masked_binary(payload: bytes) -> bytes:
    """A client frame (masked, with a zero key so the payload is unchanged)."""
    assert len(payload) < 126
    return bytes((0x82, 0x80 | len(payload))) + b"\0\0\0\0" + payload


async def test_a_tailing_client_that_stops_reading_is_closed_and_others_keep_up(
    kafka_broker: KafkaBroker, kafka_topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    send_timeout = 1.0
    produce(kafka_broker, kafka_topic, [b"r0"])
    big = [os.urandom(100_000) for _ in range(8)]  # one answer of 800 kB: more than the socket buffers hold
    caplog.set_level(logging.WARNING, logger="kafka_ws_trio")
    async with running_proxy(config(kafka_broker, send_timeout=send_timeout)) as server:
        url = server.url + ROUTE
        async with open_client(url) as healthy, raw_websocket(server.port, ROUTE) as stuck:
            assert len(await healthy.fetch(kafka_topic, 0, 0)) == 1
            await stuck.send_all(masked_binary(fetch(1, kafka_topic, 0, 1)))
            async with trio.open_nursery() as nursery:
                got: list[int] = []

                async def healthy_tail() -> None:
                    offset = 1
                    while offset < 1 + len(big) + 1:
                        for record in await healthy.fetch(kafka_topic, 0, offset):
                            got.append(record.offset)
                            offset = record.offset + 1

                nursery.start_soon(healthy_tail)
                assert await settled(lambda: upstream_of(server).fetches_parked == 2), upstream_of(server)
                await trio.to_thread.run_sync(produce, kafka_broker, kafka_topic, big)
                # The stuck session is closed once its answer has waited send_timeout; the other one goes on.
                assert await settled(lambda: server.statistics().sessions_open == 1, send_timeout + WAIT)
                await trio.to_thread.run_sync(produce, kafka_broker, kafka_topic, [b"after"])
            assert got == list(range(1, len(big) + 2))
    assert any("too slow" in r.getMessage() or "did not read" in r.getMessage() for r in caplog.records), [
        r.getMessage() for r in caplog.records
    ]


async def test_shutdown_with_parked_fetches_closes_every_session_with_1001(
    kafka_broker: KafkaBroker, kafka_topic: str
) -> None:
    produce(kafka_broker, kafka_topic, [b"r0"])
    codes: list[int | None] = []
    async with trio.open_nursery() as clients:
        async with running_proxy(config(kafka_broker, fetch_max_wait=1.0)) as server:
            url = server.url + ROUTE
            parked = trio.Semaphore(0)

            async def tail() -> None:
                async with open_frames("trio-websocket", url) as ws:
                    assert isinstance(ws, TrioFrames)
                    await ws.send(fetch(1, kafka_topic, 0, 0))
                    await ws.receive()
                    await ws.send(fetch(2, kafka_topic, 0, 1))
                    parked.release()
                    try:
                        while True:
                            await ws.ws.get_message()
                    except ConnectionClosed as closed:
                        codes.append(closed.reason.code)

            for _ in range(10):
                clients.start_soon(tail)
            for _ in range(10):
                await parked.acquire()
            assert await settled(lambda: upstream_of(server).fetches_parked == 10)
            started = trio.current_time()
        took = trio.current_time() - started
    assert codes == [1001] * 10
    assert took < 1.0 + WAIT


# ------------------------------------------------------------------ read-ahead


async def test_a_session_reading_front_to_back_finds_its_next_records_already_polled(
    kafka_broker: KafkaBroker, kafka_topic: str
) -> None:
    """When an answer reaches the end of what the proxy has read, it polls the next records at once."""
    from kafka_ws_trio._kafka import MAX_POLL_RECORDS

    total = MAX_POLL_RECORDS * 2 + 500
    produce(kafka_broker, kafka_topic, [f"v{n}".encode() for n in range(total)])
    async with (
        running_proxy(config(kafka_broker, fetch_max_wait=0.5)) as server,
        open_client(server.url + ROUTE) as client,
    ):
        first = await client.fetch(kafka_topic, 0, 0)
        assert 0 < len(first) < total, "one poll brought everything: nothing left to read ahead"
        # No fetch is sent now, yet the proxy polls the records after the first answer.
        assert await settled(lambda: upstream_of(server).broker_polls >= 2), upstream_of(server)
        before = upstream_of(server)
        second = await client.fetch(kafka_topic, 0, first[-1].offset + 1)
        after = upstream_of(server)
    assert second[0].offset == first[-1].offset + 1
    assert after.cache_hits == before.cache_hits + 1, "the second fetch was not answered from memory"
