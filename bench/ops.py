"""The ``ops_scrape`` scenario (issue 14): what serving Prometheus metrics on the ops port costs.

Three runs, each on a fresh proxy with an ops listener (``ops_port = 0``; the
proxy child names the port in its ready line) and the same load: the plan's
idle sessions plus OPS_STREAM_SESSIONS sessions holding one stream each on an
empty topic, all open before anything is timed. ``statistics()``, which every
scrape renders, sums over the open sessions, so a scrape costs more the more
sessions there are: hence the idle ones.

* ``scrape``: OPS_SCRAPE_WARMUP untimed scrapes, the proxy's CPU over
  OPS_HOLD_SECONDS without any, then ``ops_scrapes`` scrapes of ``/metrics``
  one after another from the orchestrator (urllib, a new connection each, as
  the ops listener answers one request per connection): latency from the
  request to the body's last byte, the body's size and series, the proxy's CPU
  per scrape. The body must say how many sessions are open.
* ``scraped``: sessions one after another, as ``first_byte`` does (connect,
  handshake, ListOffset(latest) answered, close), while a thread of the
  orchestrator scrapes ``/metrics`` every OPS_SCRAPE_INTERVAL seconds.
* ``baseline``: the same without the scraper, run second (it gets whatever the
  broker warmed up by then, which can only make the target stricter).
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any, Final

from .children import Child, say
from .context import Bench
from .plan import (
    CHILD_START_TIMEOUT,
    FIRST_BYTE_WARMUP,
    IDLE_SESSIONS_PER_PROC,
    IDLE_WARMUP_SESSIONS,
    OPS_HOLD_SECONDS,
    OPS_SCRAPE_INTERVAL,
    OPS_SCRAPE_WARMUP,
    OPS_STREAM_SESSIONS,
    READ_TIMEOUT,
    REQUEST_TIMEOUT,
    SMALL_RECORD_BYTES,
    SMALL_TOPIC_RECORDS,
    BenchError,
    percentile,
    shares,
)
from .probe import Probe
from .proxy import Proxy
from .sessions import _open_idle
from .targets import OPS_FIRST_BYTE_FACTOR, OPS_FIRST_BYTE_SLACK_MS

#: The gauge of open sessions, as the proxy names it in its exposition.
SESSIONS_OPEN: Final = "kafka_ws_trio_sessions_open"
#: Seconds of py-spy samples (--profile) from the start of the timed scrapes.
OPS_PROFILE_SECONDS: Final = 5.0

#: No proxy from the environment (http_proxy and the like): the ops port is on this machine's loopback.
_OPENER: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _scrape(url: str) -> tuple[float, bytes]:
    """One GET of ``url`` on a new connection: ms from the request to the body's last byte, and the body."""
    started = time.perf_counter()
    with _OPENER.open(url, timeout=REQUEST_TIMEOUT) as answer:
        body: bytes = answer.read()
    return (time.perf_counter() - started) * 1000.0, body


def _series(body: bytes) -> int:
    """Samples in an exposition: its lines that are neither comments nor empty."""
    return sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))


def _sessions_open(body: bytes) -> float:
    for line in body.splitlines():
        name, _, value = line.decode().partition(" ")
        if name == SESSIONS_OPEN:
            return float(value)
    raise BenchError(f"/metrics has no {SESSIONS_OPEN}: the body is not the proxy's exposition")


def _cpu(proxy: Proxy) -> float:
    times = proxy.process.cpu_times()
    return float(times.user + times.system)


class _Scraper:
    """A thread scraping ``url`` every ``interval`` seconds until stopped (a slot missed is skipped, not caught up)."""

    def __init__(self, url: str, interval: float) -> None:
        self.url = url
        self.interval = interval
        self.latencies_ms: list[float] = []
        self.failures = 0
        self.first_error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scraper", daemon=True)

    def _run(self) -> None:
        due = time.monotonic()
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            try:
                elapsed, _ = _scrape(self.url)
                self.latencies_ms.append(elapsed)
            except (OSError, urllib.error.URLError) as exc:
                self.failures += 1
                self.first_error = self.first_error or f"{type(exc).__name__}: {exc}"
            due = max(due + self.interval, time.monotonic())

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(REQUEST_TIMEOUT + 5.0)


