"""Reactions on two nodes sharing Redis: each reaction reaches every device once, in order with
the messages, live or after ``join since`` on either node; history counts them for each reader;
a repeated reaction makes no event; a new key beyond ``max_reactions`` is refused.

The nodes are ``actorim serve`` processes (tests/test_cluster.py's machinery), started once
for the module with ``--max-reactions 3``; each test uses users and rooms of its own.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import Client, queued, stored_events
from tests.two_nodes import TwoNodes, on, two_nodes

pytestmark = pytest.mark.process  # nodes and redis-server run as processes

MAX_REACTIONS = 3


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoNodes]:
    with two_nodes(
        tmp_path_factory.mktemp("reactions-cluster"), ("--max-reactions", str(MAX_REACTIONS))
    ) as pair:
        yield pair


STORED = ("msg", "reaction")


def reactions(client: Client, **where: str) -> list[list[tuple[str, int, bool]]]:
    page = client.ok("history", **where)["messages"]
    return [[(r["key"], r["count"], r["me"]) for r in m.get("reactions", [])] for m in page]


def test_reactions_reach_both_nodes_and_an_away_device_once_in_order(
    nodes: TwoNodes, clients: list[Client]
) -> None:
    room = "r1-room"
    ann = on(nodes.a, "r1-ann", clients)
    bob = on(nodes.b, "r1-bob", clients)
    joined = ann.ok("join", room=room)
    bob.ok("join", room=room)
    phone = on(nodes.b, "r1-cy", clients)
    phone.ok("join", room=room)
    one = ann.ok("send", room=room, body="one", cid="1")
    assert phone.event("msg", room=room)["seq"] == 1
    phone.close()  # cy's phone is away from here on
    bob.ok("react", mid=one["mid"], key="👍", on=True, cid="r")
    again = bob.ok("react", mid=one["mid"], key="👍", on=True)
    assert (again["mid"], again["seq"]) == (one["mid"], 2)
    ann.ok("react", mid=one["mid"], key="👍", on=True)
    bob.ok("react", mid=one["mid"], key="👍", on=False)
    ann.ok("send", room=room, body="barrier", cid="b")
    assert [
        (e["t"], e["seq"], e.get("user")) for e in stored_events(bob, room, STORED, until=5)
    ] == [
        ("msg", 1, None),
        ("reaction", 3, "r1-ann"),
        ("msg", 5, None),
    ]
    bob.ok("ping")
    assert queued(bob, "reaction") == []
    # The phone comes back on the other node.
    back = on(nodes.a, "r1-cy", clients)
    data = back.ok("join", room=room, since=1, epoch=joined["epoch"])
    assert data["recovered"] is True and data["seq"] == 5
    back.ok("ping")
    got = stored_events(back, room, STORED, until=5)
    assert [(e["t"], e["seq"], e.get("user"), e.get("on")) for e in got] == [
        ("reaction", 2, "r1-bob", True),
        ("reaction", 3, "r1-ann", True),
        ("reaction", 4, "r1-bob", False),
        ("msg", 5, None, None),
    ]
    back.ok("ping")
    assert queued(back, "reaction") == []
    assert reactions(ann, room=room) == [[("👍", 1, True)], []]
    assert reactions(bob, room=room) == [[("👍", 1, False)], []]


def test_direct_message_reactions_reach_every_device_of_both_users_on_either_node(
    nodes: TwoNodes, clients: list[Client]
) -> None:
    ann = on(nodes.a, "r2-ann", clients)
    ann_b = on(nodes.b, "r2-ann", clients)
    bob = on(nodes.b, "r2-bob", clients)
    bob_a = on(nodes.a, "r2-bob", clients)
    sent = ann.ok("send", to="r2-bob", body="hi", cid="m")
    bob.ok("react", mid=sent["mid"], key="❤", on=True)
    for device in (ann, ann_b, bob_a):
        event = device.event("reaction")
        assert (event["mid"], event["seq"], event["to"], event["from"], event["on"]) == (
            sent["mid"],
            2,
            "r2-ann",
            "r2-bob",
            True,
        )
    bob.ok("react", mid=sent["mid"], key="❤", on=True)  # no change
    for device in (ann, ann_b, bob, bob_a):
        device.ok("ping")
        assert queued(device, "reaction") == []
    assert reactions(ann_b, **{"with": "r2-bob"}) == [[("❤", 1, False)]]
    assert reactions(bob_a, **{"with": "r2-ann"}) == [[("❤", 1, True)]]


def test_a_new_key_beyond_max_reactions_is_refused_on_either_node(
    nodes: TwoNodes, clients: list[Client]
) -> None:
    room = "r3-room"
    ann = on(nodes.a, "r3-ann", clients)
    bob = on(nodes.b, "r3-bob", clients)
    ann.ok("join", room=room)
    bob.ok("join", room=room)
    mid = ann.ok("send", room=room, body="vote")["mid"]
    for key in ("a", "b", "c"):
        ann.ok("react", mid=mid, key=key, on=True)
    assert bob.error("react", mid=mid, key="d", on=True)["code"] == "too_many_reactions"
    assert bob.ok("react", mid=mid, key="a", on=True)["seq"] == 5
    ann.ok("delete", mid=mid)
    assert bob.error("react", mid=mid, key="a", on=False)["code"] == "not_found"
    [tombstone] = bob.ok("history", room=room)["messages"]
    assert tombstone["deleted"] is True and "reactions" not in tombstone
