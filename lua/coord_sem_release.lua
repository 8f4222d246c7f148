-- SEM.RELEASE (src/coord/sem.rs): give a live permit back and wake the
-- next waiter of every strata (one PUBLISH). KEYS[1] the holders, KEYS[2]
-- the semaphore's hash. ARGV[1] permit id, ARGV[2] the wake channel.
-- Returns 1 released, 0 not held (expired or released), -2 never issued.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score then
  redis.call('ZREM', KEYS[1], ARGV[1])
  if tonumber(score) > now then
    redis.call('PUBLISH', ARGV[2], ARGV[1])
    return 1
  end
end
if tonumber(ARGV[1]) > tonumber(redis.call('HGET', KEYS[2], 'seq') or '0') then
  return -2
end
return 0
