"""Fuzz frames for the proxy, and the oracle that says what the answer to each must be.

Frames are written by hand, byte by byte, so that they can be anything protobuf's own
encoder would refuse to make: wrong wire types, truncated fields, lengths far larger
than the frame, groups nested thousands deep, varints eleven bytes long, invalid
UTF-8 in a string, every command with fields out of range.

One generator serves two sources of choices: :class:`RandomSource` (a seeded
``random.Random``, fast, for the bulk of the cases) and :class:`HypothesisSource`
(draws from hypothesis, which can then shrink a failing frame to a small one).

The oracle is the contract of schema/README.md applied to what
``kafka_ws_trio._proto.decode_request`` makes of the frame: a frame that does not
decode gets ``wrong command`` with sequence 0; anything else gets exactly one answer
carrying its sequence, of the kind its command calls for.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Final, Protocol, TypeVar

import attrs
from hypothesis import strategies as st

from kafka_ws_trio._pb import pubsub_pb2 as pb
from kafka_ws_trio._proto import (
    ErrorCode,
    Fetch,
    Invalid,
    ListOffset,
    Malformed,
    Ping,
    Produce,
    Rejected,
    StreamCommand,
    Txn,
    UnknownCommand,
    decode_request,
    encode_ping_request,
    fetch_error,
    list_offset_error,
)

T = TypeVar("T")

INT32_MIN: Final = -(2**31)
INT32_MAX: Final = 2**31 - 1
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
UINT64_MAX: Final = 2**64 - 1
#: Protobuf's largest field number.
FIELD_MAX: Final = 2**29 - 1

# Wire types.
VARINT: Final = 0
FIXED64: Final = 1
LENGTH: Final = 2
START_GROUP: Final = 3
END_GROUP: Final = 4
FIXED32: Final = 5

# PubSubReq's fields and its commands' fields.
SEQUENCE: Final = 1
CMD_EMPTY: Final = 31
CMD_PING: Final = 32
CMD_FETCH: Final = 33
CMD_LIST_OFFSET: Final = 34
COMMAND_FIELDS: Final = (CMD_EMPTY, CMD_PING, CMD_FETCH, CMD_LIST_OFFSET)
#: The first command number no plan uses: 35 to 39 are the stream commands, 40 and 41 produce and
#: transactions (test_produce_fuzz.py fuzzes those). Commands the proxy serves get one answer each, so
#: the fuzzer sends only these.
UNKNOWN_COMMAND: Final = 60


class Source(Protocol):
    """Where the generator's choices come from."""

    def integer(self, low: int, high: int) -> int: ...

    def choice(self, options: Sequence[T]) -> T: ...

    def blob(self, max_size: int) -> bytes: ...

    def text(self, max_size: int) -> str: ...


class RandomSource:
    """Choices from a seeded ``random.Random``: reproducible from the seed alone."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def integer(self, low: int, high: int) -> int:
        return self._rng.randint(low, high)

    def choice(self, options: Sequence[T]) -> T:
        return options[self._rng.randrange(len(options))]

    def blob(self, max_size: int) -> bytes:
        return self._rng.randbytes(self._rng.randint(0, max_size))

    def text(self, max_size: int) -> str:
        size = self._rng.randint(0, max_size)
        # Mostly ASCII, some of everything else (but no surrogates: they cannot be UTF-8).
        return "".join(
            chr(self._rng.randint(0x20, 0x7E) if self._rng.random() < 0.8 else self._rng.randint(0x80, 0xD7FF))
            for _ in range(size)
        )


class HypothesisSource:
    """Choices drawn through hypothesis's ``st.data()``, so that failures shrink."""

    def __init__(self, data: st.DataObject) -> None:
        self._data = data

    def integer(self, low: int, high: int) -> int:
        return self._data.draw(st.integers(low, high))

    def choice(self, options: Sequence[T]) -> T:
        return self._data.draw(st.sampled_from(options))

    def blob(self, max_size: int) -> bytes:
        return self._data.draw(st.binary(max_size=max_size))

    def text(self, max_size: int) -> str:
        return self._data.draw(st.text(max_size=max_size))


