"""The shortest path through the server: two users chat in a room and directly."""

from tests.support import RunningNode


def test_two_users_chat_in_a_room_and_directly(server: RunningNode) -> None:
    alice = server.client("alice")
    bob = server.client("bob", json_frames=True)
    assert alice.ok("join", room="lobby")["members"] == ["alice"]
    assert sorted(bob.ok("join", room="lobby")["members"]) == ["alice", "bob"]
    assert alice.event("member")["user"] == "bob"
    sent = alice.ok("send", room="lobby", body="hi")
    msg = bob.event("msg")
    assert (msg["mid"], msg["seq"], msg["from"], msg["body"]) == (sent["mid"], 1, "alice", "hi")
    bob.ok("send", to="alice", body={"x": 1})
    dm = alice.event("msg")
    assert dm["to"] == "alice" and dm["from"] == "bob" and dm["body"] == {"x": 1}
