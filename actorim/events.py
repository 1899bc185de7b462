"""Server events built from stored messages: one builder, so live, replayed and offline
deliveries of a message are the same map."""

from __future__ import annotations

from typing import Any

import msgpack

from actorim.store.base import StoredMessage
from actorim.wire import WireFrame

__all__ = ["encode_body", "message_event", "message_frame"]


def encode_body(body: Any) -> bytes:
    """The stored form of a message body: MessagePack, whatever encoding the sender spoke."""
    return msgpack.packb(body, use_bin_type=True)


def message_event(stored: StoredMessage, body: Any = None, *, decoded: bool = False) -> dict:
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
