import type { CircuitBreaker, CircuitBreakerStore } from "@bulwark/core"

/**
 * The circuit state machine of `CircuitBreakerStore`'s contract, on a state
 * that is plain data (a row's JSON), for the SQLite store.
 *
 * The rules are those of `@bulwark/core`'s in-memory circuit and of the
 * Redis store's script, clause by clause (a differential test runs all
 * three on the same random sequences). The in-memory circuit cannot be
 * reused here as the rate limiter's algorithms are: its generations come
 * from one counter per process, and a circuit shared by processes needs ids
 * that never repeat for its key, whichever process issues them. So ids come
 * from a counter in the row, seeded above every id the key ever had.
 */

type State = CircuitBreaker.State
type Policy = CircuitBreakerStore.Policy
type TripSpec = CircuitBreakerStore.TripSpec
type Transition = CircuitBreakerStore.Transition

const BUCKETS = 10

/** What one trip spec counts. */
type Count =
  | { readonly k: "streak"; streak: number }
  | { readonly k: "calls"; calls: number; hits: number; next: number; flags: Array<number> }
  | { readonly k: "time"; epoch: number; calls: number; hits: number; callCounts: Array<number>; hitCounts: Array<number> }

/** A circuit as stored in the `state` column. */
export interface Row {
  state: State
  /** The generation: the fencing token of the current period. */
  g: number
  /** The next id (generation or probe permit) to issue. */
  n: number
  /** The first id of this incarnation of the key: a permit below it belongs to a circuit since dropped. */
  f: number
  /** Open until (epoch ms). */
  u: number
  /** Consecutive openings. */
  c: number
  /** The time the count of consecutive openings resets. */
  r: number
  /** The last open time. */
  l: number
  /** Probe successes. */
  q: number
  /** Running probes: [permit, start, end of lease (`-1`: no lease)]. */
  probes: Array<[number, number, number]>
  /** The trip specs the counts were made for. */
  trips: string
  counts: Array<Count>
}

const states: ReadonlySet<string> = new Set(["Closed", "Open", "HalfOpen", "Isolated", "Disabled"])

const freshCount = (spec: TripSpec): Count => {
  if (spec._tag === "Consecutive") return { k: "streak", streak: 0 }
  if (spec.windowCalls !== undefined) {
    return { k: "calls", calls: 0, hits: 0, next: 0, flags: new Array(spec.windowCalls).fill(0) }
  }
  return {
    k: "time",
    epoch: -1,
    calls: 0,
    hits: 0,
    callCounts: new Array(BUCKETS).fill(0),
    hitCounts: new Array(BUCKETS).fill(0)
  }
}

const specsText = new WeakMap<Policy, string>()

/** The policy's trip specs as text, computed once per policy object. */
export const tripsOf = (policy: Policy): string => {
  let text = specsText.get(policy)
  if (text === undefined) {
    text = JSON.stringify(policy.trips)
    specsText.set(policy, text)
  }
  return text
}

/** A fresh `Closed` circuit whose ids start at `seed`. */
export const create = (policy: Policy, seed: number): Row => ({
  state: "Closed",
  g: seed,
  n: seed + 1,
  f: seed,
  u: 0,
  c: 0,
  r: 0,
  l: 0,
  q: 0,
  probes: [],
  trips: tripsOf(policy),
  counts: policy.trips.map(freshCount)
})

const isNumber = (x: unknown): x is number => typeof x === "number" && Number.isFinite(x)

const validCount = (count: unknown, spec: TripSpec): boolean => {
  if (typeof count !== "object" || count === null) return false
  const c = count as Record<string, unknown>
  switch (spec._tag) {
    case "Consecutive":
      return c.k === "streak" && isNumber(c.streak)
    default:
      if (spec.windowCalls !== undefined) {
        return c.k === "calls" && isNumber(c.calls) && isNumber(c.hits) && isNumber(c.next) &&
          Array.isArray(c.flags) && c.flags.length === spec.windowCalls && c.flags.every(isNumber)
      }
      return c.k === "time" && isNumber(c.epoch) && isNumber(c.calls) && isNumber(c.hits) &&
        Array.isArray(c.callCounts) && c.callCounts.length === BUCKETS && c.callCounts.every(isNumber) &&
        Array.isArray(c.hitCounts) && c.hitCounts.length === BUCKETS && c.hitCounts.every(isNumber)
  }
}

/**
 * The row's circuit, or `undefined` when the text is not one this version
 * wrote (the caller starts the key afresh, above its old ids). Trip counts
 * made for other trip specs (a changed configuration) start afresh.
 */
