-- Check opt-outs and cap windows, and count the send if nothing enforced stops it.
-- One script, so the check and the count are one atomic step.
--
-- KEYS[1]        the recipient's opt-out hash (field: list name)
-- KEYS[2..]      one sorted set per distinct counter (member: send id, score: at ms)
-- ARGV[1]        one JSON array (one argument, so the client encodes one value
--                rather than dozens): [now_ms, count 0|1, send_id,
--                [[list name, enforced 0|1], ...],
--                [[counter index into KEYS[2..], limit, per_ms, enforced 0|1], ...]]
-- Returns        { {opted_out 0|1 per list}, {count, retry_at or -1 per cap}, counted 0|1 }

local spec = cjson.decode(ARGV[1])
local now = spec[1]
local want_count = spec[2] == 1
local send_id = spec[3]
local blocked = false

local opted = {}
for i, list in ipairs(spec[4]) do
  local found = redis.call('HEXISTS', KEYS[1], list[1])
  opted[i] = found
  if found == 1 and list[2] == 1 then
    blocked = true
  end
end

-- The window [now - per, now] is closed at both ends. When it is full, it has
-- room again one ms after the entry at index (count - limit), oldest first,
-- is `per` old.
--
-- A send that counts also sees entries stamped up to a minute after its `now`:
-- each caller reads its clock before its script runs, so concurrent sends (from
-- this process or another, or a machine whose clock is a little behind) reach
-- Redis out of the order of their stamps, and a send already counted must
-- never be missed by one that runs after it. Stamps further apart are no race
-- but a caller asking about another moment: for it the window ends at `now`.
local SLACK = 60000
local upto = want_count and now + SLACK or now
local function window(key, limit, per)
  local count = redis.call('ZCOUNT', key, now - per, upto)
  if count < limit then
    return count, -1
  end
  local entry = redis.call('ZRANGEBYSCORE', key, now - per, upto, 'WITHSCORES', 'LIMIT', count - limit, 1)
  if #entry == 0 then
    return count, -1 -- a limit of 0 never has room
  end
  return count, tonumber(entry[2]) + per + 1
end

local caps = {}
local longest = {}
for _, cap in ipairs(spec[5]) do
  local index, limit, per = cap[1], cap[2], cap[3]
  local count, retry_at = window(KEYS[1 + index], limit, per)
  if count >= limit and cap[4] == 1 then
    blocked = true
  end
  caps[#caps + 1] = count
  caps[#caps + 1] = retry_at
  longest[index] = math.max(longest[index] or 0, per)
end

local counted = want_count and not blocked
if counted then
  for index, per in pairs(longest) do
    local key = KEYS[1 + index]
    redis.call('ZADD', key, now, send_id)
    -- No window ending now or later can see entries older than the longest
    -- one; trimming them keeps a busy counter small, the expiry drops an idle one.
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - per - 1)
    redis.call('PEXPIRE', key, per + 1)
  end
end

return { opted, caps, counted and 1 or 0 }
