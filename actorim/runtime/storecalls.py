"""The store thread's work, handed over in batches: one thread hop for many backend calls.

Every backend call of the SQLite store runs on the store's own OS thread. Handing each call
over on its own costs a queue put, a wake-up of the thread, and a wake-up of the hub to take
the answer back (with the GIL passed both ways): tens of microseconds, more than most of the
calls themselves, and a connection makes several (its inbox, its mutes, its join, its offline
backlog). ``CallQueue`` keeps the calls that arrive while the thread is busy, and the next hop
takes all of them (at most ``limit``), in the order they came: under a reconnect storm the
hops are counted in batches, not calls, while a lone call still goes at once. A call marked
``alone`` (a commit of sends, a history page) goes in a batch of its own, and one marked
``first`` (the group commit) before everything else waiting.

>>> queue = CallQueue(limit=2)
>>> for name in "abc":
...     queue.add(StoreCall(str.upper, (name,), {}, print))
>>> [call.args for call in queue.next_batch()]
[('a',), ('b',)]
>>> queue.next_batch() is None  # one batch at a time
True
>>> queue.finished(); [call.args for call in queue.next_batch()]
[('c',)]
>>> run_calls([StoreCall(str.upper, ("a",), {}, print), StoreCall(int, ("x",), {}, print)])[0]
('A', None)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_BATCH_LIMIT", "CallQueue", "StoreCall", "run_calls"]

DEFAULT_BATCH_LIMIT = 64
"""Most calls one hop carries. Each call of a batch is answered when the whole batch is done,
so the bound keeps a quick read from waiting behind a long tail of others; 64 is the number of
connections a typical load balancer or client pool opens at once."""

Done = Callable[[Any, BaseException | None], None]


@dataclass(slots=True, frozen=True)
class StoreCall:
    """One backend call: ``func(*args, **kwargs)`` on the store thread, then ``done(result,
    error)`` in the store's actor."""

    func: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    done: Done
    alone: bool = False
    """Goes in a batch of its own: every answer of a batch waits for its last call, so a long
    call (a history page) or one whose answer is awaited (a commit of sends) is not batched."""
    first: bool = False
    """Goes, in a batch of its own, before every waiting call not marked so: the group commit,
    whose senders then wait for the one batch running, not for every history page queued
    before it."""


def run_calls(
    calls: list[StoreCall], together: Callable[[], AbstractContextManager[None]] | None = None
) -> list[tuple[Any, BaseException | None]]:
    """Run a batch on the store thread, in order; each call's failure is its own.

    With ``together`` (a ``Batching`` store's), the calls run inside it, as one transaction:
    should its commit fail, every call of the batch fails with that error.
    """
    if together is None:
        return _each(calls)
    try:
        with together():
            outcomes = _each(calls)
    except Exception as exc:
        return [(None, exc)] * len(calls)
    return outcomes


def _each(calls: list[StoreCall]) -> list[tuple[Any, BaseException | None]]:
    outcomes: list[tuple[Any, BaseException | None]] = []
    for call in calls:
        try:
            outcomes.append((call.func(*call.args, **call.kwargs), None))
        except Exception as exc:
            outcomes.append((None, exc))
    return outcomes


class CallQueue:
    """Calls waiting for the store thread, one batch in flight: those marked ``first`` before
    the others, each kind first come first run."""

    __slots__ = ("_first", "_limit", "_waiting", "running")

    def __init__(self, limit: int = DEFAULT_BATCH_LIMIT) -> None:
        if limit < 1:
            raise ValueError(f"limit must be 1 or more, got {limit}")
        self._limit = limit
        self._waiting: deque[StoreCall] = deque()
        self._first: deque[StoreCall] = deque()
        self.running = False

    def add(self, call: StoreCall) -> None:
        (self._first if call.first else self._waiting).append(call)

    def next_batch(self) -> list[StoreCall] | None:
        """The calls to hand over now, or None while a batch runs or nothing waits."""
        if self.running:
            return None
        if self._first:
            self.running = True
            return [self._first.popleft()]
        if not self._waiting:
            return None
        waiting = self._waiting
        batch = [waiting.popleft()]
        if not batch[0].alone:
            while waiting and len(batch) < self._limit and not waiting[0].alone:
                batch.append(waiting.popleft())
        self.running = True
        return batch

    def finished(self) -> None:
        """The batch in flight is done: the next may go."""
        self.running = False

    def drop(self) -> list[StoreCall]:
        """Every call still waiting (the actor stops): its asker is answered otherwise."""
        waiting = [*self._first, *self._waiting]
        self._first.clear()
        self._waiting.clear()
        return waiting

    def __len__(self) -> int:
        return len(self._first) + len(self._waiting)
