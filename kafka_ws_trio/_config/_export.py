"""A route as the keys of its TOML table (JSON-able): what the admin API answers a GET with.

The inverse of reading: ``parse_route(route_table(route))`` gives the same
route back, but for secrets. A secret (a SASL or key password, a JWT secret,
the Kafka logins' text) is never written out: its key is left out, so a
client that sends the table back must give it again (best as ``*_env``).
"""

from __future__ import annotations

from typing import Any

import attrs

from ._model import RouteConfig
from ._secret import Secret


def _plain(value: object) -> Any:
    """``value`` as TOML would hold it; ``...`` (Ellipsis) for what must be left out (None, a secret)."""
    if value is None or isinstance(value, Secret):
        return ...
    if attrs.has(type(value)):
        kind: Any = type(value)
        return {
            field.name: item for field in attrs.fields(kind) if (item := _plain(getattr(value, field.name))) is not ...
        }
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    return value


def route_table(route: RouteConfig) -> dict[str, Any]:
    """``route`` as the keys of a ``[[routes]]`` table, secrets left out."""
    table = _plain(route)
    assert isinstance(table, dict)
    return table
