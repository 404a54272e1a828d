"""Who may open a WebSocket session on a route: the handshake's checks, answered as HTTP before the upgrade.

In order: the browser's ``Origin`` (403), the credential (401), whether the
route's rules name the principal at all (403), on a route that maps
principals to Kafka logins whether the principal has one (403), and the
principal's connection quotas (429, with ``Retry-After``). Checking the credential is the one costly
step (an API key is one scrypt, tens of milliseconds), so it runs in a thread,
bounded by the server's limiter of handshake threads. Each refusal is written to
the audit log (``kafka_ws_trio.audit``) with the route, the peer, the
principal when known, and the reason; never the token.
"""

from __future__ import annotations

import logging
import math
from http import HTTPStatus
from typing import Final

import attrs
import trio

from .._auth import CredentialError, Principal, redact_target
from .._auth._kafka_logins import KafkaLogins, NoKafkaLogin
from .._auth._route import RouteAccess, Unauthorized
from .._config._access import KafkaLogin
from .._config._defaults import ANONYMOUS
from ._head import RequestHead, Respond

audit: Final = logging.getLogger("kafka_ws_trio.audit")

#: What a 401 says about how to authenticate (RFC 6750).
ANONYMOUS_PRINCIPAL: Final = Principal(ANONYMOUS)
_CHALLENGE: Final = (("WWW-Authenticate", 'Bearer realm="kafka-ws-trio"'),)


@attrs.frozen
class Admitted:
    """The handshake may go on: the session's principal and the subprotocols offered besides tokens."""

    principal: Principal
    subprotocols: tuple[str, ...]
    #: The Kafka login the session uses; None: the route's own connection.
    kafka_login: KafkaLogin | None = None


def _refuse(status: int, reason: str, route: str, peer: str, target: str, principal: str | None = None) -> Respond:
    audit.warning(
        "handshake refused (%d %s) on %s from %s as %s: %s",
        status,
        HTTPStatus(status).phrase,
        route,
        peer,
        principal or "-",
        reason,
        extra={"event": "handshake_refused", "route": route, "target": redact_target(target)},
    )
    headers = _CHALLENGE if status == HTTPStatus.UNAUTHORIZED else ()
    return Respond(status, f"{HTTPStatus(status).phrase.lower()}: {reason}\n".encode(), headers)


async def admit_client(
    access: RouteAccess,
    request: RequestHead,
    peer: str,
    limiter: trio.CapacityLimiter,
    logins: KafkaLogins | None = None,
) -> Admitted | Respond:
    """Run the handshake's checks for ``access``'s route; the caller bounds the time they take.

    ``logins``: the route's principal-to-Kafka-login map, when it has one.
    An admitted principal counts as connected (``access.opened``) until the caller calls ``access.closed``.
    """
    route, target = access.uri, request.target
    refused = access.origin_refused(request.headers)
    if refused is not None:
        return _refuse(HTTPStatus.FORBIDDEN, refused, route, peer, target)
    try:
        credential, subprotocols = access.credential(target, request.headers)
    except CredentialError as exc:
        return _refuse(HTTPStatus.UNAUTHORIZED, str(exc), route, peer, target)
    if access.open and logins is None:
        access.opened(ANONYMOUS_PRINCIPAL)
        return Admitted(ANONYMOUS_PRINCIPAL, subprotocols)  # a credential is not looked at where none is needed
    try:
        principal = await trio.to_thread.run_sync(access.authenticate, credential, limiter=limiter)
    except Unauthorized as exc:
        return _refuse(HTTPStatus.UNAUTHORIZED, str(exc), route, peer, target)
    if not access.admits(principal):
        return _refuse(HTTPStatus.FORBIDDEN, "not allowed on this route", route, peer, target, principal.name)
    login = None
    if logins is not None:
        try:
            login = await trio.to_thread.run_sync(logins.login, principal.name, limiter=limiter)
        except NoKafkaLogin as exc:
            return _refuse(HTTPStatus.FORBIDDEN, str(exc), route, peer, target, principal.name)
    over = access.connection_refused(principal, trio.current_time())
    if over is not None:
        quota, wait = over
        response = _refuse(
            HTTPStatus.TOO_MANY_REQUESTS, f"quota exceeded ({quota})", route, peer, target, principal.name
        )
        return attrs.evolve(response, headers=(("Retry-After", str(max(1, math.ceil(wait)))),))
    access.opened(principal)  # counted from here, so that handshakes at once cannot pass the quota together
    return Admitted(principal, subprotocols, login)


def refuse_no_room(route: str, peer: str, target: str, principal: str) -> Respond:
    """503 for an admitted client whose Kafka login finds every place of the route's pool in use."""
    return _refuse(
        HTTPStatus.SERVICE_UNAVAILABLE,
        "every Kafka login place of this route is in use (kafka_credentials.max_identities); try again later",
        route,
        peer,
        target,
        principal,
    )
