"""What a run measures and its bounds: the plans (quick, full), the named constants, small statistics.

Everything here is plain data and arithmetic, imported by every role (the
orchestrator, the proxy child, the load clients), so it imports nothing of
``kafka_ws_trio``: the proxy child may load that package from another tree
(``--proxy-package``) and must not have it imported before it chooses.
"""

from __future__ import annotations

import math
import os
import resource
from pathlib import Path
from typing import Final

import attrs

#: The repository whose ``bench`` package this is (the parent of ``bench/``).
REPO: Final = Path(__file__).resolve().parents[1]
KAFKA_SCRIPT: Final = REPO / "scripts" / "kafka"
BROKER_NAME: Final = "bench"
BROKER_PORT_BASE: Final = 25492  # below the ephemeral port range, like scripts/kafka's defaults
ROUTE: Final = "/kafka"
PARTITION: Final = 0
LATEST: Final = -1
EARLIEST: Final = -2

#: Fan-out: the producer's pace and the size of its records.
FANOUT_RATE: Final = 1000
FANOUT_RECORD_BYTES: Final = 100
#: Stream fan-out: the producer's pace (records of FANOUT_RECORD_BYTES).
STREAM_FANOUT_RATE: Final = 100
#: The credit window of every stream the load clients open, in records: granted at the subscribe,
#: and topped up by what was consumed each time half of it has been (what a real client would do).
STREAM_CREDIT_RECORDS: Final = 10_000
#: Partitions of the topic that stream_partitions reads with one stream.
STREAM_PARTITIONS: Final = 64
#: The id (the subscribe's sequence) of the one stream each load-client session opens.
STREAM_ID: Final = 1
#: Produce throughput and latency: the size of each record's value (no key, no headers).
PRODUCE_RECORD_BYTES: Final = 1024
#: Produce throughput: records per CmdProduce (the proxy's session budget bounds how many commands are in flight).
PRODUCE_RECORDS_PER_COMMAND: Final = 100
#: Produce latency: commands (and direct sends) before the timed ones, on each side.
PRODUCE_LATENCY_WARMUP: Final = 20
#: Produce fan-in: commands a second each session sends (one record each), and the records' value size.
PRODUCE_FANIN_RATE: Final = 10
PRODUCE_FANIN_RECORD_BYTES: Final = 100
#: Consumer groups (issue 12): the partitions of the topic the group scenarios read, and its records' size.
GROUP_PARTITIONS: Final = 8
GROUP_RECORD_BYTES: Final = 1024
#: group_throughput: members on each side (sessions through the proxy, kafka-python consumers directly).
GROUP_THROUGHPUT_MEMBERS: Final = 4
#: group_rebalance: members, and the paced producer's records a second, spread over every partition.
GROUP_REBALANCE_MEMBERS: Final = 2
GROUP_REBALANCE_RATE: Final = 200
#: group_rebalance: seconds of steady reading by both members before one leaves.
GROUP_REBALANCE_STEADY: Final = 2.0
#: Seconds a group subscribe may take to be answered (the answer waits for the group's first assignment),
#: and for a group to settle (every member owning partitions that cover the topic, none twice).
GROUP_JOIN_TIMEOUT: Final = 30.0
GROUP_SETTLE_TIMEOUT: Final = 60.0
#: auth_handshake (issue 13): handshakes in flight in the concurrent part (one client process; the server
#: takes 64 at once from one address), and untimed sessions through each fresh proxy before the timed ones.
AUTH_CONCURRENCY: Final = 16
AUTH_WARMUP: Final = 5
#: quota_isolation (issue 13): principal A's stream sessions (all sampled for latency) and the paced producer's
#: records a second (of FANOUT_RECORD_BYTES) on A's topic; principal B's quota, sessions and commands in flight.
QUOTA_READER_SESSIONS: Final = 4
QUOTA_PRODUCE_RATE: Final = 200
QUOTA_WRITER_RECORDS_PER_SECOND: Final = 50
QUOTA_WRITER_SESSIONS: Final = 2
QUOTA_WRITER_IN_FLIGHT: Final = 16
#: ops_scrape (issue 14): stream sessions held open beside the idle ones (one stream each, on an empty topic),
#: untimed scrapes of /metrics before the timed ones, the scraper's pace while first bytes are timed, and the
#: seconds the loaded proxy's CPU is read before the scrapes (what holding the sessions costs without them).
OPS_STREAM_SESSIONS: Final = 10
OPS_SCRAPE_WARMUP: Final = 5
OPS_SCRAPE_INTERVAL: Final = 0.1
OPS_HOLD_SECONDS: Final = 2.0
#: Seconds an idle proxy's CPU and broker polls are counted (idle sessions and idle streams).
IDLE_HOLD_SECONDS: Final = 5.0
#: Churn and first byte read a small topic: a fetch there is one short frame.
SMALL_TOPIC_RECORDS: Final = 10
SMALL_RECORD_BYTES: Final = 100
#: Fan-out latency is read from every record delivered to about this many sessions, spread evenly.
LATENCY_SESSIONS: Final = 100
#: Sessions one client process drives in the fan-out and holds in the idle test.
FANOUT_SESSIONS_PER_PROC: Final = 250
IDLE_SESSIONS_PER_PROC: Final = 2500
#: Handshakes one client process keeps in flight while opening sessions.
OPEN_CONCURRENCY: Final = 100
#: Sessions each churn process runs at the same time.
CHURN_CONCURRENCY: Final = 16
#: Seconds to wait before counting a quiet proxy's threads: trio's thread cache
#: lets an idle worker thread go after 10 s, so both counts see the same pool.
SETTLE_SECONDS: Final = 11.0
#: Latency histogram buckets, in milliseconds; from COARSE_FROM buckets on, ten are merged into one (1 ms).
BUCKET_MS: Final = 0.1
COARSE_FROM: Final = 1000
#: A client process busier than this (% of a core) may be what limits a figure: the table says so.
CLIENT_BOUND_PCT: Final = 80.0
#: Sessions warmed up through a fresh proxy before the first-byte samples are timed.
FIRST_BYTE_WARMUP: Final = 20
#: Sessions through a fresh idle-test proxy before its baseline RSS is read.
IDLE_WARMUP_SESSIONS: Final = 10
#: The proxy's session limit in every scenario but idle (which needs its session count plus IDLE_SPARE_SESSIONS).
MAX_SESSIONS: Final = 20_000
IDLE_SPARE_SESSIONS: Final = 1_000

