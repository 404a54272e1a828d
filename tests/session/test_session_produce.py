"""A session's produce commands and transaction over a fake producing backend, on Trio's mock clock:
order of hand-over, the in-flight budgets and their waits, transactions ending (commit, abort,
expiry, the session closing). No Kafka, no sockets, no threads."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

import trio
import trio.testing
from _fakes import FakeWebSocket

from kafka_ws_trio._pb import pubsub_pb2 as pb
from kafka_ws_trio._ports import Produced, Transaction
from kafka_ws_trio._proto import (
    Acks,
    Amount,
    Budget,
    CommandFailed,
    ErrorCode,
    OutRecord,
    Record,
    TxnAction,
    Written,
    encode_produce_request,
    encode_txn_request,
)
from kafka_ws_trio._session import Session, SessionLimits

#: The bounds a test uses unless it names others.
ROOMY: Final = Amount(100, 10**6)
ROUTE_ROOM: Final = Amount(1000, 10**6)
#: Seconds the fake Kafka takes to acknowledge a command, unless a test says otherwise.
ACK_DELAY = 0.5


class FakeTransaction:
    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.fail_commit: CommandFailed | None = None

    async def commit(self) -> None:
        await trio.sleep(0.1)
        self.log.append("commit")
        if self.fail_commit is not None:
            raise self.fail_commit

    async def abort(self) -> None:
        await trio.sleep(0.1)
        self.log.append("abort")


class FakeProducer:
    """Acknowledges each command ``ack_delay`` seconds after it was handed over, from a task of its own."""

    deadline = 5.0
    produce_timeout = 3.0
    transaction_timeout = 10.0

    def __init__(self, nursery: trio.Nursery, route: Amount = ROUTE_ROOM) -> None:
        self._nursery = nursery
        self.produce_budget = Budget(route, "produce_route")
        self.handed: list[tuple[str, list[bytes | None], bool]] = []
        self.log: list[str] = []
        self.ack_delay = ACK_DELAY
        self.fail: CommandFailed | None = None
        self.transactions: list[FakeTransaction] = []

    async def list_offset(self, topic: str, partition: int, timestamp: int) -> int:
        raise AssertionError("not used")

    async def fetch(self, topic: str, partition: int, offset: int, max_bytes: int) -> Sequence[Record]:
        raise AssertionError("not used")

    async def produce(
        self, topic: str, records: Sequence[OutRecord], acks: Acks, done: Produced, transaction: Transaction | None
    ) -> None:
        await trio.sleep(0.01)  # a metadata look-up
        if self.fail is not None:
            raise self.fail
        self.handed.append((topic, [record.value for record in records], transaction is not None))
        self.log.append(f"handed {records[0].value!r}")

        async def acknowledge() -> None:
            await trio.sleep(self.ack_delay)
            done(tuple(Written(0, index, 0) for index in range(len(records))))

        self._nursery.start_soon(acknowledge)

    async def begin_transaction(self) -> FakeTransaction:
        await trio.sleep(0.1)
        transaction = FakeTransaction(self.log)
        self.transactions.append(transaction)
        return transaction


def produce(sequence: int, *values: bytes, transactional: bool = False) -> bytes:
    return encode_produce_request(sequence, "t", [OutRecord(value=v) for v in values], transactional=transactional)


async def until(ws: FakeWebSocket, condition: Callable[[], bool]) -> None:
    while not condition():
        await ws.sent_event.wait()


def answers(ws: FakeWebSocket) -> dict[int, pb.PubSubResp]:
    return {response.sequence: response for response in ws.sent}


async def run_session(
    frames: list[bytes],
    *,
    session_limit: Amount = ROOMY,
    route_limit: Amount = ROUTE_ROOM,
    expect: int,
    setup: Callable[[FakeProducer], None] = lambda backend: None,
) -> tuple[FakeWebSocket, FakeProducer]:
    """Send ``frames``, wait for ``expect`` responses, then close the session."""
    ws = FakeWebSocket()
    async with trio.open_nursery() as nursery:
        backend = FakeProducer(nursery, route_limit)
        setup(backend)
        session = Session(ws, backend, SessionLimits(max_message_size=1 << 20), produce_limit=session_limit)  # type: ignore[arg-type]
        nursery.start_soon(session.run)
        for frame in frames:
            await ws.incoming_send.send(frame)
        await until(ws, lambda: len(ws.sent) >= expect)
        await ws.incoming_send.aclose()
    return ws, backend


async def test_commands_are_handed_over_in_the_order_they_came_even_when_one_waits_for_room(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The session may hold 3 records: the second command waits for the first's acknowledgement, and
    the third, which would fit at once, waits behind it."""
    ws, backend = await run_session(
        [produce(1, b"a", b"b"), produce(2, b"c", b"d"), produce(3, b"e")], session_limit=Amount(3, 10**6), expect=3
    )
    assert [values for _, values, _ in backend.handed] == [[b"a", b"b"], [b"c", b"d"], [b"e"]]
    assert all(len(answer.produce_resp.results) in (1, 2) for answer in ws.sent)
    assert backend.produce_budget.records == 0  # every record given back to the route


