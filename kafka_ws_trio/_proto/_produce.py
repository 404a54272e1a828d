"""CmdProduce, CmdTxn and ProduceResp: bytes to events and back, for both ends.

The rules (schema/README.md, "Produce and transactions"): a command that cannot
be valid is refused whole with ``invalid produce: <problem>`` (the first
problem, in field order); what only Kafka can judge (a topic or partition that
does not exist, a record too large for the broker) is a per-record result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from .._pb import pubsub_pb2 as pb
from ._events import (
    Acks,
    NotWritten,
    OutRecord,
    Produce,
    ProduceAnswer,
    ProduceResult,
    Txn,
    TxnAction,
    Written,
)
from ._rules import Decoder, judged, known, not_negative, refuse, valid_topic

#: Records one CmdProduce may carry: a bound of the protocol, so that one frame's
#: records are never more than this many objects in the proxy.
MAX_PRODUCE_RECORDS: Final = 10_000


def produce_error(topic: str, partition: int, reason: str) -> str:
    """The message of a record's error in a ProduceResp (``partition`` -1 when none was picked)."""
    return f"failed to produce message, topic: {topic}, partition: {partition}, err: {reason}"


# ------------------------------------------------------------------ server


def _out_record(index: int, message: pb.ProduceRecord) -> OutRecord:
    where = f"record {index}:"
    partition = None
    if message.HasField("partition"):
        partition = not_negative(message.partition, f"{where} partition")
    key = message.key if message.HasField("key") else None
    value = message.value if message.HasField("value") else None
    if key is None and value is None:
        refuse(f"{where} neither key nor value (a tombstone needs a key)")
    headers = []
    for header in message.headers:
        if not header.HasField("value"):
            refuse(f"{where} header {header.key!r} has a null value, which the producer cannot write")
        headers.append((header.key, header.value))
    timestamp = not_negative(message.timestamp, f"{where} timestamp")
    return OutRecord(key=key, value=value, headers=tuple(headers), partition=partition, timestamp=timestamp)


def _produce(sequence: int, request: pb.PubSubReq) -> Produce:
    command = request.cmd_produce
    topic = valid_topic(command.topic)
    count = len(command.records)
    if count == 0:
        refuse("no records")
    if count > MAX_PRODUCE_RECORDS:
        refuse(f"{count} records, at most {MAX_PRODUCE_RECORDS} in one command")
    records = tuple(_out_record(index, message) for index, message in enumerate(command.records))
    acks = known(Acks, command.acks, "acks")
    return Produce(sequence=sequence, topic=topic, records=records, acks=acks, transactional=command.transactional)


def _txn(sequence: int, request: pb.PubSubReq) -> Txn:
    return Txn(sequence=sequence, action=known(TxnAction, request.cmd_txn.action, "action"))


#: The produce commands by their oneof name in PubSubReq.req.
PRODUCE_DECODERS: Final[dict[str, Decoder]] = {
    "cmd_produce": judged("produce", _produce),
    "cmd_txn": judged("txn", _txn),
}


#: Bytes one record's result takes at most once an answer has been made to fit: partition,
#: offset -1 and an error whose message is at most ``SHORT_MESSAGE_CHARS`` characters.
PRODUCE_RESULT_BOUND: Final = 64
#: Characters an error message is cut to when the answer would not fit otherwise.
SHORT_MESSAGE_CHARS: Final = 24


