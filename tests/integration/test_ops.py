"""What an operator scrapes and probes (issue 14): /healthz, /readyz and /metrics, against a real broker.

The metrics are checked three ways: their values move with what the proxy
does, Debian's ``promtool check metrics`` accepts the exposition, and a real
Prometheus server, started here, scrapes the ops port and answers a query.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import attrs
import pytest
import trio
from _support import free_port, running_proxy, settled, stop_process

from kafka_ws_trio import ErrorCode, ProxyConfig, ServerConfig, serve_proxy
from kafka_ws_trio._config import RouteConfig
from kafka_ws_trio.client import NotWritten, PubSubError, open_client
from kafka_ws_trio.testing import KafkaBroker, create_topic, delete_topic

pytestmark = pytest.mark.timeout(90)

#: A route whose only broker is a port nothing listens on.
DEAD_NODE: Final = "127.0.0.1:1"
CHECK_INTERVAL: Final = 0.2


def get(port: int, path: str) -> tuple[int, str, str]:
    """Status, content type and body of ``GET path`` on 127.0.0.1 (blocking: call it in a thread)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            return answer.status, answer.headers["Content-Type"], answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.headers["Content-Type"], refused.read().decode()


async def aget(port: int, path: str) -> tuple[int, str, str]:
    return await trio.to_thread.run_sync(get, port, path)


def config(broker: KafkaBroker, *routes: RouteConfig, **server: Any) -> ProxyConfig:
    options: dict[str, Any] = {"port": 0, "ops_port": 0, "ready_check_interval": CHECK_INTERVAL, **server}
    return ProxyConfig(ServerConfig(**options), routes or (RouteConfig("/kafka", broker.bootstrap),))


@pytest.fixture
def topic(kafka_broker: KafkaBroker) -> Iterator[str]:
    name = create_topic(kafka_broker)
    yield name
    delete_topic(kafka_broker, name)


def sample(exposition: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus' text format."""
    wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else "")
    for line in exposition.splitlines():
        metric, _, value = line.rpartition(" ")
        if metric == wanted:
            return float(value)
    raise AssertionError(f"no sample {wanted} in:\n{exposition}")


async def test_healthz_answers_on_the_proxy_port_and_the_ops_port(kafka_broker: KafkaBroker) -> None:
    async with running_proxy(config(kafka_broker)) as server:
        assert server.ops_port is not None
        for port in (server.port, server.ops_port):
            assert await aget(port, "/healthz") == (200, "text/plain; charset=utf-8", "ok\n")


async def test_readyz_names_each_route_s_state_and_turns_503_when_shutdown_starts(kafka_broker: KafkaBroker) -> None:
    routes = (RouteConfig("/kafka", kafka_broker.bootstrap), RouteConfig("/dead", DEAD_NODE))
    async with running_proxy(config(kafka_broker, *routes)) as server:
        assert server.ops_port is not None
        assert await settled(lambda: None not in server.readiness.problems.values())
        status, kind, body = await aget(server.port, "/readyz")
        assert (status, kind) == (503, "application/json")
        assert json.loads(body) == {
            "ready": False,
            "shutting_down": False,
            "routes": {"/kafka": "reachable", "/dead": f"broker unreachable: {DEAD_NODE}"},
        }
        status, _, body = await aget(server.port, "/readyz?exclude=kafka")  # only shutdown counts then
        assert (status, json.loads(body)["ready"]) == (200, True)

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_proxy, config(kafka_broker, grace_period=10))
        assert await settled(lambda: server.readiness.ready)
        status, _, body = await aget(server.ops_port, "/readyz")
        assert (status, json.loads(body)["ready"]) == (200, True)
        async with open_client(f"{server.url}/kafka"):
            nursery.cancel_scope.cancel()  # shutdown starts; our open session holds it in its grace period
            with trio.CancelScope(shield=True):
                status, _, body = await aget(server.ops_port, "/readyz")
                assert (status, json.loads(body)["shutting_down"]) == (503, True)


