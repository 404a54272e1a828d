"""The produce scenarios: records written through the proxy, against kafka-python writing directly.

* ``produce_throughput``: one session writing records of PRODUCE_RECORD_BYTES
  in commands of PRODUCE_RECORDS_PER_COMMAND (acks=all), keeping as many
  commands in flight as the proxy's session budget holds, against a direct
  kafka-python producer set up exactly as the proxy's shared producer is
  (``producer_config`` of the route: acks=all, idempotence, linger, batch
  size) with as many records in flight;
* ``produce_latency``: one record per command, one command after another,
  against the same direct producer sending one record after another, each
  acknowledged before the next;
* ``produce_fanin``: many sessions each sending PRODUCE_FANIN_RATE commands of
  one record a second; the time from each command to its answer, and every
  error.

Every timed run writes to a fresh topic of one partition and starts fresh
processes: each proxy run a proxy process of its own, each direct run a
producer process of its own. One untimed direct run first warms the broker's
produce path for every writer alike.
"""

from __future__ import annotations

import collections
import contextlib
import math
import time
from typing import TYPE_CHECKING, Any

from .children import Child, say
from .context import Bench
from .plan import (
    BUCKET_MS,
    CHILD_START_TIMEOUT,
    FANOUT_SESSIONS_PER_PROC,
    PRODUCE_FANIN_RATE,
    PRODUCE_FANIN_RECORD_BYTES,
    PRODUCE_LATENCY_WARMUP,
    PRODUCE_RECORD_BYTES,
    PRODUCE_RECORDS_PER_COMMAND,
    READ_TIMEOUT,
    REQUEST_TIMEOUT,
    ROUTE,
    BenchError,
    histogram_percentile,
    percentile,
    shares,
)
from .probe import Probe
from .proxy import Proxy

if TYPE_CHECKING:
    from kafka_ws_trio import RouteConfig

#: Seconds of py-spy samples (--profile) of a proxy's throughput and latency runs.
PRODUCE_PROFILE_SECONDS = 8.0
#: Seconds to wait for the answers of fan-in commands still in flight when sending stops.
FANIN_WAIT_SECONDS = 15.0


def _fresh_topic(bench: Bench, what: str) -> str:
    """A new empty topic of one partition: every timed run writes to a topic of its own."""
    topic, _ = bench.create_topic(f"{what}-{len(bench.topics) + 1}", 0, PRODUCE_RECORD_BYTES)
    return topic


def route_config(bench: Bench) -> RouteConfig:
    """The proxy's route as the bench configures it (its defaults plus any --route overrides)."""
    from kafka_ws_trio import ProxyConfig

    (route,) = ProxyConfig.single_route([bench.bootstrap], ROUTE, **bench.route_options).routes
    return route


def producer_settings(bench: Bench) -> dict[str, Any]:
    """What the proxy gives kafka-python for the route's acks=all producer: the direct producer's settings."""
    from kafka_ws_trio._kafka._settings import producer_config

    return producer_config(route_config(bench), -1) | {"client_id": "kwt-bench-direct"}


def commands_in_flight(bench: Bench) -> int:
    """Commands of PRODUCE_RECORDS_PER_COMMAND records the proxy's session budget (produce_session_*) holds at once."""
    route = route_config(bench)
    by_records = route.produce_session_records // PRODUCE_RECORDS_PER_COMMAND
    by_bytes = route.produce_session_bytes // (PRODUCE_RECORDS_PER_COMMAND * PRODUCE_RECORD_BYTES)
    return max(1, min(by_records, by_bytes))


def _direct_spec(bench: Bench, topic: str, mode: str, count: int, **fields: Any) -> dict[str, Any]:
    return {
        "kind": "kafka_python_producer",
        "config": producer_settings(bench),
        "topic": topic,
        "mode": mode,
        "count": count,
        "value_bytes": PRODUCE_RECORD_BYTES,
        **fields,
    }