export const parse = (text: string, policy: Policy): Row | undefined => {
  let row: Row
  try {
    row = JSON.parse(text) as Row
  } catch {
    return undefined
  }
  if (typeof row !== "object" || row === null || !states.has(row.state)) return undefined
  const numbers = [row.g, row.n, row.f, row.u, row.c, row.r, row.l, row.q]
  if (!numbers.every(isNumber) || row.n <= row.g || row.f > row.g) return undefined
  if (!Array.isArray(row.probes) || !row.probes.every((p) => Array.isArray(p) && p.length === 3 && p.every(isNumber))) {
    return undefined
  }
  const trips = tripsOf(policy)
  if (
    row.trips !== trips || !Array.isArray(row.counts) || row.counts.length !== policy.trips.length ||
    !row.counts.every((count, i) => validCount(count, policy.trips[i]))
  ) {
    row.trips = trips
    row.counts = policy.trips.map(freshCount)
  }
  return row
}

/** The open time of the n-th consecutive opening (n >= 1): the list's last element repeats. */
const openForOf = (policy: Policy, opening: number): number => {
  const times = policy.openForMs
  return times.length === 0 ? 0 : times[Math.min(opening, times.length) - 1]
}

/**
 * Runs the contract's operations on one circuit. `changed` says whether the
 * row must be written back; `transition` is the one the operation caused.
 */
export class Machine {
  changed = false
  transition: Transition | undefined = undefined

  readonly row: Row
  readonly policy: Policy
  readonly now: number

  constructor(row: Row, policy: Policy, now: number) {
    this.row = row
    this.policy = policy
    this.now = now
  }

  private moved(from: State, to: State): void {
    this.transition = { from, to, at: this.now }
  }

  private nextId(): number {
    return this.row.n++
  }

  admit(): CircuitBreakerStore.Admission {
    const row = this.row
    const now = this.now
    switch (row.state) {
      case "Closed":
        this.settleBackoff()
        return { _tag: "Admitted", permit: row.g, probe: false, transition: undefined }
      case "Disabled":
        return { _tag: "Pass" }
      case "Isolated":
        return { _tag: "Rejected", reason: "Isolated", retryAfterMs: Infinity, transition: undefined }
      case "Open":
        if (now < row.u) return { _tag: "Rejected", reason: "Open", retryAfterMs: row.u - now, transition: undefined }
        row.state = "HalfOpen"
        row.g = this.nextId()
        row.probes = []
        row.q = 0
        this.changed = true
        this.moved("Open", "HalfOpen")
        break
      case "HalfOpen":
        break
    }
    if (row.probes.length > 0 && this.expireProbes()) {
      this.moved("HalfOpen", "Open")
      return { _tag: "Rejected", reason: "Open", retryAfterMs: this.retryAfterMs(), transition: this.transition }
    }
    if (row.probes.length >= this.policy.probes) {
      return { _tag: "Rejected", reason: "ProbesBusy", retryAfterMs: 0, transition: this.transition }
    }
    // Each probe has its own permit: its outcome is told apart from the other probes' and from a lost probe's late report.
    const permit = this.nextId()
    // A lease (renewed by the probe's process while it runs) tells a running probe from a dead process's.
    const lease = this.policy.probeLeaseMs
    row.probes.push([permit, now, lease === undefined ? -1 : now + lease])
    this.changed = true
    return { _tag: "Admitted", permit, probe: true, transition: this.transition }
  }

  record(permit: number, outcome: CircuitBreaker.Outcome, elapsedMs: number): Transition | undefined {
    const row = this.row
    // A permit of a circuit since dropped: nothing to change.
    if (permit < row.f) return undefined
    if (row.state === "HalfOpen") {
      const index = row.probes.findIndex((probe) => probe[0] === permit)
      if (index < 0) return undefined
      if (this.expireProbes()) {
        this.moved("HalfOpen", "Open")
        return this.transition
      }
      row.probes.splice(index, 1)
      this.changed = true
      if (outcome === "Ignored") return undefined
      if (outcome === "Failure" || this.isSlow(elapsedMs)) {
        this.open()
        this.moved("HalfOpen", "Open")
      } else if (++row.q >= this.policy.successesToClose) {
        this.close()
        this.moved("HalfOpen", "Closed")
      }
      return this.transition
    }
    if (permit !== row.g || row.state !== "Closed" || outcome === "Ignored") return undefined
    const failed = outcome === "Failure"
    let trip = false
    for (let i = 0; i < this.policy.trips.length; i++) {
      if (this.count(i, failed, elapsedMs)) trip = true
    }
    if (trip) {
      this.open()
      this.moved("Closed", "Open")
    }
    return this.transition
  }

  read(): CircuitBreakerStore.Reading {
    const row = this.row
    this.settleBackoff()
    if (row.state === "HalfOpen" && row.probes.length > 0 && this.expireProbes()) this.moved("HalfOpen", "Open")
    return {
      state: row.state,
      retryAfterMs: this.retryAfterMs(),
      consecutiveOpenings: row.c,
      probing: row.probes.length,
      transition: this.transition
    }
  }

  force(to: "Isolated" | "Disabled" | "Closed"): Transition | undefined {
    const row = this.row
    const from = row.state
    if (to === "Closed") {
      row.c = 0
      row.l = 0
      this.close()
      row.r = 0
    } else {
      row.state = to
      row.g = this.nextId()
      row.probes = []
    }
    this.changed = true
    if (from !== to) this.moved(from, to)
    return this.transition
  }

