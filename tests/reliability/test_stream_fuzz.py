"""Stream commands that cannot succeed, fuzzed on the connection of a live stream, against a real broker.

CmdSubscribe, CmdCredit, CmdSeek and CmdUnsubscribe with absurd credit (2**62, -1,
int64's ends), ids no stream has and ids an open stream has, 10,000 partitions,
negative offsets, seeks past the log end, huge and odd topic names, and seeded random
mutations of valid stream frames (fields replaced by such values, then bytes edited).
Throughout:

* every such command gets one error response with its own sequence and the code and
  message schema/README.md documents for it ("Errors of stream commands"); a frame
  that no longer decodes gets ``wrong command``, a ping its pong;
* nothing else changes. Two streams are open on the same connection from the start:
  the control stream (LATEST, a first grant of ``CONTROL_CREDIT`` records) and a
  paused one (EARLIEST, ``Credit{}``), and both are the targets of many of the
  commands. Records are produced while the commands go out. The control stream gets
  exactly ``CONTROL_CREDIT`` of them, in order, then nothing until it is granted
  more, then exactly the rest; the paused stream gets nothing until it is granted 3
  records, then exactly 3. A refused grant added nothing, not even half of itself;
* a subscribe that failed leaves no stream behind (its id is unknown afterwards), and
  no push comes for any stream but the two.

The deterministic cases are listed one by one below, each with its documented answer.
The random ones are extra coverage: ``RELIABILITY_SEED=N`` replays a run's draws (a draw
whose answer would depend on a command still in flight is drawn again, so timing can
change which of them go out), and the seed is printed first, so that it shows with any
failure. Fast mode sends ``mode().stream_fuzz_frames`` of them (a few seconds), long
mode many more.

Beside it, the commands whose answer the fuzzing cannot judge, one by one: a subscribe
at an offset outside the log (accepted, then moved to the log's nearest end with an
error event), and a seek or unsubscribe queued before the subscribe of its id.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Final

import _fuzz
import attrs
import pytest
import trio
from _reliability import mode, produce_acknowledged
from _support import running_proxy
from integration._streams import PUSHES, QUIET, StreamClient, stream_client

from kafka_ws_trio._config import ProxyConfig, ServerConfig
from kafka_ws_trio._pb import pubsub_pb2 as pb
from kafka_ws_trio._proto import (
    AddCredit,
    AtOffset,
    Commit,
    ErrorAnswer,
    ErrorCode,
    Grant,
    Malformed,
    Ping,
    Pong,
    Rejected,
    Request,
    Response,
    Seek,
    StartEdge,
    StreamCaughtUp,
    StreamError,
    StreamRecords,
    Subscribe,
    SubscribeAnswer,
    UnknownCommand,
    Unsubscribe,
    decode_request,
    encode_ping_request,
)
from kafka_ws_trio._server import ProxyServer
from kafka_ws_trio.testing import KafkaBroker, create_topic

pytestmark = pytest.mark.reliability

INT32_MIN: Final = -(2**31)
INT32_MAX: Final = 2**31 - 1
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
#: The most credit a stream may hold (schema/README.md, "Credit").
MAX_RECORDS: Final = 2**31 - 1
MAX_BYTES: Final = 2**40
#: The route's bounds, as the tests set them (the defaults).
MAX_STREAMS: Final = 64
MAX_PARTITIONS: Final = 1024

PARTITIONS: Final = 2
#: The control stream: every partition from the log end, a first grant of CONTROL_CREDIT records.
CONTROL: Final = 7
CONTROL_CREDIT: Final = 40
#: The paused stream: every partition from the earliest record, Credit{}.
PAUSED: Final = 8
OPEN: Final = {CONTROL: frozenset(range(PARTITIONS)), PAUSED: frozenset(range(PARTITIONS))}
#: Records produced while the commands go out (more than the control stream's credit), and after.
RECORDS: Final = 60
EXTRA: Final = 10
#: An offset past the end of every log here.
FAR: Final = 10**12
#: An id no stream ever has.
UNKNOWN: Final = 424_242
#: Sequences of the fuzz commands start here, far from the streams' ids.
FIRST_SEQUENCE: Final = 1_000
#: Random commands in flight at once (answers of failed subscribes come back out of order).
WINDOW: Final = 16
#: Problems reported in full; the rest are counted.
PROBLEMS_SHOWN: Final = 20


# ------------------------------------------------------------ expectations


@attrs.frozen
class Expect:
    """What must answer one command, and what it is in words."""

    what: str
    accepts: Callable[[Response], bool] = attrs.field(repr=False)


def error(code: ErrorCode, message: str) -> Expect:
    """The error response with exactly this code and message."""
    return Expect(
        f"{code.name} {message!r}",
        lambda got: isinstance(got, ErrorAnswer) and (got.code, got.message) == (code, message),
    )


def error_like(code: ErrorCode, pattern: str, check: Callable[[re.Match[str]], bool], what: str) -> Expect:
    """An error response with ``code`` whose message matches ``pattern`` whole, ``check`` holding for the match."""
    compiled = re.compile(pattern)

    def accepts(got: Response) -> bool:
        if not isinstance(got, ErrorAnswer) or got.code != code:
            return False
        found = compiled.fullmatch(got.message)
        return found is not None and check(found)

    return Expect(f"{code.name} {what}", accepts)


def pong(state: bytes) -> Expect:
    return Expect(f"pong {state!r}", lambda got: isinstance(got, Pong) and got.state == state)


def either(options: Sequence[Expect]) -> Expect:
    """Any one of ``options``: when several problems apply, schema/README.md does not say which is named."""
    if len(options) == 1:
        return options[0]
    return Expect(" or ".join(o.what for o in options), lambda got: any(o.accepts(got) for o in options))


def unknown_stream(stream_id: int) -> Expect:
    return error(ErrorCode.UNKNOWN_STREAM, f"no stream {stream_id} is open on this connection")


def too_much_credit(stream_id: int, total: int, kind: str) -> Expect:
    bound = MAX_RECORDS if kind == "records" else MAX_BYTES
    return error(
        ErrorCode.CREDIT_LIMIT,
        f"stream {stream_id} would hold {total} {kind} of credit, more than the most a stream may hold ({bound})",
    )


def too_many_records_for_the_control_stream(grant: int) -> Expect:
    """CREDIT_LIMIT for a grant to the control stream, which holds 0 .. CONTROL_CREDIT records by then."""
    return error_like(
        ErrorCode.CREDIT_LIMIT,
        rf"stream {CONTROL} would hold (\d+) records of credit, more than the most a stream may hold \({MAX_RECORDS}\)",
        lambda found: 0 <= int(found[1]) - grant <= CONTROL_CREDIT,
        f"stream {CONTROL} would hold {grant} + 0..{CONTROL_CREDIT} records",
    )


def invalid(message: str) -> Expect:
    return error(ErrorCode.INVALID_REQUEST, message)


def not_read(stream_id: int, partition: int) -> Expect:
    return invalid(f"stream {stream_id} does not read partition {partition}")


def topic_not_found(topic: str) -> Expect:
    return error(ErrorCode.TOPIC_NOT_FOUND, f"failed to subscribe, topic: {topic}, err: not found topic")


def partition_not_found(topic: str, missing: frozenset[int]) -> Expect:
    return error_like(
        ErrorCode.PARTITION_NOT_FOUND,
        rf"failed to subscribe, topic: {re.escape(topic)}, partition: (\d+), err: not found partition",
        lambda found: int(found[1]) in missing,
        f"not found partition, one of {sorted(missing)[:5]}...",
    )


def too_many_partitions(stream_id: int, count: int) -> Expect:
    return error(
        ErrorCode.TOO_MANY_PARTITIONS,
        f"stream {stream_id} would read {count} partitions, more than max_stream_partitions ({MAX_PARTITIONS})",
    )


def duplicate(stream_id: int) -> Expect:
    return error(
        ErrorCode.DUPLICATE_STREAM,
        f"stream {stream_id} is already open; a subscribe needs a sequence no open stream uses",
    )


def seek_out_of_range(topic: str, partition: int) -> Expect:
    message = f"failed to seek, topic: {topic}, partition: {partition}, err: OFFSET_OUT_OF_RANGE"
    return error(ErrorCode.OFFSET_OUT_OF_RANGE, message)


WRONG_COMMAND: Final = error(ErrorCode.WRONG_COMMAND, "wrong command")
#: The fuzzed proxy's route has groups off (``groups = false``), so that a group subscribe, which
#: would join a real group, is refused the documented way instead.
GROUPS: Final = invalid("consumer groups are not available on this route")
INVALID_TOPIC_CHARACTERS: Final = "only ASCII letters, digits, '.', '_' and '-' are allowed"


def invalid_topic(topic: str, fault: str) -> Expect:
    """The documented answer to a subscribe naming a topic Kafka would refuse: the name JSON-quoted, cut at 64."""
    shown = topic if len(topic) <= 64 else topic[:64] + "..."
    return invalid(f"invalid subscribe: invalid topic {json.dumps(shown)}: {fault}")


# ------------------------------------------------------------------ frames


def request(sequence: int, **command: object) -> bytes:
    """A PubSubReq with one command, written by protobuf (which lets any int32 into an enum field)."""
    return pb.PubSubReq(sequence=sequence, **command).SerializeToString()  # type: ignore[arg-type]


def subscribe(sequence: int, topic: str, **fields: object) -> bytes:
    return request(sequence, cmd_subscribe=pb.CmdSubscribe(topic=topic, **fields))  # type: ignore[arg-type]


def offsets(*pairs: tuple[int, int]) -> pb.OffsetList:
    return pb.OffsetList(entries=[pb.PartitionOffset(partition=p, offset=o) for p, o in pairs])


def credit(sequence: int, stream_id: int, records: int = 0, bytes: int = 0) -> bytes:
    return request(
        sequence, cmd_credit=pb.CmdCredit(subscription=stream_id, credit=pb.Credit(records=records, bytes=bytes))
    )


def seek(sequence: int, stream_id: int, partition: int, **to: int) -> bytes:
    return request(sequence, cmd_seek=pb.CmdSeek(subscription=stream_id, partition=partition, **to))


def unsubscribe(sequence: int, stream_id: int) -> bytes:
    return request(sequence, cmd_unsubscribe=pb.CmdUnsubscribe(subscription=stream_id))


def commit(sequence: int, stream_id: int, *pairs: tuple[int, int]) -> bytes:
    return request(sequence, cmd_commit=pb.CmdCommit(subscription=stream_id, offsets=offsets(*pairs)))


def not_in_a_group(stream_id: int) -> Expect:
    return invalid(f"stream {stream_id} is not in a consumer group; only group streams commit")


#: A case: what it is, its frame, and its answer (None: it has none, like a grant of nothing).
Case = tuple[str, bytes, Expect | None]


def deterministic_cases(topic: str, first: int) -> list[Case]:
    """Every case by hand, each with its documented answer; sequences from ``first`` on, one each."""
    sequences = iter(range(first, first + 10_000))
    cases: list[Case] = []

    def add(what: str, build: Callable[[int], bytes], expect: Callable[[int], Expect | None]) -> None:
        sequence = next(sequences)
        cases.append((what, build(sequence), expect(sequence)))

    missing_topic = f"{topic}-missing"
    # Subscribe: fields that cannot be valid, in field order (schema/README.md's table).
    for name, odd in [
        ("empty", ""),
        ("250 characters", "a" * 250),
        ("100,000 characters", "b" * 100_000),
        ("a slash", "bad/name"),
        ("a dot", "."),
        ("two dots", ".."),
        ("non-ASCII", "t\u00fcpic"),
        ("quotes, backslash and a newline", 'a"b\\c\nd'),
        ("a NUL", "nul\x00"),
        ("300 non-ASCII characters", "\u00e9" * 300),
    ]:
        if not odd:
            expect = invalid("invalid subscribe: empty topic")
        elif len(odd) > 249:
            expect = invalid_topic(odd, f"{len(odd)} characters, at most 249 allowed")
        else:
            expect = invalid_topic(odd, INVALID_TOPIC_CHARACTERS)
        add(f"subscribe to a topic name: {name}", lambda s, odd=odd: subscribe(s, odd), lambda _, e=expect: e)
    for what, fields, message in [
        ("partition -1", {"partitions": [-1]}, "invalid subscribe: partition -1"),
        ("partition int32 min", {"partitions": [0, INT32_MIN]}, f"invalid subscribe: partition {INT32_MIN}"),
        ("a partition listed twice", {"partitions": [0, 1, 0]}, "invalid subscribe: partition 0 listed twice"),
        ("edge 7", {"edge": 7}, "invalid subscribe: edge 7"),
        ("edge -1", {"edge": -1}, "invalid subscribe: edge -1"),
        ("timestamp -1", {"timestamp": -1}, "invalid subscribe: timestamp -1"),
        ("timestamp int64 min", {"timestamp": INT64_MIN}, f"invalid subscribe: timestamp {INT64_MIN}"),
        ("offsets of partition -3", {"offsets": offsets((-3, 0))}, "invalid subscribe: offsets name partition -3"),
        (
            "offsets naming 0 twice",
            {"offsets": offsets((0, 0), (0, 1))},
            "invalid subscribe: offsets name partition 0 twice",
        ),
        (
            "offsets of a partition not listed",
            {"partitions": [0], "offsets": offsets((1, 0))},
            "invalid subscribe: offsets name partition 1, which is not in partitions",
        ),
        ("offset -5", {"offsets": offsets((0, -5))}, "invalid subscribe: offset -5 for partition 0"),
        (
            "offset int64 min",
            {"offsets": offsets((0, 3), (1, INT64_MIN))},
            f"invalid subscribe: offset {INT64_MIN} for partition 1",
        ),
        ("credit records -1", {"credit": pb.Credit(records=-1)}, "invalid subscribe: credit records -1"),
        ("credit bytes -1", {"credit": pb.Credit(records=5, bytes=-1)}, "invalid subscribe: credit bytes -1"),
        (
            "credit records int64 min",
            {"credit": pb.Credit(records=INT64_MIN)},
            f"invalid subscribe: credit records {INT64_MIN}",
        ),
        ("isolation 5", {"isolation": 5}, "invalid subscribe: isolation 5"),
        ("auto_commit without a group", {"auto_commit": True}, "invalid subscribe: auto_commit without a group"),
    ]:
        add(f"subscribe with {what}", lambda s, f=fields: subscribe(s, topic, **f), lambda _, m=message: invalid(m))
    # Subscribe: valid commands the connection or Kafka refuses.
    add("subscribe with the control stream's id", lambda _: subscribe(CONTROL, topic), lambda _: duplicate(CONTROL))
    add(
        "subscribe with the paused stream's id, from the earliest",
        lambda _: subscribe(PAUSED, topic, edge=pb.EARLIEST, credit=pb.Credit(records=5)),
        lambda _: duplicate(PAUSED),
    )
    add("subscribe to a missing topic", lambda s: subscribe(s, missing_topic), lambda _: topic_not_found(missing_topic))
    add(
        "subscribe READ_COMMITTED to a missing topic",
        lambda s: subscribe(s, missing_topic, isolation=pb.READ_COMMITTED),
        lambda _: topic_not_found(missing_topic),
    )
    add(
        "subscribe to 10,000 partitions",
        lambda s: subscribe(s, topic, partitions=range(10_000)),
        lambda s: too_many_partitions(s, 10_000),
    )
    add(
        "subscribe to 10,000 partitions of a missing topic",
        lambda s: subscribe(s, missing_topic, partitions=range(10_000)),
        lambda s: too_many_partitions(s, 10_000),
    )
    # (Which missing partition the message names is not documented: any of them.)
    add(
        "subscribe to 1,000 partitions",
        lambda s: subscribe(s, topic, partitions=range(1_000)),
        lambda _: partition_not_found(topic, frozenset(range(PARTITIONS, 1_000))),
    )
    add(
        "subscribe to partition int32 max",
        lambda s: subscribe(s, topic, partitions=[1, INT32_MAX]),
        lambda _: error(
            ErrorCode.PARTITION_NOT_FOUND,
            f"failed to subscribe, topic: {topic}, partition: {INT32_MAX}, err: not found partition",
        ),
    )
    add("subscribe in a group", lambda s: subscribe(s, topic, group="g"), lambda _: GROUPS)
    for records, size in [(2**62, 0), (2**31, 0), (INT64_MAX, 0), (1, MAX_BYTES + 1)]:
        kind, total = ("records", records) if records > MAX_RECORDS else ("bytes", size)
        add(
            f"subscribe with a first grant of {records} records and {size} bytes",
            lambda s, r=records, b=size: subscribe(s, topic, credit=pb.Credit(records=r, bytes=b)),
            lambda s, t=total, k=kind: too_much_credit(s, t, k),
        )
    # Credit.
    add(
        "credit of -1 records",
        lambda s: credit(s, CONTROL, records=-1),
        lambda _: invalid("invalid credit: records -1"),
    )
    add("credit of -1 bytes", lambda s: credit(s, CONTROL, bytes=-1), lambda _: invalid("invalid credit: bytes -1"))
    add(
        "credit of int64 min records to an unknown id",
        lambda s: credit(s, UNKNOWN, records=INT64_MIN),
        lambda _: invalid(f"invalid credit: records {INT64_MIN}"),
    )
    for grant in (2**62, 2**31, INT64_MAX):
        add(
            f"credit of {grant} records to the control stream",
            lambda s, g=grant: credit(s, CONTROL, records=g),
            lambda _, g=grant: too_many_records_for_the_control_stream(g),
        )
    add(
        "credit of 2**40 + 1 bytes to the control stream",
        lambda s: credit(s, CONTROL, bytes=MAX_BYTES + 1),
        lambda _: too_much_credit(CONTROL, MAX_BYTES + 1, "bytes"),
    )
    for records, size in [(2**62, 0), (2**31, 0), (MAX_RECORDS, MAX_BYTES + 1), (0, INT64_MAX), (INT64_MAX, 1)]:
        kind, total = ("records", records) if records > MAX_RECORDS else ("bytes", size)
        add(
            f"credit of {records} records and {size} bytes to the paused stream",
            lambda s, r=records, b=size: credit(s, PAUSED, records=r, bytes=b),
            lambda _, t=total, k=kind: too_much_credit(PAUSED, t, k),
        )
    for stream_id in (UNKNOWN, -1, 0, INT64_MIN, INT64_MAX):
        add(
            f"credit to unknown id {stream_id}",
            lambda s, i=stream_id: credit(s, i, records=1),
            lambda _, i=stream_id: unknown_stream(i),
        )
    add("an empty credit to an unknown id", lambda s: credit(s, UNKNOWN), lambda _: unknown_stream(UNKNOWN))
    add("an empty credit to the control stream (no answer)", lambda s: credit(s, CONTROL), lambda _: None)
    # Seek.
    for what, partition, to, message in [
        ("partition -1", -1, {"offset": 0}, "invalid seek: partition -1"),
        ("no target", 0, {}, "invalid seek: no target"),
        ("edge 9", 0, {"edge": 9}, "invalid seek: edge 9"),
        ("timestamp -1", 0, {"timestamp": -1}, "invalid seek: timestamp -1"),
        ("offset -1", 0, {"offset": -1}, "invalid seek: offset -1"),
        ("offset int64 min", 1, {"offset": INT64_MIN}, f"invalid seek: offset {INT64_MIN}"),
    ]:
        add(f"seek with {what}", lambda s, p=partition, t=to: seek(s, CONTROL, p, **t), lambda _, m=message: invalid(m))
    add("seek of an unknown id", lambda s: seek(s, UNKNOWN, 0, offset=0), lambda _: unknown_stream(UNKNOWN))
    add("seek of an unknown id -1", lambda s: seek(s, -1, 0, edge=pb.EARLIEST), lambda _: unknown_stream(-1))
    add("seek to partition 2", lambda s: seek(s, CONTROL, 2, offset=0), lambda _: not_read(CONTROL, 2))
    add(
        "seek to partition int32 max",
        lambda s: seek(s, CONTROL, INT32_MAX, edge=pb.EARLIEST),
        lambda _: not_read(CONTROL, INT32_MAX),
    )
    add(
        "seek of the paused stream to partition 7",
        lambda s: seek(s, PAUSED, 7, timestamp=0),
        lambda _: not_read(PAUSED, 7),
    )
    # An offset is checked against the log before anything moves: a seek that fails moves nothing.
    for stream_id, partition, offset in [(CONTROL, 0, FAR), (PAUSED, 1, INT64_MAX)]:
        add(
            f"seek of stream {stream_id} to offset {offset}, past the log end",
            lambda s, i=stream_id, p=partition, o=offset: seek(s, i, p, offset=o),
            lambda _, p=partition: seek_out_of_range(topic, p),
        )
    # Unsubscribe.
    for stream_id in (UNKNOWN, -7, INT64_MAX):
        add(
            f"unsubscribe of unknown id {stream_id}",
            lambda s, i=stream_id: unsubscribe(s, i),
            lambda _, i=stream_id: unknown_stream(i),
        )
    # Commit: no stream here is in a group.
    for stream_id in (UNKNOWN, -3, INT64_MAX):
        add(
            f"commit of unknown id {stream_id}",
            lambda s, i=stream_id: commit(s, i),
            lambda _, i=stream_id: unknown_stream(i),
        )
    add("commit of the control stream", lambda s: commit(s, CONTROL, (0, 1)), lambda _: not_in_a_group(CONTROL))
    add("commit of the paused stream", lambda s: commit(s, PAUSED), lambda _: not_in_a_group(PAUSED))
    for what, pairs, message in [
        ("offset -1", [(0, -1)], "invalid commit: offset -1 for partition 0"),
        ("partition -2", [(-2, 0)], "invalid commit: offsets name partition -2"),
        ("partition 1 twice", [(1, 0), (1, 5)], "invalid commit: offsets name partition 1 twice"),
    ]:
        add(f"commit with {what}", lambda s, p=pairs: commit(s, CONTROL, *p), lambda _, m=message: invalid(m))
    # Frames that do not decode, and pings among all of these.
    cases.append(
        (
            "a subscribe whose topic is not UTF-8",
            _fuzz.varint_field(1, 5) + _fuzz.length_field(35, _fuzz.length_field(1, b"\xff\xfe")),
            WRONG_COMMAND,
        )
    )
    # A ping after every few cases: answered at once, whatever waits for Kafka.
    with_pings: list[Case] = []
    for index, case in enumerate(cases):
        with_pings.append(case)
        if index % 8 == 7:
            state = f"ping after {index + 1} cases".encode()
            with_pings.append((state.decode(), encode_ping_request(next(sequences), state), pong(state)))
    return with_pings


# ------------------------------------------------------------ random frames


#: Stream ids the random commands name: the two open streams, and ids no stream has.
IDS: Final = (CONTROL, PAUSED, UNKNOWN, 0, -1, 1, INT64_MAX, INT64_MIN)
RECORD_GRANTS: Final = (
    -1,
    0,
    1,
    100,
    MAX_RECORDS - CONTROL_CREDIT,
    MAX_RECORDS,
    2**31,
    2**40,
    2**62,
    INT64_MAX,
    INT64_MIN,
)
BYTE_GRANTS: Final = (-1, 0, 1, 4096, MAX_BYTES, MAX_BYTES + 1, 2**62, INT64_MAX, INT64_MIN)
PARTITION_NUMBERS: Final = (0, 1, 2, 7, -1, INT32_MAX, INT32_MIN)
OFFSET_VALUES: Final = (0, 1, 5, FAR, -1, -5, INT64_MAX, INT64_MIN)
#: Random commands start from these sequences, so that none names one of the deterministic cases.
RANDOM_SEQUENCES: Final = 10_000_000


def _odd_topic(source: _fuzz.RandomSource, topic: str) -> str:
    return source.choice(
        [
            f"{topic}-missing",
            "",
            "a" * 250,
            "bad/name",
            "..",
            "t\u00fcpic",
            topic.upper(),
            source.text(40),
            "".join(source.choice("abcxyz-._") for _ in range(source.integer(1, 12))),
        ]
    )


def _partition_list(source: _fuzz.RandomSource) -> list[int]:
    kind = source.integer(0, 9)
    if kind <= 4:
        return source.choice([[], [0], [1], [0, 1], [1, 0]])
    if kind <= 7:
        return [source.choice(PARTITION_NUMBERS) for _ in range(source.integer(1, 4))]
    return list(range(source.choice([3, 1_024, 1_025, 10_000])))


def _grant(source: _fuzz.RandomSource) -> pb.Credit:
    records = source.choice(RECORD_GRANTS) if source.integer(0, 1) else source.integer(0, 1_000)
    size = source.choice(BYTE_GRANTS) if source.integer(0, 2) == 0 else 0
    return pb.Credit(records=records, bytes=size)


def _random_subscribe(source: _fuzz.RandomSource, topic: str) -> pb.CmdSubscribe:
    """A subscribe to the real topic, some of its fields replaced by values that cannot work."""
    command = pb.CmdSubscribe(topic=topic if source.integer(0, 2) else _odd_topic(source, topic))
    if source.integer(0, 1):
        command.partitions.extend(_partition_list(source))
    start = source.integer(0, 4)
    if start == 1:
        command.edge = source.choice([0, 1, 1, 2, -1, INT32_MAX])  # type: ignore[assignment]
    elif start == 2:
        command.timestamp = source.choice([0, 1_700_000_000_000, -1, INT64_MIN, INT64_MAX])
    elif start == 3:
        command.offsets.SetInParent()
        for _ in range(source.integer(0, 3)):
            partition = source.choice([0, 1, *PARTITION_NUMBERS])
            command.offsets.entries.add(partition=partition, offset=source.choice(OFFSET_VALUES))
    if source.integer(0, 1):
        command.credit.CopyFrom(_grant(source))
    if source.integer(0, 5) == 0:
        command.isolation = source.choice([1, 2, -1, INT32_MAX])  # type: ignore[assignment]
    if source.integer(0, 7) == 0:
        command.group = source.choice(["g", source.text(8)])
    if source.integer(0, 7) == 0:
        command.auto_commit = True
    if source.integer(0, 3) == 0:
        command.filter.key_prefix = source.blob(4)
    return command


def random_command(source: _fuzz.RandomSource, topic: str, sequence: int) -> bytes:
    """A stream command, valid in form or not, and sometimes its bytes edited blindly afterwards."""
    if source.integer(0, 5) == 0:
        sequence = source.choice(IDS)
    kind = source.integer(0, 19)
    if kind == 0:
        frame = encode_ping_request(sequence, source.blob(16))
    elif kind <= 7:
        frame = request(sequence, cmd_subscribe=_random_subscribe(source, topic))
    elif kind <= 12:
        frame = request(sequence, cmd_credit=pb.CmdCredit(subscription=source.choice(IDS), credit=_grant(source)))
    elif kind <= 17:
        command = pb.CmdSeek(subscription=source.choice(IDS), partition=source.choice(PARTITION_NUMBERS))
        target = source.integer(0, 3)
        if target == 0:
            command.edge = source.choice([0, 1, 5, -1])  # type: ignore[assignment]
        elif target == 1:
            command.timestamp = source.choice([0, -1, INT64_MAX, INT64_MIN])
        elif target == 2:
            command.offset = source.choice(OFFSET_VALUES)
        frame = request(sequence, cmd_seek=command)
    elif kind == 18:
        pairs = [(source.choice(PARTITION_NUMBERS), source.choice(OFFSET_VALUES)) for _ in range(source.integer(0, 3))]
        frame = commit(sequence, source.choice(IDS), *pairs)
    else:
        frame = unsubscribe(sequence, source.choice(IDS))
    return _fuzz.mutate(source, frame) if source.integer(0, 3) == 0 else frame


@attrs.frozen
class Oracle:
    """What schema/README.md says must answer a stream command sent beside the two open streams.

    None when the command would change something (a valid grant, seek or unsubscribe of
    an open stream, a subscribe that opens a stream), or when its answer would depend on
    a command still in flight: the caller draws another. ``busy`` are the sequences
    awaiting an answer (a subscribe among them may have opened its stream already), and
    ``named`` the streams that queued seeks and unsubscribes in flight name (each is
    looked up when its turn comes, so a subscribe of that id sent after it would change
    its answer: see test_a_seek_or_unsubscribe_sent_before_a_subscribe_does_not_touch_its_stream).
    """

    topic: str

    def expect(self, command: Request, busy: set[int], named: set[int]) -> Expect | None:
        if isinstance(command, Malformed):
            return WRONG_COMMAND
        if command.sequence in busy or (isinstance(command, Subscribe) and command.sequence in named):
            return None
        if isinstance(command, Ping):
            return pong(command.state)
        if isinstance(command, UnknownCommand):
            return error(ErrorCode.UNKNOWN_COMMAND, "unknown command")
        if isinstance(command, Rejected):
            return error(command.code, command.message)
        if isinstance(command, Subscribe):
            return self._subscribe(command)
        if isinstance(command, AddCredit | Seek | Unsubscribe | Commit):
            if command.subscription in busy:
                return None  # perhaps a subscribe still in flight opened it
            partitions = OPEN.get(command.subscription)
            if partitions is None:
                return unknown_stream(command.subscription)
            if isinstance(command, Commit):
                return not_in_a_group(command.subscription)
            if isinstance(command, AddCredit):
                return self._credit(command)
            if isinstance(command, Seek) and command.partition not in partitions:
                return not_read(command.subscription, command.partition)
            if isinstance(command, Seek) and isinstance(command.to, AtOffset) and command.to.offset >= FAR:
                return seek_out_of_range(self.topic, command.partition)
        return None  # it would move or close an open stream; or a Kafka command, not drawn here

    def _subscribe(self, command: Subscribe) -> Expect | None:
        refusals = []
        if command.sequence in OPEN:
            refusals.append(duplicate(command.sequence))
        if command.group:
            refusals.append(GROUPS)
        if len(command.partitions) > MAX_PARTITIONS:
            refusals.append(too_many_partitions(command.sequence, len(command.partitions)))
        if command.credit is not None:
            if command.credit.records > MAX_RECORDS:
                refusals.append(too_much_credit(command.sequence, command.credit.records, "records"))
            if command.credit.bytes > MAX_BYTES:
                refusals.append(too_much_credit(command.sequence, command.credit.bytes, "bytes"))
        if refusals:
            return either(refusals)
        # (At most 2 + WINDOW streams are ever registered at once: never TOO_MANY_STREAMS.)
        if command.topic != self.topic:
            return topic_not_found(command.topic)
        missing = frozenset(command.partitions) - frozenset(range(PARTITIONS))
        return partition_not_found(self.topic, missing) if missing else None

    def _credit(self, command: AddCredit) -> Expect | None:
        """A grant to an open stream: the paused one holds exactly 0, the control one 0..CONTROL_CREDIT records."""
        stream_id, grant = command.subscription, command.grant
        refused = grant.records > MAX_RECORDS or grant.bytes > MAX_BYTES
        refusals = []
        if stream_id == PAUSED:
            if grant.records > MAX_RECORDS:
                refusals.append(too_much_credit(PAUSED, grant.records, "records"))
        elif grant.records > MAX_RECORDS - CONTROL_CREDIT:
            refusals.append(too_many_records_for_the_control_stream(grant.records))
        if grant.bytes > MAX_BYTES:
            refusals.append(too_much_credit(stream_id, grant.bytes, "bytes"))
        return either(refusals) if refused else None


# ------------------------------------------------------------------- judge


@attrs.define
class Judge:
    """Matches every answer on the connection to a command in flight; everything else is a problem.

    The two streams' records and caught_up events are checked by the test itself.
    """

    client: StreamClient
    #: Commands awaiting their answer, by sequence: what it is, its answer, and the stream it names when
    #: it is a seek or an unsubscribe.
    pending: dict[int, list[tuple[str, Expect, int | None]]] = attrs.Factory(dict)
    in_flight: int = 0
    sent: int = 0
    answered: int = 0
    problems: list[str] = attrs.Factory(list)
    #: What was sent, by kind.
    kinds: Counter[str] = attrs.Factory(Counter)
    _named: Counter[int] = attrs.Factory(Counter)
    #: How much of what the connection received was judged (what came before the judge is not its business).
    _seen: int = 0

    def __attrs_post_init__(self) -> None:
        self._seen = len(self.client.received)

    def busy(self) -> set[int]:
        """The sequences of the commands awaiting their answer."""
        return set(self.pending)

    def named(self) -> set[int]:
        """The streams named by the seeks and unsubscribes awaiting their answer."""
        return {stream_id for stream_id, count in self._named.items() if count}

    async def send(self, what: str, frame: bytes, expect: Expect | None, kind: str | None = None) -> None:
        if expect is not None:
            command = decode_request(frame)
            names = command.subscription if isinstance(command, Seek | Unsubscribe) else None
            self.pending.setdefault(_fuzz.expected_sequence(frame), []).append((what, expect, names))
            self.in_flight += 1
            if names is not None:
                self._named[names] += 1
        self.sent += 1
        if kind is not None:
            self.kinds[kind] += 1
        await self.client.send(frame)

    def catch_up(self) -> None:
        """Judge what arrived since the last look."""
        received = self.client.received
        for response in received[self._seen :]:
            if isinstance(response, StreamRecords | StreamCaughtUp) and response.sequence in OPEN:
                continue
            sequence = getattr(response, "sequence", None)
            candidates = self.pending.get(sequence, []) if isinstance(sequence, int) else []
            index = next((i for i, (_, expect, _) in enumerate(candidates) if expect.accepts(response)), None)
            if index is None:
                wanted = "; ".join(f"{what}: {expect.what}" for what, expect, _ in candidates) or "nothing"
                self.problems.append(f"got {str(response)[:300]}, wanted {wanted[:600]}")
                continue
            _, _, names = candidates.pop(index)
            if names is not None:
                self._named[names] -= 1
            if not candidates:
                del self.pending[sequence]  # type: ignore[arg-type]
            self.in_flight -= 1
            self.answered += 1
        self._seen = len(received)

    async def until_fewer_than(self, count: int) -> None:
        def room() -> bool:
            self.catch_up()
            return self.in_flight < count

        try:
            await self.client.until(room, f"fewer than {count} commands in flight")
        except AssertionError as exc:
            shown = "\n".join(self.problems[:PROBLEMS_SHOWN])
            raise AssertionError(f"{exc}\nstill waiting for: {self._describe()}\nwrong answers:\n{shown}") from None

    async def drain(self) -> None:
        """Wait until every command sent has its answer."""
        await self.until_fewer_than(1)

    def _describe(self) -> str:
        return "; ".join(f"{s}: {what}" for s, items in list(self.pending.items())[:5] for what, _, _ in items)


DRAWS: Final = 20


async def random_commands(judge: Judge, oracle: Oracle, count: int, rng: random.Random) -> None:
    """Send ``count`` random commands, at most WINDOW in flight, each one the oracle can judge."""
    source = _fuzz.RandomSource(rng)
    sequence = RANDOM_SEQUENCES
    for _ in range(count):
        await judge.until_fewer_than(WINDOW)
        for _ in range(DRAWS):
            sequence += 1
            frame = random_command(source, oracle.topic, sequence)
            command = decode_request(frame)
            expect = oracle.expect(command, judge.busy(), judge.named())
            if expect is not None:
                break
        else:
            frame = encode_ping_request(sequence, b"none drawn")
            command, expect = decode_request(frame), pong(b"none drawn")
        await judge.send(f"{command}"[:300], frame, expect, type(command).__name__)


# ------------------------------------------------------------------- tests


def value(partition: int, n: int) -> bytes:
    return f"p{partition}-{n}".encode()


def records_to_produce(first: int, count: int) -> list[tuple[int, bytes]]:
    """Records ``first`` .. ``first + count - 1``, alternately to each partition: the n-th goes to n % PARTITIONS."""
    return [(n % PARTITIONS, value(n % PARTITIONS, n)) for n in range(first, first + count)]


def expected_by_partition(count: int) -> dict[int, list[tuple[int, bytes]]]:
    """(offset, value) of the first ``count`` records produced, by partition (a new topic: offsets from 0)."""
    by_partition: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(PARTITIONS)}
    for partition, data in records_to_produce(0, count):
        by_partition[partition].append((len(by_partition[partition]), data))
    return by_partition


def delivered(client: StreamClient, stream_id: int) -> dict[int, list[tuple[int, bytes | None]]]:
    got = client.records(stream_id)
    return {p: [(r.offset, r.value) for r in got.get(p, [])] for p in range(PARTITIONS)}


def assert_prefixes(client: StreamClient, stream_id: int, produced: int, total: int) -> None:
    """The stream got ``total`` records: in each partition the first ones produced, in order, each once."""
    got = delivered(client, stream_id)
    wanted = expected_by_partition(produced)
    assert sum(len(r) for r in got.values()) == total, f"stream {stream_id} got {got}"
    for partition, records in got.items():
        assert records == wanted[partition][: len(records)], f"stream {stream_id}, partition {partition}: {records}"


def proxy(kafka_broker: KafkaBroker) -> AbstractAsyncContextManager[ProxyServer]:
    """The proxy, in this process, with the route bounds the expectations use."""
    bounds = {"max_streams": MAX_STREAMS, "max_stream_partitions": MAX_PARTITIONS, "groups": False}
    config = ProxyConfig.single_route(kafka_broker.bootstrap, server=ServerConfig(port=0), **bounds)
    return running_proxy(config)


@pytest.mark.timeout(mode().limit(120, 1800))
async def test_stream_commands_that_cannot_succeed_get_their_error_and_change_nothing(
    kafka_broker: KafkaBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="kafka_ws_trio")
    seed = int(os.environ.get("RELIABILITY_SEED") or random.randrange(2**32))
    # First thing, so that pytest shows it with any failure, an exception included.
    print(f"\nstream fuzz: RELIABILITY_SEED={seed} replays this run")
    topic = await trio.to_thread.run_sync(lambda: create_topic(kafka_broker, partitions=PARTITIONS))
    cases = deterministic_cases(topic, FIRST_SEQUENCE)
    started = trio.current_time()
    async with proxy(kafka_broker) as server, stream_client(server.url + "/kafka") as client:
        opened = await client.subscribe(CONTROL, topic, start=StartEdge.LATEST, credit=Grant(records=CONTROL_CREDIT))
        assert opened.positions == ((0, 0), (1, 0))
        opened = await client.subscribe(PAUSED, topic, start=StartEdge.EARLIEST, credit=Grant())
        assert opened.positions == ((0, 0), (1, 0))
        judge = Judge(client)
        async with trio.open_nursery() as nursery:
            # Records come while the commands go out; the control stream takes CONTROL_CREDIT of them.
            nursery.start_soon(produce_acknowledged, kafka_broker, topic, records_to_produce(0, RECORDS), 0.01)
            for what, frame, expect in cases:  # all at once: answers that wait for Kafka come out of order
                await judge.send(what, frame, expect)
            await judge.drain()
            # No subscribe that failed left a stream behind: its id is unknown now.
            subscribes = {_fuzz.expected_sequence(f) for _, f, _ in cases if isinstance(decode_request(f), Subscribe)}
            for index, stream_id in enumerate(sorted(subscribes - set(OPEN))):
                sequence = FIRST_SEQUENCE // 2 + index
                await judge.send(
                    f"unsubscribe {stream_id}", unsubscribe(sequence, stream_id), unknown_stream(stream_id)
                )
            await judge.drain()
            await random_commands(judge, Oracle(topic), mode().stream_fuzz_frames, random.Random(seed))
            await judge.drain()
        fuzzed = trio.current_time() - started
        shown = "\n".join(judge.problems[:PROBLEMS_SHOWN])
        assert not judge.problems, f"seed {seed}: {len(judge.problems)} wrong answers, the first ones:\n{shown}"
        silent = sum(1 for _, _, expect in cases if expect is None)  # the empty grant
        assert judge.answered == judge.sent - silent, f"{judge.sent} commands sent, {judge.answered} answered"

        # The control stream took exactly its credit, in order, and nothing more came.
        await client.until(lambda: client.count(CONTROL) >= CONTROL_CREDIT, f"{CONTROL_CREDIT} records")
        await trio.sleep(QUIET)
        assert_prefixes(client, CONTROL, RECORDS, CONTROL_CREDIT)
        assert client.count(PAUSED) == 0, "the paused stream got records it was never granted"
        # Granted the rest, it gets exactly the rest.
        await client.credit(CONTROL, records=RECORDS - CONTROL_CREDIT)
        await client.until(lambda: client.count(CONTROL) >= RECORDS, f"all {RECORDS} records")
        await produce_acknowledged(kafka_broker, topic, records_to_produce(RECORDS, EXTRA))
        await trio.sleep(QUIET)
        assert_prefixes(client, CONTROL, RECORDS, RECORDS)
        await client.credit(CONTROL, records=EXTRA)
        await client.until(lambda: client.count(CONTROL) >= RECORDS + EXTRA, f"all {RECORDS + EXTRA} records")
        # The paused stream: 3 records for a grant of 3, from the earliest, and no more.
        await client.credit(PAUSED, records=3)
        await client.until(lambda: client.count(PAUSED) >= 3, "3 records of the paused stream")
        await trio.sleep(QUIET)
        assert_prefixes(client, CONTROL, RECORDS + EXTRA, RECORDS + EXTRA)
        assert_prefixes(client, PAUSED, RECORDS + EXTRA, 3)
        await judge.send("the last ping", encode_ping_request(99, b"last"), pong(b"last"))
        await judge.drain()
        assert not judge.problems, judge.problems[:PROBLEMS_SHOWN]
        statistics = server.statistics()
    print(
        f"\nstream fuzz (seed {seed}): {judge.sent} commands in {fuzzed:.1f}s ({len(cases)} cases, "
        f"{len(subscribes - set(OPEN))} unsubscribes of their failed subscribes, random ones decoded as "
        f"{dict(judge.kinds)}); the control stream got {client.count(CONTROL)} records, the paused one "
        f"{client.count(PAUSED)}; proxy sessions {statistics.sessions_total}"
    )
    assert statistics.sessions_total == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors[:PROBLEMS_SHOWN]


def delete_records_before(broker: KafkaBroker, topic: str, partition: int, offset: int) -> None:
    """What retention does to old records: the partition's log now starts at ``offset``."""
    from kafka import TopicPartition
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(**broker.client_config())
    try:
        admin.delete_records({TopicPartition(topic, partition): offset}, timeout_ms=30_000)
    finally:
        admin.close()


