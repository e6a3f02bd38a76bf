import { Clock, Context, Duration, Exit, Metric } from "effect"
import type * as CircuitBreaker from "../CircuitBreaker.ts"
import { CircuitOpen } from "../CircuitBreaker.ts"
import { EventHub } from "./events.ts"

type State = CircuitBreaker.State
type Outcome = CircuitBreaker.Outcome
type Reason = CircuitOpen["reason"]

// -----------------------------------------------------------------------------
// trip policies
// -----------------------------------------------------------------------------

/** Decoded trip policy, in milliseconds. */
export type TripSpec =
  | { readonly _tag: "Consecutive"; readonly failures: number }
  | {
    readonly _tag: "FailureRate"
    readonly threshold: number
    readonly minimumCalls: number
    readonly windowCalls: number | undefined
    readonly windowMs: number | undefined
  }
  | {
    readonly _tag: "SlowCalls"
    readonly slowerThanMs: number
    readonly threshold: number
    readonly minimumCalls: number
    readonly windowCalls: number | undefined
    readonly windowMs: number | undefined
  }

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
  readonly spec: TripSpec
  constructor(spec: TripSpec) {
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
  /** Figures for stats: [calls in window, failures or slow calls in window]. */
  figures(now: number): readonly [number, number] {
    if (this.window === undefined) return [this.streak, this.streak]
    this.window.advance(now)
    return [this.window.calls, this.window.hits]
  }
  reset(): void {
    this.streak = 0
    this.window?.reset()
  }
}

// -----------------------------------------------------------------------------
// the policy shared by every circuit of a breaker
// -----------------------------------------------------------------------------

export interface Policy {
  readonly name: string
  readonly trips: ReadonlyArray<TripSpec>
  /** Open time for the n-th consecutive opening (n >= 1), in ms. */
  readonly openForMs: (opening: number, now: number) => number
  readonly probes: number
  readonly successesToClose: number
  readonly probeTimeoutMs: number
  /** Whether admission or recording must read the clock even in Closed state. */
  readonly needsTimeWhenClosed: boolean
  /** Keyed circuits track their last activity for idle reclaiming. */
  readonly reclaimable: boolean
}

/**
 * The outcome of `admit`: a non-negative number is a permit (the circuit's
 * generation, to hand back to `record`); a negative number is a rejection.
 * Numbers, not objects, so the closed path allocates nothing.
 */
export const REJECT_OPEN = -1
export const REJECT_PROBES_BUSY = -2
export const REJECT_ISOLATED = -3
/** The circuit is Disabled: run the call, record nothing. */
export const PASS = -4

interface Probe {
  readonly id: number
  readonly startedAt: number
}

let nextGeneration = 1

/**
 * One circuit: the state machine a store keeps per key. Every method takes
 * the current time and returns plain data, so that a remote store can run the
 * same contract as one atomic script per decision.
 */
export class Circuit {
  state: State = "Closed"
  /** Fencing token: outcomes of calls admitted under an older generation change nothing. */
  generation = nextGeneration++
  openUntil = 0
  consecutiveOpenings = 0
  /** Closed since this time for at least the last open time: then the backoff count resets. */
  backoffResetAt = 0
  lastOpenForMs = 0
  lastActivity = 0
  probes: Array<Probe> = []
  probeSuccesses = 0
  readonly tripwires: ReadonlyArray<Tripwire>
  readonly policy: Policy
  readonly key: string | undefined

  constructor(policy: Policy, key: string | undefined, now: number) {
    this.policy = policy
    this.key = key
    this.tripwires = policy.trips.map((spec) => new Tripwire(spec))
    this.lastActivity = now
  }

