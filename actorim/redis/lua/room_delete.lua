-- Forget a room: its info hash and its roster, answering the roster it had.
-- KEYS[1] the room's info hash, KEYS[2] its roster.
-- Returns false when the room does not exist, else the list of its members.
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local members = redis.call('ZRANGE', KEYS[2], 0, -1)
redis.call('DEL', KEYS[1], KEYS[2])
return members
