"""The absence checks the tests rely on can fail: ``nothing_before_pong`` catches an event the
server queued before the ping's reply, however soon after the action the check runs."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.support import RunningNode


def test_an_event_queued_before_the_pong_fails_the_check(
    start_node: Callable[..., RunningNode],
) -> None:
    node = start_node()
    alice, bob = node.client("alice"), node.client("bob")
    alice.ok("join", room="r")
    bob.ok("join", room="r")  # alice is told: a member event, not yet read by this test
    with pytest.raises(AssertionError, match="unexpected member event before the ping's reply"):
        alice.nothing_before_pong("member", user="bob")


def test_an_event_that_does_not_match_passes_the_check(
    start_node: Callable[..., RunningNode],
) -> None:
    node = start_node()
    alice, bob = node.client("alice"), node.client("bob")
    alice.ok("join", room="r")
    bob.ok("join", room="r")
    alice.nothing_before_pong("member", user="carol")
    assert alice.event("member", user="bob")["state"] == "joined"
