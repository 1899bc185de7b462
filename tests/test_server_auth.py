"""Connecting: the token decides who a connection is and which rooms it may use."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from actorim.domain.auth import TokenAuthority
from tests.support import RunningNode

POLICY_VIOLATION = 1008


def test_connect_replies_with_user_session_node_and_heartbeat(
    start_node: Callable[..., RunningNode],
) -> None:
    node = start_node(heartbeat=7.5, node_id="node-a")
    first = node.client().connect(node.token("alice"))
    second = node.client().connect(node.token("alice"))
    assert first["user"] == "alice"
    assert first["node"] == "node-a"
    assert first["heartbeat"] == 7.5
    assert isinstance(first["session"], str) and first["session"]
    assert second["session"] != first["session"]


def test_a_second_connect_is_a_bad_request_and_the_session_stays(server: RunningNode) -> None:
    alice = server.client("alice")
    error = alice.error("connect", token=server.token("bob"))
    assert error["code"] == "bad_request"
    assert alice.ok("join", room="lobby")["members"] == ["alice"]


@pytest.mark.parametrize(
    ("command", "args"),
    [("ping", {}), ("join", {"room": "lobby"}), ("send", {"room": "lobby", "body": "hi"})],
)
def test_a_command_before_connect_is_unauthenticated_then_closed_1008(
    server: RunningNode, command: str, args: dict[str, object]
) -> None:
    client = server.client()
    assert client.error(command, **args)["code"] == "unauthenticated"
    assert client.wait_closed().code == POLICY_VIOLATION


def _refused(node: RunningNode, token: str) -> tuple[dict[str, object], int | None]:
    client = node.client()
    error = client.error("connect", token=token)
    return error, client.wait_closed().code


def test_a_malformed_token_is_unauthenticated_then_closed_1008(server: RunningNode) -> None:
    error, code = _refused(server, "not.a.token")
    assert error["code"] == "unauthenticated"
    assert code == POLICY_VIOLATION


def test_an_expired_token_is_unauthenticated_then_closed_1008(server: RunningNode) -> None:
    expired = server.node.authority.mint("alice", ttl_s=60, now=time.time() - 3600)
    error, code = _refused(server, expired)
    assert error["code"] == "unauthenticated"
    assert "expired" in str(error["message"])
    assert code == POLICY_VIOLATION


def test_a_token_signed_with_another_secret_is_unauthenticated_then_closed_1008(
    server: RunningNode,
) -> None:
    forged = TokenAuthority("another secret, " + "y" * 32).mint("alice")
    error, code = _refused(server, forged)
    assert error["code"] == "unauthenticated"
    assert "signature" in str(error["message"])
    assert code == POLICY_VIOLATION


def test_a_refused_token_leaves_no_presence_behind(server: RunningNode) -> None:
    _refused(server, TokenAuthority("z" * 40).mint("mallory"))
    watcher = server.client("alice")
    assert watcher.ok("presence", users=["mallory"]) == {"statuses": {"mallory": "offline"}}


@pytest.mark.slow  # waits out a real deadline
def test_a_connection_that_never_connects_is_closed_1008_after_connect_timeout(
    start_node: Callable[..., RunningNode],
) -> None:
    node = start_node(connect_timeout=0.2)
    started = time.monotonic()
    silent = node.client()
    assert silent.wait_closed(timeout=3).code == POLICY_VIOLATION
    assert time.monotonic() - started >= 0.2


@pytest.mark.slow  # waits out a real deadline
def test_a_connected_client_is_not_closed_by_the_connect_timeout(
    start_node: Callable[..., RunningNode],
) -> None:
    node = start_node(connect_timeout=0.2)
    alice = node.client("alice")
    silent = node.client()
    assert silent.wait_closed(timeout=3).code == POLICY_VIOLATION
    assert alice.ok("ping") == {}


def test_a_rooms_claim_pattern_allows_matching_rooms_only(server: RunningNode) -> None:
    alice = server.client()
    alice.connect(server.token("alice", rooms=["team:*"]))
    assert alice.ok("join", room="team:red")["room"] == "team:red"
    assert alice.error("join", room="lobby")["code"] == "forbidden"
    assert alice.error("join", room="team:")["code"] == "forbidden"
    assert alice.ok("ping") == {}


def test_a_rooms_claim_of_exact_names_allows_those_rooms_only(server: RunningNode) -> None:
    alice = server.client()
    alice.connect(server.token("alice", rooms=["lobby", "support"]))
    assert alice.ok("join", room="support")["room"] == "support"
    assert alice.error("join", room="lobby2")["code"] == "forbidden"


def test_a_token_without_a_rooms_claim_allows_every_room(server: RunningNode) -> None:
    alice = server.client("alice")
    for room in ("lobby", "team:red", "x"):
        assert alice.ok("join", room=room)["room"] == room


def test_history_of_a_room_the_token_does_not_allow_is_forbidden(server: RunningNode) -> None:
    bob = server.client("bob")
    bob.ok("join", room="lobby")
    bob.ok("send", room="lobby", body="secret")
    alice = server.client()
    alice.connect(server.token("alice", rooms=["team:*"]))
    assert alice.error("history", room="lobby")["code"] == "forbidden"
    assert alice.ok("history", room="team:red") == {"messages": [], "more": False}
