"""Limits and bad input against a real node: the offender gets its code, everyone else chats on."""

from __future__ import annotations

import json
import random
from collections.abc import Callable

import gevent
import msgpack
import pytest

from tests.support import (
    OPCODE_BINARY,
    OPCODE_CLOSE,
    OPCODE_PING,
    OPCODE_TEXT,
    Client,
    RawWebSocket,
    RunningNode,
    masked_frame,
    wait_until,
)

StartNode = Callable[..., RunningNode]


def chatting_pair(node: RunningNode, room: str = "lobby") -> tuple[Client, Client]:
    """Two users in ``room`` who have exchanged a message."""
    alice = node.client("alice")
    bob = node.client("bob")
    alice.ok("join", room=room)
    bob.ok("join", room=room)
    assert alice.event("member", room=room)["user"] == "bob"
    assert_still_chatting(alice, bob, room)
    return alice, bob


def assert_still_chatting(alice: Client, bob: Client, room: str = "lobby") -> None:
    """Both directions of the room work, each message once and in order."""
    sent = alice.ok("send", room=room, body="ping from alice")
    assert bob.event("msg", room=room)["mid"] == sent["mid"]
    sent = bob.ok("send", room=room, body="pong from bob")
    assert alice.event("msg", room=room)["mid"] == sent["mid"]


# -- frames the server cannot take ------------------------------------------------------------


def test_frame_over_max_frame_size_closes_1009_and_others_keep_chatting(
    start_node: StartNode,
) -> None:
    node = start_node(max_frame_size=1024)
    alice, bob = chatting_pair(node)
    offender = node.client("mallory")
    offender.ok("join", room="lobby")
    offender.send_obj({"t": "send", "id": 99, "room": "lobby", "body": "x" * 2000})
    assert offender.wait_closed().code == 1009
    assert_still_chatting(alice, bob)


@pytest.mark.parametrize(
    ("frame", "text"),
    [(b"\xc1", False), (b"\x82\xa1t", False), ('{"t": "ping", "id": 1', True), ("[1,]", True)],
    ids=["never-used-msgpack-byte", "truncated-msgpack", "unterminated-json", "trailing-comma"],
)
def test_undecodable_frame_closes_1007_with_a_reason_and_others_keep_chatting(
    start_node: StartNode, frame: bytes | str, text: bool
) -> None:
    node = start_node()
    alice, bob = chatting_pair(node)
    offender = node.client("mallory", json_frames=text)
    if text:
        offender.ws.send(frame)
    else:
        offender.ws.send_binary(frame)
    closed = offender.wait_closed()
    assert closed.code == 1007
    assert closed.reason
    assert_still_chatting(alice, bob)


# -- the rate limit ---------------------------------------------------------------------------


def test_commands_past_the_burst_get_rate_limited_and_the_connection_stays(
    start_node: StartNode,
) -> None:
    node = start_node(rate=5, burst=5)
    alice, bob = chatting_pair(node)
    eager = node.client("carol")  # connect took one token of the five
    ids = [next(eager.ids) for _ in range(10)]
    for command_id in ids:
        eager.send_obj({"t": "ping", "id": command_id})
    replies = [eager.reply_to(command_id) for command_id in ids]
    allowed = [r["ok"] for r in replies]
    assert allowed[:4] == [True] * 4
    refused = [r for r in replies if not r["ok"]]
    assert len(refused) >= 5
    assert {r["error"]["code"] for r in refused} == {"rate_limited"}
    # Refusals come after the burst, not interleaved with it at random.
    first_refusal = allowed.index(False)
    assert all(not ok for ok in allowed[first_refusal : first_refusal + 5])
    wait_until(lambda: eager.request("ping")["ok"], interval=0.05, what="a token to come back")
    assert_still_chatting(alice, bob)


def test_a_flood_of_commands_is_closed_1008_and_others_keep_chatting(
    start_node: StartNode,
) -> None:
    node = start_node(rate=5, burst=5, rate_abuse_rejections=20, rate_abuse_window=10)
    alice, bob = chatting_pair(node)
    flooder = RawWebSocket(node.host, node.port)
    flooder.ok("connect", token=node.token("mallory"))
    flooder.sock.sendall(
        b"".join(
            masked_frame(OPCODE_BINARY, msgpack.packb({"t": "ping", "id": 100 + i}))
            for i in range(200)
        )
    )
    assert flooder.wait_closed() == 1008
    flooder.close()
    assert_still_chatting(alice, bob)


# -- per-connection, per-user and per-room limits -------------------------------------------


