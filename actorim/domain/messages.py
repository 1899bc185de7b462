"""Messages and conversation keys: the values every layer passes around, with no I/O.

A conversation is a room (``r:<room>``) or the direct conversation of two users
(``d:<a>|<b>``, the two sorted so either order gives the same key). A message id (mid) sorts by
time and is unique by its random part.

>>> conv = dm_conv("bob", "alice")
>>> conv, conv == dm_conv("alice", "bob"), room_conv("lobby")
('d:alice|bob', True, 'r:lobby')
>>> mid = encode_mid(1_700_000_000_000, 0)
>>> mid, mid_ms(mid)
('065svpb80000000000', 1700000000000)
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "CHANGE_KINDS",
    "DEFAULT_MAX_REACTIONS",
    "DELETE",
    "DM_PREFIX",
    "DM_SEPARATOR",
    "EDIT",
    "MAX_REACTION_KEY_BYTES",
    "MAX_TS_MS",
    "REACT",
    "REACTION_KINDS",
    "RECEIPT_LEVELS",
    "ROOM_PREFIX",
    "THREAD_USERS_SHOWN",
    "UNREACT",
    "NewMessage",
    "Reaction",
    "Receipt",
    "ReceiptStatus",
    "StoredMessage",
    "ThreadSummary",
    "dm_conv",
    "encode_mid",
    "mid_ms",
    "new_mid",
    "reaction_summary",
    "room_conv",
    "thread_summary",
]

ROOM_PREFIX = "r:"
DM_PREFIX = "d:"
# User ids are ``[A-Za-z0-9_.:@-]``, so "|" can never be part of one and a direct conversation
# key splits back into its two users unambiguously.
DM_SEPARATOR = "|"

ReceiptStatus = Literal["delivered", "read"]

# The kinds of a change: a stored event that names an earlier message (its ``target``) and
# takes the conversation's next seq, like a message. An edit carries the new body; a delete
# carries none and erases the message's body, and the bodies of its earlier edits, everywhere
# in the store. A reaction (``react`` adds the sender's key to the message, ``unreact`` takes it
# away) carries the key as its body, UTF-8; the store keeps each message's keys and who chose
# them, and makes no event for a reaction that changes nothing.
EDIT = "edit"
DELETE = "delete"
REACT = "react"
UNREACT = "unreact"
REACTION_KINDS = (REACT, UNREACT)
CHANGE_KINDS = (EDIT, DELETE, REACT, UNREACT)

DEFAULT_MAX_REACTIONS = 20
"""Distinct reaction keys one message may carry: enough for a palette of emoji, few enough
that a history page stays small (a page holds at most this many keys per message)."""

MAX_REACTION_KEY_BYTES = 32
"""A reaction key's most bytes in UTF-8: an emoji with its modifiers, or a short name."""

THREAD_USERS_SHOWN = 5
"""Authors a thread summary names: enough faces for a "5 people replied" line under the root,
few enough that a history page of roots stays small (the summary also counts them all)."""

# A mid is the message's millisecond timestamp (48 bits, good until the year 10889) followed by
# 40 random bits (a collision needs about a million messages in the same millisecond), written
# as 18 characters of base32hex (RFC 4648, lower case). Fixed width and an alphabet in ASCII
# order make string order equal time order.
_MID_TIME_BITS = 48
_MID_RANDOM_BITS = 40
_MID_BYTES = (_MID_TIME_BITS + _MID_RANDOM_BITS) // 8
_MID_CHARS = 18

MAX_TS_MS = 1 << _MID_TIME_BITS
"""The first millisecond timestamp a mid cannot hold (the year 10889)."""


def room_conv(room: str) -> str:
    """The conversation key of a room."""
    return ROOM_PREFIX + room


def dm_conv(a: str, b: str) -> str:
    """The conversation key of the direct conversation between ``a`` and ``b``, either order."""
    if DM_SEPARATOR in a or DM_SEPARATOR in b:
        raise ValueError(f"user ids cannot contain {DM_SEPARATOR!r}: {a!r}, {b!r}")
    first, second = sorted((a, b))
    return f"{DM_PREFIX}{first}{DM_SEPARATOR}{second}"


def encode_mid(ts_ms: int, entropy: int) -> str:
    """The mid made of ``ts_ms`` and ``entropy``: sorts by time, unique by its random part."""
    if not 0 <= ts_ms < 1 << _MID_TIME_BITS:
        raise ValueError(f"ts_ms out of range for a mid: {ts_ms}")
    value = (ts_ms << _MID_RANDOM_BITS) | (entropy & ((1 << _MID_RANDOM_BITS) - 1))
    return base64.b32hexencode(value.to_bytes(_MID_BYTES, "big"))[:_MID_CHARS].decode().lower()


def new_mid(ts_ms: int) -> str:
    """A fresh mid for a message sent at ``ts_ms``."""
    return encode_mid(ts_ms, secrets.randbits(_MID_RANDOM_BITS))


