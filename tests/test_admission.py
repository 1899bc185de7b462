"""A node under a reconnect storm degrades politely: what it cannot set up in time it sends away
at once with a hint (close 1013), and a set-up it could not finish is answered, never crashed.

Each test makes the node busy in one precise place (the router's mailbox held by a call that
waits for the test, or a small ``max_setups``), so that what a storm does to thousands of
connections shows on one or two. The Python client's side (it waits the hint and comes back)
is in tests/test_client.py, the browser's in tests/test_browser.py.
"""

from __future__ import annotations

import doctest
from collections.abc import Callable, Iterator

import pytest
from gevent.event import Event

import actorim.domain.admission
import actorim.protocol.restart
from actorim.domain.admission import MAX_HINT_S, RATE_WINDOW_S, SetupGate
from actorim.protocol.restart import restart_delay
from actorim.runtime import membership
from actorim.runtime.messages import Call
from actorim.web import endpoint
from tests.redis_server import RedisServer
from tests.support import Client, Closed, RunningNode, wait_until

StartNode = Callable[..., RunningNode]

BREAKER_OPEN = 2
"""The breaker's state number when open (``actorim_circuit_breaker_state``)."""


@pytest.fixture
def held() -> Iterator[Event]:
    """An event the router's held call waits for; set after the test so the node can stop."""
    event = Event()
    yield event
    event.set()


def hold_router(node: RunningNode, until: Event) -> None:
    """The router's next message is a call that waits for ``until``: every ask queued behind
    it waits too, as behind the mailbox of a router swamped by a storm."""
    node.node.ctx.refs.tell_router(Call(until.wait))


# -- the gate, fed events ------------------------------------------------------------------------


def test_the_docstrings_examples_hold() -> None:
    assert doctest.testmod(actorim.domain.admission).failed == 0
    assert doctest.testmod(actorim.protocol.restart).failed == 0


def no_jitter(low: float, high: float) -> float:
    return low


def test_refused_clients_get_successive_slots_at_the_measured_rate() -> None:
    gate = SetupGate(limit=2, rand=no_jitter)
    # 100 set-ups completed over the last second: 100 a second.
    for n in range(100):
        assert gate.admit(n, 9.0 + n / 100) is None
        gate.done(n, 9.0 + n / 100, connected=True)
    assert gate.admit("a", 10.0) is None and gate.admit("b", 10.0) is None
    # Two ahead of the first refused client, then one slot (10 ms) per client refused before.
    assert [gate.admit(f"r{n}", 10.0) for n in range(3)] == [0.02, 0.03, 0.04]
    # Later, the slots already handed out still count; the ones in the past do not.
    assert gate.admit("late", 10.01) == 0.04
    assert gate.admit("much later", 20.0) == pytest.approx(2 / gate.rate(20.0))


@pytest.mark.parametrize(
    ("ended", "connected", "admits_next"),
    [
        ("a", True, True),  # connected: counted toward the rate, and a slot is free
        ("a", False, True),  # closed before connect: a slot is free, no rate
        ("stranger", True, False),  # not setting up: nothing changes
    ],
)
def test_a_set_up_that_ends_frees_its_slot(ended: str, connected: bool, admits_next: bool) -> None:
    gate = SetupGate(limit=1, rand=no_jitter)
    assert gate.admit("a", 0.0) is None
    gate.done(ended, 0.1, connected=connected)
    assert (gate.admit("b", 0.2) is None) is admits_next


def test_a_set_up_never_reported_stops_counting_after_a_minute() -> None:
    gate = SetupGate(limit=1, rand=no_jitter)
    assert gate.admit("lost", 0.0) is None
    assert gate.admit("next", 59.0) is not None
    assert gate.admit("next", 61.0) is None


def test_a_node_whose_set_ups_take_long_admits_only_what_it_completes_in_the_target_time() -> None:
    gate = SetupGate(limit=100, rand=no_jitter)
    # 20 a second, each taking 4 s (waiting on a slow store): 40 is two seconds' worth.
    for n in range(100):
        gate.admit(n, n / 20)
        gate.done(n, n / 20 + 4, connected=True)
    now = 100 / 20 + 4
    assert gate.limit(now) == 40
    admitted = sum(gate.admit(f"new{n}", now) is None for n in range(100))
    assert admitted == 40
    # Quick set-ups again (the storm is over): the whole limit.
    for n in range(40):
        gate.done(f"new{n}", now + 0.1, connected=True)
    assert gate.limit(now + RATE_WINDOW_S + 1) == 100


