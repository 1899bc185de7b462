"""Store calls that wait on the network, run side by side, each asker's in the order asked.

The Redis store's calls wait on sockets, not on the CPU. Run one after the other in the store
actor's turn, every call waited for the round trips of every call before it: in a reconnect
storm each client's ``connect`` (its inbox, its rooms' replay, its offline backlog, some ten
round trips, each a hub cycle long on a busy node) queued behind every other client's, and a
node set up about 50 clients a second with its core two-thirds idle. `Lanes` runs up to
``limit`` calls at once, each in a greenlet of its own (and so on a connection of its own from
the client's pool), and keeps the order of one asker's calls: calls given the same ``lane`` run
one after the other in the order given, so a connection's marker moves, a room's replays and a
webhook dispatcher's reads are answered as if the store were serial. Calls of different lanes
may overtake one another, as they do when two nodes of a cluster call the same Redis at once,
which every script and read of the Redis store already allows for. A lane of ``None`` is a call
whose asker waits for it (nothing of the same asker can come behind it): it is ordered with
nothing.

Ready calls past ``limit`` wait in the order they became ready, so a lane's next call queues
behind those of other lanes that were ready first, and a flood from one asker cannot starve the
others.

>>> ran = []
>>> lanes = Lanes(2, ran.append, spawn=lambda run, item: run(item))
>>> lanes.submit("a", 1); lanes.submit(None, 2)
>>> ran
[1, 2]
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

import gevent

__all__ = ["Lanes"]

T = TypeVar("T")


class Lanes(Generic[T]):
    """Runs ``run(item)`` for each item submitted, at most ``limit`` at once, in order per lane.

    ``spawn(body, item)`` starts ``body(item)`` (a greenlet by default); ``body`` runs ``run``
    and then lets the next call start. ``run`` answers its own caller and must not raise.
    """

    def __init__(
        self,
        limit: int,
        run: Callable[[T], None],
        *,
        spawn: Callable[[Callable[[T], None], T], Any] | None = None,
    ) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self.limit = limit
        self._run = run
        self._spawn = spawn or _spawn_greenlet
        self.running = 0
        # Lanes with a call running or ready: what else of theirs waits, in order.
        self._held: dict[Hashable, deque[T]] = {}
        # Calls ready to run (their lane's turn has come) beyond the limit, oldest first.
        self._ready: deque[tuple[Hashable | None, T]] = deque()
        self._greenlets: set[Any] = set()

    def submit(self, lane: Hashable | None, item: T) -> None:
        """Run ``item`` when its lane's earlier calls are done and a slot is free."""
        if lane is not None:
            held = self._held.get(lane)
            if held is not None:
                held.append(item)
                return
            self._held[lane] = deque()
        self._ready.append((lane, item))
        self._fill()

    @property
    def waiting(self) -> int:
        """Calls submitted and not started."""
        return len(self._ready) + sum(len(held) for held in self._held.values())

    def drop(self) -> list[T]:
        """Forget every call not started (the store stops): the caller answers them."""
        dropped = [item for _, item in self._ready]
        for held in self._held.values():
            dropped.extend(held)
        self._ready.clear()
        self._held.clear()
        return dropped

    def join(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the calls running to finish."""
        gevent.joinall(list(self._greenlets), timeout=timeout)

    def _fill(self) -> None:
        while self.running < self.limit and self._ready:
            lane, item = self._ready.popleft()
            self.running += 1
            greenlet = self._spawn(self._body(lane), item)
            if greenlet is not None:
                self._greenlets.add(greenlet)
                greenlet.link(self._greenlets.discard)

    def _body(self, lane: Hashable | None) -> Callable[[T], None]:
        def body(item: T) -> None:
            try:
                self._run(item)
            finally:
                self._finished(lane)

        return body

    def _finished(self, lane: Hashable | None) -> None:
        self.running -= 1
        if lane is not None:
            held = self._held.get(lane)
            if held:
                self._ready.append((lane, held.popleft()))
            elif held is not None:
                del self._held[lane]
        self._fill()


def _spawn_greenlet(body: Callable[[Any], None], item: Any) -> Any:
    return gevent.spawn(body, item)
