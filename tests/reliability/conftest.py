"""The reliability suite: fuzzing, a broker killed mid-stream, clients that never read,
graceful shutdown under load, and sustained load. Real broker, real proxy, real sockets.

How to run it:

* fast mode (what ``./scripts/test`` runs, a few minutes at most)::

      tox -e reliability
      pytest tests/reliability

* long mode, for deliberate runs (100k+ fuzz cases, 1,000 sessions for 60 s ...)::

      tox -e reliability -- --reliability-long
      RELIABILITY_LONG=1 pytest tests/reliability

The tests carry the ``reliability`` marker and run only when asked for: by naming
this folder (or a file or test in it) on the command line, or by a ``-m`` expression
that mentions ``reliability``. A plain ``pytest`` (the py3x tox environments)
deselects them. When they run they need a real broker: one that cannot be started
or reached is a failure, never a skip.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import _reliability
import pytest

from kafka_ws_trio.testing import KafkaBroker

HERE = Path(__file__).resolve().parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        _reliability.LONG_OPTION,
        action="store_true",
        default=False,
        help=f"run the reliability suite in its long mode (also: {_reliability.LONG_ENV}=1)",
    )


def _long_requested(config: pytest.Config) -> bool:
    # The option exists only when this conftest is an initial one (pytest tests/reliability ...).
    flag = config.getoption(_reliability.LONG_OPTION, default=False)
    return bool(flag) or os.environ.get(_reliability.LONG_ENV, "") not in ("", "0")


def pytest_configure(config: pytest.Config) -> None:
    _reliability.set_mode(_long_requested(config))


def _asked_for(config: pytest.Config) -> bool:
    """Whether this run asked for the reliability tests by path or by marker."""
    if "reliability" in (config.option.markexpr or ""):
        return True
    if config.args_source == pytest.Config.ArgsSource.TESTPATHS:
        return False  # a plain "pytest": the whole suite, without us
    start = config.invocation_params.dir
    for arg in config.args:  # the paths given, or the current folder
        path = (start / arg.split("::", 1)[0]).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _asked_for(config):
        return
    ours = [item for item in items if item.get_closest_marker("reliability") is not None]
    if ours:
        config.hook.pytest_deselected(items=ours)
        items[:] = [item for item in items if item.get_closest_marker("reliability") is None]


def pytest_report_header(config: pytest.Config) -> str:
    return f"reliability mode: {_reliability.mode().name}"


@pytest.fixture(scope="session", autouse=True)
def broker_is_up(kafka_broker: KafkaBroker) -> KafkaBroker:
    """Every reliability test needs the broker: fail (never skip) when it does not answer."""
    host, _, port = kafka_broker.bootstrap.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=_reliability.WAIT).close()
    except OSError as exc:
        pytest.fail(f"the Kafka broker at {kafka_broker.bootstrap} does not accept connections: {exc}")
    return kafka_broker
