"""A Trio client for the PubSub protocol (ours, and APISIX's).

Example::

    from kafka_ws_trio.client import open_client

    async with open_client("ws://127.0.0.1:9080/kafka") as client:
        offset = await client.list_offset("demo", 0, EARLIEST)
        records = await client.fetch("demo", 0, offset)

Requests are pipelined: any number of tasks may call methods at once, and each
waits for the response carrying its own ``sequence``.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Final, TypeVar

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from ._pb import pubsub_pb2 as pb
from ._proto import (
    ErrorAnswer,
    FetchAnswer,
    MalformedResponse,
    OffsetAnswer,
    Pong,
    Record,
    Response,
    decode_response,
    encode_fetch_request,
    encode_list_offset_request,
    encode_ping_request,
)

__all__ = [
    "EARLIEST",
    "LATEST",
    "PubSubClient",
    "PubSubError",
    "Record",
    "open_client",
]

_R = TypeVar("_R", Pong, OffsetAnswer, FetchAnswer)

#: ``timestamp`` values of ListOffset.
LATEST: Final = -1
EARLIEST: Final = -2
#: Default bound on one response, matching the proxy's default.
DEFAULT_MAX_MESSAGE_SIZE: Final = 1_048_576
#: Seconds a request waits for its response by default.
DEFAULT_REQUEST_TIMEOUT: Final = 30.0
#: Seconds for the opening handshake.
DEFAULT_CONNECT_TIMEOUT: Final = 10.0


class PubSubError(Exception):
    """The proxy answered with an error response."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"PubSubError({self.code}, {self.message!r})"


#: An answer as it arrived, with its decoded event (frames that do not decode are dropped).
_Answer = tuple[bytes, Response]


class PubSubClient:
    """A connected client; make one with :func:`open_client`.

    Frames are built and read by the same sans-IO codec the proxy uses
    (:mod:`kafka_ws_trio._proto`); this class only matches answers to
    requests by their ``sequence``.
    """

    def __init__(self, ws: WebSocketConnection, request_timeout: float) -> None:
        self._ws = ws
        self._timeout = request_timeout
        self._sequences = itertools.count(1)
        self._waiting: dict[int, trio.MemorySendChannel[_Answer]] = {}
        self._closed: ConnectionClosed | None = None

    @property
    def websocket(self) -> WebSocketConnection:
        """The underlying trio-websocket connection."""
        return self._ws

    async def _read_responses(self) -> None:
        try:
            while True:
                frame = await self._ws.get_message()
                if isinstance(frame, str):
                    continue
                response = decode_response(frame)
                if isinstance(response, MalformedResponse):
                    continue  # no sequence to match it to
                waiter = self._waiting.pop(response.sequence, None)
                if waiter is not None:
                    # The request may have been cancelled (its channel closed) just now.
                    with contextlib.suppress(trio.BrokenResourceError):
                        waiter.send_nowait((frame, response))
        except ConnectionClosed as exc:
            self._closed = exc
        finally:
            for waiter in self._waiting.values():
                waiter.close()
            self._waiting.clear()

    async def _exchange(self, build: Callable[[int], bytes]) -> _Answer:
        """Send the frame ``build(sequence)`` makes and wait for the answer carrying that sequence."""
        sequence = next(self._sequences)
        send, receive = trio.open_memory_channel[_Answer](1)
        if self._closed is not None:
            raise self._closed
        self._waiting[sequence] = send
        try:
            with trio.fail_after(self._timeout):
                await self._ws.send_message(build(sequence))
                async with receive:
                    try:
                        return await receive.receive()
                    except trio.EndOfChannel:
                        raise self._closed or ConnectionClosed(None) from None
        finally:
            self._waiting.pop(sequence, None)

    async def request(self, request: pb.PubSubReq) -> pb.PubSubResp:
        """Send ``request`` (its sequence is set here) and return the raw response.

        Raises:
            trio.TooSlowError: no response within the request timeout.
            ConnectionClosed: the connection closed before the response came.
        """

        def build(sequence: int) -> bytes:
            request.sequence = sequence
            return request.SerializeToString()

        frame, _ = await self._exchange(build)
        return pb.PubSubResp.FromString(frame)

    async def _answer(self, build: Callable[[int], bytes], expected: type[_R]) -> _R:
        _, response = await self._exchange(build)
        if isinstance(response, ErrorAnswer):
            raise PubSubError(response.code, response.message)
        if not isinstance(response, expected):
            raise PubSubError(
                0, f"unexpected response {type(response).__name__} to a request expecting {expected.__name__}"
            )
        return response

    async def ping(self, state: bytes = b"") -> bytes:
        """Round-trip ``state`` through the proxy; returns what came back."""
        return (await self._answer(lambda sequence: encode_ping_request(sequence, state), Pong)).state

    async def list_offset(self, topic: str, partition: int, timestamp: int = LATEST) -> int:
        """The offset for ``timestamp``: ``LATEST`` (-1), ``EARLIEST`` (-2) or milliseconds."""
        answer = await self._answer(
            lambda sequence: encode_list_offset_request(sequence, topic, partition, timestamp), OffsetAnswer
        )
        return answer.offset

    async def fetch(self, topic: str, partition: int, offset: int) -> list[Record]:
        """Records at or after ``offset``; an empty list at the log end."""
        answer = await self._answer(
            lambda sequence: encode_fetch_request(sequence, topic, partition, offset), FetchAnswer
        )
        return list(answer.records)

    async def tail(self, topic: str, partition: int, offset: int) -> AsyncIterator[Record]:
        """Yield records from ``offset`` on, forever (waiting at the log end)."""
        while True:
            for record in await self.fetch(topic, partition, offset):
                yield record
                offset = record.offset + 1


@asynccontextmanager
async def open_client(
    url: str,
    *,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
) -> AsyncIterator[PubSubClient]:
    """Connect to a proxy route such as ``ws://127.0.0.1:9080/kafka``.

    Cancellation: leaving the block closes the connection; pending requests
    then fail with ``ConnectionClosed``.
    """
    async with open_websocket_url(url, max_message_size=max_message_size, connect_timeout=connect_timeout) as ws:
        client = PubSubClient(ws, request_timeout)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client._read_responses)
            try:
                yield client
            finally:
                nursery.cancel_scope.cancel()
