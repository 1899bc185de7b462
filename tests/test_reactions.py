"""Reactions over real sockets, on one node: what members see live, what a device that was away
gets after ``join since``, what ``history`` counts for each reader, and the limits.

Where a test proves that an event was *not* sent, a ``ping`` is the barrier: its reply comes
after anything the command before it caused, so nothing may be queued after the reply.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.support import Client, RunningNode, joined, queued

StartNode = Callable[..., RunningNode]


@pytest.fixture(params=["memory", "sqlite"])
def node(request: pytest.FixtureRequest, start_node: StartNode) -> RunningNode:
    return start_node(store=request.param)


def reactions(client: Client, **where: str) -> list[list[tuple[str, int, bool]]]:
    """Each message of the conversation's latest history page: its (key, count, me)."""
    page = client.ok("history", **where)["messages"]
    return [[(r["key"], r["count"], r["me"]) for r in m.get("reactions", [])] for m in page]


def test_a_reaction_reaches_live_members_once_in_order_and_answers_the_reactor(
    node: RunningNode,
) -> None:
    ann, bob = joined(node, "ann"), joined(node, "bob")
    sent = ann.ok("send", room="lobby", body="lunch?")
    bob.event("msg")
    on = bob.ok("react", mid=sent["mid"], key="👍", on=True, cid="r1")
    assert on == {"mid": sent["mid"], "seq": 2, "ts": on["ts"], "room": "lobby"}
    assert ann.event("reaction") == {
        "t": "reaction",
        "mid": sent["mid"],
        "seq": 2,
        "room": "lobby",
        "key": "👍",
        "user": "bob",
        "on": True,
        "ts": on["ts"],
        "cid": "r1",
    }
    off = bob.ok("react", mid=sent["mid"], key="👍", on=False)
    event = ann.event("reaction")
    assert off["seq"] == 3
    assert (event["seq"], event["on"], event["user"]) == (3, False, "bob")
    # The reactor's connection has the replies, not the events.
    ann.ok("ping")
    bob.ok("ping")
    assert queued(ann, "reaction") == [] and queued(bob, "reaction") == []


def test_reacting_twice_makes_no_second_event_and_answers_the_current_seq(
    node: RunningNode,
) -> None:
    ann, bob = joined(node, "ann"), joined(node, "bob")
    mid = ann.ok("send", room="lobby", body="hi")["mid"]
    first = bob.ok("react", mid=mid, key="+1", on=True)
    assert ann.event("reaction")["seq"] == first["seq"] == 2
    again = bob.ok("react", mid=mid, key="+1", on=True)
    never = bob.ok("react", mid=mid, key="x", on=False)
    assert "unchanged" not in first
    for answer in (again, never):
        assert answer == {
            "mid": mid,
            "seq": 2,
            "ts": answer["ts"],
            "room": "lobby",
            "unchanged": True,
        }
    ann.ok("ping")
    assert queued(ann, "reaction") == []
    assert reactions(ann, room="lobby") == [[("+1", 1, False)]]


def test_history_counts_each_key_and_says_which_are_the_readers(node: RunningNode) -> None:
    ann, bob, cy = joined(node, "ann"), joined(node, "bob"), joined(node, "cy")
    one = ann.ok("send", room="lobby", body="one")["mid"]
    two = ann.ok("send", room="lobby", body="two")["mid"]
    bob.ok("react", mid=one, key="👍", on=True)
    cy.ok("react", mid=one, key="👍", on=True)
    cy.ok("react", mid=one, key="🎉", on=True)
    assert reactions(bob, room="lobby") == [[("👍", 2, True), ("🎉", 1, False)], []]
    assert reactions(cy, room="lobby") == [[("👍", 2, True), ("🎉", 1, True)], []]
    page = ann.ok("history", room="lobby")["messages"]
    assert page[1]["mid"] == two and "reactions" not in page[1]
    # A deleted message's reactions go with its body.
    ann.ok("delete", mid=one)
    assert reactions(bob, room="lobby") == [[], []]
    assert bob.error("react", mid=one, key="👍", on=False)["code"] == "not_found"


