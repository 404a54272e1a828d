"""The README's embedding example runs as written (against the test broker)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from kafka_ws_trio.testing import KafkaBroker, produce


def _embedding_example(readme: str) -> str:
    section = readme.split("## Embedding it in a Trio application", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "the README lost its embedding example"
    return match.group(1)


@pytest.mark.timeout(120)
def test_readme_embedding_example_runs(kafka_broker: KafkaBroker, kafka_topic: str, repo_root: Path) -> None:
    produce(kafka_broker, kafka_topic, [b"first", b"second"])
    code = _embedding_example((repo_root / "README.md").read_text())
    assert '"127.0.0.1:9092"' in code and '"demo"' in code
    code = code.replace('"127.0.0.1:9092"', repr(kafka_broker.bootstrap)).replace('"demo"', repr(kafka_topic))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "0 None b'first'"
    assert lines[1] == "1 None b'second'"
    assert lines[2].startswith("ProxyStatistics(")
