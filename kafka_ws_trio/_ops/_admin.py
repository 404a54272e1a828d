"""The admin API on the ops port: routes and sessions, as JSON shaped like APISIX's admin API.

* ``GET /admin/routes``: ``{"total": N, "list": [{"key": "/routes/<id>", "value": {...}}]}``;
* ``GET``, ``PUT``, ``PATCH`` and ``DELETE /admin/routes/<id>``: one route, ``{"key", "value"}``;
* ``GET /admin/sessions`` and ``DELETE /admin/sessions/<id>``.

A route's id is its uri without the leading ``/``, percent-encoded in the
path (``/kafka`` is ``kafka``; ``/a/b`` is ``a%2Fb``). Its value holds the
keys of a ``[[routes]]`` table; secrets are never shown, so a client gives
them again (best as ``*_env``) when it PUTs a whole route. A mistake is a 400
whose ``error_msg`` names the key path, as the config loader does. Every
request needs an admin key (``X-API-KEY: <key>`` as APISIX takes it, or
``Authorization: Bearer <key>``): without a valid one, 401.

Changes apply at once (``ProxyServer.update_routes``). Without a route store
they live in memory: a restart, or a SIGHUP reload of the config file, replaces
them with the file's. With one they are written to its topic, which every proxy
of the fleet reads (and reads again when it starts); a store that cannot take a
change now answers 503, and nothing is changed.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, Protocol
from urllib.parse import quote, unquote

from .._config import ConfigError, RouteConfig
from .._config._export import route_table
from .._config._toml import parse_route
from ._health import Answer

#: Where the admin API lives on the ops port.
PREFIX: Final = "/admin/"
#: The largest request body the admin API reads.
MAX_BODY: Final = 1 << 20
_JSON: Final = "application/json"


class ChangeUnavailable(Exception):
    """A change cannot be taken now (the route store unreachable or slow, the server shutting down): 503.

    Its message says whether the change may still take effect.
    """


class AdminTarget(Protocol):
    """What the admin API changes: the server (``ProxyServer``)."""

    @property
    def route_configs(self) -> tuple[RouteConfig, ...]: ...

    async def change_route(self, uri: str, table: dict[str, Any] | None) -> None:
        """Serve ``table`` as route ``uri`` (None: delete it), everywhere it is served from.

        Raises ConfigError (the resulting routes are not valid), OSError or ValueError (a file it names),
        ChangeUnavailable (not now: the fleet's route store did not take it, or the server is stopping).
        """
        ...

    def route_source(self, uri: str) -> dict[str, Any] | None:
        """The table route ``uri`` was last given as, secrets' ``*_env`` keys included, when it is kept; else None."""
        ...

    def session_list(self) -> list[dict[str, Any]]: ...

    def close_session(self, session_id: int) -> bool: ...


def _answer(status: int, body: Mapping[str, Any]) -> Answer:
    return Answer(status, (json.dumps(body) + "\n").encode(), _JSON)


def _error(status: int, message: str, **more: Any) -> Answer:
    return _answer(status, {"error_msg": message, **more})


def unfinished(seconds: float) -> Answer:
    """The answer to a request whose change ran out of time (the server's deadline): 503."""
    return _error(503, f"the change did not finish within {seconds:g}s; it may still take effect (GET to see)")


def route_id(uri: str) -> str:
    """A route's id in the admin API's paths."""
    return quote(uri[1:], safe="")


def _entry(route: RouteConfig) -> dict[str, Any]:
    return {"key": f"/routes/{route_id(route.uri)}", "value": route_table(route)}


def credential(headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    """The admin key a request carries: ``X-API-KEY``, else ``Authorization: Bearer``; None without one."""
    for name, value in headers:
        if name.lower() == b"x-api-key":
            return value.decode("latin-1").strip() or None
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


class AdminApi:
    """Answers the admin API's requests; ``verify(key)`` says whether a key is an admin key (its I/O: a thread)."""

    def __init__(self, target: AdminTarget, verify: Callable[[str], Awaitable[bool]]) -> None:
        self._target = target
        self._verify = verify

    async def handle(self, method: str, path: str, headers: Sequence[tuple[bytes, bytes]], body: bytes) -> Answer:
        """The answer to one request whose path starts with :data:`PREFIX`."""
        key = credential(headers)
        if key is None:
            return _error(401, "an admin key is required (X-API-KEY: <key>)")
        if not await self._verify(key):
            return _error(401, "invalid admin key")
        parts = path[len(PREFIX) :].split("/")
        if parts[0] == "routes" and len(parts) == 1:
            return self._routes() if method == "GET" else _error(405, f"{method} is not allowed on /admin/routes")
        if parts[0] == "routes" and len(parts) == 2 and parts[1]:
            return await self._route(method, "/" + unquote(parts[1]), body)
        if parts[0] == "sessions" and len(parts) == 1:
            if method != "GET":
                return _error(405, f"{method} is not allowed on /admin/sessions")
            sessions = self._target.session_list()
            return _answer(200, {"total": len(sessions), "list": sessions})
        if parts[0] == "sessions" and len(parts) == 2 and parts[1]:
            return self._session(method, parts[1])
        return _error(404, f"no such admin resource: {path}")

    def _routes(self) -> Answer:
        routes = self._target.route_configs
        return _answer(200, {"total": len(routes), "list": [_entry(route) for route in routes]})

    async def _route(self, method: str, uri: str, body: bytes) -> Answer:
        current = next((route for route in self._target.route_configs if route.uri == uri), None)
        if method == "GET":
            return _answer(200, _entry(current)) if current is not None else _error(404, f"no route {uri}")
        if method == "DELETE":
            if current is None:
                return _error(404, f"no route {uri}")
            failed = await self._change(uri, None)
            return failed or _answer(200, {"deleted": "1", "key": f"/routes/{route_id(uri)}"})
        if method not in ("PUT", "PATCH"):
            return _error(405, f"{method} is not allowed on a route")
        try:
            table = json.loads(body or b"null")
        except ValueError as exc:
            return _error(400, f"the body is not JSON: {exc}")
        if not isinstance(table, dict):
            return _error(400, "the body must be a JSON object: the keys of a [[routes]] table")
        if method == "PATCH":
            if current is None:
                return _error(404, f"no route {uri}")
            merged = self._target.route_source(uri) or route_table(current)
            for name, value in table.items():  # JSON merge patch, one level: null removes a key
                if value is None:
                    merged.pop(name, None)
                else:
                    merged[name] = value
            table = merged
        if table.setdefault("uri", uri) != uri:
            return _error(400, f"uri: {table['uri']!r} is not this route's uri ({uri!r}); its id names it")
        try:
            route = parse_route(table)
        except ConfigError as exc:
            return _error(400, str(exc), problems=[{"key": k, "problem": p} for k, p in exc.problems])
        failed = await self._change(uri, table)
        return failed or _answer(200 if current is not None else 201, _entry(route))

    async def _change(self, uri: str, table: dict[str, Any] | None) -> Answer | None:
        try:
            await self._target.change_route(uri, table)
        except ConfigError as exc:
            return _error(400, str(exc), problems=[{"key": k, "problem": p} for k, p in exc.problems])
        except ChangeUnavailable as exc:
            return _error(503, str(exc))
        except (OSError, ValueError) as exc:  # a key or JWKS file the new route names that does not read
            return _error(400, str(exc))
        return None

    def _session(self, method: str, session_id: str) -> Answer:
        if method != "DELETE":
            return _error(405, f"{method} is not allowed on a session (GET /admin/sessions lists them)")
        if not session_id.isdigit() or not self._target.close_session(int(session_id)):
            return _error(404, f"no session {session_id}")
        return _answer(200, {"deleted": "1", "key": f"/sessions/{session_id}"})
