"""The checks and conversions the config classes run on each value (attrs validators and converters).

Each validator raises :class:`ConfigError` keyed by the attribute's name, so
the TOML reader only has to put the table's key path in front; the reader also
runs them one value at a time, to report every bad value in a table. None of them
shows a value that might be a secret.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import stat
from collections.abc import Callable, Iterable
from typing import Any, Final, TypeAlias

import attrs

from ._defaults import MAX_INT32, MAX_SECONDS
from ._errors import ConfigError, ConfigProblem, _kind, _quote, _raise_all, _suggest
from ._secret import Secret

_NODE_EXAMPLE: Final = '(e.g. "127.0.0.1:9092" or "[::1]:9092")'
_NODE: Final = re.compile(r"(?:\[(?P<ipv6>[^\]]+)\]|(?P<host>[A-Za-z0-9_.-]+)):(?P<port>[0-9]{1,5})")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")

_Validator: TypeAlias = "Callable[[Any, attrs.Attribute[Any], Any], None]"


def _integer(low: int, high: int = MAX_INT32, note: str = "") -> _Validator:
    allowed = f"an integer from {low} to {high}{note}"

    def check(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        # bool is an int subclass; "port = true" is a mistake, not port 1.
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"expected {allowed}, got {_kind(value)}", key=attribute.name)
        if not low <= value <= high:
            raise ConfigError(f"{value} is out of range; expected {allowed}", key=attribute.name)

    return check


def _seconds(low: float, *, inclusive: bool) -> _Validator:
    allowed = f"a number of seconds {'>=' if inclusive else '>'} {low:g} and <= {MAX_SECONDS:g}"

    def check(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"expected {allowed}, got {_kind(value)}", key=attribute.name)
        in_range = (low <= value if inclusive else low < value) and value <= MAX_SECONDS
        if not math.isfinite(value) or not in_range:
            raise ConfigError(f"{value!r} is out of range; expected {allowed}", key=attribute.name)

    return check


def _string(*, spaces: bool) -> _Validator:
    allowed = "a non-empty string" if spaces else "a non-empty string without spaces"

    def check(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"expected {allowed}, got {_kind(value)}", key=attribute.name)
        if _CONTROL.search(value) or (not spaces and any(ch.isspace() for ch in value)):
            raise ConfigError(f"{_quote(value)} is not allowed; expected {allowed}", key=attribute.name)

    return check


def _choice(choices: tuple[str, ...]) -> _Validator:
    allowed = "one of " + ", ".join(_quote(choice) for choice in choices)

    def check(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if not isinstance(value, str):
            raise ConfigError(f"expected {allowed}, got {_kind(value)}", key=attribute.name)
        if value not in choices:
            raise ConfigError(
                f"{_quote(value)} is not supported; {_suggest(value.upper(), choices)}expected {allowed}",
                key=attribute.name,
            )

    return check


def _boolean(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"expected true or false, got {_kind(value)}", key=attribute.name)


def _instance_of(cls: type, what: str) -> _Validator:
    def check(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is not None and not isinstance(value, cls):
            raise ConfigError(f"expected {what}, got {_kind(value)}", key=attribute.name)

    return check


def _readable_file(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value:
        raise ConfigError(f"expected a file path, got {_kind(value)}", key=attribute.name)
    try:
        mode = os.stat(value).st_mode
    except FileNotFoundError:
        raise ConfigError(f"no such file: {value}", key=attribute.name) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {value}: {exc.strerror}", key=attribute.name) from None
    if not stat.S_ISREG(mode):
        # Opening a FIFO or a device to test it could block, so only regular files pass.
        raise ConfigError(f"{value} is not a regular file", key=attribute.name)
    try:
        with open(value, "rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"cannot read {value}: {exc.strerror}", key=attribute.name) from None


def _check_secret(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None and attribute.default is None:
        return
    if not isinstance(value, Secret):
        raise ConfigError(f"expected a string, got {_kind(value)}", key=attribute.name)
    if not value.reveal():
        raise ConfigError("must not be empty", key=attribute.name)


def _to_secret(value: str | Secret) -> Secret:
    # Anything else passes through unchanged for _check_secret to report under its key.
    return Secret(value) if isinstance(value, str) else value


def _to_optional_secret(value: str | Secret | None) -> Secret | None:
    return Secret(value) if isinstance(value, str) else value


def _node_problem(node: object) -> str | None:
    if not isinstance(node, str):
        return f'expected a "host:port" string, got {_kind(node)}'
    match = _NODE.fullmatch(node)
    if match is None:
        return f"{_quote(node)} is not host:port {_NODE_EXAMPLE}"
    if match["ipv6"] is not None:
        try:
            ipaddress.IPv6Address(match["ipv6"])
        except ValueError:
            return f"{_quote(node)}: {_quote(match['ipv6'])} is not an IPv6 address {_NODE_EXAMPLE}"
    if not 1 <= int(match["port"]) <= 65535:
        return f"{_quote(node)}: port {int(match['port'])} is out of range; expected 1 to 65535"
    return None


def _to_nodes(value: str | Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return value  # type: ignore[return-value]  # not an array: _check_nodes reports it


def _check_nodes(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, tuple):
        raise ConfigError(f'expected an array of "host:port" strings, got {_kind(value)}', key=attribute.name)
    if not value:
        raise ConfigError(
            f'is empty; list at least one bootstrap broker as "host:port" {_NODE_EXAMPLE}', key=attribute.name
        )
    # Every bad node is reported: each is a mistake of its own.
    problems = []
    first_seen: dict[str, int] = {}
    for index, node in enumerate(value):
        problem = _node_problem(node)
        if problem is None and node in first_seen:
            problem = f"{_quote(node)} is listed twice (also at nodes[{first_seen[node]}])"
        elif problem is None:
            first_seen[node] = index
        if problem is not None:
            problems.append(ConfigProblem(f"{attribute.name}[{index}]", problem))
    _raise_all(problems)


def _check_uri(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str):
        raise ConfigError(f'expected a path such as "/kafka", got {_kind(value)}', key=attribute.name)
    if not value.startswith("/"):
        raise ConfigError(f'{_quote(value)} must start with "/" (e.g. "/kafka")', key=attribute.name)
    if _CONTROL.search(value) or any(ch.isspace() or ch in "?#" for ch in value):
        raise ConfigError(
            f'{_quote(value)} may not contain spaces, "?" or "#"; it is matched against the request path',
            key=attribute.name,
        )
