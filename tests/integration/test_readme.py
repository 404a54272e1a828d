"""The README's code runs exactly as printed, and prints what the README says it prints.

Each block is taken from README.md by its section and run unchanged: no name, port or
topic is substituted. The broker reaches the examples the way the README tells a reader
to give it to them, through ``KAFKA_BOOTSTRAP`` in the environment. The shell blocks are
covered elsewhere: ``./scripts/demo`` by tests/integration/test_demo.py, ``scripts/kafka``
by every integration test's broker, ``./scripts/test`` by CI itself, and the browser page
by tests/browser.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kafka_ws_trio import load_config
from kafka_ws_trio.testing import KafkaBroker


def _section(readme: str, heading: str) -> str:
    """The text of the README section under ``heading``, up to the next heading of any level."""
    match = re.search(rf"^#+ {re.escape(heading)}\n(.*?)(?=^#+ |\Z)", readme, re.DOTALL | re.MULTILINE)
    assert match, f"the README lost its section {heading!r}"
    return match.group(1)


def _blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", section, re.DOTALL | re.MULTILINE)


def _environment(broker: KafkaBroker) -> dict[str, str]:
    """This process's environment, with the broker named the way the README tells readers to."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("KAFKA_")}
    env["KAFKA_BOOTSTRAP"] = broker.bootstrap
    env["KAFKA_VERSION"] = broker.version
    return env


@pytest.fixture
def readme(repo_root: Path) -> str:
    return (repo_root / "README.md").read_text()


@pytest.mark.timeout(150)
def test_readme_embedding_example_runs_as_printed_and_prints_what_it_says(
    kafka_broker: KafkaBroker, readme: str, tmp_path: Path
) -> None:
    section = _section(readme, "Embedding it in a Trio application")
    [program] = _blocks(section, "python")
    [expected] = _blocks(section, "text")
    script = tmp_path / "embed.py"
    script.write_text(program)
    # Twice: the README promises a second run prints the same (it reads only what it wrote).
    for run in (1, 2):
        result = subprocess.run(
            [sys.executable, str(script)],
            capture_output=True,
            text=True,
            timeout=60,
            env=_environment(kafka_broker),
            cwd=tmp_path,
        )
        assert result.returncode == 0, f"run {run}:\n{result.stderr}"
        assert result.stdout == expected, f"run {run}"


@pytest.mark.timeout(150)
def test_readme_testing_plugin_example_passes_under_pytest(
    kafka_broker: KafkaBroker, readme: str, tmp_path: Path
) -> None:
    [example] = _blocks(_section(readme, "Testing your own code against a real broker"), "python")
    (tmp_path / "test_example.py").write_text(example)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_example.py"],
        capture_output=True,
        text=True,
        timeout=120,
        env=_environment(kafka_broker),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_readme_configuration_block_is_a_valid_config(
    kafka_broker: KafkaBroker, readme: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    [text] = _blocks(_section(readme, "Configuration"), "toml")
    assert kafka_broker.ca_file, "the test broker has a CA"
    shutil.copy(kafka_broker.ca_file, tmp_path / "ca.pem")  # the block names ca.pem, relative to the file
    monkeypatch.setenv("KAFKA_PASSWORD", "secret")
    path = tmp_path / "proxy.toml"
    path.write_text(text)
    config = load_config(path)
    [route] = config.routes
    assert (route.uri, route.nodes) == ("/kafka", ("127.0.0.1:9092", "127.0.0.1:9093"))
    assert config.server.port == 9080
    assert route.sasl is not None and route.sasl.mechanism == "SCRAM-SHA-512"


@pytest.mark.timeout(60)
def test_readme_config_mistakes_example_prints_what_it_says(readme: str, tmp_path: Path) -> None:
    section = _section(readme, "When the config is wrong")
    [config] = _blocks(section, "toml")
    [session] = _blocks(section, "text")
    command, *expected = session.splitlines()
    assert command == "$ kafka-ws-trio serve --config bad.toml"
    (tmp_path / "bad.toml").write_text(config)
    env = {name: value for name, value in os.environ.items() if name != "KAFKA_PASSWORD"}
    kafka_ws_trio = Path(sys.executable).with_name("kafka-ws-trio")
    result = subprocess.run(
        [str(kafka_ws_trio), "serve", "--config", "bad.toml"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert result.stdout == ""
    assert result.stderr.splitlines() == expected