# ----------------------------------------------------------- wire encoding


def varint(value: int) -> bytes:
    """Base-128 varint of a value taken as unsigned 64-bit (negatives as two's complement)."""
    value &= UINT64_MAX
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def length_field(number: int, payload: bytes) -> bytes:
    return tag(number, LENGTH) + varint(len(payload)) + payload


def varint_field(number: int, value: int) -> bytes:
    return tag(number, VARINT) + varint(value)


# ---------------------------------------------------------------- values


@attrs.frozen
class Targets:
    """What the fuzzer aims at: a real topic, so that some commands reach Kafka and read records.

    ``timestamps`` are its records' timestamps, in offset order; the log ends at their count.
    """

    topic: str
    timestamps: tuple[int, ...]

    @property
    def end(self) -> int:
        return len(self.timestamps)

    def offset_for(self, timestamp: int) -> int:
        """ListOffset's answer: the log end, the start, or the first record at or after ``timestamp``."""
        if timestamp == -1:
            return self.end
        if timestamp == -2:
            return 0
        return next((offset for offset, ts in enumerate(self.timestamps) if ts >= timestamp), -1)


def _int(source: Source, interesting: Sequence[int], low: int, high: int) -> int:
    if source.integer(0, 2) == 0:
        return source.integer(low, high)
    return source.choice(interesting)


def _topic(source: Source, targets: Targets) -> bytes:
    kind = source.integer(0, 9)
    if kind <= 6:
        # Mostly the real topic: an unknown one costs a metadata round trip of about 100 ms.
        return targets.topic.encode()
    if kind == 7:
        return source.choice([b"", b"not-exist", b"a" * 250, b"bad/name", b"..", b"\x00", "t\u00fcpic".encode()])
    if kind == 8:
        return source.blob(40)  # often not UTF-8: the frame must then be Malformed
    return source.text(40).encode()


def _partition(source: Source) -> int:
    return _int(source, [0, 0, 0, 1, 7, -1, INT32_MIN, INT32_MAX, 2**32, 2**40, -(2**40)], INT64_MIN, INT64_MAX)


