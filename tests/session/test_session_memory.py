"""A closed session's objects are not kept alive by a reference cycle of ours.

``tune_gc`` makes the collector run rarely, so anything a session leaves in a
reference cycle piles up between collections: a cycle between the stream and
trio-websocket's connection once cost +6 MiB of RSS over 2,000 short sessions
in the churn benchmark. Libraries may still leave cycles of their own (on
Python 3.12 and later, tracebacks of trio's cancellations hold a connection's
frames), so the test checks our part: no stream holds its connection, and a
collection frees every closed session.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from typing import Final

import pytest
import trio
from _support import running_proxy, settled
from trio_websocket import WebSocketConnection

from kafka_ws_trio import ProxyConfig, ServerConfig
from kafka_ws_trio._proto import Record
from kafka_ws_trio._session import Session
from kafka_ws_trio._transport import ReplayStream
from kafka_ws_trio.client import open_client

pytestmark = pytest.mark.timeout(60)

SESSIONS: Final = 20


class OneRecordBackend:
    deadline = 1.0

    async def list_offset(self, topic: str, partition: int, timestamp: int) -> int:
        return 0

    async def fetch(self, topic: str, partition: int, offset: int, max_bytes: int) -> Sequence[Record]:
        return [Record(offset=offset, timestamp=0, key=None, value=b"v")]


@pytest.fixture
def no_cyclic_collector() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def test_closed_sessions_are_not_held_by_their_streams_and_are_freed(no_cyclic_collector: None) -> None:
    config = ProxyConfig.single_route("127.0.0.1:9", server=ServerConfig(port=0))
    async with running_proxy(config, backend_factory=lambda route, limiter: OneRecordBackend()) as server:
        before = {id(thing) for thing in gc.get_objects() if type(thing) in KINDS}
        for _ in range(SESSIONS):
            async with open_client(f"{server.url}/kafka") as client:
                assert await client.list_offset("t", 0) == 0
                assert len(await client.fetch("t", 0, 0)) == 1
        del client  # the last client's own connection
        assert await settled(lambda: server.statistics().sessions_open == 0)
        await trio.testing.wait_all_tasks_blocked()
        assert not any_connection_held_by_a_stream(before), "a stream keeps its connection alive"
        gc.collect()
        remaining = [thing for thing in gc.get_objects() if type(thing) in KINDS and id(thing) not in before]
    assert remaining == []


KINDS: Final = (WebSocketConnection, ReplayStream, Session)


def any_connection_held_by_a_stream(before: set[int]) -> bool:
    """Whether some connection made since ``before`` is referred to by a stream (which would make a cycle)."""
    left = [thing for thing in gc.get_objects() if type(thing) is WebSocketConnection and id(thing) not in before]
    return any(held_by_stream(holder) for connection in left for holder in gc.get_referrers(connection))


def held_by_stream(holder: object) -> bool:
    """Whether ``holder`` is a ReplayStream or its attribute dictionary."""
    if type(holder) is ReplayStream:
        return True
    return type(holder) is dict and any(type(owner) is ReplayStream for owner in gc.get_referrers(holder))
