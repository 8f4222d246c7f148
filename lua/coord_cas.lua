-- CAS (src/coord/vset.rs): write the key's value and bump its version if
-- its value is the one expected. KEYS[1] the key, KEYS[2] its version.
-- ARGV[1] expected value, ARGV[2] new value.
-- Returns {1, new version} or {0, current version}.
local cur = redis.call('GET', KEYS[1])
if cur ~= ARGV[1] then
  return {0, tonumber(redis.call('GET', KEYS[2]) or '0')}
end
redis.call('SET', KEYS[1], ARGV[2])
return {1, redis.call('INCR', KEYS[2])}
