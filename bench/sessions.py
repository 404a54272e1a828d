"""The session-lifecycle scenarios: first byte, idle sessions (with or without a stream), churn.

Each runs once, on a fresh proxy.

Their warm-ups (first byte's first sessions, idle's ten sessions before the
baseline RSS, churn's warm-up batch before the baseline threads and fds) are
part of each scenario's definition and use that scenario's own proxy; no
scenario inherits a proxy from another.
"""

from __future__ import annotations

import time
from typing import Any

from .children import Child, say
from .context import Bench
from .plan import (
    CHILD_START_TIMEOUT,
    CHURN_CONCURRENCY,
    FIRST_BYTE_WARMUP,
    IDLE_HOLD_SECONDS,
    IDLE_SESSIONS_PER_PROC,
    IDLE_SPARE_SESSIONS,
    IDLE_WARMUP_SESSIONS,
    READ_TIMEOUT,
    ROUTE,
    SETTLE_SECONDS,
    SMALL_RECORD_BYTES,
    SMALL_TOPIC_RECORDS,
    BenchError,
    percentile,
    shares,
)
from .probe import Probe, rss_mib
from .proxy import Proxy


def run_first_byte(bench: Bench) -> None:
    topic, _ = bench.create_topic("small", SMALL_TOPIC_RECORDS, SMALL_RECORD_BYTES)
    proxy = bench.proxy("proxy-first-byte")
    try:
        spec = bench.spec(
            proxy, kind="first_byte", topic=topic, warmup=FIRST_BYTE_WARMUP, samples=bench.plan.first_byte_samples
        )
        (worker,) = bench.workers("first-byte", [spec])
        worker.expect("ready", CHILD_START_TIMEOUT)
        probe = Probe(proxy, bench.broker_pid)
        probe.add_clients([worker])
        probe.start()
        with bench.profiled(proxy, "first_byte", 5):
            worker.send("go")
            result = worker.expect("result", READ_TIMEOUT)
        resources = probe.stop()
        worker.stop()
    finally:
        proxy.stop()
    latencies = sorted(result["latencies_ms"])
    bench.results["first_byte"] = {
        "samples": len(latencies),
        "p50_ms": percentile(latencies, 0.50),  # unrounded: checked against its target
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "max_ms": round(latencies[-1], 2),
        "what": "TCP connect, WebSocket handshake, ListOffset(latest) answered; one session after another",
        **resources,
    }


def run_idle(bench: Bench) -> None:
    _run_idle(bench, "idle_sessions", None)


def run_idle_streams(bench: Bench) -> None:
    topic, _ = bench.create_topic("idle-streams", 0, SMALL_RECORD_BYTES)
    _run_idle(bench, "idle_streams", topic)


