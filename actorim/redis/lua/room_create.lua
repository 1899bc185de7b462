-- Make a room's metadata when it has none (no create nor join made it yet).
-- KEYS[1] the room's info hash, KEYS[2] its roster. ARGV: title, topic, public ("1"/"0").
-- Returns false when the room exists, else {title, topic, public, members}.
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
redis.call('HSET', KEYS[1], 'title', ARGV[1], 'topic', ARGV[2], 'public', ARGV[3])
return {ARGV[1], ARGV[2], ARGV[3], redis.call('ZCARD', KEYS[2])}
