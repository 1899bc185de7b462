"""Moderation on one node (``actorim serve`` with SQLite), over real sockets and real HTTP: roles
set by the application, kick, ban, mute and moderators' deletes over the WebSocket and the
server API, their refusals, the audit log, and the ``moderation.*`` webhook events at a real
receiver (docs/moderation.md)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from actorim.client import Client as PythonClient
from actorim.client import ServerError
from actorim.domain.apikeys import new_api_key
from actorim.domain.auth import TokenAuthority
from actorim.domain.moderation import AuditEntry
from actorim.domain.webhooks import endpoints_json, parse_endpoints
from actorim.protocol.webhooks import MODERATION_EVENTS, moderation_payload
from tests.support import Client, ServerProcess
from tests.test_api import api, error_of
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.process

SECRET = "moderation-test-secret-0123456789abcdef0123"
TOKENS = TokenAuthority(SECRET)
KEY, LINE = new_api_key()
HOOK_SECRET = "whsec-moderation"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    made = Receiver(HOOK_SECRET).start()
    yield made
    made.stop()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[ServerProcess]:
    moderation_events = list(MODERATION_EVENTS.values())
    hooks = [{"url": receiver.url, "secret": HOOK_SECRET, "events": moderation_events}]
    server = ServerProcess(
        tmp_path_factory.mktemp("moderation-node"),
        secret=SECRET,
        args=(
            "--api-keys",
            LINE,
            "--api-rate",
            "1000",
            "--api-burst",
            "1000",
            "--webhooks",
            endpoints_json(parse_endpoints(hooks)),
            "--webhook-poll",
            "0.05",
            "--moderation-reason-max",
            "40",
            "--audit-page-max",
            "5",
        ),
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def connect(node: ServerProcess, clients: list[Client]) -> Callable[[str], Client]:
    def open_one(user: str) -> Client:
        client = Client(node.url, json_frames=True)
        clients.append(client)
        client.connect(TOKENS.mint(user))
        return client

    return open_one


def call(node: ServerProcess, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    status, _, answer = api(f"http://127.0.0.1:{node.port}", method, path, body, key=KEY)
    return status, answer


def room_with(
    node: ServerProcess, connect: Callable[[str], Client], room: str, *users: str
) -> list[Client]:
    """``users`` connected and joined to ``room``; the first is made its moderator."""
    opened = [connect(user) for user in users]
    for client in opened:
        client.ok("join", room=room)
    assert call(node, "PUT", f"/rooms/{room}/roles/{users[0]}", {"role": "moderator"})[0] == 200
    return opened


def test_a_kicked_user_is_told_why_leaves_the_room_and_may_rejoin(
    node: ServerProcess, connect: Callable[[str], Client]
) -> None:
    mod, bob = room_with(node, connect, "kick1", "mod1", "bob1")
    bob_tablet = connect("bob1")  # another device of the same user, subscribed at connect
    entry = mod.ok("moderate", room="kick1", action="kick", user="bob1", reason="spam")
    assert (entry["action"], entry["by"], entry["user"], entry["reason"]) == (
        "kick",
        "mod1",
        "bob1",
        "spam",
    )
    for device in (bob, bob_tablet):
        event = device.event("moderation", room="kick1")
        assert (event["action"], event["by"], event["reason"]) == ("kick", "mod1", "spam")
        device.event("member", room="kick1", user="bob1", state="left")
        error = device.error("send", room="kick1", body="still here?")
        assert error["code"] == "forbidden"
    mod.event("member", room="kick1", user="bob1", state="left")
    bob.ok("join", room="kick1")
    bob.ok("send", room="kick1", body="back")


def test_a_banned_user_may_not_rejoin_until_unbanned(
    node: ServerProcess, connect: Callable[[str], Client]
) -> None:
    mod, bob = room_with(node, connect, "ban1", "mod2", "bob2")
    entry = mod.ok("moderate", room="ban1", action="ban", user="bob2", reason="abuse")
    assert entry["until"] is None
    assert bob.event("moderation", room="ban1")["action"] == "ban"
    bob.event("member", room="ban1", user="bob2", state="left")
    error = bob.error("join", room="ban1")
    assert error["code"] == "banned" and "until the ban is lifted" in error["message"]
    # A ban with an expiry says when it ends.
    status, lasting = call(
        node, "POST", "/rooms/ban1/moderation", {"action": "ban", "user": "bob2", "for": 3600}
    )
    assert status == 200 and lasting["until"] > lasting["ts"] + 3_599_000
    assert call(node, "GET", "/rooms/ban1/roles/bob2")[1]["banned_until"] == lasting["until"]
    assert bob.event("moderation", room="ban1")["until"] == lasting["until"]
    mod.ok("moderate", room="ban1", action="unban", user="bob2")
    assert bob.event("moderation", room="ban1")["action"] == "unban"
    bob.ok("join", room="ban1")


def test_a_muted_user_reads_but_may_not_send_edit_react_or_type_until_unmuted(
    node: ServerProcess, connect: Callable[[str], Client]
) -> None:
    mod, bob = room_with(node, connect, "mute1", "mod3", "bob3")
    said = bob.ok("send", room="mute1", body="before")
    mod.ok("moderate", room="mute1", action="mute", user="bob3", reason="cool off", **{"for": 600})
    event = bob.event("moderation", room="mute1")
    assert event["action"] == "mute" and event["until"] > event["ts"]
    for command, args in (
        ("send", {"room": "mute1", "body": "muted?"}),
        ("edit", {"mid": said["mid"], "body": "edited"}),
        ("react", {"mid": said["mid"], "key": "+1", "on": True}),
        ("typing", {"room": "mute1"}),
    ):
        assert bob.error(command, **args)["code"] == "muted", command
    mod.ok("send", room="mute1", body="you can still read")
    assert bob.event("msg", room="mute1")["body"] == "you can still read"
    # A connection opened while muted knows it at once.
    assert connect("bob3").error("send", room="mute1", body="x")["code"] == "muted"
    mod.ok("moderate", room="mute1", action="unmute", user="bob3")
    assert bob.event("moderation", room="mute1")["action"] == "unmute"
    bob.ok("send", room="mute1", body="after")


def test_a_moderator_deletes_anothers_message_and_the_author_is_told(
    node: ServerProcess, connect: Callable[[str], Client]
) -> None:
    mod, bob, cy = room_with(node, connect, "del1", "mod4", "bob4", "cy4")
    said = bob.ok("send", room="del1", body="rude")
    entry = mod.ok("moderate", room="del1", action="delete", mid=said["mid"], reason="rude")
    assert (entry["user"], entry["mid"]) == ("bob4", said["mid"])
    for client in (bob, cy):
        assert client.event("delete", room="del1")["mid"] == said["mid"]
    told = bob.event("moderation", room="del1")
    assert (told["action"], told["mid"], told["reason"]) == ("delete", said["mid"], "rude")
    page = cy.ok("history", room="del1")
    assert [m["deleted"] for m in page["messages"] if m["mid"] == said["mid"]] == [True]
    assert mod.error("moderate", room="del1", action="delete", mid=said["mid"])["code"] == (
        "not_found"
    )


def test_members_and_moderators_of_equal_rank_are_refused_with_their_codes(
    node: ServerProcess, connect: Callable[[str], Client]
) -> None:
    mod, bob, other = room_with(node, connect, "rank1", "mod5", "bob5", "mod5b")
    assert call(node, "PUT", "/rooms/rank1/roles/mod5b", {"role": "moderator"})[0] == 200
    assert call(node, "PUT", "/rooms/rank1/roles/own5", {"role": "owner"})[0] == 200
    error = bob.error("moderate", room="rank1", action="kick", user="mod5")
    assert error["code"] == "not_moderator"
    for target in ("mod5b", "own5"):
        error = mod.error("moderate", room="rank1", action="mute", user=target)
        assert error["code"] == "outranked" and target in error["message"]
    said = other.ok("send", room="rank1", body="mine")
    assert mod.error("moderate", room="rank1", action="delete", mid=said["mid"])["code"] == (
        "outranked"
    )
    owner = connect("own5")
    owner.ok("join", room="rank1")
    owner.ok("moderate", room="rank1", action="mute", user="mod5b")
    # Nothing reached the bystanders: bob chats on, still unmuted.
    bob.ok("send", room="rank1", body="fine")
    # The members page shows the roles.
    members = {m["user"]: m.get("role") for m in bob.ok("members", room="rank1")["members"]}
    assert members == {"bob5": None, "mod5": "moderator", "mod5b": "moderator", "own5": "owner"}


def test_bad_moderate_commands_are_bad_requests_naming_the_field(
    node: ServerProcess, connect: Callable[[str], Client]
) -> None:
    (mod,) = room_with(node, connect, "bad1", "mod6")
    for args, words in (
        ({"action": "smite", "user": "x"}, "action"),
        ({"action": "kick"}, "'user'"),
        ({"action": "delete", "user": "x"}, "'mid'"),
        ({"action": "kick", "user": "x", "for": 5}, "'for'"),
        ({"action": "mute", "user": "x", "for": -1}, "'for'"),
        ({"action": "mute", "user": "x", "reason": 5}, "'reason'"),
    ):
        error = mod.error("moderate", room="bad1", **args)
        assert error["code"] == "bad_request" and words in error["message"], (args, error)
    error = mod.error("moderate", room="bad1", action="mute", user="x", reason="y" * 41)
    assert error["code"] == "bad_request" and "moderation_reason_max" in error["message"]
    assert mod.error("moderate", room="bad1", action="kick", user="nobody")["code"] == "not_found"


def test_the_api_moderates_as_the_application_and_pages_the_audit_log(
    node: ServerProcess, connect: Callable[[str], Client], receiver: Receiver
) -> None:
    bob = connect("bob7")
    bob.ok("join", room="api1")
    assert call(node, "PUT", "/rooms/api1/roles/own7", {"role": "owner"})[0] == 200
    # The application outranks every role, even the owner's.
    status, entry = call(
        node,
        "POST",
        "/rooms/api1/moderation",
        {"action": "mute", "user": "own7", "by": "ops", "reason": "r1"},
    )
    assert status == 200 and (entry["by"], entry["action"]) == ("ops", "mute")
    call(node, "POST", "/rooms/api1/moderation", {"action": "unmute", "user": "own7"})
    status, kicked = call(
        node, "POST", "/rooms/api1/moderation", {"action": "kick", "user": "bob7"}
    )
    assert status == 200 and kicked["by"] == "system"
    assert bob.event("moderation", room="api1")["by"] == "system"
    said = call(node, "POST", "/messages", {"room": "api1", "from": "cy7", "body": "x"})[1]
    call(node, "POST", "/rooms/api1/moderation", {"action": "delete", "mid": said["mid"]})
    call(node, "POST", "/rooms/api1/moderation", {"action": "ban", "user": "cy7", "for": 60})
    call(node, "POST", "/rooms/api1/moderation", {"action": "unban", "user": "cy7"})
    # Seven entries (the role too), five to a page (audit_page_max), newest first.
    status, first = call(node, "GET", "/rooms/api1/audit")
    assert status == 200 and len(first["entries"]) == 5 and first["next"]
    assert [e["action"] for e in first["entries"]] == ["unban", "ban", "delete", "kick", "unmute"]
    _, second = call(node, "GET", f"/rooms/api1/audit?before={first['next']}&limit=5")
    assert [e["action"] for e in second["entries"]] == ["mute", "role"]
    assert second["next"] is None and second["entries"][1]["role"] == "owner"
    # Each action but the role made its webhook event, signed, carrying the audit entry.
    wanted = {e["id"] for e in first["entries"] + second["entries"][:1]}

    def arrived() -> dict[str, dict[str, Any]]:
        return {a.event["data"]["id"]: a.event for a in receiver.arrivals}

    receiver.wait_for(len(wanted), what="moderation events")
    while not wanted <= set(arrived()):
        receiver.wait_for(len(receiver.arrivals) + 1, what="moderation events")
    events = arrived()
    assert all(a.signed for a in receiver.arrivals)
    types = {events[e["id"]]["type"] for e in first["entries"]}
    assert types == {
        "moderation.unbanned",
        "moderation.banned",
        "moderation.deleted",
        "moderation.kicked",
        "moderation.unmuted",
    }
    assert events[kicked["id"]]["data"] == kicked


def test_the_api_refuses_bad_keys_and_bodies_and_changes_nothing(node: ServerProcess) -> None:
    base = f"http://127.0.0.1:{node.port}"
    body = {"action": "kick", "user": "x"}
    assert api(base, "POST", "/rooms/api2/moderation", body, key=None)[0] == 401
    assert api(base, "POST", "/rooms/api2/moderation", body, key=KEY + "x")[0] == 401
    for path, method, sent, words in (
        ("/rooms/api2/moderation", "POST", {"action": "smite", "user": "x"}, "action"),
        ("/rooms/api2/moderation", "POST", {"user": "x"}, "'action'"),
        ("/rooms/api2/moderation", "POST", {"action": "ban", "user": "x", "for": "1h"}, "'for'"),
        ("/rooms/api2/moderation", "POST", {"action": "ban", "user": "x", "why": 1}, "'why'"),
        ("/rooms/api2/moderation", "POST", {"action": "ban", "user": "x", "by": None}, "by"),
        ("/rooms/api2/roles/x", "PUT", {"role": "king"}, "role"),
        ("/rooms/api2/roles/x", "PUT", {}, "'role'"),
        ("/rooms/api2/roles/x%20y", "PUT", {"role": "owner"}, "user"),
        ("/rooms/api2/audit?limit=6", "GET", None, "limit"),
        ("/rooms/api2/audit?after=1", "GET", None, "after"),
    ):
        status, answer = call(node, method, path, sent)
        assert status == 400 and words in error_of(answer)[1], (path, sent, answer)
    assert call(node, "DELETE", "/rooms/api2/audit")[0] == 405
    status, page = call(node, "GET", "/rooms/api2/audit")
    assert status == 200 and page == {"entries": [], "next": None}
    assert call(node, "GET", "/rooms/api2/roles/x")[1] == {
        "room": "api2",
        "user": "x",
        "role": "member",
    }


def test_webhook_payloads_are_the_documented_audit_entry() -> None:
    entry = AuditEntry("e1", "lobby", 5, "al", "mute", "bo", "why", 65)
    assert moderation_payload(entry) == json.loads(json.dumps(entry.as_json()))
    assert set(MODERATION_EVENTS) == {"kick", "ban", "unban", "mute", "unmute", "delete"}


def test_the_python_client_moderates_and_its_user_hears_of_it(
    node: ServerProcess, connect: Callable[[str], Client]
) -> None:
    bob = connect("bob8")
    bob.ok("join", room="py1")
    call(node, "PUT", "/rooms/py1/roles/mod8", {"role": "moderator"})
    mod = PythonClient(node.url, TOKENS.mint("mod8"))
    try:
        mod.connect(timeout=10)
        assert mod.join("py1", timeout=10)["role"] == "moderator"
        entry = mod.moderate("py1", "mute", user="bob8", reason="hush", seconds=30, timeout=10)
        assert entry["until"] - entry["ts"] == 30_000
        assert bob.event("moderation", room="py1")["reason"] == "hush"
        with pytest.raises(ServerError) as refused:
            mod.moderate("py1", "kick", user="mod8", timeout=10)
        assert refused.value.code == "outranked"
    finally:
        mod.close()