async def test_metrics_move_with_what_the_proxy_does_and_promtool_accepts_them(
    kafka_broker: KafkaBroker, topic: str
) -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is missing (Debian: apt-get install prometheus; scripts/test installs it)"
    async with running_proxy(config(kafka_broker)) as server:
        assert server.ops_port is not None
        status, kind, before = await aget(server.ops_port, "/metrics")
        assert (status, kind) == (200, "text/plain; version=0.0.4; charset=utf-8")
        async with open_client(f"{server.url}/kafka") as client:
            await client.ping()
            await client.ping()
            _, _, during = await aget(server.ops_port, "/metrics")
        assert sample(during, "kafka_ws_trio_commands_total") == sample(before, "kafka_ws_trio_commands_total") + 2
        assert sample(during, "kafka_ws_trio_sessions_open") == 1
        assert sample(during, "kafka_ws_trio_sessions_opened_total") == 1
        assert sample(during, "kafka_ws_trio_upstream_readers_open", route="/kafka", principal="") == 0
        assert sample(during, "kafka_ws_trio_commands_by_kind_total", kind="ping") == 2
        assert sample(during, "kafka_ws_trio_frames_in_total") == sample(before, "kafka_ws_trio_frames_in_total") + 2
        assert sample(during, "kafka_ws_trio_frames_out_total") >= 2  # the two pongs (and nothing else was asked)
        # prometheus-client's process collector: the proxy's memory, CPU and files.
        assert sample(during, "process_resident_memory_bytes") > 10 * 2**20
        assert sample(during, "process_open_fds") > 0
        async with open_client(f"{server.url}/kafka") as client:
            await client.list_offset(topic, 0, -1)
        assert await settled(lambda: server.statistics().sessions_closed.get(1000) == 2)
        _, _, after = await aget(server.ops_port, "/metrics")
        assert sample(after, "kafka_ws_trio_sessions_closed_total", code="1000") == 2
        assert sample(after, "kafka_ws_trio_command_seconds_count", kind="list_offset") == 1
        assert sample(after, "kafka_ws_trio_command_seconds_bucket", kind="list_offset", le="+Inf") == 1
        checked = await trio.run_process(
            [promtool, "check", "metrics"], stdin=after.encode(), capture_stdout=True, capture_stderr=True, check=False
        )
        assert checked.returncode == 0, (checked.stdout + checked.stderr).decode()
        # /metrics is for the ops port only: the proxy's port may face the internet.
        assert (await aget(server.port, "/metrics"))[0] == 404


async def test_commands_are_counted_by_kind_and_result_code(kafka_broker: KafkaBroker, topic: str) -> None:
    async with running_proxy(config(kafka_broker)) as server:
        assert server.ops_port is not None
        async with open_client(f"{server.url}/kafka") as client:
            await client.ping()
            await client.list_offset(topic, 0, -1)
            async with client.transaction():  # begin, then commit: two txn commands answered OK
                await client.produce(topic, [b"counted"])
            with pytest.raises(PubSubError) as missing:
                await client.fetch(topic + "-missing", 0, 0)
            assert missing.value.code == 10
            (failed,) = await client.produce(topic + "-missing", [b"nowhere"])  # answered, with no record written
            assert isinstance(failed, NotWritten) and failed.code != 0, failed
            await client.websocket.send_message(b"\xff\xff not a PubSubReq")  # answered with sequence 0
            assert await settled(lambda: server.statistics().command_results.get("malformed") == {2: 1})
            json.dumps(attrs.asdict(server.statistics()))  # an embedding app may log them as JSON
            _, _, exposition = await aget(server.ops_port, "/metrics")

    def results(**labels: str) -> float:
        return sample(exposition, "kafka_ws_trio_command_results_total", **labels)

    assert results(kind="ping", code="0", result="OK") == 1
    assert results(kind="list_offset", code="0", result="OK") == 1
    assert results(kind="produce", code="0", result="OK") == 1
    assert results(kind="produce", code=str(failed.code), result=ErrorCode(failed.code).name) == 1
    assert results(kind="txn", code="0", result="OK") == 2
    assert results(kind="fetch", code="10", result="TOPIC_NOT_FOUND") == 1
    assert results(kind="malformed", code="2", result="WRONG_COMMAND") == 1


async def test_a_real_prometheus_server_scrapes_the_ops_port(kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    binary = shutil.which("prometheus")
    assert binary is not None, "prometheus is missing (Debian: apt-get install prometheus; scripts/test installs it)"
    async with running_proxy(config(kafka_broker)) as server:
        assert server.ops_port is not None
        async with open_client(f"{server.url}/kafka") as client:
            await client.ping()
        web = free_port()
        (tmp_path / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n  - job_name: kafka-ws-trio\n"
            f"    static_configs:\n      - targets: ['127.0.0.1:{server.ops_port}']\n"
        )
        log = (tmp_path / "prometheus.log").open("wb")
        process = await trio.lowlevel.open_process(
            [
                binary,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{web}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            query = urllib.parse.urlencode({"query": 'kafka_ws_trio_sessions_opened_total{job="kafka-ws-trio"}'})
            with trio.fail_after(60):
                while True:
                    try:
                        status, _, body = await aget(web, f"/api/v1/query?{query}")
                    except OSError:  # not listening yet
                        status, body = 0, ""
                    if status != 200:  # starting: no answer yet, or a plain-text 503 "Service Unavailable"
                        body = "{}"
                    result = json.loads(body).get("data", {}).get("result", [])
                    if result:
                        break
                    await trio.sleep(0.5)
            assert float(result[0]["value"][1]) == 1.0
        finally:
            await stop_process(process, 10)
            log.close()
