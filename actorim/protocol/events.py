"""Server events built from stored messages: one builder, so live, replayed and offline
deliveries of a message are the same map.

A stored message is a ``msg`` event, as it is now (``edited``, or a tombstone: ``deleted`` and
no body). A stored change is an ``edit`` or ``delete`` event naming its message by ``mid``,
with its own ``seq``, and the same conversation fields as the ``msg`` event (``room``, or
``to`` and ``from``), so that a client files all three the same way. A stored reaction is a
``reaction`` event the same way (``key``, ``user``, ``on``); a ``msg`` event read by ``history``
carries the message's ``reactions`` as its reader sees them. A reply's ``msg`` names the message
it answers (``reply_to``) and its thread's root (``thread``); a root read by ``history`` or
``thread`` carries its thread's summary as ``thread`` instead (a message is one or the other:
threads are one level deep). A message that mentions users carries ``mentions``: clients count
it among the mentions of those users while it is unread.
"""

from __future__ import annotations

import time
from typing import Any

import msgpack

from actorim.domain.markers import NO_COUNTS, Counts
from actorim.domain.messages import (
    EDIT,
    REACT,
    REACTION_KINDS,
    NewMessage,
    StoredMessage,
    dm_conv,
    room_conv,
)
from actorim.domain.roomlog import Gap
from actorim.domain.rooms import Conversation, RoomInfo
from actorim.protocol.wire import WireFrame

__all__ = [
    "change_event",
    "conversation_entry",
    "encode_body",
    "gap_frame",
    "message_event",
    "message_frame",
    "published_message",
    "reaction_event",
    "room_entry",
    "room_frame",
    "self_member_frame",
]


def encode_body(body: Any) -> bytes:
    """The stored form of a message body: MessagePack, whatever encoding the sender spoke."""
    packed: bytes = msgpack.packb(body, use_bin_type=True)  # msgpack ships no type hints
    return packed


def published_message(
    body: Any,
    *,
    room: str | None,
    to: str | None,
    sender: str,
    kind: str = "text",
    cid: str | None = None,
) -> NewMessage:
    """A message sent from Python rather than by a connection (``Node.publish``, the
    ``Publisher``): exactly one of ``room`` and ``to``, stamped now."""
    if (room is None) == (to is None):
        msg = "publish needs exactly one of room= and to="
        raise ValueError(msg)
    conv = room_conv(room) if room is not None else dm_conv(sender, to)  # type: ignore[arg-type]
    return NewMessage(
        conv=conv,
        sender=sender,
        kind=kind,
        body=encode_body(body),
        ts=int(time.time() * 1000),
        cid=cid,
        room=room,
        to=to,
    )


def message_event(
    stored: StoredMessage, body: Any = None, *, decoded: bool = False
) -> dict[str, Any]:
    """The event of a stored message (``msg``) or change (``edit``, ``delete``); pass the body
    when it is at hand (live sends and edits)."""
    if stored.target is not None:
        return change_event(stored, body, decoded=decoded)
    event: dict[str, Any] = {"t": "msg", "mid": stored.mid, "seq": stored.seq}
    if stored.room is not None:
        event["room"] = stored.room
    else:
        event["to"] = stored.to
    event["from"] = stored.sender
    event["kind"] = stored.kind
    if stored.deleted:
        event["deleted"] = True
    else:
        event["body"] = body if decoded else _decode(stored.body)
    event["ts"] = stored.ts
    if stored.edited is not None:
        event["edited"] = stored.edited
    if stored.cid is not None:
        event["cid"] = stored.cid
    if stored.thread is not None:
        event["reply_to"] = stored.reply_to
        event["thread"] = stored.thread
    elif stored.thread_summary is not None:
        summary = stored.thread_summary
        event["thread"] = {
            "count": summary.count,
            "last_ts": summary.last_ts,
            "users": list(summary.users),
            "participants": summary.participants,
        }
    if stored.mentions:
        event["mentions"] = list(stored.mentions)
    if stored.reactions:
        event["reactions"] = [
            {"key": r.key, "count": r.count, "me": r.me} for r in stored.reactions
        ]
    return event


