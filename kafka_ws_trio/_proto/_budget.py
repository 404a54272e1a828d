"""A bound on records and bytes in flight, handed out first come, first served; no I/O.

Produce commands take their records and bytes from a session's budget and
then from the route's, and give them back when Kafka has answered. A command
that does not fit waits (the caller decides for how long) behind the commands
that came before it: a small command never overtakes a large one, so the large
one cannot starve.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import attrs


@attrs.frozen
class Amount:
    """Records and the bytes of their keys, values and headers."""

    records: int
    bytes: int


class Claim:
    """A waiting request for an :class:`Amount`; ``granted`` is called once when it is handed out."""

    __slots__ = ("amount", "granted", "withdrawn")

    def __init__(self, amount: Amount, granted: Callable[[], None]) -> None:
        self.amount = amount
        self.granted = granted
        self.withdrawn = False


class Budget:
    """At most ``limit`` records and bytes taken at once, in the order they were asked for."""

    __slots__ = ("_queue", "bytes", "limit", "name", "records")

    def __init__(self, limit: Amount, name: str) -> None:
        self.limit = limit
        #: How the bound is called in the configuration, for error messages (``produce_session``).
        self.name = name
        self.records = 0
        self.bytes = 0
        self._queue: deque[Claim] = deque()

    def __repr__(self) -> str:
        return (
            f"<Budget {self.name}: {self.records}/{self.limit.records} records, {self.bytes}/{self.limit.bytes} bytes>"
        )

    def too_large(self, amount: Amount) -> str | None:
        """Why ``amount`` could never be handed out, or None."""
        if amount.records > self.limit.records:
            return f"{amount.records} records, more than {self.name}_records ({self.limit.records}) allows in flight"
        if amount.bytes > self.limit.bytes:
            return f"{amount.bytes} bytes, more than {self.name}_bytes ({self.limit.bytes}) allows in flight"
        return None

    @property
    def waiting(self) -> int:
        """Claims still waiting (withdrawn ones included until they reach the front)."""
        return len(self._queue)

    def _fits(self, amount: Amount) -> bool:
        return self.records + amount.records <= self.limit.records and self.bytes + amount.bytes <= self.limit.bytes

    def _take(self, amount: Amount) -> None:
        self.records += amount.records
        self.bytes += amount.bytes

    def ask(self, amount: Amount, granted: Callable[[], None]) -> Claim | None:
        """Take ``amount`` now (None) or queue a claim whose ``granted`` is called when it is taken.

        ``amount`` must not be :meth:`too_large`.
        """
        if self.too_large(amount) is not None:
            raise ValueError(f"{self!r} can never hand out {amount}")
        if not self._queue and self._fits(amount):
            self._take(amount)
            return None
        claim = Claim(amount, granted)
        self._queue.append(claim)
        return claim

    def withdraw(self, claim: Claim) -> None:
        """Give up a waiting claim (its waiter gave up); a claim already granted must be :meth:`give`-n back instead."""
        claim.withdrawn = True
        self._serve()

    def give(self, amount: Amount) -> None:
        """Return what was taken; waiting claims that now fit are granted, in order."""
        self.records -= amount.records
        self.bytes -= amount.bytes
        assert self.records >= 0 and self.bytes >= 0, f"{self!r}: more given back than taken"
        self._serve()

    def _serve(self) -> None:
        queue = self._queue
        while queue:
            claim = queue[0]
            if claim.withdrawn:
                queue.popleft()
                continue
            if not self._fits(claim.amount):
                return
            queue.popleft()
            self._take(claim.amount)
            claim.granted()
