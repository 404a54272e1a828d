"""PROTOCOL.md section 6, row 11, and the rules of schema/README.md ("Consumer groups"):
group streams against a real broker and a real proxy, spoken to in raw PubSub frames.

Row 12 (the same group across two proxy processes) is in tests/reliability/test_group_fleet.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Final

import pytest
import trio
from _streams import JOIN_WAIT, QUIET, StreamClient, assert_taken_over_at_the_commit, join, owned, stream_client
from _support import running_proxy

from kafka_ws_trio._config import ProxyConfig, ServerConfig
from kafka_ws_trio._proto import (
    AtOffsets,
    ErrorAnswer,
    ErrorCode,
    Grant,
    GroupOffsetsAnswer,
    Isolation,
    OkAnswer,
    OutRecord,
    ProduceAnswer,
    StartEdge,
    StreamPartitions,
    StreamRecords,
    SubscribeAnswer,
    TxnAction,
    encode_commit_request,
    encode_group_offsets_request,
    encode_produce_request,
    encode_subscribe_request,
    encode_txn_request,
)
from kafka_ws_trio._server import ProxyServer
from kafka_ws_trio.testing import KafkaBroker, create_topic, delete_topic, produce, unique_topic_name

pytestmark = pytest.mark.timeout(90)

ROUTE: Final = "/kafka"
#: What one test may take, end to end, on a busy machine.
TEST_LIMIT: Final = 75.0
#: Row 11's bound on how soon the survivor owns every partition after the other member leaves.
TAKEOVER: Final = 10.0


def value(partition: int, n: int) -> bytes:
    return f"p{partition}-{n}".encode()


@pytest.fixture
def topics(kafka_broker: KafkaBroker) -> Iterator[Callable[..., str]]:
    made: list[str] = []

    def make(partitions: int = 1, per_partition: int = 0) -> str:
        topic = create_topic(kafka_broker, partitions=partitions)
        made.append(topic)
        for p in range(partitions):
            if per_partition:
                produce(kafka_broker, topic, [value(p, n) for n in range(per_partition)], partition=p)
        return topic

    yield make
    for name in made:
        delete_topic(kafka_broker, name)


def config(broker: KafkaBroker, **route: float | bool) -> ProxyConfig:
    return ProxyConfig.single_route(broker.bootstrap, ROUTE, server=ServerConfig(port=0), **route)


@asynccontextmanager
async def proxy(broker: KafkaBroker, **route: float | bool) -> AsyncIterator[ProxyServer]:
    async with running_proxy(config(broker, **route)) as server:
        yield server


#: How long a group subscribe may take to be answered: joining, and the rest of the group
#: rejoining for the rebalance it starts (each member sees it at its next heartbeat), on a busy machine.


async def members_gone(server: ProxyServer) -> None:
    """Wait until the proxy holds no group member (a closed connection's member leaves as its session ends)."""
    for _ in range(int(JOIN_WAIT / 0.05)):
        if not server.statistics().upstreams[ROUTE].group_members_open:
            return
        await trio.sleep(0.05)
    raise AssertionError(f"a group member was still open {JOIN_WAIT} s after its connection closed")


def group_name() -> str:
    return unique_topic_name("group")


async def commit(client: StreamClient, stream_id: int, offsets: list[tuple[int, int]] | None = None) -> object:
    sequence = client.sequence()
    return await client.ask(sequence, encode_commit_request(sequence, stream_id, offsets))


async def test_row_11_two_connections_split_the_partitions_and_the_survivor_takes_all_without_loss(
    kafka_broker: KafkaBroker, topics: Callable[..., str]
) -> None:
    """Row 11: two connections in one group over 4 partitions get disjoint assignments covering all 4;
    when one closes, the other gets all 4 within 10 s and, with commits, no record is lost."""
    per_partition = 50
    topic = topics(4, per_partition)
    group = group_name()
    with trio.fail_after(TEST_LIMIT):
        async with proxy(kafka_broker) as server:
            url = server.url + ROUTE
            async with stream_client(url) as first:
                a = await join(first, 1, topic, group, start=StartEdge.EARLIEST, credit=Grant(records=0))
                async with stream_client(url) as second:
                    b = await join(second, 2, topic, group, start=StartEdge.EARLIEST, credit=Grant(records=0))
                    # The first member's partitions are revoked and shared out as the second joins.
                    await first.until(
                        lambda: (
                            len(owned(first, 1, a)) + len(owned(second, 2, b)) == 4
                            and not owned(first, 1, a) & owned(second, 2, b)
                        ),
                        "the two members to split the 4 partitions",
                    )
                    mine, theirs = owned(first, 1, a), owned(second, 2, b)
                    assert mine and theirs and mine | theirs == {0, 1, 2, 3}, (mine, theirs)
                    # The second member reads 20 records of its partitions and commits what it was sent.
                    await second.credit(2, records=20)
                    await second.until(lambda: second.count(2) == 20, "20 records")
                    assert isinstance(await commit(second, 2), OkAnswer)
                    read_by_second = second.offsets(2)
                # The second has gone: the first owns all 4 within TAKEOVER seconds.
                with trio.fail_after(TAKEOVER):
                    await first.until(lambda: owned(first, 1, a) == {0, 1, 2, 3}, "the survivor to own all 4")
                await first.credit(1, records=10_000)
                total = 4 * per_partition
                await first.until(lambda: first.count(1) >= total - 20, "the rest of the records")
                await trio.sleep(QUIET)
                # It starts where the second member committed: nothing lost, nothing twice.
                assert_taken_over_at_the_commit(first.offsets(1), read_by_second, theirs, 4, per_partition)


async def test_a_partitions_event_comes_after_the_last_record_of_a_revoked_partition(
    kafka_broker: KafkaBroker, topics: Callable[..., str]
) -> None:
    """Records flow to the first member; when a second joins, no record of a revoked partition
    arrives after the event that revokes it, and new ones start with an event before their records."""
    topic = topics(2, 200)
    group = group_name()
    with trio.fail_after(TEST_LIMIT):
        async with proxy(kafka_broker) as server:
            url = server.url + ROUTE
            async with stream_client(url) as first:
                a = await join(first, 1, topic, group, start=StartEdge.EARLIEST, credit=Grant(records=5))
                assert {p for p, _ in a.positions} == {0, 1}
                async with stream_client(url) as second:
                    await join(second, 2, topic, group, start=StartEdge.EARLIEST)
                    await first.until(lambda: len(owned(first, 1, a)) == 1, "the first member to give one up")
                    # Grant plenty now: whatever flows, must be of partitions it owns when it arrives.
                    await first.credit(1, records=1000)
                    await trio.sleep(2 * QUIET)
                    held = {p for p, _ in a.positions}
                    for response in first.received:
                        if isinstance(response, StreamPartitions) and response.sequence == 1:
                            held = (held - set(response.revoked)) | set(response.assigned)
                        elif isinstance(response, StreamRecords) and response.sequence == 1:
                            assert response.partition in held, (response.partition, held)


async def test_a_commit_names_only_assigned_partitions(kafka_broker: KafkaBroker, topics: Callable[..., str]) -> None:
    """A commit of a partition the stream does not own: NOT_ASSIGNED; of a plain stream: INVALID_REQUEST;
    of an unknown stream: UNKNOWN_STREAM; all with the command's sequence."""
    topic = topics(2, 5)
    with trio.fail_after(TEST_LIMIT):
        async with proxy(kafka_broker) as server, stream_client(server.url + ROUTE) as client:
            await join(client, 1, topic, group_name(), start=StartEdge.EARLIEST)
            answer = await commit(client, 1, [(7, 3)])
            assert isinstance(answer, ErrorAnswer) and answer.code == ErrorCode.NOT_ASSIGNED, answer
            await client.subscribe(2, topic, start=StartEdge.EARLIEST)
            answer = await commit(client, 2)
            assert isinstance(answer, ErrorAnswer) and answer.code == ErrorCode.INVALID_REQUEST, answer
            answer = await commit(client, 99)
            assert isinstance(answer, ErrorAnswer) and answer.code == ErrorCode.UNKNOWN_STREAM, answer


async def test_committed_offsets_are_where_a_new_member_starts(
    kafka_broker: KafkaBroker, topics: Callable[..., str]
) -> None:
    """Explicit offsets committed by one connection are where the next member of the group starts,
    and an auto_commit stream commits what it delivered when it unsubscribes."""
    topic = topics(2, 30)
    group = group_name()
    with trio.fail_after(TEST_LIMIT):
        async with proxy(kafka_broker) as server:
            url = server.url + ROUTE
            async with stream_client(url) as client:
                await join(client, 1, topic, group, start=StartEdge.EARLIEST, credit=Grant(records=0))
                assert isinstance(await commit(client, 1, [(0, 12), (1, 3)]), OkAnswer)
            async with stream_client(url) as client:
                answer = await join(
                    client, 2, topic, group, start=StartEdge.EARLIEST, credit=Grant(records=7), auto_commit=True
                )
                assert sorted(answer.positions) == [(0, 12), (1, 3)]
                await client.until(lambda: client.count(2) == 7, "7 records")
                got = client.offsets(2)
                assert isinstance(await client.unsubscribe(2), OkAnswer)
            ends = {p: offsets[-1] + 1 for p, offsets in got.items()}
            expected = {0: ends.get(0, 12), 1: ends.get(1, 3)}
            async with stream_client(url) as client:
                answer = await join(client, 3, topic, group, start=StartEdge.LATEST, credit=Grant(records=0))
                assert dict(answer.positions) == expected


async def test_a_partition_without_a_commit_starts_where_the_subscribe_says(
    kafka_broker: KafkaBroker, topics: Callable[..., str]
) -> None:
    topic = topics(2, 10)
    with trio.fail_after(TEST_LIMIT):
        async with proxy(kafka_broker) as server, stream_client(server.url + ROUTE) as client:
            answer = await join(client, 1, topic, group_name(), start=AtOffsets(((1, 4),)))
            assert sorted(answer.positions) == [(0, 10), (1, 4)]


async def test_groups_off_on_the_route_refuses_a_group_subscribe(
    kafka_broker: KafkaBroker, topics: Callable[..., str]
) -> None:
    topic = topics(1)
    with trio.fail_after(TEST_LIMIT):
        async with proxy(kafka_broker, groups=False) as server, stream_client(server.url + ROUTE) as client:
            sequence = 5
            answer = await client.ask(sequence, encode_subscribe_request(sequence, topic, group=group_name()))
            assert isinstance(answer, ErrorAnswer) and answer.code == ErrorCode.INVALID_REQUEST, answer
            assert "consumer groups are not available on this route" in answer.message


async def test_past_the_routes_bound_on_members_a_join_gets_overloaded(
    kafka_broker: KafkaBroker, topics: Callable[..., str]
) -> None:
    topic = topics(1)
    with trio.fail_after(TEST_LIMIT):
        async with proxy(kafka_broker, max_group_members=1) as server, stream_client(server.url + ROUTE) as client:
            await join(client, 1, topic, group_name())
            answer = await client.ask(2, encode_subscribe_request(2, topic, group=group_name()))
            assert isinstance(answer, ErrorAnswer) and answer.code == ErrorCode.OVERLOADED, answer
            assert "max_group_members (1)" in answer.message, answer.message
            assert isinstance(await client.unsubscribe(1), OkAnswer)
            assert server.statistics().upstreams[ROUTE].group_members_open == 0
            third = await join(client, 3, topic, group_name())
            assert isinstance(third, SubscribeAnswer)


async def test_a_rebalance_while_credit_is_zero_moves_partitions_and_each_member_reads_only_its_own(
    kafka_broker: KafkaBroker, topics: Callable[..., str]
) -> None:
    """A member with no credit still gets its partitions events (they use no credit); once it is
    granted credit it reads only the partitions it owns, and the other member the rest."""
    per_partition = 20
    topic = topics(4, per_partition)
    group = group_name()
    with trio.fail_after(TEST_LIMIT):
        async with proxy(kafka_broker) as server:
            url = server.url + ROUTE
            async with stream_client(url) as first, stream_client(url) as second:
                a = await join(first, 1, topic, group, start=StartEdge.EARLIEST, credit=Grant(records=0))
                assert {p for p, _ in a.positions} == {0, 1, 2, 3}
                b = await join(second, 2, topic, group, start=StartEdge.EARLIEST, credit=Grant(records=0))
                await first.until(
                    lambda: (
                        owned(first, 1, a) | owned(second, 2, b) == {0, 1, 2, 3}
                        and not owned(first, 1, a) & owned(second, 2, b)
                    ),
                    "the two members, both without credit, to split the partitions",
                )
                assert first.count(1) == 0 and second.count(2) == 0
                mine, theirs = owned(first, 1, a), owned(second, 2, b)
                await first.credit(1, records=1000)
                await second.credit(2, records=1000)
                await first.until(lambda: first.count(1) == per_partition * len(mine), "the first member's records")
                await second.until(lambda: second.count(2) == per_partition * len(theirs), "the second's records")
                await trio.sleep(QUIET)
                assert set(first.offsets(1)) == mine and set(second.offsets(2)) == theirs
                for got in (first.offsets(1), second.offsets(2)):
                    assert all(offsets == list(range(per_partition)) for offsets in got.values()), got


async def txn(client: StreamClient, action: TxnAction) -> object:
    sequence = client.sequence()
    return await client.ask(sequence, encode_txn_request(sequence, action))


async def test_a_commit_while_a_transaction_is_open_counts_only_if_the_transaction_commits(
    kafka_broker: KafkaBroker, topics: Callable[..., str]
) -> None:
    """Read-process-write through the proxy: offsets committed inside an aborted transaction are not
    committed (the next member starts where the group was), inside a committed one they are, together
    with the records written in it."""
    source, sink = topics(1, 10), topics(1)
    group = group_name()
    with trio.fail_after(TEST_LIMIT):
        async with proxy(kafka_broker) as server:
            url = server.url + ROUTE

            async def process_and(action: TxnAction, stream_id: int) -> tuple[int, ...]:
                async with stream_client(url) as client:
                    answer = await join(client, stream_id, source, group, start=StartEdge.EARLIEST, credit=Grant(4))
                    start = dict(answer.positions)[0]
                    await client.until(lambda: client.count(stream_id) == 4, "4 records")
                    records = client.records(stream_id)[0]
                    assert isinstance(await txn(client, TxnAction.BEGIN), OkAnswer)
                    sequence = client.sequence()
                    out = [OutRecord(value=r.value.upper() if r.value else None) for r in records]
                    written = await client.ask(
                        sequence, encode_produce_request(sequence, sink, out, transactional=True)
                    )
                    assert isinstance(written, ProduceAnswer), written
                    assert isinstance(await commit(client, stream_id), OkAnswer)
                    assert isinstance(await txn(client, action), OkAnswer)
                    assert [r.offset for r in records] == list(range(start, start + 4))
                # The next member joins once this one has left: else its leave would rebalance the group
                # under the next one's commit (a real race, answered COMMIT_FAILED; not what is tested here).
                await members_gone(server)
                return tuple(r.offset for r in records)

            assert await process_and(TxnAction.ABORT, 1) == (0, 1, 2, 3)
            # Aborted: the offsets were not committed, so the next member starts at 0 again.
            assert await process_and(TxnAction.COMMIT, 2) == (0, 1, 2, 3)
            # Committed: the next member continues at 4.
            assert await process_and(TxnAction.COMMIT, 3) == (4, 5, 6, 7)
            async with stream_client(url) as client:
                await client.subscribe(9, sink, start=StartEdge.EARLIEST, isolation=Isolation.READ_COMMITTED)
                await client.until(lambda: client.count(9) == 8, "the 8 committed records in the sink")
                await trio.sleep(QUIET)
                values = [r.value for r in client.records(9)[0]]
                assert values == [value(0, n).upper() for n in (0, 1, 2, 3, 4, 5, 6, 7)]


async def test_a_groups_committed_offsets_can_be_read_without_joining_it(
    kafka_broker: KafkaBroker, topics: Callable[..., str]
) -> None:
    """CmdGroupOffsets answers the group's committed offsets, partitions without one left out; the
    group is not joined (its member keeps every partition); a missing topic and a bad group are errors."""
    topic = topics(3, 10)
    group = group_name()
    with trio.fail_after(TEST_LIMIT):
        async with proxy(kafka_broker) as server, stream_client(server.url + ROUTE) as client:
            sequence = client.sequence()
            answer = await client.ask(sequence, encode_group_offsets_request(sequence, group, topic))
            assert answer == GroupOffsetsAnswer(sequence, ()), "a group that never committed"
            member = await join(client, 1, topic, group, start=StartEdge.EARLIEST, credit=Grant(records=0))
            assert isinstance(await commit(client, 1, [(0, 4), (2, 9)]), OkAnswer)
            sequence = client.sequence()
            answer = await client.ask(sequence, encode_group_offsets_request(sequence, group, topic))
            assert answer == GroupOffsetsAnswer(sequence, ((0, 4), (2, 9)))
            await trio.sleep(QUIET)
            assert owned(client, 1, member) == {0, 1, 2}, "reading the offsets must not rebalance the group"
            assert client.pushes(1, StreamPartitions) == []

            sequence = client.sequence()
            answer = await client.ask(sequence, encode_group_offsets_request(sequence, group, "no-such-topic"))
            assert isinstance(answer, ErrorAnswer) and answer.code == ErrorCode.TOPIC_NOT_FOUND, answer
            assert answer.message == (
                f"failed to read group offsets, group: {group}, topic: no-such-topic, err: not found topic"
            )
            sequence = client.sequence()
            answer = await client.ask(sequence, encode_group_offsets_request(sequence, "", topic))
            assert answer == ErrorAnswer(sequence, ErrorCode.INVALID_REQUEST, "invalid group offsets: empty group")


async def test_a_membership_kafka_refuses_fails_the_subscribe_at_once(
    kafka_broker: KafkaBroker, topics: Callable[..., str]
) -> None:
    """A session timeout below the broker's minimum (group.min.session.timeout.ms, 6 s by default):
    Kafka refuses the join, and the subscribe gets that error well before its deadline, not a timeout."""
    topic = topics(1)
    with trio.fail_after(TEST_LIMIT):
        async with (
            proxy(kafka_broker, group_session_timeout=2.0, group_heartbeat_interval=0.5) as server,
            stream_client(server.url + ROUTE) as client,
        ):
            started = trio.current_time()
            answer = await client.ask(1, encode_subscribe_request(1, topic, group=group_name()))
            assert isinstance(answer, ErrorAnswer), answer
            assert answer.message.startswith(f"failed to subscribe, topic: {topic}, err: "), answer.message
            assert "InvalidSessionTimeout" in answer.message or "INVALID_SESSION_TIMEOUT" in answer.message
            assert trio.current_time() - started < 15
            await members_gone(server)
