"""The Python client against real servers: in this process (fast, with fault injection to cut a
link) and in a child process (killed with SIGKILL and restarted, or frozen with SIGSTOP).

Waits are for events (a state change, a message arriving), never fixed sleeps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import gevent.server
import pytest

from actorim.breaker.machine import BreakerPolicy
from actorim.client import (
    DEFAULT_POLICY,
    AuthError,
    Client,
    ClientClosed,
    Counts,
    LinkLost,
    LinkState,
    NotConnected,
    Replaced,
    RequestTimeout,
    ServerError,
    StateChange,
    UnreadTracker,
)
from actorim.domain.auth import TokenAuthority
from actorim.protocol.restart import restart_delay
from actorim.runtime.store import StoreActor
from supervisors import Backoff
from tests.support import SERVER_START_S, RunningNode, ServerProcess, closed_port

CONNECTING, CONNECTED = LinkState.CONNECTING, LinkState.CONNECTED
DISCONNECTED, CIRCUIT_OPEN = LinkState.DISCONNECTED, LinkState.CIRCUIT_OPEN
WAIT = 10.0  # seconds; a generous bound for what takes a fraction of one
SECRET = "client-test-secret-0123456789abcdef0123"

# Reconnects start 0.3 s after a link is lost (so that a test can act while a client is away)
# and come every 0.3-0.35 s after that.
FAST = BreakerPolicy(
    failure_threshold=5,
    cooldown=0.3,
    cooldown_cap=0.3,
    backoff=Backoff(floor=0.3, cap=0.05),
    heartbeat_interval=2.0,
    heartbeat_timeout=1.0,
)


class Seen:
    """A callback that records what it is given and can be waited on."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._changed = gevent.event.Event()

    def __call__(self, item: Any) -> None:
        self.items.append(item)
        self._changed.set()

    def wait_for(self, predicate: Callable[[list[Any]], bool], what: str = "") -> list[Any]:
        with gevent.Timeout(WAIT, AssertionError(f"still waiting for {what}; got {self.items}")):
            while not predicate(self.items):
                self._changed.clear()
                self._changed.wait()
        return self.items

    def wait_count(self, n: int) -> list[Any]:
        return self.wait_for(lambda items: len(items) >= n, f"{n} items")

    def wait_state(self, state: LinkState, *, count: int = 1) -> list[StateChange]:
        return self.wait_for(
            lambda items: sum(c.state is state for c in items) >= count, f"{count} x {state}"
        )

    @property
    def states(self) -> list[LinkState]:
        return [change.state for change in self.items]


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for client in made:
        client.close()


@pytest.fixture
def connected(server: RunningNode, clients: list[Client]) -> Callable[..., Client]:
    def make(user: str, **options: Any) -> Client:
        options.setdefault("policy", FAST)
        client = Client(server.url, server.token(user), **options)
        clients.append(client)
        client.connect(timeout=WAIT)
        return client

    return make


def drop_link(client: Client) -> None:
    """Make the server close this client's connection (1011): its connection actor crashes
    more than 3 times in 10 s."""
    for _ in range(4):
        with contextlib.suppress(ServerError, LinkLost):
            client.request("debug.crash", {"what": "connection"})


# -- the API on a steady link ----------------------------------------------------------------


def test_messages_reach_callbacks_and_the_event_iterator_in_order(
    connected: Callable[..., Client],
) -> None:
    alice, bob = connected("alice"), connected("bob")
    joined = alice.join("lobby")
    assert joined["members"] == ["alice"] and joined["seq"] == 0
    assert sorted(bob.join("lobby")["members"]) == ["alice", "bob"]
    got = Seen()
    bob.on("msg", got)
    sent = [alice.send(room="lobby", body=f"hi {i}") for i in range(3)]
    assert [s.seq for s in sent] == [1, 2, 3]
    assert len({s.mid for s in sent}) == 3 and all(len(s.cid) == 32 for s in sent)
    got.wait_count(3)
    assert [(m["from"], m["body"], m["seq"]) for m in got.items] == [
        ("alice", f"hi {i}", i + 1) for i in range(3)
    ]
    bob.ping(timeout=WAIT)  # a barrier: whatever came before its reply is buffered by now
    events = list(bob.events(timeout=0))
    assert [e["t"] for e in events] == ["msg", "msg", "msg"]
    assert [e["mid"] for e in events] == [s.mid for s in sent]
    member = next(alice.events(timeout=WAIT))
    assert member == {"t": "member", "room": "lobby", "user": "bob", "state": "joined"}


