"""A live connection's token against real nodes: expiry enforced while the socket is open,
``refresh`` in-band, and revocation by token id and by user on one node and across a cluster.

Tokens are minted by the tests with a short ``exp`` and the nodes run with small
``token_refresh_notice`` and ``token_expiry_grace``; the tests wait for the ``refresh`` event
and for the close, never for a time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from gevent.event import Event

from actorim.client import AuthError, LinkState
from actorim.client import Client as ActorimClient
from actorim.tools.publisher import Publisher
from tests.support import Client, RunningNode

StartNode = Callable[..., RunningNode]

# The sweep runs every min(1 s, heartbeat): a small heartbeat makes expiry checks frequent.
FAST = {"heartbeat": 0.1, "token_refresh_notice": 3.0, "token_expiry_grace": 0.5}


def short_ttl_s() -> int:
    """A ttl for a token minted now whose exp is 1.5 to 2.5 s away (iat and exp have whole
    seconds, so a fixed ttl of 2 puts it 1 to 2 s away): inside the notice at once, far enough
    for a loaded machine to connect with it and for a refresh to be asked for and answered
    before it, and near enough to wait for its end."""
    return 2 if time.time() % 1 < 0.5 else 3


def connected(node: RunningNode, token: str) -> Client:
    client = node.client()
    client.connect(token)
    return client


# Slow: waits for a token to reach its real expiry, in whole seconds.
@pytest.mark.slow
def test_an_expiring_token_gets_a_refresh_event_then_the_connection_is_closed_4001(
    start_node: StartNode,
) -> None:
    node = start_node(**FAST)
    client = connected(node, node.token("alice", ttl_s=short_ttl_s()))
    refresh = client.event("refresh")
    assert refresh["grace"] == 0.5 and refresh["exp"] > time.time() - 1
    closed = client.wait_closed()
    assert (closed.code, closed.reason) == (4001, "token expired")
    assert time.time() >= refresh["exp"] + 0.5 - 0.1  # not before exp plus the grace


# Slow: waits for a token to reach its real expiry, in whole seconds.
@pytest.mark.slow
def test_a_refreshed_connection_outlives_its_first_token_and_a_bystander_does_not(
    start_node: StartNode,
) -> None:
    node = start_node(**FAST)
    token = node.token("alice", ttl_s=short_ttl_s())
    alice, idle = connected(node, token), connected(node, token)
    alice.event("refresh")
    reply = alice.ok("refresh", token=node.token("alice", ttl_s=3600))
    assert reply["exp"] > time.time() + 3000
    # The bystander holds the same token and did not refresh: its close marks the moment the
    # first token ran out, grace included.
    assert idle.wait_closed().code == 4001
    alice.ok("ping")
    alice.nothing_before_pong("refresh")


# Slow: waits for a token to reach its real expiry, in whole seconds.
@pytest.mark.slow
def test_a_token_without_exp_is_never_asked_to_refresh_nor_closed(start_node: StartNode) -> None:
    node = start_node(**FAST)
    forever = connected(node, node.token("alice", ttl_s=None))
    expiring = connected(node, node.token("bob", ttl_s=short_ttl_s()))
    assert expiring.wait_closed().code == 4001
    forever.nothing_before_pong("refresh")


def test_refresh_with_another_users_token_is_forbidden_and_the_connection_stays(
    start_node: StartNode,
) -> None:
    node = start_node(**FAST)
    alice = connected(node, node.token("alice"))
    error = alice.error("refresh", token=node.token("mallory"))
    assert error["code"] == "forbidden" and "'mallory'" in error["message"]
    alice.ok("ping")


@pytest.mark.parametrize(
    ("make_token", "why"),
    [
        (lambda node: "not-a-jwt", "malformed"),
        (lambda node: node.node.authority.mint("alice", ttl_s=1, now=time.time() - 10), "expired"),
    ],
)
def test_refresh_with_an_invalid_or_expired_token_is_unauthenticated_and_the_connection_stays(
    start_node: StartNode, make_token: Callable[[RunningNode], str], why: str
) -> None:
    node = start_node(**FAST)
    alice = connected(node, node.token("alice"))
    error = alice.error("refresh", token=make_token(node))
    assert error["code"] == "unauthenticated" and why in error["message"]
    alice.ok("ping")


def test_refresh_applies_the_new_rooms_claim_and_leaves_rooms_it_no_longer_allows(
    start_node: StartNode,
) -> None:
    node = start_node(**FAST)
    alice = connected(node, node.token("alice", rooms=["lobby", "team:*"]))
    bob = connected(node, node.token("bob"))
    for client in (alice, bob):
        client.ok("join", room="team:red")
        client.ok("join", room="lobby")
    alice.ok("refresh", token=node.token("alice", rooms=["lobby"]))
    assert alice.event("left")["room"] == "team:red"
    assert alice.error("send", room="team:red", body="hi")["code"] == "forbidden"
    assert alice.error("join", room="team:red")["code"] == "forbidden"
    bob.event("member", room="team:red", user="alice", state="left")
    # lobby is still joined: a message there reaches her.
    bob.ok("send", room="lobby", body="still here?")
    assert alice.event("msg", room="lobby")["body"] == "still here?"


def test_revoking_a_token_closes_its_connections_4003_and_refuses_it_at_connect(
    start_node: StartNode,
) -> None:
    node = start_node()
    stolen, other = node.token("alice", token_id="stolen"), node.token("alice", token_id="other")
    thief, alice, bob = connected(node, stolen), connected(node, other), node.client("bob")
    node.node.revoke_token("stolen", expires_at=time.time() + 3600)
    closed = thief.wait_closed()
    assert (closed.code, closed.reason) == (4003, "token revoked")
    alice.ok("ping")  # her other token, and bob, are unaffected
    bob.ok("ping")
    again = node.client()
    error = again.error("connect", token=stolen)
    assert error["code"] == "unauthenticated" and "revoked" in error["message"]
    assert again.wait_closed().code == 1008


def test_refresh_with_a_revoked_token_is_unauthenticated(start_node: StartNode) -> None:
    node = start_node()
    alice = connected(node, node.token("alice"))
    revoked = node.token("alice", token_id="gone")
    node.node.revoke_token("gone")
    error = alice.error("refresh", token=revoked)
    assert error["code"] == "unauthenticated" and "revoked" in error["message"]
    alice.ok("ping")


def test_revoking_a_user_closes_every_connection_with_an_older_token_and_spares_newer_ones(
    start_node: StartNode,
) -> None:
    node = start_node()
    old = node.token("mallory")
    first, second, bob = connected(node, old), connected(node, old), node.client("bob")
    node.node.revoke_user("mallory")
    assert first.wait_closed().code == 4003
    assert second.wait_closed().code == 4003
    bob.ok("ping")
    assert node.client().error("connect", token=old)["code"] == "unauthenticated"
    # A token issued after the revocation's time works (iat has whole seconds).
    newer = node.node.authority.mint("mallory", now=time.time() + 1)
    connected(node, newer).ok("ping")


def test_a_revocation_on_a_sqlite_node_survives_a_restart(
    start_node: StartNode, tmp_path: Path
) -> None:
    settings: dict[str, Any] = {"store": "sqlite", "data_dir": str(tmp_path / "kept")}
    first = start_node(**settings)
    token = first.token("alice", token_id="t-1")
    first.node.revoke_token("t-1", expires_at=time.time() + 3600)
    first.stop()
    second = start_node(**settings)
    assert second.client().error("connect", token=token)["code"] == "unauthenticated"


# -- a cluster ----------------------------------------------------------------------------------


CLUSTER_SECRET = "a-secret-the-nodes-of-a-test-cluster-share-0123456789"


def cluster_node(start_node: StartNode, redis_session: Any, name: str) -> RunningNode:
    return start_node(
        redis_url=f"redis://127.0.0.1:{redis_session.port}/0",
        redis_namespace=f"tokens-{name}",  # the session's Redis is shared: a name of its own
        secret=CLUSTER_SECRET,
    )


def two_nodes(start_node: StartNode, redis_session: Any, name: str) -> tuple[RunningNode, ...]:
    return tuple(cluster_node(start_node, redis_session, name) for _ in range(2))


def closed_within_a_second(client: Client, started: float) -> int | None:
    closed = client.wait_closed(timeout=2)
    assert time.monotonic() - started < 1.0, "the revocation took over a second to apply"
    return closed.code


def test_in_a_cluster_a_publisher_revoking_a_token_closes_it_on_every_node_within_a_second(
    start_node: StartNode, redis_session: Any, tmp_path: Path
) -> None:
    here, there = two_nodes(start_node, redis_session, tmp_path.name)
    stolen = here.token("alice", token_id="stolen")
    on_here, on_there = connected(here, stolen), connected(there, stolen)
    bystanders = [here.client("bob"), there.client("bob"), connected(there, here.token("alice"))]
    url = f"redis://127.0.0.1:{redis_session.port}/0"
    with Publisher(url, namespace=f"tokens-{tmp_path.name}") as publisher:
        started = time.monotonic()
        publisher.revoke_token("stolen", expires_at=time.time() + 3600)
    assert closed_within_a_second(on_here, started) == 4003
    assert closed_within_a_second(on_there, started) == 4003
    for client in bystanders:
        client.ok("ping")
    for node in (here, there):
        assert node.client().error("connect", token=stolen)["code"] == "unauthenticated"


def test_in_a_cluster_revoking_a_user_on_one_node_closes_their_connections_on_the_other(
    start_node: StartNode, redis_session: Any, tmp_path: Path
) -> None:
    here, there = two_nodes(start_node, redis_session, tmp_path.name)
    old = here.token("mallory")
    mallory, bob = connected(there, old), there.client("bob")
    started = time.monotonic()
    here.node.revoke_user("mallory")
    assert closed_within_a_second(mallory, started) == 4003
    bob.ok("ping")
    assert there.client().error("connect", token=old)["code"] == "unauthenticated"
    # A node that starts later reads the revocations in force from Redis.
    late = cluster_node(start_node, redis_session, tmp_path.name)
    assert late.client().error("connect", token=old)["code"] == "unauthenticated"


# -- the Python client ----------------------------------------------------------------------------


# Slow: waits for a token to reach its real expiry, in whole seconds.
@pytest.mark.slow
def test_the_python_client_refreshes_through_its_token_function_and_keeps_its_connection(
    start_node: StartNode,
) -> None:
    node = start_node(**FAST)
    minted: list[str] = []

    def token() -> str:
        minted.append(node.token("alice", ttl_s=short_ttl_s() if not minted else 3600))
        return minted[-1]

    with ActorimClient(node.url, token) as client:
        session = client.session
        # Holds the first token and does not refresh: its close marks the first token's end.
        idle = connected(node, minted[0])
        assert idle.wait_closed().code == 4001
        client.ping(timeout=2)
        assert client.session == session, "the client reconnected instead of refreshing"
        assert len(minted) == 2


def test_the_python_client_connects_with_a_fresh_token_after_its_token_is_revoked(
    start_node: StartNode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="actorim.connection")
    node = start_node()
    minted: list[str] = []
    fresh = Event()

    def token() -> str:
        minted.append(node.token("alice", token_id=f"t{len(minted)}"))
        if len(minted) > 1:
            fresh.set()
        return minted[-1]

    with ActorimClient(node.url, token) as client:
        first = client.session
        node.node.revoke_token("t0")
        assert fresh.wait(timeout=5), "the token function was not asked for a fresh token"
        client.ping(timeout=5)
        assert client.session != first and client.state is LinkState.CONNECTED
        assert len(minted) == 2
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert not refused, f"the revoked token was tried again: {refused}"


# Slow: waits for a token to reach its real expiry, in whole seconds.
@pytest.mark.slow
def test_the_python_client_with_a_fixed_token_stops_when_the_token_expires(
    start_node: StartNode,
) -> None:
    node = start_node(**FAST)
    client = ActorimClient(node.url, node.token("alice", ttl_s=short_ttl_s()))
    client.connect()
    try:
        assert client.wait_for(LinkState.DISCONNECTED, timeout=5)
        with pytest.raises(AuthError, match="token expired"):
            client.ping(timeout=1)
    finally:
        client.close()


# Slow: waits for a token to reach its real expiry, in whole seconds.
@pytest.mark.slow
def test_the_python_client_forgets_a_room_its_refreshed_token_no_longer_allows(
    start_node: StartNode,
) -> None:
    # A notice shorter than the first token's life: the refresh comes after the joins.
    node = start_node(**{**FAST, "token_refresh_notice": 1.0})
    minted: list[str] = []
    left = Event()

    def token() -> str:
        if not minted:
            # exp 2 to 3 s away: the refresh is asked for at least a second after the joins.
            minted.append(node.token("alice", rooms=["lobby", "team:*"], ttl_s=3))
        else:
            minted.append(node.token("alice", rooms=["lobby"], ttl_s=3600))
        return minted[-1]

    with ActorimClient(node.url, token) as client:
        client.join("lobby")
        client.join("team:red")
        client.on("left", lambda event: left.set())
        assert left.wait(timeout=5), "no left event after the refresh"
        assert client.rooms == ("lobby",)
