"""Test-wide set-up: the suite runs the way the server does, on a monkey-patched gevent."""

from gevent import monkey

if not monkey.is_module_patched("socket"):
    monkey.patch_all()

import contextlib
import json
import os
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# -- bytecode: the project compiled once, not at every interpreter start ----------------------

PYCACHE = Path(__file__).resolve().parent.parent / ".venv" / "pycache"
"""Where the interpreters the suite starts (servers, attackers, samples, nodes: a few hundred)
keep their bytecode. With writing it turned off (``PYTHONDONTWRITEBYTECODE``, as on this
project's machines) each of them would compile every module it imports again, about 0.1 s of
CPU a start; kept here, outside the work tree, nothing lands beside the sources (or in a wheel
built from them) and ``make clean`` removes it with the virtualenv."""

os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
os.environ["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
# This process too, for what it imports from here on: the project and the test modules.
sys.dont_write_bytecode = False
sys.pycache_prefix = str(PYCACHE)


# Rewritten like a test module, before its first import below: the modules that also load it
# with ``pytest_plugins`` would otherwise get a warning that it was imported unrewritten.
pytest.register_assert_rewrite("tests.redis_server", "tests.redis_topologies")

from actorim.config import Config  # noqa: E402
from tests.redis_server import redis_client, redis_server, redis_session  # noqa: E402, F401
from tests.redis_topologies import redis_cluster_client, redis_cluster_session  # noqa: E402, F401
from tests.support import Client, RunningNode  # noqa: E402

# -- tiers: tests that start processes are marked, the rest is `make test-fast` ---------------

PROCESS_MARK = "process"
"""Marks a test that starts a child process: ``actorim serve``, an attacker, redis-server,
nginx, Chromium, pip. ``make test-fast`` runs the others but the few marked ``slow`` (in
process, but bulk or waiting out real time: back-off, deadlines, token expiry): ``-m "not
process and not slow"``."""

# Fixtures that start a process (or share one started for the session): a test using one of
# them, directly or through another fixture, is marked without saying so.
PROCESS_FIXTURES = frozenset(
    {
        "redis_session",
        "redis_client",
        "redis_server",
        "redis_cluster_session",
        "redis_cluster_client",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if PROCESS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(PROCESS_MARK)


class UnmarkedProcessError(AssertionError):
    """An unmarked test started a process: it would slow the fast tier down unseen."""


@contextlib.contextmanager
def refusing_processes(nodeid: str) -> Iterator[None]:
    """While inside, starting a child process raises :class:`UnmarkedProcessError`."""

    def refuse(self: Any, args: Any, *_rest: Any, **_kw: Any) -> None:
        raise UnmarkedProcessError(
            f"{nodeid} starts a process ({args!r}): mark it @pytest.mark.{PROCESS_MARK}"
            f" (or its module: pytestmark = pytest.mark.{PROCESS_MARK})"
        )

    # The patched Popen and the original: asyncio and others may hold either.
    classes = {subprocess.Popen, monkey.get_original("subprocess", "Popen")}
    saved = {popen: popen.__dict__["_execute_child"] for popen in classes}
    for popen in classes:
        popen._execute_child = refuse
    try:
        yield
    finally:
        for popen, original in saved.items():
            popen._execute_child = original


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    """Fail a test not marked ``process`` the moment it (or a fixture it sets up, of any
    scope) starts a child process, so that the fast tier stays free of them by construction."""
    if item.get_closest_marker(PROCESS_MARK) is not None:
        return (yield)
    with refusing_processes(item.nodeid):
        return (yield)


# -- durations: what `python -m tests.shard` balances its shards by -------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--record-durations",
        metavar="PATH",
        help="write the seconds each test file took (setup, call, teardown) into PATH as JSON",
    )


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("--record-durations")
    if path:
        config.pluginmanager.register(FileDurations(Path(path)), "file-durations")


class FileDurations:
    """Sums each test file's report durations; written when the session ends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seconds: dict[str, float] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        name = report.nodeid.split("::", 1)[0]
        self.seconds[name] = self.seconds.get(name, 0.0) + report.duration

    def pytest_sessionfinish(self) -> None:
        self.path.write_text(json.dumps(self.seconds, indent=1, sort_keys=True))


# -- randomness ----------------------------------------------------------------------------------

SEED_VARIABLE = "ACTORIM_TEST_SEED"
"""Set it to a seed a failed test printed to make the same random choices again."""


@pytest.fixture(autouse=True)
def seeded_random() -> int:
    """Seed the ``random`` module for each test (fresh, or ``$ACTORIM_TEST_SEED``) and print the
    seed, which a failed test's output then shows: with it set again, the draws the test makes
    come out the same (those of greenlets racing each other may still interleave otherwise)."""
    seed = int(os.environ.get(SEED_VARIABLE) or random.SystemRandom().randrange(2**32))
    random.seed(seed)
    print(f"random seed {seed} (to repeat: {SEED_VARIABLE}={seed})")
    return seed


# -- the browser ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One Chromium for every browser test of the run (tests/test_browser.py and
    tests/test_page_*.py), launched at the first; each test opens contexts of its own. A launch
    costs about a second of CPU, once instead of once per module."""
    from tests.test_browser import launch_chromium

    yield from launch_chromium()


# -- nodes ---------------------------------------------------------------------------------------


@pytest.fixture
def start_node(tmp_path: Any) -> Iterator[Callable[..., RunningNode]]:
    """Start nodes on free ports (memory store unless ``store="sqlite"``); stopped after."""
    nodes: list[RunningNode] = []

    def start(hooks: Any = None, **settings: Any) -> RunningNode:
        settings.setdefault("dev", True)
        settings.setdefault("store", "memory")
        settings.setdefault("data_dir", str(tmp_path / f"node{len(nodes)}"))
        node = RunningNode(Config(**settings), hooks=hooks)
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        node.stop()


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    """The clients a test opens (``tests.two_nodes.on`` adds them), closed after it."""
    opened: list[Client] = []
    yield opened
    for client in opened:
        client.close()


@pytest.fixture
def cleanup() -> Iterator[list[Any]]:
    """What a test starts (processes, receivers, clients), stopped or closed after it, the last
    one first."""
    things: list[Any] = []
    yield things
    for thing in reversed(things):
        thing.close() if isinstance(thing, Client) else thing.stop()


@pytest.fixture
def server(start_node: Callable[..., RunningNode]) -> RunningNode:
    """One node with fault injection on, the memory store and short timeouts."""
    return start_node(fault_injection=True, presence_grace=0.3)
