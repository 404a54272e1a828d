"""The Kafka sides of a route whose principals reach Kafka with logins of their own (``kafka_credentials``).

Each login gets a :class:`KafkaUpstream` of its own, so that every request
made for a caller (metadata, fetches, produce, transactions, group
membership) carries the caller's SASL identity, and Kafka's ACLs and quotas
apply to it. Readers are then shared only among the sessions of one login.

The pool is bounded: at most ``max_identities`` logins have Kafka clients at
once, each within the route's own bounds (``max_partition_readers``,
``produce_route_*``); group members count against the route's
``max_group_members`` together. A login with no session left is closed after
the route's ``idle_timeout``, or at once when a new login needs its place.
When every place holds a login in use, :meth:`IdentityPool.lease` says so
and the server refuses the handshake (503).
"""

from __future__ import annotations

import logging
import re
from typing import Final

import attrs
import trio

from .._config import RouteConfig, SaslConfig
from .._config._access import KafkaLogin
from ._group import MemberSlots
from ._settings import transaction_id_prefix
from ._upstream import KafkaUpstream, UpstreamStatistics

log = logging.getLogger("kafka_ws_trio.kafka")

#: What a login's name may add to the route's transactional.id prefix; anything else becomes "_".
_ID_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._-]")

Key = tuple[str, KafkaLogin]


def login_route(route: RouteConfig, login: KafkaLogin) -> RouteConfig:
    """``route`` as one login sees it: its SASL identity, and transactional.ids of its own (never shared)."""
    sasl = SaslConfig(mechanism=route.kafka_mechanism, username=login.username, password=login.password)
    prefix = f"{transaction_id_prefix(route)}{_ID_UNSAFE.sub('_', login.username)}-"
    return attrs.evolve(route, sasl=sasl, transaction_id_prefix=prefix, kafka_credentials=None)


@attrs.define(eq=False)
class _Identity:
    principal: str
    upstream: KafkaUpstream
    leases: int = 0
    last_used: float = 0.0
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    ready: trio.Event = attrs.field(factory=trio.Event)


class IdentityPool:
    """Upstreams per login, leased by sessions. Start with ``await nursery.start(pool.run)``."""

    def __init__(
        self,
        route: RouteConfig,
        limiter: trio.CapacityLimiter,
        proxy_members: MemberSlots | None,
        max_identities: int,
    ) -> None:
        self.route = route
        self.max_identities = max_identities
        self._limiter = limiter
        self._proxy_members = proxy_members
        self._route_members = MemberSlots(route.max_group_members, "max_group_members", f"on route {route.uri}")
        self._identities: dict[Key, _Identity] = {}
        self._nursery: trio.Nursery | None = None
        #: Logins opened and closed so far, and leases refused because every place was in use.
        self.opened = 0
        self.closed = 0
        self.refused = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the logins' upstreams and close idle ones until cancelled (which closes them all)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                while True:
                    await trio.sleep(max(self.route.idle_timeout / 4, 0.05))
                    now = trio.current_time()
                    for key, identity in list(self._identities.items()):
                        if identity.leases == 0 and now - identity.last_used >= self.route.idle_timeout:
                            self._close(key, identity)
            finally:
                self._nursery = None

    async def lease(self, principal: str, login: KafkaLogin) -> KafkaUpstream | None:
        """The upstream of ``login``, opened if need be; None when every place holds a login in use.

        Give it back with :meth:`release` once the session has ended.
        """
        key = (principal, login)
        identity = self._identities.get(key)
        if identity is None:
            if len(self._identities) >= self.max_identities and not self._make_room():
                self.refused += 1
                return None
            if self._nursery is None:
                return None  # shutting down
            upstream = KafkaUpstream(
                login_route(self.route, login),
                self._limiter,
                self._proxy_members,
                self._route_members,
                probe_denials=True,
            )
            identity = _Identity(principal, upstream, last_used=trio.current_time())
            self._identities[key] = identity
            self.opened += 1
            log.info("opening Kafka clients for %s as %s on %s", principal, login.username, self.route.uri)
            identity.leases += 1
            try:
                await self._nursery.start(self._run_identity, key, identity)
            except BaseException:
                self._give_back(identity)
                raise
            finally:
                identity.ready.set()  # sessions of the same login waiting meanwhile go on
            return upstream
        identity.leases += 1
        try:
            await identity.ready.wait()
        except BaseException:
            self._give_back(identity)
            raise
        return identity.upstream

    def release(self, upstream: KafkaUpstream) -> None:
        """A session that leased ``upstream`` has ended."""
        for identity in self._identities.values():
            if identity.upstream is upstream:
                self._give_back(identity)
                return

    @staticmethod
    def _give_back(identity: _Identity) -> None:
        identity.leases -= 1
        identity.last_used = trio.current_time()

    def statistics(self) -> dict[str, UpstreamStatistics]:
        """Each open login's counters, keyed by its principal."""
        return {identity.principal: identity.upstream.statistics() for identity in self._identities.values()}

    def _make_room(self) -> bool:
        """Close the login unused the longest, if one is unused; whether a place is free now."""
        idle = [(identity.last_used, key) for key, identity in self._identities.items() if identity.leases == 0]
        if not idle:
            return False
        _, key = min(idle)
        self._close(key, self._identities[key])
        return True

    def _close(self, key: Key, identity: _Identity) -> None:
        """Forget ``identity`` (new sessions open a fresh one) and close its clients in the background."""
        del self._identities[key]
        identity.scope.cancel()

    async def _run_identity(
        self, key: Key, identity: _Identity, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            with identity.scope:
                await identity.upstream.run(task_status=task_status)
        finally:
            if self._identities.get(key) is identity:
                del self._identities[key]
            self.closed += 1
