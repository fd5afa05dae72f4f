-- Store a deferred message, replacing any message with the same id but a
-- cancelled one: a cancellation is final (a hold withdrawn before it landed,
-- see defer_withdraw.lua, arrives to find it so).
--
-- KEYS[1]  the queue's `all` index (names the slot)
-- ARGV     base, id, then field, value pairs

local id = ARGV[2]
if redis.call('HGET', msg_key(id), 'status') == 'cancelled' then
  return 0
end
unindex(id)
redis.call('DEL', msg_key(id))
redis.call('HSET', msg_key(id), unpack(ARGV, 3))
index(id)
return 1
