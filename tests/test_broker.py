"""The Broker seam: what the actors publish reaches the same connections whichever broker the
node holds, the local one (one node) or the Redis one (a cluster).

An ephemeral room event (typing and the like) has no command yet; these tests publish it
through the node's broker the way a connection handler would.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from actorim.local.broker import LocalBroker
from actorim.protocol.wire import WireFrame
from actorim.redis.broker import RedisBroker
from tests.support import Client, RunningNode, queued


def typing_frame(user: str) -> WireFrame:
    return WireFrame({"t": "typing", "room": "r", "user": user})


def assert_ephemeral_reaches_all_but_origin(
    publisher: RunningNode, alice: Client, others: list[Client]
) -> None:
    """``alice`` (on ``publisher``) types in room ``r``: every other member hears it, she does
    not, and nothing is stored (the next message still has seq 1)."""
    [origin] = publisher.node.ctx.directory.links_of("alice")
    publisher.node.ctx.broker.publish_ephemeral("r", typing_frame("alice"), origin)
    for other in others:
        assert other.event("typing", room="r")["user"] == "alice"
    # A barrier on the same path (the room's fan-out, through the broker): a message sent after
    # the event reaches alice after it would have.
    sent = others[0].ok("send", room="r", body="after")
    assert sent["seq"] == 1, "the ephemeral event took a seq"
    alice.event("msg", room="r", seq=1)
    assert not queued(alice, "typing"), "the origin got its own ephemeral event back"
    assert [m["seq"] for m in alice.ok("history", room="r")["messages"]] == [1]


def test_on_one_node_an_ephemeral_room_event_reaches_every_member_but_its_origin(
    start_node: Callable[..., RunningNode],
) -> None:
    node = start_node()
    assert isinstance(node.node.ctx.broker, LocalBroker)
    alice, bob, carol = (node.client(u) for u in ("alice", "bob", "carol"))
    for client in (alice, bob, carol):
        client.ok("join", room="r")
    assert_ephemeral_reaches_all_but_origin(node, alice, [bob, carol])


def test_in_a_cluster_an_ephemeral_room_event_reaches_members_on_every_node_but_its_origin(
    start_node: Callable[..., RunningNode], redis_session: Any, tmp_path: Path
) -> None:
    url = f"redis://127.0.0.1:{redis_session.port}/0"
    namespace = f"broker-{tmp_path.name}"  # the session's Redis is shared: a name of its own
    here = start_node(redis_url=url, redis_namespace=namespace)
    there = start_node(redis_url=url, redis_namespace=namespace)
    assert isinstance(here.node.ctx.broker, RedisBroker)
    alice, bob = here.client("alice"), here.client("bob")
    carol = there.client("carol")
    for client in (alice, bob, carol):
        client.ok("join", room="r")
    assert_ephemeral_reaches_all_but_origin(here, alice, [carol, bob])
