package redis

import goredis "github.com/redis/go-redis/v9"

// The scripts share these helpers. reclaim removes expired records as
// drop does one, but with one DEL and two ZREMs per 256 records rather than
// per record: the janitor reclaims every CVC once its ttl is past, as many
// per second as checkouts come in.
//
// The scripts share these helpers. KEYS[1] is the token index (idx),
// KEYS[2] the expiry index (exp); ARGV[1] the prefix, ARGV[2] tok's clock
// in Unix ms. A record is live if its hash exists and its expiry (0: none)
// is after now: tok's clock judges, Redis's TTL only backs it up.
const luaCommon = `
local P, now = ARGV[1], tonumber(ARGV[2])
local function live(tok)
  if redis.call('EXISTS', P .. 'r:' .. tok) == 0 then return false end
  local e = redis.call('ZSCORE', KEYS[2], tok)
  if not e then return true end
  e = tonumber(e)
  return e == 0 or e > now
end
local function drop(tok)
  local rk = P .. 'r:' .. tok
  local fp = redis.call('HGET', rk, 'f')
  if fp and fp ~= '' then
    local fk = P .. 'f:' .. fp
    if redis.call('GET', fk) == tok then redis.call('DEL', fk) end
  end
  redis.call('DEL', rk)
  redis.call('ZREM', KEYS[1], tok)
  redis.call('ZREM', KEYS[2], tok)
end
local function reclaim(limit)
  local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '(0', now, 'LIMIT', 0, limit)
  local rks = {}
  for i, t in ipairs(dead) do
    local rk = P .. 'r:' .. t
    rks[i] = rk
    local fp = redis.call('HGET', rk, 'f')
    if fp and fp ~= '' then
      local fk = P .. 'f:' .. fp
      if redis.call('GET', fk) == t then redis.call('DEL', fk) end
    end
  end
  for i = 1, #dead, 256 do
    local j = math.min(i + 255, #dead)
    redis.call('DEL', unpack(rks, i, j))
    redis.call('ZREM', KEYS[1], unpack(dead, i, j))
    redis.call('ZREM', KEYS[2], unpack(dead, i, j))
  end
  return #dead
end
`

// insertScript judges and writes the records of several Insert calls
// (ARGV[3] the cap, 0: none; then per call its number of records n and
// four arguments per record: token, fingerprint or "", sealed value,
// expiry in Unix ms or 0). Each call is judged on its own, in order, as if
// it ran alone: all or nothing against the cap. It returns one reply per
// call: {"ok", status, token, value, …} with, per record, status 0
// (stored; value ""), 1 (existing: token and value of that record) or 2
// (collision), or {"full", held, cap} having written nothing of that call.
var insertScript = goredis.NewScript(luaCommon + `
local max = tonumber(ARGV[3])
local held = redis.call('ZCARD', KEYS[2])
local function insert(at, n)
  if max > 0 and held + n > max then
    reclaim(held)
    held = redis.call('ZCARD', KEYS[2])
  end
  local out, stored = {'ok'}, {}
  for i = 0, n - 1 do
    local tok, fp, val, ex = ARGV[at + i*4], ARGV[at + 1 + i*4], ARGV[at + 2 + i*4], tonumber(ARGV[at + 3 + i*4])
    local done = false
    if fp ~= '' then
      local t = redis.call('GET', P .. 'f:' .. fp)
      if t then
        if live(t) then
          table.insert(out, 1); table.insert(out, t); table.insert(out, redis.call('HGET', P .. 'r:' .. t, 'v'))
          done = true
        else
          drop(t)
        end
      end
    end
    local rk = P .. 'r:' .. tok
    -- HSETNX both claims the token and writes the value: one command
    -- where a check and a write would be two.
    if not done and redis.call('HSETNX', rk, 'v', val) == 0 then
      if live(tok) then
        table.insert(out, 2); table.insert(out, ''); table.insert(out, '')
        done = true
      else
        drop(tok)
        redis.call('HSET', rk, 'v', val)
      end
    end
    if not done then
      redis.call('ZADD', KEYS[1], 0, tok)
      redis.call('ZADD', KEYS[2], ex, tok)
      if fp ~= '' then
        redis.call('HSET', rk, 'f', fp)
        redis.call('SET', P .. 'f:' .. fp, tok)
      end
      if ex > 0 then
        redis.call('PEXPIREAT', rk, ex)
        if fp ~= '' then redis.call('PEXPIREAT', P .. 'f:' .. fp, ex) end
      end
      table.insert(stored, tok)
      table.insert(out, 0); table.insert(out, tok); table.insert(out, '')
    end
  end
  held = redis.call('ZCARD', KEYS[2])
  if max > 0 and held > max then
    for _, t in ipairs(stored) do drop(t) end
    held = held - #stored
    return {'full', held, max}
  end
  return out
end
local replies, at = {}, 4
while at <= #ARGV do
  local n = tonumber(ARGV[at])
  table.insert(replies, insert(at + 1, n))
  at = at + 1 + 4 * n
end
return replies
`)

