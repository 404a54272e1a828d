"""The consumer-group scenarios (issue 12): members reading through the proxy, a member leaving, members' cost.

* ``group_throughput``: GROUP_THROUGHPUT_MEMBERS sessions, each with one group
  stream of one group, read a topic of GROUP_PARTITIONS partitions to its end,
  against as many direct kafka-python ``KafkaConsumer``s with a ``group_id``
  (a process each) reading the same topic in the same run, a fresh group each;
* ``group_rebalance``: GROUP_REBALANCE_MEMBERS members of one group tail the
  topic while a producer writes GROUP_REBALANCE_RATE records a second over
  every partition; one member unsubscribes, and the time from its answer until
  the other has received a record of every partition it had;
* ``group_members``: members opened one at a time, each in a group of its own,
  until the proxy answers OVERLOADED; its RSS, threads and connections to the
  broker before and after, and what one member adds.

Every group is new (a unique name per run). Every timed run starts fresh
processes: each proxy run a proxy of its own, each member a client process of
its own (group_throughput) and each direct member a process of its own. Before
a clock starts the group must have settled: every member owns partitions, and
together they own every partition of the topic once (asked of the members
with "state" until two answers in a row agree).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Any

from .children import Child, say
from .context import Bench
from .fetch import reader_settings
from .plan import (
    CHILD_START_TIMEOUT,
    GROUP_JOIN_TIMEOUT,
    GROUP_PARTITIONS,
    GROUP_REBALANCE_MEMBERS,
    GROUP_REBALANCE_RATE,
    GROUP_REBALANCE_STEADY,
    GROUP_RECORD_BYTES,
    GROUP_SETTLE_TIMEOUT,
    GROUP_THROUGHPUT_MEMBERS,
    READ_TIMEOUT,
    REQUEST_TIMEOUT,
    ROUTE,
    STATS_TIMEOUT,
    STREAM_CREDIT_RECORDS,
    BenchError,
    partition_ends,
)
from .probe import Probe, rss_mib
from .produce import route_config
from .proxy import Proxy

#: Seconds of py-spy samples (--profile) of a proxy's group read.
GROUP_PROFILE_SECONDS = 8.0
#: Seconds between two "state" rounds while a group settles.
SETTLE_POLL_SECONDS = 0.5
#: group_rebalance: seconds the survivor may take to receive a record of every partition it took over.
TAKEOVER_WAIT_SECONDS = 30.0
#: group_throughput: how long the group's full assignment must hold before "go" (two heartbeats),
#: and how many times a read whose group rebalanced after "go" is tried in all.
GROUP_STABLE_SECONDS = 2.0
READ_ATTEMPTS = 3
#: group_members: seconds to wait for the members' threads and connections to go after they close.
CLOSE_WAIT_SECONDS = 30.0
#: ErrorCode.OVERLOADED (schema/README.md): the answer that ends group_members.
OVERLOADED = 31


def _group_topic(bench: Bench) -> tuple[str, int]:
    """The topic group_throughput reads: GROUP_PARTITIONS partitions, the plan's records."""
    return bench.create_topic("group", bench.plan.group_records, GROUP_RECORD_BYTES, partitions=GROUP_PARTITIONS)


def _group_name(what: str) -> str:
    return f"kwt-bench-{what}-{uuid.uuid4().hex[:8]}"


def _settled(owned: list[list[int]]) -> bool:
    """Every member owns partitions, and together they own each partition of the topic exactly once."""
    flat = [p for partitions in owned for p in partitions]
    return all(owned) and sorted(flat) == list(range(GROUP_PARTITIONS))


def _settle(children: list[Child]) -> list[list[int]]:
    """Ask every member process for its members' partitions until the group has settled; what each owns.

    Settled: the same full assignment in every answer for GROUP_STABLE_SECONDS (two heartbeat
    intervals, so that a rebalance one member has heard of but not yet joined shows first).
    """
    deadline = time.monotonic() + GROUP_SETTLE_TIMEOUT
    previous: list[list[int]] | None = None
    stable_since = time.monotonic()
    while True:
        owned: list[list[int]] = []
        for child in children:
            child.send("state")
            owned += child.expect("state", STATS_TIMEOUT)["members"]
        now = time.monotonic()
        if not _settled(owned) or owned != previous:
            stable_since = now
        elif now - stable_since >= GROUP_STABLE_SECONDS:
            return owned
        if now > deadline:
            raise BenchError(f"the group did not settle within {GROUP_SETTLE_TIMEOUT:.0f}s: members own {owned}")
        previous = owned
        time.sleep(SETTLE_POLL_SECONDS)


