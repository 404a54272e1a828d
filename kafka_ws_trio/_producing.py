"""One session's produce commands and its transaction, against a ``ProducingBackend``.

Order: one task takes the session's produce and transaction commands in the
order they came and hands each to the backend before it takes the next, so a
session's records reach a partition in the order it sent them (per acks
level: each level has its own producer). Answers go out as Kafka acknowledges;
each carries its command's sequence.

Bounds: a command takes its records and bytes from the session's budget
(``produce_session_*``), then from the route's (``produce_route_*``), and gives
them back when Kafka has answered. It waits for room up to the backend's
``produce_timeout`` (backpressure), then fails with ``OVERLOADED``. Commands
not yet handed over wait in a queue of at most ``queue_size``; a full queue
stops the session's reader.

A transaction belongs to the session from TXN_BEGIN to TXN_COMMIT or
TXN_ABORT. It is aborted when it stays open past ``transaction_timeout`` and
when the session ends.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Final

import trio

from ._ports import ProducingBackend, Transaction
from ._proto import (
    PRODUCE_RESULT_BOUND,
    Amount,
    Budget,
    CommandFailed,
    ErrorCode,
    NotWritten,
    Produce,
    ProduceCommand,
    ProduceResult,
    TxnAction,
    encode_error,
    encode_ok,
    encode_produce_answer,
    kind_of,
    produce_answer_code,
    produce_error,
)

log = logging.getLogger("kafka_ws_trio.session")

#: Seconds added to the backend's deadlines before the session gives up waiting on it.
DEADLINE_MARGIN: Final = 2.0

#: ``reply(kind, frame, after, code)`` sends the answer to a command of ``kind`` (``produce`` or ``txn``)
#: without blocking (the session writes it now or from a task), then calls ``after``, if given, once
#: it is written (or the session has ended). ``code`` is its result in the metrics (0: not an error).
Reply = Callable[[str, bytes, Callable[[], None] | None, int], None]
#: Bytes one record's result may take in a ProduceResp, at most, once the answer is made to fit
#: (``encode_produce_answer``): a command may carry only as many records as fit max_message_size.
MAX_RESULT_BYTES: Final = PRODUCE_RESULT_BOUND


class SessionProducer:
    """The produce side of one session: its queue, its budget, its transaction."""

    __slots__ = (
        "_backend",
        "_budget",
        "_counting",
        "_doomed",
        "_expired",
        "_expiry",
        "_handed",
        "_in_txn",
        "_max_message_size",
        "_queue",
        "_queue_size",
        "_reply",
        "_room",
        "_running",
        "_settled",
        "_spawn",
        "_transaction",
        "errors",
    )

    def __init__(
        self,
        backend: ProducingBackend,
        limit: Amount,
        queue_size: int,
        max_message_size: int,
        reply: Reply,
        spawn: Callable[..., None],
    ) -> None:
        self._backend = backend
        self._max_message_size = max_message_size
        self._budget = Budget(limit, "produce_session")
        self._queue_size = queue_size
        self._reply = reply
        self._spawn = spawn
        #: Commands not yet handed to the backend, in order; None while none waits.
        self._queue: deque[ProduceCommand] | None = None
        self._running = False
        #: Produce commands handed to the backend whose answer has not been made yet.
        self._handed = 0
        self._room: trio.Event | None = None
        self._transaction: Transaction | None = None
        #: Cancels the open transaction's timer.
        self._expiry: trio.CancelScope | None = None
        #: Whether the last transaction was aborted for staying open too long (until the next TXN_BEGIN).
        self._expired = False
        #: Produce commands of the transaction ``_counting`` (the last one begun) that Kafka has not
        #: answered yet, and the event set when that count falls to 0 (made only while a commit waits).
        self._counting: Transaction | None = None
        self._in_txn = 0
        #: Why the transaction ``_counting`` cannot be committed: a record of it was not written (a
        #: commit would keep the others, so it aborts instead); None while every record was.
        self._doomed: str | None = None
        self._settled: trio.Event | None = None
        #: Error responses sent.
        self.errors = 0

    @property
    def pending(self) -> int:
        """Commands taken and not answered yet: queued, being carried out, or handed to Kafka (a drain waits)."""
        return (len(self._queue) if self._queue else 0) + self._running + self._handed

    @property
    def transaction(self) -> Transaction | None:
        """The session's open transaction, if any (a group stream's commit joins it)."""
        return self._transaction

    # ------------------------------------------------------------------ queue

    async def take(self, command: ProduceCommand) -> None:
        """Queue a command from the reader, waiting while ``queue_size`` commands wait (backpressure)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while self._queue is not None and len(self._queue) >= self._queue_size:
            room = self._room = self._room or trio.Event()
            await room.wait()
        if self._queue is None:
            self._queue = deque()
        self._queue.append(command)
        if not self._running:
            self._running = True
            self._spawn(self._run)
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def _run(self) -> None:
        try:
            while self._queue:
                command = self._queue.popleft()
                if not self._queue:
                    self._queue = None
                if self._room is not None:
                    self._room.set()
                    self._room = None
                try:
                    if isinstance(command, Produce):
                        await self._produce(command)
                    else:
                        await self._txn(command.sequence, command.action)
                except Exception:
                    log.exception("bug while handling %r", command)
                    self._error(kind_of(command), command.sequence, ErrorCode.INTERNAL_ERROR, "internal error")
        finally:
            self._running = False

    def _error(self, kind: str, sequence: int, code: ErrorCode, message: str) -> None:
        self.errors += 1
        self._reply(kind, encode_error(sequence, code, message), None, code)

    # ---------------------------------------------------------------- produce

    async def _produce(self, command: Produce) -> None:
        transaction = None
        if command.transactional:
            transaction = self._transaction
            if transaction is None:
                self._no_transaction("produce", command.sequence)
                return
        records = len(command.records)
        if records * MAX_RESULT_BYTES > self._max_message_size:
            most = self._max_message_size // MAX_RESULT_BYTES
            message = f"produce refused: {records} records, more than the {most} whose answer fits in max_message_size"
            self._error("produce", command.sequence, ErrorCode.INVALID_REQUEST, message)
            return
        amount = Amount(records, sum(record.size for record in command.records))
        route = self._backend.produce_budget
        too_large = self._budget.too_large(amount) or route.too_large(amount)
        if too_large is not None:
            self._error("produce", command.sequence, ErrorCode.OVERLOADED, f"produce refused: {too_large}")
            return
        waited = self._backend.produce_timeout
        taken: list[Budget] = []
        handed = False
        try:
            deadline = trio.current_time() + waited
            for budget in (self._budget, route):
                if not await _take(budget, amount, deadline):
                    break
                taken.append(budget)
            if len(taken) < 2:
                bound = "produce_session" if not taken else "produce_route"
                self._error(
                    "produce",
                    command.sequence,
                    ErrorCode.OVERLOADED,
                    f"produce refused: no room in flight within {waited:g}s ({bound}_records/{bound}_bytes)",
                )
                return
            if transaction is not None and transaction is not self._transaction:
                # It ended (expired) while this command waited for room: nothing of it goes there.
                self._no_transaction("produce", command.sequence)
                return

            def done(results: tuple[ProduceResult, ...]) -> None:
                self._handed -= 1
                route.give(amount)  # Kafka holds them no longer; the session's share waits for the answer
                if transaction is not None and transaction is self._counting:
                    self._in_txn -= 1
                    if self._in_txn == 0 and self._settled is not None:
                        self._settled.set()
                    self._doom(command.sequence, results)
                answer = encode_produce_answer(command.sequence, results, self._max_message_size)
                self._reply("produce", answer, partial(self._budget.give, amount), produce_answer_code(results))

            counted = transaction is not None and transaction is self._counting
            self._in_txn += counted
            self._handed += 1  # before the call: done may come before it returns
            try:
                with trio.fail_after(self._backend.deadline + DEADLINE_MARGIN):
                    await self._backend.produce(command.topic, command.records, command.acks, done, transaction)
                handed = True
            except (CommandFailed, trio.TooSlowError) as exc:
                # Nothing was handed over, so done will not be called.
                self._handed -= 1
                failure = (
                    exc if isinstance(exc, CommandFailed) else CommandFailed(ErrorCode.TIMEOUT, "produce timed out")
                )
                self._in_txn -= counted
                results = _all_failed(command, failure)
                if counted:
                    self._doom(command.sequence, results)
                answer = encode_produce_answer(command.sequence, results, self._max_message_size)
                self._reply("produce", answer, None, failure.code)
            except BaseException:
                self._handed -= 1
                self._in_txn -= counted
                raise
        finally:
            if not handed:  # refused, failed, cancelled or a bug: the room goes back at once
                for budget in taken:
                    budget.give(amount)

    # ------------------------------------------------------------ transactions

    async def _txn(self, sequence: int, action: TxnAction) -> None:
        if action == TxnAction.BEGIN:
            await self._begin(sequence)
            return
        transaction = self._transaction
        if transaction is None:
            self._no_transaction("txn", sequence)
            return
        # The transaction stays the session's until it has ended: a session cancelled meanwhile
        # (its client gone) aborts it as it closes (a no-op once the end has begun).
        self._stop_timer()
        if action == TxnAction.ABORT:
            await transaction.abort()
            self._transaction = None
            self._reply("txn", encode_ok(sequence), None, 0)
            return
        try:
            await self._settle()
            if self._doomed is not None:
                await transaction.abort()
                reason = f"the transaction could not be committed and was aborted: {self._doomed}"
                raise CommandFailed(ErrorCode.TXN_ABORTED, reason)
            await transaction.commit()
        except CommandFailed as exc:
            self._transaction = None
            self._error("txn", sequence, exc.code, exc.reason)
            return
        self._transaction = None
        self._reply("txn", encode_ok(sequence), None, 0)

    async def _begin(self, sequence: int) -> None:
        if self._transaction is not None:
            self._error("txn", sequence, ErrorCode.TXN_ALREADY_OPEN, "a transaction is already open")
            return
        try:
            with trio.fail_after(self._backend.deadline + DEADLINE_MARGIN):
                transaction = await self._backend.begin_transaction()
        except CommandFailed as exc:
            self._error("txn", sequence, exc.code, f"cannot begin a transaction: {exc.reason}")
            return
        except trio.TooSlowError:
            self._error("txn", sequence, ErrorCode.TIMEOUT, "cannot begin a transaction: timed out")
            return
        # Ours from here, even if the session is ending: run's end aborts it.
        self._transaction = transaction
        self._counting, self._in_txn, self._expired, self._doomed = transaction, 0, False, None
        self._expiry = trio.CancelScope()
        self._spawn(self._expire, transaction, self._expiry)
        self._reply("txn", encode_ok(sequence), None, 0)

    def _doom(self, sequence: int, results: tuple[ProduceResult, ...]) -> None:
        """Remember the first record of the transaction that was not written."""
        if self._doomed is not None:
            return
        for index, result in enumerate(results):
            if isinstance(result, NotWritten):
                self._doomed = f"record {index} of produce {sequence} was not written ({result.message})"
                return

    def _no_transaction(self, kind: str, sequence: int) -> None:
        if self._expired:
            timeout = self._backend.transaction_timeout
            message = f"the transaction stayed open longer than {timeout:g}s (transaction_timeout) and was aborted"
            self._error(kind, sequence, ErrorCode.TXN_TIMED_OUT, message)
        else:
            self._error(kind, sequence, ErrorCode.TXN_NOT_OPEN, "no transaction is open (send TXN_BEGIN first)")

    async def _settle(self) -> None:
        """Wait until Kafka has answered every produce of the transaction (they end within ``produce_timeout``)."""
        with trio.move_on_after(self._backend.produce_timeout + DEADLINE_MARGIN):
            while self._in_txn > 0:
                settled = self._settled = trio.Event()
                await settled.wait()
        self._settled = None

    def _stop_timer(self) -> None:
        """The session's transaction is ending (committing or aborting): it no longer expires."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    async def _expire(self, transaction: Transaction, scope: trio.CancelScope) -> None:
        """Abort ``transaction`` when it stays open past the route's ``transaction_timeout``."""
        with scope:
            await trio.sleep(self._backend.transaction_timeout)
            if self._transaction is transaction:
                self._expiry = None
                self._expired = True
                log.info("a transaction stayed open %gs; aborting it", self._backend.transaction_timeout)
                self._transaction = None
                await transaction.abort()

    async def aclose(self) -> None:
        """The session has ended (its tasks are done): abort its open transaction (shielded, bounded)."""
        transaction, self._transaction = self._transaction, None
        self._queue = None
        self._stop_timer()
        if transaction is not None:
            with trio.CancelScope(shield=True):
                await transaction.abort()


