"""API keys of the server API: made at random, kept hashed, checked in constant time.

The configuration holds each key's SHA-256 digest as ``sha256:<64 hex digits>``, never the key:
a leaked configuration does not hand out API access. Several may be configured at once, so
that a key is rotated by adding the new one, moving the application over, then removing the
old one. A presented key is hashed and compared with every configured digest by
``hmac.compare_digest``, all of them every time, so neither the answer's time nor its content
tells which digest nearly matched. A key is 32 random bytes (``secrets.token_urlsafe``) with a
recognisable prefix: a guess has no chance, and a key pasted in the wrong place is easy to
spot.

>>> key, line = new_api_key()
>>> keys = ApiKeys.parse([line])
>>> keys.check(key) == line
True
>>> keys.check(key + "x") is None
True
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["KEY_PREFIX", "ApiKeys", "hash_line", "new_api_key"]

KEY_PREFIX = "aim_"
"""Starts every key made by ``actorim api-key``; a key is checked by its hash whatever it is."""

_HASH_LINE = re.compile(r"sha256:([0-9a-f]{64})")

MAX_KEY_LENGTH = 256
"""A presented key longer than this is refused unhashed: no key made here is near it."""


def hash_line(key: str) -> str:
    """The configuration line of ``key``: ``sha256:<hex digest>``."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_api_key() -> tuple[str, str]:
    """A new random key and its configuration line."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, hash_line(key)


@dataclass(frozen=True, slots=True)
class ApiKeys:
    """The configured key digests; see the module docstring."""

    digests: tuple[bytes, ...]

    @classmethod
    def parse(cls, lines: Iterable[str]) -> ApiKeys:
        """The keys of the ``api_keys`` setting; a line that is not ``sha256:<64 lower-case
        hex digits>`` raises ``ValueError`` naming it by position (never echoing it)."""
        digests = []
        for index, line in enumerate(lines):
            match = _HASH_LINE.fullmatch(line.strip())
            if match is None:
                msg = (
                    f"key {index + 1} is not sha256:<64 hex digits>: store the hash line that "
                    "`actorim api-key` prints, not the key itself"
                )
                raise ValueError(msg)
            digests.append(bytes.fromhex(match.group(1)))
        return cls(tuple(digests))

    @property
    def enabled(self) -> bool:
        """Whether any key is configured: without one, the API is off."""
        return bool(self.digests)

    def check(self, key: str) -> str | None:
        """The configuration line of the key ``key`` matches, or None. Compares with every
        digest whatever the outcome."""
        if not key or len(key) > MAX_KEY_LENGTH:
            return None
        presented = hashlib.sha256(key.encode("utf-8", "replace")).digest()
        found: bytes | None = None
        for digest in self.digests:
            if hmac.compare_digest(presented, digest):
                found = digest
        return None if found is None else "sha256:" + found.hex()
