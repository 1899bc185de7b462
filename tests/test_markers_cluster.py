"""Read markers on two nodes sharing Redis: a read on a device on one node clears the count on
the user's devices on both nodes, through the user's channel; the reading device has the reply
and no event; counts leave out changes, one's own and deleted messages, and count mentions.

The nodes are ``actorim serve`` processes (tests/test_cluster.py's machinery), started once
for the module; each test uses users and rooms of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import Client, queued
from tests.two_nodes import TwoNodes, on, two_nodes

pytestmark = pytest.mark.process  # nodes and redis-server run as processes


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoNodes]:
    with two_nodes(tmp_path_factory.mktemp("markers-cluster")) as pair:
        yield pair


def unread(client: Client, **ask: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = client.ok("unread", **ask)["conversations"]
    return found


def test_a_read_on_one_node_clears_the_count_on_every_device_of_the_user(
    nodes: TwoNodes, clients: list[Client]
) -> None:
    room = "m1-room"
    phone = on(nodes.b, "m1-ann", clients)
    desktop = on(nodes.a, "m1-ann", clients)
    laptop = on(nodes.b, "m1-ann", clients)
    bob = on(nodes.a, "m1-bob", clients)
    bob.ok("join", room=room)
    for text in ("one", "two", "three"):
        bob.ok("send", room=room, body=text)
    bob.ok("send", to="m1-ann", body="psst")
    assert unread(desktop, rooms=[room], **{"with": ["m1-bob"]}) == [
        {"room": room, "seq": 3, "marker": 0, "unread": 3, "mentions": 0},
        {"with": "m1-bob", "seq": 1, "marker": 0, "unread": 1, "mentions": 0},
    ]
    assert phone.ok("read", room=room, seq=3) == {
        "room": room,
        "marker": 3,
        "unread": 0,
        "mentions": 0,
    }
    wanted = {"t": "marker", "room": room, "seq": 3, "unread": 0, "mentions": 0}
    assert desktop.event("marker") == wanted  # the other node
    assert laptop.event("marker") == wanted  # the reading device's node
    # A second read, from the desktop, is the barrier on the user's channel: the phone gets its
    # event, and nothing of its own read before it.
    desktop.ok("read", seq=1, **{"with": "m1-bob"})
    assert phone.event("marker")["with"] == "m1-bob"
    assert queued(phone, "marker") == []
    assert laptop.event("marker")["with"] == "m1-bob"
    assert unread(laptop, rooms=[room], **{"with": ["m1-bob"]}) == [
        {"room": room, "seq": 3, "marker": 3, "unread": 0, "mentions": 0},
        {"with": "m1-bob", "seq": 1, "marker": 1, "unread": 0, "mentions": 0},
    ]
    # Bob hears nothing of ann's markers.
    bob.nothing_before_pong("marker")


def test_counts_leave_out_changes_own_and_deleted_messages_and_count_mentions(
    nodes: TwoNodes, clients: list[Client]
) -> None:
    room = "m2-room"
    ann = on(nodes.a, "m2-ann", clients)
    bob = on(nodes.b, "m2-bob", clients)
    ann.ok("join", room=room)
    bob.ok("join", room=room)
    one = bob.ok("send", room=room, body="hi @m2-ann")
    assert ann.event("msg", seq=1)["mentions"] == ["m2-ann"]
    two = bob.ok("send", room=room, body="look", mentions=["m2-ann"])
    bob.ok("send", room=room, body="three")
    ann.ok("send", room=room, body="mine @m2-ann")
    bob.ok("edit", mid=one["mid"], body="hi again")
    ann.ok("react", mid=one["mid"], key="+1", on=True)
    assert unread(ann, rooms=[room]) == [
        {"room": room, "seq": 6, "marker": 0, "unread": 3, "mentions": 2}
    ]
    bob.ok("delete", mid=two["mid"])
    assert unread(ann, rooms=[room]) == [
        {"room": room, "seq": 7, "marker": 0, "unread": 2, "mentions": 1}
    ]
    assert ann.ok("read", room=room, seq=1)["mentions"] == 0
    assert ann.ok("read", room=room, seq=0)["marker"] == 1  # never back
