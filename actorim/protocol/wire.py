"""Server-to-client frames, encoded once and framed once however many sockets they go to.

A room message to a thousand members is one ``WireFrame``: its payload is encoded at most once
per encoding (MessagePack, JSON) and wrapped in WebSocket framing at most once per encoding;
each member's outbox receives the same ``bytes`` object.
"""

from __future__ import annotations

from typing import Any

from actorim.protocol.codec import Encoding, encode
from actorim.protocol.frames import encode_frame

__all__ = ["WireFrame", "frame_for"]


class WireFrame:
    """One outgoing map, ready to write in whichever encoding a connection speaks."""

    __slots__ = ("_json", "_msgpack", "obj")

    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = obj
        self._msgpack: bytes | None = None
        self._json: bytes | None = None

    def bytes_for(self, encoding: Encoding) -> bytes:
        """The complete WebSocket frame in ``encoding``, built on first request."""
        if encoding is Encoding.MSGPACK:
            if self._msgpack is None:
                self._msgpack = encode_frame(encode(self.obj, encoding), binary=True)
            return self._msgpack
        if self._json is None:
            self._json = encode_frame(encode(self.obj, encoding), binary=False)
        return self._json


def frame_for(obj: dict[str, Any], encoding: Encoding) -> bytes:
    """One WebSocket frame for one recipient."""
    return encode_frame(encode(obj, encoding), binary=encoding.binary)
