"""Bounded mailboxes: a slow actor pushes back on, drops, or fails under a flood of messages,
as its class says, instead of growing without limit."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

import gevent
import gevent.event
import pytest
from pykka import ActorDeadError, ActorRef, ActorRegistry

from supervisors import (
    Exit,
    ExitKind,
    GeventActor,
    MailboxFull,
    MailboxOverflow,
    Overflow,
    kill,
    monitor,
)
from supervisors._pykka_compat import actor_of

WAIT = 5.0  # seconds
CAPACITY = 3


@pytest.fixture(autouse=True)
def _no_actor_outlives_its_test() -> Iterator[None]:
    yield
    for ref in reversed(ActorRegistry.get_all()):
        kill(ref)


class Slow(GeventActor):
    """Blocks in its first message until released, so its mailbox fills up behind it."""

    mailbox_capacity = CAPACITY

    def __init__(self) -> None:
        super().__init__()
        self.inside = gevent.event.Event()
        self.release = gevent.event.Event()
        self.handled: list[Any] = []
        self._progress = gevent.event.Event()

    def on_receive(self, message: Any) -> Any:
        if message == "block":
            self.inside.set()
            self.release.wait()
        self.handled.append(message)
        self._progress.set()
        return message

    def unblock_and_drain(self, count: int) -> None:
        """Release the handler and wait until ``count`` messages in all have been handled."""
        self.release.set()
        with gevent.Timeout(WAIT):
            while len(self.handled) < count:
                self._progress.clear()
                self._progress.wait()


class Rejecting(Slow):
    mailbox_overflow = Overflow.REJECT


class Dropping(Slow):
    mailbox_overflow = Overflow.DROP


class Failing(Slow):
    mailbox_overflow = Overflow.FAIL


def blocked(actor_class: type[Slow]) -> tuple[ActorRef[Any], Slow]:
    """Start an actor that is stuck inside a handler with an empty mailbox."""
    ref = actor_class.start()
    actor = ref._actor_weakref()
    assert actor is not None
    ref.tell("block")
    assert actor.inside.wait(WAIT)
    return ref, actor


def fill(ref: ActorRef[Any]) -> None:
    for n in range(CAPACITY):
        ref.tell(n)


def test_default_mailbox_is_unbounded() -> None:
    class Unbounded(GeventActor):
        def on_receive(self, message: Any) -> Any:
            return message

    ref = Unbounded.start()
    for n in range(10_000):
        ref.tell(n)

    assert ref.ask("last", timeout=WAIT) == "last"


def test_reject_raises_mailbox_full_to_the_teller() -> None:
    ref, actor = blocked(Rejecting)
    fill(ref)

    with pytest.raises(MailboxFull, match=f"{CAPACITY} messages"):
        ref.tell("one too many")

    actor.unblock_and_drain(1 + CAPACITY)
    assert ref.ask("after", timeout=WAIT) == "after"
    assert actor.handled == ["block", 0, 1, 2, "after"]


def test_reject_raises_mailbox_full_to_the_asker() -> None:
    ref, _actor = blocked(Rejecting)
    fill(ref)

    with pytest.raises(MailboxFull):
        ref.ask("one too many", block=False)


def test_drop_discards_and_counts_told_messages() -> None:
    ref, actor = blocked(Dropping)
    fill(ref)

    ref.tell("dropped 1")
    ref.tell("dropped 2")

    assert actor.actor_inbox.dropped == 2
    actor.unblock_and_drain(1 + CAPACITY)
    assert ref.ask("after", timeout=WAIT) == "after"
    assert actor.handled == ["block", 0, 1, 2, "after"]


def test_drop_answers_an_ask_with_mailbox_full() -> None:
    ref, actor = blocked(Dropping)
    fill(ref)

    reply = ref.ask("dropped", block=False)

    with pytest.raises(MailboxFull):
        reply.get(timeout=WAIT)
    assert actor.actor_inbox.dropped == 1


def test_fail_makes_the_actor_fail_with_mailbox_overflow() -> None:
    ref, actor = blocked(Failing)
    exits: list[Exit] = []
    ended = gevent.event.Event()
    monitor(ref, lambda _r, reason: (exits.append(reason), ended.set()))
    fill(ref)

    ref.tell("overflow")  # the sender is not interrupted
    actor.release.set()

    assert ended.wait(WAIT)
    assert [e.kind for e in exits] == [ExitKind.FAILURE]
    assert isinstance(exits[0].exception, MailboxOverflow)
    assert not ref.is_alive()


def test_fail_answers_the_overflowing_ask_and_dead_letters_the_queued_ones() -> None:
    ref, actor = blocked(Failing)
    queued = ref.ask("queued", block=False)
    ref.tell(1)
    ref.tell(2)

    overflowing = ref.ask("overflow", block=False)
    actor.release.set()

    with pytest.raises(MailboxFull):
        overflowing.get(timeout=WAIT)
    # The actor fails at its next message boundary: what was queued is never handled.
    with pytest.raises(ActorDeadError):
        queued.get(timeout=WAIT)
    assert actor.handled == ["block"]


def test_stop_is_accepted_by_a_full_mailbox() -> None:
    for actor_class in (Rejecting, Dropping, Failing):
        ref, actor = blocked(actor_class)
        fill(ref)

        stopping = ref.stop(block=False)
        actor.release.set()

        assert stopping.get(timeout=WAIT) is True
        assert not ref.is_alive()


def test_capacity_counts_messages_still_on_their_way_from_os_threads() -> None:
    ref, actor = blocked(Rejecting)

    def flood() -> tuple[int, int]:
        accepted = rejected = 0
        for n in range(20):
            try:
                ref.tell(n)
            except MailboxFull:
                rejected += 1
            else:
                accepted += 1
        return accepted, rejected

    assert gevent.get_hub().threadpool.spawn(flood).get(timeout=WAIT) == (CAPACITY, 20 - CAPACITY)
    actor.unblock_and_drain(1 + CAPACITY)
    assert ref.ask("after", timeout=WAIT) == "after"
    assert actor.handled == ["block", 0, 1, 2, "after"]


def test_capacity_below_one_is_refused_at_start() -> None:
    class Impossible(GeventActor):
        mailbox_capacity = 0

    with pytest.raises(ValueError, match="capacity must be at least 1"):
        Impossible.start()


class HandsOn(GeventActor):
    """Blocks in its first message; then fails, or drains its mailbox, as that message says.
    Whatever ``drain_mailbox`` returns is kept in ``taken``."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = gevent.event.Event()
        self.release = gevent.event.Event()
        self.taken: list[Any] = []
        self.stopped = False

    def on_receive(self, message: Any) -> Any:
        self.inside.set()
        self.release.wait()
        if message == "fail":
            raise RuntimeError("fails with messages queued")
        if message == "drain":
            self.taken = self.drain_mailbox()
        return message

    def on_failure(self, *_exc: object) -> None:
        self.taken = self.drain_mailbox()

    def on_stop(self) -> None:
        self.stopped = True


