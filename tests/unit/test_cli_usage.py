"""The console command without a broker: its help, a bad config refused at start, and
``tune_gc``. Commands run as separate processes, as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

COMMAND = str(Path(sys.executable).parent / "kafka-ws-trio")


def test_a_bad_config_fails_at_start_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "proxy.toml"
    config.write_text(
        '[server]\nport = 9080\n[[routes]]\nuri = "/kafka"\nnodes = ["127.0.0.1:9092"]\n'
        'sasl = { mechanism = "MD5", username = "u", password = "hunter2" }\n'
    )
    result = subprocess.run([COMMAND, "serve", "--config", str(config)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "routes[0].sasl.mechanism" in result.stderr
    assert "hunter2" not in result.stderr


def test_help_explains_every_command() -> None:
    result = subprocess.run([COMMAND, "--help"], capture_output=True, text=True, timeout=60, check=True)
    for command in ("serve", "offsets", "tail", "broker"):
        assert command in result.stdout
    serve = subprocess.run([COMMAND, "serve", "--help"], capture_output=True, text=True, timeout=60, check=True)
    for text in ("--config", "--kafka", "--host", "--port", "SIGTERM"):
        assert text in serve.stdout


def test_tune_gc_freezes_what_exists_and_raises_the_thresholds() -> None:
    import gc

    from kafka_ws_trio import tune_gc
    from kafka_ws_trio._runtime import GC_THRESHOLDS

    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
        assert GC_THRESHOLDS[0] > before[0]
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
