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
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "DM_PREFIX",
    "DM_SEPARATOR",
    "MAX_TS_MS",
    "RECEIPT_LEVELS",
    "ROOM_PREFIX",
    "NewMessage",
    "Receipt",
    "ReceiptStatus",
    "StoredMessage",
    "dm_conv",
    "encode_mid",
    "mid_ms",
    "new_mid",
    "room_conv",
]

ROOM_PREFIX = "r:"
DM_PREFIX = "d:"
# User ids are ``[A-Za-z0-9_.:@-]``, so "|" can never be part of one and a direct conversation
# key splits back into its two users unambiguously.
DM_SEPARATOR = "|"

ReceiptStatus = Literal["delivered", "read"]

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


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message as stored. ``duplicate`` is True when an append recognised a resend."""

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


@dataclass(frozen=True, slots=True)
class Receipt:
    """``by`` (the recipient) has reached ``status`` for ``mid``; tell ``sender`` once."""

    mid: str
    sender: str
    by: str
    status: ReceiptStatus


# A receipt's level: read implies delivered, so levels only ever go up.
RECEIPT_LEVELS: dict[str, int] = {"delivered": 1, "read": 2}
