"""The fetch-throughput scenario: one partition read from offset 0 to its end, through the proxy and directly.

Every timed read starts fresh processes: each proxy read gets a proxy process
of its own (started, its session's ListOffset answered, then the clock), and
each direct read a reader process of its own. Nothing of an earlier repeat
(the proxy's window, its partition reader, kafka-python's buffers) is warm
when a timed read begins; only the broker is shared, and one untimed direct
read warms its JIT first for every reader alike.
"""

from __future__ import annotations

import contextlib
from typing import Any

from .children import say
from .context import Bench
from .plan import CHILD_START_TIMEOUT, READ_TIMEOUT, BenchError
from .probe import Probe
from .proxy import Proxy

#: The readers of one repeat, in the order they run.
READERS = ("kafka_python", "confluent", "fetch")


def _direct_spec(bench: Bench) -> dict[str, Any]:
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
    bench: Bench, kind: str, proxy: Proxy | None, topic: str, count: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One timed read of [0, count) by a fresh reader process of ``kind`` (``fetch``: through ``proxy``)."""
    spec: dict[str, Any] = {"kind": kind, "topic": topic, "start": 0, "end": count}
    if proxy is not None:
        spec = bench.spec(proxy, depth=bench.depth, **spec)
    else:
        spec.update(_direct_spec(bench))
    (worker,) = bench.workers(f"read-{kind}", [spec])
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
    if result["records"] < count:
        raise BenchError(f"{kind} read {result['records']} of {count} records")
    return result, resources


def _read_through_fresh_proxy(
    bench: Bench, record_bytes: int, repeat: int, topic: str, count: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    proxy = bench.proxy(f"proxy-fetch-{record_bytes}b-run{repeat + 1}")
    try:
        profiling = bench.profiled(proxy, f"fetch_{record_bytes}b", 3) if repeat == 0 else contextlib.nullcontext()
        with profiling:
            return _read_once(bench, "fetch", proxy, topic, count)
    finally:
        proxy.stop()


def run_fetch(bench: Bench, record_bytes: int, key: str) -> None:
    topic, count = bench.create_topic(f"fetch-{record_bytes}b", bench.plan.fetch_records, record_bytes)
    rates: dict[str, list[float]] = {kind: [] for kind in READERS}
    proxy_runs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    # Untimed: the broker's JIT warms up on its fetch path (the first timed runs were slower).
    _read_once(bench, "kafka_python", None, topic, count)
    for repeat in range(bench.plan.fetch_repeats):
        for kind in READERS:
            if kind == "fetch":
                result, resources = _read_through_fresh_proxy(bench, record_bytes, repeat, topic, count)
                proxy_runs.append((result, resources))
            else:
                result, _ = _read_once(bench, kind, None, topic, count)
            rates[kind].append(count / result["seconds"])
        say(
            f"fetch {record_bytes} B, run {repeat + 1}: proxy {rates['fetch'][-1]:,.0f}/s, "
            f"kafka-python {rates['kafka_python'][-1]:,.0f}/s, confluent-kafka {rates['confluent'][-1]:,.0f}/s"
        )
    median = {kind: sorted(values)[len(values) // 2] for kind, values in rates.items()}
    # The proxy run whose rate is the median, for its resources and details.
    result, resources = min(proxy_runs, key=lambda run: abs(count / run[0]["seconds"] - median["fetch"]))
    bench.results[key] = {
        "records": count,
        "record_bytes": record_bytes,
        "repeats": bench.plan.fetch_repeats,
        # Unrounded: the target is checked against this value; the table rounds it for printing only.
        "ratio_vs_kafka_python": median["fetch"] / median["kafka_python"],
        "proxy_records_per_s": round(median["fetch"]),
        "kafka_python_records_per_s": round(median["kafka_python"]),
        "confluent_kafka_records_per_s": round(median["confluent"]),
        "proxy_mb_per_s": round(median["fetch"] * record_bytes / 1e6, 1),
        "runs_records_per_s": {kind: [round(v) for v in values] for kind, values in rates.items()},
        "fresh_proxy_per_run": True,
        "pipeline_depth": bench.depth,
        "frames": result["frames"],
        "duplicates": result["duplicates"],
        "gap_fills": result["gap_fills"],
        "client_cpu_pct": round(100 * result["cpu_seconds"] / result["seconds"], 1),
        **resources,
    }
