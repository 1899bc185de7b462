"""The message store in Redis: shared by every node of a cluster, on one Redis, Sentinel or a
Redis Cluster (``actorim.redis.topology``).

Layout. Everything one conversation owns sits under its hash tag, so one Lua script can append a
message atomically on one shard (``ns`` is the namespace, ``conv`` the conversation key)::

    ns:{conv}:seq       string  the last seq given; survives the conversation being pruned empty
    ns:{conv}:log       stream  the messages, entry id "<seq>-0", one field "m" (msgpack)
    ns:{conv}:cids      hash    "<sender>\\x1f<cid>" -> mid, for resend de-duplication
    ns:{conv}:mids      hash    mid -> seq
    ns:{conv}:age       zset    score ts, member seq (zero-padded): what age retention removes
    ns:{conv}:receipts  hash    mid -> 0 pending, 1 delivered, 2 read (direct messages only)
    ns:{conv}:changed   zset    score seq, member msgpack: entries as they are now, once an
                                edit or delete changed them (their stream entry is deleted)
    ns:{conv}:threads   zset    score 0, members "a<root><seq>" for each retained reply (a
                                thread's page, by lex range) and "l<root><seq>" for each its
                                root's summary counts (not deleted): the latest gives its time
    ns:{conv}:unread    zset    score seq, member seq (zero-padded): the messages that can
                                count as unread (not changes, not deleted)
    ns:{conv}:own       zset    score 0, member "<sender>\x1f<seq>": the same by sender
    ns:{conv}:mentioned zset    score 0, member "<user>\x1f<seq>": who they mention
    ns:{conv}           channel every new message, as msgpack (``decode_published``)

A direct message's recipient has an index under their own tag (another shard), written by a
second, idempotent step before ``append_batch`` returns; the same goes for the lookup of a mid
(``get``), the user's ``authored`` set and the retention index that lets ``prune`` find
conversations without SCAN::

    ns:{u:user}:inbox    hash    mid -> pending-index member, for every retained message to user
    ns:{u:user}:pending  zset    score ts, member "<seq><order><mid>\\x1f<conv>": oldest first
    ns:{u:user}:order    string  tie-break counter of the pending index
    ns:{u:user}:markers  hash    conv -> the user's read marker there
    ns:{u:user}:authored zset    conv -> seq of the user's latest message there: the
                                 conversations where they have messages in ``own``
    ns:{u:user}          channel direct messages to or from user
    ns:{m:xx}:mids       hash    mid -> conv, 1,024 buckets by the mid's last two characters
    ns:{i:k}:oldest      zset    conv -> ts of its oldest message (+inf: none), 16 shards
    ns:{i:k}:span        zset    conv -> last seq - first retained seq + 1, same shards
    ns:{i:k}:erased      set     conversations whose log still holds a deleted body, same shards
    ns:epoch             string  made once (SET NX); a wiped Redis gets a new one

Unread counts are ZCOUNT and ZLEXCOUNT over those three sorted sets: O(log n) whatever the
count, capped afterwards. Messages stored before these indexes existed never count.

Why a stream: XRANGE/XREVRANGE by seq is exactly ``since`` and ``history`` in one command, and
entries live in compact listpacks. Receipts change, so they live beside it in a hash.

Edits and deletes. A change is an entry of the log like a message (its own mid, the next seq,
``target``: the message's mid). A stream entry cannot be rewritten, so the script that stores a
change moves the message out of the log (XDEL) into ``changed``, as it is now: edited, or a
tombstone without its body; a delete moves the message's earlier edit events there too, without
their bodies. No read returns an erased body again. Every read merges the log and ``changed``
by seq (one script, so the two are read at one instant). Redis keeps the bytes of a deleted
stream entry in its node (memory, and snapshots: DUMP, RDB, an AOF rewrite) until the node is
freed, so ``prune`` also rewrites the log of each conversation with a delete since the last
prune (``erased`` index), entry by entry: the erased bytes are gone from memory then, and from
Redis's files at its next snapshot or AOF rewrite.

Replies and threads. A reply's entry names ``reply_to`` and ``thread`` (its root's mid); the
root's entry, as it is now, carries its thread's ``summary`` ``[count, last ts, [[author,
replies]...]]``, kept by the script that stores, deletes or prunes a reply (so the root moves
into ``changed`` like an edited message). ``threads`` pages a thread in seq order.

Guarantees, and what they assume of Redis:

- Each message is stored, numbered, indexed for de-duplication and published by one script,
  atomically, so subscribers see a conversation's messages in seq order, and never one the
  store does not hold. A batch is not atomic (its conversations live on different shards): it
  is one script per message in one pipeline, so a failed ``append_batch`` may have stored, and
  published, part of the batch, each message whole and in order within its conversation; the
  second step (indexes on other shards) may not have run for them. This is the per-message
  contract of ``Store``; the StoreError says so, and resending with the same cids completes
  the batch.
- Durability needs ``appendonly yes`` and ``appendfsync always`` on every shard: Redis writes
  and syncs the AOF before it answers any client, so an acknowledged append, and every
  published message, survives Redis being killed and restarted on the same files. With
  ``everysec`` up to a second of acknowledged messages can be lost. RDB snapshots
  (``save``) add nothing to this and are best off. A replica that takes over after a failover
  may miss the last writes (replication is asynchronous) unless the store is made with
  ``min_replicas`` N: then every append pipeline ends with ``WAIT`` on each master it wrote to,
  and a batch that fewer than N replicas confirmed within ``wait_timeout_ms`` raises
  ``StoreUnavailable`` (stored on the master; resend with the same cids).
- De-duplication is per conversation, as in every store: the same (sender, cid) sent to two
  conversations is two messages (a global index would also span shards).
- Pending is never missing for an acknowledged direct message, and indexes on other shards are
  hints checked against the conversation's own data, so a lost second step costs memory until
  the next prune, never a wrong answer.
- ``prune`` walks conversations oldest first; within a conversation, messages go oldest first.
  Which of two conversations' messages of the same millisecond goes first is unspecified.
- Needs Redis 7.0 or later (script flags, ZADD GT/LT) and a client made with
  ``decode_responses=False``.

>>> import redis  # doctest: +SKIP
>>> store = RedisStore(redis.Redis(port=6380), namespace="im")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import re
import secrets
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from typing import Any

import msgpack
import redis
from redis.commands.core import Script
from redis.exceptions import (
    ClusterError,
    NoScriptError,
    ReadOnlyError,
    RedisClusterException,
    TryAgainError,
)

from actorim.domain.moderation import AuditEntry, Standing
from actorim.domain.rooms import JoinOutcome, RoomInfo
from actorim.redis.moderation import RedisModeration
from actorim.redis.outbox import RedisOutbox
from actorim.redis.replies import answer
from actorim.redis.rooms import RedisRooms
from actorim.redis.shards import (
    is_sharded,
    load_scripts,
    publish,
    queue_wait,
    register_script,
    replicated,
)
from actorim.redis.topology import REDIS_ERRORS, make_client
from actorim.store.base import (
    DEFAULT_MAX_AGE_MS,
    DEFAULT_MAX_COUNT,
    DEFAULT_PRUNE_BUDGET,
    DELETE,
    RECEIPT_LEVELS,
    Counts,
    NewMessage,
    OutboxEntry,
    OutboxFor,
    Receipt,
    ReceiptStatus,
    Store,
    StoredMessage,
    StoreError,
    StoreUnavailable,
    advanced,
    bounded_page,
    check_cap,
    check_limit,
    check_new_message,
    check_prune,
    check_statuses,
    mid_ms,
    new_mid,
    reaction_summary,
    refused,
    thread_summary,
    unchanged,
)

__all__ = [
    "INDEX_SHARDS",
    "MID_BUCKET_CHARS",
    "RedisStore",
    "StoreKeys",
    "allot",
    "decode_published",
    "encode_published",
]

logger = logging.getLogger("actorim.store")

# The retention index is split in 16 keys (16 shards' worth of slots) so that the index write
# every append makes does not land on one hot shard; a prune round reads all 16 in one trip.
INDEX_SHARDS = 16

# The mid -> conversation lookup is split by the mid's last two base32hex characters (its random
# part): 1,024 hashes, spread over the cluster, each small enough to stay compact.
MID_BUCKET_CHARS = 2

# Messages an append may remove from its own conversation when it is over the store's retention.
# Twice the rate a conversation grows, so a busy conversation shrinks back to its limit on its
# own; quiet ones wait for ``prune``.
_TRIM_PER_APPEND = 2

# Conversations one prune round looks at (one pipeline per step), and rounds per prune call per
# kind of retention: bounds how long a call holds the store even when index hints are stale.
_PRUNE_BATCH = 64
_PRUNE_ROUNDS = 8

# Messages per read of a byte-bounded ``since``: 16 messages of at most a 64 KiB frame each read
# at most 1 MiB past the byte bound, where one read of the whole page (a thousand messages) could
# hold 64 MiB; a thousand small messages still take only 63 round trips.
_SINCE_PAGE = 16

_NAMESPACE_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_PENDING = 0
_NOT_DIRECT = -1
# Width of the seq and the order counter in a pending-index member, so members of the same ts
# sort by seq, then by the order they were added in.
_MEMBER_NUMBER = 15
_SEP = "\x1f"

_TEXT_FIELDS = ("mid", "conv", "sender", "kind")
_OPTIONAL_FIELDS = ("cid", "room", "to", "target", "reply_to", "thread")
# The append script's first answer for a change it did not make.
_REFUSED = 2
# Its first answer for a reaction that changed nothing.
_UNCHANGED = 3


# -- the published form ---------------------------------------------------------------------


def encode_published(stored: StoredMessage) -> bytes:
    """The bytes a stored message is published (and kept in its stream) as.

    A msgpack map of the StoredMessage fields; ``duplicate`` is not part of it and absent
    optional fields are left out. The append script builds the same map in Lua.
    """
    fields: dict[str, object] = {
        "mid": stored.mid,
        "conv": stored.conv,
        "seq": stored.seq,
        "ts": stored.ts,
        "sender": stored.sender,
        "kind": stored.kind,
        "body": stored.body,
    }
    for name in _OPTIONAL_FIELDS:
        value = getattr(stored, name)
        if value is not None:
            fields[name] = value
    if stored.edited is not None:
        fields["edited"] = stored.edited
    if stored.deleted:
        fields["deleted"] = True
    if stored.mentions:
        fields["mentions"] = list(stored.mentions)
    return msgpack.packb(fields, use_bin_type=True)


def decode_published(data: bytes) -> StoredMessage:
    """The message in ``data`` as published on a conversation or user channel.

    Raises ValueError when ``data`` is not such a message.
    """
    return decode_published_fields(msgpack_map(data))[0]


def _with_origin(data: bytes, origin: str | None) -> bytes:
    """The published form of ``data`` naming its sending connection, so that one is left out."""
    if origin is None:
        return data
    # Lua's cmsgpack writes every string, the body too, as a msgpack str: keep them raw.
    fields = msgpack.unpackb(data, raw=True)
    fields[b"origin"] = origin.encode()
    return msgpack.packb(fields, use_bin_type=False)


def msgpack_map(data: bytes) -> dict[bytes, Any]:
    """``data`` unpacked as a map with bytes keys; ValueError otherwise."""
    try:
        fields = msgpack.unpackb(data, raw=True)
    except (ValueError, msgpack.UnpackException) as exc:
        raise ValueError(f"not a published message: {exc}") from exc
    if not isinstance(fields, dict):
        raise ValueError(
            f"not a published message: a map was expected, got {type(fields).__name__}"
        )
    return fields


def decode_published_fields(fields: dict[bytes, Any]) -> tuple[StoredMessage, str | None]:
    """A published message and its ``origin`` (the sending connection, when published with one).

    Raises ValueError when ``fields`` is not such a message.
    """
    try:
        text = {name: fields[name.encode()].decode() for name in _TEXT_FIELDS}
        optional = {
            name: None if (value := fields.get(name.encode())) is None else value.decode()
            for name in _OPTIONAL_FIELDS
        }
        seq, ts, body = fields[b"seq"], fields[b"ts"], fields[b"body"]
        if not (isinstance(seq, int) and isinstance(ts, int) and isinstance(body, bytes)):
            raise TypeError("seq and ts must be integers and body bytes")
        edited = fields.get(b"edited")
        if edited is not None and not isinstance(edited, int):
            raise TypeError("edited must be an integer")
        origin = fields.get(b"origin")
        origin = None if origin is None else origin.decode()
        named = fields.get(b"mentions") or ()
        if not isinstance(named, list | tuple):
            raise TypeError("mentions must be a list")
        mentions = tuple(_text(user) for user in named)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ValueError(f"not a published message: {exc}") from exc
    message = StoredMessage(
        text["mid"],
        text["conv"],
        seq,
        ts,
        text["sender"],
        text["kind"],
        body,
        optional["cid"],
        optional["room"],
        optional["to"],
        target=optional["target"],
        edited=edited,
        deleted=fields.get(b"deleted") is True,
        reply_to=optional["reply_to"],
        thread=optional["thread"],
        mentions=mentions,
    )
    return message, origin


# -- names ----------------------------------------------------------------------------------


class StoreKeys:
    """Every key and channel name of one namespace; see the module docstring for the layout.

    >>> keys = StoreKeys("im")
    >>> keys.conversation_channel("r:lobby"), keys.user_channel("bob")
    ('im:{r:lobby}', 'im:{u:bob}')
    """

    def __init__(self, namespace: str) -> None:
        if not _NAMESPACE_RE.fullmatch(namespace):
            raise ValueError(
                f"namespace must be 1-64 characters of [A-Za-z0-9_.:-], got {namespace!r}"
            )
        self.namespace = namespace
        self.epoch = f"{namespace}:epoch"

    def conversation(self, conv: str) -> tuple[str, ...]:
        """seq, log, cids, mids, age, receipts, changed, threads, unread, own, mentioned: the
        KEYS of every conversation script."""
        tag = f"{self.namespace}:{{{conv}}}"
        return (
            f"{tag}:seq",
            f"{tag}:log",
            f"{tag}:cids",
            f"{tag}:mids",
            f"{tag}:age",
            f"{tag}:receipts",
            f"{tag}:changed",
            f"{tag}:threads",
            f"{tag}:unread",
            f"{tag}:own",
            f"{tag}:mentioned",
        )

    def conversation_channel(self, conv: str) -> str:
        return f"{self.namespace}:{{{conv}}}"

    def user(self, user: str) -> tuple[str, str, str]:
        """inbox, pending, order: the KEYS of the recipient scripts."""
        tag = f"{self.namespace}:{{u:{user}}}"
        return f"{tag}:inbox", f"{tag}:pending", f"{tag}:order"

    def markers(self, user: str) -> str:
        """The hash of ``user``'s read markers, conversation by conversation."""
        return f"{self.namespace}:{{u:{user}}}:markers"

    def user_channel(self, user: str) -> str:
        return f"{self.namespace}:{{u:{user}}}"

    def authored(self, user: str) -> str:
        """The sorted set of the conversations where ``user`` has live messages."""
        return f"{self.namespace}:{{u:{user}}}:authored"

    def mid_index(self, mid: str) -> str:
        return f"{self.namespace}:{{m:{mid[-MID_BUCKET_CHARS:]}}}:mids"

    def retention_index(self, conv: str) -> tuple[str, str]:
        """oldest, span: the two index keys that hold ``conv``."""
        return self.retention_shard(zlib.crc32(conv.encode()) % INDEX_SHARDS)

    def retention_shard(self, shard: int) -> tuple[str, str]:
        tag = f"{self.namespace}:{{i:{shard}}}"
        return f"{tag}:oldest", f"{tag}:span"

    def erased_index(self, conv: str) -> str:
        """The set of conversations whose log still holds erased bytes, on ``conv``'s shard."""
        return self.erased_shard(zlib.crc32(conv.encode()) % INDEX_SHARDS)

    def erased_shard(self, shard: int) -> str:
        return f"{self.namespace}:{{i:{shard}}}:erased"


