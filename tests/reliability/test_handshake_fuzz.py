"""Fuzzed WebSocket handshakes against a live proxy on a real broker (issue 13).

The route asks for a credential (an API key or a JWT) and has ACLs. Raw TCP
connections, each byte chosen here, send it handshakes drawn from a seeded
generator: bad, truncated, mutated and binary tokens in each of the three places a
credential may come from (PROTOCOL.md 5.6), two credentials that differ, a valid
token without rights, huge header values, thousands of headers or query
parameters, very long paths, bytes that are not ASCII, heads that are not HTTP,
heads cut short, and slow clients (silent, stalled mid-head, trickling bytes past
the deadline). Throughout:

* none gets in: no ``101``, and the proxy counts no session but the control ones;
* each is answered with the HTTP status its flaw calls for (401 for a credential
  that is missing or bad, 403 for one without rights, 400 for what is not a
  WebSocket request, 404 for an unknown path, 431 for a head over the limit), or
  closed at its deadline, within ``handshake_timeout`` and a little slack; only a
  client still sending more than the proxy reads may see the connection reset
  instead of its answer;
* the handshakes that carry a good credential but a head the WebSocket handshake
  itself refuses get 400 or 426, never a session;
* a control client with good credentials (each credential in each place) keeps
  opening sessions and getting answers during the fuzzing and after it;
* the proxy logs no error, and no good credential appears in its log.

Fast mode draws a few hundred handshakes; long mode (``--reliability-long``) 20,000.
``RELIABILITY_SEED=N`` replays a run: each handshake is drawn from the seed and its
index alone, so the order they run in does not matter.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import random
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final
from urllib.parse import quote, quote_from_bytes

import attrs
import pytest
import trio
from _reliability import WAIT, mode

from kafka_ws_trio._auth._keys import new_key
from kafka_ws_trio._config import ProxyConfig, RouteConfig, ServerConfig
from kafka_ws_trio._config._access import AclRuleConfig, ApiKeyConfig, JwtConfig
from kafka_ws_trio._http import MAX_REQUEST_HEAD
from kafka_ws_trio._server import ProxyServer, serve_proxy
from kafka_ws_trio.client import open_client
from kafka_ws_trio.testing import KafkaBroker, create_topic, delete_topic, produce

pytestmark = pytest.mark.reliability

#: The proxy's ``server.handshake_timeout``: short, so that the slow clients cost little.
HANDSHAKE_TIMEOUT: Final = 1.5
#: What an answer or a close may take beyond the deadline on a busy machine.
SLACK: Final = 1.0
#: A close without an answer counts as "timed out at the deadline" from this long after connecting.
AT_THE_DEADLINE: Final = HANDSHAKE_TIMEOUT * 0.95
#: Handshakes drawn in this run.
HANDSHAKES: Final = int(mode().limit(2_000, 20_000))
#: Fuzz connections open at once (well under the proxy's handshake bounds, which this test leaves alone).
IN_FLIGHT: Final = 24
#: Bytes of an answer read before it must have ended its head.
ANSWER_LIMIT: Final = 64 * 1024
#: Problems reported in full; the rest are counted.
PROBLEMS_SHOWN: Final = 20

ISSUER: Final = "https://id.fuzz.test"
AUDIENCE: Final = "kafka-ws-fuzz"
READ_SCOPE: Final = "fuzz:read"
READER_KEY: Final = "fuzz-reader"
#: A key the route knows, whose principal no ACL rule names (403).
STRANGER_KEY: Final = "fuzz-stranger"
#: A subprotocol offered beside ``bearer.TOKEN``.
SUBPROTOCOL: Final = b"kafka-ws-trio"
B64URL: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
#: Bytes h11 takes inside a header value: anything but NUL and whitespace (spaces and tabs only between words).
VALUE_BYTES: Final = bytes(b for b in range(1, 256) if b not in b" \t\n\v\f\r")
#: Printable ASCII without space (what a request target may hold).
VCHAR: Final = bytes(range(0x21, 0x7F))
STATUS_LINE: Final = re.compile(rb"HTTP/1\.[01] (\d{3})(?: [^\r\n]*)?")


# --------------------------------------------------------------- credentials


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def signed(header: dict[str, Any], claims: dict[str, Any], secret: str) -> str:
    """A compact JWS of exactly ``header`` and ``claims``, signed HS256 with ``secret`` (whatever ``alg`` says)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    digest = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(digest)}"


