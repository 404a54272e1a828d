"""The fan-out scenarios: N sessions tail one partition while a paced producer writes to it.

``fanout``: each session fetches, one Fetch at a time. ``stream_fanout``: each
session opens one push stream (as a browser tab would) and grants credit as it
goes; every batch of every stream is checked for lost or repeated records, and
any such record fails the scenario.

Each session count gets a fresh proxy. Latency is receipt at the client minus
the record's CreateTime, over every delivery of every record produced in the
window, to about LATENCY_SESSIONS sessions; the broker's fetch rate is the
proxy's ``broker_polls`` counter over the window. Whether that rate is "flat"
is judged only where the proxy kept up (``bench.targets.saturation``).
"""

from __future__ import annotations

import collections
import math
import time
from typing import Any

from .children import Child, say
from .context import Bench
from .plan import (
    BUCKET_MS,
    CHILD_START_TIMEOUT,
    FANOUT_RATE,
    FANOUT_RECORD_BYTES,
    FANOUT_SESSIONS_PER_PROC,
    LATENCY_SESSIONS,
    REQUEST_TIMEOUT,
    ROUTE,
    STREAM_CREDIT_RECORDS,
    STREAM_FANOUT_RATE,
    BenchError,
    histogram_percentile,
    shares,
)
from .probe import Probe
from .report import late
from .targets import broker_rate_flat, saturation

#: Seconds a load-client process waits for its sessions' start positions, plus this many per session
#: of the run (a stream's subscribe at LATEST is a broker lookup, one at a time per partition reader).
PLACE_SECONDS_PER_SESSION = 0.05


def run_fanout(bench: Bench) -> None:
    _run_fanouts(bench, "fanout", "fetch", bench.plan.fanout_sessions, FANOUT_RATE)


def run_stream_fanout(bench: Bench) -> None:
    _run_fanouts(bench, "stream_fanout", "stream", bench.plan.stream_fanout_sessions, STREAM_FANOUT_RATE)


def _run_fanouts(bench: Bench, key: str, via: str, counts: tuple[int, ...], rate: int) -> None:
    """The fan-out at each session count (tailing ``via`` Fetch or stream), each on a fresh proxy."""
    topic, _ = bench.create_topic(key.replace("_", "-"), 0, FANOUT_RECORD_BYTES)
    runs: dict[str, Any] = {}
    for sessions in counts:
        run = runs[str(sessions)] = _fanout_once(bench, key, via, topic, sessions, rate)
        say(
            f"{key.replace('_', ' ')} {sessions}: p50 {late(run, 'p50_ms')} ms, p99 {late(run, 'p99_ms')} ms, "
            f"{run['broker_fetch_requests_per_s']} broker polls/s, proxy CPU {run['proxy_cpu_pct']}%"
            + (f"; saturated: {', '.join(run['proxy_saturated'])}" if run["proxy_saturated"] else "")
        )
    largest = runs[str(max(counts))]
    smallest = runs[str(min(counts))]
    how = {"credit_window_records": STREAM_CREDIT_RECORDS} if via == "stream" else {}
    bench.results[key] = {
        "sessions": largest["sessions"],
        "p50_ms": largest["p50_ms"],
        "p99_ms": largest["p99_ms"],
        "broker_fetch_requests_per_s": largest["broker_fetch_requests_per_s"],
        "proxy_rss_mib": largest["proxy_rss_mib"],
        "broker_fetch_rate_flat": broker_rate_flat(smallest, largest),
        "broker_fetch_rate_growth": largest["broker_fetch_requests_per_s"]
        / max(smallest["broker_fetch_requests_per_s"], 1.0),
        "produce_rate": rate,
        "record_bytes": FANOUT_RECORD_BYTES,
        **how,
        "by_sessions": runs,
    }


