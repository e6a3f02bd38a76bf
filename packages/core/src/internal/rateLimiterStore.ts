import type * as Store from "../RateLimiterStore.ts"

/**
 * The four algorithms as state machines over one key, and the in-memory store
 * that keeps them in a `Map`.
 *
 * Every algorithm keeps its state as "what has been committed so far",
 * reservations included, in a form where a decision is O(1) amortized and
 * undoing the most recent reservation is exact:
 *
 * - token bucket: the tokens at a frontier tick. A reservation moves the
 *   frontier to the tick of its slot; later callers are planned from there.
 * - GCRA: the theoretical arrival time, scaled by `rate` so that integer
 *   inputs give exact arithmetic.
 * - fixed window: the count of every window from now to the last reserved one.
 * - sliding window: the log of admissions (one entry per millisecond).
 *
 * Every time here is epoch milliseconds. With whole-millisecond inputs (the
 * options only accept whole milliseconds) every time a decision returns is a
 * whole millisecond too, so that a caller can wait for it exactly.
 */

/**
 * The decision object the in-memory store reuses for every synchronous call.
 * `remaining` and `resetAt` are computed only when read: the limiter's hot
 * path never reads them.
 */
export class MutableDecision implements Store.Decision {
  admitted = false
  at = 0
  blocked = false
  state: KeyState | undefined = undefined
  algorithm: Store.Algorithm | undefined = undefined
  now = 0
  get remaining(): number {
    return this.state!.remaining(this.algorithm!, this.now)
  }
  get resetAt(): number {
    return this.state!.resetAt(this.algorithm!, this.now)
  }
}

interface KeyState {
  readonly tag: Store.Algorithm["_tag"]
  blockedUntil: number
  consume(a: Store.Algorithm, cost: number, now: number, maxWait: number, out: MutableDecision): MutableDecision
  refundLatest(a: Store.Algorithm, cost: number, at: number, now: number): void
  refund(a: Store.Algorithm, cost: number, at: number, now: number): void
  remaining(a: Store.Algorithm, now: number): number
  resetAt(a: Store.Algorithm, now: number): number
}

/** The largest cost an algorithm can ever admit in one call. */
export const limitOf = (a: Store.Algorithm): number => {
  switch (a._tag) {
    case "TokenBucket":
      return a.capacity
    case "Gcra":
      return a.burst
    default:
      return a.limit
  }
}

const reject = (
  out: MutableDecision,
  at: number,
  blocked: boolean,
  state: KeyState,
  a: Store.Algorithm,
  now: number
): MutableDecision => {
  out.admitted = false
  out.at = at
  out.blocked = blocked
  out.state = state
  out.algorithm = a
  out.now = now
  return out
}

const admit = (out: MutableDecision, at: number, state: KeyState, a: Store.Algorithm, now: number): MutableDecision => {
  out.admitted = true
  out.at = at
  out.blocked = false
  out.state = state
  out.algorithm = a
  out.now = now
  return out
}

// -----------------------------------------------------------------------------
// token bucket
// -----------------------------------------------------------------------------

type TokenBucket = Extract<Store.Algorithm, { readonly _tag: "TokenBucket" }>

class TokenBucketState implements KeyState {
  readonly tag = "TokenBucket"
  blockedUntil = -Infinity
  /**
   * The frontier: index (`floor(time / per)`) of the last refill tick applied.
   * A reservation moves it to the tick of its slot, in the future.
   */
  tick: number
  /** Tokens at `tick`, after every call admitted or reserved up to it; never above the capacity. */
  tokens: number
  /**
   * The outstanding reservations (`at > now`), oldest first, with the state
   * before each: a refill clipped at the capacity is lost, so a reservation can
   * only be undone by restoring what was there before it.
   */
  private readonly reservedAt: Array<number> = []
  private readonly tickBefore: Array<number> = []
  private readonly tokensBefore: Array<number> = []

  constructor(a: TokenBucket, now: number) {
    this.tick = Math.floor(now / a.perMillis)
    this.tokens = a.capacity
  }