def outside_the_log(stream_id: int, partition: int, offset: int, log: range, going_on: int) -> StreamError:
    """The error event schema/README.md ("Events") documents for a position outside the log ``log``."""
    message = (
        f"OFFSET_OUT_OF_RANGE: offset {offset} is outside the log, which holds offsets {log.start} to "
        f"{log.stop - 1}; going on from {going_on}"
    )
    return StreamError(stream_id, ErrorCode.OFFSET_OUT_OF_RANGE, message, partition)


def value_at(partition: int, offset: int) -> bytes:
    return b"p%d-%d" % (partition, offset)


def each_partition(partitions: int, offsets: range) -> list[tuple[int, bytes]]:
    """Records at ``offsets`` of every partition of a new topic, each with its :func:`value_at`."""
    return [(p, value_at(p, n)) for p in range(partitions) for n in offsets]


def pushes_of(client: StreamClient, stream_id: int) -> list[Response]:
    return [r for r in client.received if isinstance(r, PUSHES) and r.sequence == stream_id]


@pytest.mark.timeout(90)
async def test_a_subscribe_at_an_offset_outside_the_log_goes_on_from_its_nearest_end_after_an_error_event(
    kafka_broker: KafkaBroker,
) -> None:
    """schema/README.md, "Subscribe" and "Events": such a subscribe is accepted; the partition's first push is an
    error event saying where it goes on (the log's nearest end), then its records from there, each once."""
    topic = await trio.to_thread.run_sync(lambda: create_topic(kafka_broker, partitions=4))
    await produce_acknowledged(kafka_broker, topic, each_partition(4, range(3)))
    await trio.to_thread.run_sync(delete_records_before, kafka_broker, topic, 2, 2)
    whole, trimmed = range(3), range(2, 3)
    # One stream to a partition: (stream, partition, offset named, error event, first offset delivered).
    streams = [
        (21, 0, 4, outside_the_log(21, 0, 4, whole, 3), 3),  # one past the log end
        (22, 1, FAR, outside_the_log(22, 1, FAR, whole, 3), 3),  # far past it
        (23, 2, 0, outside_the_log(23, 2, 0, trimmed, 2), 2),  # before the earliest record left
        (24, 3, 3, None, 3),  # the log end itself: no error
    ]
    async with proxy(kafka_broker) as server, stream_client(server.url + "/kafka") as client:
        for stream_id, partition, offset, _, _ in streams:
            frame = subscribe(stream_id, topic, partitions=[partition], offsets=offsets((partition, offset)))
            answer = await client.ask(stream_id, frame)
            assert answer == SubscribeAnswer(stream_id, ((partition, offset),))
        told = [stream_id for stream_id, _, _, event, _ in streams if event is not None]
        await client.until(lambda: all(client.pushes(s, StreamError) for s in told), f"error events on {told}")
        await produce_acknowledged(kafka_broker, topic, each_partition(4, range(3, 5)))
        await client.until(
            lambda: all(client.count(s) >= 5 - first for s, _, _, _, first in streams), "the records from there"
        )
        await trio.sleep(QUIET)
    for stream_id, partition, _, event, first in streams:
        pushes = pushes_of(client, stream_id)
        errors = [push for push in pushes if isinstance(push, StreamError)]
        assert errors == ([] if event is None else [event])
        assert event is None or pushes[0] == event, f"stream {stream_id}: {pushes[0]} came before the error event"
        got = [(r.offset, r.value) for r in client.records(stream_id).get(partition, [])]
        assert got == [(n, value_at(partition, n)) for n in range(first, 5)], f"stream {stream_id}"


