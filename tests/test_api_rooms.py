"""Rooms and membership through the server API (``/api/v1/rooms``), ``Node`` and the
``Publisher``, and erasing a user's messages (``/api/v1/users/{user}/erase``), against real
``actorim serve`` processes, real WebSocket clients and a real webhook receiver; every answer
held to the OpenAPI document (``tests.test_api.api``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from actorim.domain.webhooks import endpoints_json, parse_endpoints
from actorim.runtime.operations import Conflict
from actorim.tools.publisher import InvalidRequest, NotFound, Publisher
from tests.support import Client, ServerProcess, queued
from tests.test_api import KEY, LINE, SECRET, TOKENS, api, base_of, error_of
from tests.test_cluster import redis_url_of
from tests.two_nodes import TwoNodes, on, two_nodes
from tests.webhook_receiver import Arrival, Receiver

pytestmark = pytest.mark.process  # actorim serve (and redis-server) run as processes

HOOK_SECRET = "whsec-rooms"
MEMBER_EVENTS = ["room.member_added", "room.member_removed"]
ERASE_LIMIT = 3  # messages one erase call deletes on the test node


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    made = Receiver(HOOK_SECRET).start()
    yield made
    made.stop()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[ServerProcess]:
    """One node with the API on and a webhook endpoint for the membership events."""
    server = ServerProcess(
        tmp_path_factory.mktemp("api-rooms"),
        secret=SECRET,
        args=(
            "--api-keys",
            LINE,
            "--api-rate",
            "1000",
            "--api-burst",
            "1000",
            "--webhooks",
            member_hooks(receiver),
            "--webhook-poll",
            "0.05",
            "--erase-limit",
            str(ERASE_LIMIT),
        ),
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def connect(clients: list[Client]) -> Callable[..., Client]:
    def open_one(url: str, user: str, *, rooms: list[str] | None = None) -> Client:
        client = Client(url, json_frames=True)
        clients.append(client)
        client.connect(TOKENS.mint(user, rooms=rooms))
        return client

    return open_one


def published(base: str, room: str, body: Any) -> str:
    status, _, sent = api(base, "POST", "/messages", {"room": room, "body": body})
    assert status == 200
    return str(sent["mid"])


def subscribed(client: Client, room: str) -> None:
    """Wait for the ``member`` event that subscribes ``client`` to ``room`` (the application
    made its user a member; it names the room's latest ``seq``), then for the room's actor on
    the client's node to have it: a ``join`` of a room the user belongs to changes nothing and
    is answered by that actor. In a cluster a message published in the instant before the
    node's Redis subscription to a room it did not follow is not heard live (the next message
    shows it as a gap, which the room repairs), so the tests publish after this barrier; what
    was stored before the connection followed the event is tested in test_membership.py."""
    event = client.event("member", room=room, state="joined")
    assert type(event["seq"]) is int
    client.ok("join", room=room)


def not_received(client: Client, base: str, room: str, barrier_room: str) -> None:
    """Nothing of ``room`` reached ``client`` up to a message in ``barrier_room`` (which it is
    subscribed to) published after it: the barrier is on the same path, a room's fan-out."""
    published(base, barrier_room, "barrier")
    client.event("msg", room=barrier_room, body="barrier")
    assert not queued(client, "msg", room=room)


# -- rooms ---------------------------------------------------------------------------------------


