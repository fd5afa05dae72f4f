-- Move up to `limit` due messages to sending with a lease: pending ones whose
-- deliver_at has come, and sending ones whose lease ran out; oldest deliver_at
-- first (then by id).
--
-- KEYS[1]  the queue's `all` index (names the slot)
-- ARGV     base, now_ms, limit, lease_until_ms
-- Returns  one flat field/value array per claimed message

local now, limit, lease_until = ARGV[2], tonumber(ARGV[3]), ARGV[4]
if limit <= 0 then
  return {}
end

local candidates = {}
local due = redis.call('ZRANGEBYSCORE', base .. 'due', '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
for i = 1, #due, 2 do
  candidates[#candidates + 1] = { id = due[i], at = tonumber(due[i + 1]) }
end
-- Every lapsed lease is looked at: they are few (at most what schedulers hold)
-- and the oldest deliver_at among them may come before the pending ones.
local lapsed = redis.call('ZRANGEBYSCORE', base .. 'leases', '-inf', now)
for _, id in ipairs(lapsed) do
  local at = redis.call('ZSCORE', base .. 'all', id)
  if at then
    candidates[#candidates + 1] = { id = id, at = tonumber(at) }
  end
end
table.sort(candidates, function(a, b)
  if a.at ~= b.at then
    return a.at < b.at
  end
  return a.id < b.id
end)

local claimed = {}
for i = 1, math.min(limit, #candidates) do
  local id = candidates[i].id
  update(id, { 'status', 'sending', 'lease_until_ms', lease_until })
  claimed[#claimed + 1] = redis.call('HGETALL', msg_key(id))
end
return claimed
