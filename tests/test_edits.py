"""Editing and deleting messages over real sockets, on one node: who may, what members see live,
what a device that was away gets after ``join since``, and what ``history`` says afterwards.

Where a test proves that an event was *not* sent, a later message through the same room is the
barrier: nothing may come before it (no timeouts to wait out).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import gevent
import pytest

from tests.support import RunningNode, joined, queued

StartNode = Callable[..., RunningNode]


@pytest.fixture(params=["memory", "sqlite"])
def node(request: pytest.FixtureRequest, start_node: StartNode) -> RunningNode:
    return start_node(store=request.param)


def test_edit_and_delete_reach_live_members_once_in_order_and_answer_the_author(
    node: RunningNode,
) -> None:
    ann, bob = joined(node, "ann"), joined(node, "bob")
    sent = ann.ok("send", room="lobby", body="helo", cid="s1")
    assert bob.event("msg")["body"] == "helo"
    edited = ann.ok("edit", mid=sent["mid"], body="hello", cid="e1")
    assert edited == {"mid": sent["mid"], "seq": 2, "ts": edited["ts"], "room": "lobby"}
    event = bob.event("edit")
    assert event == {
        "t": "edit",
        "mid": sent["mid"],
        "seq": 2,
        "room": "lobby",
        "by": "ann",
        "body": "hello",
        "edited": edited["ts"],
        "ts": edited["ts"],
        "cid": "e1",
    }
    gone = ann.ok("delete", mid=sent["mid"])
    assert (gone["mid"], gone["seq"]) == (sent["mid"], 3)
    assert bob.event("delete") == {
        "t": "delete",
        "mid": sent["mid"],
        "seq": 3,
        "room": "lobby",
        "by": "ann",
        "ts": gone["ts"],
    }
    # The author's own connection has the replies, not the events; and nobody gets anything twice.
    ann.ok("send", room="lobby", body="barrier", cid="b")
    bob.event("msg", cid="b")
    assert queued(bob, "edit") == [] and queued(bob, "delete") == []
    assert queued(ann, "edit") == [] and queued(ann, "delete") == []


def test_a_resent_edit_or_delete_with_its_cid_is_made_once(node: RunningNode) -> None:
    ann, bob = joined(node, "ann"), joined(node, "bob")
    mid = ann.ok("send", room="lobby", body="v1")["mid"]
    first = ann.ok("edit", mid=mid, body="v2", cid="e")
    assert ann.ok("edit", mid=mid, body="v2", cid="e") == first
    deleted = ann.ok("delete", mid=mid, cid="d")
    assert ann.ok("delete", mid=mid, cid="d") == deleted
    ann.ok("send", room="lobby", body="barrier", cid="b")
    assert [e["seq"] for e in (bob.event("msg"), bob.event("edit"), bob.event("delete"))] == [
        1,
        2,
        3,
    ]
    bob.event("msg", cid="b")
    assert queued(bob, "edit") == [] and queued(bob, "delete") == []


def test_history_tells_the_current_truth_and_pages_messages_only(node: RunningNode) -> None:
    ann = joined(node, "ann")
    one = ann.ok("send", room="lobby", body="one")["mid"]
    two = ann.ok("send", room="lobby", body="two")["mid"]
    edit = ann.ok("edit", mid=one, body="ONE")
    ann.ok("delete", mid=two)
    page = ann.ok("history", room="lobby")
    assert page["more"] is False
    first, second = page["messages"]
    assert (first["mid"], first["body"], first["edited"]) == (one, "ONE", edit["ts"])
    assert second["mid"] == two and second["deleted"] is True
    assert "body" not in second and "edited" not in second
    assert (second["from"], second["seq"]) == ("ann", 2)


def test_a_device_away_gets_the_edits_and_deletes_once_in_order_after_join_since(
    node: RunningNode,
) -> None:
    ann = joined(node, "ann")
    bob = node.client("bob")
    joined_at = bob.ok("join", room="lobby")
    one = ann.ok("send", room="lobby", body="one")
    assert bob.event("msg")["seq"] == 1
    bob.close()  # away from here on
    two = ann.ok("send", room="lobby", body="two")
    ann.ok("edit", mid=one["mid"], body="ONE")
    ann.ok("delete", mid=two["mid"])
    ann.ok("edit", mid=one["mid"], body="ONE!")
    back = node.client("bob")
    data = back.ok("join", room="lobby", since=1, epoch=joined_at["epoch"])
    assert data["recovered"] is True and data["seq"] == 5
    ann.ok("send", room="lobby", body="barrier", cid="b")
    got = [back.event() for _ in range(5)]
    assert [(e["t"], e["seq"]) for e in got] == [
        ("msg", 2),
        ("edit", 3),
        ("delete", 4),
        ("edit", 5),
        ("msg", 6),
    ]
    # The replayed message is as it is now: deleted, no body.
    assert got[0]["deleted"] is True and "body" not in got[0]
    assert [got[1]["mid"], got[1]["body"], got[3]["body"]] == [one["mid"], "ONE", "ONE!"]
    assert queued(back, "msg") == [] and queued(back, "edit") == []


def test_only_the_author_may_change_a_message_and_errors_say_why(
    node: RunningNode,
) -> None:
    ann, bob = joined(node, "ann"), joined(node, "bob")
    mid = ann.ok("send", room="lobby", body="mine")["mid"]
    assert bob.error("edit", mid=mid, body="theirs")["code"] == "forbidden"
    assert bob.error("delete", mid=mid)["code"] == "forbidden"
    assert ann.error("edit", mid="065svpb80000000000", body="x")["code"] == "not_found"
    ann.ok("delete", mid=mid)
    error = ann.error("edit", mid=mid, body="again")
    assert error["code"] == "not_found" and "deleted" in error["message"]
    assert ann.error("delete", mid=mid)["code"] == "not_found"
    assert ann.error("edit", mid=mid)["code"] == "bad_request"  # no body
    # A message of a room the user is not in: join it first.
    ann.ok("leave", room="lobby")
    other = bob.ok("send", room="lobby", body="bob's")["mid"]
    assert bob.ok("edit", mid=other, body="still bob's")["seq"] == 4
    ann_mid = joined(node, "ann", "elsewhere").ok("send", room="elsewhere", body="x")["mid"]
    carol = joined(node, "carol")
    assert carol.error("edit", mid=ann_mid, body="y")["code"] == "forbidden"
    # A direct message between others is unknown to a third user.
    dm = ann.ok("send", to="bob", body="psst")["mid"]
    assert carol.error("delete", mid=dm)["code"] == "not_found"


def test_edits_are_refused_after_the_edit_window_but_deletes_are_not(
    start_node: StartNode,
) -> None:
    node = start_node(edit_window=0.001)
    ann = joined(node, "ann")
    mid = ann.ok("send", room="lobby", body="old")["mid"]
    # What is awaited is the clock itself passing the window: nothing else to wait for.
    gevent.sleep(0.01)
    error = ann.error("edit", mid=mid, body="new")
    assert error["code"] == "forbidden" and "edited for" in error["message"]
    ann.ok("delete", mid=mid)


def test_direct_message_edits_and_deletes_reach_both_users_devices(node: RunningNode) -> None:
    ann, bob = node.client("ann"), node.client("bob")
    ann_phone = node.client("ann")
    sent = ann.ok("send", to="bob", body="hi bob", cid="m")
    assert bob.event("msg")["body"] == "hi bob"
    ann_phone.event("msg", cid="m")
    edited = ann.ok("edit", mid=sent["mid"], body="hi Bob")
    assert (edited["to"], edited["from"]) == ("bob", "ann")
    for device in (bob, ann_phone):
        event = device.event("edit")
        assert (event["to"], event["from"], event["by"]) == ("bob", "ann", "ann")
        assert (event["mid"], event["seq"], event["body"]) == (sent["mid"], 2, "hi Bob")
        assert event["edited"] == edited["ts"]
    ann.ok("delete", mid=sent["mid"])
    for device in (bob, ann_phone):
        assert device.event("delete")["seq"] == 3
    page = bob.ok("history", **{"with": "ann"})
    [message] = page["messages"]
    assert message["deleted"] is True and "body" not in message
    ann.nothing_before_pong("edit")
    ann.nothing_before_pong("delete")


@pytest.mark.parametrize("size", [30, 30_000])
def test_a_deleted_body_is_gone_from_history_and_the_data_directory(
    start_node: StartNode, tmp_path: Path, size: int
) -> None:
    data = tmp_path / "data"
    node = start_node(store="sqlite", data_dir=str(data))
    ann = joined(node, "ann")
    secret = "SECRET-4d1f8a" * (size // 13)
    mid = ann.ok("send", room="lobby", body=secret)["mid"]
    ann.ok("edit", mid=mid, body="EDITED-02c7e9" * (size // 13))
    ann.ok("send", room="lobby", body="after")
    ann.ok("delete", mid=mid)
    page = ann.ok("history", room="lobby")
    assert all("SECRET" not in str(m) and "EDITED" not in str(m) for m in page["messages"])
    for file in data.rglob("*"):
        if file.is_file():
            content = file.read_bytes()
            assert b"SECRET-4d1f8a" not in content and b"EDITED-02c7e9" not in content, file
