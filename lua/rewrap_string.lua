-- PROXY REWRAP, strings: write the re-encrypted value only if the key still
-- holds the value strata read (a client may have written meanwhile).
-- KEYS[1]  the key
-- ARGV[1]  the stored value strata read
-- ARGV[2]  the value to store instead
-- Returns 1 when written, 0 when the key changed (left for a later pass).
-- KEEPTTL: the key keeps its expiry.
if redis.call('TYPE', KEYS[1]).ok ~= 'string' then
  return 0
end
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
return 1
