-- Messages from one index, newest deliver_at first (then greater id first),
-- optionally of one status, optionally after a place in that order.
--
-- KEYS[1]  the index to walk (all, sender:<sender> or status:<status>)
-- ARGV     base, limit, status to keep ('' for any),
--          the place to start after: its deliver_at and id ('' and '' for the top)
-- Returns  one flat field/value array per message

local limit, wanted = tonumber(ARGV[2]), ARGV[3]
local after_at, after_id = ARGV[4], ARGV[5]
local top = '+inf'
if after_at ~= '' then
  top = after_at
end
local found = {}
local batch = math.max(limit, 100)
local offset = 0
while #found < limit do
  local page = redis.call('ZREVRANGEBYSCORE', KEYS[1], top, '-inf', 'WITHSCORES',
                          'LIMIT', offset, batch)
  if #page == 0 then
    break
  end
  for i = 1, #page, 2 do
    local id, at = page[i], page[i + 1]
    -- Ties on deliver_at are ordered by id, descending: skip those at or
    -- before the place (an equal score's members come greatest id first).
    local passed = after_at == '' or tonumber(at) < tonumber(after_at) or id < after_id
    if passed and (wanted == '' or redis.call('HGET', msg_key(id), 'status') == wanted) then
      found[#found + 1] = redis.call('HGETALL', msg_key(id))
      if #found >= limit then
        break
      end
    end
  end
  offset = offset + batch
end
return found
