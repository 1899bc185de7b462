"""Token revocations in a cluster's Redis: kept for nodes that start later, announced to all.

One hash, ``ns:{revocations}:kept``, maps each revocation to its msgpack map; adding one writes
it there and publishes it on ``ns:{revocations}`` in one transaction, so a node hears of it at
once through its listener (``Delivery.revoked``) or, if its subscription was down, reads it
with the rest when its link recovers. Expired revocations are deleted when the list is read,
which every ``add`` does too.
The Python ``Publisher`` and every node use this same class.
"""

from __future__ import annotations

import time
from typing import Any, cast

import msgpack
import redis

from actorim.domain.tokens import Revocation
from actorim.redis.keys import ClusterKeys
from actorim.redis.shards import is_sharded, publish

__all__ = ["REVOKED_EVENT", "RedisRevocations"]

REVOKED_EVENT = "revoked"
"""The ``t`` of a revocation published on the revocations channel."""


def _field(revocation: Revocation) -> str:
    return f"{revocation.kind}\x1f{revocation.subject}\x1f{revocation.before}"


class RedisRevocations:
    """``ports.Revocations`` in Redis; see the module docstring."""

    def __init__(self, client: redis.Redis, *, namespace: str = "actorim") -> None:
        self._client = client
        self._keys = ClusterKeys(namespace)

    def add(self, revocation: Revocation) -> None:
        payload = msgpack.packb({"t": REVOKED_EVENT, **revocation.to_map()}, use_bin_type=True)
        with self._client.pipeline(transaction=True) as pipe:  # one slot: {revocations}
            pipe.hset(self._keys.revocations, _field(revocation), payload)
            publish(pipe, is_sharded(self._client), self._keys.revocations_channel, payload)
            pipe.execute()
        # Expired ones go as new ones come, so the hash holds about what is in force.
        self.current(time.time())

    def current(self, now: float) -> list[Revocation]:
        kept = cast("dict[bytes, bytes]", self._client.hgetall(self._keys.revocations))
        found: list[Revocation] = []
        expired: list[str] = []
        for field, payload in kept.items():
            revocation = decode_revocation(payload)
            if revocation is None or revocation.until <= now:
                expired.append(field.decode("utf-8", "replace"))
            else:
                found.append(revocation)
        if expired:
            self._client.hdel(self._keys.revocations, *expired)
        return found

    def close(self) -> None:
        self._client.close()


def decode_revocation(payload: bytes | dict[str, Any]) -> Revocation | None:
    """The revocation in a published or kept payload, or None if it is not one."""
    try:
        data = (
            payload
            if isinstance(payload, dict)
            else msgpack.unpackb(payload, raw=False, strict_map_key=False)
        )
        return Revocation.from_map(data)
    except (ValueError, TypeError, msgpack.UnpackException):
        return None
