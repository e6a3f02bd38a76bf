import type { Outcome, State } from "../CircuitBreaker.ts"
import type * as Store from "../CircuitBreakerStore.ts"

/**
 * The circuit state machine (one per key) and the in-memory store that keeps
 * circuits in a `Map` with LRU order, idle reclaiming and a bound on keys.
 *
 * Every method of a circuit takes the current time (or a clock it reads only
 * when the decision needs it) and returns plain data, so that a remote store
 * can run the same contract as one atomic script per decision.
 */

type OnTransition = Store.OnTransition
type TimeSource = Store.TimeSource

/** Results of an in-process `admit` that are not permits. */
export const REJECT_OPEN = -1
export const REJECT_PROBES_BUSY = -2
export const REJECT_ISOLATED = -3
export const PASS = -4

// -----------------------------------------------------------------------------
// trip policies
// -----------------------------------------------------------------------------

/**
 * Counts outcomes over the last `size` calls: a ring of flags, O(1) per call.
 */
class CountWindow {
  private readonly flags: Uint8Array
  private next = 0
  calls = 0
  hits = 0
  constructor(size: number) {
    this.flags = new Uint8Array(size)
  }
  add(hit: boolean, _now: number): void {
    const size = this.flags.length
    if (this.calls === size) this.hits -= this.flags[this.next]
    else this.calls++
    this.flags[this.next] = hit ? 1 : 0
    if (hit) this.hits++
    this.next = (this.next + 1) % size
  }
  advance(_now: number): void {}
  reset(): void {
    this.flags.fill(0)
    this.next = 0
    this.calls = 0
    this.hits = 0
  }
}

const BUCKETS = 10

/**
 * Counts outcomes over the last `windowMs` with ten buckets of a tenth of the
 * window each (as resilience4j does), O(1) amortized per call. The window is
 * therefore exact to one bucket: outcomes leave it between 90% and 100% of
 * `windowMs` after they were recorded.
 */
class TimeWindow {
  private readonly bucketMs: number
  private readonly callCounts = new Float64Array(BUCKETS)
  private readonly hitCounts = new Float64Array(BUCKETS)
  private epoch = -1
  calls = 0
  hits = 0
  constructor(windowMs: number) {
    this.bucketMs = windowMs / BUCKETS
  }
  advance(now: number): void {
    const epoch = Math.floor(now / this.bucketMs)
    if (this.epoch === -1) {
      this.epoch = epoch
      return
    }
    if (epoch <= this.epoch) return
    const steps = Math.min(BUCKETS, epoch - this.epoch)
    for (let i = 1; i <= steps; i++) {
      const slot = (this.epoch + i) % BUCKETS
      this.calls -= this.callCounts[slot]
      this.hits -= this.hitCounts[slot]
      this.callCounts[slot] = 0
      this.hitCounts[slot] = 0
    }
    this.epoch = epoch
  }
  add(hit: boolean, now: number): void {
    this.advance(now)
    const slot = this.epoch % BUCKETS
    this.callCounts[slot]++
    this.calls++
    if (hit) {
      this.hitCounts[slot]++
      this.hits++
    }
  }
  reset(): void {
    this.callCounts.fill(0)
    this.hitCounts.fill(0)
    this.calls = 0
    this.hits = 0
    this.epoch = -1
  }
}

type Window = CountWindow | TimeWindow

const makeWindow = (windowCalls: number | undefined, windowMs: number | undefined): Window =>
  windowCalls !== undefined ? new CountWindow(windowCalls) : new TimeWindow(windowMs!)

