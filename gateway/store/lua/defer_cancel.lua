-- Cancel a pending message; return it as it now stands (empty when missing).
--
-- KEYS[1]  the queue's `all` index (names the slot)
-- ARGV     base, id

local id = ARGV[2]
if redis.call('HGET', msg_key(id), 'status') == 'pending' then
  update(id, { 'status', 'cancelled', 'payload', '{}' })  -- not needed, may hold credentials
end
return redis.call('HGETALL', msg_key(id))
