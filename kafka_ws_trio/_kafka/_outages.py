"""Telling the operator that a route's Kafka cluster cannot be reached, and when it is back.

Every command that meets an outage fails with a clear error, but an
operator reads logs, not error responses. A cause is logged at WARNING the
first time it is seen and then at most once per ``OUTAGE_LOG_INTERVAL``
(with how many failures were not logged), whether or not Kafka answered
other calls in between: during a partial outage (one partition's leader
down) calls fail and succeed side by side. The recovery is logged once,
by the first call that succeeds ``RECOVERY_QUIET`` seconds after the last
failure. The reasons come from the diagnosis and never hold secrets.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

import attrs

from .._proto import CONNECTION_FAILURES, CommandFailed

log = logging.getLogger("kafka_ws_trio.kafka")

#: Seconds between two log lines about the same cause of an outage.
OUTAGE_LOG_INTERVAL: Final = 60.0
#: Seconds without a failure before a successful call counts as the end of the outage.
RECOVERY_QUIET: Final = 5.0
#: Causes remembered per route (one per code and reason); the oldest is forgotten beyond it.
MAX_CAUSES: Final = 32


@attrs.define
class _Cause:
    logged_at: float
    unlogged: int = 0


class OutageLog:
    """The log of one route's Kafka outages: once per cause, rate-limited, and the recovery."""

    def __init__(self, route: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._route = route
        self._clock = clock
        self._causes: dict[tuple[int, str], _Cause] = {}
        self._since: float | None = None
        self._last_failure = 0.0
        self._failures = 0

    @property
    def in_outage(self) -> bool:
        return self._since is not None

    def failed(self, failure: CommandFailed) -> None:
        """Note a failure; logs it when it says Kafka cannot be reached and its cause is due a line."""
        if failure.code not in CONNECTION_FAILURES:
            return
        now = self._clock()
        if self._since is None:
            self._since = now
        self._last_failure = now
        self._failures += 1
        key = (int(failure.code), failure.reason)
        cause = self._causes.get(key)
        if cause is not None and now - cause.logged_at < OUTAGE_LOG_INTERVAL:
            cause.unlogged += 1
            return
        unlogged = cause.unlogged if cause is not None else 0
        self._causes.pop(key, None)
        self._causes[key] = _Cause(logged_at=now)
        while len(self._causes) > MAX_CAUSES:
            del self._causes[next(iter(self._causes))]
        more = f" ({unlogged} more since the last report)" if unlogged else ""
        log.warning(
            "route %s: Kafka cannot be used: %s [%s]%s",
            self._route,
            failure.reason,
            failure.code.name,
            more,
            extra={
                "event": "kafka_unreachable",
                "route": self._route,
                "code": failure.code.name,
                "reason": failure.reason,
                "unreported": unlogged,
            },
        )

    def recovered(self) -> None:
        """Note a call that reached Kafka; logs the end of an outage once, when failures have stopped."""
        if self._since is None:
            return
        if self._clock() - self._last_failure < RECOVERY_QUIET:
            return  # other calls still fail: a partial outage goes on
        took = self._last_failure - self._since
        log.warning(
            "route %s: Kafka reachable again after %.1fs (%d failed calls)",
            self._route,
            took,
            self._failures,
            extra={
                "event": "kafka_reachable",
                "route": self._route,
                "duration": round(took, 3),
                "failures": self._failures,
            },
        )
        self._since = None
        self._failures = 0
        self._causes.clear()  # a new outage is news again
