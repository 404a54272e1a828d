"""Failures of a Kafka command, as values the session turns into error responses."""

from __future__ import annotations

from ._protocol import ErrorCode


class CommandFailed(Exception):
    """A command could not be carried out; ``reason`` is the short text after ``err:``.

    Raised by the Kafka edge (and by fakes in tests). The session formats it
    into ``failed to fetch message, topic: ..., err: <reason>`` or the
    list-offset equivalent, with ``code`` as the response's error code.
    """

    def __init__(self, code: ErrorCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason

    def __repr__(self) -> str:
        return f"CommandFailed({self.code.name}, {self.reason!r})"


def topic_not_found() -> CommandFailed:
    return CommandFailed(ErrorCode.TOPIC_NOT_FOUND, "not found topic")


def partition_not_found() -> CommandFailed:
    return CommandFailed(ErrorCode.PARTITION_NOT_FOUND, "not found partition")