def test_a_send_with_a_known_cid_returns_the_original_message(
    connected: Callable[..., Client],
) -> None:
    alice = connected("alice")
    alice.join("r")
    first = alice.send(room="r", body="once", cid="my-id-1")
    again = alice.send(room="r", body="once", cid="my-id-1")
    assert again == first
    assert [m["body"] for m in alice.history("r")["messages"]] == ["once"]


def test_direct_messages_are_acknowledged_automatically_and_read_on_request(
    connected: Callable[..., Client],
) -> None:
    alice, bob = connected("alice"), connected("bob")
    receipts = Seen()
    alice.on("receipt", receipts)
    got = Seen()
    bob.on("msg", got)
    sent = alice.send(to="bob", body="psst")
    assert got.wait_count(1)[0]["body"] == "psst"
    receipts.wait_count(1)
    delivered = {"t": "receipt", "mid": sent.mid, "by": "bob", "status": "delivered"}
    assert receipts.items[0] == delivered
    bob.read(sent.mid)
    assert receipts.wait_count(2)[1]["status"] == "read"


def test_history_presence_and_watch(connected: Callable[..., Client]) -> None:
    alice = connected("alice")
    alice.join("h")
    for i in range(5):
        alice.send(room="h", body=i)
    page = alice.history("h", limit=2)
    assert [m["body"] for m in page["messages"]] == [3, 4] and page["more"] is True
    assert [m["seq"] for m in alice.history("h", after=1, before=4)["messages"]] == [2, 3]
    assert alice.presence(["alice", "carol"]) == {"alice": "online", "carol": "offline"}
    presence = Seen()
    alice.on("presence", presence)
    alice.watch(["carol"])
    connected("carol")
    assert presence.wait_count(1)[0]["user"] == "carol"
    assert presence.items[0]["status"] == "online"
    alice.send(to="carol", body="hello")
    assert [m["body"] for m in alice.history(with_user="carol")["messages"]] == ["hello"]
    # A round trip is measured, and on loopback it takes far less than the call's timeout.
    assert 0 < alice.ping(timeout=WAIT) < WAIT
    with pytest.raises(ServerError, match="forbidden") as refused:
        alice.send(room="not-joined", body="x")
    assert refused.value.code == "forbidden"
    with pytest.raises(ValueError, match="exactly one"):
        alice.send(room="h", to="bob", body="x")


def test_the_python_client_surfaces_typing_and_sends_it(
    connected: Callable[..., Client],
) -> None:
    alice, bob = connected("alice"), connected("bob")
    alice.join("t")
    bob.join("t")
    typing = Seen()
    bob.on("typing", typing)
    alice.typing(room="t")
    assert typing.wait_count(1)[0] == {"t": "typing", "room": "t", "user": "alice", "ttl_ms": 5000}
    alice.typing(to="bob")
    assert typing.wait_count(2)[1] == {"t": "typing", "to": "bob", "user": "alice", "ttl_ms": 5000}
    bob.ping(timeout=WAIT)  # a barrier: both are in the event buffer too
    assert [e["t"] for e in bob.events(timeout=0) if e["t"] == "typing"] == ["typing", "typing"]
    with pytest.raises(ServerError, match="forbidden"):
        alice.typing(room="not-joined")
    with pytest.raises(ValueError, match="exactly one"):
        alice.typing(room="t", to="bob")


def test_close_ends_the_iterator_and_refuses_further_commands(
    connected: Callable[..., Client],
) -> None:
    alice = connected("alice")
    states = Seen()
    alice.on_state(states)
    alice.close()
    assert alice.state is DISCONNECTED
    assert states.wait_state(DISCONNECTED)[-1].previous is CONNECTED
    assert list(alice.events(timeout=WAIT)) == []
    with pytest.raises(ClientClosed, match="closed"):
        alice.send(room="r", body="x")
    with pytest.raises(ClientClosed):
        alice.connect()


# -- refusals: a busy server is waited for, a final refusal is raised at once ----------------


