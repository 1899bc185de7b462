"""Test-wide set-up: the suite runs the way the server does, on a monkey-patched gevent."""

from gevent import monkey

if not monkey.is_module_patched("socket"):
    monkey.patch_all()

from collections.abc import Callable, Iterator
from typing import Any

import pytest

# Rewritten like a test module, before its first import below: the modules that also load it
# with ``pytest_plugins`` would otherwise get a warning that it was imported unrewritten.
pytest.register_assert_rewrite("tests.redis_server")

from actorim.config import Config  # noqa: E402
from tests.redis_server import redis_client, redis_server, redis_session  # noqa: E402, F401
from tests.support import RunningNode  # noqa: E402


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
