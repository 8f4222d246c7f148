-- VGET (src/coord/vset.rs): the key's value (nil when missing) and its
-- version, at one instant. KEYS[1] the key, KEYS[2] its version.
return {redis.call('GET', KEYS[1]), tonumber(redis.call('GET', KEYS[2]) or '0')}
