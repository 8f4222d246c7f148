-- LOCK.INFO (src/coord/lock.rs): the holder, its token and the remaining
-- ttl in ms, read at one instant; an empty array when nobody holds it.
-- KEYS[1] the lock's hash.
local v = redis.call('HMGET', KEYS[1], 'owner', 'token')
if not v[2] then
  return {}
end
return {v[1] or '', tonumber(v[2]), redis.call('PTTL', KEYS[1])}
