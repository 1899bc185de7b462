-- KEYS: counts, state. ARGV: user, delta, ts, channel.
-- Adds delta to the user's connection count; announces online when the count is positive and the
-- user was not announced online. Returns the new count.
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
