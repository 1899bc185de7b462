"""Gaps are repaired without flooding anyone, and what is read for a repair stays bounded.

A room actor that missed messages (Redis was away, or the actor restarted) replays at most the
replay bounds to its members; beyond them it tells them the room skipped from one seq to
another, and the clients page ``history`` over it. (That a ``join since`` reads the store only up
to its byte bound is in tests/test_store_conformance.py.) The Python client accepts the largest
``history`` page the server may send.

The cluster tests cut one node off from Redis with an ACL of its own (as tests/test_cluster.py
does): its rooms miss what goes by and repair it once they hear again.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import gevent
import gevent.event
import pytest

from actorim.client import Client as AppClient
from actorim.client import LinkState
from actorim.client._state import GAP_PAGE, Session
from actorim.config import Config
from actorim.protocol.codec import Encoding, encode
from actorim.tools.chat import Chat
from tests.attack import AttackServer, Bystander
from tests.redis_server import RedisServer
from tests.support import Client, RunningNode, queued, wait_until
from tests.test_cluster import (
    RECOVERY_TIMEOUT,
    TOKENS,
    NodeProcess,
    Spawner,
    connect,
    redis_url_of,
)

WAIT = 10.0  # seconds; a generous bound for what takes a fraction of one

# Under the 64 KiB frame limit with the send command's fields, and long enough that a 1 MiB page
# holds only a handful.
LARGE_BODY = 60_000


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawner]:
    """Cluster nodes as processes (tests/test_cluster.py), killed after the test."""
    spawner = Spawner(tmp_path)
    yield spawner
    spawner.kill_all()


def busy(start_node: Callable[..., RunningNode], **settings: Any) -> RunningNode:
    # Senders pipeline large messages: the per-connection rate limit is not under test.
    return start_node(rate=100_000.0, burst=100_000.0, **settings)


def send_to_room(sender: Client, room: str, bodies: list[Any]) -> list[int]:
    """Send ``bodies`` to ``room``, pipelined; their seqs, in order."""
    ids = [next(sender.ids) for _ in bodies]
    for command_id, body in zip(ids, bodies, strict=True):
        sender.send_obj({"t": "send", "id": command_id, "room": room, "body": body})
    return [sender.reply_to(command_id, timeout=30)["data"]["seq"] for command_id in ids]


# -- the Python client's frame limit -----------------------------------------------------------


@pytest.mark.parametrize("json_frames", [False, True], ids=["msgpack", "json"])
def test_the_python_client_reads_a_history_page_of_the_largest_size(
    start_node: Callable[..., RunningNode], json_frames: bool
) -> None:
    node = busy(start_node)
    cap = Config().history_page_bytes
    encoding = Encoding.JSON if json_frames else Encoding.MSGPACK
    alice = node.client("alice", json_frames=json_frames)
    alice.ok("join", room="r")
    # What one message adds to a page beyond its body, measured on a message of the same shape
    # (its seq as long as theirs in JSON: two digits).
    send_to_room(alice, "r", ["warm-up"] * 9)
    [probe] = send_to_room(alice, "r", ["x" * LARGE_BODY])
    [stored] = alice.ok("history", room="r", after=probe - 1, limit=1)["messages"]
    per_message = len(encode(stored, encoding))
    # Messages that fill the page cap to the byte: as many large ones as fit, and one more.
    count = cap // per_message
    filler = cap - count * per_message - (per_message - LARGE_BODY)
    assert 256 <= filler <= LARGE_BODY, filler  # same string header as the large bodies
    seqs = send_to_room(alice, "r", ["x" * LARGE_BODY] * (count - 1) + ["y" * filler])
    bob = AppClient(node.url, node.token("bob"), json_frames=json_frames, request_timeout=WAIT)
    try:
        bob.connect(timeout=WAIT)
        page = bob.history("r", after=probe - 1, limit=100)
    finally:
        bob.close()
    assert [m["seq"] for m in page["messages"]] == [probe, *seqs]
    assert sum(len(encode(m, encoding)) for m in page["messages"]) == cap
    assert page["more"] is False


# -- a room's own gap repair ---------------------------------------------------------------------

# What a repair may queue at once on node B of the cluster tests (replay_max_bytes): a quarter
# of the default, so that a gap beyond it takes a quarter of the messages to make and to page.
REPLAY_MAX_BYTES = 256 * 1024

# 20 messages of 60 KB: 1.2 MB, more than a repair on B may queue at once (REPLAY_MAX_BYTES),
# under replay_max_messages (1000).
GAP_MESSAGES = 20

# Long enough for a client to page the gap's history through the rate limit, which charges a
# page by its size (that a client pages 4.8 MB through it is in tests/test_backlog.py).
FILL_TIMEOUT = 30.0


class Collected:
    """A callback that records what it is given and can be waited on."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self._changed = gevent.event.Event()

    def __call__(self, item: dict[str, Any]) -> None:
        self.items.append(item)
        self._changed.set()

    def wait_count(self, count: int, *, timeout: float = WAIT) -> list[dict[str, Any]]:
        failure = AssertionError(f"waited for {count}, got {len(self.items)}")
        with gevent.Timeout(timeout, failure):
            while len(self.items) < count:
                self._changed.clear()
                self._changed.wait()
        return self.items


