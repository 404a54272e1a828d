"""Log lines (issue 14): ``log_format = "json"`` writes one JSON object a line, with the common keys
(time, level, logger, event, message) and the record's own ``extra=`` fields at the top level; "text"
writes what the proxy always wrote."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any, Final

import pytest

from kafka_ws_trio._config import ConfigError, ServerConfig, parse_config
from kafka_ws_trio._logs import LOG_FORMATS, UNNAMED_EVENT, formatter

#: The fields the proxy's lines carry about a session, as ``extra=`` passes them.
SESSION_FIELDS: Final[dict[str, Any]] = {
    "event": "session_closed",
    "session": "s-17",
    "route": "/kafka",
    "principal": "dashboard",
    "peer": "127.0.0.1:50312",
    "topic": "orders",
    "partition": 3,
    "close_code": 1001,
    "duration": 12.5,
}


class Lines:
    """A logger whose records are formatted in one format into a buffer, read back line by line."""

    def __init__(self, log_format: str) -> None:
        self.buffer = io.StringIO()
        handler = logging.StreamHandler(self.buffer)
        handler.setFormatter(formatter(log_format))
        self.logger = logging.getLogger(f"kafka_ws_trio.test_logs.{log_format}")
        self.logger.handlers[:] = [handler]
        self.logger.propagate = False
        self.logger.setLevel(logging.DEBUG)

    def lines(self) -> list[str]:
        return self.buffer.getvalue().splitlines()

    def objects(self) -> list[dict[str, Any]]:
        parsed = [json.loads(line) for line in self.lines()]
        assert all(isinstance(one, dict) for one in parsed)
        return parsed


@pytest.fixture
def json_lines() -> Iterator[Lines]:
    lines = Lines("json")
    yield lines
    lines.logger.handlers.clear()


def test_a_json_line_starts_with_the_common_keys_and_carries_the_records_fields(json_lines: Lines) -> None:
    before = datetime.now(timezone.utc)
    json_lines.logger.info("session %s closed with %d", "s-17", 1001, extra=SESSION_FIELDS)
    [line] = json_lines.objects()
    assert list(line)[:5] == ["time", "level", "logger", "event", "message"]
    assert line["level"] == "INFO"
    assert line["logger"] == "kafka_ws_trio.test_logs.json"
    assert line["message"] == "session s-17 closed with 1001"
    for key, value in SESSION_FIELDS.items():
        assert line[key] == value, key
    assert set(line) == {"time", "level", "logger", "message", *SESSION_FIELDS}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"]), line["time"]
    when = datetime.fromisoformat(line["time"].replace("Z", "+00:00"))
    assert when.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= when <= datetime.now(timezone.utc)


def test_a_line_logged_without_an_event_name_says_so(json_lines: Lines) -> None:
    json_lines.logger.warning("route %s: Kafka reachable again", "/kafka")
    [line] = json_lines.objects()
    assert line["event"] == UNNAMED_EVENT == "log"
    assert line["level"] == "WARNING"
    assert line["message"] == "route /kafka: Kafka reachable again"


def test_every_record_is_one_line_even_with_newlines_and_a_traceback(json_lines: Lines) -> None:
    json_lines.logger.info("two\nlines", extra={"event": "multi"})
    try:
        raise RuntimeError("the reader broke")
    except RuntimeError:
        json_lines.logger.exception("bug while reading", extra={"event": "bug", "route": "/kafka"})
    first, second = json_lines.objects()
    assert first["message"] == "two\nlines"
    assert second["level"] == "ERROR"
    assert (second["event"], second["route"], second["message"]) == ("bug", "/kafka", "bug while reading")
    assert second["exception"].startswith("Traceback (most recent call last):")
    assert second["exception"].endswith("RuntimeError: the reader broke")
    assert "exc_info" not in second


def test_a_records_field_does_not_hide_a_common_key(json_lines: Lines) -> None:
    json_lines.logger.error("odd", extra={"event": "odd", "level": "fine", "time": "never", "logger": "me"})
    [line] = json_lines.objects()
    assert (line["level"], line["logger"]) == ("ERROR", "kafka_ws_trio.test_logs.json")
    assert line["time"] != "never"


def test_values_json_cannot_hold_are_written_as_text(json_lines: Lines) -> None:
    json_lines.logger.info("x", extra={"event": "odd_values", "raw": b"\x00k", "when": datetime(2024, 5, 1, 12)})
    [line] = json_lines.objects()
    assert isinstance(line["raw"], str)
    assert line["when"].startswith("2024-05-01T12:00:00")


def test_the_text_format_is_the_one_the_proxy_always_wrote() -> None:
    lines = Lines("text")
    try:
        lines.logger.info("listening on %s", "ws://127.0.0.1:9080", extra={"event": "listening"})
        [line] = lines.lines()
    finally:
        lines.logger.handlers.clear()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO kafka_ws_trio\.test_logs\.text: listening on ws://127\.0\.0\.1:9080",
        line,
    ), line


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="'xml'"):
        formatter("xml")


def test_log_format_is_a_server_key_text_by_default() -> None:
    assert LOG_FORMATS == ("text", "json")
    assert ServerConfig().log_format == "text"
    route = '[[routes]]\nuri = "/kafka"\nnodes = ["127.0.0.1:9092"]\n'
    assert parse_config(f'[server]\nlog_format = "json"\n{route}').server.log_format == "json"
    with pytest.raises(ConfigError) as refused:
        parse_config(f'[server]\nlog_format = "yaml"\n{route}', source="proxy.toml")
    assert str(refused.value).startswith('proxy.toml: server.log_format: "yaml" is not supported')


#: A process that sets up JSON logging as ``serve`` does, then logs from the package, from a library
#: (kafka-python's logger is quiet below DEBUG) and through the warnings module.
SETUP_PROBE: Final = """
import logging, warnings
from kafka_ws_trio._logs import setup_logging
setup_logging("INFO", "json")
logging.getLogger("kafka_ws_trio.audit").warning("refused", extra={"event": "handshake_refused", "route": "/k"})
logging.getLogger("kafka").error("reconnecting")
logging.getLogger("trio-websocket").info("a library's line")
logging.getLogger("kafka_ws_trio.session").debug("below the level")
warnings.warn("careful", UserWarning)
"""


@pytest.mark.timeout(60)
def test_setup_logging_json_makes_every_stderr_line_a_json_object() -> None:
    result = subprocess.run([sys.executable, "-c", SETUP_PROBE], capture_output=True, text=True, timeout=30, check=True)
    assert result.stdout == ""
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert [(line["logger"], line["event"], line["level"]) for line in lines] == [
        ("kafka_ws_trio.audit", "handshake_refused", "WARNING"),
        ("trio-websocket", UNNAMED_EVENT, "INFO"),
        ("py.warnings", UNNAMED_EVENT, "WARNING"),
    ]
    assert lines[0]["route"] == "/k"
    assert "careful" in lines[2]["message"]
