-- KEYS: counts, state. ARGV: user, ts, channel.
-- Announces offline once the grace is over, if no node has a connection of the user any more.
local c = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if c > 0 or redis.call('HGET', KEYS[2], ARGV[1]) ~= 'online' then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[3], cmsgpack.pack({t = 'presence', user = ARGV[1],
                                               status = 'offline', ts = tonumber(ARGV[2])}))
return 1
