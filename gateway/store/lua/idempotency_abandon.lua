-- Release an in-flight claim; a finished record keeps its answer.
--
-- KEYS[1]  the record

local raw = redis.call('GET', KEYS[1])
if raw and cjson.decode(raw).state == 'in_flight' then
  return redis.call('DEL', KEYS[1])
end
return 0
