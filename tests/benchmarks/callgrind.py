"""CPU instructions of a Python run, counted by valgrind (callgrind): a figure that stays the same
on a busy machine, for the benchmarks that compare code before and after (``--instructions``)."""

from __future__ import annotations

import re
import subprocess
import sys

__all__ = ["instructions"]


def instructions(argv: list[str]) -> int:
    """Instructions of ``python *argv`` under callgrind: the whole process, every thread."""
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable]
    done = subprocess.run([*command, *argv], capture_output=True, text=True, check=True)
    match = re.search(r"Collected : (\d+)", done.stderr)
    assert match, done.stderr[-2000:]
    return int(match.group(1))