def test_a_device_away_gets_the_reactions_once_in_order_after_join_since(
    node: RunningNode,
) -> None:
    ann = joined(node, "ann")
    bob = node.client("bob")
    joined_at = bob.ok("join", room="lobby")
    one = ann.ok("send", room="lobby", body="one")
    assert bob.event("msg")["seq"] == 1
    bob.close()  # away from here on
    ann.ok("react", mid=one["mid"], key="👍", on=True)
    ann.ok("send", room="lobby", body="two")
    ann.ok("react", mid=one["mid"], key="👍", on=True)  # no change, no event
    ann.ok("react", mid=one["mid"], key="👍", on=False)
    back = node.client("bob")
    data = back.ok("join", room="lobby", since=1, epoch=joined_at["epoch"])
    assert data["recovered"] is True and data["seq"] == 4
    back.ok("ping")
    got = [e for e in back.events if e.get("t") in ("msg", "reaction")]
    assert [(e["t"], e["seq"], e.get("on")) for e in got] == [
        ("reaction", 2, True),
        ("msg", 3, None),
        ("reaction", 4, False),
    ]


def test_direct_message_reactions_reach_both_users_devices(node: RunningNode) -> None:
    ann, ann_phone, bob = node.client("ann"), node.client("ann"), node.client("bob")
    sent = ann.ok("send", to="bob", body="hi bob")
    assert bob.event("msg")["mid"] == sent["mid"]
    ann_phone.event("msg")
    reply = bob.ok("react", mid=sent["mid"], key="❤", on=True)
    assert (reply["to"], reply["from"]) == ("ann", "bob")
    for device in (ann, ann_phone):
        event = device.event("reaction")
        assert (event["mid"], event["to"], event["from"], event["user"], event["on"]) == (
            sent["mid"],
            "ann",
            "bob",
            "bob",
            True,
        )
    assert reactions(ann, **{"with": "bob"}) == [[("❤", 1, False)]]
    assert reactions(bob, **{"with": "ann"}) == [[("❤", 1, True)]]
    carol = node.client("carol")
    assert carol.error("react", mid=sent["mid"], key="x", on=True)["code"] == "not_found"


def test_only_members_may_react_and_bad_keys_are_refused(node: RunningNode) -> None:
    ann = joined(node, "ann")
    mid = ann.ok("send", room="lobby", body="hi")["mid"]
    outsider = node.client("dan")
    assert outsider.error("react", mid=mid, key="x", on=True)["code"] == "forbidden"
    for bad in ({"key": "", "on": True}, {"key": "x" * 33, "on": True}, {"key": "x", "on": 1}):
        assert ann.error("react", mid=mid, **bad)["code"] == "bad_request"
    assert ann.ok("react", mid=mid, key="é" * 16, on=True)["seq"] == 2


def test_a_new_key_beyond_max_reactions_is_refused_and_others_react_on(
    start_node: StartNode,
) -> None:
    node = start_node(max_reactions=2)
    ann, bob = joined(node, "ann"), joined(node, "bob")
    mid = ann.ok("send", room="lobby", body="vote")["mid"]
    ann.ok("react", mid=mid, key="a", on=True)
    ann.ok("react", mid=mid, key="b", on=True)
    error = bob.error("react", mid=mid, key="c", on=True)
    assert error["code"] == "too_many_reactions"
    assert "2" in error["message"]
    assert bob.ok("react", mid=mid, key="a", on=True)["seq"] == 4
    ann.ok("send", room="lobby", body="still chatting", cid="b")
    assert [bob.event("reaction")["key"] for _ in range(2)] == ["a", "b"]
    bob.event("msg", cid="b")
    assert queued(bob, "reaction") == []
    assert reactions(bob, room="lobby") == [[("a", 2, True), ("b", 1, False)], []]
