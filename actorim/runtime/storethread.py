"""``StoreThread``: one OS thread that runs the store's work, fed by a queue, answered
through one watcher.

The SQLite store blocks (disk reads, fsync), so its work runs off the hub, on an OS thread.
gevent's thread pool would do it, but each of its tasks costs a ``ThreadResult`` with its own
async watcher started and closed, a condition notified, and a greenlet-aware queue: more
interpreter time than most store calls take, and every connection and every send pays it.
Here the hand-off is a C ``SimpleQueue.put`` (the thread waits on it without the interpreter
lock), and the thread hands its answers back on a deque and wakes the hub through **one**
loop ``async_`` watcher, made once: one callback on the hub takes every answer that is ready.

The process is monkey-patched by gevent, so the thread, its queue and its exit lock are the
*original* ones (``gevent.monkey.get_original``): gevent's would be greenlets and hub waits,
which an OS thread cannot use.

Jobs run one after the other, in the order they were submitted, and are answered in that
order, each with its own result or exception, by ``answer(result, error)`` called on the hub
(from the watcher's callback: it must not block; the store actor's answers only ``tell`` the
actor). The watcher holds the hub's loop alive only while jobs are outstanding, so an idle
store thread never keeps a process from exiting.

>>> import gevent
>>> thread = StoreThread("example")
>>> thread.start()
>>> done = gevent.event.AsyncResult()
>>> thread.submit(lambda: 6 * 7, lambda result, error: done.set(result))
>>> done.get(timeout=5)
42
>>> thread.stop()
True
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
from gevent import monkey

__all__ = ["STOP_WAIT", "Answer", "StoreThread", "StoreThreadStopped"]

logger = logging.getLogger("actorim.store")

Answer = Callable[[Any, BaseException | None], None]

STOP_WAIT = 5.0
"""Seconds ``stop`` waits for the thread to finish its last job. A job is one batch of store
calls or one history page (each bounded); a thread stuck longer (a hung disk) is left behind
rather than holding up the store actor's restart."""

_SimpleQueue = monkey.get_original("queue", "SimpleQueue")
_start_new_thread = monkey.get_original("_thread", "start_new_thread")
_allocate_lock = monkey.get_original("_thread", "allocate_lock")

_LEFT_BEHIND: list[_Run] = []
"""Threads that did not stop in time, with their watchers: kept, since freeing a watcher the
thread may still wake would be a use after free."""

_STOP = object()
"""Put on the queue by ``stop``: the thread answers it and exits."""


class StoreThreadStopped(RuntimeError):
    """The job was still waiting when the thread stopped: it never ran."""


class StoreThread:
    """One OS thread running submitted jobs in order; see the module docstring.

    Every method runs on the hub's thread. ``start`` after ``stop`` starts a new thread (the
    store actor's supervisor restarts it after a failure).
    """

    __slots__ = ("_name", "_run")

    def __init__(self, name: str) -> None:
        self._name = name
        self._run: _Run | None = None

    @property
    def running(self) -> bool:
        return self._run is not None

    def start(self) -> None:
        """Start the thread and the watcher its answers come back through."""
        if self._run is not None:
            raise RuntimeError(f"the {self._name} thread is already running")
        self._run = _Run(self._name)

    def submit(self, job: Callable[[], Any], answer: Answer) -> None:
        """Run ``job()`` on the thread; ``answer(result, error)`` runs on the hub after."""
        run = self._run
        if run is None:
            raise StoreThreadStopped(f"the {self._name} thread is not running")
        run.outstanding += 1
        if run.outstanding == 1:
            run.watcher.ref = True  # an answer is due: the hub's loop must wait for it
        run.jobs.put((job, answer))

    def stop(self, timeout: float = STOP_WAIT) -> bool:
        """Stop the thread, waiting (cooperatively) for the job it runs; the jobs that had not
        started are answered ``StoreThreadStopped`` after it. False if the thread did not
        finish within ``timeout``: it is left behind with its watcher (freeing a watcher the
        thread may still wake is unsafe), and answers its last job should it ever finish."""
        run, self._run = self._run, None
        if run is None:
            return True
        never_ran = []
        while not run.jobs.empty():
            never_ran.append(run.jobs.get())
        run.outstanding += 1
        run.watcher.ref = True
        run.jobs.put((_STOP, None))
        stopped = run.stopped.wait(timeout) and run.exited.acquire(timeout=timeout)
        run.outstanding -= len(never_ran)
        for _, answer in never_ran:
            answer(None, StoreThreadStopped(f"the {self._name} thread stopped first"))
        if not stopped:
            logger.warning("the %s thread did not stop within %.0f s", self._name, timeout)
            run.watcher.ref = False
            _LEFT_BEHIND.append(run)
            return False
        run.watcher.stop()
        run.watcher.close()
        return True


class _Run:
    """One start of a ``StoreThread``: its OS thread, queue, answers and watcher."""

    __slots__ = ("answers", "exited", "jobs", "name", "outstanding", "stopped", "watcher")

    def __init__(self, name: str) -> None:
        self.name = name
        self.jobs: Any = _SimpleQueue()
        # (answer, result, error), appended by the thread, taken by the hub (deque: atomic).
        self.answers: deque[tuple[Answer | None, Any, BaseException | None]] = deque()
        self.outstanding = 0  # submitted, not yet answered
        self.stopped = gevent.event.Event()
        self.exited: Any = _allocate_lock()  # held by the thread while it runs
        self.exited.acquire()
        self.watcher: Any = gevent.get_hub().loop.async_()
        self.watcher.ref = False
        self.watcher.start(self.drain)
        _start_new_thread(self.loop, ())

    def loop(self) -> None:
        """The thread's loop: take a job, run it, hand the answer back, wake the hub."""
        jobs, answers, wake = self.jobs, self.answers, self.watcher.send
        try:
            while True:
                job, answer = jobs.get()
                if job is _STOP:
                    answers.append((None, None, None))
                    wake()
                    return
                try:
                    answers.append((answer, job(), None))
                except BaseException as exc:  # the job's failure is its asker's, not ours
                    answers.append((answer, None, exc))
                wake()
        finally:
            self.exited.release()

    def drain(self) -> None:
        """Every answer that is ready, in order (the watcher's callback, on the hub)."""
        answers = self.answers
        while answers:
            answer, result, error = answers.popleft()
            self.outstanding -= 1
            if answer is None:
                self.stopped.set()
                continue
            try:
                answer(result, error)
            except Exception:
                logger.exception("an answer of the %s thread failed", self.name)
        if self.outstanding == 0:
            self.watcher.ref = False