def _fanout_once(bench: Bench, key: str, via: str, topic: str, sessions: int, rate: int) -> dict[str, Any]:
    procs = min(bench.client_procs, math.ceil(sessions / FANOUT_SESSIONS_PER_PROC))
    split = shares(sessions, procs)
    proxy = bench.proxy(f"proxy-{key}-{sessions}")
    children: list[Child] = []
    try:
        (producer,) = bench.workers(
            f"producer-{sessions}",
            [
                {
                    "kind": "producer",
                    "bootstrap": bench.bootstrap,
                    "topic": topic,
                    "rate": rate,
                    "value_bytes": FANOUT_RECORD_BYTES,
                }
            ],
        )
        children.append(producer)
        producer.expect("ready", CHILD_START_TIMEOUT)
        producer.send("go")
        every = max(1, sessions // LATENCY_SESSIONS)
        firsts = [sum(split[:i]) for i in range(len(split))]
        place_timeout = REQUEST_TIMEOUT + sessions * PLACE_SECONDS_PER_SESSION
        clients = bench.workers(
            f"{key}-{sessions}",
            [
                bench.spec(
                    proxy,
                    kind="fanout",
                    via=via,
                    topic=topic,
                    sessions=n,
                    sample_every=every,
                    first_index=first,
                    place_timeout=place_timeout,
                )
                for n, first in zip(split, firsts, strict=True)
            ],
        )
        children.extend(clients)
        opened = placed = 0
        for client in clients:
            ready = client.expect("ready", CHILD_START_TIMEOUT + sessions / 10 + place_timeout)
            opened += ready["opened"]
            placed += ready["placed"]
            if ready["failed"] or ready["first_error"]:
                say(f"{client.name}: {ready['failed']} sessions failed to open: {ready['first_error']}")
        if placed < sessions:
            raise BenchError(f"only {opened} of {sessions} {key} sessions opened, {placed} with a start position")
        time.sleep(bench.plan.fanout_warmup)
        t0 = math.ceil(time.time())
        t1 = t0 + round(bench.plan.fanout_window)
        time.sleep(max(0.0, t0 - time.time()))
        probe = Probe(proxy, bench.broker_pid)
        probe.add_clients([*clients, producer])
        before = proxy.stats()
        probe.start()
        for client in clients:
            client.send("go")
        with bench.profiled(proxy, f"{key}_{sessions}", t1 - time.time()):
            time.sleep(max(0.0, t1 - time.time()))
        after = proxy.stats()
        resources = probe.stop()
        producer.send("stop", t0=t0, t1=t1)
        produced = producer.expect("result", CHILD_START_TIMEOUT)
        wait = max(15.0, bench.plan.fanout_window)  # for records of the window still on their way
        for client in clients:
            client.send("finish", end=produced["last_offset"] + 1, t0=t0, t1=t1, wait=wait)
        results = [client.expect("result", wait + CHILD_START_TIMEOUT) for client in clients]
    finally:
        for child in children:
            child.stop()
        proxy.stop()
    broken = sum(r["broken"] for r in results)
    if broken:
        first = next(r["first_broken"] for r in results if r["first_broken"])
        raise BenchError(f"{key} at {sessions} sessions: {broken} wrong batches or answers; the first: {first}")
    hist: collections.Counter[int] = collections.Counter()
    for result in results:
        hist.update({bucket: count for bucket, count in result["hist"]})
    received = sum(hist.values())
    sampled = sum(r["sampled"] for r in results)
    expected = produced["in_window"] * sampled
    missing = max(0, expected - received)
    seconds = after["t"] - before["t"]
    client_cpu = [100 * r["cpu_seconds"] / r["wall_seconds"] for r in results]
    run: dict[str, Any] = {
        "sessions": sessions,
        # None: the percentile lies among deliveries that never came (within the wait).
        "p50_ms": histogram_percentile(hist, missing, 0.50),
        "p99_ms": histogram_percentile(hist, missing, 0.99),
        "max_ms": round(max(hist) * BUCKET_MS, 1) if hist else None,
        # Over the buckets' lower edges (0.1 ms; 1 ms past 100 ms); None when deliveries are missing.
        "mean_ms": round(sum(b * c for b, c in hist.items()) * BUCKET_MS / received, 1)
        if received and not missing
        else None,
        "broker_fetch_requests_per_s": round((proxy.polls(after) - proxy.polls(before)) / seconds, 1),
        "window_seconds": t1 - t0,
        "wait_seconds": wait,
        "records_in_window": produced["in_window"],
        "latency_sessions": sampled,
        "deliveries": received,
        "deliveries_missing": missing,
        "sessions_lagging_at_end": sum(r["lagging"] for r in results),
        "errors": sum(r["errors"] for r in results),
        "produce_rate_achieved": round(produced["rate"], 1),
        "client_proc_cpu_pct": [round(c, 1) for c in client_cpu],
        "frames_per_s": round(sum(r["frames"] for r in results) / max(r["wall_seconds"] for r in results), 1),
        **resources,
    }
    if via == "stream":
        streams_before, streams_after = before["upstreams"][ROUTE], after["upstreams"][ROUTE]
        run["stream_taps"] = streams_before["stream_taps"]
        run["stream_batches_per_s"] = round(
            (streams_after["stream_batches"] - streams_before["stream_batches"]) / seconds, 1
        )
    run["proxy_saturated"] = saturation(run)
    return run
