"""Shared test setup. The kafka_broker and kafka_topic fixtures come from the
package's own pytest plugin (kafka_ws_trio.testing), registered on install."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO
