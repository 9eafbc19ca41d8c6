"""Structured logs: one JSON object per line on standard error.

Every line has ts, level, logger, msg and the process id; callers add fields
with `extra=`. Edge lines carry session_id, and lines about a verdict its
decision_id, so one grep follows a session across the edge and the daemon.
"""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

LEVELS = ("debug", "info", "warning", "error")


def formatter() -> logging.Formatter:
    """Log records as the JSON lines both programs write."""
    return JsonFormatter(
        "{levelname}{name}{message}{process}",
        style="{",
        rename_fields={"levelname": "level", "name": "logger", "message": "msg"},
        timestamp="ts",
    )


def configure(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