def test_no_hint_is_longer_than_a_client_honours() -> None:
    gate = SetupGate(limit=1, rand=lambda low, high: high)
    gate.admit("a", 0.0)
    hints = [gate.admit(n, 0.0) for n in range(1000)]
    assert max(hints) <= 60.0
    assert hints[-1] == hints[-2] == pytest.approx(MAX_HINT_S * 1.25)


def test_hints_are_stretched_at_random_by_at_most_a_quarter() -> None:
    gate = SetupGate(limit=1, rand=lambda low, high: high)
    gate.admit("a", 0.0)
    first = gate.admit("b", 0.0)
    assert first == pytest.approx(1.25 * 1 / gate.rate(0.0))
    assert gate.rate(RATE_WINDOW_S) == gate.rate(0.0)


# -- what a swamped router does to a connect ----------------------------------------------------


def test_a_connect_the_swamped_router_cannot_register_in_time_is_answered_overloaded_and_leaves_nothing_behind(  # noqa: E501
    start_node: StartNode, monkeypatch: pytest.MonkeyPatch, held: Event
) -> None:
    monkeypatch.setattr(membership, "ROUTER_TIMEOUT_S", 0.2)
    node = start_node(max_connections_per_user=1)
    first = node.client()
    hold_router(node, held)
    error = first.error("connect", token=node.token("alice"))
    # Not "internal" (the connection's actor crashing on the router's timeout): a refusal the
    # client retries.
    assert error["code"] == "overloaded", error
    held.set()
    # The router registered the first connection late, when it got to it, and let it go right
    # after: a second device connects without replacing the first (max 1 per user), which
    # never connected; the first's connect, retried, then replaces the second.
    second = node.client("alice")
    assert second.ok("ping") == {}
    assert len(node.node.ctx.directory.links_of("alice")) == 1
    first.connect(node.token("alice"))
    assert second.wait_closed().code == 4009


def test_a_connect_whose_rooms_the_swamped_router_cannot_subscribe_is_sent_away_with_a_hint_and_resumes(  # noqa: E501
    start_node: StartNode, monkeypatch: pytest.MonkeyPatch, held: Event
) -> None:
    node = start_node()
    alice = node.client("alice")
    first = alice.ok("join", room="lobby")
    alice.close()
    bob = node.client("bob")
    bob.ok("join", room="lobby")
    sent = bob.ok("send", room="lobby", body="while alice was away")
    # Registering alice's next connection holds the router just behind it: connect is answered,
    # then the rooms cannot be subscribed in time.
    monkeypatch.setattr(membership, "ROUTER_TIMEOUT_S", 0.2)
    broker = node.node.ctx.broker
    monkeypatch.setattr(broker, "subscribe_user", lambda user: hold_router(node, held))
    again = node.client()
    data = again.connect(node.token("alice"))
    closed = again.wait_closed()
    assert (closed.code, closed.reason[:16]) == (1013, "try again later;"), closed
    assert restart_delay(closed.code, closed.reason) is not None
    held.set()
    monkeypatch.undo()
    back = node.client()
    since = {"lobby": first["seq"]}
    back.ok("connect", token=node.token("alice"), since=since, epoch=data["epoch"])
    msg = back.event("msg", room="lobby")
    assert (msg["mid"], msg["body"]) == (sent["mid"], "while alice was away")


# -- admission control ---------------------------------------------------------------------------


def refusal(node: RunningNode) -> Closed:
    """Open a WebSocket that the node refuses at once; the close it sent."""
    client = Client(node.url)
    node.clients.append(client)
    return client.wait_closed()