  /** Decides one call. Transitions it causes are reported through `onTransition`. */
  admit(clock: Clock.Clock, onTransition: (from: State, to: State, now: number) => void): number {
    switch (this.state) {
      case "Closed":
        // The closed path reads no clock unless a backoff may need resetting.
        if (this.consecutiveOpenings > 0) this.settleBackoff(clock.currentTimeMillisUnsafe())
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

  private takeProbe(now: number, onTransition: (from: State, to: State, now: number) => void): number {
    if (this.probes.length > 0 && this.expireProbes(now)) {
      onTransition("HalfOpen", "Open", now)
      return REJECT_OPEN
    }
    if (this.probes.length >= this.policy.probes) return REJECT_PROBES_BUSY
    // Each probe has its own permit, so that its outcome can be told apart
    // from the other probes' and from a lost probe's late report.
    const id = nextGeneration++
    this.probes.push({ id, startedAt: now })
    return id
  }

  /**
   * A probe that outlived `probeTimeout` is lost: its caller crashed or hangs.
   * It counts as a failure, so the circuit reopens instead of staying
   * half-open behind a probe that will never report.
   */
  expireProbes(now: number): boolean {
    const timeout = this.policy.probeTimeoutMs
    for (const probe of this.probes) {
      if (now - probe.startedAt > timeout) {
        this.open(now)
        return true
      }
    }
    return false
  }

  /**
   * Records the outcome of a call admitted with `permit` at `startedAt`
   * (read only when the policy needs time); stale permits change nothing.
   */
  record(
    permit: number,
    outcome: Outcome,
    startedAt: number,
    clock: Clock.Clock,
    onTransition: (from: State, to: State, now: number) => void
  ): void {
    if (this.state === "HalfOpen") {
      const now = clock.currentTimeMillisUnsafe()
      const elapsedMs = now - startedAt
      const index = this.probes.findIndex((probe) => probe.id === permit)
      if (index < 0) return
      this.lastActivity = now
      if (this.expireProbes(now)) {
        onTransition("HalfOpen", "Open", now)
        return
      }
      this.probes.splice(index, 1)
      if (outcome === "Ignored") return
      if (outcome === "Failure" || this.isSlow(elapsedMs)) {
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
    if (permit !== this.generation || this.state !== "Closed") return
    const timed = this.policy.needsTimeWhenClosed
    let now = timed ? clock.currentTimeMillisUnsafe() : 0
    if (timed || this.policy.reclaimable) this.lastActivity = now === 0 ? clock.currentTimeMillisUnsafe() : now
    if (outcome === "Ignored") return
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
    const openFor = this.policy.openForMs(this.consecutiveOpenings, now)
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

  /** Manual control: isolate, disable, or reset to Closed (clearing the backoff). Returns the previous state. */
  force(to: "Isolated" | "Disabled" | "Closed", now: number): State {
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
    return from
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

  /** Brings the state up to date without admitting anything (for reads). */
  refresh(now: number, onTransition: (from: State, to: State, now: number) => void): void {
    this.settleBackoff(now)
    if (this.state === "HalfOpen" && this.probes.length > 0 && this.expireProbes(now)) {
      onTransition("HalfOpen", "Open", now)
    }
  }

  /** Calls of a keyed circuit that are running (plain circuits do not count them). */
  running = 0

  get idle(): boolean {
    return this.probes.length === 0 && this.running === 0
  }
}

// -----------------------------------------------------------------------------
// counters, errors, events, metrics
// -----------------------------------------------------------------------------

export const stateCode: Record<State, number> = { Closed: 0, HalfOpen: 1, Open: 2, Isolated: 3, Disabled: 4 }

/** The counters of one breaker (all its circuits). */
export class Counters {
  successes = 0
  failures = 0
  ignored = 0
  readonly rejected: Record<Reason, number> = { Open: 0, ProbesBusy: 0, Isolated: 0 }
  transitions = 0
  openings = 0
  readonly hub = new EventHub<CircuitBreaker.Event>()
}

/**
 * Builds a `CircuitOpen` without running its Schema constructor: the same
 * prototype and fields, no validation and no stack trace, so that rejecting
 * while open stays well under a microsecond.
 */
export const fastOpenError = (
  name: string,
  key: string | undefined,
  reason: Reason,
  state: "Open" | "HalfOpen" | "Isolated",
  retryAfterMs: number
): CircuitOpen => {
  const error = Object.create(CircuitOpen.prototype)
  error._tag = "CircuitOpen"
  error.name = name
  if (key !== undefined) error.key = key
  error.reason = reason
  error.state = state
  error.retryAfter = retryAfterMs === Infinity ? Duration.infinity : Duration.millis(retryAfterMs)
  return error
}

export const defaultClassify = (exit: Exit.Exit<unknown, unknown>): Outcome => {
  if (Exit.isSuccess(exit)) return "Success"
  // An interruption says nothing about the dependency's health, unless the
  // call also failed or died.
  for (const reason of exit.cause.reasons) {
    if (reason._tag !== "Interrupt") return "Failure"
  }
  return "Ignored"
}

/** Pull-based metrics, read from the counters and the circuits when exported. */
export const registerMetrics = (
  context: Context.Context<never>,
  name: string,
  counters: Counters,
  currentState: ((now: number) => State) | undefined,
  circuits: () => number
): Array<Metric.Registration> => {
  const attributes = { name }
  const noop = () => {}
  const counter = (id: string, description: string, attrs: Readonly<Record<string, string>>, get: () => number) =>
    Metric.registerUnsafe(Metric.counter(id, { description, attributes: attrs }), context, {
      get: () => ({ count: get(), incremental: true }),
      update: noop,
      modify: noop
    })
  const registrations = [
    counter("bulwark.circuitbreaker.successes", "Calls recorded as Success", attributes, () => counters.successes),
    counter("bulwark.circuitbreaker.failures", "Calls recorded as Failure", attributes, () => counters.failures),
    counter("bulwark.circuitbreaker.ignored", "Calls recorded as Ignored", attributes, () => counters.ignored),
    counter("bulwark.circuitbreaker.transitions", "State transitions", attributes, () => counters.transitions),
    counter("bulwark.circuitbreaker.openings", "Transitions to Open", attributes, () => counters.openings)
  ]
  for (const reason of ["Open", "ProbesBusy", "Isolated"] as const) {
    registrations.push(
      counter("bulwark.circuitbreaker.rejected", "Calls rejected, by reason", { name, reason }, () => counters.rejected[reason])
    )
  }
  if (currentState !== undefined) {
    registrations.push(
      Metric.registerUnsafe(
        Metric.gauge("bulwark.circuitbreaker.state", {
          description: "0 Closed, 1 HalfOpen, 2 Open, 3 Isolated, 4 Disabled",
          attributes
        }),
        context,
        {
          get: (ctx) => ({ value: stateCode[currentState(Context.get(ctx, Clock.Clock).currentTimeMillisUnsafe())] }),
          update: noop,
          modify: noop
        }
      )
    )
  } else {
    registrations.push(
      Metric.registerUnsafe(
        Metric.gauge("bulwark.circuitbreaker.circuits", { description: "Live keyed circuits", attributes }),
        context,
        { get: () => ({ value: circuits() }), update: noop, modify: noop }
      )
    )
  }
  return registrations
}
