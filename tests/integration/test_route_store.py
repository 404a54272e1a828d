"""A fleet of proxies shares its routes through a compacted Kafka topic (issue 14): two real proxy processes.

A route PUT through one proxy's admin API serves on the other; a DELETE through
the other closes the route's sessions on both with 1001.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Final

import pytest
import trio
from _support import running_proxy, serves, settled, stop_process, watch_close

from kafka_ws_trio import ProxyConfig, ServerConfig
from kafka_ws_trio._auth import new_key
from kafka_ws_trio._config import RouteConfig, RouteStoreConfig
from kafka_ws_trio.testing import KafkaBroker, delete_topic, unique_topic_name

COMMAND: Final = str(Path(sys.executable).parent / "kafka-ws-trio")
START_TIMEOUT: Final = 60
ADMIN_KEY, ADMIN_HASH = new_key("fleet")


def proxy_config(broker: KafkaBroker, topic: str) -> str:
    return (
        "[server]\nport = 0\nops_port = 0\ngrace_period = 5\n"
        f'admin_keys = [{{ id = "fleet", principal = "operator", hash = "{ADMIN_HASH}" }}]\n'
        f'route_store = {{ topic = "{topic}", nodes = ["{broker.bootstrap}"] }}\n'
        f'[[routes]]\nuri = "/kafka"\nnodes = ["{broker.bootstrap}"]\n'
    )


async def start(args: list[str], nursery: trio.Nursery) -> tuple[trio.Process, str, str]:
    """A proxy process, its ws:// base URL and its ops port's http:// base URL."""
    run = functools.partial(trio.run_process, args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False)
    process: trio.Process = await nursery.start(run)
    assert process.stdout is not None
    seen = b""
    with trio.fail_after(START_TIMEOUT):
        while b"Ctrl-C to stop" not in seen:
            chunk = await process.stdout.receive_some()
            assert chunk, f"the proxy exited before listening: {seen!r}"
            seen += chunk
    line = seen.decode()
    ws = re.search(r"listening on (ws://\S+)", line)
    ops = re.search(r"metrics on (http://[^/\s]+)/metrics", line)
    assert ws is not None and ops is not None, line
    return process, ws.group(1), ops.group(1)


def admin(base: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method, headers={"X-API-KEY": ADMIN_KEY})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


@pytest.mark.timeout(150)
async def test_a_route_put_on_one_proxy_serves_on_the_other_and_a_delete_closes_it_on_both(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    topic = unique_topic_name("kwt-routes")
    config = tmp_path / "proxy.toml"
    config.write_text(proxy_config(kafka_broker, topic))
    try:
        async with trio.open_nursery() as nursery:
            a, a_ws, a_ops = await start([COMMAND, "serve", "--config", str(config)], nursery)
            b, b_ws, b_ops = await start([COMMAND, "serve", "--config", str(config)], nursery)
            try:
                status, created = await trio.to_thread.run_sync(
                    admin, a_ops, "PUT", "/admin/routes/live", {"nodes": [kafka_broker.bootstrap]}
                )
                assert status == 201, created
                put_at = time.monotonic()
                assert await serves(a_ws + "/live")  # the proxy that took it serves it when it answers
                with trio.fail_after(30):
                    # Polling on purpose: the other proxy tells nobody when it has read the store.
                    while not await serves(b_ws + "/live"):  # noqa: ASYNC110
                        await trio.sleep(0.05)
                took = time.monotonic() - put_at
                print(f"the route served on the other proxy {took:.2f}s after the PUT was answered")

                outcome: list[tuple[int, str]] = []
                async with trio.open_nursery() as watchers:
                    await watchers.start(watch_close, a_ws + "/live", outcome)
                    await watchers.start(watch_close, b_ws + "/live", outcome)
                    status, _ = await trio.to_thread.run_sync(admin, b_ops, "DELETE", "/admin/routes/live")
                    assert status == 200
                assert outcome == [(1001, "route deleted"), (1001, "route deleted")]
                assert not await serves(a_ws + "/live") and not await serves(b_ws + "/live")
                assert await serves(a_ws + "/kafka") and await serves(b_ws + "/kafka")  # the file's route stays
            finally:
                await stop_process(a, 15)
                await stop_process(b, 15)
    finally:
        delete_topic(kafka_broker, topic)


async def test_a_store_that_cannot_be_read_leaves_the_file_s_routes_served_and_says_so(
    kafka_broker: KafkaBroker, caplog: pytest.LogCaptureFixture
) -> None:
    store = RouteStoreConfig(topic="kwt-routes-nowhere", nodes=("127.0.0.1:1",))
    server_config = ServerConfig(port=0, handshake_timeout=1.0, route_store=store)
    config = ProxyConfig(server_config, (RouteConfig("/kafka", kafka_broker.bootstrap),))
    async with running_proxy(config) as server:
        assert await serves(f"{server.url}/kafka")
        said = [record.getMessage() for record in caplog.records]
        assert "serving the file's routes until the route store can be read" in said

        def warned() -> bool:
            return any(
                record.getMessage().startswith("route store kwt-routes-nowhere on 127.0.0.1:1 cannot be read")
                for record in caplog.records
            )

        assert await settled(warned, 30)
