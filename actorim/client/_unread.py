"""``UnreadTracker``: each conversation's read marker, unread and mention counts, kept live on the
client from the events it gets anyway, as docs/protocol.md says ("Keeping counts live").

The server sends no count per message. The tracker starts from what the server counted (the
answer of ``Client.unread()``, the reply of ``Client.read()``, a ``marker`` event) and then
adds a ``msg`` from someone else above the marker, and takes away a ``delete`` of a message it
counted itself. Events carry no count of their own, so a count the tracker cannot know (a
delete of a message counted by the server before the tracker saw it) stays until the next
``unread()``: ask again after a reconnect.

>>> tracker = UnreadTracker("ann")
>>> tracker.update([{"room": "lobby", "seq": 4, "marker": 2, "unread": 2, "mentions": 0}])
>>> tracker.handle({"t": "msg", "mid": "m5", "seq": 5, "room": "lobby", "from": "bob",
...                 "mentions": ["ann"]})
>>> tracker.counts(room="lobby")
Counts(marker=2, unread=3, mentions=1)
>>> tracker.handle({"t": "marker", "room": "lobby", "seq": 5, "unread": 0, "mentions": 0})
>>> tracker.counts(room="lobby")
Counts(marker=5, unread=0, mentions=0)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Counts", "UnreadTracker"]

# Counted mids kept per conversation, to take a delete away once: the server caps its counts
# at 999 by default, and a client never needs to remember more messages than it shows.
_MAX_COUNTED = 1000


@dataclass(frozen=True, slots=True)
class Counts:
    """One conversation as the tracker sees it: the user's read ``marker`` and how many
    messages after it are ``unread`` and how many of those ``mentions`` the user."""

    marker: int = 0
    unread: int = 0
    mentions: int = 0


@dataclass(slots=True)
class _Conversation:
    marker: int = 0
    unread: int = 0
    mentions: int = 0
    counted: dict[str, tuple[int, bool]] = field(default_factory=dict)
    """Each message the tracker counted itself: its seq and whether it mentions the user."""


class UnreadTracker:
    """Counts per conversation (``room=``, or ``with_user=`` the other user of a direct one)
    for ``user``; see the module docstring. Feed it the client's events
    (``client.on("*", tracker.handle)``) and what ``unread()`` and ``read()`` answer
    (``tracker.update(...)``)."""

    def __init__(self, user: str) -> None:
        self.user = user
        self._convs: dict[tuple[str, str], _Conversation] = {}

    def counts(self, *, room: str | None = None, with_user: str | None = None) -> Counts:
        """The counts of ``room`` or of the direct conversation ``with_user``."""
        key = ("room", room) if room is not None else ("with", with_user or "")
        conv = self._convs.get(key)
        return Counts() if conv is None else Counts(conv.marker, conv.unread, conv.mentions)

    def update(self, entries: Iterable[dict[str, Any]]) -> None:
        """Take the server's counts: ``unread()``'s conversations, or ``read()``'s reply."""
        for entry in entries:
            self._counted(entry, entry.get("marker", 0))

    def handle(self, event: dict[str, Any]) -> None:
        """Follow one event: ``msg``, ``delete`` and ``marker`` change counts, others not."""
        kind = event.get("t")
        if kind == "marker":
            self._counted(event, event.get("seq", 0))
        elif kind == "msg":
            self._message(event)
        elif kind == "delete":
            self._deleted(event)

    def _key(self, event: dict[str, Any]) -> tuple[str, str] | None:
        if event.get("room") is not None:
            return ("room", event["room"])
        if event.get("with") is not None:
            return ("with", event["with"])
        sender, to = event.get("from"), event.get("to")
        if sender is None or to is None:
            return None
        return ("with", to if sender == self.user else sender)

    def _counted(self, entry: dict[str, Any], marker: int) -> None:
        key = self._key(entry)
        if key is None:
            return
        conv = self._convs.setdefault(key, _Conversation())
        if marker < conv.marker:
            return  # an older marker than one already heard of: markers only grow
        conv.marker = marker
        conv.unread = entry.get("unread", 0)
        conv.mentions = entry.get("mentions", 0)
        conv.counted = {mid: seen for mid, seen in conv.counted.items() if seen[0] > marker}

    def _message(self, event: dict[str, Any]) -> None:
        key = self._key(event)
        if key is None or event.get("from") == self.user or event.get("deleted"):
            return
        conv = self._convs.setdefault(key, _Conversation())
        mid, seq = event.get("mid"), event.get("seq", 0)
        if not isinstance(mid, str) or seq <= conv.marker or mid in conv.counted:
            return
        mentioned = self.user in (event.get("mentions") or ())
        conv.unread += 1
        conv.mentions += mentioned
        conv.counted[mid] = (seq, mentioned)
        if len(conv.counted) > _MAX_COUNTED:
            del conv.counted[next(iter(conv.counted))]

    def _deleted(self, event: dict[str, Any]) -> None:
        key = self._key(event)
        conv = None if key is None else self._convs.get(key)
        if conv is None:
            return
        seen = conv.counted.pop(event.get("mid", ""), None)
        if seen is not None:
            conv.unread = max(0, conv.unread - 1)
            conv.mentions = max(0, conv.mentions - seen[1])