def allot(wanted: Sequence[int], budget: int) -> list[int]:
    """Share ``budget`` out in order: each gets what it wants while the budget lasts.

    >>> allot([3, 0, 5, 2], 6)
    [3, 0, 3, 0]
    """
    shares = []
    for want in wanted:
        share = max(0, min(want, budget))
        shares.append(share)
        budget -= share
    return shares


def _pending_parts(member: bytes) -> tuple[str, str]:
    """The (mid, conv) a pending-index member names."""
    mid, conv = member[2 * _MEMBER_NUMBER :].decode().split(_SEP, 1)
    return mid, conv


# -- scripts --------------------------------------------------------------------------------

# Helpers shared by the conversation scripts; KEYS are StoreKeys.conversation's eight keys.
_CONVERSATION_PRELUDE = r"""
local SEQ, LOG, CIDS, MIDS, AGE, RECEIPTS = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local CHANGED, THREADS = KEYS[7], KEYS[8]
local UNREAD, OWN, MENTIONED = KEYS[9], KEYS[10], KEYS[11]

-- {user, seq, ...}: each author whose last live message here a delete or retention took, with
-- the conversation's last seq then (for the authored sets on the users' shards).
local VACATED = {}

local function id(seq) return string.format('%d-0', seq) end
local function rank(seq) return string.format('%015d', seq) end
local function seq_of(entry_id) return tonumber(string.match(entry_id, '^%d+')) end

-- Take a message out of the unread counts (deleted, or gone).
local function uncount(seq, m)
  redis.call('ZREM', UNREAD, rank(seq))
  redis.call('ZREM', OWN, m.sender .. '\31' .. rank(seq))
  for _, user in ipairs(m.mentions or {}) do
    redis.call('ZREM', MENTIONED, user .. '\31' .. rank(seq))
  end
end

-- Whether user has no message left in OWN.
local function vacant(user)
  return #redis.call('ZRANGEBYLEX', OWN, '[' .. user .. '\31', '(' .. user .. '\32',
                     'LIMIT', 0, 1) == 0
end

-- Note the author of live message m, just taken out of OWN, in VACATED if it was their last.
local function vacate(m)
  if vacant(m.sender) then
    VACATED[#VACATED + 1] = m.sender
    VACATED[#VACATED + 1] = tonumber(redis.call('GET', SEQ) or '0')
  end
end

local function entry(seq)
  local found = redis.call('XRANGE', LOG, id(seq), id(seq))
  if #found > 0 then return found[1][2][2] end
  found = redis.call('ZRANGEBYSCORE', CHANGED, seq, seq)
  return found[1]
end

-- Replace entry seq by packed (the entry as it is now): out of the log, into CHANGED.
local function rewrite(seq, packed)
  redis.call('XDEL', LOG, id(seq))
  redis.call('ZREMRANGEBYSCORE', CHANGED, seq, seq)
  redis.call('ZADD', CHANGED, seq, packed)
end

-- Up to n entries {seq, packed} with low <= seq <= high from the log and CHANGED merged, in
-- ascending seq order (descending with rev).
local function merged(low, high, n, rev)
  if high < low or n < 1 then return {} end
  local a, b
  if rev then
    a = redis.call('XREVRANGE', LOG, id(high), id(low), 'COUNT', n)
    b = redis.call('ZREVRANGEBYSCORE', CHANGED, high, low, 'WITHSCORES', 'LIMIT', 0, n)
  else
    a = redis.call('XRANGE', LOG, id(low), id(high), 'COUNT', n)
    b = redis.call('ZRANGEBYSCORE', CHANGED, low, high, 'WITHSCORES', 'LIMIT', 0, n)
  end
  local out, i, j = {}, 1, 1
  while #out < n do
    local sa = a[i] and seq_of(a[i][1])
    local sb = b[2 * j] and tonumber(b[2 * j])
    if not sa and not sb then break end
    if sa and (not sb or (rev and sa > sb) or (not rev and sa < sb)) then
      out[#out + 1] = {sa, a[i][2][2]}
      i = i + 1
    else
      out[#out + 1] = {sb, b[2 * j - 1]}
      j = j + 1
    end
  end
  return out
end

-- The root of thread root, unpacked, and its seq; nil when it is not retained.
local function root_of(root)
  local rseq = redis.call('HGET', MIDS, root)
  local packed = rseq and entry(rseq)
  if not packed then return nil end
  return cmsgpack.unpack(packed), tonumber(rseq)
end

-- Index reply m (stored at seq) in its thread and count it in its root's summary.
local function count_reply(m, seq)
  redis.call('ZADD', THREADS, 0, 'a' .. m.thread .. rank(seq), 0, 'l' .. m.thread .. rank(seq))
  local r, rseq = root_of(m.thread)
  if not r then return end
  local s = r.summary or {0, 0, {}}
  s[1], s[2] = s[1] + 1, m.ts
  local joined = false
  for _, a in ipairs(s[3]) do
    if a[1] == m.sender then a[2], joined = a[2] + 1, true end
  end
  if not joined then s[3][#s[3] + 1] = {m.sender, 1} end
  r.summary = s
  rewrite(rseq, cmsgpack.pack(r))
end

-- Take reply m (at seq), deleted or being pruned, out of its root's summary: the latest reply
-- still counted gives the thread's time.
local function uncount_reply(m, seq)
  redis.call('ZREM', THREADS, 'l' .. m.thread .. rank(seq))
  local r, rseq = root_of(m.thread)
  if not r or not r.summary then return end
  local s = r.summary
  s[1] = s[1] - 1
  for i, a in ipairs(s[3]) do
    if a[1] == m.sender then
      a[2] = a[2] - 1
      if a[2] == 0 then table.remove(s[3], i) end
      break
    end
  end
  if s[1] <= 0 then
    r.summary = nil
  else
    local prefix = 'l' .. m.thread
    local last = redis.call('ZREVRANGEBYLEX', THREADS, '[' .. prefix .. '~', '[' .. prefix,
                            'LIMIT', 0, 1)
    local e = last[1] and entry(tonumber(string.sub(last[1], #prefix + 1)))
    if e then s[2] = cmsgpack.unpack(e).ts end
  end
  rewrite(rseq, cmsgpack.pack(r))
end

-- Remove one message and its entries in this conversation's indexes; note (mid, to) in dropped
-- for the indexes on other shards.
local function drop(seq, packed, dropped)
  local m = cmsgpack.unpack(packed)
  if m.thread then
    redis.call('ZREM', THREADS, 'a' .. m.thread .. rank(seq))
    if not m.deleted then uncount_reply(m, seq) end
  end
  redis.call('XDEL', LOG, id(seq))
  redis.call('ZREMRANGEBYSCORE', CHANGED, seq, seq)
  redis.call('HDEL', MIDS, m.mid)
  redis.call('ZREM', AGE, rank(seq))
  if m.cid then
    local field = m.sender .. '\31' .. m.cid
    if redis.call('HGET', CIDS, field) == m.mid then redis.call('HDEL', CIDS, field) end
  end
  if m.to then redis.call('HDEL', RECEIPTS, m.mid) end
  if not m.target then
    uncount(seq, m)
    if not m.deleted then vacate(m) end
  end
  dropped[#dropped + 1] = m.mid
  dropped[#dropped + 1] = m.to or ''
end

-- Remove, up to budget, messages beyond the newest max_count (0: no count limit), then
-- messages with ts below cutoff ('': no age limit), oldest first.
local function retain(max_count, cutoff, budget, dropped)
  local n = 0
  if max_count > 0 and budget > 0 then
    local upto = tonumber(redis.call('GET', SEQ) or '0') - max_count
    if upto >= 1 then
      for _, e in ipairs(merged(0, upto, budget, false)) do
        drop(e[1], e[2], dropped)
        n = n + 1
      end
    end
  end
  if cutoff ~= '' and n < budget then
    local old = redis.call('ZRANGEBYSCORE', AGE, '-inf', '(' .. cutoff, 'LIMIT', 0, budget - n)
    for _, member in ipairs(old) do
      local seq = tonumber(member)
      local packed = entry(seq)
      if packed then
        drop(seq, packed, dropped)
        n = n + 1
      else
        redis.call('ZREM', AGE, member)
      end
    end
  end
  return n
end

-- What the retention index holds for this conversation: its span and oldest ts.
local function state(last)
  last = last or tonumber(redis.call('GET', SEQ) or '0')
  local first = merged(0, last, 1, false)
  local count = 0
  if #first > 0 then count = last - first[1][1] + 1 end
  local oldest = redis.call('ZRANGE', AGE, 0, 0, 'WITHSCORES')
  return count, oldest[2] or '+inf'
end
"""

