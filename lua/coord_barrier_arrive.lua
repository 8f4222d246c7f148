-- BARRIER.WAIT's arrival (src/coord/barrier.rs). KEYS[1] the barrier's
-- hash: `done` generations completed (never expires), `arrived` callers
-- of the current generation, `parties` its size, `broken` the last
-- generation a BARRIER.RESET broke. ARGV[1] parties, ARGV[2] wake channel.
-- Returns {generation, 1} when this caller is the last (the barrier trips:
-- every strata's waiters are woken, one PUBLISH), {generation, 0} when it
-- must wait for generation `done >= generation`, {-1, parties} when the
-- current generation was started with another number of parties.
local done = tonumber(redis.call('HGET', KEYS[1], 'done') or '0')
local arrived = tonumber(redis.call('HGET', KEYS[1], 'arrived') or '0')
local parties = tonumber(ARGV[1])
local current = tonumber(redis.call('HGET', KEYS[1], 'parties') or ARGV[1])
if arrived > 0 and current ~= parties then
  return {-1, current}
end
local gen = done + 1
if arrived + 1 >= parties then
  redis.call('HSET', KEYS[1], 'done', gen, 'arrived', 0, 'parties', parties)
  redis.call('PUBLISH', ARGV[2], gen)
  return {gen, 1}
end
redis.call('HSET', KEYS[1], 'arrived', arrived + 1, 'parties', parties)
return {gen, 0}
