"""The HTTP front of a running proxy, over real sockets, with a fake backend (no broker).

Every answer the front gives before a WebSocket exists: 400, 404, 431, 503, and
the 101 of an upgrade, which negotiates no extension even when offered one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import attrs
import h11
import pytest
import trio
from _support import WAIT, http_get, running_proxy, settled
from trio_websocket import open_websocket_url

from kafka_ws_trio._config import DEFAULT_MAX_SESSIONS, ProxyConfig, ServerConfig
from kafka_ws_trio._http import MAX_REQUEST_HEAD
from kafka_ws_trio._proto import Record
from kafka_ws_trio._server import ProxyServer

pytestmark = pytest.mark.timeout(60)

ROUTE: Final = "/kafka"


class IdleBackend:
    """Never asked anything in these tests."""

    deadline = 1.0

    async def list_offset(self, topic: str, partition: int, timestamp: int) -> int:
        raise AssertionError("not expected")

    async def fetch(self, topic: str, partition: int, offset: int, max_bytes: int) -> Sequence[Record]:
        raise AssertionError("not expected")


def proxy(max_sessions: int = DEFAULT_MAX_SESSIONS) -> ProxyConfig:
    return ProxyConfig.single_route("127.0.0.1:9", server=ServerConfig(port=0, max_sessions=max_sessions))


@attrs.frozen
class Answer:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


async def exchange(server: ProxyServer, raw: bytes) -> Answer:
    """Send ``raw`` on a fresh connection and read the whole answer: up to the close, or the head of a 101."""
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    parser = h11.Connection(h11.CLIENT)
    parser.send(h11.Request(method="GET", target="/", headers=[("Host", "proxy"), *UPGRADE]))
    parser.send(h11.EndOfMessage())
    async with stream:
        with trio.fail_after(WAIT):
            await stream.send_all(raw)
            response = None
            body = b""
            while True:
                event = parser.next_event()
                if event is h11.NEED_DATA:
                    parser.receive_data(await stream.receive_some())
                elif isinstance(event, h11.InformationalResponse | h11.Response):
                    response = event
                    if event.status_code == 101:
                        break
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    assert await stream.receive_some() == b"", "the connection stays open after the answer"
                    break
                else:
                    raise AssertionError(event)
    assert response is not None
    return Answer(response.status_code, dict(response.headers), body)


#: Lets the made-up request of :func:`exchange` read a 101 as h11 would.
UPGRADE: Final = [("Connection", "Upgrade"), ("Upgrade", "websocket")]


async def test_each_answer_of_the_front() -> None:
    async with running_proxy(proxy(), backend_factory=lambda route, limiter: IdleBackend()) as server:
        upgraded = await exchange(server, http_get(ROUTE, upgrade=True))
        assert upgraded.status == 101
        plain = await exchange(server, http_get(ROUTE, upgrade=False))
        assert (plain.status, plain.headers[b"connection"]) == (400, b"close")
        unknown = await exchange(server, http_get("/nowhere", upgrade=True))
        assert (unknown.status, unknown.body) == (404, b"no route for /nowhere\n")
        assert (await exchange(server, http_get("/nowhere", upgrade=False))).status == 404
        assert (await exchange(server, http_get(ROUTE + "/more", upgrade=True))).status == 404
        assert (await exchange(server, http_get(ROUTE + "?client=test", upgrade=True))).status == 101
        garbage = await exchange(server, b"\x16\x03\x01\x00\x05hello\r\n\r\n")
        assert (garbage.status, garbage.body) == (400, b"not an HTTP request\n")


async def test_a_request_head_over_16_kib_gets_431() -> None:
    padding = b"X-Padding: " + b"p" * MAX_REQUEST_HEAD + b"\r\n"
    request = http_get(ROUTE, upgrade=True).replace(b"\r\n\r\n", b"\r\n" + padding + b"\r\n")
    async with running_proxy(proxy(), backend_factory=lambda route, limiter: IdleBackend()) as server:
        too_large = await exchange(server, request)
        assert too_large.status == 431
        assert str(MAX_REQUEST_HEAD).encode() in too_large.body
        # The same upgrade without the padding is taken.
        assert (await exchange(server, http_get(ROUTE, upgrade=True))).status == 101


async def test_an_offered_extension_is_not_negotiated() -> None:
    """The direct write path frames messages itself: no extension may ever be in use."""
    offer = b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    request = http_get(ROUTE, upgrade=True).replace(b"\r\n\r\n", b"\r\n" + offer + b"\r\n")
    async with running_proxy(proxy(), backend_factory=lambda route, limiter: IdleBackend()) as server:
        upgraded = await exchange(server, request)
    assert upgraded.status == 101
    assert b"sec-websocket-extensions" not in upgraded.headers, upgraded.headers


async def test_a_full_server_answers_503_before_the_handshake() -> None:
    async with running_proxy(proxy(max_sessions=1), backend_factory=lambda route, limiter: IdleBackend()) as server:
        async with open_websocket_url(server.url + ROUTE, connect_timeout=WAIT, disconnect_timeout=WAIT):
            full = await exchange(server, http_get(ROUTE, upgrade=True))
            assert (full.status, full.body) == (503, b"too many sessions\n")
            assert server.statistics().sessions_rejected == 1
            # Not an upgrade on a route: answered as usual, not counted.
            assert (await exchange(server, http_get("/nowhere", upgrade=True))).status == 404
            assert server.statistics().sessions_rejected == 1
        # The slot is free again once the session ends.
        assert await settled(lambda: server.statistics().sessions_open == 0), "the session did not end"
        assert (await exchange(server, http_get(ROUTE, upgrade=True))).status == 101
