-- BARRIER.WAIT timed out (src/coord/barrier.rs): leave generation
-- ARGV[1] unless it completed meanwhile. KEYS[1] the barrier's hash.
-- Returns 1 left, 0 it completed (the caller passed after all).
local done = tonumber(redis.call('HGET', KEYS[1], 'done') or '0')
if done >= tonumber(ARGV[1]) then
  return 0
end
local arrived = tonumber(redis.call('HGET', KEYS[1], 'arrived') or '0')
if arrived > 0 then
  redis.call('HSET', KEYS[1], 'arrived', arrived - 1)
end
return 1
