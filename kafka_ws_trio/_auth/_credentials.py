"""Where a WebSocket handshake carries its credential (PROTOCOL.md 5.6), and keeping it out of logs.

A browser cannot set headers on a WebSocket, so a token is taken from any of:

- the header ``Authorization: Bearer TOKEN``;
- the query parameter ``access_token=TOKEN``;
- a subprotocol ``bearer.TOKEN`` offered beside a real subprotocol, which the
  server then selects (the token subprotocol itself is never echoed).

The same token in more than one place is one credential; two different ones
are refused, so that a proxy in front cannot smuggle a second identity in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

import attrs

#: The query parameter a token may come in (OAuth 2.0's name for it, RFC 6750).
ACCESS_TOKEN_PARAMETER: Final = "access_token"
#: The prefix of a subprotocol that carries a token.
BEARER_SUBPROTOCOL_PREFIX: Final = "bearer."
#: What a redacted token reads as in logs.
REDACTED: Final = "REDACTED"

#: Where a credential came from: the handshake's three places, or a CmdAuth in the session ("command").
Source = Literal["header", "query", "subprotocol", "command"]


class CredentialError(Exception):
    """The handshake's credential cannot be used at all (answered 401); the message names no secret."""


@attrs.frozen
class Credential:
    """A token from a handshake, and where it came from (the first place, when it came in several)."""

    token: str = attrs.field(repr=False)
    source: Source

    def __repr__(self) -> str:
        return f"<Credential from the {self.source}>"


def _header_values(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> list[str]:
    return [value.decode("latin-1") for key, value in headers if key.lower() == name]


def find_credential(target: str, headers: Sequence[tuple[bytes, bytes]]) -> tuple[Credential | None, tuple[str, ...]]:
    """The credential a handshake carries (None: none), and the subprotocols it offers besides tokens.

    ``target`` is the request target (path and query); ``headers`` the request's headers as
    (name, value) bytes. The subprotocols returned are the ones a server may choose among:
    a ``bearer.`` one is never echoed.

    Raises:
        CredentialError: an ``Authorization`` header that is not ``Bearer``, an empty token, or
        two different tokens.
    """
    found: list[tuple[str, Source]] = []
    for value in _header_values(headers, b"authorization"):
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() != "bearer":
            raise CredentialError("the Authorization header must be 'Bearer <token>'")
        found.append((token.strip(), "header"))
    for name, value in parse_qsl(urlsplit(target).query, keep_blank_values=True):
        if name == ACCESS_TOKEN_PARAMETER:
            found.append((value, "query"))
    offered: list[str] = []
    for value in _header_values(headers, b"sec-websocket-protocol"):
        for protocol in (part.strip() for part in value.split(",")):
            if protocol.startswith(BEARER_SUBPROTOCOL_PREFIX):
                found.append((protocol.removeprefix(BEARER_SUBPROTOCOL_PREFIX), "subprotocol"))
            elif protocol:
                offered.append(protocol)
    if not found:
        return None, tuple(offered)
    if any(not token for token, _ in found):
        raise CredentialError("an empty token")
    if len({token for token, _ in found}) > 1:
        raise CredentialError("more than one token, and they differ")
    token, source = found[0]
    return Credential(token, source), tuple(offered)


def redact_target(target: str) -> str:
    """``target`` with the value of every ``access_token`` parameter replaced, for logs."""
    parts = urlsplit(target)
    if not parts.query:
        return target
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if not any(name == ACCESS_TOKEN_PARAMETER for name, _ in pairs):
        return target
    query = "&".join(
        f"{quote(name, safe='')}={REDACTED if name == ACCESS_TOKEN_PARAMETER else quote(value, safe='')}"
        for name, value in pairs
    )
    return urlunsplit(parts._replace(query=query))
