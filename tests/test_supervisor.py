"""Supervisor semantics, as OTP defines them: strategies, restart types, intensity and escalation,
start failures, ordered start and shutdown, dynamic children, logging, events and back-off.

Workers write their life-cycle steps into a shared journal, and tests await supervision
events instead of sleeping, so every assertion is about order and outcome, never timing.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import pytest
from pykka import ActorDeadError, ActorRef, ActorRegistry, ThreadingActor, Timeout

from supervisors import (
    Backoff,
    ChildExists,
    ChildInfo,
    ChildKind,
    ChildNotFound,
    ChildRunning,
    ChildSpec,
    EventKind,
    Exit,
    ExitKind,
    GeventActor,
    Restart,
    Supervisor,
    SupervisorEscalation,
    SupervisorEvent,
    kill,
    monitor,
    subscribe,
)

WAIT = 5.0  # seconds; generous upper bound for events that arrive in microseconds
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _no_actor_outlives_its_test() -> Iterator[None]:
    yield
    for ref in reversed(ActorRegistry.get_all()):
        kill(ref)


class Recorder:
    """An append-only list that tests can await."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._changed = gevent.event.Event()

    def add(self, item: Any) -> None:
        self.items.append(item)
        self._changed.set()

    def wait_for(self, predicate: Callable[[list[Any]], bool]) -> list[Any]:
        try:
            with gevent.Timeout(WAIT):
                while not predicate(self.items):
                    self._changed.clear()
                    self._changed.wait()
        except gevent.Timeout:
            msg = f"still waiting after {WAIT}s; got {self.items}"
            raise AssertionError(msg) from None
        return self.items

    def clear(self) -> None:
        self.items.clear()


class Events(Recorder):
    def count(self, kind: EventKind, child_id: Hashable, supervisor: str | None = None) -> int:
        return sum(
            1
            for e in self.items
            if e.kind is kind
            and e.child_id == child_id
            and (supervisor is None or e.supervisor == supervisor)
        )

    def wait(
        self, kind: EventKind, child_id: Hashable, *, times: int = 1, supervisor: str | None = None
    ) -> None:
        self.wait_for(lambda _items: self.count(kind, child_id, supervisor) >= times)

    def kinds(self, child_id: Hashable) -> list[EventKind]:
        return [e.kind for e in self.items if e.child_id == child_id]


@pytest.fixture
def events() -> Iterator[Events]:
    recorder = Events()
    unsubscribe = subscribe(recorder.add)
    yield recorder
    unsubscribe()


@pytest.fixture
def journal() -> Recorder:
    return Recorder()


