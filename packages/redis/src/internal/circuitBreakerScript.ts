import * as Redis from "effect/persistence/Redis"

/**
 * The circuit breaker store as one Lua script: `admit`, `record`, `read`
 * and `force` of `CircuitBreakerStore`, with the same state machine as
 * `@bulwark/core`'s in-memory circuit (`internal/circuitBreakerStore.ts`).
 *
 * One hash per circuit:
 *
 * - `st` the state (`C` closed, `O` open, `H` half-open, `I` isolated, `D`
 *   disabled), `g` the generation (the fencing token), `n` the next id to
 *   issue, `f` the first id of this incarnation of the key (a permit below it
 *   belongs to a circuit the store has since dropped);
 * - `u` open until, `c` consecutive openings, `r` the time the backoff count
 *   resets, `l` the last open time, `q` probe successes;
 * - `p` the running probes, `id:start:lease,...`: a probe is lost once it
 *   has run longer than `probeTimeoutMs` or its lease (the end of its last
 *   renewal, `-1` for none) has passed, checked by every operation (Redis
 *   7.0 has no expiry per hash field), and the key never expires before a
 *   probe could still matter;
 * - per trip spec `i`: `k<i>` the streak (`Consecutive`); a count window as
 *   `cc<i>` calls, `ch<i>` hits, `cn<i>` the next slot and `cf<i>.<slot>`
 *   the slots that hold a hit; a time window as `te<i>` its bucket epoch,
 *   `tc<i>` calls, `th<i>` hits and ten buckets `tb<i>.<slot>` (calls),
 *   `tk<i>.<slot>` (hits).
 *
 * Ids (generations and probe permits) come from a counter per key, seeded
 * from Redis `TIME` in microseconds when the key is created: an id never
 * repeats for a key, even after the key expired and came back (its ids go
 * up by one per transition or probe, far slower than the clock).
 *
 * `KEYS[1]` the key. `ARGV`: 1 the operation, 2 the caller's clock or `""`,
 * 3 the policy (JSON), 4 the idle time to live (ms), 5 the expiry margin
 * (ms), 6 the channel transitions are published on (`""`: none), 7 the
 * calling store's id, then `record`: 8 permit, 9 outcome (`S`, `F`, `I`),
 * 10 elapsed ms; `force`: 8 the target state (`C`, `I`, `D`); `renew`: 8
 * the probe's permit.
 *
 * A transition is published as `origin|from|to|at|key` (state letters, the
 * script's clock, the full key), so that the breakers of other processes
 * can report it.
 *
 * Replies (every transition as `from, to` state letters, `""` when none):
 * `admit` `{kind (0 admitted, 1 rejected, 2 pass), permit, probe, reason (O,
 * B busy, I), retryAfter, retryAfter infinite, from, to}`; `record` and
 * `force` `{from, to}`; `read` `{state, retryAfter, infinite, consecutive
 * openings, probing, from, to}`.
 *
 * @internal
 */
