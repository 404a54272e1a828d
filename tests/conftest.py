"""Shared test setup. The kafka_broker and kafka_topic fixtures come from the
package's own pytest plugin (kafka_ws_trio.testing), registered on install.

The tests are grouped by what they need: ``unit/`` (synchronous, no Trio, no broker),
``session/`` (Trio with fakes, no broker), ``integration/`` (a real broker) and
``reliability/`` (run only when asked for). The helpers shared by the groups live in
``tests/_support.py``; this folder is put on ``sys.path`` here so that every group can
``import _support`` whatever pytest's import mode.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent

if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

# Hypothesis's default deadline (200 ms an example) and its too_slow health check are
# wall-clock bounds: a machine busy with something else fails them with no bug in sight.
# The tests' own time limits (pytest-timeout) guard against hangs instead.
settings.register_profile("kafka-ws-trio", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("kafka-ws-trio")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO
