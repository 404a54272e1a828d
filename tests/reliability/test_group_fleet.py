"""PROTOCOL.md section 6 row 12, and issue 12's fleet test: one consumer group whose members
are connections to two separate ``kafka-ws-trio serve`` processes, against the real broker.

* Row 12: row 11 (tests/integration/test_groups.py) with its two connections on two proxy
  processes. They split the 4 partitions; when one connection closes, the other owns all 4
  within 10 s and continues from the committed offsets: nothing lost, nothing twice.
* A graceful stop (one SIGTERM) of one process: its member leaves the group at once, so the
  member on the other process owns every partition within 10 s, though Kafka's session
  timeout is 45 s.
* The fleet: four connections, two on each process, in one group over 8 partitions while a
  kafka-python producer writes all along. Each connection grants plenty of credit and commits
  after every batch it receives (CmdCommit without offsets). Ownership is rebuilt from each
  connection's frames in arrival order: no batch reaches a connection that does not own its
  partition at that point, the first batch of an ownership starts at the position its
  assignment named, and no two connections own a partition at the same time. Then one proxy
  process is SIGKILLed: Kafka drops its members after ``group_session_timeout`` (6 s here,
  the broker's smallest by default) and the survivors own all 8 within that plus 10 s. Once
  the producer stops and everything drained, every produced record was delivered somewhere,
  and a record delivered twice always lies at or after the last commit its earlier owner made
  for that partition (the eager rebalances revoke everything, so the survivors' own
  partitions may repeat a little too, by the same rule).

No randomness: nothing here needs a seed. Each proxy process is stopped by the test's own
``proxy_process`` blocks, whatever happens (the killed one is only reaped).
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import Any, Final

import attrs
import pytest
import trio
from _reliability import ProxyProcess, proxy_process, settled, write_config
from integration._streams import QUIET, StreamClient, assert_taken_over_at_the_commit, stream_client
from trio_websocket import ConnectionClosed

from kafka_ws_trio._proto import (
    ErrorAnswer,
    ErrorCode,
    Grant,
    OkAnswer,
    StartEdge,
    StreamPartitions,
    StreamRecords,
    SubscribeAnswer,
    encode_commit_request,
    encode_subscribe_request,
)
from kafka_ws_trio.testing import KafkaBroker, create_topic, delete_topic, produce, unique_topic_name

pytestmark = pytest.mark.reliability

#: Kafka drops a member of a killed proxy after this many seconds (the broker's group.min.session.timeout.ms
#: is 6 s by default), and the bound on the survivors' takeover is this plus TAKEOVER.
SESSION_TIMEOUT: Final = 6.0
HEARTBEAT: Final = 1.0
#: Row 11's bound: after a member leaves (or is dropped), how soon the survivors own every partition.
TAKEOVER: Final = 10.0
#: How long a group subscribe may take to be answered on a busy machine (the rest of the group rejoins).
JOIN_WAIT: Final = 30.0
#: How long a commit may take to be answered (it may wait for a rebalance to finish).
COMMIT_WAIT: Final = 30.0
STREAM: Final = 1


def config_file(directory: Path, broker: KafkaBroker, name: str, session_timeout: float) -> Path:
    """A proxy config of its own: the session timeout, and a transactional.id prefix no other process uses."""
    return write_config(
        directory / f"proxy-{name}.toml",
        broker.bootstrap,
        route={
            "group_session_timeout": session_timeout,
            "group_heartbeat_interval": HEARTBEAT,
            "transaction_id_prefix": f"fleet-{name}-{uuid.uuid4().hex[:8]}-",
        },
    )


@asynccontextmanager
async def two_proxies(
    directory: Path, broker: KafkaBroker, session_timeout: float = SESSION_TIMEOUT
) -> AsyncIterator[tuple[ProxyProcess, ProxyProcess]]:
    """Two ``kafka-ws-trio serve`` processes on the same broker; both stopped when the block ends."""
    async with (
        proxy_process(config_file(directory, broker, "a", session_timeout), directory / "proxy-a.log") as a,
        proxy_process(config_file(directory, broker, "b", session_timeout), directory / "proxy-b.log") as b,
    ):
        yield a, b


@pytest.fixture
def topics(kafka_broker: KafkaBroker) -> Iterator[Callable[[int], str]]:
    made: list[str] = []

    def make(partitions: int) -> str:
        made.append(create_topic(kafka_broker, partitions=partitions))
        return made[-1]

    yield make
    for name in made:
        delete_topic(kafka_broker, name)


async def join(client: StreamClient, topic: str, group: str, credit: int) -> SubscribeAnswer:
    """Subscribe stream 1 of ``client`` in ``group`` from the earliest records; the group's first assignment."""
    mark = len(client.received)
    frame = encode_subscribe_request(STREAM, topic, group=group, start=StartEdge.EARLIEST, credit=Grant(records=credit))
    await client.send(frame)

    def answer() -> SubscribeAnswer | ErrorAnswer | None:
        return next(
            (
                r
                for r in client.received[mark:]
                if isinstance(r, SubscribeAnswer | ErrorAnswer) and r.sequence == STREAM
            ),
            None,
        )

    await client.until(lambda: answer() is not None, "the answer to the group subscribe", JOIN_WAIT)
    found = answer()
    assert isinstance(found, SubscribeAnswer), found
    return found


