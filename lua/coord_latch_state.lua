-- LATCH.COUNT and LATCH.WAIT (src/coord/latch.rs): the count (0 when the
-- latch is open) and the generation, at one instant.
-- KEYS[1] the count, KEYS[2] the generation.
return {tonumber(redis.call('GET', KEYS[1]) or '0'), tonumber(redis.call('GET', KEYS[2]) or '0')}