def mid_ms(mid: str) -> int:
    """The millisecond timestamp a mid was made from."""
    padded = mid.upper() + "=" * (-len(mid) % 8)
    return int.from_bytes(base64.b32hexdecode(padded), "big") >> _MID_RANDOM_BITS


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to store. ``room`` is set for room messages, ``to`` for direct ones.

    ``ts`` is milliseconds since the epoch, from the server's clock. ``cid`` is the client's
    id for this send; a resend with the same ``cid`` is recognised and not stored twice.
    """

    conv: str
    sender: str
    kind: str
    body: bytes
    ts: int
    cid: str | None = None
    room: str | None = None
    to: str | None = None
    origin: str | None = None
    """Which connection sent it (``node/conn``): published with the message by backends that
    publish (Redis), so the sending connection is left out of the fan-out. Never stored."""
    target: str | None = None
    """Set for a change (``kind`` in CHANGE_KINDS): the mid of the message it edits or
    deletes, in the same conversation. The store refuses the change when that message is
    unknown, not retained, itself a change, or deleted (``StoredMessage.refused``)."""
    max_reactions: int = DEFAULT_MAX_REACTIONS
    """For a ``react``: the distinct keys its message may carry; a new key beyond them is
    refused (``"too_many_reactions"``), checked atomically with the write. Never stored."""
    reply_to: str | None = None
    """For a reply: the mid of the message it answers, in the same conversation. The store
    files the reply in that message's thread (the thread of its root, when it answers a reply)
    and refuses it when that message is unknown, not retained, a change, or deleted."""
    mentions: tuple[str, ...] = ()
    """For a message: the users it mentions (``actorim.domain.markers.message_mentions``),
    never its sender; each counts it among their mentions while it is unread for them."""


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message as stored. ``duplicate`` is True when an append recognised a resend.

    A message is kept as it is now: ``edited`` is the time of its latest edit, and a deleted
    one is a tombstone (``deleted``, empty ``body``). A change (an edit or delete event) has
    ``target`` set; an edit event whose message was deleted later has lost its body too and is
    ``deleted`` as well. ``refused`` is set, instead of a ``seq``, on the answer to a change the
    store did not make: ``"unknown"`` (no such message in the conversation), ``"deleted"`` or
    ``"too_many_reactions"``. A reaction that changes nothing (the key was already there, or
    was not) is answered ``duplicate`` with the conversation's last ``seq`` and no mid of its
    own: no event was stored. ``reactions`` is filled by ``history`` for its reader.

    A reply has ``reply_to`` (the message it answers) and ``thread`` (the mid of its thread's
    root: threads are one level deep). ``thread_summary`` is filled by ``history``, ``get`` and
    ``thread`` on a root with replies.
    """

    mid: str
    conv: str
    seq: int
    ts: int
    sender: str
    kind: str
    body: bytes
    cid: str | None
    room: str | None
    to: str | None
    duplicate: bool = False
    target: str | None = None
    edited: int | None = None
    deleted: bool = False
    refused: str | None = None
    reactions: tuple[Reaction, ...] = ()
    reply_to: str | None = None
    thread: str | None = None
    thread_summary: ThreadSummary | None = None
    mentions: tuple[str, ...] = ()
    """The users the message mentions; a delete erases them with the body."""


@dataclass(frozen=True, slots=True)
class Reaction:
    """One key on a message as ``history`` shows it to its reader: how many chose it, and
    whether the reader did (``me``)."""

    key: str
    count: int
    me: bool


def reaction_summary(
    keys: Iterable[tuple[str, Collection[str]]], reader: str | None
) -> tuple[Reaction, ...]:
    """The reactions of a message whose keys (in the order they were first chosen) are held
    by the given users, as ``reader`` sees them; keys nobody holds are left out.

    >>> reaction_summary([("+1", {"ann", "bob"}), ("x", ())], "bob")
    (Reaction(key='+1', count=2, me=True),)
    """
    return tuple(
        Reaction(key, len(users), reader is not None and reader in users)
        for key, users in keys
        if users
    )


@dataclass(frozen=True, slots=True)
class ThreadSummary:
    """What a root shows of its thread: ``count`` replies (deleted ones and those retention
    removed are not counted), ``last_ts`` the time of the latest of them, and its authors:
    ``users``, the first THREAD_USERS_SHOWN in the order they joined the thread, of
    ``participants`` in all. An author whose last counted reply goes leaves the list, and joins
    it again at its end with a new reply."""

    count: int
    last_ts: int
    users: tuple[str, ...]
    participants: int


def thread_summary(count: int, last_ts: int | None, users: Iterable[str]) -> ThreadSummary | None:
    """The summary of a thread with ``count`` replies whose authors are ``users`` in the order
    they joined it; None for a thread without replies (a message with none carries no summary).

    >>> thread_summary(3, 1_500, ["ann", "bob"])
    ThreadSummary(count=3, last_ts=1500, users=('ann', 'bob'), participants=2)
    >>> thread_summary(0, None, []) is None
    True
    """
    if count < 1 or last_ts is None:
        return None
    authors = list(users)
    return ThreadSummary(count, last_ts, tuple(authors[:THREAD_USERS_SHOWN]), len(authors))


@dataclass(frozen=True, slots=True)
class Receipt:
    """``by`` (the recipient) has reached ``status`` for ``mid``; tell ``sender`` once."""

    mid: str
    sender: str
    by: str
    status: ReceiptStatus


# A receipt's level: read implies delivered, so levels only ever go up.
RECEIPT_LEVELS: dict[str, int] = {"delivered": 1, "read": 2}