/** The state one trip policy keeps for one circuit. */
class Tripwire {
  private streak = 0
  private readonly window: Window | undefined
  readonly spec: Store.TripSpec
  constructor(spec: Store.TripSpec) {
    this.spec = spec
    this.window = spec._tag === "Consecutive" ? undefined : makeWindow(spec.windowCalls, spec.windowMs)
  }
  /** Records a counted outcome; true when the policy says the circuit must open. */
  record(failed: boolean, elapsedMs: number, now: number): boolean {
    const spec = this.spec
    switch (spec._tag) {
      case "Consecutive": {
        this.streak = failed ? this.streak + 1 : 0
        return this.streak >= spec.failures
      }
      case "FailureRate": {
        const window = this.window!
        window.add(failed, now)
        return window.calls >= spec.minimumCalls && window.hits > 0 && window.hits / window.calls >= spec.threshold
      }
      case "SlowCalls": {
        const window = this.window!
        window.add(elapsedMs > spec.slowerThanMs, now)
        return window.calls >= spec.minimumCalls && window.hits > 0 && window.hits / window.calls >= spec.threshold
      }
    }
  }
  reset(): void {
    this.streak = 0
    this.window?.reset()
  }
}

/** Whether recording in Closed state needs the time: a time window or a slow-call policy. */
export const needsTimeWhenClosed = (policy: Store.Policy): boolean =>
  policy.trips.some((t) => t._tag === "SlowCalls" || (t._tag === "FailureRate" && t.windowMs !== undefined))

/** The open time of the n-th consecutive opening (n >= 1): the array's last element repeats. */
export const openForOf = (policy: Store.Policy, opening: number): number => {
  const times = policy.openForMs
  if (times.length === 0) return 0
  return times[Math.min(opening, times.length) - 1]
}

// -----------------------------------------------------------------------------
// one circuit
// -----------------------------------------------------------------------------

interface Probe {
  readonly id: number
  readonly startedAt: number
  /** The end of its lease (`probeLeaseMs` after its start or last renewal); `Infinity` without a lease. */
  leaseUntil: number
}

/**
 * Permits and generations come from one counter for every circuit of the
 * process, so a permit never matches a circuit other than the one that issued
 * it, even after its key was dropped and created again.
 */
let nextGeneration = 1

/**
 * One circuit: the state machine a store keeps per key.
 */
export class Circuit implements Store.LocalCircuit {
  state: State = "Closed"
  /** Fencing token: outcomes of calls admitted under an older generation change nothing. */
  generation = nextGeneration++
  /** Every permit this circuit issues is at least this: older permits belong to a dropped circuit of the same key. */
  readonly firstGeneration: number
  openUntil = 0
  consecutiveOpenings = 0
  /** Closed since this time for at least the last open time: then the backoff count resets. */
  backoffResetAt = 0
  lastOpenForMs = 0
  lastActivity = 0
  probes: Array<Probe> = []
  probeSuccesses = 0
  /** Admitted calls (permits) that have not reported yet. */
  running = 0
  dropped = false
  readonly tripwires: ReadonlyArray<Tripwire>
  readonly policy: Store.Policy
  readonly key: string
  /** Recording in Closed state reads the clock (a time window or a slow-call policy). */
  private readonly timed: boolean
  private readonly store: MemoryStore

  constructor(store: MemoryStore, policy: Store.Policy, key: string, now: number) {
    this.store = store
    this.policy = policy
    this.key = key
    this.firstGeneration = this.generation
    this.timed = store.timed(policy)
    this.tripwires = policy.trips.map((spec) => new Tripwire(spec))
    this.lastActivity = now
  }

  /** Decides one call. A transition it causes is reported through `onTransition`. */
  admit(clock: TimeSource, onTransition: OnTransition): number {
    switch (this.state) {
      case "Closed":
        // The closed path reads no clock unless a backoff may need resetting.
        if (this.consecutiveOpenings > 0) this.settleBackoff(clock.currentTimeMillisUnsafe())
        this.running++
        return this.generation
      case "Disabled":
        return PASS
      case "Isolated":
        return REJECT_ISOLATED
    }
    const now = clock.currentTimeMillisUnsafe()
    switch (this.state) {
      case "Open":
        if (now < this.openUntil) return REJECT_OPEN
        this.state = "HalfOpen"
        this.generation = nextGeneration++
        this.probes = []
        this.probeSuccesses = 0
        onTransition("Open", "HalfOpen", now)
        return this.takeProbe(now, onTransition)
      case "HalfOpen":
        return this.takeProbe(now, onTransition)
    }
  }

