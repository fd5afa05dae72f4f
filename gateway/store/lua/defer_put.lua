-- Store a deferred message, replacing any message with the same id.
--
-- KEYS[1]  the queue's `all` index (names the slot)
-- ARGV     base, id, then field, value pairs

local id = ARGV[2]
unindex(id)
redis.call('DEL', msg_key(id))
redis.call('HSET', msg_key(id), unpack(ARGV, 3))
index(id)
return 1
