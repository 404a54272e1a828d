"""`kafka-ws-trio routes list|get|put|delete` against a running proxy's admin API (issue 14), as a user runs it."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Final

import pytest
import trio
from _support import running_proxy

from kafka_ws_trio import ProxyConfig, ServerConfig
from kafka_ws_trio._auth import new_key
from kafka_ws_trio._config import RouteConfig
from kafka_ws_trio._config._access import ApiKeyConfig
from kafka_ws_trio.client import open_client
from kafka_ws_trio.testing import KafkaBroker

pytestmark = pytest.mark.timeout(90)

COMMAND: Final = str(Path(sys.executable).parent / "kafka-ws-trio")
ADMIN_KEY, ADMIN_HASH = new_key("ops")


async def cli(*args: str, key: str | None = ADMIN_KEY) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of one `kafka-ws-trio routes ...` (the key in the environment)."""
    env = {name: value for name, value in os.environ.items() if name != "KAFKA_WS_TRIO_ADMIN_KEY"}
    if key is not None:
        env["KAFKA_WS_TRIO_ADMIN_KEY"] = key
    with trio.fail_after(60):
        done = await trio.run_process(
            [COMMAND, "routes", *args], capture_stdout=True, capture_stderr=True, check=False, env=env
        )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def config(broker: KafkaBroker) -> ProxyConfig:
    server: dict[str, Any] = {
        "port": 0,
        "ops_port": 0,
        "admin_keys": (ApiKeyConfig(id="ops", principal="operator", hash=ADMIN_HASH),),
    }
    return ProxyConfig(ServerConfig(**server), (RouteConfig("/kafka", broker.bootstrap),))


async def test_routes_list_put_get_delete_change_the_running_proxy(kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    async with running_proxy(config(kafka_broker)) as server:
        ops = f"http://127.0.0.1:{server.ops_port}"
        assert await cli("list", ops) == (0, f"/kafka\t{kafka_broker.bootstrap}\n", "")

        route = tmp_path / "live.toml"
        route.write_text(f'nodes = ["{kafka_broker.bootstrap}"]\nproduce = true\nmax_streams = 4\n')
        status, out, err = await cli("put", ops, "/live", str(route))
        assert (status, err) == (0, "")
        assert json.loads(out)["max_streams"] == 4
        async with open_client(f"{server.url}/live") as client:
            assert await client.ping(b"x") == b"x"
        status, out, _ = await cli("get", ops, "/live")
        assert status == 0 and json.loads(out)["produce"] is True

        assert await cli("delete", ops, "/live") == (0, "deleted /live\n", "")
        assert (await cli("list", ops))[1] == f"/kafka\t{kafka_broker.bootstrap}\n"


async def test_routes_says_why_when_the_proxy_or_the_user_got_something_wrong(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    async with running_proxy(config(kafka_broker)) as server:
        ops = f"http://127.0.0.1:{server.ops_port}"
        assert await cli("list", ops, key="kwt_ops_wrong") == (1, "", "kafka-ws-trio: error: invalid admin key\n")
        status, _, err = await cli("list", ops, key=None)
        assert status == 2 and "an admin key is needed" in err
        bad = tmp_path / "bad.toml"
        bad.write_text('nodes = ["127.0.0.1:99092"]\n')
        status, _, err = await cli("put", ops, "/x", str(bad))
        assert status == 1 and "nodes[0]" in err and "out of range" in err
        status, _, err = await cli("get", ops, "/nowhere")
        assert (status, err) == (1, "kafka-ws-trio: error: no route /nowhere\n")
        status, _, err = await cli("get", ops, "kafka")
        assert status == 2 and "starts with '/'" in err
    status, _, err = await cli("list", ops)  # the proxy is gone
    assert status == 2 and "cannot reach" in err
