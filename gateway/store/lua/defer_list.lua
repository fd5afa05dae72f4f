-- Messages from one index, newest deliver_at first, optionally of one status.
--
-- KEYS[1]  the index to walk (all, sender:<sender> or status:<status>)
-- ARGV     base, limit, status to keep ('' for any)
-- Returns  one flat field/value array per message

local limit, wanted = tonumber(ARGV[2]), ARGV[3]
local found = {}
local batch = math.max(limit, 100)
local start = 0
while #found < limit do
  local ids = redis.call('ZREVRANGE', KEYS[1], start, start + batch - 1)
  if #ids == 0 then
    break
  end
  for _, id in ipairs(ids) do
    if wanted == '' or redis.call('HGET', msg_key(id), 'status') == wanted then
      found[#found + 1] = redis.call('HGETALL', msg_key(id))
      if #found >= limit then
        break
      end
    end
  end
  start = start + batch
end
return found
