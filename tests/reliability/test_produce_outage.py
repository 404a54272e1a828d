"""10,000 records produced with acks=all through the proxy while the broker is killed (SIGKILL) and restarted.

``SESSIONS`` WebSockets produce ``COMMANDS`` commands of ``PER_COMMAND`` records each
(``TOTAL`` records, each value unique, so that every record can be found in the log),
``TASKS_PER_SESSION`` commands in flight on each, with the route's default acks (all,
idempotent producer). The broker is killed while commands are in flight; more commands
are sent while it is down; it is restarted on its data; the proxy is left to recover by
itself; the rest of the commands follow. An unrelated session pings throughout.

Then, the topic read back with kafka-python (from the earliest record to the log end):

* every record that got an offset (``Written``) is in the log exactly once, at that
  partition and offset;
* no record is in the log twice, and nothing is in the log that was not produced;
* every record has exactly one result, and a record that got an error (``NotWritten``)
  is reported with a code that names the outage; it may or may not be in the log (a
  record the broker had taken when it was killed, whose acknowledgement never came): both
  are counted and printed;
* records sent while the broker was down all failed, each command within the proxy's
  deadline, and none of them is in the log;
* once a command is written after the restart, every command sent after it is written
  whole: the proxy recovered by itself (nobody reconnected), within ``RECOVERY_LIMIT``;
* the unrelated session was answered throughout, and afterwards reads the log end and
  records through the proxy; a new session produces. No session was closed.

The broker is our own instance (``reliability-produce-kill`` on ports 26092..26096),
deleted afterwards whatever happens. The proxy runs as a process of its own
(``kafka-ws-trio serve``), which must exit cleanly afterwards.

Found by this test and fixed: commands in flight at the kill were never answered. After the kill
kafka-python's idempotent producer reset its producer id and then neither sent nor expired the
batches it held, and the proxy had no deadline of its own on records it had handed over; at
shutdown, closing that producer raised out of the route.
"""

from __future__ import annotations

import math
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, Final

import attrs
import pytest
import trio
from _reliability import WAIT, OwnBroker, mode, proxy_process, write_config
from _support import own_broker_name, own_port_base

from kafka_ws_trio._proto import ErrorCode
from kafka_ws_trio.client import NotWritten, OutRecord, PubSubClient, PubSubError, Written, open_client
from kafka_ws_trio.testing import KafkaBroker, create_topic

pytestmark = pytest.mark.reliability

BROKER: Final = OwnBroker(own_broker_name("reliability-produce-kill"), port_base=own_port_base(26092))
PARTITIONS: Final = 3
TOTAL: Final = 10_000
PER_COMMAND: Final = 100
COMMANDS: Final = TOTAL // PER_COMMAND
#: Producing sessions, and the commands each has in flight at once.
SESSIONS: Final = 5
TASKS_PER_SESSION: Final = 2
#: Commands sent before the kill; the broker is killed once KILL_AFTER of them are answered,
#: so that the rest are in flight (or about to be sent) when it dies.
BEFORE: Final = 30
KILL_AFTER: Final = 12
#: Commands sent while the broker is down.
DURING: Final = 20
#: Commands the recovery may take at most (sent one at a time after the restart): the rest
#: (at least COMMANDS - BEFORE - DURING - RECOVERY_COMMANDS) are sent once the proxy has recovered.
RECOVERY_COMMANDS: Final = 20
#: The route's Kafka deadline: short, so that the outage shows quickly. A record's delivery
#: timeout is produce_linger (5 ms) + REQUEST_TIMEOUT.
REQUEST_TIMEOUT: Final = 2.0
#: What a command may take at most: waiting for room in flight (produce_timeout: the delivery
#: timeout + 2 s), handing over (the route's deadline: connecting, the topic's metadata and limits,
#: each within request_timeout), the delivery timeout, the session's margin, and slack for a loaded
#: machine.
COMMAND_DEADLINE: Final = 2 * (REQUEST_TIMEOUT + 2) + 3 * REQUEST_TIMEOUT + REQUEST_TIMEOUT + 2 + 10
#: The client's own limit: a command without any answer by then is a hang.
CLIENT_TIMEOUT: Final = 60.0
#: Seconds the broker stays down after the last command sent during the outage was answered.
OUTAGE: Final = 2.0
#: Seconds after the restart by which a command must be written whole.
RECOVERY_LIMIT: Final = 60.0
#: Seconds between two commands of the recovery when one is not written whole.
RECOVERY_PAUSE: Final = 0.5
#: Seconds reading the topic back may take.
READ_LIMIT: Final = 60.0
#: Codes a record's failure may have while the broker is down or coming back.
OUTAGE_CODES: Final = {ErrorCode.TIMEOUT, ErrorCode.BROKER_UNREACHABLE, ErrorCode.KAFKA_ERROR}


