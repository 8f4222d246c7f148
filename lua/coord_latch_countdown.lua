-- LATCH.COUNTDOWN (src/coord/latch.rs): one count less; at 0 the latch is
-- open: its count is deleted, its generation grows, and every strata's
-- waiters are woken (one PUBLISH). KEYS[1] the count, KEYS[2] the
-- generation. ARGV[1] the wake channel. Returns the count left (0 also
-- for a latch that is not counting).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local n = redis.call('DECR', KEYS[1])
if n <= 0 then
  redis.call('DEL', KEYS[1])
  redis.call('INCR', KEYS[2])
  redis.call('PUBLISH', ARGV[1], '0')
  return 0
end
return n
