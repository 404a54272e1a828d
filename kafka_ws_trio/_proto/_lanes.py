"""Ordering lanes: answers for one topic-partition leave in request order, whatever runs concurrently.

Each command takes a :class:`Ticket` naming every partition it touches (one
for a fetch; a stream or a commit will touch several). A ticket's turn comes
when it is first in each of its partitions' lanes. Tickets are handed out in
one global order and every lane is first-in first-out, so the oldest ticket
still open is always first in all of its lanes: no deadlock. Lanes with
nothing pending are dropped, so the table holds one entry per partition that
has commands queued or running.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import attrs

#: A topic-partition.
Key = tuple[str, int]


@attrs.define(eq=False, repr=False)
class Ticket:
    """A command's place in the lanes of the partitions it touches."""

    number: int
    keys: tuple[Key, ...]

    def __repr__(self) -> str:
        return f"<Ticket {self.number} {list(self.keys)}>"


class Lanes:
    """The lanes of one connection (sans-IO: the session waits on its own events)."""

    def __init__(self) -> None:
        self._lanes: dict[Key, deque[Ticket]] = {}
        self._issued = 0

    def __len__(self) -> int:
        """How many partitions have commands pending."""
        return len(self._lanes)

    def idle(self, keys: Iterable[Key]) -> bool:
        """Whether none of these partitions has a command queued or running."""
        return all(key not in self._lanes for key in keys)

    def take(self, keys: Iterable[Key]) -> Ticket:
        """A ticket behind every pending command of these partitions."""
        ticket = Ticket(self._issued, tuple(dict.fromkeys(keys)))
        self._issued += 1
        for key in ticket.keys:
            self._lanes.setdefault(key, deque()).append(ticket)
        return ticket

    def ready(self, ticket: Ticket) -> bool:
        """Whether it is this ticket's turn: first in each of its lanes."""
        return all(self._lanes[key][0] is ticket for key in ticket.keys)

    def done(self, ticket: Ticket) -> list[Ticket]:
        """Retire a ticket whose turn it was; returns the tickets whose turn has now come.

        Raises:
            ValueError: it was not the ticket's turn (a bug in the caller).
        """
        if not self.ready(ticket):
            raise ValueError(f"{ticket!r} finished out of turn")
        fronts: list[Ticket] = []
        for key in ticket.keys:
            lane = self._lanes[key]
            lane.popleft()
            if lane:
                fronts.append(lane[0])
            else:
                del self._lanes[key]
        return [front for front in dict.fromkeys(fronts) if self.ready(front)]