@pytest.fixture
def own_broker() -> Iterator[KafkaBroker]:
    """A broker this test may kill; deleted afterwards, whatever happens."""
    with BROKER.running() as broker:
        yield broker


# ----------------------------------------------------------------- records


def command_records(run: str, command: int) -> list[OutRecord]:
    """The records of one command, each value unique: keyed (murmur2 picks the partition), an explicit
    partition, or neither (the producer's default partitioner)."""
    records = []
    for index in range(PER_COMMAND):
        value = f"{run}-c{command:03d}-r{index:03d}".encode()
        kind = index % 3
        if kind == 0:
            records.append(OutRecord(key=value, value=value))
        elif kind == 1:
            records.append(OutRecord(value=value, partition=index % PARTITIONS, headers=(("n", b"%d" % index),)))
        else:
            records.append(OutRecord(value=value))
    return records


@attrs.define
class Sent:
    """One command: when it went out and came back, and its results (or the error that refused it whole)."""

    index: int
    records: list[OutRecord]
    sent_at: float = 0.0
    answered_at: float | None = None
    results: list[Any] | None = None
    refused: str | None = None

    @property
    def took(self) -> float:
        return (self.answered_at or math.inf) - self.sent_at

    def written_whole(self) -> bool:
        return self.results is not None and all(isinstance(r, Written) for r in self.results)


@attrs.define
class Producing:
    """The commands of the test, by index, and who is waiting for their answers."""

    run: str
    topic: str
    commands: dict[int, Sent] = attrs.Factory(dict)
    answered: int = 0
    changed: trio.Event = attrs.Factory(trio.Event)

    def note(self) -> None:
        self.answered += 1
        self.changed.set()
        self.changed = trio.Event()

    async def until_answered(self, count: int, seconds: float, what: str) -> None:
        with trio.move_on_after(seconds):
            while self.answered < count:
                await self.changed.wait()
            return
        raise AssertionError(f"{what}: {self.answered} of {count} commands answered within {seconds:.0f}s")


async def produce_commands(client: PubSubClient, producing: Producing, indices: trio.MemoryReceiveChannel[int]) -> None:
    """Send each command index received, one at a time, noting what came back."""
    async for index in indices:
        sent = Sent(index, command_records(producing.run, index))
        producing.commands[index] = sent
        sent.sent_at = trio.current_time()
        try:
            sent.results = await client.produce(producing.topic, sent.records)
        except PubSubError as exc:
            sent.refused = f"code {exc.code}: {exc.message}"
        except trio.TooSlowError:
            sent.refused = f"no answer within {CLIENT_TIMEOUT:.0f}s"
        sent.answered_at = trio.current_time()
        producing.note()


@attrs.define
class Pinger:
    """The unrelated session: pings until told to stop; every ping must be answered, with its state."""

    answered: int = 0
    failures: list[str] = attrs.Factory(list)
    slowest: float = 0.0

    async def run(self, client: PubSubClient, stop: trio.Event) -> None:
        while not stop.is_set():
            started = trio.current_time()
            state = b"ping-%d" % self.answered
            try:
                got = await client.ping(state)
            except (PubSubError, trio.TooSlowError) as exc:
                self.failures.append(repr(exc))
            else:
                if got != state:
                    self.failures.append(f"ping {state!r} answered with {got!r}")
                self.answered += 1
            self.slowest = max(self.slowest, trio.current_time() - started)
            await trio.sleep(0.05)


