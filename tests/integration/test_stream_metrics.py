"""Streams and groups in /metrics (issue 14): credit-starved streams, lag per route and topic, rebalances.

A stream given less credit than its topic holds is starved, and lags by the
records it has not been sent; once granted the rest, it is neither. A group
stream joining and another leaving make the proxy's members rebalance. The
figures come from ``statistics()`` and read the same on the ops port's /metrics,
labelled by route, principal and topic, never by session or stream.
"""

from __future__ import annotations

import re
import shutil
import urllib.request
from collections.abc import Iterator
from typing import Final

import pytest
import trio
from _streams import JOIN_WAIT, join, owned, stream_client
from _support import running_proxy, settled

from kafka_ws_trio import ProxyConfig, ServerConfig
from kafka_ws_trio._config import RouteConfig
from kafka_ws_trio._kafka._upstream import TopicStreamStatistics, UpstreamStatistics
from kafka_ws_trio._proto import (
    Grant,
    StartEdge,
)
from kafka_ws_trio._server import ProxyServer
from kafka_ws_trio.testing import KafkaBroker, create_topic, delete_topic, produce, unique_topic_name

pytestmark = pytest.mark.timeout(90)

ROUTE: Final = "/kafka"
RECORDS: Final = 20
FIRST_GRANT: Final = 5
#: What one test may take, end to end, on a busy machine (group joins wait for the group's other members).
TEST_LIMIT: Final = 75.0
#: How long a group subscribe may take to be answered, and a rebalance to settle.


@pytest.fixture
def topics(kafka_broker: KafkaBroker) -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for name in made:
        delete_topic(kafka_broker, name)


def config(broker: KafkaBroker) -> ProxyConfig:
    return ProxyConfig(ServerConfig(port=0, ops_port=0), (RouteConfig(ROUTE, broker.bootstrap),))


def upstream(server: ProxyServer) -> UpstreamStatistics:
    return server.statistics().upstreams[ROUTE]


def scrape(server: ProxyServer) -> str:
    assert server.ops_port is not None
    with urllib.request.urlopen(f"http://127.0.0.1:{server.ops_port}/metrics", timeout=10) as answer:
        text: str = answer.read().decode()
        return text


async def ascrape(server: ProxyServer) -> str:
    return await trio.to_thread.run_sync(scrape, server)