// findScript returns {token, value} of the record with fingerprint ARGV[3],
// or nil.
var findScript = goredis.NewScript(luaCommon + `
local t = redis.call('GET', P .. 'f:' .. ARGV[3])
if not t then return nil end
local v = redis.call('HGET', P .. 'r:' .. t, 'v')
if not v then return nil end
return {t, v}
`)

// deleteScript removes the record of token ARGV[3] and returns 1, or 0 if
// there was none.
var deleteScript = goredis.NewScript(luaCommon + `
if redis.call('EXISTS', P .. 'r:' .. ARGV[3]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[3]); redis.call('ZREM', KEYS[2], ARGV[3])
  return 0
end
drop(ARGV[3])
return 1
`)

// scanScript returns {token, value, …} of up to ARGV[4] live records whose
// tokens sort after ARGV[3], in byte order.
var scanScript = goredis.NewScript(luaCommon + `
local limit = tonumber(ARGV[4])
local from = '(' .. ARGV[3]
if ARGV[3] == '' then from = '-' end
local out = {}
while #out < limit * 2 do
  local batch = redis.call('ZRANGEBYLEX', KEYS[1], from, '+', 'LIMIT', 0, limit)
  if #batch == 0 then break end
  for _, t in ipairs(batch) do
    from = '(' .. t
    if live(t) then
      local v = redis.call('HGET', P .. 'r:' .. t, 'v')
      if v then table.insert(out, t); table.insert(out, v) end
      if #out >= limit * 2 then break end
    end
  end
end
return out
`)

// purgeScript removes up to ARGV[3] expired records and returns how many.
var purgeScript = goredis.NewScript(luaCommon + `
return reclaim(tonumber(ARGV[3]))
`)

// sessionPurgeScript removes every session (KEYS[1] the set of session
// keys) last seen at or before ARGV[2] or created at or before ARGV[3]
// (Unix ms), judged and removed in one step so that a touch racing it is
// either before (and kept if it is recent) or after (and finds nothing).
// ARGV[1] is the prefix. It returns how many it removed.
var sessionPurgeScript = goredis.NewScript(`
local P, seenBy, createdBy = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local n = 0
for _, k in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local sk = P .. 's:' .. k
  local f = redis.call('HMGET', sk, 'cr', 'ls')
  if not f[1] then
    redis.call('SREM', KEYS[1], k)
  elseif tonumber(f[2]) <= seenBy or tonumber(f[1]) <= createdBy then
    redis.call('DEL', sk)
    redis.call('SREM', KEYS[1], k)
    n = n + 1
  end
end
return n
`)

// touchScript sets the last-seen time (ARGV[1]) of the session KEYS[1] if
// it exists and returns 1, else 0.
var touchScript = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'ls', ARGV[1])
return 1
`)