# ------------------------------------------------------------------ throughput


def _direct_member(bench: Bench, topic: str, group: str, ends: dict[int, int]) -> dict[str, Any]:
    """A direct kafka-python group member: the direct reader's fetch settings, the route's group timings."""
    route = route_config(bench)
    return {
        "kind": "kafka_python_group",
        "topic": topic,
        "group": group,
        "ends": ends,
        "session_timeout_ms": int(route.group_session_timeout * 1000),
        "heartbeat_interval_ms": int(route.group_heartbeat_interval * 1000),
        **reader_settings(bench),
    }


def _read_once(bench: Bench, kind: str, topic: str, count: int, name: str, profile: bool) -> dict[str, Any]:
    """One timed read of the whole topic by GROUP_THROUGHPUT_MEMBERS members of a fresh group, each a fresh process.

    The clock runs from the first member's "go" to the last member's last record.
    """
    ends = partition_ends(count, GROUP_PARTITIONS)
    group = _group_name(name)
    proxy: Proxy | None = None
    children: list[Child] = []
    try:
        if kind == "proxy":
            proxy = bench.proxy(f"proxy-{name}")
            spec = bench.spec(proxy, kind="group_read", topic=topic, group=group, ends=ends)
        else:
            spec = _direct_member(bench, topic, group, ends)
        started = time.monotonic()
        children = bench.workers(name, [spec] * GROUP_THROUGHPUT_MEMBERS)
        readies = [child.expect("ready", CHILD_START_TIMEOUT + GROUP_JOIN_TIMEOUT) for child in children]
        owned = _settle(children)
        settle_seconds = time.monotonic() - started
        probe = Probe(proxy, bench.broker_pid)
        probe.add_clients(children)
        probe.start()
        profiling = (
            bench.profiled(proxy, name, GROUP_PROFILE_SECONDS)
            if proxy is not None and profile
            else contextlib.nullcontext()
        )
        with profiling:
            for child in children:
                child.send("go")
            results = [child.expect("result", READ_TIMEOUT) for child in children]
        resources = probe.stop()
    finally:
        for child in children:
            child.stop()
        if proxy is not None:
            proxy.stop()
    records = sum(r["records"] for r in results)
    by_partition = {p: sum(r["by_partition"].get(str(p), 0) for r in results) for p in ends}
    if records != count or by_partition != ends:
        raise BenchError(f"{name}: the members read {records} of {count} records, by partition {by_partition}")
    seconds = max(r["t_done"] for r in results) - min(r["t_start"] for r in results)
    cpu = resources["proxy_cpu_seconds"] if proxy is not None else sum(r["cpu_seconds"] for r in results)
    return {
        "rate": count / seconds,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "owned": owned,
        "settle_seconds": settle_seconds,
        "readies": readies,
        "results": results,
        "resources": resources,
    }


