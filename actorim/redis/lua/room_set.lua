-- Set what is given of an existing room's title, topic and public flag.
-- KEYS[1] the room's info hash, KEYS[2] its roster. ARGV: has title ("1"/"0"), title,
-- has topic, topic, public ("1", "0", or "" to keep it).
-- Returns false when the room does not exist, else {title, topic, public, members}.
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
if ARGV[1] == '1' then redis.call('HSET', KEYS[1], 'title', ARGV[2]) end
if ARGV[3] == '1' then redis.call('HSET', KEYS[1], 'topic', ARGV[4]) end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'public', ARGV[5]) end
local info = redis.call('HMGET', KEYS[1], 'title', 'topic', 'public')
info[4] = redis.call('ZCARD', KEYS[2])
return info