class SplitBystander:
    """The bystander pair across two nodes: alice on ``sender``'s node, bob on ``receiver``'s,
    so that bob's latency measures the node under test."""

    def __init__(self, sender: NodeProcess, receiver: NodeProcess) -> None:
        self._nodes = {"bystander-alice": sender, "bystander-bob": receiver}

    def client(self, user: str) -> Client:
        return self._nodes[user].client(user)[0]


class CutOff:
    """Node B of a two-node cluster, with a Redis user of its own whose ACL the test changes,
    and replay bounds of ``REPLAY_MAX_BYTES``."""

    def __init__(self, redis: RedisServer, spawn: Spawner, *, b_args: tuple[str, ...] = ()) -> None:
        self.admin = redis.client()
        self._acl("on", ">node-b-pw", "~*", "&*", "+@all")
        self.a = spawn.node("A", redis_url_of(redis))
        b_url = f"redis://node-b:node-b-pw@127.0.0.1:{redis.port}/0"
        bounds = ("--replay-max-bytes", str(REPLAY_MAX_BYTES))
        self.b = spawn.node("B", b_url, args=(*bounds, *b_args))
        spawn.start(self.a, self.b)

    def _acl(self, *rules: str) -> None:
        self.admin.execute_command("ACL", "SETUSER", "node-b", *rules)

    def deaf(self) -> None:
        """B stops hearing Redis (its pub/sub is cut off and cannot come back)."""
        self._acl("-subscribe", "-psubscribe")
        self.admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub", "USER", "node-b")
        wait_until(lambda: self.b.ready_status() == 503, what="B deaf")

    def hearing_but_not_reading(self) -> None:
        """B hears again but cannot read a room's log: its rooms' repairs wait, retrying."""
        self._acl("+@all", "-xrange", "-xrevrange")
        wait_until(lambda: self.b.ready_status() == 200, timeout=RECOVERY_TIMEOUT, what="B hears")

    def whole(self) -> None:
        self._acl("+@all")

    def close(self) -> None:
        self.admin.close()


def test_a_room_skips_a_gap_too_large_to_repair_at_once_and_its_members_page_it(
    redis_server: Callable[..., RedisServer], spawn: Spawner, clients: list[Client]
) -> None:
    cluster = CutOff(redis_server(), spawn)
    room = "gap-room"
    sender = connect(clients, cluster.a, "gap-sender")
    member = connect(clients, cluster.b, "gap-member")
    sender.ok("join", room=room)
    member.ok("join", room=room)
    app = AppClient(cluster.b.url, TOKENS.mint("gap-app"), request_timeout=WAIT)
    got, gaps = Collected(), Collected()
    app.on("msg", got)
    app.on("gap", gaps)
    try:
        app.connect(timeout=WAIT)
        app.join(room)
        [first] = send_to_room(sender, room, ["before"])
        assert member.event("msg", room=room)["seq"] == first
        got.wait_count(1)

        # B misses large messages, then hears again; the room's repair waits for the store.
        cluster.deaf()
        missed = send_to_room(sender, room, ["x" * LARGE_BODY] * GAP_MESSAGES)
        cluster.hearing_but_not_reading()
        bystander = Bystander(cast(AttackServer, SplitBystander(cluster.a, cluster.b))).start()
        cluster.whole()

        # The repair is beyond the bounds: the members are told what was skipped, not flooded.
        gap = member.event("gap", room=room, timeout=WAIT)
        assert (gap["after"], gap["seq"]) == (first, missed[-1])
        member.ok("ping")  # barrier: nothing of the gap was queued before it
        assert queued(member, "msg") == []
        [live] = send_to_room(sender, room, ["after the gap"])
        assert member.event("msg", room=room)["seq"] == live
        # Enough bystander messages for its figures to say anything, however slow the machine.
        bystander.measure_at_least()
        latencies = bystander.stop()
        assert member.closed is None

        # The Python client pages the gap from history on its own, through the rate limit.
        got.wait_count(GAP_MESSAGES + 2, timeout=FILL_TIMEOUT)
        assert sorted(m["seq"] for m in got.items) == [first, *missed, live]
        assert len({m["mid"] for m in got.items}) == len(got.items), "a message came twice"
        assert [(g["after"], g["seq"]) for g in gaps.items] == [(first, missed[-1])]
        assert app.state is LinkState.CONNECTED
    finally:
        app.close()
        cluster.close()
    latencies.assert_flowing()