#: Deadlines, seconds.
BROKER_UP_TIMEOUT: Final = 600.0
BROKER_DOWN_TIMEOUT: Final = 120.0
CHILD_START_TIMEOUT: Final = 60.0
CHILD_STOP_TIMEOUT: Final = 20.0
STATS_TIMEOUT: Final = 15.0
READ_TIMEOUT: Final = 300.0
REQUEST_TIMEOUT: Final = 30.0
COMMAND_TIMEOUT: Final = 1800.0
LOAD_TIMEOUT: Final = 300.0


@attrs.frozen
class Plan:
    """How big each scenario is."""

    name: str
    #: Records of each read from offset 0 and how many times it is timed: fetch, stream_throughput and
    #: stream_partitions (spread over STREAM_PARTITIONS there) read this many.
    fetch_records: int
    fetch_repeats: int
    fanout_sessions: tuple[int, ...]
    #: The stream fan-out's session counts (one stream each); the largest is where its p99 is judged.
    stream_fanout_sessions: tuple[int, ...]
    fanout_warmup: float
    fanout_window: float
    idle_sessions: int
    churn_sessions: int
    churn_warmup_sessions: int
    first_byte_samples: int
    #: produce_throughput: records of PRODUCE_RECORD_BYTES written by each timed run, and the repeats.
    produce_records: int
    produce_repeats: int
    #: produce_latency: timed commands of one record, one after another (and as many direct sends).
    produce_latency_commands: int
    #: produce_fanin: sessions each sending PRODUCE_FANIN_RATE commands a second, the warm-up and the
    #: window whose commands are measured (seconds).
    produce_fanin_sessions: int
    produce_fanin_warmup: float
    produce_fanin_window: float
    #: group_throughput: records of GROUP_RECORD_BYTES on the GROUP_PARTITIONS-partition topic, and the repeats.
    group_records: int
    group_repeats: int
    #: group_rebalance: how many times a member leaves (each on a fresh proxy and group).
    group_rebalance_repeats: int
    #: group_members: the route's max_group_members for the run (members are opened until OVERLOADED).
    group_members_limit: int
    #: auth_handshake: sessions timed one after another, then handshakes AUTH_CONCURRENCY at a time, on the
    #: routes without a credential and with JWTs; and on the API-key route, whose every handshake is one scrypt.
    auth_sequential: int
    auth_concurrent: int
    auth_key_sequential: int
    auth_key_concurrent: int
    #: quota_isolation: seconds of principal A's stream before its window, and the window (both runs).
    quota_warmup: float
    quota_window: float
    #: kafka_identity: sessions timed one after another on each of its three runs.
    identity_sequential: int
    #: ops_scrape: idle sessions open on each of its proxies, /metrics scrapes timed one after another, and
    #: sessions timed one after another (first byte) with and without a scraper.
    ops_sessions: int
    ops_scrapes: int
    ops_first_byte_samples: int