def _run_idle(bench: Bench, key: str, topic: str | None) -> None:
    """Sessions opened at once and held without a word; with a ``topic``, each with one stream over it.

    The baseline RSS is read after warm-up sessions, and for streams with
    IDLE_WARMUP_SESSIONS stream sessions held open to the end, so that the
    partition reader and its pump exist before the baseline: what remains is
    the cost of a session and its stream. Once all are open, the proxy's CPU and
    broker polls are counted for IDLE_HOLD_SECONDS: what holding them costs.
    """
    sessions = bench.plan.idle_sessions
    split = shares(sessions, -(-sessions // IDLE_SESSIONS_PER_PROC))
    held = IDLE_WARMUP_SESSIONS if topic is not None else 0
    proxy = bench.proxy(f"proxy-{key}", max_sessions=sessions + held + IDLE_SPARE_SESSIONS)
    clients: list[Child] = []
    try:
        bench.warm(proxy, IDLE_WARMUP_SESSIONS)
        if held:
            clients = bench.workers(f"{key}-held", [bench.spec(proxy, kind="idle", sessions=held, topic=topic)])
            _open_idle(clients, held)
        time.sleep(1.0)
        workers = bench.workers(key, [bench.spec(proxy, kind="idle", sessions=n, topic=topic) for n in split])
        clients += workers
        probe = Probe(proxy, bench.broker_pid)
        probe.add_clients(workers)
        probe.start()
        readies = _open_idle(workers, sessions)
        proxy.wait_sessions(sessions + held, 60.0)
        open_seconds = max(r["finished"] for r in readies) - min(r["started"] for r in readies)
        time.sleep(2.0)
        rss_open = rss_mib(proxy.process)
        rss_before = probe.rss_start
        resources = probe.stop()
        with bench.profiled(proxy, key, IDLE_HOLD_SECONDS):
            holding = _hold(proxy)
        closing = time.monotonic()
        for client in clients:
            client.send("close")
        pushes = sum(client.expect("result", 120.0)["pushes"] for client in workers)
        proxy.wait_sessions(0, 60.0)
        close_seconds = time.monotonic() - closing
    finally:
        for client in clients:
            client.stop()
        proxy.stop()
    bench.results[key] = {
        "sessions": sessions,
        # Unrounded: checked against its target.
        "rss_per_session_kib": (rss_open - rss_before) * 1024 / sessions,
        "open_seconds": round(open_seconds, 2),
        "opens_per_s": round(sessions / open_seconds, 1),
        "close_seconds": round(close_seconds, 2),
        "proxy_rss_mib_before": resources["proxy_rss_mib_start"],
        "proxy_rss_mib_open": round(rss_open, 1),
        **holding,
        **({"streams_per_session": 1, "held_stream_sessions": held, "pushes_while_held": pushes} if held else {}),
        **resources,
    }


def _open_idle(clients: list[Child], sessions: int) -> list[dict[str, Any]]:
    """Have the idle workers open their sessions; what each reported once all were open."""
    for client in clients:
        client.send("go")
    readies = [client.expect("ready", CHILD_START_TIMEOUT + sessions / 20) for client in clients]
    opened = sum(r["opened"] for r in readies)
    if opened < sessions:
        errors = "; ".join(r["first_error"] for r in readies if r["first_error"])
        raise BenchError(f"only {opened} of {sessions} idle sessions opened: {errors}")
    return readies


def _hold(proxy: Proxy) -> dict[str, Any]:
    """The proxy's CPU and broker polls while the open sessions stay quiet for IDLE_HOLD_SECONDS."""
    before, cpu0 = proxy.stats(), proxy.process.cpu_times()
    time.sleep(IDLE_HOLD_SECONDS)
    after, cpu1 = proxy.stats(), proxy.process.cpu_times()
    seconds = after["t"] - before["t"]
    cpu = cpu1.user + cpu1.system - cpu0.user - cpu0.system
    return {
        "held_seconds": round(seconds, 1),
        "held_proxy_cpu_pct": round(100 * cpu / seconds, 1),
        "held_broker_polls_per_s": round((proxy.polls(after) - proxy.polls(before)) / seconds, 1),
        "stream_taps": after["upstreams"][ROUTE]["stream_taps"],
    }


def _churn_batch(bench: Bench, proxy: Proxy, topic: str, sessions: int, name: str) -> tuple[list[Any], dict[str, Any]]:
    split = shares(sessions, bench.client_procs)
    clients = bench.workers(
        name,
        [bench.spec(proxy, kind="churn", topic=topic, sessions=n, concurrency=CHURN_CONCURRENCY) for n in split],
    )
    try:
        for client in clients:
            client.expect("ready", CHILD_START_TIMEOUT)
        probe = Probe(proxy, bench.broker_pid)
        probe.add_clients(clients)
        probe.start()
        for client in clients:
            client.send("go")
        results = [client.expect("result", READ_TIMEOUT + sessions / 20) for client in clients]
        resources = probe.stop()
    finally:
        for client in clients:
            client.stop()
    failed = sum(r["failed"] for r in results)
    if failed:
        errors = "; ".join(r["first_error"] for r in results if r["first_error"])
        say(f"{name}: {failed} of {sessions} sessions failed: {errors}")
    return results, resources


def _settled(proxy: Proxy) -> dict[str, float]:
    proxy.wait_sessions(0, 60.0)
    time.sleep(SETTLE_SECONDS)
    process = proxy.process
    return {"threads": process.num_threads(), "fds": process.num_fds(), "rss_mib": rss_mib(process)}


def run_churn(bench: Bench) -> None:
    topic, _ = bench.create_topic("small", SMALL_TOPIC_RECORDS, SMALL_RECORD_BYTES)
    sessions = bench.plan.churn_sessions
    proxy = bench.proxy("proxy-churn")
    try:
        _churn_batch(bench, proxy, topic, bench.plan.churn_warmup_sessions, "churn-warm")
        before = _settled(proxy)
        with bench.profiled(proxy, "churn", 10):
            results, resources = _churn_batch(bench, proxy, topic, sessions, "churn")
        after = _settled(proxy)
        stats = proxy.stats()
    finally:
        proxy.stop()
    seconds = max(r["seconds"] for r in results)
    bench.results["churn"] = {
        "sessions": sessions,
        "per_s": round(sessions / seconds, 1),
        "failed": sum(r["failed"] for r in results),
        "leaked_threads": max(0, int(after["threads"] - before["threads"])),
        "leaked_fds": max(0, int(after["fds"] - before["fds"])),
        # Unrounded: checked against its target.
        "rss_growth_pct": 100 * (after["rss_mib"] - before["rss_mib"]) / before["rss_mib"],
        "before": before,
        "after": after,
        "concurrency": CHURN_CONCURRENCY * bench.client_procs,
        "proxy_sessions_total": stats["sessions_total"],
        "proxy_errors_total": stats["errors_total"],
        **resources,
    }
