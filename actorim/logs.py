"""Logging set-up: one line per event, readable by default, JSON with ``--log-json``.

Log lines carry text from the network (a token's header quoted in PyJWT's error, a user's room
name, a peer's close reason), so both formats escape control characters wherever they come from:
a peer cannot end a line and start a forged one. In the readable format a record is one line, and
an exception's traceback follows on lines that begin with whitespace, so a line that begins
without it is always the start of a record.

>>> escape_text("refused: bad\\n2026-01-01 INFO actorim: forged")
'refused: bad\\\\n2026-01-01 INFO actorim: forged'
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

__all__ = ["HumanFormatter", "JsonFormatter", "context", "escape_text", "setup_logging"]

# Fields a record may carry (``logger.info(..., extra={"user": ...})``) that are worth a column.
_CONTEXT_FIELDS = ("conn", "user", "room", "node")

# Characters that end a line or steer a terminal: C0 and C1 controls, DEL, and the Unicode line
# and paragraph separators (``str.splitlines`` and some log viewers break lines at them).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

# Prefix of each traceback line in the readable format: a continuation, never a record's start.
_CONTINUATION = "  "


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED_ESCAPES.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_text(text: str) -> str:
    """``text`` with each control character as a Python-style escape (``\\n``, ``\\x1b``)."""
    return _UNSAFE.sub(_escape_char, text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, context fields, exception.

    ``json`` escapes the C0 controls; the C1 controls, DEL and U+2028/U+2029 it would leave raw
    are written as ``\\uXXXX`` too, so the line holds no character that a reader may split on.
    """

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
        if record.stack_info:
            entry["stack"] = record.stack_info
        # Those characters can only stand inside JSON strings, where \uXXXX means the same.
        return _UNSAFE.sub(_json_escape, json.dumps(entry, ensure_ascii=False, default=str))


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


class HumanFormatter(logging.Formatter):
    """``time level logger: message conn=.. user=.. room=..`` (context fields when present).

    The message and the fields are escaped (see the module docstring); a traceback or stack
    follows on indented lines.
    """

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            self.formatTime(record),
            f"{record.levelname:<7}",
            f"{escape_text(record.name)}:",
            escape_text(record.getMessage()),
        ]
        parts += [
            f"{name}={escape_text(str(value))}"
            for name in _CONTEXT_FIELDS
            if (value := getattr(record, name, None)) is not None
        ]
        line = " ".join(parts)
        extra: list[str] = []
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            extra.append(record.exc_text)
        if record.stack_info:
            extra.append(self.formatStack(record.stack_info))
        for text in extra:
            line += "".join(f"\n{_CONTINUATION}{escape_text(part)}" for part in text.splitlines())
        return line


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