def test_a_room_is_created_with_members_read_changed_and_deleted_keeping_its_history(
    node: ServerProcess, connect: Callable[..., Client]
) -> None:
    base = base_of(node)
    ann = connect(node.url, "ann-r")
    ann.ok("join", room="ann-own")
    request = {
        "room": "plans",
        "title": "Plans",
        "topic": "what next",
        "public": False,
        "members": ["ann-r", "ben-r"],
    }
    status, _, made = api(base, "POST", "/rooms", request)
    assert status == 201 and made["full"] == []
    assert made["room"] == {
        "room": "plans",
        "title": "Plans",
        "topic": "what next",
        "public": False,
        "members": 2,
    }
    # Ann's live connection joined at once: the member event, then the room's messages.
    subscribed(ann, "plans")
    mid = published(base, "plans", "kick-off")
    assert ann.event("msg", room="plans")["mid"] == mid
    status, _, again = api(base, "POST", "/rooms", {"room": "plans"})
    assert status == 409 and error_of(again)[0] == "conflict"
    assert api(base, "GET", "/rooms/plans")[2]["title"] == "Plans"  # unchanged

    status, _, info = api(base, "PATCH", "/rooms/plans", {"topic": "dates", "public": True})
    assert status == 200 and (info["topic"], info["public"], info["title"]) == (
        "dates",
        True,
        "Plans",
    )
    assert ann.event("room", room="plans")["topic"] == "dates"

    status, _, gone = api(base, "DELETE", "/rooms/plans")
    assert status == 200 and gone == {"deleted": "plans", "members": ["ann-r", "ben-r"]}
    ann.event("member", room="plans", user="ann-r", state="left")
    published(base, "plans", "after the delete")
    not_received(ann, base, "plans", "ann-own")
    assert api(base, "GET", "/rooms/plans")[0] == 404
    assert api(base, "DELETE", "/rooms/plans")[0] == 404
    # The messages stay: history reads them, and the user's inbox no longer lists the room.
    status, _, page = api(base, "GET", "/history?room=plans")
    assert [m["body"] for m in page["messages"]] == ["kick-off", "after the delete"]
    rooms = [c.get("room") for c in ann.ok("conversations")["conversations"]]
    assert "plans" not in rooms and "ann-own" in rooms


def test_members_page_with_their_presence(
    node: ServerProcess, connect: Callable[..., Client]
) -> None:
    base = base_of(node)
    connect(node.url, "m-b")
    members = ["m-c", "m-a", "m-b"]
    assert api(base, "POST", "/rooms", {"room": "paged", "members": members})[0] == 201
    status, _, first = api(base, "GET", "/rooms/paged/members?limit=2")
    assert status == 200 and first == {
        "members": [{"user": "m-a", "status": "offline"}, {"user": "m-b", "status": "online"}],
        "cursor": "m-b",
    }
    status, _, rest = api(base, "GET", "/rooms/paged/members?after=m-b&limit=2")
    assert rest == {"members": [{"user": "m-c", "status": "offline"}]}
    assert api(base, "GET", "/rooms/nowhere/members")[2] == {"members": []}


# -- membership ----------------------------------------------------------------------------------


def test_a_private_room_is_joined_only_by_members_the_application_added(
    node: ServerProcess, connect: Callable[..., Client]
) -> None:
    base = base_of(node)
    assert api(base, "POST", "/rooms", {"room": "vip", "public": False})[0] == 201
    eve = connect(node.url, "eve-p")
    eve.ok("join", room="eve-own")
    error = eve.error("join", room="vip")
    assert error["code"] == "forbidden" and "private" in error["message"]
    for command in ("history", "members"):
        error = eve.error(command, room="vip")
        assert error["code"] == "forbidden" and "only its members may read" in error["message"]
    assert api(base, "GET", "/rooms/vip/members")[2] == {"members": []}

    status, _, added = api(base, "PUT", "/rooms/vip/members/eve-p")
    assert status == 200 and added == {"room": "vip", "user": "eve-p", "added": True}
    subscribed(eve, "vip")
    mid = published(base, "vip", "welcome")
    assert eve.event("msg", room="vip")["mid"] == mid
    assert eve.ok("join", room="vip") is not None  # a member may join (again)
    assert [m["mid"] for m in eve.ok("history", room="vip")["messages"]] == [mid]
    assert eve.ok("thread", mid=mid)["messages"] == []
    assert api(base, "PUT", "/rooms/vip/members/eve-p")[2]["added"] is False

    status, _, removed = api(base, "DELETE", "/rooms/vip/members/eve-p")
    assert status == 200 and removed == {"room": "vip", "user": "eve-p", "removed": True}
    eve.event("member", room="vip", user="eve-p", state="left")
    published(base, "vip", "not for eve")
    not_received(eve, base, "vip", "eve-own")
    assert api(base, "DELETE", "/rooms/vip/members/eve-p")[2]["removed"] is False
    assert eve.error("join", room="vip")["code"] == "forbidden"
    assert eve.error("history", room="vip")["code"] == "forbidden"
    error = eve.error("thread", mid=mid)  # a thread is read in its root's room
    assert error["code"] == "forbidden" and "private" in error["message"]