@attrs.frozen
class Credentials:
    """The route's secrets, and the good credentials the control client uses."""

    jwt_secret: str = attrs.field(repr=False)
    reader_key: str = attrs.field(repr=False)
    reader_hash: str = attrs.field(repr=False)
    stranger_key: str = attrs.field(repr=False)
    stranger_hash: str = attrs.field(repr=False)
    #: When the tokens were made: each token is the same string whenever it is made again.
    issued_at: int = attrs.field(factory=lambda: int(time.time()))

    def claims(self, **changes: Any) -> dict[str, Any]:
        claims: dict[str, Any] = {
            "sub": "fuzz-user",
            "scope": READ_SCOPE,
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": self.issued_at,
            "exp": self.issued_at + 6 * 3600,
        }
        claims.update(changes)
        return {name: value for name, value in claims.items() if value is not None}

    def jwt(self, *, header: dict[str, Any] | None = None, secret: str | None = None, **changes: Any) -> str:
        """A token for the route: good unless ``changes`` (None drops a claim), ``header`` or ``secret`` spoil it."""
        return signed(
            header or {"alg": "HS256", "typ": "JWT"},
            self.claims(**changes),
            self.jwt_secret if secret is None else secret,
        )

    def secrets_to_hide(self) -> tuple[str, ...]:
        """What must never appear in a log: the JWT secret, the keys' secrets, the good token's signature."""
        return (
            self.jwt_secret,
            self.reader_key.rsplit("_", 1)[1],
            self.stranger_key.rsplit("_", 1)[1],
            self.jwt().rsplit(".", 1)[1],
        )


@pytest.fixture(scope="module")
def credentials() -> Credentials:
    reader_key, reader_hash = new_key(READER_KEY)
    stranger_key, stranger_hash = new_key(STRANGER_KEY)
    return Credentials(secrets.token_urlsafe(32), reader_key, reader_hash, stranger_key, stranger_hash)


@pytest.fixture
def topic(kafka_broker: KafkaBroker) -> Iterator[str]:
    name = create_topic(kafka_broker, partitions=1)
    produce(kafka_broker, name, [b"one", b"two"])
    yield name
    delete_topic(kafka_broker, name)


def secured_config(broker: KafkaBroker, credentials: Credentials, topic: str) -> ProxyConfig:
    """``/kafka`` takes API keys and HS256 JWTs; the reader key and the read scope may read ``topic``."""
    route = RouteConfig(
        "/kafka",
        broker.bootstrap,
        auth=("api_key", "jwt"),
        api_keys=(
            ApiKeyConfig(id=READER_KEY, principal=READER_KEY, hash=credentials.reader_hash),
            ApiKeyConfig(id=STRANGER_KEY, principal=STRANGER_KEY, hash=credentials.stranger_hash),
        ),
        jwt=JwtConfig(algorithms=("HS256",), secret=credentials.jwt_secret, issuer=ISSUER, audience=AUDIENCE),
        acl=(
            AclRuleConfig(principals=(f"claim:scope={READ_SCOPE}", READER_KEY), operations=("read",), topics=(topic,)),
        ),
    )
    return ProxyConfig(ServerConfig(port=0, handshake_timeout=HANDSHAKE_TIMEOUT), (route,))


# ------------------------------------------------------------------ handshakes


@attrs.frozen
class Case:
    """One fuzzed handshake: the bytes sent (each step after a pause) and the answers it may get."""

    kind: str
    steps: tuple[tuple[float, bytes], ...]
    #: The HTTP statuses that answer it correctly (never 101).
    statuses: frozenset[int]
    #: Whether a close without an answer, at any time, is correct too: a client slower than the
    #: deadline, or one still sending more than the proxy reads (its answer may be lost to a reset).
    may_close: bool = False
    #: Whether the client half-closes after its last step (a head cut short by the end of the stream).
    half_close: bool = False

    @property
    def sent(self) -> bytes:
        return b"".join(data for _, data in self.steps)


def head(
    target: bytes = b"/kafka",
    extra: Sequence[tuple[bytes, bytes]] = (),
    *,
    method: bytes = b"GET",
    version: bytes = b"HTTP/1.1",
    drop: Sequence[bytes] = (),
    replace: dict[bytes, bytes] | None = None,
) -> bytes:
    """A WebSocket upgrade request head, with headers dropped, replaced or added."""
    base = [
        (b"Host", b"127.0.0.1"),
        (b"Upgrade", b"websocket"),
        (b"Connection", b"Upgrade"),
        (b"Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ=="),
        (b"Sec-WebSocket-Version", b"13"),
    ]
    replace = replace or {}
    lines = [method + b" " + target + b" " + version]
    lines += [name + b": " + replace.get(name, value) for name, value in base if name not in drop]
    lines += [name + b": " + value for name, value in extra]
    return b"\r\n".join(lines) + b"\r\n\r\n"


@attrs.define
class Placed:
    """Credentials put into a handshake: query parameters and headers."""

    query: list[bytes] = attrs.Factory(list)
    headers: list[tuple[bytes, bytes]] = attrs.Factory(list)

    def put(self, source: str, token: bytes, rng: random.Random) -> Placed:
        if source == "header":
            self.headers.append((b"Authorization", rng.choice([b"Bearer ", b"bearer ", b"BEARER  "]) + token))
        elif source == "query":
            self.query.append(b"access_token=" + quote_from_bytes(token, safe="-_.~").encode())
        else:
            self.headers.append((b"Sec-WebSocket-Protocol", SUBPROTOCOL + b", bearer." + token))
        return self

    def target(self, path: bytes = b"/kafka", more: Sequence[bytes] = ()) -> bytes:
        params = [*self.query, *more]
        return path + (b"?" + b"&".join(params) if params else b"")


SOURCES: Final = ("header", "query", "subprotocol")


