"""Run the whole suite as three pytest processes at once on two cores: ``make test``.

Why not pytest-xdist: tests/conftest.py monkey-patches the interpreter with gevent at import,
and xdist's execnet worker threads then break. Two plain pytest processes, each given half of
the test files, need nothing of the sort. This module is a plain script (no gevent, no pytest
import) that:

* splits the test files into shards of about equal time, by the per-file durations recorded in
  ``tests/durations.json`` (a file not in it counts :data:`DEFAULT_WEIGHT_S`), longest first
  into the lightest shard;
* starts one pytest per shard, each with a temporary directory of its own (``--basetemp``,
  which pytest otherwise numbers in a directory every pytest of the user shares);
* then runs the files of :data:`ALONE` by themselves, in one more pytest;
* prints each shard's whole output, undivided, as soon as that shard ends, then one line per
  shard; exits with the first non-zero status (a shard whose files hold no selected test,
  status 5, counts as passed while another shard ran tests).

Arguments go to every shard's pytest (``-x``, ``-k EXPR``, ``-m EXPR``...). When they name
test files or node ids (``tests/...``, ``*.py``, ``::``) the run is one pytest with them, as
``python -m pytest ARGS`` would be.

``python -m tests.shard --record`` runs the sharded suite and writes what each file took into
``tests/durations.json``: do it when files were added or got much slower or faster.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
DURATIONS = TESTS / "durations.json"
"""Seconds each test file took (setup, call and teardown of its tests) in a recorded run."""

DEFAULT_WEIGHT_S = 3.0
"""The weight of a test file ``tests/durations.json`` does not know yet: above most files (a new
file is more often a process-starting one than a pure one), so that a few new ones spread."""

SHARDS = 3
"""Pytest processes at once. The suite waits more than it computes (servers starting, Redis
failing over, browsers rendering): with two, one per core of the machine CI runs on, the two
cores were half idle (4 min of CPU in a 4 min 10 s run); three took 2 min 39 s, every test
passing, with the cores about 70 % busy."""

RECORD_OPTION = "--record-durations"
"""The pytest option (tests/conftest.py) that writes what each file took into a JSON file."""

ALONE = frozenset({"tests/test_store_attacks.py"})
"""Files run after the shards, by one pytest with the machine to itself: their tests measure a
bystander's latency while a server does heavy store work for an attacker (p90 under 0.5 s),
which a busy other shard on the same two cores pushed past the bound in 4 runs of 6 (0.6 to
0.8 s; 5 ms alone)."""

NO_TESTS_COLLECTED = 5
"""pytest's exit status when nothing was selected."""


@dataclass
class Shard:
    """One pytest process's share: its files and their estimated seconds."""

    number: int
    name: str
    files: list[str] = field(default_factory=list)
    weight: float = 0.0


def split(files: Sequence[str], weights: dict[str, float], count: int) -> list[Shard]:
    """Deal ``files`` into ``count`` shards of about equal weight: the heaviest file first, each
    into the lightest shard so far; ties in a fixed order, so that a split is reproducible.

    >>> [s.files for s in split(["a", "b", "c", "d"], {"a": 5, "b": 3, "c": 3}, 2)]
    [['a', 'd'], ['b', 'c']]
    """
    shards = [Shard(number, f"shard {number}/{count}") for number in range(1, count + 1)]
    ordered = sorted(files, key=lambda name: (-weights.get(name, DEFAULT_WEIGHT_S), name))
    for name in ordered:
        lightest = min(shards, key=lambda shard: (shard.weight, shard.number))
        lightest.files.append(name)
        lightest.weight += weights.get(name, DEFAULT_WEIGHT_S)
    for shard in shards:
        shard.files.sort()
    return shards


def suite_files() -> list[str]:
    """Every file pytest collects under tests/, as paths relative to the repository."""
    return sorted(str(path.relative_to(ROOT)) for path in TESTS.rglob("test_*.py"))


def load_weights(path: Path = DURATIONS) -> dict[str, float]:
    return json.loads(path.read_text()) if path.exists() else {}


def names_tests(args: Sequence[str]) -> bool:
    """Whether pytest ``args`` name files or node ids (then one pytest runs them)."""
    return any(
        not arg.startswith("-") and ("::" in arg or arg.endswith(".py") or arg.startswith("tests"))
        for arg in args
    )


@dataclass
class Run:
    """A started pytest process and where its output goes."""

    shard: Shard
    process: subprocess.Popen[bytes]
    output: Path
    started: float
    ended: float = 0.0


