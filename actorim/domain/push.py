"""Offline push as values and decisions, with no I/O: who a stored message may need a push for,
which pending push it joins, and, once that push is due, whether it is still needed and what
it says.

A direct message needs a push for its recipient, a room message for each user it mentions
(never for the sender). Pushes are coalesced per user and *window*: the clock is cut into
windows of ``window_s`` seconds, and every message of one window joins the user's one pending
push of that window (the outbox keeps it under a key made of the user and the window, and
the latest message replaces the one before). So a user flooded with messages gets at most
one push per window.

A pending push is due ``grace_s`` (the presence grace) after its window ends, and is decided
then: it is dropped when the user is online (connected, or within the grace of their last
disconnect) or has read the conversation, and is sent otherwise, with the user's total unread
count (the badge) and how many direct messages and mentions wait unread.

>>> policy = PushPolicy(window_s=10.0, grace_s=5.0)
>>> policy.window_of(1_000_003_500), policy.due_of(1_000_003_500)
(1000000000, 1000015000)
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from actorim.domain.markers import NO_COUNTS, Counts
from actorim.domain.messages import DM_SEPARATOR, StoredMessage, dm_conv, encode_mid, room_conv

__all__ = [
    "DEFAULT_PUSH_PREVIEW",
    "DEFAULT_PUSH_WINDOW_S",
    "PREVIEWS",
    "PUSH_EVENT",
    "Preview",
    "PushPolicy",
    "pending_push",
    "push_event_id",
    "push_payload",
    "push_recipients",
]

PUSH_EVENT = "push.needed"
"""The webhook event type of a push."""

Preview = Literal["none", "sender", "full"]

PREVIEWS: tuple[Preview, ...] = ("none", "sender", "full")
"""What a push shows of its message: ``none`` (neither sender nor body), ``sender`` (who sent
it, not what), ``full`` (sender and body)."""

DEFAULT_PUSH_WINDOW_S = 10.0
"""Messages to one user within this many seconds make one push: a flood costs a push per
window, and a push comes at most a window (plus the grace) after its first message."""

DEFAULT_PUSH_PREVIEW: Preview = "sender"
"""Who wrote, not what: the body stays off the push services unless the operator asks."""


@dataclass(frozen=True, slots=True)
class PushPolicy:
    """The push settings: the coalescing window, the grace (the presence grace: a user who
    comes back within it gets no push), and the preview."""

    window_s: float = DEFAULT_PUSH_WINDOW_S
    grace_s: float = 5.0
    preview: Preview = DEFAULT_PUSH_PREVIEW

    def __post_init__(self) -> None:
        if not self.window_s > 0:
            raise ValueError(f"window_s must be greater than 0, got {self.window_s}")
        if self.preview not in PREVIEWS:
            raise ValueError(f"preview must be one of {', '.join(PREVIEWS)}, got {self.preview}")

    @property
    def window_ms(self) -> int:
        return max(1, int(self.window_s * 1000))

    def window_of(self, ts: int) -> int:
        """The start (ms) of the window a message sent at ``ts`` (ms) falls in."""
        return ts - ts % self.window_ms

    def due_of(self, ts: int) -> int:
        """When (ms) the push of a message sent at ``ts`` is decided: the grace after the end
        of its window, so every message of the window has joined it by then."""
        return self.window_of(ts) + self.window_ms + int(self.grace_s * 1000)


def push_recipients(stored: StoredMessage) -> tuple[str, ...]:
    """The users ``stored`` may need a push for: the recipient of a direct message, the users
    a room message mentions; none for a change, and never the sender.

    >>> dm = StoredMessage("m1", "d:al|bo", 1, 0, "al", "text", b"", None, None, "bo")
    >>> push_recipients(dm)
    ('bo',)
    """
    if stored.target is not None or stored.refused is not None:
        return ()
    if stored.to is not None:
        return (stored.to,) if stored.to != stored.sender else ()
    return tuple(dict.fromkeys(u for u in stored.mentions if u != stored.sender))


def push_event_id(user: str, window: int) -> str:
    """The event id of ``user``'s push for the window starting at ``window`` (ms): the same
    on every node, so the messages of one window join one pending push.

    >>> push_event_id("bo", 10_000) == push_event_id("bo", 10_000) != push_event_id("al", 10_000)
    True
    """
    digest = hashlib.sha256(f"push{DM_SEPARATOR}{user}".encode()).digest()
    return "ev_" + encode_mid(window, int.from_bytes(digest[:5], "big"))


def pending_push(stored: StoredMessage, user: str, body: Any, preview: Preview) -> dict[str, Any]:
    """What the outbox keeps of ``user``'s pending push while ``stored`` is its latest
    message: the user, the conversation (``room``, or ``with`` the other user), and the
    message as ``preview`` shows it (``body``: its decoded body, kept only for ``full``)."""
    conversation = {"room": stored.room} if stored.room is not None else {"with": stored.sender}
    message: dict[str, Any] = {"mid": stored.mid, "seq": stored.seq, "ts": stored.ts}
    if preview != "none":
        message["from"] = stored.sender
    if preview == "full":
        message["kind"] = stored.kind
        message["body"] = body
    return {"user": user, "conversation": conversation, "message": message}


def _conversation_key(pending: Mapping[str, Any]) -> str:
    """The conversation key of a pending push."""
    conversation = pending["conversation"]
    if "room" in conversation:
        return room_conv(conversation["room"])
    return dm_conv(pending["user"], conversation["with"])


def push_payload(
    pending: Mapping[str, Any], counts: Mapping[str, Counts], rooms: Collection[str]
) -> dict[str, Any] | None:
    """The ``push.needed`` payload of a due push, or None when it is no longer needed.

    ``counts`` are the user's counts in each of their conversations (rooms and direct), and
    ``rooms`` the rooms they belong to. Not needed: the user has read the conversation (no
    unread message left in a direct one, no unread mention in a room), or left the room.
    ``badge`` is the total of unread messages, ``count`` how many direct messages and
    mentions wait unread (the ``message`` is the latest of them).

    >>> pending = {"user": "bo", "conversation": {"with": "al"}, "message": {"mid": "m"}}
    >>> counts = {"d:al|bo": Counts(3, 0, 3, 0), "r:lobby": Counts(9, 7, 2, 1)}
    >>> payload = push_payload(pending, counts, ["lobby"])
    >>> payload["badge"], payload["count"]
    (5, 4)
    >>> push_payload(pending, {"d:al|bo": Counts(3, 3, 0, 0)}, [])
    """
    conversation = pending["conversation"]
    here = counts.get(_conversation_key(pending), NO_COUNTS)
    if "room" in conversation:
        if conversation["room"] not in rooms or here.mentions == 0:
            return None
    elif here.unread == 0:
        return None
    room_convs = {room_conv(room) for room in rooms}
    badge = sum(c.unread for c in counts.values())
    count = sum(c.mentions if conv in room_convs else c.unread for conv, c in counts.items())
    return {**pending, "count": max(count, 1), "badge": badge}
