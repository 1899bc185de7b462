"""Supervision against a real node: an injected crash (``debug.crash``) costs one command.

Each test crashes one actor and then checks what a user relies on: the requester gets
``internal``, nobody is disconnected, and the state the crashed actor served is still there.
"""

from __future__ import annotations

from collections.abc import Callable

from tests.support import Client, RunningNode, wait_until

StartNode = Callable[..., RunningNode]


def room_of(node: RunningNode, room: str, *users: str) -> list[Client]:
    """A client per user, all in ``room``, with the join announcements consumed."""
    clients = []
    for user in users:
        client = node.client(user)
        client.ok("join", room=room)
        for earlier in clients:
            earlier.event("member", room=room, user=user)
        clients.append(client)
    return clients


def test_crash_inside_a_connection_answers_internal_and_keeps_its_session_and_rooms(
    server: RunningNode,
) -> None:
    alice, bob = room_of(server, "lobby", "alice", "bob")
    error = alice.error("debug.crash", what="connection")
    assert error["code"] == "internal"
    sent = bob.ok("send", room="lobby", body="still there?")
    assert alice.event("msg", room="lobby")["mid"] == sent["mid"]
    sent = alice.ok("send", room="lobby", body="yes")
    assert bob.event("msg", room="lobby")["mid"] == sent["mid"]
    assert alice.ok("presence", users=["alice"])["statuses"] == {"alice": "online"}


def test_connection_crashing_a_fourth_time_within_10s_is_closed_1011_alone(
    server: RunningNode,
) -> None:
    alice, bob, carol = room_of(server, "lobby", "alice", "bob", "carol")
    for _ in range(3):
        assert alice.error("debug.crash", what="connection")["code"] == "internal"
        alice.ok("ping")
    alice.send_obj({"t": "debug.crash", "id": 1000, "what": "connection"})
    assert alice.wait_closed().code == 1011
    assert bob.event("member", room="lobby", user="alice")["state"] == "left"
    sent = bob.ok("send", room="lobby", body="alice is gone")
    assert carol.event("msg", room="lobby")["mid"] == sent["mid"]
    assert bob.error("debug.crash", what="connection")["code"] == "internal"
    bob.ok("ping")


def test_crashed_room_restarts_with_its_members_and_seq(server: RunningNode) -> None:
    alice, bob, carol = room_of(server, "lobby", "alice", "bob", "carol")
    before = alice.ok("send", room="lobby", body="one")["seq"]
    for member in (bob, carol):
        assert member.event("msg", room="lobby")["seq"] == before
    crashed = server.node.ctx.directory.rooms["lobby"].actor
    assert crashed is not None
    assert alice.error("debug.crash", what="room", room="lobby")["code"] == "internal"
    after = alice.ok("send", room="lobby", body="two")
    assert after["seq"] == before + 1
    for member in (bob, carol):
        msg = member.event("msg", room="lobby")
        assert (msg["mid"], msg["seq"], msg["body"]) == (after["mid"], before + 1, "two")
    reply = carol.ok("send", room="lobby", body="three")
    assert reply["seq"] == before + 2
    for member in (alice, bob):
        assert member.event("msg", room="lobby")["mid"] == reply["mid"]
    assert not crashed.is_alive()
    dave = server.client("dave")
    joined = dave.ok("join", room="lobby")
    assert joined["seq"] == before + 2
    assert sorted(joined["members"]) == ["alice", "bob", "carol", "dave"]


def test_crashed_presence_tracker_rebuilds_from_live_connections(server: RunningNode) -> None:
    alice = server.client("alice")
    server.client("bob")
    watcher = server.client("carol")
    watcher.ok("watch", users=["dave", "bob"])
    assert alice.error("debug.crash", what="presence")["code"] == "internal"
    ctx = server.node.ctx
    wait_until(lambda: ctx.refs.presence is not None, what="the presence tracker to restart")
    statuses = alice.ok("presence", users=["alice", "bob", "carol", "dave"])["statuses"]
    assert statuses == {"alice": "online", "bob": "online", "carol": "online", "dave": "offline"}
    dave = server.client("dave")
    assert watcher.event("presence", user="dave")["status"] == "online"
    dave.close()
    assert watcher.event("presence", user="dave")["status"] == "offline"


def test_crashed_store_restarts_and_keeps_acknowledged_messages(start_node: StartNode) -> None:
    node = start_node(fault_injection=True, store="sqlite")
    alice, bob = room_of(node, "lobby", "alice", "bob")
    kept = alice.ok("send", room="lobby", body="acknowledged before the crash")
    assert bob.event("msg", room="lobby")["mid"] == kept["mid"]
    assert alice.error("debug.crash", what="store")["code"] == "internal"
    ctx = node.node.ctx
    wait_until(lambda: ctx.refs.store is not None, what="the store to restart")
    after = alice.ok("send", room="lobby", body="after the restart")
    assert after["seq"] == kept["seq"] + 1
    assert bob.event("msg", room="lobby")["mid"] == after["mid"]
    history = bob.ok("history", room="lobby")["messages"]
    assert [(m["mid"], m["body"]) for m in history] == [
        (kept["mid"], "acknowledged before the crash"),
        (after["mid"], "after the restart"),
    ]
