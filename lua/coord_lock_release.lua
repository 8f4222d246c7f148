-- LOCK.RELEASE (src/coord/lock.rs): drop the lock if `token` holds it and
-- wake the next waiter of every strata (one PUBLISH, whatever the number
-- of waiters). KEYS[1] the lock's hash, KEYS[2] its token counter.
-- ARGV[1] token, ARGV[2] the lock's wake channel.
-- Returns 1 released, 0 nobody holds it, -1 another token holds it,
-- -2 this token was never issued for the lock.
local cur = redis.call('HGET', KEYS[1], 'token')
if cur == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], ARGV[1])
  return 1
end
if tonumber(ARGV[1]) > tonumber(redis.call('GET', KEYS[2]) or '0') then
  return -2
end
if cur then
  return -1
end
return 0
