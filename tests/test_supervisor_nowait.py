"""``start_child_nowait``: a dynamic child added from the caller's greenlet, supervised as if
``start_child`` had started it, without a round trip to the supervisor or to the child.

Uses the workers, journal and event recorders of ``tests/test_supervisor.py``; every assertion
is about order and outcome, awaited through events or asks, never timing.
"""

from __future__ import annotations

from typing import Any

import gevent
import pytest
from pykka import ActorDeadError, ActorRef, ActorRegistry

from supervisors import (
    ChildExists,
    ChildInfo,
    ChildKind,
    ChildSpec,
    EventKind,
    GeventActor,
    Restart,
    Supervisor,
    start_child_nowait,
)
from tests import test_supervisor
from tests.test_supervisor import (
    WAIT,
    Events,
    Recorder,
    Worker,
    child,
    children,
    start_supervisor,
    steps,
    worker,
)

# The fixtures of tests/test_supervisor.py, by name.
_no_actor_outlives_its_test = test_supervisor._no_actor_outlives_its_test
events = test_supervisor.events
journal = test_supervisor.journal


def test_the_child_is_returned_before_its_on_start_and_listed_after_the_static_ones(
    journal: Recorder,
) -> None:
    sup = start_supervisor([worker("a", journal)])
    journal.clear()

    ref = start_child_nowait(sup, worker("dyn", journal))

    assert journal.items == []  # nothing waited for its on_start
    assert ref.ask("ping", timeout=WAIT) == "dyn"  # handled after on_start
    assert journal.items == [("start", "dyn")]
    assert sup.proxy().which_children().get(timeout=WAIT) == [
        ChildInfo("a", child(sup, "a"), ChildKind.WORKER, Restart.PERMANENT),
        ChildInfo("dyn", ref, ChildKind.WORKER, Restart.PERMANENT),
    ]


def test_messages_told_before_on_start_are_handled_after_it(journal: Recorder) -> None:
    sup = start_supervisor([])
    ref = start_child_nowait(sup, worker("dyn", journal))

    answer = ref.ask("ping", block=False)
    ref.tell("crash")

    assert answer.get(timeout=WAIT) == "dyn"
    assert journal.wait_for(lambda items: len(items) >= 2) == steps("dyn", "dyn", verb="start")


def test_a_crashed_child_is_restarted_and_one_that_exits_normally_is_removed(
    journal: Recorder, events: Events
) -> None:
    sup = start_supervisor([])
    spec = ChildSpec(id="t", start=Worker.start, args=("t", journal), restart="transient")
    first = start_child_nowait(sup, spec)

    first.tell("crash")
    events.wait(EventKind.RESTARTED, "t")
    second = child(sup, "t")
    assert second is not None and second is not first
    assert sup.proxy().restart_counts().get(timeout=WAIT) == {"t": 1}

    second.tell("exit")
    events.wait(EventKind.EXITED, "t")
    assert children(sup) == {}


def test_a_failure_in_on_start_is_a_crash_handled_by_the_restart_type(
    journal: Recorder, events: Events
) -> None:
    sup = start_supervisor([])
    failures = iter([True, False])

    start_child_nowait(sup, worker("flaky", journal, fail_start=lambda: next(failures)))

    events.wait(EventKind.RESTARTED, "flaky")
    started, crashed, restarted = EventKind.STARTED, EventKind.CRASHED, EventKind.RESTARTED
    assert events.kinds("flaky") == [started, crashed, started, restarted]
    ref = child(sup, "flaky")
    assert ref is not None and ref.ask("ping", timeout=WAIT) == "flaky"


def test_children_started_so_stop_first_all_together_then_the_static_ones_in_reverse(
    journal: Recorder,
) -> None:
    sup = start_supervisor([worker("a", journal), worker("b", journal)])
    for name in ("x", "y"):
        start_child_nowait(sup, worker(name, journal)).ask("ping", timeout=WAIT)
    journal.clear()

    assert sup.stop(timeout=WAIT) is True

    assert sorted(journal.items[:2]) == steps("x", "y", verb="stop")
    assert journal.items[2:] == steps("b", "a", verb="stop")
    assert ActorRegistry.get_all() == []


def test_a_supervisor_that_is_not_running_takes_no_child(journal: Recorder) -> None:
    unstarted = Supervisor.start()  # its on_start has not run yet: nothing switched since
    with pytest.raises(ActorDeadError, match="not running"):
        start_child_nowait(unstarted, worker("early", journal))
    unstarted.proxy().which_children().get(timeout=WAIT)

    stopped = start_supervisor([])
    stopped.stop(timeout=WAIT)
    with pytest.raises(ActorDeadError, match="not running"):
        start_child_nowait(stopped, worker("late", journal))

    assert ActorRegistry.get_all() == [unstarted]


def test_a_supervisor_that_stops_while_the_start_function_waits_gets_no_orphan(
    journal: Recorder,
) -> None:
    sup = start_supervisor([])
    started: list[ActorRef[Any]] = []

    def start_then_stop_the_supervisor() -> ActorRef[Any]:
        started.append(Worker.start("slow", journal))
        sup.stop(block=False).get(timeout=WAIT)  # switches: the supervisor stops meanwhile
        return started[0]

    with pytest.raises(ActorDeadError, match="stopped while child 'slow' was starting"):
        start_child_nowait(sup, ChildSpec(id="slow", start=start_then_stop_the_supervisor))

    assert started[0].actor_stopped.wait(WAIT)
    assert ActorRegistry.get_all() == []


def test_errors_go_to_the_caller_and_leave_the_supervisor_running(journal: Recorder) -> None:
    sup = start_supervisor([worker("a", journal)])
    not_a_supervisor = GeventActor.start()

    with pytest.raises(ChildExists):
        start_child_nowait(sup, worker("a", journal))
    with pytest.raises(TypeError, match="not a Supervisor"):
        start_child_nowait(not_a_supervisor, worker("b", journal))
    with pytest.raises(ZeroDivisionError):
        start_child_nowait(sup, ChildSpec(id="c", start=lambda: 1 / 0))
    with pytest.raises(RuntimeError, match="hub thread"):
        gevent.get_hub().threadpool.apply(start_child_nowait, (sup, worker("d", journal)))

    assert list(children(sup)) == ["a"]
    assert sup.is_alive()
