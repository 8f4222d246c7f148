-- LOCK.ACQUIRE (src/coord/lock.rs): take the lock if nobody holds it.
-- KEYS[1] the lock's hash (token, owner), KEYS[2] its token counter; both
-- in the lock's slot (src/coord/keys.rs). ARGV[1] ttl in ms, ARGV[2] owner.
-- Returns {token, 0} when taken, {0, pttl} while someone else holds it.
-- The counter never expires, so tokens only grow while Redis keeps it.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {0, redis.call('PTTL', KEYS[1])}
end
local token = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'token', token, 'owner', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return {token, 0}
