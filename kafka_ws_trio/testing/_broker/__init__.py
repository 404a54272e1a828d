"""Run a real Apache Kafka broker on loopback, for tests, demos and benchmarks.

This package is the code behind ``scripts/kafka``, ``kafka-ws-trio broker``
and the ``kafka_broker`` pytest fixture. It uses only the standard library
(plus ``java``, ``mvn``, ``openssl`` and ``keytool`` on PATH) so that it can
run before any virtual environment exists: ``scripts/kafka`` runs it as the
top-level package ``_broker`` (see ``__main__``), so every import inside it
is relative.

One broker is a single KRaft node acting as broker and controller, bound to
127.0.0.1, with four client listeners (PLAINTEXT, SSL, SASL_PLAINTEXT and
SASL_SSL) plus the controller listener. One module per job:

* ``base``: release lines, the home folder, the error type;
* ``jars``: the jars, fetched from Maven Central through the shipped pom and cached;
* ``certificates``: the test CA, broker key and trust stores, client certificate;
* ``properties``: ``server.properties``, JAAS lines, logging config;
* ``process``: run folders, launch, stop, state, locks, ports; ``up``/``down``/``stop``/``status``;
* ``cli``: the argparse front (``main``).
"""

from __future__ import annotations

from .base import DEFAULT_LINE, VERSIONS, BrokerError, Progress, home_dir, resolve_line
from .certificates import make_certificates
from .cli import env_lines, main
from .jars import POM_FILE, ensure_jars
from .process import (
    DEFAULT_PORT_BASES,
    DEFAULT_START_TIMEOUT_S,
    DEFAULT_STOP_TIMEOUT_S,
    cluster_id,
    default_name,
    down,
    port_free,
    running,
    status,
    stop,
    up,
)
from .properties import LISTENERS, SASL_USERNAME, server_properties

# The names callers used when this was one module; tests outside this package still use them.
_port_free = port_free
_cluster_id = cluster_id

__all__ = [
    "DEFAULT_LINE",
    "DEFAULT_PORT_BASES",
    "DEFAULT_START_TIMEOUT_S",
    "DEFAULT_STOP_TIMEOUT_S",
    "LISTENERS",
    "POM_FILE",
    "SASL_USERNAME",
    "VERSIONS",
    "BrokerError",
    "Progress",
    "cluster_id",
    "default_name",
    "down",
    "ensure_jars",
    "env_lines",
    "home_dir",
    "main",
    "make_certificates",
    "port_free",
    "resolve_line",
    "running",
    "server_properties",
    "status",
    "stop",
    "up",
]
