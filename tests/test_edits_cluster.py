"""Editing and deleting messages on two nodes sharing Redis: each change reaches every device
once, in order with the messages, live or after ``join since`` on either node, and a deleted
body can be read back from no key of the cluster's Redis.

The nodes are ``actorim serve`` processes (tests/test_cluster.py's machinery), started once
for the module; each test uses users and rooms of its own.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.support import Client, queued, stored_events
from tests.two_nodes import TwoNodes, on, two_nodes

pytestmark = pytest.mark.process  # nodes and redis-server run as processes


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoNodes]:
    with two_nodes(tmp_path_factory.mktemp("edits-cluster")) as pair:
        yield pair


STORED = ("msg", "edit", "delete")


def test_changes_reach_live_members_on_both_nodes_and_an_away_device_once_in_order(
    nodes: TwoNodes, clients: list[Client]
) -> None:
    room = "e1-room"
    ann = on(nodes.a, "e1-ann", clients)
    bob = on(nodes.b, "e1-bob", clients)
    ann_b = on(nodes.b, "e1-ann", clients)
    joined = ann.ok("join", room=room)
    bob.ok("join", room=room)
    ann_b.ok("join", room=room)
    phone = on(nodes.b, "e1-bob", clients)
    phone.ok("join", room=room)
    one = ann.ok("send", room=room, body="one", cid="1")
    assert phone.event("msg", room=room)["seq"] == 1
    phone.close()  # bob's phone is away from here on
    two = ann.ok("send", room=room, body="two secret-e1", cid="2")
    ann.ok("edit", mid=one["mid"], body="ONE", cid="e")
    ann.ok("delete", mid=two["mid"], cid="d")
    ann.ok("edit", mid=one["mid"], body="ONE!")
    ann.ok("send", room=room, body="barrier", cid="b")
    for member in (bob, ann_b):
        assert [(e["t"], e["seq"]) for e in stored_events(member, room, STORED, until=6)] == [
            ("msg", 1),
            ("msg", 2),
            ("edit", 3),
            ("delete", 4),
            ("edit", 5),
            ("msg", 6),
        ]
        assert queued(member, "edit") == [] and queued(member, "delete") == []
    # The phone comes back on the other node.
    back = on(nodes.a, "e1-bob", clients)
    data = back.ok("join", room=room, since=1, epoch=joined["epoch"])
    assert data["recovered"] is True and data["seq"] == 6
    ann.ok("send", room=room, body="barrier 2", cid="b2")
    got = stored_events(back, room, STORED, until=7)
    assert [(e["t"], e["seq"]) for e in got] == [
        ("msg", 2),
        ("edit", 3),
        ("delete", 4),
        ("edit", 5),
        ("msg", 6),
        ("msg", 7),
    ]
    assert got[0]["deleted"] is True and "body" not in got[0]
    assert queued(back, "edit") == [] and queued(back, "delete") == []
    page = bob.ok("history", room=room)["messages"]
    assert [(m["seq"], m.get("body"), m.get("deleted")) for m in page] == [
        (1, "ONE!", None),
        (2, None, True),
        (6, "barrier", None),
        (7, "barrier 2", None),
    ]
    client = redis.Redis(port=nodes.redis.port)
    try:
        for key in client.scan_iter():
            kind = client.type(key)
            if kind == b"stream":
                values = [v for _, fields in client.xrange(key) for v in fields.values()]
            elif kind == b"zset":
                values = client.zrange(key, 0, -1)
            elif kind == b"hash":
                values = list(client.hgetall(key).values())
            elif kind == b"string":
                values = [client.get(key) or b""]
            else:
                continue
            assert all(b"secret-e1" not in value for value in values), key
    finally:
        client.close()


def test_direct_message_changes_reach_every_device_of_both_users_on_either_node(
    nodes: TwoNodes, clients: list[Client]
) -> None:
    ann = on(nodes.a, "e2-ann", clients)
    ann_b = on(nodes.b, "e2-ann", clients)
    bob = on(nodes.b, "e2-bob", clients)
    bob_a = on(nodes.a, "e2-bob", clients)
    sent = ann.ok("send", to="e2-bob", body="hi", cid="m")
    edited = ann.ok("edit", mid=sent["mid"], body="hi!", cid="e")
    ann.ok("delete", mid=sent["mid"])
    for device in (ann_b, bob, bob_a):
        assert device.event("msg")["mid"] == sent["mid"]
        edit = device.event("edit")
        assert (edit["mid"], edit["seq"], edit["body"], edit["edited"]) == (
            sent["mid"],
            2,
            "hi!",
            edited["ts"],
        )
        assert (edit["to"], edit["from"], edit["by"]) == ("e2-bob", "e2-ann", "e2-ann")
        assert device.event("delete")["seq"] == 3
    ann.ok("send", to="e2-bob", body="barrier", cid="b")
    for device in (ann_b, bob, bob_a):
        device.event("msg", cid="b")
        assert queued(device, "edit") == [] and queued(device, "delete") == []
    [message] = bob.ok("history", **{"with": "e2-ann"})["messages"][:1]
    assert message["deleted"] is True and "body" not in message
