"""Passwords in the configuration: :class:`Secret` keeps them out of reprs, logs and error messages."""

from __future__ import annotations

import os
from collections.abc import Mapping

from ._errors import ConfigError, _quote


class Secret:
    """A password that stays out of reprs, logs and error messages.

    ``repr()`` and ``str()`` both give ``Secret('***')``; :meth:`reveal` is the
    one way to the value, for handing it to the Kafka client. Two secrets are
    equal when their values are.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("a Secret holds a str")
        self._value = value

    @classmethod
    def from_env(cls, name: str, environ: Mapping[str, str] | None = None) -> Secret:
        """Read a secret from the environment variable *name*.

        Raises:
            ConfigError: The variable is not set, or is empty.
        """
        value = (os.environ if environ is None else environ).get(name)
        if value is None:
            raise ConfigError(f"environment variable {_quote(name)} is not set")
        if not value:
            raise ConfigError(f"environment variable {_quote(name)} is empty")
        return cls(value)

    def reveal(self) -> str:
        """Return the secret itself."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            return self._value == other._value
        return NotImplemented

    def __hash__(self) -> int:
        return hash((Secret, self._value))