def answer_for_size(data: bytes, status: int) -> tuple[frozenset[int], bool]:
    """``status`` for a head within MAX_REQUEST_HEAD, 431 (or a reset: may_close) for one over it."""
    if len(data) <= MAX_REQUEST_HEAD:
        return frozenset({status}), False
    return frozenset({431}), True


#: The headers the WebSocket handshake itself reads; it takes only ASCII in them.
HANDSHAKE_HEADERS: Final = re.compile(
    rb"\r\n(?:host|connection|upgrade|sec-websocket-protocol|sec-websocket-extensions):([^\r]*)", re.IGNORECASE
)


def allowed(data: bytes, statuses: set[int] | frozenset[int]) -> frozenset[int]:
    """``statuses``, and 400 when a credential refusal may come after the refusal of a malformed handshake.

    A header the WebSocket handshake reads that holds bytes over 0x7f (a binary token in
    ``Sec-WebSocket-Protocol``) makes the request malformed: the proxy may say so before it looks at
    the credential.
    """
    head_only = data.split(b"\r\n\r\n", 1)[0]
    if statuses & {401, 403} and any(not value.isascii() for value in HANDSHAKE_HEADERS.findall(head_only)):
        return frozenset({*statuses, 400})
    return frozenset(statuses)


def at_once(kind: str, data: bytes, statuses: set[int] | frozenset[int], *, may_close: bool = False) -> Case:
    return Case(kind, ((0.0, data),), allowed(data, statuses), may_close=may_close)


