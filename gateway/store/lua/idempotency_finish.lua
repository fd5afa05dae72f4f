-- Keep the first answer of an in-flight key for ttl_ms. A finished key keeps
-- its first answer; a key that is gone (expired, abandoned) stays gone, since
-- without its fingerprint a reuse with another message could not be told apart.
--
-- KEYS[1]  the record
-- ARGV     the response JSON, ttl_ms

local raw = redis.call('GET', KEYS[1])
if not raw then
  return 0
end
local record = cjson.decode(raw)
if record.state ~= 'in_flight' then
  return 0
end
local done = '{"fp":' .. cjson.encode(record.fp) .. ',"state":"done","response":' .. ARGV[1] .. '}'
redis.call('SET', KEYS[1], done, 'PX', ARGV[2])
return 1
