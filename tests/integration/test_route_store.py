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
from kafka_ws_trio._config._access import ApiKeyConfig
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


def store_config(broker: KafkaBroker, store: RouteStoreConfig, **server: Any) -> ProxyConfig:
    options: dict[str, Any] = {
        "port": 0,
        "ops_port": 0,
        "admin_keys": (ApiKeyConfig(id="fleet", principal="operator", hash=ADMIN_HASH),),
        "route_store": store,
        **server,
    }
    return ProxyConfig(ServerConfig(**options), (RouteConfig("/kafka", broker.bootstrap),))


def topic_layout(broker: KafkaBroker, topic: str) -> tuple[int, str]:
    """The topic's replica count and cleanup.policy, as the broker describes them."""
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    client = KafkaAdminClient(**broker.client_config())
    try:
        (described,) = client.describe_topics([topic])
        configs = client.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        client.close()
    return len(described["partitions"][0]["replica_nodes"]), configs["topic"][topic]["cleanup.policy"]["value"]


@pytest.mark.timeout(120)
async def test_a_proxy_that_starts_serves_what_the_store_holds_before_its_first_client(
    kafka_broker: KafkaBroker,
) -> None:
    """A restart: the store keeps a put, a patch and a delete, and the next proxy serves them from the start."""
    topic = unique_topic_name("kwt-routes")
    store = RouteStoreConfig(topic=topic, nodes=(kafka_broker.bootstrap,), replication_factor=1)
    try:
        async with running_proxy(store_config(kafka_broker, store)) as first:
            ops = f"http://127.0.0.1:{first.ops_port}"
            for uri in ("kept", "gone"):
                body = {"nodes": [kafka_broker.bootstrap]}
                assert (await trio.to_thread.run_sync(admin, ops, "PUT", f"/admin/routes/{uri}", body))[0] == 201
            patch = {"fetch_max_wait": 0.25}
            assert (await trio.to_thread.run_sync(admin, ops, "PATCH", "/admin/routes/kept", patch))[0] == 200
            assert (await trio.to_thread.run_sync(admin, ops, "DELETE", "/admin/routes/gone"))[0] == 200
        assert await trio.to_thread.run_sync(topic_layout, kafka_broker, topic) == (1, "compact")

        async with running_proxy(store_config(kafka_broker, store)) as second:
            # No wait: the store is read to its end before the listener opens.
            assert await serves(f"{second.url}/kept")
            assert not await serves(f"{second.url}/gone")
            assert await serves(f"{second.url}/kafka")  # the file's route
            status, kept = await trio.to_thread.run_sync(
                admin, f"http://127.0.0.1:{second.ops_port}", "GET", "/admin/routes/kept"
            )
            assert status == 200 and kept["value"]["fetch_max_wait"] == 0.25, kept
    finally:
        delete_topic(kafka_broker, topic)


async def test_a_store_that_cannot_take_a_change_answers_503_and_changes_nothing(kafka_broker: KafkaBroker) -> None:
    store = RouteStoreConfig(topic="kwt-routes-nowhere", nodes=("127.0.0.1:1",))
    async with running_proxy(store_config(kafka_broker, store, handshake_timeout=1.0)) as server:
        ops = f"http://127.0.0.1:{server.ops_port}"
        body = {"nodes": [kafka_broker.bootstrap]}
        status, answer = await trio.to_thread.run_sync(admin, ops, "PUT", "/admin/routes/new", body)
        assert status == 503, answer
        assert answer["error_msg"].startswith("the route store kwt-routes-nowhere cannot be read or written now")
        patch = {"fetch_max_wait": 0.25}
        status, answer = await trio.to_thread.run_sync(admin, ops, "PATCH", "/admin/routes/kafka", patch)
        assert status == 503, answer
        status, kafka = await trio.to_thread.run_sync(admin, ops, "GET", "/admin/routes/kafka")
        assert status == 200 and kafka["value"]["fetch_max_wait"] != 0.25, kafka
        assert not await serves(f"{server.url}/new")
        assert await serves(f"{server.url}/kafka")


async def test_a_replication_factor_the_cluster_cannot_give_is_named_in_the_log(
    kafka_broker: KafkaBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """One broker cannot keep three copies: the store stays unread, says why, and the file's routes serve."""
    topic = unique_topic_name("kwt-routes")
    store = RouteStoreConfig(topic=topic, nodes=(kafka_broker.bootstrap,), replication_factor=3)
    async with running_proxy(store_config(kafka_broker, store, handshake_timeout=1.0)) as server:
        assert await serves(f"{server.url}/kafka")

        def warned() -> bool:
            return any(
                record.getMessage().startswith(f"route store {topic} on {kafka_broker.bootstrap} cannot be read")
                and "InvalidReplicationFactor" in record.getMessage()
                for record in caplog.records
            )

        assert await settled(warned, 30), [r.getMessage() for r in caplog.records if "route store" in r.getMessage()]
