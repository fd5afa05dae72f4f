-- Shared by the deferred-queue scripts (prepended to each of them).
--
-- Every key of the queue is `base .. name` and carries one hash tag, so the
-- whole queue lives in one Cluster slot and a script may touch any of its keys.
-- Keys derived here rather than passed in KEYS are in that same slot.
--
--   msg:<id>          hash: the message's fields
--   all               zset: every id by deliver_at
--   sender:<sender>   zset: the sender's ids by deliver_at
--   status:<status>   zset: ids in that status by deliver_at
--   due               zset: pending ids by deliver_at
--   leases            zset: sending ids by lease_until
--   pending:<sender>  set: the sender's pending ids

local base = ARGV[1]

local function msg_key(id)
  return base .. 'msg:' .. id
end

-- Take a message out of every index, as its stored fields place it.
local function unindex(id)
  local f = redis.call('HMGET', msg_key(id), 'status', 'sender')
  local status, sender = f[1], f[2]
  if not status then
    return
  end
  redis.call('ZREM', base .. 'all', id)
  redis.call('ZREM', base .. 'sender:' .. sender, id)
  redis.call('ZREM', base .. 'status:' .. status, id)
  redis.call('ZREM', base .. 'due', id)
  redis.call('ZREM', base .. 'leases', id)
  redis.call('SREM', base .. 'pending:' .. sender, id)
end

-- Put a message in the indexes its stored fields call for.
local function index(id)
  local f = redis.call('HMGET', msg_key(id), 'status', 'sender', 'deliver_at_ms', 'lease_until_ms')
  local status, sender, at, lease = f[1], f[2], f[3], f[4]
  redis.call('ZADD', base .. 'all', at, id)
  redis.call('ZADD', base .. 'sender:' .. sender, at, id)
  redis.call('ZADD', base .. 'status:' .. status, at, id)
  if status == 'pending' then
    redis.call('ZADD', base .. 'due', at, id)
    redis.call('SADD', base .. 'pending:' .. sender, id)
  elseif status == 'sending' then
    redis.call('ZADD', base .. 'leases', lease or 0, id)
  end
end

-- Change a stored message's fields (field, value, ...) and re-index it.
-- A value of false deletes the field.
local function update(id, changes)
  unindex(id)
  for i = 1, #changes, 2 do
    if changes[i + 1] then
      redis.call('HSET', msg_key(id), changes[i], changes[i + 1])
    else
      redis.call('HDEL', msg_key(id), changes[i])
    end
  end
  index(id)
end
