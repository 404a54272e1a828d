"""Error codes, the failure value the layers pass around, and the message formats APISIX clients match on."""

from __future__ import annotations

import enum
import math
from typing import Final

#: The whole message of the error answering CmdEmpty or a command this server does not know.
UNKNOWN_COMMAND_MESSAGE: Final = "unknown command"
#: The whole message of the error answering a frame that is not a PubSubReq (sent with sequence 0).
WRONG_COMMAND_MESSAGE: Final = "wrong command"
#: The reason APISIX gives (and we keep) when the topic does not exist.
NOT_FOUND_TOPIC: Final = "not found topic"
#: The reason APISIX gives (and we keep) when the topic exists but the partition does not.
NOT_FOUND_PARTITION: Final = "not found partition"


class ErrorCode(enum.IntEnum):
    """The ``code`` of an ``ErrorResp``: stable numbers, so that programs need not parse text.

    APISIX always sends 0, which stays valid and means "unspecified". The tens group the
    causes: 1-9 the request itself, 10-19 Kafka's answer, 20-29 reaching Kafka, 30-39
    limits of this server, 40-49 the server's own faults, 50-59 streams, 60-69 authorization
    and quotas, 70-79 transactions (and consumer groups). A number never changes
    meaning; new causes take new numbers.
    """

    #: No specific cause (what APISIX sends for everything).
    UNSPECIFIED = 0
    #: CmdEmpty, or a command number this server does not know.
    UNKNOWN_COMMAND = 1
    #: The frame does not decode as a PubSubReq; the response's sequence is 0.
    WRONG_COMMAND = 2
    #: The command decodes but a field is out of range (empty topic, negative partition ...).
    INVALID_REQUEST = 3
    #: The topic does not exist (reason ``not found topic``).
    TOPIC_NOT_FOUND = 10
    #: The topic exists but the partition does not (reason ``not found partition``).
    PARTITION_NOT_FOUND = 11
    #: Kafka's OFFSET_OUT_OF_RANGE: the fetch offset is outside the partition's log.
    OFFSET_OUT_OF_RANGE = 12
    #: Any other error Kafka answered with; the reason is Kafka's error name.
    KAFKA_ERROR = 13
    #: No broker of the route could be connected to; the reason names the broker.
    BROKER_UNREACHABLE = 20
    #: SASL authentication with the broker failed.
    AUTHENTICATION_FAILED = 21
    #: The TLS handshake with the broker failed (certificate verification included).
    TLS_FAILED = 22
    #: A Kafka call did not finish within its deadline.
    TIMEOUT = 23
    #: A single record does not fit in the maximum message size; the reason names its offset and size.
    RECORD_TOO_LARGE = 30
    #: The server is at one of its bounds and refused the command rather than queue it without limit.
    OVERLOADED = 31
    #: A fault in this server; the log has the details.
    INTERNAL_ERROR = 40
    #: A command names a stream id that is not open on this connection.
    UNKNOWN_STREAM = 50
    #: A CmdSubscribe reuses the id (sequence) of a stream that is still open.
    DUPLICATE_STREAM = 51
    #: The connection already has as many open streams as the route allows.
    TOO_MANY_STREAMS = 52
    #: A stream would cover more partitions than the route allows.
    TOO_MANY_PARTITIONS = 53
    #: A credit grant would take the stream past the most credit it may hold.
    CREDIT_LIMIT = 54
    #: The session's principal may not do this to the topic (read, write); decided before the topic is
    #: looked up, so it never tells whether the topic exists.
    NOT_AUTHORIZED = 60
    #: The session's principal may not use this consumer group (join it, commit, read its offsets).
    GROUP_NOT_AUTHORIZED = 61
    #: The principal is over one of its quotas; the message ends with ``retry_after_ms=N``: when the
    #: same command would be taken.
    QUOTA_EXCEEDED = 62
    #: A CmdAuth whose token does not verify, names another principal, or has no rights on the route.
    TOKEN_REFUSED = 63
    #: TXN_COMMIT, TXN_ABORT or a transactional CmdProduce with no transaction open on the connection.
    TXN_NOT_OPEN = 70
    #: TXN_BEGIN while the connection's transaction is still open.
    TXN_ALREADY_OPEN = 71
    #: Another producer with the same transactional.id took over (a second proxy with the same prefix).
    TXN_FENCED = 72
    #: The transaction stayed open longer than the route's transaction_timeout; the proxy aborted it.
    TXN_TIMED_OUT = 73
    #: The transaction could not be committed (a record of it failed, or Kafka refused); it was aborted.
    TXN_ABORTED = 74
    #: A CmdCommit names a partition the group has not assigned to the stream (or has revoked from it).
    NOT_ASSIGNED = 75
    #: Kafka refused a group's commit: the group rebalanced, or the member left it; commit again after the
    #: ``partitions`` event, for the partitions still assigned.
    COMMIT_FAILED = 76


#: Failures that say Kafka cannot be reached (as opposed to a bad request).
CONNECTION_FAILURES: Final = frozenset(
    {ErrorCode.BROKER_UNREACHABLE, ErrorCode.TIMEOUT, ErrorCode.AUTHENTICATION_FAILED, ErrorCode.TLS_FAILED}
)


class CommandFailed(Exception):
    """A command could not be carried out; ``reason`` is the short text after ``err:``.

    Raised by the Kafka edge (and by fakes in tests). The connection formats it
    into ``failed to fetch message, topic: ..., err: <reason>`` or the
    list-offset equivalent, with ``code`` as the response's error code.
    """

    def __init__(self, code: ErrorCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason

    def __repr__(self) -> str:
        return f"CommandFailed({self.code.name}, {self.reason!r})"


#: The reason of a NOT_AUTHORIZED or GROUP_NOT_AUTHORIZED failure (the operation is named before it).
NOT_AUTHORIZED_REASON: Final = "not authorized"
#: How a QUOTA_EXCEEDED message ends: the milliseconds to wait before sending the command again.
RETRY_AFTER_FIELD: Final = "retry_after_ms"


def quota_exceeded(quota: str, wait: float) -> CommandFailed:
    """The failure of a command refused by ``quota``, taken again after ``wait`` seconds (rounded up)."""
    return CommandFailed(
        ErrorCode.QUOTA_EXCEEDED, f"quota exceeded ({quota}), {RETRY_AFTER_FIELD}={max(1, math.ceil(wait * 1000))}"
    )


def topic_not_found() -> CommandFailed:
    return CommandFailed(ErrorCode.TOPIC_NOT_FOUND, NOT_FOUND_TOPIC)


def partition_not_found() -> CommandFailed:
    return CommandFailed(ErrorCode.PARTITION_NOT_FOUND, NOT_FOUND_PARTITION)


def list_offset_error(topic: str, partition: int, reason: str) -> str:
    """The message of an error answering a ListOffset, in the format APISIX clients match on."""
    return f"failed to list offset, topic: {topic}, partition: {partition}, err: {reason}"


def fetch_error(topic: str, partition: int, reason: str) -> str:
    """The message of an error answering a Fetch, in the format APISIX clients match on."""
    return f"failed to fetch message, topic: {topic}, partition: {partition}, err: {reason}"
