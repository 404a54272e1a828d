"""How the configuration reports problems: :class:`ConfigError` and the wording its messages share.

A config is checked whole, so one :class:`ConfigError` carries every problem
found in one pass (up to :data:`MAX_REPORTED_PROBLEMS`), each as a
:class:`ConfigProblem`: a newcomer fixes a file in one round, not one
mistake per start.

Every message names a value's type in TOML's words (:func:`_kind`) rather than
showing the value, which may be a secret, and quotes text the way TOML would
(:func:`_quote`), so a message can go to a log as it is.
"""

from __future__ import annotations

import datetime
import difflib
import json
from collections.abc import Iterable, Sequence
from typing import Final, NamedTuple

#: Problems one ConfigError lists; past this the rest are counted, not listed,
#: so a badly broken (or generated) file gives a screenful, not thousands of lines.
MAX_REPORTED_PROBLEMS: Final = 20


class ConfigProblem(NamedTuple):
    """One mistake in a config: where it is and what is wrong."""

    key: str
    """The key path such as ``routes[0].nodes[1]``, or ``""`` for the file as a whole."""
    problem: str
    """What is wrong and what is allowed instead."""


class ConfigError(Exception):
    """The configuration is not usable; the message says where and why, for every problem found.

    ``str(error)`` has one line per problem, in the order the keys stand in
    the file, each reading ``<source>: <key path>: <problem>``, for example
    ``proxy.toml: routes[1].sasl.mechanism: "SCRAM" is not supported; expected
    one of ...``. With one problem that is the whole message. At most
    :data:`MAX_REPORTED_PROBLEMS` are listed; a last line then says how many
    more were found.

    Attributes:
        problems: Every problem listed, in file order.
        omitted: How many more problems were found but not listed.
        problem: The first problem's sentence: what is wrong and what is
            allowed instead.
        key: The first problem's key path such as ``routes[0].nodes[1]``, or
            ``""`` when the problem is the file as a whole.
        source: The config file's name, or ``""`` for a config built in code.
    """

    problems: tuple[ConfigProblem, ...]
    omitted: int
    problem: str
    key: str
    source: str

    def __init__(self, problem: str, *, key: str = "", source: str = "") -> None:
        super().__init__()
        self._fill((ConfigProblem(key, problem),), source, 0)

    @classmethod
    def _of(cls, problems: Sequence[ConfigProblem], *, source: str = "", omitted: int = 0) -> ConfigError:
        """One error listing *problems* (at least one), keeping at most MAX_REPORTED_PROBLEMS of them."""
        first = problems[0]
        error = cls(first.problem, key=first.key, source=source)
        error._fill(problems, source, omitted)
        return error

    @classmethod
    def _joined(cls, errors: Iterable[ConfigError], *, source: str = "") -> ConfigError | None:
        """All problems of *errors* in one error, in the order given; None when there are none."""
        problems: list[ConfigProblem] = []
        omitted = 0
        for error in errors:
            problems.extend(error.problems)
            omitted += error.omitted
        return cls._of(problems, source=source, omitted=omitted) if problems else None

    def _fill(self, problems: Sequence[ConfigProblem], source: str, omitted: int) -> None:
        self.problems = tuple(problems[:MAX_REPORTED_PROBLEMS])
        self.omitted = omitted + len(problems) - len(self.problems)
        self.problem = self.problems[0].problem
        self.key = self.problems[0].key
        self.source = source
        lines = [_line(source, key, problem) for key, problem in self.problems]
        if self.omitted:
            more = "problem" if self.omitted == 1 else "problems"
            lines.append(
                _line(source, "", f"and {self.omitted} more {more}; only the first {MAX_REPORTED_PROBLEMS} are listed")
            )
        self.args = ("\n".join(lines),)

    def _within(self, key: str = "", source: str = "") -> ConfigError:
        """The same problems with *key* in front of each key path (and *source*, unless one is set)."""
        problems = [ConfigProblem(_join_keys(key, inner), problem) for inner, problem in self.problems]
        return ConfigError._of(problems, source=self.source or source, omitted=self.omitted)


def _line(source: str, key: str, problem: str) -> str:
    return ": ".join(part for part in (source, key, problem) if part)


def _raise_all(problems: Iterable[ConfigProblem]) -> None:
    """Raise one ConfigError for all *problems*, if there are any."""
    found = list(problems)
    if found:
        raise ConfigError._of(found)


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


def _closest(word: str, known: Iterable[str]) -> str | None:
    """The known word *word* is most likely a misspelling of, if any."""
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return close[0] if close else None


def _suggest(word: str, known: Iterable[str]) -> str:
    close = _closest(word, known)
    return f"did you mean {_quote(close)}? " if close is not None else ""
