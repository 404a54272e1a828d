"""The read scenarios: partitions read from offset 0 to their end, through the proxy and directly.

* ``fetch_throughput`` (and ``_100b``): one session keeping Fetch requests in
  flight, against kafka-python and confluent-kafka reading directly;
* ``stream_throughput``: one push stream reading the same partition, against
  the same direct readers;
* ``stream_partitions``: one stream over a topic of STREAM_PARTITIONS
  partitions holding as many records in all, against one stream over the
  single-partition topic.

Every timed read starts fresh processes: each proxy read gets a proxy process
of its own (started, its session's ListOffset or paused subscribe answered,
then the clock), and each direct read a reader process of its own. Nothing of
an earlier repeat (the proxy's window, its partition readers, kafka-python's
buffers) is warm when a timed read begins; only the broker is shared, and one
untimed direct read warms its JIT first for every reader alike.
"""

from __future__ import annotations

import contextlib
from typing import Any

from .children import say
from .context import Bench
from .plan import (
    CHILD_START_TIMEOUT,
    READ_TIMEOUT,
    STREAM_CREDIT_RECORDS,
    STREAM_PARTITIONS,
    BenchError,
    partition_ends,
)
from .probe import Probe

#: Record size of the stream reads (the fetch scenario reads 1 KiB and 100 B).
STREAM_RECORD_BYTES = 1024
#: Seconds of py-spy samples (--profile) from a proxy's start: its session's setup and the read.
READ_PROFILE_SECONDS = 8.0


def reader_settings(bench: Bench) -> dict[str, Any]:
    """The direct readers fetch the way the proxy's own consumer does."""
    from kafka_ws_trio._config import DEFAULT_FETCH_MAX_BYTES, DEFAULT_FETCH_MAX_WAIT
    from kafka_ws_trio._kafka import MAX_POLL_RECORDS

    route = bench.route_options
    return {
        "bootstrap": bench.bootstrap,
        "fetch_max_bytes": route.get("fetch_max_bytes", DEFAULT_FETCH_MAX_BYTES),
        "max_poll_records": MAX_POLL_RECORDS,
        "fetch_max_wait_ms": int(route.get("fetch_max_wait", DEFAULT_FETCH_MAX_WAIT) * 1000),
    }


