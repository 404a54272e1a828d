"""Liveness and readiness, as ``/healthz`` and ``/readyz`` answer them.

Liveness is the event loop answering at all. Readiness says whether a load
balancer should send new clients here: not before every route's cluster has
been found reachable, not while one is unreachable, and not from the moment
shutdown starts (so that the balancer drains this proxy before its sessions
are closed). The reachability of each route comes from a background check the
server runs every ``ready_check_interval``; the answer reads its last result,
so a probe never waits on Kafka. ``/readyz?exclude=kafka`` leaves those checks
out: only shutdown makes it 503 (like Kubernetes' ``/readyz?exclude=``, an unknown name is ignored).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Final
from urllib.parse import parse_qs

import attrs

_JSON: Final = "application/json"
#: The checks a probe may leave out with ``/readyz?exclude=NAME`` (shutdown is never left out).
EXCLUDABLE: Final = ("kafka",)


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
        #: Whether this proxy was ever found ready, or /readyz (with or without exclusions) ever answered 200:
        #: until then no balancer that probes it sends this proxy clients.
        self.ever_ready = False

    def checked(self, route: str, problem: str | None) -> None:
        """Record a check of ``route``: None when its cluster answered, else the reason."""
        self.problems[route] = problem or ""
        self.ever_ready = self.ever_ready or self.ready

    @property
    def ready(self) -> bool:
        return not self.shutting_down and all(problem == "" for problem in self.problems.values())

    def respond(self, query: str = "") -> Answer:
        """200 when ready, else 503; the body says why, route by route, as JSON.

        ``query`` is the request's query string: ``exclude=kafka`` leaves the routes' checks out,
        so that only shutdown turns the answer to 503 (a balancer that should keep a proxy in
        rotation through a Kafka outage, which every proxy of a fleet shares). A name it does not
        know is left out of nothing and listed as ``unknown_excluded`` in the body: a typo in a
        balancer's probe must not take every proxy of a fleet out at once.
        """
        names = {
            name.strip() for value in parse_qs(query).get("exclude", []) for name in value.split(",") if name.strip()
        }
        excluded, unknown = sorted(names & set(EXCLUDABLE)), sorted(names - set(EXCLUDABLE))
        routes = {
            route: "not checked yet" if problem is None else problem or "reachable"
            for route, problem in self.problems.items()
        }
        ready = not self.shutting_down if "kafka" in excluded else self.ready
        self.ever_ready = self.ever_ready or ready
        body: dict[str, object] = {"ready": ready, "shutting_down": self.shutting_down, "routes": routes}
        if excluded:
            body["excluded"] = excluded
        if unknown:
            body["unknown_excluded"] = unknown
        return Answer(200 if ready else 503, (json.dumps(body) + "\n").encode(), _JSON)
