"""How the proxy's log lines look: text for a terminal, or JSON, one object a line, for a log pipeline.

The package logs through the standard library, and names what a line is
about with ``extra=``: its ``event`` (``handshake_refused``,
``session_closed``...), and where known the ``route``, ``session``,
``principal``, ``peer``, ``topic``, ``partition``, ``close_code``,
``duration``. The JSON format is python-json-logger's formatter, which turns
every such field into a top-level key; this module only puts the common
keys first, under stable names:

``time``
    when, in ISO 8601, UTC, to the millisecond (``2026-05-01T12:00:00.123Z``)
``level``
    ``DEBUG``, ``INFO``, ``WARNING``, ``ERROR`` or ``CRITICAL``
``logger``
    the logger's name (``kafka_ws_trio.audit``, ``kafka_ws_trio.kafka``...)
``event``
    the line's event name; :data:`UNNAMED_EVENT` for a line logged without one
``message``
    the sentence the text format shows

then the record's own fields, and ``exception`` (its traceback, one string)
when the line carries one. Nothing here adds a value of its own: a line holds
what its caller put in it, and the package never puts a secret there.
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime, timezone
from typing import Any, Final, TextIO

from pythonjsonlogger.json import JsonFormatter

from ._config._defaults import LOG_FORMATS

#: The text format's lines: what the proxy has always written.
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: The most kafka-python logs, when the proxy logs at DEBUG (its own DEBUG lines hold secrets).
KAFKA_PYTHON_DEBUG_LEVEL: Final = logging.INFO
#: The ``event`` of a line whose caller named none.
UNNAMED_EVENT: Final = "log"


def _utc_time(created: float) -> str:
    moment = datetime.fromtimestamp(created, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonLines(JsonFormatter):
    """One JSON object per record: time, level, logger, event and message first, then the record's fields."""

    def __init__(self) -> None:
        super().__init__(
            "%(message)s",
            rename_fields={"exc_info": "exception", "stack_info": "stack"},
        )

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        fields: dict[str, Any] = {}
        super().add_fields(fields, record, message_dict)
        log_data["time"] = _utc_time(record.created)
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        log_data["event"] = fields.pop("event", None) or UNNAMED_EVENT
        # A record's own field never hides one of these (an extra named "level", say).
        log_data.update((key, value) for key, value in fields.items() if key not in log_data)


def formatter(log_format: str) -> logging.Formatter:
    """The formatter of ``log_format``: "text" or "json"."""
    if log_format == "json":
        return JsonLines()
    if log_format == "text":
        return logging.Formatter(TEXT_FORMAT)
    raise ValueError(f"log format {log_format!r} is not one of {', '.join(LOG_FORMATS)}")


def setup_logging(level: str, log_format: str = "text", stream: TextIO | None = None) -> None:
    """Send the process's log records at ``level`` and above to ``stream`` (stderr), one a line.

    With "json" the warnings module's messages become log lines too, so every line of the
    stream parses. kafka-python logs every reconnect attempt at ERROR, and the proxy's own
    lines name the cause: its loggers are quiet, except at DEBUG, where they log at INFO.
    Never below: kafka-python's DEBUG lines dump the bytes it sends (a SASL PLAIN login's
    password among them) and its clients' settings (passwords included).
    """
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(formatter(log_format))
    logging.basicConfig(level=getattr(logging, level), handlers=[handler])
    if log_format == "json":
        logging.captureWarnings(True)
    logging.getLogger("kafka").setLevel(KAFKA_PYTHON_DEBUG_LEVEL if level == "DEBUG" else logging.CRITICAL)
