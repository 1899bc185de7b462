"""Large backlogs and gaps are recoverable: an offline backlog far larger than a connection's
outbox arrives whole, in order and once, a page at a time; a gap too large to replay at
``join`` answers ``recovered: false`` and the client fills it from ``history``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest

from actorim.breaker.machine import BreakerPolicy
from actorim.client import Client as AppClient
from actorim.client import LinkState
from actorim.store import dm_conv
from actorim.store.base import NewMessage
from supervisors import Backoff
from tests.attack import Bystander, attack_server, spawn_attack
from tests.support import OPCODE_BINARY, Client, RawWebSocket, RunningNode, wait_until
from tests.test_client import WAIT, Seen, drop_link
from tests.test_store_attacks import seed

# Above the outbox's default bound of 2,000 frames: queued at once, this backlog overflowed it.
OVER_THE_OUTBOX = 2_145

# Commands sent before their replies are read: well within the store's pending bound.
PIPELINE = 500


def fill_direct(
    sender: Client, to: str, count: int, *, body: Any = "x", cids: str = "c"
) -> list[str]:
    """Send ``count`` direct messages to ``to``, pipelined; their mids, in order."""
    mids: list[str] = []
    for start in range(0, count, PIPELINE):
        ids = []
        for i in range(start, min(count, start + PIPELINE)):
            command_id = next(sender.ids)
            ids.append(command_id)
            sender.send_obj(
                {"t": "send", "id": command_id, "to": to, "body": body, "cid": f"{cids}{i}"}
            )
        for command_id in ids:
            reply = sender.reply_to(command_id, timeout=30)
            assert reply["ok"], reply
            mids.append(reply["data"]["mid"])
    return mids


def receive_direct(client: Client, count: int) -> list[dict[str, Any]]:
    return [client.event("msg", timeout=30) for _ in range(count)]


def assert_nothing_more(client: Client, t: str = "msg") -> None:
    """Nothing was delivered twice: no ``t`` event came before a ping's reply."""
    client.nothing_before_pong(t)


def stored_backlog(
    start_node: Callable[..., RunningNode],
    data_dir: Path,
    count: int,
    *,
    body: Any = "x",
    **settings: Any,
) -> tuple[RunningNode, list[str]]:
    """A node on a SQLite store that held ``count`` direct messages from alice to bob, not yet
    delivered, before it started (as alice's sends would have left them, without the seconds
    that sending them takes); the node, and the messages' mids in order."""
    ts = int(time.time() * 1000)
    packed = msgpack.packb(body)
    sent = seed(
        data_dir,
        [
            NewMessage(dm_conv("alice", "bob"), "alice", "text", packed, ts, f"c{i}", to="bob")
            for i in range(count)
        ],
    )
    return busy(start_node, store="sqlite", data_dir=str(data_dir), **settings), sent


def busy(start_node: Callable[..., RunningNode], **settings: Any) -> RunningNode:
    # The sender pipelines thousands of sends: the per-connection rate limit is not under test.
    return start_node(rate=100_000.0, burst=100_000.0, **settings)


# -- the offline backlog -----------------------------------------------------------------------


@pytest.mark.slow  # bulk: thousands of waiting messages
def test_a_backlog_larger_than_the_outbox_arrives_whole_in_order_and_once(
    start_node: Callable[..., RunningNode], tmp_path: Path
) -> None:
    node, sent = stored_backlog(start_node, tmp_path / "node", OVER_THE_OUTBOX)
    bob = node.client("bob")
    got = receive_direct(bob, OVER_THE_OUTBOX)
    assert [m["mid"] for m in got] == sent
    assert_nothing_more(bob)


def test_live_direct_messages_follow_the_paged_backlog_once(
    start_node: Callable[..., RunningNode],
) -> None:
    node = busy(start_node, backlog_page_messages=25)
    alice = node.client("alice")
    backlog = fill_direct(alice, "bob", 300)
    bob = node.client("bob")
    # Sent while the backlog is being paged out: each must come after it, once.
    live = fill_direct(alice, "bob", 50, body="live", cids="live")
    got = receive_direct(bob, 350)
    assert [m["mid"] for m in got] == backlog + live
    assert_nothing_more(bob)