def test_the_rooms_claim_still_narrows_what_an_added_member_receives(
    node: ServerProcess, connect: Callable[..., Client]
) -> None:
    base = base_of(node)
    api(base, "POST", "/rooms", {"room": "narrow", "public": False})
    api(base, "POST", "/rooms", {"room": "narrow-ok"})
    kim = connect(node.url, "kim-n", rooms=["narrow-ok"])
    kim.ok("join", room="narrow-ok")
    assert api(base, "PUT", "/rooms/narrow/members/kim-n")[2]["added"] is True
    published(base, "narrow", "secret")
    not_received(kim, base, "narrow", "narrow-ok")
    assert kim.error("join", room="narrow")["code"] == "forbidden"


def test_membership_changes_reach_webhooks_whoever_made_them(
    node: ServerProcess, connect: Callable[..., Client], receiver: Receiver
) -> None:
    base = base_of(node)
    api(base, "POST", "/rooms", {"room": "hooked", "members": ["h-app"]})
    api(base, "DELETE", "/rooms/hooked/members/h-app")
    user = connect(node.url, "h-user")
    user.ok("join", room="hooked")
    user.ok("leave", room="hooked")
    arrivals = hooked_arrivals(receiver, "hooked", 4)
    assert all(a.signed for a in arrivals)
    seen = sorted(
        (a.event["type"], a.event["data"]["user"], a.event["data"]["by"]) for a in arrivals
    )
    assert seen == [
        ("room.member_added", "h-app", "application"),
        ("room.member_added", "h-user", "user"),
        ("room.member_removed", "h-app", "application"),
        ("room.member_removed", "h-user", "user"),
    ]
    assert {a.event["data"]["room"] for a in arrivals} == {"hooked"}


def hooked_arrivals(receiver: Receiver, room: str, count: int) -> list[Arrival]:
    """The first ``count`` events about ``room`` (other tests' events arrive meanwhile)."""
    seen = 0
    while True:
        arrivals = receiver.wait_for(seen + 1, what=f"events of {room}")
        seen = len(arrivals)
        mine = [a for a in arrivals if a.event["data"].get("room") == room]
        if len(mine) >= count:
            return mine[:count]


# -- erasing a user's messages -------------------------------------------------------------------


def said(base: str, user: str, where: dict[str, str], count: int) -> list[str]:
    """``count`` messages from ``user`` to ``where`` (a room or ``to`` a user); their mids."""
    mids = []
    for n in range(count):
        status, _, sent = api(base, "POST", "/messages", {**where, "from": user, "body": n})
        assert status == 200
        mids.append(sent["mid"])
    return mids


