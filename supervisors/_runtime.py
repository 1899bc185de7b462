"""Where actors run: the gevent hub that owns them, and how other threads reach it.

Every GeventActor runs on one hub, the *home hub*: the hub of the thread that created the first
actor (normally the main thread). Code on that thread schedules work directly; code on any other
OS thread (gevent's threadpool, a C library's callback thread) must go through
``loop.run_callback_threadsafe``, which also wakes the hub at once instead of leaving the work for
the next loop iteration.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gevent
from gevent import monkey
from gevent.hub import Hub

__all__ = ["call_on_home", "home_hub", "on_home_thread"]

# The OS thread id, even when ``threading`` is monkey-patched (then its get_ident names greenlets).
_thread_ident: Callable[[], int] = monkey.get_original("_thread", "get_ident")

_home: Hub | None = None
_home_thread: int | None = None


def home_hub() -> Hub:
    """The hub actors run on; fixed by the first call, made on the thread that starts actors."""
    global _home, _home_thread
    if _home is None:
        _home = gevent.get_hub()
        _home_thread = _thread_ident()
    return _home


def on_home_thread() -> bool:
    """True when the caller may block on gevent primitives of the home hub."""
    if _home_thread is None:
        home_hub()
    return _thread_ident() == _home_thread


def call_on_home(func: Callable[..., Any], *args: Any) -> None:
    """Run ``func(*args)`` on the home hub soon, scheduled thread-safely from other threads."""
    hub = home_hub()
    if _thread_ident() == _home_thread:
        hub.loop.run_callback(func, *args)
    else:
        hub.loop.run_callback_threadsafe(func, *args)