@pytest.mark.slow
def test_a_send_refused_as_overloaded_is_retried_until_the_callers_timeout(
    connected: Callable[..., Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    # No jitter: each retry comes after the back-off's floor (0.2 s), so the six take about
    # 1.2 s of the caller's 40 s instead of up to 7 s; the jitter has tests of its own.
    alice = connected("alice", rand=lambda low, _high: low)
    alice.join("r")
    refusals = 6  # more than the three retries the client used to give up after
    refused: list[int] = []

    def refusing(self: StoreActor) -> bool:
        # The store's way of saying its Redis link is down: every append answers overloaded.
        if len(refused) < refusals:
            refused.append(1)
            return True
        return False

    monkeypatch.setattr(StoreActor, "_link_refusing", refusing)
    sent = alice.send(room="r", body="after the pause", timeout=40)
    assert len(refused) == refusals
    assert sent.seq == 1
    assert [m["body"] for m in alice.history("r")["messages"]] == ["after the pause"]


@pytest.mark.slow  # waits out a real deadline
def test_an_overloaded_server_is_given_no_more_than_the_callers_timeout(
    connected: Callable[..., Client],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    alice = connected("alice")
    alice.join("r")
    monkeypatch.setattr(StoreActor, "_link_refusing", lambda self: True)
    caplog.set_level(logging.INFO, logger="actorim.client")
    started = time.monotonic()
    # The last refusal, or, when a retry's answer is still on its way at the deadline (a slow
    # machine), a timeout: the retry may have been stored, which only a resend can tell.
    with pytest.raises((ServerError, RequestTimeout)) as refused:
        alice.send(room="r", body="x", timeout=1.0)
    assert time.monotonic() - started <= 1.0 + WAIT / 2, "the timeout bounds the retries"
    retried = [r for r in caplog.records if "answered overloaded; trying again" in r.getMessage()]
    assert retried, "an overloaded answer was not retried"
    if isinstance(refused.value, ServerError):
        assert refused.value.code == "overloaded"


def test_a_client_replaced_by_a_newer_connection_of_its_user_stops_without_reconnecting(
    start_node: Callable[..., RunningNode], clients: list[Client]
) -> None:
    server = start_node(max_connections_per_user=1)
    first = Client(server.url, server.token("alice"), policy=FAST)
    second = Client(server.url, server.token("alice"), policy=FAST)
    clients.extend([first, second])
    first.connect(timeout=WAIT)
    states = Seen()
    first.on_state(states)
    second.connect(timeout=WAIT)
    states.wait_state(DISCONNECTED)
    assert CIRCUIT_OPEN not in states.states and CONNECTING not in states.states
    with pytest.raises(Replaced, match="at most 1 at once") as replaced:
        first.ping()
    assert replaced.value.code == "replaced"
    # Had the replaced client come back, it would have replaced the second in turn.
    assert 0 < second.ping(timeout=WAIT) < WAIT
    assert second.state is CONNECTED and first.state is DISCONNECTED


def test_a_refused_fixed_token_disconnects_for_good_with_a_clear_error(
    server: RunningNode, clients: list[Client]
) -> None:
    client = Client(server.url, "not-a-token", policy=FAST)
    clients.append(client)
    with pytest.raises(AuthError, match="refused the token") as refused:
        client.connect(timeout=WAIT)
    assert refused.value.code == "unauthenticated"
    assert client.state is DISCONNECTED
    with pytest.raises(AuthError):
        client.ping()


def test_a_refused_token_is_renewed_from_the_callable_without_counting_a_failure(
    server: RunningNode, clients: list[Client]
) -> None:
    handed = iter(["expired-token", server.token("alice")])
    asked: list[int] = []

    def token() -> str:
        asked.append(1)
        return next(handed)

    client = Client(server.url, token, policy=FAST)
    clients.append(client)
    states = Seen()
    client.on_state(states)
    assert client.connect(timeout=WAIT)["user"] == "alice"
    states.wait_state(CONNECTED)
    assert states.states == [CONNECTING, CONNECTED]
    assert len(asked) == 2


# -- waiting for the link --------------------------------------------------------------------


def test_commands_wait_for_the_link_up_to_their_timeout_or_fail_at_once_if_told(
    clients: list[Client],
) -> None:
    with closed_port() as port:  # bound by the test, so nothing listens there
        url = f"ws://127.0.0.1:{port}/ws"
        patient = Client(url, "token", policy=FAST)
        impatient = Client(url, "token", policy=FAST, wait_for_reconnect=False)
        clients.extend([patient, impatient])
        with pytest.raises(NotConnected, match="connect"):
            patient.ping()
        with pytest.raises(RequestTimeout, match="keeps trying"):
            patient.connect(timeout=0.1)
        with pytest.raises(RequestTimeout, match="resend with cid='c-1'") as late:
            patient.send(room="r", body="x", cid="c-1", timeout=0.2)
        assert late.value.cid == "c-1"
        with pytest.raises(RequestTimeout):
            impatient.connect(timeout=0.05)
        with pytest.raises(NotConnected, match="wait_for_reconnect"):
            impatient.send(room="r", body="x")


@pytest.mark.slow  # waits out a real deadline
def test_the_circuit_opens_after_the_configured_failures_and_tries_once_after_the_cool_down(
    clients: list[Client],
) -> None:
    attempts: list[float] = []

    def hang_up(sock: Any, address: Any) -> None:
        attempts.append(time.monotonic())
        sock.close()

    listener = gevent.server.StreamServer(("127.0.0.1", 0), hang_up)
    listener.start()
    try:
        policy = BreakerPolicy(
            failure_threshold=3,
            cooldown=0.3,
            cooldown_cap=0.3,
            backoff=Backoff(floor=0.02, cap=0.02),
            heartbeat_interval=1.0,
            heartbeat_timeout=0.5,
        )
        client = Client(f"ws://127.0.0.1:{listener.server_port}/ws", "token", policy=policy)
        clients.append(client)
        states = Seen()
        at_change: list[int] = []
        client.on_state(lambda change: (at_change.append(len(attempts)), states(change)))
        with pytest.raises(RequestTimeout):
            client.connect(timeout=0.01)
        states.wait_state(CIRCUIT_OPEN, count=2)
        assert states.states[:4] == [CONNECTING, CIRCUIT_OPEN, CONNECTING, CIRCUIT_OPEN]
        # Three attempts open it; after the cool-down one trial goes out, and fails.
        assert (at_change[1], at_change[3]) == (3, 4)
        assert attempts[3] - attempts[2] >= policy.cooldown
    finally:
        listener.stop()


# -- a link lost and restored ---------------------------------------------------------------


def test_a_client_whose_link_drops_rejoins_and_gets_what_it_missed_once_in_order(
    connected: Callable[..., Client],
) -> None:
    alice, bob = connected("alice"), connected("bob")
    alice.join("r")
    bob.join("r")
    got, states, rejoined = Seen(), Seen(), Seen()
    bob.on("msg", got)
    bob.on("rejoined", rejoined)
    bob.on_state(states)
    alice.send(room="r", body="before 1")
    alice.send(room="r", body="before 2")
    got.wait_count(2)
    drop_link(bob)
    states.wait_state(CONNECTING)
    alice.send(room="r", body="while away 1")  # bob's first attempt is 0.3 s away
    alice.send(room="r", body="while away 2")
    states.wait_state(CONNECTED)
    assert rejoined.wait_count(1)[0]["recovered"] is True
    alice.send(room="r", body="after")
    got.wait_count(5)
    assert [m["body"] for m in got.items] == [
        "before 1",
        "before 2",
        "while away 1",
        "while away 2",
        "after",
    ]
    assert [m["seq"] for m in got.items] == [1, 2, 3, 4, 5]
    assert bob.last_seq("r") == 5
    assert bob.rooms == ("r",)


def test_sends_made_while_the_link_is_down_go_out_once_when_it_is_back(
    connected: Callable[..., Client],
) -> None:
    alice, bob = connected("alice"), connected("bob")
    alice.join("r")
    bob.join("r")
    got, states = Seen(), Seen()
    bob.on("msg", got)
    alice.on_state(states)
    drop_link(alice)
    states.wait_state(CONNECTING)
    assert alice.state is CONNECTING
    sent = [alice.send(room="r", body=i) for i in range(3)]  # each waits for the link
    assert alice.state is CONNECTED
    assert [s.seq for s in sent] == [1, 2, 3]
    got.wait_count(3)
    alice.send(room="r", body="last")
    assert [m["body"] for m in got.wait_count(4)] == [0, 1, 2, "last"]


def test_a_room_left_while_the_link_is_down_is_not_joined_again(
    connected: Callable[..., Client],
) -> None:
    alice, bob = connected("alice"), connected("bob")
    alice.join("r")
    bob.join("r")
    bob.join("s")
    states = Seen()
    bob.on_state(states)
    drop_link(bob)
    states.wait_state(CONNECTING)
    bob.leave("r")  # returns at once
    assert bob.rooms == ("s",)
    states.wait_state(CONNECTED)
    assert alice.join("r")["members"] == ["alice"]
    assert sorted(alice.join("s")["members"]) == ["alice", "bob"]


# -- a real server process: kill -9 and restart, SIGSTOP and SIGCONT --------------------------


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path / "data", secret=SECRET)
    yield process
    process.stop()


@pytest.mark.process
def test_a_stream_survives_kill_9_of_the_server_every_message_once_in_order(
    server_process: ServerProcess, clients: list[Client]
) -> None:
    tokens = TokenAuthority(SECRET)
    server_process.start()
    restart = BreakerPolicy(
        failure_threshold=50,
        cooldown=0.2,
        cooldown_cap=0.2,
        backoff=Backoff(floor=0.05, cap=0.1),
        heartbeat_interval=2.0,
        heartbeat_timeout=1.0,
    )
    receiver = Client(server_process.url, lambda: tokens.mint("reader"), policy=restart)
    sender = Client(server_process.url, lambda: tokens.mint("writer"), policy=restart)
    clients.extend([receiver, sender])
    receiver.connect(timeout=WAIT)
    receiver.join("stream")
    sender.connect(timeout=WAIT)
    sender.join("stream")
    got, sender_states = Seen(), Seen()
    receiver.on("msg", got)
    sender.on_state(sender_states)
    replies = Seen()

    def stream() -> None:
        # A send waits out the restart, which a busy machine may make as long as a server's
        # start may take (tests/support.py): the timeout only catches a hang.
        for i in range(200):
            replies(sender.send(room="stream", body=i, timeout=SERVER_START_S + WAIT))

    writer = gevent.spawn(stream)
    replies.wait_count(50)
    server_process.kill()
    killed_after = len(replies.items)
    server_process.start()
    writer.join(timeout=SERVER_START_S + 2 * WAIT)
    assert writer.successful(), writer.exception
    assert killed_after < 200, "the stream ended before the kill; it proves nothing"
    assert CONNECTING in sender_states.states, "the sender never noticed the kill"
    sender.send(room="stream", body="end")
    got.wait_for(lambda items: bool(items) and items[-1]["body"] == "end", "the end marker")
    bodies = [m["body"] for m in got.items]
    assert bodies == [*range(200), "end"]
    seqs = [m["seq"] for m in got.items]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert [r.mid for r in replies.items] == [m["mid"] for m in got.items[:200]]
    stored: list[dict[str, Any]] = []
    more = True
    while more:
        page = receiver.history("stream", after=len(stored), limit=100)
        stored.extend(page["messages"])
        more = page["more"]
    assert [m["body"] for m in stored] == bodies, "every message was stored once"
    assert [m["seq"] for m in stored] == list(range(1, 202))


@pytest.mark.process
def test_a_frozen_server_is_noticed_by_heartbeats_and_the_link_comes_back_after_it_thaws(
    server_process: ServerProcess, clients: list[Client]
) -> None:
    tokens = TokenAuthority(SECRET)
    server_process.start()
    policy = BreakerPolicy(
        failure_threshold=2,
        cooldown=0.3,
        cooldown_cap=0.3,
        backoff=Backoff(floor=0.05, cap=0.05),
        heartbeat_interval=0.3,
        heartbeat_timeout=0.2,
        missed_heartbeats=2,
    )
    client = Client(server_process.url, lambda: tokens.mint("alice"), policy=policy)
    clients.append(client)
    states = Seen()
    client.on_state(states)
    client.connect(timeout=WAIT)
    client.join("r")
    server_process.pause()  # its TCP connections stay open; nothing answers
    frozen_at = time.monotonic()
    states.wait_state(CIRCUIT_OPEN)
    noticed = time.monotonic() - frozen_at
    assert noticed <= policy.detection_time + 1.0, f"noticed after {noticed:.2f}s"
    server_process.resume()
    states.wait_state(CONNECTED, count=2)
    assert client.send(room="r", body="back").seq == 1


def test_clients_a_busy_server_sends_away_come_back_after_its_hint_and_all_connect_and_join(
    start_node: Callable[..., RunningNode], clients: list[Client]
) -> None:
    """A burst past the server's ``max_setups``: the refused clients (1013 with a hint) wait
    it and come back; the refusals do not open their circuits (any other failure would: a
    threshold of one), and everyone gets in while a bystander chats on."""
    seed = random.randrange(2**32)
    print(f"seed={seed}")
    rand = random.Random(seed)
    node = start_node(max_setups=2)
    bystander = Client(node.url, node.token("bystander"), policy=FAST)
    clients.append(bystander)
    bystander.connect(timeout=WAIT)
    bystander.join("lobby")
    policy = dataclasses.replace(FAST, failure_threshold=1, restart_grace=30.0)
    burst, seen = [], []
    for n in range(10):
        client = Client(node.url, node.token(f"u{n}"), policy=policy, rand=rand.uniform)
        states = Seen()
        client.on_state(states)
        clients.append(client)
        burst.append(client)
        seen.append(states)
    connecting = [gevent.spawn(client.connect, timeout=WAIT) for client in burst]
    assert bystander.send(room="lobby", body="during the burst").seq == 1
    gevent.joinall(connecting, raise_error=True)
    refused = node.node.ctx.metrics.setups_refused._value.get()
    assert refused > 0, "the burst was not refused: nothing was tested"
    for client, states in zip(burst, seen, strict=True):
        assert CIRCUIT_OPEN not in states.states, "; ".join(c.reason for c in states.items)
        client.join("lobby")
    assert bystander.send(room="lobby", body="after the burst").seq == 2
    for client in burst:
        assert client.history("lobby")["messages"][-1]["body"] == "after the burst"


@pytest.mark.process
def test_a_restart_with_a_drain_waits_the_hinted_delay_and_recovers_every_message_once(
    server_process: ServerProcess, clients: list[Client]
) -> None:
    seed = random.randrange(2**32)
    print(f"seed={seed}")
    tokens = TokenAuthority(SECRET)
    server_process.args = ("--drain-seconds", "0.2", "--drain-reconnect-spread", "3")
    server_process.start()
    # Two failures in a row would open the circuit: the close 1012 and one refused attempt,
    # which a restart may cost. Only the restart grace keeps it closed.
    policy = dataclasses.replace(DEFAULT_POLICY, failure_threshold=2)
    client = Client(
        server_process.url,
        lambda: tokens.mint("alice"),
        policy=policy,
        rand=random.Random(seed).uniform,
    )
    clients.append(client)
    states, rejoined, messages = Seen(), Seen(), Seen()
    client.on_state(states)
    client.on("rejoined", rejoined)
    client.on("msg", messages)
    client.connect(timeout=WAIT)
    client.join("r")
    assert client.send(room="r", body="before").seq == 1
    server_process.terminate()  # SIGTERM: the server drains (close 1012 with a hint) and exits
    [lost] = states.wait_state(CONNECTING, count=2)[-1:]
    hint = restart_delay(1012, lost.reason)
    assert "1012" in lost.reason and hint is not None, lost.reason
    # The schedule the client recorded: the hinted delay, then its own jitter (at most one
    # back-off step: floor + random(0, floor)).
    assert lost.retry_in is not None
    assert hint <= lost.retry_in <= hint + 2 * policy.backoff.floor, (hint, lost.retry_in)
    server_process.start()
    bob = Client(server_process.url, tokens.mint("bob"))
    clients.append(bob)
    bob.connect(timeout=WAIT)
    bob.join("r")
    sent = [bob.send(room="r", body=f"meanwhile {n}").seq for n in range(5)]
    assert sent == [2, 3, 4, 5, 6]
    states.wait_state(CONNECTED, count=2)
    assert CIRCUIT_OPEN not in states.states, states.items
    [event] = rejoined.wait_count(1)
    assert (event["room"], event["recovered"]) == ("r", True)
    # Bob's five, once each and in order (the client's own sends come back as replies); a
    # ping after them is the barrier: nothing more may arrive before its answer.
    messages.wait_count(5)
    client.ping()
    assert [(m["seq"], m["body"]) for m in messages.items] == [
        (n + 2, f"meanwhile {n}") for n in range(5)
    ]
    assert client.send(room="r", body="after").seq == 7


# -- edits and deletes -------------------------------------------------------------------------


def test_edit_and_delete_return_the_change_and_reach_other_clients_as_events(
    connected: Callable[..., Client],
) -> None:
    alice, bob = connected("alice"), connected("bob")
    alice.join("lobby")
    bob.join("lobby")
    changes = Seen()
    bob.on("edit", changes)
    bob.on("delete", changes)
    sent = alice.send(room="lobby", body="helo")
    edited = alice.edit(sent.mid, "hello")
    assert (edited.mid, edited.seq, len(edited.cid)) == (sent.mid, 2, 32)
    assert alice.edit(sent.mid, "hello", cid=edited.cid) == edited  # a resend: the same edit
    deleted = alice.delete(sent.mid)
    assert (deleted.mid, deleted.seq) == (sent.mid, 3)
    changes.wait_count(2)
    assert [(c["t"], c["seq"], c.get("body")) for c in changes.items] == [
        ("edit", 2, "hello"),
        ("delete", 3, None),
    ]
    assert bob.last_seq("lobby") == 3
    with pytest.raises(ServerError) as refused:
        bob.delete(sent.mid)
    assert refused.value.code == "forbidden"  # not bob's
    with pytest.raises(ServerError) as refused:
        alice.delete(sent.mid)
    assert refused.value.code == "not_found"  # deleted already
    assert alice.delete(sent.mid, cid=deleted.cid) == deleted  # a resend: the same delete
    [tomb] = bob.history("lobby")["messages"]
    assert tomb["deleted"] is True and "body" not in tomb


def test_a_client_whose_link_drops_gets_the_edits_and_deletes_it_missed_once_in_order(
    connected: Callable[..., Client],
) -> None:
    alice, bob = connected("alice"), connected("bob")
    alice.join("r")
    bob.join("r")
    got, states, rejoined = Seen(), Seen(), Seen()
    for t in ("msg", "edit", "delete"):
        bob.on(t, got)
    bob.on("rejoined", rejoined)
    bob.on_state(states)
    one = alice.send(room="r", body="one")
    got.wait_count(1)
    drop_link(bob)
    states.wait_state(CONNECTING)
    alice.edit(one.mid, "ONE")  # bob's first attempt is 0.3 s away
    two = alice.send(room="r", body="two")
    alice.delete(two.mid)
    states.wait_state(CONNECTED)
    assert rejoined.wait_count(1)[0]["recovered"] is True
    alice.send(room="r", body="after")
    got.wait_count(5)
    assert [(e["t"], e["seq"]) for e in got.items] == [
        ("msg", 1),
        ("edit", 2),
        ("msg", 3),
        ("delete", 4),
        ("msg", 5),
    ]
    assert got.items[2]["deleted"] is True  # replayed as it is now
    assert bob.last_seq("r") == 5


# -- reactions ----------------------------------------------------------------------------------


def test_react_returns_the_reaction_and_reaches_other_clients_as_events(
    connected: Callable[..., Client],
) -> None:
    alice, bob = connected("alice"), connected("bob")
    alice.join("lobby")
    bob.join("lobby")
    reactions = Seen()
    alice.on("reaction", reactions)
    sent = alice.send(room="lobby", body="lunch?")
    on = bob.react(sent.mid, "👍")
    assert (on.mid, on.seq, len(on.cid)) == (sent.mid, 2, 32)
    assert bob.react(sent.mid, "👍", cid=on.cid) == on  # a resend: the same reaction
    again = bob.react(sent.mid, "👍")  # a second reaction changes nothing
    assert (again.mid, again.seq) == (sent.mid, 2)
    off = bob.react(sent.mid, "👍", on=False)
    assert off.seq == 3
    reactions.wait_count(2)
    assert [(e["seq"], e["key"], e["user"], e["on"]) for e in reactions.items] == [
        (2, "👍", "bob", True),
        (3, "👍", "bob", False),
    ]
    assert alice.last_seq("lobby") == 3
    alice.delete(sent.mid)
    with pytest.raises(ServerError) as refused:
        bob.react(sent.mid, "👍")
    assert refused.value.code == "not_found"  # deleted


def test_read_markers_clear_the_count_of_the_users_other_client_and_its_tracker(
    connected: Callable[..., Client],
) -> None:
    phone, desktop, bob = connected("ann"), connected("ann"), connected("bob")
    bob.join("lobby")
    desktop.join("lobby")
    tracker = UnreadTracker("ann")
    markers, messages = Seen(), Seen()
    desktop.on("*", tracker.handle)
    desktop.on("marker", markers)
    desktop.on("msg", messages)
    bob.send(room="lobby", body="one")
    tracker.update(desktop.unread(["lobby"], with_users=["bob"]))
    assert tracker.counts(room="lobby") == Counts(marker=0, unread=1, mentions=0)
    last = bob.send(room="lobby", body="two", mentions=["ann"])
    bob.send(room="lobby", body="three @ann")
    messages.wait_count(3)
    assert [m.get("mentions") for m in messages.items] == [None, ["ann"], ["ann"]]
    assert tracker.counts(room="lobby") == Counts(marker=0, unread=3, mentions=2)
    assert phone.read(room="lobby", seq=last.seq) == {
        "room": "lobby",
        "marker": 2,
        "unread": 1,
        "mentions": 1,
    }
    markers.wait_count(1)
    assert tracker.counts(room="lobby") == Counts(marker=2, unread=1, mentions=1)
    bob.send(to="ann", body="psst")
    assert phone.unread(with_users=["bob"]) == [
        {"with": "bob", "seq": 1, "marker": 0, "unread": 1, "mentions": 0}
    ]
    assert phone.read(with_user="bob", seq=1)["unread"] == 0  # type: ignore[index]
    markers.wait_count(2)
    assert tracker.counts(with_user="bob") == Counts(marker=1, unread=0, mentions=0)
    with pytest.raises(ValueError, match="room= or with_user="):
        phone.read(room="lobby")


def test_a_client_whose_link_drops_gets_the_reactions_it_missed_once_in_order(
    connected: Callable[..., Client],
) -> None:
    alice, bob = connected("alice"), connected("bob")
    alice.join("r")
    bob.join("r")
    got, states, rejoined = Seen(), Seen(), Seen()
    for t in ("msg", "reaction"):
        bob.on(t, got)
    bob.on("rejoined", rejoined)
    bob.on_state(states)
    one = alice.send(room="r", body="one")
    got.wait_count(1)
    drop_link(bob)
    states.wait_state(CONNECTING)
    alice.react(one.mid, "🎉")  # bob's first attempt is 0.3 s away
    alice.react(one.mid, "🎉")  # no change, no event
    states.wait_state(CONNECTED)
    assert rejoined.wait_count(1)[0]["recovered"] is True
    alice.send(room="r", body="after")
    got.wait_count(3)
    assert [(e["t"], e["seq"]) for e in got.items] == [("msg", 1), ("reaction", 2), ("msg", 3)]
    [first, _] = bob.history("r")["messages"]
    assert first["reactions"] == [{"key": "🎉", "count": 1, "me": False}]


# -- replies and threads ------------------------------------------------------------------------


def test_replies_name_their_thread_and_thread_pages_them_as_history_does(
    connected: Callable[..., Client],
) -> None:
    alice, bob = connected("alice"), connected("bob")
    alice.join("lobby")
    bob.join("lobby")
    got = Seen()
    alice.on("msg", got)
    root = alice.send(room="lobby", body="lunch?")
    assert root.thread is None
    yes = bob.send(room="lobby", body="yes", reply_to=root.mid)
    where = bob.send(room="lobby", body="where?", reply_to=yes.mid)
    assert (yes.thread, where.thread, where.seq) == (root.mid, root.mid, 3)
    assert bob.send(room="lobby", body="yes", reply_to=root.mid, cid=yes.cid) == yes
    got.wait_count(2)
    assert [(e["reply_to"], e["thread"]) for e in got.items] == [
        (root.mid, root.mid),
        (yes.mid, root.mid),
    ]
    page = alice.thread(root.mid, limit=1)
    assert (page["root"]["thread"]["count"], page["more"]) == (2, True)
    assert [m["body"] for m in page["messages"]] == ["where?"]
    older = alice.thread(root.mid, before=page["messages"][0]["seq"])
    assert ([m["body"] for m in older["messages"]], older["more"]) == (["yes"], False)
    assert alice.history("lobby")["messages"][0]["thread"]["users"] == ["bob"]
    alice.delete(root.mid)
    with pytest.raises(ServerError) as refused:
        bob.send(room="lobby", body="too late", reply_to=root.mid)
    assert refused.value.code == "not_found"
    with pytest.raises(ServerError) as refused:
        bob.thread(yes.mid)  # a reply is no root
    assert refused.value.code == "not_found"
