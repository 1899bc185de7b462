"""Actor mailboxes, optionally bounded, so a slow consumer cannot grow memory without limit."""

from __future__ import annotations

from collections import deque
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from gevent import monkey
from pykka import ActorDeadError

from supervisors._pykka_compat import ActorStop, is_stop
from supervisors._runtime import call_on_home, on_home_thread

if TYPE_CHECKING:
    from supervisors._pykka_compat import Envelope

__all__ = ["MailboxFull", "MailboxOverflow", "Overflow"]

# Guards the count of envelopes on their way from other OS threads; never held while waiting.
_in_flight_lock = monkey.get_original("_thread", "allocate_lock")()

# The queue of every resting mailbox: empty, shared, and without ``append`` (a message must go
# through ``Mailbox.live``).
_NO_MESSAGES: Any = ()


class MailboxOwner(Protocol):
    """What a mailbox needs of the actor it belongs to (:class:`~supervisors.GeventActor`):
    named here so that the mailbox does not import the actor module that imports it."""

    def _deliver(self, envelope: Any) -> None:
        """Queue a message on the home hub and make sure a greenlet will handle it."""
        ...

    def _fail_soon(self, exc: BaseException) -> None:
        """Fail the actor at its next message boundary."""
        ...


class Overflow(StrEnum):
    """What a bounded mailbox does with a message that finds it full.

    ``REJECT``: the sender's ``tell``/``ask`` raises :class:`MailboxFull` (back-pressure).
    ``DROP``: the message is discarded and counted in ``Mailbox.dropped``; an ``ask`` gets
    :class:`MailboxFull` through its future. ``FAIL``: the actor fails (a supervisor restarts or
    closes it): the policy for consumers that must never fall behind silently.
    """

    REJECT = "reject"
    DROP = "drop"
    FAIL = "fail"


class MailboxFull(Exception):
    """The actor's mailbox is at capacity; the message was not queued."""


class MailboxOverflow(Exception):
    """An actor with the ``fail`` overflow policy failed because its mailbox overflowed."""


class Mailbox:
    """Pykka's ``ActorInbox`` for :class:`~supervisors.GeventActor`.

    ``put`` may be called from any thread: on the home hub it queues and schedules the actor
    directly; from another OS thread it hands the envelope to the hub thread-safely, which also
    wakes the hub at once. Only the actor's own loop takes messages out.

    The capacity counts envelopes still on their way from other threads, so a burst from a
    thread cannot overfill the mailbox. A stop request is never refused: it is how a supervisor
    ends an actor that has fallen behind.
    """

    __slots__ = ("_actor", "_in_flight", "capacity", "dropped", "overflow", "queue")

    def __init__(self) -> None:
        # An idle actor holds no deque (its first block is over 500 bytes): the shared empty
        # tuple stands in for it until a message comes (``live``), and again once the actor
        # handled them all (``rest``). Code that only reads the queue sees an empty sequence.
        self.queue: deque[Envelope[Any]] = _NO_MESSAGES
        self._actor: MailboxOwner | None = None
        self.capacity: int | None = None
        self.overflow = Overflow.REJECT
        self.dropped = 0
        self._in_flight = 0

    def live(self) -> deque[Envelope[Any]]:
        """The queue, made if the mailbox was resting: for appending and for the actor loop."""
        queue = self.queue
        if queue is _NO_MESSAGES:
            queue = self.queue = deque()
        return queue

    def rest(self) -> None:
        """Let go of the queue while it is empty (the actor loop stops until the next message)."""
        if not self.queue:
            self.queue = _NO_MESSAGES

    def bind(self, actor: MailboxOwner, capacity: int | None, overflow: Overflow) -> None:
        if capacity is not None and capacity < 1:
            msg = f"mailbox capacity must be at least 1, got {capacity}"
            raise ValueError(msg)
        self._actor = actor
        self.capacity = capacity
        self.overflow = Overflow(overflow)

    def put(self, envelope: Envelope[Any], /) -> None:
        actor = self._actor
        assert actor is not None, "Mailbox used before its actor was created"
        if on_home_thread():
            if self.capacity is not None and self._full(envelope):
                self._overflowed(actor, envelope)
                return
            actor._deliver(envelope)
            return
        with _in_flight_lock:
            if self.capacity is not None and self._full(envelope):
                self._overflowed(actor, envelope)
                return
            self._in_flight += 1
        call_on_home(self._arrived, envelope)

    def _full(self, envelope: Envelope[Any]) -> bool:
        assert self.capacity is not None
        if envelope.message.__class__ is ActorStop:
            return False
        return len(self.queue) + self._in_flight >= self.capacity

    def _arrived(self, envelope: Envelope[Any]) -> None:
        """An envelope put from another thread reaches the hub."""
        actor = self._actor
        assert actor is not None
        with _in_flight_lock:
            self._in_flight -= 1
            actor._deliver(envelope)

    def _overflowed(self, actor: MailboxOwner, envelope: Envelope[Any]) -> None:
        message = f"mailbox of {actor} is full ({self.capacity} messages)"
        if self.overflow is Overflow.REJECT:
            raise MailboxFull(message)
        self.dropped += 1
        if envelope.reply_to is not None:
            envelope.reply_to.set_exception((MailboxFull, MailboxFull(message), None))
        if self.overflow is Overflow.FAIL:
            fail = actor._fail_soon
            if on_home_thread():
                fail(MailboxOverflow(message))
            else:
                call_on_home(fail, MailboxOverflow(message))

    def get(self) -> Envelope[Any]:
        return self.live().popleft()

    def empty(self) -> bool:
        return not self.queue

    def __len__(self) -> int:
        return len(self.queue)


def dead_letter(envelope: Envelope[Any], actor: object) -> None:
    """Answer a message that reached an actor after it ended, as Pykka's own teardown does."""
    if envelope.reply_to is None:
        return
    if is_stop(envelope.message):
        envelope.reply_to.set(None)
        return
    error = ActorDeadError(f"{actor} stopped before handling the message")
    envelope.reply_to.set_exception((ActorDeadError, error, None))