class Generator:
    """Draws the fuzzed handshakes: ``case(index)`` depends on the seed and the index only."""

    def __init__(self, seed: int, credentials: Credentials) -> None:
        self.seed = seed
        self.credentials = credentials
        self.kinds: list[tuple[Callable[[random.Random], Case], int]] = [
            (self.bad_jwt, 20),
            (self.bad_api_key, 7),
            (self.no_credential, 3),
            (self.wrong_scheme, 4),
            (self.empty_token, 3),
            (self.two_credentials, 8),
            (self.not_allowed, 4),
            (self.huge_header, 6),
            (self.many_headers, 5),
            (self.many_query_parameters, 6),
            (self.long_path, 4),
            (self.non_ascii, 6),
            (self.not_http, 10),
            (self.cut_short, 5),
            (self.admitted_but_not_websocket, 6),
            (self.slow_in_time, 3),
            (self.stalled, 3),
            (self.trickling, 3),
            (self.silent, 2),
        ]

    def case(self, index: int) -> Case:
        rng = random.Random(f"{self.seed}-{index}")
        draw = rng.choices([kind for kind, _ in self.kinds], weights=[weight for _, weight in self.kinds])[0]
        return draw(rng)

    # -- tokens --

    def bad_token(self, rng: random.Random) -> bytes:
        """A token no route would take: a spoiled JWT or API key, or garbage."""
        return rng.choice([self.spoiled_jwt, self.spoiled_key, self.garbage])(rng)

    def spoiled_jwt(self, rng: random.Random) -> bytes:
        c = self.credentials
        good = c.jwt()
        choice = rng.randrange(16)
        if choice == 0:  # cut: at least the last 4 characters of the signature go
            return good[: rng.randrange(1, len(good) - 3)].encode()
        if choice == 1:  # one character changed, anywhere but the last (whose low bits may not count)
            at = rng.randrange(len(good) - 1)
            other = rng.choice([ch for ch in B64URL + "." if ch != good[at]])
            return (good[:at] + other + good[at + 1 :]).encode()
        if choice == 2:  # more signature than HS256 makes
            return (good + "".join(rng.choices(B64URL, k=rng.randint(1, 40)))).encode()
        if choice == 3:
            return c.jwt(secret=rng.randbytes(24).hex()).encode()  # another secret
        if choice == 4:
            return c.jwt(exp=c.issued_at - 3600).encode()
        if choice == 5:
            return c.jwt(aud="someone-else").encode()
        if choice == 6:
            return c.jwt(iss="https://evil.test").encode()
        if choice == 7:
            return c.jwt(exp=None).encode()  # exp is required
        if choice == 8:  # alg none, unsigned
            return (_b64(b'{"alg":"none","typ":"JWT"}') + "." + _b64(json.dumps(c.claims()).encode()) + ".").encode()
        if choice == 9:  # an algorithm the route does not allow, correctly signed
            return signed({"alg": "HS512"}, c.claims(), c.jwt_secret).encode()
        if choice == 10:  # a kid that is not a string (RFC 7515: it is one), correctly signed
            return c.jwt(header={"alg": "HS256", "kid": rng.choice([1, None, ["a"], {"k": 1}])}).encode()
        if choice == 11:  # a critical extension nobody supports, correctly signed
            return c.jwt(header={"alg": "HS256", "crit": rng.choice([["x-fuzz"], [], "b64", [1]])}).encode()
        if choice == 12:  # a huge header, signed with another secret
            header = {"alg": "HS256", "x": "a" * rng.randint(1000, 9000)}
            return c.jwt(header=header, secret=rng.randbytes(16).hex()).encode()
        if choice == 13:  # a header nested deeper than any parser's recursion
            depth = rng.randint(500, 4000)
            nested = b'{"alg":"HS256","x":' + b"[" * depth + b"]" * depth + b"}"
            return (_b64(nested) + "." + good.split(".")[1] + "." + good.split(".")[2]).encode()
        if choice == 14:  # a header that is not JSON, or not an object
            raw = rng.choice([b"\xff\xfe\x00", b"[]", b"1", b'"alg"', b"{", rng.randbytes(20)])
            return (_b64(raw) + "." + good.split(".", 1)[1]).encode()
        # the right segments in the wrong order, or too few, or too many
        parts = good.split(".")
        shuffled = rng.choice([parts[::-1], parts[:2], [*parts, parts[1]], [parts[0], "", parts[2]]])
        return ".".join(shuffled).encode()

    def spoiled_key(self, rng: random.Random) -> bytes:
        key = self.credentials.reader_key
        prefix, secret = key.rsplit("_", 1)
        choice = rng.randrange(6)
        if choice == 0:  # one character of the secret changed
            at = rng.randrange(len(secret))
            other = rng.choice([ch for ch in B64URL if ch != secret[at]])
            return f"{prefix}_{secret[:at]}{other}{secret[at + 1 :]}".encode()
        if choice == 1:
            return key[: rng.randrange(len(key))].encode() or b"kwt_"
        if choice == 2:
            return (key + "".join(rng.choices(B64URL, k=rng.randint(1, 10)))).encode()
        if choice == 3:  # an id the route does not know, with the reader's secret
            return f"kwt_fuzz-{rng.randrange(10**6)}_{secret}".encode()
        if choice == 4:  # a key id without a secret, a secret without an id
            return rng.choice([f"kwt_{READER_KEY}", f"kwt__{secret}", "kwt_", "kwt___"]).encode()
        return b"kwt_" + bytes(rng.choices(VALUE_BYTES, k=rng.randint(1, 200)))

    def garbage(self, rng: random.Random) -> bytes:
        choice = rng.randrange(5)
        if choice == 0:  # binary: anything a header value may hold
            return bytes(rng.choices(VALUE_BYTES, k=rng.randint(1, 600)))
        if choice == 1:
            return "".join(rng.choices(B64URL, k=rng.randint(1, 600))).encode()
        if choice == 2:
            return ".".join("".join(rng.choices(B64URL, k=rng.randint(0, 60))) for _ in range(3)).encode()
        if choice == 3:
            return rng.choice([b".", b"..", b"...", b"a.b.c", b"null", b"Bearer", b"kwt", b"\x80\xff"])
        return "é€ü".encode() * rng.randint(1, 50)  # UTF-8, read as latin-1

    # -- the kinds of handshake --

    def _bad_credential(self, kind: str, rng: random.Random, token: bytes) -> Case:
        placed = Placed().put(rng.choice(SOURCES), token, rng)
        data = head(placed.target(), placed.headers)
        statuses, may_close = answer_for_size(data, 401)
        return at_once(kind, data, statuses, may_close=may_close)

    def bad_jwt(self, rng: random.Random) -> Case:
        return self._bad_credential("bad jwt", rng, self.spoiled_jwt(rng))

    def bad_api_key(self, rng: random.Random) -> Case:
        return self._bad_credential("bad api key", rng, self.spoiled_key(rng))

    def no_credential(self, rng: random.Random) -> Case:
        extra = [(b"Sec-WebSocket-Protocol", SUBPROTOCOL)] if rng.randrange(2) else []
        query = rng.choice([b"", b"?access_tokens=x", b"?token=x", b"?Access_Token=x", b"?bearer=x"])
        return at_once("no credential", head(b"/kafka" + query, extra), {401})

    def wrong_scheme(self, rng: random.Random) -> Case:
        good = self.credentials.jwt().encode()
        value = rng.choice(
            [
                b"Basic " + base64.b64encode(b"user:" + good),
                b"Bearer",
                b"Bearer ",
                b"Token " + good,
                b"Bearer" + good,
                b"Digest username=x",
                good,
            ]
        )
        return at_once("wrong scheme", head(extra=[(b"Authorization", value)]), {401})

    def empty_token(self, rng: random.Random) -> Case:
        placed = Placed()
        choice = rng.randrange(3)
        if choice == 0:
            placed.query.append(b"access_token=")
        elif choice == 1:
            placed.headers.append((b"Sec-WebSocket-Protocol", SUBPROTOCOL + b", bearer."))
        else:
            placed.query.append(b"access_token")
        return at_once("empty token", head(placed.target(), placed.headers), {401})

    def two_credentials(self, rng: random.Random) -> Case:
        """Two credentials that differ (at least one bad, or one a good one of another principal)."""
        c = self.credentials
        good = rng.choice([c.jwt(), c.reader_key]).encode()
        other = rng.choice([self.bad_token(rng), c.jwt(sub="someone-else").encode(), c.stranger_key.encode()])
        pair = [good, other] if rng.randrange(2) else [other, good]
        placed = Placed()
        first, second = rng.choice([(a, b) for a in SOURCES for b in SOURCES])
        placed.put(first, pair[0], rng).put(second, pair[1], rng)
        if rng.randrange(3) == 0:
            placed.put(rng.choice(SOURCES), good, rng)  # the good one once more
        data = head(placed.target(), placed.headers)
        statuses, may_close = answer_for_size(data, 401)
        return at_once("two credentials", data, statuses, may_close=may_close)

    def not_allowed(self, rng: random.Random) -> Case:
        """A valid credential whose principal no rule of the route names: 403."""
        c = self.credentials
        token = rng.choice([c.jwt(scope="other:read"), c.jwt(scope=None), c.stranger_key]).encode()
        placed = Placed().put(rng.choice(SOURCES), token, rng)
        return at_once("no rights", head(placed.target(), placed.headers), {403})

    def huge_header(self, rng: random.Random) -> Case:
        size = rng.choice([1_000, 8_000, 15_000, MAX_REQUEST_HEAD - 300, MAX_REQUEST_HEAD, 20_000, 100_000, 1_000_000])
        if rng.randrange(5) == 0:  # a huge name
            header = (b"X-" + b"n" * size, b"v")
        else:
            name = rng.choice([b"X-Fuzz", b"Cookie", b"User-Agent", b"Sec-WebSocket-Protocol", b"Origin"])
            header = (name, bytes(rng.choices(VCHAR, k=size)))
        placed = Placed().put(rng.choice(SOURCES), self.bad_token(rng), rng) if rng.randrange(2) else Placed()
        data = head(placed.target(), [*placed.headers, header])
        statuses, may_close = answer_for_size(data, 401)
        return at_once("huge header", data, statuses, may_close=may_close)

    def many_headers(self, rng: random.Random) -> Case:
        count = rng.choice([100, 1_000, 2_000, 5_000, 20_000])
        same = rng.randrange(3)
        if same == 0:  # thousands of Authorization headers: more than one token, or not Bearer
            headers = [(b"Authorization", b"Bearer t%d" % (n % 7)) for n in range(count)]
        elif same == 1:
            headers = [(b"Sec-WebSocket-Protocol", b"p%d" % n) for n in range(count)]
        else:
            headers = [(b"X-F%d" % n, b"%d" % n) for n in range(count)]
        data = head(extra=headers)
        statuses, may_close = answer_for_size(data, 401)
        return at_once("many headers", data, statuses, may_close=may_close)

    def many_query_parameters(self, rng: random.Random) -> Case:
        count = rng.choice([1_000, 3_000, 5_000, 8_000, 50_000])
        choice = rng.randrange(3)
        if choice == 0:  # thousands of access_token parameters, all bad, mostly different
            params = [b"access_token=%d" % (n % 11) for n in range(count)]
        elif choice == 1:  # a bad token among thousands of others
            params = [b"&" if n % 2 else b"p=" for n in range(count)]
            params.append(Placed().put("query", self.bad_token(rng), rng).query[0])
        else:  # percent-encoded binary
            params = [b"%02x=%s" % (n % 256, quote_from_bytes(rng.randbytes(3)).encode()) for n in range(count)]
        rng.shuffle(params)
        data = head(b"/kafka?" + b"&".join(params))
        statuses, may_close = answer_for_size(data, 401)
        return at_once("many query parameters", data, statuses, may_close=may_close)

    def long_path(self, rng: random.Random) -> Case:
        size = rng.choice([1_000, 10_000, MAX_REQUEST_HEAD - 400, 17_000, 100_000])
        choice = rng.randrange(3)
        if choice == 0:  # a route's path, then more: not the route
            target, status = b"/kafka/" + b"a" * size, 404
        elif choice == 1:
            target, status = b"/" + bytes(rng.choices(b"abcdefghijklmnopqrstuvwxyz/%.-_~", k=size)), 404
        else:  # the route, and a query this long
            target, status = b"/kafka?x=" + b"y" * size, 401
        data = head(target)
        statuses, may_close = answer_for_size(data, status)
        return at_once("long path", data, statuses, may_close=may_close)

    def non_ascii(self, rng: random.Random) -> Case:
        """Bytes over 0x7f where HTTP allows them (header values: 401, no credential) and where not (400).

        In a header the WebSocket handshake reads, 400 for the malformed handshake may come first.
        """
        high = bytes(rng.choices(range(0x80, 0x100), k=rng.randint(1, 40)))
        choice = rng.randrange(8)
        if choice == 0:
            return at_once("non-ascii", head(extra=[(b"X-Name", b"caf" + high)]), {401})
        if choice == 1:
            return at_once("non-ascii", head(replace={b"Host": high}), {400, 401})
        if choice == 2:
            extra = [(b"Sec-WebSocket-Protocol", high + b", " + SUBPROTOCOL)]
            return at_once("non-ascii", head(extra=extra), {400, 401})
        if choice == 3:
            return at_once("non-ascii", head(extra=[(b"Authorization", high + b" " + high)]), {401})
        if choice == 4:
            return at_once("non-ascii", head(replace={b"Connection": b"Upgrade, " + high}), {400, 401})
        if choice == 5:  # in the request target
            return at_once("non-ascii", head(b"/kafka?access_token=" + high), {400})
        if choice == 6:  # in a header's name
            return at_once("non-ascii", head(extra=[(b"X-" + high, b"v")]), {400})
        return at_once("non-ascii", head(method=b"G" + high + b"T"), {400})

    def not_http(self, rng: random.Random) -> Case:
        """Heads that are not an HTTP/1.1 request, or not a WebSocket upgrade: 400 (404 off the routes)."""
        good = self.credentials.jwt().encode()
        auth = (b"Authorization", b"Bearer " + good)  # a good credential does not make a bad request good
        choice = rng.randrange(16)
        if choice == 0:
            return at_once("not http", rng.randbytes(rng.randint(1, 3000)) + b"\r\n\r\n", {400})
        if choice == 1:  # the start of a TLS ClientHello
            hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + rng.randbytes(200)
            return at_once("not http", hello + b"\r\n\r\n", {400})
        if choice == 2:
            version = rng.choice([b"HTTP/2.0", b"HTTP/1.x", b"HTTP", b"FTP/1.1"])
            # HTTP/2.0 in HTTP/1 syntax may be refused (400, 505), or taken as HTTP/1 and asked for a credential.
            return at_once("not http", head(version=version), {400, 401, 505} if version == b"HTTP/2.0" else {400})
        if choice == 3:
            data = head().replace(b"Upgrade: websocket", b"Upgrade websocket")  # a line without a colon
            return at_once("not http", data, {400})
        if choice == 4:
            return at_once("not http", head().replace(b"Upgrade:", b"Upgrade :"), {400})
        if choice == 5:  # obs-fold: refused, or unfolded into a space (RFC 9112, 5.2); then no credential
            return at_once("not http", head(extra=[(b"X-Fold", b"a\r\n b")]), {400, 401})
        if choice == 6:
            return at_once("not http", head(extra=[(b"X-Nul", b"a\x00b")]), {400})
        if choice == 7:
            return at_once("not http", head(drop=[b"Host"], extra=[auth]), {400})
        if choice == 8:
            return at_once("not http", head(extra=[(b"Content-Length", b"abc")]), {400})
        if choice == 9:
            return at_once("not http", head(extra=[(b"Transfer-Encoding", b"gzip"), auth]), {400})
        if choice == 10:  # not an upgrade, on the route
            return at_once("not http", head(drop=[b"Upgrade", b"Connection"], extra=[auth]), {400})
        if choice == 11:
            return at_once("not http", head(method=rng.choice([b"POST", b"PUT", b"HEAD", b"OPTIONS"])), {400})
        if choice == 12:  # an upgrade, off the routes
            return at_once("not http", head(rng.choice([b"/", b"/kafk", b"/kafka/", b"/KAFKA", b"//kafka"])), {404})
        if choice == 13:
            return at_once("not http", head(target=b"*"), {404})
        if choice == 14:  # a request line only, one of many
            return at_once("not http", b"GET /kafka HTTP/1.1\r\n" * rng.randint(2, 50) + b"\r\n", {400})
        return at_once("not http", b"\r\n" * rng.randint(1, 20) + b"GARBAGE\r\n\r\n", {400})

    def cut_short(self, rng: random.Random) -> Case:
        """A head the client stops sending half-way, then ends its side of the stream: 400."""
        placed = Placed().put(rng.choice(SOURCES), self.bad_token(rng), rng) if rng.randrange(2) else Placed()
        data = head(placed.target(), placed.headers)
        cut = data[: rng.randrange(len(data) - 1)]
        return Case("cut short", ((0.0, cut),), frozenset({400}), half_close=True)

    def admitted_but_not_websocket(self, rng: random.Random) -> Case:
        """A good credential, and a head the WebSocket handshake refuses: 400 (426 for a wrong version)."""
        c = self.credentials
        placed = Placed().put(rng.choice(SOURCES), rng.choice([c.jwt(), c.jwt(), c.reader_key]).encode(), rng)
        high = bytes(rng.choices(range(0x80, 0x100), k=rng.randint(1, 20)))
        choice = rng.randrange(8)
        if choice == 0:
            data = head(placed.target(), placed.headers, drop=[b"Sec-WebSocket-Key"])
        elif choice == 1:
            data = head(placed.target(), placed.headers, replace={b"Sec-WebSocket-Version": b"12"})
            return at_once("admitted, not websocket", data, {426})
        elif choice == 2:
            data = head(placed.target(), placed.headers, replace={b"Upgrade": b"websocket, " + high})
        elif choice == 3:
            data = head(placed.target(), [*placed.headers, (b"Sec-WebSocket-Protocol", b"chat, " + high)])
        elif choice == 4:
            data = head(placed.target(), [*placed.headers, (b"Sec-WebSocket-Extensions", high)])
        elif choice == 5:
            data = head(placed.target(), placed.headers, replace={b"Connection": b"Upgrade, " + high})
        elif choice == 6:
            data = head(placed.target(), placed.headers, replace={b"Host": high})
        else:  # ASCII, but not a host name IDNA can read
            data = head(placed.target(), placed.headers, replace={b"Host": rng.choice([b"xn--", b"xn--zz", b"a.xn--"])})
        return at_once("admitted, not websocket", data, {400})

    def slow_in_time(self, rng: random.Random) -> Case:
        """A bad credential sent in pieces, all of them well within the deadline: 401."""
        placed = Placed().put(rng.choice(SOURCES), self.bad_token(rng), rng)
        data = head(placed.target(), placed.headers)
        cuts = sorted(rng.sample(range(1, len(data)), rng.randint(1, 5)))
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        pause = HANDSHAKE_TIMEOUT * 0.3 / len(pieces)
        return Case("slow, in time", tuple((pause, piece) for piece in pieces), allowed(data, {401}))

    def stalled(self, rng: random.Random) -> Case:
        """Part of a head, then nothing: closed at the deadline."""
        data = head(Placed().put(rng.choice(SOURCES), self.bad_token(rng), rng).target())
        return Case("stalled", ((0.0, data[: rng.randrange(1, len(data) - 1)]),), frozenset(), may_close=True)

    def trickling(self, rng: random.Random) -> Case:
        """A head sent a few bytes at a time, slower than the deadline allows: closed at the deadline."""
        placed = Placed().put(rng.choice(SOURCES), self.bad_token(rng), rng)
        data = head(placed.target(), placed.headers)
        step = rng.randint(1, 4)
        pieces = [data[at : at + step] for at in range(0, len(data), step)]
        pause = rng.uniform(0.05, HANDSHAKE_TIMEOUT / 3)
        # Enough pieces to outlast the deadline twice over; a head that would end in time is cut there.
        needed = int(2 * HANDSHAKE_TIMEOUT / pause) + 1
        pieces = pieces[:needed] if len(pieces) > needed else pieces[:-1]  # never the whole head
        return Case("trickling", tuple((pause, piece) for piece in pieces), frozenset(), may_close=True)

    def silent(self, rng: random.Random) -> Case:
        return Case("silent", (), frozenset(), may_close=True)


