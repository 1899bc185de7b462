"""Server events built from stored messages: one builder, so live, replayed and offline
deliveries of a message are the same map."""

from __future__ import annotations

import time
from typing import Any

import msgpack

from actorim.domain.messages import NewMessage, StoredMessage, dm_conv, room_conv
from actorim.domain.roomlog import Gap
from actorim.protocol.wire import WireFrame

__all__ = ["encode_body", "gap_frame", "message_event", "message_frame", "published_message"]


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
    """The ``msg`` event of a stored message; pass the body when it is at hand (live sends)."""
    if not decoded:
        body = msgpack.unpackb(stored.body, raw=False, strict_map_key=False)
    event: dict[str, Any] = {"t": "msg", "mid": stored.mid, "seq": stored.seq}
    if stored.room is not None:
        event["room"] = stored.room
    else:
        event["to"] = stored.to
    event["from"] = stored.sender
    event["kind"] = stored.kind
    event["body"] = body
    event["ts"] = stored.ts
    if stored.cid is not None:
        event["cid"] = stored.cid
    return event


def message_frame(stored: StoredMessage, body: Any = None, *, decoded: bool = False) -> WireFrame:
    return WireFrame(message_event(stored, body, decoded=decoded))


def gap_frame(room: str, gap: Gap) -> WireFrame:
    """The ``gap`` event: ``room`` skipped the seqs of ``gap``; its members page them from
    ``history {room, after, before: seq + 1}``."""
    return WireFrame({"t": "gap", "room": room, "after": gap.after, "seq": gap.seq})
