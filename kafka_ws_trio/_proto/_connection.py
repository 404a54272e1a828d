"""One connection's protocol state, server side, without I/O.

The session feeds it each binary frame and gets back either a reply to send
at once (ping, unknown and malformed commands, a topic name Kafka would
refuse) or a Kafka command with the partitions whose order it must keep.
Results from Kafka come back through :meth:`ServerConnection.answer`, which
turns them into the response frame, failures included. The ordering lanes
live here too; streams and credit (and later the authentication phase) will
join them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, TypeAlias

import attrs

from ._access import Access, refusal
from ._codec import RecordTooLarge, decode_request, encode_error, encode_fetch, encode_list_offset, encode_pong
from ._entries import EncodedBatch, encode_fetch_head, record_too_large
from ._errors import (
    UNKNOWN_COMMAND_MESSAGE,
    WRONG_COMMAND_MESSAGE,
    CommandFailed,
    ErrorCode,
    fetch_error,
    list_offset_error,
)
from ._events import (
    AddCredit,
    Auth,
    Commit,
    Fetch,
    GroupOffsets,
    Invalid,
    KafkaCommand,
    ListOffset,
    Malformed,
    Ping,
    Produce,
    ProduceCommand,
    Record,
    Rejected,
    Seek,
    StreamCommand,
    Subscribe,
    Txn,
    UnknownCommand,
    Unsubscribe,
)
from ._lanes import Key, Lanes

#: A response ready to send: a whole frame, or a fetch response as its per-session
#: head and its body (shared between sessions, and written without being copied).
Frame: TypeAlias = bytes | tuple[bytes, bytes]


@attrs.frozen
class Reply:
    """Send ``frame`` now; no Kafka work (the connection has counted it if it is an error)."""

    frame: bytes
    #: For the log: why a frame was malformed, or why the principal's rights or quotas refused it; else "".
    note: str = ""
    #: Whether the principal's rights or quotas refused the command (for the audit log).
    denied: bool = False
    #: The error code of a denial (NOT_AUTHORIZED, GROUP_NOT_AUTHORIZED or QUOTA_EXCEEDED), for the metrics.
    code: int = 0


@attrs.frozen
class Command:
    """A command for the Kafka side; its answer must keep the order of the partitions in ``keys``."""

    request: KafkaCommand
    keys: tuple[Key, ...]


@attrs.frozen
class StreamAction:
    """A stream command for the session's streams.

    ``keys`` holds the stream's own lane (:func:`stream_lane`), so the commands of one stream
    are answered in the order they came (a seek waits for the subscribe before it).
    """

    request: StreamCommand
    keys: tuple[Key, ...]


@attrs.frozen
class ProduceAction:
    """A produce or transaction command for the session's producer; these run in the order they came."""

    request: ProduceCommand


@attrs.frozen
class GroupAction:
    """A command that reads a consumer group's state (its committed offsets) without joining it."""

    request: GroupOffsets


@attrs.frozen
class AuthAction:
    """A fresh credential for the session's principal: check it, then answer ok or TOKEN_REFUSED."""

    request: Auth


#: The names :class:`Rejected` gives the commands of each extension.
_STREAM_COMMANDS: Final = frozenset({"subscribe", "credit", "unsubscribe", "seek", "commit"})
_PRODUCE_COMMANDS: Final = frozenset({"produce", "txn"})
_GROUP_COMMANDS: Final = frozenset({"group offsets"})
_AUTH_COMMANDS: Final = frozenset({"auth"})


#: The name the metrics give each command, by the class of its decoded request.
_KINDS: Final[dict[type, str]] = {
    Ping: "ping",
    ListOffset: "list_offset",
    Fetch: "fetch",
    Subscribe: "subscribe",
    AddCredit: "credit",
    Unsubscribe: "unsubscribe",
    Seek: "seek",
    Commit: "commit",
    Produce: "produce",
    Txn: "txn",
    GroupOffsets: "group_offsets",
    Auth: "auth",
    UnknownCommand: "unknown",
    Malformed: "malformed",
}


def kind_of(request: object) -> str:
    """The command's name in the metrics: a few fixed names, whatever the client sent."""
    if isinstance(request, Invalid):
        return kind_of(request.command)
    if isinstance(request, Rejected):
        return request.command.replace(" ", "_") if request.command else "unknown"
    return _KINDS.get(type(request), "unknown")


def stream_lane(stream_id: int) -> Key:
    """The lane of one stream's commands: keyed by an empty topic name, which no partition has."""
    return ("", stream_id)


def command_of(request: KafkaCommand) -> ListOffset | Fetch:
    """The ListOffset or Fetch a command is, or was meant to be (for an :class:`Invalid` one)."""
    return request.command if isinstance(request, Invalid) else request


#: What the Kafka side may answer a command with.
Result: TypeAlias = int | EncodedBatch | Sequence[Record] | CommandFailed


def fetch_frame(sequence: int, batch: EncodedBatch) -> tuple[bytes, bytes]:
    """A fetch answer as its per-session head and its (shared) body."""
    return encode_fetch_head(sequence, len(batch.body)), batch.body