# --------------------------------------------------------------- running them


@attrs.frozen
class Outcome:
    """What a fuzzed handshake got: a status, a close, or neither (``silent``) within the limit."""

    status: int | None
    closed: bool
    silent: bool
    elapsed: float
    answer: bytes


async def _send_steps(stream: trio.SocketStream, case: Case) -> None:
    try:
        for pause, data in case.steps:
            if pause:
                await trio.sleep(pause)
            await stream.send_all(data)
        if case.half_close:
            await stream.send_eof()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the proxy answered or closed: the receiving side tells which


async def exchange(port: int, case: Case) -> Outcome:
    """Send ``case`` while reading the answer, until the answer's head, the end of the stream, or the limit."""
    started = trio.current_time()
    answer = bytearray()
    closed = False
    with trio.move_on_after(HANDSHAKE_TIMEOUT + SLACK) as limit:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream, trio.open_nursery() as nursery:
            nursery.start_soon(_send_steps, stream, case)
            while b"\r\n\r\n" not in answer and len(answer) < ANSWER_LIMIT:
                try:
                    chunk = await stream.receive_some()
                except trio.BrokenResourceError:  # reset
                    chunk = b""
                if not chunk:
                    closed = True
                    break
                answer += chunk
            nursery.cancel_scope.cancel()
    elapsed = trio.current_time() - started
    match = STATUS_LINE.match(bytes(answer.split(b"\r\n", 1)[0])) if b"\r\n" in answer else None
    return Outcome(int(match[1]) if match else None, closed, limit.cancelled_caught, elapsed, bytes(answer[:200]))