def owned(client: StreamClient) -> set[int]:
    """The partitions stream 1 owns now: its answer's, then each ``partitions`` event applied in order."""
    partitions: set[int] = set()
    for response in client.received:
        if isinstance(response, SubscribeAnswer) and response.sequence == STREAM:
            partitions = {p for p, _ in response.positions}
        elif isinstance(response, StreamPartitions) and response.sequence == STREAM:
            partitions = (partitions - set(response.revoked)) | set(response.assigned)
    return partitions


def split(clients: list[StreamClient], partitions: int) -> bool:
    """Whether the clients own disjoint sets of partitions that cover all ``partitions``."""
    sets = [owned(client) for client in clients]
    return sum(len(s) for s in sets) == partitions and set().union(*sets) == set(range(partitions))


async def commit(client: StreamClient) -> object:
    sequence = client.sequence()
    return await client.ask(sequence, encode_commit_request(sequence, STREAM))


# ------------------------------------------------------------------------------------------- row 12


@pytest.mark.timeout(150)
async def test_row_12_two_connections_on_two_proxy_processes_split_the_partitions_and_the_survivor_takes_all(
    kafka_broker: KafkaBroker, topics: Callable[[int], str], tmp_path: Path
) -> None:
    """Row 12: row 11 with the two connections on two proxy processes: disjoint assignments covering
    all 4 partitions; when one closes, the other gets all 4 within 10 s and, with commits, loses nothing."""
    per_partition = 50
    topic = topics(4)
    for p in range(4):
        await trio.to_thread.run_sync(
            lambda p=p: produce(kafka_broker, topic, [f"p{p}-{n}".encode() for n in range(per_partition)], partition=p)
        )
    group = unique_topic_name("group")
    with trio.fail_after(130):
        async with two_proxies(tmp_path, kafka_broker) as (a, b), stream_client(a.url) as first:
            await join(first, topic, group, credit=0)
            async with stream_client(b.url) as second:
                await join(second, topic, group, credit=0)
                await first.until(lambda: split([first, second], 4), "the two members to split the 4 partitions")
                mine, theirs = owned(first), owned(second)
                assert mine and theirs, (mine, theirs)
                # The member on the second process reads 20 records of its partitions and commits what it was sent.
                await second.credit(STREAM, records=20)
                await second.until(lambda: second.count(STREAM) == 20, "20 records")
                assert isinstance(await commit(second), OkAnswer)
                read_by_second = second.offsets(STREAM)
            # Its connection closed: the member on the first process owns all 4 within TAKEOVER seconds.
            with trio.fail_after(TAKEOVER):
                await first.until(lambda: owned(first) == {0, 1, 2, 3}, "the survivor to own all 4", TAKEOVER)
            await first.credit(STREAM, records=10_000)
            await first.until(lambda: first.count(STREAM) >= 4 * per_partition - 20, "the rest of the records")
            await trio.sleep(QUIET)
            read_by_first = first.offsets(STREAM)
    assert_taken_over_at_the_commit(read_by_first, read_by_second, theirs, 4, per_partition)


