-- Spill, step 3 (src/tier/spill/evict.rs): once Postgres holds the key's
-- value, replace the key by its stub, keeping its TTL, but only if nothing
-- changed it since step 1 read it: the same value (a string's bytes, or
-- the DUMP payload, which also says the type) and the same expiry. A
-- write that raced the spill wins; the spill is given up.
-- KEYS[1] the key; ARGV[1] the value read; ARGV[2] its PEXPIRETIME then;
-- ARGV[3] the stub; ARGV[4] the type read.
-- Returns 1 when the key is now the stub, else 0.
local k = KEYS[1]
if redis.call('EXISTS', k) == 0 then return 0 end
if redis.call('PEXPIRETIME', k) ~= tonumber(ARGV[2]) then return 0 end
if ARGV[4] == 'string' then
  if redis.call('TYPE', k).ok ~= 'string' or redis.call('GET', k) ~= ARGV[1] then return 0 end
elseif redis.call('DUMP', k) ~= ARGV[1] then
  return 0
end
redis.call('SET', k, ARGV[3], 'KEEPTTL')
return 1
