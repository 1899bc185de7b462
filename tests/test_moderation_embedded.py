"""Moderation through ``Node``, the embedding API, on an in-process node with the memory store:
the same operations as the server API (docs/embedding.md, docs/moderation.md), and a bad
argument refused with ``InvalidRequest`` naming it, nothing changed."""

from __future__ import annotations

from collections.abc import Callable

import gevent
import pytest

from actorim.node import Node
from actorim.runtime.operations import InvalidRequest
from tests.support import Client
from tests.test_embedding import Embedder, embed, served  # noqa: F401 (fixtures)


def test_node_sets_roles_moderates_and_pages_the_audit_log(
    served: tuple[Node, Callable[[str], Client]],  # noqa: F811
) -> None:
    node, connect = served
    assert node.set_role("hall", "mo", "moderator")["role"] == "moderator"
    mo, bo = connect("mo"), connect("bo")
    assert mo.ok("join", room="hall")["role"] == "moderator"
    assert "role" not in bo.ok("join", room="hall")
    entry = node.moderate("hall", "mute", user="bo", reason="loud", for_s=60, by="ops")
    assert (entry["by"], entry["until"] - entry["ts"]) == ("ops", 60_000)
    assert bo.event("moderation", room="hall")["reason"] == "loud"
    assert bo.error("send", room="hall", body="x")["code"] == "muted"
    assert node.standing("hall", "bo")["muted_until"] == entry["until"]
    mo.ok("moderate", room="hall", action="kick", user="bo")
    bo.event("member", room="hall", user="bo", state="left")
    page = node.audit("hall", limit=2)
    assert [e["action"] for e in page["entries"]] == ["kick", "mute"]
    rest = node.audit("hall", before=page["next"])
    assert [e["action"] for e in rest["entries"]] == ["role"] and rest["next"] is None


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda n: n.set_role("hall", "bo", "king"), "role must be one of"),
        (lambda n: n.set_role("hall", "b o", "owner"), "user"),
        (lambda n: n.set_role("", "bo", "owner"), "room"),
        (lambda n: n.moderate("hall", "smite", user="bo"), "action"),
        (lambda n: n.moderate("hall", "kick", user="bo", by="o p"), "by"),
        (lambda n: n.moderate("hall", "kick", user="bo", for_s=5), "'for'"),
        (lambda n: n.audit("hall", limit=0), "limit"),
    ],
)
def test_bad_arguments_raise_invalid_request_naming_them(
    embed: Embedder,  # noqa: F811
    call: Callable[[Node], object],
    words: str,
) -> None:
    node = embed.node()
    with pytest.raises(InvalidRequest, match=words):
        call(node)
    assert node.audit("hall")["entries"] == []


def test_two_sanctions_taken_at_once_both_hold(embed: Embedder) -> None:  # noqa: F811
    node = embed.node()
    calls = [
        gevent.spawn(node.moderate, "hall", "mute", user="bo", by="a"),
        gevent.spawn(node.moderate, "hall", "ban", user="bo", by="b"),
    ]
    gevent.joinall(calls, raise_error=True)
    standing = node.standing("hall", "bo")
    assert standing["muted_until"] is None and standing["banned_until"] is None
    assert set(standing) == {"room", "user", "role", "muted_until", "banned_until"}


def test_a_mute_and_a_ban_with_an_expiry_end_by_themselves(
    served: tuple[Node, Callable[[str], Client]],  # noqa: F811
) -> None:
    node, connect = served
    bo = connect("bo")
    bo.ok("join", room="hall")
    node.moderate("hall", "mute", user="bo", for_s=0.3)
    bo.event("moderation", room="hall", action="mute")
    assert bo.error("send", room="hall", body="x")["code"] == "muted"
    node.moderate("hall", "ban", user="bo", for_s=0.3)
    bo.event("member", room="hall", user="bo", state="left")
    assert bo.error("join", room="hall")["code"] == "banned"
    gevent.sleep(0.35)  # the sanctions end with time, which no event announces
    bo.ok("join", room="hall")
    bo.ok("send", room="hall", body="free again")
    assert set(node.standing("hall", "bo")) == {"room", "user", "role"}


def test_a_banned_user_can_no_longer_read_the_room_until_the_ban_is_lifted(
    served: tuple[Node, Callable[[str], Client]],  # noqa: F811
) -> None:
    node, connect = served
    al, bo = connect("al"), connect("bo")
    al.ok("join", room="hall")
    bo.ok("join", room="hall")
    root = al.ok("send", room="hall", body="before the ban")["mid"]
    node.moderate("hall", "ban", user="bo")
    bo.event("member", room="hall", user="bo", state="left")
    for request in (
        {"t": "history", "room": "hall"},
        {"t": "members", "room": "hall"},
        {"t": "thread", "mid": root},
    ):
        kind = request.pop("t")
        assert bo.error(kind, **request)["code"] == "banned", kind
    al.ok("history", room="hall")  # the room's members read on
    node.moderate("hall", "unban", user="bo")
    assert [m["body"] for m in bo.ok("history", room="hall")["messages"]] == ["before the ban"]
