-- Spill, step 3 (src/tier/spill/evict.rs): once Postgres holds the key's
-- DUMP payload, replace the key by its stub, keeping its TTL, but only if
-- nothing changed it since step 1 read it: the same payload and the same
-- expiry. A write that raced the spill wins; the spill is given up.
-- KEYS[1] the key; ARGV[1] the payload read; ARGV[2] its PEXPIRETIME then;
-- ARGV[3] the stub. Returns 1 when the key is now the stub, else 0.
local k = KEYS[1]
if redis.call('EXISTS', k) == 0 then return 0 end
if redis.call('PEXPIRETIME', k) ~= tonumber(ARGV[2]) then return 0 end
if redis.call('DUMP', k) ~= ARGV[1] then return 0 end
redis.call('SET', k, ARGV[3], 'KEEPTTL')
return 1
