"""Resources sampled from outside with psutil: the CPU of the proxy, broker, clients and machine; the proxy's RSS.

Sampling every 0.2 s from the orchestrator costs the measured processes
nothing. "Other load" is the machine's busy time minus every process the bench
knows of: work on the machine that is not the bench's.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .children import Child
    from .proxy import Proxy


def rss_mib(process: Any) -> float:
    return float(process.memory_info().rss) / 2**20


def _busy_seconds(times: Any) -> float:
    """CPU seconds the machine spent working (guest time is already in user; steal and idle are not work)."""
    return float(sum(getattr(times, field, 0.0) for field in ("user", "nice", "system", "irq", "softirq")))


class Probe:
    """CPU of every process in a scenario and the proxy's RSS, sampled from outside with psutil."""

    def __init__(self, proxy: Proxy | None, broker_pid: int | None) -> None:
        import psutil

        self._psutil = psutil
        self._proxy = proxy.process if proxy is not None else None
        self._roles: dict[str, list[Any]] = {"broker": [], "clients": [], "bench": [psutil.Process()]}
        if broker_pid:
            with contextlib.suppress(psutil.Error):
                self._roles["broker"].append(psutil.Process(broker_pid))
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rss_start = self.rss_peak = self.rss_end = 0.0

    def add_clients(self, children: list[Child]) -> None:
        for child in children:
            with contextlib.suppress(self._psutil.Error):
                process = self._psutil.Process(child.pid)
                self._roles["clients"].append(process)
                self._sample_cpu(process)

    def _processes(self) -> Iterator[Any]:
        if self._proxy is not None:
            yield self._proxy
        for processes in self._roles.values():
            yield from processes

    def _sample_cpu(self, process: Any) -> None:
        with contextlib.suppress(self._psutil.Error):
            times = process.cpu_times()
            value = times.user + times.system
            self._first.setdefault(process.pid, value)
            self._last[process.pid] = value

    def _sample(self) -> None:
        for process in self._processes():
            self._sample_cpu(process)
        if self._proxy is not None:
            with contextlib.suppress(self._psutil.Error):
                self.rss_peak = max(self.rss_peak, rss_mib(self._proxy))

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self._sample()

    def start(self) -> None:
        self._wall0 = time.monotonic()
        self._machine0 = self._psutil.cpu_times()
        if self._proxy is not None:
            self.rss_start = self.rss_peak = rss_mib(self._proxy)
        self._sample()
        self._thread = threading.Thread(target=self._run, name="probe", daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, Any]:
        self._sample()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        wall = time.monotonic() - self._wall0
        busy = _busy_seconds(self._psutil.cpu_times()) - _busy_seconds(self._machine0)

        def used(process: Any) -> float:
            return self._last.get(process.pid, 0.0) - self._first.get(process.pid, 0.0)

        result: dict[str, Any] = {"wall_seconds": round(wall, 2)}
        ours = 0.0
        if self._proxy is not None:
            proxy_cpu = used(self._proxy)
            ours += proxy_cpu
            self.rss_end = rss_mib(self._proxy) if self._proxy.is_running() else self.rss_peak
            result.update(
                proxy_cpu_seconds=round(proxy_cpu, 2),
                proxy_cpu_pct=round(100 * proxy_cpu / wall, 1),
                proxy_rss_mib=round(self.rss_peak, 1),
                proxy_rss_mib_start=round(self.rss_start, 1),
                proxy_rss_mib_end=round(self.rss_end, 1),
            )
        for role, processes in self._roles.items():
            seconds = [used(p) for p in processes]
            ours += sum(seconds)
            result[f"{role}_cpu_pct"] = round(100 * sum(seconds) / wall, 1)
            if role == "clients":
                result["client_procs"] = len(processes)
                result["client_proc_max_cpu_pct"] = round(100 * max(seconds, default=0.0) / wall, 1)
        result["machine_cpu_pct"] = round(100 * busy / wall, 1)
        result["other_load_cpu_pct"] = round(max(0.0, 100 * (busy - ours) / wall), 1)
        return result
