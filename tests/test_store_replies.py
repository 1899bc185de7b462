"""The store's answers go back to the actor that asked, as a message it handles in its turn."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from gevent.event import Event
from pykka import ActorDeadError

from actorim.domain.messages import room_conv
from actorim.runtime.messages import Call, LastSeq, PendingFor, Since
from actorim.runtime.replies import ConnectionReplies
from supervisors import MailboxFull
from tests.support import Client, RunningNode


class Recorder:
    """A ``reply_to`` that keeps what the store tells it, without running it."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.arrived = Event()

    def tell(self, message: Any) -> None:
        self.messages.append(message)
        self.arrived.set()


def test_store_reads_are_answered_to_the_asker_not_run_in_the_store(
    start_node: Callable[..., RunningNode],
) -> None:
    node = start_node()
    ran: list[Any] = []

    def done(result: Any, error: BaseException | None) -> None:
        ran.append((result, error))

    conv = room_conv("lobby")
    for request in (
        LastSeq(conv, Recorder(), done),
        Since(conv, 0, 10, None, Recorder(), done),
        PendingFor("alice", None, 10, Recorder(), done),
    ):
        node.node.ctx.refs.tell_store(request)
        assert request.reply_to.arrived.wait(10)
        (answer,) = request.reply_to.messages
        assert isinstance(answer, Call)
        assert answer.func is done
        assert answer.args[1] is None
    assert ran == []  # the store never ran the asker's code in its own turn


def test_connection_answer_waits_for_a_restarted_actor() -> None:
    """An answer arriving while the connection's actor is down is kept for the next one."""
    answer = Call(print, ("answer",))
    link = SimpleNamespace(actor=None, carry_over=[])
    ConnectionReplies(link).tell(answer)  # type: ignore[arg-type]
    assert link.carry_over == [answer]

    class Dead:
        def tell(self, message: Any) -> None:
            raise ActorDeadError("gone")

    link = SimpleNamespace(actor=Dead(), carry_over=[])
    ConnectionReplies(link).tell(answer)  # type: ignore[arg-type]
    assert link.carry_over == [answer]


def test_an_answer_a_swamped_connection_cannot_take_closes_it_1013() -> None:
    """A lost answer would hold up the connection's later requests: it is closed instead."""
    answer = Call(print, ("answer",))
    closes: list[tuple[int, str]] = []

    class Swamped:
        def tell(self, message: Any) -> None:
            raise MailboxFull("full")

    link = SimpleNamespace(
        actor=Swamped(),
        carry_over=[],
        request_close=lambda code, reason: closes.append((code, reason)),
    )
    ConnectionReplies(link).tell(answer)  # type: ignore[arg-type]
    assert [code for code, _ in closes] == [1013] and link.carry_over == []


def test_history_answers_reach_a_connection_whose_actor_crashed_while_waiting(
    start_node: Callable[..., RunningNode],
) -> None:
    """Pages asked for just before the connection's actor crashes are answered to the fresh
    actor, in order, and the connection carries on (a ping after them is answered last)."""
    node = start_node(fault_injection=True)
    alice = node.client("alice")
    alice.ok("join", room="h")
    for body in range(5):
        alice.ok("send", room="h", body=body)
    pages = [send(alice, "history", room="h", limit=2 + n) for n in range(3)]
    crash = send(alice, "debug.crash", what="connection")
    ping = send(alice, "ping")
    for n, command_id in enumerate(pages):
        page = alice.reply_to(command_id)
        assert page["ok"], page
        assert [m["body"] for m in page["data"]["messages"]] == list(range(3 - n, 5))
    assert alice.reply_to(crash)["error"]["code"] == "internal"
    assert alice.reply_to(ping)["ok"]


def send(client: Client, t: str, **args: Any) -> int:
    """Send a command without waiting for its reply; return its id."""
    command_id = next(client.ids)
    client.send_obj({"t": t, "id": command_id, **args})
    return command_id
