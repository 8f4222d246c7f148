-- SEM.AVAILABLE (src/coord/sem.rs): the permits free now, under the last
-- limit asked for. KEYS[1] the holders, KEYS[2] the semaphore's hash.
-- Returns {limit, live holders}; {-1, 0} for a semaphore never used.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local permits = redis.call('HGET', KEYS[2], 'permits')
if not permits then
  return {-1, 0}
end
return {tonumber(permits), redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')}
