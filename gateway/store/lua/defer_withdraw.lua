-- Take back a hold whose write timed out: it may have landed, or may land yet.
--
-- KEYS[1]  the queue's `all` index (names the slot)
-- ARGV     base, id, then the message's field, value pairs, as cancelled
--
-- Landed and pending: cancelled. Not landed: stored as cancelled, so that the
-- hold, arriving later, stores nothing (defer_put.lua), and the message the
-- sender was told is not held is never sent.

local id = ARGV[2]
if redis.call('EXISTS', msg_key(id)) == 1 then
  if redis.call('HGET', msg_key(id), 'status') == 'pending' then
    update(id, { 'status', 'cancelled', 'payload', '{}' })
  end
  return 1
end
redis.call('HSET', msg_key(id), unpack(ARGV, 3))
index(id)
return 0
