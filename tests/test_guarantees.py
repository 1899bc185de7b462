"""The delivery guarantees of docs/guarantees.md, each proven against a real server."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gevent
import pytest

from actorim.domain.auth import TokenAuthority
from tests.support import Client, RunningNode, ServerProcess, queued

SECRET = "guarantees-test-secret-0123456789abcdef"


def durable(start_node: Callable[..., RunningNode], data_dir: Path, **settings: Any) -> RunningNode:
    return start_node(store="sqlite", data_dir=str(data_dir), secret=SECRET, **settings)


# -- 1. acknowledged means durable, across kill -9 ------------------------------------------------


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path / "data", secret=SECRET)
    yield process
    process.stop()


@pytest.mark.process
def test_every_acknowledged_message_survives_kill_9_exactly_once_and_in_order(
    server_process: ServerProcess,
) -> None:
    tokens = TokenAuthority(SECRET)
    server_process.start()
    sender = Client(server_process.url)
    sender.connect(tokens.mint("writer"))
    sender.ok("join", room="stream")
    acked: dict[str, tuple[str, int]] = {}
    in_flight: dict[int, str] = {}

    def pump() -> None:
        n = 0
        while True:
            while len(in_flight) < 8:
                cid = f"c{n}"
                n += 1
                command_id = next(sender.ids)
                in_flight[command_id] = cid
                sender.send_obj(
                    {"t": "send", "id": command_id, "room": "stream", "body": cid, "cid": cid}
                )
            frame = sender._read(5)
            if frame.get("t") == "reply" and frame["ok"]:
                cid = in_flight.pop(frame["id"])
                acked[cid] = (frame["data"]["mid"], frame["data"]["seq"])

    writer = gevent.spawn(pump)
    with gevent.Timeout(10):
        while len(acked) < 50:
            gevent.sleep(0.01)
    seed = random.randrange(2**32)
    delay = random.Random(seed).uniform(0.0, 0.3)
    print(f"seed {seed}: the kill comes {delay:.3f} s after the 50th acknowledgement")
    gevent.sleep(delay)
    server_process.kill()
    writer.join(timeout=5)
    assert len(acked) >= 50

    server_process.start()
    reader = Client(server_process.url)
    reader.connect(tokens.mint("reader"))
    stored: list[dict[str, Any]] = []
    after = 0
    while True:
        page = reader.ok("history", room="stream", after=after, limit=100)
        stored.extend(page["messages"])
        if not page["more"]:
            break
        after = page["messages"][-1]["seq"]
    seqs = [m["seq"] for m in stored]
    assert seqs == list(range(1, len(stored) + 1)), "seq must be contiguous and ascending"
    by_mid = {m["mid"]: m for m in stored}
    assert len(by_mid) == len(stored)
    for cid, (mid, seq) in acked.items():
        assert mid in by_mid, f"acknowledged message {cid} was lost"
        assert by_mid[mid]["seq"] == seq and by_mid[mid]["body"] == cid
    assert [m["body"] for m in stored].count(stored[0]["body"]) == 1

    # 2. across the restart, resending an acknowledged cid gives back the original message
    sender2 = Client(server_process.url)
    sender2.connect(tokens.mint("writer"))
    sender2.ok("join", room="stream")
    some_cid, (mid, seq) = next(iter(acked.items()))
    again = sender2.ok("send", room="stream", body=some_cid, cid=some_cid)
    assert (again["mid"], again["seq"]) == (mid, seq)
    for client in (sender, reader, sender2):
        client.close()


# -- 2. a resent cid never creates a second message ------------------------------------------------


def test_resending_a_cid_returns_the_original_and_delivers_nothing_new(
    start_node: Callable[..., RunningNode], tmp_path: Path
) -> None:
    node = durable(start_node, tmp_path)
    alice, bob = node.client("alice"), node.client("bob")
    alice.ok("join", room="r")
    bob.ok("join", room="r")
    first = alice.ok("send", room="r", body="once", cid="k1")
    second = alice.ok("send", room="r", body="once", cid="k1")
    assert (second["mid"], second["seq"], second["ts"]) == (first["mid"], first["seq"], first["ts"])
    assert bob.event("msg")["mid"] == first["mid"]
    # The room delivers in seq order: a second copy would come before a later message.
    marker = alice.ok("send", room="r", body="marker", cid="k-marker")
    assert bob.event("msg", mid=marker["mid"])["seq"] == first["seq"] + 1
    assert queued(bob, "msg") == []
    dm1 = alice.ok("send", to="bob", body="dm", cid="k2")
    dm2 = alice.ok("send", to="bob", body="dm", cid="k2")
    assert dm1 == dm2


# -- 3. seq order and recovery with since/epoch ------------------------------------------------


def test_a_member_back_from_away_gets_exactly_what_it_missed_in_order_then_live(
    start_node: Callable[..., RunningNode], tmp_path: Path
) -> None:
    node = durable(start_node, tmp_path)
    talker, away = node.client("talker"), node.client("away")
    talker.ok("join", room="r")
    joined = away.ok("join", room="r")
    epoch = joined["epoch"]
    for i in range(3):
        talker.ok("send", room="r", body=f"m{i}")
    seen = [away.event("msg")["seq"] for _ in range(3)]
    assert seen == [1, 2, 3]
    away.close()
    for i in range(3, 7):
        talker.ok("send", room="r", body=f"m{i}")
    back = node.client("away")
    reply = back.ok("join", room="r", since=3, epoch=epoch)
    assert reply["recovered"] is True and reply["seq"] == 7
    talker.ok("send", room="r", body="live")
    got = [back.event("msg") for _ in range(5)]
    assert [m["seq"] for m in got] == [4, 5, 6, 7, 8]
    assert [m["body"] for m in got] == ["m3", "m4", "m5", "m6", "live"]


def test_recovery_says_not_recovered_beyond_retention_and_for_another_epoch(
    start_node: Callable[..., RunningNode], tmp_path: Path
) -> None:
    node = durable(start_node, tmp_path, retention_count=3, prune_interval=0.05)
    talker = node.client("talker")
    epoch = talker.ok("join", room="r")["epoch"]
    for i in range(10):
        talker.ok("send", room="r", body=i)
    with gevent.Timeout(5):
        while len(talker.ok("history", room="r", limit=100)["messages"]) > 3:
            gevent.sleep(0.05)
    late = node.client("late")
    assert late.ok("join", room="r", since=1, epoch=epoch)["recovered"] is False
    other = node.client("other")
    assert other.ok("join", room="r", since=9, epoch="not-this-store")["recovered"] is False
    fine = node.client("fine")
    reply = fine.ok("join", room="r", since=8, epoch=epoch)
    assert reply["recovered"] is True
    assert [fine.event("msg")["seq"] for _ in range(2)] == [9, 10]


def test_the_epoch_changes_when_the_store_is_replaced(
    start_node: Callable[..., RunningNode], tmp_path: Path
) -> None:
    first = durable(start_node, tmp_path / "a").client("u").ok("join", room="r")["epoch"]
    second = durable(start_node, tmp_path / "b").client("u").ok("join", room="r")["epoch"]
    assert first and second and first != second


# -- 4. offline delivery, receipts --------------------------------------------------------------


def test_direct_messages_wait_for_an_offline_user_across_a_restart(
    start_node: Callable[..., RunningNode], tmp_path: Path
) -> None:
    node = durable(start_node, tmp_path)
    alice = node.client("alice")
    sent = [alice.ok("send", to="bob", body=f"while you were out {i}") for i in range(3)]
    node.stop()
    node = durable(start_node, tmp_path)
    alice_phone = node.client("alice")
    alice_laptop = node.client("alice")
    bob = node.client("bob")
    got = [bob.event("msg") for _ in range(3)]
    assert [m["mid"] for m in got] == [s["mid"] for s in sent]
    bob.ok("ack", mid=got[0]["mid"])
    for device in (alice_phone, alice_laptop):
        receipt = device.event("receipt")
        assert receipt == {"t": "receipt", "mid": got[0]["mid"], "by": "bob", "status": "delivered"}
    bob.ok("read", mid=got[1]["mid"])
    for device in (alice_phone, alice_laptop):
        assert device.event("receipt")["status"] == "read"
    bob.ok("ack", mid=got[0]["mid"])
    alice_phone.nothing_before_pong("receipt", mid=got[0]["mid"])
    bob.close()
    again = node.client("bob")
    redelivered = again.event("msg")
    assert redelivered["mid"] == got[2]["mid"], "only the unacknowledged message comes again"
    # A live direct message follows the whole offline backlog: nothing more may come before it.
    live = alice_phone.ok("send", to="bob", body="live")
    assert again.event("msg", mid=live["mid"])["body"] == "live"
    assert queued(again, "msg") == []


def test_receipts_and_reads_of_room_messages_change_nothing(
    start_node: Callable[..., RunningNode], tmp_path: Path
) -> None:
    node = durable(start_node, tmp_path)
    alice, bob = node.client("alice"), node.client("bob")
    alice.ok("join", room="r")
    bob.ok("join", room="r")
    mid = alice.ok("send", room="r", body="x")["mid"]
    assert bob.ok("ack", mid=mid) == {}
    assert bob.ok("read", mid=mid) == {}
    alice.nothing_before_pong("receipt")


def test_offline_backlog_arrives_before_live_direct_messages(
    start_node: Callable[..., RunningNode], tmp_path: Path
) -> None:
    node = durable(start_node, tmp_path)
    alice = node.client("alice")
    for i in range(20):
        alice.ok("send", to="bob", body=i)
    bob = node.client("bob")
    alice.ok("send", to="bob", body="live")
    bodies = [bob.event("msg")["body"] for _ in range(21)]
    assert bodies == [*range(20), "live"]


# -- history -------------------------------------------------------------------------------------


def test_history_pages_in_ascending_order_with_every_cursor(
    start_node: Callable[..., RunningNode], tmp_path: Path
) -> None:
    node = durable(start_node, tmp_path)
    alice = node.client("alice")
    alice.ok("join", room="h")
    for i in range(25):
        alice.ok("send", room="h", body=i)

    def seqs(**cursor: Any) -> tuple[list[int], bool]:
        page = alice.ok("history", room="h", **cursor)
        return [m["seq"] for m in page["messages"]], page["more"]

    assert seqs(limit=10) == (list(range(16, 26)), True)
    assert seqs(before=16, limit=10) == (list(range(6, 16)), True)
    assert seqs(before=6, limit=10) == (list(range(1, 6)), False)
    assert seqs(after=20, limit=10) == (list(range(21, 26)), False)
    assert seqs(after=0, limit=10) == (list(range(1, 11)), True)
    assert seqs(after=5, before=9, limit=10) == ([6, 7, 8], False)
    bob = node.client("bob")
    alice.ok("send", to="bob", body="dm")
    assert [m["body"] for m in bob.ok("history", **{"with": "alice"})["messages"]] == ["dm"]
    assert alice.error("history", room="h", limit=1000)["code"] == "bad_request"
