-- Spill, restore on touch (src/tier/spill/touch.rs): put the key's value
-- back from its row, with the stub's TTL, but only while the key is still
-- that very stub (a SET or DEL since wins).
-- KEYS[1] the key; ARGV[1] the stub; ARGV[2] the row's value (a string's
-- bytes, or a DUMP payload); ARGV[3] the row's type.
-- Returns 1 when restored, 0 when the stub was gone.
local k = KEYS[1]
if redis.call('TYPE', k).ok ~= 'string' then return 0 end
if redis.call('STRLEN', k) ~= #ARGV[1] or redis.call('GET', k) ~= ARGV[1] then return 0 end
if ARGV[3] == 'string' then
  redis.call('SET', k, ARGV[2], 'KEEPTTL')
  return 1
end
local at = redis.call('PEXPIRETIME', k)
if at < 0 then at = 0 end
redis.call('RESTORE', k, at, ARGV[2], 'REPLACE', 'ABSTTL')
return 1
