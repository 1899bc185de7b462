"""The application's in-process hooks (``Node(config, hooks=Hooks(...))``) over real sockets:
``before_publish`` allows, rejects or replaces sends, edits and publishes (never typing); a
failing or slow hook costs only its own message or sender; ``on_connect`` and
``on_disconnect`` are told of every session, in order, whatever they do."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import gevent
import pytest
from gevent.event import Event

from actorim.domain.hooks import ALLOW, Decision, Hooks, Outgoing, Reject, Replace, SessionInfo
from actorim.protocol.errors import CommandError
from tests.support import RunningNode


def seen_by(calls: list[Outgoing]) -> Callable[[Outgoing], Decision]:
    def before_publish(message: Outgoing) -> Decision:
        calls.append(message)
        return ALLOW

    return before_publish


def test_before_publish_sees_sends_edits_and_publishes_but_not_typing_reactions_or_deletes(
    start_node: Callable[..., RunningNode],
) -> None:
    calls: list[Outgoing] = []
    node = start_node(hooks=Hooks(before_publish=seen_by(calls)))
    ann, bob = node.client("ann"), node.client("bob")
    ann.ok("join", room="lobby")
    sent = ann.ok("send", room="lobby", body={"text": "hi"}, cid="s1")
    ann.ok("typing", room="lobby")
    ann.ok("react", mid=sent["mid"], key="+1", on=True)
    ann.ok("edit", mid=sent["mid"], body={"text": "hi!"}, cid="e1")
    ann.ok("send", to="bob", body="psst")
    ann.ok("delete", mid=sent["mid"])
    node.node.publish("deployed", room="lobby", sender="ci", cid="p1")
    bob.ok("ping")
    assert [(c.action, c.sender, c.room, c.to, c.body) for c in calls] == [
        ("send", "ann", "lobby", None, {"text": "hi"}),
        ("edit", "ann", "lobby", None, {"text": "hi!"}),
        ("send", "ann", None, "bob", "psst"),
        ("publish", "ci", "lobby", None, "deployed"),
    ]
    assert calls[0].cid == "s1" and calls[0].kind == "text" and calls[0].session is not None
    assert calls[1].target == sent["mid"] and calls[1].cid == "e1"
    assert calls[3].session is None


def test_a_rejected_message_is_refused_with_the_reason_and_stored_nowhere(
    start_node: Callable[..., RunningNode],
) -> None:
    def before_publish(message: Outgoing) -> Decision:
        return Reject("no shouting") if str(message.body).isupper() else ALLOW

    node = start_node(hooks=Hooks(before_publish=before_publish))
    ann, bob = node.client("ann"), node.client("bob")
    for client in (ann, bob):
        client.ok("join", room="lobby")
    error = ann.error("send", room="lobby", body="HELLO")
    assert error == {"code": "forbidden", "message": "no shouting"}
    kept = ann.ok("send", room="lobby", body="hello")
    assert bob.event("msg", room="lobby")["mid"] == kept["mid"]  # the refused one never came
    assert [m["body"] for m in node.node.history(room="lobby")["messages"]] == ["hello"]
    with pytest.raises(CommandError) as refused:
        node.node.publish("DEPLOYED", room="lobby")
    assert refused.value.message == "no shouting"
    edit = ann.error("edit", mid=kept["mid"], body="HELLO")
    assert edit["code"] == "forbidden"
    assert node.node.history(room="lobby")["messages"][0]["body"] == "hello"


def test_a_replaced_body_is_the_one_stored_and_delivered_for_sends_edits_and_publishes(
    start_node: Callable[..., RunningNode],
) -> None:
    def before_publish(message: Outgoing) -> Decision:
        if isinstance(message.body, str):
            return Replace(message.body.replace("darn", "****"))
        return ALLOW

    node = start_node(hooks=Hooks(before_publish=before_publish))
    ann, bob = node.client("ann"), node.client("bob")
    for client in (ann, bob):
        client.ok("join", room="lobby")
    sent = ann.ok("send", room="lobby", body="darn it")
    assert bob.event("msg", room="lobby")["body"] == "**** it"
    ann.ok("edit", mid=sent["mid"], body="darn, again")
    assert bob.event("edit", room="lobby")["body"] == "****, again"
    node.node.publish("darn bots", room="lobby")
    assert bob.event("msg", room="lobby", **{"from": "system"})["body"] == "**** bots"
    bodies = [m["body"] for m in node.node.history(room="lobby")["messages"]]
    assert bodies == ["****, again", "**** bots"]


def test_a_hook_that_raises_or_answers_nonsense_refuses_that_message_internal_and_nothing_else(
    start_node: Callable[..., RunningNode], caplog: pytest.LogCaptureFixture
) -> None:
    def before_publish(message: Outgoing) -> Any:
        if message.body == "boom":
            raise RuntimeError("the moderation service is down")
        if message.body == "nonsense":
            return "yes"
        if message.body == "unsendable":
            return Replace(object())
        return ALLOW

    node = start_node(hooks=Hooks(before_publish=before_publish))
    ann, bob = node.client("ann"), node.client("bob")
    for client in (ann, bob):
        client.ok("join", room="lobby")
    with caplog.at_level(logging.ERROR, logger="actorim.hooks"):
        for body in ("boom", "nonsense", "unsendable"):
            assert ann.error("send", room="lobby", body=body)["code"] == "internal"
    assert "the moderation service is down" in caplog.text
    assert "not ALLOW, Reject or Replace" in caplog.text
    # The connection lives on, and so does everyone else's.
    kept = ann.ok("send", room="lobby", body="fine")
    assert bob.event("msg", room="lobby")["mid"] == kept["mid"]
    assert [m["body"] for m in node.node.history(room="lobby")["messages"]] == ["fine"]


def test_a_slow_hook_stalls_only_its_sender_while_a_bystanders_messages_keep_flowing(
    start_node: Callable[..., RunningNode],
) -> None:
    release, entered = Event(), Event()

    def before_publish(message: Outgoing) -> Decision:
        if message.sender == "slow":
            entered.set()
            release.wait()  # a hook waiting on a slow service
        return ALLOW

    node = start_node(hooks=Hooks(before_publish=before_publish), hook_timeout=30)
    slow, bob, carol = node.client("slow"), node.client("bob"), node.client("carol")
    for client in (slow, bob, carol):
        client.ok("join", room="lobby")
    waiting = next(slow.ids)
    slow.send_obj({"t": "send", "id": waiting, "room": "lobby", "body": "held", "cid": "h"})
    entered.wait(timeout=5)
    for n in range(20):
        bob.ok("send", room="lobby", body=f"flowing {n}")
        assert carol.event("msg", room="lobby")["body"] == f"flowing {n}"
    release.set()
    assert slow.reply_to(waiting)["ok"]
    assert carol.event("msg", room="lobby")["body"] == "held"


def test_a_hook_past_hook_timeout_refuses_its_message_internal(
    start_node: Callable[..., RunningNode], caplog: pytest.LogCaptureFixture
) -> None:
    never = Event()

    def before_publish(message: Outgoing) -> Decision:
        never.wait()
        return ALLOW

    node = start_node(hooks=Hooks(before_publish=before_publish), hook_timeout=0.2)
    ann = node.client("ann")
    ann.ok("join", room="lobby")
    with caplog.at_level(logging.ERROR, logger="actorim.hooks"):
        assert ann.error("send", room="lobby", body="late")["code"] == "internal"
    assert "did not answer within 0.2 s" in caplog.text
    assert ann.ok("ping") == {}


def test_on_connect_and_on_disconnect_are_told_of_each_session_in_order_whatever_they_do(
    start_node: Callable[..., RunningNode], caplog: pytest.LogCaptureFixture
) -> None:
    told: list[tuple[str, str, SessionInfo]] = []
    disconnected = Event()

    def on_connect(user: str, session: SessionInfo) -> None:
        gevent.sleep(0.05)  # slower than the disconnect: it is still told first
        told.append(("connect", user, session))
        raise RuntimeError("the CRM is down")

    def on_disconnect(user: str, session: SessionInfo) -> None:
        told.append(("disconnect", user, session))
        disconnected.set()

    node = start_node(hooks=Hooks(on_connect=on_connect, on_disconnect=on_disconnect))
    with caplog.at_level(logging.ERROR, logger="actorim.hooks"):
        ann = node.client()
        reply = ann.connect(node.token("ann"))
        assert ann.ok("ping") == {}  # the failing hook left the connection alone
        ann.close()
        assert disconnected.wait(timeout=5)
    assert [(what, user) for what, user, _ in told] == [("connect", "ann"), ("disconnect", "ann")]
    assert {info.session for _, _, info in told} == {reply["session"]}
    assert told[0][2].node == node.node.ctx.node_id
    assert "the CRM is down" in caplog.text