@pytest.mark.timeout(90)
async def test_a_stream_past_the_log_end_is_moved_into_the_log_beside_a_stream_tailing_the_partition(
    kafka_broker: KafkaBroker,
) -> None:
    """The same subscribe on a partition another stream is tailing: the pump still reads at its position."""
    topic = await trio.to_thread.run_sync(lambda: create_topic(kafka_broker, partitions=1))
    await produce_acknowledged(kafka_broker, topic, each_partition(1, range(3)))
    async with proxy(kafka_broker) as server, stream_client(server.url + "/kafka") as client:
        await client.subscribe(31, topic, start=StartEdge.LATEST, credit=Grant(records=10))
        await client.until(lambda: client.caught_up(31) == {0}, "stream 31 caught up")
        frame = subscribe(32, topic, offsets=offsets((0, FAR)), credit=pb.Credit(records=10))
        assert await client.ask(32, frame) == SubscribeAnswer(32, ((0, FAR),))
        await client.until(lambda: bool(client.pushes(32, StreamError)), "an error event on stream 32")
        await produce_acknowledged(kafka_broker, topic, each_partition(1, range(3, 5)))
        await client.until(lambda: client.count(31) >= 2 and client.count(32) >= 2, "records 3 and 4 on both streams")
        await trio.sleep(QUIET)
    assert client.pushes(32, StreamError) == [outside_the_log(32, 0, FAR, range(3), 3)]
    for stream_id in (31, 32):
        got = [(r.offset, r.value) for r in client.records(stream_id).get(0, [])]
        assert got == [(n, value_at(0, n)) for n in range(3, 5)], f"stream {stream_id}"


