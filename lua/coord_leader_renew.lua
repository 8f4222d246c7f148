-- LEADER.RENEW and KEEPALIVE renewals (src/coord/leader.rs): a new ttl
-- for the leadership if `node` (empty: any) leads in `term`.
-- KEYS[1] the leader's hash, KEYS[2] the term counter.
-- ARGV[1] node id or '', ARGV[2] term, ARGV[3] ttl in ms.
-- Returns 1 renewed, 0 not the leader, -2 term never issued.
local cur = redis.call('HMGET', KEYS[1], 'node', 'term')
if cur[2] == ARGV[2] and (ARGV[1] == '' or cur[1] == ARGV[1]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
if tonumber(ARGV[2]) > tonumber(redis.call('GET', KEYS[2]) or '0') then
  return -2
end
return 0
