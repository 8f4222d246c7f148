-- LATCH.INIT (src/coord/latch.rs): start counting down from `count`,
-- unless the latch is counting already. KEYS[1] the count, KEYS[2] the
-- latch's generation (how many times it reached 0; never expires).
-- ARGV[1] count. Returns 1 set, 0 already counting.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