  /** Applies the refills up to `time`; nothing happens while the frontier is ahead of it. */
  private advance(a: TokenBucket, time: number): void {
    const tick = Math.floor(time / a.perMillis)
    if (tick > this.tick) {
      const tokens = this.tokens + a.refill * (tick - this.tick)
      this.tokens = tokens < a.capacity ? tokens : a.capacity
      this.tick = tick
    }
  }

  consume(algorithm: Store.Algorithm, cost: number, now: number, maxWait: number, out: MutableDecision) {
    const a = algorithm as TokenBucket
    const start = now > this.blockedUntil ? now : this.blockedUntil
    this.advance(a, start)
    if (cost > a.capacity) return reject(out, Infinity, false, this, a, now)
    // Ticks to wait from the frontier; refills before the last one cannot reach
    // the capacity (the bucket holds less than `cost <= capacity` until then).
    const ticks = this.tokens >= cost ? 0 : Math.ceil((cost - this.tokens) / a.refill)
    const tickStart = (this.tick + ticks) * a.perMillis
    const at = tickStart > start ? tickStart : start
    if (at - now > maxWait) return reject(out, at, this.blockedUntil - now > maxWait, this, a, now)
    if (at > now) {
      // Reservations whose time has come are spent: they are never given back.
      while (this.reservedAt.length > 0 && this.reservedAt[0] <= now) {
        this.reservedAt.shift()
        this.tickBefore.shift()
        this.tokensBefore.shift()
      }
      this.reservedAt.push(at)
      this.tickBefore.push(this.tick)
      this.tokensBefore.push(this.tokens)
    }
    if (ticks > 0) {
      const tokens = this.tokens + a.refill * ticks
      this.tokens = tokens < a.capacity ? tokens : a.capacity
      this.tick += ticks
    }
    this.tokens -= cost
    return admit(out, at, this, a, now)
  }

  refundLatest(a: Store.Algorithm, cost: number, at: number, now: number): void {
    if (at <= now) return
    const last = this.reservedAt.length - 1
    if (last >= 0 && this.reservedAt[last] === at) {
      this.reservedAt.pop()
      this.tick = this.tickBefore.pop()!
      this.tokens = this.tokensBefore.pop()!
    } else {
      const tokens = this.tokens + cost
      const capacity = (a as TokenBucket).capacity
      this.tokens = tokens < capacity ? tokens : capacity
    }
  }

  // Only the most recent reservation can be credited exactly; an older one is forfeited.
  refund(a: Store.Algorithm, cost: number, at: number, now: number): void {
    const last = this.reservedAt.length - 1
    if (last >= 0 && this.reservedAt[last] === at) this.refundLatest(a, cost, at, now)
  }

  remaining(algorithm: Store.Algorithm, now: number): number {
    const a = algorithm as TokenBucket
    if (this.blockedUntil > now) return 0
    const tick = Math.floor(now / a.perMillis)
    if (tick < this.tick) return 0 // callers are waiting for later ticks
    const tokens = this.tokens + a.refill * (tick - this.tick)
    return tokens < a.capacity ? tokens : a.capacity
  }

  resetAt(algorithm: Store.Algorithm, _now: number): number {
    const a = algorithm as TokenBucket
    const full = this.tokens >= a.capacity
      ? -Infinity
      : (this.tick + Math.ceil((a.capacity - this.tokens) / a.refill)) * a.perMillis
    return full > this.blockedUntil ? full : this.blockedUntil
  }
}

// -----------------------------------------------------------------------------
// GCRA
// -----------------------------------------------------------------------------

type Gcra = Extract<Store.Algorithm, { readonly _tag: "Gcra" }>

const gcd = (a: number, b: number): number => {
  while (b !== 0) {
    const t = a % b
    a = b
    b = t
  }
  return a
}

/**
 * Times are kept as `(time - origin) * rate`: one unit of cost is then `per`
 * units of scaled time, and every comparison is between integers.
 */
class GcraState implements KeyState {
  readonly tag = "Gcra"
  blockedUntil = -Infinity
  readonly origin: number
  readonly rate: number
  readonly per: number
  /** Theoretical arrival time, scaled; the bucket is full when `tat <= now` (scaled). */
  tat = 0
  /**
   * The outstanding reservations (`at > now`), oldest first, with the `tat`
   * before each: a reservation made after an idle period is charged from its
   * arrival, not from the old `tat`, so subtracting its cost would not undo
   * it exactly.
   */
  private readonly reservedAt: Array<number> = []
  private readonly tatBefore: Array<number> = []

