"""Lasting membership over real sockets on one node: a user belongs to a room from ``join``
until ``leave``, across connections and restarts; every device receives the user's rooms
without joining; the inbox at connect; member lists with offline members; titles, topics and
the room directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from actorim.client import Client as AppClient
from actorim.domain.auth import TokenAuthority
from actorim.protocol.events import self_member_frame
from actorim.protocol.wire import WireFrame
from actorim.runtime.delivery import NodeDelivery
from actorim.runtime.roomstate import RoomState
from tests.support import Client, RunningNode, ServerProcess, queued, wait_until

StartNode = Callable[..., RunningNode]


def test_membership_survives_reconnect_and_a_second_device_gets_messages_without_joining(
    start_node: StartNode,
) -> None:
    node = start_node()
    ann = node.client("ann")
    ann.ok("join", room="lobby")
    ann.close()
    bob = node.client("bob")
    bob.ok("join", room="lobby")
    bob.ok("send", room="lobby", body="while ann is away")
    phone = node.client("ann")  # never joins: the membership is ann's
    laptop = node.client("ann")
    sent = bob.ok("send", room="lobby", body="hello devices")
    for device in (phone, laptop):
        assert device.event("msg", room="lobby", seq=sent["seq"])["body"] == "hello devices"
    reply = phone.ok("send", room="lobby", body="from the phone")
    assert reply["seq"] == sent["seq"] + 1


def test_join_on_one_device_subscribes_the_others_and_leave_stops_them(
    start_node: StartNode,
) -> None:
    node = start_node()
    phone, laptop = node.client("ann"), node.client("ann")
    bob, carol = node.client("bob"), node.client("carol")
    bob.ok("join", room="team")
    carol.ok("join", room="team")
    phone.ok("join", room="team")
    assert bob.event("member", room="team", user="ann")["state"] == "joined"
    assert laptop.event("member", room="team", user="ann")["state"] == "joined"
    phone.nothing_before_pong("member", user="ann")  # the joining device has the reply
    laptop.ok("ping")  # its subscription is made before it handles the next command
    first = bob.ok("send", room="team", body="to both")
    assert laptop.event("msg", room="team", seq=first["seq"])["body"] == "to both"
    assert phone.event("msg", room="team", seq=first["seq"])["body"] == "to both"
    laptop.ok("leave", room="team")
    assert phone.event("member", room="team", user="ann")["state"] == "left"
    assert bob.event("member", room="team", user="ann")["state"] == "left"
    phone.ok("ping")
    after = bob.ok("send", room="team", body="not for ann")
    carol.event("msg", room="team", seq=after["seq"])  # the room's fan-out is done
    for device in (phone, laptop):
        device.ok("ping")
        assert not queued(device, "msg", seq=after["seq"])
    error = phone.error("send", room="team", body="no longer a member")
    assert error["code"] == "forbidden"
    assert phone.error("leave", room="team")["code"] == "not_found"


def test_joining_a_room_already_belonged_to_answers_as_before_with_since_recovery(
    start_node: StartNode,
) -> None:
    node = start_node()
    ann = node.client("ann")
    first = ann.ok("join", room="lobby")
    assert first["seq"] == 0 and first["members"] == ["ann"]
    ann.ok("send", room="lobby", body="one")
    ann.close()
    bob = node.client("bob")
    bob.ok("join", room="lobby")
    bob.ok("send", room="lobby", body="two")
    back = node.client("ann")  # subscribed at connect from the inbox's seq
    again = back.ok("join", room="lobby", since=1, epoch=first["epoch"])
    assert again["seq"] == 2 and again["recovered"] is True
    assert back.event("msg", room="lobby", seq=2)["body"] == "two"


def test_joins_past_max_rooms_per_user_are_refused_across_devices(start_node: StartNode) -> None:
    node = start_node(max_rooms_per_user=2)
    phone, laptop = node.client("ann"), node.client("ann")
    phone.ok("join", room="a")
    laptop.ok("join", room="b")
    error = phone.error("join", room="c")
    assert error["code"] == "too_many_rooms"
    assert "2 rooms" in error["message"]
    phone.ok("join", room="a")  # a room already belonged to is not another one
    laptop.ok("leave", room="a")
    phone.ok("join", room="c")


def test_a_room_the_token_no_longer_allows_is_neither_subscribed_nor_listed(
    start_node: StartNode,
) -> None:
    node = start_node()
    ann = node.client("ann")
    ann.ok("join", room="team:red")
    ann.ok("join", room="lobby")
    ann.close()
    limited = node.client()
    data = limited.connect(node.token("ann", rooms=["lobby"]))
    assert [c["room"] for c in data["conversations"]] == ["lobby"]
    bob = node.client("bob")
    bob.ok("join", room="team:red")
    red = bob.ok("send", room="team:red", body="secret")
    limited.ok("ping")
    assert not queued(limited, "msg", seq=red["seq"], room="team:red")


def test_inbox_lists_rooms_and_direct_conversations_latest_first(start_node: StartNode) -> None:
    node = start_node()
    ann = node.client("ann")
    bob = node.client("bob")
    ann.ok("join", room="quiet")
    ann.ok("join", room="busy")
    bob.ok("join", room="busy")
    bob.ok("send", room="busy", body="older")
    bob.ok("send", to="ann", body="psst")
    latest = bob.ok("send", room="busy", body="newest")
    ann.close()
    data = node.client().connect(node.token("ann"))
    entries = data["conversations"]
    # Latest activity first (messages of one millisecond in key order); no message: last.
    stamps = [e["last"]["ts"] for e in entries[:2]]
    assert stamps == sorted(stamps, reverse=True)
    by_name = {e.get("room") or e["with"]: e for e in entries}
    assert list(by_name)[2] == "quiet"
    busy, dm, quiet = by_name["busy"], by_name["bob"], by_name["quiet"]
    assert busy["seq"] == latest["seq"] and busy["last"]["body"] == "newest"
    assert busy["last"]["from"] == "bob"
    assert dm["seq"] == 1 and dm["last"]["body"] == "psst" and "room" not in dm
    assert "last" not in quiet and quiet["seq"] == 0
    assert "conversations_more" not in data


def test_inbox_entries_carry_the_readers_marker_unread_and_mention_counts(
    start_node: StartNode,
) -> None:
    node = start_node()
    ann = node.client("ann")
    bob = node.client("bob")
    for client in (ann, bob):
        client.ok("join", room="news")
    bob.ok("send", room="news", body="one")
    second = bob.ok("send", room="news", body="hey @ann")
    bob.ok("send", room="news", body="three")
    ann.ok("send", room="news", body="mine never counts")
    bob.ok("send", to="ann", body="psst")
    ann.close()

    def inbox() -> dict[str, dict[str, Any]]:
        device = node.client()
        entries = device.connect(node.token("ann"))["conversations"]
        device.close()
        return {e.get("room") or e["with"]: e for e in entries}

    first = inbox()
    counts = [(e["marker"], e["unread"], e["mentions"]) for e in first.values()]
    assert dict(zip(first, counts, strict=True)) == {"bob": (0, 1, 0), "news": (0, 3, 1)}
    # A read on any device moves the marker: the next connect's inbox counts from there.
    reader = node.client("ann")
    reader.ok("read", room="news", seq=second["seq"])
    reader.close()
    after = inbox()["news"]
    assert (after["marker"], after["unread"], after["mentions"]) == (second["seq"], 1, 0)


def test_inbox_is_bounded_and_pages_with_conversations(start_node: StartNode) -> None:
    node = start_node(inbox_limit=2)
    ann = node.client("ann")
    stamps = {}
    for room in ("r1", "r2", "r3"):
        ann.ok("join", room=room)
        stamps[room] = ann.ok("send", room=room, body=room)["ts"]
    # Latest first; messages of one millisecond in name order.
    expected = sorted(stamps, key=lambda room: (-stamps[room], room))
    data = node.client().connect(node.token("ann"))
    assert [e["room"] for e in data["conversations"]] == expected[:2]
    assert data["conversations_more"] is True
    rest = ann.ok("conversations", before=data["conversations_cursor"])
    assert [e["room"] for e in rest["conversations"]] == expected[2:]
    assert rest["more"] is False and "cursor" not in rest
    assert ann.error("conversations", limit=0)["code"] == "bad_request"


def test_members_lists_offline_members_with_their_status_in_pages(start_node: StartNode) -> None:
    node = start_node(member_list_limit=2, presence_grace=0.1)
    # Watching before cat leaves: a watcher hears changes only, and the grace may end first.
    watcher = node.client("eve")
    watcher.ok("watch", users=["cat"])
    for user in ("cat", "ann", "bob"):
        client = node.client(user)
        client.ok("join", room="lobby")
        if user == "cat":
            client.close()
    dan = node.client("dan")
    watcher.event("presence", user="cat", status="offline")
    page = dan.ok("members", room="lobby")
    assert page["members"] == [
        {"user": "ann", "status": "online"},
        {"user": "bob", "status": "online"},
    ]
    rest = dan.ok("members", room="lobby", cursor=page["cursor"])
    assert rest == {"members": [{"user": "cat", "status": "offline"}]}
    joined = dan.ok("join", room="lobby")
    assert "cat" not in joined["members"]  # the join reply lists members online in the room


def test_title_and_topic_reach_every_members_devices_and_the_join_reply_and_inbox(
    start_node: StartNode,
) -> None:
    node = start_node()
    ann, bob = node.client("ann"), node.client("bob")
    ann_phone = node.client("ann")
    ann.ok("join", room="lobby")
    bob.ok("join", room="lobby")
    ann_phone.ok("ping")
    reply = ann.ok("room.update", room="lobby", title="The Lobby", topic="Say hi")
    assert reply == {"room": "lobby", "title": "The Lobby", "topic": "Say hi"}
    for device in (bob, ann_phone):
        assert device.event("room", room="lobby") == {
            "t": "room",
            "room": "lobby",
            "title": "The Lobby",
            "topic": "Say hi",
        }
    assert bob.ok("room.update", room="lobby", topic="")["title"] == "The Lobby"
    carol = node.client("carol")
    assert carol.error("room.update", room="lobby", title="mine")["code"] == "forbidden"
    joined = carol.ok("join", room="lobby")
    assert (joined["title"], joined["topic"]) == ("The Lobby", "")
    entry = node.client().connect(node.token("carol"))["conversations"][0]
    assert (entry["room"], entry["title"], entry["topic"]) == ("lobby", "The Lobby", "")
    too_long = carol.error("room.update", room="lobby", title="x" * 101)
    assert too_long["code"] == "bad_request"


def test_directory_searches_name_and_title_pages_and_honours_the_token(
    start_node: StartNode,
) -> None:
    node = start_node(directory_limit=2)
    ann = node.client("ann")
    for room in ("alpha", "beta", "gamma", "team:red"):
        ann.ok("join", room=room)
    ann.ok("room.update", room="gamma", title="Beta testers")
    page = ann.ok("rooms")
    assert [r["room"] for r in page["rooms"]] == ["alpha", "beta"]
    assert page["rooms"][0] == {"room": "alpha", "title": "", "topic": "", "members": 1}
    rest = ann.ok("rooms", cursor=page["cursor"])
    assert [r["room"] for r in rest["rooms"]] == ["gamma", "team:red"]
    found = ann.ok("rooms", query="BETA")
    assert [r["room"] for r in found["rooms"]] == ["beta", "gamma"]
    limited = node.client()
    limited.connect(node.token("bob", rooms=["alpha", "gamma", "beta"]))
    assert [r["room"] for r in limited.ok("rooms", limit=10)["rooms"]] == ["alpha", "beta"]


@pytest.mark.parametrize("store", ["sqlite"])
def test_membership_and_titles_survive_a_node_restart(
    start_node: StartNode, tmp_path: Any, store: str
) -> None:
    data_dir = str(tmp_path / "data")
    node = start_node(store=store, data_dir=data_dir)
    ann = node.client("ann")
    ann.ok("join", room="lobby")
    ann.ok("room.update", room="lobby", title="Kept")
    ann.ok("send", room="lobby", body="before")
    node.stop()
    again = start_node(store=store, data_dir=data_dir)
    data = again.client().connect(again.token("ann"))
    [entry] = data["conversations"]
    assert (entry["room"], entry["title"], entry["last"]["body"]) == ("lobby", "Kept", "before")
    bob = again.client("bob")
    bob.ok("join", room="lobby")
    device: Client = again.clients[-2]
    sent = bob.ok("send", room="lobby", body="after")
    assert device.event("msg", room="lobby", seq=sent["seq"])["body"] == "after"


SECRET = "membership-test-secret-0123456789abcdef"


@pytest.mark.process
def test_membership_title_and_partners_survive_kill_9(tmp_path: Path) -> None:
    tokens = TokenAuthority(SECRET)
    process = ServerProcess(tmp_path / "data", secret=SECRET)
    try:
        process.start()
        ann = Client(process.url)
        ann.connect(tokens.mint("ann"))
        ann.ok("join", room="kept")
        ann.ok("room.update", room="kept", topic="still here")
        ann.ok("send", to="bob", body="hi bob")
        ann.close()
        process.kill()
        process.start()
        back = Client(process.url)
        data = back.connect(tokens.mint("ann"))
        entries = {e.get("room") or e["with"]: e for e in data["conversations"]}
        assert entries["kept"]["topic"] == "still here"
        assert entries["bob"]["last"]["body"] == "hi bob"
        bob = Client(process.url)
        bob.connect(tokens.mint("bob"))
        bob.ok("join", room="kept")
        sent = bob.ok("send", room="kept", body="after the crash")
        assert back.event("msg", room="kept", seq=sent["seq"])["body"] == "after the crash"
        back.close()
        bob.close()
    finally:
        process.stop()


# -- the Python client ------------------------------------------------------------------------


def test_python_client_surfaces_the_inbox_as_joined_rooms_and_follows_other_devices(
    start_node: StartNode,
) -> None:
    node = start_node()
    ann = node.client("ann")
    ann.ok("join", room="lobby")
    ann.ok("send", room="lobby", body="hello")
    bob = node.client("bob")
    bob.ok("join", room="lobby")
    with AppClient(node.url, node.token("ann")) as app:
        app.connect()
        assert app.rooms == ("lobby",)
        [entry] = app.conversations
        assert (entry["room"], entry["seq"], entry["last"]["body"]) == ("lobby", 1, "hello")
        got: list[dict[str, Any]] = []
        app.on("msg", got.append)
        sent = bob.ok("send", room="lobby", body="live")
        wait_until(lambda: [m["seq"] for m in got] == [sent["seq"]], what="the live message")
        joined: list[dict[str, Any]] = []
        app.on("member", joined.append)
        ann.ok("join", room="team")
        wait_until(lambda: "team" in app.rooms, what="team joined on another device")
        assert joined[-1]["user"] == "ann"
        ann.ok("leave", room="lobby")
        wait_until(lambda: "lobby" not in app.rooms, what="lobby left on another device")


def test_python_client_pages_members_changes_a_title_and_searches_the_directory(
    start_node: StartNode,
) -> None:
    node = start_node()
    gone = node.client("cat")
    gone.ok("join", room="lobby")
    gone.close()
    with AppClient(node.url, node.token("ann")) as app:
        app.connect()
        app.join("lobby")
        members = app.members("lobby")["members"]
        assert [m["user"] for m in members] == ["ann", "cat"]
        assert members[0]["status"] == "online"
        assert app.update_room("lobby", title="Lobby", topic="hi") == {
            "room": "lobby",
            "title": "Lobby",
            "topic": "hi",
        }
        found = app.directory("lob")["rooms"]
        assert found == [{"room": "lobby", "title": "Lobby", "topic": "hi", "members": 2}]
        page = app.more_conversations(limit=1)
        assert page["conversations"][0]["title"] == "Lobby"


def test_a_refreshed_token_that_allows_a_kept_membership_subscribes_the_connection(
    start_node: StartNode,
) -> None:
    node = start_node()
    ann = node.client("ann")
    ann.ok("join", room="team:red")
    ann.close()
    limited = node.client()
    limited.connect(node.token("ann", rooms=["lobby"]))
    limited.ok("refresh", token=node.token("ann"))
    limited.ok("ping")  # subscribed before the connection handles its next command
    bob = node.client("bob")
    bob.ok("join", room="team:red")
    sent = bob.ok("send", room="team:red", body="welcome back")
    assert limited.event("msg", room="team:red", seq=sent["seq"])["body"] == "welcome back"


def test_connect_resumes_rooms_from_since_in_order_or_announces_a_gap(
    start_node: StartNode,
) -> None:
    node = start_node(replay_max_messages=3)
    ann = node.client("ann")
    epoch = ann.ok("join", room="lobby")["epoch"]
    ann.close()
    bob = node.client("bob")
    bob.ok("join", room="lobby")
    for n in range(2):
        bob.ok("send", room="lobby", body=f"m{n}")
    back = node.client()
    data = back.ok("connect", token=node.token("ann"), since={"lobby": 0}, epoch=epoch)
    assert data["epoch"] == epoch
    live = bob.ok("send", room="lobby", body="live")
    got = [back.event("msg", room="lobby")["seq"] for _ in range(3)]
    assert got == [1, 2, live["seq"]]  # the missed ones first, in order, then live
    for n in range(5):
        bob.ok("send", room="lobby", body=f"more {n}")
    again = node.client()
    again.ok("connect", token=node.token("ann"), since={"lobby": live["seq"]}, epoch=epoch)
    gap = again.event("gap", room="lobby")
    assert (gap["after"], gap["seq"]) == (live["seq"], live["seq"] + 5)
    other = node.client()
    other.ok("connect", token=node.token("ann"), since={"lobby": 0}, epoch="another")
    other.nothing_before_pong("gap")  # another epoch: since is ignored, nothing is replayed
    assert not queued(other, "msg")
    assert other.ok("join", room="lobby")["seq"] == live["seq"] + 5


def test_a_member_event_naming_a_seq_brings_what_was_stored_after_it_before_the_subscription(
    start_node: StartNode,
) -> None:
    """The application's add names the room's latest seq in the ``member`` event; a message
    stored after it but before the connection follows the event (nobody on this node was in the
    room to hear it) still reaches the connection."""
    node = start_node()
    ann = node.client("seq-ann")
    ann.ok("join", room="seq-own")
    node.node.publish("before", room="seq-room")  # seq 1: before the add
    node.node.publish("missed", room="seq-room")  # seq 2: nobody here follows the room yet
    delivery = NodeDelivery(node.node.ctx)
    delivery.user_event("seq-ann", self_member_frame("seq-room", "seq-ann", joined=True, seq=1))
    ann.event("member", room="seq-room", state="joined", seq=1)
    assert ann.event("msg", room="seq-room")["body"] == "missed"
    node.node.publish("live", room="seq-room")
    assert ann.event("msg", room="seq-room")["body"] == "live"
    assert not queued(ann, "msg", body="before")


def test_a_message_heard_while_its_room_actor_starts_waits_for_the_actor(
    start_node: StartNode,
) -> None:
    """Between a starting room actor's subscription and its registering, nobody else would
    take a message the node hears: it is parked with the joins, for the actor to take."""
    node = start_node()
    ctx = node.node.ctx
    state = RoomState.new("parked", ctx.config)
    state.starting = True
    ctx.directory.rooms["parked"] = state
    try:
        frame = WireFrame({"t": "msg", "room": "parked", "seq": 1})
        NodeDelivery(ctx).room_message("parked", 1, frame, None)
        assert [(type(m).__name__, m.seq) for m in state.waiting] == [("Publish", 1)]
    finally:
        del ctx.directory.rooms["parked"]
