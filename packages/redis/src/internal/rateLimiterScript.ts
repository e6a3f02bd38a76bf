import * as Redis from "effect/persistence/Redis"

/**
 * The rate limiter store as one Lua script: `consume`, `refund` and `block`
 * of `RateLimiterStore`, for the four algorithms, with the same state
 * machines as `@bulwark/core`'s in-memory store (`internal/rateLimiterStore.ts`),
 * line for line, so that both stores decide alike.
 *
 * One hash per key:
 *
 * - `a` the algorithm's tag (a key used with another algorithm starts over,
 *   as in memory), `b` the end of a block (absent: none);
 * - token bucket: `t` the frontier tick, `k` the tokens at it; GCRA: `o` the
 *   origin, `T` the scaled theoretical arrival time;
 * - queues kept as numbered fields between a head and a next index (O(1) to
 *   push, pop and drop from the front): `r` the outstanding reservations of
 *   the token bucket and GCRA (`at|state before`, so that the latest one can
 *   be undone exactly), `w` the fixed windows (`window|count`), `e` the
 *   sliding window's log (`time|cost`, with `s` its total). An entry given
 *   back in the middle of a queue stays as a zero (`x|0`): decisions read
 *   only the last entry and sums, and the last entry is never a zero.
 *
 * A decision reads the scalars with one `HMGET` (and the queue entries it
 * needs with `HGET`), and writes what changed with one `HSET` (one `HDEL`
 * for dropped entries) and one `PEXPIRE`: a handful of commands on the
 * server per decision. Every number written is an integer, formatted with
 * `%.0f` (Lua's own `tostring` keeps 14 digits only). The clock is Redis `TIME` unless the
 * caller passes its own (`ARGV[2]`); times in replies are relative to the
 * script's `now`, so the caller adds its own clock (see the module
 * documentation of `RedisRateLimiterStore`).
 *
 * `KEYS[1]` the key. `ARGV`: 1 the operation, 2 the caller's clock or `""`,
 * 3 the tag, 4-6 the algorithm's numbers, 7 the expiry margin (ms), then
 * `consume`: 8 cost, 9 max wait (`-1` unbounded); `refund`: 8 cost, 9 the
 * reservation's time (script frame); `block`: 8 the block's length from now.
 *
 * `consume` replies `{admitted, blocked, at - now, at infinite, remaining,
 * resetAt - now, no resetAt, now}`; the others reply 1.
 *
 * @internal
 */