def test_joining_past_max_rooms_per_user_is_refused(start_node: StartNode) -> None:
    node = start_node(max_rooms_per_user=2)
    alice, bob = chatting_pair(node)
    carol = node.client("carol")
    carol.ok("join", room="a")
    carol.ok("join", room="b")
    error = carol.error("join", room="c")
    assert error["code"] == "too_many_rooms"
    assert "2 rooms" in error["message"]
    carol.ok("leave", room="a")
    carol.ok("join", room="c")
    assert_still_chatting(alice, bob)


def test_a_connection_past_max_connections_per_user_replaces_the_one_heard_from_least_recently(
    start_node: StartNode,
) -> None:
    node = start_node(max_connections_per_user=2)
    alice, bob = chatting_pair(node)
    stale = node.client("alice")  # connected after alice, then silent: a client already gone
    alice.ok("ping")
    newest = node.client("alice")
    closed = stale.wait_closed()
    assert closed.code == 4009
    assert closed.reason == "replaced by a newer connection of 'alice': at most 2 at once"
    assert_still_chatting(alice, bob)
    newest.ok("join", room="lobby")
    sent = bob.ok("send", room="lobby", body="to both of alice's connections")
    assert newest.event("msg", mid=sent["mid"])["body"] == "to both of alice's connections"
    assert alice.event("msg")["mid"] == sent["mid"]


def test_joining_a_room_at_max_members_per_room_is_forbidden(start_node: StartNode) -> None:
    node = start_node(max_members_per_room=2)
    alice, bob = chatting_pair(node)
    carol = node.client("carol")
    error = carol.error("join", room="lobby")
    assert error["code"] == "forbidden"
    assert "full" in error["message"]
    carol.error("send", room="lobby", body="not a member")
    alice.nothing_before_pong("member")
    assert_still_chatting(alice, bob)
    carol.ok("join", room="elsewhere")


# -- a slow consumer --------------------------------------------------------------------------

FLOOD_MESSAGES = 120
FLOOD_BODY = "x" * 40_000  # 120 x 40 KB = 4.8 MB: more than a loopback socket buffers


def test_slow_consumer_is_closed_and_nobody_else_waits_for_it(start_node: StartNode) -> None:
    node = start_node(outbox_max_frames=16, outbox_max_bytes=256 * 1024, rate=10_000, burst=10_000)
    slow = RawWebSocket(node.host, node.port, rcvbuf=4096)
    slow.ok("connect", token=node.token("sloth"))
    slow.ok("join", room="flood")
    directory = node.node.ctx.directory
    [slow_link] = [link for link in directory.links.values() if link.user == "sloth"]
    sender = node.client("alice")
    fast = [node.client("bob"), node.client("carol")]
    for client in (sender, *fast):
        client.ok("join", room="flood")

    def receive_all(client: Client) -> list[int]:
        return [client.event("msg", room="flood")["seq"] for _ in range(FLOOD_MESSAGES)]

    readers = [gevent.spawn(receive_all, client) for client in fast]
    seqs = [sender.ok("send", room="flood", body=FLOOD_BODY)["seq"] for _ in range(FLOOD_MESSAGES)]
    assert seqs == sorted(seqs) and len(set(seqs)) == FLOOD_MESSAGES
    for reader in readers:
        assert reader.get(timeout=10) == seqs
    wait_until(slow_link.done.is_set, what="the slow consumer to be closed")
    assert slow.wait_closed() in (1013, None)
    assert "sloth" not in directory.by_user
    assert slow_link not in directory.rooms["flood"].members
    slow.close()


# -- garbage -------------------------------------------------------------------------------


def _nested_msgpack(depth: int) -> bytes:
    return b"\x91" * depth + b"\xc0"


def _deep_send(depth: int) -> bytes:
    body: list[object] = []
    for _ in range(depth):
        body = [body]
    return msgpack.packb({"t": "send", "id": 1, "room": "lobby", "body": body})


