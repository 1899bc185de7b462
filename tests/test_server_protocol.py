"""The wire protocol against a real node: rooms, messages, direct messages, encodings, errors.

Where a test proves that an event was *not* sent, it has the server send a later event that
must come after it (a message in the same room, a direct message on the same connection) and
checks that nothing came first: no timeouts to wait out.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import msgpack
import pytest

from actorim.protocol.wire import WireFrame
from actorim.runtime.delivery import NodeDelivery
from tests.support import Client, RunningNode, queued, read_frame


def _in_room(node: RunningNode, room: str, *users: str, json_frames: bool = False) -> list[Client]:
    clients = []
    for user in users:
        client = node.client(user, json_frames=json_frames)
        client.ok("join", room=room)
        clients.append(client)
    return clients


# -- join, leave and member events -------------------------------------------------------------


def test_join_replies_with_room_seq_members_and_epoch(server: RunningNode) -> None:
    (alice,) = _in_room(server, "lobby", "alice")
    alice.ok("send", room="lobby", body="one")
    bob = server.client("bob")
    data = bob.ok("join", room="lobby")
    assert data["room"] == "lobby"
    assert data["seq"] == 1
    assert sorted(data["members"]) == ["alice", "bob"]
    assert isinstance(data["epoch"], str) and data["epoch"]
    assert "recovered" not in data


def test_members_are_told_when_a_user_joins(server: RunningNode) -> None:
    (alice,) = _in_room(server, "lobby", "alice")
    _in_room(server, "lobby", "bob")
    event = alice.event("member")
    assert event == {"t": "member", "room": "lobby", "user": "bob", "state": "joined"}


def test_a_cluster_member_event_without_a_state_is_not_passed_to_members(
    server: RunningNode,
) -> None:
    """Member events from other nodes come through the delivery port as Redis hands them over:
    one whose state is missing or not a string reaches no member."""
    delivery = NodeDelivery(server.node.ctx)
    (alice,) = _in_room(server, "lobby", "alice")
    for bad in ({}, {"state": None}, {"state": 1}):
        frame = WireFrame({"t": "member", "room": "lobby", "user": "bob", **bad})
        delivery.member_event("lobby", frame, "bob")
    # The room handles its events in order: this one comes after the bad ones.
    frame = WireFrame({"t": "member", "room": "lobby", "user": "bob", "state": "joined"})
    delivery.member_event("lobby", frame, "bob")
    alice.event("member", user="bob", state="joined")
    assert queued(alice, "member") == []


def test_a_user_joining_with_a_second_connection_is_announced_once(server: RunningNode) -> None:
    (alice,) = _in_room(server, "lobby", "alice")
    bob1, bob2 = server.client("bob"), server.client("bob")
    bob1.ok("join", room="lobby")
    assert alice.event("member", user="bob")["state"] == "joined"
    assert sorted(bob2.ok("join", room="lobby")["members"]) == ["alice", "bob"]
    _in_room(server, "lobby", "carol")
    alice.event("member", user="carol", state="joined")
    bob1.event("member", user="carol", state="joined")
    assert queued(alice, "member", user="bob") == []
    assert queued(bob1, "member", user="bob") == []


def test_leave_on_one_device_ends_the_users_membership_announced_left_once(
    server: RunningNode,
) -> None:
    alice, bob1, bob2 = _in_room(server, "lobby", "alice", "bob", "bob")
    alice.event("member", user="bob", state="joined")
    assert bob1.ok("leave", room="lobby") == {}
    assert bob2.event("member", user="bob")["state"] == "left"  # bob's other device left too
    assert alice.event("member", user="bob") == {
        "t": "member",
        "room": "lobby",
        "user": "bob",
        "state": "left",
    }
    _in_room(server, "lobby", "carol")
    alice.event("member", user="carol", state="joined")
    assert queued(alice, "member", user="bob") == []


def test_closing_the_last_connection_in_a_room_announces_the_user_left(
    server: RunningNode,
) -> None:
    alice, bob = _in_room(server, "lobby", "alice", "bob")
    bob.close()
    assert alice.event("member", user="bob", state="left")["room"] == "lobby"


def test_leaving_a_room_not_joined_is_not_found(server: RunningNode) -> None:
    alice = server.client("alice")
    assert alice.error("leave", room="lobby")["code"] == "not_found"
    alice.ok("join", room="lobby")
    alice.ok("leave", room="lobby")
    assert alice.error("leave", room="lobby")["code"] == "not_found"


def test_sending_to_a_room_not_joined_is_forbidden(server: RunningNode) -> None:
    _in_room(server, "lobby", "bob")
    alice = server.client("alice")
    assert alice.error("send", room="lobby", body="hi")["code"] == "forbidden"
    alice.ok("join", room="lobby")
    alice.ok("leave", room="lobby")
    assert alice.error("send", room="lobby", body="hi")["code"] == "forbidden"


def test_a_connection_that_left_gets_no_more_messages_from_the_room(server: RunningNode) -> None:
    alice, bob = _in_room(server, "lobby", "alice", "bob")
    bob.ok("leave", room="lobby")
    alice.ok("send", room="lobby", body="after")
    alice.ok("send", to="bob", body="sentinel")
    assert bob.event("msg")["body"] == "sentinel"


# -- room messages -----------------------------------------------------------------------------


def test_send_replies_with_mid_seq_and_ts(server: RunningNode) -> None:
    (alice,) = _in_room(server, "lobby", "alice")
    before = int(time.time() * 1000)
    data = alice.ok("send", room="lobby", body="hi")
    after = int(time.time() * 1000)
    assert set(data) == {"mid", "seq", "ts"}
    assert isinstance(data["mid"], str) and data["mid"]
    assert data["seq"] == 1
    assert before <= data["ts"] <= after


def test_seq_increases_by_one_per_message_in_each_room(server: RunningNode) -> None:
    alice, bob = _in_room(server, "lobby", "alice", "bob")
    seqs = []
    for n in range(6):
        sender = alice if n % 2 else bob
        seqs.append(sender.ok("send", room="lobby", body=n)["seq"])
    assert seqs == [1, 2, 3, 4, 5, 6]
    alice.ok("join", room="other")
    assert alice.ok("send", room="other", body="x")["seq"] == 1
    assert [bob.event("msg")["seq"] for _ in range(3)] == [2, 4, 6]


def test_a_room_message_reaches_every_other_connection_but_not_the_sending_one(
    server: RunningNode,
) -> None:
    alice1, alice2, bob, carol = _in_room(server, "lobby", "alice", "alice", "bob", "carol")
    outsider = server.client("dave")
    sent = alice1.ok("send", room="lobby", body="hi")
    expected = {
        "t": "msg",
        "mid": sent["mid"],
        "seq": sent["seq"],
        "room": "lobby",
        "from": "alice",
        "kind": "text",
        "body": "hi",
        "ts": sent["ts"],
    }
    for member in (alice2, bob, carol):
        assert member.event("msg") == expected
    bob.ok("send", room="lobby", body="sentinel")
    assert alice1.event("msg")["body"] == "sentinel"
    bob.ok("send", to="dave", body="sentinel")
    assert outsider.event("msg")["body"] == "sentinel"


def test_a_from_field_written_by_the_client_is_ignored(server: RunningNode) -> None:
    alice, bob = _in_room(server, "lobby", "alice", "bob")
    alice.ok("send", room="lobby", body="it was me", **{"from": "mallory"})
    assert bob.event("msg")["from"] == "alice"


def test_kind_defaults_to_text_and_a_custom_kind_is_kept(server: RunningNode) -> None:
    alice, bob = _in_room(server, "lobby", "alice", "bob")
    alice.ok("send", room="lobby", body="plain")
    alice.ok("send", room="lobby", body={"w": 640}, kind="image")
    assert bob.event("msg")["kind"] == "text"
    assert bob.event("msg")["kind"] == "image"


def test_the_cid_is_echoed_in_the_message_only_when_given(server: RunningNode) -> None:
    alice, bob = _in_room(server, "lobby", "alice", "bob")
    alice.ok("send", room="lobby", body="with", cid="client-42")
    alice.ok("send", room="lobby", body="without")
    assert bob.event("msg")["cid"] == "client-42"
    assert "cid" not in bob.event("msg")


BODIES: list[Any] = [
    pytest.param("héllo ✓", id="text"),
    pytest.param(b"\x00\xffbinary", id="bytes"),
    pytest.param({"text": "hi", "nested": {"list": [1, None, True]}, "x": 1.5}, id="map"),
    pytest.param([1, "two", None, False, {"k": "v"}], id="list"),
    pytest.param(42, id="int"),
    pytest.param(-3.25, id="float"),
]


@pytest.mark.parametrize("body", BODIES)
def test_a_body_reaches_msgpack_and_json_members_unchanged(server: RunningNode, body: Any) -> None:
    alice, bob = _in_room(server, "lobby", "alice", "bob")
    (carol,) = _in_room(server, "lobby", "carol", json_frames=True)
    alice.ok("send", room="lobby", body=body)
    assert bob.event("msg")["body"] == body
    if isinstance(body, bytes):
        assert carol.event("msg")["body"] == {"$bytes": base64.b64encode(body).decode()}
    else:
        assert carol.event("msg")["body"] == body


def test_bytes_sent_by_a_json_client_reach_a_msgpack_client_as_binary(
    server: RunningNode,
) -> None:
    (alice,) = _in_room(server, "lobby", "alice", json_frames=True)
    (bob,) = _in_room(server, "lobby", "bob")
    alice.ok("send", room="lobby", body={"$bytes": base64.b64encode(b"\x01\x02").decode()})
    assert bob.event("msg")["body"] == b"\x01\x02"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        pytest.param({"n": {1: "one", "1": "uno"}}, 'the key 1 and the key "1"', id="1 and '1'"),
        pytest.param({"$bytes": "AAH/"}, "as bytes", id="bytes form"),
    ],
)
def test_a_msgpack_map_that_json_members_would_misread_is_a_bad_request_and_never_relayed(
    server: RunningNode, body: Any, problem: str
) -> None:
    (alice, bob) = _in_room(server, "lobby", "alice", "bob")
    (carol,) = _in_room(server, "lobby", "carol", json_frames=True)
    error = alice.error("send", room="lobby", body=body)
    assert error["code"] == "bad_request"
    assert problem in error["message"]
    # The next message is the first either member gets: the refused one went nowhere.
    alice.ok("send", room="lobby", body="after")
    assert bob.event("msg")["body"] == "after"
    assert carol.event("msg")["body"] == "after"


def test_refused_ambiguous_maps_count_against_the_rate_limit(
    start_node: Callable[..., RunningNode],
) -> None:
    node = start_node(rate=0.001, burst=3)
    alice = node.client("alice")  # connect takes the first token of the burst
    body = {1: "one", "1": "uno"}
    codes = [alice.error("send", to="bob", body=body)["code"] for _ in range(3)]
    assert codes == ["bad_request", "bad_request", "rate_limited"]


def test_json_and_msgpack_members_get_the_same_event(server: RunningNode) -> None:
    (alice,) = _in_room(server, "lobby", "alice")
    (bob,) = _in_room(server, "lobby", "bob", json_frames=True)
    (carol,) = _in_room(server, "lobby", "carol")
    carol.ok("send", room="lobby", body={"text": "same", "n": [1, 2.5]}, kind="note", cid="c1")
    assert alice.event("msg") == bob.event("msg")


def test_a_connection_answers_in_the_encoding_of_its_first_frame(server: RunningNode) -> None:
    speaks_json = server.client(json_frames=True)
    speaks_json.send_obj({"t": "connect", "id": 1, "token": server.token("alice")})
    binary, payload = read_frame(speaks_json)
    assert not binary
    assert json.loads(payload)["data"]["user"] == "alice"
    speaks_json.ws.send_binary(msgpack.packb({"t": "ping", "id": 2}))
    binary, payload = read_frame(speaks_json)
    assert not binary
    assert json.loads(payload) == {"t": "reply", "id": 2, "ok": True, "data": {}}

    speaks_msgpack = server.client()
    speaks_msgpack.send_obj({"t": "connect", "id": 1, "token": server.token("bob")})
    binary, payload = read_frame(speaks_msgpack)
    assert binary
    assert msgpack.unpackb(payload)["data"]["user"] == "bob"
    speaks_msgpack.ws.send(json.dumps({"t": "ping", "id": 2}))
    binary, payload = read_frame(speaks_msgpack)
    assert binary
    assert msgpack.unpackb(payload) == {"t": "reply", "id": 2, "ok": True, "data": {}}


# -- direct messages ---------------------------------------------------------------------------


def test_a_direct_message_reaches_the_recipients_connections_and_the_senders_other_ones(
    server: RunningNode,
) -> None:
    alice1, alice2 = server.client("alice"), server.client("alice")
    bob1, bob2 = server.client("bob"), server.client("bob")
    carol = server.client("carol")
    sent = alice1.ok("send", to="bob", body="psst", cid="dm-1")
    expected = {
        "t": "msg",
        "mid": sent["mid"],
        "seq": sent["seq"],
        "to": "bob",
        "from": "alice",
        "kind": "text",
        "body": "psst",
        "ts": sent["ts"],
        "cid": "dm-1",
    }
    for client in (bob1, bob2, alice2):
        assert client.event("msg") == expected
    bob1.ok("send", to="alice", body="sentinel")
    assert alice1.event("msg")["body"] == "sentinel"
    bob1.ok("send", to="carol", body="sentinel")
    assert carol.event("msg")["body"] == "sentinel"


def test_a_note_to_oneself_reaches_the_other_connections_but_not_the_sending_one(
    server: RunningNode,
) -> None:
    alice1, alice2 = server.client("alice"), server.client("alice")
    sent = alice1.ok("send", to="alice", body="remember the milk")
    msg = alice2.event("msg")
    assert (msg["mid"], msg["to"], msg["from"]) == (sent["mid"], "alice", "alice")
    server.client("bob").ok("send", to="alice", body="sentinel")
    assert alice1.event("msg")["body"] == "sentinel"
    alice2.event("msg", body="sentinel")
    assert queued(alice2, "msg", mid=sent["mid"]) == []


def test_direct_messages_are_numbered_per_conversation(server: RunningNode) -> None:
    alice, bob, carol = server.client("alice"), server.client("bob"), server.client("carol")
    assert alice.ok("send", to="bob", body=1)["seq"] == 1
    assert bob.ok("send", to="alice", body=2)["seq"] == 2
    assert alice.ok("send", to="carol", body=3)["seq"] == 1
    assert alice.ok("send", to="bob", body=4)["seq"] == 3
    assert [bob.event("msg")["seq"] for _ in range(2)] == [1, 3]
    assert carol.event("msg")["seq"] == 1


def test_a_direct_message_to_an_offline_user_arrives_when_they_connect(
    server: RunningNode,
) -> None:
    alice = server.client("alice")
    sent = alice.ok("send", to="bob", body="while you were out")
    bob = server.client("bob")
    msg = bob.event("msg")
    assert (msg["mid"], msg["from"], msg["body"]) == (sent["mid"], "alice", "while you were out")


def test_an_acknowledged_direct_message_is_not_delivered_again(server: RunningNode) -> None:
    alice = server.client("alice")
    first = alice.ok("send", to="bob", body="first")
    bob = server.client("bob")
    assert bob.event("msg")["mid"] == first["mid"]
    bob.ok("ack", mid=first["mid"])
    bob.close()
    again = server.client("bob")
    alice.ok("send", to="bob", body="second")
    assert again.event("msg")["body"] == "second"


def test_ack_and_read_send_receipts_to_the_sender(server: RunningNode) -> None:
    alice, bob = server.client("alice"), server.client("bob")
    sent = alice.ok("send", to="bob", body="hello")
    mid = bob.event("msg")["mid"]
    assert mid == sent["mid"]
    assert bob.ok("ack", mid=mid) == {}
    receipt = alice.event("receipt")
    assert receipt == {"t": "receipt", "mid": mid, "by": "bob", "status": "delivered"}
    assert bob.ok("ack", mid=mid) == {}
    assert bob.ok("read", mid=mid) == {}
    assert alice.event("receipt") == {"t": "receipt", "mid": mid, "by": "bob", "status": "read"}


def test_ack_of_an_unknown_message_is_answered_and_sends_no_receipt(server: RunningNode) -> None:
    alice, bob = server.client("alice"), server.client("bob")
    assert bob.ok("ack", mid="0000000000000000zz") == {}
    sent = alice.ok("send", to="bob", body="x")
    bob.event("msg")
    bob.ok("read", mid=sent["mid"])
    assert alice.event("receipt")["mid"] == sent["mid"]


# -- history and catching up -------------------------------------------------------------------


def test_history_pages_through_a_room_in_seq_order(server: RunningNode) -> None:
    (alice,) = _in_room(server, "lobby", "alice")
    for n in range(1, 6):
        alice.ok("send", room="lobby", body=n)
    latest = alice.ok("history", room="lobby", limit=2)
    assert [m["seq"] for m in latest["messages"]] == [4, 5]
    assert latest["more"] is True
    older = alice.ok("history", room="lobby", before=4, limit=10)
    assert [m["body"] for m in older["messages"]] == [1, 2, 3]
    assert older["more"] is False
    newer = alice.ok("history", room="lobby", after=3)
    assert [m["seq"] for m in newer["messages"]] == [4, 5]
    message = newer["messages"][0]
    assert (message["t"], message["room"], message["from"], message["kind"]) == (
        "msg",
        "lobby",
        "alice",
        "text",
    )


def test_history_with_a_user_reads_the_direct_conversation(server: RunningNode) -> None:
    alice, bob = server.client("alice"), server.client("bob")
    alice.ok("send", to="bob", body="a")
    bob.ok("send", to="alice", body="b")
    alice.ok("send", to="carol", body="elsewhere")
    page = bob.ok("history", **{"with": "alice"})
    assert [(m["from"], m["body"]) for m in page["messages"]] == [("alice", "a"), ("bob", "b")]


def test_join_since_replays_the_messages_after_that_seq(server: RunningNode) -> None:
    (alice,) = _in_room(server, "lobby", "alice")
    epoch = server.client("carol").ok("join", room="lobby")["epoch"]
    for n in range(1, 4):
        alice.ok("send", room="lobby", body=n)
    bob = server.client("bob")
    data = bob.ok("join", room="lobby", since=1, epoch=epoch)
    assert data["recovered"] is True
    assert data["seq"] == 3
    assert [bob.event("msg")["body"] for _ in range(2)] == [2, 3]


# -- frames that are not good commands -----------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param([1, 2, 3], id="a list"),
        pytest.param("ping", id="a string"),
        pytest.param({"t": "ping"}, id="no id"),
        pytest.param({"t": "ping", "id": "7"}, id="a string id"),
        pytest.param({"t": "ping", "id": 1.5}, id="a float id"),
        pytest.param({"t": "ping", "id": True}, id="a boolean id"),
    ],
)
@pytest.mark.parametrize("json_frames", [False, True], ids=["msgpack", "json"])
def test_a_frame_that_is_not_a_command_gets_an_error_event_and_the_connection_stays(
    server: RunningNode, frame: Any, json_frames: bool
) -> None:
    alice = server.client("alice", json_frames=json_frames)
    alice.send_obj(frame)
    event = alice.event("error")
    assert event["error"]["code"] == "bad_request"
    assert alice.ok("ping") == {}


@pytest.mark.parametrize(
    ("command", "args", "field"),
    [
        pytest.param("join", {"room": ""}, "room", id="empty room"),
        pytest.param("join", {"room": "has space"}, "room", id="room with a space"),
        pytest.param("join", {}, "room", id="missing room"),
        pytest.param("join", {"room": "lobby", "since": -1}, "since", id="negative since"),
        pytest.param("send", {"room": "lobby"}, "body", id="missing body"),
        pytest.param("send", {"room": "lobby", "to": "bob", "body": 1}, "room", id="two targets"),
        pytest.param("send", {"to": "bob", "body": 1, "kind": 7}, "kind", id="numeric kind"),
        pytest.param("history", {"room": "lobby", "limit": 0}, "limit", id="zero limit"),
        pytest.param("watch", {"users": "bob"}, "users", id="users not a list"),
        pytest.param("ack", {}, "mid", id="missing mid"),
        pytest.param("debug.crash", {"what": "everything"}, "what", id="unknown crash target"),
    ],
)
def test_a_bad_field_is_a_bad_request_naming_the_field_and_the_connection_stays(
    server: RunningNode, command: str, args: dict[str, Any], field: str
) -> None:
    alice = server.client("alice")
    error = alice.error(command, **args)
    assert error["code"] == "bad_request"
    assert f"'{field}'" in error["message"]
    assert alice.ok("ping") == {}


def test_an_unknown_command_is_a_bad_request_and_the_connection_stays(
    server: RunningNode,
) -> None:
    alice = server.client("alice")
    error = alice.error("teleport", room="lobby")
    assert error["code"] == "bad_request"
    assert "teleport" in error["message"]
    assert alice.ok("ping") == {}


def test_commands_sent_without_waiting_are_answered_in_order(server: RunningNode) -> None:
    alice = server.client()
    alice.send_obj({"t": "connect", "id": 1, "token": server.token("alice")})
    alice.send_obj({"t": "join", "id": 2, "room": "lobby"})
    for command_id in range(3, 23):
        alice.send_obj({"t": "send", "id": command_id, "room": "lobby", "body": command_id})
    assert alice.reply_to(1)["data"]["user"] == "alice"
    assert alice.reply_to(2)["data"]["room"] == "lobby"
    seqs = [alice.reply_to(command_id)["data"]["seq"] for command_id in range(3, 23)]
    assert seqs == list(range(1, 21))


def test_ping_replies_with_an_empty_map(server: RunningNode) -> None:
    assert server.client("alice").ok("ping") == {}


def test_debug_crash_is_a_bad_request_without_fault_injection(
    start_node: Callable[..., RunningNode],
) -> None:
    node = start_node()
    alice = node.client("alice")
    alice.ok("join", room="lobby")
    for what in ("connection", "presence", "store"):
        assert alice.error("debug.crash", what=what)["code"] == "bad_request"
    assert alice.error("debug.crash", what="room", room="lobby")["code"] == "bad_request"
    assert alice.ok("send", room="lobby", body="still here")["seq"] == 1
