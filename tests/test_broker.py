"""The Broker seam: what the actors publish reaches the same connections whichever broker the
node holds, the local one (one node) or the Redis one (a cluster).

These tests publish an ephemeral room event through the node's broker directly, as the
``typing`` command's handler does, to prove the seam itself; the command end to end is
tests/test_typing.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from gevent.event import Event
from gevent.queue import Queue

from actorim.local.broker import LocalBroker
from actorim.protocol.wire import WireFrame
from actorim.redis.broker import RedisBroker
from actorim.redis.link import ClusterLink
from actorim.redis.listener import ListenerActor
from tests.support import Client, RunningNode, queued


def typing_frame(user: str) -> WireFrame:
    return WireFrame({"t": "typing", "room": "r", "user": user})


def assert_ephemeral_reaches_all_but_origin(
    publisher: RunningNode, alice: Client, others: list[Client]
) -> None:
    """``alice`` (on ``publisher``) types in room ``r``: every other member hears it, she does
    not, and nothing is stored (the next message still has seq 1)."""
    [origin] = publisher.node.ctx.directory.links_of("alice")
    publisher.node.ctx.broker.publish_ephemeral("r", typing_frame("alice"), origin)
    for other in others:
        assert other.event("typing", room="r")["user"] == "alice"
    # A barrier on the same path (the room's fan-out, through the broker): a message sent after
    # the event reaches alice after it would have.
    sent = others[0].ok("send", room="r", body="after")
    assert sent["seq"] == 1, "the ephemeral event took a seq"
    alice.event("msg", room="r", seq=1)
    assert not queued(alice, "typing"), "the origin got its own ephemeral event back"
    assert [m["seq"] for m in alice.ok("history", room="r")["messages"]] == [1]


def test_on_one_node_an_ephemeral_room_event_reaches_every_member_but_its_origin(
    start_node: Callable[..., RunningNode],
) -> None:
    node = start_node()
    assert isinstance(node.node.ctx.broker, LocalBroker)
    alice, bob, carol = (node.client(u) for u in ("alice", "bob", "carol"))
    for client in (alice, bob, carol):
        client.ok("join", room="r")
    assert_ephemeral_reaches_all_but_origin(node, alice, [bob, carol])


def test_in_a_cluster_an_ephemeral_room_event_reaches_members_on_every_node_but_its_origin(
    start_node: Callable[..., RunningNode], redis_session: Any, tmp_path: Path
) -> None:
    url = f"redis://127.0.0.1:{redis_session.port}/0"
    namespace = f"broker-{tmp_path.name}"  # the session's Redis is shared: a name of its own
    here = start_node(redis_url=url, redis_namespace=namespace)
    there = start_node(redis_url=url, redis_namespace=namespace)
    assert isinstance(here.node.ctx.broker, RedisBroker)
    alice, bob = here.client("alice"), here.client("bob")
    carol = there.client("carol")
    for client in (alice, bob, carol):
        client.ok("join", room="r")
    assert_ephemeral_reaches_all_but_origin(here, alice, [carol, bob])


class RecordingDelivery:
    """A ``ports.Delivery`` that records each call: what the Redis listener hands the runtime,
    seen with no runtime behind it."""

    def __init__(self, links: dict[int, Any]) -> None:
        self.calls: Queue[tuple[Any, ...]] = Queue()
        self._links = links

    def room_message(self, room: str, seq: int, frame: WireFrame, origin: Any) -> None:
        self.calls.put(("room_message", room, seq, frame.obj, origin))

    def room_event(self, room: str, frame: WireFrame, origin: Any) -> None:
        self.calls.put(("room_event", room, frame.obj, origin))

    def user_event(
        self, user: str, frame: WireFrame, *, mid: str | None = None, origin: Any = None
    ) -> None:
        self.calls.put(("user_event", user, frame.obj, mid, origin))

    def member_event(self, room: str, frame: WireFrame, user: str | None) -> None:
        self.calls.put(("member_event", room, frame.obj["t"], user))

    def presence_event(self, frame: WireFrame, user: str | None) -> None:
        self.calls.put(("presence_event", frame.obj["status"], user))

    def local_origin(self, conn_id: int) -> Any:
        return self._links.get(conn_id)


def test_the_redis_listener_hands_what_it_hears_to_the_delivery_port(
    redis_session: Any, tmp_path: Path
) -> None:
    """The adapter names no runtime actor or link: an ephemeral room event (its origin resolved
    by the port when it is this node's connection), a user's event, and the member and presence
    announcements of the Lua scripts all reach the runtime as ``Delivery`` calls."""
    url = f"redis://127.0.0.1:{redis_session.port}/0"
    link = ClusterLink(url, "here", namespace=f"listener-{tmp_path.name}")
    origin = SimpleNamespace(conn_id=7)
    delivery = RecordingDelivery({7: origin})
    # Wanted before it starts: the listener subscribes to them as it connects, and the link is
    # healthy (it calls its recovery steps) once every subscription is confirmed.
    link.wanted[link.keys.room_channel("r")] = 1
    link.wanted[link.keys.user_channel("bob")] = 1
    subscribed = Event()
    link.on_recovered.append(subscribed.set)
    ref = ListenerActor.start(delivery, link)
    try:
        assert subscribed.wait(timeout=5), "the listener did not subscribe"
        typing = {"t": "typing", "room": "r", "user": "alice"}
        link.publish_to_room("r", typing, "here/7")
        link.publish_to_room("r", typing, "there/7")  # conn 7 of another node: not ours
        link.publish_to_user("bob", {"t": "read", "room": "r", "seq": 3})
        link.member_adjust("r", "bob", 1)
        link.presence_adjust("bob", 1)
        got = [delivery.calls.get(timeout=5) for _ in range(5)]
        assert got == [
            ("room_event", "r", typing, origin),
            ("room_event", "r", typing, None),
            ("user_event", "bob", {"t": "read", "room": "r", "seq": 3}, None, None),
            ("member_event", "r", "member", "bob"),
            ("presence_event", "online", "bob"),
        ]
    finally:
        ref.stop()
        link.client.close()
