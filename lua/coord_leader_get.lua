-- LEADER.GET and LEADER.WATCH (src/coord/leader.rs): the leader at one
-- instant. KEYS[1] the leader's hash, KEYS[2] the term counter.
-- Returns {node, term, pttl, last term issued}; node '' and term 0 when
-- nobody leads.
local cur = redis.call('HMGET', KEYS[1], 'node', 'term')
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if not cur[2] then
  return {'', 0, -2, last}
end
return {cur[1] or '', tonumber(cur[2]), redis.call('PTTL', KEYS[1]), last}
