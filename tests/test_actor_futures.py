"""GeventFuture waits the way its caller can: a greenlet without stalling the hub, a real OS
thread without deadlocking it. Time-outs raise ``pykka.Timeout`` in every context."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gevent
import gevent.event
import pytest
from pykka import ActorRegistry, Timeout

from supervisors import GeventActor, GeventFuture, kill

WAIT = 5.0  # seconds; generous upper bound for events that arrive in microseconds
SHORT = 0.05  # seconds; a time-out that is meant to expire


@pytest.fixture(autouse=True)
def _no_actor_outlives_its_test() -> Iterator[None]:
    yield
    for ref in reversed(ActorRegistry.get_all()):
        kill(ref)


class Waiter(GeventActor):
    """Waits on futures it is handed, reporting what ``get`` returned or raised."""

    crash_on_ask_error = False

    def wait_for(self, future: GeventFuture[Any], timeout: float | None) -> Any:
        try:
            return ("value", future.get(timeout=timeout))
        except Timeout:
            return ("timeout", None)

    def echo(self, value: Any) -> Any:
        return value


def in_os_thread(func: Any, *args: Any) -> Any:
    return gevent.get_hub().threadpool.spawn(func, *args).get(timeout=WAIT)


# -- the main greenlet -------------------------------------------------------------------------


def test_get_from_the_main_greenlet_times_out_with_pykka_timeout() -> None:
    with pytest.raises(Timeout, match=f"{SHORT} seconds"):
        GeventFuture().get(timeout=SHORT)


def test_get_from_the_main_greenlet_blocks_only_the_main_greenlet() -> None:
    future: GeventFuture[str] = GeventFuture()
    worker = Waiter.start().proxy()
    ran_meanwhile: list[str] = []

    def meanwhile() -> None:
        ran_meanwhile.append(worker.echo("actors keep running").get(timeout=WAIT))
        future.set("done")

    gevent.spawn(meanwhile)

    assert future.get(timeout=WAIT) == "done"
    assert ran_meanwhile == ["actors keep running"]


def test_a_future_read_twice_returns_the_same_value_without_waiting() -> None:
    future: GeventFuture[int] = GeventFuture()
    gevent.spawn(future.set, 3)

    assert future.get(timeout=WAIT) == 3
    assert future.get(timeout=0) == 3


# -- another actor -----------------------------------------------------------------------------


def test_get_inside_an_actor_times_out_with_pykka_timeout() -> None:
    waiter = Waiter.start().proxy()

    assert waiter.wait_for(GeventFuture(), SHORT).get(timeout=WAIT) == ("timeout", None)


def test_get_inside_an_actor_blocks_only_that_actor() -> None:
    future: GeventFuture[str] = GeventFuture()
    blocked, free = Waiter.start().proxy(), Waiter.start().proxy()

    outcome = blocked.wait_for(future, None)
    assert free.echo("not blocked").get(timeout=WAIT) == "not blocked"
    future.set("released")

    assert outcome.get(timeout=WAIT) == ("value", "released")


def test_actors_waiting_on_each_others_futures_do_not_deadlock() -> None:
    first, second = Waiter.start().proxy(), Waiter.start().proxy()

    # first waits for second's reply, computed while first is blocked.
    relayed = first.wait_for(second.echo("relayed"), WAIT)

    assert relayed.get(timeout=WAIT) == ("value", "relayed")


# -- a real OS thread --------------------------------------------------------------------------


def test_get_from_an_os_thread_times_out_with_pykka_timeout() -> None:
    future: GeventFuture[Any] = GeventFuture()

    def wait_in_thread() -> str:
        try:
            future.get(timeout=SHORT)
        except Timeout:
            return "timeout"
        return "no timeout"

    assert in_os_thread(wait_in_thread) == "timeout"


def test_get_from_an_os_thread_receives_a_value_set_on_the_hub() -> None:
    future: GeventFuture[str] = GeventFuture()
    job = gevent.get_hub().threadpool.spawn(future.get, timeout=WAIT)
    gevent.sleep(0)  # give the thread a chance to start waiting first; either order must work

    future.set("from the hub")

    assert job.get(timeout=WAIT) == "from the hub"


def test_os_thread_waiting_on_an_actor_does_not_stall_the_hub() -> None:
    slow = Waiter.start().proxy()
    gate: GeventFuture[str] = GeventFuture()

    # The thread waits on an actor that itself waits on the hub: both must make progress.
    job = gevent.get_hub().threadpool.spawn(lambda: slow.wait_for(gate, WAIT).get(timeout=WAIT))
    gevent.spawn(gate.set, "opened")

    assert job.get(timeout=WAIT) == ("value", "opened")


def test_future_set_from_an_os_thread_wakes_a_waiting_greenlet() -> None:
    future: GeventFuture[str] = GeventFuture()

    gevent.get_hub().threadpool.spawn(future.set, "from a thread")

    assert future.get(timeout=WAIT) == "from a thread"


def test_mapped_future_works_from_an_os_thread() -> None:
    echo = Waiter.start().proxy()

    assert in_os_thread(lambda: echo.echo(20).map(lambda n: n + 1).get(timeout=WAIT)) == 21


def test_exception_set_on_a_future_is_raised_in_an_os_thread() -> None:
    future: GeventFuture[Any] = GeventFuture()
    future.set_exception((KeyError, KeyError("gone"), None))

    def read() -> str:
        try:
            future.get(timeout=WAIT)
        except KeyError:
            return "raised"
        return "returned"

    assert in_os_thread(read) == "raised"