# ARGV: mid, conv, ts, sender, kind, body, cid, room, to, which of cid/room/to are set ("101"),
# channel, retention count, age cutoff, trim budget, origin ('' for none: published, not stored),
# target ('' for a message; the mid a change edits, deletes or reacts to), max reactions,
# reply_to ('' for none: the mid a reply answers), mentioned users (joined by spaces, '' for
# none).
# Returns {duplicate, packed, receipt level (-1: not direct), span, oldest ts, dropped, vacated};
# for a change the store refuses, {2, reason, -1, span, oldest ts, {}, {}}; for a reaction that
# changes nothing, {3, last seq, -1, span, oldest ts, {}, {}}; a refused reply is refused like a
# change.
# A message's reactions live in its entry as it is now: ``reactions``, a list of {key, {users}}
# in the order keys were first chosen (a reaction moves the message into ``changed``).
_APPEND = (
    "#!lua\n"
    + _CONVERSATION_PRELUDE
    + r"""
local mid, sender, given = ARGV[1], ARGV[4], ARGV[10]
local has_cid, has_room = given:sub(1, 1) == '1', given:sub(2, 2) == '1'
local has_to = given:sub(3, 3) == '1'
local field
if has_cid then
  field = sender .. '\31' .. ARGV[7]
  local original = redis.call('HGET', CIDS, field)
  local seq = original and redis.call('HGET', MIDS, original)
  local packed = seq and entry(seq)
  if packed then
    local level = tonumber(redis.call('HGET', RECEIPTS, original) or '-1')
    local span, oldest = state()
    return {1, packed, level, span, oldest, {}, {}}
  end
end
local target = ARGV[16]
local tseq, t
if target ~= '' then
  -- A change: its message must be here, a message (not a change) and not deleted.
  tseq = redis.call('HGET', MIDS, target)
  local tpacked = tseq and entry(tseq)
  t = tpacked and cmsgpack.unpack(tpacked)
  local reason
  if not t or t.target then reason = 'unknown' elseif t.deleted then reason = 'deleted' end
  local kind = ARGV[5]
  if not reason and (kind == 'react' or kind == 'unreact') then
    local key, reactions, found, held = ARGV[6], t.reactions or {}, nil, nil
    for i, r in ipairs(reactions) do
      if r[1] == key then
        found = i
        for j, user in ipairs(r[2]) do if user == sender then held = j end end
      end
    end
    if kind == 'react' and not found and #reactions >= tonumber(ARGV[17]) then
      reason = 'too_many_reactions'
    elseif (kind == 'react') == (held ~= nil) then
      local span, oldest = state()
      return {3, tonumber(redis.call('GET', SEQ) or '0'), -1, span, oldest, {}, {}}
    elseif kind == 'react' then
      if found then
        table.insert(reactions[found][2], sender)
      else
        reactions[#reactions + 1] = {key, {sender}}
      end
    else
      table.remove(reactions[found][2], held)
      if #reactions[found][2] == 0 then table.remove(reactions, found) end
    end
    if #reactions == 0 then t.reactions = nil else t.reactions = reactions end
  end
  if reason then
    local span, oldest = state()
    return {2, reason, -1, span, oldest, {}, {}}
  end
end
local reply_to, thread = ARGV[18], nil
if reply_to ~= '' then
  -- A reply: the message it answers must be here, a message and not deleted.
  local pseq = redis.call('HGET', MIDS, reply_to)
  local ppacked = pseq and entry(pseq)
  local p = ppacked and cmsgpack.unpack(ppacked)
  local reason
  if not p or p.target then reason = 'unknown' elseif p.deleted then reason = 'deleted' end
  if reason then
    local span, oldest = state()
    return {2, reason, -1, span, oldest, {}, {}}
  end
  thread = p.thread or reply_to
end
local seq = redis.call('INCR', SEQ)
local msg = {mid = mid, conv = ARGV[2], seq = seq, ts = tonumber(ARGV[3]), sender = sender,
             kind = ARGV[5], body = ARGV[6]}
if has_cid then msg.cid = ARGV[7] end
if has_room then msg.room = ARGV[8] end
if has_to then msg.to = ARGV[9] end
if t then msg.target = target end
if thread then msg.reply_to, msg.thread = reply_to, thread end
if ARGV[19] ~= '' then
  local named = {}
  for user in string.gmatch(ARGV[19], '%S+') do named[#named + 1] = user end
  msg.mentions = named
end
local packed = cmsgpack.pack(msg)
redis.call('XADD', LOG, id(seq), 'm', packed)
redis.call('HSET', MIDS, mid, seq)
redis.call('ZADD', AGE, ARGV[3], rank(seq))
if has_cid then redis.call('HSET', CIDS, field, mid) end
if has_to and not t then redis.call('HSET', RECEIPTS, mid, 0) end
if thread then count_reply(msg, seq) end
if not t then
  redis.call('ZADD', UNREAD, seq, rank(seq))
  redis.call('ZADD', OWN, 0, sender .. '\31' .. rank(seq))
  for _, user in ipairs(msg.mentions or {}) do
    redis.call('ZADD', MENTIONED, 0, user .. '\31' .. rank(seq))
  end
end
if t then
  -- Change the message in place; a delete erases its body and its earlier edits' bodies.
  local edits = t.edits or {}
  t.edits = nil
  if ARGV[5] == 'edit' then
    t.body, t.edited = ARGV[6], tonumber(ARGV[3])
    edits[#edits + 1] = seq
    t.edits = edits
  elseif ARGV[5] == 'react' or ARGV[5] == 'unreact' then
    if #edits > 0 then t.edits = edits end
  else
    uncount(tonumber(tseq), t)
    vacate(t)
    t.body, t.deleted, t.edited, t.reactions, t.mentions = "", true, nil, nil, nil
    for _, eseq in ipairs(edits) do
      local e = entry(eseq)
      if e then
        e = cmsgpack.unpack(e)
        e.body, e.deleted = '', true
        rewrite(eseq, cmsgpack.pack(e))
      end
    end
  end
  rewrite(tonumber(tseq), cmsgpack.pack(t))
  if ARGV[5] == 'delete' and t.thread then uncount_reply(t, tonumber(tseq)) end
end
if ARGV[15] ~= '' then
  msg.origin = ARGV[15]
  redis.call('PUBLISH', ARGV[11], cmsgpack.pack(msg))
else
  redis.call('PUBLISH', ARGV[11], packed)
end
local dropped = {}
local span, oldest = state(seq)
local max_count, cutoff = tonumber(ARGV[12]), ARGV[13]
if span > max_count or tonumber(oldest) < tonumber(cutoff) then
  retain(max_count, cutoff, tonumber(ARGV[14]), dropped)
  span, oldest = state(seq)
end
return {0, packed, (has_to and not t) and 0 or -1, span, oldest, dropped, VACATED}
"""
)

