"""Two ``actorim serve`` nodes sharing a private Redis, for a test module to start once:
tests/test_cluster.py's machinery behind one context manager, and the per-test list of clients
that a test opens on either node (into the ``clients`` fixture of tests/conftest.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.redis_server import RedisServer, find_redis_server
from tests.support import Client
from tests.test_cluster import NodeProcess, redis_url_of, start_nodes


@dataclass
class TwoNodes:
    redis: RedisServer
    a: NodeProcess
    b: NodeProcess


@contextlib.contextmanager
def two_nodes(directory: Path, args: tuple[str, ...] = ()) -> Iterator[TwoNodes]:
    """Nodes A and B, started with ``args``, on one fresh redis-server; all stopped after."""
    server = RedisServer(directory / "redis", binary=find_redis_server())
    server.start()
    url = redis_url_of(server)
    a = NodeProcess("A", url, directory, args=args)
    b = NodeProcess("B", url, directory, args=args)
    try:
        start_nodes([a, b])
        yield TwoNodes(server, a, b)
    finally:
        a.kill()
        b.kill()
        server.stop()


def on(node: NodeProcess, user: str, clients: list[Client]) -> Client:
    """A client of ``user`` connected to ``node``, closed with ``clients`` after the test."""
    client, _ = node.client(user)
    clients.append(client)
    return client
