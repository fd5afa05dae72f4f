-- Remove finished messages that were due before a moment, oldest first.
--
-- KEYS[1]  the queue's `all` index (names the slot)
-- ARGV     base, due_before_ms, limit, finished status...

local before, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local found = {}
for i = 4, #ARGV do
  local ids = redis.call('ZRANGEBYSCORE', base .. 'status:' .. ARGV[i], '-inf', '(' .. before,
    'WITHSCORES', 'LIMIT', 0, limit)
  for j = 1, #ids, 2 do
    found[#found + 1] = { tonumber(ids[j + 1]), ids[j] }
  end
end
table.sort(found, function(a, b)
  if a[1] ~= b[1] then return a[1] < b[1] end
  return a[2] < b[2]
end)
local removed = 0
for k = 1, math.min(limit, #found) do
  local id = found[k][2]
  unindex(id)
  redis.call('DEL', msg_key(id))
  removed = removed + 1
end
return removed
