"""Structured logs: one JSON object per line on standard error.

Every line has ts, level, logger, msg and the process id; callers add fields
with `extra=`. Edge lines carry session_id, and lines about a verdict its
decision_id, so one grep follows a session across the edge and the daemon.

The formatter is our own: the edge writes a line for every message it accepts,
and a general-purpose JSON formatter cost five times as much per line.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

LEVELS = ("debug", "info", "warning", "error")

# A record's own attributes; everything else on it came from `extra=`.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_encode = json.JSONEncoder(default=str).encode  # made once: json.dumps(default=) makes one per call


class Timestamps:
    """ISO 8601 UTC timestamps with microseconds; the part up to the second is
    formatted once per second (this runs for every log line and decision)."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def iso(self, when: float) -> str:
        second = int(when)
        if second != self._second:
            self._second = second
            self._prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._prefix}.{int((when - second) * 1e6):06d}+00:00"


class JsonLines(logging.Formatter):
    """A record as one line of JSON: the fixed fields, then the extras."""

    def __init__(self) -> None:
        super().__init__()
        self._timestamps = Timestamps()

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": self._timestamps.iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "process": record.process,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD:
                line[key] = value
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return _encode(line)


def formatter() -> logging.Formatter:
    """Log records as the JSON lines both programs write."""
    return JsonLines()


def configure(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
