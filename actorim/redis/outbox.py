"""The webhook outbox and dead-letter queue in Redis, shared by every node of a cluster.

Layout, under one hash tag so every script runs on one shard (``ns`` the namespace)::

    ns:{webhooks}:entries      hash    key -> the entry (msgpack), live or dead
    ns:{webhooks}:due:<url#>   zset    score due ms, member key: one endpoint's live entries
    ns:{webhooks}:dead         zset    score 0, member key: the dead-letter queue, in key order
    ns:{webhooks}:seen:<key>   string  "an entry with this key was added", for ``SEEN_TTL_MS``

Entries of a stored message are added by the store's second step (``RedisStore.append_batch``
queues them beside the recipients' indexes), before the append returns; a resend of the same
message with its cid runs that step again, and the ``seen`` marker keeps the entries from being
added twice once delivered. A claim (``due``) moves an entry's score past the lease, in one
script: of nodes polling at once, one gets it, and another claims it once the lease ran out
(the node that claimed it died).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import msgpack
import redis

from actorim.domain.webhooks import OutboxEntry
from actorim.redis.replies import answer
from actorim.redis.shards import register_script

__all__ = ["SEEN_TTL_MS", "OutboxKeys", "RedisOutbox"]

SEEN_TTL_MS = 24 * 3600 * 1000
"""How long an added key is remembered: a resend within a day adds nothing again."""

# KEYS: entries, then (due, seen) per entry. ARGV: seen ttl, then (key, due ms, packed, merges)
# per entry. An entry that merges (a pending push) replaces the kept one while that one is still
# due at the same time: neither claimed nor retried (both move its score), nor dead (no score).
_ADD = r"""#!lua
local ttl = ARGV[1]
for i = 0, (#ARGV - 1) / 4 - 1 do
  local key, due = ARGV[2 + 4 * i], ARGV[3 + 4 * i]
  local packed, merges = ARGV[4 + 4 * i], ARGV[5 + 4 * i]
  if redis.call('SET', KEYS[3 + 2 * i], '1', 'NX', 'PX', ttl) then
    if redis.call('HSETNX', KEYS[1], key, packed) == 1 then
      redis.call('ZADD', KEYS[2 + 2 * i], due, key)
    end
  elseif merges == '1' then
    local score = redis.call('ZSCORE', KEYS[2 + 2 * i], key)
    if score and tonumber(score) == tonumber(due) and redis.call('HEXISTS', KEYS[1], key) == 1 then
      redis.call('HSET', KEYS[1], key, packed)
    end
  end
end
return 1
"""

# KEYS: entries, due. ARGV: now, limit, lease. Returns the claimed entries as they were.
_DUE = r"""#!lua
local now, lease = tonumber(ARGV[1]), tonumber(ARGV[3])
local out = {}
for _, key in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, ARGV[2])) do
  local packed = redis.call('HGET', KEYS[1], key)
  if packed then
    redis.call('ZADD', KEYS[2], now + lease, key)
    out[#out + 1] = packed
  else
    redis.call('ZREM', KEYS[2], key)
  end
end
return out
"""

# KEYS: entries, due, dead. ARGV: key. A delivered live entry is forgotten.
_DONE = r"""#!lua
if redis.call('ZSCORE', KEYS[3], ARGV[1]) then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('HDEL', KEYS[1], ARGV[1])
"""

# KEYS: entries, due, dead. ARGV: key, packed, due ms, '1' to bury. Only a live entry changes.
_KEEP = r"""#!lua
local key = ARGV[1]
if redis.call('ZSCORE', KEYS[3], key) or redis.call('HEXISTS', KEYS[1], key) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], key, ARGV[2])
if ARGV[4] == '1' then
  redis.call('ZREM', KEYS[2], key)
  redis.call('ZADD', KEYS[3], 0, key)
else
  redis.call('ZADD', KEYS[2], ARGV[3], key)
