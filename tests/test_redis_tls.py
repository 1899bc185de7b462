"""``rediss+cluster://`` and ``rediss+sentinel://``: a node stores, publishes and hears its room
through Redis servers that speak TLS only, with a password, the certificate given in the URL.

Small topologies, started per test: a cluster of three masters without replicas, a Sentinel
with its master and replica; one ``actorim serve`` node on each. A room message that a member
of the same node receives has gone through the store's script on Redis and back through the
node's subscription, both over TLS.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import test_cluster as suite
from tests.redis_server import make_tls
from tests.redis_topologies import RedisClusterSet, SentinelSet
from tests.support import Client

pytestmark = pytest.mark.process


@pytest.mark.parametrize("kind", ["cluster", "sentinel"])
def test_a_node_chats_through_redis_over_tls_with_a_password(
    kind: str, tmp_path: Path, clients: list[Client]
) -> None:
    tls = make_tls(tmp_path / "tls")
    made = (
        RedisClusterSet(tmp_path / "redis", size=3, replicas=0, tls=tls)
        if kind == "cluster"
        else SentinelSet(tmp_path / "redis", tls=tls)
    )
    assert made.url.startswith(f"rediss+{kind}://")
    made.start()
    # The default heartbeat: a TLS handshake costs CPU, and a 0.2 s one on a loaded machine
    # can take longer than tests/test_cluster.py's 0.2 s heartbeat allows.
    node = suite.NodeProcess("T", made.url, tmp_path, args=("--redis-heartbeat", "1.0"))
    try:
        suite.start_nodes([node])
        alice = suite.connect(clients, node, "tls-alice")
        bob = suite.connect(clients, node, "tls-bob")
        alice.ok("join", room="tls-room")
        bob.ok("join", room="tls-room")
        sent = alice.ok("send", room="tls-room", body="over TLS", cid="tls-1")
        assert bob.event("msg", room="tls-room")["mid"] == sent["mid"]
        assert [m["body"] for m in suite.history(bob, "tls-room")] == ["over TLS"]
    finally:
        node.kill()
        made.stop()
