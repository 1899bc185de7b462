"""A room that is loading does not hold up the node: nobody waits inside another's wait.

A room's actor reads its last seq from the store on first use. That read used to happen inside
the actor's start, which the rooms supervisor waited for, which the router waited for, which
the joining connection waited for: while one room loaded slowly, every ``connect`` and every
``join`` on the node queued behind it at the router, and past the supervisor's start time-out
the join itself failed. Now the router answers at once, the room queues its joins until its
last seq is read, and the slow room's join is answered when the store is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from gevent import monkey

from actorim.domain.messages import room_conv
from actorim.store.sqlite import SqliteStore
from tests.support import RunningNode

StartNode = Callable[..., RunningNode]

# The real threading.Event: the store's last_seq runs on the store's own OS thread.
Event: Any = monkey.get_original("threading", "Event")

# How long the store may be held up at most, so that a failing test still ends.
HOLD_BOUND_S = 30.0


@pytest.fixture
def slow_room(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Reading the last seq of room ``slow`` waits until the returned event is set."""
    release = Event()
    original = SqliteStore.last_seq

    def last_seq(self: SqliteStore, conv: str) -> int:
        if conv == room_conv("slow"):
            release.wait(HOLD_BOUND_S)
        return original(self, conv)

    monkeypatch.setattr(SqliteStore, "last_seq", last_seq)
    yield release
    release.set()


def test_a_room_loading_its_last_seq_holds_up_no_other_connection_and_its_join_is_answered_after(
    start_node: StartNode, slow_room: Any
) -> None:
    node = start_node(store="sqlite")
    # Connected before: a connect reads the user's conversations from the store, which the
    # slow room holds up.
    bob = node.client("bob")
    alice = node.client("alice")
    command_id = next(alice.ids)
    alice.send_obj({"t": "join", "id": command_id, "room": "slow"})
    # While the room waits for the store, the router and the other connections go on (before,
    # the router waited for the room's start: overloaded after 5 s, or answered only once the
    # supervisor gave the room up).
    assert bob.ok("ping") is not None
    assert bob.ok("typing", to="carol") == {}
    slow_room.set()
    reply = alice.reply_to(command_id)
    assert reply["ok"], reply
    assert reply["data"]["room"] == "slow" and reply["data"]["seq"] == 0


def test_a_room_that_cannot_read_its_last_seq_refuses_its_join_and_loads_on_the_next(
    start_node: StartNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = start_node(store="sqlite")
    original = SqliteStore.last_seq
    failures = [RuntimeError("the disk is away")]

    def last_seq(self: SqliteStore, conv: str) -> int:
        if conv == room_conv("flaky") and failures:
            raise failures.pop()
        return original(self, conv)

    monkeypatch.setattr(SqliteStore, "last_seq", last_seq)
    alice = node.client("alice")
    error = alice.error("join", room="flaky")
    assert error["code"] == "overloaded", error
    assert alice.ok("join", room="flaky")["seq"] == 0
    alice.ok("send", room="flaky", body="hi")
    bob = node.client("bob")
    assert bob.ok("join", room="flaky")["seq"] == 1
