// Lua scripts of the Redis dispatch lane (SPEC Q-3, T-3). Every transition of a message is one
// script, so it is atomic on the server; ioredis's defineCommand loads each once and calls it by
// SHA (EVALSHA), falling back to EVAL only when the server lost its script cache.
//
// Layout, per tenant and queue (base = {prefix}:{env}:{tenant}:{queue}):
//   {base}:ready:{type}   ZSET  member = job id, score = claim order (see READY_SCORE)
//   {base}:delayed:{type} ZSET  member = job id, score = available_at (ms)
//   {base}:inflight       ZSET  member = job id, score = visibility deadline (ms)
//   {base}:dead           ZSET  member = job id, score = when it was buried (ms)
//   {base}:msg            HASH  job id -> message JSON (at most one message per job)
// and per prefix and environment, holding only key names (no tenant data):
//   {prefix}:{env}:_:lanes  SET     "tenant\tqueue\ttype" of every lane with ready or delayed work
//   {prefix}:{env}:_:bases  SET     "tenant\tqueue" of every base with messages in flight
//   {prefix}:{env}:_:rr     STRING  round-robin cursor: the tenant the last claim served last
//
// The scripts touch keys derived from their arguments, so they assume one Redis server (or a
// cluster where every Docket key hashes to one slot); see docs/redis.md.

// Ready order is the SQL backends' claim order: priority, then available_at (to the second;
// equal scores fall back to the member, a time-ordered UUIDv7). A double holds integers up to
// 2^53: 21 bits of priority (±1,000,000, offset to be positive) times 2^32 seconds (from 2020,
// ~136 years).
const READY_SCORE = `
local function readyScore(m)
  local secs = math.floor(((tonumber(m.available_at) or 0) - 1577836800000) / 1000)
  if secs < 0 then secs = 0 end
  return ((tonumber(m.priority) or 0) + 1048576) * 4294967296 + secs
end`;

/**
 * Publishes a job's message unless one exists: ready now, or delayed until its time. With a
 * channel and a sender (ARGV[3], ARGV[4]), a message made ready now also publishes the wake-up
 * (the sender's id, so the sending process can skip its own), in the same round trip.
 */
export const PUBLISH = `${READY_SCORE}
local base, lanes = KEYS[1], KEYS[2]
local json, now, channel, sender = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local m = cjson.decode(json)
if redis.call('HSETNX', base .. ':msg', m.job_id, json) == 0 then return 0 end
if tonumber(m.available_at) > now then
  redis.call('ZADD', base .. ':delayed:' .. m.job_type, m.available_at, m.job_id)
else
  redis.call('ZADD', base .. ':ready:' .. m.job_type, readyScore(m), m.job_id)
end
redis.call('SADD', lanes, m.tenant_id .. '\\t' .. m.queue .. '\\t' .. m.job_type)
if channel and tonumber(m.available_at) <= now then redis.call('PUBLISH', channel, sender) end
return 1`;

/**
 * Claims up to `limit` messages, round-robin across tenants (one message per tenant per round,
 * tenants visited in name order from after the tenant the previous claim served last), so one
 * tenant's flood delays another tenant's job by at most one round, and with more tenants than
 * `limit` every tenant is served within ceil(tenants / limit) claims. Priority orders a
 * tenant's own messages, not one tenant's against another's (as on the SQL backends). Due delayed messages are promoted first; each claimed message moves to the
 * in-flight set with its visibility deadline, its delivery counted and a new message id.
 * Lanes are filtered by JSON arrays of tenants, queues, types and excluded types (empty = any).
 */
