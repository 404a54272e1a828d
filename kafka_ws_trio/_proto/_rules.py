"""The rules a command's fields must follow, shared by every decoder: topic names, and refusals.

A decoder that finds a field it cannot accept calls :func:`refuse`; :func:`judged`
turns that into a :class:`Rejected` event answered with ``invalid <command>: <problem>``.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable
from typing import Final, NoReturn, TypeVar

from .._pb import pubsub_pb2 as pb
from ._errors import ErrorCode
from ._events import Rejected, Request

#: Kafka's rule for topic names: 1 to 249 characters, ASCII letters, digits, '.', '_' and '-'.
MAX_TOPIC_LENGTH: Final = 249
_TOPIC_NAME: Final = re.compile(r"[a-zA-Z0-9._-]+")  # the length is checked first
#: Characters of an invalid topic name echoed back in its error message.
ECHOED_TOPIC_CHARS: Final = 64


def topic_name_problem(topic: str) -> str | None:
    """Why ``topic`` is not a valid Kafka topic name, or None when it is."""
    if not topic:
        return "empty topic"
    fault = _topic_name_fault(topic)
    return None if fault is None else f"invalid topic: {fault}"


def _topic_name_fault(topic: str) -> str | None:
    """Which part of Kafka's rule a non-empty ``topic`` breaks, or None."""
    if len(topic) > MAX_TOPIC_LENGTH:
        return f"{len(topic)} characters, at most {MAX_TOPIC_LENGTH} allowed"
    if _TOPIC_NAME.fullmatch(topic) is None or topic in (".", ".."):
        return "only ASCII letters, digits, '.', '_' and '-' are allowed"
    return None


def echoed(topic: str) -> str:
    """A topic name as an error message may repeat it: at most ``ECHOED_TOPIC_CHARS`` characters."""
    return topic if len(topic) <= ECHOED_TOPIC_CHARS else topic[:ECHOED_TOPIC_CHARS] + "..."


_Enum = TypeVar("_Enum", bound=enum.IntEnum)


class Refusal(Exception):
    """Why a command cannot be valid: the text after ``invalid <command>: ``."""


def refuse(problem: str) -> NoReturn:
    raise Refusal(problem)


def not_negative(value: int, name: str) -> int:
    if value < 0:
        refuse(f"{name} {value}")
    return value


def known(kind: type[_Enum], value: int, name: str) -> _Enum:
    """``value`` as a member of ``kind``: proto3 enums are open, so any int32 parses."""
    try:
        return kind(value)
    except ValueError:
        refuse(f"{name} {value}")


def valid_topic(topic: str) -> str:
    """``topic`` when Kafka would accept it; refused with the name echoed (shortened, JSON-quoted) otherwise."""
    if not topic:
        refuse("empty topic")
    fault = _topic_name_fault(topic)
    if fault is not None:
        refuse(f"invalid topic {json.dumps(echoed(topic))}: {fault}")
    return topic


#: Decodes one command of a PubSubReq: its sequence and the request.
Decoder = Callable[[int, pb.PubSubReq], Request]


def judged(name: str, decode: Decoder) -> Decoder:
    """``decode``, with a refusal turned into :class:`Rejected` (``invalid <name>: <problem>``)."""

    def decode_judged(sequence: int, request: pb.PubSubReq) -> Request:
        try:
            return decode(sequence, request)
        except Refusal as refusal:
            message = f"invalid {name}: {refusal}"
            return Rejected(sequence=sequence, code=ErrorCode.INVALID_REQUEST, message=message, command=name)

    return decode_judged