def judge(case: Case, outcome: Outcome) -> str | None:
    """What is wrong with ``outcome`` as the proxy's answer to ``case``; None when nothing is."""
    if outcome.status == 101:
        return "got in: 101 Switching Protocols"
    if outcome.silent or outcome.elapsed > HANDSHAKE_TIMEOUT + SLACK:
        return f"neither answered nor closed within {HANDSHAKE_TIMEOUT + SLACK:.1f}s (got {outcome.answer!r})"
    if outcome.status is not None:
        if outcome.status in case.statuses:
            return None
        return f"answered {outcome.status}, expected {sorted(case.statuses)}: {outcome.answer!r}"
    if outcome.answer:
        return f"answered with something that is not an HTTP status line: {outcome.answer!r}"
    if case.may_close or outcome.elapsed >= AT_THE_DEADLINE:
        return None  # a client too slow, or one the proxy stopped reading; or the deadline passed
    return f"closed after {outcome.elapsed:.2f}s without an answer (expected {sorted(case.statuses)})"


@attrs.define
class Tally:
    seed: int
    sent: int = 0
    slowest: float = 0.0
    kinds: Counter[str] = attrs.Factory(Counter)
    outcomes: Counter[str] = attrs.Factory(Counter)
    problems: list[str] = attrs.Factory(list)
    problem_kinds: Counter[str] = attrs.Factory(Counter)

    def record(self, index: int, case: Case, outcome: Outcome) -> None:
        self.sent += 1
        self.kinds[case.kind] += 1
        self.outcomes[str(outcome.status) if outcome.status is not None else "closed"] += 1
        self.slowest = max(self.slowest, outcome.elapsed)
        problem = judge(case, outcome)
        if problem is not None:
            self.problem_kinds[case.kind] += 1
            sent = case.sent
            shown = sent[:300] + (b"..." if len(sent) > 300 else b"")
            self.problems.append(f"#{index} {case.kind} ({len(sent)} bytes): {problem}\n    sent: {shown!r}")