def _read_once(
    bench: Bench, kind: str, topic: str, count: int, partitions: int = 1, name: str = "", profile: bool = False
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One timed read of ``count`` records by a fresh reader process of ``kind``.

    ``fetch`` and ``stream`` read every partition of ``topic`` through a fresh
    proxy process of their own, named ``proxy-NAME`` (and with ``profile``
    recorded as NAME under --profile); the direct readers read partition 0.
    """
    if kind not in ("fetch", "stream"):
        spec = {"kind": kind, "topic": topic, "start": 0, "end": count, **reader_settings(bench)}
        return _timed(bench, spec, None, count)
    proxy = bench.proxy(f"proxy-{name}")
    try:
        if kind == "fetch":
            spec = bench.spec(proxy, kind=kind, topic=topic, start=0, end=count, depth=bench.depth)
        else:
            spec = bench.spec(proxy, kind=kind, topic=topic, ends=partition_ends(count, partitions))
        profiling = bench.profiled(proxy, name, READ_PROFILE_SECONDS) if profile else contextlib.nullcontext()
        with profiling:
            return _timed(bench, spec, proxy, count)
    finally:
        proxy.stop()


def _timed(bench: Bench, spec: dict[str, Any], proxy: Any, count: int) -> tuple[dict[str, Any], dict[str, Any]]:
    (worker,) = bench.workers(f"read-{spec['kind']}", [spec])
    try:
        worker.expect("ready", CHILD_START_TIMEOUT)
        probe = Probe(proxy, bench.broker_pid)
        probe.add_clients([worker])
        probe.start()
        worker.send("go")
        result = worker.expect("result", READ_TIMEOUT)
        resources = probe.stop()
    finally:
        worker.stop()
    if result["records"] != count:
        raise BenchError(f"{spec['kind']} read {result['records']} of {count} records")
    return result, resources


def _median_run(
    runs: list[tuple[dict[str, Any], dict[str, Any]]], count: int
) -> tuple[float, dict[str, Any], dict[str, Any]]:
    """The median rate of ``runs``, and the run that had it (for its resources and details)."""
    rates = sorted(count / result["seconds"] for result, _ in runs)
    median = rates[len(rates) // 2]
    result, resources = min(runs, key=lambda run: abs(count / run[0]["seconds"] - median))
    return median, result, resources


def _client(result: dict[str, Any]) -> dict[str, Any]:
    """What a proxy reader reports besides its count and time: its frames, its own figures, its CPU."""
    return {
        "frames": result["frames"],
        **result["details"],
        "client_cpu_pct": round(100 * result["cpu_seconds"] / result["seconds"], 1),
    }


def run_fetch(bench: Bench, record_bytes: int, key: str, via: str = "fetch") -> None:
    """One partition read through the proxy (``via`` Fetch requests or a stream) and by both direct readers."""
    topic, count = bench.create_topic(f"fetch-{record_bytes}b", bench.plan.fetch_records, record_bytes)
    readers = ("kafka_python", "confluent", via)
    rates: dict[str, list[float]] = {kind: [] for kind in readers}
    cpu: dict[str, list[float]] = {kind: [] for kind in readers}  # CPU seconds of the reader's process (the proxy's)
    proxy_runs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    # Untimed: the broker's JIT warms up on its fetch path (the first timed runs were slower).
    _read_once(bench, "kafka_python", topic, count)
    for repeat in range(bench.plan.fetch_repeats):
        for kind in readers:
            name = f"{via}-{record_bytes}b-run{repeat + 1}"
            result, resources = _read_once(bench, kind, topic, count, name=name, profile=repeat == 0)
            if kind == via:
                proxy_runs.append((result, resources))
            rates[kind].append(count / result["seconds"])
            cpu[kind].append(resources["proxy_cpu_seconds"] if kind == via else result["cpu_seconds"])
        say(
            f"{via} {record_bytes} B, run {repeat + 1}: proxy {rates[via][-1]:,.0f}/s, "
            f"kafka-python {rates['kafka_python'][-1]:,.0f}/s, confluent-kafka {rates['confluent'][-1]:,.0f}/s"
        )
    median = {kind: sorted(values)[len(values) // 2] for kind, values in rates.items()}
    _, result, resources = _median_run(proxy_runs, count)
    how = {"pipeline_depth": bench.depth} if via == "fetch" else {"credit_window_records": STREAM_CREDIT_RECORDS}
    bench.results[key] = {
        "records": count,
        "record_bytes": record_bytes,
        "repeats": bench.plan.fetch_repeats,
        # Unrounded: the target is checked against this value; the table rounds it for printing only.
        "ratio_vs_kafka_python": median[via] / median["kafka_python"],
        "proxy_records_per_s": round(median[via]),
        "kafka_python_records_per_s": round(median["kafka_python"]),
        "confluent_kafka_records_per_s": round(median["confluent"]),
        "proxy_mb_per_s": round(median[via] * record_bytes / 1e6, 1),
        "runs_records_per_s": {kind: [round(v) for v in values] for kind, values in rates.items()},
        # Median CPU time per record of each reader's process (for ``via``, the proxy's): what a record costs.
        "cpu_us_per_record": {
            ("proxy" if kind == via else kind): round(1e6 * sorted(values)[len(values) // 2] / count, 1)
            for kind, values in cpu.items()
        },
        "fresh_proxy_per_run": True,
        **how,
        **_client(result),
        **resources,
    }


def run_stream_throughput(bench: Bench) -> None:
    run_fetch(bench, STREAM_RECORD_BYTES, "stream_throughput", via="stream")


def run_stream_partitions(bench: Bench) -> None:
    """One stream over STREAM_PARTITIONS partitions against one stream over one, the same records in all."""
    single, count = bench.create_topic(f"fetch-{STREAM_RECORD_BYTES}b", bench.plan.fetch_records, STREAM_RECORD_BYTES)
    spread, _ = bench.create_topic(
        f"partitions-{STREAM_PARTITIONS}", count, STREAM_RECORD_BYTES, partitions=STREAM_PARTITIONS
    )
    runs: dict[int, list[tuple[dict[str, Any], dict[str, Any]]]] = {1: [], STREAM_PARTITIONS: []}
    # Untimed, as in run_fetch: the broker's JIT warms up on its fetch path.
    _read_once(bench, "kafka_python", single, count)
    for repeat in range(bench.plan.fetch_repeats):
        for partitions, topic in ((1, single), (STREAM_PARTITIONS, spread)):
            name = f"stream-{partitions}p-run{repeat + 1}"
            runs[partitions].append(_read_once(bench, "stream", topic, count, partitions, name, profile=repeat == 0))
        one, many = (count / runs[p][-1][0]["seconds"] for p in runs)
        say(f"stream over {STREAM_PARTITIONS} partitions, run {repeat + 1}: {many:,.0f}/s; over one: {one:,.0f}/s")
    single_rate, _, _ = _median_run(runs[1], count)
    rate, result, resources = _median_run(runs[STREAM_PARTITIONS], count)
    bench.results["stream_partitions"] = {
        "partitions": STREAM_PARTITIONS,
        "records": count,
        "record_bytes": STREAM_RECORD_BYTES,
        "repeats": bench.plan.fetch_repeats,
        # Unrounded: checked against its target.
        "ratio_vs_single_partition": rate / single_rate,
        "records_per_s": round(rate),
        "single_partition_records_per_s": round(single_rate),
        "mb_per_s": round(rate * STREAM_RECORD_BYTES / 1e6, 1),
        "runs_records_per_s": {
            str(p): [round(count / result["seconds"]) for result, _ in values] for p, values in runs.items()
        },
        "fresh_proxy_per_run": True,
        "credit_window_records": STREAM_CREDIT_RECORDS,
        **_client(result),
        **resources,
    }
