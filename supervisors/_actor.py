"""``GeventActor``: Pykka's actor API on gevent greenlets, with a loop we own.

Pykka 4.5 ships only ``ThreadingActor``; its ``Actor`` exposes three hooks for new runtimes
(``_create_actor_inbox``, ``_create_future``, ``_start_actor_loop``). We implement all three and
run our own loop instead of ``Actor._actor_loop``, because Pykka's loop is wrong for a supervised
system in three ways:

* a ``BaseException`` in a handler (a killed greenlet, an escaping ``gevent.Timeout``) makes it
  call ``ActorRegistry.stop_all()``: one actor would take every other actor down;
* failures in ``on_start``, ``on_stop`` and ``ask``-ed handlers never reach ``on_failure`` and
  are invisible from outside;
* an idle actor whose thread is gone stays registered forever.

Here every end of an actor, for whatever reason, goes through one path (:meth:`_end`): it is
unregistered, pending asks get ``ActorDeadError``, and monitors (a supervisor) receive an
:class:`~supervisors.Exit` saying why.

An idle actor holds no greenlet: a greenlet is spawned when a message arrives and exits when
the mailbox is empty, so 10,000 idle actors cost 10,000 small objects, not 10,000 stacks.
A busy actor yields to the hub every ``fairness_batch`` messages so that it cannot starve
other actors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import Enum
from typing import Any, ClassVar

import gevent
from gevent import GreenletExit
from greenlet import getcurrent
from pykka import Actor, ActorRef, ActorRegistry
from pykka.messages import _ActorStop

from supervisors._exit import KILLED, NOPROC, NORMAL, Exit, ExitKind
from supervisors._future import GeventFuture
from supervisors._mailbox import Mailbox, Overflow, dead_letter
from supervisors._registry import install as _install_registry
from supervisors._runtime import call_on_home, home_hub, on_home_thread

__all__ = ["ActorKilled", "GeventActor", "Monitor", "demonitor", "kill", "monitor"]

logger = logging.getLogger("supervisors")

_install_registry()

MonitorCallback = Callable[[ActorRef[Any], Exit], None]


class ActorKilled(GreenletExit):
    """Thrown into an actor's greenlet by :func:`kill`."""


class _State(Enum):
    NEW = "new"
    RUNNING = "running"
    ENDED = "ended"


class Monitor:
    """A registration made by :func:`monitor`; pass it to :func:`demonitor` to cancel."""

    __slots__ = ("active", "callback", "reports_crashes")

    def __init__(self, callback: MonitorCallback, *, reports_crashes: bool) -> None:
        self.callback = callback
        self.reports_crashes = reports_crashes
        self.active = True