@contextlib.contextmanager
def _loaded(bench: Bench, name: str, topic: str) -> Iterator[tuple[Proxy, str, list[Child]]]:
    """A fresh proxy with an ops port, warmed up, holding the stream sessions and the plan's idle sessions.

    Yields the proxy, its /metrics URL and the client processes holding the
    sessions; everything is stopped on the way out.
    """
    sessions = bench.plan.ops_sessions
    proxy = bench.proxy(f"proxy-ops-{name}", server={"ops_port": 0})
    clients: list[Child] = []
    try:
        if proxy.ops_port is None:
            raise BenchError(f"proxy-ops-{name} has no ops port (its package predates [server] ops_port)")
        bench.warm(proxy, IDLE_WARMUP_SESSIONS)
        held = bench.workers(
            f"ops-{name}-streams", [bench.spec(proxy, kind="idle", sessions=OPS_STREAM_SESSIONS, topic=topic)]
        )
        clients += held
        _open_idle(held, OPS_STREAM_SESSIONS)
        split = shares(sessions, -(-sessions // IDLE_SESSIONS_PER_PROC))
        idle = bench.workers(f"ops-{name}-idle", [bench.spec(proxy, kind="idle", sessions=n) for n in split])
        clients += idle
        _open_idle(idle, sessions)
        proxy.wait_sessions(sessions + OPS_STREAM_SESSIONS, 60.0)
        yield proxy, f"http://127.0.0.1:{proxy.ops_port}/metrics", clients
    finally:
        for client in clients:
            client.stop()
        proxy.stop()


def _scrape_run(bench: Bench, topic: str) -> dict[str, Any]:
    """The timed scrapes, one after another, on a loaded proxy."""
    count = bench.plan.ops_scrapes
    expected = bench.plan.ops_sessions + OPS_STREAM_SESSIONS
    with _loaded(bench, "scrape", topic) as (proxy, url, clients):
        for _ in range(OPS_SCRAPE_WARMUP):
            _scrape(url)
        cpu0, wall0 = _cpu(proxy), time.monotonic()
        time.sleep(OPS_HOLD_SECONDS)
        held_cpu_pct = 100 * (_cpu(proxy) - cpu0) / (time.monotonic() - wall0)
        probe = Probe(proxy, bench.broker_pid)
        probe.add_clients(clients)
        probe.start()
        latencies: list[float] = []
        sizes: list[int] = []
        body = b""
        with bench.profiled(proxy, "ops_scrape", OPS_PROFILE_SECONDS):
            cpu0, wall0 = _cpu(proxy), time.monotonic()
            for _ in range(count):
                elapsed, body = _scrape(url)
                latencies.append(elapsed)
                sizes.append(len(body))
            cpu, wall = _cpu(proxy) - cpu0, time.monotonic() - wall0
        resources = probe.stop()
    scraped_open = _sessions_open(body)
    if scraped_open != expected:
        raise BenchError(f"/metrics says {scraped_open:g} sessions are open; the bench holds {expected}")
    ordered = sorted(latencies)
    return {
        "scrapes": count,
        # Unrounded: checked against its target.
        "scrape_p50_ms": percentile(ordered, 0.50),
        "scrape_p99_ms": percentile(ordered, 0.99),
        "scrape_max_ms": round(ordered[-1], 2),
        "scrape_mean_ms": round(statistics.fmean(ordered), 2),
        "scrapes_per_s": round(count / wall, 1),
        "body_bytes": int(statistics.median(sizes)),
        "series": _series(body),
        "sessions_open_scraped": int(scraped_open),
        # The proxy's CPU (all its threads) over the timed scrapes, per scrape; and before them, without any.
        "proxy_cpu_us_per_scrape": round(1e6 * cpu / count, 1),
        "held_proxy_cpu_pct": round(held_cpu_pct, 1),
        "fresh_proxy": True,
        **resources,
    }


def _first_byte_run(bench: Bench, name: str, small: str, topic: str, scraping: bool) -> dict[str, Any]:
    """First bytes, one session after another, on a loaded proxy; with ``scraping``, a scraper beside them."""
    samples = bench.plan.ops_first_byte_samples
    with _loaded(bench, name, topic) as (proxy, url, clients):
        spec = bench.spec(proxy, kind="first_byte", topic=small, warmup=FIRST_BYTE_WARMUP, samples=samples)
        (worker,) = bench.workers(f"ops-{name}-first-byte", [spec])
        try:
            worker.expect("ready", CHILD_START_TIMEOUT)
            probe = Probe(proxy, bench.broker_pid)
            probe.add_clients([worker, *clients])
            scraper = _Scraper(url, OPS_SCRAPE_INTERVAL) if scraping else None
            probe.start()
            if scraper is not None:
                scraper.start()
            try:
                worker.send("go")
                result = worker.expect("result", READ_TIMEOUT)
            finally:
                if scraper is not None:
                    scraper.stop()
            resources = probe.stop()
        finally:
            worker.stop()
    run: dict[str, Any] = {}
    if scraper is not None:
        if scraper.failures:
            raise BenchError(
                f"ops_scrape ({name}): {scraper.failures} scrapes failed beside the sessions; "
                f"the first: {scraper.first_error}"
            )
        if not scraper.latencies_ms:
            raise BenchError(f"ops_scrape ({name}): the scraper never completed a scrape")
        scrapes = sorted(scraper.latencies_ms)
        run = {
            "scrapes": len(scrapes),
            "scrape_p50_ms": round(percentile(scrapes, 0.50), 2),
            "scrape_max_ms": round(scrapes[-1], 2),
        }
    first = sorted(result["latencies_ms"])
    return {
        "samples": len(first),
        # Unrounded: checked against the target.
        "first_byte_p50_ms": percentile(first, 0.50),
        "first_byte_p99_ms": round(percentile(first, 0.99), 2),
        "first_byte_max_ms": round(first[-1], 2),
        **run,
        "fresh_proxy": True,
        **resources,
    }


def run_ops_scrape(bench: Bench) -> None:
    small, _ = bench.create_topic("small", SMALL_TOPIC_RECORDS, SMALL_RECORD_BYTES)
    topic, _ = bench.create_topic("idle-streams", 0, SMALL_RECORD_BYTES)
    plan = bench.plan
    started = time.monotonic()
    scrape = _scrape_run(bench, topic)
    say(
        f"ops scrape: {plan.ops_scrapes} scrapes at {plan.ops_sessions:,} sessions, p50 "
        f"{scrape['scrape_p50_ms']:.2f} ms, p99 {scrape['scrape_p99_ms']:.2f} ms, {scrape['body_bytes']:,} B, "
        f"proxy CPU {scrape['proxy_cpu_us_per_scrape']:,.0f} us/scrape ({time.monotonic() - started:.0f} s)"
    )
    runs: dict[str, dict[str, Any]] = {"scrape": scrape}
    for name, scraping in (("scraped", True), ("baseline", False)):
        started = time.monotonic()
        run = runs[name] = _first_byte_run(bench, name, small, topic, scraping)
        say(
            f"ops scrape, first byte ({name}): p50 {run['first_byte_p50_ms']:.2f} ms, "
            f"p99 {run['first_byte_p99_ms']:.2f} ms ({time.monotonic() - started:.0f} s)"
        )
    scraped, baseline = runs["scraped"], runs["baseline"]
    bench.results["ops_scrape"] = {
        "sessions": plan.ops_sessions,
        "streams": OPS_STREAM_SESSIONS,
        "scrapes": plan.ops_scrapes,
        # Unrounded: checked against the targets.
        "scrape_p50_ms": scrape["scrape_p50_ms"],
        "scrape_p99_ms": scrape["scrape_p99_ms"],
        "scrape_max_ms": scrape["scrape_max_ms"],
        "body_bytes": scrape["body_bytes"],
        "series": scrape["series"],
        "proxy_cpu_us_per_scrape": scrape["proxy_cpu_us_per_scrape"],
        "held_proxy_cpu_pct": scrape["held_proxy_cpu_pct"],
        "first_byte_p50_ms": scraped["first_byte_p50_ms"],
        "first_byte_p99_ms": scraped["first_byte_p99_ms"],
        "baseline_first_byte_p50_ms": baseline["first_byte_p50_ms"],
        "baseline_first_byte_p99_ms": baseline["first_byte_p99_ms"],
        "first_byte_bound_ms": baseline["first_byte_p50_ms"] * OPS_FIRST_BYTE_FACTOR + OPS_FIRST_BYTE_SLACK_MS,
        "first_byte_vs_baseline_p50": round(scraped["first_byte_p50_ms"] / baseline["first_byte_p50_ms"], 3),
        "first_byte_samples": plan.ops_first_byte_samples,
        "scrape_interval_ms": round(OPS_SCRAPE_INTERVAL * 1000),
        "scrapes_beside_first_byte": scraped["scrapes"],
        "what": "scrape: GET /metrics on the ops port, a new connection each, one after another, from the request "
        "to the body's last byte, with the plan's idle sessions and a few stream sessions open; first byte: TCP "
        "connect, WebSocket handshake, ListOffset(latest) answered, one session after another, on the same load, "
        "with a scraper every scrape_interval_ms and without (the baseline, run second)",
        "fresh_proxy_per_run": True,
        "runs": runs,
    }
