"""Paging a user's offline direct messages out at the pace the client takes them.

At ``connect`` a user may have thousands of direct messages waiting. Queued all at once they
overflow the connection's outbox: the client is closed with 1013 having received nothing, and
the same happens at every reconnect, so it never gets to acknowledge any. So the backlog goes
out a page at a time, and the next page is read from the store only once the client has taken
the previous one (the outbox was written out to the socket): the outbox never holds more than a
page of backlog, however long the backlog is.

Direct messages that arrive live meanwhile are held back and follow the backlog, so a user
reads their conversations in order. Each goes out once: a live message that a page delivered
already is dropped, and one the pages did not reach comes out of ``release`` at the end.

``BacklogPager`` holds the decisions and does no I/O: it is fed the pages the store returned,
the live messages and the drains, and says what to send and when to read on. The connection's
shell (``actorim.runtime.offline``) reads the store and writes the outbox.

>>> pager = BacklogPager(page_messages=2, page_bytes=100, max_held=10, max_held_bytes=1000)
>>> pager.state, pager.next_read()  # pending_for(after=None, limit=2)
(<PagerState.READING: 'reading'>, (None, 2))
>>> pager.hold("m9", "live m9", size=10)  # arrives live while the first page is read
True
>>> pager.page_read([("m1", 10), ("m2", 10)])
['m1', 'm2']
>>> pager.state, pager.cursor
(<PagerState.SENDING: 'sending'>, 'm2')
>>> pager.drained()  # the client took the page: read the next one
True
>>> pager.next_read()
('m2', 2)
>>> pager.page_read([("m9", 10)])  # the last page: shorter than asked for
['m9']
>>> pager.state, pager.release()  # m9 went out from the page, not again from the held ones
(<PagerState.DONE: 'done'>, [])
>>> pager.hold("m10", "live m10", size=10)  # paging is over: live messages go straight out
False

In a cluster a live copy travels apart from the store (Redis pub/sub to this node's listener),
so the last page can deliver a message whose live copy is still on its way. ``late_copies``
says which mids sent by the pages may still arrive live (those sent since the connection
began, by their time); after the paging, such a copy is dropped once, when it arrives:

>>> pager = BacklogPager(page_messages=2, page_bytes=100, max_held=10, max_held_bytes=1000,
...                      late_copies=lambda mid: mid >= "m5")
>>> pager.page_read([("m1", 10), ("m6", 10)][:1])  # a short page: the backlog is all out
['m1']
>>> pager.release(), pager.awaiting_copies
([], False)
>>> pager = BacklogPager(page_messages=2, page_bytes=100, max_held=10, max_held_bytes=1000,
...                      late_copies=lambda mid: mid >= "m5")
>>> pager.page_read([("m6", 10)])  # m6 was sent after the connection began
['m6']
>>> pager.release(), pager.awaiting_copies
([], True)
>>> pager.hold("m6", "live m6", size=10), pager.awaiting_copies  # its copy: dropped, once
(True, False)
>>> pager.hold("m6", "live m6", size=10)
False
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import Enum
from typing import Generic, TypeVar

__all__ = ["BacklogPager", "PagerState"]

T = TypeVar("T")


class PagerState(Enum):
    """Where the paging is: reading a page, waiting for the client to take one, or over."""

    READING = "reading"
    SENDING = "sending"
    DONE = "done"


class BacklogPager(Generic[T]):
    """Decides the pages of one connection's offline backlog; see the module docstring.

    ``page_messages`` and ``page_bytes`` bound one page (a page holds at least one message,
    however large). A page cut short by its bytes makes the next read ask for as many messages
    as fitted, so large messages are not read from the store again and again only to be left
    for the next page; pages that fit let the reads grow back to ``page_messages``.

    ``max_held`` and ``max_held_bytes`` bound the live direct messages held back behind the
    backlog; past them ``overflowed`` turns True and the connection must be closed as a slow
    consumer, exactly as if those messages had overflowed its outbox.

    ``late_copies`` tells, by its mid, whether a message the pages sent may still arrive live
    (it was sent after the connection began); the newest ``max_held`` of those are remembered
    after the paging so that their live copies are dropped instead of sent twice. Mids sort by
    time, so "newest" is the largest mids.
    """

    __slots__ = (
        "_asked",
        "_held",
        "_held_bytes",
        "_late",
        "_late_copies",
        "_limit",
        "_sent",
        "cursor",
        "max_held",
        "max_held_bytes",
        "overflowed",
        "page_bytes",
        "page_messages",
        "state",
    )

    def __init__(
        self,
        *,
        page_messages: int,
        page_bytes: int,
        max_held: int,
        max_held_bytes: int,
        late_copies: Callable[[str], bool] | None = None,
    ) -> None:
        if page_messages < 1 or page_bytes < 1:
            raise ValueError(f"a page needs room: got {page_messages} messages, {page_bytes} B")
        self.page_messages = page_messages
        self.page_bytes = page_bytes
        self.max_held = max_held
        self.max_held_bytes = max_held_bytes
        self.state = PagerState.READING
        self.cursor: str | None = None
        """The mid of the last message sent: where the next page starts (``pending_for``'s
        ``after``)."""
        self.overflowed = False
        # Every mid a page sent: a live copy of one of them must not go out again. A few dozen
        # bytes per message of the backlog, for as long as the paging lasts.
        self._sent: set[str] = set()
        self._held: dict[str, tuple[T, int]] = {}
        self._held_bytes = 0
        self._limit = page_messages
        self._asked = page_messages
        self._late_copies = late_copies
        # After the paging: mids the pages sent whose live copies may still arrive.
        self._late: set[str] = set()

    def next_read(self) -> tuple[str | None, int]:
        """What to read next: ``pending_for``'s ``after`` and ``limit``."""
        self._asked = self._limit
        return self.cursor, self._limit

    def page_read(self, page: Sequence[tuple[str, int]]) -> list[str]:
        """The store returned ``page`` ((mid, size in bytes), oldest first) for the last
        ``next_read``: the mids to send now, in order.

        Afterwards the state is SENDING (wait for ``drained``) or DONE (the page was the last:
        send what ``release`` returns after it).
        """
        if self.state is not PagerState.READING:
            raise RuntimeError(f"a page arrived while {self.state.value}")
        taking: list[str] = []
        total = 0
        taken = 0
        for mid, size in page:
            if taken and total + size > self.page_bytes:
                break
            taken += 1
            total += size
            if mid in self._sent:
                continue  # a page after a pruned cursor may repeat its millisecond
            taking.append(mid)
            self._sent.add(mid)
            held = self._held.pop(mid, None)  # the page delivers it: its live copy is dropped
            if held is not None:
                self._held_bytes -= held[1]
        if taken:
            self.cursor = page[taken - 1][0]
        if taken < len(page):
            self._limit = taken
        else:
            self._limit = min(self.page_messages, 2 * self._limit)
        last = taken == len(page) and len(page) < self._asked
        self.state = PagerState.DONE if last else PagerState.SENDING
        return taking

    def drained(self) -> bool:
        """The client took everything queued for it: True when the next page is to be read."""
        if self.state is not PagerState.SENDING:
            return False
        self.state = PagerState.READING
        return True

    def failed(self) -> None:
        """A page could not be read: stop paging (the rest stays pending for the next connect);
        what was held goes out through ``release``."""
        self.state = PagerState.DONE

    def hold(self, mid: str, item: T, *, size: int) -> bool:
        """A live direct message ``mid`` for this connection: True when the pager took it (held
        back, or dropped as a copy of one sent already), False when it goes out now."""
        if self.state is PagerState.DONE:
            if mid in self._late:
                self._late.discard(mid)
                return True
            return False
        if mid in self._sent or mid in self._held:
            return True
        if len(self._held) >= self.max_held or self._held_bytes + size > self.max_held_bytes:
            self.overflowed = True
            return True
        self._held[mid] = (item, size)
        self._held_bytes += size
        return True

    def release(self) -> list[T]:
        """Once DONE: the held live messages no page sent, in the order they arrived."""
        if self.state is not PagerState.DONE:
            raise RuntimeError(f"release while {self.state.value}")
        items = [item for item, _ in self._held.values()]
        self._held.clear()
        self._held_bytes = 0
        late_copies = self._late_copies
        if late_copies is not None:
            self._late = set(sorted(m for m in self._sent if late_copies(m))[-self.max_held :])
        self._sent.clear()
        return items

    @property
    def awaiting_copies(self) -> bool:
        """Whether, after the paging, live copies of messages the pages sent may still come."""
        return bool(self._late)