def test_past_max_setups_a_new_connection_is_refused_1013_with_a_hint_while_a_bystander_chats_on(
    start_node: StartNode,
) -> None:
    node = start_node(max_setups=3)
    alice = node.client("alice")
    bob = node.client("bob")
    alice.ok("join", room="lobby")
    bob.ok("join", room="lobby")
    assert alice.event("member", room="lobby")["user"] == "bob"
    # Three connections upgraded, none connected yet: the node is setting up as many as it may.
    waiting = [node.client() for _ in range(3)]
    hints = []
    for _ in range(5):
        closed = refusal(node)
        assert closed.code == 1013, closed
        hints.append(restart_delay(closed.code, closed.reason))
    # Each hint is a later slot than the one before it (apart from the jitter), all within the
    # longest a client honours.
    assert all(hint is not None and 0 < hint <= 60 for hint in hints), hints
    assert hints[-1] > hints[0], hints
    # The connections already set up chat on.
    sent = alice.ok("send", room="lobby", body="still here")
    assert bob.event("msg", room="lobby")["mid"] == sent["mid"]
    # A set-up that ends (connected, or closed) makes room for the next connection.
    waiting[0].connect(node.token("carol"))
    waiting[1].close()
    assert node.client("dave").ok("ping") == {}
    metrics = node.node.ctx.metrics.render().decode()
    assert "actorim_setups_refused_total 5.0" in metrics


def test_a_connection_whose_actor_does_not_start_frees_its_set_up_slot(
    start_node: StartNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = start_node(max_setups=1)
    monkeypatch.setattr(endpoint, "_start_actor", lambda ctx, link: False)
    assert refusal(node).reason == "server is not accepting connections"
    monkeypatch.undo()
    # Not sent away for a minute behind a set-up that ended: the next one is taken.
    assert node.client("alice").ok("ping") == {}


def test_a_connect_whose_rooms_the_swamped_store_cannot_read_in_time_is_answered_overloaded_and_resumes_them_on_retry(  # noqa: E501
    start_node: StartNode, monkeypatch: pytest.MonkeyPatch, held: Event
) -> None:
    node = start_node()
    alice = node.client()
    data = alice.connect(node.token("alice"))
    since = {"lobby": alice.ok("join", room="lobby")["seq"]}
    alice.close()
    bob = node.client("bob")
    bob.ok("join", room="lobby")
    sent = bob.ok("send", room="lobby", body="while alice was away")
    monkeypatch.setattr(membership, "STORE_TIMEOUT_S", 0.2)
    node.node.ctx.refs.tell_store(Call(held.wait))  # the store's queue is held behind this
    again = node.client()
    token = node.token("alice")
    error = again.error("connect", token=token, since=since, epoch=data["epoch"])
    # Not connected without its rooms, which would resume none of them and miss what they
    # get (in a 10,000-client storm, 43 clients that came back missed every later message of
    # their rooms): refused, to retry.
    assert error["code"] == "overloaded", error
    held.set()
    monkeypatch.undo()
    again.ok("connect", token=token, since=since, epoch=data["epoch"])
    msg = again.event("msg", room="lobby")
    assert (msg["mid"], msg["body"]) == (sent["mid"], "while alice was away")


def test_a_connect_that_resumes_its_rooms_while_the_store_is_away_is_answered_overloaded(
    start_node: StartNode, redis_server: Callable[..., RedisServer]
) -> None:
    # A node whose link to Redis is down (Redis gone, or the node's own loop too busy to hear
    # its heartbeats in a storm) cannot read a user's rooms. A client that resumes them would
    # resume none and miss what they get: it is refused, to retry; one that resumes nothing
    # still connects without them, as a join goes on without lasting membership.
    redis = redis_server()
    node = start_node(redis_url=f"redis://127.0.0.1:{redis.port}/0", redis_heartbeat=0.2)
    alice = node.client()
    data = alice.connect(node.token("alice"))
    since = {"lobby": alice.ok("join", room="lobby")["seq"]}
    alice.close()
    redis.kill()
    breaker = node.node.ctx.breakers["redis"]
    wait_until(lambda: breaker() == BREAKER_OPEN, what="the link's breaker to open")
    again = node.client()
    error = again.error("connect", token=node.token("alice"), since=since, epoch=data["epoch"])
    assert error["code"] == "overloaded", error
    fresh = node.client()
    assert fresh.connect(node.token("bob"))["conversations"] == []