def test_acknowledging_while_the_backlog_pages_skips_nothing(
    start_node: Callable[..., RunningNode],
) -> None:
    node = busy(start_node, backlog_page_messages=10)
    sent = fill_direct(node.client("alice"), "bob", 200)
    bob = node.client("bob")
    got = []
    for _ in range(200):
        message = bob.event("msg")
        got.append(message["mid"])
        bob.send_obj({"t": "ack", "id": next(bob.ids), "mid": message["mid"]})
    assert got == sent
    assert_nothing_more(bob)
    assert_nothing_more(node.client("bob"))  # every one was acknowledged: none is pending


def test_a_reconnect_in_the_middle_of_the_backlog_gets_the_rest(
    start_node: Callable[..., RunningNode],
) -> None:
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    node = busy(start_node, backlog_page_messages=20)
    sent = fill_direct(node.client("alice"), "bob", 500)
    read = random.Random(seed).randrange(1, 499)
    bob = node.client("bob")
    for message in receive_direct(bob, read):
        bob.ok("ack", mid=message["mid"])
    bob.close()  # mid-backlog, without a word
    again = node.client("bob")
    got = receive_direct(again, len(sent) - read)
    assert [m["mid"] for m in got] == sent[read:]
    assert_nothing_more(again)


def stalled_reader(node: RunningNode, user: str) -> tuple[RawWebSocket, Any]:
    """``user`` connected on a socket with a tiny receive buffer that reads nothing: returns
    once the server waits for it to read (a page sent, the write blocked), and its link."""
    raw = RawWebSocket("127.0.0.1", node.port, rcvbuf=4096)
    raw.ok("connect", token=node.token(user))
    [link] = [link for link in node.node.ctx.directory.links.values() if link.user == user]

    def stalled() -> bool:
        offline = link.offline
        return offline is not None and offline.pager.state.value == "sending" and link.ws.writing

    wait_until(stalled, what=f"the server to wait for {user} to read")
    return raw, link


def read_events(raw: RawWebSocket, messages: int) -> tuple[list[str], list[dict[str, Any]]]:
    """Read until ``messages`` msg events came: their mids, and the replies read meanwhile
    (each with ``after_messages``: how many msg events came before it)."""
    mids: list[str] = []
    replies: list[dict[str, Any]] = []
    while len(mids) < messages:
        frame = raw.read_frame(timeout=10)
        assert frame is not None, "the server closed the connection"
        if frame[0] != OPCODE_BINARY:
            continue  # a ping
        event = msgpack.unpackb(frame[1], raw=False)
        if event.get("t") == "msg":
            mids.append(event["mid"])
        elif event.get("t") == "reply":
            replies.append({**event, "after_messages": len(mids)})
    return mids, replies


# 3,000 messages of 2 KB: 6 MB, more than the outbox (4 MiB) and the kernel's buffers hold.
LARGE = 3_000
LARGE_BODY = "y" * 2_000


@pytest.mark.slow  # bulk: thousands of waiting messages
def test_a_client_that_stops_reading_holds_the_backlog_back_instead_of_being_closed(
    start_node: Callable[..., RunningNode], tmp_path: Path
) -> None:
    node, sent = stored_backlog(start_node, tmp_path / "node", LARGE, body=LARGE_BODY)
    bob, link = stalled_reader(node, "bob")
    assert not link.outbox.overflowed
    assert sent.index(link.offline.pager.cursor) < len(sent) - 1, "the rest waits in the store"
    assert read_events(bob, len(sent))[0] == sent
    bob.close()


