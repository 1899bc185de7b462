"""Moderation on two nodes sharing Redis: roles, bans and mutes are kept in Redis and seen alike
from either node, and an action taken on one node (by a moderator's WebSocket, or the API)
reaches the affected user's connections on the other at once (docs/moderation.md)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from actorim.domain.apikeys import new_api_key
from tests.support import Client
from tests.test_api import api
from tests.two_nodes import TwoNodes, on, two_nodes

pytestmark = pytest.mark.process  # nodes and redis-server run as processes

KEY, LINE = new_api_key()


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoNodes]:
    args = ("--api-keys", LINE, "--api-rate", "1000", "--api-burst", "1000")
    with two_nodes(tmp_path_factory.mktemp("moderation-cluster"), args) as pair:
        yield pair


def test_moderation_on_one_node_reaches_the_users_connections_on_the_other(
    nodes: TwoNodes, clients: list[Client]
) -> None:
    room = "mc1"
    status, _, _ = api(
        nodes.b.http, "PUT", f"/rooms/{room}/roles/mc1-mod", {"role": "moderator"}, key=KEY
    )
    assert status == 200
    mod = on(nodes.a, "mc1-mod", clients)
    phone = on(nodes.a, "mc1-bob", clients)
    laptop = on(nodes.b, "mc1-bob", clients)
    mod.ok("join", room=room)
    phone.ok("join", room=room)
    laptop.event("member", room=room, user="mc1-bob", state="joined")
    laptop.ok("ping")  # subscribed before its next command
    # A mute on node A: the laptop on node B refuses to send at once.
    mod.ok("moderate", room=room, action="mute", user="mc1-bob", reason="calm down")
    for device in (phone, laptop):
        event = device.event("moderation", room=room, action="mute")
        assert (event["by"], event["reason"], event["until"]) == ("mc1-mod", "calm down", None)
        assert device.error("send", room=room, body="x")["code"] == "muted"
    # A device connecting to node B later reads the mute from Redis.
    tablet = on(nodes.b, "mc1-bob", clients)
    assert tablet.error("send", room=room, body="x")["code"] == "muted"
    # The API on node B unmutes, then bans: both devices hear it, leave, and may not rejoin.
    body = {"action": "unmute", "user": "mc1-bob"}
    assert api(nodes.b.http, "POST", f"/rooms/{room}/moderation", body, key=KEY)[0] == 200
    for device in (phone, laptop, tablet):
        device.event("moderation", room=room, action="unmute")
    said = laptop.ok("send", room=room, body="sorry")
    mod.event("msg", room=room, seq=said["seq"])
    body = {"action": "ban", "user": "mc1-bob", "reason": "again", "by": "ops"}
    assert api(nodes.b.http, "POST", f"/rooms/{room}/moderation", body, key=KEY)[0] == 200
    for device in (phone, laptop, tablet):
        assert device.event("moderation", room=room, action="ban")["by"] == "ops"
        device.event("member", room=room, user="mc1-bob", state="left")
    mod.event("member", room=room, user="mc1-bob", state="left")
    assert phone.error("join", room=room)["code"] == "banned"
    assert laptop.error("join", room=room)["code"] == "banned"
    # Either node reads the same audit log.
    _, _, page = api(nodes.a.http, "GET", f"/rooms/{room}/audit", key=KEY)
    assert [e["action"] for e in page["entries"]] == ["ban", "unmute", "mute", "role"]


def test_a_moderator_on_one_node_deletes_a_message_sent_on_the_other(
    nodes: TwoNodes, clients: list[Client]
) -> None:
    room = "mc2"
    api(nodes.a.http, "PUT", f"/rooms/{room}/roles/mc2-mod", {"role": "moderator"}, key=KEY)
    mod = on(nodes.a, "mc2-mod", clients)
    bob = on(nodes.b, "mc2-bob", clients)
    mod.ok("join", room=room)
    bob.ok("join", room=room)
    said = bob.ok("send", room=room, body="rude")
    mod.event("msg", room=room, seq=said["seq"])
    mod.ok("moderate", room=room, action="delete", mid=said["mid"], reason="rude")
    assert bob.event("delete", room=room)["mid"] == said["mid"]
    assert bob.event("moderation", room=room, action="delete")["mid"] == said["mid"]
    # Roles are the cluster's: the moderator on node A is one for node B's members page too.
    members = {m["user"]: m.get("role") for m in bob.ok("members", room=room)["members"]}
    assert members == {"mc2-bob": None, "mc2-mod": "moderator"}