def test_erasing_a_users_messages_in_a_room_is_bounded_per_call_idempotent_and_seen_live(
    node: ServerProcess, connect: Callable[..., Client]
) -> None:
    base = base_of(node)
    watcher = connect(node.url, "er-watch")
    watcher.ok("join", room="er-room")
    hers = said(base, "er-al", {"room": "er-room"}, 5)
    [his] = said(base, "er-bo", {"room": "er-room"}, 1)
    for _ in range(6):
        watcher.event("msg", room="er-room")
    status, _, first = api(base, "POST", "/users/er-al/erase", {"room": "er-room"})
    assert status == 200 and first == {"erased": ERASE_LIMIT, "more": True}
    assert [watcher.event("delete", room="er-room")["mid"] for _ in range(3)] == hers[:3]
    assert api(base, "POST", "/users/er-al/erase", {"room": "er-room"})[2] == {
        "erased": 2,
        "more": False,
    }
    assert [watcher.event("delete", room="er-room")["mid"] for _ in range(2)] == hers[3:]
    assert api(base, "POST", "/users/er-al/erase", {"room": "er-room"})[2] == {
        "erased": 0,
        "more": False,
    }
    page = api(base, "GET", "/history?room=er-room")[2]["messages"]
    assert [(m["mid"], m.get("deleted", False), "body" in m) for m in page] == [
        *((mid, True, False) for mid in hers),
        (his, False, True),
    ]
    # Nothing more was sent for the repeated call: the next event is a later message.
    published(base, "er-room", "barrier")
    watcher.event("msg", room="er-room", body="barrier")
    assert not queued(watcher, "delete")


def test_erasing_everywhere_reaches_the_users_rooms_and_direct_conversations(
    node: ServerProcess, connect: Callable[..., Client]
) -> None:
    base = base_of(node)
    api(base, "POST", "/rooms", {"room": "ev-one", "members": ["ev-al"]})
    api(base, "POST", "/rooms", {"room": "ev-two", "members": ["ev-al"]})
    bo = connect(node.url, "ev-bo")
    [in_one] = said(base, "ev-al", {"room": "ev-one"}, 1)
    [in_two] = said(base, "ev-al", {"room": "ev-two"}, 1)
    [direct] = said(base, "ev-al", {"to": "ev-bo"}, 1)
    bo.event("msg", to="ev-bo")
    answer = api(base, "POST", "/users/ev-al/erase", {})[2]
    assert answer == {"erased": 3, "more": False}
    assert bo.event("delete", to="ev-bo")["mid"] == direct
    for room, mid in (("ev-one", in_one), ("ev-two", in_two)):
        [tombstone] = api(base, "GET", f"/history?room={room}")[2]["messages"]
        assert (tombstone["mid"], tombstone["deleted"]) == (mid, True)
    [dm] = api(base, "GET", "/history?with=ev-al,ev-bo")[2]["messages"]
    assert dm["deleted"] is True


def test_erasing_everywhere_reaches_a_room_the_user_left_and_its_connected_members(
    node: ServerProcess, connect: Callable[..., Client]
) -> None:
    base = base_of(node)
    watcher = connect(node.url, "lf-watch")
    watcher.ok("join", room="lf-room")
    assert api(base, "PUT", "/rooms/lf-room/members/lf-al")[2]["added"] is True
    assert api(base, "POST", "/rooms", {"room": "lf-kept", "members": ["lf-al"]})[0] == 201
    hers = said(base, "lf-al", {"room": "lf-room"}, 4)
    [kept] = said(base, "lf-al", {"room": "lf-kept"}, 1)
    assert api(base, "DELETE", "/rooms/lf-room/members/lf-al")[2]["removed"] is True
    for _ in range(4):
        watcher.event("msg", room="lf-room")
    # ERASE_LIMIT (3) a call, until more is false; then nothing is left.
    answers = [api(base, "POST", "/users/lf-al/erase", {})[2] for _ in range(3)]
    assert answers == [
        {"erased": 3, "more": True},
        {"erased": 2, "more": False},
        {"erased": 0, "more": False},
    ]
    assert [watcher.event("delete", room="lf-room")["mid"] for _ in range(4)] == hers
    page = api(base, "GET", "/history?room=lf-room")[2]["messages"]
    assert [(m["mid"], m.get("deleted", False)) for m in page] == [(mid, True) for mid in hers]
    [tombstone] = api(base, "GET", "/history?room=lf-kept")[2]["messages"]
    assert (tombstone["mid"], tombstone["deleted"]) == (kept, True)


