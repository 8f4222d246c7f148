-- KEEPALIVE renewals of a permit (src/coord/sem.rs): a new expiry for a
-- live permit. KEYS[1] the holders, KEYS[2] the semaphore's hash.
-- ARGV[1] permit id, ARGV[2] ttl in ms.
-- Returns 1 renewed, 0 not held (expired or released), -2 never issued.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) > now then
  redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', KEYS[1], tonumber(last[2]))
  return 1
end
if tonumber(ARGV[1]) > tonumber(redis.call('HGET', KEYS[2], 'seq') or '0') then
  return -2
end
return 0
