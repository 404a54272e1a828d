"""The admin API on the ops port (issue 14): every verb, validation errors, auth, live changes with sessions attached.

Against a real broker. The API is shaped like APISIX's admin API: ``{"total", "list"}``
for a collection, ``{"key", "value"}`` for one route, ``{"error_msg"}`` for a mistake.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Final

import attrs
import pytest
import trio
from _support import running_proxy, settled, stoppable_proxy
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from kafka_ws_trio import ProxyConfig, ProxyServer, ServerConfig
from kafka_ws_trio._auth import new_key
from kafka_ws_trio._config import RouteConfig, SaslConfig
from kafka_ws_trio._config._access import ApiKeyConfig
from kafka_ws_trio._proto import encode_fetch_request, encode_ping_request
from kafka_ws_trio.client import open_client
from kafka_ws_trio.testing import KafkaBroker

pytestmark = pytest.mark.timeout(90)

ADMIN_KEY, ADMIN_HASH = new_key("ops")
SASL_PASSWORD: Final = "hunter2-never-shown"


def config(broker: KafkaBroker, **server: Any) -> ProxyConfig:
    options: dict[str, Any] = {
        "port": 0,
        "ops_port": 0,
        "admin_keys": (ApiKeyConfig(id="ops", principal="operator", hash=ADMIN_HASH),),
        **server,
    }
    return ProxyConfig(ServerConfig(**options), (RouteConfig("/kafka", broker.bootstrap),))


def call(port: int, method: str, path: str, body: Any = None, key: str | None = ADMIN_KEY) -> tuple[int, Any]:
    """Status and JSON answer of one admin request (blocking: call it in a thread)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    if key is not None:
        request.add_header("X-API-KEY", key)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=20) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        text = refused.read()
        try:
            return refused.code, json.loads(text)
        except ValueError:
            return refused.code, text.decode()


async def acall(port: int | None, method: str, path: str, body: Any = None, key: str | None = ADMIN_KEY) -> Any:
    assert port is not None
    return await trio.to_thread.run_sync(lambda: call(port, method, path, body, key))


async def test_without_a_valid_admin_key_every_request_is_401_and_without_admin_keys_there_is_no_api(
    kafka_broker: KafkaBroker,
) -> None:
    async with running_proxy(config(kafka_broker)) as server:
        status, answer = await acall(server.ops_port, "GET", "/admin/routes", key=None)
        assert (status, answer["error_msg"]) == (401, "an admin key is required (X-API-KEY: <key>)")
        status, answer = await acall(server.ops_port, "GET", "/admin/routes", key="kwt_ops_wrong")
        assert (status, answer["error_msg"]) == (401, "invalid admin key")
        status, _ = await acall(server.ops_port, "DELETE", "/admin/routes/kafka", key="kwt_ops_wrong")
        assert status == 401
        assert [r.uri for r in server.config.routes] == ["/kafka"]  # nothing changed
    async with running_proxy(config(kafka_broker, admin_keys=())) as server:
        status, answer = await acall(server.ops_port, "GET", "/admin/routes")
        assert (status, answer) == (404, "no admin API: [server] admin_keys is empty\n")


async def test_routes_are_listed_read_created_patched_and_deleted_live(kafka_broker: KafkaBroker) -> None:
    async with running_proxy(config(kafka_broker)) as server:
        ops = server.ops_port
        status, listed = await acall(ops, "GET", "/admin/routes")
        assert status == 200 and listed["total"] == 1
        assert listed["list"][0]["key"] == "/routes/kafka"
        assert listed["list"][0]["value"]["nodes"] == [kafka_broker.bootstrap]

        status, created = await acall(ops, "PUT", "/admin/routes/b%2Fc", {"nodes": [kafka_broker.bootstrap]})
        assert (status, created["key"], created["value"]["uri"]) == (201, "/routes/b%2Fc", "/b/c")
        async with open_client(f"{server.url}/b/c") as on_bc:
            assert await on_bc.ping(b"x") == b"x"

        async with open_websocket_url(f"{server.url}/b/c") as ws:
            status, patched = await acall(ops, "PATCH", "/admin/routes/b%2Fc", {"produce": True, "max_streams": 3})
            assert (status, patched["value"]["produce"], patched["value"]["max_streams"]) == (200, True, 3)
            with trio.fail_after(15), pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
            assert (closed.value.reason.code, closed.value.reason.reason) == (1001, "route changed")
        assert {r.uri: r.max_streams for r in server.config.routes}["/b/c"] == 3

        status, gone = await acall(ops, "DELETE", "/admin/routes/b%2Fc")
        assert (status, gone) == (200, {"deleted": "1", "key": "/routes/b%2Fc"})
        with pytest.raises(ConnectionRejected) as refused:
            async with open_websocket_url(f"{server.url}/b/c"):
                pass
        assert refused.value.status_code == 404
        assert (await acall(ops, "GET", "/admin/routes/b%2Fc"))[0] == 404


