-- KEYS: a node's users, members, sessions, alive (one slot: {node:<id>}).
-- Reads the node's connection counts per user and per (room, user) and removes every record of
-- the node at once, so that a node registering again meanwhile keeps what it adds after.
-- Returns {users, members}, each a flat list of field, count.
local users = redis.call('HGETALL', KEYS[1])
local members = redis.call('HGETALL', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
return {users, members}
