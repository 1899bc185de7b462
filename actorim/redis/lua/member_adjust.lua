-- KEYS: members. ARGV: user, delta, room, channel.
-- Adds delta to the user's connections in the room; announces joined (0 -> positive) and left
-- (positive -> 0). Returns the room's members after the change.
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
