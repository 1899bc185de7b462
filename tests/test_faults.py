"""Fault injection lives in one mixin: an actor crashed by ``debug.crash`` fails as a real failure
would, the command that asked for it is answered ``internal`` once the actor has failed, and
the production actors' handlers carry no trace of it. (The crashes against a real node are in
tests/test_server_supervision.py.)"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import gevent.event
import pytest
from pykka import ActorRegistry

from actorim.protocol.errors import ErrorCode
from actorim.runtime.connection import ConnectionActor
from actorim.runtime.faults import Crash, FaultInjectable, InjectedFault
from actorim.runtime.presence import PresenceActor
from actorim.runtime.room import RoomActor
from actorim.runtime.store import StoreActor
from supervisors import Exit, ExitKind, GeventActor, kill, monitor

WAIT = 5.0  # seconds


@pytest.fixture(autouse=True)
def _no_actor_outlives_its_test() -> Iterator[None]:
    yield
    for ref in reversed(ActorRegistry.get_all()):
        kill(ref)


class FakeLink:
    """Records the answers a crashed actor gives, as a connection's link would send them."""

    def __init__(self, log: list[Any]) -> None:
        self.log = log

    def fail(self, command: str, command_id: int, code: ErrorCode, text: str) -> None:
        self.log.append(("fail", command, command_id, code, text))


class Widget(FaultInjectable, GeventActor):
    fault_kind = "widget"
    fault_subject = "the widget"

    def __init__(self, log: list[Any]) -> None:
        super().__init__()
        self.log = log

    def on_receive(self, message: Any) -> Any:
        if message == "work":
            self.log.append("worked")
            return None
        return super().on_receive(message)

    def on_failure(self, *exc_info: Any) -> None:
        self.log.append(("own on_failure", exc_info[1]))
        super().on_failure(*exc_info)


def run_until_ended(log: list[Any], *messages: Any) -> Exit:
    """Start a Widget that logs to ``log``, tell it ``messages``, and wait for its end."""
    ref = Widget.start(log)
    ended = gevent.event.AsyncResult()
    monitor(ref, lambda _ref, why: ended.set(why))
    for message in messages:
        ref.tell(message)
    return ended.get(timeout=WAIT)


def test_crash_fails_the_actor_then_answers_the_command_internal() -> None:
    log: list[Any] = []
    why = run_until_ended(log, "work", Crash(FakeLink(log), 7), "work")

    assert why.kind is ExitKind.FAILURE
    assert isinstance(why.exception, InjectedFault)
    assert str(why.exception) == "debug.crash: widget failure injected"
    assert log == [
        "worked",
        ("own on_failure", why.exception),
        ("fail", "debug.crash", 7, ErrorCode.INTERNAL, "the widget failed (injected)"),
    ]


def test_crash_without_a_command_to_answer_only_fails_the_actor() -> None:
    log: list[Any] = []
    why = run_until_ended(log, Crash(None, None))

    assert isinstance(why.exception, InjectedFault)
    assert log == [("own on_failure", why.exception)]


def test_a_real_failure_answers_no_injected_crash() -> None:
    class Fragile(Widget):
        def on_receive(self, message: Any) -> Any:
            raise ValueError("a real bug")

    log: list[Any] = []
    ref = Fragile.start(log)
    ended = gevent.event.AsyncResult()
    monitor(ref, lambda _ref, why: ended.set(why))
    ref.tell("work")

    why = ended.get(timeout=WAIT)
    assert isinstance(why.exception, ValueError)
    assert log == [("own on_failure", why.exception)]


@pytest.mark.parametrize("actor_class", [RoomActor, StoreActor, PresenceActor])
def test_crashable_actors_get_fault_injection_from_the_mixin_alone(actor_class: type) -> None:
    assert issubclass(actor_class, FaultInjectable)
    source = inspect.getsource(actor_class)
    assert "Crash" not in source
    assert "injected" not in source


def test_the_connection_hands_debug_crash_to_the_faults_module() -> None:
    source = inspect.getsource(ConnectionActor)
    assert "Crash(" not in source
    assert "injected" not in source
