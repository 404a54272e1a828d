"""One session's requests must not stall another session's.

Sessions that ask for many topics that do not exist (a fuzzer, a typo in a loop, a
hostile client) cost the proxy a metadata round trip each. Those must not hold up a
well-behaved session reading an existing topic for the first time.
"""

from __future__ import annotations

import uuid
from typing import Final

import pytest
import trio
from _reliability import WAIT
from trio_websocket import open_websocket_url

from kafka_ws_trio._config import ProxyConfig, ServerConfig
from kafka_ws_trio._proto import encode_fetch_request
from kafka_ws_trio._server import ProxyServer, serve_proxy
from kafka_ws_trio.client import open_client
from kafka_ws_trio.testing import KafkaBroker, create_topic, produce

pytestmark = pytest.mark.reliability

#: Sessions asking for unknown topics, and the requests each has in flight (its workers):
#: 256 lookups. One that needs a metadata round trip takes about 0.1 s, so running them
#: one after another (the bug this guards against) would take up to 25 s.
NOISY_SESSIONS: Final = 16
NOISY_REQUESTS: Final = 16
#: What a first ListOffset on an existing topic may take meanwhile. It takes one metadata
#: round trip (about 0.1 s on loopback); the bound is far above that, so that a busy
#: machine does not fail the test, and far below the queue of everybody else's lookups.
QUIET_LATENCY: Final = 10.0


def fetch_unknown_topic(sequence: int) -> bytes:
    return encode_fetch_request(sequence, f"no-such-topic-{uuid.uuid4().hex}", 0, 0)


@pytest.mark.timeout(120)
async def test_lookups_of_unknown_topics_do_not_hold_up_other_sessions(kafka_broker: KafkaBroker) -> None:
    topics = [await trio.to_thread.run_sync(create_topic, kafka_broker) for _ in range(3)]
    for topic in topics:
        await trio.to_thread.run_sync(produce, kafka_broker, topic, [b"a", b"b"])
    config = ProxyConfig.single_route(kafka_broker.bootstrap, server=ServerConfig(port=0))
    latencies: list[float] = []
    async with trio.open_nursery() as nursery:
        server: ProxyServer = await nursery.start(serve_proxy, config)
        url = server.url + "/kafka"
        async with open_client(url, request_timeout=60) as quiet:
            assert await quiet.ping(b"up") == b"up"
            noisy = [await nursery.start(hold_open, url) for _ in range(NOISY_SESSIONS)]
            for ws in noisy:
                for sequence in range(NOISY_REQUESTS):
                    await ws.send_message(fetch_unknown_topic(sequence))
            await trio.sleep(0.3)  # the unknown topics are being looked up now
            for topic in topics:  # each read for the first time through this proxy
                started = trio.current_time()
                assert await quiet.list_offset(topic, 0, -1) == 2
                latencies.append(trio.current_time() - started)
        nursery.cancel_scope.cancel()
    print(
        f"\nisolation: {NOISY_SESSIONS} sessions x {NOISY_REQUESTS} fetches of unknown topics; "
        f"first ListOffset of existing topics took {', '.join(f'{s:.2f}s' for s in latencies)}"
    )
    assert max(latencies) < QUIET_LATENCY, (
        f"a first ListOffset on an existing topic took {max(latencies):.1f}s while other sessions "
        "looked up unknown topics: every lookup waits for all that came before (one lock per route)"
    )


async def hold_open(url: str, *, task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED) -> None:
    async with open_websocket_url(url, connect_timeout=WAIT) as ws:
        task_status.started(ws)
        await trio.sleep_forever()
