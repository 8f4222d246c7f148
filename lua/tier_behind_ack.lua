-- Write-behind acknowledgement (src/tier/behind/drain.rs): once a batch is
-- committed in Postgres, its entries leave the group's pending list and the
-- stream, and the bytes they held are given back to the outbox bound. One
-- script, so the byte count never drifts from what the stream holds.
--
-- KEYS[1] the outbox stream, KEYS[2] its meta hash; ARGV[1] the group,
-- then (entry id, bytes) pairs. An entry another strata already deleted
-- (a redelivery) gives nothing back twice.
local freed = 0
for i = 2, #ARGV, 2 do
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
  if redis.call('XDEL', KEYS[1], ARGV[i]) == 1 then freed = freed + tonumber(ARGV[i + 1]) end
end
if freed > 0 then redis.call('HINCRBY', KEYS[2], 'bytes', -freed) end
return freed