# ----------------------------------------------------------------- reading


def read_back(broker: KafkaBroker, topic: str) -> list[Any]:
    """Every record of ``topic`` as kafka-python sees it, from the earliest to the log end (blocking)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**broker.client_config(), enable_auto_commit=False, request_timeout_ms=30_000)
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        ends = consumer.end_offsets(partitions)
        records: list[Any] = []
        deadline = time.monotonic() + READ_LIMIT
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            assert time.monotonic() < deadline, f"the topic could not be read back within {READ_LIMIT:.0f}s"
            for batch in consumer.poll(timeout_ms=1000).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


# ------------------------------------------------------------------- test


@attrs.define
class Timeline:
    """When each phase began, as ``trio.current_time()``, and how the recovery went."""

    killed: float = math.nan
    restarted: float = math.nan
    #: When the first command after the restart that was written whole was sent.
    recovered: float | None = None
    #: Commands sent after the restart up to and including that one; the first index after them.
    recovery_commands: int = 0
    after_first: int = COMMANDS
    notes: list[str] = attrs.Factory(list)

    def note(self, text: str) -> None:
        """Progress, printed at once (it shows with ``-s`` and with a failure's captured output)."""
        self.notes.append(text)
        print(f"produce outage: {text}", flush=True)


async def run_phases(producing: Producing, send: trio.MemorySendChannel[int], timeline: Timeline) -> None:
    """Hand the command indices out in phases around the kill and the restart.

    Without a recovery the rest of the commands are not sent: each would only wait for its timeout.
    """
    indices = iter(range(COMMANDS))
    # Before: commands in flight when the broker dies.
    for _ in range(BEFORE):
        send.send_nowait(next(indices))
    await producing.until_answered(KILL_AFTER, 60, "before the kill")
    timeline.killed = trio.current_time()
    await trio.to_thread.run_sync(BROKER.kill)
    timeline.note(f"killed the broker after {producing.answered} commands were answered")
    # During the outage: every one of these must fail, each within the deadline.
    for _ in range(DURING):
        send.send_nowait(next(indices))
    await producing.until_answered(BEFORE + DURING, 4 * COMMAND_DEADLINE, "during the outage")
    timeline.note(f"{BEFORE + DURING} commands answered {trio.current_time() - timeline.killed:.1f}s after the kill")
    await trio.sleep(OUTAGE)
    await trio.to_thread.run_sync(BROKER.start)
    timeline.restarted = trio.current_time()
    timeline.note(f"the broker is back, {timeline.restarted - timeline.killed:.1f}s after the kill")
    # The recovery: one command at a time until one is written whole.
    index = BEFORE + DURING - 1
    while timeline.recovery_commands < RECOVERY_COMMANDS:
        if trio.current_time() - timeline.restarted > RECOVERY_LIMIT:
            break
        index = next(indices)
        timeline.recovery_commands += 1
        send.send_nowait(index)
        await producing.until_answered(index + 1, CLIENT_TIMEOUT + WAIT, "in the recovery")
        sent = producing.commands[index]
        timeline.note(f"recovery command {index}: {_outcomes(producing, range(index, index + 1))} in {sent.took:.1f}s")
        if sent.written_whole():
            timeline.recovered = sent.sent_at
            break
        await trio.sleep(RECOVERY_PAUSE)
    timeline.after_first = handed = index + 1
    if timeline.recovered is not None:
        # After: the rest, all of which must be written.
        for index in indices:
            send.send_nowait(index)
        handed = COMMANDS
    await send.aclose()
    await producing.until_answered(handed, 4 * COMMAND_DEADLINE, "after the recovery")


@pytest.mark.timeout(mode().limit(420, 900))
async def test_records_produced_while_the_broker_is_killed_and_restarted_are_each_reported_truly(
    own_broker: KafkaBroker, tmp_path: Path
) -> None:
    topic = await trio.to_thread.run_sync(lambda: create_topic(own_broker, partitions=PARTITIONS))
    producing = Producing(uuid.uuid4().hex[:12], topic)
    pinger = Pinger()
    timeline = Timeline()
    config = write_config(tmp_path / "proxy.toml", own_broker.bootstrap, route={"request_timeout": REQUEST_TIMEOUT})
    send_index, indices = trio.open_memory_channel[int](math.inf)
    started = trio.current_time()
    late: list[Any] = []
    async with proxy_process(config, tmp_path / "proxy.log") as proxy, AsyncExitStack() as stack:
        unrelated = await stack.enter_async_context(open_client(proxy.url, request_timeout=CLIENT_TIMEOUT))
        clients = [
            await stack.enter_async_context(open_client(proxy.url, request_timeout=CLIENT_TIMEOUT))
            for _ in range(SESSIONS)
        ]
        async with trio.open_nursery() as pinging:
            stop = trio.Event()
            pinging.start_soon(pinger.run, unrelated, stop)
            async with trio.open_nursery() as producers:
                for client in clients:
                    for _ in range(TASKS_PER_SESSION):
                        producers.start_soon(produce_commands, client, producing, indices.clone())
                await indices.aclose()
                await run_phases(producing, send_index, timeline)
            produced_in = trio.current_time() - started
            stop.set()
        # Nobody reconnected: the same sessions are still open.
        connections = proxy.established()

        # The unrelated session still works: it reads the log end and the first records.
        stored = await trio.to_thread.run_sync(read_back, own_broker, topic)
        ends = {p: 1 + max((r.offset for r in stored if r.partition == p), default=-1) for p in range(PARTITIONS)}
        for partition in range(PARTITIONS):
            assert await unrelated.list_offset(topic, partition, -1) >= ends[partition]
        first = sorted((r for r in stored if r.partition == 0), key=lambda r: r.offset)[:5]
        fetched = await unrelated.fetch(topic, 0, first[0].offset if first else 0)
        assert [(r.offset, r.value) for r in fetched[: len(first)]] == [(r.offset, r.value) for r in first]
        # A new session produces.
        if timeline.recovered is not None:
            async with open_client(proxy.url, request_timeout=CLIENT_TIMEOUT) as new:
                late = await new.produce(topic, [OutRecord(value=f"{producing.run}-late".encode())])
    log = proxy.log_text()

    report = judge(producing, stored, timeline.after_first)
    answered = [s for s in producing.commands.values() if s.answered_at is not None]
    during = [producing.commands[i].took for i in range(BEFORE, BEFORE + DURING)]
    recovery = (
        f"the first written whole was sent {timeline.recovered - timeline.restarted:.1f}s after the restart"
        if timeline.recovered is not None
        else f"none written whole within {RECOVERY_LIMIT:.0f}s"
    )
    print(
        f"\nproduce outage: {len(producing.commands) * PER_COMMAND} of {TOTAL} records sent in "
        f"{len(producing.commands)} commands over {SESSIONS} sessions ({SESSIONS * TASKS_PER_SESSION} in flight at "
        f"most), acks=all; written {report.written}, failed {report.failed} (of which in the log anyway "
        f"{report.failed_present}, not in it {report.failed - report.failed_present}), without a result "
        f"{report.unanswered}; failure codes {dict(report.codes)}; commands: {BEFORE} before the kill, {DURING} "
        f"during the outage (each failed within {max(during):.1f}s), {timeline.recovery_commands} in the recovery "
        f"({recovery}; the restart came {timeline.restarted - timeline.killed:.1f}s after the kill), "
        f"{len(producing.commands) - timeline.after_first} after it; slowest answer "
        f"{max((s.took for s in answered), default=math.nan):.1f}s; pings answered {pinger.answered}, slowest "
        f"{pinger.slowest * 1000:.0f} ms; {len(stored)} records in the log; produced in {produced_in:.1f}s"
    )
    problems = list(report.problems)
    if timeline.recovered is None:
        problems.insert(0, f"no command was written whole within {RECOVERY_LIMIT:.0f}s of the restart")
    elif not (late and isinstance(late[0], Written)):
        problems.append(f"a new session's produce after the recovery got {late}")
    if pinger.failures:
        problems.append(f"the unrelated session's pings failed: {pinger.failures[:5]}")
    if connections != SESSIONS + 1:
        problems.append(f"{connections} client connections open at the end, not {SESSIONS + 1}")
    if proxy.process.returncode != 0 or "Traceback" in log:
        problems.append(f"the proxy exited with {proxy.process.returncode}:\n{log[-3000:]}")
    assert not problems, "\n".join(problems[:25]) + f"\n({len(problems)} problems)"
    assert report.written + report.failed == TOTAL


def _outcomes(producing: Producing, indices: range) -> str:
    shown = []
    for index in indices:
        sent = producing.commands.get(index)
        if sent is None or sent.results is None:
            shown.append(f"{index}: {sent.refused if sent else 'not sent'}")
            continue
        failed = [r for r in sent.results if isinstance(r, NotWritten)]
        shown.append(f"{index}: {len(failed)} failed" + (f", e.g. {failed[0].message}" if failed else ""))
    return "; ".join(shown)


@attrs.define
class Report:
    written: int = 0
    failed: int = 0
    failed_present: int = 0
    unanswered: int = 0
    codes: Counter[str] = attrs.Factory(Counter)
    problems: list[str] = attrs.Factory(list)


def judge(producing: Producing, stored: list[Any], after_first: int) -> Report:
    """What the log holds against what each record was told."""
    report = Report()
    in_log: dict[bytes, list[tuple[int, int]]] = {}
    for record in stored:
        if record.value is None or not record.value.startswith(producing.run.encode()):
            report.problems.append(f"a record nobody produced: {record.partition}/{record.offset} {record.value!r}")
            continue
        in_log.setdefault(record.value, []).append((record.partition, record.offset))
    late = f"{producing.run}-late".encode()
    twice = {value: places for value, places in in_log.items() if len(places) > 1}
    for value, places in list(twice.items())[:10]:
        report.problems.append(f"{value!r} is in the log {len(places)} times: {places}")
    if len(twice) > 10:
        report.problems.append(f"... {len(twice)} records in the log more than once")
    sent_values: set[bytes] = {late}
    for index, sent in sorted(producing.commands.items()):
        if sent.results is None:
            report.unanswered += len(sent.records)
            report.problems.append(f"command {index} has no results: {sent.refused}")
            continue
        if len(sent.results) != PER_COMMAND:
            report.problems.append(f"command {index}: {len(sent.results)} results for {PER_COMMAND} records")
            continue
        during = BEFORE <= index < BEFORE + DURING
        if during and sent.took > COMMAND_DEADLINE:
            report.problems.append(f"command {index}, sent while the broker was down, took {sent.took:.1f}s")
        for record, result in zip(sent.records, sent.results, strict=True):
            assert record.value is not None
            sent_values.add(record.value)
            places = in_log.get(record.value, [])
            if isinstance(result, Written):
                report.written += 1
                if places != [(result.partition, result.offset)]:
                    where = f"{result.partition}/{result.offset}"
                    report.problems.append(f"{record.value!r} was written at {where}; the log has it at {places}")
                if during:
                    report.problems.append(f"{record.value!r} was written while the broker was down")
                if record.partition is not None and result.partition != record.partition:
                    report.problems.append(f"{record.value!r} asked for partition {record.partition}, got {result}")
                continue
            report.failed += 1
            report.failed_present += bool(places)
            report.codes[ErrorCode(result.code).name] += 1
            if result.code not in OUTAGE_CODES:
                report.problems.append(f"{record.value!r} failed with code {result.code}: {result.message}")
            if during and places:
                report.problems.append(f"{record.value!r}, sent while the broker was down, is in the log: {places}")
            if index >= after_first:
                report.problems.append(f"{record.value!r}, sent after the recovery, failed: {result.message}")
    unknown = set(in_log) - sent_values
    for value in sorted(unknown)[:10]:
        report.problems.append(f"{value!r} is in the log but was never sent")
    return report
