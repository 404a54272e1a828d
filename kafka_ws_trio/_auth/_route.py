"""A route's access control, built from its config: who a handshake is, and what the session may then do.

The server asks, before the upgrade:

1. :meth:`RouteAccess.origin_refused`: a browser's ``Origin`` not allowed (403);
2. :meth:`RouteAccess.credential`: the handshake's token (PROTOCOL.md 5.6);
3. :meth:`RouteAccess.authenticate`: the principal the token names, or
   :class:`Unauthorized` (401). CPU-bound (an API key costs one scrypt), so the
   server runs it in a thread; it also reads a JWKS file again when it changed;
4. :meth:`RouteAccess.admits`: whether any ACL rule names the principal (403);
5. :meth:`RouteAccess.connection_refused`: the principal's connection quotas.

and then hands the session a :class:`SessionAccess`, which the connection
asks before each command (``_proto._access``).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from .._config import RouteConfig
from .._config._access import QuotaConfig
from .._config._defaults import ANONYMOUS
from .._proto._access import AccessOperation
from ._acl import Acl, AclRule, Operation, Pattern, Principal
from ._credentials import Credential, find_credential
from ._jwt import JwtSettings, JwtVerifier, TokenRefused
from ._keys import KEY_PREFIX, ApiKeys, KeyEntry
from ._quotas import Quota, Quotas, RetryWatch, TokenBucket

#: The quota names, as :class:`Quotas` keys them (and as refusals and logs name them).
CONNECTIONS_PER_SECOND: Final = "connections_per_second"
PRODUCE_RECORDS: Final = "produce_records_per_second"
PRODUCE_BYTES: Final = "produce_bytes_per_second"
CONSUME_BYTES: Final = "consume_bytes_per_second"
_RATES: Final = (CONNECTIONS_PER_SECOND, PRODUCE_RECORDS, PRODUCE_BYTES, CONSUME_BYTES)


class Unauthorized(Exception):
    """No valid credential (answered 401); the message is the reason, and never holds a secret."""


def _quotas(config: QuotaConfig | None) -> Quotas | None:
    if config is None:
        return None
    named = {}
    for name in _RATES:
        rate = getattr(config, name)
        if rate is not None:
            named[name] = Quota(rate, max(1.0, rate * config.burst_seconds))
    return Quotas(named, config.max_principals) if named else None


class _JwksFile:
    """A JWKS file's keys, read again when the file's size or modification time changes."""

    def __init__(self, path: str, build: Callable[[dict[str, Any] | None], JwtVerifier]) -> None:
        self._path = path
        self._build = build
        self._seen: tuple[int, int] | None = None
        self.verifier = self._load()

    def _stamp(self) -> tuple[int, int]:
        stat = os.stat(self._path)
        return stat.st_mtime_ns, stat.st_size

    def _load(self) -> JwtVerifier:
        stamp = self._stamp()
        verifier = self._build(json.loads(Path(self._path).read_bytes()))
        self._seen = stamp
        return verifier

    def current(self) -> JwtVerifier:
        """The verifier of the file as it is now; the last good one if it changed into something unreadable."""
        try:
            if self._stamp() != self._seen:
                self.verifier = self._load()
        except (OSError, ValueError):
            pass  # keep the keys we have: a file half-written by a deploy must not lock everyone out
        return self.verifier


class _Jwt:
    """A route's token verifier, from its ``jwt`` table."""

    def __init__(self, route: RouteConfig) -> None:
        config = route.jwt
        assert config is not None
        settings = JwtSettings(
            algorithms=config.algorithms,
            issuer=config.issuer,
            audience=config.audience,
            leeway=config.leeway,
            principal_claim=config.principal_claim,
            rights_claims=config.rights_claims,
        )
        secret = config.secret.reveal().encode() if config.secret is not None else None
        public_keys = [Path(path).read_bytes() for path in config.public_key_files]

        def build(jwks: dict[str, Any] | None) -> JwtVerifier:
            return JwtVerifier(settings, secret=secret, public_keys=public_keys, jwks=jwks)

        self._jwks = _JwksFile(config.jwks_file, build) if config.jwks_file is not None else None
        self._fixed = build(None) if self._jwks is None else None

    def verify(self, token: str) -> Principal:
        verifier = self._jwks.current() if self._jwks is not None else self._fixed
        assert verifier is not None
        return verifier.verify(token)


def _acl(route: RouteConfig) -> Acl | None:
    if route.acl is None:
        return None
    return Acl(
        AclRule(
            who=rule.principals,
            operations=frozenset(Operation(name) for name in rule.operations),
            topics=tuple(Pattern(text) for text in rule.topics),
            groups=tuple(Pattern(text) for text in rule.groups),
        )
        for rule in route.acl
    )