def _garbage_frames() -> list[tuple[int, bytes]]:
    """Frames no client should send: undecodable, too deep, out of range, wrongly typed."""
    rng = random.Random(1729)
    frames: list[tuple[int, bytes]] = [
        (OPCODE_BINARY, bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))))
        for _ in range(12)
    ]
    frames += [
        (OPCODE_BINARY, _nested_msgpack(50_000)),
        (OPCODE_BINARY, _nested_msgpack(200_000)),  # past max_frame_size too
        (OPCODE_BINARY, _deep_send(40)),
        (OPCODE_BINARY, b"\xcf" + b"\xff" * 8),  # the largest uint64, not a map
        (OPCODE_BINARY, b"\xd3" + b"\x80" + b"\x00" * 7),  # the smallest int64
        (OPCODE_BINARY, msgpack.packb(None)),
        (OPCODE_BINARY, msgpack.packb([1, 2, 3])),
        (OPCODE_BINARY, msgpack.packb({"t": 5, "id": "one"})),
        (OPCODE_BINARY, msgpack.packb({"t": "join", "id": 2, "room": ["a", "b"]})),
        (OPCODE_BINARY, msgpack.packb({"t": "send", "id": 3, "room": "lobby", "kind": 7})),
        (OPCODE_BINARY, msgpack.packb({"t": "history", "id": 4, "room": "lobby", "limit": -1})),
        (OPCODE_BINARY, msgpack.packb({"t": "debug.crash", "id": 5, "what": "node"})),
        (OPCODE_BINARY, msgpack.packb({b"\xff": 1, "t": "ping", "id": 6})),
        (OPCODE_BINARY, msgpack.packb({"t": "ping", "id": 2**64 - 1})),
        (OPCODE_BINARY, msgpack.packb({"t": "ping", "id": -(2**63)})),
        (OPCODE_BINARY, msgpack.packb({"t": "ping", "id": 7, "x": msgpack.ExtType(5, b"e")})),
        (OPCODE_BINARY, b"\xd4\x05\x00"),  # an extension type as the whole frame
        (OPCODE_TEXT, b'{"t": "ping", "id": 123456789012345678901234567890}'),
        (OPCODE_TEXT, b'{"t": "send", "id": 1, "room": "lobby", "body": 1e999}'),
        (OPCODE_TEXT, b'{"t": "ping", "id": 1, "x": "\\ud800"}'),
        (OPCODE_TEXT, ("[" * 5000 + "]" * 5000).encode()),
        (OPCODE_TEXT, json.dumps({"t": "connect", "id": 1, "token": 42}).encode()),
        (
            OPCODE_TEXT,
            json.dumps({"t": "join", "id": 1, "room": "", "since": "yesterday"}).encode(),
        ),
        (OPCODE_TEXT, b'{"$bytes": "not base64!"}'),
        (0x3, b"reserved opcode"),
        (OPCODE_PING, b"x" * 126),  # a control frame over 125 bytes
    ]
    return frames


def _throw(node: RunningNode, opcode: int, payload: bytes, user: str | None) -> None:
    """Send one garbage frame (after connecting or not), see what happens, then vanish."""
    raw = RawWebSocket(node.host, node.port)
    try:
        if user is not None:
            raw.ok("connect", token=node.token(user))
        raw.send_frame(opcode, payload)
        raw.send_frame(OPCODE_BINARY, msgpack.packb({"t": "ping", "id": 999}))
        while (frame := raw.read_frame()) is not None and frame[0] != OPCODE_CLOSE:
            if _is_reply_to(999, *frame):
                break  # the connection survived the garbage and answered the ping
    except (ConnectionError, OSError):
        pass  # the server may reset a connection it has closed; that is an answer too
    finally:
        raw.close()


def _is_reply_to(command_id: int, opcode: int, payload: bytes) -> bool:
    if opcode == OPCODE_BINARY:
        frame = msgpack.unpackb(payload, raw=False)
    elif opcode == OPCODE_TEXT:
        frame = json.loads(payload)
    else:
        return False
    return frame.get("t") == "reply" and frame.get("id") == command_id


def test_no_garbage_crashes_the_server_or_leaks_a_connection(start_node: StartNode) -> None:
    node = start_node(fault_injection=True, max_members_per_room=5)
    alice, bob = chatting_pair(node)
    throwers = [
        gevent.spawn(_throw, node, opcode, payload, user)
        for i, (opcode, payload) in enumerate(_garbage_frames())
        for user in (None, f"mallory{i}")
    ]
    gevent.joinall(throwers, timeout=10, raise_error=True)
    assert all(t.dead for t in throwers)

    newcomer = node.client("carol")
    newcomer.ok("join", room="lobby")
    for sender, receivers in ((alice, (bob, newcomer)), (newcomer, (alice, bob))):
        sent = sender.ok("send", room="lobby", body="still here")
        for receiver in receivers:
            assert receiver.event("msg", room="lobby")["mid"] == sent["mid"]

    ctx = node.node.ctx
    connections = ctx.refs.connections
    assert connections is not None

    def back_to_live_count() -> bool:
        counts = connections.proxy().count_children().get(timeout=5)
        return len(ctx.directory.links) == 3 and counts["specs"] == counts["active"] == 3

    wait_until(back_to_live_count, what="every garbage connection to be gone")
    assert set(ctx.directory.by_user) == {"alice", "bob", "carol"}