@pytest.mark.parametrize(
    ("path", "body", "says"),
    [
        ("/users/bad-er/erase", {"room": "bad-er-room", "with": "x"}, "at most one"),
        ("/users/bad-er/erase", {"colour": "red"}, "unknown field 'colour'"),
        ("/users/bad-er/erase", {"room": "no room!"}, "room"),
        ("/users/bad-er/erase", {"with": "no spaces"}, "with"),
        ("/users/no%20spaces/erase", {}, "user"),
    ],
)
def test_a_bad_erase_gets_a_clear_json_error_and_deletes_nothing(
    node: ServerProcess, path: str, body: Any, says: str
) -> None:
    base = base_of(node)
    if not api(base, "GET", "/history?room=bad-er-room")[2]["messages"]:
        said(base, "bad-er", {"room": "bad-er-room"}, 1)
    status, _, answer = api(base, "POST", path, body)
    assert status == 400 and says in error_of(answer)[1], answer
    [kept] = api(base, "GET", "/history?room=bad-er-room")[2]["messages"]
    assert "deleted" not in kept
    assert api(base, "POST", path, body, key=KEY + "x")[0] == 401


# -- bad requests --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "status", "says"),
    [
        (("POST", "/rooms", {}), 400, "'room' is required"),
        (("POST", "/rooms", {"room": "bad room!"}), 400, "room"),
        (("POST", "/rooms", {"room": "bad-r", "title": 5}), 400, "title"),
        (("POST", "/rooms", {"room": "bad-r", "topic": "x" * 501}), 400, "topic"),
        (("POST", "/rooms", {"room": "bad-r", "public": "yes"}), 400, "public"),
        (("POST", "/rooms", {"room": "bad-r", "members": "ann"}), 400, "members"),
        (("POST", "/rooms", {"room": "bad-r", "members": ["no spaces"]}), 400, "members"),
        (("POST", "/rooms", {"room": "bad-r", "colour": "red"}), 400, "unknown field 'colour'"),
        (("PATCH", "/rooms/bad-r", {}), 400, "at least one"),
        (("PATCH", "/rooms/bad-r", {"title": None}), 400, "null"),
        (("PATCH", "/rooms/bad-r", {"public": 1}), 400, "public"),
        (("PATCH", "/rooms/bad-r", {"title": "x"}), 404, "no room 'bad-r'"),
        (("GET", "/rooms/bad-r", None), 404, "no room 'bad-r'"),
        (("DELETE", "/rooms/bad-r", None), 404, "no room 'bad-r'"),
        (("PUT", "/rooms/bad-r/members/ann", None), 404, "no room 'bad-r'"),
        (("PUT", "/rooms/bad-r/members/ann", {"role": "x"}), 400, "unknown field 'role'"),
        (("PUT", "/rooms/bad-r/members/no%20spaces", None), 400, "user"),
        (("GET", "/rooms/bad-r/members?limit=x", None), 400, "limit"),
        (("GET", "/rooms/bad-r/members?cursor=x", None), 400, "unknown parameter 'cursor'"),
        (("POST", "/rooms/bad-r", {}), 405, "GET, PATCH, DELETE"),
    ],
)
def test_a_bad_room_request_gets_a_clear_json_error_and_changes_nothing(
    node: ServerProcess, call: tuple[str, str, Any], status: int, says: str
) -> None:
    base = base_of(node)
    got, _, answer = api(base, *call)
    assert got == status and says in error_of(answer)[1], answer
    assert api(base, "GET", "/rooms/bad-r")[0] == 404


def test_a_bad_key_changes_no_room(node: ServerProcess) -> None:
    base = base_of(node)
    for method, path, body in [
        ("POST", "/rooms", {"room": "keyless"}),
        ("PUT", "/rooms/keyless/members/ann", None),
        ("DELETE", "/rooms/keyless", None),
    ]:
        status, _, answer = api(base, method, path, body, key=KEY + "x")
        assert status == 401 and error_of(answer)[0] == "unauthenticated"
    assert api(base, "GET", "/rooms/keyless")[0] == 404


