"""Handing events to the application: callbacks in one greenlet, and a bounded buffer for
``Client.events()``.

Callbacks run one at a time, in arrival order, in the dispatcher's own greenlet, never in the
greenlet that reads the socket: a callback may call the client (``send`` blocks until its
reply, which that reader must be free to read).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import gevent.queue

from actorim.client._status import StateChange

__all__ = ["MAX_BUFFERED_EVENTS", "Dispatcher", "EventBuffer"]

logger = logging.getLogger("actorim.client")

MAX_BUFFERED_EVENTS = 10_000
"""Events kept for ``Client.events()`` when the application reads them slower than they come
(or not at all): past it the oldest is dropped, with a warning."""

EventCallback = Callable[[dict[str, Any]], object]
StateCallback = Callable[[StateChange], object]

ANY_EVENT = "*"
"""Subscribe to every event type with ``client.on("*", callback)``."""


class EventBuffer:
    """A bounded FIFO of events that greenlets can wait on; :meth:`close` ends the waits once
    it is drained."""

    def __init__(self, capacity: int = MAX_BUFFERED_EVENTS) -> None:
        self._items: deque[dict[str, Any]] = deque()
        self._capacity = capacity
        self._ready = gevent.event.Event()
        self._closed = False
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, event: dict[str, Any]) -> None:
        if self._closed:
            return
        self._items.append(event)
        if len(self._items) > self._capacity:
            self._items.popleft()
            self.dropped += 1
            if self.dropped == 1:
                logger.warning(
                    "more than %d events are waiting to be read with events(); dropping the "
                    "oldest (use callbacks, or create the client with buffer_events=False)",
                    self._capacity,
                )
        self._ready.set()

    def get(self, timeout: float | None) -> dict[str, Any] | None:
        """The oldest event; None after ``timeout`` seconds without one, or once closed and
        drained."""
        while not self._items:
            if self._closed:
                return None
            self._ready.clear()
            if not self._ready.wait(timeout):
                return None
        return self._items.popleft()

    def close(self) -> None:
        self._closed = True
        self._ready.set()


class Dispatcher:
    """Runs the application's callbacks for events and state changes, in order."""

    def __init__(self, buffer: EventBuffer | None) -> None:
        self._buffer = buffer
        self._listeners: dict[str, list[EventCallback]] = {}
        self._state_listeners: list[StateCallback] = []
        self._queue: gevent.queue.Queue[tuple[str, Any]] = gevent.queue.Queue()
        self._greenlet = gevent.spawn(self._run)

    def on(self, event_type: str, callback: EventCallback) -> Callable[[], None]:
        listeners = self._listeners.setdefault(event_type, [])
        listeners.append(callback)
        return lambda: _discard(listeners, callback)

    def on_state(self, callback: StateCallback) -> Callable[[], None]:
        self._state_listeners.append(callback)
        return lambda: _discard(self._state_listeners, callback)

    def event(self, event: dict[str, Any]) -> None:
        """Hand ``event`` to the buffer now and to its callbacks soon."""
        if self._buffer is not None:
            self._buffer.put(event)
        self._queue.put(("event", event))

    def state(self, change: StateChange) -> None:
        self._queue.put(("state", change))

    def close(self) -> None:
        """Run what is queued, then stop; the buffer ends after its last event is read."""
        if self._buffer is not None:
            self._buffer.close()
        self._queue.put(("stop", None))

    def _run(self) -> None:
        while True:
            kind, item = self._queue.get()
            if kind == "stop":
                return
            if kind == "state":
                callbacks: list[Any] = list(self._state_listeners)
            else:
                callbacks = [
                    *self._listeners.get(item.get("t", ""), ()),
                    *self._listeners.get(ANY_EVENT, ()),
                ]
            for callback in callbacks:
                try:
                    callback(item)
                except Exception:
                    logger.exception("a client callback raised on %r", item)


def _discard(items: list[Any], item: Any) -> None:
    if item in items:
        items.remove(item)
