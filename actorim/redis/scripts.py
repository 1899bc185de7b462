"""The cluster's Lua scripts: each change counted and, when it is a transition, announced once.

A user's presence is a count of connections cluster-wide plus an announced state; a room's
membership is a count of connections per user. A script changes a count and publishes an event
only when the change is a transition, atomically, so that N nodes seeing the same user come and go
still produce one ``online`` and one ``offline``, and one ``joined`` and one ``left``.
Events are MessagePack maps with a ``t`` key, exactly as clients receive them.
"""

from __future__ import annotations

# KEYS: counts, state. ARGV: user, delta, ts, channel.
# Adds delta to the user's connection count; announces online when the count is positive and the
# user was not announced online. Returns the new count.
PRESENCE_ADJUST = r"""
local c = redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
if c <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 0
end
if redis.call('HGET', KEYS[2], ARGV[1]) ~= 'online' then
  redis.call('HSET', KEYS[2], ARGV[1], 'online')
  redis.call('PUBLISH', ARGV[4], cmsgpack.pack({t = 'presence', user = ARGV[1],
                                                 status = 'online', ts = tonumber(ARGV[3])}))
end
return c
"""

# KEYS: counts, state. ARGV: user, ts, channel.
# Announces offline once the grace is over, if no node has a connection of the user any more.
PRESENCE_SETTLE = r"""
local c = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if c > 0 or redis.call('HGET', KEYS[2], ARGV[1]) ~= 'online' then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[3], cmsgpack.pack({t = 'presence', user = ARGV[1],
                                               status = 'offline', ts = tonumber(ARGV[2])}))
return 1
"""

# KEYS: members. ARGV: user, delta, room, channel.
# Adds delta to the user's connections in the room; announces joined (0 -> positive) and left
# (positive -> 0). Returns the room's members after the change.
MEMBER_ADJUST = r"""
local before = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local c = redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
if c <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
if before <= 0 and c > 0 then
  redis.call('PUBLISH', ARGV[4], cmsgpack.pack({t = 'member', room = ARGV[3], user = ARGV[1],
                                                 state = 'joined'}))
elseif before > 0 and c <= 0 then
  redis.call('PUBLISH', ARGV[4], cmsgpack.pack({t = 'member', room = ARGV[3], user = ARGV[1],
                                                 state = 'left'}))
end
return redis.call('HKEYS', KEYS[1])
"""
