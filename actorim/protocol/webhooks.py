"""The webhook events' payloads (the ``data`` of each request, docs/webhooks.md), built from
what the server stored or decided, and the outbox entries a store writes for them.

``PAYLOADS`` maps each event type to its builder; ``Webhooks`` is what a node gives its store:
called with each message the store has just stored (in the same transaction, or the same
atomic step), it answers the outbox entries to keep with it. Adding an event type is a line in
``actorim.domain.webhooks.EVENT_TYPES``, its builder here, and a call where it happens.

Bodies are the sender's value as JSON; a binary value (MessagePack ``bin``) becomes a base64
string.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import msgpack

from actorim.domain.messages import DELETE, DM_SEPARATOR, EDIT, StoredMessage, encode_mid
from actorim.domain.moderation import AuditEntry
from actorim.domain.push import (
    PUSH_EVENT,
    PushPolicy,
    pending_push,
    push_event_id,
    push_recipients,
)
from actorim.domain.webhooks import Endpoint, OutboxEntry, entries_for

__all__ = [
    "MEMBER_BY",
    "MODERATION_EVENTS",
    "PAYLOADS",
    "Webhooks",
    "member_event_id",
    "member_payload",
    "message_event_type",
    "message_payload",
    "moderation_payload",
    "presence_event_id",
    "presence_payload",
    "push_pending_payload",
]


def message_event_type(stored: StoredMessage) -> str | None:
    """The event a stored message or change makes, or None (reactions make none yet)."""
    if stored.target is None:
        return "message.created"
    return {EDIT: "message.edited", DELETE: "message.deleted"}.get(stored.kind)


def message_payload(stored: StoredMessage) -> dict[str, Any]:
    """``data`` of ``message.created`` / ``message.edited`` / ``message.deleted``: the message
    (``mid``; for a change the message it changes, and ``change`` its own mid), where it was
    said (``room``, or ``from`` and ``to``), by whom, its ``seq`` and ``ts``, and the body (not
    for a delete)."""
    data: dict[str, Any] = {"mid": stored.target or stored.mid}
    if stored.target is not None:
        data["change"] = stored.mid
    if stored.room is not None:
        data["room"] = stored.room
    else:
        data["to"] = stored.to
    data["from"] = stored.sender
    data["seq"] = stored.seq
    data["ts"] = stored.ts
    if stored.target is None:
        data["kind"] = stored.kind
    if stored.kind != DELETE:
        data["body"] = msgpack.unpackb(stored.body, raw=False, strict_map_key=False)
    if stored.cid is not None:
        data["cid"] = stored.cid
    return data


def presence_payload(user: str, status: str, ts: int) -> dict[str, Any]:
    """``data`` of ``user.online`` / ``user.offline``: who, and when the change happened."""
    return {"user": user, "status": status, "ts": ts}


MODERATION_EVENTS = {
    "kick": "moderation.kicked",
    "ban": "moderation.banned",
    "unban": "moderation.unbanned",
    "mute": "moderation.muted",
    "unmute": "moderation.unmuted",
    "delete": "moderation.deleted",
}
"""Each moderation action's webhook event type (a role being set makes none)."""


def moderation_payload(entry: AuditEntry) -> dict[str, Any]:
    """``data`` of ``moderation.*``: the audit entry (``AuditEntry.as_json``): its ``id``,
    ``room``, ``ts``, who acted (``by``), ``action``, on whom (``user``), ``reason``, and
    ``until`` for a ban or mute, ``mid`` for a delete."""
    return entry.as_json()


def push_pending_payload(stored: StoredMessage, user: str, policy: PushPolicy) -> dict[str, Any]:
    """``data`` of a pending ``push.needed`` while ``stored`` is its latest message; the
    dispatcher adds ``count`` and ``badge`` when it is due (``actorim.domain.push``)."""
    body = None
    if policy.preview == "full":
        body = msgpack.unpackb(stored.body, raw=False, strict_map_key=False)
    return pending_push(stored, user, body, policy.preview)


MEMBER_BY = ("user", "application")
"""Who changed a membership: the user themself (WebSocket ``join``/``leave``) or the
application (the server API, ``Node``, the ``Publisher``; a room's delete)."""


def member_payload(room: str, user: str, by: str, ts: int) -> dict[str, Any]:
    """``data`` of ``room.member_added`` / ``room.member_removed``: the room, the user, who
    made the change (``MEMBER_BY``) and when."""
    return {"room": room, "user": user, "by": by, "ts": ts}