export const lua = `
local K = KEYS[1]
local op = ARGV[1]
local now
if ARGV[2] == "" then
  local time = redis.call("TIME")
  now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
else
  now = tonumber(ARGV[2])
end
local tag = ARGV[3]
local p1, p2, p3 = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local margin = tonumber(ARGV[7])
local INF = math.huge

local function fmt(x) return string.format("%.0f", x) end

-- Every scalar of every algorithm in one read; entries of queues are read one by one, when needed.
local v = redis.call("HMGET", K, "a", "b", "t", "k", "o", "T", "s", "rh", "rn", "wh", "wn", "eh", "en")
local found = v[1]
local fresh = false
if not found then
  if redis.call("EXISTS", K) == 1 then
    return redis.error_reply("BULWARK_BAD_ENTRY the key holds a hash that Bulwark did not write")
  end
  fresh = true
elseif found ~= tag then
  redis.call("DEL", K)
  fresh = true
end
local column = { b = 2, t = 3, k = 4, o = 5, T = 6, s = 7, rh = 8, rn = 9, wh = 10, wn = 11, eh = 12, en = 13 }
local function num(field, default)
  local x = v[column[field]]
  if fresh or not x then return default end
  return tonumber(x)
end

local S = {}
local dirty = false
local b = num("b", -INF)
local b0 = b

-- Writes wait in C (field -> value, or false to delete) and go out in one HSET and one HDEL;
-- reads of queue entries look there first.
local C = {}
local function cached(field)
  local x = C[field]
  if x == nil then x = redis.call("HGET", K, field) end
  return x
end

-- A queue of numbered fields: head index, next index, entries "x|y" or "x|y|z".
local function queue(name)
  local h, n = num(name .. "h", 0), num(name .. "n", 0)
  return { name = name, h = h, n = n, h0 = h, n0 = n }
end
local function qget(q, i)
  local x, y, z = string.match(cached(q.name .. fmt(i)), "^(%-?%d+)|(%-?%d+)|?(%-?%d*)$")
  return tonumber(x), tonumber(y), tonumber(z)
end
local function qset(q, i, value)
  C[q.name .. fmt(i)] = value
  dirty = true
end
local function qpush(q, value)
  qset(q, q.n, value)
  q.n = q.n + 1
end
local function qshift(q)
  C[q.name .. fmt(q.h)] = false
  q.h = q.h + 1
  if q.h == q.n then q.h = 0; q.n = 0 end
  dirty = true
end
local function qpop(q)
  q.n = q.n - 1
  C[q.name .. fmt(q.n)] = false
  if q.h == q.n then q.h = 0; q.n = 0 end
  dirty = true
end
-- Pops trailing zeros (entries given back): the last entry is never a zero.
local function qtrim(q)
  while q.n > q.h do
    local _, c = qget(q, q.n - 1)
    if c > 0 then return end
    qpop(q)
  end
end
local function qsave(q)
  if q.h ~= q.h0 then C[q.name .. "h"] = fmt(q.h) end
  if q.n ~= q.n0 then C[q.name .. "n"] = fmt(q.n) end
end

local A = {}

-- ---------------------------------------------------------------------------
-- token bucket: p1 capacity, p2 refill, p3 per (ms)
-- ---------------------------------------------------------------------------
if tag == "TokenBucket" then
  local cap, refill, per = p1, p2, p3
  local R = queue("r")
  if fresh then
    S.t = math.floor(now / per)
    S.k = cap
  else
    S.t = num("t", 0)
    S.k = num("k", cap)
  end
  local function advance(time)
    local tick = math.floor(time / per)
    if tick > S.t then
      S.k = math.min(cap, S.k + refill * (tick - S.t))
      S.t = tick
    end
  end
  A.consume = function(cost, maxWait)
    local start = math.max(now, b)
    advance(start)
    if cost > cap then return false, INF, false end
    local ticks = 0
    if S.k < cost then ticks = math.ceil((cost - S.k) / refill) end
    local at = math.max((S.t + ticks) * per, start)
    if maxWait >= 0 and at - now > maxWait then return false, at, b - now > maxWait end
    if at > now then
      -- Reservations whose time has come are spent: they are never given back.
      while R.n > R.h do
        local rat = qget(R, R.h)
        if rat > now then break end
        qshift(R)
      end
      qpush(R, fmt(at) .. "|" .. fmt(S.t) .. "|" .. fmt(S.k))
    end
    if ticks > 0 then
      S.k = math.min(cap, S.k + refill * ticks)
      S.t = S.t + ticks
    end
    S.k = S.k - cost
    dirty = true
    return true, at, false
  end
  -- Only the most recent reservation can be credited exactly; an older one is forfeited.
  A.refund = function(cost, at)
    if at <= now or R.n <= R.h then return end
    local rat, tick, tokens = qget(R, R.n - 1)
    if rat ~= at then return end
    qpop(R)
    S.t = tick
    S.k = tokens
    dirty = true
  end
  A.remaining = function()
    if b > now then return 0 end
    local tick = math.floor(now / per)
    if tick < S.t then return 0 end
    return math.min(cap, S.k + refill * (tick - S.t))
  end
  A.restAt = function()
    local full = -INF
    if S.k < cap then full = (S.t + math.ceil((cap - S.k) / refill)) * per end
    return math.max(full, b)
  end
  A.save = function()
    C.t = fmt(S.t)
    C.k = fmt(S.k)
    qsave(R)
  end

-- ---------------------------------------------------------------------------
-- GCRA: p1 rate, p2 per (ms), p3 burst; times scaled by the rate
-- ---------------------------------------------------------------------------
elseif tag == "Gcra" then
  local burst = p3
  local function gcd(x, y)
    while y ~= 0 do x, y = y, x % y end
    return x
  end
  local divisor = gcd(p1, p2)
  local rate, per = p1 / divisor, p2 / divisor
  local R = queue("r")
  if fresh then
    S.o = math.floor(now)
    S.T = 0
  else
    S.o = num("o", math.floor(now))
    S.T = num("T", 0)
  end
  local function scaled(time) return (time - S.o) * rate end
  A.consume = function(cost, maxWait)
    local start = math.max(now, b)
    if cost > burst then return false, INF, false end
    local n = scaled(start)
    local base = math.max(S.T, n)
    local allowAt = base + cost * per - burst * per
    local at
    if allowAt <= n then at = start else at = S.o + math.ceil(allowAt / rate) end
    if maxWait >= 0 and at - now > maxWait then return false, at, b - now > maxWait end
    if at > now then
      while R.n > R.h do
        local rat = qget(R, R.h)
        if rat > now then break end
        qshift(R)
      end
      qpush(R, fmt(at) .. "|" .. fmt(S.T))
    end
    -- Charged from the theoretical time, not from the slot rounded up to a whole millisecond: the
    -- rounding never accumulates, so waiting callers get the rate (400/s, not 333/s).
    S.T = base + cost * per
    dirty = true
    return true, at, false
  end
  A.refund = function(cost, at)
    if at <= now or R.n <= R.h then return end
    local rat, before = qget(R, R.n - 1)
    if rat ~= at then return end
    qpop(R)
    S.T = before
    dirty = true
  end
  A.remaining = function()
    if b > now then return 0 end
    local backlog = S.T - scaled(now)
    if backlog < 0 then backlog = 0 end
    local left = math.floor((burst * per - backlog) / per)
    if left > 0 then return left end
    return 0
  end
  A.restAt = function()
    return math.max(S.o + math.ceil(S.T / rate), b)
  end
  A.save = function()
    C.o = fmt(S.o)
    C.T = fmt(S.T)
    qsave(R)
  end

-- ---------------------------------------------------------------------------
-- fixed window: p1 limit, p2 window (ms)
-- ---------------------------------------------------------------------------
elseif tag == "FixedWindow" then
  local limit, size = p1, p2
  local W = queue("w")
  local function prune()
    local current = math.floor(now / size)
    while W.n > W.h do
      local window = qget(W, W.h)
      if window >= current then return end
      qshift(W)
    end
  end
  A.consume = function(cost, maxWait)
    local start = math.max(now, b)
    prune()
    if cost > limit then return false, INF, false end
    local window = math.floor(start / size)
    local used = 0
    local lastWindow, lastCount
    if W.n > W.h then
      lastWindow, lastCount = qget(W, W.n - 1)
      -- Never before the last reserved window: a later caller does not overtake.
      if lastWindow > window then window = lastWindow end
      if lastWindow == window then used = lastCount end
    end
    if used + cost > limit then
      window = window + 1
      used = 0
    end
    local at = math.max(window * size, start)
    if maxWait >= 0 and at - now > maxWait then return false, at, b - now > maxWait end
    if lastWindow == window then
      qset(W, W.n - 1, fmt(window) .. "|" .. fmt(used + cost))
    else
      qpush(W, fmt(window) .. "|" .. fmt(cost))
    end
    return true, at, false
  end
  -- Counts are per window, so giving one back is exact in any order.
  A.refund = function(cost, at)
    if at <= now then return end
    local window = math.floor(at / size)
    for i = W.n - 1, W.h, -1 do
      local w, c = qget(W, i)
      if w == window then
        c = c - cost
        if c < 0 then c = 0 end
        qset(W, i, fmt(w) .. "|" .. fmt(c))
        qtrim(W)
        return
      end
    end
  end
  A.remaining = function()
    if b > now then return 0 end
    local current = math.floor(now / size)
    local used = 0
    for i = W.h, W.n - 1 do
      local w, c = qget(W, i)
      if w > current then return 0 end
      if w == current then used = c end
    end
    return limit - used
  end
  A.restAt = function()
    local empty = -INF
    if W.n > W.h then
      local last = qget(W, W.n - 1)
      if last >= math.floor(now / size) then empty = (last + 1) * size end
    end
    return math.max(empty, b)
  end
  A.save = function()
    qsave(W)
  end

-- ---------------------------------------------------------------------------
-- sliding window (exact log): p1 limit, p2 window (ms)
-- ---------------------------------------------------------------------------
elseif tag == "SlidingWindow" then
  local limit, size = p1, p2
  local E = queue("e")
  S.s = num("s", 0)
  -- Drops the entries no window from now on can contain: O(1) amortized.
  local function prune()
    local edge = now - size
    while E.n > E.h do
      local t, c = qget(E, E.h)
      if t > edge then return end
      S.s = S.s - c
      qshift(E)
    end
  end
  A.consume = function(cost, maxWait)
    prune()
    if cost > limit then return false, INF, false end
    local at = math.max(now, b)
    local lastTime, lastCost
    if E.n > E.h then
      lastTime, lastCost = qget(E, E.n - 1)
      if lastTime > at then at = lastTime end
    end
    if S.s + cost > limit then
      -- The oldest entries leave the window first: walk until enough has left.
      local excess = S.s + cost - limit
      local i = E.h
      local t, c
      while excess > 0 do
        t, c = qget(E, i)
        excess = excess - c
        i = i + 1
      end
      if t + size > at then at = t + size end
    end
    if maxWait >= 0 and at - now > maxWait then return false, at, b - now > maxWait end
    if lastTime == at then
      qset(E, E.n - 1, fmt(at) .. "|" .. fmt(lastCost + cost))
    else
      qpush(E, fmt(at) .. "|" .. fmt(cost))
    end
    S.s = S.s + cost
    return true, at, false
  end
  -- Removing an entry is exact in any order: every window is summed from the log itself.
  A.refund = function(cost, at)
    if at <= now then return end
    for i = E.n - 1, E.h, -1 do
      local t, c = qget(E, i)
      if t == at then
        local left = c - cost
        if left < 0 then left = 0 end
        S.s = S.s - (c - left)
        qset(E, i, fmt(t) .. "|" .. fmt(left))
        qtrim(E)
        return
      end
    end
  end
  A.remaining = function()
    if b > now then return 0 end
    prune()
    if E.n > E.h then
      local last = qget(E, E.n - 1)
      if last > now then return 0 end
    end
    return limit - S.s
  end
  A.restAt = function()
    local empty = -INF
    if E.n > E.h then empty = qget(E, E.n - 1) + size end
    return math.max(empty, b)
  end
  A.save = function()
    C.s = fmt(S.s)
    qsave(E)
  end
else
  return redis.error_reply("BULWARK_BAD_ARGUMENT unknown algorithm " .. tostring(tag))
end

-- One command per 500 arguments (an even number: HSET takes pairs): unpack has a limit.
local function many(command, list)
  for i = 1, #list, 500 do
    redis.call(command, K, unpack(list, i, math.min(i + 499, #list)))
  end
end

-- Writes the state back, and lets the key expire when the state is back at
-- rest (it would start exactly like that again); a state already at rest is
-- dropped now.
local function persist()
  local rest = A.restAt()
  if rest <= now then
    redis.call("DEL", K)
    return
  end
  if fresh then C.a = tag end
  if b ~= b0 then C.b = fmt(b) end
  A.save()
  local set, gone = {}, {}
  for field, value in pairs(C) do
    if value then
      set[#set + 1] = field
      set[#set + 1] = value
    else
      gone[#gone + 1] = field
    end
  end
  many("HDEL", gone)
  if #set > 0 then many("HSET", set) end
  redis.call("PEXPIRE", K, fmt(math.ceil(rest - now) + margin))
end

if op == "consume" then
  local cost, maxWait = tonumber(ARGV[8]), tonumber(ARGV[9])
  local admitted, at, blocked = A.consume(cost, maxWait)
  -- A rejection writes nothing but what pruning dropped (a fresh state at rest needs no key).
  if admitted or (dirty and not fresh) then persist() end
  local rest = A.restAt()
  local atInf, atRel = 0, 0
  if at == INF then atInf = 1 else atRel = at - now end
  local restNone, restRel = 0, 0
  if rest == -INF then restNone = 1 else restRel = rest - now end
  return { admitted and 1 or 0, blocked and 1 or 0, atRel, atInf, A.remaining(), restRel, restNone, now }
elseif op == "refund" then
  if fresh then return 1 end
  A.refund(tonumber(ARGV[8]), tonumber(ARGV[9]))
  if dirty then persist() end
  return 1
elseif op == "block" then
  local untilAt = now + tonumber(ARGV[8])
  if untilAt > b then b = untilAt end
  persist()
  return 1
end
return redis.error_reply("BULWARK_BAD_ARGUMENT unknown operation " .. tostring(op))
`

/** @internal */
export const script = Redis.script(
  (key: string, args: ReadonlyArray<string>) => [key, ...args],
  { numberOfKeys: 1, lua }
).withReturnType<unknown>()
