"""The product CLI loads the test broker manager only for its ``broker`` command.

``kafka_ws_trio.testing`` is test tooling (a Kafka launcher, fixtures); a
proxy started with ``kafka-ws-trio serve`` must not pay for importing it, nor
depend on it. Each case runs in a fresh interpreter, because the pytest
process itself has loaded ``kafka_ws_trio.testing`` through the plugin.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Final

import pytest

#: Seconds one fresh interpreter may take to import the CLI and parse a command line.
SUBPROCESS_TIMEOUT_S: Final = 60.0

#: Imports the CLI, runs ``main`` on each argument list (every one exits in argparse before
#: doing any work), parses a full ``serve`` command line without serving, then prints the
#: ``kafka_ws_trio.testing`` modules that got loaded, as JSON.
PROBE: Final = """
import contextlib, io, json, sys
import kafka_ws_trio._cli as cli

for argv in json.loads(sys.argv[1]):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            cli.main(argv)
        except SystemExit:
            pass
cli._build_parser().parse_known_args(["serve", "--kafka", "127.0.0.1:1", "--port", "0"])
print(json.dumps(sorted(m for m in sys.modules if m.startswith("kafka_ws_trio.testing"))))
"""


def _testing_modules_after(argvs: list[list[str]]) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argvs)],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert isinstance(loaded, list)
    return [str(name) for name in loaded]


@pytest.mark.parametrize(
    "argvs",
    [
        [],
        [["serve", "--help"]],
        [["offsets", "--help"], ["tail", "--help"], ["--version"], ["--help"]],
    ],
    ids=["import-only", "serve-help", "other-commands"],
)
def test_commands_other_than_broker_leave_the_test_package_unloaded(argvs: list[list[str]]) -> None:
    assert _testing_modules_after(argvs) == []


def test_the_broker_command_does_load_it() -> None:
    """The control: the probe does see the test package once ``broker`` runs."""
    loaded = _testing_modules_after([["broker", "--help"]])
    assert "kafka_ws_trio.testing._broker.cli" in loaded