QUICK: Final = Plan(
    name="quick",
    fetch_records=50_000,
    fetch_repeats=1,
    fanout_sessions=(10, 100, 500),
    # 2,000 is the quick size; 200 is there only so that "flat in N" compares two counts.
    stream_fanout_sessions=(200, 2_000),
    fanout_warmup=3.0,
    fanout_window=10.0,
    idle_sessions=2_000,
    churn_sessions=2_000,
    churn_warmup_sessions=200,
    first_byte_samples=200,
    produce_records=50_000,
    produce_repeats=1,
    produce_latency_commands=1_000,
    produce_fanin_sessions=200,
    produce_fanin_warmup=3.0,
    produce_fanin_window=10.0,
    group_records=40_000,
    group_repeats=1,
    group_rebalance_repeats=3,
    group_members_limit=16,
    auth_sequential=200,
    auth_concurrent=1_000,
    auth_key_sequential=20,
    auth_key_concurrent=100,
    quota_warmup=3.0,
    quota_window=8.0,
    identity_sequential=40,
    ops_sessions=1_000,
    ops_scrapes=200,
    ops_first_byte_samples=500,
)
FULL: Final = Plan(
    name="full",
    fetch_records=200_000,
    fetch_repeats=3,
    fanout_sessions=(10, 100, 1_000),
    stream_fanout_sessions=(1_000, 5_000, 10_000),
    fanout_warmup=5.0,
    fanout_window=30.0,
    idle_sessions=10_000,
    churn_sessions=10_000,
    churn_warmup_sessions=500,
    first_byte_samples=1_000,
    produce_records=200_000,
    produce_repeats=3,
    produce_latency_commands=1_000,
    produce_fanin_sessions=1_000,
    produce_fanin_warmup=5.0,
    produce_fanin_window=30.0,
    group_records=400_000,
    group_repeats=3,
    group_rebalance_repeats=5,
    group_members_limit=64,
    auth_sequential=1_000,
    auth_concurrent=3_000,
    auth_key_sequential=50,
    auth_key_concurrent=200,
    quota_warmup=5.0,
    quota_window=20.0,
    identity_sequential=150,
    ops_sessions=5_000,
    ops_scrapes=500,
    ops_first_byte_samples=2_000,
)

SCENARIOS: Final = (
    "first_byte",
    "fetch",
    "fanout",
    "idle",
    "churn",
    "stream_throughput",
    "stream_fanout",
    "stream_partitions",
    "idle_streams",
    "produce_throughput",
    "produce_latency",
    "produce_fanin",
    "group_throughput",
    "group_rebalance",
    "group_members",
    "auth_handshake",
    "quota_isolation",
    "kafka_identity",
    "ops_scrape",
)


class BenchError(Exception):
    """A scenario could not be run; the message says why."""


def raise_nofile() -> None:
    """Raise this process's open-file limit to the hard limit (thousands of sessions need as many sockets)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def cpu_seconds() -> float:
    """User plus system CPU seconds of this process so far."""
    times = os.times()
    return times.user + times.system


def shares(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` counts that differ by at most one (the first ones get the remainder)."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def partition_ends(count: int, partitions: int) -> dict[int, int]:
    """Where each partition of a topic ``Bench.create_topic`` filled ends: record i is in partition i % partitions."""
    return dict(enumerate(shares(count, partitions)))


def percentile(sorted_values: list[float], fraction: float) -> float:
    """The value below which ``fraction`` of the (sorted) values lie; nearest rank."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def histogram_percentile(hist: dict[int, int], missing: int, fraction: float) -> float | None:
    """Percentile in ms of a histogram of BUCKET_MS buckets; ``missing`` samples count as infinite.

    Returns None when the percentile falls among the missing samples. The value is
    the bucket's lower edge: the histogram's resolution, not a rounding.
    """
    total = sum(hist.values()) + missing
    if total == 0:
        return None
    rank = max(1, math.ceil(fraction * total))
    seen = 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen >= rank:
            return round(bucket * BUCKET_MS, 1)
    return None