  /**
   * The time from which the row may be deleted: once unused for `idleMs`,
   * never before its open time, its backoff count's reset or its probes'
   * leases end; an isolated or disabled circuit never (`Infinity`).
   */
  expiresAt(idleMs: number): number {
    const row = this.row
    const now = this.now
    if (row.state === "Isolated" || row.state === "Disabled") return Infinity
    let until = now + idleMs
    if (row.state === "Open") until = Math.max(until, row.u)
    if (row.state === "Closed" && row.c > 0) until = Math.max(until, row.r)
    for (const [, start] of row.probes) until = Math.max(until, start + this.policy.probeTimeoutMs + 1)
    return until
  }

  private retryAfterMs(): number {
    const row = this.row
    if (row.state === "Open") return Math.max(0, row.u - this.now)
    if (row.state === "Isolated") return Infinity
    return 0
  }

  /** The backoff count resets once the circuit has stayed closed as long as it was last open. */
  private settleBackoff(): void {
    const row = this.row
    if (row.state === "Closed" && row.c > 0 && this.now >= row.r) {
      row.c = 0
      this.changed = true
    }
  }

  /**
   * A probe that ran longer than `probeTimeoutMs`, or whose lease ended
   * without a renewal (its process died), is lost: the circuit opens again.
   */
  private expireProbes(): boolean {
    for (const probe of this.row.probes) {
      if (this.isLost(probe)) {
        this.open()
        return true
      }
    }
    return false
  }

  private isLost([, start, lease]: [number, number, number]): boolean {
    return this.now - start > this.policy.probeTimeoutMs || (lease >= 0 && this.now > lease)
  }

  /** Extends the lease of the running probe `permit`, unless it is lost already. */
  renew(permit: number): boolean {
    const lease = this.policy.probeLeaseMs
    if (this.row.state !== "HalfOpen" || lease === undefined) return false
    const probe = this.row.probes.find((p) => p[0] === permit)
    if (probe === undefined || this.isLost(probe)) return false
    probe[2] = this.now + lease
    this.changed = true
    return true
  }

  /** A probe that ends slower than a slowCalls policy allows is not a sign of health. */
  private isSlow(elapsedMs: number): boolean {
    for (const spec of this.policy.trips) {
      if (spec._tag === "SlowCalls" && elapsedMs > spec.slowerThanMs) return true
    }
    return false
  }

  private open(): void {
    const row = this.row
    this.settleBackoff()
    row.c++
    row.l = openForOf(this.policy, row.c)
    row.u = this.now + row.l
    row.state = "Open"
    row.g = this.nextId()
    row.probes = []
    this.resetCounts()
    this.changed = true
  }

  private close(): void {
    const row = this.row
    row.state = "Closed"
    row.g = this.nextId()
    row.probes = []
    row.r = this.now + row.l
    this.resetCounts()
    this.changed = true
  }

  private resetCounts(): void {
    this.row.counts = this.policy.trips.map(freshCount)
  }

  /** Counts an outcome for trip spec `i`; true when it says the circuit must open. */
  private count(i: number, failed: boolean, elapsedMs: number): boolean {
    const spec = this.policy.trips[i]
    const count = this.row.counts[i]
    if (spec._tag === "Consecutive") {
      const c = count as Extract<Count, { k: "streak" }>
      const before = c.streak
      c.streak = failed ? before + 1 : 0
      // A success after a success changes nothing: the row need not be written.
      if (c.streak !== before) this.changed = true
      return c.streak >= spec.failures
    }
    this.changed = true
    const hit = spec._tag === "SlowCalls" ? elapsedMs > spec.slowerThanMs : failed
    if (count.k === "calls") {
      const size = count.flags.length
      if (count.calls === size) count.hits -= count.flags[count.next]
      else count.calls++
      count.flags[count.next] = hit ? 1 : 0
      if (hit) count.hits++
      count.next = (count.next + 1) % size
    } else if (count.k === "time") {
      // Ten buckets of a tenth of the window, aligned to multiples of the bucket since the epoch.
      const epoch = Math.floor(this.now / (spec.windowMs! / BUCKETS))
      if (count.epoch === -1) {
        count.epoch = epoch
      } else if (epoch > count.epoch) {
        const steps = Math.min(BUCKETS, epoch - count.epoch)
        for (let k = 1; k <= steps; k++) {
          const slot = (count.epoch + k) % BUCKETS
          count.calls -= count.callCounts[slot]
          count.hits -= count.hitCounts[slot]
          count.callCounts[slot] = 0
          count.hitCounts[slot] = 0
        }
        count.epoch = epoch
      }
      const slot = count.epoch % BUCKETS
      count.callCounts[slot]++
      count.calls++
      if (hit) {
        count.hitCounts[slot]++
        count.hits++
      }
    }
    const { calls, hits } = count as Extract<Count, { k: "calls" | "time" }>
    return calls >= spec.minimumCalls && hits > 0 && hits / calls >= spec.threshold
  }
}
