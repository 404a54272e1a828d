"""Quotas per principal as named token buckets, with a bound on how many principals are remembered.

A bucket holds up to ``burst`` tokens and gains ``rate`` a second. Two ways to
spend:

- :meth:`TokenBucket.try_take` for what is refused when over quota (new
  connections, produced records and bytes): it takes all or nothing, and says
  how long until the amount would be there (the ``retry_after`` a client is told);
- :meth:`TokenBucket.charge` for what is slowed down instead (bytes delivered to
  a client): it always takes, going into debt, and says how long to wait until
  the debt is paid, so nothing is dropped.

:class:`RetryWatch` keeps, for one session, when its client was told to come
back, and so how long to hold a client that did not wait.

Time is passed in (seconds, any monotonic clock): no I/O and no Trio here.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping

import attrs


@attrs.frozen
class Quota:
    """A bucket's settings: ``rate`` a second, up to ``burst`` at once."""

    rate: float = attrs.field(validator=attrs.validators.gt(0))
    burst: float = attrs.field(validator=attrs.validators.gt(0))


@attrs.define
class TokenBucket:
    quota: Quota
    tokens: float
    updated: float

    @classmethod
    def full(cls, quota: Quota, now: float) -> TokenBucket:
        return cls(quota, quota.burst, now)

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.quota.burst, self.tokens + (now - self.updated) * self.quota.rate)
            self.updated = now

    def try_take(self, amount: float, now: float) -> float:
        """Take ``amount`` if it is there: 0.0. Else take nothing: the seconds until it would be there.

        An amount larger than the burst can never be there at once: infinity.
        """
        self._refill(now)
        if amount <= self.tokens:
            self.tokens -= amount
            return 0.0
        if amount > self.quota.burst:
            return float("inf")
        return (amount - self.tokens) / self.quota.rate

    def charge(self, amount: float, now: float) -> float:
        """Take ``amount`` whatever is there (the balance may go below zero); the seconds until it is paid."""
        self._refill(now)
        self.tokens -= amount
        return 0.0 if self.tokens >= 0 else -self.tokens / self.quota.rate


class Quotas:
    """The buckets of every principal, by quota name; at most ``max_principals`` remembered.

    The least recently used principal is forgotten past the bound: it comes back with full
    buckets, which only ever lets it do more than its quota for one burst, never less.
    """

    def __init__(self, quotas: Mapping[str, Quota], max_principals: int) -> None:
        if max_principals < 1:
            raise ValueError("max_principals must be at least 1")
        self.quotas = dict(quotas)
        self.max_principals = max_principals
        self._buckets: OrderedDict[str, dict[str, TokenBucket]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def bucket(self, principal: str, name: str, now: float) -> TokenBucket | None:
        """``principal``'s bucket for the quota ``name`` (None: no such quota is configured)."""
        quota = self.quotas.get(name)
        if quota is None:
            return None
        buckets = self._buckets.get(principal)
        if buckets is None:
            buckets = self._buckets[principal] = {}
            while len(self._buckets) > self.max_principals:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(principal)
        bucket = buckets.get(name)
        if bucket is None:
            bucket = buckets[name] = TokenBucket.full(quota, now)
        return bucket


class RetryWatch:
    """When one session's client was last told to come back after a quota refusal, and whether it came back too soon.

    A client that honours ``retry_after`` sends its next refused command only
    once the time it was told has passed. One refused before then did not wait
    (or had it already in flight): the session then takes nothing more from
    it until the new refusal's ``retry_after`` has passed, so that refusals
    cost the proxy at most about two per ``retry_after`` a session, however
    fast a client sends. The hold's deadline is what the client was told,
    which the quota's rate and burst bound.
    """

    __slots__ = ("_hold_until", "_retry_at")

    def __init__(self) -> None:
        self._retry_at = float("-inf")
        self._hold_until = float("-inf")

    def refused(self, wait: float, now: float) -> None:
        """Note a refusal at ``now`` that told the client to retry after ``wait`` seconds.

        The wait counts as the client is told it (``retry_after_ms``): whole milliseconds,
        rounded up, at least one. So a hold is never shorter than a millisecond, and when it
        ends the quota has the command's amount (a wait of a hair, left by rounding in the
        bucket's arithmetic, would otherwise let a refusal through with next to no hold).
        """
        told = max(1, math.ceil(wait * 1000)) / 1000
        if now < self._retry_at:
            self._hold_until = now + told
        self._retry_at = now + told

    def hold(self, now: float) -> float:
        """The seconds from ``now`` the session should take no command: 0.0 when it need not wait."""
        return max(0.0, self._hold_until - now)
