"""Logging set-up: one line per event, readable by default, JSON with ``--log-json``."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

__all__ = ["HumanFormatter", "JsonFormatter", "context", "setup_logging"]

# Fields a record may carry (``logger.info(..., extra={"user": ...})``) that are worth a column.
_CONTEXT_FIELDS = ("conn", "user", "room", "node")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, context fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in _CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class HumanFormatter(logging.Formatter):
    """``time level logger: message conn=.. user=.. room=..`` (context fields when present)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = [
            f"{name}={value}"
            for name in _CONTEXT_FIELDS
            if (value := getattr(record, name, None)) is not None
        ]
        if not fields:
            return line
        head, sep, rest = line.partition("\n")
        return f"{head} {' '.join(fields)}{sep}{rest}"


def context(
    *, conn: int | None = None, user: str | None = None, room: str | None = None
) -> dict[str, Any]:
    """``extra=`` for a log call about a connection, a user or a room."""
    return {"conn": conn, "user": user, "room": room}


def setup_logging(level: str = "INFO", *, json_lines: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else HumanFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
