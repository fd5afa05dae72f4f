-- Release an in-flight claim; a finished record keeps its answer.
--
-- KEYS[1]  the record
-- ARGV     the claim's token ('' for whichever claim holds it)
--
-- With a token, only that claim: an abandon that arrives late (a stalled
-- server) must not release a retry's claim made meanwhile.

local raw = redis.call('GET', KEYS[1])
if not raw then
  return 0
end
local record = cjson.decode(raw)
if record.state == 'in_flight' and (ARGV[1] == '' or record.claim == ARGV[1]) then
  return redis.call('DEL', KEYS[1])
end
return 0
