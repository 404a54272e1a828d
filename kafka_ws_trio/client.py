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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import attrs
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from ._pb import pubsub_pb2 as pb
from ._proto import Record

__all__ = [
    "EARLIEST",
    "LATEST",
    "PubSubClient",
    "PubSubError",
    "Record",
    "open_client",
]

#: ``timestamp`` values of ListOffset.
LATEST: Final = -1
EARLIEST: Final = -2
#: Default bound on one response, matching the proxy's default.
DEFAULT_MAX_MESSAGE_SIZE: Final = 1_048_576
#: Seconds a request waits for its response by default.
DEFAULT_REQUEST_TIMEOUT: Final = 30.0
#: Seconds for the opening handshake.
DEFAULT_CONNECT_TIMEOUT: Final = 10.0


@attrs.frozen
class _Failure:
    code: int
    message: str


class PubSubError(Exception):
    """The proxy answered with an error response."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"PubSubError({self.code}, {self.message!r})"


def _record(message: pb.KafkaMessage) -> Record:
    return Record(
        offset=message.offset,
        timestamp=message.timestamp,
        key=message.key if message.HasField("key") else None,
        value=message.value if message.HasField("value") else None,
        headers=tuple((h.key, h.value if h.HasField("value") else None) for h in message.headers),
    )


class PubSubClient:
    """A connected client; make one with :func:`open_client`."""

    def __init__(self, ws: WebSocketConnection, request_timeout: float) -> None:
        self._ws = ws
        self._timeout = request_timeout
        self._sequences = itertools.count(1)
        self._waiting: dict[int, trio.MemorySendChannel[pb.PubSubResp]] = {}
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
                response = pb.PubSubResp()
                response.ParseFromString(frame)
                waiter = self._waiting.pop(response.sequence, None)
                if waiter is not None:
                    # The request may have been cancelled (its channel closed) just now.
                    with contextlib.suppress(trio.BrokenResourceError):
                        waiter.send_nowait(response)
        except ConnectionClosed as exc:
            self._closed = exc
        finally:
            for waiter in self._waiting.values():
                waiter.close()
            self._waiting.clear()

    async def request(self, request: pb.PubSubReq) -> pb.PubSubResp:
        """Send ``request`` (its sequence is set here) and return the raw response.

        Raises:
            trio.TooSlowError: no response within the request timeout.
            ConnectionClosed: the connection closed before the response came.
        """
        sequence = next(self._sequences)
        request.sequence = sequence
        send, receive = trio.open_memory_channel[pb.PubSubResp](1)
        if self._closed is not None:
            raise self._closed
        self._waiting[sequence] = send
        try:
            with trio.fail_after(self._timeout):
                await self._ws.send_message(request.SerializeToString())
                async with receive:
                    try:
                        return await receive.receive()
                    except trio.EndOfChannel:
                        raise self._closed or ConnectionClosed(None) from None
        finally:
            self._waiting.pop(sequence, None)

    @staticmethod
    def _check(response: pb.PubSubResp, expected: str) -> pb.PubSubResp:
        kind = response.WhichOneof("resp")
        if kind == "error_resp":
            raise PubSubError(response.error_resp.code, response.error_resp.message)
        if kind != expected:
            raise PubSubError(0, f"unexpected response {kind!r} to a request expecting {expected!r}")
        return response

    async def ping(self, state: bytes = b"") -> bytes:
        """Round-trip ``state`` through the proxy; returns what came back."""
        request = pb.PubSubReq()
        request.cmd_ping.state = state
        return self._check(await self.request(request), "pong_resp").pong_resp.state

    async def list_offset(self, topic: str, partition: int, timestamp: int = LATEST) -> int:
        """The offset for ``timestamp``: ``LATEST`` (-1), ``EARLIEST`` (-2) or milliseconds."""
        request = pb.PubSubReq()
        command = request.cmd_kafka_list_offset
        command.topic, command.partition, command.timestamp = topic, partition, timestamp
        return self._check(await self.request(request), "kafka_list_offset_resp").kafka_list_offset_resp.offset

    async def fetch(self, topic: str, partition: int, offset: int) -> list[Record]:
        """Records at or after ``offset``; an empty list at the log end."""
        request = pb.PubSubReq()
        command = request.cmd_kafka_fetch
        command.topic, command.partition, command.offset = topic, partition, offset
        response = self._check(await self.request(request), "kafka_fetch_resp")
        return [_record(m) for m in response.kafka_fetch_resp.messages]

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