#: A session timeout far longer than TAKEOVER: a takeover within TAKEOVER did not wait for it.
LONG_SESSION_TIMEOUT: Final = 45.0


@pytest.mark.timeout(150)
async def test_a_proxy_process_stopped_with_sigterm_hands_its_partitions_over_without_waiting_for_the_session_timeout(
    kafka_broker: KafkaBroker, topics: Callable[[int], str], tmp_path: Path
) -> None:
    """A graceful stop closes the process's sessions, and their members leave the group at once: the member
    on the other process owns every partition within 10 s, well before Kafka's session timeout (45 s here)."""
    topic = topics(4)
    group = unique_topic_name("group")
    with trio.fail_after(130):
        async with (
            two_proxies(tmp_path, kafka_broker, LONG_SESSION_TIMEOUT) as (a, b),
            stream_client(a.url) as first,
            stream_client(b.url) as second,
        ):
            await join(first, topic, group, credit=0)
            await join(second, topic, group, credit=0)
            await first.until(lambda: split([first, second], 4), "the two members to split the 4 partitions")
            assert owned(first) != {0, 1, 2, 3}
            b.process.send_signal(signal.SIGTERM)
            with trio.fail_after(TAKEOVER):
                await first.until(lambda: owned(first) == {0, 1, 2, 3}, "the survivor to own all 4", TAKEOVER)
            with trio.fail_after(30):
                assert await b.process.wait() == 0, b.log_text()
            assert second.closed
            assert "stopped" in b.log_text()


# -------------------------------------------------------------------------------------- the fleet

FLEET_PARTITIONS: Final = 8
#: Records the producer writes each round, one per partition, and the pause between rounds.
ROUND_PAUSE: Final = 0.05
#: Seconds the group runs settled, with records flowing, before the kill, and after the takeover.
RUNNING: Final = 4.0
#: After a takeover failed its bound: how much longer to watch, to tell a slow one from one that never comes.
LATE: Final = 30.0
#: How long the last records may take to reach the survivors once the producer stopped.
DRAIN: Final = 60.0


@attrs.define
class Member:
    """One connection of the fleet, its proxy, and the commits it sent: (sequence, index of received at sending)."""

    name: str
    proxy: str
    client: StreamClient
    commits: list[tuple[int, int]] = attrs.field(factory=list)
    refused: Counter[int] = attrs.field(factory=Counter)


@attrs.define
class Ownership:
    """One connection's hold on one partition, from the frame that gave it to the one that took it away."""

    member: str
    partition: int
    start: float
    position: int
    next: int
    end: float = float("inf")
    #: What the last commit answered OK during this ownership committed at least (None: no commit).
    committed: int | None = None


@attrs.define
class Producing:
    """What the producer thread wrote: value by offset per partition, and the errors it got."""

    written: dict[int, dict[int, bytes]] = attrs.field(factory=lambda: {p: {} for p in range(FLEET_PARTITIONS)})
    errors: list[BaseException] = attrs.field(factory=list)
    stop: threading.Event = attrs.field(factory=threading.Event)
    done: bool = False


