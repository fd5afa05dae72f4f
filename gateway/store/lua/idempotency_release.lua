-- Give up a claim whose call timed out: it may have landed, or may land yet.
--
-- KEYS[1]  the record
-- KEYS[2]  the tokens of claims given up before they landed
-- ARGV     the claim's token, how long to remember it (ms)
--
-- Landed and still in flight: removed, so that the sender's retry is not told
-- "in flight" for the rest of the window. Not landed (another record, or
-- none): its token is remembered, and the claim, arriving later, takes nothing.

local raw = redis.call('GET', KEYS[1])
if raw then
  local record = cjson.decode(raw)
  if record.state == 'in_flight' and record.claim == ARGV[1] then
    return redis.call('DEL', KEYS[1])
  end
end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 0
