"""The history contract on a real node: default and largest page, byte cap, cursor bounds, and
the charge a page costs its connection."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from actorim.config import MIB
from actorim.protocol.commands import MAX_SEQ
from tests.support import Client, RunningNode, queued, wait_until

StartNode = Callable[..., RunningNode]


def post(client: Client, room: str, bodies: list[Any]) -> None:
    """Send ``bodies`` to ``room`` (pipelined) and wait until each is stored."""
    ids = []
    for body in bodies:
        command_id = next(client.ids)
        client.send_obj({"t": "send", "id": command_id, "room": room, "body": body})
        ids.append(command_id)
    for command_id in ids:
        reply = client.reply_to(command_id)
        assert reply["ok"], reply


def test_history_without_limit_returns_the_latest_50(start_node: StartNode) -> None:
    node = start_node()
    alice = node.client("alice")
    alice.ok("join", room="h")
    post(alice, "h", list(range(60)))

    page = alice.ok("history", room="h")
    assert [m["body"] for m in page["messages"]] == list(range(10, 60))
    assert page["more"] is True
    assert len(alice.ok("history", room="h", limit=100)["messages"]) == 60
    error = alice.error("history", room="h", limit=101)
    assert error["code"] == "bad_request" and "limit" in error["message"]


@pytest.mark.parametrize("json_frames", [False, True], ids=["msgpack", "json"])
@pytest.mark.parametrize(
    ("field", "value"),
    [("before", 2**63), ("after", 2**63), ("before", 2**64 - 1)],
)
def test_history_cursor_beyond_a_stored_seq_is_a_bad_request(
    start_node: StartNode, json_frames: bool, field: str, value: int
) -> None:
    node = start_node(store="sqlite")
    alice = node.client("alice", json_frames=json_frames)
    alice.ok("join", room="h")
    post(alice, "h", ["one"])

    error = alice.error("history", room="h", **{field: value})
    assert error["code"] == "bad_request" and field in error["message"]
    page = alice.ok("history", room="h", **{field: MAX_SEQ})
    assert [m["body"] for m in page["messages"]] == ([] if field == "after" else ["one"])


def test_join_since_beyond_a_stored_seq_is_a_bad_request(start_node: StartNode) -> None:
    node = start_node(store="sqlite")
    alice = node.client("alice")
    error = alice.error("join", room="h", since=2**63)
    assert error["code"] == "bad_request" and "since" in error["message"]


def test_page_larger_than_the_outbox_is_cut_and_says_more(start_node: StartNode) -> None:
    # A rate limit wide enough for paging through 5 MB at once (pages are charged by size).
    node = start_node(rate=1000.0, burst=2000.0)
    alice = node.client("alice")
    alice.ok("join", room="big")
    # 100 bodies of 50 KB: 5 MB in one page, over the 4 MiB outbox of a connection.
    post(alice, "big", [f"{n:03d}" + "x" * 50_000 for n in range(100)])

    seen: list[str] = []
    before = None
    while True:
        page = alice.ok("history", room="big", limit=100, before=before)
        bodies = [m["body"][:3] for m in page["messages"]]
        assert 0 < sum(len(m["body"]) for m in page["messages"]) <= 1 * MIB
        seen = bodies + seen
        if not page["more"]:
            break
        before = page["messages"][0]["seq"]
    assert seen == [f"{n:03d}" for n in range(100)]

    forward = alice.ok("history", room="big", limit=100, after=0)
    assert forward["more"] is True
    assert [m["body"][:3] for m in forward["messages"]] == seen[: len(forward["messages"])]


def test_pages_are_charged_by_their_bytes_so_a_puller_is_slowed(start_node: StartNode) -> None:
    # A token per 1,000 bytes, refilled at one a second: a page of 20 KB leaves the
    # connection in debt for long after.
    node = start_node(history_bytes_per_token=1000, rate=1.0, burst=20.0)
    alice = node.client("alice")
    bob = node.client("bob")
    alice.ok("join", room="r")
    post(alice, "r", ["y" * 2_000 for _ in range(10)])

    puller = node.client("puller")
    first, second = next(puller.ids), next(puller.ids)
    puller.send_obj({"t": "history", "id": first, "room": "r", "limit": 10})
    puller.send_obj({"t": "history", "id": second, "room": "r", "limit": 10})
    assert len(puller.reply_to(first)["data"]["messages"]) == 10
    refused = puller.reply_to(second)
    assert refused["error"]["code"] == "rate_limited", refused
    assert "history pages" in refused["error"]["message"]
    assert puller.error("ping")["code"] == "rate_limited"
    # Nobody else pays for it.
    bob.ok("join", room="r")
    assert len(bob.ok("history", room="r", limit=2)["messages"]) == 2


def test_a_resume_replays_only_what_the_room_fanned_out_so_a_late_live_copy_comes_once(
    start_node: StartNode,
) -> None:
    # In a cluster the store is read straight from Redis while the room hears of a message
    # over pub/sub a moment later: a member resuming in that moment found the message in the
    # store, and then got its live copy too. Here the broker holds the room's copy back.
    node = start_node()
    broker = node.node.ctx.broker
    held: list[tuple[Any, ...]] = []
    forward = broker.publish_stored
    alice, bob = node.client("alice"), node.client("bob")
    for client in (alice, bob):
        client.ok("join", room="r")
    seq = bob.ok("send", room="r", body="seen")["seq"]
    alice.event("msg", seq=seq)
    alice.close()
    missed = bob.ok("send", room="r", body="missed")["seq"]
    broker.publish_stored = lambda *args: held.append(args)  # type: ignore[method-assign]
    late = bob.ok("send", room="r", body="late")["seq"]
    broker.publish_stored = forward  # type: ignore[method-assign]
    back = node.client()
    back.ok("connect", token=node.token("alice"), since={"r": seq})
    room = node.node.ctx.directory.rooms["r"].log
    wait_until(lambda: len(room.members) == 2 and not room.recovering, what="the resume's replay")
    [args] = held
    forward(*args)  # the room hears of it now, and fans it out to every member
    assert back.event("msg", seq=missed)["body"] == "missed"
    assert back.event("msg", seq=late)["body"] == "late"
    # The barrier on the room's path: a later message through it, then nothing else queued.
    after = bob.ok("send", room="r", body="after")["seq"]
    back.event("msg", seq=after)
    assert not queued(back, "msg", seq=late)
