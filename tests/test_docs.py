"""The docs move with the code: every setting, error code and close code is documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from actorim.config import SETTINGS
from actorim.protocol.commands import COMMAND_NAMES
from actorim.protocol.errors import ErrorCode
from actorim.protocol.frames import CloseCode

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_every_setting_is_in_the_operations_docs(setting) -> None:
    text = (DOCS / "operations.md").read_text()
    assert f"`{setting.flag}`" in text and f"`{setting.env_var}`" in text


def test_every_error_code_close_code_and_command_is_in_the_protocol_docs() -> None:
    text = (DOCS / "protocol.md").read_text()
    for code in ErrorCode:
        assert f"`{code.value}`" in text, code
    for close in CloseCode:
        if close is not CloseCode.ABNORMAL_CLOSURE:
            assert f"| {int(close)} |" in text, close
    for name in COMMAND_NAMES:
        assert f"`{name} " in text or f"`{name}`" in text, name


def test_the_readme_gives_the_two_commands_and_the_docs_exist() -> None:
    readme = (DOCS.parent / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    for name in (
        "protocol",
        "architecture",
        "embedding",
        "guarantees",
        "operations",
        "supervisors",
        "performance",
        "deploy",
        "clients",
        "loadtest",
    ):
        assert (DOCS / f"{name}.md").exists(), name