class GeventActor(Actor):
    """A Pykka actor that runs on gevent greenlets.

    Use it like ``pykka.ThreadingActor``: ``start``, ``tell``, ``ask``, proxies, ``stop`` and
    ``ActorRegistry`` all work, from greenlets and from real OS threads. Class attributes tune it:

    * ``mailbox_capacity`` (default ``None``, unbounded) and ``mailbox_overflow`` (default
      ``Overflow.REJECT``): a bounded mailbox and what happens to a message that finds it full.
    * ``crash_on_ask_error`` (default ``True``): an exception raised while handling an ``ask``
      goes back to the caller *and* fails the actor, as a crashed ``gen_server:call`` would. Set
      it to ``False`` for Pykka's behaviour, where the actor carries on.
    * ``fairness_batch`` (default 64): messages handled before yielding to other greenlets.

    Example::

        class Greeter(GeventActor):
            def on_receive(self, message):
                return f"hello {message}"

        ref = Greeter.start()
        assert ref.ask("world") == "hello world"
        ref.stop()
    """

    mailbox_capacity: ClassVar[int | None] = None
    mailbox_overflow: ClassVar[Overflow] = Overflow.REJECT
    crash_on_ask_error: ClassVar[bool] = True
    fairness_batch: ClassVar[int] = 64

    actor_inbox: Mailbox  # type: ignore[assignment]

    @staticmethod
    def _create_actor_inbox() -> Mailbox:  # type: ignore[override]
        return Mailbox()

    @staticmethod
    def _create_future() -> GeventFuture[Any]:
        return GeventFuture()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.actor_inbox.bind(self, self.mailbox_capacity, self.mailbox_overflow)
        self._greenlet: Any = None
        self._state = _State.NEW
        self._monitors: list[Monitor] | None = None
        self._doom: BaseException | None = None
        self._exit: Exit | None = None

    def _start_actor_loop(self) -> None:
        home_hub()
        if on_home_thread():
            self._schedule()
        else:
            call_on_home(self._schedule)

    # -- the loop ----------------------------------------------------------------------------

    def _schedule(self) -> None:
        if self._greenlet is None and self._state is not _State.ENDED:
            self._greenlet = gevent.spawn_raw(self._run)

    def _deliver(self, envelope: Any) -> None:
        """Queue a message on the home hub and make sure a greenlet will handle it."""
        if self._state is _State.ENDED:
            dead_letter(envelope, self)
            return
        self.actor_inbox.queue.append(envelope)
        if self._greenlet is None:
            self._greenlet = gevent.spawn_raw(self._run)

    def _fail_soon(self, exc: BaseException) -> None:
        """Fail the actor at its next message boundary (mailbox overflow under ``FAIL``)."""
        if self._state is _State.ENDED or self._doom is not None:
            return
        self._doom = exc
        self._schedule()

    def _run(self) -> None:
        me = getcurrent()
        if self._greenlet is not me or self._state is _State.ENDED:
            return  # killed before this greenlet got to run
        queue = self.actor_inbox.queue
        envelope = None
        try:
            if self._state is _State.NEW:
                self._state = _State.RUNNING
                self.on_start()
            handled = 0
            while queue and self._state is _State.RUNNING:
                if self._doom is not None:
                    raise self._doom
                envelope = queue.popleft()
                message = envelope.message
                if message.__class__ is _ActorStop:
                    self._stop_normally(envelope)
                    return
                try:
                    result = self._handle_receive(message)
                except Exception:
                    if envelope.reply_to is None:
                        raise
                    envelope.reply_to.set_exception()
                    if self.crash_on_ask_error:
                        envelope = None
                        raise
                else:
                    if envelope.reply_to is not None:
                        envelope.reply_to.set(result)
                envelope = None
                handled += 1
                if handled >= self.fairness_batch and queue:
                    handled = 0
                    gevent.sleep(0)
            if self._doom is not None and self._state is _State.RUNNING:
                raise self._doom
        except BaseException as exc:
            self._crashed(exc, envelope)
        finally:
            if self._greenlet is me:
                self._greenlet = None

    def _stop_normally(self, stopper: Any) -> None:
        self.actor_stopped.set()
        ActorRegistry.unregister(self.actor_ref)
        try:
            self.on_stop()
        except Exception as exc:
            if not self._has_crash_reporter():
                logger.exception("%s failed in on_stop", self)
            self._end(Exit(ExitKind.FAILURE, exc), stopper=stopper)
        else:
            self._end(NORMAL, stopper=stopper)

    def _crashed(self, exc: BaseException, envelope: Any) -> None:
        if self._state is _State.ENDED:
            return
        if envelope is not None and envelope.reply_to is not None:
            dead_letter(envelope, self)
        if isinstance(exc, GreenletExit):
            self._end(KILLED)
            return
        if not self._has_crash_reporter():
            logger.error("%s crashed", self, exc_info=(type(exc), exc, exc.__traceback__))
        try:
            self.on_failure(type(exc), exc, exc.__traceback__)
        except Exception:
            logger.exception("%s: on_failure raised", self)
        self._end(Exit(ExitKind.FAILURE, exc))

    def _has_crash_reporter(self) -> bool:
        return any(m.active and m.reports_crashes for m in self._monitors or ())

    def _end(self, reason: Exit, *, stopper: Any = None) -> None:
        """The single way out: unregister, answer what is queued, tell the monitors."""
        if self._state is _State.ENDED:
            return
        self._state = _State.ENDED
        self._exit = reason
        self.actor_stopped.set()
        ActorRegistry.unregister(self.actor_ref)
        queue = self.actor_inbox.queue
        while queue:
            dead_letter(queue.popleft(), self)
        if stopper is not None and stopper.reply_to is not None:
            stopper.reply_to.set(None)
        monitors, self._monitors = self._monitors, None
        for mon in monitors or ():
            if not mon.active:
                continue
            mon.active = False
            try:
                mon.callback(self.actor_ref, reason)
            except Exception:
                logger.exception("monitor of %s raised", self)

    # -- public helpers ------------------------------------------------------------------------

    @property
    def exit_reason(self) -> Exit | None:
        """Why the actor ended, or None while it runs."""
        return self._exit

    def kill(self) -> None:
        """End the actor now, without ``on_stop``: OTP's ``brutal_kill``."""
        if self._state is _State.ENDED:
            return
        glet = self._greenlet
        if glet is not None and glet is getcurrent():
            raise ActorKilled
        if glet is not None and bool(glet):  # started and suspended inside a handler
            home_hub().loop.run_callback(self._throw_kill, glet)
            return
        self._greenlet = None
        self._end(KILLED)

    def _throw_kill(self, glet: Any) -> None:
        if glet is self._greenlet and not glet.dead:
            glet.throw(ActorKilled())
        elif self._state is not _State.ENDED:
            self._greenlet = None
            self._end(KILLED)


def _actor_of(ref: ActorRef[Any]) -> GeventActor | None:
    actor = ref._actor_weakref()
    if actor is None:
        return None
    if not isinstance(actor, GeventActor):
        msg = f"{ref} is not a GeventActor: only GeventActors can be monitored or killed"
        raise TypeError(msg)
    return actor


def monitor(
    ref: ActorRef[Any], callback: MonitorCallback, *, reports_crashes: bool = False
) -> Monitor:
    """Call ``callback(ref, exit)`` once, when the actor ends (at once if it already has).

    With ``reports_crashes=True`` the monitor takes over logging the actor's crash (a supervisor
    logs it with the child's id), so each crash is logged once. Callbacks run on the hub inside
    the ending actor's greenlet: keep them short, typically a ``tell``.
    """
    mon = Monitor(callback, reports_crashes=reports_crashes)
    actor = _actor_of(ref)
    if actor is None or actor._state is _State.ENDED:
        mon.active = False
        reason = actor._exit if actor is not None and actor._exit else NOPROC
        callback(ref, reason)
        return mon
    if actor._monitors is None:
        actor._monitors = []
    actor._monitors.append(mon)
    return mon


def demonitor(mon: Monitor) -> None:
    """Cancel a monitor; its callback will not be called."""
    mon.active = False


def kill(ref: ActorRef[Any]) -> None:
    """Brutally kill the actor behind ``ref`` (see :meth:`GeventActor.kill`)."""
    actor = _actor_of(ref)
    if actor is not None:
        if on_home_thread():
            actor.kill()
        else:
            call_on_home(actor.kill)
