-- LEADER.RESIGN (src/coord/leader.rs): step down if `node` (empty: any)
-- leads in `term`, and wake every strata's campaigners and watchers (one
-- PUBLISH). KEYS[1] the leader's hash, KEYS[2] the term counter.
-- ARGV[1] node id or '', ARGV[2] term, ARGV[3] wake channel.
-- Returns 1 resigned, 0 not the leader, -2 term never issued.
local cur = redis.call('HMGET', KEYS[1], 'node', 'term')
if cur[2] == ARGV[2] and (ARGV[1] == '' or cur[1] == ARGV[1]) then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[3], ARGV[2])
  return 1
end
if tonumber(ARGV[2]) > tonumber(redis.call('GET', KEYS[2]) or '0') then
  return -2
end
return 0
