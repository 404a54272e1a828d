"""The protocol's events: what a client asks (requests) and what the server answers (responses).

Frozen values, the h11 way: the codec turns bytes into them and back, the
connection state machine and the I/O layers pass them around. Field names
follow ``schema/pubsub.proto``.
"""

from __future__ import annotations

from typing import TypeAlias

import attrs

# ---------------------------------------------------------------- requests


@attrs.frozen
class Ping:
    """CmdPing: answer with a pong carrying the same ``state``; never touches Kafka."""

    sequence: int
    state: bytes


@attrs.frozen
class ListOffset:
    """CmdKafkaListOffset, validated: ``topic`` is a valid name, ``partition >= 0``, ``timestamp >= -2``.

    ``timestamp`` -1 asks for the log-end offset, -2 for the earliest offset, and a value
    ``>= 0`` (milliseconds) for the first offset whose record timestamp is at or after it.
    """

    sequence: int
    topic: str
    partition: int
    timestamp: int


@attrs.frozen
class Fetch:
    """CmdKafkaFetch, validated: ``topic`` is a valid name, ``partition >= 0``, ``offset >= 0``."""

    sequence: int
    topic: str
    partition: int
    offset: int


@attrs.frozen
class UnknownCommand:
    """CmdEmpty, no command at all, or a command number this server does not know.

    Answered with ``unknown command`` (code UNKNOWN_COMMAND) so that a newer
    client does not wait forever on an older server.
    """

    sequence: int


@attrs.frozen
class Malformed:
    """A frame that does not decode as a PubSubReq.

    Answered with ``wrong command`` and sequence 0: no sequence can be trusted.
    ``reason`` is the parser's complaint, for the log only.
    """

    reason: str


@attrs.frozen
class Invalid:
    """A ListOffset or Fetch that decodes but has a field out of range.

    ``command`` holds the fields as received (a topic name that is not a valid
    Kafka name is shortened, so that a huge one is never echoed back);
    ``reason`` says which field is wrong, e.g. ``invalid partition: -1``.
    ``queued`` is False when the topic name itself is invalid: such a command
    belongs to no partition, so it is answered at once, before anything is
    queued; other invalid commands keep their place in their partition's order.
    """

    sequence: int
    command: ListOffset | Fetch
    reason: str
    queued: bool = True


#: A decoded request; dispatch on the type.
Request: TypeAlias = Ping | ListOffset | Fetch | UnknownCommand | Malformed | Invalid
#: The requests that need Kafka (or keep a partition's order).
KafkaCommand: TypeAlias = ListOffset | Fetch | Invalid


@attrs.frozen
class Record:
    """One Kafka record as a fetch response carries it.

    ``None`` for ``key``, ``value`` or a header value means null, which stays distinct from
    ``b""`` on the wire (a null value is a tombstone).
    """

    offset: int
    #: Milliseconds since the epoch.
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()


# --------------------------------------------------------------- responses


@attrs.frozen
class Pong:
    """PongResp: the ``state`` of the ping it answers."""

    sequence: int
    state: bytes


@attrs.frozen
class OffsetAnswer:
    """KafkaListOffsetResp: the offset found (-1 when none, e.g. a timestamp after the last record)."""

    sequence: int
    offset: int


@attrs.frozen
class FetchAnswer:
    """KafkaFetchResp: records in offset order; none at the log end."""

    sequence: int
    records: tuple[Record, ...]


@attrs.frozen
class ErrorAnswer:
    """ErrorResp: a documented ``code`` (an ``ErrorCode`` value, or one this client does not know) and the message."""

    sequence: int
    code: int
    message: str


@attrs.frozen
class UnknownResponse:
    """A PubSubResp with no response this client knows (a newer server's)."""

    sequence: int


@attrs.frozen
class MalformedResponse:
    """A frame that does not decode as a PubSubResp; ``reason`` is the parser's complaint."""

    reason: str


#: A decoded response; dispatch on the type.
Response: TypeAlias = Pong | OffsetAnswer | FetchAnswer | ErrorAnswer | UnknownResponse | MalformedResponse
