#!lua flags=allow-cross-slot-keys
-- FLUSHALL / FLUSHDB through strata with write-behind rules
-- (src/tier/behind/flush.rs): the flush empties the keyspace but keeps the
-- write-behind outboxes (standalone: `<outbox_key>` and its meta hash;
-- cluster: every `<outbox_key>:{tag}` stream and meta hash on this node),
-- with their consumer groups and pending entries. Writes acknowledged
-- before the flush still reach Postgres, which a flush never erases.
-- One script: nothing can be captured between the copy and the flush.
-- (allow-cross-slot-keys: in cluster mode the node's outboxes live in
-- many slots.)
--
-- ARGV[1] the outbox key, ARGV[2] its MATCH pattern (escaped), ARGV[3]
-- FLUSHALL or FLUSHDB, ARGV[4..] its arguments (ASYNC, SYNC).
local base, pattern, verb = ARGV[1], ARGV[2], ARGV[3]
local meta, tagged = base .. ':meta', base .. ':{'
local kept = {}
local cursor = '0'
repeat
  local r = redis.call('SCAN', cursor, 'MATCH', pattern, 'COUNT', 1000)
  cursor = r[1]
  for _, k in ipairs(r[2]) do
    if k == base or k == meta or string.sub(k, 1, #tagged) == tagged then
      kept[#kept + 1] = { k, redis.call('DUMP', k) }
    end
  end
until cursor == '0'
local args = {}
for i = 4, #ARGV do args[#args + 1] = ARGV[i] end
local reply = redis.pcall(verb, unpack(args))
if type(reply) == 'table' and reply.err then return reply end
for _, e in ipairs(kept) do
  if e[2] then redis.call('RESTORE', e[1], 0, e[2], 'REPLACE') end
end
return reply
