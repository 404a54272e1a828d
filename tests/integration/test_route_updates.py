"""Routes change while the proxy runs (issue 14): ``ProxyServer.update_routes``, against a real broker.

Unchanged routes keep their sessions untouched; a deleted route's sessions are
closed with 1001 and its path answers 404; a changed route's sessions are
closed with 1001 and new ones get the new settings.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import trio
from _support import running_proxy, settled, watch_close
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from kafka_ws_trio import ErrorCode, ProxyConfig, ServerConfig
from kafka_ws_trio._config import ConfigError, RouteConfig
from kafka_ws_trio._proto import FetchAnswer, decode_response, encode_fetch_request, encode_ping_request
from kafka_ws_trio.client import PubSubError, open_client
from kafka_ws_trio.testing import KafkaBroker, create_topic, delete_topic, produce

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def topic(kafka_broker: KafkaBroker) -> Iterator[str]:
    name = create_topic(kafka_broker)
    produce(kafka_broker, name, [b"one", b"two"])
    yield name
    delete_topic(kafka_broker, name)


def route(broker: KafkaBroker, uri: str, **options: Any) -> RouteConfig:
    return RouteConfig(uri, broker.bootstrap, **options)


async def test_a_new_route_serves_at_once_and_the_others_sessions_are_untouched(
    kafka_broker: KafkaBroker, topic: str
) -> None:
    config = ProxyConfig(ServerConfig(port=0), (route(kafka_broker, "/a"),))
    async with running_proxy(config) as server, open_client(f"{server.url}/a") as on_a:
        assert await on_a.list_offset(topic, 0, -1) == 2
        changes = await server.update_routes([route(kafka_broker, "/a"), route(kafka_broker, "/b")])
        assert (changes.added, changes.changed, changes.deleted) == (("/b",), (), ())
        async with open_client(f"{server.url}/b") as on_b:
            assert await on_b.list_offset(topic, 0, -1) == 2
        assert await on_a.list_offset(topic, 0, -1) == 2  # the same session, never disturbed
        assert server.statistics().sessions_closed == {1000: 1}  # only /b's, closed by us


async def test_a_deleted_route_closes_its_sessions_with_1001_and_its_path_answers_404(
    kafka_broker: KafkaBroker,
) -> None:
    config = ProxyConfig(ServerConfig(port=0), (route(kafka_broker, "/a"), route(kafka_broker, "/b")))
    async with running_proxy(config) as server, trio.open_nursery() as nursery:
        outcome: list[tuple[int, str]] = []
        await nursery.start(watch_close, f"{server.url}/b", outcome)
        changes = await server.update_routes([route(kafka_broker, "/a")])
        assert changes.deleted == ("/b",)
        assert await settled(lambda: bool(outcome), 30)
        assert outcome == [(1001, "route deleted")]
        with pytest.raises(ConnectionRejected) as refused:
            async with open_client(f"{server.url}/b"):
                pass
        assert refused.value.status_code == 404
        assert "/b" not in server.statistics().upstreams  # its Kafka side is stopped once its sessions are gone


async def test_a_changed_route_closes_its_sessions_with_1001_and_new_ones_get_the_new_settings(
    kafka_broker: KafkaBroker, topic: str
) -> None:
    config = ProxyConfig(ServerConfig(port=0), (route(kafka_broker, "/a", produce=True), route(kafka_broker, "/b")))
    async with running_proxy(config) as server, trio.open_nursery() as nursery:
        outcome: list[tuple[int, str]] = []
        await nursery.start(watch_close, f"{server.url}/a", outcome)
        async with open_client(f"{server.url}/b") as on_b:
            changes = await server.update_routes([route(kafka_broker, "/a", produce=False), route(kafka_broker, "/b")])
            assert (changes.added, changes.changed, changes.deleted) == ((), ("/a",), ())
            assert await settled(lambda: bool(outcome), 30)
            assert outcome == [(1001, "route changed")]
            async with open_client(f"{server.url}/a") as on_a:
                with pytest.raises(PubSubError) as unknown:
                    await on_a.produce(topic, [b"three"])  # the new /a does not produce
                assert unknown.value.code == ErrorCode.UNKNOWN_COMMAND
            assert await on_b.list_offset(topic, 0, -1) == 2  # /b did not change: its session goes on


async def test_an_invalid_set_of_routes_changes_nothing(kafka_broker: KafkaBroker) -> None:
    config = ProxyConfig(ServerConfig(port=0), (route(kafka_broker, "/a"),))
    async with running_proxy(config) as server, open_client(f"{server.url}/a") as on_a:
        with pytest.raises(ConfigError, match="already the uri"):
            await server.update_routes([route(kafka_broker, "/x"), route(kafka_broker, "/x")])
        with pytest.raises(ConfigError):
            await server.update_routes([])
        assert await on_a.ping() == b""
        assert [r.uri for r in server.config.routes] == ["/a"]


async def test_a_changed_route_answers_the_commands_in_hand_before_it_closes_with_1001(
    kafka_broker: KafkaBroker, topic: str
) -> None:
    """A fetch parked at the log end (it waits fetch_max_wait for records) still gets its answer, then the 1001."""
    slow = route(kafka_broker, "/a", fetch_max_wait=2.0)
    async with (
        running_proxy(ProxyConfig(ServerConfig(port=0), (slow,))) as server,
        open_websocket_url(f"{server.url}/a") as ws,
    ):
        await ws.send_message(encode_ping_request(1, b"x"))
        await ws.get_message()
        await ws.send_message(encode_fetch_request(2, topic, 0, 2))  # at the log end: parked
        assert await settled(lambda: server.statistics().commands_in_flight == 1)
        await server.update_routes([route(kafka_broker, "/a", fetch_max_wait=1.0)])
        with trio.fail_after(30):
            answer = decode_response(await ws.get_message())
        assert isinstance(answer, FetchAnswer) and answer.sequence == 2 and list(answer.records) == []
        with trio.fail_after(30), pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
        assert (closed.value.reason.code, closed.value.reason.reason) == (1001, "route changed")
