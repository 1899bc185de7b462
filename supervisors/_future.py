"""A Pykka future that blocks only the waiting greenlet, and still works from real OS threads.

Pykka's ``ThreadingFuture`` waits on a ``threading.Condition``: on a monkey-patched hub that is a
greenlet primitive which an OS thread cannot wait on, and unpatched it blocks the whole hub.
``GeventFuture`` waits the way the caller can: a greenlet of the home hub waits on a gevent
``Event`` (the hub keeps running); any other OS thread waits on an unpatched lock. Setting the
value is allowed from any thread.
"""

from __future__ import annotations

import queue
import sys
from typing import TYPE_CHECKING, Any, TypeVar

import gevent.event
from gevent import monkey
from pykka import Future, Timeout

from supervisors._runtime import on_home_thread

if TYPE_CHECKING:
    from supervisors._pykka_compat import GetHookFunc, OptExcInfo

__all__ = ["GeventFuture"]

T = TypeVar("T")

_allocate_lock = monkey.get_original("_thread", "allocate_lock")
# One lock for all futures: it is held for a few attribute reads and writes, never while waiting,
# so contention is negligible and a future costs no lock object of its own.
_state_lock = _allocate_lock()


class _Unset:
    """Marks a future whose value has not been set yet."""


_UNSET: Any = _Unset()


class GeventFuture(Future[T]):
    """Future for :class:`~supervisors.GeventActor`; see the module docstring for how it waits."""

    def __init__(self) -> None:
        super().__init__()
        self._value: Any = _UNSET
        self._exc_info: OptExcInfo | None = None
        self._event: gevent.event.Event | None = None
        self._thread_waiters: list[Any] | None = None
        # Set by set_get_hook, which Pykka calls for the futures of filter, join, map, reduce and
        # ActorRef.stop: get() then returns what Pykka's Future.get computes with the hook.
        self._hooked = False

    def _is_set(self) -> bool:
        return self._exc_info is not None or self._value is not _UNSET

    def get(self, *, timeout: float | None = None) -> Any:
        if self._hooked:
            return super().get(timeout=timeout)
        if self._exc_info is None and self._value is _UNSET and not self._wait(timeout):
            msg = f"{timeout} seconds"
            raise Timeout(msg)
        if self._hooked:
            return super().get(timeout=timeout)
        if self._exc_info is not None:
            exc_type, exc_value, exc_traceback = self._exc_info
            assert exc_type is not None
            if exc_value is None:
                exc_value = exc_type()
            if exc_value.__traceback__ is not exc_traceback:
                raise exc_value.with_traceback(exc_traceback)
            raise exc_value
        return self._value

    def _wait(self, timeout: float | None) -> bool:
        """Block the caller until set (or a get hook arrives); False on time-out."""
        if on_home_thread():
            with _state_lock:
                if self._is_set() or self._hooked:
                    return True
                if self._event is None:
                    self._event = gevent.event.Event()
                event = self._event
            return event.wait(timeout)
        lock = _allocate_lock()
        lock.acquire()
        with _state_lock:
            if self._is_set() or self._hooked:
                return True
            if self._thread_waiters is None:
                self._thread_waiters = []
            self._thread_waiters.append(lock)
        return lock.acquire(True, -1 if timeout is None else timeout)

    def _wake(self) -> None:
        with _state_lock:
            event, self._event = self._event, None
            waiters, self._thread_waiters = self._thread_waiters, None
        if event is not None:
            event.set()
        if waiters:
            for lock in waiters:
                lock.release()

    def set(self, value: Any | None = None) -> None:
        with _state_lock:
            if self._is_set() or self._hooked:
                raise queue.Full
            self._value = value
        self._wake()

    def set_exception(self, exc_info: OptExcInfo | None = None) -> None:
        assert exc_info is None or len(exc_info) == 3
        if exc_info is None:
            exc_info = sys.exc_info()
        with _state_lock:
            if self._is_set() or self._hooked:
                raise queue.Full
            self._exc_info = exc_info
        self._wake()

    def set_get_hook(self, func: GetHookFunc[T]) -> None:
        with _state_lock:
            if self._is_set():
                raise queue.Full
            Future.set_get_hook(self, func)
            self._hooked = True
        self._wake()