export const lua = `
local K = KEYS[1]
local op = ARGV[1]
local now
local time = redis.call("TIME")
if ARGV[2] == "" then
  now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
else
  now = tonumber(ARGV[2])
end
local P = cjson.decode(ARGV[3])
local idle = tonumber(ARGV[4])
local margin = tonumber(ARGV[5])
local channel, origin = ARGV[6], ARGV[7]
local INF = math.huge

local function fmt(x) return string.format("%.0f", x) end

local v = redis.call("HMGET", K, "st", "g", "n", "f", "u", "c", "r", "l", "q", "p")
local exists = v[1] ~= false
if not exists and redis.call("EXISTS", K) == 1 then
  return redis.error_reply("BULWARK_BAD_ENTRY the key holds a hash that Bulwark did not write")
end
local st, g, n, f, u, c, r, l, q = "C", 0, 0, 0, 0, 0, 0, 0, 0
local probes = {}
if exists then
  st = v[1]
  g, n, f = tonumber(v[2]), tonumber(v[3]), tonumber(v[4])
  u, c, r, l, q = tonumber(v[5]), tonumber(v[6]), tonumber(v[7]), tonumber(v[8]), tonumber(v[9])
  if v[10] and v[10] ~= "" then
    for id, start, lease in string.gmatch(v[10], "(%d+):(%-?%d+):(%-?%d+)") do
      probes[#probes + 1] = { tonumber(id), tonumber(start), tonumber(lease) }
    end
  end
end
local changed = false
local from, to = "", ""
local function transition(a, b) from = a; to = b end

local function create()
  -- Seeded from the clock in microseconds: ids of an earlier incarnation of this key are all smaller.
  local seed = tonumber(time[1]) * 1000000 + tonumber(time[2])
  g = seed; n = seed + 1; f = seed
  exists = true
  changed = true
end
local function nextId()
  local id = n
  n = n + 1
  return id
end

-- ---------------------------------------------------------------------------
-- trip policies
-- ---------------------------------------------------------------------------

local function resetTrips()
  for i, spec in ipairs(P.t) do
    if spec.k == "C" then
      redis.call("HDEL", K, "k" .. i)
    elseif spec.wc then
      -- Slots are written again before they are read: clearing the counters is enough.
      redis.call("HDEL", K, "cc" .. i, "ch" .. i, "cn" .. i)
    else
      local fields = { "te" .. i, "tc" .. i, "th" .. i }
      for slot = 0, 9 do
        fields[#fields + 1] = "tb" .. i .. "." .. slot
        fields[#fields + 1] = "tk" .. i .. "." .. slot
      end
      redis.call("HDEL", K, unpack(fields))
    end
  end
end

local function hnum(field)
  local x = redis.call("HGET", K, field)
  if x then return tonumber(x) end
  return 0
end

-- Counts a counted outcome; true when this policy says the circuit must open.
local function tripRecord(i, spec, failed, elapsed, t)
  if spec.k == "C" then
    local streak = 0
    if failed then streak = hnum("k" .. i) + 1 end
    redis.call("HSET", K, "k" .. i, fmt(streak))
    return streak >= spec.f
  end
  local hit = failed
  if spec.k == "S" then hit = elapsed > spec.s end
  local calls, hits
  if spec.wc then
    calls, hits = hnum("cc" .. i), hnum("ch" .. i)
    local nxt = hnum("cn" .. i)
    local flag = "cf" .. i .. "." .. fmt(nxt)
    if calls == spec.wc then
      if redis.call("HGET", K, flag) then hits = hits - 1 end
    else
      calls = calls + 1
    end
    if hit then
      redis.call("HSET", K, flag, "1")
      hits = hits + 1
    else
      redis.call("HDEL", K, flag)
    end
    redis.call("HSET", K, "cc" .. i, fmt(calls), "ch" .. i, fmt(hits), "cn" .. i, fmt((nxt + 1) % spec.wc))
  else
    -- Ten buckets of a tenth of the window, aligned to the epoch.
    local bucketMs = spec.wm / 10
    local epoch = math.floor(t / bucketMs)
    local e = redis.call("HGET", K, "te" .. i)
    calls, hits = hnum("tc" .. i), hnum("th" .. i)
    if not e then
      e = epoch
    else
      e = tonumber(e)
      if epoch > e then
        local steps = math.min(10, epoch - e)
        for k = 1, steps do
          local slot = fmt((e + k) % 10)
          calls = calls - hnum("tb" .. i .. "." .. slot)
          hits = hits - hnum("tk" .. i .. "." .. slot)
          redis.call("HDEL", K, "tb" .. i .. "." .. slot, "tk" .. i .. "." .. slot)
        end
        e = epoch
      end
    end
    local slot = fmt(e % 10)
    redis.call("HINCRBY", K, "tb" .. i .. "." .. slot, 1)
    calls = calls + 1
    if hit then
      redis.call("HINCRBY", K, "tk" .. i .. "." .. slot, 1)
      hits = hits + 1
    end
    redis.call("HSET", K, "te" .. i, fmt(e), "tc" .. i, fmt(calls), "th" .. i, fmt(hits))
  end
  return calls >= spec.m and hits > 0 and hits / calls >= spec.h
end

-- A probe that ends slower than a slowCalls policy allows is not a sign of health.
local function isSlow(elapsed)
  for _, spec in ipairs(P.t) do
    if spec.k == "S" and elapsed > spec.s then return true end
  end
  return false
end

-- ---------------------------------------------------------------------------
-- the circuit
-- ---------------------------------------------------------------------------

-- The backoff count resets once the circuit has stayed closed as long as it was last open.
local function settleBackoff(t)
  if st == "C" and c > 0 and t >= r then
    c = 0
    changed = true
  end
end

local function openCircuit(t)
  if st == "C" then settleBackoff(t) end
  c = c + 1
  local times = P.o
  local openFor = 0
  if #times > 0 then openFor = times[math.min(c, #times)] end
  l = openFor
  u = t + openFor
  st = "O"
  g = nextId()
  probes = {}
  resetTrips()
  changed = true
end

local function closeCircuit(t)
  st = "C"
  g = nextId()
  probes = {}
  r = t + l
  resetTrips()
  changed = true
end

-- A probe that outlived its lease is lost: the circuit opens again.
local function expireProbes(t)
  for _, probe in ipairs(probes) do
    if t - probe[2] > P.pt or (probe[3] >= 0 and t > probe[3]) then
      openCircuit(t)
      return true
    end
  end
  return false
end

local function retryAfter(t)
  if st == "O" then return math.max(0, u - t) end
  if st == "I" then return INF end
  return 0
end

local function encodeProbes()
  local parts = {}
  for _, probe in ipairs(probes) do parts[#parts + 1] = fmt(probe[1]) .. ":" .. fmt(probe[2]) .. ":" .. fmt(probe[3]) end
  return table.concat(parts, ",")
end

-- Writes the circuit back (when it changed) and sets its expiry. Manual states never expire; an open circuit lives
-- at least to the end of its open time, a half-open one to the end of its
-- probes' leases, a closed one while its backoff count may still matter;
-- otherwise the key goes after idleTimeToLive without an operation.
local function persist()
  if changed then
    redis.call("HSET", K, "st", st, "g", fmt(g), "n", fmt(n), "f", fmt(f), "u", fmt(u), "c", fmt(c), "r", fmt(r),
      "l", fmt(l), "q", fmt(q), "p", encodeProbes())
  end
  if st == "I" or st == "D" then
    redis.call("PERSIST", K)
    return
  end
  local ttl = idle
  if st == "O" and u - now > ttl then ttl = u - now end
  if st == "C" and c > 0 and r - now > ttl then ttl = r - now end
  for _, probe in ipairs(probes) do
    local lease = probe[2] + P.pt - now + 1
    if lease > ttl then ttl = lease end
  end
  redis.call("PEXPIRE", K, fmt(math.ceil(ttl) + margin))
end

-- Tells the other processes' breakers (PUBLISH is not a key access: one key per script still holds).
local function announce()
  if from ~= "" and channel ~= "" then
    redis.call("PUBLISH", channel, origin .. "|" .. from .. "|" .. to .. "|" .. fmt(now) .. "|" .. K)
  end
end

local function infOf(x)
  if x == INF then return 0, 1 end
  return x, 0
end

if op == "admit" then
  if not exists then create() end
  local kind, permit, probe, reason, wait = 0, 0, 0, "", 0
  if st == "C" then
    if c > 0 then settleBackoff(now) end
    permit = g
  elseif st == "D" then
    kind = 2
  elseif st == "I" then
    kind, reason, wait = 1, "I", INF
  elseif st == "O" and now < u then
    kind, reason, wait = 1, "O", retryAfter(now)
  else
    if st == "O" then
      st = "H"
      g = nextId()
      probes = {}
      q = 0
      changed = true
      transition("O", "H")
    end
    if #probes > 0 and expireProbes(now) then
      transition("H", "O")
      kind, reason, wait = 1, "O", retryAfter(now)
    elseif #probes >= P.p then
      kind, reason, wait = 1, "B", 0
    else
      -- Each probe has its own permit: its outcome is told apart from the others' and from a lost probe's late report.
      permit = nextId()
      -- A lease (renewed by the probe's process while it runs) tells a running probe from a dead process's.
      local lease = -1
      if P.pl then lease = now + P.pl end
      probes[#probes + 1] = { permit, now, lease }
      probe = 1
      changed = true
    end
  end
  -- An admission marks the circuit used: it lives idleTimeToLive from now.
  persist()
  local w, wInf = infOf(wait)
  announce()
  return { kind, permit, probe, reason, w, wInf, from, to }
end

if op == "record" then
  local permit, outcome, elapsed = tonumber(ARGV[8]), ARGV[9], tonumber(ARGV[10])
  -- Unknown key, or a permit of a circuit since dropped: nothing to change.
  if not exists or permit < f then return { "", "" } end
  if st == "H" then
    local index = nil
    for i, probe in ipairs(probes) do
      if probe[1] == permit then index = i end
    end
    if index then
      if expireProbes(now) then
        transition("H", "O")
      else
        table.remove(probes, index)
        changed = true
        if outcome == "F" or (outcome == "S" and isSlow(elapsed)) then
          openCircuit(now)
          transition("H", "O")
        elseif outcome == "S" then
          q = q + 1
          if q >= P.s then
            closeCircuit(now)
            transition("H", "C")
          end
        end
      end
    end
  elseif permit == g and st == "C" and outcome ~= "I" then
    local failed = outcome == "F"
    local trip = false
    for i, spec in ipairs(P.t) do
      if tripRecord(i, spec, failed, elapsed, now) then trip = true end
    end
    if trip then
      openCircuit(now)
      transition("C", "O")
    end
  end
  -- A report marks the circuit used, stale or not.
  persist()
  announce()
  return { from, to }
end

if op == "read" then
  if not exists then return { "C", 0, 0, 0, 0, "", "" } end
  settleBackoff(now)
  if st == "H" and #probes > 0 and expireProbes(now) then transition("H", "O") end
  if changed then persist() end
  announce()
  local w, wInf = infOf(retryAfter(now))
  return { st, w, wInf, c, #probes, from, to }
end

if op == "renew" then
  local permit = tonumber(ARGV[8])
  if not exists or permit < f or st ~= "H" or not P.pl then return 0 end
  for _, probe in ipairs(probes) do
    if probe[1] == permit then
      -- A lost probe stays lost: the next admit, record or read notices it.
      if now - probe[2] > P.pt or (probe[3] >= 0 and now > probe[3]) then return 0 end
      probe[3] = now + P.pl
      changed = true
      persist()
      return 1
    end
  end
  return 0
end

if op == "force" then
  local target = ARGV[8]
  if not exists then create() end
  local before = st
  if target == "C" then
    c = 0
    l = 0
    closeCircuit(now)
    r = 0
  else
    st = target
    g = nextId()
    probes = {}
    changed = true
  end
  if before ~= target then transition(before, target) end
  persist()
  announce()
  return { from, to }
end

return redis.error_reply("BULWARK_BAD_ARGUMENT unknown operation " .. tostring(op))
`

/** @internal */
export const script = Redis.script(
  (key: string, args: ReadonlyArray<string>) => [key, ...args],
  { numberOfKeys: 1, lua }
).withReturnType<unknown>()
