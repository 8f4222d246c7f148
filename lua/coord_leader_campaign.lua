-- LEADER.CAMPAIGN (src/coord/leader.rs): lead the election if nobody
-- does. KEYS[1] the leader's hash (node, term) with the leadership's ttl,
-- KEYS[2] the term counter (never expires: terms only grow while Redis
-- keeps it). ARGV[1] node id, ARGV[2] ttl in ms, ARGV[3] wake channel.
-- Returns {term, 0} when ARGV[1] leads (a new term, or its current one,
-- renewed, when it led already), {0, pttl} while another node leads.
local cur = redis.call('HMGET', KEYS[1], 'node', 'term')
if cur[2] then
  if cur[1] == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {tonumber(cur[2]), 0}
  end
  return {0, redis.call('PTTL', KEYS[1])}
end
local term = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'node', ARGV[1], 'term', term)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], term)
return {term, 0}