@pytest.mark.slow  # bulk: thousands of waiting messages
def test_a_connection_actor_that_crashes_mid_backlog_carries_on_where_it_was(
    start_node: Callable[..., RunningNode], tmp_path: Path
) -> None:
    node, sent = stored_backlog(
        start_node, tmp_path / "node", LARGE, body=LARGE_BODY, fault_injection=True
    )
    bob, link = stalled_reader(node, "bob")
    crash = bob.send_command("debug.crash", what="connection")
    got, replies = read_events(bob, len(sent))
    assert got == sent
    [reply] = replies
    assert (reply["id"], reply["error"]["code"]) == (crash, "internal")
    assert 0 < reply["after_messages"] < len(sent), "the crash came in the middle of the backlog"
    assert link.offline is None and link.actor is not None
    bob.close()


def take_backlog(port: int, token: str, count: int, seconds: float) -> None:
    """In a child process: connect, read ``count`` direct messages over this one connection,
    check each came once and in order, then exit 0 (any failure exits non-zero)."""
    client = Client(f"ws://127.0.0.1:{port}/ws")
    client.connect(token)
    deadline = time.monotonic() + seconds
    bodies = []
    while len(bodies) < count:
        assert time.monotonic() < deadline, f"only {len(bodies)} of {count} arrived"
        bodies.append(client.event("msg", timeout=10)["body"])
    assert bodies == list(range(count)), "out of order or twice"
    assert_nothing_more(client)
    client.close()


@pytest.mark.process
def test_ten_thousand_waiting_messages_arrive_over_one_connection_beside_a_bystander(
    tmp_path: Path,
) -> None:
    count = 10_000
    # Stored before the server starts, as alice's sends would have left them: sending them
    # took seconds and is not what this test is about (the store's tests prove the sends).
    ts = int(time.time() * 1000)
    seed(
        tmp_path,
        [
            NewMessage(
                dm_conv("alice", "bob"), "alice", "text", msgpack.packb(i), ts, str(i), to="bob"
            )
            for i in range(count)
        ],
    )
    with attack_server(tmp_path) as server:
        bystander = Bystander(server).start()
        with spawn_attack(
            "tests.test_backlog:take_backlog",
            port=server.port,
            token=server.token("bob"),
            count=count,
            seconds=60,
        ) as taker:
            code = taker.wait(timeout=90)
        latencies = bystander.stop()
        print(latencies.summary())
        assert code == 0, "bob did not get his backlog whole, once, over one connection"
        latencies.assert_flowing()


# -- a gap at join -----------------------------------------------------------------------------

# 80 messages of 60 KB: 4.8 MB, more than the outbox's default 4 MiB, under 1,000 messages.
GAP_MESSAGES = 80
GAP_BODY = "x" * 60_000


def send_to_room(sender: Client, room: str, count: int, body: Any) -> list[int]:
    ids = [next(sender.ids) for _ in range(count)]
    for command_id in ids:
        sender.send_obj({"t": "send", "id": command_id, "room": room, "body": body})
    return [sender.reply_to(command_id, timeout=30)["data"]["seq"] for command_id in ids]


def test_a_gap_too_large_to_replay_answers_not_recovered_with_the_latest_seq(
    start_node: Callable[..., RunningNode],
) -> None:
    node = busy(start_node)
    alice = node.client("alice")
    alice.ok("join", room="r")
    bob = node.client("bob")
    joined = bob.ok("join", room="r")
    bob.close()
    missed = send_to_room(alice, "r", GAP_MESSAGES, GAP_BODY)
    bob = node.client("bob")
    reply = bob.ok("join", room="r", since=joined["seq"], epoch=joined["epoch"])
    assert reply["recovered"] is False and reply["seq"] == missed[-1]
    assert_nothing_more(bob)  # nothing replayed, and the connection stays open
    [live] = send_to_room(alice, "r", 1, "after the gap")
    assert bob.event("msg")["seq"] == live == reply["seq"] + 1
    # What a client does with recovered: false: page history over the gap.
    got: list[int] = []
    after = joined["seq"]
    while True:
        page = bob.ok("history", room="r", after=after, before=reply["seq"] + 1, limit=10)
        got.extend(m["seq"] for m in page["messages"])
        if not page["more"]:
            break
        after = got[-1]
    assert got == missed