  constructor(a: Gcra, now: number) {
    this.origin = Math.floor(now)
    const divisor = Number.isInteger(a.rate) && Number.isInteger(a.perMillis) ? gcd(a.rate, a.perMillis) : 1
    this.rate = a.rate / divisor
    this.per = a.perMillis / divisor
  }

  private scaled(time: number): number {
    return (time - this.origin) * this.rate
  }

  consume(algorithm: Store.Algorithm, cost: number, now: number, maxWait: number, out: MutableDecision) {
    const a = algorithm as Gcra
    const start = now > this.blockedUntil ? now : this.blockedUntil
    if (cost > a.burst) return reject(out, Infinity, false, this, a, now)
    const n = this.scaled(start)
    const base = this.tat > n ? this.tat : n
    const allowAt = base + cost * this.per - a.burst * this.per
    const at = allowAt <= n ? start : this.origin + Math.ceil(allowAt / this.rate)
    if (at - now > maxWait) return reject(out, at, this.blockedUntil - now > maxWait, this, a, now)
    if (at > now) {
      // Reservations whose time has come are spent: they are never given back.
      while (this.reservedAt.length > 0 && this.reservedAt[0] <= now) {
        this.reservedAt.shift()
        this.tatBefore.shift()
      }
      this.reservedAt.push(at)
      this.tatBefore.push(this.tat)
    }
    // Charged from the theoretical time, not from the slot rounded up to a
    // whole millisecond: the rounding never accumulates, so waiting callers
    // get the rate (400/s, not 333/s), each slot at most 1 ms after its time.
    this.tat = base + cost * this.per
    return admit(out, at, this, a, now)
  }

  refundLatest(_a: Store.Algorithm, cost: number, at: number, now: number): void {
    if (at <= now) return
    const last = this.reservedAt.length - 1
    if (last >= 0 && this.reservedAt[last] === at) {
      this.reservedAt.pop()
      this.tat = this.tatBefore.pop()!
    } else {
      this.tat -= cost * this.per
    }
  }

  // Only the most recent reservation can be credited exactly; an older one is forfeited.
  refund(a: Store.Algorithm, cost: number, at: number, now: number): void {
    const last = this.reservedAt.length - 1
    if (last >= 0 && this.reservedAt[last] === at) this.refundLatest(a, cost, at, now)
  }

  remaining(algorithm: Store.Algorithm, now: number): number {
    const a = algorithm as Gcra
    if (this.blockedUntil > now) return 0
    const backlog = this.tat - this.scaled(now)
    const left = Math.floor((a.burst * this.per - (backlog > 0 ? backlog : 0)) / this.per)
    return left > 0 ? left : 0
  }

  resetAt(_a: Store.Algorithm, _now: number): number {
    const full = this.origin + Math.ceil(this.tat / this.rate)
    return full > this.blockedUntil ? full : this.blockedUntil
  }
}

// -----------------------------------------------------------------------------
// fixed window
// -----------------------------------------------------------------------------

type Windowed = Extract<Store.Algorithm, { readonly _tag: "FixedWindow" | "SlidingWindow" }>

class FixedWindowState implements KeyState {
  readonly tag = "FixedWindow"
  blockedUntil = -Infinity
  /** Indexes (`floor(time / window)`) of the windows holding admissions, ascending, none before the current one. */
  readonly windows: Array<number> = []
  readonly counts: Array<number> = []

  private prune(a: Windowed, now: number): void {
    const current = Math.floor(now / a.windowMillis)
    while (this.windows.length > 0 && this.windows[0] < current) {
      this.windows.shift()
      this.counts.shift()
    }
  }