def change_event(
    stored: StoredMessage, body: Any = None, *, decoded: bool = False
) -> dict[str, Any]:
    """The ``edit`` or ``delete`` event of a stored change.

    ``mid`` is the message changed, ``seq`` the change's own place in the conversation, ``by``
    who changed it, ``ts`` when. An edit carries the new ``body`` and ``edited`` (= ``ts``);
    an edit whose message was deleted since has lost its body: ``deleted: true`` instead.
    """
    assert stored.target is not None
    if stored.kind in REACTION_KINDS:
        return reaction_event(stored)
    event: dict[str, Any] = {"t": stored.kind, "mid": stored.target, "seq": stored.seq}
    if stored.room is not None:
        event["room"] = stored.room
    else:
        event["to"] = stored.to
        event["from"] = stored.sender
    event["by"] = stored.sender
    if stored.kind == EDIT:
        if stored.deleted:
            event["deleted"] = True
        else:
            event["body"] = body if decoded else _decode(stored.body)
        event["edited"] = stored.ts
    event["ts"] = stored.ts
    if stored.cid is not None:
        event["cid"] = stored.cid
    return event


def reaction_event(stored: StoredMessage) -> dict[str, Any]:
    """The ``reaction`` event of a stored reaction: ``user`` added (``on``) or removed their
    ``key`` on message ``mid``; ``seq`` is the reaction's own place in the conversation."""
    assert stored.target is not None
    event: dict[str, Any] = {"t": "reaction", "mid": stored.target, "seq": stored.seq}
    if stored.room is not None:
        event["room"] = stored.room
    else:
        event["to"] = stored.to
        event["from"] = stored.sender
    event["key"] = stored.body.decode()
    event["user"] = stored.sender
    event["on"] = stored.kind == REACT
    event["ts"] = stored.ts
    if stored.cid is not None:
        event["cid"] = stored.cid
    return event


def _decode(body: bytes) -> Any:
    return msgpack.unpackb(body, raw=False, strict_map_key=False)


def message_frame(stored: StoredMessage, body: Any = None, *, decoded: bool = False) -> WireFrame:
    return WireFrame(message_event(stored, body, decoded=decoded))


def gap_frame(room: str, gap: Gap) -> WireFrame:
    """The ``gap`` event: ``room`` skipped the seqs of ``gap``; its members page them from
    ``history {room, after, before: seq + 1}``."""
    return WireFrame({"t": "gap", "room": room, "after": gap.after, "seq": gap.seq})


def conversation_entry(conversation: Conversation, counts: Counts = NO_COUNTS) -> dict[str, Any]:
    """An inbox entry: ``room`` (with its ``title`` and ``topic``) or ``with`` (the other user
    of a direct conversation), the latest ``seq``, the reader's ``marker`` with the ``unread``
    and ``mentions`` counts after it (``counts``), and ``last``, the latest message as a
    ``msg`` map (absent when none is retained)."""
    entry: dict[str, Any] = {}
    if conversation.room is not None:
        entry["room"] = conversation.room
        entry["title"] = conversation.title
        entry["topic"] = conversation.topic
    else:
        entry["with"] = conversation.with_
    entry["seq"] = conversation.seq
    entry["marker"] = counts.marker
    entry["unread"] = counts.unread
    entry["mentions"] = counts.mentions
    if conversation.last is not None:
        entry["last"] = message_event(conversation.last)
    return entry


def room_entry(info: RoomInfo) -> dict[str, Any]:
    """A room of the directory: ``{room, title, topic, members}``."""
    return {"room": info.room, "title": info.title, "topic": info.topic, "members": info.members}


def room_frame(info: RoomInfo) -> WireFrame:
    """The ``room`` event: the room's title or topic changed."""
    return WireFrame({"t": "room", "room": info.room, "title": info.title, "topic": info.topic})


def self_member_frame(room: str, user: str, joined: bool, seq: int | None = None) -> WireFrame:
    """The ``member`` event a user's other devices get when the user joined or left ``room``
    (its ``user`` is their own id): they start or stop receiving the room. ``seq``, the room's
    latest when the user became a member, makes each connection receive every message after it
    (replayed if it came before the connection was subscribed)."""
    state = "joined" if joined else "left"
    frame = {"t": "member", "room": room, "user": user, "state": state}
    return WireFrame(frame if seq is None else {**frame, "seq": seq})
