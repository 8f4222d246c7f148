-- Write-behind capture (src/tier/behind/capture.rs): applies a write to a
-- mirrored key AND appends its outbox entry, in one atomic script, so a
-- change is either in Redis and in the outbox, or in neither.
--
-- KEYS[1] the outbox stream, KEYS[2] its meta hash (fields `bytes`: what
-- the outbox holds, `ver`: the last version given), KEYS[3..] the keys.
-- ARGV[1] op, ARGV[2] outbox bound in bytes, ARGV[3] strata's clock (ms),
-- ARGV[4] the drain's consumer group, then the op's arguments. A stream
-- the script creates gets the group at once (from its start), so the
-- drain never finds a stream without it (cluster mode: one per slot).
--
-- Entry fields: k key, o 'p' (put) or 'd' (delete), t type, v value (a
-- DUMP payload for non-strings), e absolute expiry in ms or '', n version.
-- Versions come from Redis's clock in microseconds and only grow (a
-- version is never given twice, even if the clock steps back), so the
-- order of versions is the order Redis applied the changes in.
-- The reply is the client's reply to its command.

local stream, meta = KEYS[1], KEYS[2]
local op, max, now_ms, group = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local OVERHEAD = 64
-- The op's arguments keep the indexes they had before the group was added.
local args = { ARGV[1], ARGV[2], ARGV[3] }
for i = 5, #ARGV do args[i - 1] = ARGV[i] end
local ARGV = args
local grouped = false

local function full()
  return redis.error_reply('ERR tier backlog full (the write-behind outbox holds '
    .. (redis.call('HGET', meta, 'bytes') or '0') .. ' of ' .. ARGV[2]
    .. ' bytes; Postgres is behind or unreachable)')
end

local function room(need)
  local used = tonumber(redis.call('HGET', meta, 'bytes') or 0)
  return used + need <= max
end

local function version()
  local t = redis.call('TIME')
  local v = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local last = tonumber(redis.call('HGET', meta, 'ver') or 0)
  if v <= last then v = last + 1 end
  local s = string.format('%d', v)
  redis.call('HSET', meta, 'ver', s)
  return s
end