def _run_worker(
    bench: Bench, name: str, spec: dict[str, Any], proxy: Proxy | None = None, profile: str = ""
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One fresh client process: ready, then the clock ("go") to its result; the result and the resources.

    With ``profile`` (and --profile), the proxy is recorded under that name.
    """
    (worker,) = bench.workers(name, [spec])
    try:
        worker.expect("ready", CHILD_START_TIMEOUT)
        probe = Probe(proxy, bench.broker_pid)
        probe.add_clients([worker])
        probe.start()
        profiling = (
            bench.profiled(proxy, profile, PRODUCE_PROFILE_SECONDS)
            if proxy is not None and profile
            else contextlib.nullcontext()
        )
        with profiling:
            worker.send("go")
            result = worker.expect("result", READ_TIMEOUT)
        resources = probe.stop()
    finally:
        worker.stop()
    return result, resources


# ------------------------------------------------------------------ throughput


def _throughput_once(bench: Bench, kind: str, count: int, name: str, profile: bool) -> tuple[float, float, Any]:
    """One timed write of ``count`` records to a fresh topic: its rate, CPU seconds of the writer, and details."""
    topic = _fresh_topic(bench, f"produce-{kind}")
    depth = commands_in_flight(bench)
    if kind == "kafka_python":
        spec = _direct_spec(bench, topic, "throughput", count, warmup=1, in_flight=depth * PRODUCE_RECORDS_PER_COMMAND)
        result, resources = _run_worker(bench, f"produce-direct-{name}", spec)
        return count / result["seconds"], result["cpu_seconds"], (result, resources)
    proxy = bench.proxy(f"proxy-produce-{name}")
    try:
        spec = bench.spec(
            proxy,
            kind="produce",
            topic=topic,
            count=count,
            per_command=PRODUCE_RECORDS_PER_COMMAND,
            depth=depth,
            value_bytes=PRODUCE_RECORD_BYTES,
        )
        result, resources = _run_worker(bench, f"produce-{name}", spec, proxy, f"produce-{name}" if profile else "")
    finally:
        proxy.stop()
    if result["records"] != count:
        raise BenchError(f"the proxy wrote {result['records']} of {count} records")
    return count / result["seconds"], resources["proxy_cpu_seconds"], (result, resources)


def run_produce_throughput(bench: Bench) -> None:
    count = bench.plan.produce_records
    writers = ("kafka_python", "proxy")
    rates: dict[str, list[float]] = {kind: [] for kind in writers}
    cpu: dict[str, list[float]] = {kind: [] for kind in writers}
    proxy_runs: list[tuple[float, Any]] = []
    # Untimed: the broker's JIT warms up on its produce path (for every writer alike).
    _throughput_once(bench, "kafka_python", count, "warmup", profile=False)
    for repeat in range(bench.plan.produce_repeats):
        for kind in writers:
            rate, seconds, run = _throughput_once(bench, kind, count, f"{kind}-run{repeat + 1}", profile=repeat == 0)
            rates[kind].append(rate)
            cpu[kind].append(seconds)
            if kind == "proxy":
                proxy_runs.append((rate, run))
        say(
            f"produce 1 KiB, run {repeat + 1}: proxy {rates['proxy'][-1]:,.0f}/s, "
            f"kafka-python {rates['kafka_python'][-1]:,.0f}/s"
        )
    median = {kind: sorted(values)[len(values) // 2] for kind, values in rates.items()}
    _, (result, resources) = min(proxy_runs, key=lambda run: abs(run[0] - median["proxy"]))
    settings = producer_settings(bench)
    bench.results["produce_throughput"] = {
        "records": count,
        "record_bytes": PRODUCE_RECORD_BYTES,
        "records_per_command": PRODUCE_RECORDS_PER_COMMAND,
        "commands_in_flight": result["details"]["commands_in_flight"],
        "repeats": bench.plan.produce_repeats,
        # Unrounded: the target is checked against this value; the table rounds it for printing only.
        "ratio_vs_kafka_python": median["proxy"] / median["kafka_python"],
        "proxy_records_per_s": round(median["proxy"]),
        "kafka_python_records_per_s": round(median["kafka_python"]),
        "proxy_mb_per_s": round(median["proxy"] * PRODUCE_RECORD_BYTES / 1e6, 1),
        "runs_records_per_s": {kind: [round(v) for v in values] for kind, values in rates.items()},
        # Median CPU time per record of each writer's process (the proxy's for the proxy).
        "cpu_us_per_record": {
            kind: round(1e6 * sorted(values)[len(values) // 2] / count, 1) for kind, values in cpu.items()
        },
        "producer": {key: settings[key] for key in ("acks", "enable_idempotence", "linger_ms", "batch_size")},
        "direct_in_flight_records": commands_in_flight(bench) * PRODUCE_RECORDS_PER_COMMAND,
        "fresh_proxy_per_run": True,
        "frames": result["frames"],
        "commands": result["details"]["commands"],
        "client_cpu_pct": round(100 * result["cpu_seconds"] / result["seconds"], 1),
        **resources,
    }


# ------------------------------------------------------------------ latency


def _latency_figures(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        # Unrounded: the p99s are compared with each other.
        "p50_ms": percentile(ordered, 0.50),
        "p99_ms": percentile(ordered, 0.99),
        "max_ms": round(ordered[-1], 2),
        "mean_ms": round(sum(ordered) / len(ordered), 2),
    }


def run_produce_latency(bench: Bench) -> None:
    count = bench.plan.produce_latency_commands
    spec = _direct_spec(bench, _fresh_topic(bench, "produce-latency-direct"), "latency", count)
    direct, _ = _run_worker(bench, "produce-latency-direct", spec | {"warmup": PRODUCE_LATENCY_WARMUP})
    proxy = bench.proxy("proxy-produce-latency")
    try:
        spec = bench.spec(
            proxy,
            kind="produce_latency",
            topic=_fresh_topic(bench, "produce-latency"),
            count=count,
            warmup=PRODUCE_LATENCY_WARMUP,
            value_bytes=PRODUCE_RECORD_BYTES,
        )
        result, resources = _run_worker(bench, "produce-latency", spec, proxy, "produce_latency")
    finally:
        proxy.stop()
    mine, theirs = _latency_figures(result["latencies_ms"]), _latency_figures(direct["latencies_ms"])
    say(
        f"produce latency: proxy p50 {mine['p50_ms']:.2f} / p99 {mine['p99_ms']:.2f} ms, "
        f"kafka-python p50 {theirs['p50_ms']:.2f} / p99 {theirs['p99_ms']:.2f} ms"
    )
    bench.results["produce_latency"] = {
        "commands": count,
        "record_bytes": PRODUCE_RECORD_BYTES,
        "warmup_commands": PRODUCE_LATENCY_WARMUP,
        **mine,
        **{f"kafka_python_{key}": value for key, value in theirs.items()},
        # Unrounded: checked against its target (the proxy's p99 over the direct producer's).
        "p99_ratio_vs_kafka_python": mine["p99_ms"] / theirs["p99_ms"],
        "linger_ms": producer_settings(bench)["linger_ms"],
        # CPU time per command of the proxy process (all its threads) and of the direct producer's process.
        "cpu_us_per_command": {
            "proxy": round(1e6 * resources["proxy_cpu_seconds"] / count, 1),
            "kafka_python": round(1e6 * direct["cpu_seconds"] / count, 1),
        },
        "what": "one record per command (acks=all), each answered before the next; direct: send().get() in turn",
        "fresh_proxy_per_run": True,
        **resources,
    }


# ------------------------------------------------------------------ fan-in

#: The route's produce counters the fan-in reads from the proxy's statistics.
_COUNTERS = ("records_produced", "records_failed", "produce_records_in_flight")


def _counters(proxy: Proxy) -> dict[str, Any]:
    """The proxy's produce counters and the time; empty when they are not there or the proxy is too busy to say."""
    try:
        stats = proxy.stats()
    except BenchError as exc:
        say(f"no statistics from the proxy: {str(exc).splitlines()[0]}")
        return {}
    route = stats["upstreams"][ROUTE]
    if any(key not in route for key in _COUNTERS):
        return {}
    return {"t": stats["t"], **{key: route[key] for key in _COUNTERS}}


def _counted(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    if not before or not after:
        return {"proxy_records_produced_per_s": None, "proxy_records_failed": None, "proxy_records_in_flight": None}
    seconds = after["t"] - before["t"]
    return {
        "proxy_records_produced_per_s": round((after["records_produced"] - before["records_produced"]) / seconds, 1),
        "proxy_records_failed": after["records_failed"] - before["records_failed"],
        "proxy_records_in_flight": after["produce_records_in_flight"],
    }


def run_produce_fanin(bench: Bench) -> None:
    """Sessions each writing PRODUCE_FANIN_RATE commands of one record a second to one partition, on a fresh proxy."""
    plan = bench.plan
    sessions = plan.produce_fanin_sessions
    procs = min(bench.client_procs, math.ceil(sessions / FANOUT_SESSIONS_PER_PROC))
    split = shares(sessions, procs)
    firsts = [sum(split[:i]) for i in range(len(split))]
    topic = _fresh_topic(bench, "produce-fanin")
    proxy = bench.proxy(f"proxy-produce-fanin-{sessions}")
    clients: list[Child] = []
    try:
        clients = bench.workers(
            f"produce-fanin-{sessions}",
            [
                bench.spec(
                    proxy,
                    kind="produce_fanin",
                    topic=topic,
                    sessions=n,
                    first_index=first,
                    total_sessions=sessions,
                    rate=PRODUCE_FANIN_RATE,
                    value_bytes=PRODUCE_FANIN_RECORD_BYTES,
                )
                for n, first in zip(split, firsts, strict=True)
            ],
        )
        opened = 0
        for client in clients:
            ready = client.expect("ready", CHILD_START_TIMEOUT + sessions / 10 + REQUEST_TIMEOUT)
            opened += ready["opened"]
            if ready["failed"]:
                say(f"{client.name}: {ready['failed']} sessions failed to open: {ready['first_error']}")
        if opened < sessions:
            raise BenchError(f"only {opened} of {sessions} produce fan-in sessions opened")
        for client in clients:
            client.send("go")
        time.sleep(plan.produce_fanin_warmup)
        t0 = math.ceil(time.time())
        t1 = t0 + round(plan.produce_fanin_window)
        time.sleep(max(0.0, t0 - time.time()))
        probe = Probe(proxy, bench.broker_pid)
        probe.add_clients(clients)
        before = _counters(proxy)
        probe.start()
        with bench.profiled(proxy, f"produce_fanin_{sessions}", t1 - time.time()):
            time.sleep(max(0.0, t1 - time.time()))
        resources = probe.stop()
        after = _counters(proxy) if before else {}
        for client in clients:
            client.send("finish", t0=t0, t1=t1, wait=FANIN_WAIT_SECONDS)
        results = [client.expect("result", FANIN_WAIT_SECONDS + CHILD_START_TIMEOUT) for client in clients]
    finally:
        for child in clients:
            child.stop()
        proxy.stop()
    hist: collections.Counter[int] = collections.Counter()
    for result in results:
        hist.update({bucket: count for bucket, count in result["hist"]})
    acknowledged = sum(hist.values())
    missing = sum(r["unanswered_in_window"] for r in results)
    counts = {
        key: sum(r[key] for r in results)
        for key in ("error_answers", "not_written", "unanswered", "strays", "sessions_lost")
    }
    first_error = next((r["first_error"] for r in results if r["first_error"]), "")
    sent_in_window = sum(r["sent_in_window"] for r in results)
    window = t1 - t0
    run: dict[str, Any] = {
        "sessions": sessions,
        "rate_per_session": PRODUCE_FANIN_RATE,
        "record_bytes": PRODUCE_FANIN_RECORD_BYTES,
        "records_per_command": 1,
        # None: the percentile lies among commands never answered (within the wait).
        "p50_ms": histogram_percentile(hist, missing, 0.50),
        "p99_ms": histogram_percentile(hist, missing, 0.99),
        "max_ms": round(max(hist) * BUCKET_MS, 1) if hist else None,
        "mean_ms": round(sum(b * c for b, c in hist.items()) * BUCKET_MS / acknowledged, 1)
        if acknowledged and not missing
        else None,
        # Every command that failed in any way, warm-up included: refused, a record not written,
        # never answered within the wait, an answer to no command, a session the proxy closed.
        "errors": sum(counts.values()),
        **counts,
        "first_error": first_error,
        "commands_in_window": sent_in_window,
        "acknowledged_in_window": acknowledged,
        "unanswered_in_window": missing,
        "commands_per_s": round(sent_in_window / window, 1),
        "acknowledged_per_s": round(acknowledged / window, 1),
        # The proxy's own counts over the window (None when its statistics did not answer in time,
        # or a --proxy-package has no such counters): records with their result, failed, in flight at the end.
        **_counted(before, after),
        "commands_sent": sum(r["sent"] for r in results),
        "records_written": sum(r["written"] for r in results),
        "warmup_seconds": plan.produce_fanin_warmup,
        "window_seconds": window,
        "wait_seconds": FANIN_WAIT_SECONDS,
        "client_proc_cpu_pct": [round(100 * r["cpu_seconds"] / r["wall_seconds"], 1) for r in results],
        "fresh_proxy_per_run": True,
        **resources,
    }
    bench.results["produce_fanin"] = run
    p99 = run["p99_ms"]
    say(
        f"produce fan-in {sessions}: p50 {run['p50_ms']} ms, p99 {p99 if p99 is not None else 'unanswered'} ms, "
        f"{run['commands_per_s']:,.0f} commands/s, {run['errors']} errors, proxy CPU {run['proxy_cpu_pct']}%"
        + (f"; first error: {first_error}" if first_error else "")
    )
