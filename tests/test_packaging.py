"""The package as pip builds it: the chat page's files inside, no warning, no run-time extras."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.process  # pip builds the wheel in a process of its own

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_builds_without_warnings_with_the_static_files_and_without_honcho(
    tmp_path: Path,
) -> None:
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = build.stdout + build.stderr
    assert build.returncode == 0, output
    assert "Warning" not in output, output
    (wheel,) = tmp_path.glob("actorim-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        requires = [
            line
            for line in archive.read(metadata).decode().splitlines()
            if line.startswith("Requires-Dist:")
        ]
    static = ROOT / "actorim" / "web" / "static"
    assert {f"actorim/web/static/{p.name}" for p in static.iterdir()} <= set(names)
    lua = ROOT / "actorim" / "redis" / "lua"
    assert {f"actorim/redis/lua/{p.name}" for p in lua.glob("*.lua")} <= set(names)
    assert not [n for n in names if "__pycache__" in n]
    # honcho runs the Procfile for `make run`; the library does not need it.
    assert [r for r in requires if "honcho" in r] == [
        'Requires-Dist: honcho<3,>=2.0; extra == "run"'
    ]