class Worker(GeventActor):
    """Journals its life cycle; crashes, exits or hangs when told to."""

    def __init__(
        self,
        name: str,
        journal: Recorder,
        *,
        fail_start: Callable[[], bool] | None = None,
        hang_on_stop: bool = False,
        on_start_hook: Callable[[], Any] | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.journal = journal
        self.fail_start = fail_start
        self.hang_on_stop = hang_on_stop
        self.on_start_hook = on_start_hook

    def on_start(self) -> None:
        self.journal.add(("start", self.name))
        if self.on_start_hook is not None:
            self.on_start_hook()
        if self.fail_start is not None and self.fail_start():
            raise RuntimeError(f"{self.name} cannot start")

    def on_stop(self) -> None:
        self.journal.add(("stop", self.name))
        if self.hang_on_stop:
            gevent.event.Event().wait()

    def on_receive(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError(f"{self.name} crashed")
        if message == "exit":
            self.stop()
        return self.name


def worker(name: str, journal: Recorder, **spec: Any) -> ChildSpec:
    options = {
        key: spec.pop(key) for key in ("fail_start", "hang_on_stop", "on_start_hook") if key in spec
    }
    return ChildSpec(id=name, start=Worker.start, args=(name, journal), kwargs=options, **spec)


def subtree(name: str, children: list[ChildSpec], **options: Any) -> ChildSpec:
    return ChildSpec(
        id=name,
        start=Supervisor.start,
        kwargs={"children": children, "name": name, **options},
        kind="supervisor",
    )


def start_supervisor(children: list[ChildSpec], **options: Any) -> ActorRef[Supervisor]:
    ref = Supervisor.start(children, **options)
    ref.proxy().which_children().get(timeout=WAIT)  # answered once every child has started
    return ref


def child(sup: ActorRef[Supervisor], child_id: Hashable) -> ActorRef[Any] | None:
    return sup.proxy().child(child_id).get(timeout=WAIT)


def children(sup: ActorRef[Supervisor]) -> dict[Hashable, ActorRef[Any] | None]:
    return {info.id: info.ref for info in sup.proxy().which_children().get(timeout=WAIT)}


def crash(sup: ActorRef[Supervisor], child_id: Hashable) -> None:
    ref = child(sup, child_id)
    assert ref is not None
    ref.tell("crash")


class Exits(Recorder):
    def watch(self, ref: ActorRef[Any]) -> None:
        monitor(ref, lambda _ref, reason: self.add(reason))

    def wait_one(self) -> Exit:
        return self.wait_for(lambda items: len(items) >= 1)[0]


def steps(*names: str, verb: str) -> list[tuple[str, str]]:
    return [(verb, name) for name in names]


# -- strategies --------------------------------------------------------------------------------


def test_children_start_in_order_each_after_the_previous_on_start(journal: Recorder) -> None:
    start_supervisor([worker(n, journal) for n in "abc"])

    assert journal.items == steps("a", "b", "c", verb="start")


def test_one_for_one_restarts_only_the_failed_child(journal: Recorder, events: Events) -> None:
    sup = start_supervisor([worker(n, journal) for n in "abc"], strategy="one_for_one")
    before = children(sup)
    journal.clear()

    crash(sup, "b")
    events.wait(EventKind.RESTARTED, "b")

    assert journal.items == [("start", "b")]
    after = children(sup)
    assert after["a"] is before["a"]
    assert after["c"] is before["c"]
    assert after["b"] is not before["b"]
    assert after["b"] is not None
    assert after["b"].ask("ping", timeout=WAIT) == "b"


def test_one_for_all_stops_the_others_in_reverse_order_and_restarts_all_in_start_order(
    journal: Recorder, events: Events
) -> None:
    sup = start_supervisor([worker(n, journal) for n in "abcd"], strategy="one_for_all")
    before = children(sup)
    journal.clear()

    crash(sup, "b")
    events.wait(EventKind.RESTARTED, "d")

    assert journal.items == steps("d", "c", "a", verb="stop") + steps(
        "a", "b", "c", "d", verb="start"
    )
    after = children(sup)
    assert all(after[n] is not before[n] for n in "abcd")
    assert all(not before[n].is_alive() for n in "abcd")  # type: ignore[union-attr]


def test_rest_for_one_restarts_the_failed_child_and_those_started_after_it(
    journal: Recorder, events: Events
) -> None:
    sup = start_supervisor([worker(n, journal) for n in "abcd"], strategy="rest_for_one")
    before = children(sup)
    journal.clear()

    crash(sup, "b")
    events.wait(EventKind.RESTARTED, "d")

    assert journal.items == steps("d", "c", verb="stop") + steps("b", "c", "d", verb="start")
    after = children(sup)
    assert after["a"] is before["a"]
    assert all(after[n] is not before[n] for n in "bcd")


def test_rest_for_one_failure_of_the_last_child_restarts_it_alone(
    journal: Recorder, events: Events
) -> None:
    sup = start_supervisor([worker(n, journal) for n in "abc"], strategy="rest_for_one")
    journal.clear()

    crash(sup, "c")
    events.wait(EventKind.RESTARTED, "c")

    assert journal.items == [("start", "c")]


def test_one_for_all_drops_temporary_siblings_instead_of_restarting_them(
    journal: Recorder, events: Events
) -> None:
    sup = start_supervisor(
        [worker("a", journal), worker("tmp", journal, restart="temporary"), worker("c", journal)],
        strategy="one_for_all",
    )
    journal.clear()

    crash(sup, "a")
    events.wait(EventKind.RESTARTED, "c")

    assert journal.items == steps("c", "tmp", verb="stop") + steps("a", "c", verb="start")
    assert list(children(sup)) == ["a", "c"]


# -- restart types -----------------------------------------------------------------------------


def end_child(sup: ActorRef[Supervisor], child_id: str, how: str) -> None:
    ref = child(sup, child_id)
    assert ref is not None
    if how == "kill":
        kill(ref)
    else:
        ref.tell({"crash": "crash", "normal exit": "exit"}[how])


@pytest.mark.parametrize("how", ["crash", "kill", "normal exit"])
def test_permanent_child_is_always_restarted(how: str, journal: Recorder, events: Events) -> None:
    sup = start_supervisor([worker("w", journal, restart="permanent")])

    end_child(sup, "w", how)
    events.wait(EventKind.RESTARTED, "w")

    assert child(sup, "w") is not None


@pytest.mark.parametrize("how", ["crash", "kill"])
def test_transient_child_is_restarted_after_an_abnormal_exit(
    how: str, journal: Recorder, events: Events
) -> None:
    sup = start_supervisor([worker("w", journal, restart="transient")])

    end_child(sup, "w", how)
    events.wait(EventKind.RESTARTED, "w")

    assert child(sup, "w") is not None


def test_transient_child_that_stops_normally_is_kept_but_not_restarted(
    journal: Recorder, events: Events
) -> None:
    sup = start_supervisor([worker("w", journal, restart="transient")])

    end_child(sup, "w", "normal exit")
    events.wait(EventKind.EXITED, "w")

    assert children(sup) == {"w": None}
    assert EventKind.RESTARTED not in events.kinds("w")
    assert sup.proxy().restart_child("w").get(timeout=WAIT).is_alive()


@pytest.mark.parametrize(
    ("how", "event"),
    [("crash", EventKind.CRASHED), ("kill", EventKind.CRASHED), ("normal exit", EventKind.EXITED)],
)
def test_temporary_child_is_never_restarted_and_is_removed(
    how: str, event: EventKind, journal: Recorder, events: Events
) -> None:
    sup = start_supervisor([worker("w", journal, restart="temporary"), worker("x", journal)])

    end_child(sup, "w", how)
    events.wait(event, "w")

    assert list(children(sup)) == ["x"]
    assert EventKind.RESTARTED not in events.kinds("w")


def test_a_child_that_stops_by_itself_exits_normally_and_a_crash_is_a_failure(
    journal: Recorder, events: Events
) -> None:
    sup = start_supervisor([worker("quits", journal), worker("fails", journal)])

    end_child(sup, "quits", "normal exit")
    end_child(sup, "fails", "crash")
    events.wait(EventKind.RESTARTED, "quits")
    events.wait(EventKind.RESTARTED, "fails")

    reasons = {e.child_id: e.reason for e in events.items if e.reason is not None}
    assert reasons["quits"] == Exit(ExitKind.NORMAL)
    assert reasons["fails"].kind is ExitKind.FAILURE
    assert str(reasons["fails"].exception) == "fails crashed"
    started, restarted = EventKind.STARTED, EventKind.RESTARTED
    assert events.kinds("quits") == [started, EventKind.EXITED, started, restarted]
    assert events.kinds("fails") == [started, EventKind.CRASHED, started, restarted]


# -- intensity and escalation ------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_more_restarts_than_the_intensity_stops_all_children_and_fails_the_supervisor(
    journal: Recorder, events: Events
) -> None:
    sup = start_supervisor([worker(n, journal) for n in "abc"], max_restarts=2, max_seconds=60)
    exits = Exits()
    exits.watch(sup)

    for attempt in (1, 2):
        crash(sup, "b")
        events.wait(EventKind.RESTARTED, "b", times=attempt)
    journal.clear()
    crash(sup, "b")

    reason = exits.wait_one()
    assert reason.kind is ExitKind.FAILURE
    assert isinstance(reason.exception, SupervisorEscalation)
    assert "more than 2 restarts in 60" in str(reason.exception)
    assert journal.items == steps("c", "a", verb="stop")
    assert events.count(EventKind.ESCALATED, "b") == 1
    assert events.count(EventKind.RESTARTED, "b") == 2
    assert ActorRegistry.get_all() == []


def test_restarts_older_than_max_seconds_do_not_count(journal: Recorder, events: Events) -> None:
    clock = FakeClock()
    sup = start_supervisor([worker("w", journal)], max_restarts=2, max_seconds=10, clock=clock)

    for attempt in range(1, 7):
        crash(sup, "w")
        events.wait(EventKind.RESTARTED, "w", times=attempt)
        if attempt % 2 == 0:
            clock.now += 10

    assert sup.is_alive()
    assert sup.proxy().restart_counts().get(timeout=WAIT) == {"w": 6}


def test_max_restarts_zero_escalates_at_the_first_failure(
    events: Events, journal: Recorder
) -> None:
    sup = start_supervisor([worker("w", journal)], max_restarts=0)
    exits = Exits()
    exits.watch(sup)

    crash(sup, "w")

    assert exits.wait_one().kind is ExitKind.FAILURE
    assert events.count(EventKind.RESTARTED, "w") == 0


def test_escalation_restarts_the_failed_subtree_under_the_parents_strategy(
    journal: Recorder, events: Events
) -> None:
    top = start_supervisor(
        [
            worker("a", journal),
            subtree("sub", [worker("x", journal), worker("y", journal)], max_restarts=1),
            worker("b", journal),
        ],
        name="top",
        max_restarts=3,
    )
    before = children(top)
    sub = before["sub"]
    assert sub is not None
    old_x = child(sub, "x")
    journal.clear()

    crash(sub, "x")
    events.wait(EventKind.RESTARTED, "x", supervisor="sub")
    crash(sub, "x")  # a second restart in the window: more than max_restarts=1
    events.wait(EventKind.RESTARTED, "sub", supervisor="top")

    assert events.count(EventKind.ESCALATED, "x", supervisor="sub") == 1
    assert events.count(EventKind.CRASHED, "sub", supervisor="top") == 1
    # sub: x restarted once, then the escalation stopped y; top restarted sub with x and y.
    assert journal.items == [("start", "x"), ("stop", "y"), ("start", "x"), ("start", "y")]
    after = children(top)
    assert after["a"] is before["a"]
    assert after["b"] is before["b"]
    assert after["sub"] is not sub
    assert after["sub"] is not None
    new_x = child(after["sub"], "x")
    assert new_x is not None and new_x is not old_x
    assert new_x.ask("ping", timeout=WAIT) == "x"


def test_escalation_climbs_until_a_supervisor_gives_up_at_the_top(
    journal: Recorder, events: Events
) -> None:
    top = start_supervisor(
        [worker("a", journal), subtree("sub", [worker("x", journal)], max_restarts=0)],
        name="top",
        max_restarts=0,
    )
    exits = Exits()
    exits.watch(top)
    sub = child(top, "sub")
    assert sub is not None
    journal.clear()

    crash(sub, "x")

    assert isinstance(exits.wait_one().exception, SupervisorEscalation)
    assert events.count(EventKind.ESCALATED, "x", supervisor="sub") == 1
    assert events.count(EventKind.ESCALATED, "sub", supervisor="top") == 1
    assert journal.items == [("stop", "a")]
    assert ActorRegistry.get_all() == []


# -- failures in on_start ----------------------------------------------------------------------


def test_child_failing_to_start_fails_the_supervisor_start_and_stops_the_started_ones(
    journal: Recorder, events: Events
) -> None:
    sup = Supervisor.start(
        [worker("a", journal), worker("b", journal, fail_start=lambda: True), worker("c", journal)]
    )
    exits = Exits()
    exits.watch(sup)

    reason = exits.wait_one()

    assert reason.kind is ExitKind.FAILURE
    assert isinstance(reason.exception, SupervisorEscalation)
    assert isinstance(reason.exception.__cause__, RuntimeError)
    assert "child 'b' failed to start" in str(reason.exception)
    assert journal.items == [("start", "a"), ("start", "b"), ("stop", "a")]
    assert events.count(EventKind.START_FAILED, "b") == 1
    assert ActorRegistry.get_all() == []


def test_child_whose_on_start_hangs_past_start_timeout_is_killed(
    journal: Recorder, events: Events
) -> None:
    hang = gevent.event.Event()
    sup = Supervisor.start(
        [
            worker("a", journal),
            worker("slow", journal, on_start_hook=hang.wait, start_timeout=0.2),
        ]
    )
    exits = Exits()
    exits.watch(sup)

    reason = exits.wait_one()

    assert isinstance(reason.exception, SupervisorEscalation)
    assert isinstance(reason.exception.__cause__, Timeout)
    assert journal.items == [("start", "a"), ("start", "slow"), ("stop", "a")]
    assert ActorRegistry.get_all() == []


def test_failed_restarts_are_retried_and_counted_against_the_intensity(
    journal: Recorder, events: Events
) -> None:
    starts = iter([False])  # the first start succeeds, every restart fails
    sup = start_supervisor(
        [worker("w", journal, fail_start=lambda: next(starts, True))],
        max_restarts=3,
        max_seconds=60,
    )
    exits = Exits()
    exits.watch(sup)

    crash(sup, "w")

    assert isinstance(exits.wait_one().exception, SupervisorEscalation)
    # One restart for the crash, then three failed restarts: the third exceeds max_restarts=3.
    assert events.kinds("w")[1:] == [
        EventKind.CRASHED,
        EventKind.START_FAILED,
        EventKind.START_FAILED,
        EventKind.START_FAILED,
        EventKind.ESCALATED,
    ]


def test_a_restart_that_fails_once_is_retried_until_the_child_runs(
    journal: Recorder, events: Events
) -> None:
    starts = iter([False, True])  # start, a failed restart, then healthy again
    sup = start_supervisor(
        [worker("w", journal, fail_start=lambda: next(starts, False))], max_restarts=3
    )

    crash(sup, "w")
    events.wait(EventKind.RESTARTED, "w")

    assert events.kinds("w") == [
        EventKind.STARTED,
        EventKind.CRASHED,
        EventKind.START_FAILED,
        EventKind.STARTED,
        EventKind.RESTARTED,
    ]
    assert child(sup, "w") is not None
    assert sup.proxy().restart_counts().get(timeout=WAIT) == {"w": 1}


# -- ordered shutdown --------------------------------------------------------------------------


def test_stopping_the_supervisor_stops_children_in_reverse_start_order(journal: Recorder) -> None:
    sup = start_supervisor([worker(n, journal) for n in "abc"])
    journal.clear()

    assert sup.stop(timeout=WAIT) is True

    assert journal.items == steps("c", "b", "a", verb="stop")
    assert ActorRegistry.get_all() == []


def test_nested_trees_start_in_order_and_stop_depth_first_in_reverse(journal: Recorder) -> None:
    sup = start_supervisor(
        [
            worker("a", journal),
            subtree("sub", [worker("x", journal), worker("y", journal)]),
            worker("b", journal),
        ]
    )
    assert journal.items == steps("a", "x", "y", "b", verb="start")
    journal.clear()

    sup.stop(timeout=WAIT)

    assert journal.items == steps("b", "y", "x", "a", verb="stop")


def test_child_whose_on_stop_hangs_is_killed_after_its_shutdown_time(
    journal: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    sup = start_supervisor(
        [
            worker("a", journal),
            worker("stuck", journal, hang_on_stop=True, shutdown=0.2),
            worker("c", journal),
        ]
    )
    stuck = child(sup, "stuck")
    assert stuck is not None
    exits = Exits()
    exits.watch(stuck)
    journal.clear()

    sup.stop(timeout=WAIT)

    assert exits.items == [Exit(ExitKind.KILLED)]
    assert journal.items == steps("c", "stuck", "a", verb="stop")
    assert "'stuck' did not stop within 0.2s" in caplog.text


def test_shutdown_zero_kills_the_child_without_running_on_stop(journal: Recorder) -> None:
    sup = start_supervisor([worker("a", journal), worker("brutal", journal, shutdown=0)])
    brutal = child(sup, "brutal")
    assert brutal is not None
    exits = Exits()
    exits.watch(brutal)
    journal.clear()

    sup.stop(timeout=WAIT)

    assert exits.items == [Exit(ExitKind.KILLED)]
    assert journal.items == [("stop", "a")]


def test_killing_a_supervisor_kills_its_children(journal: Recorder) -> None:
    sup = start_supervisor([worker("a", journal), subtree("sub", [worker("x", journal)])])
    refs = [child(sup, "a"), child(sup, "sub")]
    refs.append(child(refs[1], "x"))  # type: ignore[arg-type]
    exits = Exits()
    for ref in refs:
        exits.watch(ref)  # type: ignore[arg-type]

    kill(sup)

    assert exits.wait_for(lambda items: len(items) == 3) == [Exit(ExitKind.KILLED)] * 3
    assert ActorRegistry.get_all() == []


def test_a_supervisor_that_fails_takes_its_children_with_it(journal: Recorder) -> None:
    class Buggy(Supervisor):
        def on_receive(self, message: Any) -> Any:
            if message == "bug":
                raise RuntimeError("supervisor bug")
            return super().on_receive(message)

    sup = Buggy.start([worker("a", journal), worker("b", journal)])
    refs = [child(sup, "a"), child(sup, "b")]
    exits = Exits()
    for ref in refs:
        exits.watch(ref)  # type: ignore[arg-type]

    sup.tell("bug")

    assert exits.wait_for(lambda items: len(items) == 2) == [Exit(ExitKind.KILLED)] * 2
    assert ActorRegistry.get_all() == []


def test_a_supervisor_killed_while_stopping_a_child_kills_that_child(journal: Recorder) -> None:
    sup = start_supervisor([worker("stuck", journal, hang_on_stop=True, shutdown=None)])
    stuck = child(sup, "stuck")
    assert stuck is not None
    exits = Exits()
    exits.watch(stuck)

    sup.stop(block=False)
    journal.wait_for(lambda items: ("stop", "stuck") in items)
    kill(sup)

    assert exits.wait_one() == Exit(ExitKind.KILLED)
    assert ActorRegistry.get_all() == []


def test_a_supervisor_killed_while_starting_a_child_kills_that_child(journal: Recorder) -> None:
    hang = gevent.event.Event()
    sup = Supervisor.start([worker("slow", journal, on_start_hook=hang.wait)])
    journal.wait_for(lambda items: ("start", "slow") in items)
    (slow,) = ActorRegistry.get_by_class(Worker)
    exits = Exits()
    exits.watch(slow)

    kill(sup)

    assert exits.wait_one() == Exit(ExitKind.KILLED)
    assert ActorRegistry.get_all() == []


# -- the supervisor's API ----------------------------------------------------------------------


def test_start_child_adds_a_dynamic_child_after_the_static_ones(journal: Recorder) -> None:
    sup = start_supervisor([worker("a", journal)])

    ref = sup.proxy().start_child(worker("dyn", journal)).get(timeout=WAIT)

    assert ref.ask("ping", timeout=WAIT) == "dyn"
    assert sup.proxy().which_children().get(timeout=WAIT) == [
        ChildInfo("a", child(sup, "a"), ChildKind.WORKER, Restart.PERMANENT),
        ChildInfo("dyn", ref, ChildKind.WORKER, Restart.PERMANENT),
    ]


def test_api_errors_go_to_the_caller_and_leave_the_supervisor_running(
    journal: Recorder,
) -> None:
    sup = start_supervisor([worker("a", journal)])
    proxy = sup.proxy()

    with pytest.raises(ChildExists):
        proxy.start_child(worker("a", journal)).get(timeout=WAIT)
    with pytest.raises(ChildNotFound):
        proxy.child("nobody").get(timeout=WAIT)
    with pytest.raises(ChildRunning):
        proxy.restart_child("a").get(timeout=WAIT)
    with pytest.raises(ChildRunning):
        proxy.delete_child("a").get(timeout=WAIT)
    with pytest.raises(RuntimeError, match="cannot start"):
        proxy.start_child(worker("bad", journal, fail_start=lambda: True)).get(timeout=WAIT)

    assert sup.is_alive()
    assert list(children(sup)) == ["a"]
    assert child(sup, "a") is not None


def test_a_child_that_is_not_a_gevent_actor_is_refused_and_stopped() -> None:
    sup = start_supervisor([])
    started: list[ActorRef[Any]] = []

    def start_threaded() -> ActorRef[Any]:
        started.append(ThreadingActor.start())
        return started[-1]

    with pytest.raises(TypeError, match="GeventActor"):
        sup.proxy().start_child(ChildSpec(id="threaded", start=start_threaded)).get(timeout=WAIT)

    assert started[0].actor_stopped.wait(WAIT)
    assert ActorRegistry.get_all() == [sup]


def test_terminate_restart_and_delete_a_child(journal: Recorder, events: Events) -> None:
    sup = start_supervisor([worker("a", journal), worker("b", journal)])
    proxy = sup.proxy()
    journal.clear()

    proxy.terminate_child("a").get(timeout=WAIT)
    assert children(sup)["a"] is None
    proxy.restart_child("a").get(timeout=WAIT)
    assert children(sup)["a"] is not None
    proxy.terminate_child("a").get(timeout=WAIT)
    proxy.delete_child("a").get(timeout=WAIT)

    assert list(children(sup)) == ["b"]
    assert journal.items == [("stop", "a"), ("start", "a"), ("stop", "a")]
    assert EventKind.CRASHED not in events.kinds("a")


def test_count_children(journal: Recorder, events: Events) -> None:
    sup = start_supervisor(
        [worker("a", journal), worker("t", journal, restart="transient"), subtree("s", [])]
    )
    end_child(sup, "t", "normal exit")
    events.wait(EventKind.EXITED, "t")

    assert sup.proxy().count_children().get(timeout=WAIT) == {
        "specs": 3,
        "active": 2,
        "supervisors": 1,
        "workers": 2,
    }


def test_a_child_that_calls_its_supervisor_from_on_start_times_out_instead_of_deadlocking(
    journal: Recorder,
) -> None:
    sup = start_supervisor([])

    def call_supervisor() -> None:
        sup.proxy().count_children().get()  # the supervisor is busy waiting for this on_start

    spec = worker("needy", journal, on_start_hook=call_supervisor, start_timeout=0.2)

    with pytest.raises(Timeout):
        sup.proxy().start_child(spec).get(timeout=WAIT)
    assert sup.proxy().count_children().get(timeout=WAIT)["specs"] == 0


# -- dynamic children at scale -----------------------------------------------------------------

MANY = 10_000  # dynamic children: one per connected user on a busy node


# Slow: a bulk test (thousands of children).
@pytest.mark.slow
def test_many_dynamic_children_added_and_removed_leave_only_the_static_ones(
    journal: Recorder, events: Events
) -> None:
    sup = start_supervisor([worker("static", journal)])
    proxy = sup.proxy()
    specs = [
        ChildSpec(id=("user", n), start=Worker.start, args=(str(n), journal), restart="transient")
        for n in range(MANY)
    ]

    refs = [proxy.start_child(spec) for spec in specs]
    for ref in refs:
        ref.get(timeout=WAIT)
    assert proxy.count_children().get(timeout=WAIT)["active"] == MANY + 1
    assert len(ActorRegistry.get_all()) == MANY + 2

    half = MANY // 2
    removals = []
    for spec in specs[:half]:
        removals.append(proxy.terminate_child(spec.id))
        removals.append(proxy.delete_child(spec.id))
    for ref in refs[half:]:
        ref.get().tell("exit")  # stops by itself: a transient dynamic child is then removed
    for removal in removals:
        removal.get(timeout=WAIT)
    events.wait_for(
        lambda items: sum(1 for e in items if e.kind is EventKind.EXITED) >= MANY - half
    )

    assert proxy.count_children().get(timeout=WAIT) == {
        "specs": 1,
        "active": 1,
        "supervisors": 0,
        "workers": 1,
    }
    assert ActorRegistry.get_all() == [sup, child(sup, "static")]


# -- logging, events and counters --------------------------------------------------------------


def test_each_crash_is_logged_once_with_the_child_id_and_traceback(
    journal: Recorder, events: Events, caplog: pytest.LogCaptureFixture
) -> None:
    sup = start_supervisor([worker("a", journal), worker("b", journal)])
    caplog.clear()

    crash(sup, "b")
    events.wait(EventKind.RESTARTED, "b")

    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    (record,) = errors
    assert "child 'b' crashed" in record.getMessage()
    assert record.exc_info is not None
    assert str(record.exc_info[1]) == "b crashed"
    assert "in on_receive" in caplog.text  # the child's own frame is in the traceback


def test_a_failed_start_is_logged_once_for_the_child(
    journal: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    sup = start_supervisor([])

    with pytest.raises(RuntimeError):
        sup.proxy().start_child(worker("bad", journal, fail_start=lambda: True)).get(timeout=WAIT)

    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "Supervisor 'supervisor': child 'bad' failed to start"
    ]
    assert str(errors[0].exc_info[1]) == "bad cannot start"  # type: ignore[index]


def test_a_start_function_that_raises_is_a_failed_start_logged_once(
    events: Events, caplog: pytest.LogCaptureFixture
) -> None:
    sup = start_supervisor([])

    def broken_start() -> ActorRef[Any]:
        raise OSError("no such socket")

    with pytest.raises(OSError, match="no such socket"):
        sup.proxy().start_child(ChildSpec(id="broken", start=broken_start)).get(timeout=WAIT)

    assert events.kinds("broken") == [EventKind.START_FAILED]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "Supervisor 'supervisor': child 'broken' failed to start"
    ]


def test_a_normal_exit_is_not_logged_as_an_error(
    journal: Recorder, events: Events, caplog: pytest.LogCaptureFixture
) -> None:
    sup = start_supervisor([worker("w", journal)])
    caplog.clear()

    end_child(sup, "w", "normal exit")
    events.wait(EventKind.RESTARTED, "w")

    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_events_and_counters_follow_each_restart(journal: Recorder, events: Events) -> None:
    sup = start_supervisor([worker("a", journal), worker("b", journal)], name="app")

    for attempt in (1, 2):
        crash(sup, "b")
        events.wait(EventKind.RESTARTED, "b", times=attempt)
    crash(sup, "a")
    events.wait(EventKind.RESTARTED, "a")

    proxy = sup.proxy()
    assert proxy.restart_counts().get(timeout=WAIT) == {"b": 2, "a": 1}
    assert proxy.restarts_total.get(timeout=WAIT) == 3
    assert events.kinds("b") == [
        EventKind.STARTED,
        EventKind.CRASHED,
        EventKind.STARTED,
        EventKind.RESTARTED,
        EventKind.CRASHED,
        EventKind.STARTED,
        EventKind.RESTARTED,
    ]
    assert {e.supervisor for e in events.items} == {"app"}


def test_unsubscribed_listener_receives_no_more_events(journal: Recorder, events: Events) -> None:
    late = Recorder()
    unsubscribe = subscribe(late.add)
    sup = start_supervisor([worker("w", journal)])
    assert [e.kind for e in late.items] == [EventKind.STARTED]

    unsubscribe()
    crash(sup, "w")
    events.wait(EventKind.RESTARTED, "w")

    assert [e.kind for e in late.items] == [EventKind.STARTED]


def test_a_failing_listener_does_not_disturb_supervision(
    journal: Recorder, events: Events, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_event: SupervisorEvent) -> None:
        raise RuntimeError("listener bug")

    unsubscribe = subscribe(broken)
    try:
        sup = start_supervisor([worker("w", journal)])
        crash(sup, "w")
        events.wait(EventKind.RESTARTED, "w")
    finally:
        unsubscribe()

    assert child(sup, "w") is not None
    assert "listener bug" in caplog.text


# -- back-off ----------------------------------------------------------------------------------


class RecordingBackoff(Backoff):
    """Records each attempt number and waits only the floor (no random jitter)."""

    attempts: list[int]

    def delay(self, attempt: int, rand: Any = None) -> float:
        type(self).attempts.append(attempt)
        return super().delay(attempt, rand=lambda _low, _high: 0.0)


@pytest.fixture
def backoff_class() -> type[RecordingBackoff]:
    class Recording(RecordingBackoff):
        attempts: list[int] = []

    return Recording


def test_back_off_attempts_grow_while_the_child_keeps_failing_and_reset_after_a_good_run(
    journal: Recorder, events: Events, backoff_class: type[RecordingBackoff]
) -> None:
    clock = FakeClock()
    backoff = backoff_class(floor=0.001, reset_after=30)
    sup = start_supervisor(
        [worker("w", journal, backoff=backoff)], max_restarts=10, max_seconds=60, clock=clock
    )

    for attempt in (1, 2, 3):
        crash(sup, "w")
        events.wait(EventKind.RESTARTED, "w", times=attempt)
    clock.now += 30  # the child now ran for reset_after before failing
    crash(sup, "w")
    events.wait(EventKind.RESTARTED, "w", times=4)

    assert backoff_class.attempts == [0, 1, 2, 0]
    assert sup.proxy().restart_counts().get(timeout=WAIT) == {"w": 4}


def test_child_stays_down_until_its_back_off_delay_has_passed(
    journal: Recorder, events: Events
) -> None:
    sup = start_supervisor([worker("w", journal, backoff=Backoff(floor=0.3, cap=0))])

    crash(sup, "w")
    events.wait(EventKind.CRASHED, "w")

    assert child(sup, "w") is None
    events.wait(EventKind.RESTARTED, "w")
    assert child(sup, "w") is not None


def test_siblings_restarted_with_a_backed_off_child_wait_for_it_in_start_order(
    journal: Recorder, events: Events
) -> None:
    sup = start_supervisor(
        [
            worker("a", journal),
            worker("b", journal, backoff=Backoff(floor=0.05, cap=0)),
            worker("c", journal),
            worker("d", journal),
        ],
        strategy="rest_for_one",
    )
    journal.clear()

    crash(sup, "b")
    events.wait(EventKind.RESTARTED, "d")

    assert journal.items == steps("d", "c", verb="stop") + steps("b", "c", "d", verb="start")


def test_siblings_wait_for_a_child_whose_restart_failed_until_it_runs(
    journal: Recorder, events: Events
) -> None:
    starts = iter([False, True])  # start, a failed restart, then healthy again
    sup = start_supervisor(
        [
            worker("a", journal, fail_start=lambda: next(starts, False)),
            worker("b", journal),
        ],
        strategy="one_for_all",
    )
    journal.clear()

    crash(sup, "a")
    events.wait(EventKind.RESTARTED, "b")

    assert journal.items == [("stop", "b"), ("start", "a"), ("start", "a"), ("start", "b")]


def test_terminating_a_child_that_waits_to_restart_releases_the_siblings_behind_it(
    journal: Recorder, events: Events
) -> None:
    sup = start_supervisor(
        [worker("slow", journal, backoff=Backoff(floor=60, cap=0)), worker("next", journal)],
        strategy="rest_for_one",
    )
    crash(sup, "slow")
    events.wait(EventKind.CRASHED, "slow")
    assert children(sup) == {"slow": None, "next": None}

    sup.proxy().terminate_child("slow").get(timeout=WAIT)

    assert children(sup)["slow"] is None
    assert children(sup)["next"] is not None
    assert events.count(EventKind.RESTARTED, "next") == 1


def test_stopping_the_supervisor_cancels_a_pending_back_off_restart(
    journal: Recorder, events: Events
) -> None:
    sup = start_supervisor([worker("w", journal, backoff=Backoff(floor=60, cap=0))])
    crash(sup, "w")
    events.wait(EventKind.CRASHED, "w")
    journal.clear()

    assert sup.stop(timeout=WAIT) is True

    assert journal.items == []
    assert events.count(EventKind.RESTARTED, "w") == 0


# -- a top-level supervisor ends the program ---------------------------------------------------


@pytest.mark.process
def test_top_level_supervisor_failure_ends_the_program_with_its_exit_code() -> None:
    script = textwrap.dedent(
        """
        from gevent import monkey
        monkey.patch_all()

        import logging
        import gevent
        from supervisors import ChildSpec, GeventActor, Supervisor

        logging.basicConfig(level=logging.CRITICAL)

        class Crashy(GeventActor):
            def on_start(self):
                self.actor_ref.tell("crash")

            def on_receive(self, message):
                raise RuntimeError("always crashes")

        Supervisor.start(
            [ChildSpec(id="crashy", start=Crashy.start)],
            max_restarts=2,
            exit_code_on_failure=3,
        )
        gevent.sleep(30)
        raise SystemExit("the supervisor should have ended the program")
        """
    )

    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )

    assert result.returncode == 3, result.stderr
    assert "ending the program with status 3" in result.stderr