def sample(exposition: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus' text format."""
    wanted = name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
    for line in exposition.splitlines():
        metric, _, value = line.rpartition(" ")
        if metric == wanted:
            return float(value)
    raise AssertionError(f"no sample {wanted} in:\n{exposition}")


def topic_metrics(exposition: str, topic: str) -> dict[str, float]:
    """The per-topic stream families of one topic on the route, by name."""
    names = ("streams", "streams_starved", "stream_taps", "stream_taps_starved", "stream_lag", "stream_lag_max")
    return {
        name: sample(exposition, f"kafka_ws_trio_upstream_topic_{name}", route=ROUTE, principal="", topic=topic)
        for name in names
    }


def topic_label_names(exposition: str) -> set[tuple[str, ...]]:
    """The label names of every sample of the per-topic families."""
    return {
        tuple(sorted(re.findall(r'(\w+)="', line)))
        for line in exposition.splitlines()
        if line.startswith("kafka_ws_trio_upstream_topic_")
    }


def route_metrics(exposition: str) -> dict[str, float]:
    names = ("streams", "streams_starved", "stream_taps_starved", "stream_lag")
    return {name: sample(exposition, f"kafka_ws_trio_upstream_{name}", route=ROUTE, principal="") for name in names}


async def promtool_accepts(exposition: str) -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is missing (Debian: apt-get install prometheus; scripts/test installs it)"
    checked = await trio.run_process(
        [promtool, "check", "metrics"], stdin=exposition.encode(), capture_stdout=True, capture_stderr=True, check=False
    )
    assert checked.returncode == 0, (checked.stdout + checked.stderr).decode()


async def test_a_stream_with_less_credit_than_records_is_starved_and_lags_until_granted_the_rest(
    kafka_broker: KafkaBroker, topics: list[str]
) -> None:
    topic = create_topic(kafka_broker)
    topics.append(topic)
    produce(kafka_broker, topic, [f"r{n}".encode() for n in range(RECORDS)])
    with trio.fail_after(TEST_LIMIT):
        async with running_proxy(config(kafka_broker)) as server, stream_client(server.url + ROUTE) as client:
            await client.subscribe(1, topic, start=StartEdge.EARLIEST, credit=Grant(records=FIRST_GRANT))
            # A second stream at the log end without credit: nothing waits for it, so it is not starved.
            await client.subscribe(2, topic, start=StartEdge.LATEST, credit=Grant(records=0))
            await client.until(lambda: client.count(1) == FIRST_GRANT, f"the first {FIRST_GRANT} records")
            behind = RECORDS - FIRST_GRANT
            starved = TopicStreamStatistics(
                streams=2, streams_starved=1, taps=2, taps_starved=1, lag=behind, lag_max=behind
            )
            assert await settled(lambda: upstream(server).topics.get(topic) == starved), upstream(server).topics
            exposition = await ascrape(server)
            assert topic_metrics(exposition, topic) == {
                "streams": 2,
                "streams_starved": 1,
                "stream_taps": 2,
                "stream_taps_starved": 1,
                "stream_lag": behind,
                "stream_lag_max": behind,
            }
            assert route_metrics(exposition) == {
                "streams": 2,
                "streams_starved": 1,
                "stream_taps_starved": 1,
                "stream_lag": behind,
            }
            assert topic_label_names(exposition) == {("principal", "route", "topic")}  # never a session or stream
            await promtool_accepts(exposition)

            await client.credit(1, records=behind)
            await client.until(lambda: client.count(1) == RECORDS, "the rest of the records")
            fed = TopicStreamStatistics(streams=2, taps=2)
            assert await settled(lambda: upstream(server).topics.get(topic) == fed), upstream(server).topics
            exposition = await ascrape(server)
            assert topic_metrics(exposition, topic) == {
                "streams": 2,
                "streams_starved": 0,
                "stream_taps": 2,
                "stream_taps_starved": 0,
                "stream_lag": 0,
                "stream_lag_max": 0,
            }
            assert route_metrics(exposition) == {
                "streams": 2,
                "streams_starved": 0,
                "stream_taps_starved": 0,
                "stream_lag": 0,
            }

            # Unsubscribed, the streams leave the figures (and an unread topic leaves the families).
            await client.unsubscribe(1)
            await client.unsubscribe(2)
            assert await settled(lambda: topic not in upstream(server).topics), upstream(server).topics
            assert f'topic="{topic}"' not in await ascrape(server)


async def test_group_members_joining_and_leaving_count_as_rebalances_of_the_route(
    kafka_broker: KafkaBroker, topics: list[str]
) -> None:
    topic = create_topic(kafka_broker, partitions=2)
    topics.append(topic)
    group = unique_topic_name("group")

    def rebalances() -> int:
        return upstream(server).group_rebalances

    with trio.fail_after(TEST_LIMIT):
        async with running_proxy(config(kafka_broker)) as server:
            assert rebalances() == 0
            url = server.url + ROUTE
            async with stream_client(url) as first:
                a = await join(first, 1, topic, group, credit=Grant(records=0))
                # The group formed around the first member: its one assignment so far.
                assert await settled(lambda: rebalances() >= 1), rebalances()
                alone = rebalances()
                async with stream_client(url) as second:
                    b = await join(second, 2, topic, group, credit=Grant(records=0))
                    await first.until(
                        lambda: len(owned(first, 1, a)) == 1 and owned(first, 1, a) | owned(second, 2, b) == {0, 1},
                        "the two members to split the partitions",
                        JOIN_WAIT,
                    )
                    # Both members took part in the rebalance the second one's joining started.
                    assert await settled(lambda: rebalances() >= alone + 2), (alone, rebalances())
                    together = rebalances()
                # The second has left: the first rebalances again and owns both partitions.
                await first.until(lambda: owned(first, 1, a) == {0, 1}, "the survivor to own both", JOIN_WAIT)
                assert await settled(lambda: rebalances() >= together + 1), (together, rebalances())
                counted = rebalances()
                exposition = await ascrape(server)
                assert (
                    sample(exposition, "kafka_ws_trio_upstream_group_rebalances_total", route=ROUTE, principal="")
                    >= counted
                )
                await promtool_accepts(exposition)