  consume(algorithm: Store.Algorithm, cost: number, now: number, maxWait: number, out: MutableDecision) {
    const a = algorithm as Windowed
    const start = now > this.blockedUntil ? now : this.blockedUntil
    this.prune(a, now)
    if (cost > a.limit) return reject(out, Infinity, false, this, a, now)
    const last = this.windows.length - 1
    // Never before the last reserved window: a later caller does not overtake.
    let window = Math.floor(start / a.windowMillis)
    let used = 0
    if (last >= 0) {
      if (this.windows[last] > window) window = this.windows[last]
      if (this.windows[last] === window) used = this.counts[last]
    }
    if (used + cost > a.limit) {
      window++
      used = 0
    }
    const at = window * a.windowMillis > start ? window * a.windowMillis : start
    if (at - now > maxWait) return reject(out, at, this.blockedUntil - now > maxWait, this, a, now)
    if (last >= 0 && this.windows[last] === window) {
      this.counts[last] = used + cost
    } else {
      this.windows.push(window)
      this.counts.push(cost)
    }
    return admit(out, at, this, a, now)
  }

  refundLatest(a: Store.Algorithm, cost: number, at: number, now: number): void {
    this.refund(a, cost, at, now)
  }

  // Counts are per window, so giving one back is exact in any order.
  refund(algorithm: Store.Algorithm, cost: number, at: number, now: number): void {
    if (at <= now) return
    const window = Math.floor(at / (algorithm as Windowed).windowMillis)
    for (let i = this.windows.length - 1; i >= 0; i--) {
      if (this.windows[i] !== window) continue
      this.counts[i] -= cost
      if (this.counts[i] <= 0) {
        this.windows.splice(i, 1)
        this.counts.splice(i, 1)
      }
      return
    }
  }

  remaining(algorithm: Store.Algorithm, now: number): number {
    const a = algorithm as Windowed
    if (this.blockedUntil > now) return 0
    const current = Math.floor(now / a.windowMillis)
    let used = 0
    for (let i = 0; i < this.windows.length; i++) {
      if (this.windows[i] > current) return 0 // callers are waiting for a later window
      if (this.windows[i] === current) used = this.counts[i]
    }
    return a.limit - used
  }

  resetAt(algorithm: Store.Algorithm, now: number): number {
    const a = algorithm as Windowed
    const last = this.windows.length - 1
    const current = Math.floor(now / a.windowMillis)
    const empty = last >= 0 && this.windows[last] >= current ? (this.windows[last] + 1) * a.windowMillis : -Infinity
    return empty > this.blockedUntil ? empty : this.blockedUntil
  }
}

// -----------------------------------------------------------------------------
// sliding window (exact log)
// -----------------------------------------------------------------------------

class SlidingLogState implements KeyState {
  readonly tag = "SlidingWindow"
  blockedUntil = -Infinity
  /** Admission times, ascending from `head`; admissions of the same millisecond share an entry. */
  readonly times: Array<number> = []
  readonly costs: Array<number> = []
  head = 0
  /** Total cost of the entries from `head` on. */
  sum = 0

  /** Drops the entries no window from `now` on can contain: O(1) amortized. */
  private prune(a: Windowed, now: number): void {
    const edge = now - a.windowMillis
    const times = this.times
    while (this.head < times.length && times[this.head] <= edge) {
      this.sum -= this.costs[this.head]
      this.head++
    }
    if (this.head === times.length) {
      times.length = 0
      this.costs.length = 0
      this.head = 0
    } else if (this.head >= 64 && this.head * 2 >= times.length) {
      times.copyWithin(0, this.head)
      this.costs.copyWithin(0, this.head)
      times.length -= this.head
      this.costs.length -= this.head
      this.head = 0
    }
  }

  consume(algorithm: Store.Algorithm, cost: number, now: number, maxWait: number, out: MutableDecision) {
    const a = algorithm as Windowed
    this.prune(a, now)
    if (cost > a.limit) return reject(out, Infinity, false, this, a, now)
    const times = this.times
    const n = times.length
    let at = now > this.blockedUntil ? now : this.blockedUntil
    // Never before the last reservation: a later caller does not overtake.
    if (n > this.head && times[n - 1] > at) at = times[n - 1]
    if (this.sum + cost > a.limit) {
      // The oldest entries leave the window first: walk until enough has left.
      let excess = this.sum + cost - a.limit
      let i = this.head
      while (excess > 0) excess -= this.costs[i++]
      const free = times[i - 1] + a.windowMillis
      if (free > at) at = free
    }
    if (at - now > maxWait) return reject(out, at, this.blockedUntil - now > maxWait, this, a, now)
    if (n > this.head && times[n - 1] === at) {
      this.costs[n - 1] += cost
    } else {
      times.push(at)
      this.costs.push(cost)
    }
    this.sum += cost
    return admit(out, at, this, a, now)
  }

