"""Produce and transaction commands that cannot succeed, or succeed only in part, against a real broker.

CmdProduce with no records, 10,001 and 100,000 records (the protocol's bound is
``MAX_PRODUCE_RECORDS``, 10,000, which itself is written whole), keys, values and headers
larger than the route's ``produce_max_record_bytes``, negative partitions, partitions the
topic lacks, a missing topic, records with neither key nor value, null header values,
negative timestamps, acks values out of range, odd topic names; CmdTxn with unknown
actions, commit and abort without a begin, a transactional produce without a transaction,
a second begin. Then seeded random produce and transaction frames, mutated. Throughout:

* every command gets exactly one answer with its own sequence: a command that cannot be
  valid the error response schema/README.md documents ("Errors of produce and transaction
  commands"), whole; a valid one a ProduceResp with one result per record, each record the
  proxy must refuse ``NotWritten`` with its documented code and message, the others
  ``Written`` (at the partition they asked for, or murmur2's for a key); a frame that does
  not decode ``wrong command``;
* after each deterministic case the same session still works: a valid produce is written
  and a ping answered;
* nothing else happens: read back with kafka-python (READ_COMMITTED), the topic holds
  exactly the records answered ``Written`` (outside transactions and in committed ones),
  each at its partition and offset, and nothing of refused commands or aborted
  transactions;
* a frame over ``max_message_size`` closes its own connection with 1009, one at the limit
  is answered, and neither writes anything.

The random frames are extra coverage: ``RELIABILITY_SEED=N`` replays a run's draws, and the
seed is printed first, so that it shows with any failure. A draw whose answer the oracle
cannot know is drawn again (a TXN_BEGIN, a command other than produce, transaction or ping,
a sequence still in flight, a timestamp the broker would refuse: see the test of that below).

Beside them, tests of what these tests found in the proxy, now fixed: a record whose timestamp
the broker refuses made the shared idempotent producer fail every session's records in flight;
and a commit after a record of the transaction failed committed the others.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final

import _fuzz
import attrs
import pytest
import trio
from _reliability import WAIT, mode
from _support import running_proxy
from integration._streams import QUIET, StreamClient, stream_client
from trio_websocket import ConnectionClosed, open_websocket_url

from kafka_ws_trio._config import ProxyConfig, ServerConfig
from kafka_ws_trio._pb import pubsub_pb2 as pb
from kafka_ws_trio._proto import (
    MAX_PRODUCE_RECORDS,
    Acks,
    ErrorAnswer,
    ErrorCode,
    Malformed,
    NotWritten,
    OkAnswer,
    OutRecord,
    Ping,
    Pong,
    Produce,
    ProduceAnswer,
    Rejected,
    Response,
    Txn,
    TxnAction,
    UnknownCommand,
    Written,
    decode_request,
    encode_ping_request,
)
from kafka_ws_trio.testing import KafkaBroker, create_topic

pytestmark = pytest.mark.reliability

INT32_MIN: Final = -(2**31)
INT32_MAX: Final = 2**31 - 1
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
PARTITIONS: Final = 2
#: The route's produce_max_record_bytes: small, so that records over it fit in a frame.
MAX_RECORD: Final = 65_536
#: The proxy's max_message_size (the default).
MAX_MESSAGE_SIZE: Final = ServerConfig().max_message_size
#: Random commands in flight at once on the session.
WINDOW: Final = 16
#: Draws a random command may take to come out as one the oracle can judge.
DRAWS: Final = 20
#: Problems reported in full; the rest are counted.
PROBLEMS_SHOWN: Final = 20
#: Sequences of the random commands start here, far from the deterministic ones.
RANDOM_SEQUENCES: Final = 10_000_000
#: A timestamp later than this (ms from now) may be refused by the broker (Kafka 4's
#: message.timestamp.after.max.ms is one hour); the random commands never send one.
FUTURE_MS: Final = 30 * 60 * 1000
NOT_OPEN: Final = "no transaction is open (send TXN_BEGIN first)"


# ------------------------------------------------------------ expectations


@attrs.frozen
class Write:
    """A record that must be written: its result is ``Written``, and the log holds it (unless aborted)."""

    record: OutRecord
    acks_none: bool = False
    #: False for a record of a transaction that is aborted: READ_COMMITTED never shows it.
    committed: bool = True


@attrs.frozen
class Fail:
    """A record that must fail alone: ``NotWritten`` with exactly this code, partition and message."""

    code: ErrorCode
    partition: int
    message: str


@attrs.frozen
class Error:
    """The command is refused whole: an error response with exactly this code and message."""

    code: ErrorCode
    message: str


@attrs.frozen
class Results:
    """A ProduceResp with one result per record, in order."""

    outcomes: tuple[Write | Fail, ...]


@attrs.frozen
class Ok:
    """OkResp."""


@attrs.frozen
class Echo:
    """A pong carrying ``state``."""

    state: bytes


Expect = Error | Results | Ok | Echo
WRONG_COMMAND: Final = Error(ErrorCode.WRONG_COMMAND, "wrong command")


def invalid_produce(problem: str) -> Error:
    return Error(ErrorCode.INVALID_REQUEST, f"invalid produce: {problem}")


def failed(topic: str, partition: int | None, code: ErrorCode, reason: str) -> Fail:
    shown = -1 if partition is None else partition
    return Fail(code, shown, f"failed to produce message, topic: {topic}, partition: {shown}, err: {reason}")


def too_large(topic: str, record: OutRecord) -> Fail:
    size = batch_size(record)
    reason = f"RECORD_TOO_LARGE: {size} bytes, more than produce_max_record_bytes ({MAX_RECORD})"
    return failed(topic, record.partition, ErrorCode.RECORD_TOO_LARGE, reason)


def batch_size(record: OutRecord) -> int:
    """The bytes of ``record`` in a record batch of its own (what the route's bound is about)."""
    from kafka.record.default_records import DefaultRecordBatchBuilder

    size: int = DefaultRecordBatchBuilder.estimate_size_in_bytes(record.key, record.value, list(record.headers))
    return size


def java_partition(key: bytes) -> int:
    """The partition the Java client picks for ``key``: murmur2, made positive, modulo the partition count."""
    from kafka.partitioner.default import murmur2

    return int((murmur2(key) & 0x7FFFFFFF) % PARTITIONS)


def mismatch(expect: Expect, got: Response) -> str | None:
    """Why ``got`` does not answer as ``expect`` says; None when it does."""
    if isinstance(expect, Error):
        if isinstance(got, ErrorAnswer) and (got.code, got.message) == (expect.code, expect.message):
            return None
        return f"wanted error {expect.code.name} {expect.message!r}"
    if isinstance(expect, Ok):
        return None if isinstance(got, OkAnswer) else "wanted ok"
    if isinstance(expect, Echo):
        return None if isinstance(got, Pong) and got.state == expect.state else f"wanted pong {expect.state!r}"
    if not isinstance(got, ProduceAnswer):
        return f"wanted a ProduceResp of {len(expect.outcomes)} results"
    if len(got.results) != len(expect.outcomes):
        return f"wanted {len(expect.outcomes)} results, got {len(got.results)}"
    for index, (outcome, result) in enumerate(zip(expect.outcomes, got.results, strict=True)):
        problem = _result_mismatch(outcome, result)
        if problem is not None:
            return f"record {index}: {problem}"
    return None


def _result_mismatch(outcome: Write | Fail, result: Written | NotWritten) -> str | None:
    if isinstance(outcome, Fail):
        if isinstance(result, NotWritten) and (result.code, result.partition, result.message) == (
            outcome.code,
            outcome.partition,
            outcome.message,
        ):
            return None
        return f"wanted NotWritten {outcome.code.name} {outcome.partition} {outcome.message!r}, got {result}"
    if not isinstance(result, Written):
        return f"wanted Written, got {result}"
    record = outcome.record
    if record.partition is not None:
        wanted: set[int] = {record.partition}
    elif record.key is not None:
        wanted = {java_partition(record.key)}
    else:
        wanted = set(range(PARTITIONS))
    if result.partition not in wanted:
        return f"written to partition {result.partition}, wanted one of {sorted(wanted)}"
    if (result.offset == -1) != outcome.acks_none or result.offset < -1:
        return f"offset {result.offset} with acks {'none' if outcome.acks_none else 'all'}"
    if record.timestamp and result.timestamp != record.timestamp:
        return f"timestamp {result.timestamp}, the record's is {record.timestamp}"
    if not record.timestamp and abs(result.timestamp - time.time() * 1000) > 600_000:
        return f"timestamp {result.timestamp} is not the time the proxy took the record"
    return None


# ------------------------------------------------------------------ frames


def request(sequence: int, **command: object) -> bytes:
    """A PubSubReq with one command, written by protobuf (which lets any int32 into an enum field)."""
    return pb.PubSubReq(sequence=sequence, **command).SerializeToString()  # type: ignore[arg-type]


def record_message(record: OutRecord, *, null_header: str | None = None) -> pb.ProduceRecord:
    message = pb.ProduceRecord(timestamp=record.timestamp)
    if record.partition is not None:
        message.partition = record.partition
    if record.key is not None:
        message.key = record.key
    if record.value is not None:
        message.value = record.value
    message.headers.extend(pb.KafkaHeader(key=key, value=value) for key, value in record.headers)
    if null_header is not None:
        message.headers.add(key=null_header)
    return message


def produce(
    sequence: int,
    topic: str,
    records: Sequence[OutRecord | pb.ProduceRecord],
    *,
    acks: int = 0,
    transactional: bool = False,
) -> bytes:
    messages = [r if isinstance(r, pb.ProduceRecord) else record_message(r) for r in records]
    command = pb.CmdProduce(topic=topic, records=messages, acks=acks, transactional=transactional)  # type: ignore[arg-type]
    return request(sequence, cmd_produce=command)


def txn(sequence: int, action: int) -> bytes:
    return request(sequence, cmd_txn=pb.CmdTxn(action=action))  # type: ignore[arg-type]


def exact_size_produce(size: int, sequence: int, topic: str) -> tuple[bytes, OutRecord]:
    """A produce of one record to partition 0 whose frame is exactly ``size`` bytes, and its record."""
    for value_size in range(size, 0, -1):
        record = OutRecord(value=b"m" * value_size, partition=0)
        frame = produce(sequence, topic, [record])
        if len(frame) == size:
            return frame, record
    raise ValueError(f"no produce frame of exactly {size} bytes")


# -------------------------------------------------------------- the cases


@attrs.define
class Values:
    """Unique record values, so that the log can be matched against what was sent."""

    prefix: str
    count: int = 0

    def __call__(self, what: str = "v") -> bytes:
        self.count += 1
        return f"{self.prefix}-{what}-{self.count}".encode()


#: A case: what it is, its frame, and its answer.
Case = tuple[str, bytes, Expect]


def refused_whole_cases(topic: str, values: Values, sequences: Callable[[], int]) -> list[Case]:
    """Commands that cannot be valid: refused whole with INVALID_REQUEST, the first problem in field order."""
    cases: list[Case] = []

    def add(what: str, build: Callable[[int], bytes], expect: Expect) -> None:
        cases.append((what, build(sequences()), expect))

    def one(**fields: Any) -> OutRecord:
        return OutRecord(value=values(), **fields)

    tiny = pb.ProduceRecord(value=b"t")
    add("an empty batch", lambda s: produce(s, topic, []), invalid_produce("no records"))
    add(
        "an empty batch, transactional",
        lambda s: produce(s, topic, [], transactional=True),
        invalid_produce("no records"),
    )
    add("an empty batch with acks 9", lambda s: produce(s, topic, [], acks=9), invalid_produce("no records"))
    add(
        "an empty batch to a missing topic", lambda s: produce(s, f"{topic}-missing", []), invalid_produce("no records")
    )
    add("an empty batch with an empty topic", lambda s: produce(s, "", []), invalid_produce("empty topic"))
    for count in (MAX_PRODUCE_RECORDS + 1, 100_000):
        add(
            f"{count:,} records in one command",
            lambda s, n=count: produce(s, topic, [tiny] * n),
            invalid_produce(f"{count} records, at most {MAX_PRODUCE_RECORDS} in one command"),
        )
    add(
        "70,000 records, each with partition -1 and neither key nor value (910 KB): the count comes first",
        lambda s: produce(s, topic, [pb.ProduceRecord(partition=-1)] * 70_000),
        invalid_produce(f"70000 records, at most {MAX_PRODUCE_RECORDS} in one command"),
    )
    add(
        "200,000 empty records (400 KB)",
        lambda s: produce(s, topic, [pb.ProduceRecord()] * 200_000),
        invalid_produce(f"200000 records, at most {MAX_PRODUCE_RECORDS} in one command"),
    )
    for partition in (-1, -7, INT32_MIN):
        add(
            f"record 0 of 1 with partition {partition}",
            lambda s, p=partition: produce(s, topic, [one(partition=p)]),
            invalid_produce(f"record 0: partition {partition}"),
        )
    add(
        "record 5 of 8 with partition -1, the others valid (none is written)",
        lambda s: produce(s, topic, [one(partition=-1) if i == 5 else one(partition=i % 2) for i in range(8)]),
        invalid_produce("record 5: partition -1"),
    )
    add(
        "record 2 with partition -1 and acks 9: the record comes first",
        lambda s: produce(s, topic, [one(), one(), one(partition=-1)], acks=9),
        invalid_produce("record 2: partition -1"),
    )
    for acks in (4, 5, -1, INT32_MAX, INT32_MIN):
        add(
            f"acks {acks}",
            lambda s, a=acks: produce(s, topic, [one(), one(partition=1)], acks=a),
            invalid_produce(f"acks {acks}"),
        )
    add(
        "acks 7, transactional",
        lambda s: produce(s, topic, [one()], acks=7, transactional=True),
        invalid_produce("acks 7"),
    )
    add(
        "record 1 with neither key nor value",
        lambda s: produce(s, topic, [one(), pb.ProduceRecord(partition=0), one()]),
        invalid_produce("record 1: neither key nor value (a tombstone needs a key)"),
    )
    add(
        "record 0 with a null header value",
        lambda s: produce(s, topic, [record_message(one(headers=(("a", b"1"),)), null_header="h")]),
        invalid_produce("record 0: header 'h' has a null value, which the producer cannot write"),
    )
    for timestamp in (-1, INT64_MIN):
        add(
            f"record 0 with timestamp {timestamp}",
            lambda s, t=timestamp: produce(s, topic, [one(timestamp=t)]),
            invalid_produce(f"record 0: timestamp {timestamp}"),
        )
    add(
        "an invalid topic name: a slash",
        lambda s: produce(s, "bad/name", [one()]),
        invalid_produce("invalid topic \"bad/name\": only ASCII letters, digits, '.', '_' and '-' are allowed"),
    )
    add(
        "an invalid topic name: 250 characters",
        lambda s: produce(s, "a" * 250, [one()]),
        invalid_produce(f'invalid topic "{"a" * 64}...": 250 characters, at most 249 allowed'),
    )
    add(
        "an invalid topic name and 100,000 records: the topic comes first",
        lambda s: produce(s, "..", [tiny] * 100_000),
        invalid_produce("invalid topic \"..\": only ASCII letters, digits, '.', '_' and '-' are allowed"),
    )
    return cases


def per_record_cases(topic: str, values: Values, sequences: Callable[[], int]) -> list[Case]:
    """Valid commands whose records the proxy must refuse one by one, writing the others."""
    cases: list[Case] = []

    def add(what: str, records: list[OutRecord], outcomes: list[Write | Fail], acks: int = 0) -> None:
        cases.append((what, produce(sequences(), topic, records, acks=acks), Results(tuple(outcomes))))

    missing = "not found partition (the topic has 2)"
    records = [
        OutRecord(value=values(), partition=0),
        OutRecord(value=values(), partition=PARTITIONS),
        OutRecord(key=values("k"), value=values(), partition=7),
        OutRecord(value=values(), partition=INT32_MAX),
        OutRecord(value=values(), partition=1),
    ]
    add(
        "partitions beyond the topic's two, between valid ones",
        records,
        [
            Write(records[0]),
            failed(topic, PARTITIONS, ErrorCode.PARTITION_NOT_FOUND, missing),
            failed(topic, 7, ErrorCode.PARTITION_NOT_FOUND, missing),
            failed(topic, INT32_MAX, ErrorCode.PARTITION_NOT_FOUND, missing),
            Write(records[4]),
        ],
    )
    # Keys just at the route's bound and just over it (the bound counts a record in a batch of its own).
    fits = max(n for n in range(MAX_RECORD - 200, MAX_RECORD) if batch_size(OutRecord(key=b"k" * n)) <= MAX_RECORD)
    at_bound, over_bound = OutRecord(key=b"k" * fits), OutRecord(key=b"k" * (fits + 1))
    add("a key at produce_max_record_bytes, with no value", [at_bound], [Write(at_bound)])
    add("a key one byte over produce_max_record_bytes", [over_bound], [too_large(topic, over_bound)])
    huge = [
        OutRecord(key=b"K" * (MAX_RECORD + 1), value=values()),
        OutRecord(value=values(), partition=1),
        OutRecord(key=b"K" * 200_000, value=values(), partition=1),
        OutRecord(key=values("k"), value=b"V" * 100_000),
        OutRecord(value=values(), headers=(("big", b"H" * 70_000),), partition=0),
        OutRecord(key=values("k"), value=values()),
    ]
    add(
        "huge keys, a huge value and a huge header between small records",
        huge,
        [Write(r) if i in (1, 5) else too_large(topic, r) for i, r in enumerate(huge)],
    )
    biggest = OutRecord(key=b"B" * 900_000, partition=1)
    add("a key of 900,000 bytes (a frame under max_message_size)", [biggest], [too_large(topic, biggest)])
    spread = [OutRecord(key=values("k"), value=b"S" * 100_000) for _ in range(8)]
    add("8 records of 100 KB each", spread, [too_large(topic, record) for record in spread])
    for acks in (1, 2, 3):
        record = OutRecord(key=values("k"), value=values())
        add(f"one record with acks {acks}", [record], [Write(record, acks_none=acks == Acks.NONE)], acks=acks)
    mixed = [OutRecord(value=values(), partition=5), OutRecord(key=b"", value=b"", partition=0)]
    add(
        "acks none with a missing partition",
        mixed,
        [failed(topic, 5, ErrorCode.PARTITION_NOT_FOUND, missing), Write(mixed[1], acks_none=True)],
        acks=1,
    )
    old = OutRecord(value=values(), timestamp=1, partition=0)
    add("a timestamp of 1 ms after the epoch", [old], [Write(old)])
    tombstone = OutRecord(key=values("k"), value=None, headers=(("e", b""),))
    add("a tombstone with an empty header value", [tombstone], [Write(tombstone)])
    full = [OutRecord(key=b"%d" % i, value=b"%d" % i) for i in range(MAX_PRODUCE_RECORDS)]
    cases.append(
        (
            f"{MAX_PRODUCE_RECORDS:,} records, the most one command may carry",
            produce(sequences(), topic, [record_message(r) for r in full]),
            Results(tuple(Write(r) for r in full)),
        )
    )
    missing_topic = f"{topic}-missing"
    nowhere = [OutRecord(value=values()), OutRecord(value=values(), partition=1), OutRecord(key=b"K" * 70_000)]
    cases.append(
        (
            "a missing topic: every record fails, whatever else is wrong with it",
            produce(sequences(), missing_topic, nowhere),
            Results(
                tuple(failed(missing_topic, r.partition, ErrorCode.TOPIC_NOT_FOUND, "not found topic") for r in nowhere)
            ),
        )
    )
    return cases


def transaction_cases(topic: str, values: Values, sequences: Callable[[], int]) -> list[Case]:
    """Transaction commands out of turn, unknown actions, and the transaction that stays usable around them."""
    cases: list[Case] = []
    not_open = Error(ErrorCode.TXN_NOT_OPEN, NOT_OPEN)

    def add(what: str, build: Callable[[int], bytes], expect: Expect) -> None:
        cases.append((what, build(sequences()), expect))

    add("commit without begin", lambda s: txn(s, pb.TXN_COMMIT), not_open)
    add("abort without begin", lambda s: txn(s, pb.TXN_ABORT), not_open)
    lost = OutRecord(value=values(), partition=0)
    add(
        "a transactional produce without a transaction",
        lambda s: produce(s, topic, [lost], transactional=True),
        not_open,
    )
    for action in (0, 4, -1, INT32_MAX, INT32_MIN):
        add(
            f"txn action {action}",
            lambda s, a=action: txn(s, a),
            Error(ErrorCode.INVALID_REQUEST, f"invalid txn: action {action}"),
        )
    # A transaction, and what cannot touch it while it is open.
    add("begin", lambda s: txn(s, pb.TXN_BEGIN), Ok())
    add(
        "a second begin",
        lambda s: txn(s, pb.TXN_BEGIN),
        Error(ErrorCode.TXN_ALREADY_OPEN, "a transaction is already open"),
    )
    add("txn action 0 in a transaction", lambda s: txn(s, 0), Error(ErrorCode.INVALID_REQUEST, "invalid txn: action 0"))
    add(
        "a transactional produce refused whole in a transaction",
        lambda s: produce(
            s, topic, [OutRecord(value=values()), OutRecord(value=values(), partition=-2)], transactional=True
        ),
        invalid_produce("record 1: partition -2"),
    )
    inside = [OutRecord(value=values(), partition=0), OutRecord(key=values("k"), value=values())]
    add(
        "a transactional produce",
        lambda s: produce(s, topic, inside, transactional=True),
        Results(tuple(Write(r) for r in inside)),
    )
    add(
        "a third begin",
        lambda s: txn(s, pb.TXN_BEGIN),
        Error(ErrorCode.TXN_ALREADY_OPEN, "a transaction is already open"),
    )
    add("commit", lambda s: txn(s, pb.TXN_COMMIT), Ok())
    add("commit again", lambda s: txn(s, pb.TXN_COMMIT), not_open)
    add("abort after the commit", lambda s: txn(s, pb.TXN_ABORT), not_open)
    # An aborted transaction: its records never show READ_COMMITTED.
    add("begin after the commit", lambda s: txn(s, pb.TXN_BEGIN), Ok())
    aborted = [OutRecord(value=values(), partition=1), OutRecord(key=values("k"), value=values())]
    add(
        "a transactional produce, to be aborted",
        lambda s: produce(s, topic, aborted, transactional=True),
        Results(tuple(Write(r, committed=False) for r in aborted)),
    )
    add(
        "begin while it is open",
        lambda s: txn(s, pb.TXN_BEGIN),
        Error(ErrorCode.TXN_ALREADY_OPEN, "a transaction is already open"),
    )
    add("abort", lambda s: txn(s, pb.TXN_ABORT), Ok())
    add("abort again", lambda s: txn(s, pb.TXN_ABORT), not_open)
    add(
        "a transactional produce after the abort",
        lambda s: produce(s, topic, [OutRecord(value=values())], transactional=True),
        not_open,
    )
    return cases


# ------------------------------------------------------------------- judge


@attrs.define
class Judge:
    """Matches every answer on the connection to a command in flight; anything else is a problem."""

    client: StreamClient
    #: Commands awaiting their answer, by the sequence the answer must carry.
    pending: dict[int, list[tuple[str, Expect]]] = attrs.Factory(dict)
    in_flight: int = 0
    sent: int = 0
    answered: int = 0
    problems: list[str] = attrs.Factory(list)
    #: Every record answered Written, with the record it was, in the order the answers came.
    written: list[tuple[Write, Written]] = attrs.Factory(list)
    kinds: Counter[str] = attrs.Factory(Counter)
    _seen: int = 0

    def __attrs_post_init__(self) -> None:
        self._seen = len(self.client.received)

    async def send(self, what: str, frame: bytes, expect: Expect, kind: str | None = None) -> None:
        self.pending.setdefault(_fuzz.expected_sequence(frame), []).append((what, expect))
        self.in_flight += 1
        self.sent += 1
        if kind is not None:
            self.kinds[kind] += 1
        await self.client.send(frame)

    def catch_up(self) -> None:
        received = self.client.received
        for response in received[self._seen :]:
            sequence = getattr(response, "sequence", None)
            candidates = self.pending.get(sequence, []) if isinstance(sequence, int) else []
            verdicts = [mismatch(expect, response) for _, expect in candidates]
            if None not in verdicts:
                wanted = "; ".join(f"{what}: {v}" for (what, _), v in zip(candidates, verdicts, strict=True))
                self.problems.append(f"got {str(response)[:400]}, wanted {wanted[:800] or 'nothing'}")
                if not candidates:
                    continue  # an answer nobody asked for
                verdicts[0] = None  # a wrong answer is still the command's answer: it is not waited for
            _, expect = candidates.pop(verdicts.index(None))
            if not candidates:
                del self.pending[sequence]  # type: ignore[arg-type]
            if isinstance(expect, Results) and isinstance(response, ProduceAnswer):
                self.written += [
                    (outcome, result)
                    for outcome, result in zip(expect.outcomes, response.results, strict=False)
                    if isinstance(outcome, Write) and isinstance(result, Written)
                ]
            self.in_flight -= 1
            self.answered += 1
        self._seen = len(received)

    async def until_fewer_than(self, count: int, seconds: float = 4 * WAIT) -> None:
        def room() -> bool:
            self.catch_up()
            return self.in_flight < count

        try:
            await self.client.until(room, f"fewer than {count} commands in flight", seconds)
        except AssertionError as exc:
            waiting = "; ".join(f"{s}: {what}" for s, items in list(self.pending.items())[:5] for what, _ in items)
            shown = "\n".join(self.problems[:PROBLEMS_SHOWN])
            raise AssertionError(f"{exc}\nstill waiting for: {waiting}\nwrong answers:\n{shown}") from None

    async def drain(self, seconds: float = 4 * WAIT) -> None:
        await self.until_fewer_than(1, seconds)


# ------------------------------------------------------------ random frames


def _random_blob(source: _fuzz.RandomSource, *, large: bool) -> bytes | None:
    kind = source.integer(0, 19)
    if kind <= 3:
        return None
    if kind <= 5:
        return b""
    if kind == 6 and large:
        return b"L" * source.choice([MAX_RECORD // 2, MAX_RECORD + 1_000, 2 * MAX_RECORD])
    return source.blob(24)


def _random_record(source: _fuzz.RandomSource, values: Values, *, large: bool) -> pb.ProduceRecord:
    """A valid record (as the codec sees it); keys and values over MAX_RECORD only when ``large``."""
    message = pb.ProduceRecord()
    if source.integer(0, 2) == 0:
        message.partition = source.choice([0, 1, 1, 2, 7, INT32_MAX])
    key = _random_blob(source, large=large)
    if key is not None:
        message.key = key
    value = _random_blob(source, large=large) if source.integer(0, 3) == 0 else values("r")
    if value is not None or key is None:
        message.value = value if value is not None else values("r")
    for _ in range(source.choice([0, 0, 0, 1, 2])):
        message.headers.add(key=source.choice(["h", "", "x-y", source.text(6)]), value=source.blob(8))
    now = int(time.time() * 1000)
    message.timestamp = source.choice([0, 0, 0, 1, 1_500_000_000_000, now - 60_000])
    return message


def _break_a_record(source: _fuzz.RandomSource, records: list[pb.ProduceRecord]) -> None:
    """Give one record a field the codec must refuse."""
    record = source.choice(records)
    fault = source.integer(0, 3)
    if fault == 0:
        record.partition = source.choice([-1, -2, INT32_MIN])
    elif fault == 1:
        record.ClearField("key")
        record.ClearField("value")
    elif fault == 2:
        record.headers.add(key=source.choice(["h", ""]))
    else:
        record.timestamp = source.choice([-1, INT64_MIN])


def random_command(source: _fuzz.RandomSource, topic: str, values: Values, sequence: int) -> bytes:
    """A produce or transaction command, valid in form or not, and sometimes its bytes edited blindly afterwards."""
    kind = source.integer(0, 15)
    if kind == 0:
        frame = encode_ping_request(sequence, source.blob(16))
    elif kind <= 11:
        name = topic if source.integer(0, 5) else source.choice([f"{topic}-missing", "", "a" * 250, "bad/name", ".."])
        count = source.choice([0, 1, 1, 2, 3, 5, 8, 20, 60, MAX_PRODUCE_RECORDS + 1])
        # Large records only in small commands: a frame stays well under max_message_size.
        records = [_random_record(source, values, large=count <= 3) for _ in range(min(count, 60))]
        if count > 60:
            records = [pb.ProduceRecord(value=b"z")] * count
        elif records and source.integer(0, 2) == 0:
            _break_a_record(source, records)
        acks = source.choice([0, 0, 0, 1, 2, 3, 3]) if source.integer(0, 5) else source.choice([4, -1, INT32_MAX])
        transactional = source.integer(0, 9) == 0
        frame = produce(sequence, name, records, acks=acks, transactional=transactional)
    else:
        frame = txn(sequence, source.choice([0, 2, 3, 4, -1, INT32_MIN, INT32_MAX]))
    return _fuzz.mutate(source, frame) if source.integer(0, 4) == 0 else frame


@attrs.frozen
class Oracle:
    """What schema/README.md says must answer a produce or transaction command; no transaction is open.

    None when the answer cannot be known: the caller draws another.
    """

    topic: str

    def expect(self, command: object, busy: set[int]) -> Expect | None:
        if isinstance(command, Malformed):
            return WRONG_COMMAND
        sequence = getattr(command, "sequence", None)
        if sequence in busy:
            return None
        if isinstance(command, Ping):
            return Echo(command.state)
        if isinstance(command, UnknownCommand):
            return Error(ErrorCode.UNKNOWN_COMMAND, "unknown command")
        if isinstance(command, Rejected):
            return Error(ErrorCode(command.code), command.message)
        if isinstance(command, Txn):
            return None if command.action == TxnAction.BEGIN else Error(ErrorCode.TXN_NOT_OPEN, NOT_OPEN)
        if isinstance(command, Produce):
            return self._produce(command)
        return None  # a command of another kind: not drawn here

    def _produce(self, command: Produce) -> Expect | None:
        if command.transactional:
            return Error(ErrorCode.TXN_NOT_OPEN, NOT_OPEN)
        now = time.time() * 1000
        if any(record.timestamp > now + FUTURE_MS for record in command.records):
            return None  # refused per record by the proxy: see the test of that below
        outcomes: list[Write | Fail] = []
        for record in command.records:
            if command.topic != self.topic:
                outcomes.append(failed(command.topic, record.partition, ErrorCode.TOPIC_NOT_FOUND, "not found topic"))
            elif record.partition is not None and record.partition >= PARTITIONS:
                reason = f"not found partition (the topic has {PARTITIONS})"
                outcomes.append(failed(command.topic, record.partition, ErrorCode.PARTITION_NOT_FOUND, reason))
            elif batch_size(record) > MAX_RECORD:
                outcomes.append(too_large(command.topic, record))
            else:
                outcomes.append(Write(record, acks_none=command.acks == Acks.NONE))
        return Results(tuple(outcomes))


async def random_commands(judge: Judge, oracle: Oracle, values: Values, count: int, rng: random.Random) -> None:
    """Send ``count`` random commands, at most WINDOW in flight, each one the oracle can judge."""
    source = _fuzz.RandomSource(rng)
    sequence = RANDOM_SEQUENCES
    for _ in range(count):
        await judge.until_fewer_than(WINDOW)
        for _ in range(DRAWS):
            sequence += 1
            frame = random_command(source, oracle.topic, values, sequence)
            command = decode_request(frame)
            expect = oracle.expect(command, set(judge.pending))
            if expect is not None:
                break
        else:
            frame = encode_ping_request(sequence, b"none drawn")
            command, expect = decode_request(frame), Echo(b"none drawn")
        await judge.send(f"{command}"[:300], frame, expect, type(command).__name__)


# ------------------------------------------------------------- reading back


def read_back(broker: KafkaBroker, topic: str) -> list[Any]:
    """Every record of ``topic`` READ_COMMITTED, from the earliest to the last stable offset (blocking)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        **broker.client_config(),
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        ends = consumer.end_offsets(partitions)
        records: list[Any] = []
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            assert time.monotonic() < deadline, "the topic could not be read back within 60 s"
            for batch in consumer.poll(timeout_ms=1000).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def content(
    partition: int, key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]
) -> tuple[Any, ...]:
    return (partition, key, value, tuple((k, bytes(v)) for k, v in headers))


def log_problems(written: list[tuple[Write, Written]], stored: list[Any]) -> list[str]:
    """The log against the records answered Written: each committed one at its place, and nothing else."""
    problems = []
    at = {(r.partition, r.offset): r for r in stored}
    for outcome, result in written:
        if not outcome.committed or result.offset < 0:
            continue
        found = at.get((result.partition, result.offset))
        record = outcome.record
        wanted = content(result.partition, record.key, record.value, record.headers)
        if found is None:
            problems.append(f"{record!r:.200} was answered {result}, but the log has nothing there")
        elif (
            content(found.partition, found.key, found.value, found.headers) != wanted
            or found.timestamp != result.timestamp
        ):
            problems.append(f"{record!r:.200} was answered {result}, the log has {found!r:.300} there")
    expected = Counter(
        content(result.partition, o.record.key, o.record.value, o.record.headers)
        for o, result in written
        if o.committed
    )
    in_log = Counter(content(r.partition, r.key, r.value, r.headers) for r in stored)
    for extra in list((in_log - expected).elements())[:10]:
        problems.append(f"the log holds a record nobody was told was written: {extra!r:.300}")
    for lost in list((expected - in_log).elements())[:10]:
        problems.append(f"a record answered Written is not in the log: {lost!r:.300}")
    return problems


# ------------------------------------------------------------------- tests


@asynccontextmanager
async def fuzz_proxy(broker: KafkaBroker) -> AsyncIterator[str]:
    """The proxy, in this process, with the route's produce_max_record_bytes at MAX_RECORD; its URL."""
    config = ProxyConfig.single_route(
        broker.bootstrap, server=ServerConfig(port=0), produce_max_record_bytes=MAX_RECORD
    )
    async with running_proxy(config) as server:
        yield server.url + "/kafka"


async def close_code(url: str, frame: bytes) -> tuple[int, int | None]:
    """Send ``frame`` on a connection of its own; how many answers came, and the close code."""
    answers = 0
    async with open_websocket_url(url, max_message_size=4 * MAX_MESSAGE_SIZE, connect_timeout=WAIT) as ws:
        await ws.send_message(frame)
        with trio.fail_after(WAIT):
            try:
                while True:
                    await ws.get_message()
                    answers += 1
            except ConnectionClosed as exc:
                return answers, None if exc.reason is None else exc.reason.code
    raise AssertionError("unreachable")


@pytest.mark.timeout(mode().limit(240, 1800))
async def test_produce_and_transaction_commands_that_cannot_succeed_get_their_error_and_change_nothing(
    kafka_broker: KafkaBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="kafka_ws_trio")
    seed = int(os.environ.get("RELIABILITY_SEED") or random.randrange(2**32))
    # First thing, so that pytest shows it with any failure, an exception included.
    print(f"\nproduce fuzz: RELIABILITY_SEED={seed} replays this run")
    topic = await trio.to_thread.run_sync(lambda: create_topic(kafka_broker, partitions=PARTITIONS))
    values = Values(f"fz{seed}")
    counter = iter(range(1_000, RANDOM_SEQUENCES))

    def sequences() -> int:
        return next(counter)

    groups = {
        "refused whole": refused_whole_cases(topic, values, sequences),
        "per record": per_record_cases(topic, values, sequences),
        "transactions": transaction_cases(topic, values, sequences),
    }
    started = trio.current_time()
    async with fuzz_proxy(kafka_broker) as url, stream_client(url) as client:
        judge = Judge(client)
        # Each case alone, then a valid produce and a ping on the same session: it still works.
        for group, cases in groups.items():
            for what, frame, expect in cases:
                assert len(frame) <= MAX_MESSAGE_SIZE, f"{what}: a frame of {len(frame)} bytes"
                await judge.send(f"{group}: {what}", frame, expect)
                await judge.drain()
                alive = OutRecord(value=values("alive"), partition=judge.sent % PARTITIONS)
                sequence = sequences()
                await judge.send(f"a produce after {what}", produce(sequence, topic, [alive]), Results((Write(alive),)))
                state = f"after {what}".encode()
                await judge.send(f"a ping after {what}", encode_ping_request(sequences(), state), Echo(state))
                await judge.drain()
        # A malformed frame and an unknown command between them.
        await judge.send(
            "a produce whose topic is not UTF-8", _fuzz.length_field(40, _fuzz.length_field(1, b"\xff")), WRONG_COMMAND
        )
        await judge.send(
            "command 60",
            _fuzz.varint_field(1, 77) + _fuzz.length_field(60, b""),
            Error(ErrorCode.UNKNOWN_COMMAND, "unknown command"),
        )
        await judge.drain()
        deterministic = judge.sent
        # Frames at and over max_message_size, each on a connection of its own.
        at_limit, big = exact_size_produce(MAX_MESSAGE_SIZE, 5, topic)
        async with stream_client(url) as alone:
            answer = await alone.ask(5, at_limit)
        problem = mismatch(Results((too_large(topic, big),)), answer)
        assert problem is None, f"a produce of exactly max_message_size: {problem}: {answer}"
        over, _ = exact_size_produce(MAX_MESSAGE_SIZE + 1, 6, topic)
        assert await close_code(url, over) == (0, 1009), "a produce one byte over max_message_size"

        # The random commands, pipelined.
        await random_commands(judge, Oracle(topic), values, int(mode().limit(2_000, 50_000)), random.Random(seed))
        await judge.drain()
        # The session still works after all of it.
        last = OutRecord(value=values("last"), partition=0)
        await judge.send("the last produce", produce(sequences(), topic, [last]), Results((Write(last),)))
        await judge.send("the last ping", encode_ping_request(sequences(), b"last"), Echo(b"last"))
        await judge.drain()
        await trio.sleep(QUIET)  # anything more would come now
        judge.catch_up()
    fuzzed = trio.current_time() - started
    stored = await trio.to_thread.run_sync(read_back, kafka_broker, topic)
    problems = judge.problems + log_problems(judge.written, stored)
    print(
        f"\nproduce fuzz (seed {seed}): {judge.sent} commands in {fuzzed:.1f}s ({deterministic} deterministic, "
        f"{sum(len(c) for c in groups.values())} of them cases; the random ones decoded as {dict(judge.kinds)}); "
        f"{len(judge.written)} records written, {len(stored)} in the log READ_COMMITTED"
    )
    shown = "\n".join(problems[:PROBLEMS_SHOWN])
    assert not problems, f"seed {seed}: {len(problems)} problems, the first ones:\n{shown}"
    assert judge.answered == judge.sent, f"{judge.sent} commands sent, {judge.answered} answered"
    # The proxy's own log (kafka-python's is not ours to judge): no warning, no error.
    warnings = [
        f"{r.name} {r.levelname}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith("kafka_ws_trio")
    ]
    assert not warnings, warnings[:PROBLEMS_SHOWN]


# ---------------------------------------------------------- what was found


@pytest.mark.timeout(120)
async def test_a_record_with_a_timestamp_the_broker_refuses_fails_alone_not_the_records_of_other_sessions(
    kafka_broker: KafkaBroker,
) -> None:
    topic = await trio.to_thread.run_sync(lambda: create_topic(kafka_broker, partitions=PARTITIONS))
    a_week_ahead = int(time.time() * 1000) + 7 * 24 * 3600 * 1000
    future = OutRecord(value=b"from the future", partition=0, timestamp=a_week_ahead)
    others = [[OutRecord(value=b"b-%d-%d" % (c, i), partition=1) for i in range(2_000)] for c in range(5)]
    with trio.fail_after(90):
        async with fuzz_proxy(kafka_broker) as url, stream_client(url) as a, stream_client(url) as b:
            warm = await b.ask(1, produce(1, topic, [OutRecord(value=b"warm", partition=1)]))
            assert isinstance(warm, ProduceAnswer) and isinstance(warm.results[0], Written), warm
            # Session B's commands go out around session A's one record.
            await b.send(produce(10, topic, others[0]))
            await a.send(produce(2, topic, [future]))
            for c in range(1, len(others)):
                await b.send(produce(10 + c, topic, others[c]))
            answer = await a.answer(2)
            answers = [await b.answer(10 + c) for c in range(len(others))]
    assert isinstance(answer, ProduceAnswer) and isinstance(answer.results[0], NotWritten), answer
    results = [r for got in answers if isinstance(got, ProduceAnswer) for r in got.results]
    assert len(results) == sum(len(c) for c in others), answers
    lost = [r for r in results if isinstance(r, NotWritten)]
    assert not lost, f"{len(lost)} of session B's {len(results)} records failed with session A's record: {lost[0]}"


@pytest.mark.parametrize("failure", ["partition", "too large", "missing topic"])
@pytest.mark.timeout(90)
async def test_a_commit_after_a_record_of_the_transaction_failed_aborts_it(
    kafka_broker: KafkaBroker, failure: str
) -> None:
    topic = await trio.to_thread.run_sync(lambda: create_topic(kafka_broker, partitions=PARTITIONS))
    good = OutRecord(value=b"in the transaction", partition=0)
    bad = {
        "partition": OutRecord(value=b"nowhere", partition=7),
        "too large": OutRecord(value=b"x" * (2 * MAX_RECORD), partition=1),
        "missing topic": OutRecord(value=b"no such topic"),
    }[failure]
    with trio.fail_after(60):
        async with fuzz_proxy(kafka_broker) as url, stream_client(url) as client:
            assert isinstance(await client.ask(1, txn(1, pb.TXN_BEGIN)), OkAnswer)
            if failure == "missing topic":
                written = await client.ask(2, produce(2, topic, [good], transactional=True))
                failing = await client.ask(3, produce(3, f"{topic}-missing", [bad], transactional=True))
                results = [*getattr(written, "results", ()), *getattr(failing, "results", ())]
            else:
                answer = await client.ask(2, produce(2, topic, [good, bad], transactional=True))
                results = list(getattr(answer, "results", ()))
            assert [type(r) for r in results] == [Written, NotWritten], results
            commit = await client.ask(4, txn(4, pb.TXN_COMMIT))
    stored = await trio.to_thread.run_sync(read_back, kafka_broker, topic)
    assert [r.value for r in stored] == [], "a record of a transaction with a failed record was committed"
    assert isinstance(commit, ErrorAnswer), f"the commit was answered {commit}"
    assert commit.code == ErrorCode.TXN_ABORTED, commit
    assert commit.message.startswith("the transaction could not be committed and was aborted: "), commit