  private takeProbe(now: number, onTransition: OnTransition): number {
    if (this.probes.length > 0 && this.expireProbes(now)) {
      onTransition("HalfOpen", "Open", now)
      return REJECT_OPEN
    }
    if (this.probes.length >= this.policy.probes) return REJECT_PROBES_BUSY
    // Each probe has its own permit, so that its outcome can be told apart
    // from the other probes' and from a lost probe's late report.
    const id = nextGeneration++
    const lease = this.policy.probeLeaseMs
    this.probes.push({ id, startedAt: now, leaseUntil: lease === undefined ? Infinity : now + lease })
    this.running++
    return id
  }

  /**
   * A probe that outlived `probeTimeout`, or whose lease ran out without a
   * renewal, is lost: its caller crashed or hangs. It counts as a failure,
   * so the circuit reopens instead of staying half-open behind a probe that
   * will never report.
   */
  private expireProbes(now: number): boolean {
    for (const probe of this.probes) {
      if (this.isLost(probe, now)) {
        this.open(now)
        return true
      }
    }
    return false
  }

  private isLost(probe: Probe, now: number): boolean {
    return now - probe.startedAt > this.policy.probeTimeoutMs || now > probe.leaseUntil
  }

  /**
   * Extends the lease of the running probe `permit` to `probeLeaseMs` from
   * `now`, unless it is lost already; changes nothing else.
   */
  renew(permit: number, now: number): boolean {
    const lease = this.policy.probeLeaseMs
    if (this.state !== "HalfOpen" || lease === undefined) return false
    const probe = this.probes.find((p) => p.id === permit)
    if (probe === undefined || this.isLost(probe, now)) return false
    probe.leaseUntil = now + lease
    return true
  }

  /**
   * Records the outcome of a call admitted with `permit` at `startedAt`
   * (read only when the policy needs time); stale permits change nothing.
   */
  record(permit: number, outcome: Outcome, startedAt: number, clock: TimeSource, onTransition: OnTransition): void {
    if (permit < 0) return
    this.running--
    // A dropped circuit is no longer the key's: a late report changes nothing.
    if (this.dropped) return
    this.store.used(this, clock)
    if (this.state === "HalfOpen") {
      const index = this.probes.findIndex((probe) => probe.id === permit)
      if (index < 0) return
      const now = clock.currentTimeMillisUnsafe()
      if (this.expireProbes(now)) {
        onTransition("HalfOpen", "Open", now)
        return
      }
      this.probes.splice(index, 1)
      if (outcome === "Ignored") return
      if (outcome === "Failure" || this.isSlow(now - startedAt)) {
        this.open(now)
        onTransition("HalfOpen", "Open", now)
        return
      }
      if (++this.probeSuccesses >= this.policy.successesToClose) {
        this.close(now)
        onTransition("HalfOpen", "Closed", now)
      }
      return
    }
    if (permit !== this.generation || this.state !== "Closed" || outcome === "Ignored") return
    const timed = this.timed
    let now = timed ? clock.currentTimeMillisUnsafe() : 0
    const failed = outcome === "Failure"
    const elapsedMs = now - startedAt
    let trip = false
    for (let i = 0; i < this.tripwires.length; i++) {
      if (this.tripwires[i].record(failed, elapsedMs, now)) trip = true
    }
    if (trip) {
      if (!timed) now = clock.currentTimeMillisUnsafe()
      this.open(now)
      onTransition("Closed", "Open", now)
    }
  }

  /** A probe that ends slower than a slowCalls policy allows is not a sign of health. */
  private isSlow(elapsedMs: number): boolean {
    for (const spec of this.policy.trips) {
      if (spec._tag === "SlowCalls" && elapsedMs > spec.slowerThanMs) return true
    }
    return false
  }

  private open(now: number): void {
    if (this.state === "Closed") this.settleBackoff(now)
    this.consecutiveOpenings++
    const openFor = openForOf(this.policy, this.consecutiveOpenings)
    this.lastOpenForMs = openFor
    this.openUntil = now + openFor
    this.state = "Open"
    this.generation = nextGeneration++
    this.probes = []
    for (const tripwire of this.tripwires) tripwire.reset()
  }

  private close(now: number): void {
    this.state = "Closed"
    this.generation = nextGeneration++
    this.probes = []
    this.backoffResetAt = now + this.lastOpenForMs
    for (const tripwire of this.tripwires) tripwire.reset()
  }