end
return 1
"""

# KEYS: entries, due, dead. ARGV: key, packed (revived), due ms. Only a dead entry revives.
_REVIVE = r"""#!lua
if redis.call('ZREM', KEYS[3], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
"""

# KEYS: entries, dead. ARGV: key. Only a dead entry is deleted.
_DELETE_DEAD = r"""#!lua
if redis.call('ZREM', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
"""


def pack(entry: OutboxEntry) -> bytes:
    packed: bytes = msgpack.packb(entry.row(), use_bin_type=True)
    return packed


def unpack(data: bytes) -> OutboxEntry:
    return OutboxEntry(*msgpack.unpackb(data, raw=False))


class OutboxKeys:
    """The names of one namespace's outbox keys.

    >>> keys = OutboxKeys("im")
    >>> keys.entries, keys.dead, keys.due("http://h/in")
    ('im:{webhooks}:entries', 'im:{webhooks}:dead', 'im:{webhooks}:due:baad0afcf24d')
    """

    def __init__(self, namespace: str) -> None:
        self.tag = f"{namespace}:{{webhooks}}"
        self.entries = f"{self.tag}:entries"
        self.dead = f"{self.tag}:dead"

    def due(self, endpoint: str) -> str:
        return f"{self.tag}:due:{hashlib.sha256(endpoint.encode()).hexdigest()[:12]}"

    def seen(self, key: str) -> str:
        return f"{self.tag}:seen:{key}"


class RedisOutbox:
    """``Store``'s outbox operations on the Redis behind ``client``; the store calls them
    within its error handling (redis errors become StoreError there)."""

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self._client = client
        self.keys = OutboxKeys(namespace)
        self._add = register_script(client, _ADD)
        self._due = register_script(client, _DUE)
        self._done = register_script(client, _DONE)
        self._keep = register_script(client, _KEEP)
        self._revive = register_script(client, _REVIVE)
        self._delete_dead = register_script(client, _DELETE_DEAD)

    def queue_add(self, pipe: Any, entries: Sequence[OutboxEntry]) -> None:
        """Queue the adding of ``entries`` on ``pipe`` (or run it, given the client)."""
        if not entries:
            return
        keys = [self.keys.entries]
        args: list[Any] = [SEEN_TTL_MS]
        for entry in entries:
            keys += [self.keys.due(entry.endpoint), self.keys.seen(entry.key)]
            args += [entry.key, entry.due, pack(entry), "1" if entry.merges else "0"]
        self._add(keys=keys, args=args, client=pipe)

    def add(self, entries: Sequence[OutboxEntry]) -> None:
        self.queue_add(self._client, entries)

    def due(self, endpoint: str, *, now_ms: int, limit: int, lease_ms: int) -> list[OutboxEntry]:
        found = self._due(
            keys=[self.keys.entries, self.keys.due(endpoint)], args=[now_ms, limit, lease_ms]
        )
        return [unpack(data) for data in found]

    def done(self, entry: OutboxEntry) -> None:
        keys = [self.keys.entries, self.keys.due(entry.endpoint), self.keys.dead]
        self._done(keys=keys, args=[entry.key])

    def keep(self, entry: OutboxEntry) -> None:
        keys = [self.keys.entries, self.keys.due(entry.endpoint), self.keys.dead]
        bury = "1" if entry.dead is not None else "0"
        self._keep(keys=keys, args=[entry.key, pack(entry), entry.due, bury])

    def dead(self, *, limit: int, after: str | None) -> list[OutboxEntry]:
        low = "-" if after is None else "(" + after
        keys: list[bytes] = answer(
            self._client.zrangebylex(self.keys.dead, low, "+", start=0, num=limit)
        )
        if not keys:
            return []
        found: list[bytes | None] = answer(self._client.hmget(self.keys.entries, keys))
        return [unpack(data) for data in found if data is not None]

    def revive(self, key: str, *, now_ms: int) -> bool:
        data: bytes | None = answer(self._client.hget(self.keys.entries, key))
        if data is None:
            return False
        entry = unpack(data)
        if entry.dead is None:
            return False
        revived = entry.revived(now=now_ms)
        keys = [self.keys.entries, self.keys.due(entry.endpoint), self.keys.dead]
        return bool(self._revive(keys=keys, args=[key, pack(revived), now_ms]))

    def delete_dead(self, key: str) -> bool:
        return bool(self._delete_dead(keys=[self.keys.entries, self.keys.dead], args=[key]))