PAYLOADS: dict[str, Callable[..., dict[str, Any]]] = {
    "message.created": message_payload,
    "message.edited": message_payload,
    "message.deleted": message_payload,
    "user.online": presence_payload,
    "user.offline": presence_payload,
    **{event_type: moderation_payload for event_type in MODERATION_EVENTS.values()},
    PUSH_EVENT: push_pending_payload,
    "room.member_added": member_payload,
    "room.member_removed": member_payload,
}
"""Each event type's payload builder."""


def _json(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":"), default=_binary).encode()


def _binary(value: Any) -> str:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError(f"not JSON: {type(value).__name__}")


class Webhooks:
    """The configured endpoints, as the outbox sees them: which entries an event makes."""

    def __init__(self, endpoints: Sequence[Endpoint], push: PushPolicy | None = None) -> None:
        self.endpoints = tuple(endpoints)
        self.push = push if any(e.wants(PUSH_EVENT) for e in self.endpoints) else None

    def __bool__(self) -> bool:
        return bool(self.endpoints)

    def for_message(self, stored: StoredMessage) -> list[OutboxEntry]:
        """The entries of a message or change just stored; its id is ``ev_<its mid>``, so the
        same stored row always makes the same entries (a store may write them twice)."""
        event_type = message_event_type(stored)
        if event_type is None or not self.endpoints:
            return []
        data = _json(PAYLOADS[event_type](stored))
        made = entries_for(self.endpoints, "ev_" + stored.mid, event_type, stored.ts, data)
        if self.push is not None:
            made += self.for_push(stored, self.push)
        return made

    def for_push(self, stored: StoredMessage, policy: PushPolicy) -> list[OutboxEntry]:
        """The pending pushes ``stored`` joins, one per user it may need a push for: under the
        key of the user's window, due when the window's grace ends (``actorim.domain.push``)."""
        window, due = policy.window_of(stored.ts), policy.due_of(stored.ts)
        made: list[OutboxEntry] = []
        for user in push_recipients(stored):
            data = _json(push_pending_payload(stored, user, policy))
            event = push_event_id(user, window)
            for entry in entries_for(self.endpoints, event, PUSH_EVENT, window, data):
                made.append(replace(entry, due=due))
        return made

    def for_presence(self, user: str, status: str, ts: int) -> list[OutboxEntry]:
        """The entries of a user going online or offline at ``ts``. Their id is made of the
        three, so every node of a cluster that hears the change makes the same entries, which
        the store keeps once."""
        event_type = f"user.{status}"
        if not self.endpoints:
            return []
        data = _json(PAYLOADS[event_type](user, status, ts))
        return entries_for(
            self.endpoints, presence_event_id(user, status, ts), event_type, ts, data
        )

    def for_moderation(self, entry: AuditEntry) -> list[OutboxEntry]:
        """The entries of a moderation action; their id is ``ev_`` and the audit entry's."""
        event_type = MODERATION_EVENTS.get(entry.action)
        if event_type is None or not self.endpoints:
            return []
        data = _json(moderation_payload(entry))
        return entries_for(self.endpoints, "ev_" + entry.id, event_type, entry.ts, data)

    def for_member(
        self, room: str, user: str, *, added: bool, by: str, ts: int
    ) -> list[OutboxEntry]:
        """The entries of ``user`` joining (``added``) or leaving ``room`` at ``ts``."""
        if not self.endpoints:
            return []
        event_type = "room.member_added" if added else "room.member_removed"
        data = _json(PAYLOADS[event_type](room, user, by, ts))
        event_id = member_event_id(room, user, event_type, ts)
        return entries_for(self.endpoints, event_id, event_type, ts, data)


def member_event_id(room: str, user: str, event_type: str, ts: int) -> str:
    """The id of a membership event: sorts by time like a message's; the same change at the
    same millisecond (a retried request) makes the same id, which the outbox keeps once."""
    digest = hashlib.sha256(f"{room}{DM_SEPARATOR}{user}{DM_SEPARATOR}{event_type}".encode())
    return "ev_" + encode_mid(ts, int.from_bytes(digest.digest()[:5], "big"))


def presence_event_id(user: str, status: str, ts: int) -> str:
    """The id of the event of ``user`` going ``status`` at ``ts``: sorts by time like a
    message's, the same wherever it is made.

    >>> presence_event_id("bob", "online", 5_000) == presence_event_id("bob", "online", 5_000)
    True
    """
    digest = hashlib.sha256(f"{user}{DM_SEPARATOR}{status}".encode()).digest()
    return "ev_" + encode_mid(ts, int.from_bytes(digest[:5], "big"))