def test_adding_a_user_in_as_many_rooms_as_allowed_is_409(start_node: Callable[..., Any]) -> None:
    running = start_node(max_rooms_per_user=1)
    node = running.node
    node.create_room("one", members=["full-u"])
    assert node.create_room("two", members=["full-u"])["full"] == ["full-u"]
    with pytest.raises(Conflict, match="max_rooms_per_user"):
        node.add_member("two", "full-u")


# -- the embedding API ---------------------------------------------------------------------------


def test_the_embedding_node_manages_rooms_and_members(start_node: Callable[..., Any]) -> None:
    running = start_node()
    node = running.node
    amy = running.client("emb-amy")
    info = node.create_room("emb", title="Embedded", public=False)["room"]
    assert (info["title"], info["public"], info["members"]) == ("Embedded", False, 0)
    assert node.add_member("emb", "emb-amy") is True
    subscribed(amy, "emb")
    node.publish("hello", room="emb")
    assert amy.event("msg", room="emb")["body"] == "hello"
    assert node.members("emb") == {"members": [{"user": "emb-amy", "status": "online"}]}
    assert node.update_room("emb", title="Renamed")["title"] == "Renamed"
    assert node.room("emb")["title"] == "Renamed"
    assert node.remove_member("emb", "emb-amy") is True
    amy.event("member", room="emb", user="emb-amy", state="left")
    assert node.delete_room("emb") == []


def test_the_embedding_node_erases_a_users_messages_in_a_room_they_left(
    start_node: Callable[..., Any],
) -> None:
    running = start_node(erase_limit=2)
    node = running.node
    amy = running.client("left-amy")
    amy.ok("join", room="left-room")
    node.add_member("left-room", "left-bo")
    mids = [node.publish(n, room="left-room", sender="left-bo").mid for n in range(3)]
    node.remove_member("left-room", "left-bo")
    assert [amy.event("msg", room="left-room")["mid"] for _ in range(3)] == mids
    assert node.erase("left-bo") == {"erased": 2, "more": True}
    assert node.erase("left-bo") == {"erased": 1, "more": False}
    assert node.erase("left-bo") == {"erased": 0, "more": False}
    assert [amy.event("delete", room="left-room")["mid"] for _ in range(3)] == mids


# -- two nodes and the Publisher -----------------------------------------------------------------


def member_hooks(receiver: Receiver) -> str:
    """The ``webhooks`` setting of an endpoint at ``receiver`` for the membership events."""
    endpoints = [{"url": receiver.url, "secret": HOOK_SECRET, "events": MEMBER_EVENTS}]
    return endpoints_json(parse_endpoints(endpoints))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[TwoNodes]:
    """Two nodes on Redis, delivering the membership events the Publisher keeps too."""
    args = ("--api-keys", LINE, "--webhooks", member_hooks(receiver), "--webhook-poll", "0.05")
    with two_nodes(tmp_path_factory.mktemp("rooms-cluster"), args) as nodes:
        yield nodes


def test_on_two_nodes_membership_through_one_reaches_a_user_on_the_other(
    cluster: TwoNodes, clients: list[Client]
) -> None:
    a, b = cluster.a.http, cluster.b.http
    bo = on(cluster.b, "cl-bo", clients)
    bo.ok("join", room="cl-own")
    assert api(a, "POST", "/rooms", {"room": "cl-vip", "public": False})[0] == 201
    assert bo.error("join", room="cl-vip")["code"] == "forbidden"
    assert api(a, "PUT", "/rooms/cl-vip/members/cl-bo")[2]["added"] is True
    subscribed(bo, "cl-vip")
    mid = published(a, "cl-vip", "across")
    assert bo.event("msg", room="cl-vip")["mid"] == mid
    assert api(a, "DELETE", "/rooms/cl-vip/members/cl-bo")[2]["removed"] is True
    bo.event("member", room="cl-vip", user="cl-bo", state="left")
    published(a, "cl-vip", "not for bo")
    not_received(bo, a, "cl-vip", "cl-own")

    api(a, "PUT", "/rooms/cl-vip/members/cl-bo")
    subscribed(bo, "cl-vip")
    assert api(b, "DELETE", "/rooms/cl-vip")[2] == {"deleted": "cl-vip", "members": ["cl-bo"]}
    bo.event("member", room="cl-vip", user="cl-bo", state="left")
    assert api(a, "GET", "/rooms/cl-vip")[0] == 404
    # An erase through A reaches B's member as the author's own delete would.
    mine = bo.ok("send", room="cl-own", body="erase me")
    assert api(a, "POST", "/users/cl-bo/erase", {"room": "cl-own"})[2] == {
        "erased": 1,
        "more": False,
    }
    assert bo.event("delete", room="cl-own")["mid"] == mine["mid"]