def produce_until_stopped(broker: KafkaBroker, topic: str, producing: Producing) -> None:
    """Write one record to each partition every ROUND_PAUSE s until told to stop, then flush (in a thread)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(**broker.client_config(), acks="all", linger_ms=5)

    def written(partition: int, value: bytes) -> Callable[[Any], None]:
        return lambda metadata: producing.written[partition].__setitem__(metadata.offset, value)

    try:
        n = 0
        while not producing.stop.is_set():
            for p in range(FLEET_PARTITIONS):
                value = f"fleet p{p} n{n}".encode()
                future = producer.send(topic, key=b"k%d" % n, value=value, partition=p)
                future.add_callback(written(p, value))
                future.add_errback(producing.errors.append)
            n += 1
            producing.stop.wait(ROUND_PAUSE)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)
        producing.done = True


async def commit_after_each_batch(member: Member, stop: trio.Event) -> None:
    """Send CmdCommit (no offsets) once a batch came since the last, and wait for its answer; until stopped
    or the connection is gone. Refusals are counted (a commit during a rebalance is refused)."""
    client = member.client
    seen = 0

    def over() -> bool:
        return stop.is_set() or client.closed

    while not over():
        await settled(lambda: over() or client.count(STREAM) > seen, within=float("inf"), interval=0.02)  # noqa: B023
        if over():
            return
        seen = client.count(STREAM)
        sequence, mark = client.sequence(), len(client.received)
        member.commits.append((sequence, mark))
        try:
            await client.send(encode_commit_request(sequence, STREAM))
        except ConnectionClosed:  # its proxy was killed (the receiving task may not have noticed yet)
            return

        def answered() -> Any:
            return next((r for r in client.received[mark:] if getattr(r, "sequence", None) == sequence), None)  # noqa: B023

        assert await settled(lambda: answered() is not None or client.closed, COMMIT_WAIT, 0.02), (
            f"{member.name}: commit {sequence} not answered within {COMMIT_WAIT:.0f}s"
        )
        answer = answered()
        if isinstance(answer, ErrorAnswer):
            member.refused[answer.code] += 1


def ownerships(member: Member, cut: float) -> tuple[list[Ownership], list[str]]:
    """Rebuild ``member``'s ownerships from its frames in arrival order; also the violations seen.

    ``cut`` ends the ownerships still open (a killed proxy's: no frame ever says they ended).
    A commit answered OK counts, per partition held from its sending to its answer, at least what
    had been received of that partition when it was sent (the proxy commits what it wrote, which
    includes what the client had read).
    """
    client = member.client
    held: dict[int, Ownership] = {}
    done: list[Ownership] = []
    problems: list[str] = []
    sent = {mark: sequence for sequence, mark in member.commits}
    pending: dict[int, dict[int, tuple[Ownership, int]]] = {}
    for index, (response, arrival) in enumerate(zip(client.received, client.arrivals, strict=True)):
        if index in sent:
            pending[sent[index]] = {p: (o, o.next) for p, o in held.items()}
        if isinstance(response, SubscribeAnswer) and response.sequence == STREAM:
            for p, position in response.positions:
                held[p] = Ownership(member.name, p, arrival, position, position)
        elif isinstance(response, StreamPartitions) and response.sequence == STREAM:
            for p in response.revoked:
                if p not in held:
                    problems.append(f"{member.name}: partition {p} revoked but not owned (frame {index})")
                    continue
                held[p].end = arrival
                done.append(held.pop(p))
            positions = dict(response.positions)
            for p in response.assigned:
                if p in held:
                    problems.append(f"{member.name}: partition {p} assigned while owned (frame {index})")
                    continue
                if p not in positions:
                    problems.append(f"{member.name}: partition {p} assigned without a position (frame {index})")
                    continue
                held[p] = Ownership(member.name, p, arrival, positions[p], positions[p])
        elif isinstance(response, StreamRecords) and response.sequence == STREAM:
            ownership = held.get(response.partition)
            if ownership is None:
                problems.append(f"{member.name}: a batch of partition {response.partition} it does not own")
                continue
            if response.records and response.records[0].offset != ownership.next:
                problems.append(
                    f"{member.name}: partition {response.partition} continued at {response.records[0].offset}, "
                    f"not at {ownership.next}"
                )
            ownership.next = response.next_offset
        elif isinstance(response, OkAnswer) and response.sequence in pending:
            for p, (ownership, offset) in pending.pop(response.sequence).items():
                if held.get(p) is ownership:  # still the same hold: the commit covered it
                    ownership.committed = max(offset, ownership.committed or 0)
    for ownership in held.values():
        ownership.end = max(cut, client.arrivals[-1] if client.arrivals else cut)
        done.append(ownership)
    return done, problems


def events_since(members: list[Member], since: float) -> dict[str, list[tuple[str, list[int], list[int]]]]:
    """Each member's ``partitions`` events after ``since``: (seconds after it, assigned, revoked)."""
    return {
        m.name: [
            (f"{arrival - since:.1f}s", list(r.assigned), list(r.revoked))
            for r, arrival in zip(m.client.received, m.client.arrivals, strict=True)
            if isinstance(r, StreamPartitions) and arrival > since
        ]
        for m in members
    }


def deliveries(member: Member) -> list[tuple[float, int, int, bytes | None]]:
    """(arrival, partition, offset, value) of every record the member received."""
    return [
        (arrival, response.partition, record.offset, record.value)
        for response, arrival in zip(member.client.received, member.client.arrivals, strict=True)
        if isinstance(response, StreamRecords) and response.sequence == STREAM
        for record in response.records
    ]


@pytest.mark.timeout(300)
async def test_a_fleet_of_two_proxy_processes_shares_a_group_and_a_killed_process_loses_no_record(
    kafka_broker: KafkaBroker, topics: Callable[[int], str], tmp_path: Path
) -> None:
    topic = topics(FLEET_PARTITIONS)
    group = unique_topic_name("group")
    producing = Producing()
    members: list[Member] = []
    stop_committing = trio.Event()
    started = time.time()
    with trio.fail_after(270):
        async with two_proxies(tmp_path, kafka_broker) as (a, b), AsyncExitStack() as stack:
            for name, proxy in (("a1", a), ("b1", b), ("a2", a), ("b2", b)):
                client = await stack.enter_async_context(stream_client(proxy.url))
                members.append(Member(name, "a" if proxy is a else "b", client))
                await join(client, topic, group, credit=1_000_000)
            clients = [m.client for m in members]
            assert await settled(lambda: split(clients, FLEET_PARTITIONS), JOIN_WAIT), (
                f"the group did not settle: {[sorted(owned(c)) for c in clients]}"
            )
            settled_after = time.time() - started
            async with trio.open_nursery() as nursery:
                for member in members:
                    nursery.start_soon(commit_after_each_batch, member, stop_committing)
                nursery.start_soon(
                    partial(trio.to_thread.run_sync, produce_until_stopped, kafka_broker, topic, producing)
                )
                try:
                    assert await settled(lambda: all(c.count(STREAM) for c in clients), JOIN_WAIT), (
                        f"not every member got records: {[c.count(STREAM) for c in clients]}"
                    )
                    await trio.sleep(RUNNING)

                    killed_at = time.time()
                    b.process.kill()  # SIGKILL, to the pid of the process this test started
                    await b.process.wait()
                    survivors = [m.client for m in members if m.proxy == "a"]
                    bound = SESSION_TIMEOUT + TAKEOVER
                    took_over = await settled(lambda: split(survivors, FLEET_PARTITIONS), bound, 0.02)
                    takeover = time.time() - killed_at
                    if not took_over:  # say how late it came, if it came, and what the survivors were told
                        late = await settled(lambda: split(survivors, FLEET_PARTITIONS), LATE, 0.02)
                        raise AssertionError(
                            f"the survivors did not own all {FLEET_PARTITIONS} partitions within {bound:.0f}s of the "
                            f"kill: {[sorted(owned(c)) for c in survivors]} then; "
                            + (
                                f"they did after {time.time() - killed_at:.1f}s"
                                if late
                                else f"nor after {LATE:.0f}s more"
                            )
                            + f"; their partitions events since the kill: {events_since(members, killed_at)}"
                        )
                    await trio.sleep(RUNNING)
                finally:
                    producing.stop.set()  # the producer flushes and its thread ends
                await settled(lambda: producing.done, DRAIN, 0.1)
                assert producing.done and not producing.errors, producing.errors[:3]

                def drained() -> bool:
                    got = {(p, o) for m in members for _, p, o, _ in deliveries(m)}
                    return all((p, o) in got for p, offsets in producing.written.items() for o in offsets)

                assert await settled(drained, DRAIN, 0.2), "the survivors did not receive every record"
                await trio.sleep(QUIET)
                stop_committing.set()

    # ------------------------------------------------ what happened, rebuilt from the frames
    cut = killed_at
    holds: list[Ownership] = []
    problems: list[str] = []
    for member in members:
        mine, seen = ownerships(member, cut if member.proxy == "b" else float("inf"))
        holds += mine
        problems += seen
    by_partition: dict[int, list[Ownership]] = {p: [] for p in range(FLEET_PARTITIONS)}
    for hold in holds:
        by_partition[hold.partition].append(hold)
    for p, partition_holds in by_partition.items():
        partition_holds.sort(key=lambda h: h.start)
        for earlier, later in pairwise(partition_holds):
            if later.start < earlier.end:
                problems.append(
                    f"partition {p} owned by {earlier.member} and {later.member} at once "
                    f"({later.start - earlier.end:+.3f}s)"
                )
            if earlier.committed is not None and later.position < earlier.committed:
                problems.append(
                    f"partition {p}: {later.member} started at {later.position}, before {earlier.member}'s "
                    f"commit of {earlier.committed}"
                )

    produced = sum(len(offsets) for offsets in producing.written.values())
    times: dict[tuple[int, int], list[tuple[float, str, bytes | None]]] = {}
    for member in members:
        for arrival, p, offset, value in deliveries(member):
            times.setdefault((p, offset), []).append((arrival, member.name, value))
    wrong = [(p, o) for (p, o), seen in times.items() for _, _, v in seen if producing.written[p].get(o) != v]
    missing = [(p, o) for p, offsets in producing.written.items() for o in offsets if (p, o) not in times]

    def hold_of(name: str, p: int, arrival: float) -> Ownership | None:
        return next((h for h in by_partition[p] if h.member == name and h.start <= arrival <= h.end), None)

    duplicates = Counter[str]()
    early: list[str] = []
    for (p, offset), seen in times.items():
        seen.sort()
        for arrival, name, _ in seen[:-1]:  # each delivery that another one followed
            first = hold_of(name, p, arrival)
            duplicates["killed proxy" if name.startswith("b") else "eager rebalance"] += 1
            if first is not None and first.committed is not None and offset < first.committed:
                early.append(f"p{p}@{offset}: first to {name}, whose last commit was {first.committed}")
    refused = {m.name: dict(m.refused) for m in members}
    commits = {m.name: len(m.commits) for m in members}
    print(
        f"\nfleet: {produced} records over {FLEET_PARTITIONS} partitions; {len(holds)} ownerships; "
        f"group settled {settled_after:.1f}s after the start, survivors owned all {takeover:.1f}s after SIGKILL (bound "
        f"{SESSION_TIMEOUT + TAKEOVER:.0f}s); records delivered per member "
        f"{ {m.name: m.client.count(STREAM) for m in members} }; commits sent {commits}, refused {refused}; "
        f"duplicates {dict(duplicates)} ({len(early)} before their first owner's commit); missing {len(missing)}; "
        f"wrong values {len(wrong)}; problems {len(problems)}; the survivors' partitions events after the kill "
        f"{ {m: e for m, e in events_since(members, killed_at).items() if e} }"
    )
    assert not [m.name for m in members if m.proxy == "a" and m.client.closed], "a survivor's connection closed"
    assert not problems, problems[:10]
    assert not missing, f"{len(missing)} records never delivered, e.g. {missing[:10]}"
    assert not wrong, f"{len(wrong)} records delivered with another value, e.g. {wrong[:10]}"
    assert not early, early[:10]
    unexpected = {code for m in members for code in m.refused if code != ErrorCode.COMMIT_FAILED}
    assert not unexpected, refused
    assert split([m.client for m in members if m.proxy == "a"], FLEET_PARTITIONS)