async def test_mistakes_get_400_naming_the_key_path_and_change_nothing(kafka_broker: KafkaBroker) -> None:
    async with running_proxy(config(kafka_broker)) as server:
        ops = server.ops_port
        status, answer = await acall(ops, "PUT", "/admin/routes/x", {"nodes": ["127.0.0.1:99092"], "produse": True})
        assert status == 400
        keys = [problem["key"] for problem in answer["problems"]]
        assert keys == ["nodes[0]", "produse"], answer
        assert 'did you mean "produce"' in answer["error_msg"]
        status, answer = await acall(ops, "PUT", "/admin/routes/x", {"uri": "/y", "nodes": [kafka_broker.bootstrap]})
        assert status == 400 and "not this route's uri" in answer["error_msg"]
        status, answer = await acall(ops, "PATCH", "/admin/routes/kafka", {"sasl": {"mechanism": "MD5"}})
        assert status == 400 and answer["problems"][0]["key"].startswith("sasl.")
        status, answer = await acall(ops, "DELETE", "/admin/routes/kafka")  # the last route
        assert status == 400 and "no routes" in answer["error_msg"]
        assert (await acall(ops, "PUT", "/admin/routes/kafka", "not an object"))[0] == 400
        assert [r.uri for r in server.config.routes] == ["/kafka"]


async def test_a_route_s_secrets_are_never_shown(kafka_broker: KafkaBroker) -> None:
    async with running_proxy(config(kafka_broker)) as server:
        route = {
            "nodes": [kafka_broker.address("SASL_PLAINTEXT")],
            "sasl": {"username": "kwt-user", "password": SASL_PASSWORD},
        }
        status, created = await acall(server.ops_port, "PUT", "/admin/routes/secured", route)
        assert status == 201
        assert created["value"]["sasl"] == {"mechanism": "PLAIN", "username": "kwt-user"}
        status, listed = await acall(server.ops_port, "GET", "/admin/routes")
        assert SASL_PASSWORD not in json.dumps(listed)
        assert {r.uri: r.sasl for r in server.config.routes}["/secured"] == SaslConfig(
            username="kwt-user", password=SASL_PASSWORD
        )


async def test_sessions_are_listed_and_one_is_closed_by_an_operator(kafka_broker: KafkaBroker) -> None:
    async with (
        running_proxy(config(kafka_broker)) as server,
        open_websocket_url(f"{server.url}/kafka") as ws,
        open_client(f"{server.url}/kafka") as other,
    ):
        await ws.send_message(encode_ping_request(1, b"x"))
        await ws.get_message()
        assert await settled(lambda: server.statistics().sessions_open == 2)
        status, listed = await acall(server.ops_port, "GET", "/admin/sessions")
        assert status == 200 and listed["total"] == 2
        first = min(listed["list"], key=lambda s: s["id"])
        assert (first["route"], first["principal"], first["streams"]) == ("/kafka", "anonymous", 0)
        assert first["peer"].startswith("127.0.0.1:")
        status, _ = await acall(server.ops_port, "DELETE", f"/admin/sessions/{first['id']}")
        assert status == 200
        with trio.fail_after(15), pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
        assert (closed.value.reason.code, closed.value.reason.reason) == (1008, "closed by an operator")
        assert await other.ping(b"y") == b"y"  # the other session goes on
        assert (await acall(server.ops_port, "DELETE", "/admin/sessions/999999"))[0] == 404


async def test_a_change_that_does_not_finish_in_time_gets_503_and_the_proxy_goes_on(
    kafka_broker: KafkaBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The change's own deadline (admin_timeout) answers 503 instead of dropping the connection."""

    async def stuck(self: ProxyServer, uri: str, table: dict[str, Any] | None) -> None:
        await trio.sleep_forever()  # a store write that never returns

    monkeypatch.setattr(ProxyServer, "change_route", stuck)
    async with running_proxy(config(kafka_broker, handshake_timeout=0.5)) as server:
        assert server.admin_timeout == 0.5
        started = trio.current_time()
        status, answer = await acall(server.ops_port, "PUT", "/admin/routes/new", {"nodes": [kafka_broker.bootstrap]})
        assert (status, answer) == (
            503,
            {"error_msg": "the change did not finish within 0.5s; it may still take effect (GET to see)"},
        )
        assert trio.current_time() - started < 5
        assert (await acall(server.ops_port, "GET", "/admin/routes"))[0] == 200
        async with open_client(f"{server.url}/kafka") as client:
            await client.ping()


async def test_a_change_while_the_proxy_shuts_down_gets_503(kafka_broker: KafkaBroker, kafka_topic: str) -> None:
    """During the drain (a fetch parked at the log end holds it) the admin API still answers, and refuses changes."""
    proxy = attrs.evolve(
        config(kafka_broker, grace_period=30.0),
        routes=(RouteConfig("/kafka", kafka_broker.bootstrap, fetch_max_wait=2.0),),
    )
    async with trio.open_nursery() as nursery:
        stop = trio.CancelScope()
        server = await nursery.start(stoppable_proxy, proxy, stop)
        async with open_websocket_url(f"{server.url}/kafka") as ws:
            await ws.send_message(encode_fetch_request(1, kafka_topic, 0, 0))
            assert await settled(lambda: server.statistics().commands_in_flight == 1)
            stop.cancel()
            assert await settled(lambda: not server.readiness.ready)
            status, answer = await acall(server.ops_port, "PUT", "/admin/routes/new", {"nodes": ["127.0.0.1:1"]})
            assert (status, answer) == (503, {"error_msg": "the server is shutting down; nothing was changed"})
            with trio.fail_after(30):
                await ws.get_message()  # the parked fetch's answer, then the close
                with pytest.raises(ConnectionClosed):
                    await ws.get_message()
