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

An idle actor holds no greenlet: when a message arrives it borrows one (a parked greenlet, or a
new one) and gives it back when its mailbox is empty, so 10,000 idle actors cost 10,000 small
objects, not 10,000 stacks.
A busy actor yields to the hub every ``fairness_batch`` messages so that it cannot starve
other actors.

Because the greenlet is lent, not owned, a handler must not keep a reference to it (to kill it
or aim a ``gevent.Timeout`` at it later), and greenlet-locals (``threading.local`` under
monkey-patching) and context variables set in one burst of messages are gone in the next: keep
state on the actor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import copy_context
from enum import Enum
from typing import Any, ClassVar

import gevent
from gevent import GreenletExit
from greenlet import getcurrent
from pykka import Actor, ActorRef, ActorRegistry

from supervisors._exit import KILLED, NOPROC, NORMAL, Exit, ExitKind
from supervisors._future import GeventFuture
from supervisors._mailbox import Mailbox, Overflow, dead_letter
from supervisors._pykka_compat import ActorStop, actor_of, dispatcher, is_stop
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


# Attribute access on an Enum class costs about 0.1 µs on Python 3.11, and the state is checked
# for every message sent and handled.
_NEW, _RUNNING, _ENDED = _State.NEW, _State.RUNNING, _State.ENDED


class Monitor:
    """A registration made by :func:`monitor`; pass it to :func:`demonitor` to cancel."""

    __slots__ = ("_owner", "active", "callback", "reports_crashes")

    def __init__(self, callback: MonitorCallback, *, reports_crashes: bool) -> None:
        self.callback = callback
        self.reports_crashes = reports_crashes
        self.active = True
        # The monitored actor's registrations, so that demonitor releases this one (and its
        # callback) at once instead of when the actor ends: long-lived actors are monitored and
        # demonitored many times.
        self._owner: dict[Monitor, None] | None = None


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
        self._in_run = False  # inside on_start, a handler or on_stop (maybe suspended there)
        self._state = _NEW
        self._monitors: dict[Monitor, None] | None = None
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
        if self._greenlet is None and self._state is not _ENDED:
            self._greenlet = _runner_for(self)

    def _deliver(self, envelope: Any) -> None:
        """Queue a message on the home hub and make sure a greenlet will handle it."""
        if self._state is _ENDED:
            dead_letter(envelope, self)
            return
        self.actor_inbox.live().append(envelope)
        if self._greenlet is None:
            self._greenlet = _runner_for(self)

    def _fail_soon(self, exc: BaseException) -> None:
        """Fail the actor at its next message boundary (mailbox overflow under ``FAIL``)."""
        if self._state is _ENDED or self._doom is not None:
            return
        self._doom = exc
        self._schedule()

    def _run(self) -> None:
        me = getcurrent()
        if self._greenlet is not me or self._state is _ENDED:
            return  # killed before this greenlet got to run
        queue = self.actor_inbox.live()
        handle = dispatcher(self)
        envelope = None
        self._in_run = True
        try:
            if self._state is _NEW:
                self._state = _RUNNING
                self.on_start()
            handled = 0
            while queue and self._state is _RUNNING:
                if self._doom is not None:
                    raise self._doom
                envelope = queue.popleft()
                message = envelope.message
                if message.__class__ is ActorStop:
                    self._stop_normally(envelope)
                    return
                try:
                    result = handle(message)
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
            if self._doom is not None and self._state is _RUNNING:
                raise self._doom
        except BaseException as exc:
            self._crashed(exc, envelope)
        finally:
            self._in_run = False
            if self._greenlet is me:
                self._greenlet = None
                self.actor_inbox.rest()

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
        if self._state is _ENDED:
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
        if self._state is _ENDED:
            return
        self._state = _ENDED
        self._exit = reason
        self.actor_stopped.set()
        ActorRegistry.unregister(self.actor_ref)
        queue = self.actor_inbox.queue
        while queue:
            dead_letter(queue.popleft(), self)
        if stopper is not None and stopper.reply_to is not None:
            stopper.reply_to.set(None)
        monitors, self._monitors = self._monitors, None
        for mon in list(monitors or ()):
            if not mon.active:
                continue
            mon.active = False
            mon._owner = None
            try:
                mon.callback(self.actor_ref, reason)
            except Exception:
                logger.exception("monitor of %s raised", self)

    # -- public helpers ------------------------------------------------------------------------

    @property
    def exit_reason(self) -> Exit | None:
        """Why the actor ended, or None while it runs."""
        return self._exit

    def drain_mailbox(self) -> list[Any]:
        """Take the messages still waiting in the mailbox, oldest first: this actor will not
        handle them.

        For an actor that hands its unfinished work on, typically from ``on_failure`` to the
        actor its supervisor starts next (messages that would otherwise be dead letters). Only
        told messages are returned. An asked message is answered with ``ActorDeadError`` at
        once, so its sender learns it was not handled, and a stop request stays in the mailbox:
        the actor still stops. Call it on the actor's own greenlet (in ``on_start``, a handler,
        ``on_stop`` or ``on_failure``).

        Example::

            class Worker(GeventActor):
                def on_failure(self, *exc_info):
                    self.successor_work.extend(self.drain_mailbox())
        """
        queue = self.actor_inbox.queue
        told: list[Any] = []
        kept = []
        while queue:
            envelope = queue.popleft()
            if is_stop(envelope.message):
                kept.append(envelope)
            elif envelope.reply_to is not None:
                dead_letter(envelope, self)
            else:
                told.append(envelope.message)
        if kept:  # then the queue was not empty: it is the live deque
            queue.extend(kept)
        return told

    def kill(self) -> None:
        """End the actor now, without ``on_stop``: OTP's ``brutal_kill``.

        An actor suspended inside a handler (or ``on_start``/``on_stop``) gets ``ActorKilled``
        thrown into it on the next hub iteration; any other actor ends before this returns.
        """
        if self._state is _ENDED:
            return
        glet = self._greenlet
        if glet is not None and glet is getcurrent():
            raise ActorKilled
        if self._busy():
            home_hub().loop.run_callback(self._kill_now)
            return
        self._greenlet = None
        self._end(KILLED)

    def _busy(self) -> bool:
        """Suspended inside user code: a kill must interrupt it there."""
        return self._greenlet is not None and self._in_run

    def _kill_now(self) -> None:
        if self._state is _ENDED:
            return
        if self._busy():
            self._greenlet.throw(ActorKilled())
        else:
            self._greenlet = None
            self._end(KILLED)


