"""Read markers, unread counts and mentions: the values and rules every layer shares, no I/O.

A user's **read marker** in a conversation is the highest ``seq`` they have read there; it only
moves forward, and never beyond the conversation's last seq. Their **unread count** there is the
number of messages after the marker that someone else sent and nobody deleted (changes: edits,
deletes and reactions take seqs too, but never count). Their **mentions count** is how many of
those unread messages mention them.

A message mentions the users its ``send`` listed (``mentions``) and the users its text names as
``@user``. The text syntax: an ``@`` at the start of the text or after a character that cannot
be part of a user id (a space, a comma, a bracket, ...), followed by the longest run of user-id
characters (``[A-Za-z0-9_.:@-]``), less the ``.``, ``:``, ``-`` and ``@`` that end it (the
punctuation of a sentence: "thanks @bob." names ``bob``). So ``alice@example.com`` mentions
nobody, and a user whose id ends in one of those four characters can be mentioned by the list
only. A message mentions at most ``max_mentions`` users: the listed ones first, then those its
text names, in order, the sender never (one's own messages are never unread).

Counts are capped at ``unread_count_max`` (clients show "999+"): counting stops there, so it
never costs more than the cap per conversation.

>>> text_mentions("hi @bob, @carol. mail alice@example.com or @dave:", limit=10)
('bob', 'carol', 'dave')
>>> message_mentions("@ann @bob", listed=("cy",), sender="bob", limit=2)
('cy', 'ann')
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_MAX_MENTIONS",
    "DEFAULT_UNREAD_COUNT_MAX",
    "NO_COUNTS",
    "Counts",
    "body_text",
    "capped",
    "message_mentions",
    "text_mentions",
]

DEFAULT_UNREAD_COUNT_MAX = 999
"""Where counting stops: a count at the cap means "this many or more" (shown as "999+")."""

DEFAULT_MAX_MENTIONS = 20
"""Most users one message may mention: bounds the index a message writes and the event's size."""

# A user id is 1 to 128 of these characters (``actorim.protocol.commands.MAX_NAME_LENGTH``).
_ID_CHARS = "A-Za-z0-9_.:@-"
_MENTION_RE = re.compile(rf"(?<![{_ID_CHARS}])@([{_ID_CHARS}]+)")
_TRAILING = ".:-@"
_MAX_ID_LENGTH = 128


@dataclass(frozen=True, slots=True)
class Counts:
    """One user's place in one conversation: its last ``seq``, their ``marker``, and how many
    messages after it are ``unread`` and how many of those mention them (each at most the
    cap)."""

    seq: int
    marker: int
    unread: int
    mentions: int


NO_COUNTS = Counts(0, 0, 0, 0)
"""A conversation nobody wrote in, or one the user has no marker in and nothing to read."""


def text_mentions(text: str, *, limit: int) -> tuple[str, ...]:
    """The users ``text`` names as ``@user``, each once, in order, at most ``limit``."""
    found: dict[str, None] = {}
    for match in _MENTION_RE.finditer(text):
        user = match.group(1).rstrip(_TRAILING)
        if 0 < len(user) <= _MAX_ID_LENGTH:
            found[user] = None
            if len(found) >= limit:
                break
    return tuple(found)


def body_text(body: Any) -> str | None:
    """The text of a message body where mentions are looked for: the body itself when it is a
    string, or its ``text`` field when it is a map with a string there."""
    if isinstance(body, str):
        return body
    if isinstance(body, dict):
        text = body.get("text")
        if isinstance(text, str):
            return text
    return None


def message_mentions(
    body: Any, *, listed: Iterable[str], sender: str, limit: int
) -> tuple[str, ...]:
    """Who a message mentions: ``listed`` first, then the users its text names, each once,
    never ``sender``, at most ``limit``."""
    found: dict[str, None] = {}
    text = body_text(body)
    named = text_mentions(text, limit=limit + 1) if text is not None else ()
    for user in (*listed, *named):
        if user != sender:
            found[user] = None
            if len(found) >= limit:
                break
    return tuple(found)


def capped(count: int, cap: int) -> int:
    """``count``, or ``cap`` when it is more."""
    return min(count, cap)
