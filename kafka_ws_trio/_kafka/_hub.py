"""A partition's hub: one read fanned out to every session waiting at the log end.

A fetch at the log end is parked here instead of holding a task of its own.
One pump task polls while fetches are parked and, after each poll, answers
every one it settles by calling its ``deliver`` (which writes the same
shared body into each session's socket). Push streams hang off the same
hub (:attr:`PartitionHub.taps`), fed by a pump of their own that shares the
reader's polls and window with the fetches.
"""

from __future__ import annotations

import logging

import attrs
import trio

from .._ports import Deliver, ParkedResult, Withdraw
from .._proto import EMPTY_BATCH, CommandFailed, Entries, ErrorCode
from ._context import KafkaContext
from ._reader import PartitionReader
from ._taps import StreamTaps

log = logging.getLogger("kafka_ws_trio.kafka")


@attrs.define(slots=True)
class _Waiter:
    """A fetch parked at the log end."""

    offset: int
    max_body: int
    deliver: Deliver
    withdrawn: bool = False

    def withdraw(self) -> None:
        self.withdrawn = True


class PartitionHub:
    """The parked fetches of one partition reader, and the pump that answers them."""

    def __init__(self, context: KafkaContext, reader: PartitionReader) -> None:
        self._context = context
        self.reader = reader
        self._waiters: list[_Waiter] = []
        self._pumping = False
        #: The push streams reading this partition.
        self.taps = StreamTaps(context, reader)
        reader.wants_fresh = lambda: bool(self._waiters) or bool(self.taps)

    @property
    def waiting(self) -> list[_Waiter]:
        """The fetches parked here and not withdrawn."""
        return [waiter for waiter in self._waiters if not waiter.withdrawn]

    def park(self, offset: int, max_body: int, deliver: Deliver) -> Withdraw | None:
        """Hold a fetch at the log end; the pump answers it when a poll lands. None: not held.

        Tailing sessions then cost no task each while they wait, and one task
        writes every waiting session's answer (the same shared body) as soon as
        records arrive.
        """
        reader = self.reader
        if offset != reader.log_end or reader.failing or reader.closed:
            return None
        waiter = _Waiter(offset, max_body, deliver)
        if not self._pumping:
            self._pumping = reader.in_background(self._pump)
            if not self._pumping:
                return None  # the route is not running
        self._waiters.append(waiter)
        return waiter.withdraw

    async def _pump(self) -> None:
        """Poll at the log end while fetches are parked there, answering them after each poll."""
        deadline = self._context.deadline
        try:
            while self._waiters:
                offset = self.reader.log_end
                assert offset is not None  # park() requires it
                entries = Entries()
                failure: CommandFailed | None = None
                try:
                    with trio.fail_after(deadline):
                        entries = await self.reader.read(offset)
                except CommandFailed as exc:
                    failure = exc
                except trio.TooSlowError:
                    failure = CommandFailed(ErrorCode.TIMEOUT, f"fetch timed out after {deadline:.0f}s")
                except Exception:
                    log.exception("bug while reading %r for parked fetches", self.reader)
                    failure = CommandFailed(ErrorCode.INTERNAL_ERROR, "internal error")
                self._answer(offset, entries, failure)
        finally:
            self._pumping = False
            if self._waiters:  # only when cancelled (shutdown): nobody may wait for an answer that never comes
                self._answer(None, Entries(), CommandFailed(ErrorCode.INTERNAL_ERROR, "proxy shutting down"))

    def _answer(self, polled: int | None, entries: Entries, failure: CommandFailed | None) -> None:
        """Answer every parked fetch the poll at ``polled`` settles; keep the ones parked at a newer log end."""
        reader = self.reader
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if waiter.withdrawn:
                continue
            result: ParkedResult
            if failure is not None:
                result = failure
            else:
                try:
                    result = reader.from_window(waiter.offset, waiter.max_body) or entries.take(
                        waiter.offset, waiter.max_body
                    )
                except CommandFailed as exc:
                    result = exc
                if result is None:
                    if waiter.offset == reader.log_end and waiter.offset != polled:
                        self._waiters.append(waiter)  # parked after this poll began: wait for the next
                        continue
                    # At the log end after a full wait: an empty answer. Behind the window: fetch normally.
                    result = EMPTY_BATCH if waiter.offset == reader.log_end else None
            self._context.counters.parked_answered += 1
            try:
                waiter.deliver(result)
            except Exception:
                log.exception("bug while answering a parked fetch on %r", reader)