# Greenlets parked after running an actor, reused for the next actor that gets a message: a new
# greenlet costs a fresh interpreter data stack (an mmap/munmap pair on CPython 3.11+), several
# times the cost of handling a message. Enough for a burst of activity; the rest exit. A greenlet
# that picked up greenlet-local or context-variable state exits too, so that no actor ever sees
# another actor's locals.
_MAX_PARKED_RUNNERS = 128
_parked: list[Any] = []


def _runner_for(actor: GeventActor) -> Any:
    """A greenlet that will run ``actor._run`` on the home hub soon: parked, or a new one."""
    if _parked:
        runner = _parked.pop()
        home_hub().loop.run_callback(_resume, runner, actor)
        return runner
    return gevent.spawn_raw(_run_actors, actor)


def _resume(runner: Any, actor: GeventActor) -> None:
    if not runner.dead:
        runner.switch(actor)
    elif actor._greenlet is runner:  # killed while parked, after it was lent to this actor
        actor._greenlet = None
        actor._schedule()


def _run_actors(actor: GeventActor) -> None:
    hub = home_hub()
    me = getcurrent()
    clean = len(me.__dict__)  # gevent.local (threading.local when patched) adds keys here
    while isinstance(actor, GeventActor):
        actor._run()
        del actor
        if len(_parked) >= _MAX_PARKED_RUNNERS or len(me.__dict__) != clean or copy_context():
            return
        _parked.append(me)
        try:
            actor = hub.switch()  # resumed by _runner_for with the next actor
        except BaseException:  # thrown into while parked: a stale kill, or the hub ending
            if me in _parked:
                _parked.remove(me)
            return


def _actor_of(ref: ActorRef[Any]) -> GeventActor | None:
    actor = actor_of(ref)
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
    if actor is None or actor._state is _ENDED:
        mon.active = False
        reason = actor._exit if actor is not None and actor._exit else NOPROC
        callback(ref, reason)
        return mon
    if actor._monitors is None:
        actor._monitors = {}
    actor._monitors[mon] = None
    mon._owner = actor._monitors
    return mon


def demonitor(mon: Monitor) -> None:
    """Cancel a monitor; its callback will not be called."""
    mon.active = False
    owner, mon._owner = mon._owner, None
    if owner is not None:
        owner.pop(mon, None)


def kill(ref: ActorRef[Any]) -> None:
    """Brutally kill the actor behind ``ref`` (see :meth:`GeventActor.kill`)."""
    actor = _actor_of(ref)
    if actor is not None:
        if on_home_thread():
            actor.kill()
        else:
            call_on_home(actor.kill)