# ARGV: low seq, high seq ('': the last), count, '1' newest first, '1' messages only (skip the
# changes). Returns {last seq, packed...}: up to count entries of the merged log (see the module
# docstring), read at one instant.
_READ = (
    "#!lua flags=no-writes\n"
    + _CONVERSATION_PRELUDE
    + r"""
local last = tonumber(redis.call('GET', SEQ) or '0')
local low, high, n = tonumber(ARGV[1]), last, tonumber(ARGV[3])
if ARGV[2] ~= '' then high = math.min(last, tonumber(ARGV[2])) end
local rev, messages_only = ARGV[4] == '1', ARGV[5] == '1'
local out = {}
while #out < n do
  local chunk = merged(low, high, n, rev)
  for _, e in ipairs(chunk) do
    if #out == n then break end
    if not messages_only or not cmsgpack.unpack(e[2]).target then out[#out + 1] = e[2] end
  end
  if #chunk < n then break end
  if rev then high = chunk[#chunk][1] - 1 else low = chunk[#chunk][1] + 1 end
end
table.insert(out, 1, last)
return out
"""
)

# KEYS: the conversation's, then a scratch key on its slot. Rewrites the log with the entries
# it holds, 100 at a time (a log of large messages is never all in the script's memory), so
# that the bytes of deleted entries are freed. Returns how many entries it holds.
_COMPACT = (
    "#!lua\n"
    + _CONVERSATION_PRELUDE
    + r"""
local OLD = KEYS[12]
if redis.call('EXISTS', LOG) == 0 then return 0 end
redis.call('RENAME', LOG, OLD)
local n, after = 0, '-'
while true do
  local chunk = redis.call('XRANGE', OLD, after, '+', 'COUNT', 100)
  for _, e in ipairs(chunk) do redis.call('XADD', LOG, e[1], 'm', e[2][2]) end
  n = n + #chunk
  if #chunk < 100 then break end
  after = '(' .. chunk[#chunk][1]
end
redis.call('DEL', OLD)
return n
"""
)

# ARGV: root mid, low seq, high seq ('': the last), count, '1' newest first. Returns {root packed
# (false: not retained, a change or a reply), packed...}: up to count replies of the thread
# within the seqs, read at one instant with their root.
_THREAD = (
    "#!lua flags=no-writes\n"
    + _CONVERSATION_PRELUDE
    + r"""
local rseq = redis.call('HGET', MIDS, ARGV[1])
local root = rseq and entry(rseq)
if not root then return {false} end
local r = cmsgpack.unpack(root)
if r.target or r.thread then return {false} end
local out = {root}
local last = tonumber(redis.call('GET', SEQ) or '0')
local low, high = tonumber(ARGV[2]), last
if ARGV[3] ~= '' then high = math.min(last, tonumber(ARGV[3])) end
if low > high then return out end
local prefix = 'a' .. ARGV[1]
local lo, hi = '[' .. prefix .. rank(low), '[' .. prefix .. rank(high)
local members
if ARGV[5] == '1' then
  members = redis.call('ZREVRANGEBYLEX', THREADS, hi, lo, 'LIMIT', 0, tonumber(ARGV[4]))
else
  members = redis.call('ZRANGEBYLEX', THREADS, lo, hi, 'LIMIT', 0, tonumber(ARGV[4]))
end
for _, member in ipairs(members) do
  local e = entry(tonumber(string.sub(member, #prefix + 1)))
  if e then out[#out + 1] = e end
end
return out
"""
)

# ARGV: max_count (0: none), cutoff ('': none), budget. Returns {removed, span, oldest, dropped,
# vacated}.
_RETAIN = (
    "#!lua\n"
    + _CONVERSATION_PRELUDE
    + r"""
local dropped = {}
local n = retain(tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), dropped)
local span, oldest = state()
return {n, span, oldest, dropped, VACATED}
"""
)

# ARGV: user. Returns the conversation's last seq when user has no message in ``own``, else
# false: whether an entry of their authored set is stale.
_VACANT = (
    "#!lua flags=no-writes\n"
    + _CONVERSATION_PRELUDE
    + r"""
if vacant(ARGV[1]) then return tonumber(redis.call('GET', SEQ) or '0') end
return false
"""
)

# ARGV: after ('' from the first), count. Returns {sender, seq of their latest message, ...}:
# up to count of the senders in ``own`` after the sender ``after``, in id order (one seek each).
_AUTHORS = (
    "#!lua flags=no-writes\n"
    + _CONVERSATION_PRELUDE
    + r"""
local out, low = {}, '-'
if ARGV[1] ~= '' then low = '(' .. ARGV[1] .. '\32' end
for _ = 1, tonumber(ARGV[2]) do
  local first = redis.call('ZRANGEBYLEX', OWN, low, '+', 'LIMIT', 0, 1)[1]
  if not first then break end
  local sender = string.match(first, '^(.-)\31')
  local last = redis.call('ZREVRANGEBYLEX', OWN, '(' .. sender .. '\32', '[' .. sender .. '\31',
                          'LIMIT', 0, 1)[1]
  out[#out + 1] = sender
  out[#out + 1] = tonumber(string.sub(last, #sender + 2))
  low = '(' .. sender .. '\32'
end
return out
"""
)

# KEYS: the user's authored set. ARGV: conv, seq. Forgets conv when the user's latest message
# there, as the set knows it, is at or below seq: the user had no live message left there at
# seq (a later message of theirs, whose second step may come first, is kept).
_FORGET_AUTHORED = r"""#!lua
local known = redis.call('ZSCORE', KEYS[1], ARGV[1])
if known and tonumber(known) <= tonumber(ARGV[2]) then redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
"""

# ARGV: mid, user, level. Returns {sender, previous level} when the receipt advanced, else nil.
_MARK = (
    "#!lua\n"
    + _CONVERSATION_PRELUDE
    + r"""
local current = redis.call('HGET', RECEIPTS, ARGV[1])
local seq = current and redis.call('HGET', MIDS, ARGV[1])
local packed = seq and entry(seq)
if not packed then return false end
local m = cmsgpack.unpack(packed)
if m.to ~= ARGV[2] or tonumber(current) >= tonumber(ARGV[3]) then return false end
redis.call('HSET', RECEIPTS, ARGV[1], ARGV[3])
return {m.sender, tonumber(current)}
"""
)

# ARGV: mids. Returns, per mid, the packed message (nil when not retained) and its receipt level.
_LOOKUP = (
    "#!lua flags=no-writes\n"
    + _CONVERSATION_PRELUDE
    + r"""
local found = {}
for i, mid in ipairs(ARGV) do
  local seq = redis.call('HGET', MIDS, mid)
  found[2 * i - 1] = (seq and entry(seq)) or false
  found[2 * i] = tonumber(redis.call('HGET', RECEIPTS, mid) or '-1')
end
return found
"""
)

# ARGV: user, marker. Returns {last seq, unread, mentions} of the messages after the marker,
# uncapped: each a ZCOUNT or ZLEXCOUNT, O(log n).
_COUNTS = (
    "#!lua flags=no-writes\n"
    + _CONVERSATION_PRELUDE
    + r"""
local user, marker = ARGV[1], tonumber(ARGV[2])
local last = tonumber(redis.call('GET', SEQ) or '0')
if last <= marker then return {last, 0, 0} end
local from, to = user .. '\31' .. rank(marker + 1), '(' .. user .. '\32'
local all = redis.call('ZCOUNT', UNREAD, '(' .. marker, '+inf')
local own = redis.call('ZLEXCOUNT', OWN, '[' .. from, to)
return {last, all - own, redis.call('ZLEXCOUNT', MENTIONED, '[' .. from, to)}
"""
)

# KEYS: the user's markers. ARGV: conv, seq (already clamped to the conversation's last).
# Moves the marker forward only; returns {marker before, marker after}.
_MOVE_MARKER = r"""#!lua
local old = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local new = tonumber(ARGV[2])
if new <= old then return {old, old} end
redis.call('HSET', KEYS[1], ARGV[1], new)
return {old, new}
"""

# KEYS: inbox, pending, order. ARGV: mid, ts, seq, conv, channel, packed.
# Idempotent by mid: adds the message to the recipient's pending index (and publishes it on the
# recipient's channel) only the first time. Returns 1 when added.
_PENDING_ADD = r"""#!lua
local mid = ARGV[1]
if redis.call('HEXISTS', KEYS[1], mid) == 1 then return 0 end
local order = redis.call('INCR', KEYS[3])
local member = string.format('%015d%015d', tonumber(ARGV[3]), order) .. mid .. '\31' .. ARGV[4]
redis.call('HSET', KEYS[1], mid, member)
redis.call('ZADD', KEYS[2], ARGV[2], member)
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1
"""

# KEYS: inbox, pending. ARGV: mid, forget ("1": the message is gone, drop it from the inbox too).
_PENDING_REMOVE = r"""#!lua
local member = redis.call('HGET', KEYS[1], ARGV[1])
if not member then return 0 end
redis.call('ZREM', KEYS[2], member)
if ARGV[2] == '1' then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 1
"""


