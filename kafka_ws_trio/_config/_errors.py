"""How the configuration reports a problem: :class:`ConfigError` and the wording its messages share.

Every message names a value's type in TOML's words (:func:`_kind`) rather than
showing the value, which may be a secret, and quotes text the way TOML would
(:func:`_quote`), so a message can go to a log as it is.
"""

from __future__ import annotations

import datetime
import difflib
import json
from collections.abc import Iterable


class ConfigError(Exception):
    """The configuration is not usable; the message says where and why.

    ``str(error)`` reads ``<source>: <key path>: <problem>``, for example
    ``proxy.toml: routes[1].sasl.mechanism: "SCRAM" is not supported; expected
    one of ...``. The parts are also available on their own.

    Attributes:
        problem: What is wrong and what is allowed instead.
        key: The key path such as ``routes[0].nodes[1]``, or ``""`` when the
            problem is the file as a whole.
        source: The config file's name, or ``""`` for a config built in code.
    """

    def __init__(self, problem: str, *, key: str = "", source: str = "") -> None:
        self.problem = problem
        self.key = key
        self.source = source
        super().__init__(": ".join(part for part in (source, key, problem) if part))

    def _within(self, key: str = "", source: str = "") -> ConfigError:
        return ConfigError(self.problem, key=_join_keys(key, self.key), source=source or self.source)


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _join_keys(outer: str, inner: str) -> str:
    if not outer or not inner:
        return outer or inner
    return outer + inner if inner.startswith("[") else f"{outer}.{inner}"


def _kind(value: object) -> str:
    """Name a value's type in TOML's words, never showing the value (it may be a secret)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string" if value else "an empty string"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (datetime.date, datetime.time)):
        return "a date/time"
    return f"a {type(value).__name__}"


def _suggest(word: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f"did you mean {_quote(close[0])}? " if close else ""