def test_a_room_repairs_a_gap_within_the_bounds_in_order(
    redis_server: Callable[..., RedisServer], spawn: Spawner, clients: list[Client]
) -> None:
    cluster = CutOff(redis_server(), spawn)
    sender = connect(clients, cluster.a, "small-sender")
    member = connect(clients, cluster.b, "small-member")
    for client in (sender, member):
        client.ok("join", room="small")
    cluster.deaf()
    missed = send_to_room(sender, "small", [f"missed {n}" for n in range(5)])
    cluster.hearing_but_not_reading()
    waited = send_to_room(sender, "small", ["waited 1", "waited 2"])
    cluster.whole()
    got = [member.event("msg", room="small", timeout=WAIT)["seq"] for _ in missed + waited]
    assert got == missed + waited
    member.ok("ping")  # barrier
    assert queued(member, "gap") == [] and queued(member, "msg") == []
    cluster.close()


def test_a_gap_the_store_cannot_read_is_skipped_once_what_waits_behind_it_is_too_much(
    redis_server: Callable[..., RedisServer], spawn: Spawner, clients: list[Client]
) -> None:
    cluster = CutOff(redis_server(), spawn)
    sender = connect(clients, cluster.a, "held-sender")
    member = connect(clients, cluster.b, "held-member")
    for client in (sender, member):
        client.ok("join", room="held")
    [first] = send_to_room(sender, "held", ["before"])
    assert member.event("msg", room="held")["seq"] == first
    cluster.deaf()
    [missed] = send_to_room(sender, "held", ["missed"])
    cluster.hearing_but_not_reading()
    # Live messages wait behind the gap; past the replay bounds they could not go out at once.
    waited = send_to_room(sender, "held", ["x" * LARGE_BODY] * (GAP_MESSAGES // 4))
    gap = member.event("gap", room="held", timeout=WAIT)  # while the store is still unreadable
    assert (gap["after"], gap["seq"]) == (first, waited[-1]) and missed < waited[0]
    member.ok("ping")  # barrier
    assert queued(member, "msg") == []
    cluster.whole()
    [live] = send_to_room(sender, "held", ["after the gap"])
    assert member.event("msg", room="held", timeout=WAIT)["seq"] == live
    assert member.closed is None
    cluster.close()


# -- the Python client's session, fed events -----------------------------------------------------


def test_a_gap_event_gives_the_session_a_gap_to_fill_and_moves_its_seq_past_it() -> None:
    session = Session(user="alice")
    session.joining("r")
    answer = session.answered(
        {
            "t": "reply",
            "id": session.submit("join", {"room": "r"}).id,
            "ok": True,
            "data": {"room": "r", "seq": 3, "epoch": "e1", "members": ["alice"]},
        }
    )
    assert answer is not None
    fill = session.skipped({"t": "gap", "room": "r", "after": 3, "seq": 40})
    assert fill is not None
    assert fill.next_args() == {"room": "r", "after": 3, "before": 41, "limit": GAP_PAGE}
    # The next link resumes after the gap: the gap is filled from history, not by a replay.
    assert session.rejoin_args() == [{"room": "r", "since": 40, "epoch": "e1"}]
    # A gap older than the last seq seen still gets filled, and moves nothing back.
    assert session.skipped({"t": "gap", "room": "r", "after": 1, "seq": 2}) is not None
    assert session.rejoin_args()[0]["since"] == 40


@pytest.mark.parametrize(
    "event",
    [
        {"t": "gap", "room": "elsewhere", "after": 3, "seq": 40},  # a room not joined here
        {"t": "gap", "room": "r", "after": 40, "seq": 40},  # nothing skipped
        {"t": "gap", "room": "r", "after": "3", "seq": 40},
        {"t": "gap", "room": "r", "after": 3},
    ],
)
def test_a_gap_event_that_names_nothing_to_fill_is_ignored(event: dict[str, Any]) -> None:
    session = Session(user="alice")
    session.joining("r")
    assert session.skipped(event) is None


def test_the_terminal_chat_says_a_skipped_gap_is_being_fetched() -> None:
    out = io.StringIO()
    client = AppClient("ws://127.0.0.1:1/ws", "token")
    chat = Chat(client, out)
    chat.on_event({"t": "gap", "room": "lobby", "after": 3, "seq": 40})
    chat.on_event({"t": "gap", "room": "lobby", "after": "3"})  # nothing to say
    assert out.getvalue().splitlines() == [
        "* 37 messages in lobby were missed; fetching them from history"
    ]
    client.close()
