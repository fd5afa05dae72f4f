-- Take back a hold whose write timed out: it may have landed, or may land yet.
--
-- KEYS[1]  the queue's `all` index (names the slot)
-- ARGV     base, id, then the message's field, value pairs, as cancelled
-- Returns  1 when the message will not be sent, 0 when it is on its way
--          (a scheduler claimed it, or sent it, before this came)
--
-- Landed and pending: cancelled. Not landed: stored as cancelled, so that the
-- hold, arriving later, stores nothing (defer_put.lua), and the message the
-- sender was told is not held is never sent.

local id = ARGV[2]
if redis.call('EXISTS', msg_key(id)) == 1 then
  local status = redis.call('HGET', msg_key(id), 'status')
  if status == 'pending' then
    update(id, { 'status', 'cancelled', 'payload', '{}' })
    return 1
  end
  if status == 'sending' or status == 'sent' then
    return 0
  end
  return 1
end
redis.call('HSET', msg_key(id), unpack(ARGV, 3))
index(id)
return 1
