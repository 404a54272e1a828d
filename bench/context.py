"""What one run shares (:class:`Bench`): plan, broker, options, results so far, and the scenarios' helpers.

The helpers start processes: a fresh proxy (:meth:`Bench.proxy`; every timed
run gets its own, so that no run inherits an earlier run's caches, window or
warm partition reader), load clients (:meth:`Bench.workers`), py-spy
(:meth:`Bench.profiled`), and fill topics (:meth:`Bench.create_topic`).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from .children import Child, say
from .plan import (
    CHILD_START_TIMEOUT,
    LOAD_TIMEOUT,
    MAX_SESSIONS,
    READ_TIMEOUT,
    SMALL_RECORD_BYTES,
    SMALL_TOPIC_RECORDS,
    BenchError,
    Plan,
)
from .proxy import Proxy


@attrs.define
class Bench:
    """Everything one run shares: the plan, the broker, where logs go, the results so far."""

    plan: Plan
    bootstrap: str
    broker_pid: int | None
    logdir: Path
    client_procs: int
    depth: int
    profile_dir: Path | None
    #: ServerConfig and RouteConfig fields to override (what-if runs); empty for a standard run.
    server_options: dict[str, Any] = attrs.Factory(dict)
    route_options: dict[str, Any] = attrs.Factory(dict)
    #: The tree whose kafka_ws_trio the proxy process imports (--proxy-package); None: this one.
    package_root: Path | None = None
    results: dict[str, Any] = attrs.Factory(dict)
    topics: dict[str, tuple[str, int]] = attrs.Factory(dict)
    #: How many proxy processes this run started (each timed run starts one).
    proxies_started: int = 0
    #: The broker's ``KAFKA_*`` variables (its other listeners, SASL users): from ``scripts/kafka up``, or with
    #: --bootstrap from this process's environment.
    broker_env: dict[str, str] = attrs.Factory(dict)

    def proxy(
        self,
        name: str,
        max_sessions: int = MAX_SESSIONS,
        route: dict[str, Any] | None = None,
        bootstrap: str | None = None,
        server: dict[str, Any] | None = None,
    ) -> Proxy:
        """Start a fresh proxy process on the default config (plus any --server/--route overrides).

        ``route`` holds settings a scenario needs (group_members sets max_group_members), ``server``
        likewise for ``[server]`` (ops_scrape sets ops_port); a --route or --server override of the same
        setting wins over it. ``bootstrap``: another listener of the broker.
        """
        spec: dict[str, Any] = {
            "bootstrap": bootstrap or self.bootstrap,
            "max_sessions": max_sessions,
            "server": {**(server or {}), **self.server_options},
            "route": {**(route or {}), **self.route_options},
        }
        if self.package_root is not None:
            spec["package_root"] = str(self.package_root)
        self.proxies_started += 1
        return Proxy(name, spec, self.logdir)

    def spec(self, proxy: Proxy, **fields: Any) -> dict[str, Any]:
        """A load client's spec: where the proxy listens, and ``fields``."""
        return {"host": "127.0.0.1", "port": proxy.port, **fields}

    def workers(self, name: str, specs: list[dict[str, Any]]) -> list[Child]:
        """One fresh client process per spec."""
        return [Child(f"{name}-{i}", "_worker", spec, self.logdir) for i, spec in enumerate(specs)]

    @contextlib.contextmanager
    def profiled(self, proxy: Proxy, name: str, seconds: float) -> Iterator[None]:
        """With --profile, sample the proxy with py-spy while the block runs."""
        if self.profile_dir is None:
            yield
            return
        py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
        if py_spy is None:
            say("py-spy is not installed; no profile")
            yield
            return
        out = self.profile_dir / f"{name}.txt"
        command = [py_spy, "record", "--pid", str(proxy.child.pid), "--rate", "200", "--nonblocking"]
        command += ["--format", "raw", "--output", str(out), "--duration", str(max(1, math.ceil(seconds)))]
        with open(self.logdir / f"py-spy-{name}.log", "wb") as log:
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
        try:
            yield
        finally:
            try:
                proc.wait(seconds + 30)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)

    def create_topic(self, key: str, count: int, value_bytes: int, partitions: int = 1) -> tuple[str, int]:
        """A fresh topic holding ``count`` records of ``value_bytes`` each (cached per run).

        With several partitions, record ``i`` goes to partition ``i % partitions``, so partition
        ``p`` ends where :func:`bench.plan.partition_ends` says.
        """
        if key in self.topics:
            return self.topics[key]
        from confluent_kafka import Producer

        from kafka_ws_trio.testing import KafkaBroker, create_topic, unique_topic_name

        broker = KafkaBroker(version="?", bootstrap=self.bootstrap)
        topic = create_topic(broker, unique_topic_name(f"bench-{key}"), partitions=partitions)
        if count:
            started = time.monotonic()
            producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 20, "acks": "all"})
            value = os.urandom(value_bytes)
            for i in range(count):
                while True:
                    try:
                        producer.produce(topic, value=value, partition=i % partitions)
                        break
                    except BufferError:
                        producer.poll(0.05)
                producer.poll(0)
            left = producer.flush(LOAD_TIMEOUT)
            if left:
                raise BenchError(f"{left} records for {topic} were not delivered within {LOAD_TIMEOUT:.0f}s")
            spread = f" ({partitions} partitions)" if partitions > 1 else ""
            seconds = time.monotonic() - started
            say(f"loaded {count:,} records of {value_bytes} B into {topic}{spread} in {seconds:.1f}s")
        self.topics[key] = (topic, count)
        return topic, count

    def warm(self, proxy: Proxy, sessions: int) -> None:
        """A few sessions through the proxy, so lazy imports and first allocations are behind us."""
        topic, _ = self.create_topic("small", SMALL_TOPIC_RECORDS, SMALL_RECORD_BYTES)
        (worker,) = self.workers(
            "warm", [self.spec(proxy, kind="churn", topic=topic, sessions=sessions, concurrency=1)]
        )
        try:
            worker.expect("ready", CHILD_START_TIMEOUT)
            worker.send("go")
            worker.expect("result", READ_TIMEOUT)
        finally:
            worker.stop()
        proxy.wait_sessions(0, 30.0)
