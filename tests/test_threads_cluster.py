"""Replies and threads on two nodes sharing Redis: a reply reaches every device once, in order
with the other messages, live or after ``join since`` on either node; the root's summary and the
thread's pages read the same on both nodes, deletes included; a reply in a direct conversation
reaches both users' devices across the nodes and waits for one that is offline; a reply to a
message that is not there is refused.

The nodes are ``actorim serve`` processes (tests/test_cluster.py's machinery), started once
for the module; each test uses users and rooms of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import Client, queued, stored_events
from tests.two_nodes import TwoNodes, on, two_nodes

pytestmark = pytest.mark.process  # nodes and redis-server run as processes


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoNodes]:
    with two_nodes(tmp_path_factory.mktemp("threads-cluster")) as pair:
        yield pair


STORED = ("msg", "delete")


def threaded(events: list[dict[str, Any]]) -> list[tuple[object, ...]]:
    return [(e["t"], e["seq"], e.get("reply_to"), e.get("thread")) for e in events]


def test_replies_reach_both_nodes_and_an_away_device_once_in_order(
    nodes: TwoNodes, clients: list[Client]
) -> None:
    room = "t1-room"
    ann = on(nodes.a, "t1-ann", clients)
    bob = on(nodes.b, "t1-bob", clients)
    joined = ann.ok("join", room=room)
    bob.ok("join", room=room)
    phone = on(nodes.b, "t1-cy", clients)
    phone.ok("join", room=room)
    root = ann.ok("send", room=room, body="root", cid="1")["mid"]
    assert phone.event("msg", room=room)["seq"] == 1
    phone.close()  # cy's phone is away from here on
    one = bob.ok("send", room=room, body="one", reply_to=root, cid="r1")["mid"]
    ann.ok("send", room=room, body="aside", cid="2")
    two = ann.ok("send", room=room, body="two", reply_to=one, cid="r2")
    assert two["thread"] == root
    bob.ok("send", room=room, body="one", reply_to=root, cid="r1")  # a resend: nothing new
    expected = [
        ("msg", 2, root, root),
        ("msg", 3, None, None),
        ("msg", 4, one, root),
    ]
    # Each sending connection has its replies, not the events.
    assert threaded(stored_events(bob, room, STORED, until=4)) == [
        ("msg", 1, None, None),
        *expected[1:],
    ]
    assert threaded(stored_events(ann, room, STORED, until=2)) == expected[:1]
    bob.ok("ping")
    ann.ok("ping")
    assert queued(bob, "msg", room=room) == [] and queued(ann, "msg", room=room) == []
    # The phone comes back on the other node.
    back = on(nodes.a, "t1-cy", clients)
    data = back.ok("join", room=room, since=1, epoch=joined["epoch"])
    assert data["recovered"] is True and data["seq"] == 4
    back.ok("ping")
    assert threaded(stored_events(back, room, STORED, until=4)) == expected


def test_summary_and_thread_pages_read_the_same_on_both_nodes(
    nodes: TwoNodes, clients: list[Client]
) -> None:
    room = "t2-room"
    ann = on(nodes.a, "t2-ann", clients)
    bob = on(nodes.b, "t2-bob", clients)
    ann.ok("join", room=room)
    bob.ok("join", room=room)
    root = ann.ok("send", room=room, body="plan")["mid"]
    replies = [
        bob.ok("send", room=room, body="b1", reply_to=root),
        ann.ok("send", room=room, body="a1", reply_to=root),
        bob.ok("send", room=room, body="b2", reply_to=root),
    ]
    ann.ok("delete", mid=replies[1]["mid"])
    for reader in (ann, bob):
        [first] = reader.ok("history", room=room, limit=1, after=0)["messages"]
        assert first["thread"] == {
            "count": 2,
            "last_ts": replies[2]["ts"],
            "users": ["t2-bob"],
            "participants": 1,
        }
        data = reader.ok("thread", mid=root, limit=2)
        assert data["root"]["thread"] == first["thread"]
        assert [(m.get("body"), m.get("deleted")) for m in data["messages"]] == [
            (None, True),
            ("b2", None),
        ]
        assert data["more"] is True
        older = reader.ok("thread", mid=root, before=data["messages"][0]["seq"])
        assert ([m["body"] for m in older["messages"]], older["more"]) == (["b1"], False)
    ann.ok("delete", mid=root)
    assert bob.ok("thread", mid=root)["root"]["deleted"] is True
    error = bob.error("send", room=room, body="late", reply_to=root)
    assert error["code"] == "not_found" and "deleted" in error["message"]
    assert bob.error("send", room=room, body="x", reply_to="00000000000000000x")["code"] == (
        "not_found"
    )


def test_direct_replies_cross_the_nodes_and_wait_for_an_offline_user(
    nodes: TwoNodes, clients: list[Client]
) -> None:
    ann = on(nodes.a, "t3-ann", clients)
    ann_phone = on(nodes.b, "t3-ann", clients)
    bob = on(nodes.b, "t3-bob", clients)
    sent = ann.ok("send", to="t3-bob", body="dinner?")["mid"]
    assert bob.event("msg")["mid"] == sent
    ann_phone.event("msg")
    answer = bob.ok("send", to="t3-ann", body="sure", reply_to=sent)
    for device in (ann, ann_phone):
        event = device.event("msg", body="sure")
        assert (event["reply_to"], event["thread"]) == (sent, sent)
    ann.close()
    ann_phone.close()
    bob.ok("send", to="t3-ann", body="at 8?", reply_to=answer["mid"])
    back = on(nodes.a, "t3-ann", clients)
    waiting = back.event("msg", body="at 8?")
    assert (waiting["reply_to"], waiting["thread"]) == (answer["mid"], sent)
    data = back.ok("thread", mid=sent)
    assert [m["body"] for m in data["messages"]] == ["sure", "at 8?"]
    assert on(nodes.a, "t3-cy", clients).error("thread", mid=sent)["code"] == "not_found"