export const CLAIM = `${READY_SCORE}
local lanesKey, rrKey, basesKey = KEYS[1], KEYS[2], KEYS[3]
local prefix, now, limit, deadline = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local function set(json)
  local s, n = {}, 0
  for _, v in ipairs(cjson.decode(json)) do s[v] = true; n = n + 1 end
  return n > 0 and s or nil
end
local tenants, queues, types, excluded = set(ARGV[5]), set(ARGV[6]), set(ARGV[7]), set(ARGV[8])
local byTenant, order = {}, {}
for _, lane in ipairs(redis.call('SMEMBERS', lanesKey)) do
  local t, q, ty = string.match(lane, '^([^\\t]*)\\t([^\\t]*)\\t(.*)$')
  if t and (not tenants or tenants[t]) and (not queues or queues[q]) and (not types or types[ty])
     and not (excluded and excluded[ty]) then
    if not byTenant[t] then byTenant[t] = {}; table.insert(order, t) end
    table.insert(byTenant[t], { base = prefix .. ':' .. t .. ':' .. q, type = ty, lane = lane,
      tq = t .. '\\t' .. q })
  end
end
table.sort(order)
local n = #order
if n == 0 then return {} end
for _, t in ipairs(order) do
  for _, l in ipairs(byTenant[t]) do
    local delayed = l.base .. ':delayed:' .. l.type
    for _, id in ipairs(redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, limit)) do
      local json = redis.call('HGET', l.base .. ':msg', id)
      if json then
        redis.call('ZADD', l.base .. ':ready:' .. l.type, readyScore(cjson.decode(json)), id)
      end
      redis.call('ZREM', delayed, id)
    end
  end
end
-- The rotation resumes after the last tenant served by the previous claim (by name, so
-- tenants coming and going do not shift it).
local cursor, start = redis.call('GET', rrKey) or '', 0
for i, t in ipairs(order) do
  if t > cursor then start = i - 1; break end
end
local out, exhausted, active, used, last = {}, {}, n, 0, nil
while #out < limit and active > 0 do
  active = 0
  for k = 0, n - 1 do
    if #out >= limit then break end
    local t = order[((start + k) % n) + 1]
    if not exhausted[t] then
      local best, bestScore, bestLane
      for _, l in ipairs(byTenant[t]) do
        local top = redis.call('ZRANGE', l.base .. ':ready:' .. l.type, 0, 0, 'WITHSCORES')
        if top[1] then
          local score = tonumber(top[2])
          if not best or score < bestScore or (score == bestScore and top[1] < best) then
            best, bestScore, bestLane = top[1], score, l
          end
        end
      end
      if best then
        active = active + 1
        redis.call('ZREM', bestLane.base .. ':ready:' .. bestLane.type, best)
        local msgKey = bestLane.base .. ':msg'
        local stored = redis.call('HGET', msgKey, best)
        -- An entry whose message was lost (evicted, half-deleted) is dropped; reconciliation
        -- republishes its job from the store.
        if stored then
          local m = cjson.decode(stored)
          m.attempt = (tonumber(m.attempt) or 0) + 1
          used = used + 1
          -- A delivery's id: its publication and delivery count (unique per delivery, and no
          -- ids to generate and ship for a claim that may come back short).
          m.message_id = m.event_id .. '.' .. m.attempt
          local json = cjson.encode(m)
          redis.call('HSET', msgKey, best, json)
          redis.call('ZADD', bestLane.base .. ':inflight', deadline, best)
          redis.call('SADD', basesKey, bestLane.tq)
          table.insert(out, json)
          last = t
        end
      else
        exhausted[t] = true
      end
    end
  end
end
if last then redis.call('SET', rrKey, last) end
for _, t in ipairs(order) do
  for _, l in ipairs(byTenant[t]) do
    if redis.call('ZCARD', l.base .. ':ready:' .. l.type) == 0
       and redis.call('ZCARD', l.base .. ':delayed:' .. l.type) == 0 then
      redis.call('SREM', lanesKey, l.lane)
    end
  end
end
return out`;

/**
 * Removes the messages of many jobs of one base and type (a completed batch): one script call
 * instead of one per job. Returns how many messages were removed.
 */
export const ACK_MANY = `
local base, jtype, n = KEYS[1], ARGV[1], 0
local keys = { base .. ':ready:' .. jtype, base .. ':delayed:' .. jtype, base .. ':inflight',
  base .. ':dead' }
-- Many members per call, in chunks that stay well inside Lua's stack limit for unpack.
for first = 2, #ARGV, 500 do
  local last = math.min(first + 499, #ARGV)
  for _, k in ipairs(keys) do redis.call('ZREM', k, unpack(ARGV, first, last)) end
  n = n + redis.call('HDEL', base .. ':msg', unpack(ARGV, first, last))
end
return n`;

/** Removes a job's message wherever it is (its job finished, or was dropped). */
export const ACK = `
local base, id, jtype = KEYS[1], ARGV[1], ARGV[2]
redis.call('ZREM', base .. ':ready:' .. jtype, id)
redis.call('ZREM', base .. ':delayed:' .. jtype, id)
redis.call('ZREM', base .. ':inflight', id)
redis.call('ZREM', base .. ':dead', id)
return redis.call('HDEL', base .. ':msg', id)`;

/**
 * Schedules another delivery of a job's message at `at` (a retry with backoff, a release, a job
 * that is not claimable yet), from wherever the message is; the deliveries stay counted.
 */
