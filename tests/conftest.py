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

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent

if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO
