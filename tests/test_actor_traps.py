"""The ways a gevent actor system goes wrong that Pykka's own loop does not guard against.

Killed greenlets, escaping ``gevent.Timeout``s, failures outside ``on_receive``, and messages from
real OS threads: each must end or affect one actor alone, be visible to a monitor, and never
stall or take down the rest of the system.
"""

from __future__ import annotations

import contextvars
import gc
import subprocess
import sys
import textwrap
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import gevent
import gevent.event
import pytest
from gevent import monkey
from greenlet import getcurrent
from pykka import ActorDeadError, ActorRef, ActorRegistry

from supervisors import (
    ActorKilled,
    Exit,
    ExitKind,
    GeventActor,
    demonitor,
    kill,
    monitor,
)

WAIT = 5.0  # seconds; generous upper bound for events that arrive in microseconds

_real_lock = monkey.get_original("_thread", "allocate_lock")


@pytest.fixture(autouse=True)
def _no_actor_outlives_its_test() -> Iterator[None]:
    yield
    for ref in reversed(ActorRegistry.get_all()):
        kill(ref)


class Exits:
    """Collects the exits a monitor reports and lets a test await them."""

    def __init__(self) -> None:
        self.reasons: list[Exit] = []
        self._changed = gevent.event.Event()

    def watch(self, ref: ActorRef[Any], **kwargs: Any) -> None:
        monitor(ref, self._record, **kwargs)

    def _record(self, _ref: ActorRef[Any], reason: Exit) -> None:
        self.reasons.append(reason)
        self._changed.set()

    def wait(self, count: int = 1) -> list[Exit]:
        with gevent.Timeout(WAIT):
            while len(self.reasons) < count:
                self._changed.clear()
                self._changed.wait()
        return self.reasons


@pytest.fixture
def exits() -> Exits:
    return Exits()