  /** Manual control: isolate, disable, or reset to Closed (clearing the backoff). */
  force(to: "Isolated" | "Disabled" | "Closed", now: number, onTransition: OnTransition): void {
    const from = this.state
    if (to === "Closed") {
      this.consecutiveOpenings = 0
      this.lastOpenForMs = 0
      this.close(now)
      this.backoffResetAt = 0
    } else {
      this.state = to
      this.generation = nextGeneration++
      this.probes = []
    }
    if (from !== to) onTransition(from, to, now)
  }

  /** Time until a call may be admitted again, for `retryAfter`. */
  retryAfterMs(now: number): number {
    switch (this.state) {
      case "Open":
        return Math.max(0, this.openUntil - now)
      case "Isolated":
        return Infinity
      default:
        return 0
    }
  }

  /** The backoff count resets once the circuit has stayed closed as long as it was last open. */
  private settleBackoff(now: number): void {
    if (this.state === "Closed" && this.consecutiveOpenings > 0 && now >= this.backoffResetAt) this.consecutiveOpenings = 0
  }

  /** Brings the state up to date without admitting anything (lost probes, backoff), then reports it. */
  read(now: number, onTransition: OnTransition): Store.CircuitInfo {
    this.refresh(now, onTransition)
    return {
      state: this.state,
      retryAfterMs: this.retryAfterMs(now),
      consecutiveOpenings: this.consecutiveOpenings,
      probing: this.probes.length
    }
  }

  refresh(now: number, onTransition: OnTransition): State {
    this.settleBackoff(now)
    if (this.state === "HalfOpen" && this.probes.length > 0 && this.expireProbes(now)) {
      onTransition("HalfOpen", "Open", now)
    }
    return this.state
  }

  /** No probe and no call running: dropping the circuit loses no outcome. */
  get idle(): boolean {
    return this.probes.length === 0 && this.running === 0
  }
}

// -----------------------------------------------------------------------------
// the in-memory store
// -----------------------------------------------------------------------------

/** A clock stopped at `now`: the `Effect` operations decide at the time they are given. */
const stoppedAt = (now: number): TimeSource => ({ currentTimeMillisUnsafe: () => now })

const collect = () => {
  let transition: Store.Transition | undefined
  const on: OnTransition = (from, to, at) => {
    transition = { from, to, at }
  }
  return { on, get: () => transition }
}

const fresh: Store.CircuitInfo = { state: "Closed", retryAfterMs: 0, consecutiveOpenings: 0, probing: 0 }

export class MemoryStore implements Store.InProcess {
  /** Circuits in LRU order (least recently used first), kept by re-insertion. */
  readonly circuits = new Map<string, Circuit>()
  readonly maxKeys: number
  readonly idleTtlMs: number
  reclaimedCount = 0
  /** The most recently used circuit (the map's last entry): using it again moves nothing. */
  private last: Circuit | undefined = undefined
  /** Circuits stamp their last activity only when idle reclaiming can happen. */
  private readonly stamps: boolean
  private readonly timedPolicies = new WeakMap<Store.Policy, boolean>()

  constructor(maxKeys: number, idleTtlMs: number) {
    this.maxKeys = maxKeys
    this.idleTtlMs = idleTtlMs
    this.stamps = idleTtlMs !== Infinity
  }

  timed(policy: Store.Policy): boolean {
    let timed = this.timedPolicies.get(policy)
    if (timed === undefined) {
      timed = needsTimeWhenClosed(policy)
      this.timedPolicies.set(policy, timed)
    }
    return timed
  }

  /** The circuit for a key, created on demand, and marked as used at `now`. */
  circuit(key: string, policy: Store.Policy, now: number): Circuit {
    const circuits = this.circuits
    const found = circuits.get(key)
    if (found !== undefined) {
      if (this.stamps) found.lastActivity = now
      if (this.last !== found) {
        circuits.delete(key)
        circuits.set(key, found)
        this.last = found
      }
      return found
    }
    this.reclaim(now)
    const circuit = new Circuit(this, policy, key, now)
    circuits.set(key, circuit)
    this.last = circuit
    return circuit
  }

