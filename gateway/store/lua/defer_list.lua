-- Messages from one index, newest deliver_at first (then greater id first),
-- optionally of one status, optionally after a place in that order.
--
-- KEYS[1]  the index to walk (all, sender:<sender> or status:<status>)
-- ARGV     base, limit, status to keep ('' for any),
--          the place to start after: its deliver_at and id ('' and '' for the top)
-- Returns  one flat field/value array per message
--
-- Pages are read by rank, so that each costs the same however deep it is
-- (an offset into a range by score is walked from its start every time, and
-- a campaign held for one moment is thousands of ties).

local limit, wanted = tonumber(ARGV[2]), ARGV[3]
local after_at, after_id = ARGV[4], ARGV[5]
local rank = 0
local skip_ties = false
if after_at ~= '' then
  local at = redis.call('ZREVRANK', KEYS[1], after_id)
  if at then
    rank = at + 1  -- the place's message is still indexed: right after it
  else
    -- Gone since (purged): after every later deliver_at, then past the ties
    -- at or above the place's id.
    rank = redis.call('ZCOUNT', KEYS[1], '(' .. after_at, '+inf')
    skip_ties = true
  end
end
local found = {}
local batch = math.max(limit, 100)
while #found < limit do
  local page = redis.call('ZREVRANGE', KEYS[1], rank, rank + batch - 1, 'WITHSCORES')
  if #page == 0 then
    break
  end
  for i = 1, #page, 2 do
    local id = page[i]
    if skip_ties and (tonumber(page[i + 1]) < tonumber(after_at) or id < after_id) then
      skip_ties = false
    end
    if not skip_ties and (wanted == '' or redis.call('HGET', msg_key(id), 'status') == wanted) then
      found[#found + 1] = redis.call('HGETALL', msg_key(id))
      if #found >= limit then
        break
      end
    end
  end
  rank = rank + batch
end
return found
