"""Lasting membership on two nodes sharing Redis: a user's membership, rooms' titles and
topics and the directory are kept in Redis and seen alike from either node; a join or leave on
one node reaches the user's devices on the other at once.

The nodes are ``actorim serve`` processes (tests/test_cluster.py's machinery), started once
for the module; each test uses users and rooms of its own.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import Client, queued
from tests.two_nodes import TwoNodes, on, two_nodes

pytestmark = pytest.mark.process  # nodes and redis-server run as processes


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoNodes]:
    with two_nodes(
        tmp_path_factory.mktemp("membership-cluster"), ("--presence-grace", "0.2")
    ) as pair:
        yield pair


def test_a_join_on_one_node_subscribes_the_users_devices_on_the_other_and_leave_stops_them(
    nodes: TwoNodes, clients: list[Client]
) -> None:
    room = "m1-room"
    phone = on(nodes.a, "m1-ann", clients)
    laptop = on(nodes.b, "m1-ann", clients)
    bob = on(nodes.b, "m1-bob", clients)
    carol = on(nodes.a, "m1-carol", clients)
    bob.ok("join", room=room)
    carol.ok("join", room=room)
    phone.ok("join", room=room)
    assert laptop.event("member", room=room, user="m1-ann")["state"] == "joined"
    laptop.ok("ping")  # subscribed before it handles the next command
    sent = bob.ok("send", room=room, body="to both devices")
    for device in (phone, laptop):
        assert device.event("msg", room=room, seq=sent["seq"])["body"] == "to both devices"
    laptop.ok("leave", room=room)
    assert phone.event("member", room=room, user="m1-ann")["state"] == "left"
    phone.ok("ping")
    after = bob.ok("send", room=room, body="ann is gone")
    carol.event("msg", room=room, seq=after["seq"])  # node A's fan-out is done
    bob_phone = on(nodes.b, "m1-bob", clients)  # subscribed at connect, on B
    barrier = carol.ok("send", room=room, body="barrier")
    bob_phone.event("msg", room=room, seq=barrier["seq"])  # node B's fan-out is done
    for device in (phone, laptop):
        device.ok("ping")
        assert not queued(device, "msg", seq=after["seq"])
        assert not queued(device, "msg", seq=barrier["seq"])


def test_the_inbox_on_either_node_lists_rooms_and_direct_conversations(
    nodes: TwoNodes, clients: list[Client]
) -> None:
    ann = on(nodes.a, "m2-ann", clients)
    bob = on(nodes.b, "m2-bob", clients)
    ann.ok("join", room="m2-room")
    ann.ok("room.update", room="m2-room", title="Two", topic="nodes")
    sent = ann.ok("send", room="m2-room", body="in the room")
    bob.ok("send", to="m2-ann", body="direct")
    for node in (nodes.a, nodes.b):
        client, data = node.client("m2-ann")
        clients.append(client)
        entries = {e.get("room") or e["with"]: e for e in data["conversations"]}
        assert set(entries) == {"m2-room", "m2-bob"}
        room = entries["m2-room"]
        assert (room["title"], room["topic"], room["seq"]) == ("Two", "nodes", sent["seq"])
        assert room["last"]["body"] == "in the room"
        assert entries["m2-bob"]["last"]["body"] == "direct"


def test_members_lists_offline_members_and_titles_reach_devices_on_both_nodes(
    nodes: TwoNodes, clients: list[Client]
) -> None:
    room = "m3-room"
    gone = on(nodes.a, "m3-cat", clients)
    gone.ok("join", room=room)
    watcher = on(nodes.b, "m3-eve", clients)
    watcher.ok("watch", users=["m3-cat"])
    gone.close()
    watcher.event("presence", user="m3-cat", status="offline")
    ann = on(nodes.a, "m3-ann", clients)
    bob = on(nodes.b, "m3-bob", clients)
    ann.ok("join", room=room)
    bob.ok("join", room=room)
    page = bob.ok("members", room=room)
    assert page["members"] == [
        {"user": "m3-ann", "status": "online"},
        {"user": "m3-bob", "status": "online"},
        {"user": "m3-cat", "status": "offline"},
    ]
    ann_b = on(nodes.b, "m3-ann", clients)
    ann.ok("room.update", room=room, title="Shared")
    for device in (bob, ann_b):
        assert device.event("room", room=room)["title"] == "Shared"


def test_the_directory_is_shared_and_searched_from_either_node(
    nodes: TwoNodes, clients: list[Client]
) -> None:
    ann = on(nodes.a, "m4-ann", clients)
    for room in ("m4-alpha", "m4-beta", "m4-gamma"):
        ann.ok("join", room=room)
    ann.ok("room.update", room="m4-gamma", title="m4 Beta fans")
    bob = on(nodes.b, "m4-bob", clients)
    found = bob.ok("rooms", query="M4-BETA")
    assert [r["room"] for r in found["rooms"]] == ["m4-beta"]
    found = bob.ok("rooms", query="m4 beta")
    assert [r["room"] for r in found["rooms"]] == ["m4-gamma"]
    first = bob.ok("rooms", query="m4-", limit=2)
    assert [r["room"] for r in first["rooms"]] == ["m4-alpha", "m4-beta"]
    rest = bob.ok("rooms", query="m4-", cursor=first["cursor"], limit=2)
    assert [r["room"] for r in rest["rooms"]] == ["m4-gamma"] and "cursor" not in rest
    assert rest["rooms"][0]["members"] == 1
