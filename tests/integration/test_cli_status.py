"""``kafka-ws-trio status URL`` (issue 14): the proxy's health and key metrics from its ops port.

The proxy runs in this process, the command as a user runs it, in a process of its own:
exit 0 and the figures when the proxy is ready, 1 when a route's brokers cannot be
reached, 2 when nothing answers at the URL.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Final

import pytest
import trio
from _support import free_port, running_proxy, settled

from kafka_ws_trio import ProxyConfig, ServerConfig
from kafka_ws_trio._config import RouteConfig
from kafka_ws_trio.client import EARLIEST, open_client
from kafka_ws_trio.testing import KafkaBroker

pytestmark = pytest.mark.timeout(90)

COMMAND: Final = str(Path(sys.executable).parent / "kafka-ws-trio")
#: A route whose only broker is a port nothing listens on.
DEAD_NODE: Final = "127.0.0.1:1"
CHECK_INTERVAL: Final = 0.2
#: Seconds one run of the command may take (a fresh interpreter on a busy machine, three requests).
RUN_TIMEOUT: Final = 30.0


def _config(*routes: RouteConfig) -> ProxyConfig:
    return ProxyConfig(ServerConfig(port=0, ops_port=0, ready_check_interval=CHECK_INTERVAL), routes)


async def _status(url: str, *options: str) -> tuple[int, list[str], str]:
    """Exit status, stdout lines and stderr of ``kafka-ws-trio status url``."""
    with trio.fail_after(RUN_TIMEOUT):
        result = await trio.run_process(
            [COMMAND, "status", url, *options], capture_stdout=True, capture_stderr=True, check=False
        )
    return result.returncode, result.stdout.decode().splitlines(), result.stderr.decode()


async def test_a_ready_proxy_exits_0_with_its_figures(kafka_broker: KafkaBroker, kafka_topic: str) -> None:
    async with running_proxy(_config(RouteConfig("/kafka", kafka_broker.bootstrap))) as server:
        assert await settled(lambda: server.readiness.ready), "the route's brokers were never found reachable"
        ops = f"http://127.0.0.1:{server.ops_port}"
        async with open_client(server.url + "/kafka") as client:
            assert len(await client.produce(kafka_topic, [b"a", b"b", b"c"])) == 3
            async with client.subscribe(kafka_topic, start=EARLIEST) as stream:
                values: list[bytes | None] = []
                with trio.fail_after(RUN_TIMEOUT):
                    async for batch in stream:
                        values.extend(record.value for record in batch.records)
                        if len(values) >= 3:
                            break
                assert values == [b"a", b"b", b"c"]
                before = server.statistics()
                code, lines, stderr = await _status(ops + "/")
                after = server.statistics()
    assert (code, stderr) == (0, "")
    # The stream's reader waits on Kafka at the log end in a thread of its own, or is between two waits;
    # the client may hand the stream credit (a command) while the command runs.
    figures = re.fullmatch(r"sessions open 1, commands (\d+), error responses 0, Kafka threads busy [01]", lines[2])
    assert figures is not None, lines[2]
    assert before.commands_total <= int(figures[1]) <= after.commands_total
    consumers = {
        up.consumers_created - up.consumers_closed for up in (before.upstreams["/kafka"], after.upstreams["/kafka"])
    }
    assert len(consumers) == 1, "a Kafka consumer came or went meanwhile"
    assert lines[:2] + lines[3:] == [
        f"{ops}: ready",
        "  route /kafka: reachable",
        f"route /kafka: partition readers 1, Kafka consumers {consumers.pop()}, "
        "parked fetches 0, stream partitions 1, records produced 3",
    ]


async def test_a_route_whose_brokers_cannot_be_reached_makes_it_exit_1(kafka_broker: KafkaBroker) -> None:
    routes = (RouteConfig("/kafka", kafka_broker.bootstrap), RouteConfig("/dead", DEAD_NODE))
    async with running_proxy(_config(*routes)) as server:
        problems = server.readiness.problems
        assert await settled(lambda: problems["/dead"] is not None and problems["/kafka"] == ""), problems
        ops = f"http://127.0.0.1:{server.ops_port}"
        code, lines, stderr = await _status(ops)
        problem = problems["/dead"]
    assert (code, stderr) == (1, "")
    assert problem
    assert lines[:3] == [
        f"{ops}: NOT READY",
        "  route /kafka: reachable",
        f"  route /dead: {problem}",
    ]
    assert lines[3].startswith("sessions open 0, commands 0, error responses 0, ")
    assert [line.split(":")[0] for line in lines[4:]] == ["route /kafka", "route /dead"]


async def test_the_proxys_own_port_answers_health_but_has_no_metrics(kafka_broker: KafkaBroker) -> None:
    async with running_proxy(_config(RouteConfig("/kafka", kafka_broker.bootstrap))) as server:
        assert await settled(lambda: server.readiness.ready)
        own = "http://" + server.url.removeprefix("ws://")
        code, lines, stderr = await _status(own)
    assert (code, stderr) == (0, "")
    assert lines == [
        f"{own}: ready",
        "  route /kafka: reachable",
        f"no metrics: {own}/metrics answered HTTP 404 (the proxy's own port has none; use its ops port)",
    ]


async def test_nothing_listening_makes_it_exit_2_with_one_line() -> None:
    port = free_port()
    code, lines, stderr = await _status(f"http://127.0.0.1:{port}")
    assert (code, lines) == (2, [])
    assert stderr == (
        f"kafka-ws-trio: error: cannot reach http://127.0.0.1:{port}/healthz (Connection refused); "
        "is the proxy running with that ops port?\n"
    )


async def test_a_port_that_never_answers_makes_it_exit_2_within_the_timeout() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")  # connections wait in the backlog, unanswered
    try:
        port = listeners[0].socket.getsockname()[1]
        began = time.monotonic()
        code, lines, stderr = await _status(f"http://127.0.0.1:{port}", "--timeout", "0.5")
        took = time.monotonic() - began
    finally:
        for listener in listeners:
            await listener.aclose()
    assert (code, lines) == (2, [])
    assert stderr.startswith(f"kafka-ws-trio: error: cannot reach http://127.0.0.1:{port}/healthz (")
    assert stderr.count("\n") == 1
    assert took < RUN_TIMEOUT / 2


async def test_a_url_that_is_not_http_is_a_usage_error() -> None:
    code, lines, stderr = await _status("ws://127.0.0.1:9080/kafka")
    assert (code, lines) == (2, [])
    assert "status takes the ops port's http:// URL" in stderr
