"""Prometheus metrics: families of samples, rendered by prometheus-client.

The server describes what it counts as :class:`Family` values, built from the
same ``statistics()`` snapshot its Python callers read, at each scrape; nothing
here keeps a count of its own. prometheus-client writes the text format (its
escaping, ``# HELP`` and ``# TYPE`` lines, ``_total`` suffixes), so what
``promtool check metrics`` reads is the library's, not ours.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Final, Literal

import attrs
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
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


class _Collector(Collector):
    def __init__(self, families: Callable[[], Iterable[Family]]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        for family in self._families():
            kind = CounterMetricFamily if family.kind == "counter" else GaugeMetricFamily
            metric = kind(PREFIX + family.name, family.help, labels=list(family.labels))
            for labels, value in family.samples:
                metric.add_metric(list(labels), value)
            yield metric


class MetricsEndpoint:
    """``GET /metrics``: the families ``families()`` gives now, in Prometheus' text format."""

    def __init__(self, families: Callable[[], Iterable[Family]]) -> None:
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_Collector(families))

    def render(self) -> bytes:
        return generate_latest(self._registry)

    def respond(self) -> Answer:
        return Answer(200, self.render(), CONTENT_TYPE)
