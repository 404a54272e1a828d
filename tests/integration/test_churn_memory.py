"""Short sessions on the real upstream leave nothing for the cyclic collector.

The churn benchmark (connect, ListOffset, Fetch, leave, 10,000 times) once
grew the proxy's RSS by 19%: the Kafka upstream can stream, so every session
built its ``SessionStreams``, which holds the session (as its pusher and
spawner) while the session held it, a reference cycle. Each closed session,
with its connection, socket and buffers, then waited for the cyclic collector,
which ``tune_gc`` makes rare: about 12 KiB a session, thousands of them at a
time. ``tests/session/test_session_memory.py`` covers the transport's part
with a backend that cannot stream; this is the same check on the route's real
backend, against a real broker.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Final

import pytest
import trio
from _support import running_proxy, settled
from trio_websocket import WebSocketConnection

from kafka_ws_trio import ProxyConfig, ServerConfig
from kafka_ws_trio._session import Session
from kafka_ws_trio._streaming import SessionStreams
from kafka_ws_trio._transport import ReplayStream
from kafka_ws_trio.client import open_client
from kafka_ws_trio.testing import KafkaBroker, produce

pytestmark = pytest.mark.timeout(90)

SESSIONS: Final = 20
EARLIEST: Final = -2
KINDS: Final = (WebSocketConnection, ReplayStream, Session, SessionStreams)


@pytest.fixture
def no_cyclic_collector() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def made_since(before: set[int], kinds: tuple[type, ...]) -> list[object]:
    return [thing for thing in gc.get_objects() if type(thing) in kinds and id(thing) not in before]


async def test_closed_sessions_on_the_kafka_upstream_leave_no_cycle(
    kafka_broker: KafkaBroker, kafka_topic: str, no_cyclic_collector: None
) -> None:
    await trio.to_thread.run_sync(produce, kafka_broker, kafka_topic, [b"one"])
    config = ProxyConfig.single_route(kafka_broker.bootstrap, server=ServerConfig(port=0))
    async with running_proxy(config) as server:
        before = {id(thing) for thing in gc.get_objects() if type(thing) in KINDS}
        for _ in range(SESSIONS):
            async with open_client(f"{server.url}/kafka") as client:
                offset = await client.list_offset(kafka_topic, 0, EARLIEST)
                assert len(await client.fetch(kafka_topic, 0, offset)) == 1
        del client  # the last client's own connection
        assert await settled(lambda: server.statistics().sessions_open == 0)
        await trio.testing.wait_all_tasks_blocked()
        # Reference counting alone must free every closed session's streams: only a cycle keeps them.
        assert made_since(before, (SessionStreams,)) == [], "closed sessions keep their streams (a cycle)"
        gc.collect()
        assert made_since(before, KINDS) == []
