"""The route's transactional producers: a bounded pool, each lent to one session's transaction at a time.

A producer's ``transactional.id`` is the route's prefix plus its slot number,
so the ids are stable for the life of the process and a restarted proxy with
a configured prefix fences its predecessor's leftovers. A producer is made
(and ``init_transactions`` run) the first time its slot is lent, in a thread,
within the route's deadline. Committing and aborting wait for Kafka within the
route's deadline too: kafka-python's own ``commit_transaction`` waits without
a limit, so the two calls it makes are made here with one. A producer that
fails to end a transaction (fenced, timed out) is closed and its slot made
anew on next use.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import attrs
import trio

from .._proto import Acks, CommandFailed, ErrorCode
from ._context import KafkaContext
from ._producer import Feeder, close_producer, new_producer, produce_failure
from ._settings import transaction_id_prefix

log = logging.getLogger("kafka_ws_trio.kafka")


@attrs.define(eq=False)
class _Slot:
    """One transactional.id of the pool, and its producer once made."""

    transactional_id: str
    producer: Any = None


def _start(producer: Any) -> None:
    """In a thread: make the producer ready for transactions, if it is new, and begin one."""
    producer.init_transactions()  # does nothing once done
    producer.begin_transaction()


def _end(producer: Any, commit: bool, timeout: float) -> None:
    """In a thread: commit or abort the open transaction, waiting for Kafka at most ``timeout`` seconds.

    The two steps of kafka-python's ``commit_transaction``/``abort_transaction``, with the
    limit they lack.
    """
    from kafka.errors import KafkaTimeoutError

    manager = producer._transaction_manager
    result = manager.begin_commit() if commit else manager.begin_abort()
    producer._sender.wakeup()
    if not result.wait(timeout_ms=timeout * 1000):
        raise KafkaTimeoutError(f"{'committing' if commit else 'aborting'} took more than {timeout:g}s")


def _send_offsets(producer: Any, offsets: Any, group_metadata: Any, timeout: float) -> None:
    """In a thread: add a group's offsets to the open transaction, waiting for Kafka at most ``timeout`` seconds."""
    from kafka.errors import KafkaTimeoutError

    result = producer._transaction_manager.send_offsets_to_transaction(offsets, group_metadata)
    producer._sender.wakeup()
    if not result.wait(timeout_ms=timeout * 1000):
        raise KafkaTimeoutError(f"sending offsets to the transaction took more than {timeout:g}s")


class KafkaTransaction:
    """A transaction on one producer of the pool (the ``Transaction`` Protocol); it goes back when it ends.

    Its records reach the producer through the route's feeder thread, so ending it first waits
    for the feeder to have passed them (``Feeder.barrier``): a commit then includes them all,
    and an abort leaves none of them to be sent into the producer's next transaction (whoever
    borrows it). Records the feeder reaches after an abort has begun are failed, not sent.
    """

    def __init__(self, pool: TransactionPool, slot: _Slot) -> None:
        self._pool = pool
        self._slot = slot
        self.producer = slot.producer
        #: Set when a commit or abort begins; the feeder sends no record of it from then on
        #: (a commit first waits for the feeder, so none of its own are left behind).
        self.ended = False
        self._returned = False

    def __repr__(self) -> str:
        return f"<KafkaTransaction {self._slot.transactional_id}>"

    def still_open(self) -> bool:
        """For the feeder thread: whether records may still be sent into this transaction."""
        return not self.ended

    async def commit(self) -> None:
        if self.ended:
            raise CommandFailed(ErrorCode.TXN_NOT_OPEN, "the transaction has ended")
        try:
            if not await self._pool.feeder_passed():
                self.ended = True
                await self._give_back(broken=True)
                reason = "its records could not be handed to Kafka in time; it was aborted"
                raise CommandFailed(ErrorCode.TXN_ABORTED, f"the transaction could not be committed: {reason}")
            self.ended = True
            await self._pool.call(_end, self.producer, True)
        except CommandFailed:
            raise
        except Exception as exc:
            failure = _txn_failure(exc)
            if failure.code == ErrorCode.TXN_FENCED:
                await self._give_back(broken=True)
                raise failure from None
            if failure.code == ErrorCode.TIMEOUT:
                # The coordinator may have the commit and finish it: neither outcome can be told.
                await self._give_back(broken=True)
                reason = "Kafka did not answer the commit in time; the transaction may or may not be committed"
                raise CommandFailed(ErrorCode.TIMEOUT, reason) from None
            aborted = await self._abort()
            reason = f"the transaction could not be committed and was aborted: {failure.reason}"
            if not aborted:
                reason = f"the transaction could not be committed: {failure.reason}"
            raise CommandFailed(ErrorCode.TXN_ABORTED, reason) from None
        except BaseException:  # cancelled (the session is going): its state is unknown, so the producer goes
            self.ended = True
            await self._give_back(broken=True)
            raise
        await self._give_back(broken=False)

    async def send_offsets(
        self, offsets: Any, group_metadata: Any, group_failure: Callable[[Exception], CommandFailed | None]
    ) -> None:
        """Make a group's offsets part of this transaction: committed with it, or not at all.

        ``group_failure`` names a refusal that is the group's (the member's generation is
        stale): the transaction stays open and usable.
        """
        if self.ended:
            raise CommandFailed(ErrorCode.TXN_NOT_OPEN, "the transaction has ended")
        try:
            await self._pool.call(_send_offsets, self.producer, offsets, group_metadata)
        except Exception as exc:
            failure = group_failure(exc) or _txn_failure(exc)
            raise CommandFailed(failure.code, f"the offsets could not join the transaction: {failure.reason}") from None

    async def abort(self) -> None:
        if self.ended:
            if not self._returned:  # an end cut short (cancelled) still gives the producer back
                await self._give_back(broken=True)
            return
        self.ended = True
        await self._abort()

    async def _abort(self) -> bool:
        """Abort (shielded, bounded); a producer that cannot is closed. Gives the slot back either way."""
        aborted = False
        with trio.CancelScope(shield=True):
            try:
                if await self._pool.feeder_passed():
                    await self._pool.call(_end, self.producer, False)
                    aborted = True
            except Exception as exc:
                name = self._slot.transactional_id
                log.warning("aborting transaction %s failed (%s); closing its producer", name, exc)
            await self._give_back(broken=not aborted)
        return aborted

    async def _give_back(self, *, broken: bool) -> None:
        """Return the producer to the pool, once (shielded)."""
        if self._returned:
            return
        self._returned = True
        with trio.CancelScope(shield=True):
            await self._pool.give_back(self._slot, broken=broken)


