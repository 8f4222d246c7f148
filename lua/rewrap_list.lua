-- PROXY REWRAP, lists: per index, write the re-encrypted element only if the
-- list still holds the element strata read at that index (a push or pop
-- meanwhile shifts indexes; those elements are left for a later pass).
-- KEYS[1]  the list
-- ARGV     index, stored element read, element to store instead; repeated
-- Returns how many elements were written. LSET keeps the list's expiry.
if redis.call('TYPE', KEYS[1]).ok ~= 'list' then
  return 0
end
local written = 0
for i = 1, #ARGV - 2, 3 do
  local index = tonumber(ARGV[i])
  if redis.call('LINDEX', KEYS[1], index) == ARGV[i + 1] then
    redis.call('LSET', KEYS[1], index, ARGV[i + 2])
    written = written + 1
  end
end
return written