class Worker(GeventActor):
    """Does what its messages say, so each test can put it in the state it needs."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = gevent.event.Event()
        self.release = gevent.event.Event()
        self.handled: list[Any] = []
        self.failures: list[BaseException] = []

    def on_receive(self, message: Any) -> Any:
        if message == "block":
            self.inside.set()
            self.release.wait()
        elif message == "time out":
            with gevent.Timeout(0.001):
                gevent.sleep(1)
        elif message == "raise":
            raise ValueError("handler failed")
        self.handled.append(message)
        return message

    def on_failure(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        assert exc is not None
        self.failures.append(exc)


def actor_of(ref: ActorRef[Any]) -> Any:
    actor = ref._actor_weakref()
    assert actor is not None
    return actor


# -- a killed greenlet or an escaping Timeout ends one actor only -------------------------------


def test_gevent_kill_of_a_busy_actors_greenlet_ends_that_actor_alone(exits: Exits) -> None:
    victim, bystander = Worker.start(), Worker.start()
    exits.watch(victim)
    pending = victim.ask("block", block=False)
    queued = victim.ask("queued", block=False)
    assert actor_of(victim).inside.wait(WAIT)

    gevent.kill(actor_of(victim)._greenlet)

    assert [e.kind for e in exits.wait()] == [ExitKind.KILLED]
    assert not victim.is_alive()
    assert ActorRegistry.get_all() == [bystander]
    assert bystander.ask("still working", timeout=WAIT) == "still working"
    with pytest.raises(ActorDeadError):
        pending.get(timeout=WAIT)
    with pytest.raises(ActorDeadError):
        queued.get(timeout=WAIT)


def test_kill_of_a_busy_actor_interrupts_its_handler(exits: Exits) -> None:
    victim = Worker.start()
    exits.watch(victim)
    victim.tell("block")
    assert actor_of(victim).inside.wait(WAIT)

    kill(victim)

    assert [e.kind for e in exits.wait()] == [ExitKind.KILLED]
    assert actor_of(victim).handled == []


def test_kill_of_an_idle_actor_unregisters_it_at_once(exits: Exits) -> None:
    victim, bystander = Worker.start(), Worker.start()
    assert victim.ask("warm up", timeout=WAIT) == "warm up"
    exits.watch(victim)

    kill(victim)

    # No greenlet had to run: the idle actor is gone before kill() returns.
    assert [e.kind for e in exits.reasons] == [ExitKind.KILLED]
    assert ActorRegistry.get_by_urn(victim.actor_urn) is None
    assert ActorRegistry.get_all() == [bystander]
    with pytest.raises(ActorDeadError):
        victim.tell("to a zombie")
    assert bystander.ask("fine", timeout=WAIT) == "fine"


def test_kill_of_an_actor_that_has_not_run_yet_skips_on_start(exits: Exits) -> None:
    started = gevent.event.Event()

    class Slow(GeventActor):
        def on_start(self) -> None:
            started.set()

    ref = Slow.start()
    exits.watch(ref)
    kill(ref)

    assert [e.kind for e in exits.wait()] == [ExitKind.KILLED]
    gevent.sleep(0)  # let the greenlet spawned by start() run, if it still would
    assert not started.is_set()


def test_kill_of_a_dead_actor_is_a_no_op(exits: Exits) -> None:
    ref = Worker.start()
    ref.stop(timeout=WAIT)
    exits.watch(ref)

    kill(ref)

    assert [e.kind for e in exits.reasons] == [ExitKind.NORMAL]


def test_actor_killing_itself_ends_with_killed(exits: Exits) -> None:
    class Suicidal(GeventActor):
        def on_receive(self, message: Any) -> None:
            kill(self.actor_ref)

    ref = Suicidal.start()
    exits.watch(ref)
    ref.tell("go")

    assert [e.kind for e in exits.wait()] == [ExitKind.KILLED]
    assert isinstance(ActorKilled(), gevent.GreenletExit)


def test_gevent_timeout_escaping_a_handler_fails_that_actor_alone(exits: Exits) -> None:
    victim, bystander = Worker.start(), Worker.start()
    exits.watch(victim)

    victim.tell("time out")

    (reason,) = exits.wait()
    assert reason.kind is ExitKind.FAILURE
    assert isinstance(reason.exception, gevent.Timeout)
    assert actor_of(victim).failures == [reason.exception]
    assert ActorRegistry.get_all() == [bystander]
    assert bystander.ask("unaffected", timeout=WAIT) == "unaffected"


def test_gevent_timeout_escaping_an_asked_handler_answers_the_caller(exits: Exits) -> None:
    victim = Worker.start()
    exits.watch(victim)

    with pytest.raises((gevent.Timeout, ActorDeadError)):
        victim.ask("time out", timeout=WAIT)

    assert exits.wait()[0].kind is ExitKind.FAILURE


# -- the greenlet an actor runs on is lent, never shared ----------------------------------------


class LocalUser(GeventActor):
    """Sets a greenlet-local and a context variable, and reports what it finds set."""

    def on_receive(self, message: Any) -> Any:
        found = (getattr(_greenlet_local, "owner", None), _context_owner.get(None))
        if message == "claim":
            _greenlet_local.owner = self.actor_urn
            _context_owner.set(self.actor_urn)
        return found


_greenlet_local = threading.local()  # a gevent.local: the suite runs monkey-patched
_context_owner: contextvars.ContextVar[str] = contextvars.ContextVar("owner")


def test_greenlet_locals_and_context_variables_never_leak_between_actors() -> None:
    claimers = [LocalUser.start() for _ in range(20)]
    for ref in claimers:
        assert ref.ask("claim", timeout=WAIT) == (None, None)

    others = [LocalUser.start() for _ in range(20)]

    assert [ref.ask("look", timeout=WAIT) for ref in others] == [(None, None)] * 20


def test_killing_the_greenlet_an_idle_actor_ran_on_leaves_every_actor_working() -> None:
    class Reporter(GeventActor):
        def on_receive(self, message: Any) -> Any:
            return getcurrent()

    other = Reporter.start()
    other.ask("settle", timeout=WAIT)
    ref = Reporter.start()
    stale = ref.ask("which greenlet?", timeout=WAIT)

    # The kill lands on the next hub iteration: by then the idle greenlet has been lent out
    # again to run the ask below.
    gevent.kill(stale)

    assert ref.is_alive()
    assert ref.ask("again", timeout=WAIT) is not None
    assert other.ask("fine", timeout=WAIT) is not None


def test_a_burst_to_many_idle_actors_is_handled_by_each() -> None:
    replies: list[str] = []
    done = gevent.event.Event()

    class Member(GeventActor):
        def on_receive(self, message: Any) -> None:
            replies.append(self.actor_urn)
            if len(replies) == 1000:
                done.set()

    members = [Member.start() for _ in range(1000)]
    for ref in members:
        ref.tell("hello")

    assert done.wait(WAIT)
    assert sorted(replies) == sorted(ref.actor_urn for ref in members)


# -- failures outside on_receive reach monitors ------------------------------------------------


def test_on_start_failure_is_reported_to_monitors(exits: Exits) -> None:
    class BadStart(GeventActor):
        def on_start(self) -> None:
            raise ConnectionError("database down")

    ref = BadStart.start()
    exits.watch(ref, reports_crashes=True)

    (reason,) = exits.wait()
    assert reason.kind is ExitKind.FAILURE
    assert isinstance(reason.exception, ConnectionError)
    assert ActorRegistry.get_by_urn(ref.actor_urn) is None


def test_on_failure_runs_when_on_start_fails_but_not_when_on_stop_fails() -> None:
    failures: list[str] = []

    class FailsIn(GeventActor):
        def __init__(self, where: str) -> None:
            super().__init__()
            self.where = where

        def on_start(self) -> None:
            if self.where == "on_start":
                raise RuntimeError("start")

        def on_stop(self) -> None:
            if self.where == "on_stop":
                raise RuntimeError("stop")

        def on_failure(self, *_exc_info: Any) -> None:
            failures.append(self.where)

    at_start, at_stop = FailsIn.start("on_start"), FailsIn.start("on_stop")
    at_stop.stop(timeout=WAIT)

    assert at_start.actor_stopped.wait(WAIT)
    assert failures == ["on_start"]


def test_messages_queued_behind_a_failed_on_start_get_actor_dead_error() -> None:
    class BadStart(GeventActor):
        def on_start(self) -> None:
            raise ConnectionError("database down")

    ref = BadStart.start()
    reply = ref.ask("anyone?", block=False)

    with pytest.raises(ActorDeadError):
        reply.get(timeout=WAIT)


def test_on_stop_failure_is_reported_to_monitors(exits: Exits) -> None:
    class BadStop(GeventActor):
        def on_stop(self) -> None:
            raise OSError("flush failed")

    ref = BadStop.start()
    exits.watch(ref, reports_crashes=True)

    assert ref.stop(timeout=WAIT) is True

    (reason,) = exits.wait()
    assert reason.kind is ExitKind.FAILURE
    assert isinstance(reason.exception, OSError)


def test_asked_handler_failure_is_reported_to_monitors_and_the_caller(exits: Exits) -> None:
    ref = Worker.start()
    exits.watch(ref, reports_crashes=True)

    with pytest.raises(ValueError, match="handler failed"):
        ref.ask("raise", timeout=WAIT)

    (reason,) = exits.wait()
    assert reason.kind is ExitKind.FAILURE
    assert isinstance(reason.exception, ValueError)


def test_normal_stop_is_reported_as_normal(exits: Exits) -> None:
    ref = Worker.start()
    exits.watch(ref)

    ref.stop(timeout=WAIT)

    assert exits.wait() == [Exit(ExitKind.NORMAL)]


def test_monitoring_a_dead_actor_reports_its_exit_at_once(exits: Exits) -> None:
    ref = Worker.start()
    ref.tell("raise")
    assert ref.actor_stopped.wait(WAIT)

    exits.watch(ref)

    assert [e.kind for e in exits.reasons] == [ExitKind.FAILURE]


def test_monitoring_a_collected_actor_reports_noproc(exits: Exits) -> None:
    ref = Worker.start()
    ref.stop(timeout=WAIT)
    gc.collect()

    exits.watch(ref)

    assert [e.kind for e in exits.reasons] in ([ExitKind.NOPROC], [ExitKind.NORMAL])


def test_demonitor_cancels_the_callback(exits: Exits) -> None:
    ref = Worker.start()
    mon = monitor(ref, lambda _r, reason: exits.reasons.append(reason))

    demonitor(mon)
    ref.stop(timeout=WAIT)

    assert exits.reasons == []


def test_demonitor_releases_the_callback_while_the_actor_lives() -> None:
    ref = Worker.start()

    class Callback:
        def __call__(self, _ref: ActorRef[Any], _reason: Exit) -> None:
            pass

    callback = Callback()
    collected = weakref.ref(callback)
    demonitor(monitor(ref, callback))
    del callback
    gc.collect()

    assert collected() is None
    assert ref.is_alive()


def test_every_monitor_is_called_once(exits: Exits) -> None:
    ref = Worker.start()
    for _ in range(3):
        exits.watch(ref)

    ref.tell("raise")
    ref.tell("raise")

    assert [e.kind for e in exits.wait(3)] == [ExitKind.FAILURE] * 3
    assert ref.actor_stopped.wait(WAIT)
    assert len(exits.reasons) == 3


def test_monitor_of_a_non_gevent_actor_is_refused() -> None:
    from pykka import ThreadingActor

    ref = ThreadingActor.start()
    try:
        with pytest.raises(TypeError, match="GeventActor"):
            monitor(ref, lambda _r, _e: None)
    finally:
        ref.stop(timeout=WAIT)


# -- messages from real OS threads -------------------------------------------------------------


def test_tell_from_an_os_thread_wakes_an_idle_hub_at_once() -> None:
    handled = gevent.event.Event()

    class Recorder(GeventActor):
        def on_receive(self, message: Any) -> None:
            if message == "from a thread":
                handled.set()

    ref = Recorder.start()
    ref.ask("started", timeout=WAIT)
    # The OS thread holds on after its tell, so the threadpool's own "job done" wake-up cannot
    # be what runs the message: only the tell itself may wake the hub.
    hold = _real_lock()
    hold.acquire()
    order: list[str] = []

    def from_thread() -> None:
        order.append("telling")
        ref.tell("from a thread")
        hold.acquire()
        order.append("released")

    job = gevent.get_hub().threadpool.spawn(from_thread)
    # No timer is due for 10 s: without a wake-up the hub would sleep through the message.
    assert handled.wait(timeout=10)
    order.append("handled")
    hold.release()
    job.get(timeout=WAIT)

    assert order == ["telling", "handled", "released"]


def test_ask_from_an_os_thread_gets_the_reply() -> None:
    ref = Worker.start()

    job = gevent.get_hub().threadpool.spawn(lambda: ref.ask("from a thread", timeout=WAIT))

    assert job.get(timeout=WAIT) == "from a thread"


def test_proxy_call_and_stop_from_an_os_thread() -> None:
    ref = Worker.start()

    def from_thread() -> tuple[list[Any], bool]:
        proxy = ref.proxy()
        proxy.on_receive("via proxy").get(timeout=WAIT)
        return proxy.handled.get(timeout=WAIT), ref.stop(timeout=WAIT)

    handled, stopped = gevent.get_hub().threadpool.spawn(from_thread).get(timeout=WAIT)

    assert handled == ["via proxy"]
    assert stopped is True
    assert not ref.is_alive()


def test_actor_started_from_an_os_thread_runs_on_the_hub() -> None:
    job = gevent.get_hub().threadpool.spawn(Worker.start)
    ref = job.get(timeout=WAIT)

    assert ref.ask("hello", timeout=WAIT) == "hello"


@pytest.mark.process
def test_unpatched_program_refuses_a_first_actor_started_off_the_hubs_thread() -> None:
    script = textwrap.dedent(
        """
        import threading
        from supervisors import GeventActor

        errors = []

        def start():
            try:
                GeventActor.start()
            except RuntimeError as exc:
                errors.append(str(exc))

        thread = threading.Thread(target=start)
        thread.start()
        thread.join()
        print(errors[0] if errors else "started")
        """
    )

    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=20, check=False
    )

    assert result.returncode == 0, result.stderr
    assert "the first actor must be started on the thread that imported" in result.stdout


def test_kill_from_an_os_thread_ends_the_actor(exits: Exits) -> None:
    ref = Worker.start()
    exits.watch(ref)

    gevent.get_hub().threadpool.spawn(kill, ref).get(timeout=WAIT)

    assert [e.kind for e in exits.wait()] == [ExitKind.KILLED]