async def _take(budget: Budget, amount: Amount, deadline: float) -> bool:
    """Take ``amount`` from ``budget``, waiting in line for it until ``deadline``; False: it took nothing.

    Taken at once (the common case), it costs no event and no cancel scope.
    """
    claim = budget.ask(amount, _nothing)
    if claim is None:
        await trio.lowlevel.cancel_shielded_checkpoint()  # taken: a cancellation now would lose it
        return True
    granted = trio.Event()
    claim.granted = granted.set
    try:
        with trio.move_on_at(deadline):
            await granted.wait()
    except BaseException:
        if granted.is_set():
            budget.give(amount)  # granted as the wait was cancelled: give it back
        else:
            budget.withdraw(claim)
        raise
    if granted.is_set():
        return True
    budget.withdraw(claim)
    return False


def _nothing() -> None:
    """The grant callback of a claim that has no waiter yet (it is replaced before anyone waits)."""


def _all_failed(command: Produce, failure: CommandFailed) -> tuple[ProduceResult, ...]:
    """Every record of ``command`` failed for the same reason (the topic does not exist, Kafka is down)."""
    results = []
    for record in command.records:
        partition = -1 if record.partition is None else record.partition
        message = produce_error(command.topic, partition, failure.reason)
        results.append(NotWritten(partition, failure.code, message))
    return tuple(results)
