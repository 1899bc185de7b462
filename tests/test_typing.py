"""Typing indicators over real sockets: ``typing {room | to}`` is relayed to the conversation's
other connections as an ephemeral ``typing`` event (never stored, no seq, never replayed), at
most once per ``typing_throttle`` for a user in a conversation, on one node and across nodes.

Where nothing may arrive, a barrier proves it: the event under test reaches another member
first (so the room's fan-out of it is done) and then a ``ping``'s reply, or a later message on
the same path, comes before anything it could have caused.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
import pytest

from actorim.config import Config
from actorim.redis.broker import RedisBroker
from tests.support import RunningNode, queued

TTL_MS = 5000  # the default typing_ttl, 5 s


def test_typing_in_a_room_reaches_the_other_members_not_the_typist_nor_other_rooms(
    start_node: Callable[..., RunningNode],
) -> None:
    node = start_node()
    alice, bob, carol, dave = (node.client(u) for u in ("alice", "bob", "carol", "dave"))
    for client in (alice, bob, carol):
        client.ok("join", room="r")
    alice.ok("join", room="elsewhere")
    dave.ok("join", room="elsewhere")

    assert alice.ok("typing", room="r") == {}

    for member in (bob, carol):
        event = member.event("typing", room="r")
        assert event == {"t": "typing", "room": "r", "user": "alice", "ttl_ms": TTL_MS}
    # The room fanned out to all its members before bob read it: anything for alice or dave
    # would be queued before the reply to their ping.
    alice.nothing_before_pong("typing")
    dave.nothing_before_pong("typing")


def test_typing_to_a_room_not_joined_is_forbidden_as_a_send_is(
    start_node: Callable[..., RunningNode],
) -> None:
    node = start_node()
    alice, bob = node.client("alice"), node.client("bob")
    bob.ok("join", room="r")
    error = alice.error("typing", room="r")
    assert error["code"] == "forbidden" == alice.error("send", room="r", body="x")["code"]
    assert "join room 'r'" in error["message"]
    both = alice.error("typing", room="r", to="bob")
    assert both["code"] == "bad_request"
    bob.ok("send", room="r", body="barrier")  # the room's path: nothing came before it
    assert not queued(bob, "typing")


def test_typing_to_a_user_reaches_their_connections_but_none_of_the_typists(
    start_node: Callable[..., RunningNode],
) -> None:
    node = start_node()
    alice, alice_phone = node.client("alice"), node.client("alice")
    bob, bob_phone = node.client("bob"), node.client("bob")

    assert alice.ok("typing", to="bob") == {}

    for device in (bob, bob_phone):
        event = device.event("typing", to="bob")
        assert event == {"t": "typing", "to": "bob", "user": "alice", "ttl_ms": TTL_MS}
    alice.nothing_before_pong("typing")
    alice_phone.nothing_before_pong("typing")
    # Typing to oneself is answered and relayed to nobody.
    assert alice.ok("typing", to="alice") == {}
    alice_phone.nothing_before_pong("typing")


def test_typing_is_relayed_at_most_once_per_throttle_and_again_after_a_message(
    start_node: Callable[..., RunningNode],
) -> None:
    throttle = 0.3
    node = start_node(typing_throttle=throttle, typing_ttl=1.0)
    alice, bob = node.client("alice"), node.client("bob")
    for client in (alice, bob):
        client.ok("join", room="r")

    alice.ok("typing", room="r")
    assert bob.event("typing", room="r")["ttl_ms"] == 1000
    for _ in range(5):  # renewals within the throttle: answered, not relayed
        assert alice.ok("typing", room="r") == {}
    alice.ok("typing", to="bob")  # another conversation of alice's has a throttle of its own
    bob.event("typing", to="bob", user="alice")
    alice.ok("send", room="r", body="one")  # the room's path, after the renewals
    bob.event("msg", room="r", seq=1)
    assert not queued(bob, "typing"), "a renewal within the throttle was relayed"

    # The message ended alice's indicator: her next one is relayed at once.
    alice.ok("typing", room="r")
    bob.event("typing", room="r", user="alice")
    alice.ok("typing", room="r")  # throttled again

    gevent.sleep(throttle)  # the throttle is a span of time: nothing to await but the clock
    alice.ok("typing", room="r")
    bob.event("typing", room="r", user="alice")
    alice.ok("send", room="r", body="two")
    bob.event("msg", room="r", seq=2)
    assert not queued(bob, "typing")


def test_typing_is_never_stored_nor_replayed_by_history_or_join_since(
    start_node: Callable[..., RunningNode],
) -> None:
    node = start_node()
    alice, bob = node.client("alice"), node.client("bob")
    for client in (alice, bob):
        client.ok("join", room="r")
    bob.ok("send", room="r", body="before")
    alice.event("msg", room="r", seq=1)
    bob.ok("typing", room="r")
    alice.event("typing", room="r", user="bob")
    bob.ok("send", room="r", body="after")  # seq 2: the indicator took no seq
    alice.event("msg", room="r", seq=2)

    history = alice.ok("history", room="r")["messages"]
    assert [(m["seq"], m["body"]) for m in history] == [(1, "before"), (2, "after")]

    carol = node.client("carol")
    joined = carol.ok("join", room="r", since=0)
    assert joined["recovered"] is True and joined["seq"] == 2
    assert [carol.event("msg", room="r")["seq"] for _ in range(2)] == [1, 2]
    bob.ok("send", room="r", body="live")  # the replay and the live path are done
    carol.event("msg", room="r", seq=3)
    assert not queued(carol, "typing"), "join since replayed a typing indicator"


def test_in_a_cluster_typing_reaches_members_and_users_on_every_node_and_is_never_stored(
    start_node: Callable[..., RunningNode], redis_session: Any, tmp_path: Path
) -> None:
    url = f"redis://127.0.0.1:{redis_session.port}/0"
    namespace = f"typing-{tmp_path.name}"  # the session's Redis is shared: a name of its own
    here = start_node(redis_url=url, redis_namespace=namespace)
    there = start_node(redis_url=url, redis_namespace=namespace)
    assert isinstance(here.node.ctx.broker, RedisBroker)
    alice, bob = here.client("alice"), here.client("bob")
    carol, carol_here = there.client("carol"), here.client("carol")
    for client in (alice, bob, carol):
        client.ok("join", room="r")

    alice.ok("typing", room="r")
    for member in (carol, bob):
        assert member.event("typing", room="r") == {
            "t": "typing",
            "room": "r",
            "user": "alice",
            "ttl_ms": TTL_MS,
        }
    alice.ok("typing", to="carol")
    for device in (carol, carol_here):
        assert device.event("typing", to="carol")["user"] == "alice"

    alice.ok("typing", room="r")  # within the throttle: not relayed
    sent = bob.ok("send", room="r", body="after")
    assert sent["seq"] == 1, "the indicator took a seq"
    carol.event("msg", room="r", seq=1)
    alice.event("msg", room="r", seq=1)
    assert not queued(carol, "typing", room="r"), "a throttled renewal was relayed"
    assert not queued(alice, "typing"), "the typist got her own indicator back"
    assert [m["seq"] for m in carol.ok("history", room="r")["messages"]] == [1]
    dave = there.client("dave")
    assert dave.ok("join", room="r", since=0)["recovered"] is True
    dave.event("msg", room="r", seq=1)
    bob.ok("send", room="r", body="live")
    dave.event("msg", room="r", seq=2)
    assert not queued(dave, "typing")


def test_the_typing_ttl_must_outlast_the_throttle() -> None:
    with pytest.raises(ValueError, match=r"typing_ttl .* must be greater than typing_throttle"):
        Config(typing_throttle=2.0, typing_ttl=2.0)
