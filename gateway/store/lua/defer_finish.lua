-- Record a claimed message's fate.
--
-- KEYS[1]  the queue's `all` index (names the slot)
-- ARGV     base, id, status, result JSON

local id = ARGV[2]
if redis.call('EXISTS', msg_key(id)) == 0 then
  return 0
end
update(id, { 'status', ARGV[3], 'result', ARGV[4], 'lease_until_ms', false })
return 1
