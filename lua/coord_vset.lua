-- VSET (src/coord/vset.rs): write the key's value and bump its version,
-- if the version is the one expected. KEYS[1] the key itself, KEYS[2] its
-- version (strata:ver:{key}:, in the key's slot; never expires).
-- ARGV[1] value, ARGV[2] expected version ('' for none; 0 for a key never
-- written by VSET/CAS). Returns {1, new version} or {0, current version}.
local v = tonumber(redis.call('GET', KEYS[2]) or '0')
if ARGV[2] ~= '' and tonumber(ARGV[2]) ~= v then
  return {0, v}
end
redis.call('SET', KEYS[1], ARGV[1])
return {1, redis.call('INCR', KEYS[2])}
