"""Lasting room membership, room metadata and a user's conversations: values and pure rules.

A user *is a member* of a room from ``join`` until ``leave``, whatever their connections do;
the store keeps who belongs where, each room's title, topic and ``public`` flag, and which
users each user has direct conversations with. This module holds the values the stores hand
back and the decisions that need no I/O: the bounds of a title and a topic, the order of a
user's conversations (latest activity first) and the cursors that page through them and
through member lists and the room directory.

>>> older = Conversation("r:a", room="a", seq=3, activity=10)
>>> newer = Conversation("d:al|bo", with_="bo", seq=1, activity=20)
>>> [c.conv for c in ordered([older, newer])]
['d:al|bo', 'r:a']
>>> page, more = conversations_page(ordered([older, newer]), before=None, limit=1)
>>> [c.conv for c in page], more, conversation_cursor(page[-1])
(['d:al|bo'], True, '20:d:al|bo')
>>> [c.conv for c in conversations_page(ordered([older, newer]), before="20:d:al|bo",
...                                     limit=5)[0]]
['r:a']
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from actorim.domain.messages import StoredMessage

__all__ = [
    "MAX_QUERY_LENGTH",
    "MAX_TITLE_LENGTH",
    "MAX_TOPIC_LENGTH",
    "Conversation",
    "JoinOutcome",
    "RoomInfo",
    "conversation_cursor",
    "conversations_page",
    "matches",
    "ordered",
]

# A title is a line in a room list; a topic a sentence or two under it. Counted in characters.
MAX_TITLE_LENGTH = 100
MAX_TOPIC_LENGTH = 500
# A directory search is a word or two typed into a box.
MAX_QUERY_LENGTH = 100

JoinOutcome = Literal["joined", "member", "full"]
"""What a store's ``join_room`` did: made the user a member, found them one already, or refused
because they belong to ``max_rooms`` rooms."""


@dataclass(frozen=True, slots=True)
class RoomInfo:
    """A room's metadata: its title and topic ("" when never set), whether the directory lists
    it, and how many lasting members it has."""

    room: str
    title: str = ""
    topic: str = ""
    public: bool = True
    members: int = 0


@dataclass(frozen=True, slots=True)
class Conversation:
    """One entry of a user's inbox: a room they belong to (``room``) or a user they have a
    direct conversation with (``with_``), its latest ``seq``, its latest message (``last``;
    None when none is retained) and when it was last active (``activity``, ms: the latest
    message's time, 0 when none is retained). Room entries carry the room's title and topic.

    The reader's marker and counts are not part of it: the inbox reply adds them beside ``seq``
    and ``last`` (``protocol.events.conversation_entry``), so the order and the paging below do
    not depend on them.
    """

    conv: str
    room: str | None = None
    with_: str | None = None
    seq: int = 0
    last: StoredMessage | None = None
    activity: int = 0
    title: str = ""
    topic: str = ""


def _order_key(conversation: Conversation) -> tuple[int, str]:
    return (-conversation.activity, conversation.conv)


def ordered(conversations: Iterable[Conversation]) -> list[Conversation]:
    """Latest activity first; equal activity (rooms with no message) in key order, so paging
    is stable."""
    return sorted(conversations, key=_order_key)


def conversation_cursor(conversation: Conversation) -> str:
    """The cursor that pages on after ``conversation``: ``<activity>:<conv>``."""
    return f"{conversation.activity}:{conversation.conv}"


def _parse_cursor(cursor: str) -> tuple[int, str] | None:
    activity, sep, conv = cursor.partition(":")
    if not sep or not activity.isdigit():
        return None
    return (-int(activity), conv)


def conversations_page(
    conversations: Sequence[Conversation], *, before: str | None, limit: int
) -> tuple[list[Conversation], bool]:
    """The ``limit`` conversations after the cursor ``before`` (of an ``ordered`` list), and
    whether more follow. A cursor that does not parse starts from the top; one whose
    conversation moved (new activity) still pages on from where it was."""
    start = 0
    key = None if before is None else _parse_cursor(before)
    if key is not None:
        while start < len(conversations) and _order_key(conversations[start]) <= key:
            start += 1
    page = list(conversations[start : start + limit])
    return page, start + limit < len(conversations)


def matches(info: RoomInfo, query: str | None) -> bool:
    """Whether a directory search for ``query`` finds ``info``: a case-insensitive substring of
    its name or title (no query: every room)."""
    if not query:
        return True
    needle = query.casefold()
    return needle in info.room.casefold() or needle in info.title.casefold()