class ServerConnection:
    """The server end of one PubSub connection."""

    __slots__ = (
        "access",
        "errors",
        "groups",
        "kind",
        "lanes",
        "max_message_size",
        "produce",
        "reauth",
        "streams",
    )

    def __init__(
        self,
        max_message_size: int,
        *,
        streams: bool = False,
        produce: bool = False,
        groups: bool = False,
        access: Access | None = None,
        reauth: bool = False,
    ) -> None:
        self.max_message_size = max_message_size
        #: The principal's rights and quotas, asked before each command; None: everything is allowed.
        self.access = access
        #: Whether the session reads consumer groups' offsets; without, CmdGroupOffsets is "unknown command".
        self.groups = groups
        #: Whether the session serves streams; without, stream commands are "unknown command".
        self.streams = streams
        #: Whether the session serves produce and transactions; without, they are "unknown command".
        self.produce = produce
        #: Whether the session takes a fresh credential (CmdAuth); without, it is "unknown command".
        self.reauth = reauth
        self.lanes = Lanes()
        #: Error responses produced so far (replies and answers alike).
        self.errors = 0
        #: The kind of the command :meth:`receive` took last (see :func:`kind_of`).
        self.kind = "unknown"

    def receive(self, frame: bytes) -> Reply | Command | StreamAction | ProduceAction | GroupAction | AuthAction:
        """What to do with one binary frame from the client."""
        request = decode_request(frame)
        self.kind = kind_of(request)
        if isinstance(request, Ping):
            return Reply(encode_pong(request.sequence, request.state))
        if self.access is not None and self._served(request):
            denied = self._refuse(request, self.access)
            if denied is not None:
                return denied
        if self.streams and isinstance(request, Subscribe | AddCredit | Unsubscribe | Seek | Commit):
            stream_id = request.sequence if isinstance(request, Subscribe) else request.subscription
            return StreamAction(request, (stream_lane(stream_id),))
        if self.produce and isinstance(request, Produce | Txn):
            return ProduceAction(request)
        if self.groups and isinstance(request, GroupOffsets):
            return GroupAction(request)
        if self.reauth and isinstance(request, Auth):
            return AuthAction(request)
        if isinstance(request, Rejected) and self._serves(request.command):
            self.errors += 1
            return Reply(encode_error(request.sequence, ErrorCode(request.code), request.message))
        # A session without streams (a backend that cannot feed them) does not know stream commands,
        # nor one without a producer produce commands: they get "unknown command", Rejected ones too,
        # so a client cannot take it for one that serves them.
        extension = Subscribe | AddCredit | Unsubscribe | Seek | Commit | Produce | Txn | GroupOffsets | Auth
        if isinstance(request, UnknownCommand | Rejected | extension):
            self.errors += 1
            return Reply(encode_error(request.sequence, ErrorCode.UNKNOWN_COMMAND, UNKNOWN_COMMAND_MESSAGE))
        if isinstance(request, Malformed):
            self.errors += 1
            return Reply(encode_error(0, ErrorCode.WRONG_COMMAND, WRONG_COMMAND_MESSAGE), note=request.reason)
        if isinstance(request, Invalid) and not request.queued:
            failure = CommandFailed(ErrorCode.INVALID_REQUEST, request.reason)
            answer = self.answer(request, failure)
            assert isinstance(answer, bytes)
            return Reply(answer)
        command = command_of(request)
        return Command(request, ((command.topic, command.partition),))

    def _served(self, request: object) -> bool:
        """Whether ``request`` is a command this connection carries out (else it is answered as unknown)."""
        if isinstance(request, ListOffset | Fetch | Invalid):
            return True
        if isinstance(request, Subscribe):
            return self.streams
        if isinstance(request, Produce):
            return self.produce
        if isinstance(request, GroupOffsets):
            return self.groups
        return False

    def _refuse(self, request: object, access: Access) -> Reply | None:
        """The error reply refusing ``request`` by the principal's rights or quotas, or None."""
        failure = refusal(access, request)
        if failure is None:
            return None
        if isinstance(request, ListOffset | Fetch | Invalid):
            answer = self.answer(request, failure)
            assert isinstance(answer, bytes)
            command = command_of(request)
            note = f"{failure.reason} to read topic {command.topic} (partition {command.partition})"
            return Reply(answer, note=note, denied=True, code=failure.code)
        assert isinstance(request, Subscribe | Produce | GroupOffsets)
        self.errors += 1
        frame = encode_error(request.sequence, failure.code, failure.reason)
        return Reply(frame, note=failure.reason, denied=True, code=failure.code)

    def _serves(self, command: str) -> bool:
        return (
            (self.streams and command in _STREAM_COMMANDS)
            or (self.produce and command in _PRODUCE_COMMANDS)
            or (self.groups and command in _GROUP_COMMANDS)
            or (self.reauth and command in _AUTH_COMMANDS)
        )

    def answer(self, request: KafkaCommand, result: Result) -> Frame:
        """The response frame for a command's result; a :class:`CommandFailed` becomes an error response."""
        command = command_of(request)
        if isinstance(request, Invalid) and not isinstance(result, CommandFailed):
            result = CommandFailed(ErrorCode.INVALID_REQUEST, request.reason)
        if isinstance(result, CommandFailed):
            self.errors += 1
            describe = list_offset_error if isinstance(command, ListOffset) else fetch_error
            message = describe(command.topic, command.partition, result.reason)
            return encode_error(command.sequence, result.code, message)
        if isinstance(result, int):
            return encode_list_offset(command.sequence, result)
        if isinstance(result, EncodedBatch):
            return fetch_frame(command.sequence, result)
        try:
            frame, _ = encode_fetch(command.sequence, result, self.max_message_size)
        except RecordTooLarge as exc:
            return self.answer(request, record_too_large(exc.offset, exc.size, self.max_message_size))
        return frame