def hands_on_blocked(first: str) -> tuple[ActorRef[Any], HandsOn, gevent.event.AsyncResult]:
    ref = HandsOn.start()
    actor = actor_of(ref)
    assert isinstance(actor, HandsOn)
    ended = gevent.event.AsyncResult()
    monitor(ref, lambda _ref, why: ended.set(why))
    ref.tell(first)
    assert actor.inside.wait(WAIT)
    return ref, actor, ended


def test_drain_mailbox_hands_told_messages_on_and_answers_asks_actor_dead() -> None:
    ref, actor, ended = hands_on_blocked("fail")
    ref.tell("a")
    asked = ref.ask("b", block=False)
    ref.tell("c")
    actor.release.set()

    assert ended.get(timeout=WAIT).kind is ExitKind.FAILURE
    assert actor.taken == ["a", "c"]
    with pytest.raises(ActorDeadError):
        asked.get(timeout=WAIT)


def test_drain_mailbox_leaves_a_stop_request_so_the_actor_still_stops() -> None:
    ref, actor, ended = hands_on_blocked("drain")
    ref.tell("x")
    stopping = ref.stop(block=False)
    ref.tell("y")
    actor.release.set()

    assert ended.get(timeout=WAIT) == Exit(ExitKind.NORMAL)
    assert stopping.get(timeout=WAIT) is True
    assert actor.taken == ["x", "y"]
    assert actor.stopped


class TellsItselfOnStart(GeventActor):
    """Tells itself 1 in ``on_start``, then each number up to 3 from the handler of the one
    before: every message arrives while the actor's loop is running."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int] = []
        self.third = gevent.event.Event()

    def on_start(self) -> None:
        self.actor_ref.tell(1)

    def on_receive(self, message: Any) -> Any:
        self.seen.append(message)
        if message < 3:
            self.actor_ref.tell(message + 1)
        elif message == 3:
            self.third.set()
        return None


def test_an_idle_mailbox_lets_go_of_its_queue_and_misses_no_message() -> None:
    ref = TellsItselfOnStart.start()
    actor = actor_of(ref)
    assert actor.third.wait(WAIT)
    ref.ask(4, timeout=WAIT)
    assert actor.seen == [1, 2, 3, 4]
    gevent.sleep(0)  # the actor's loop returns its greenlet once the mailbox is empty
    assert not isinstance(actor.actor_inbox.queue, deque)  # an idle actor holds no queue
    assert actor.drain_mailbox() == []
    ref.tell(5)
    assert ref.ask(6, timeout=WAIT) is None
    assert actor.seen == [1, 2, 3, 4, 5, 6]