async def fuzz_worker(port: int, generator: Generator, indexes: Iterator[int], tally: Tally) -> None:
    for index in indexes:  # shared with the other workers: each index runs once
        case = generator.case(index)
        tally.record(index, case, await exchange(port, case))


@attrs.define
class Control:
    """The well-behaved client: a session with each good credential in each place, in turn."""

    url: str
    credentials: Credentials
    topic: str
    sessions: int = 0
    slowest: float = 0.0
    #: Set to end :meth:`run` after its current session (not cancelled: every session it opens is counted).
    stop: trio.Event = attrs.Factory(trio.Event)

    async def session(self, token: str, source: str) -> None:
        url, options = self.url, {}
        if source == "header":
            options = {"token": token}
        elif source == "query":
            url = f"{self.url}?access_token={quote(token, safe='')}"
        else:
            options = {"subprotocols": [SUBPROTOCOL.decode(), f"bearer.{token}"]}
        started = trio.current_time()
        with trio.fail_after(WAIT):
            async with open_client(url, request_timeout=WAIT, connect_timeout=WAIT, **options) as client:
                self.sessions += 1
                assert await client.ping(b"control") == b"control"
                assert await client.list_offset(self.topic, 0, -1) == 2
                assert [r.value for r in await client.fetch(self.topic, 0, 0)] == [b"one", b"two"]
        self.slowest = max(self.slowest, trio.current_time() - started)

    async def every_way(self) -> None:
        """One session with each good credential (the reader's API key, a JWT) from each source."""
        for token in (self.credentials.jwt(), self.credentials.reader_key):
            for source in SOURCES:
                await self.session(token, source)

    async def run(self) -> None:
        """Sessions one after another, until :attr:`stop` is set."""
        while not self.stop.is_set():
            await self.every_way()
            with trio.move_on_after(0.05):
                await self.stop.wait()


