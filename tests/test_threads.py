"""Replies and threads over real sockets, on one node: a reply reaches live members in the
conversation's order, its root's summary in ``history``, ``thread`` pages, the refusals, a
device that was away recovering replies with ``join since``, and replies in direct
conversations (live, and waiting offline).

Where a test proves that nothing was sent, a ``ping`` is the barrier: its reply comes after
anything the command before it caused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.support import Client, RunningNode, joined, queued

StartNode = Callable[..., RunningNode]


@pytest.fixture(params=["memory", "sqlite"])
def node(request: pytest.FixtureRequest, start_node: StartNode) -> RunningNode:
    return start_node(store=request.param)


def thread_of(
    client: Client, mid: str, **cursors: Any
) -> tuple[dict[str, Any], list[str | None], bool]:
    """The ``thread`` reply for root ``mid``: the root, its replies' bodies (None: deleted),
    and ``more``."""
    data = client.ok("thread", mid=mid, **cursors)
    return data["root"], [m.get("body") for m in data["messages"]], data["more"]


def test_a_reply_reaches_live_members_in_order_and_answers_its_thread(node: RunningNode) -> None:
    ann, bob = joined(node, "ann"), joined(node, "bob")
    root = ann.ok("send", room="lobby", body="lunch?")
    bob.event("msg")
    answer = bob.ok("send", room="lobby", body="yes", reply_to=root["mid"], cid="r1")
    assert answer == {"mid": answer["mid"], "seq": 2, "ts": answer["ts"], "thread": root["mid"]}
    assert ann.event("msg") == {
        "t": "msg",
        "mid": answer["mid"],
        "seq": 2,
        "room": "lobby",
        "from": "bob",
        "kind": "text",
        "body": "yes",
        "ts": answer["ts"],
        "cid": "r1",
        "reply_to": root["mid"],
        "thread": root["mid"],
    }
    # A reply to the reply: same thread, and it names what it answers.
    again = ann.ok("send", room="lobby", body="where?", reply_to=answer["mid"])
    event = bob.event("msg")
    assert (again["thread"], event["reply_to"], event["thread"]) == (
        root["mid"],
        answer["mid"],
        root["mid"],
    )
    # Resent with its cid: the first reply's answer again, nothing new delivered.
    assert bob.ok("send", room="lobby", body="yes", reply_to=root["mid"], cid="r1") == answer
    ann.ok("ping")
    assert queued(ann, "msg") == []


def test_history_carries_the_thread_summary_on_roots_only(node: RunningNode) -> None:
    ann, bob, cy = joined(node, "ann"), joined(node, "bob"), joined(node, "cy")
    root = ann.ok("send", room="lobby", body="plans")["mid"]
    ann.ok("send", room="lobby", body="unrelated")
    first = bob.ok("send", room="lobby", body="a", reply_to=root)
    cy.ok("send", room="lobby", body="b", reply_to=first["mid"])
    last = bob.ok("send", room="lobby", body="c", reply_to=root)
    page = ann.ok("history", room="lobby")["messages"]
    assert [m["seq"] for m in page] == [1, 2, 3, 4, 5]
    assert page[0]["thread"] == {
        "count": 3,
        "last_ts": last["ts"],
        "users": ["bob", "cy"],
        "participants": 2,
    }
    assert "thread" not in page[1]
    assert [(m["reply_to"], m["thread"]) for m in page[2:]] == [
        (root, root),
        (first["mid"], root),
        (root, root),
    ]
    # Deleting a reply updates the summary; deleting the root keeps its thread readable.
    bob.ok("delete", mid=last["mid"])
    assert ann.ok("history", room="lobby", limit=1, before=2)["messages"][0]["thread"] == {
        "count": 2,
        "last_ts": page[3]["ts"],
        "users": ["bob", "cy"],
        "participants": 2,
    }
    ann.ok("delete", mid=root)
    found, bodies, more = thread_of(cy, root)
    assert found["deleted"] is True and "body" not in found
    assert found["thread"]["count"] == 2
    assert (bodies, more) == (["a", "b", None], False)


def test_thread_pages_replies_like_history_with_the_readers_reactions(node: RunningNode) -> None:
    ann, bob = joined(node, "ann"), joined(node, "bob")
    root = ann.ok("send", room="lobby", body="count")["mid"]
    mids = []
    for n in range(5):
        mids.append(bob.ok("send", room="lobby", body=f"r{n}", reply_to=root)["mid"])
        ann.ok("send", room="lobby", body="meanwhile")
    ann.ok("react", mid=mids[4], key="👍", on=True)
    found, bodies, more = thread_of(ann, root, limit=2)
    assert (found["mid"], found["body"], bodies, more) == (root, "count", ["r3", "r4"], True)
    assert found["thread"]["count"] == 5
    newest = ann.ok("thread", mid=root, limit=2)["messages"]
    assert newest[1]["reactions"] == [{"key": "👍", "count": 1, "me": True}]
    assert bob.ok("thread", mid=root, limit=1)["messages"][0]["reactions"][0]["me"] is False
    assert thread_of(ann, root, limit=2, before=newest[0]["seq"])[1:] == (["r1", "r2"], True)
    assert thread_of(ann, root, limit=2, after=1)[1:] == (["r0", "r1"], True)
    assert thread_of(ann, root, limit=3, after=newest[0]["seq"])[1:] == (["r4"], False)
    assert thread_of(ann, root, after=1, before=newest[0]["seq"])[1:] == (["r0", "r1", "r2"], False)
    # A message with no replies is a root with an empty thread and no summary.
    plain = ann.ok("send", room="lobby", body="alone")["mid"]
    found, bodies, more = thread_of(bob, plain)
    assert ("thread" not in found, bodies, more) == (True, [], False)


def test_thread_pages_are_bounded_like_history(start_node: StartNode) -> None:
    node = start_node(history_max_limit=3, history_max_bytes=2_000)
    ann = joined(node, "ann")
    root = ann.ok("send", room="lobby", body="big")["mid"]
    for n in range(4):
        ann.ok("send", room="lobby", body=f"{n}" * 700, reply_to=root)
    assert ann.error("thread", mid=root, limit=4)["code"] == "bad_request"
    data = ann.ok("thread", mid=root, limit=3)
    # The root and two 700-byte replies fit in 2,000 bytes; the oldest is cut, more follows.
    assert ([m["body"][0] for m in data["messages"]], data["more"]) == (["2", "3"], True)


def test_replies_and_threads_refuse_what_cannot_be_answered_or_read(node: RunningNode) -> None:
    ann, bob = joined(node, "ann"), joined(node, "bob")
    root = ann.ok("send", room="lobby", body="hi")["mid"]
    ann.ok("edit", mid=root, body="hi!")
    gone = ann.ok("send", room="lobby", body="oops")["mid"]
    ann.ok("delete", mid=gone)
    elsewhere = joined(node, "ann", room="other").ok("send", room="other", body="x")["mid"]
    dm = ann.ok("send", to="bob", body="psst")["mid"]

    def refused(reply_to: str, **where: str) -> dict[str, Any]:
        return bob.error("send", body="re", reply_to=reply_to, **(where or {"room": "lobby"}))

    for unknown in ("00000000000000000x", elsewhere, dm):
        error = refused(unknown)
        assert error["code"] == "not_found" and unknown in error["message"]
    assert refused(root, to="ann")["code"] == "not_found"  # a room's message, in a DM
    error = refused(gone)
    assert error["code"] == "not_found" and "deleted" in error["message"]
    reply = bob.ok("send", room="lobby", body="ok", reply_to=root)["mid"]
    # Sending into a room not joined is refused before the reply is looked at.
    assert node.client("dan").error("send", room="lobby", body="x", reply_to=root)["code"] == (
        "forbidden"
    )
    # A thread is read through its root, by whoever may read its conversation.
    assert bob.error("thread", mid=reply)["code"] == "not_found"
    assert bob.error("thread", mid="00000000000000000x")["code"] == "not_found"
    assert node.client("carol").error("thread", mid=dm)["code"] == "not_found"
    outsider = node.client()
    outsider.connect(node.token("eve", rooms=["other"]))
    assert outsider.error("thread", mid=root)["code"] == "not_found"
    assert thread_of(node.client("dan"), root)[1] == ["ok"]  # allowed, even if not joined
    assert bob.ok("history", room="lobby")["messages"][-1]["mid"] == reply


def test_a_device_away_recovers_replies_in_order_with_join_since(node: RunningNode) -> None:
    ann = joined(node, "ann")
    bob = node.client("bob")
    joined_at = bob.ok("join", room="lobby")
    root = ann.ok("send", room="lobby", body="root")["mid"]
    assert bob.event("msg")["seq"] == 1
    bob.close()  # away from here on
    one = ann.ok("send", room="lobby", body="one", reply_to=root)["mid"]
    ann.ok("send", room="lobby", body="between")
    ann.ok("send", room="lobby", body="two", reply_to=one)
    ann.ok("delete", mid=one)
    back = node.client("bob")
    data = back.ok("join", room="lobby", since=1, epoch=joined_at["epoch"])
    assert data["recovered"] is True and data["seq"] == 5
    back.ok("ping")
    got = [e for e in back.events if e.get("t") in ("msg", "delete")]
    assert [(e["t"], e["seq"], e.get("reply_to"), e.get("thread")) for e in got] == [
        ("msg", 2, root, root),
        ("msg", 3, None, None),
        ("msg", 4, one, root),
        ("delete", 5, None, None),
    ]
    assert got[0]["deleted"] is True  # replayed as it is now


def test_direct_replies_reach_both_users_and_wait_for_an_offline_one(node: RunningNode) -> None:
    ann, ann_phone, bob = node.client("ann"), node.client("ann"), node.client("bob")
    sent = ann.ok("send", to="bob", body="dinner?")["mid"]
    assert bob.event("msg")["mid"] == sent
    ann_phone.event("msg")
    answer = bob.ok("send", to="ann", body="sure", reply_to=sent)
    assert answer["thread"] == sent
    for device in (ann, ann_phone):
        event = device.event("msg")
        assert (event["from"], event["to"], event["reply_to"], event["thread"]) == (
            "bob",
            "ann",
            sent,
            sent,
        )
    ann.close()
    ann_phone.close()
    bob.ok("send", to="ann", body="at 8?", reply_to=answer["mid"])
    back = node.client("ann")
    waiting = back.event("msg", body="at 8?")
    assert (waiting["reply_to"], waiting["thread"]) == (answer["mid"], sent)
    found, bodies, _ = thread_of(back, sent)
    assert (found["thread"]["count"], bodies) == (2, ["sure", "at 8?"])
    assert node.client("carol").error("send", to="ann", body="x", reply_to=sent)["code"] == (
        "not_found"
    )
