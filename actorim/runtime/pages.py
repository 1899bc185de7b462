"""History pages: built off the hub, cut to a byte budget, one at a time per connection.

A ``history`` reply can carry a hundred stored bodies of up to a frame each. Decoding those
bodies and encoding the reply is the expensive part, so :func:`build_page` does all of it in one
call meant for a worker thread, and hands back the finished WebSocket frame: the hub only
queues bytes. Each message is decoded and encoded by calls of its own and the reply is spliced
together from those bytes, never encoded whole: a C call holds the GIL until it returns, so
small calls are what let the hub's thread take turns with the worker.

The page is cut to ``max_bytes`` on the side away from the cursor (the newest
messages are kept when paging back, the oldest when paging forward), and ``more`` is then true,
so the client pages on from where the page ends and never gets a reply its outbox cannot hold.

:class:`PageTurns` lets one connection have one page in the making at a time; the others wait
in order. Together with the rate limiter's charge for the bytes a page returned, a client that
pulls large pages slows itself down instead of everyone else.

>>> from actorim.protocol.codec import Encoding
>>> from actorim.domain.messages import StoredMessage
>>> stored = [
...     StoredMessage(f"m{n}", "r:r", n, 1000, "al", "text", b"\\xa2hi", None, "r", None)
...     for n in (1, 2, 3)
... ]
>>> page = build_page(7, stored, False, encoding=Encoding.JSON, max_bytes=250, newest=True)
>>> page.count, page.more
(2, True)
>>> b'"seq":2' in page.frame and b'"seq":3' in page.frame and b'"seq":1' not in page.frame
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgpack

from actorim.domain.messages import StoredMessage
from actorim.protocol.codec import Encoding, encode
from actorim.protocol.commands import reply_ok
from actorim.protocol.events import message_event
from actorim.protocol.frames import encode_frame

__all__ = ["Page", "PageTurns", "build_page"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page:
    """A finished ``history`` or ``thread`` reply: the complete frame, and what it holds
    (``root``: the thread's root, for a ``thread`` reply)."""

    frame: bytes
    count: int
    more: bool
    root: StoredMessage | None = None


def build_page(
    command_id: int,
    messages: Sequence[StoredMessage],
    more: bool,
    *,
    encoding: Encoding,
    max_bytes: int,
    newest: bool,
    root: StoredMessage | None = None,
) -> Page:
    """The reply to ``history`` command ``command_id``, framed for a client of ``encoding``;
    with ``root``, the reply to a ``thread`` command, whose ``root`` field is that message.

    ``messages`` is the store's page in ascending ``seq`` and ``more`` its flag. Messages are
    kept while their encoded size (and the root's) adds up to at most ``max_bytes``, counting
    from the newest when ``newest`` (paging back: no cursor, or ``before``) or else from the
    oldest; at least one is always kept, so paging always moves on. Dropping any sets ``more``.
    """
    order = reversed(messages) if newest else messages
    parts: list[bytes] = []
    data: dict[str, Any] = {"messages": [], "more": more}
    size = 0
    if root is not None:
        data["root"] = message_event(root)
        size = len(encode(data["root"], encoding))
    for message in order:
        part = encode(message_event(message), encoding)
        size += len(part)
        if parts and size > max_bytes:
            more = True
            break
        parts.append(part)
    if newest:
        parts.reverse()
    data["more"] = more
    envelope = encode(reply_ok(command_id, data), encoding)
    payload = _splice(envelope, parts, encoding)
    return Page(encode_frame(payload, binary=encoding.binary), len(parts), more, root)


def _splice(envelope: bytes, parts: list[bytes], encoding: Encoding) -> bytes:
    """``envelope`` (a reply whose ``messages`` is empty) with the encoded messages put in.

    ``messages`` is the first field of the reply's data, ahead of the ``root`` message whose
    body may hold anything: its empty list is the first one in the envelope."""
    empty = encode({"messages": []}, encoding)[1:]  # the key and the empty list, no map head
    if encoding is Encoding.MSGPACK:
        filled = empty[:-1] + msgpack.Packer().pack_array_header(len(parts)) + b"".join(parts)
    else:
        empty = empty[:-1]  # the closing brace
        filled = empty[:-1] + b",".join(parts) + b"]"
    assert empty in envelope, envelope
    return envelope.replace(empty, filled, 1)


class PageTurns(Generic[T]):
    """Whose turn it is to have a page built: one request per connection at a time, in order.

    >>> turns = PageTurns[str]()
    >>> turns.arrive("a"), turns.arrive("b"), turns.arrive("c")
    (True, False, False)
    >>> turns.finish(), turns.finish(), turns.finish()
    ('b', 'c', None)
    >>> turns.arrive("d")
    True
    """

    __slots__ = ("_busy", "_waiting")

    def __init__(self) -> None:
        self._busy = False
        # A list, not a deque: every connection has one, nearly always empty, and a deque's
        # first block alone is 600 bytes. The queue is bounded by the connection's mailbox.
        self._waiting: list[T] = []

    def arrive(self, request: T) -> bool:
        """True: ``request`` goes now. False: it waits for the ones before it."""
        if self._busy:
            self._waiting.append(request)
            return False
        self._busy = True
        return True

    def finish(self) -> T | None:
        """The current request is done; the next one to go now, if any waits."""
        if self._waiting:
            return self._waiting.pop(0)
        self._busy = False
        return None

    def __len__(self) -> int:
        """Requests waiting (not counting the one in the making)."""
        return len(self._waiting)