class RouteAccess:
    """The access control of one route (see the module's docstring for the order the server asks in)."""

    def __init__(self, route: RouteConfig, default_origins: Sequence[str] = ()) -> None:
        self.uri = route.uri
        self.methods = frozenset(route.auth)
        #: The route's own list, else the server's.
        self.allowed_origins = frozenset(origin.lower() for origin in route.allowed_origins or default_origins)
        self._keys = (
            ApiKeys(KeyEntry(key.id, key.principal, key.hash) for key in route.api_keys) if route.api_keys else None
        )
        self._jwt = _Jwt(route) if route.jwt is not None else None
        self.acl = _acl(route)
        self.quotas = _quotas(route.quotas)
        self.max_connections = route.quotas.connections if route.quotas is not None else None
        #: Open sessions per principal, for the ``connections`` quota (only principals with one open).
        self._open: Counter[str] = Counter()

    @property
    def open(self) -> bool:
        """Whether the route takes clients without a credential, lets them do everything (no ACL), with no quota."""
        return self.methods == {"none"} and self.acl is None and self.quotas is None and self.max_connections is None

    @property
    def paces_consumers(self) -> bool:
        """Whether the route has a ``consume_bytes_per_second`` quota."""
        return self.quotas is not None and CONSUME_BYTES in self.quotas.quotas

    def origin_refused(self, headers: Sequence[tuple[bytes, bytes]]) -> str | None:
        """Why the handshake's ``Origin`` is not allowed, or None (no list, no Origin, or a listed one)."""
        if not self.allowed_origins:
            return None
        origins = [value.decode("latin-1").strip().lower() for name, value in headers if name.lower() == b"origin"]
        if not origins:
            return None  # not a browser: nothing to hijack (a browser always sends Origin on a WebSocket)
        if len(origins) == 1 and origins[0] in self.allowed_origins:
            return None
        return "origin not allowed"

    def credential(
        self, target: str, headers: Sequence[tuple[bytes, bytes]]
    ) -> tuple[Credential | None, tuple[str, ...]]:
        """The handshake's credential and the subprotocols it offers besides tokens (raises CredentialError)."""
        return find_credential(target, headers)

    def authenticate(self, credential: Credential | None) -> Principal:
        """The principal ``credential`` names (CPU-bound: call it in a thread).

        Raises:
            Unauthorized: no credential where one is needed, or one that is not valid here.
        """
        if credential is None:
            if "none" in self.methods:
                return Principal(ANONYMOUS)
            raise Unauthorized("a credential is required")
        token = credential.token
        if self._keys is not None and token.startswith(KEY_PREFIX):
            name = self._keys.principal(token)
            if name is None:
                raise Unauthorized("invalid API key")
            return Principal(name)
        if self._jwt is not None:
            try:
                return self._jwt.verify(token)
            except TokenRefused as exc:
                raise Unauthorized(str(exc)) from None
        if self._keys is not None:
            self._keys.principal(token)  # the same cost as a key with a known prefix
            raise Unauthorized("invalid API key")
        raise Unauthorized("this route takes no credentials")

    def admits(self, principal: Principal) -> bool:
        """Whether some rule of the route names ``principal`` (with no ACL, everyone admitted)."""
        if self.acl is None:
            return True
        return any(rule.names(principal) for rule in self.acl.rules)

    def connection_refused(self, principal: Principal, now: float) -> tuple[str, float] | None:
        """The quota a new session of ``principal`` is over, and the seconds until it is not; None: it may open."""
        if self.max_connections is not None and self._open[principal.name] >= self.max_connections:
            return "connections", 1.0
        bucket = self._bucket(principal, CONNECTIONS_PER_SECOND, now)
        if bucket is not None:
            wait = bucket.try_take(1, now)
            if wait > 0:
                return CONNECTIONS_PER_SECOND, wait
        return None

    def opened(self, principal: Principal) -> None:
        """Count a session of ``principal`` as open (only with a ``connections`` quota)."""
        if self.max_connections is not None:
            self._open[principal.name] += 1

    def closed(self, principal: Principal) -> None:
        if self.max_connections is None:
            return
        self._open[principal.name] -= 1
        if self._open[principal.name] <= 0:
            del self._open[principal.name]

    def _bucket(self, principal: Principal, name: str, now: float) -> TokenBucket | None:
        return self.quotas.bucket(principal.name, name, now) if self.quotas is not None else None

    def session_access(self, principal: Principal, clock: Callable[[], float]) -> SessionAccess:
        return SessionAccess(self, principal, clock)


class SessionAccess:
    """One session's rights and quotas: what its connection asks before each command (``_proto.Access``)."""

    __slots__ = ("_clock", "_retry", "_route", "principal")

    def __init__(self, route: RouteAccess, principal: Principal, clock: Callable[[], float]) -> None:
        self._route = route
        self._clock = clock
        self.principal = principal
        #: When the client was last told to retry; made at the session's first quota refusal.
        self._retry: RetryWatch | None = None

    def allows(self, operation: AccessOperation, topic: str, group: str | None = None) -> bool:
        acl = self._route.acl
        return acl is None or acl.allows(self.principal, Operation(operation), topic, group)

    def produce_wait(self, records: int, size: int) -> float:
        now = self._clock()
        taken: list[tuple[TokenBucket, float]] = []
        for name, amount in ((PRODUCE_RECORDS, records), (PRODUCE_BYTES, size)):
            bucket = self._route._bucket(self.principal, name, now)
            if bucket is None:
                continue
            # A command larger than the bucket waits for a full bucket, then takes it all and owes the rest.
            wait = bucket.try_take(min(amount, bucket.quota.burst), now)
            if wait > 0:
                for earlier, took in taken:
                    earlier.tokens += took
                if self._retry is None:
                    self._retry = RetryWatch()
                self._retry.refused(wait, now)
                return wait
            if amount > bucket.quota.burst:
                bucket.charge(amount - bucket.quota.burst, now)
            taken.append((bucket, amount))
        return 0.0

    def quota_hold(self) -> float:
        """The seconds the session should take no further command, after a produce quota refusal.

        0.0 unless the last refusal came before the time the one before it told the
        client to retry (see :class:`RetryWatch`); then until the last refusal's time.
        """
        return self._retry.hold(self._clock()) if self._retry is not None else 0.0

    def consume_wait(self, size: int) -> float:
        """Charge ``size`` delivered bytes to the consume quota: the seconds to wait before delivering more."""
        now = self._clock()
        bucket = self._route._bucket(self.principal, CONSUME_BYTES, now)
        return bucket.charge(size, now) if bucket is not None else 0.0

    @property
    def expires_at(self) -> float | None:
        return self.principal.expires_at
