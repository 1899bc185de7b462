"""The ``Supervisor`` actor: starts children in order, restarts them by strategy, stops them in
reverse order, and escalates when restarts come too fast.

Start order is the order of ``children`` followed by dynamic children in the order they were
added; a restarted child keeps its place. Stop order is the reverse. Each child is started
synchronously: the supervisor waits until the child's ``on_start`` has returned before it starts
the next one, so a child may rely on the siblings before it (as in OTP's ``init/1``). A child
must therefore not call its own supervisor from ``on_start``.

:func:`start_child_nowait` adds a dynamic child without a message to the supervisor and without
waiting for the child's ``on_start``: for a node that starts one actor per connection, where
nothing depends on that order and a round trip per connection is most of what starting costs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, NamedTuple

import gevent
import gevent.event
from pykka import ActorDeadError, ActorRef
from pykka.messages import ProxyGetAttr

from supervisors._actor import GeventActor, Monitor, demonitor, kill, monitor
from supervisors._events import EventKind, SupervisorEvent, emit
from supervisors._exit import Exit, ExitKind
from supervisors._intensity import RestartIntensity
from supervisors._pykka_compat import actor_of, stop_message
from supervisors._runtime import home_hub, on_home_thread
from supervisors._spec import ChildKind, ChildSpec, Restart

__all__ = [
    "ChildExists",
    "ChildInfo",
    "ChildNotFound",
    "ChildRunning",
    "Strategy",
    "Supervisor",
    "SupervisorEscalation",
    "start_child_nowait",
]

logger = logging.getLogger("supervisors")

# A child that does not end within this long after being killed is reported and forgotten; a kill
# is a callback on the hub, so in practice it ends on the next loop iteration.
_KILL_GRACE_S = 5.0


class Strategy(StrEnum):
    """How a supervisor reacts when a child must be restarted.

    ``ONE_FOR_ONE``: restart that child only. ``ONE_FOR_ALL``: stop all other children (in
    reverse start order) and restart them all. ``REST_FOR_ONE``: stop the children started after
    it, then restart it and them, in start order.
    """

    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


class SupervisorEscalation(Exception):
    """A supervisor gave up: restarts exceeded its intensity, or a child could not be started."""


class ChildExists(Exception):
    """``start_child`` was given an id the supervisor already has."""


class ChildNotFound(Exception):
    """No child with that id."""


class ChildRunning(Exception):
    """The operation needs a terminated child (``restart_child``, ``delete_child``)."""


class ChildInfo(NamedTuple):
    """One row of ``which_children()``; ``ref`` is None while the child is not running."""

    id: Hashable
    ref: ActorRef[Any] | None
    kind: ChildKind
    restart: Restart


@dataclass(slots=True)
class _Child:
    spec: ChildSpec
    dynamic: bool
    ref: ActorRef[Any] | None = None
    watch: Monitor | None = None
    started_at: float = 0.0
    attempt: int = 0
    restart_timer: Any = None
    restarts: int = 0
    # Siblings to restart once this child is running again (it waits for a back-off delay or
    # for a retry of a failed start): a restart group always comes back in start order.
    then: list[_Child] = field(default_factory=list)


class _ChildDown(NamedTuple):
    child_id: Hashable
    ref: ActorRef[Any]
    reason: Exit


class _RestartDue(NamedTuple):
    child_id: Hashable


class Supervisor(GeventActor):
    """An OTP-style supervisor; itself a ``GeventActor``, so supervisors nest.

    ::

        sup = Supervisor.start(
            children=[ChildSpec(id="db", start=Store.start, args=(path,))],
            strategy="one_for_one", max_restarts=3, max_seconds=5,
        )
        sup.proxy().child("db").get()          # the child's ActorRef, None while down

    Arguments: ``children`` (specs started in order), ``strategy`` (default ``"one_for_one"``),
    ``max_restarts`` (default 3) in ``max_seconds`` (default 5): more restarts than that make
    the supervisor stop all children and fail, so that its own supervisor applies its strategy.
    ``name`` appears in logs and events. ``exit_code_on_failure``: for a top-level supervisor,
    end the program with this status if the supervisor fails (``None``, the default, leaves the
    program running). ``clock`` is injectable for tests.

    Errors of its API (``ChildExists``, ``ChildNotFound``, a child that fails to start from
    ``start_child``) go to the caller; the supervisor itself carries on.
    """

    crash_on_ask_error: ClassVar[bool] = False

    def __init__(
        self,
        children: Iterable[ChildSpec] = (),
        *,
        strategy: Strategy | str = Strategy.ONE_FOR_ONE,
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        name: str = "supervisor",
        exit_code_on_failure: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        try:
            self.strategy = Strategy(strategy)
        except ValueError:
            msg = f"strategy must be one of {[s.value for s in Strategy]}, got {strategy!r}"
            raise ValueError(msg) from None
        self.name = name
        self._intensity = RestartIntensity(max_restarts, max_seconds)
        self._clock = clock
        self._exit_code_on_failure = exit_code_on_failure
        self._children: dict[Hashable, _Child] = {}
        # True from the end of on_start until the supervisor begins to stop its children: when
        # start_child_nowait may add one (see there).
        self._accepting = False
        for spec in children:
            if not isinstance(spec, ChildSpec):
                msg = f"children must be ChildSpec values, got {spec!r}"
                raise TypeError(msg)
            if spec.id in self._children:
                msg = f"duplicate child id {spec.id!r}"
                raise ValueError(msg)
            self._children[spec.id] = _Child(spec, dynamic=False)
        self.restarts_total = 0
        monitor(self.actor_ref, self._on_own_end)

    def __str__(self) -> str:
        return f"Supervisor {self.name!r}"

    # -- life cycle ----------------------------------------------------------------------------

    def on_start(self) -> None:
        for child in list(self._children.values()):
            try:
                self._start(child)
            except Exception as exc:
                self._shutdown_all()
                msg = f"{self}: child {child.spec.id!r} failed to start: {exc}"
                raise SupervisorEscalation(msg) from exc
        self._accepting = True

    def on_stop(self) -> None:
        self._shutdown_all()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, _ChildDown):
            self._child_down(message)
        elif isinstance(message, _RestartDue):
            self._restart_due(message.child_id)
        else:
            return super().on_receive(message)
        return None

    def _on_own_end(self, _ref: ActorRef[Any], reason: Exit) -> None:
        """A supervisor that is killed or fails takes its children with it, as linked processes
        would: none is left running unsupervised (after an escalation they are already stopped).
        """
        self._accepting = False
        if reason.abnormal:
            for child in reversed(list(self._children.values())):
                self._forget_timer(child)
                if child.ref is not None:
                    if child.watch is not None:
                        demonitor(child.watch)
                    kill(child.ref)
                    child.ref = None
        if reason.abnormal and self._exit_code_on_failure is not None:
            code = self._exit_code_on_failure
            logger.critical("%s failed (%s): ending the program with status %d", self, reason, code)
            hub = home_hub()
            hub.loop.run_callback(hub.parent.throw, SystemExit(code))

    # -- the public API (through ask / proxy) ---------------------------------------------------

    def child(self, child_id: Hashable) -> ActorRef[Any] | None:
        """The child's current ref; None while it is down or terminated."""
        return self._get(child_id).ref

    def start_child(self, spec: ChildSpec) -> ActorRef[Any]:
        """Add a dynamic child and start it; it follows the same strategy and restart rules.

        A dynamic child that ends and is not restarted is removed from the supervisor.
        """
        child = self._add_dynamic(spec, self._start)
        assert child.ref is not None
        return child.ref

    def terminate_child(self, child_id: Hashable) -> None:
        """Stop a child (within its ``shutdown`` time); its spec stays until ``delete_child``."""
        child = self._get(child_id)
        waiting = self._forget_timer(child)
        self._terminate(child)
        self._restart_in_order(waiting)

    def restart_child(self, child_id: Hashable) -> ActorRef[Any]:
        """Start a terminated child again."""
        child = self._get(child_id)
        if child.ref is not None:
            msg = f"child {child_id!r} of {self} is running"
            raise ChildRunning(msg)
        waiting = self._forget_timer(child)
        try:
            self._start(child)
        except Exception:
            child.then = waiting
            raise
        self._restart_in_order(waiting)
        assert child.ref is not None
        return child.ref

    def delete_child(self, child_id: Hashable) -> None:
        """Forget a terminated child's spec."""
        child = self._get(child_id)
        if child.ref is not None:
            msg = f"child {child_id!r} of {self} is running: terminate it first"
            raise ChildRunning(msg)
        waiting = self._forget_timer(child)
        del self._children[child_id]
        self._restart_in_order(waiting)

    def which_children(self) -> list[ChildInfo]:
        """Every child in start order, running or not."""
        return [
            ChildInfo(c.spec.id, c.ref, c.spec.kind, c.spec.restart)
            for c in self._children.values()
        ]

    def count_children(self) -> dict[str, int]:
        """OTP's counts: ``specs``, ``active``, ``supervisors``, ``workers``."""
        children = self._children.values()
        supervisors = sum(1 for c in children if c.spec.kind is ChildKind.SUPERVISOR)
        return {
            "specs": len(self._children),
            "active": sum(1 for c in children if c.ref is not None),
            "supervisors": supervisors,
            "workers": len(self._children) - supervisors,
        }

    def restart_counts(self) -> dict[Hashable, int]:
        """Restarts per child id since the supervisor started (children that restarted)."""
        return {cid: c.restarts for cid, c in self._children.items() if c.restarts}

    # -- starting and stopping children ---------------------------------------------------------

    def _get(self, child_id: Hashable) -> _Child:
        child = self._children.get(child_id)
        if child is None:
            msg = f"{self} has no child {child_id!r}"
            raise ChildNotFound(msg)
        return child

    def _add_dynamic(self, spec: ChildSpec, start: Callable[[_Child], object]) -> _Child:
        """Register a dynamic child and start it with ``start``; forgotten if that fails."""
        if spec.id in self._children:
            msg = f"{self} already has a child {spec.id!r}"
            raise ChildExists(msg)
        child = _Child(spec, dynamic=True)
        self._children[spec.id] = child
        try:
            start(child)
        except Exception:
            del self._children[spec.id]
            raise
        return child

    def _start_now(self, spec: ChildSpec) -> ActorRef[Any]:
        """:func:`start_child_nowait`, on the supervisor's side."""
        if not self._accepting:
            msg = f"{self} is not running: it cannot take a child"
            raise ActorDeadError(msg)
        child = self._add_dynamic(spec, self._launch)
        ref = child.ref
        assert ref is not None
        if not self._accepting:
            # The start switched greenlets and the supervisor began to stop meanwhile: its
            # shutdown may have passed this child over.
            self._children.pop(spec.id, None)
            if child.watch is not None:
                demonitor(child.watch)
            child.ref = child.watch = None
            kill(ref)
            msg = f"{self} stopped while child {spec.id!r} was starting"
            raise ActorDeadError(msg)
        child.started_at = self._clock()
        emit(SupervisorEvent(EventKind.STARTED, self.name, spec.id))
        return ref

    def _start(self, child: _Child) -> None:
        """Start one child and wait for its ``on_start``; raises if it cannot start."""
        spec = child.spec
        ref = self._launch(child)
        try:
            # Answered only after on_start returned; ActorDeadError if on_start failed.
            ref.ask(ProxyGetAttr(attr_path=("actor_urn",)), timeout=spec.start_timeout)
        except BaseException as exc:
            if child.watch is not None:
                demonitor(child.watch)
            child.ref = child.watch = None
            # Past start_timeout, or the supervisor itself is being killed: the child must not
            # outlive the start that nobody is waiting for any more.
            kill(ref)
            if not isinstance(exc, Exception):
                raise
            failure = getattr(actor_of(ref), "exit_reason", None)
            cause = failure.exception if failure is not None and failure.exception else exc
            self._start_failed(spec.id, cause)
            raise cause from None
        child.started_at = self._clock()
        emit(SupervisorEvent(EventKind.STARTED, self.name, spec.id))

    def _launch(self, child: _Child) -> ActorRef[Any]:
        """Start the child's actor and monitor it, without waiting for its ``on_start``;
        raises (and reports) if it cannot be started."""
        spec = child.spec
        child_id = spec.id
        me = self.actor_ref

        def down(dead: ActorRef[Any], reason: Exit) -> None:
            if me.is_alive():
                me.tell(_ChildDown(child_id, dead, reason))

        try:
            ref = spec.start(*spec.args, **dict(spec.kwargs))
            if not isinstance(ref, ActorRef):
                msg = f"start of child {child_id!r} returned {ref!r}, not an ActorRef"
                raise TypeError(msg)
            try:
                watch = monitor(ref, down, reports_crashes=True)
            except TypeError:
                ref.stop(block=False)  # not a GeventActor: it cannot be supervised
                raise
        except Exception as exc:
            self._start_failed(child_id, exc)
            raise
        child.ref, child.watch = ref, watch
        return ref

    def _start_failed(self, child_id: Hashable, cause: BaseException) -> None:
        emit(SupervisorEvent(EventKind.START_FAILED, self.name, child_id))
        logger.error(
            "%s: child %r failed to start",
            self,
            child_id,
            exc_info=(type(cause), cause, cause.__traceback__),
        )

    def _terminate(self, child: _Child) -> None:
        """Stop one child within its shutdown time, killing it past that; waits for its end."""
        self._terminate_together([child])

    def _shutdown_all(self) -> None:
        """Stop every child: the dynamic ones first, all at once, then the static ones one by
        one in reverse start order.

        Dynamic children started last, so they stop first, as the start order says; they are
        told to stop together, as OTP ends a ``simple_one_for_one`` supervisor's children, so
        that ten thousand of them (a node's connections) cost their slowest stop, not the sum
        of all: one at a time, a few milliseconds each came to longer than a supervisor's own
        shutdown time."""
        self._accepting = False
        children = list(reversed(list(self._children.values())))
        dynamic = [child for child in children if child.dynamic]
        for child in dynamic:
            self._forget_timer(child)
        self._terminate_together(dynamic)
        for child in children:
            if not child.dynamic:
                self._forget_timer(child)
                self._terminate(child)

    def _terminate_together(self, children: list[_Child]) -> None:
        """``_terminate`` for ``children`` at once: each is told to stop (or killed, with
        shutdown 0), then each is waited for within its shutdown time, counted from the tell,
        and killed past it; the ends of the killed ones are awaited after every kill is made,
        so that a hundred children past their time cost one kill's wait, not a hundred."""
        stopping: list[tuple[_Child, ActorRef[Any], gevent.event.Event]] = []
        for child in children:
            ref = child.ref
            if ref is None:
                continue
            if child.watch is not None:
                demonitor(child.watch)
                child.watch = None
            ended = gevent.event.Event()
            monitor(ref, _setter(ended))
            if child.spec.shutdown == 0:
                kill(ref)
            else:
                try:
                    ref.tell(stop_message())
                except ActorDeadError:
                    ended.set()
            stopping.append((child, ref, ended))
        told = time.monotonic()
        for child, ref, ended in stopping:
            shutdown = child.spec.shutdown
            if shutdown not in (0, None):
                remaining = max(0.0, told + shutdown - time.monotonic())
                if not ended.wait(remaining):
                    logger.warning(
                        "%s: child %r did not stop within %ss: killing it",
                        self,
                        child.spec.id,
                        shutdown,
                    )
                    kill(ref)
            elif shutdown is None:
                ended.wait()
        killed = time.monotonic()
        for child, _ref, ended in stopping:
            if not ended.wait(max(0.0, killed + _KILL_GRACE_S - time.monotonic())):
                logger.error("%s: child %r did not end after a kill", self, child.spec.id)
            # Cleared only once the child has ended: a supervisor killed while waiting here
            # still holds the ref, so its end takes this child along.
            child.ref = None

    def _forget_timer(self, child: _Child) -> list[_Child]:
        """Cancel a pending restart; returns the siblings that were waiting for it."""
        if child.restart_timer is not None:
            child.restart_timer.kill(block=False)
            child.restart_timer = None
        waiting, child.then = child.then, []
        return waiting

    # -- failures and restarts ------------------------------------------------------------------

    def _child_down(self, message: _ChildDown) -> None:
        child = self._children.get(message.child_id)
        if child is None or child.ref is not message.ref:
            return  # an old incarnation, or one we terminated ourselves
        child.ref = child.watch = None
        reason = message.reason
        spec = child.spec
        self._report(spec.id, reason)
        restart = spec.restart is Restart.PERMANENT or (
            spec.restart is Restart.TRANSIENT and reason.abnormal
        )
        if not restart:
            if child.dynamic or spec.restart is Restart.TEMPORARY:
                del self._children[spec.id]
            return
        if self._clock() - child.started_at >= (spec.backoff.reset_after if spec.backoff else 0):
            child.attempt = 0
        self._restart(child)

    def _report(self, child_id: Hashable, reason: Exit) -> None:
        if reason.kind is ExitKind.FAILURE:
            exc = reason.exception
            assert exc is not None
            logger.error(
                "%s: child %r crashed", self, child_id, exc_info=(type(exc), exc, exc.__traceback__)
            )
            emit(SupervisorEvent(EventKind.CRASHED, self.name, child_id, reason))
        elif reason.kind is ExitKind.KILLED:
            logger.warning("%s: child %r was killed", self, child_id)
            emit(SupervisorEvent(EventKind.CRASHED, self.name, child_id, reason))
        else:
            logger.debug("%s: child %r exited (%s)", self, child_id, reason)
            emit(SupervisorEvent(EventKind.EXITED, self.name, child_id, reason))

    def _restart(self, failed: _Child) -> None:
        """Apply the strategy for ``failed``, within the restart intensity."""
        if not self._intensity.record(self._clock()):
            self._escalate(failed)
        if self.strategy is Strategy.ONE_FOR_ONE:
            group = [failed]
        else:
            order = list(self._children.values())
            at = order.index(failed)
            group = order if self.strategy is Strategy.ONE_FOR_ALL else order[at:]
            for sibling in reversed(group):
                if sibling is not failed:
                    self._forget_timer(sibling)
                    self._terminate(sibling)
            for sibling in group:
                if sibling is not failed and sibling.spec.restart is Restart.TEMPORARY:
                    del self._children[sibling.spec.id]
            group = [c for c in group if c.spec.id in self._children]
        self._restart_in_order(group)

    def _restart_in_order(self, group: list[_Child]) -> None:
        """Restart ``group`` in start order; a child that must wait holds back those after it."""
        for at, child in enumerate(group):
            if self._children.get(child.spec.id) is not child or child.ref is not None:
                continue  # deleted, or started by hand, while it waited
            if child.spec.backoff is not None:
                self._schedule_backoff(child)
            elif self._try_restart(child):
                continue
            child.then = group[at + 1 :]
            return

    def _schedule_backoff(self, child: _Child) -> None:
        backoff = child.spec.backoff
        assert backoff is not None
        delay = backoff.delay(child.attempt)
        child.attempt += 1
        logger.info("%s: restarting child %r in %.2fs", self, child.spec.id, delay)
        child.restart_timer = gevent.spawn_later(
            delay, self.actor_ref.tell, _RestartDue(child.spec.id)
        )

    def _restart_due(self, child_id: Hashable) -> None:
        child = self._children.get(child_id)
        if child is None or child.ref is not None or child.restart_timer is None:
            return
        child.restart_timer = None
        if self._try_restart(child):
            waiting, child.then = child.then, []
            self._restart_in_order(waiting)

    def _try_restart(self, child: _Child) -> bool:
        """Start ``child`` again; on failure count it and schedule a retry, and return False."""
        try:
            self._start(child)
        except Exception:
            # A failed restart is one more failure of the child: count it and try again.
            if not self._intensity.record(self._clock()):
                self._escalate(child)
            if child.spec.backoff is None:
                self.actor_ref.tell(_RestartDue(child.spec.id))
                child.restart_timer = _PENDING
            else:
                self._schedule_backoff(child)
            return False
        child.restarts += 1
        self.restarts_total += 1
        emit(SupervisorEvent(EventKind.RESTARTED, self.name, child.spec.id))
        return True

    def _escalate(self, child: _Child) -> None:
        intensity = self._intensity
        msg = (
            f"{self}: more than {intensity.max_restarts} restarts in {intensity.max_seconds}s "
            f"(last: child {child.spec.id!r}); stopping all children"
        )
        logger.error(msg)
        emit(SupervisorEvent(EventKind.ESCALATED, self.name, child.spec.id))
        self._shutdown_all()
        raise SupervisorEscalation(msg)


