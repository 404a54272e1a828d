"""A route's bounds and its reports, against a real broker: partition readers, topic names, outages.

Each test here was written for a bug found in review and failed before its fix:
any client could make a route open one Kafka consumer per partition it named;
a 1 MiB topic name was queued and echoed back; and a route whose cluster could
not be reached logged nothing.
"""

from __future__ import annotations

import logging
from typing import Final

import pytest
import trio
from _support import free_port, running_proxy, settled

from kafka_ws_trio import ErrorCode, ProxyConfig, ServerConfig
from kafka_ws_trio.client import PubSubError, open_client
from kafka_ws_trio.testing import KafkaBroker, create_topic, delete_topic

pytestmark = pytest.mark.timeout(90)

#: How long a fetch at the log end is held: long enough to see the readers busy.
HELD: Final = 2.0


def config(bootstrap: str, **route: object) -> ProxyConfig:
    return ProxyConfig.single_route(bootstrap, server=ServerConfig(port=0), **route)  # type: ignore[arg-type]


async def test_a_route_reads_at_most_max_partition_readers_partitions_at_once(kafka_broker: KafkaBroker) -> None:
    topic = create_topic(kafka_broker, partitions=3)
    try:
        proxy_config = config(kafka_broker.bootstrap, max_partition_readers=2, fetch_max_wait=HELD)
        async with running_proxy(proxy_config) as server, open_client(f"{server.url}/kafka") as client:
            stats = lambda: server.statistics().upstreams["/kafka"]  # noqa: E731
            async with trio.open_nursery() as nursery:
                for partition in (0, 1):
                    nursery.start_soon(client.fetch, topic, partition, 0)  # opens the reader, waits HELD
            assert stats().readers_open == 2

            # Both readers busy: a fetch at each log end is parked and their pumps poll.
            async with trio.open_nursery() as nursery:
                for partition in (0, 1):
                    nursery.start_soon(client.fetch, topic, partition, 0)
                assert await settled(lambda: stats().fetches_parked == 2), stats()
                with pytest.raises(PubSubError) as refused:
                    await client.fetch(topic, 2, 0)
            assert refused.value.code == ErrorCode.OVERLOADED
            assert "max_partition_readers" in refused.value.message
            assert "2 partition readers" in refused.value.message
            assert stats().readers_refused == 1

            # Once a reader is idle it makes room for the next partition instead.
            assert await client.fetch(topic, 2, 0) == []
            assert stats().readers_open <= 2
            assert stats().consumers_created - stats().consumers_closed <= 2 + 1  # readers + metadata
    finally:
        delete_topic(kafka_broker, topic)


@pytest.mark.parametrize("size", [250, 100_000, 900_000])
async def test_a_topic_name_kafka_would_refuse_is_answered_at_once_and_never_reaches_kafka(
    kafka_broker: KafkaBroker, size: int
) -> None:
    name = "t" * size
    async with running_proxy(config(kafka_broker.bootstrap)) as server:
        async with open_client(f"{server.url}/kafka", max_message_size=2 << 20) as client:
            for call in (client.fetch(name, 0, 0), client.list_offset(name, 0)):
                with pytest.raises(PubSubError) as refused:
                    await call
                assert refused.value.code == ErrorCode.INVALID_REQUEST
                assert "invalid topic" in refused.value.message
                assert len(refused.value.message) < 300, "the name was echoed back whole"
        upstream = server.statistics().upstreams["/kafka"]
        assert upstream.consumers_created == 0
        assert server.statistics().commands_queued == 0


async def test_an_unreachable_cluster_is_logged_once_per_cause_not_once_per_command(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="kafka_ws_trio")
    port = free_port()
    proxy_config = config(f"127.0.0.1:{port}", request_timeout=1.0)
    async with running_proxy(proxy_config) as server, open_client(f"{server.url}/kafka") as client:
        for _ in range(5):
            with pytest.raises(PubSubError) as failed:
                await client.fetch("orders", 0, 0)
            assert failed.value.code == ErrorCode.BROKER_UNREACHABLE
            await trio.sleep(0.3)  # past the moment a failure is repeated without a new attempt
    warnings = [r for r in caplog.records if r.name == "kafka_ws_trio.kafka" and r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    message = warnings[0].getMessage()
    assert "route /kafka" in message
    assert f"broker unreachable: 127.0.0.1:{port}" in message


async def test_a_wrong_password_is_logged_without_the_password(
    kafka_broker: KafkaBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kafka_ws_trio")
    assert kafka_broker.bootstrap_sasl is not None and kafka_broker.sasl_username is not None
    wrong = "not-the-password-4711"
    text = f"""
[[routes]]
uri = "/kafka"
nodes = ["{kafka_broker.bootstrap_sasl}"]
request_timeout = 2
sasl = {{ mechanism = "SCRAM-SHA-256", username = "{kafka_broker.sasl_username}", password = "{wrong}" }}
[server]
port = 0
"""
    from kafka_ws_trio import parse_config

    async with running_proxy(parse_config(text)) as server, open_client(f"{server.url}/kafka") as client:
        with pytest.raises(PubSubError) as failed:
            await client.fetch("orders", 0, 0)
        assert failed.value.code == ErrorCode.AUTHENTICATION_FAILED
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("kafka_ws_trio")]
    assert any("SASL authentication failed" in line and "route /kafka" in line for line in lines), lines
    assert not any(wrong in line for line in lines)
