"""Where actors run: the gevent hub that owns them, and how other threads reach it.

Every GeventActor runs on one hub, the *home hub*: the hub of the thread that imported this
package (normally the main thread). Code on that thread schedules work directly; code on any
other OS thread (gevent's threadpool, a C library's callback thread) must go through
``loop.run_callback_threadsafe``, which also wakes the hub at once instead of leaving the work for
the next loop iteration.

In a monkey-patched program the home hub is fixed at import, so that even the very first actor
may be started from another thread. Otherwise it is created by the first use on the importing
thread, and a first use from any other thread is an error: that thread's hub is not running the
actors' loop, so work scheduled there would never run.
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
_import_thread = _thread_ident()


def home_hub() -> Hub:
    """The hub actors run on: the importing thread's."""
    global _home, _home_thread
    if _home is None:
        if _thread_ident() != _import_thread:
            msg = (
                "supervisors: the first actor must be started on the thread that imported "
                "supervisors and runs the gevent hub (normally the main thread), or the program "
                "must be monkey-patched before importing supervisors"
            )
            raise RuntimeError(msg)
        _home = gevent.get_hub()
        _home_thread = _import_thread
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


if monkey.is_module_patched("threading"):
    home_hub()
