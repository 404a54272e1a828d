"""The Trio client survives requests cancelled at any moment.

Programs put deadlines around requests (``trio.move_on_after(...)``) and cancel tasks
that are waiting for an answer. Whenever the cancellation comes, even just as the
answer arrives, the client must stay usable: the answer is dropped, the connection
and the other requests carry on. Seen failing: the broker-outage test, stopping its
sessions, lost the whole client to a ``BrokenResourceError``.
"""

from __future__ import annotations

import random
import statistics
from collections import deque
from typing import Final

import pytest
import trio
from _reliability import WAIT

from kafka_ws_trio._config import ProxyConfig, ServerConfig
from kafka_ws_trio._server import ProxyServer, serve_proxy
from kafka_ws_trio.client import open_client
from kafka_ws_trio.testing import KafkaBroker

pytestmark = pytest.mark.reliability

#: Requests cancelled at random moments around their round trip (seen to break the
#: client within about 50).
ATTEMPTS: Final = 2_000
#: Round trips the deadlines are scaled to: the most recent ones that were not cancelled.
ROUND_TRIP_SAMPLES: Final = 40


@pytest.mark.timeout(60)
async def test_requests_cancelled_at_any_moment_leave_the_client_usable(kafka_broker: KafkaBroker) -> None:
    config = ProxyConfig.single_route(kafka_broker.bootstrap, server=ServerConfig(port=0))
    rng = random.Random(20_26)
    cancelled = 0
    async with trio.open_nursery() as nursery:
        server: ProxyServer = await nursery.start(serve_proxy, config)
        async with open_client(server.url + "/kafka", request_timeout=WAIT) as client:
            # Deadlines follow the median of the recent round trips, so that the share cancelled
            # does not depend on how busy the machine was at one moment. The first pings
            # (imports, caches) are far slower: warm up before taking any.
            for _ in range(ROUND_TRIP_SAMPLES):
                assert await client.ping(b"warm") == b"warm"
            trips: deque[float] = deque(maxlen=ROUND_TRIP_SAMPLES)
            for _ in range(ROUND_TRIP_SAMPLES):
                started = trio.current_time()
                assert await client.ping(b"rtt") == b"rtt"
                trips.append(trio.current_time() - started)
            for _ in range(ATTEMPTS):
                round_trip = statistics.median(trips)
                started = trio.current_time()
                with trio.move_on_after(rng.uniform(0, 3 * round_trip)) as deadline:
                    assert await client.ping(b"maybe") == b"maybe"
                if deadline.cancelled_caught:
                    cancelled += 1
                else:
                    trips.append(trio.current_time() - started)
            assert await client.ping(b"still usable") == b"still usable"
        nursery.cancel_scope.cancel()
    print(f"\nclient cancellation: {cancelled} of {ATTEMPTS} requests cancelled on their way")
    assert cancelled > ATTEMPTS // 10, "too few requests were cancelled for the test to mean anything"