@dataclass(frozen=True, slots=True)
class _Touched:
    """What a conversation script reports for the indexes on other shards."""

    span: int
    oldest: float
    dropped: list[tuple[str, str | None]]
    vacated: list[tuple[str, int]]
    """Each author who has no live message left in the conversation, and its last seq then."""

    @classmethod
    def from_reply(cls, span: Any, oldest: Any, dropped: Any, vacated: Any) -> _Touched:
        pairs = [
            (dropped[i].decode(), dropped[i + 1].decode() or None)
            for i in range(0, len(dropped), 2)
        ]
        authors = [(vacated[i].decode(), int(vacated[i + 1])) for i in range(0, len(vacated), 2)]
        return cls(int(span), float(oldest), pairs, authors)


class RedisStore(Store):
    """The message store in the Redis behind ``client``; see the module docstring.

    ``namespace`` prefixes every key, so several stores can share one Redis. Appends keep their
    own conversation within ``retention_count`` messages and ``max_age_ms`` of the message being
    appended (removing at most two messages each); ``prune`` sweeps the rest. The caller owns
    ``client`` unless the store was made by ``from_url``.

    Warning: a client that retries on timeouts (redis-py's default) may run an append pipeline
    twice when Redis answered late; messages with a cid come back as duplicates, but a message
    without one is then stored twice. ``from_url`` makes a client that never retries: the
    store's caller retries failed batches itself, with their cids.

    Under gevent, call the store on the hub, not from a thread pool: its I/O already yields to
    other greenlets, and a client's connections belong to the hub of the thread that opened
    them.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        namespace: str = "actorim",
        retention_count: int = DEFAULT_MAX_COUNT,
        max_age_ms: int = DEFAULT_MAX_AGE_MS,
        outbox: OutboxFor | None = None,
        min_replicas: int = 0,
        wait_timeout_ms: int = 500,
    ) -> None:
        if retention_count < 1 or max_age_ms < 0:
            raise ValueError(
                f"retention_count must be at least 1 and max_age_ms not negative, got"
                f" {retention_count} and {max_age_ms}"
            )
        if min_replicas < 0 or wait_timeout_ms < 1:
            raise ValueError(
                f"min_replicas must not be negative and wait_timeout_ms at least 1, got"
                f" {min_replicas} and {wait_timeout_ms}"
            )
        if client.get_encoder().decode_responses:
            raise ValueError("the Redis client must be made with decode_responses=False")
        self._client = client
        self._sharded = is_sharded(client)
        self._min_replicas = min_replicas
        self._wait_timeout_ms = wait_timeout_ms
        self._keys = StoreKeys(namespace)
        self._retention_count = retention_count
        self._max_age_ms = max_age_ms
        self._owns_client = False
        self._closed = False
        self._where = _where(client)
        self._append_script = register_script(client, _APPEND)
        self._retain_script = register_script(client, _RETAIN)
        self._mark_script = register_script(client, _MARK)
        self._lookup_script = register_script(client, _LOOKUP)
        self._read_script = register_script(client, _READ)
        self._thread_script = register_script(client, _THREAD)
        self._compact_script = register_script(client, _COMPACT)
        self._pending_add = register_script(client, _PENDING_ADD)
        self._pending_remove = register_script(client, _PENDING_REMOVE)
        self._vacant_script = register_script(client, _VACANT)
        self._authors_script = register_script(client, _AUTHORS)
        self._forget_authored = register_script(client, _FORGET_AUTHORED)
        self._outbox_for = outbox
        self._outbox = RedisOutbox(client, namespace)
        self._rooms = RedisRooms(client, namespace)
        self._moderation = RedisModeration(client, namespace)
        self._counts_script = register_script(client, _COUNTS)
        self._move_marker_script = register_script(client, _MOVE_MARKER)
        if self._sharded:  # a cluster's pipelines need them loaded beforehand
            with self._calling("load the store's scripts"):
                load_scripts(client, self._scripts())
        self.epoch()
        self._warn_unless_durable()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisStore:
        """A store on a client of its own for ``url`` (any topology of
        ``actorim.redis.topology``; no retries), closed with the store."""
        client = make_client(url)
        try:
            store = cls(client, **options)
        except BaseException:
            client.close()
            raise
        store._owns_client = True
        return store

    @property
    def keys(self) -> StoreKeys:
        """The names of this store's keys and channels (what a subscriber listens to)."""
        return self._keys

    def _warn_unless_durable(self) -> None:
        try:
            reply: dict[Any, Any] = answer(self._client.config_get("append*"))
        except REDIS_ERRORS:
            return  # CONFIG is often disabled on managed Redis; the operator's docs say what to set
        config = {_text(k): _text(v) for k, v in reply.items()}
        if config.get("appendonly") != "yes" or config.get("appendfsync") != "always":
            logger.warning(
                "Redis at %s runs with appendonly=%s appendfsync=%s: acknowledged messages can"
                " be lost if it stops; set appendonly yes and appendfsync always",
                self._where,
                config.get("appendonly", "?"),
                config.get("appendfsync", "?"),
            )

    # -- calling Redis ----------------------------------------------------------------------

    def _live(self) -> None:
        if self._closed:
            raise StoreError(f"the Redis message store at {self._where} is closed")

    def _scripts(self) -> list[Script]:
        """Every script of the store and its parts (to load again after a failover)."""
        parts = (self, self._rooms, self._moderation, self._outbox)
        return [v for part in parts for v in vars(part).values() if isinstance(v, Script)]

    @contextmanager
    def _calling(self, what: str, *, partial: str = "") -> Iterator[None]:
        self._live()
        try:
            yield
        except NoScriptError as exc:
            # A replica took over and has no scripts: nothing of the call ran; load them for
            # the retry.
            with suppress(*REDIS_ERRORS):
                load_scripts(self._client, self._scripts())
            raise StoreUnavailable(
                f"could not {what}: Redis at {self._where} had just changed masters ({exc}); retry"
            ) from exc
        except _AWAY as exc:
            raise StoreUnavailable(
                f"could not {what}: Redis at {self._where} did not answer ({exc}){partial};"
                " check that Redis is running and reachable"
            ) from exc
        except redis.RedisError as exc:
            raise StoreError(
                f"could not {what}: Redis at {self._where} refused: {exc}{partial}"
            ) from exc

    def _pipeline(self) -> Any:
        return self._client.pipeline(transaction=False)

    def _execute_durably(self, pipe: Any, written: Sequence[str], what: str) -> list[Any]:
        """Run ``pipe``; with ``min_replicas``, then wait for that many replicas of each master
        that holds a ``written`` key to confirm every write (``WAIT``): a StoreUnavailable if
        they do not within ``wait_timeout_ms``, the write made but not acknowledged."""
        waits = queue_wait(pipe, self._client, self._min_replicas, self._wait_timeout_ms, written)
        replies: list[Any] = pipe.execute()
        if waits and not replicated(replies[-waits:], self._min_replicas):
            raise StoreUnavailable(
                f"could not {what}: fewer than {self._min_replicas} Redis replicas confirmed it"
                f" within {self._wait_timeout_ms} ms (redis_min_replicas); send it again with"
                " the same cids"
            )
        return replies[: len(replies) - waits]

    # -- the Store interface ----------------------------------------------------------------

    def epoch(self) -> str:
        with self._calling("read the store's epoch"):
            pipe = self._pipeline()
            pipe.set(self._keys.epoch, secrets.token_hex(8), nx=True)
            pipe.get(self._keys.epoch)
            _, epoch = pipe.execute()
        return bytes(epoch).decode()

    def append_batch(self, msgs: Sequence[NewMessage]) -> list[StoredMessage]:
        for msg in msgs:
            check_new_message(msg)
        self._live()
        if not msgs:
            return []
        partial = "; some of the batch may be stored: send it again with the same cids"
        with self._calling(f"store {len(msgs)} messages", partial=partial):
            pipe = self._pipeline()
            for msg in msgs:
                self._append_script(
                    keys=self._keys.conversation(msg.conv), args=self._append_args(msg), client=pipe
                )
            written = [self._keys.conversation(msg.conv)[0] for msg in msgs]
            replies = self._execute_durably(pipe, written, f"store {len(msgs)} messages")
            stored = []
            touched: list[tuple[str, _Touched]] = []
            made = []
            for msg, reply in zip(msgs, replies, strict=True):
                duplicate, packed, level, span, oldest, dropped, vacated = reply
                touched.append((msg.conv, _Touched.from_reply(span, oldest, dropped, vacated)))
                if duplicate == _REFUSED:
                    stored.append(refused(msg, bytes(packed).decode()))
                    continue
                if duplicate == _UNCHANGED:
                    stored.append(unchanged(msg, int(packed)))
                    continue
                message = decode_published(packed)
                stored.append(replace(message, duplicate=bool(duplicate)))
                made.append((stored[-1], bytes(packed), int(level), msg.origin))
            self._index_appended(made, touched)
        return stored

    def _append_args(self, msg: NewMessage) -> list[str | int | bytes]:
        given = "".join("0" if v is None else "1" for v in (msg.cid, msg.room, msg.to))
        return [
            new_mid(msg.ts),
            msg.conv,
            msg.ts,
            msg.sender,
            msg.kind,
            msg.body,
            msg.cid or "",
            msg.room or "",
            msg.to or "",
            given,
            self._keys.conversation_channel(msg.conv),
            self._retention_count,
            msg.ts - self._max_age_ms,
            _TRIM_PER_APPEND,
            msg.origin or "",
            msg.target or "",
            msg.max_reactions,
            msg.reply_to or "",
            " ".join(msg.mentions),
        ]

    def _index_appended(
        self,
        made: list[tuple[StoredMessage, bytes, int, str | None]],
        touched: list[tuple[str, _Touched]],
    ) -> None:
        """The second step: the indexes on other shards, and the recipients' channels.

        Every write here is idempotent, and runs for resends too, so resending a batch whose
        second step failed completes it.
        """
        keys = self._keys
        pipe = self._pipeline()
        by_bucket: dict[str, dict[str, str]] = {}
        for msg, *_ in made:
            by_bucket.setdefault(keys.mid_index(msg.mid), {})[msg.mid] = msg.conv
        for bucket, mapping in by_bucket.items():
            pipe.hset(bucket, mapping=mapping)
        if self._outbox_for is not None:
            made_for = self._outbox_for
            entries = [e for msg, *_ in made for e in made_for(replace(msg, duplicate=False))]
            self._outbox.queue_add(pipe, entries)
        for msg, data, level, origin in made:
            if msg.kind == DELETE and not msg.duplicate:
                pipe.sadd(keys.erased_index(msg.conv), msg.conv)
            if msg.target is None and not msg.deleted:
                # Its author's latest there, as far as this step knows (GT: a later one's
                # second step may have come first). A resend of one deleted since adds nothing.
                pipe.zadd(keys.authored(msg.sender), {msg.conv: msg.seq}, gt=True)
            if msg.to is None:
                continue
            if msg.target is not None:
                # A change of a direct message: to both users' devices, never pending.
                if not msg.duplicate:
                    publish(pipe, self._sharded, keys.user_channel(msg.to), data)
                    if msg.sender != msg.to:
                        sent = _with_origin(data, origin)
                        publish(pipe, self._sharded, keys.user_channel(msg.sender), sent)
                continue
            self._rooms.met(pipe, msg.sender, msg.to)
            if level == _PENDING:
                self._pending_add(
                    keys=keys.user(msg.to),
                    args=[msg.mid, msg.ts, msg.seq, msg.conv, keys.user_channel(msg.to), data],
                    client=pipe,
                )
            if not msg.duplicate and msg.sender != msg.to:
                sent = _with_origin(data, origin)
                publish(pipe, self._sharded, keys.user_channel(msg.sender), sent)
        # Last: a later message of the batch may have trimmed an earlier one, whose entries
        # just queued must then go again.
        self._reindex(pipe, touched, exact=False)
        # A direct message's pending entry is what brings it to an offline recipient: as
        # durable as the message.
        inboxes = [keys.user(m.to)[0] for m, _, level, _ in made if m.to and level == _PENDING]
        self._execute_durably(pipe, inboxes, "index the messages for their recipients")

    def _reindex(self, pipe: Any, touched: list[tuple[str, _Touched]], *, exact: bool) -> None:
        """Queue the retention-index updates and other-shard clean-ups a script reported.

        After an append (``exact`` False) the index only moves towards "needs pruning" (oldest
        down, span up), so concurrent appends and prunes cannot hide a conversation from
        prune. After a prune it is set to the values the prune left.
        """
        oldest: dict[str, float] = {}
        span: dict[str, int] = {}
        for conv, t in touched:
            oldest[conv] = t.oldest if exact else min(t.oldest, oldest.get(conv, t.oldest))
            span[conv] = t.span if exact else max(t.span, span.get(conv, t.span))
            self._forget(pipe, t.dropped)
            for author, seq in t.vacated:
                self._unauthor(pipe, author, conv, seq)
        for conv, ts in oldest.items():
            oldest_key, span_key = self._keys.retention_index(conv)
            pipe.zadd(oldest_key, {conv: ts}, lt=not exact)
            pipe.zadd(span_key, {conv: span[conv]}, gt=not exact)

    def _forget(self, pipe: Any, dropped: list[tuple[str, str | None]]) -> None:
        """Queue the removal of dropped messages from the indexes on other shards."""
        for mid, to in dropped:
            pipe.hdel(self._keys.mid_index(mid), mid)
            if to is not None:
                self._pending_remove(keys=self._keys.user(to)[:2], args=[mid, "1"], client=pipe)

    def _unauthor(self, pipe: Any, user: str, conv: str, seq: int) -> None:
        """Queue the removal of ``conv`` from ``user``'s authored set: they had no live message
        there when its last seq was ``seq``."""
        self._forget_authored(keys=[self._keys.authored(user)], args=[conv, seq], client=pipe)

    def last_seq(self, conv: str) -> int:
        with self._calling("read the last seq"):
            return int(answer(self._client.get(self._keys.conversation(conv)[0])) or 0)

    def authored(self, conv: str, sender: str, *, limit: int) -> list[StoredMessage]:
        """From the conversation's ``own`` index (a message leaves it when deleted): one range
        read, then each message read as it is now, in one pipeline. Messages stored before the
        index existed are not in it."""
        check_limit(limit)
        keys = self._keys.conversation(conv)
        own = keys[9]
        low, high = b"[" + sender.encode() + b"\x1f", b"(" + sender.encode() + b"\x20"
        with self._calling(f"read the messages of {sender!r}"):
            members = answer(self._client.zrangebylex(own, low, high, start=0, num=limit))
            if not members:
                return []
            pipe = self._client.pipeline(transaction=False)
            for member in members:
                seq = int(bytes(member).rpartition(b"\x1f")[2])
                self._read_script(keys=keys, args=[seq, seq, 1, "", ""], client=pipe)
            replies = pipe.execute()
        found = [decode_published(entry) for _, *entries in replies for entry in entries]
        return [m for m in found if m.sender == sender and m.target is None and not m.deleted]

    def authored_conversations(self, user: str, *, limit: int) -> list[str]:
        """From ``user``'s authored set, each entry checked against its conversation's ``own``
        index: the set is written by the second step of an append (another shard than the
        conversation's), so an entry can outlive the user's last message there (a second step
        lost, or run out of order). Such a stale entry is skipped and forgotten, so it costs
        one more read once. Ordered by the seq of the user's latest message in each."""
        check_limit(limit)
        key = self._keys.authored(user)
        found: list[str] = []
        stale: list[tuple[str, int]] = []
        start = 0
        with self._calling(f"read where {user!r} wrote"):
            while len(found) < limit:
                want = limit - len(found)
                members = answer(self._client.zrange(key, start, start + want - 1))
                page = [bytes(c).decode() for c in members]
                if not page:
                    break
                start += len(page)
                pipe = self._pipeline()
                for conv in page:
                    keys = self._keys.conversation(conv)
                    self._vacant_script(keys=keys, args=[user], client=pipe)
                for conv, vacant in zip(page, pipe.execute(), strict=True):
                    if vacant is None:
                        found.append(conv)
                    else:
                        stale.append((conv, int(vacant)))
            if stale:
                pipe = self._pipeline()
                for conv, seq in stale:
                    self._unauthor(pipe, user, conv, seq)
                pipe.execute()
        return found

    def backfill_authored(self, *, batch: int = 1_000) -> int:
        """Fill the authored sets from the conversations' ``own`` indexes: once, after
        upgrading from a version without them, so that an erase finds the messages stored
        before (docs/deploy.md). It walks every conversation the retention index holds,
        ``batch`` at a time, and may run while nodes serve (each entry is what an append's
        second step writes). Idempotent. Returns how many (user, conversation) entries it
        wrote."""
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        written = 0
        with self._calling("fill the authored sets"):
            for shard in range(INDEX_SHARDS):
                oldest_key = self._keys.retention_shard(shard)[0]
                for conv_bytes, _ in self._client.zscan_iter(oldest_key, count=batch):
                    written += self._backfill_conversation(bytes(conv_bytes).decode(), batch)
        return written

    def _backfill_conversation(self, conv: str, batch: int) -> int:
        keys = self._keys.conversation(conv)
        written, after = 0, ""
        while True:
            found = self._authors_script(keys=keys, args=[after, batch])
            if not found:
                return written
            pipe = self._pipeline()
            for i in range(0, len(found), 2):
                user = bytes(found[i]).decode()
                pipe.zadd(self._keys.authored(user), {conv: int(found[i + 1])}, gt=True)
            pipe.execute()
            written += len(found) // 2
            after = bytes(found[-2]).decode()

    def since(
        self, conv: str, seq: int, *, limit: int, max_bytes: int | None = None
    ) -> tuple[list[StoredMessage], bool]:
        check_limit(limit)
        keys = self._keys.conversation(conv)
        # Without a byte bound one read takes the page; with one, small pages until it is met.
        count = limit + 1 if max_bytes is None else min(limit + 1, _SINCE_PAGE)
        low = max(seq + 1, 0)
        with self._calling("read missed messages"):
            last, *entries = self._read_script(keys=keys, args=[low, "", count, "", ""])
        last = int(last)

        def read() -> Iterator[StoredMessage]:
            batch = [decode_published(packed) for packed in entries]
            while True:
                yield from batch
                if len(batch) < count:
                    return
                after = batch[-1].seq
                if after >= last:
                    return
                # Up to the snapshot's last seq: what was appended since is not part of it.
                with self._calling("read missed messages"):
                    _, *more = self._read_script(keys=keys, args=[after + 1, last, count, "", ""])
                batch = [decode_published(packed) for packed in more]

        page, cut = bounded_page(read(), limit=limit, max_bytes=max_bytes)
        # Seqs were given without gaps, so the page is everything after `seq` exactly when it
        # holds as many messages as were ever given after it (retention between two reads
        # leaves the page short: incomplete, as it should be).
        return page, not cut and len(page) == max(0, last - seq)

    def history(
        self,
        conv: str,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int,
        reader: str | None = None,
    ) -> tuple[list[StoredMessage], bool]:
        check_limit(limit)
        self._live()
        if (before is not None and before <= 1) or (
            before is not None and after is not None and before - after <= 1
        ):
            return [], False
        low = 0 if after is None else max(after + 1, 0)
        high = "" if before is None else before - 1
        newest_first = "1" if after is None else ""
        keys = self._keys.conversation(conv)
        with self._calling("read history"):
            _, *entries = self._read_script(
                keys=keys, args=[low, high, limit + 1, newest_first, "1"]
            )
        page = [_as_read(packed, reader) for packed in entries[:limit]]
        if after is None:
            page.reverse()
        return page, len(entries) > limit

    def thread(
        self,
        root: str,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int,
        reader: str | None = None,
    ) -> tuple[StoredMessage | None, list[StoredMessage], bool]:
        check_limit(limit)
        self._live()
        with self._calling("read a thread"):
            conv: bytes | None = answer(self._client.hget(self._keys.mid_index(root), root))
            if conv is None:
                return None, [], False
            low = 0 if after is None else max(after + 1, 0)
            high = "" if before is None else before - 1
            newest_first = "1" if after is None else ""
            found, *entries = self._thread_script(
                keys=self._keys.conversation(conv.decode()),
                args=[root, low, high, limit + 1, newest_first],
            )
        if found is None:
            return None, [], False
        page = [_as_read(packed, reader) for packed in entries[:limit]]
        if after is None:
            page.reverse()
        return _as_read(found, reader), page, len(entries) > limit

    def last_seqs(self, convs: Sequence[str]) -> dict[str, int]:
        """``Store.last_seqs`` in one pipeline."""
        self._live()
        with self._calling("read the last seqs"):
            pipe = self._pipeline()
            for conv in convs:
                pipe.get(self._keys.conversation(conv)[0])
            replies = pipe.execute() if convs else []
        return {conv: int(seq or 0) for conv, seq in zip(convs, replies, strict=True)}

    def latest(
        self, convs: Sequence[str], reader: str
    ) -> dict[str, tuple[int, StoredMessage | None]]:
        """``Store.latest`` in one pipeline: each conversation's seq and newest message."""
        self._live()
        with self._calling("read the latest messages"):
            pipe = self._pipeline()
            for conv in convs:
                keys = self._keys.conversation(conv)
                pipe.get(keys[0])
                self._read_script(keys=keys, args=[0, "", 1, "1", "1"], client=pipe)
            replies = pipe.execute() if convs else []
        result: dict[str, tuple[int, StoredMessage | None]] = {}
        for index, conv in enumerate(convs):
            seq, (_, *entries) = replies[2 * index], replies[2 * index + 1]
            last = _as_read(entries[0], reader) if entries else None
            result[conv] = (int(seq or 0), last)
        return result

    def get(self, mid: str) -> StoredMessage | None:
        with self._calling("read a message"):
            conv: bytes | None = answer(self._client.hget(self._keys.mid_index(mid), mid))
            if conv is None:
                return None
            keys = self._keys.conversation(conv.decode())
            packed, _ = self._lookup_script(keys=keys, args=[mid])
        return None if packed is None else replace(_as_read(packed, None), reactions=())

    def pending_for(
        self, user: str, *, limit: int, after: str | None = None
    ) -> list[StoredMessage]:
        check_limit(limit)
        inbox, pending, _ = self._keys.user(user)
        found: list[StoredMessage] = []
        stale: list[tuple[str, bool]] = []
        with self._calling("read pending messages"):
            cursor: tuple[float, bytes] | None = None
            if after is not None:
                # The score is the message's ts, which its mid is made from; the inbox keeps
                # the member of an acknowledged message (a pruned one resumes at its ms).
                member: bytes | None = answer(self._client.hget(inbox, after))
                cursor = (mid_ms(after), member or b"")
            while len(found) < limit:
                page = self._pending_after(pending, cursor, limit - len(found))
                if not page:
                    break
                cursor = page[-1]
                members = [member for _, member in page]
                entries = [_pending_parts(m) for m in members]
                by_conv: dict[str, list[str]] = {}
                for mid, conv in entries:
                    by_conv.setdefault(conv, []).append(mid)
                pipe = self._pipeline()
                for conv, mids in by_conv.items():
                    self._lookup_script(keys=self._keys.conversation(conv), args=mids, client=pipe)
                looked_up: dict[str, tuple[bytes | None, int]] = {}
                for mids, reply in zip(by_conv.values(), pipe.execute(), strict=True):
                    for i, mid in enumerate(mids):
                        looked_up[mid] = (reply[2 * i], int(reply[2 * i + 1]))
                for mid, _ in entries:
                    packed, level = looked_up[mid]
                    if packed is not None and level == _PENDING:
                        found.append(decode_published(packed))
                    else:
                        stale.append((mid, packed is None))
            if stale:
                pipe = self._pipeline()
                for mid, gone in stale:
                    self._pending_remove(
                        keys=(inbox, pending), args=[mid, "1" if gone else "0"], client=pipe
                    )
                pipe.execute()
        return found

    def _pending_after(
        self, pending: str, cursor: tuple[float, bytes] | None, count: int
    ) -> list[tuple[float, bytes]]:
        """Up to ``count`` (score, member) of the pending index after ``cursor``, in zset order
        (score, then member bytes): by score bounds, never ranks, so members removed behind the
        cursor meanwhile (acknowledged) cannot make the reader skip one."""
        client = self._client
        if cursor is None:
            pairs: list[tuple[bytes, float]] = answer(
                client.zrange(pending, 0, count - 1, withscores=True)
            )
            return [(score, member) for member, score in pairs]
        score, last = cursor
        # Members of the cursor's own score (messages of one millisecond: a handful).
        ties = [
            (score, member)
            for member, _ in answer(client.zrangebyscore(pending, score, score, withscores=True))
            if member > last
        ]
        if len(ties) >= count:
            return ties[:count]
        later: list[tuple[bytes, float]] = answer(
            client.zrangebyscore(
                pending, f"({score}", "+inf", start=0, num=count - len(ties), withscores=True
            )
        )
        return ties + [(s, member) for member, s in later]

    def mark(self, mid: str, user: str, status: ReceiptStatus) -> Receipt | None:
        return self.mark_batch([(mid, user, status)])[0]

    def mark_batch(self, marks: Sequence[tuple[str, str, ReceiptStatus]]) -> list[Receipt | None]:
        check_statuses(marks)
        self._live()
        if not marks:
            return []
        keys = self._keys
        results: list[Receipt | None] = [None] * len(marks)
        with self._calling(f"record {len(marks)} receipts"):
            pipe = self._pipeline()
            for mid, user, _ in marks:
                pipe.hget(keys.user(user)[0], mid)
            # Only the recipient's inbox holds the message; the rest stay None.
            found = [(i, m) for i, m in enumerate(pipe.execute()) if m is not None]
            pipe = self._pipeline()
            for i, member in found:
                mid, user, status = marks[i]
                conv = _pending_parts(member)[1]
                self._mark_script(
                    keys=keys.conversation(conv),
                    args=[mid, user, RECEIPT_LEVELS[status]],
                    client=pipe,
                )
            advanced = pipe.execute()
            pipe = self._pipeline()
            for (i, _), reply in zip(found, advanced, strict=True):
                if reply is None:
                    continue
                mid, user, status = marks[i]
                sender, previous = reply
                results[i] = Receipt(mid, sender.decode(), user, status)
                if int(previous) == _PENDING:
                    self._pending_remove(keys=keys.user(user)[:2], args=[mid, "0"], client=pipe)
            pipe.execute()
        return results

    def move_marker(self, user: str, conv: str, seq: int, *, cap: int) -> tuple[Counts, bool]:
        check_cap(cap)
        with self._calling("move a read marker"):
            last = int(answer(self._client.get(self._keys.conversation(conv)[0])) or 0)
            # The last seq only grows, so clamping to one read a moment ago is safe.
            old, new = self._move_marker_script(
                keys=[self._keys.markers(user)], args=[conv, advanced(0, seq, last)]
            )
            counted = self._counted(user, {conv: int(new)}, cap)
        return counted[conv], int(new) != int(old)

    def counts(self, user: str, convs: Sequence[str], *, cap: int) -> dict[str, Counts]:
        check_cap(cap)
        if not convs:
            self._live()
            return {}
        with self._calling("read unread counts"):
            found = answer(self._client.hmget(self._keys.markers(user), list(convs)))
            markers = {conv: int(m or 0) for conv, m in zip(convs, found, strict=True)}
            return self._counted(user, markers, cap)

    def _counted(self, user: str, markers: dict[str, int], cap: int) -> dict[str, Counts]:
        """The counts after each conversation's marker: one script each, one round trip."""
        pipe = self._pipeline()
        for conv, marker in markers.items():
            self._counts_script(
                keys=self._keys.conversation(conv), args=[user, marker], client=pipe
            )
        return {
            conv: Counts(int(last), marker, min(int(unread), cap), min(int(named), cap))
            for (conv, marker), (last, unread, named) in zip(
                markers.items(), pipe.execute(), strict=True
            )
        }

    def prune(
        self,
        *,
        now_ms: int,
        max_count: int = DEFAULT_MAX_COUNT,
        max_age_ms: int = DEFAULT_MAX_AGE_MS,
        budget: int = DEFAULT_PRUNE_BUDGET,
    ) -> int:
        check_prune(max_count=max_count, max_age_ms=max_age_ms, budget=budget)
        with self._calling("prune old messages"):
            cutoff = now_ms - max_age_ms
            deleted = self._prune_by_age(cutoff, budget)
            if deleted < budget:
                deleted += self._prune_by_count(max_count, budget - deleted)
            self._compact_erased()
        return deleted

    def _compact_erased(self) -> None:
        """Rewrite the logs that hold deleted bodies (see the module docstring), up to
        ``_PRUNE_BATCH`` per call."""
        pipe = self._pipeline()
        for shard in range(INDEX_SHARDS):
            pipe.spop(self._keys.erased_shard(shard), _PRUNE_BATCH)
        convs = sorted({conv.decode() for popped in pipe.execute() for conv in popped or ()})
        if not convs:
            return
        pipe = self._pipeline()
        for conv in convs[:_PRUNE_BATCH]:
            keys = self._keys.conversation(conv)
            self._compact_script(keys=[*keys, f"{keys[1]}:compacting"], args=[], client=pipe)
        for conv in convs[_PRUNE_BATCH:]:
            pipe.sadd(self._keys.erased_index(conv), conv)  # the next call's
        pipe.execute()

    def _prune_by_age(self, cutoff: int, budget: int) -> int:
        """Remove messages older than ``cutoff``, conversations with the oldest first."""
        left = budget
        for _ in range(_PRUNE_ROUNDS):
            if left == 0:
                break
            pipe = self._pipeline()
            for shard in range(INDEX_SHARDS):
                oldest_key = self._keys.retention_shard(shard)[0]
                pipe.zrangebyscore(
                    oldest_key, "-inf", f"({cutoff}", start=0, num=_PRUNE_BATCH, withscores=True
                )
            candidates = sorted(
                (score, conv.decode()) for shard in pipe.execute() for conv, score in shard
            )[:_PRUNE_BATCH]
            if not candidates:
                break
            pipe = self._pipeline()
            for _, conv in candidates:
                pipe.zcount(self._keys.conversation(conv)[4], "-inf", f"({cutoff}")
            counts = pipe.execute()
            shares = allot(counts, left)
            # A conversation with nothing old was indexed too low: visit it to fix the index.
            left -= self._retain(
                [
                    (conv, 0, str(cutoff), share)
                    for (_, conv), count, share in zip(candidates, counts, shares, strict=True)
                    if share > 0 or count == 0
                ]
            )
        return budget - left

    def _prune_by_count(self, max_count: int, budget: int) -> int:
        """Remove messages beyond the newest ``max_count`` of each conversation."""
        left = budget
        for _ in range(_PRUNE_ROUNDS):
            if left == 0:
                break
            pipe = self._pipeline()
            for shard in range(INDEX_SHARDS):
                span_key = self._keys.retention_shard(shard)[1]
                pipe.zrangebyscore(
                    span_key, f"({max_count}", "+inf", start=0, num=_PRUNE_BATCH, withscores=True
                )
            candidates = sorted(
                (conv.decode(), int(span)) for shard in pipe.execute() for conv, span in shard
            )[:_PRUNE_BATCH]
            if not candidates:
                break
            shares = allot([span - max_count for _, span in candidates], left)
            left -= self._retain(
                [
                    (conv, max_count, "", share)
                    for (conv, _), share in zip(candidates, shares, strict=True)
                ]
            )
        return budget - left

    def _retain(self, plan: list[tuple[str, int, str, int]]) -> int:
        """Run the retention script for each (conv, max_count, cutoff, budget); fix the index.

        A conversation with a budget of 0 is only re-indexed: its index entry was stale.
        Returns how many messages were removed.
        """
        if not plan:
            return 0
        pipe = self._pipeline()
        for conv, max_count, cutoff, share in plan:
            self._retain_script(
                keys=self._keys.conversation(conv), args=[max_count, cutoff, share], client=pipe
            )
        touched = []
        removed = 0
        for (conv, *_), reply in zip(plan, pipe.execute(), strict=True):
            count, span, oldest, dropped, vacated = reply
            removed += int(count)
            touched.append((conv, _Touched.from_reply(span, oldest, dropped, vacated)))
        pipe = self._pipeline()
        self._reindex(pipe, touched, exact=True)
        # An append that ran after the script but indexed itself before the line above would
        # have its older timestamp overwritten: read each conversation's oldest again.
        for conv, _ in touched:
            pipe.zrange(self._keys.conversation(conv)[4], 0, 0, withscores=True)
        rereads = pipe.execute()[-len(touched) :]
        pipe = self._pipeline()
        for (conv, t), reread in zip(touched, rereads, strict=True):
            if reread and reread[0][1] < t.oldest:
                pipe.zadd(self._keys.retention_index(conv)[0], {conv: reread[0][1]}, lt=True)
        pipe.execute()
        return removed

    # -- the webhook outbox (actorim/redis/outbox.py) ------------------------------------------

    def outbox_add(self, entries: Sequence[OutboxEntry]) -> None:
        with self._calling(f"add {len(entries)} webhook events"):
            self._outbox.add(entries)

    def outbox_due(
        self, endpoint: str, *, now_ms: int, limit: int, lease_ms: int
    ) -> list[OutboxEntry]:
        check_limit(limit)
        with self._calling("claim webhook deliveries"):
            return self._outbox.due(endpoint, now_ms=now_ms, limit=limit, lease_ms=lease_ms)

    def outbox_done(self, entry: OutboxEntry) -> None:
        with self._calling("forget a delivered webhook event"):
            self._outbox.done(entry)

    def outbox_retry(self, entry: OutboxEntry) -> None:
        with self._calling("reschedule a webhook delivery"):
            self._outbox.keep(entry)

    def outbox_bury(self, entry: OutboxEntry) -> None:
        with self._calling("move a webhook event to the dead-letter queue"):
            self._outbox.keep(entry)

    def dead_list(self, *, limit: int, after: str | None = None) -> list[OutboxEntry]:
        check_limit(limit)
        with self._calling("list the dead-letter queue"):
            return self._outbox.dead(limit=limit, after=after)

    def dead_retry(self, key: str, *, now_ms: int) -> bool:
        with self._calling("retry a dead webhook event"):
            return self._outbox.revive(key, now_ms=now_ms)

    def dead_delete(self, key: str) -> bool:
        with self._calling("delete a dead webhook event"):
            return self._outbox.delete_dead(key)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            try:
                self._client.close()
            except redis.RedisError as exc:
                raise StoreError(
                    f"could not close the Redis client for {self._where}: {exc}"
                ) from exc

    # -- membership and rooms (actorim.redis.rooms) -----------------------------------------

    # -- moderation (actorim/redis/moderation.py) ---------------------------------------------

    def standings(self, room: str, users: Sequence[str]) -> dict[str, Standing]:
        with self._calling(f"read standings in room {room!r}"):
            return self._moderation.standings(room, users)

    def mutes_of(self, user: str) -> dict[str, int]:
        with self._calling(f"read the mutes of {user!r}"):
            return self._moderation.mutes_of(user)

    def moderate(
        self,
        room: str,
        user: str,
        standing: Standing,
        entry: AuditEntry,
        events: Sequence[OutboxEntry] = (),
    ) -> None:
        with self._calling(f"{entry.action} {user!r} in room {room!r}"):
            self._moderation.moderate(room, user, standing, entry)
            if events:
                self._outbox.add(events)

    def audit(self, room: str, *, before: str | None = None, limit: int) -> list[AuditEntry]:
        check_limit(limit)
        with self._calling(f"read the audit log of room {room!r}"):
            return self._moderation.audit(room, before, limit)

    def join_room(self, user: str, room: str, *, max_rooms: int) -> JoinOutcome:
        with self._calling(f"add {user!r} to room {room!r}"):
            return self._rooms.join_room(user, room, max_rooms)

    def leave_room(self, user: str, room: str) -> bool:
        with self._calling(f"remove {user!r} from room {room!r}"):
            return self._rooms.leave_room(user, room)

    def rooms_of(self, user: str) -> list[str]:
        with self._calling(f"read the rooms of {user!r}"):
            return self._rooms.rooms_of(user)

    def members_of(
        self, room: str, *, after: str | None = None, limit: int
    ) -> tuple[list[str], bool]:
        check_limit(limit)
        with self._calling(f"read the members of {room!r}"):
            return self._rooms.members_of(room, after, limit)

    def room_info(self, rooms: Sequence[str]) -> dict[str, RoomInfo]:
        with self._calling("read rooms"):
            return self._rooms.room_info(rooms)

    def update_room(
        self, user: str, room: str, *, title: str | None = None, topic: str | None = None
    ) -> RoomInfo | None:
        with self._calling(f"update room {room!r}"):
            return self._rooms.update_room(user, room, title, topic)

    def set_public(self, room: str, public: bool) -> None:
        with self._calling(f"update room {room!r}"):
            self._rooms.set_public(room, public)

    def create_room(
        self, room: str, *, title: str = "", topic: str = "", public: bool = True
    ) -> RoomInfo | None:
        with self._calling(f"create room {room!r}"):
            return self._rooms.create_room(room, title, topic, public)

    def set_room(
        self,
        room: str,
        *,
        title: str | None = None,
        topic: str | None = None,
        public: bool | None = None,
    ) -> RoomInfo | None:
        with self._calling(f"update room {room!r}"):
            return self._rooms.set_room(room, title, topic, public)

    def delete_room(self, room: str) -> list[str] | None:
        with self._calling(f"delete room {room!r}"):
            return self._rooms.delete_room(room)

    def directory(
        self,
        *,
        query: str | None = None,
        after: str | None = None,
        limit: int,
        allowed: Callable[[str], bool] = lambda _room: True,
    ) -> tuple[list[RoomInfo], bool]:
        check_limit(limit)
        with self._calling("read the room directory"):
            return self._rooms.directory(query, after, limit, allowed)

    def dm_partners(self, user: str) -> list[str]:
        with self._calling(f"read the conversations of {user!r}"):
            return self._rooms.dm_partners(user)