def start_child_nowait(supervisor: ActorRef[Any], spec: ChildSpec) -> ActorRef[Any]:
    """Add a dynamic child to ``supervisor`` and start it, without a round trip: returns the
    child's ref as soon as its actor exists, before its ``on_start`` has run.

    For many short-lived children that nothing else waits for (one per network connection),
    where ``start_child`` through ``ask`` would cost two round trips each: one to the supervisor,
    and one from it to the child's ``on_start``. The child is supervised as if ``start_child``
    had started it (same place in the stop order, same strategy, restart type and intensity),
    with two differences:

    - Nothing waits for its ``on_start`` (``start_timeout`` does not apply), and a failure there
      is a crash, handled by its restart type like any later one, not an error of this call.
    - The call must be made on the supervisor's hub thread (``RuntimeError`` otherwise): from
      another thread, ``ask`` the supervisor's ``start_child``.

    Why the registration may be made from the caller's greenlet: every actor of this package
    runs on one hub, and greenlets switch only where one waits. The supervisor's state changes
    only on that hub, so between two switches the caller is the only code touching it, as a
    handler of the supervisor's would be; the registration itself never waits, and the start of
    a ``GeventActor`` only schedules its greenlet. If ``spec.start`` does switch (a start
    function of your own), the supervisor may begin to stop meanwhile; the child is then
    killed and this call raises, so that no child outlives its supervisor.

    Raises ``ActorDeadError`` when the supervisor is not running (not started yet, stopping, or
    ended), ``ChildExists`` for an id it has, ``TypeError`` if ``supervisor`` is not a
    ``Supervisor`` of this process, and what ``spec.start`` raised.
    """
    if not on_home_thread():
        msg = "start_child_nowait must be called on the actors' hub thread; ask start_child"
        raise RuntimeError(msg)
    actor = actor_of(supervisor)
    if actor is None:
        msg = f"{supervisor} is not running"
        raise ActorDeadError(msg)
    if not isinstance(actor, Supervisor):
        msg = f"{supervisor} is not a Supervisor"
        raise TypeError(msg)
    return actor._start_now(spec)


class _PendingRestart:
    """Stands in ``restart_timer`` while an immediate retry waits in the mailbox."""

    def kill(self, *, block: bool = False) -> None:
        del block


_PENDING = _PendingRestart()


def _setter(event: gevent.event.Event) -> Callable[[Any, Any], None]:
    """A monitor callback that sets ``event`` when the actor ends."""
    return lambda _ref, _why: event.set()
