"""Liveness and readiness, as ``/healthz`` and ``/readyz`` answer them.

Liveness is the event loop answering at all. Readiness says whether a load
balancer should send new clients here: not before every route's cluster has
been found reachable, not while one is unreachable, and not from the moment
shutdown starts (so that the balancer drains this proxy before its sessions
are closed). The reachability of each route comes from a background check the
server runs every ``ready_check_interval``; the answer reads its last result,
so a probe never waits on Kafka.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Final

import attrs

_JSON: Final = "application/json"


@attrs.frozen
class Answer:
    """An ops endpoint's HTTP answer: status, body and its content type (the server sends it)."""

    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


def healthz() -> Answer:
    """The loop is answering."""
    return Answer(200, b"ok\n")


class Readiness:
    """Each route's last reachability check, and whether shutdown has begun."""

    def __init__(self, routes: Iterable[str]) -> None:
        #: Per route: None until its first check, "" when reachable, else why not.
        self.problems: dict[str, str | None] = dict.fromkeys(routes)
        self.shutting_down = False

    def checked(self, route: str, problem: str | None) -> None:
        """Record a check of ``route``: None when its cluster answered, else the reason."""
        self.problems[route] = problem or ""

    @property
    def ready(self) -> bool:
        return not self.shutting_down and all(problem == "" for problem in self.problems.values())

    def respond(self) -> Answer:
        """200 when ready, else 503; the body says why, route by route, as JSON."""
        routes = {
            route: "not checked yet" if problem is None else problem or "reachable"
            for route, problem in self.problems.items()
        }
        body = {"ready": self.ready, "shutting_down": self.shutting_down, "routes": routes}
        return Answer(200 if self.ready else 503, (json.dumps(body) + "\n").encode(), _JSON)
