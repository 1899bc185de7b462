"""Test-wide set-up: the suite runs the way the server does, on a monkey-patched gevent."""

from gevent import monkey

if not monkey.is_module_patched("socket"):
    monkey.patch_all()

import os
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest

# Rewritten like a test module, before its first import below: the modules that also load it
# with ``pytest_plugins`` would otherwise get a warning that it was imported unrewritten.
pytest.register_assert_rewrite("tests.redis_server")

from actorim.config import Config  # noqa: E402
from tests.redis_server import redis_client, redis_server, redis_session  # noqa: E402, F401
from tests.support import RunningNode  # noqa: E402

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


@pytest.fixture
def start_node(tmp_path: Any) -> Iterator[Callable[..., RunningNode]]:
    """Start nodes on free ports (memory store unless ``store="sqlite"``); stopped after."""
    nodes: list[RunningNode] = []

    def start(**settings: Any) -> RunningNode:
        settings.setdefault("dev", True)
        settings.setdefault("store", "memory")
        settings.setdefault("data_dir", str(tmp_path / f"node{len(nodes)}"))
        node = RunningNode(Config(**settings))
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        node.stop()


@pytest.fixture
def server(start_node: Callable[..., RunningNode]) -> RunningNode:
    """One node with fault injection on, the memory store and short timeouts."""
    return start_node(fault_injection=True, presence_grace=0.3)