def _offset(source: Source, targets: Targets) -> int:
    end = targets.end
    interesting = [0, 0, 1, end // 2, end - 1, end, end + 1, -1, -2, INT64_MAX, INT64_MIN, 2**40]
    return _int(source, interesting, INT64_MIN, INT64_MAX)


def _timestamp(source: Source, targets: Targets) -> int:
    first, last = targets.timestamps[0], targets.timestamps[-1]
    interesting = [-1, -2, -3, 0, first, first + 1, last, last + 1, 9_999_999_999_999, INT64_MAX, INT64_MIN]
    return _int(source, interesting, INT64_MIN, INT64_MAX)


# ----------------------------------------------------------------- frames


def _command_body(source: Source, number: int, targets: Targets) -> bytes:
    """The sub-message of one command, its fields in any order, some missing or repeated."""
    fields: list[bytes] = []
    if number == CMD_PING:
        if source.integer(0, 3):
            fields.append(length_field(1, source.blob(64)))
    elif number in (CMD_FETCH, CMD_LIST_OFFSET):
        if source.integer(0, 7):
            fields.append(length_field(1, _topic(source, targets)))
        if source.integer(0, 7):
            fields.append(varint_field(2, _partition(source)))
        if source.integer(0, 7):
            third = _offset(source, targets) if number == CMD_FETCH else _timestamp(source, targets)
            fields.append(varint_field(3, third))
    if source.integer(0, 7) == 0:
        fields.append(_unknown_field(source))
    if len(fields) > 1 and source.integer(0, 1):
        fields.reverse()
    if fields and source.integer(0, 9) == 0:
        fields.append(source.choice(fields))  # a repeated scalar: the last one wins
    return b"".join(fields)


def _unknown_field(source: Source) -> bytes:
    number = source.choice([2, 30, 35, 36, 100, FIELD_MAX, source.integer(2, FIELD_MAX)])
    wire_type = source.choice([VARINT, FIXED64, LENGTH, FIXED32])
    if wire_type == VARINT:
        return tag(number, wire_type) + varint(source.integer(0, UINT64_MAX))
    if wire_type == FIXED64:
        return tag(number, wire_type) + source.integer(0, UINT64_MAX).to_bytes(8, "little")
    if wire_type == FIXED32:
        return tag(number, wire_type) + source.integer(0, 2**32 - 1).to_bytes(4, "little")
    return length_field(number, source.blob(32))


def command_frame(source: Source, targets: Targets) -> bytes:
    """A frame that is a PubSubReq on the wire: sequence (or not), one command (or none, or two)."""
    parts: list[bytes] = []
    if source.integer(0, 5):
        parts.append(varint_field(SEQUENCE, _int(source, [0, 1, -1, INT64_MAX, INT64_MIN], INT64_MIN, INT64_MAX)))
    for _ in range(source.choice([1, 1, 1, 1, 1, 1, 0, 2])):
        unknown = source.integer(UNKNOWN_COMMAND, FIELD_MAX)
        number = source.choice([*COMMAND_FIELDS, *[CMD_FETCH, CMD_LIST_OFFSET] * 3, UNKNOWN_COMMAND, unknown])
        parts.append(length_field(number, _command_body(source, number, targets)))
    if len(parts) > 1 and source.integer(0, 2) == 0:
        parts.reverse()  # sequence after the command
    return b"".join(parts)


def wrong_wire_type_frame(source: Source, targets: Targets) -> bytes:
    """A known field of PubSubReq, or of a command, sent with a wire type it does not have."""
    number = source.choice([SEQUENCE, *COMMAND_FIELDS])
    wire_type = source.choice([VARINT, FIXED64, LENGTH, START_GROUP, END_GROUP, FIXED32, 6, 7])
    payload = {
        VARINT: varint(source.integer(0, UINT64_MAX)),
        FIXED64: source.blob(8),
        LENGTH: varint(len(body := source.blob(16))) + body,
        FIXED32: source.blob(4),
    }.get(wire_type, source.blob(8))
    field = tag(number, wire_type) + payload
    if number != SEQUENCE and source.integer(0, 1):
        # Or inside a command: topic as a varint, partition as bytes ...
        inner = tag(source.integer(1, 3), wire_type) + payload
        field = length_field(number, inner)
    return command_frame(source, targets) + field if source.integer(0, 1) else field


def huge_length_frame(source: Source, targets: Targets) -> bytes:
    """A length-delimited field claiming far more bytes than the frame holds."""
    number = source.choice([*COMMAND_FIELDS, UNKNOWN_COMMAND, 1, 2])
    length = source.choice([2**31 - 1, 2**31, 2**32, 2**32 + 1, 2**62, INT64_MAX, UINT64_MAX, 1_000_000])
    claim = tag(number, LENGTH) + varint(length)
    if source.integer(0, 3) == 0:
        claim = tag(number, LENGTH) + b"\xff" * source.integer(10, 12) + b"\x01"  # a varint too long to be one
    prefix = varint_field(SEQUENCE, source.integer(0, 1000)) if source.integer(0, 1) else b""
    if number in (CMD_FETCH, CMD_LIST_OFFSET) and source.integer(0, 1):
        # The lie told one level down, about the topic.
        inner_claim = tag(1, LENGTH) + varint(length) + source.blob(8)
        return prefix + length_field(number, inner_claim)
    return prefix + claim + source.blob(16)


def nested_frame(source: Source, targets: Targets) -> bytes:
    """Nesting far deeper than any parser recursion limit: groups, or sub-messages in fields."""
    depth = source.choice([10, 64, 99, 100, 101, 500, source.integer(1, 5000)])
    shape = source.integer(0, 2)
    if shape == 0:
        number = source.integer(2, 30)
        body = tag(number, START_GROUP) * depth + tag(number, END_GROUP) * depth
        if source.integer(0, 3) == 0:
            body = body[: source.integer(0, len(body))]  # unbalanced
        return body
    if shape == 1:
        # Unknown sub-messages inside cmd_empty, each wrapping the next.
        inner = b""
        for _ in range(depth):
            inner = length_field(source.integer(1, 30), inner)
        return varint_field(SEQUENCE, depth) + length_field(CMD_EMPTY, inner)
    # A group inside a command.
    number = source.integer(5, 30)
    group = tag(number, START_GROUP) * depth + tag(number, END_GROUP) * depth
    return varint_field(SEQUENCE, depth) + length_field(source.choice(COMMAND_FIELDS), group)


def mutate(source: Source, frame: bytes) -> bytes:
    """One to four blind edits: truncate, flip, insert, delete, duplicate, overwrite with 0xff."""
    data = bytearray(frame)
    for _ in range(source.integer(1, 4)):
        op = source.integer(0, 6)
        at = source.integer(0, len(data))
        if op == 0:
            del data[at:]
        elif op == 1 and data:
            index = min(at, len(data) - 1)
            data[index] ^= 1 << source.integer(0, 7)
        elif op == 2:
            data[at:at] = source.blob(8)
        elif op == 3:
            del data[at : at + source.integer(1, 8)]
        elif op == 4:
            data[at:at] = data[at : at + source.integer(1, 16)]
        elif op == 5 and data:
            index = min(at, len(data) - 1)
            data[index] = 0xFF
        else:
            data[at:at] = varint(source.integer(0, UINT64_MAX))
    return bytes(data)


#: Draws a fuzz frame may take to come out as something other than a valid stream command.
FRAME_DRAWS: Final = 20


def frame(source: Source, targets: Targets) -> bytes:
    """One fuzz frame of any kind, except a valid stream command.

    Those open, feed or move streams, whose answers (and pushes) depend on what came
    before, which this oracle does not follow. A mutation that turns a frame into one is drawn again; stream
    commands that cannot be valid (Rejected) stay, and are judged exactly.
    """
    for _ in range(FRAME_DRAWS):
        drawn = _any_frame(source, targets)
        if not isinstance(decode_request(drawn), StreamCommand):
            return drawn
    return encode_ping_request(1, b"no frame drawn")


def _any_frame(source: Source, targets: Targets) -> bytes:
    kind = source.integer(0, 11)
    if kind <= 5:
        return command_frame(source, targets)
    if kind == 6:
        return source.blob(source.choice([0, 1, 2, 16, 256]))
    if kind == 7:
        return wrong_wire_type_frame(source, targets)
    if kind == 8:
        return huge_length_frame(source, targets)
    if kind == 9:
        return nested_frame(source, targets)
    return mutate(source, command_frame(source, targets))


def sized_frame(size: int, sequence: int) -> bytes:
    """An ordinary ping of exactly ``size`` bytes (``size`` >= 16), whose pong is just as large.

    Written by the proxy's own codec: only its size is unusual.
    """
    for state_size in range(size, -1, -1):
        candidate = encode_ping_request(sequence, b"s" * state_size)
        if len(candidate) == size:
            return candidate
        if len(candidate) < size:
            break
    raise ValueError(f"no ping of exactly {size} bytes")


# ----------------------------------------------------------------- oracle


def expected_sequence(sent: bytes) -> int:
    """The sequence the answer to ``sent`` must carry."""
    request = decode_request(sent)
    return 0 if isinstance(request, Malformed) else request.sequence


def judge(sent: bytes, response: pb.PubSubResp, targets: Targets) -> str | None:
    """Why ``response`` is not a correct answer to the frame ``sent``; None when it is."""
    request = decode_request(sent)
    kind = response.WhichOneof("resp")
    error = response.error_resp
    if isinstance(request, Malformed):
        if (response.sequence, kind, error.code, error.message) != (
            0,
            "error_resp",
            ErrorCode.WRONG_COMMAND,
            "wrong command",
        ):
            return f"a malformed frame ({request.reason}) was answered with {response}"
        return None
    if response.sequence != request.sequence:
        return f"sequence {response.sequence} answers a frame with sequence {request.sequence}"
    if isinstance(request, Ping):
        if kind != "pong_resp" or response.pong_resp.state != request.state:
            return f"{request} was answered with {response}"
        return None
    if isinstance(request, UnknownCommand):
        if (kind, error.code, error.message) != ("error_resp", ErrorCode.UNKNOWN_COMMAND, "unknown command"):
            return f"{request} was answered with {response}"
        return None
    # A stream command that cannot be valid gets its own error at once. (Mutations can make one.)
    if isinstance(request, Rejected):
        if (kind, error.code, error.message) != ("error_resp", request.code, request.message):
            return f"{request} was answered with {response}"
        return None
    if isinstance(request, StreamCommand):
        return f"{request} is a valid stream command, which frame() never draws"
    if isinstance(request, Produce | Txn):
        # Only a mutation makes one (a byte turned into field 40 or 41's tag): its answer is judged
        # by tests/reliability/test_produce_fuzz.py; here it must only be an answer of its kind.
        if kind not in ("produce_resp" if isinstance(request, Produce) else "ok_resp", "error_resp"):
            return f"{request} was answered with {response}"
        return None
    if isinstance(request, Invalid):
        command = request.command
        describe = list_offset_error if isinstance(command, ListOffset) else fetch_error
        wanted = describe(command.topic, command.partition, request.reason)
        if (kind, error.code, error.message) != ("error_resp", ErrorCode.INVALID_REQUEST, wanted):
            return f"{request} was answered with {response}"
        return None
    return _judge_kafka(request, response, targets)


def _judge_kafka(request: Fetch | ListOffset, response: pb.PubSubResp, targets: Targets) -> str | None:
    """Exact: the fuzz topic's contents are known, and no other topic exists for the fuzzer."""
    describe = list_offset_error if isinstance(request, ListOffset) else fetch_error
    kind = response.WhichOneof("resp")
    error = response.error_resp
    failure: tuple[ErrorCode, str] | None = None
    if request.topic != targets.topic:
        failure = (ErrorCode.TOPIC_NOT_FOUND, "not found topic")
    elif request.partition != 0:
        failure = (ErrorCode.PARTITION_NOT_FOUND, "not found partition")
    elif isinstance(request, Fetch) and request.offset > targets.end:
        failure = (ErrorCode.OFFSET_OUT_OF_RANGE, "OFFSET_OUT_OF_RANGE")
    if failure is not None:
        code, reason = failure
        wanted = ("error_resp", code, describe(request.topic, request.partition, reason))
        if (kind, error.code, error.message) != wanted:
            return f"{request} was answered with {response}, not with {wanted}"
        return None
    if kind == "error_resp":
        return f"{request} failed: code {error.code}, {error.message!r}"
    if isinstance(request, ListOffset):
        wanted_offset = targets.offset_for(request.timestamp)
        if kind != "kafka_list_offset_resp" or response.kafka_list_offset_resp.offset != wanted_offset:
            return f"{request} was answered with {response}, not with offset {wanted_offset}"
        return None
    if kind != "kafka_fetch_resp":
        return f"{request} was answered with {response}"
    messages = response.kafka_fetch_resp.messages
    if request.offset == targets.end:
        return f"{request} at the log end got {len(messages)} records" if messages else None
    offsets = [m.offset for m in messages]
    if not offsets or offsets != list(range(request.offset, request.offset + len(offsets))):
        return f"{request} got offsets {offsets[:5]}..."
    for message in messages:
        if message.value != record_value(message.offset):
            return f"{request} got {message.value!r} at offset {message.offset}"
    return None


def record_value(offset: int) -> bytes:
    """The value of the fuzz topic's record at ``offset``."""
    return f"fuzz-record-{offset}".encode()