# Failures of a Redis that is away for a moment (down, failing over, a slot moving): the caller
# retries; a send is answered overloaded.
_AWAY = (
    redis.ConnectionError,
    redis.TimeoutError,
    ClusterError,
    RedisClusterException,
    ReadOnlyError,
    TryAgainError,  # a script's keys are half migrated: the slot is moving
)


def _where(client: Any) -> str:
    """Where ``client`` connects, for error messages."""
    if is_sharded(client):
        return "cluster " + ",".join(node.name for node in client.get_nodes())
    kwargs = client.connection_pool.connection_kwargs
    if kwargs.get("path"):
        return str(kwargs["path"])
    name = getattr(client.connection_pool, "service_name", None)
    return f"Sentinel master {name}" if name else f"{kwargs.get('host')}:{kwargs.get('port')}"


def _as_read(packed: bytes, reader: str | None) -> StoredMessage:
    """The message an entry holds, with its reactions as ``reader`` sees them and its
    thread's summary."""
    fields = msgpack_map(packed)
    message = decode_published_fields(fields)[0]
    held = fields.get(b"reactions")
    if held:
        keys = [(bytes(key).decode(), {bytes(u).decode() for u in users}) for key, users in held]
        message = replace(message, reactions=reaction_summary(keys, reader))
    summary = fields.get(b"summary")
    if summary:
        count, last_ts, authors = summary
        users = [bytes(user).decode() for user, _ in authors]
        message = replace(message, thread_summary=thread_summary(count, last_ts, users))
    return message


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _decode_entry(entry: tuple[bytes, dict[bytes, bytes]]) -> StoredMessage:
    return decode_published(entry[1][b"m"])


def _entry_seq(entry: tuple[bytes, dict[bytes, bytes]]) -> int:
    """The seq of a stream entry: its id is ``<seq>-0``."""
    return int(entry[0].split(b"-", 1)[0])