@pytest.mark.timeout(mode().limit(120, 1800))
async def test_fuzzed_handshakes_never_get_in_and_are_answered_within_the_deadline(
    kafka_broker: KafkaBroker, credentials: Credentials, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="kafka_ws_trio")
    seed = int(os.environ.get("RELIABILITY_SEED") or random.randrange(2**32))
    # First thing, so that pytest shows it with any failure, an exception included.
    print(f"\nhandshake fuzz: RELIABILITY_SEED={seed} replays this run")
    generator = Generator(seed, credentials)
    tally = Tally(seed)
    started = trio.current_time()
    async with trio.open_nursery() as outer:
        server: ProxyServer = await outer.start(serve_proxy, secured_config(kafka_broker, credentials, topic))
        control = Control(f"{server.url}/kafka", credentials, topic)
        await control.every_way()  # works before
        before = control.sessions
        async with trio.open_nursery() as nursery:
            nursery.start_soon(control.run)
            indexes = iter(range(HANDSHAKES))
            async with trio.open_nursery() as workers:
                for _ in range(IN_FLIGHT):
                    workers.start_soon(fuzz_worker, server.port, generator, indexes, tally)
            during = control.sessions - before
            control.stop.set()  # it ends after the session it is in
        await control.every_way()  # and after
        statistics = server.statistics()
        outer.cancel_scope.cancel()
    elapsed = trio.current_time() - started
    print(
        f"\nhandshake fuzz (seed {seed}): {tally.sent} handshakes in {elapsed:.1f}s, slowest outcome "
        f"{tally.slowest:.2f}s; kinds {dict(tally.kinds)}; outcomes {dict(tally.outcomes)}; "
        f"control sessions {control.sessions} ({during} during the fuzzing), slowest {control.slowest:.2f}s"
    )
    problems, shown = len(tally.problems), "\n".join(tally.problems[:PROBLEMS_SHOWN])
    assert problems == 0, f"seed {seed}: {problems} problems {dict(tally.problem_kinds)}, the first ones:\n{shown}"
    assert tally.sent == HANDSHAKES
    assert during > 0, "the control client opened no session while the fuzzing went on"
    # None got in: the proxy's only sessions were the control client's.
    assert statistics.sessions_total == control.sessions, statistics
    errors = [r for r in caplog.records if r.name.startswith("kafka_ws_trio") and r.levelno >= logging.ERROR]
    assert not errors, f"seed {seed}: the proxy logged errors:\n" + "\n".join(
        f"{r.getMessage()} {r.exc_info[1]!r}" if r.exc_info else r.getMessage() for r in errors[:PROBLEMS_SHOWN]
    )
    logged = "\n".join(f"{r.getMessage()} {getattr(r, 'target', '')}" for r in caplog.records)
    leaked = [n for n, hidden in enumerate(credentials.secrets_to_hide()) if hidden in logged]
    assert not leaked, f"secrets {leaked} of Credentials.secrets_to_hide() appear in the proxy's log"
