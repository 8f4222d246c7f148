-- SEM.ACQUIRE (src/coord/sem.rs): take a permit if fewer than `permits`
-- live ones are held. KEYS[1] the holders (a sorted set: permit id scored
-- by its expiry, ms since the epoch, Redis's clock), KEYS[2] the
-- semaphore's hash (`seq`: the last permit id, `permits`: the last limit
-- asked for). Both in the semaphore's slot (src/coord/keys.rs).
-- ARGV[1] permits, ARGV[2] ttl in ms.
-- Returns {id, 0} when taken, {0, ms until the first permit expires} when
-- all are held. Expired permits (dead holders) are pruned first.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local permits = tonumber(ARGV[1])
redis.call('HSET', KEYS[2], 'permits', permits)
if redis.call('ZCARD', KEYS[1]) >= permits then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, tonumber(first[2]) - now}
end
local id = redis.call('HINCRBY', KEYS[2], 'seq', 1)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), id)
-- The set lives as long as its longest permit.
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], tonumber(last[2]))
return {id, 0}