def start(shard: Shard, args: Sequence[str], scratch: Path, record: bool) -> Run:
    label = f"part{shard.number}"
    options = [f"--basetemp={scratch / label / 'tmp'}"]
    if record:
        options.append(f"{RECORD_OPTION}={scratch / label / 'durations.json'}")
    output = scratch / label / "output.txt"
    output.parent.mkdir(parents=True)
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "pytest", *options, *args, *shard.files],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    return Run(shard, process, output, time.monotonic())


def report(run: Run, lock: threading.Lock) -> None:
    """Wait for ``run`` and print its whole output at once, framed by the shard's name."""
    run.process.wait()
    run.ended = time.monotonic()
    with lock:
        sys.stdout.write(f"\n===== {run.shard.name}: ")
        sys.stdout.write(f"{len(run.shard.files)} files, {run.shard.weight:.0f} s recorded =====\n")
        sys.stdout.flush()
        with run.output.open("rb") as text:
            shutil.copyfileobj(text, sys.stdout.buffer)
        sys.stdout.buffer.flush()


def outcome(codes: Sequence[int]) -> int:
    """The run's exit status: the first failure; shards with nothing selected pass as long as
    another shard ran tests."""
    failed = [code for code in codes if code not in (0, NO_TESTS_COLLECTED)]
    if failed:
        return failed[0]
    return NO_TESTS_COLLECTED if all(code == NO_TESTS_COLLECTED for code in codes) else 0


def merge_durations(runs: Sequence[Run]) -> None:
    recorded: dict[str, float] = {}
    for run in runs:
        path = run.output.parent / "durations.json"
        if not path.exists():  # the shard stopped before its session ended
            print(f"not writing {DURATIONS.name}: {run.shard.name} recorded nothing")
            return
        recorded.update(json.loads(path.read_text()))
    rounded = {name: round(seconds, 2) for name, seconds in sorted(recorded.items())}
    DURATIONS.write_text(json.dumps(rounded, indent=1) + "\n")
    print(f"wrote {DURATIONS.relative_to(ROOT)}: {len(rounded)} files")


def run_parts(
    parts: Sequence[Shard], args: Sequence[str], scratch: Path, record: bool
) -> list[Run]:
    """Run one pytest per part at once; each part's output is printed as it ends."""
    runs: list[Run] = []
    try:
        runs = [start(part, args, scratch, record) for part in parts]
        lock = threading.Lock()
        waiters = [threading.Thread(target=report, args=(run, lock)) for run in runs]
        for waiter in waiters:
            waiter.start()
        for waiter in waiters:
            waiter.join()
        return runs
    finally:
        for run in runs:
            if run.process.poll() is None:
                run.process.send_signal(signal.SIGINT)  # pytest tears its fixtures down
        for run in runs:
            run.process.wait()


def run_shards(count: int, args: Sequence[str], record: bool) -> int:
    files = suite_files()
    weights = load_weights()
    shared = [name for name in files if name not in ALONE]
    shards = [shard for shard in split(shared, weights, count) if shard.files]
    alone = Shard(count + 1, "alone", [name for name in files if name in ALONE])
    alone.weight = sum(weights.get(name, DEFAULT_WEIGHT_S) for name in alone.files)
    scratch = Path(tempfile.mkdtemp(prefix="actorim-shards-"))
    try:
        runs = run_parts(shards, args, scratch, record)
        if alone.files:
            runs += run_parts([alone], args, scratch, record)
        print()
        for run in runs:
            seconds = run.ended - run.started
            print(f"{run.shard.name}: exit {run.process.returncode} in {seconds:.0f} s")
        if record:  # a failed test took its time too
            merge_durations(runs)
        return outcome([run.process.returncode for run in runs])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.shard",
        description=__doc__.split("\n\n", 1)[0] if __doc__ else None,
        allow_abbrev=False,
    )
    parser.add_argument("--shards", type=int, default=SHARDS, help=f"default {SHARDS}")
    parser.add_argument(
        "--record", action="store_true", help=f"rewrite {DURATIONS.name} from this run"
    )
    own, args = parser.parse_known_args(argv)
    if names_tests(args) and not own.record:
        return subprocess.call([sys.executable, "-m", "pytest", *args], cwd=ROOT)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return run_shards(own.shards, args, own.record)


if __name__ == "__main__":
    sys.exit(main())
