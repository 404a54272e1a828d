"""What the session and the Kafka side agree on: small Protocols, and nothing else.

The session (``_session``) and the Kafka edge (``_kafka``) both import this
module and neither imports the other; the server wires them together. Tests
put fakes on either side of it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeAlias, runtime_checkable

from ._proto import CommandFailed, EncodedBatch, Record


class Backend(Protocol):
    """What a session needs from Kafka, for one route.

    Both methods raise :class:`CommandFailed` for every expected failure and
    must return or raise within :attr:`deadline` seconds.
    """

    @property
    def deadline(self) -> float: ...

    async def list_offset(self, topic: str, partition: int, timestamp: int) -> int: ...

    async def fetch(
        self, topic: str, partition: int, offset: int, max_bytes: int
    ) -> Sequence[Record] | EncodedBatch: ...


@runtime_checkable
class CachingBackend(Backend, Protocol):
    """A backend that can answer some fetches from memory at once, without a task (the real one can)."""

    def fetch_cached(self, topic: str, partition: int, offset: int, max_bytes: int) -> EncodedBatch | None:
        """The answer when memory holds it, else None; raises :class:`CommandFailed` (a record too large)."""
        ...


#: What a parked fetch is answered with: records (maybe none, at the log end), a
#: failure, or None for "not from here after all: fetch it the normal way".
ParkedResult: TypeAlias = EncodedBatch | CommandFailed | None
#: Called once with a parked fetch's answer; must not block.
Deliver: TypeAlias = Callable[[ParkedResult], None]
#: Withdraws a parked fetch (the session is ending); its answer is then never delivered.
Withdraw: TypeAlias = Callable[[], None]


@runtime_checkable
class ParkingBackend(Backend, Protocol):
    """A backend that can hold a fetch at the log end and answer it when records arrive (the real one can)."""

    def park(self, topic: str, partition: int, offset: int, max_bytes: int, deliver: Deliver) -> Withdraw | None:
        """Hold the fetch; returns at once.

        None when it will not hold this fetch (fetch it the normal way), else a
        function that withdraws it. A held fetch is answered exactly once,
        unless withdrawn, by calling ``deliver`` from another task within the
        backend's ``deadline``.
        """
        ...


class FrameWriter(Protocol):
    """Writes one whole binary WebSocket message into the connection without waiting (``_transport``)."""

    def write_now(self, head: bytes, body: bytes) -> bool | None:
        """Write the message ``head + body``: True sent, False part pending (call :meth:`flush`), None not written."""
        ...

    async def flush(self) -> None:
        """Send what :meth:`write_now` left pending."""
        ...
