-- Spill, step 1 (src/tier/spill/evict.rs): the key's type, DUMP payload
-- and absolute expiry, read at one instant, unless it must stay resident.
-- KEYS[1] the key; ARGV[1] the stubs' magic prefix; ARGV[2] the hold in
-- seconds (0: spill whatever its idle time, PROXY TIER SPILL); ARGV[3]
-- 'probe' to only ask whether the key may be spilled (returns 1).
-- Returns {type, value, pexpiretime} or false: the key is gone, already
-- a stub, or was touched within the hold (OBJECT IDLETIME, checked before
-- anything here touches it; a maxmemory-policy without idle times keeps
-- every key resident rather than guess). The value is what the row keeps:
-- a string's bytes (as the mirror stores strings), other types' DUMP
-- payload.
local k, magic, hold = KEYS[1], ARGV[1], tonumber(ARGV[2])
local t = redis.call('TYPE', k).ok
if t == 'none' then return false end
if hold > 0 then
  local idle = redis.pcall('OBJECT', 'IDLETIME', k)
  if type(idle) ~= 'number' or idle < hold then return false end
end
if t == 'string' and redis.call('STRLEN', k) <= 512 then
  local v = redis.call('GET', k)
  if string.sub(v, 1, #magic) == magic then return false end
end
if ARGV[3] == 'probe' then return 1 end
local v
if t == 'string' then v = redis.call('GET', k) else v = redis.call('DUMP', k) end
return {t, v, redis.call('PEXPIRETIME', k)}
