"""The store's OS thread (actorim.runtime.storethread): order, failures, the hub kept free,
and a clean stop."""

from __future__ import annotations

import doctest
import logging
from collections.abc import Iterator
from typing import Any

import gevent
import gevent.event
import pytest
from gevent import monkey

import actorim.runtime.storethread
from actorim.runtime.storethread import StoreThread, StoreThreadStopped

WAIT = 10.0
_get_ident = monkey.get_original("_thread", "get_ident")
_allocate_lock = monkey.get_original("_thread", "allocate_lock")


@pytest.fixture
def thread() -> Iterator[StoreThread]:
    store_thread = StoreThread("test")
    store_thread.start()
    yield store_thread
    store_thread.stop()


class Answers:
    """The answers a thread gave, in the order they came, and an event once ``expected`` did."""

    def __init__(self, expected: int) -> None:
        self.got: list[tuple[Any, BaseException | None]] = []
        self.hub_only = True
        self._expected = expected
        self._all = gevent.event.Event()

    def __call__(self, result: Any, error: BaseException | None) -> None:
        self.hub_only &= gevent.getcurrent() is gevent.get_hub()
        self.got.append((result, error))
        if len(self.got) >= self._expected:
            self._all.set()

    def wait(self) -> list[tuple[Any, BaseException | None]]:
        assert self._all.wait(WAIT), f"{len(self.got)} of {self._expected} answers"
        return self.got


def _blocked() -> Any:
    """A lock of the OS threads' own, held: a job that acquires it waits until it is released."""
    lock = _allocate_lock()
    lock.acquire()
    return lock


def _submit_stuck(thread: StoreThread, answer: Any) -> Any:
    """Submit a job that waits on the lock returned (held), once the thread has started it."""
    lock, started = _blocked(), _blocked()

    def stuck() -> bool:
        started.release()
        return bool(lock.acquire())

    thread.submit(stuck, answer)
    assert started.acquire(timeout=WAIT)
    return lock


def test_doctests() -> None:
    assert doctest.testmod(actorim.runtime.storethread).failed == 0


def test_jobs_run_in_order_and_each_is_answered_with_its_own_result_or_failure(
    thread: StoreThread,
) -> None:
    def fails(n: int) -> None:
        raise ValueError(f"job {n}")

    answers = Answers(expected=6)
    for n in range(6):
        thread.submit((lambda n=n: fails(n)) if n % 3 == 1 else (lambda n=n: n), answers)
    got = answers.wait()
    assert [result for result, _ in got] == [0, None, 2, 3, None, 5]
    assert [str(error) for _, error in got if error is not None] == ["job 1", "job 4"]
    assert answers.hub_only  # answers run on the hub: the store actor's tells are safe there


def test_a_job_that_raises_base_exception_is_answered_and_the_thread_goes_on(
    thread: StoreThread,
) -> None:
    def exits() -> None:
        raise SystemExit(3)

    answers = Answers(expected=2)
    thread.submit(exits, answers)
    thread.submit(lambda: "after", answers)
    [(_, error), (after, _)] = answers.wait()
    assert isinstance(error, SystemExit)
    assert after == "after"


def test_jobs_run_on_an_os_thread_of_their_own_while_the_hub_goes_on(
    thread: StoreThread,
) -> None:
    # A job blocked (a slow disk) holds its thread, never the hub: a greenlet runs meanwhile,
    # and it is that greenlet which lets the job go.
    lock = _blocked()
    answers = Answers(expected=1)
    thread.submit(lambda: (lock.acquire(), _get_ident())[1], answers)
    gevent.spawn(lock.release).join(timeout=WAIT)
    [(ident, error)] = answers.wait()
    assert error is None
    assert ident != _get_ident()


def test_answers_ready_together_are_taken_in_one_pass(thread: StoreThread) -> None:
    # The thread runs ahead of the hub: every answer it finished while the hub was busy is
    # taken by the watcher's one callback, in order.
    lock = _blocked()
    answers = Answers(expected=20)
    thread.submit(lock.acquire, answers)
    for n in range(19):
        thread.submit(lambda n=n: n, answers)
    passes: list[int] = []
    run = thread._run
    assert run is not None
    drain = run.drain

    def counted() -> None:
        passes.append(len(answers.got))
        drain()

    run.watcher.callback = counted
    lock.release()
    while len(run.answers) < 20:
        pass  # the hub busy: the thread runs all 20, the answers wait
    got = answers.wait()
    assert [result for result, _ in got[1:]] == list(range(19))
    assert passes == [0]


def test_the_watcher_holds_the_loop_only_while_an_answer_is_due() -> None:
    loop = gevent.get_hub().loop
    before = loop.activecnt
    thread = StoreThread("test")
    thread.start()
    assert loop.activecnt == before  # idle: a process with nothing else to do may exit
    lock = _blocked()
    answers = Answers(expected=1)
    thread.submit(lock.acquire, answers)
    assert loop.activecnt == before + 1
    lock.release()
    answers.wait()
    assert loop.activecnt == before
    assert thread.stop()
    assert loop.activecnt == before


def test_stop_joins_the_thread_closes_the_watcher_and_answers_what_never_ran() -> None:
    thread = StoreThread("test")
    thread.start()
    answers = Answers(expected=3)
    lock = _submit_stuck(thread, answers)
    thread.submit(lambda: "never", answers)
    thread.submit(lambda: "never", answers)
    gevent.spawn(lock.release)  # the running job finishes while stop waits for it
    assert thread.stop()
    got = answers.wait()
    assert got[0] == (True, None)
    assert all(isinstance(error, StoreThreadStopped) for _, error in got[1:])
    assert not thread.running
    with pytest.raises(StoreThreadStopped):
        thread.submit(lambda: None, answers)


def test_a_stopped_thread_starts_again() -> None:
    # The supervisor restarts the store actor after a failure: a new thread, the same object.
    thread = StoreThread("test")
    for _ in range(2):
        thread.start()
        answers = Answers(expected=1)
        thread.submit(lambda: "ok", answers)
        assert answers.wait() == [("ok", None)]
        assert thread.stop()


def test_a_thread_stuck_past_the_wait_is_left_behind_without_holding_the_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = gevent.get_hub().loop
    before = loop.activecnt
    thread = StoreThread("test")
    thread.start()
    answers = Answers(expected=1)
    lock = _submit_stuck(thread, answers)
    with caplog.at_level(logging.WARNING, "actorim.store"):
        assert not thread.stop(timeout=0.05)
    assert "did not stop" in caplog.text
    assert loop.activecnt == before
    lock.release()  # the disk comes back: the thread answers its last job, then exits
    assert answers.wait() == [(True, None)]
    assert not thread.running


def test_an_answer_that_raises_is_logged_and_the_next_is_still_given(
    thread: StoreThread, caplog: pytest.LogCaptureFixture
) -> None:
    def bad(result: Any, error: BaseException | None) -> None:
        raise RuntimeError("asker broken")

    answers = Answers(expected=1)
    with caplog.at_level(logging.ERROR, "actorim.store"):
        thread.submit(lambda: 1, bad)
        thread.submit(lambda: 2, answers)
        assert answers.wait() == [(2, None)]
    assert "asker broken" in caplog.text
