"""What the parts of a route's Kafka side share: a narrow context, not the whole upstream."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import attrs
import trio

from .._config import RouteConfig
from ._diagnosis import PROBE_TIMEOUT
from ._outages import OutageLog


@attrs.define
class Counters:
    """Counters of one route's Kafka side; ``UpstreamStatistics`` is built from them."""

    consumers_created: int = 0
    consumers_closed: int = 0
    broker_polls: int = 0
    cache_hits: int = 0
    connect_failures: int = 0
    parked_answered: int = 0
    readers_refused: int = 0
    stream_batches: int = 0
    stream_records: int = 0
    group_members_joined: int = 0
    #: Assignments the route's group members received: one per rebalance each member took part in.
    group_rebalances: int = 0


#: Starts a task in the background for as long as the route runs; False when it does not run.
Spawn = Callable[[Callable[[], Awaitable[None]]], bool]


@attrs.frozen
class KafkaContext:
    """The route's settings, its thread limiter, counters and outage log, deadlines, and where tasks run."""

    route: RouteConfig
    limiter: trio.CapacityLimiter
    counters: Counters
    outages: OutageLog
    spawn: Spawn

    @property
    def call_budget(self) -> float:
        """Seconds one thread call may take: a wait at the log end, a Kafka request, probing the brokers."""
        route = self.route
        return route.fetch_max_wait + route.request_timeout + 2 * PROBE_TIMEOUT * len(route.nodes)

    @property
    def deadline(self) -> float:
        """Seconds within which a command returns or fails: connecting, then one call."""
        return self.route.request_timeout + self.call_budget
