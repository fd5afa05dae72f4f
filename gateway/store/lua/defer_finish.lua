-- Record a claimed message's fate.
--
-- KEYS[1]  the queue's `all` index (names the slot)
-- ARGV     base, id, status, result JSON

local id = ARGV[2]
if redis.call('EXISTS', msg_key(id)) == 0 then
  return 0
end
-- The payload goes: a finished message needs it no more, and a drop-in's
-- holds the sender's provider credentials.
update(id, { 'status', ARGV[3], 'result', ARGV[4], 'lease_until_ms', false, 'payload', '{}' })
return 1
