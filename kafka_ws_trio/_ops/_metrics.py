"""Prometheus metrics: families of samples, rendered by prometheus-client.

The server describes what it counts as :class:`Family` values, built from the
same ``statistics()`` snapshot its Python callers read, at each scrape; nothing
here keeps a count of its own. prometheus-client writes the text format (its
escaping, ``# HELP`` and ``# TYPE`` lines, ``_total`` suffixes), so what
``promtool check metrics`` reads is the library's, not ours.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Final, Literal

import attrs
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ._health import Answer

#: Every metric's name starts with this.
PREFIX: Final = "kafka_ws_trio_"
#: Prometheus' text format, version 0.0.4, as a scrape expects it.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"


@attrs.frozen
class Family:
    """One metric: its name (without :data:`PREFIX`, and without ``_total`` for a counter), help, kind, samples.

    Each sample is its label values (in the order of ``labels``) and its value.
    """

    name: str
    help: str
    kind: Literal["counter", "gauge"]
    labels: tuple[str, ...] = ()
    samples: tuple[tuple[tuple[str, ...], float], ...] = ()

    @classmethod
    def single(cls, name: str, help: str, kind: Literal["counter", "gauge"], value: float) -> Family:
        """A metric with one sample and no labels."""
        return cls(name, help, kind, (), (((), value),))


@attrs.frozen
class Histogram:
    """A histogram: per label values, how many observations fell in each bucket (not cumulative: one count per
    bound of ``bounds``, then one for the rest) and their sum."""

    name: str
    help: str
    labels: tuple[str, ...]
    bounds: tuple[float, ...]
    series: tuple[tuple[tuple[str, ...], tuple[int, ...], float], ...] = ()

    def metric(self) -> Metric:
        metric = HistogramMetricFamily(PREFIX + self.name, self.help, labels=list(self.labels))
        for labels, counts, total in self.series:
            cumulative, buckets = 0, []
            for bound, count in zip((*(repr(float(b)) for b in self.bounds), "+Inf"), counts, strict=True):
                cumulative += count
                buckets.append((bound, float(cumulative)))
            metric.add_metric(list(labels), buckets, total)
        return metric


class _Collector(Collector):
    """Yields the families it is handed for one render (see :meth:`MetricsEndpoint.render`)."""

    def __init__(self) -> None:
        self.families: Sequence[Family | Histogram] = ()

    def collect(self) -> Iterator[Metric]:
        for family in self.families:
            if isinstance(family, Histogram):
                yield family.metric()
                continue
            kind = CounterMetricFamily if family.kind == "counter" else GaugeMetricFamily
            metric = kind(PREFIX + family.name, family.help, labels=list(family.labels))
            for labels, value in family.samples:
                metric.add_metric(list(labels), value)
            yield metric


class MetricsEndpoint:
    """``GET /metrics``: the families ``families()`` gives now, in Prometheus' text format.

    Two steps, so that the costly one can leave the event loop: :meth:`snapshot`
    calls ``families()`` (where the server's state lives), and :meth:`render`
    writes them with prometheus-client's own process, platform and GC
    collectors, from any thread (one render at a time).
    """

    def __init__(self, families: Callable[[], Iterable[Family | Histogram]]) -> None:
        self._families = families
        self._collector = _Collector()
        self._lock = threading.Lock()
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(self._collector)
        # prometheus-client's own: the process (resident memory, CPU seconds, open files, from /proc
        # on Linux; counting the open files lists them, which is why a render may take a thread),
        # the Python version and the garbage collector, under their usual names.
        ProcessCollector(registry=self._registry)
        PlatformCollector(registry=self._registry)
        GCCollector(registry=self._registry)

    def snapshot(self) -> tuple[Family | Histogram, ...]:
        """The families now (call it where ``families()`` may run: the server's event loop)."""
        return tuple(self._families())

    def render(self, families: Sequence[Family | Histogram] | None = None) -> bytes:
        """The exposition of ``families`` (a :meth:`snapshot`; None: one taken now) and the library's collectors."""
        chosen = self.snapshot() if families is None else families
        with self._lock:
            self._collector.families = chosen
            try:
                return generate_latest(self._registry)
            finally:
                self._collector.families = ()

    def respond(self, families: Sequence[Family | Histogram] | None = None) -> Answer:
        return Answer(200, self.render(families), CONTENT_TYPE)