async def test_a_command_that_finds_no_room_within_the_produce_timeout_fails_overloaded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def slow(backend: FakeProducer) -> None:
        backend.ack_delay = 10.0  # longer than produce_timeout (3 s)

    ws, backend = await run_session(
        [produce(1, b"a", b"b"), produce(2, b"c", b"d")], session_limit=Amount(3, 10**6), expect=2, setup=slow
    )
    refused = answers(ws)[2].error_resp
    assert refused.code == ErrorCode.OVERLOADED
    assert (
        refused.message
        == "produce refused: no room in flight within 3s (produce_session_records/produce_session_bytes)"
    )
    assert len(answers(ws)[1].produce_resp.results) == 2
    assert len(backend.handed) == 1


async def test_the_route_budget_is_shared_and_named_when_it_is_the_one_full(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def slow(backend: FakeProducer) -> None:
        backend.ack_delay = 10.0
        backend.produce_budget.ask(Amount(9, 0), lambda: None)  # another session holds most of it

    ws, _ = await run_session([produce(1, b"a", b"b")], route_limit=Amount(10, 10**6), expect=1, setup=slow)
    assert answers(ws)[1].error_resp.message.endswith("(produce_route_records/produce_route_bytes)")


async def test_a_backend_failure_fails_every_record_of_the_command_and_gives_the_room_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def failing(backend: FakeProducer) -> None:
        backend.fail = CommandFailed(ErrorCode.TOPIC_NOT_FOUND, "not found topic")

    ws, backend = await run_session([produce(1, b"a", b"b")], session_limit=Amount(2, 10**6), expect=1, setup=failing)
    results = answers(ws)[1].produce_resp.results
    assert [(r.partition, r.offset, r.error.code) for r in results] == [(-1, -1, ErrorCode.TOPIC_NOT_FOUND)] * 2
    assert results[0].error.message == "failed to produce message, topic: t, partition: -1, err: not found topic"
    assert backend.produce_budget.records == 0


async def test_commit_waits_for_the_transactions_records_to_be_acknowledged(
    autojump_clock: trio.testing.MockClock,
) -> None:
    frames = [
        encode_txn_request(1, TxnAction.BEGIN),
        produce(2, b"in-txn", transactional=True),
        encode_txn_request(3, TxnAction.COMMIT),
    ]
    ws, backend = await run_session(frames, expect=3)
    assert backend.handed == [("t", [b"in-txn"], True)]
    assert backend.log == ["handed b'in-txn'", "commit"]
    assert {sequence for sequence, answer in answers(ws).items() if answer.HasField("ok_resp")} == {1, 3}


async def test_a_failed_commit_is_answered_with_its_error(autojump_clock: trio.testing.MockClock) -> None:
    def failing_commit(backend: FakeProducer) -> None:
        original = backend.begin_transaction

        async def begin() -> FakeTransaction:
            transaction = await original()
            transaction.fail_commit = CommandFailed(ErrorCode.TXN_ABORTED, "could not be committed")
            return transaction

        backend.begin_transaction = begin  # type: ignore[method-assign]

    frames = [encode_txn_request(1, TxnAction.BEGIN), encode_txn_request(2, TxnAction.COMMIT)]
    ws, _ = await run_session(frames, expect=2, setup=failing_commit)
    assert answers(ws)[2].error_resp.code == ErrorCode.TXN_ABORTED
    assert answers(ws)[2].error_resp.message == "could not be committed"


async def test_a_transaction_open_past_its_timeout_is_aborted_and_then_reported(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ws = FakeWebSocket()
    async with trio.open_nursery() as nursery:
        backend = FakeProducer(nursery)
        session = Session(ws, backend, SessionLimits(max_message_size=1 << 20), produce_limit=Amount(10, 10**6))  # type: ignore[arg-type]
        nursery.start_soon(session.run)
        await ws.incoming_send.send(encode_txn_request(1, TxnAction.BEGIN))
        await until(ws, lambda: len(ws.sent) == 1)
        await trio.sleep(backend.transaction_timeout + 1)
        assert backend.log == ["abort"]
        await ws.incoming_send.send(produce(2, b"late", transactional=True))
        await ws.incoming_send.send(encode_txn_request(3, TxnAction.COMMIT))
        await until(ws, lambda: len(ws.sent) == 3)
        await ws.incoming_send.aclose()
    assert answers(ws)[2].error_resp.code == ErrorCode.TXN_TIMED_OUT
    assert answers(ws)[3].error_resp.code == ErrorCode.TXN_TIMED_OUT
    assert "longer than 10s (transaction_timeout)" in answers(ws)[3].error_resp.message
    assert backend.handed == []


async def test_a_session_that_ends_with_a_transaction_open_aborts_it(autojump_clock: trio.testing.MockClock) -> None:
    _, backend = await run_session(
        [encode_txn_request(1, TxnAction.BEGIN), produce(2, b"x", transactional=True)], expect=2
    )
    assert backend.log == ["handed b'x'", "abort"]


async def test_begin_twice_and_commit_without_begin_get_their_codes(autojump_clock: trio.testing.MockClock) -> None:
    frames = [
        encode_txn_request(1, TxnAction.COMMIT),
        encode_txn_request(2, TxnAction.BEGIN),
        encode_txn_request(3, TxnAction.BEGIN),
        encode_txn_request(4, TxnAction.ABORT),
        produce(5, b"v", transactional=True),
    ]
    ws, backend = await run_session(frames, expect=5)
    codes = {
        sequence: answer.error_resp.code for sequence, answer in answers(ws).items() if answer.HasField("error_resp")
    }
    assert codes == {1: ErrorCode.TXN_NOT_OPEN, 3: ErrorCode.TXN_ALREADY_OPEN, 5: ErrorCode.TXN_NOT_OPEN}
    assert backend.log == ["abort"]


# ----------------------------------------- found by a review (each failed before its fix)


async def _session(nursery: trio.Nursery, backend: FakeProducer, limit: Amount = ROOMY) -> FakeWebSocket:
    ws = FakeWebSocket()
    session = Session(ws, backend, SessionLimits(max_message_size=1 << 20), produce_limit=limit)  # type: ignore[arg-type]
    nursery.start_soon(session.run)
    return ws


async def test_route_budget_comes_back_when_the_session_ends_during_the_backends_lookup(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Session closes while backend.produce awaits metadata (a refresh, every 10 s in the real route)."""
    async with trio.open_nursery() as nursery:
        backend = FakeProducer(nursery)
        original = backend.produce

        async def slow_lookup(*args, **kwargs):  # type: ignore[no-untyped-def]
            await trio.sleep(1.0)  # Metadata._refresh / TopicLimitsCache / producer creation
            return await original(*args, **kwargs)

        backend.produce = slow_lookup  # type: ignore[method-assign]
        ws = await _session(nursery, backend)
        await ws.incoming_send.send(produce(1, b"a", b"b", b"c"))
        await trio.sleep(0.5)  # inside the look-up
        await ws.incoming_send.aclose()  # the client leaves
        await trio.sleep(10)
    assert backend.produce_budget.records == 0, f"route budget leaked: {backend.produce_budget!r}"


async def test_route_budget_comes_back_when_the_backend_raises_something_unexpected(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        backend = FakeProducer(nursery)
        backend.fail = RuntimeError("e.g. an ssl/ValueError out of KafkaProducer()")  # type: ignore[assignment]
        ws = await _session(nursery, backend)
        await ws.incoming_send.send(produce(1, b"a"))
        await until(ws, lambda: len(ws.sent) == 1)
        await ws.incoming_send.aclose()
    assert backend.produce_budget.records == 0, f"route budget leaked: {backend.produce_budget!r}"


async def test_a_session_closing_while_its_commit_waits_for_acks_still_ends_the_transaction(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        backend = FakeProducer(nursery)
        backend.ack_delay = 2.0
        ws = await _session(nursery, backend)
        await ws.incoming_send.send(encode_txn_request(1, TxnAction.BEGIN))
        await ws.incoming_send.send(produce(2, b"x", transactional=True))
        await ws.incoming_send.send(encode_txn_request(3, TxnAction.COMMIT))
        await trio.sleep(1.0)  # BEGIN answered, COMMIT waiting in _settle for produce 2
        await ws.incoming_send.aclose()
        await trio.sleep(10)
    # Expected: the transaction is aborted (or committed) and its producer goes back to the pool.
    assert "abort" in backend.log or "commit" in backend.log, f"transaction neither ended: {backend.log}"


async def test_a_session_closing_while_begin_runs_in_a_thread_aborts_the_transaction(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """TransactionPool.begin runs new_producer/init_transactions with trio.to_thread.run_sync
    (abandon_on_cancel=False): a cancel does not interrupt it, the result comes back normally."""
    async with trio.open_nursery() as nursery:
        backend = FakeProducer(nursery)

        async def begin_in_thread() -> FakeTransaction:
            with trio.CancelScope(shield=True):  # what a non-abandonable thread call does
                await trio.sleep(1.0)
            transaction = FakeTransaction(backend.log)
            backend.transactions.append(transaction)
            return transaction

        backend.begin_transaction = begin_in_thread  # type: ignore[method-assign]
        ws = await _session(nursery, backend)
        await ws.incoming_send.send(encode_txn_request(1, TxnAction.BEGIN))
        await trio.sleep(0.3)
        await ws.incoming_send.aclose()
        await trio.sleep(10)
    assert backend.transactions, "begin did not run"
    assert "abort" in backend.log, f"transaction lent and never ended (pool slot leaked): {backend.log}"


async def test_a_transactional_produce_waiting_for_room_is_not_handed_to_an_expired_transaction(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        backend = FakeProducer(nursery)
        backend.transaction_timeout = 2.0
        backend.ack_delay = 2.5
        ws = await _session(nursery, backend, Amount(1, 10**6))
        await ws.incoming_send.send(encode_txn_request(1, TxnAction.BEGIN))
        await ws.incoming_send.send(produce(2, b"first", transactional=True))
        await ws.incoming_send.send(produce(3, b"second", transactional=True))  # waits for the session's room
        await until(ws, lambda: len(ws.sent) >= 3)
        await trio.sleep(5)
        await ws.incoming_send.aclose()
    print(backend.log)
    # Expected: "second" is refused (TXN_TIMED_OUT) and never handed to the aborted transaction's producer.
    handed_after_abort = (
        backend.log.index("abort") < backend.log.index("handed b'second'")
        if "handed b'second'" in backend.log
        else False
    )
    assert not handed_after_abort, (
        f"records handed to a transaction already aborted: {backend.log}; answer 3: {answers(ws)[3]}"
    )