def test_a_replay_within_its_bounds_still_recovers_and_one_beyond_them_does_not(
    start_node: Callable[..., RunningNode],
) -> None:
    node = busy(start_node, replay_max_messages=5, replay_max_bytes=4_000)
    alice = node.client("alice")
    alice.ok("join", room="r")
    epoch = alice.ok("join", room="r")["epoch"]
    send_to_room(alice, "r", 5, "small")
    bob = node.client("bob")
    assert bob.ok("join", room="r", since=0, epoch=epoch)["recovered"] is True
    assert [bob.event("msg")["seq"] for _ in range(5)] == [1, 2, 3, 4, 5]
    send_to_room(alice, "r", 1, "small")  # six missed: more than replay_max_messages
    carol = node.client("carol")
    assert carol.ok("join", room="r", since=0, epoch=epoch)["recovered"] is False
    assert_nothing_more(carol)
    send_to_room(alice, "r", 2, "y" * 3_000)  # two missed, 6 KB: more than replay_max_bytes
    dave = node.client("dave")
    reply = dave.ok("join", room="r", since=6, epoch=epoch)
    assert reply["recovered"] is False and reply["seq"] == 8
    assert_nothing_more(dave)


# The client reconnects 2 s after losing its link: time for the gap to be made meanwhile.
AWAY = BreakerPolicy(
    failure_threshold=5,
    cooldown=2.0,
    cooldown_cap=2.0,
    backoff=Backoff(floor=2.0, cap=0.05),
    heartbeat_interval=5.0,
    heartbeat_timeout=2.0,
)


@pytest.mark.slow
def test_the_python_client_fills_a_gap_not_recovered_from_history(
    start_node: Callable[..., RunningNode],
) -> None:
    node = busy(start_node, fault_injection=True)
    alice = node.client("alice")
    alice.ok("join", room="r")
    bob = AppClient(node.url, node.token("bob"), policy=AWAY)
    try:
        bob.connect(timeout=WAIT)
        got, states, rejoined = Seen(), Seen(), Seen()
        bob.on("msg", got)
        bob.on("rejoined", rejoined)
        bob.on_state(states)
        bob.join("r")
        [first] = send_to_room(alice, "r", 1, "before")
        got.wait_count(1)
        drop_link(bob)
        states.wait_state(LinkState.CONNECTING)
        missed = send_to_room(alice, "r", GAP_MESSAGES, GAP_BODY)
        states.wait_state(LinkState.CONNECTED)
        [event] = rejoined.wait_count(1)
        assert event["recovered"] is False and event["seq"] == missed[-1]
        got.wait_count(1 + GAP_MESSAGES)
        assert sorted(m["seq"] for m in got.items) == [first, *missed]
        assert len({m["mid"] for m in got.items}) == len(got.items), "a message came twice"
    finally:
        bob.close()


def test_in_a_cluster_a_large_backlog_and_live_messages_arrive_once_in_order(
    start_node: Callable[..., RunningNode], redis_session: Any, tmp_path: Path
) -> None:
    url = f"redis://127.0.0.1:{redis_session.port}/0"
    namespace = f"backlog-{tmp_path.name}"  # the session's Redis is shared: a name of its own
    here = busy(start_node, redis_url=url, redis_namespace=namespace, backlog_page_messages=100)
    there = busy(start_node, redis_url=url, redis_namespace=namespace)
    alice = there.client("alice")
    backlog = fill_direct(alice, "bob", OVER_THE_OUTBOX)
    bob = here.client("bob")
    live = fill_direct(alice, "bob", 100, body="live", cids="live")
    got = receive_direct(bob, OVER_THE_OUTBOX + 100)
    assert [m["mid"] for m in got] == backlog + live
    assert_nothing_more(bob)