@pytest.mark.timeout(60)
async def test_a_seek_or_unsubscribe_sent_before_a_subscribe_does_not_touch_its_stream(
    kafka_broker: KafkaBroker,
) -> None:
    """Commands take effect in the order they are sent: one naming no open stream gets UNKNOWN_STREAM, even
    when the subscribe right behind it opens a stream with that id (found by the random commands, long mode)."""
    topic = await trio.to_thread.run_sync(lambda: create_topic(kafka_broker, partitions=PARTITIONS))
    await produce_acknowledged(kafka_broker, topic, records_to_produce(0, 6))
    # One worker, busy with the first subscribe (metadata, start offsets, partition readers): the commands
    # after it wait in the queue, while the reader takes the frames behind them at once.
    config = ProxyConfig.single_route(kafka_broker.bootstrap, server=ServerConfig(port=0, workers=1))
    async with running_proxy(config) as server, stream_client(server.url + "/kafka") as client:
        for frame in (
            subscribe(30, topic, edge=pb.EARLIEST, credit=pb.Credit()),
            unsubscribe(500, 31),
            seek(501, 32, 0, offset=0),
            subscribe(31, topic, edge=pb.EARLIEST),
            subscribe(32, topic, edge=pb.LATEST),
        ):
            await client.send(frame)
        answers = {sequence: await client.answer(sequence) for sequence in (30, 500, 501, 31, 32)}
        assert answers[500] == ErrorAnswer(500, ErrorCode.UNKNOWN_STREAM, "no stream 31 is open on this connection")
        assert answers[501] == ErrorAnswer(501, ErrorCode.UNKNOWN_STREAM, "no stream 32 is open on this connection")
        assert [type(answers[s]).__name__ for s in (30, 31, 32)] == ["SubscribeAnswer"] * 3, answers
        await client.until(lambda: client.count(31) >= 6, "the 6 records on stream 31")
