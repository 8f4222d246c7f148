-- BARRIER.WAIT's look (src/coord/barrier.rs): generations completed and
-- the last one broken by BARRIER.RESET. KEYS[1] the barrier's hash.
local v = redis.call('HMGET', KEYS[1], 'done', 'broken')
return {tonumber(v[1] or '0'), tonumber(v[2] or '0')}
