-- BARRIER.RESET (src/coord/barrier.rs): break the current generation
-- (its waiters answer -BROKEN) and start the next empty. KEYS[1] the
-- barrier's hash. ARGV[1] wake channel. Returns the callers that were
-- waiting.
local done = tonumber(redis.call('HGET', KEYS[1], 'done') or '0')
local arrived = tonumber(redis.call('HGET', KEYS[1], 'arrived') or '0')
if arrived == 0 then
  return 0
end
redis.call('HSET', KEYS[1], 'done', done + 1, 'arrived', 0, 'broken', done + 1)
redis.call('PUBLISH', ARGV[1], done + 1)
return arrived
