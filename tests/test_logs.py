"""Log lines: text from the network is escaped, so no peer can forge a line of the log."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Callable, Iterator

import pytest

from actorim.logs import HumanFormatter, JsonFormatter, escape_text
from tests.support import RunningNode

FORGED = "2026-12-02 15:00:00,000 WARNING actorim: FORGED admin logged in"
# Every character that ends a line for some reader, and two that steer a terminal.
LINE_BREAKS = ["\n", "\r", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029"]


def _record(msg: str, *args: object, exc: bool = False, **extra: object) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("bad value\n" + FORGED)
        except ValueError as error:
            exc_info = (ValueError, error, error.__traceback__)
    record = logging.LogRecord("actorim", logging.INFO, __file__, 1, msg, args, exc_info)
    record.__dict__.update(extra)
    return record


@pytest.mark.parametrize("brk", LINE_BREAKS, ids=lambda c: f"U+{ord(c):04X}")
def test_a_readable_line_escapes_line_breaks_in_the_message_its_args_and_fields(brk: str) -> None:
    record = _record("refused: %s", f"x{brk}{FORGED}", user=f"u{brk}{FORGED}", room=f"r{brk}")
    line = HumanFormatter().format(record)
    assert line.splitlines() == [line]
    assert f"refused: x{escape_text(brk)}{FORGED}" in line
    assert f"user=u{escape_text(brk)}" in line


def test_a_readable_traceback_stays_on_indented_lines_after_its_record() -> None:
    line = HumanFormatter().format(_record("crashed: %s", "a\nb", exc=True))
    head, *rest = line.splitlines()
    assert head.endswith("crashed: a\\nb")
    assert rest and all(part.startswith("  ") for part in rest)
    assert any("Traceback" in part for part in rest)
    assert not any(part.startswith(FORGED) for part in line.splitlines())


def test_escaping_names_the_common_controls_and_writes_others_as_hex() -> None:
    assert escape_text("a\tb\rc\nd\x1b[31me\x7f\u2028") == "a\\tb\\rc\\nd\\x1b[31me\\x7f\\u2028"
    assert escape_text("plain text, café, 日本") == "plain text, café, 日本"


@pytest.mark.parametrize("brk", LINE_BREAKS, ids=lambda c: f"U+{ord(c):04X}")
def test_a_json_line_holds_no_raw_line_break_and_decodes_to_the_original_text(brk: str) -> None:
    record = _record("refused: %s", f"x{brk}{FORGED}", user=f"u{brk}", exc=True)
    line = JsonFormatter().format(record)
    assert line.splitlines() == [line]
    entry = json.loads(line)
    assert entry["msg"] == f"refused: x{brk}{FORGED}"
    assert entry["user"] == f"u{brk}"
    assert FORGED in entry["exc"]


def _segment(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


@pytest.fixture(params=["readable", "json"])
def captured_log(request: pytest.FixtureRequest) -> Iterator[io.StringIO]:
    """The ``actorim`` logger's records at INFO, formatted as the server formats them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(HumanFormatter() if request.param == "readable" else JsonFormatter())
    logger = logging.getLogger("actorim")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_a_token_whose_header_holds_a_newline_forges_no_log_line(
    start_node: Callable[..., RunningNode], captured_log: io.StringIO
) -> None:
    node = start_node()
    # PyJWT quotes an unknown critical extension in its error, which the node logs.
    header = {"alg": "HS256", "typ": "JWT", "crit": [f"x\n{FORGED}"]}
    token = f"{_segment(header)}.{_segment({'sub': 'mallory'})}.c2ln"
    client = node.client()
    assert client.error("connect", token=token)["code"] == "unauthenticated"
    client.wait_closed()
    log = captured_log.getvalue()
    assert "authentication refused" in log and "FORGED" in log
    assert not any(line.startswith(FORGED) for line in log.splitlines())