def test_a_supervisor_without_exit_code_leaves_the_program_running(journal: Recorder) -> None:
    sup = start_supervisor([worker("w", journal)], max_restarts=0)
    exits = Exits()
    exits.watch(sup)

    crash(sup, "w")

    assert exits.wait_one().kind is ExitKind.FAILURE
    with pytest.raises(ActorDeadError):
        sup.proxy()


class Gathering(GeventActor):
    """Ends only once all of ``party`` are ending too, or it gave up waiting (``GATHER_S``):
    stopped one at a time, the first would wait alone."""

    def __init__(self, party: list[bool], size: int, all_stopping: gevent.event.Event) -> None:
        super().__init__()
        self.party, self.size, self.all_stopping = party, size, all_stopping

    def on_stop(self) -> None:
        mine = len(self.party)
        self.party.append(False)
        if len(self.party) == self.size:
            self.all_stopping.set()
        self.party[mine] = self.all_stopping.wait(timeout=GATHER_S)


GATHER_S = 1.0


def test_dynamic_children_are_told_to_stop_together_and_static_ones_after_them(
    journal: Recorder,
) -> None:
    size = 5
    party: list[bool] = []
    all_stopping = gevent.event.Event()
    sup = start_supervisor([worker("static", journal)])
    for n in range(size):
        spec = ChildSpec(id=("conn", n), start=Gathering.start, args=(party, size, all_stopping))
        sup.proxy().start_child(spec).get(timeout=WAIT)
    assert sup.stop(timeout=WAIT) is True
    assert party == [True] * size, "the dynamic children were stopped one at a time"
    assert journal.items[-1] == ("stop", "static")


