"""What an operator scrapes and probes: Prometheus metrics and health, sans-IO apart from prometheus-client.

* :mod:`._metrics`: metric families, built by the server from its ``statistics()``
  snapshot (one source for both), rendered in Prometheus' text format by
  prometheus-client;
* :mod:`._health`: liveness and readiness, as the answers ``/healthz`` and
  ``/readyz`` give.

The server serves them: ``/healthz`` and ``/readyz`` on its own port too (load
balancers probe that one), ``/metrics`` only on the ops port (``ops_port``,
loopback by default).
"""

from __future__ import annotations

from ._health import Answer as Answer
from ._health import Readiness as Readiness
from ._health import healthz as healthz
from ._metrics import Family as Family
from ._metrics import Histogram as Histogram
from ._metrics import MetricsEndpoint as MetricsEndpoint
