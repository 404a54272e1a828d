"""What a session's principal may do, as the connection asks it before each command (sans-IO).

The connection knows commands, not principals: it asks an :class:`Access`
(made by the server from the route's rules and quotas, ``_auth``) whether the
command's operation is allowed on its topic, and, for a produce, whether the
principal's quota takes its records now. It asks before anything looks the
topic up, so a denial is the same whether the topic exists or not.

What each command asks:

- ListOffset, Fetch, CmdSubscribe: ``read`` on the topic; a subscribe with a
  group also ``group`` on the topic and the group;
- CmdGroupOffsets: ``group`` on the topic and the group;
- CmdProduce: ``write`` on the topic, then the produce quota;
- credit, seek, unsubscribe and commit act on a stream already allowed, and
  CmdTxn names no topic (its produces and commits are asked on their own).
"""

from __future__ import annotations

from typing import Final, Literal, Protocol

from ._errors import NOT_AUTHORIZED_REASON, CommandFailed, ErrorCode, quota_exceeded
from ._events import Fetch, GroupOffsets, Invalid, ListOffset, Produce, Subscribe

AccessOperation = Literal["read", "write", "group"]

#: The name a produce refused by its quota gives in its message.
PRODUCE_QUOTA: Final = "produce"


class Access(Protocol):
    """A session's rights and quotas."""

    def allows(self, operation: AccessOperation, topic: str, group: str | None = None) -> bool:
        """Whether the principal may do ``operation`` on ``topic`` (and ``group``, for a group operation)."""
        ...

    def produce_wait(self, records: int, size: int) -> float:
        """Take ``records`` and ``size`` bytes from the produce quotas: 0.0; or, taking nothing, the
        seconds until they would be there."""
        ...


def _denied(operation: AccessOperation, topic: str) -> CommandFailed:
    return CommandFailed(ErrorCode.NOT_AUTHORIZED, f"{NOT_AUTHORIZED_REASON} to {operation} topic {topic}")


def refusal(access: Access, request: object) -> CommandFailed | None:
    """Why ``access`` refuses ``request`` (a decoded request event), or None when it may go ahead."""
    if isinstance(request, Invalid):
        request = request.command
    if isinstance(request, ListOffset | Fetch):
        if not access.allows("read", request.topic):
            return CommandFailed(ErrorCode.NOT_AUTHORIZED, NOT_AUTHORIZED_REASON)  # the APISIX format names the topic
        return None
    if isinstance(request, Subscribe):
        if not access.allows("read", request.topic):
            return _denied("read", request.topic)
        if request.group and not access.allows("group", request.topic, request.group):
            return _group_denied(request.group)
        return None
    if isinstance(request, GroupOffsets):
        if not access.allows("group", request.topic, request.group):
            return _group_denied(request.group)
        return None
    if isinstance(request, Produce):
        if not access.allows("write", request.topic):
            return _denied("write", request.topic)
        wait = access.produce_wait(len(request.records), sum(record.size for record in request.records))
        return quota_exceeded(PRODUCE_QUOTA, wait) if wait > 0 else None
    return None


def _group_denied(group: str) -> CommandFailed:
    return CommandFailed(ErrorCode.GROUP_NOT_AUTHORIZED, f"{NOT_AUTHORIZED_REASON} to use group {group}")