class StuckGathering(GeventActor):
    """Never stops by itself; once killed, ends only when all of ``party`` are killed too, or
    it gave up waiting (``GATHER_S``): killed one at a time, the first would wait alone."""

    def __init__(self, party: list[bool], size: int, all_killed: gevent.event.Event) -> None:
        super().__init__()
        self.party, self.size, self.all_killed = party, size, all_killed

    def on_stop(self) -> None:
        try:
            gevent.event.Event().wait()
        finally:
            mine = len(self.party)
            self.party.append(False)
            if len(self.party) == self.size:
                self.all_killed.set()
            self.party[mine] = self.all_killed.wait(timeout=GATHER_S)


def test_dynamic_children_past_their_shutdown_time_are_killed_together(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A node's rooms, each busy past its shutdown time on a loaded machine: killed one after
    # the other, each kill waiting for the last one's end, a hundred of them took longer than
    # the process had to exit.
    size = 5
    party: list[bool] = []
    all_killed = gevent.event.Event()
    sup = start_supervisor([])
    for n in range(size):
        spec = ChildSpec(
            id=("room", n), start=StuckGathering.start, args=(party, size, all_killed), shutdown=0.1
        )
        sup.proxy().start_child(spec).get(timeout=WAIT)
    assert sup.stop(timeout=WAIT + size * GATHER_S) is True
    assert party == [True] * size, "the children were killed one at a time"
    assert caplog.text.count("did not stop within 0.1s: killing it") == size