local function record(k, o, t, v, e)
  if not grouped then
    if redis.call('EXISTS', stream) == 0 then
      redis.call('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
    end
    grouped = true
  end
  redis.call('XADD', stream, '*', 'k', k, 'o', o, 't', t, 'v', v, 'e', e, 'n', version())
  redis.call('HINCRBY', meta, 'bytes', #k + #v + OVERHEAD)
end

-- The key as a put: its type and value (strings) or DUMP payload.
local function snapshot(k)
  local t = redis.call('TYPE', k).ok
  if t == 'string' then return t, redis.call('GET', k) end
  return t, redis.call('DUMP', k)
end

if op == 'set' then
  local k, v = KEYS[3], ARGV[4]
  local nx, xx, get, mode, at = ARGV[5] == '1', ARGV[6] == '1', ARGV[7] == '1', ARGV[8], ARGV[9]
  local old = false
  if get then
    old = redis.pcall('GET', k)
    if type(old) == 'table' and old.err then return old end
  end
  local exists = redis.call('EXISTS', k) == 1
  if (nx and exists) or (xx and not exists) then return old end
  if not room(#k + #v + OVERHEAD) then return full() end
  if mode == 'keep' then
    local t = redis.call('PEXPIRETIME', k)
    if t > 0 then at = string.format('%d', t) else at = '' end
    redis.call('SET', k, v, 'KEEPTTL')
  elseif mode == 'at' then
    redis.call('SET', k, v, 'PXAT', at)
  else
    at = ''
    redis.call('SET', k, v)
  end
  record(k, 'p', 'string', v, at)
  if get then return old end
  return redis.status_reply('OK')
elseif op == 'mset' then
  -- ARGV[4]: '1'/'0' per key (mirrored or not); ARGV[5..]: the values.
  local flags, need = ARGV[4], 0
  for i = 3, #KEYS do
    if string.sub(flags, i - 2, i - 2) == '1' then need = need + #KEYS[i] + #ARGV[i + 2] + OVERHEAD end
  end
  if not room(need) then return full() end
  for i = 3, #KEYS do
    redis.call('SET', KEYS[i], ARGV[i + 2])
    if string.sub(flags, i - 2, i - 2) == '1' then record(KEYS[i], 'p', 'string', ARGV[i + 2], '') end
  end
  return redis.status_reply('OK')
elseif op == 'del' then
  -- ARGV[4]: DEL or UNLINK; ARGV[5]: '1'/'0' per key. A mirrored key's
  -- delete is recorded even when Redis lacks it (evicted): Postgres must
  -- drop it too.
  local flags, need = ARGV[5], 0
  for i = 3, #KEYS do
    if string.sub(flags, i - 2, i - 2) == '1' then need = need + #KEYS[i] + OVERHEAD end
  end
  if not room(need) then return full() end
  local n = 0
  for i = 3, #KEYS do
    n = n + redis.call(ARGV[4], KEYS[i])
    if string.sub(flags, i - 2, i - 2) == '1' then record(KEYS[i], 'd', '', '', '') end
  end
  return n
elseif op == 'getdel' then
  local k = KEYS[3]
  local old = redis.pcall('GET', k)
  if type(old) == 'table' and old.err then return old end
  if not old then return false end
  if not room(#k + OVERHEAD) then return full() end
  redis.call('DEL', k)
  record(k, 'd', '', '', '')
  return old
elseif op == 'expire' then
  -- ARGV[4]: absolute time (ms); ARGV[5]: NX XX GT LT as four '1'/'0'.
  local k, when, f = KEYS[3], tonumber(ARGV[4]), ARGV[5]
  local cur = redis.call('PEXPIRETIME', k)
  if cur == -2 then return 0 end
  local has = cur ~= -1
  if string.sub(f, 1, 1) == '1' and has then return 0 end
  if string.sub(f, 2, 2) == '1' and not has then return 0 end
  if string.sub(f, 3, 3) == '1' and (not has or when <= cur) then return 0 end
  if string.sub(f, 4, 4) == '1' and has and when >= cur then return 0 end
  if when <= now_ms then
    -- Already past: Redis deletes the key.
    if not room(#k + OVERHEAD) then return full() end
    redis.call('DEL', k)
    record(k, 'd', '', '', '')
    return 1
  end
  local t, v = snapshot(k)
  if not room(#k + #v + OVERHEAD) then return full() end
  redis.call('PEXPIREAT', k, ARGV[4])
  record(k, 'p', t, v, ARGV[4])
  return 1
elseif op == 'persist' then
  local k = KEYS[3]
  if redis.call('PEXPIRETIME', k) < 0 then return 0 end
  local t, v = snapshot(k)
  if not room(#k + #v + OVERHEAD) then return full() end
  redis.call('PERSIST', k)
  record(k, 'p', t, v, '')
  return 1
elseif op == 'rename' then
  -- RENAME, RENAMENX, COPY [REPLACE] (tier/rename.rs). KEYS[3] source,
  -- KEYS[4] destination; ARGV[4] rename|renamenx|copy|copyreplace;
  -- ARGV[5] '1'/'0' for source and destination mirrored. The destination's
  -- put (the source's state) and, for the renames, the source's delete.
  local src, dst, mode, f = KEYS[3], KEYS[4], ARGV[4], ARGV[5]
  local moves = mode == 'rename' or mode == 'renamenx'
  local sm, dm = string.sub(f, 1, 1) == '1', string.sub(f, 2, 2) == '1'
  if redis.call('EXISTS', src) == 0 then
    if moves then return redis.error_reply('ERR no such key') end
    return 0
  end
  if src == dst then
    if mode == 'rename' then return redis.status_reply('OK') end
    if mode == 'renamenx' then return 0 end
    return redis.error_reply('ERR source and destination objects are the same')
  end
  if (mode == 'renamenx' or mode == 'copy') and redis.call('EXISTS', dst) == 1 then return 0 end
  local t, v = snapshot(src)
  local e = redis.call('PEXPIRETIME', src)
  if e > 0 then e = string.format('%d', e) else e = '' end
  local need = 0
  if dm then need = need + #dst + #v + OVERHEAD end
  if sm and moves then need = need + #src + OVERHEAD end
  if not room(need) then return full() end
  local reply = 1
  if mode == 'rename' then
    redis.call('RENAME', src, dst)
    reply = redis.status_reply('OK')
  elseif mode == 'renamenx' then
    redis.call('RENAMENX', src, dst)
  elseif mode == 'copy' then
    redis.call('COPY', src, dst)
  else
    redis.call('COPY', src, dst, 'REPLACE')
  end
  if sm and moves then record(src, 'd', '', '', '') end
  if dm then record(dst, 'p', t, v, e) end
  return reply
end
return redis.error_reply('ERR tier: unknown write-behind op ' .. op)
