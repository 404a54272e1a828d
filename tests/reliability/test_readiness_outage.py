"""/readyz follows a broker that is killed and comes back (issue 14): health during an outage, for real.

The proxy serves one route to a broker of this test's own. Ready while the broker
answers; 503, naming the route's reason, once it is killed, while /healthz (the
event loop) still answers 200; ready again after the broker restarts on its data.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Final

import pytest
import trio
from _reliability import OwnBroker, settled
from _support import own_broker_name, own_port_base

from kafka_ws_trio._config import ProxyConfig, RouteConfig, ServerConfig
from kafka_ws_trio._server import ProxyServer, serve_proxy
from kafka_ws_trio.testing import KafkaBroker

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(240)]

BROKER: Final = OwnBroker(own_broker_name("reliability-ready"), port_base=own_port_base(26192))
#: Seconds between the proxy's reachability checks: short, so that the outage shows quickly.
CHECK_INTERVAL: Final = 0.2
#: Seconds a broker restart may take to be seen (a loaded machine restarts Kafka slowly).
RESTART_LIMIT: Final = 120.0


@pytest.fixture
def own_broker() -> Iterator[KafkaBroker]:
    with BROKER.running() as broker:
        yield broker


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


async def probe(server: ProxyServer, path: str) -> tuple[int, str]:
    port = server.ops_port
    assert port is not None
    return await trio.to_thread.run_sync(get, port, path)


async def test_readyz_turns_503_while_the_broker_is_down_and_200_once_it_is_back(own_broker: KafkaBroker) -> None:
    config = ProxyConfig(
        ServerConfig(port=0, ops_port=0, ready_check_interval=CHECK_INTERVAL),
        (RouteConfig("/kafka", own_broker.bootstrap),),
    )
    async with trio.open_nursery() as nursery:
        server: ProxyServer = await nursery.start(serve_proxy, config)
        assert await settled(lambda: server.readiness.ready), server.readiness.problems
        assert (await probe(server, "/readyz"))[0] == 200

        await trio.to_thread.run_sync(BROKER.kill)
        assert await settled(lambda: not server.readiness.ready), "still ready with the broker killed"
        status, body = await probe(server, "/readyz")
        assert status == 503
        assert json.loads(body)["routes"]["/kafka"].startswith("broker unreachable"), body
        assert await probe(server, "/healthz") == (200, "ok\n")  # the proxy itself is alive
        status, body = await probe(server, "/readyz?exclude=kafka")  # a balancer that keeps it through outages
        assert (status, json.loads(body)["excluded"]) == (200, ["kafka"]), body

        await trio.to_thread.run_sync(BROKER.start)
        assert await settled(lambda: server.readiness.ready, RESTART_LIMIT), server.readiness.problems
        assert (await probe(server, "/readyz"))[0] == 200
        nursery.cancel_scope.cancel()
