"""``kafka-ws-trio serve --log-format json`` (issue 14), run as an operator runs it: every line it
writes on stderr is a JSON object with time, level and event, the audit fields are keys of their
own, and no credential of the session or of the route's Kafka login is in any line."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import pytest
import trio
from _support import listening_url, stop_process

from kafka_ws_trio._auth import new_key
from kafka_ws_trio.client import ConnectFailed, Written, open_client
from kafka_ws_trio.testing import KafkaBroker

COMMAND: Final = str(Path(sys.executable).parent / "kafka-ws-trio")
#: The environment variable the config reads the route's Kafka password from.
PASSWORD_ENV: Final = "KWT_TEST_KAFKA_PASSWORD"
START_TIMEOUT: Final = 30.0
STOP_TIMEOUT: Final = 15.0


def _config(broker: KafkaBroker, key_hash: str) -> str:
    """A route behind an API key that reaches Kafka with SASL; the file says text, the command line json."""
    return (
        '[server]\nport = 0\nlog_format = "text"\n'
        "[[routes]]\n"
        'uri = "/kafka"\n'
        f'nodes = ["{broker.address("SASL_PLAINTEXT")}"]\n'
        'auth = "api_key"\n'
        "produce = true\n"
        f'sasl = {{ mechanism = "PLAIN", username = "{broker.sasl_username}", password_env = "{PASSWORD_ENV}" }}\n'
        "[[routes.api_keys]]\n"
        'id = "app"\nprincipal = "app"\n'
        f'hash = "{key_hash}"\n'
    )


@pytest.mark.timeout(120)
async def test_serve_log_format_json_writes_one_json_object_a_line_without_secrets(
    kafka_broker: KafkaBroker, kafka_topic: str, tmp_path: Path
) -> None:
    assert kafka_broker.sasl_username is not None and kafka_broker.sasl_password is not None
    key, key_hash = new_key("app")
    config = tmp_path / "proxy.toml"
    config.write_text(_config(kafka_broker, key_hash))
    stderr_path = tmp_path / "stderr"
    env = {**os.environ, PASSWORD_ENV: kafka_broker.sasl_password}
    args = [COMMAND, "serve", "--config", str(config), "--log-format", "json", "--log-level", "DEBUG"]
    started = datetime.now().astimezone()
    with stderr_path.open("wb") as stderr:
        async with trio.open_nursery() as nursery:
            run = functools.partial(trio.run_process, args, stdout=subprocess.PIPE, stderr=stderr, env=env, check=False)
            process: trio.Process = await nursery.start(run)
            try:
                url = await listening_url(process, START_TIMEOUT) + "/kafka"
                with trio.fail_after(30):
                    async with open_client(url, token=key) as client:
                        [result] = await client.produce(kafka_topic, [b"logged"])
                        assert isinstance(result, Written) and result.offset == 0
                        assert [r.value for r in await client.fetch(kafka_topic, 0, 0)] == [b"logged"]
                    with pytest.raises(ConnectFailed) as refused:
                        async with open_client(url, token=key + "x"):
                            pass
                    assert refused.value.status == 401
                process.send_signal(signal.SIGTERM)
                with trio.fail_after(STOP_TIMEOUT):
                    assert await process.wait() == 0
            finally:
                await stop_process(process, STOP_TIMEOUT)
    text = stderr_path.read_text()
    lines: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            parsed = json.loads(line)
        except ValueError:
            pytest.fail(f"stderr line {number} is not JSON: {line[:200]!r}")
        assert isinstance(parsed, dict), line
        lines.append(parsed)
    assert len(lines) >= 3, text
    for line in lines:
        assert {"time", "level", "logger", "event", "message"} <= line.keys(), line
        assert line["level"] in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}, line
        assert isinstance(line["event"], str) and line["event"], line
        when = datetime.fromisoformat(line["time"].replace("Z", "+00:00"))
        assert when.utcoffset() == timedelta(0), line["time"]
        assert started - timedelta(seconds=5) <= when <= datetime.now().astimezone(), line["time"]
    [refusal] = [line for line in lines if line["event"] == "handshake_refused"]
    assert (refusal["level"], refusal["logger"], refusal["route"]) == ("WARNING", "kafka_ws_trio.audit", "/kafka")
    assert "401" in refusal["message"]
    [closed] = [line for line in lines if line["event"] == "session_closed"]
    assert (closed["route"], closed["principal"], closed["close_code"]) == ("/kafka", "app", 1000)
    assert {"session", "peer", "duration"} <= closed.keys(), closed
    assert closed["peer"].startswith("127.0.0.1:"), closed
    assert any(line["message"].startswith("got SIGTERM") for line in lines)
    for name, secret in {
        "the API key": key,
        "the key's secret part": key.rsplit("_", 1)[-1],
        "the key's hash": key_hash,
        "the route's Kafka password": kafka_broker.sasl_password,
    }.items():
        # Named, never shown: a failing run must not print the secret into the test log.
        leaked = [(number, line["logger"]) for number, line in enumerate(lines, 1) if secret in json.dumps(line)]
        assert not leaked, f"{name} is in stderr lines (number, logger): {leaked}"
        assert secret not in text, f"{name} is in stderr"
