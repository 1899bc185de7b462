"""Presence over the wire: statuses on request, and changes pushed to watchers after a grace."""

from __future__ import annotations

import time

from actorim.protocol.wire import WireFrame
from actorim.runtime.delivery import NodeDelivery
from tests.support import RunningNode, queued, wait_until

# The ``server`` fixture's presence_grace, in seconds.
GRACE_S = 0.3


def _connections(node: RunningNode, user: str) -> int:
    """How many connections the node has registered for ``user`` (closes are asynchronous)."""
    return len(node.node.ctx.directory.links_of(user))


def test_presence_reports_each_users_status(server: RunningNode) -> None:
    alice = server.client("alice")
    server.client("bob")
    data = alice.ok("presence", users=["alice", "bob", "carol"])
    assert data == {"statuses": {"alice": "online", "bob": "online", "carol": "offline"}}
    assert alice.ok("presence", users=[]) == {"statuses": {}}


def test_a_watcher_is_told_when_a_watched_user_comes_online(server: RunningNode) -> None:
    carol = server.client("carol")
    assert carol.ok("watch", users=["bob"]) == {}
    before = int(time.time() * 1000)
    server.client("bob")
    event = carol.event("presence")
    assert (event["user"], event["status"]) == ("bob", "online")
    assert before <= event["ts"] <= round(time.time() * 1000)


def test_a_second_connection_of_an_online_user_announces_nothing(server: RunningNode) -> None:
    carol = server.client("carol")
    carol.ok("watch", users=["bob", "dave"])
    server.client("bob")
    carol.event("presence", user="bob", status="online")
    server.client("bob")
    server.client("dave")
    carol.event("presence", user="dave", status="online")
    assert queued(carol, "presence", user="bob") == []


def test_a_watched_user_is_announced_offline_only_after_the_grace_period(
    server: RunningNode,
) -> None:
    carol = server.client("carol")
    bob = server.client("bob")
    carol.ok("watch", users=["bob"])
    closed_ms = time.time() * 1000
    bob.close()
    event = carol.event("presence", user="bob")
    assert event["status"] == "offline"
    assert event["ts"] >= closed_ms + GRACE_S * 1000 - 1
    assert time.time() * 1000 >= closed_ms + GRACE_S * 1000 - 1


def test_a_user_is_still_online_during_the_grace_period(server: RunningNode) -> None:
    carol = server.client("carol")
    bob = server.client("bob")
    carol.ok("watch", users=["bob"])
    bob.close()
    wait_until(lambda: _connections(server, "bob") == 0, what="bob's close")
    assert carol.ok("presence", users=["bob"]) == {"statuses": {"bob": "online"}}
    carol.event("presence", user="bob", status="offline")
    assert carol.ok("presence", users=["bob"]) == {"statuses": {"bob": "offline"}}


def test_a_reconnect_within_the_grace_period_announces_nothing(server: RunningNode) -> None:
    carol = server.client("carol")
    bob = server.client("bob")
    dave = server.client("dave")
    carol.ok("watch", users=["bob", "dave"])
    bob.close()
    wait_until(lambda: _connections(server, "bob") == 0, what="bob's close")
    server.client("bob")
    dave.close()
    carol.event("presence", user="dave", status="offline")
    assert queued(carol, "presence", user="bob") == []


def test_closing_one_of_two_connections_announces_nothing(server: RunningNode) -> None:
    carol = server.client("carol")
    bob1 = server.client("bob")
    server.client("bob")
    dave = server.client("dave")
    carol.ok("watch", users=["bob", "dave"])
    bob1.close()
    wait_until(lambda: _connections(server, "bob") == 1, what="bob's first close")
    dave.close()
    carol.event("presence", user="dave", status="offline")
    assert queued(carol, "presence", user="bob") == []


def test_unwatch_stops_the_announcements(server: RunningNode) -> None:
    carol = server.client("carol")
    carol.ok("watch", users=["bob", "dave"])
    assert carol.ok("unwatch", users=["bob"]) == {}
    server.client("bob")
    server.client("dave")
    carol.event("presence", user="dave", status="online")
    assert queued(carol, "presence", user="bob") == []


def test_only_watching_connections_are_told(server: RunningNode) -> None:
    carol_watching = server.client("carol")
    carol_other = server.client("carol")
    carol_watching.ok("watch", users=["bob"])
    server.client("bob")
    carol_watching.event("presence", user="bob", status="online")
    server.client("alice").ok("send", to="carol", body="sentinel")
    assert carol_other.event("msg")["body"] == "sentinel"
    assert queued(carol_other, "presence") == []


def test_a_cluster_presence_event_without_a_known_status_is_not_passed_to_watchers(
    server: RunningNode,
) -> None:
    """Events from other nodes come through the delivery port as Redis hands them over: one
    whose status is missing or outside ``online``/``offline`` reaches no client."""
    delivery = NodeDelivery(server.node.ctx)
    carol = server.client("carol")
    carol.ok("watch", users=["bob"])
    delivery.presence_event(WireFrame({"t": "presence", "user": "bob", "status": "online"}), "bob")
    carol.event("presence", user="bob", status="online")
    for bad in ({}, {"status": None}, {"status": "away"}, {"status": 1}):
        delivery.presence_event(WireFrame({"t": "presence", "user": "bob", **bad}), "bob")
    # The tracker handles its events in order: the last one comes after the bad ones.
    delivery.presence_event(WireFrame({"t": "presence", "user": "bob", "status": "offline"}), "bob")
    carol.event("presence", user="bob", status="offline")
    assert queued(carol, "presence") == []
