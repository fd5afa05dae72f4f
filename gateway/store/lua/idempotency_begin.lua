-- Claim an idempotency key, or report who holds it.
--
-- KEYS[1]  the record: JSON {"fp": ..., "state": "in_flight"|"done", "response": ...}
-- ARGV     fingerprint, ttl_ms, the JSON of a new in-flight record
-- Returns  { "new" } | { "conflict" } | { "in_flight" } | { "done", record JSON }

local raw = redis.call('GET', KEYS[1])
if not raw then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[2])
  return { 'new' }
end
local record = cjson.decode(raw)
if record.fp ~= ARGV[1] then
  return { 'conflict' }
end
if record.state == 'done' then
  -- The raw JSON goes back whole: re-encoding here could change its numbers.
  return { 'done', raw }
end
return { 'in_flight' }