def run_group_throughput(bench: Bench) -> None:
    topic, count = _group_topic(bench)
    readers = ("kafka_python", "proxy")
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in readers}
    retried: list[str] = []

    def read(kind: str, name: str, profile: bool) -> dict[str, Any]:
        """One read; run again, with a fresh group, when its group rebalanced after "go" (at most READ_ATTEMPTS)."""
        attempt_name = name
        for attempt in range(READ_ATTEMPTS):
            try:
                return _read_once(bench, kind, topic, count, attempt_name, profile)
            except BenchError as exc:
                if "rebalanced during the timed read" not in str(exc) or attempt + 1 == READ_ATTEMPTS:
                    raise
                say(f"{attempt_name}: the group rebalanced during the read; running it again with a fresh group")
                retried.append(attempt_name)
                attempt_name = f"{name}-again{attempt + 1}"
        raise AssertionError("unreachable")

    # Untimed: the broker's JIT warms up on its fetch and group paths (for every reader alike).
    read("kafka_python", "group-direct-warmup", profile=False)
    for repeat in range(bench.plan.group_repeats):
        for kind in readers:
            name = f"group-{kind.replace('_', '-')}-run{repeat + 1}"
            runs[kind].append(read(kind, name, profile=repeat == 0))
        say(
            f"group read, run {repeat + 1}: proxy {runs['proxy'][-1]['rate']:,.0f}/s, "
            f"kafka-python {runs['kafka_python'][-1]['rate']:,.0f}/s "
            f"({GROUP_THROUGHPUT_MEMBERS} members each, {GROUP_PARTITIONS} partitions)"
        )

    def median(kind: str) -> dict[str, Any]:
        return sorted(runs[kind], key=lambda run: run["rate"])[len(runs[kind]) // 2]

    mine, theirs = median("proxy"), median("kafka_python")
    results = mine["results"]
    bench.results["group_throughput"] = {
        "members": GROUP_THROUGHPUT_MEMBERS,
        "partitions": GROUP_PARTITIONS,
        "records": count,
        "record_bytes": GROUP_RECORD_BYTES,
        "repeats": bench.plan.group_repeats,
        # Unrounded: the target is checked against this value; the table rounds it for printing only.
        "ratio_vs_kafka_python": mine["rate"] / theirs["rate"],
        "proxy_records_per_s": round(mine["rate"]),
        "kafka_python_records_per_s": round(theirs["rate"]),
        "proxy_mb_per_s": round(mine["rate"] * GROUP_RECORD_BYTES / 1e6, 1),
        "runs_records_per_s": {kind: [round(run["rate"]) for run in values] for kind, values in runs.items()},
        # CPU time per record: the proxy process (all its threads), or the four direct members' processes together.
        "cpu_us_per_record": {kind: round(1e6 * median(kind)["cpu_seconds"] / count, 1) for kind in readers},
        # Partitions each member owned during the timed read (the group had settled before the clock).
        "assignment": {kind: median(kind)["owned"] for kind in readers},
        # Each proxy member's seconds from its subscribe to its answer (the group's first assignment known),
        # and from starting the members' processes to a settled group, on each side.
        "join_answer_seconds": [round(r["join_seconds"], 2) for r in mine["readies"]],
        "settle_seconds": {kind: round(median(kind)["settle_seconds"], 2) for kind in readers},
        "kafka_python_records_before_go": sum(r["records_before_go"] for r in theirs["results"]),
        # Reads run again because their group rebalanced after "go" (each is run again once, with a fresh group).
        "reads_run_again": retried,
        "credit_window_records": STREAM_CREDIT_RECORDS,
        "grants": sum(r["grants"] for r in results),
        "caught_up_events": sum(r["caught_up_events"] for r in results),
        "error_events": sum(r["error_events"] for r in results),
        "fresh_proxy_per_run": True,
        "client_cpu_pct": round(100 * sum(r["cpu_seconds"] for r in results) / mine["seconds"], 1),
        **mine["resources"],
    }


# ------------------------------------------------------------------ rebalance


def _rebalance_once(bench: Bench, topic: str, repeat: int) -> dict[str, Any]:
    """Two members of a fresh group on a fresh proxy tail the topic; once settled and reading, one leaves."""
    name = f"group-rebalance-{repeat}"
    proxy = bench.proxy(f"proxy-{name}")
    children: list[Child] = []
    try:
        spec = bench.spec(
            proxy,
            kind="group_rebalance",
            topic=topic,
            group=_group_name(name),
            members=GROUP_REBALANCE_MEMBERS,
            wait=TAKEOVER_WAIT_SECONDS,
        )
        children = bench.workers(name, [spec])
        (client,) = children
        ready = client.expect("ready", CHILD_START_TIMEOUT + GROUP_JOIN_TIMEOUT)
        owned = _settle(children)
        time.sleep(GROUP_REBALANCE_STEADY)  # both members reading the producer's records
        probe = Probe(proxy, bench.broker_pid)
        probe.add_clients(children)
        probe.start()
        client.send("go")
        result = client.expect("result", 2 * GROUP_JOIN_TIMEOUT + TAKEOVER_WAIT_SECONDS)
        resources = probe.stop()
    finally:
        for child in children:
            child.stop()
        proxy.stop()
    return {"join_seconds": ready["join_seconds"], "owned_before": owned, **result, "resources": resources}


def run_group_rebalance(bench: Bench) -> None:
    # A topic of its own: its producer must not add to the topic group_throughput reads (members start at LATEST).
    topic, _ = bench.create_topic("group-rebalance", 0, GROUP_RECORD_BYTES, partitions=GROUP_PARTITIONS)
    (producer,) = bench.workers(
        "group-producer",
        [
            {
                "kind": "producer",
                "bootstrap": bench.bootstrap,
                "topic": topic,
                "rate": GROUP_REBALANCE_RATE,
                "value_bytes": GROUP_RECORD_BYTES,
                "partitions": GROUP_PARTITIONS,
            }
        ],
    )
    runs: list[dict[str, Any]] = []
    try:
        producer.expect("ready", CHILD_START_TIMEOUT)
        producer.send("go")
        for repeat in range(1, bench.plan.group_rebalance_repeats + 1):
            run = _rebalance_once(bench, topic, repeat)
            runs.append(run)
            takeover = run["takeover_seconds"]
            say(
                f"group rebalance {repeat}: unsubscribe answered in {run['unsubscribe_seconds']:.2f}s, "
                + (
                    f"survivor had a record of all {len(run['handed_over'])} partitions {takeover:.2f}s later"
                    if takeover is not None
                    else f"partitions {run['missing']} had no record at the survivor {TAKEOVER_WAIT_SECONDS:.0f}s later"
                )
            )
        producer.send("stop", t0=0, t1=0)
        produced = producer.expect("result", CHILD_START_TIMEOUT)
    finally:
        producer.stop()
    takeovers = [run["takeover_seconds"] for run in runs]
    done = sorted(t for t in takeovers if t is not None)
    missing = len(takeovers) - len(done)
    # A repeat whose survivor never had every partition counts as infinitely long (None in the JSON).
    ordered: list[float | None] = [*done, *([None] * missing)]
    bench.results["group_rebalance"] = {
        "members": GROUP_REBALANCE_MEMBERS,
        "partitions": GROUP_PARTITIONS,
        "repeats": len(runs),
        "produce_rate": GROUP_REBALANCE_RATE,
        "produce_rate_achieved": round(produced["rate"], 1),
        "record_bytes": GROUP_RECORD_BYTES,
        # Unrounded: max_seconds is checked against its target.
        "median_seconds": ordered[(len(ordered) - 1) // 2],
        "max_seconds": ordered[-1],
        "runs_seconds": takeovers,
        "unsubscribe_answer_seconds": [round(run["unsubscribe_seconds"], 3) for run in runs],
        "takeovers_missing": missing,
        # Partitions where the survivor did not start exactly where the leaver's delivered (and committed)
        # position was: records lost or read twice across the hand-over.
        "handover_mismatches": sum(len(run["handover_mismatches"]) for run in runs),
        "leaver_records_after_answer": sum(run["leaver_records_after_answer"] for run in runs),
        "error_events": sum(run["error_events"] for run in runs),
        "wait_seconds": TAKEOVER_WAIT_SECONDS,
        "steady_seconds": GROUP_REBALANCE_STEADY,
        "auto_commit": True,
        "fresh_proxy_per_run": True,
        "runs": [{key: value for key, value in run.items() if key != "resources"} for run in runs],
        **runs[-1]["resources"],
    }


# ------------------------------------------------------------------ members


def _footprint(proxy: Proxy, broker_port: int) -> dict[str, Any]:
    """The proxy's RSS, threads, file descriptors and established TCP connections to the broker's port."""
    process = proxy.process
    connections = [
        c
        for c in process.net_connections(kind="tcp")
        if c.raddr and c.raddr.port == broker_port and c.status == "ESTABLISHED"
    ]
    return {
        "rss_mib": round(rss_mib(process), 2),
        "threads": process.num_threads(),
        "fds": process.num_fds(),
        "broker_connections": len(connections),
    }


def _members_open(proxy: Proxy) -> int:
    return int(proxy.stats()["upstreams"][ROUTE]["group_members_open"])


def run_group_members(bench: Bench) -> None:
    """Members opened one at a time, each in a group of its own, until OVERLOADED; on one fresh proxy."""
    from kafka_ws_trio import ServerConfig

    limit = bench.plan.group_members_limit
    route = {"max_group_members": limit}
    route_limit = {**route, **bench.route_options}["max_group_members"]
    server_limit = bench.server_options.get("max_group_members", ServerConfig().max_group_members)
    bound = min(route_limit, server_limit)
    topic, _ = bench.create_topic("group-members", 0, GROUP_RECORD_BYTES, partitions=GROUP_PARTITIONS)
    broker_port = int(bench.bootstrap.rsplit(":", 1)[1])
    proxy = bench.proxy("proxy-group-members", route=route)
    children: list[Child] = []
    series: list[dict[str, Any]] = []
    refusal: dict[str, Any] | None = None
    try:
        children = bench.workers(
            "group-members", [bench.spec(proxy, kind="group_members", topic=topic, group=_group_name("members"))]
        )
        (client,) = children
        client.expect("ready", CHILD_START_TIMEOUT + REQUEST_TIMEOUT)
        before = _footprint(proxy, broker_port)
        probe = Probe(proxy, bench.broker_pid)
        probe.add_clients(children)
        probe.start()
        for _ in range(bound + 1):
            client.send("open")
            opened = client.expect("opened", GROUP_JOIN_TIMEOUT + REQUEST_TIMEOUT)
            if not opened["ok"]:
                if opened["code"] != OVERLOADED:
                    raise BenchError(f"group member {len(series) + 1} was refused: {opened}")
                refusal = opened
                break
            series.append(
                {
                    "members": len(series) + 1,
                    "join_seconds": round(opened["seconds"], 3),
                    **_footprint(proxy, broker_port),
                }
            )
        resources = probe.stop()
        after = _footprint(proxy, broker_port)
        stats = proxy.stats()["upstreams"][ROUTE]
        client.send("close")
        closing = time.monotonic()
        client.expect("closed", REQUEST_TIMEOUT + CHILD_START_TIMEOUT)
        deadline = closing + CLOSE_WAIT_SECONDS
        while True:
            closed = _footprint(proxy, broker_port)
            gone = _members_open(proxy) == 0 and closed["threads"] <= before["threads"]
            if gone or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        closed_seconds = time.monotonic() - closing
    finally:
        for child in children:
            child.stop()
        proxy.stop()
    count = len(series)
    if not count:
        raise BenchError(f"no group member opened: {refusal}")

    def per_member(key: str, scale: float = 1.0) -> float:
        return round(scale * float(after[key] - before[key]) / count, 2)

    joins = sorted(point["join_seconds"] for point in series)
    bench.results["group_members"] = {
        "members": count,
        "grouping": "each member a session with one group stream, in a group of its own",
        "route_max_group_members": route_limit,
        "server_max_group_members": server_limit,
        "refused": refusal is not None,
        "refusal_code": refusal["code"] if refusal else None,
        "refusal_message": refusal["message"] if refusal else "",
        "partitions": GROUP_PARTITIONS,
        "before": before,
        "after": after,
        "after_close": closed,
        "after_close_seconds": round(closed_seconds, 1),
        "rss_per_member_kib": per_member("rss_mib", 1024.0),
        "threads_per_member": per_member("threads"),
        "broker_connections_per_member": per_member("broker_connections"),
        "fds_per_member": per_member("fds"),
        "join_seconds_median": joins[(count - 1) // 2],
        "join_seconds_max": joins[-1],
        "group_members_open": stats.get("group_members_open"),
        "group_members_joined": stats.get("group_members_joined"),
        "series": series,
        "fresh_proxy_per_run": True,
        **resources,
    }
    say(
        f"group members: {count} opened"
        + (f", then {refusal['message']}" if refusal else f", not refused at {bound + 1}")
        + f"; per member {bench.results['group_members']['rss_per_member_kib']} KiB, "
        f"{bench.results['group_members']['threads_per_member']} threads, "
        f"{bench.results['group_members']['broker_connections_per_member']} broker connections"
    )