export const NACK = `${READY_SCORE}
local base, lanes = KEYS[1], KEYS[2]
local id, at, now = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local json = redis.call('HGET', base .. ':msg', id)
if not json then return 0 end
local m = cjson.decode(json)
if ARGV[4] ~= '' then m.available_at = tonumber(ARGV[4]); json = cjson.encode(m) end
redis.call('HSET', base .. ':msg', id, json)
redis.call('ZREM', base .. ':inflight', id)
redis.call('ZREM', base .. ':dead', id)
redis.call('ZREM', base .. ':ready:' .. m.job_type, id)
redis.call('ZREM', base .. ':delayed:' .. m.job_type, id)
if at > now then
  redis.call('ZADD', base .. ':delayed:' .. m.job_type, at, id)
else
  redis.call('ZADD', base .. ':ready:' .. m.job_type, readyScore(m), id)
end
redis.call('SADD', lanes, m.tenant_id .. '\\t' .. m.queue .. '\\t' .. m.job_type)
return 1`;

/** Moves a job's message to the dead set (its job went to the dead-letter queue). */
export const BURY = `
local base, id, now, jtype = KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3]
if redis.call('HEXISTS', base .. ':msg', id) == 0 then return 0 end
redis.call('ZREM', base .. ':inflight', id)
redis.call('ZREM', base .. ':ready:' .. jtype, id)
redis.call('ZREM', base .. ':delayed:' .. jtype, id)
redis.call('ZADD', base .. ':dead', now, id)
return 1`;

/** Extends the visibility deadline of messages still in flight; returns how many were. */
export const EXTEND = `
local base, deadline, n = KEYS[1], tonumber(ARGV[1]), 0
for i = 2, #ARGV do
  n = n + redis.call('ZADD', base .. ':inflight', 'XX', 'CH', deadline, ARGV[i])
end
return n`;

/**
 * Redelivers in-flight messages whose visibility deadline passed (their worker died or hung),
 * across every tenant and queue: back to ready (the store decides whether the job can run
 * again). Returns the messages moved.
 */
export const EXPIRE = `${READY_SCORE}
local basesKey, lanes, prefix = KEYS[1], KEYS[2], ARGV[1]
local now, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
for _, tq in ipairs(redis.call('SMEMBERS', basesKey)) do
  local t, q = string.match(tq, '^([^\\t]*)\\t(.*)$')
  local base = prefix .. ':' .. t .. ':' .. q
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', base .. ':inflight', '-inf', now, 'LIMIT', 0, limit)) do
    redis.call('ZREM', base .. ':inflight', id)
    local json = redis.call('HGET', base .. ':msg', id)
    if json then
      local m = cjson.decode(json)
      redis.call('ZADD', base .. ':ready:' .. m.job_type, readyScore(m), id)
      redis.call('SADD', lanes, t .. '\\t' .. q .. '\\t' .. m.job_type)
      table.insert(out, json)
    end
  end
  if redis.call('ZCARD', base .. ':inflight') == 0 then redis.call('SREM', basesKey, tq) end
end
return out`;

/**
 * Reconciles one pending job (the store says it may run) with its message: publishes a message
 * if there is none, and otherwise makes sure it can be claimed — back from the dead set (a
 * replay whose Redis write failed), back from in-flight once the visibility deadline passed
 * (a claim whose store write failed), into a ready or delayed set if it is in none, and its lane
 * listed. Returns 1 when it changed anything.
 */
export const RESCUE = `${READY_SCORE}
local base, lanes = KEYS[1], KEYS[2]
local json, now = ARGV[1], tonumber(ARGV[2])
local fresh = cjson.decode(json)
local id, jtype = fresh.job_id, fresh.job_type
local lane = fresh.tenant_id .. '\\t' .. fresh.queue .. '\\t' .. jtype
local stored = redis.call('HGET', base .. ':msg', id)
local m = stored and cjson.decode(stored) or fresh
local changed = 0
if not stored then redis.call('HSET', base .. ':msg', id, json); changed = 1 end
local inReady = redis.call('ZSCORE', base .. ':ready:' .. jtype, id)
local inDelayed = redis.call('ZSCORE', base .. ':delayed:' .. jtype, id)
local deadline = redis.call('ZSCORE', base .. ':inflight', id)
if deadline and tonumber(deadline) >= now then return changed end
if deadline then redis.call('ZREM', base .. ':inflight', id); changed = 1 end
if redis.call('ZREM', base .. ':dead', id) == 1 then changed = 1 end
if not inReady and not inDelayed then
  m.available_at = fresh.available_at
  m.priority = fresh.priority
  redis.call('HSET', base .. ':msg', id, cjson.encode(m))
  if tonumber(fresh.available_at) > now then
    redis.call('ZADD', base .. ':delayed:' .. jtype, fresh.available_at, id)
  else
    redis.call('ZADD', base .. ':ready:' .. jtype, readyScore(m), id)
  end
  changed = 1
end
if redis.call('SADD', lanes, lane) == 1 then changed = 1 end
return changed`;