def test_the_publisher_manages_rooms_and_members_without_a_node(
    cluster: TwoNodes, clients: list[Client], receiver: Receiver
) -> None:
    cy = on(cluster.a, "pub-cy", clients)
    cy.ok("join", room="pub-own")
    url = redis_url_of(cluster.redis)
    with Publisher(url, webhooks=member_hooks(receiver)) as publisher:
        # The same checks as the API's and Node's, before anything changes.
        with pytest.raises(InvalidRequest, match="field 'room'"):
            publisher.create_room("no room!")
        with pytest.raises(InvalidRequest, match="members"):
            publisher.create_room("pub-vip", members=["no spaces"])
        with pytest.raises(NotFound, match="no room 'pub-vip'"):
            publisher.add_member("pub-vip", "pub-cy")
        made = publisher.create_room("pub-vip", title="Ops", public=False, members=["pub-cy"])
        assert made["room"]["members"] == 1
        subscribed(cy, "pub-vip")
        publisher.publish("from the publisher", room="pub-vip")
        assert cy.event("msg", room="pub-vip")["body"] == "from the publisher"
        assert publisher.update_room("pub-vip", topic="incidents")["topic"] == "incidents"
        assert cy.event("room", room="pub-vip")["topic"] == "incidents"
        assert publisher.remove_member("pub-vip", "pub-cy") is True
        cy.event("member", room="pub-vip", user="pub-cy", state="left")
        assert publisher.add_member("pub-vip", "pub-cy") is True
        subscribed(cy, "pub-vip")
        assert publisher.delete_room("pub-vip") == ["pub-cy"]
        cy.event("member", room="pub-vip", user="pub-cy", state="left")
        mine = cy.ok("send", room="pub-own", body="to be erased")
        assert publisher.erase("pub-cy", room="pub-own") == {"erased": 1, "more": False}
        assert cy.event("delete", room="pub-own")["mid"] == mine["mid"]
        assert publisher.erase("pub-cy") == {"erased": 0, "more": False}
        # A room pub-cy left: erased by the erase everywhere, seen by its members on B.
        dee = on(cluster.b, "pub-dee", clients)
        dee.ok("join", room="pub-gone")
        cy.ok("join", room="pub-gone")
        gone = cy.ok("send", room="pub-gone", body="said and left")
        dee.event("msg", room="pub-gone")
        cy.ok("leave", room="pub-gone")
        assert publisher.erase("pub-cy") == {"erased": 1, "more": False}
        assert dee.event("delete", room="pub-gone")["mid"] == gone["mid"]
    # Its membership changes are webhook events, kept in the outbox the nodes deliver.
    arrivals = hooked_arrivals(receiver, "pub-vip", 4)
    assert sorted((a.event["type"], a.event["data"]["by"]) for a in arrivals) == [
        ("room.member_added", "application"),
        ("room.member_added", "application"),
        ("room.member_removed", "application"),
        ("room.member_removed", "application"),
    ]  # in any order: two nodes deliver the outbox, several requests at a time
    assert api(cluster.b.http, "GET", "/rooms/pub-vip")[0] == 404