  find(key: string): Circuit | undefined {
    return this.circuits.get(key)
  }

  /**
   * A call of `circuit` finished: it becomes the most recently used, so that
   * the LRU order of the map is the order of last activity and reclaiming can
   * stop at the first circuit that is still fresh.
   */
  used(circuit: Circuit, clock: TimeSource): void {
    if (this.stamps) circuit.lastActivity = clock.currentTimeMillisUnsafe()
    if (this.last !== circuit) {
      this.circuits.delete(circuit.key)
      this.circuits.set(circuit.key, circuit)
      this.last = circuit
    }
  }

  private drop(key: string, circuit: Circuit): void {
    this.circuits.delete(key)
    circuit.dropped = true
    if (this.last === circuit) this.last = undefined
    this.reclaimedCount++
  }

  /**
   * Reclaims circuits idle past the TTL (an Open circuit only once its open
   * time has passed), then, at `maxKeys`, the least recently used circuit
   * that has no call running. Runs on the caller's fiber, O(reclaimed).
   */
  private reclaim(now: number): void {
    const circuits = this.circuits
    if (this.stamps) {
      for (const [key, circuit] of circuits) {
        if (!circuit.idle) continue
        if (now - circuit.lastActivity < this.idleTtlMs) break
        if (circuit.state === "Open" && now < circuit.openUntil) continue
        this.drop(key, circuit)
      }
    }
    if (circuits.size < this.maxKeys) return
    for (const [key, circuit] of circuits) {
      if (circuit.idle) return this.drop(key, circuit)
    }
    // Every circuit has a call running: evict the least recently used anyway;
    // its calls' late reports find a dropped circuit and change nothing.
    const oldest = circuits.entries().next().value
    if (oldest !== undefined) this.drop(oldest[0], oldest[1])
  }

  size(): number {
    return this.circuits.size
  }

  keys(): ReadonlyArray<string> {
    return Array.from(this.circuits.keys())
  }

  reclaimed(): number {
    return this.reclaimedCount
  }

  // The `Effect` operations, as plain functions deciding at a given time.

  admit(key: string, policy: Store.Policy, now: number): Store.Admission {
    const circuit = this.circuit(key, policy, now)
    const t = collect()
    const permit = circuit.admit(stoppedAt(now), t.on)
    if (permit >= 0) return { _tag: "Admitted", permit, probe: circuit.state === "HalfOpen", transition: t.get() }
    if (permit === PASS) return { _tag: "Pass" }
    const reason = permit === REJECT_OPEN ? "Open" : permit === REJECT_PROBES_BUSY ? "ProbesBusy" : "Isolated"
    return { _tag: "Rejected", reason, retryAfterMs: circuit.retryAfterMs(now), transition: t.get() }
  }

  record(
    key: string,
    _policy: Store.Policy,
    permit: number,
    outcome: Outcome,
    elapsedMs: number,
    now: number
  ): Store.Transition | undefined {
    const circuit = this.circuits.get(key)
    // Unknown key, or a permit of a circuit since dropped: nothing to change.
    if (circuit === undefined || permit < circuit.firstGeneration) return undefined
    const t = collect()
    circuit.record(permit, outcome, now - elapsedMs, stoppedAt(now), t.on)
    return t.get()
  }

  renew(key: string, _policy: Store.Policy, permit: number, now: number): boolean {
    const circuit = this.circuits.get(key)
    if (circuit === undefined || permit < circuit.firstGeneration) return false
    return circuit.renew(permit, now)
  }

  read(key: string, _policy: Store.Policy, now: number): Store.Reading {
    const circuit = this.circuits.get(key)
    if (circuit === undefined) return { ...fresh, transition: undefined }
    const t = collect()
    const info = circuit.read(now, t.on)
    return { ...info, transition: t.get() }
  }

  force(
    key: string,
    policy: Store.Policy,
    to: "Isolated" | "Disabled" | "Closed",
    now: number
  ): Store.Transition | undefined {
    const t = collect()
    this.circuit(key, policy, now).force(to, now, t.on)
    return t.get()
  }
}
