"""Read markers, unread counts and mentions over real sockets, on one node: a read on one device
clears the count on the user's others, counts leave out changes, one's own messages and deleted
ones, mentions count by text and by list, the marker never moves back, counts survive kill -9,
and bad input gets clear errors.

Where a test proves that an event was *not* sent, a ``ping`` is the barrier: its reply comes
after anything the command before it caused, so nothing may be queued after the reply.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from actorim.domain.auth import TokenAuthority
from tests.support import Client, RunningNode, ServerProcess

StartNode = Callable[..., RunningNode]


@pytest.fixture(params=["memory", "sqlite"])
def node(request: pytest.FixtureRequest, start_node: StartNode) -> RunningNode:
    return start_node(store=request.param, max_mentions=3, unread_max_conversations=4)


def counts(client: Client, **where: Any) -> dict[str, Any]:
    """The one conversation ``unread`` answers for ``room=`` or ``with_=``."""
    ask = {"rooms": [where["room"]]} if "room" in where else {"with": [where["with_"]]}
    [found] = client.ok("unread", **ask)["conversations"]
    return found


def test_a_read_on_one_device_clears_the_count_on_the_others_at_once(node: RunningNode) -> None:
    phone, desktop, bob = node.client("ann"), node.client("ann"), node.client("bob")
    bob.ok("join", room="lobby")
    for text in ("one", "two", "three"):
        bob.ok("send", room="lobby", body=text)
    assert counts(desktop, room="lobby") == {
        "room": "lobby",
        "seq": 3,
        "marker": 0,
        "unread": 3,
        "mentions": 0,
    }
    answer = phone.ok("read", room="lobby", seq=3)
    assert answer == {"room": "lobby", "marker": 3, "unread": 0, "mentions": 0}
    assert desktop.event("marker") == {
        "t": "marker",
        "room": "lobby",
        "seq": 3,
        "unread": 0,
        "mentions": 0,
    }
    assert counts(desktop, room="lobby")["unread"] == 0
    # The reading device has the reply; the other user hears nothing of ann's marker.
    phone.nothing_before_pong("marker")
    bob.nothing_before_pong("marker")


def test_direct_conversation_markers_and_read_receipts_stay_apart(node: RunningNode) -> None:
    phone, desktop, bob = node.client("ann"), node.client("ann"), node.client("bob")
    first = bob.ok("send", to="ann", body="psst")
    bob.ok("send", to="ann", body="again")
    assert counts(desktop, with_="bob")["unread"] == 2
    # A receipt tells bob that ann read his message; it does not move ann's marker.
    phone.ok("read", mid=first["mid"])
    assert bob.event("receipt")["status"] == "read"
    assert counts(desktop, with_="bob") == {
        "with": "bob",
        "seq": 2,
        "marker": 0,
        "unread": 2,
        "mentions": 0,
    }
    assert phone.ok("read", seq=1, **{"with": "bob"}) == {
        "with": "bob",
        "marker": 1,
        "unread": 1,
        "mentions": 0,
    }
    assert desktop.event("marker") == {
        "t": "marker",
        "with": "bob",
        "seq": 1,
        "unread": 1,
        "mentions": 0,
    }
    # Bob's own side of the conversation: his own messages never count.
    assert counts(bob, with_="ann")["unread"] == 0


def test_edits_reactions_and_own_messages_never_count_and_deleted_ones_stop(
    node: RunningNode,
) -> None:
    ann, bob = node.client("ann"), node.client("bob")
    ann.ok("join", room="lobby")
    bob.ok("join", room="lobby")
    one = bob.ok("send", room="lobby", body="one")
    two = bob.ok("send", room="lobby", body="two")
    ann.ok("send", room="lobby", body="mine")
    bob.ok("edit", mid=one["mid"], body="ONE")
    bob.ok("react", mid=one["mid"], key="+1", on=True)
    ann.ok("react", mid=two["mid"], key="+1", on=True)
    assert counts(ann, room="lobby") == {
        "room": "lobby",
        "seq": 6,
        "marker": 0,
        "unread": 2,
        "mentions": 0,
    }
    bob.ok("delete", mid=two["mid"])
    assert counts(ann, room="lobby")["unread"] == 1


def test_the_marker_never_moves_back_and_stops_at_the_last_seq(node: RunningNode) -> None:
    ann, desktop, bob = node.client("ann"), node.client("ann"), node.client("bob")
    bob.ok("join", room="lobby")
    for text in ("a", "b", "c", "d"):
        bob.ok("send", room="lobby", body=text)
    assert ann.ok("read", room="lobby", seq=3)["marker"] == 3
    assert desktop.event("marker")["seq"] == 3
    assert ann.ok("read", room="lobby", seq=1) == {
        "room": "lobby",
        "marker": 3,
        "unread": 1,
        "mentions": 0,
    }
    assert ann.ok("read", room="lobby", seq=3)["marker"] == 3
    desktop.nothing_before_pong("marker")  # nothing moved: no event
    assert ann.ok("read", room="lobby", seq=1_000)["marker"] == 4
    assert desktop.event("marker")["seq"] == 4


def test_mentions_count_by_text_and_by_list_and_ride_on_the_message(node: RunningNode) -> None:
    ann, bob = node.client("ann"), node.client("bob")
    ann.ok("join", room="lobby")
    bob.ok("join", room="lobby")
    bob.ok("send", room="lobby", body="hi @ann, lunch?")
    assert ann.event("msg")["mentions"] == ["ann"]
    bob.ok("send", room="lobby", body={"text": "see above"}, mentions=["ann", "bob"])
    assert ann.event("msg")["mentions"] == ["ann"]  # never the sender
    bob.ok("send", room="lobby", body="mail ann@example.com")
    assert "mentions" not in ann.event("msg")
    bob.ok("send", room="lobby", body={"text": "@cy and @ann."})
    assert ann.event("msg")["mentions"] == ["cy", "ann"]
    assert counts(ann, room="lobby")["unread"] == 4
    assert counts(ann, room="lobby")["mentions"] == 3
    assert ann.ok("read", room="lobby", seq=2)["mentions"] == 1
    history = ann.ok("history", room="lobby")["messages"]
    assert [m.get("mentions") for m in history] == [["ann"], ["ann"], None, ["cy", "ann"]]


def test_in_a_direct_conversation_only_the_recipient_is_mentioned(node: RunningNode) -> None:
    ann, bob = node.client("ann"), node.client("bob")
    bob.ok("send", to="ann", body="@cy and @ann, see this", mentions=["cy"])
    assert ann.event("msg")["mentions"] == ["ann"]
    bob.ok("send", to="ann", body="cy only", mentions=["cy"])
    assert "mentions" not in ann.event("msg")
    assert counts(ann, with_="bob")["mentions"] == 1


def test_bad_reads_and_unread_requests_get_clear_errors(node: RunningNode) -> None:
    ann = node.client("ann")
    for args, wanted in [
        ({"room": "lobby", "seq": "3"}, "field 'seq' must be an integer"),
        ({"room": "lobby", "seq": -1}, "field 'seq' must be an integer"),
        ({"room": "lobby", "seq": 1.5}, "field 'seq' must be an integer"),
        ({"room": "lobby"}, "field 'seq' is required"),
        ({"seq": 3}, "give exactly one of the fields 'mid'"),
        ({"room": "lobby", "with": "bob", "seq": 3}, "give exactly one"),
        ({"mid": "x", "room": "lobby", "seq": 3}, "give exactly one"),
        ({"mid": "x", "seq": 3}, "field 'seq' goes with 'room' or 'with'"),
        ({"room": "no spaces", "seq": 3}, "field 'room' may contain only"),
    ]:
        error = ann.error("read", **args)
        assert error["code"] == "bad_request", args
        assert wanted in error["message"], (args, error)
    error = ann.error("unread", rooms=["a", "b", "c"], **{"with": ["x", "y"]})
    assert (error["code"], error["message"]) == (
        "bad_request",
        "ask about at most 4 conversations (rooms and with together) at once",
    )
    assert ann.error("unread", rooms="lobby")["code"] == "bad_request"
    ann.ok("join", room="lobby")
    error = ann.error("send", room="lobby", body="hi", mentions=["a", "b", "c", "d"])
    assert error["code"] == "too_many_mentions" and "at most 3 users" in error["message"]
    assert ann.error("send", room="lobby", body="hi", mentions="bob")["code"] == "bad_request"
    # A room the token does not allow: refused like history.
    limited = Client(node.url)
    limited.connect(node.token("cy", rooms=["lobby"]))
    for t, args in [("read", {"room": "secret", "seq": 1}), ("unread", {"rooms": ["secret"]})]:
        error = limited.error(t, **args)
        assert error == {"code": "forbidden", "message": "your token does not allow room 'secret'"}
    limited.close()


def test_unread_is_charged_by_the_conversations_it_names(start_node: StartNode) -> None:
    node = start_node(unread_max_conversations=300, unread_conversations_per_token=1)
    ann = node.client("ann")
    rooms = [f"r{n}" for n in range(300)]
    assert len(ann.ok("unread", rooms=rooms)["conversations"]) == 300
    # The burst of 200 tokens is spent: the next command waits for the bucket to refill.
    assert ann.error("unread", rooms=rooms)["code"] == "rate_limited"


SECRET = "markers-test-secret-0123456789abcdef"


@pytest.mark.process
def test_counts_are_right_after_kill_9(tmp_path: Path) -> None:
    """The SQLite data directory survives the node: markers and counts come back as they were."""
    tokens = TokenAuthority(SECRET)
    server = ServerProcess(tmp_path / "data", secret=SECRET)
    opened: list[Client] = []

    def connected(user: str) -> Client:
        client = Client(server.url)
        opened.append(client)
        client.connect(tokens.mint(user))
        return client

    try:
        server.start()
        bob, ann = connected("bob"), connected("ann")
        bob.ok("join", room="lobby")
        for text in ("one", "two @ann", "three"):
            bob.ok("send", room="lobby", body=text)
        bob.ok("send", to="ann", body="psst")
        ann.ok("read", room="lobby", seq=1)
        server.kill()
        server.start()
        found = connected("ann").ok("unread", rooms=["lobby"], **{"with": ["bob"]})
        assert found["conversations"] == [
            {"room": "lobby", "seq": 3, "marker": 1, "unread": 2, "mentions": 1},
            {"with": "bob", "seq": 1, "marker": 0, "unread": 1, "mentions": 0},
        ]
    finally:
        for client in opened:
            client.close()
        server.stop()
