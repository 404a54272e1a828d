"""The HTTP front's decisions, without sockets: h11 reads the head, the router picks the answer."""

from __future__ import annotations

from typing import Final

import h11
import pytest

from kafka_ws_trio._http import (
    MAX_REQUEST_HEAD,
    HeadReader,
    RequestHead,
    Respond,
    Router,
    Upgrade,
    admit,
    render,
)

ROUTE: Final = "/kafka"
UPGRADE: Final = (
    b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)


def get(path: str, headers: bytes = b"", *, method: bytes = b"GET") -> bytes:
    return method + b" " + path.encode() + b" HTTP/1.1\r\nHost: proxy\r\n" + headers + b"\r\n"


def read(*chunks: bytes, max_size: int = MAX_REQUEST_HEAD) -> RequestHead | Respond | None:
    """What the reader answers after ``chunks``, fed one by one (None: it wants more)."""
    reader = HeadReader(max_size)
    answer = None
    for chunk in chunks:
        assert answer is None, f"answered {answer} before the last chunk"
        answer = reader.feed(chunk)
    return answer


def decide(*chunks: bytes) -> RequestHead | Respond | Upgrade | None:
    answer = read(*chunks)
    if isinstance(answer, RequestHead):
        return Router.for_routes([ROUTE]).decide(answer)
    return answer


# ----------------------------------------------------------------- reading


