-- Spill: is this key a stub? (src/tier/spill/touch.rs)
-- KEYS[1] the key; ARGV[1] the stubs' magic prefix.
-- Returns the stub (a short string starting with the prefix) when the key
-- is one, else false (nil). A key of another type is not read at all
-- (TYPE does not touch its idle time).
local k, magic = KEYS[1], ARGV[1]
if redis.call('TYPE', k).ok ~= 'string' then return false end
if redis.call('STRLEN', k) > 512 then return false end
local v = redis.call('GET', k)
if string.sub(v, 1, #magic) == magic then return v end
return false
