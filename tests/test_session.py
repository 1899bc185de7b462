"""A connection's Session: fed events without a node, then owned by its connection on a node.

The session is changed only by the connection's actor; rooms and the presence tracker tell it
what changed (``Left``, ``WatchChanged``) and the connection applies that before its next
command. The pure tests feed the Session those events; the node tests check that what the
rooms and the tracker told the connection is in its session by the time the client hears back.
"""

from __future__ import annotations

from collections.abc import Callable

from actorim.domain.auth import Identity
from actorim.domain.session import Left, Phase, Session, WatchChanged
from tests.support import RunningNode, wait_until

StartNode = Callable[..., RunningNode]


class Room:
    """Stands for a room's shared state: compared by identity, as the runtime's are."""


def identity(user: str) -> Identity:
    return Identity(user=user, rooms=None, expires_at=None)


def test_a_session_awaits_connect_then_is_connected_with_its_user_and_token() -> None:
    session: Session[Room] = Session()
    assert (session.phase, session.user, session.token) == (Phase.AWAITING_CONNECT, None, "")
    session.authenticated(identity("alice"))
    assert session.user == "alice"
    assert session.phase is Phase.AWAITING_CONNECT  # not until it is registered
    session.connected("t0k3n")
    assert (session.phase, session.token) == (Phase.CONNECTED, "t0k3n")


def test_a_room_refusing_a_stale_join_leaves_a_later_join_of_the_same_name() -> None:
    session: Session[Room] = Session()
    first, second = Room(), Room()
    session.joining("lobby", first)
    assert session.left("lobby") is first  # the client left
    session.joining("lobby", second)  # and joined again, to the room's next incarnation
    session.apply(Left("lobby", first))  # the first room's refusal arrives late
    assert session.rooms == {"lobby": second}
    session.apply(Left("lobby", second))
    assert session.rooms == {}
    assert session.left("lobby") is None


def test_watch_notices_are_applied_in_the_order_they_were_told() -> None:
    session: Session[Room] = Session()
    notices = [
        WatchChanged(("bob", "carol"), watch=True),
        WatchChanged(("bob",), watch=False),
        WatchChanged(("dave",), watch=True),
    ]
    for notice in notices:
        session.apply(notice)
    assert session.watching == {"carol", "dave"}


def test_the_watch_list_after_notices_not_applied_yet_leaves_the_session_unchanged() -> None:
    session: Session[Room] = Session()
    session.watch(["bob", "carol"])
    told = [
        WatchChanged(("dave",), watch=True),
        Left("lobby", Room()),
        WatchChanged(("bob",), False),
    ]
    assert session.watching_after(told) == {"carol", "dave"}
    assert session.watching == {"bob", "carol"}


def test_closing_leaves_every_room_and_hands_them_back() -> None:
    session: Session[Room] = Session()
    session.authenticated(identity("alice"))
    session.connected("t")
    lobby, den = Room(), Room()
    session.joining("lobby", lobby)
    session.joining("den", den)
    assert session.closing() == {"lobby": lobby, "den": den}
    assert (session.phase, session.rooms) == (Phase.CLOSING, {})
    session.closed()
    assert session.phase is Phase.CLOSED


def test_the_watch_list_is_the_connections_own_once_the_watch_is_answered(
    server: RunningNode,
) -> None:
    carol = server.client("carol")
    [link] = [link for link in server.node.ctx.directory.links.values() if link.user == "carol"]
    carol.ok("watch", users=["dave", "bob"])
    carol.ok("ping")  # the connection applies what it was told before handling this
    assert link.watching == {"dave", "bob"} and link.notices == []
    carol.ok("unwatch", users=["bob"])
    carol.ok("ping")
    assert link.watching == {"dave"}
    dave = server.client("dave")
    assert carol.event("presence", user="dave")["status"] == "online"
    dave.close()


def test_a_refused_join_is_gone_from_the_session_before_the_next_command(
    start_node: StartNode,
) -> None:
    node = start_node(max_members_per_room=1)
    alice = node.client("alice")
    alice.ok("join", room="lobby")
    bob = node.client("bob")
    [link] = [link for link in node.node.ctx.directory.links.values() if link.user == "bob"]
    assert bob.error("join", room="lobby")["code"] == "forbidden"
    assert bob.error("send", room="lobby", body="not a member")["code"] == "forbidden"
    assert "lobby" not in link.rooms
    bob.ok("join", room="elsewhere")
    wait_until(lambda: set(link.rooms) == {"elsewhere"}, what="bob to be in one room")


def test_watch_lists_are_each_sessions_own_even_before_the_first_watch() -> None:
    ann: Session[Room] = Session()
    bob: Session[Room] = Session()
    bob.unwatch(["carl"])  # nothing watched yet: nothing to do
    ann.watch(["carl", "dora"])
    ann.unwatch(["dora"])
    assert (set(ann.watching), set(bob.watching)) == ({"carl"}, set())
    bob.watch(["erin"])
    assert (set(ann.watching), set(bob.watching)) == ({"carl"}, {"erin"})