def test_a_head_is_read_whole_however_it_is_split() -> None:
    data = get(ROUTE + "?client=test", UPGRADE)
    for cut in (1, 5, len(data) // 2, len(data) - 1):
        head = read(data[:cut], data[cut:])
        assert isinstance(head, RequestHead)
        assert (head.method, head.target, head.path) == ("GET", ROUTE + "?client=test", ROUTE)
        assert head.is_websocket_upgrade
    assert read(data[:-1]) is None, "an unfinished head was answered"


def test_the_bytes_read_are_kept_for_the_handshake() -> None:
    reader = HeadReader()
    data = get(ROUTE, UPGRADE)
    early_frame = b"\x82\x80\x00\x00\x00\x00"  # a client may send its first frame right behind the head
    assert isinstance(reader.feed(data + early_frame), RequestHead)
    assert bytes(reader.received) == data + early_frame


@pytest.mark.parametrize(
    ("headers", "upgrade"),
    [
        (UPGRADE, True),
        (b"Upgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n", True),  # tokens, any case
        (b"Upgrade: websocket\r\n", False),  # no Connection: upgrade
        (b"Connection: Upgrade\r\nUpgrade: h2c\r\n", False),
        (b"", False),
    ],
)
def test_what_counts_as_a_websocket_upgrade(headers: bytes, upgrade: bool) -> None:
    head = read(get(ROUTE, headers))
    assert isinstance(head, RequestHead)
    assert head.is_websocket_upgrade is upgrade


def test_only_a_get_can_upgrade() -> None:
    head = read(get(ROUTE, UPGRADE + b"Content-Length: 0\r\n", method=b"POST"))
    assert isinstance(head, RequestHead)
    assert not head.is_websocket_upgrade


@pytest.mark.parametrize(
    "data",
    [
        b"hello\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",  # a TLS ClientHello, roughly
        b"GET /kafka HTTP/1.1\r\n\r\n",  # HTTP/1.1 without Host
        b"GET /kafka HTTP/1.1\r\nHost: proxy\r\nbad header line\r\n\r\n",
    ],
)
def test_what_is_not_http_gets_400(data: bytes) -> None:
    assert read(data) == Respond(400, b"not an HTTP request\n")


def test_a_connection_that_ends_before_the_head_gets_400() -> None:
    assert read(b"") == Respond(400, b"not an HTTP request\n")
    assert read(b"GET /kafka HTTP/1.1\r\nHost: pro", b"") == Respond(400, b"not an HTTP request\n")


def test_a_head_over_the_bound_gets_431() -> None:
    padding = b"X-Padding: " + b"p" * MAX_REQUEST_HEAD + b"\r\n"
    answer = read(get(ROUTE, UPGRADE + padding))
    assert isinstance(answer, Respond)
    assert answer.status == 431
    # Also when it comes in small pieces: the bound is on what h11 holds, not on one read.
    data = get(ROUTE, UPGRADE + padding)
    reader = HeadReader()
    pieces = iter(data[at : at + 1000] for at in range(0, len(data), 1000))
    piecemeal = None
    while piecemeal is None:
        piecemeal = reader.feed(next(pieces))
    assert piecemeal == answer
    # Just under the bound is fine.
    fits = get(ROUTE, UPGRADE + b"X-Padding: " + b"p" * (MAX_REQUEST_HEAD - 300) + b"\r\n")
    assert len(fits) < MAX_REQUEST_HEAD
    assert isinstance(read(fits), RequestHead)
    # A head of exactly the bound is fine too, with more bytes right behind it; one byte more is not.
    exact = get(ROUTE, UPGRADE + b"X-Padding: " + b"p" * (2 * MAX_REQUEST_HEAD - 300 - len(fits)) + b"\r\n")
    assert len(exact) == MAX_REQUEST_HEAD
    assert isinstance(read(exact + b"\x82\x80\x00\x00\x00\x00"), RequestHead)
    over = exact.replace(b"X-Padding: ", b"X-Padding: p")
    assert isinstance(read(over), Respond)


# ----------------------------------------------------------------- routing


def test_an_upgrade_on_a_route_is_handed_to_the_handshake() -> None:
    assert decide(get(ROUTE, UPGRADE)) == Upgrade(ROUTE)
    assert decide(get(ROUTE + "?client=test", UPGRADE)) == Upgrade(ROUTE)


@pytest.mark.parametrize(
    ("header", "name"),
    [
        (b"Sec-WebSocket-Protocol: chat, \xe9t\xe9\r\n", "sec-websocket-protocol"),
        (b"Sec-WebSocket-Extensions: permessage-\xff\r\n", "sec-websocket-extensions"),
        (b"X-Forwarded-Host: \xe9\r\n", None),  # a header the handshake does not read may hold any bytes
    ],
)
def test_an_upgrade_whose_headers_the_handshake_cannot_read_gets_400(header: bytes, name: str | None) -> None:
    """wsproto reads these as ASCII (the Host as IDNA) and would raise inside trio-websocket, answering nothing."""
    answer = decide(get(ROUTE, UPGRADE + header))
    if name is None:
        assert answer == Upgrade(ROUTE)
    else:
        assert answer == Respond(400, f"the {name} header is not readable text\n".encode())


def test_a_host_idna_cannot_read_gets_400() -> None:
    request = get(ROUTE, UPGRADE).replace(b"Host: proxy", b"Host: xn--zz.example")
    assert decide(request) == Respond(400, b"the host header is not readable text\n")
    assert decide(get(ROUTE, UPGRADE).replace(b"Host: proxy", b"Host: [::1]:9080")) == Upgrade(ROUTE)


def test_a_plain_request_on_a_route_gets_400() -> None:
    answer = decide(get(ROUTE))
    assert isinstance(answer, Respond)
    assert answer.status == 400


@pytest.mark.parametrize("path", ["/nowhere", ROUTE + "/more", "/", "/kafk"])
@pytest.mark.parametrize("headers", [UPGRADE, b""])
def test_an_unknown_path_gets_404_upgrade_or_not(path: str, headers: bytes) -> None:
    assert decide(get(path, headers)) == Respond(404, f"no route for {path}\n".encode())


def test_the_table_takes_any_handler() -> None:
    """Room for ``/healthz`` and the like: a handler is any function of the request head."""
    router = Router({"/healthz": lambda request: Respond(200, b"ok\n")})
    head = read(get("/healthz"))
    assert isinstance(head, RequestHead)
    assert router.decide(head) == Respond(200, b"ok\n")


def test_admission() -> None:
    assert admit(shutting_down=False, sessions=3, max_sessions=4) is None
    assert admit(shutting_down=False, sessions=4, max_sessions=4) == Respond(503, b"too many sessions\n")
    assert admit(shutting_down=True, sessions=0, max_sessions=4) == Respond(503, b"server is shutting down\n")


# --------------------------------------------------------------- responses


@pytest.mark.parametrize("status", [400, 404, 431, 503])
def test_a_response_is_plain_http_that_closes(status: int) -> None:
    data = render(Respond(status, b"why\n"))
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "proxy")]))
    client.send(h11.EndOfMessage())
    client.receive_data(data)
    response = client.next_event()
    assert isinstance(response, h11.Response)
    assert response.status_code == status
    headers = dict(response.headers)
    assert headers[b"connection"] == b"close"
    assert headers[b"content-type"].startswith(b"text/plain")
    body = client.next_event()
    assert isinstance(body, h11.Data)
    assert body.data == b"why\n"
    assert isinstance(client.next_event(), h11.EndOfMessage)