def _txn_failure(exc: BaseException) -> CommandFailed:
    if isinstance(exc, CommandFailed):
        return exc
    if isinstance(exc, trio.TooSlowError):
        return CommandFailed(ErrorCode.TIMEOUT, "Kafka did not answer in time")
    return produce_failure(exc)


class TransactionPool:
    """At most ``transaction_producers`` transactional producers; a session borrows one per transaction."""

    def __init__(self, context: KafkaContext, feeder: Feeder) -> None:
        self._context = context
        self._feeder = feeder
        size = context.route.transaction_producers
        prefix = transaction_id_prefix(context.route)
        self._free = [_Slot(f"{prefix}{index}") for index in reversed(range(size))]
        self._size = size
        self._lendable = trio.Semaphore(size)
        #: Transactions begun, and producers closed because they failed.
        self.begun = 0
        self.producers_dropped = 0

    @property
    def in_use(self) -> int:
        return self._size - len(self._free)

    async def call(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args, deadline)`` in a thread under the route's limiter, within the route's deadline."""
        context = self._context
        deadline = context.route.request_timeout
        with trio.fail_after(context.deadline + deadline):
            return await trio.to_thread.run_sync(fn, *args, deadline, limiter=context.limiter)

    async def feeder_passed(self) -> bool:
        """Whether the feeder thread has run every job put so far, within the route's deadline."""
        with trio.move_on_after(self._context.deadline):
            await self._feeder.barrier()
            return True
        return False

    async def begin(self) -> KafkaTransaction:
        """Lend a producer with a transaction begun; OVERLOADED when none comes free within the deadline."""
        context = self._context
        if self._size == 0:
            raise CommandFailed(
                ErrorCode.INVALID_REQUEST, "transactions are off on this route (transaction_producers = 0)"
            )
        with trio.move_on_after(context.deadline) as waiting:
            await self._lendable.acquire()
        if waiting.cancelled_caught:
            reason = f"all {self._size} transactional producers are in use (transaction_producers); try again later"
            raise CommandFailed(ErrorCode.OVERLOADED, reason)
        slot = self._free.pop()
        try:
            with trio.fail_after(context.deadline * 2):
                if slot.producer is None:
                    slot.producer = await trio.to_thread.run_sync(
                        new_producer, context, Acks.ALL, slot.transactional_id, limiter=context.limiter
                    )
                await trio.to_thread.run_sync(_start, slot.producer, limiter=context.limiter)
        except BaseException as exc:
            await self.give_back(slot, broken=True)
            if isinstance(exc, Exception):
                raise _txn_failure(exc) from None
            raise
        self.begun += 1
        return KafkaTransaction(self, slot)

    async def give_back(self, slot: _Slot, *, broken: bool) -> None:
        """Return ``slot`` to the pool; a broken producer is closed first (shielded, bounded)."""
        if broken and slot.producer is not None:
            producer, slot.producer = slot.producer, None
            self.producers_dropped += 1
            await close_producer(producer)
        self._free.append(slot)
        self._lendable.release()

    async def aclose(self) -> None:
        """Close every producer the pool made (a transaction still open is aborted by Kafka's timeout)."""
        producers = [slot.producer for slot in self._free if slot.producer is not None]
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as nursery:
                for producer in producers:
                    nursery.start_soon(close_producer, producer)