def encode_produce_answer(sequence: int, results: Sequence[ProduceResult], max_size: int | None = None) -> bytes:
    """The frame answering a :class:`Produce`: one ProduceResult per record, in request order.

    With ``max_size``, an answer that would be larger is made to fit (documented in
    schema/README.md): an error message that repeats an earlier record's becomes
    ``as record <i>``; if that is not enough, every message is cut to
    ``SHORT_MESSAGE_CHARS`` characters. A command of at most
    ``max_size // PRODUCE_RESULT_BOUND`` records always fits.
    """
    frame = _produce_answer(sequence, results)
    if max_size is None or len(frame) <= max_size:
        return frame
    first: dict[str, int] = {}
    compact: list[ProduceResult] = []
    for index, result in enumerate(results):
        if isinstance(result, NotWritten):
            earlier = first.setdefault(result.message, index)
            if earlier != index:
                result = NotWritten(result.partition, result.code, f"as record {earlier}")
        compact.append(result)
    frame = _produce_answer(sequence, compact)
    if len(frame) <= max_size:
        return frame
    cut = [
        NotWritten(r.partition, r.code, r.message[:SHORT_MESSAGE_CHARS]) if isinstance(r, NotWritten) else r
        for r in compact
    ]
    return _produce_answer(sequence, cut)


def _produce_answer(sequence: int, results: Sequence[ProduceResult]) -> bytes:
    answer = pb.ProduceResp()
    for result in results:
        if isinstance(result, Written):
            answer.results.add(partition=result.partition, offset=result.offset, timestamp=result.timestamp)
        else:
            error = pb.ErrorResp(code=result.code, message=result.message)
            answer.results.add(partition=result.partition, offset=-1, error=error)
    return pb.PubSubResp(sequence=sequence, produce_resp=answer).SerializeToString()


# ------------------------------------------------------------------ client


#: The events' enums as the generated code types them (same names, same numbers).
_PB_ACKS: Final = {
    Acks.ROUTE_DEFAULT: pb.ACKS_ROUTE_DEFAULT,
    Acks.NONE: pb.ACKS_NONE,
    Acks.LEADER: pb.ACKS_LEADER,
    Acks.ALL: pb.ACKS_ALL,
}
_PB_TXN: Final = {TxnAction.BEGIN: pb.TXN_BEGIN, TxnAction.COMMIT: pb.TXN_COMMIT, TxnAction.ABORT: pb.TXN_ABORT}


def encode_produce_request(
    sequence: int,
    topic: str,
    records: Sequence[OutRecord],
    *,
    acks: Acks = Acks.ROUTE_DEFAULT,
    transactional: bool = False,
) -> bytes:
    """The frame of a CmdProduce: None key, value or partition is written as absent."""
    command = pb.CmdProduce(topic=topic, acks=_PB_ACKS[acks], transactional=transactional)
    for record in records:
        message = command.records.add(timestamp=record.timestamp)
        if record.partition is not None:
            message.partition = record.partition
        if record.key is not None:
            message.key = record.key
        if record.value is not None:
            message.value = record.value
        message.headers.extend(pb.KafkaHeader(key=key, value=value) for key, value in record.headers)
    return pb.PubSubReq(sequence=sequence, cmd_produce=command).SerializeToString()


def encode_txn_request(sequence: int, action: TxnAction) -> bytes:
    """The frame of a CmdTxn."""
    command = pb.CmdTxn(action=_PB_TXN[action])
    return pb.PubSubReq(sequence=sequence, cmd_txn=command).SerializeToString()


def decode_produce_answer(sequence: int, answer: pb.ProduceResp) -> ProduceAnswer:
    """A ProduceResp as a :class:`ProduceAnswer`; a result with an error is :class:`NotWritten`."""
    results: list[ProduceResult] = []
    for result in answer.results:
        if result.HasField("error"):
            results.append(NotWritten(result.partition, result.error.code, result.error.message))
        else:
            results.append(Written(result.partition, result.offset, result.timestamp))
    return ProduceAnswer(sequence=sequence, results=tuple(results))


def produce_answer_code(results: Sequence[ProduceResult]) -> int:
    """A produce answer's result for the metrics: the first record's error code when none was written, else 0.

    A ProduceResp is never an ErrorResp (each record has its outcome); one that wrote nothing is
    counted as the failure it is.
    """
    if results and all(isinstance(result, NotWritten) for result in results):
        first = results[0]
        assert isinstance(first, NotWritten)
        return first.code
    return 0
