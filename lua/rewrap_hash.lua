-- PROXY REWRAP, hashes: per field, write the re-encrypted value only if the
-- field still holds the value strata read.
-- KEYS[1]  the hash
-- ARGV     field, stored value read, value to store instead; repeated
-- Returns how many fields were written; fewer than asked means some changed
-- meanwhile (left for a later pass). HSET keeps the hash's expiry.
if redis.call('TYPE', KEYS[1]).ok ~= 'hash' then
  return 0
end
local written = 0
for i = 1, #ARGV - 2, 3 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
    written = written + 1
  end
end
return written