  refundLatest(a: Store.Algorithm, cost: number, at: number, now: number): void {
    this.refund(a, cost, at, now)
  }

  // Removing an entry is exact in any order: every window is summed from the log itself.
  refund(_a: Store.Algorithm, cost: number, at: number, now: number): void {
    if (at <= now) return
    for (let i = this.times.length - 1; i >= this.head; i--) {
      if (this.times[i] !== at) continue
      this.costs[i] -= cost
      this.sum -= cost
      if (this.costs[i] <= 0) {
        this.times.splice(i, 1)
        this.costs.splice(i, 1)
      }
      return
    }
  }

  remaining(algorithm: Store.Algorithm, now: number): number {
    const a = algorithm as Windowed
    if (this.blockedUntil > now) return 0
    this.prune(a, now) // invisible to decisions, and makes `sum` the window's total
    const n = this.times.length
    if (n > this.head && this.times[n - 1] > now) return 0 // callers are waiting
    return a.limit - this.sum
  }

  resetAt(algorithm: Store.Algorithm, _now: number): number {
    const a = algorithm as Windowed
    const n = this.times.length
    const empty = n > this.head ? this.times[n - 1] + a.windowMillis : -Infinity
    return empty > this.blockedUntil ? empty : this.blockedUntil
  }
}

// -----------------------------------------------------------------------------
// the in-memory store
// -----------------------------------------------------------------------------

const makeState = (a: Store.Algorithm, now: number): KeyState => {
  switch (a._tag) {
    case "TokenBucket":
      return new TokenBucketState(a, now)
    case "Gcra":
      return new GcraState(a, now)
    case "FixedWindow":
      return new FixedWindowState()
    case "SlidingWindow":
      return new SlidingLogState()
  }
}

/** State per key in a `Map`; every operation synchronous. */
export class MemoryStore implements Store.InProcess {
  readonly states = new Map<string, KeyState>()
  private readonly decision = new MutableDecision()
  /** The last key used and its state: a plain limiter asks for the same key every time. */
  private lastKey: string | undefined = undefined
  private lastState: KeyState | undefined = undefined

  private stateOf(key: string, a: Store.Algorithm, now: number): KeyState {
    let state = key === this.lastKey ? this.lastState : this.states.get(key)
    if (state === undefined || state.tag !== a._tag) {
      state = makeState(a, now)
      this.states.set(key, state)
    }
    this.lastKey = key
    this.lastState = state
    return state
  }

  consume(key: string, a: Store.Algorithm, cost: number, now: number, maxWait: number): Store.Decision {
    return this.stateOf(key, a, now).consume(a, cost, now, maxWait, this.decision)
  }

  refundLatest(key: string, a: Store.Algorithm, cost: number, at: number, now: number): void {
    this.states.get(key)?.refundLatest(a, cost, at, now)
  }

  refund(key: string, a: Store.Algorithm, cost: number, at: number, now: number): void {
    this.states.get(key)?.refund(a, cost, at, now)
  }

  block(key: string, a: Store.Algorithm, until: number, now: number): void {
    const state = this.stateOf(key, a, now)
    if (until > state.blockedUntil) state.blockedUntil = until
  }

  remaining(key: string, a: Store.Algorithm, now: number): number {
    const state = this.states.get(key)
    return state === undefined ? limitOf(a) : state.remaining(a, now)
  }

  resetAt(key: string, a: Store.Algorithm, now: number): number {
    const state = this.states.get(key)
    return state === undefined ? -Infinity : state.resetAt(a, now)
  }

  forget(key: string): void {
    this.states.delete(key)
    if (key === this.lastKey) this.lastKey = this.lastState = undefined
  }

  size(): number {
    return this.states.size
  }
}
