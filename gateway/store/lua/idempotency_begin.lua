-- Claim an idempotency key, or report who holds it.
--
-- KEYS[1]  the record: JSON {"fp": ..., "state": "in_flight"|"done", "response": ...,
--          "claim": the claiming call's token while in flight}
-- KEYS[2]  the tokens of claims given up before they landed (see idempotency_release)
-- ARGV     fingerprint, ttl_ms, the JSON of a new in-flight record, its claim token
-- Returns  { "new" } | { "conflict" } | { "in_flight" } | { "done", record JSON }

if redis.call('SISMEMBER', KEYS[2], ARGV[4]) == 1 then
  -- This claim arrives late: its caller timed out, answered 503 and gave it
  -- up. Taking the key now would hold it for nothing, and refuse the retry.
  return { 'in_flight' }
end
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
if record.claim == ARGV[4] then
  -- This very call, sent again by the client after a broken connection: its
  -- claim landed the first time.
  return { 'new' }
end
return { 'in_flight' }
