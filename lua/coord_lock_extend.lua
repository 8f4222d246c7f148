-- LOCK.EXTEND and KEEPALIVE renewals (src/coord/lock.rs): a new ttl for
-- the lock if `token` holds it; the token stays the same.
-- KEYS[1] the lock's hash, KEYS[2] its token counter.
-- ARGV[1] token, ARGV[2] ttl in ms.
-- Returns 1 extended, 0 nobody holds it, -1 another token holds it,
-- -2 this token was never issued for the lock.
local cur = redis.call('HGET', KEYS[1], 'token')
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if tonumber(ARGV[1]) > tonumber(redis.call('GET', KEYS[2]) or '0') then
  return -2
end
if cur then
  return -1
end
return 0
