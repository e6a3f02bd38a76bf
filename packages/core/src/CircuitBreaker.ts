/**
 * A circuit breaker stops calling a dependency that keeps failing, so that
 * callers fail fast instead of waiting on it, and the dependency gets time to
 * recover.
 *
 * **Details**
 *
 * - `Closed`: calls run; every counted outcome goes to the trip policies
 *   (`consecutive`, `failureRate`, `slowCalls`; several may be combined and
 *   any of them trips the circuit).
 * - `Open`: calls fail at once with `CircuitOpen` (reason `Open`) and a
 *   `retryAfter` that says when a probe may run. The open time is `openFor`: a
 *   fixed duration, or a `Schedule` giving the time for the 1st, 2nd, ...
 *   consecutive opening (backoff). The backoff count resets once the circuit
 *   has stayed closed for as long as it was last open.
 * - `HalfOpen`: at most `halfOpen.probes` calls run at once as probes; the
 *   others are rejected at once (reason `ProbesBusy`), never queued.
 *   `successesToClose` successful probes close the circuit; one failed probe
 *   reopens it. An interrupted or `Ignored` probe frees its slot. A probe that
 *   outlives `probeTimeout` is lost: it counts as a failure and reopens the
 *   circuit, so a crashed or hung caller cannot keep it half-open.
 * - `Isolated` (by {@link isolate}) rejects every call until {@link reset};
 *   `Disabled` (by {@link disable}) lets every call through and records
 *   nothing until {@link reset}.
 * - Calls admitted before a transition finish normally, but their outcomes
 *   change nothing (each admission carries a fencing generation).
 *   "Consecutive" counts completions in completion order.
 * - `classify` decides what an exit means: by default a typed failure or a
 *   defect is a `Failure`, success is `Success`, interruption is `Ignored`.
 * - With `keys`, one breaker holds one circuit per key (host, tenant) with the
 *   same policy, at most `maxKeys` of them, idle ones reclaimed lazily.
 *
 * **Gotchas**
 *
 * - The breaker never waits. Put retries *outside* it and let them honour
 *   `CircuitOpen.retryAfter` (Bulwark's `Retry` does); put the call's own
 *   timeout *inside* it so it sees one outcome per call.
 * - Admission, recording and rejection are synchronous and O(1) (a sliding
 *   count window is a ring, a time window ten buckets): no fiber, no lock.
 *
 * **Example** (Failing fast while a dependency is down)
 *
 * ```ts
 * import { CircuitBreaker } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const breaker = yield* CircuitBreaker.make({
 *     name: "payments",
 *     trip: CircuitBreaker.consecutive(5),
 *     openFor: "30 seconds"
 *   })
 *   return yield* Effect.succeed("charged").pipe(
 *     CircuitBreaker.guard(breaker),
 *     Effect.catchTag("CircuitOpen", (e) => Effect.succeed(`down, retry in ${e.retryAfter}`))
 *   )
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 */
import { Clock, Duration, Effect, Exit, Layer, Schedule, Schema, Scope } from "effect"
import * as Context from "effect/Context"
import { type Pipeable, pipeArguments } from "effect/Pipeable"
import * as Stream from "effect/Stream"
import * as internal from "./internal/circuitBreaker.ts"
import { decodeOptions, DurationInput, DurationText, Name, PositiveInt } from "./internal/options.ts"
import type { InvalidOptions } from "./InvalidOptions.ts"

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: "~@bulwark/core/CircuitBreaker" = "~@bulwark/core/CircuitBreaker"

/**
 * @since 0.1.0
 * @category models
 */
export type State = "Closed" | "Open" | "HalfOpen" | "Isolated" | "Disabled"

/**
 * What one call's exit means for the circuit.
 *
 * @since 0.1.0
 * @category models
 */
export type Outcome = "Success" | "Failure" | "Ignored"

/**
 * The circuit did not let the call run.
 *
 * - reason `Open`: the circuit is open; `retryAfter` is the time until a
 *   probe may run.
 * - reason `ProbesBusy`: the circuit is half-open and every probe slot is
 *   taken; `retryAfter` is zero (a slot frees as soon as a probe reports).
 * - reason `Isolated`: the circuit was isolated by hand; `retryAfter` is
 *   infinite until {@link reset}.
 *
 * @since 0.1.0
 * @category errors
 */
export class CircuitOpen extends Schema.TaggedError<CircuitOpen>()("CircuitOpen", {
  name: Schema.String,
  /** The circuit's key, only for keyed breakers created with `exposeKeys: true`. */
  key: Schema.optionalKey(Schema.String),
  reason: Schema.Literals(["Open", "ProbesBusy", "Isolated"]),
  state: Schema.Literals(["Open", "HalfOpen", "Isolated"]),
  retryAfter: Schema.Duration
}) {
  override get message(): string {
    return `Circuit "${this.name}"${this.key === undefined ? "" : ` [${this.key}]`} rejected the call: ${this.reason}`
  }
}

// -----------------------------------------------------------------------------
// trip policies
// -----------------------------------------------------------------------------

const Threshold = Schema.Number.check(
  Schema.makeFilter((n: number) => n > 0 && n <= 1 ? undefined : `Expected a ratio in (0, 1], got ${n}`)
)

// A number counts calls; a time window must be written as a duration ("1 minute").
const Window = Schema.Union([
  PositiveInt,
  DurationText.check(Schema.makeFilter((d: Duration.Duration) => Duration.toMillis(d) > 0 ? undefined : "Expected a time window > 0"))
])

/**
 * Trip policies as data, validated with the breaker's options.
 *
 * @since 0.1.0
 * @category trip policies
 */
export const TripPolicy = Schema.Union([
  Schema.Struct({ _tag: Schema.tag("Consecutive"), failures: PositiveInt }),
  Schema.Struct({
    _tag: Schema.tag("FailureRate"),
    threshold: Threshold,
    minimumCalls: PositiveInt,
    window: Window
  }),
  Schema.Struct({
    _tag: Schema.tag("SlowCalls"),
    slowerThan: DurationInput,
    threshold: Threshold,
    minimumCalls: PositiveInt,
    window: Window
  })
])

/**
 * @since 0.1.0
 * @category trip policies
 */
export type TripPolicy =
  | { readonly _tag: "Consecutive"; readonly failures: number }
  | {
    readonly _tag: "FailureRate"
    readonly threshold: number
    readonly minimumCalls: number
    readonly window: number | Duration.Input
  }
  | {
    readonly _tag: "SlowCalls"
    readonly slowerThan: Duration.Input
    readonly threshold: number
    readonly minimumCalls: number
    readonly window: number | Duration.Input
  }

/**
 * Opens after `failures` failures in a row, counted in completion order.
 *
 * @since 0.1.0
 * @category trip policies
 */
export const consecutive = (failures: number): TripPolicy => ({ _tag: "Consecutive", failures })

/**
 * Opens when at least `threshold` (a ratio in (0, 1]) of the calls in the
 * window failed, once the window holds at least `minimumCalls` calls. A
 * `window` that is a number counts calls (the last N); a duration (`"1
 * minute"`) is a time window of ten buckets.
 *
 * @since 0.1.0
 * @category trip policies
 */
export const failureRate = (options: {
  readonly threshold: number
  readonly minimumCalls: number
  readonly window: number | Duration.Input
}): TripPolicy => ({ _tag: "FailureRate", ...options })

/**
 * Opens when at least `threshold` of the calls in the window took longer than
 * `slowerThan`, whatever their outcome: a dependency that answers slowly is
 * failing its callers even when it answers.
 *
 * @since 0.1.0
 * @category trip policies
 */
export const slowCalls = (options: {
  readonly slowerThan: Duration.Input
  readonly threshold: number
  readonly minimumCalls: number
  readonly window: number | Duration.Input
}): TripPolicy => ({ _tag: "SlowCalls", ...options })

// -----------------------------------------------------------------------------
// options
// -----------------------------------------------------------------------------

const isSchedule = (u: unknown): u is Schedule.Schedule<unknown, unknown> => Schedule.isSchedule(u)
const isFunction = (u: unknown): u is (exit: Exit.Exit<unknown, unknown>) => Outcome => typeof u === "function"

/**
 * The options of a circuit breaker, as a Schema.
 *
 * @since 0.1.0
 * @category options
 */
export const Options = Schema.Struct({
  name: Name,
  trip: Schema.Union([TripPolicy, Schema.Array(TripPolicy).check(Schema.isMinLength(1))]),
  openFor: Schema.Union([
    Schema.declare(isSchedule, { expected: "a Schedule" }),
    DurationInput
  ]),
  halfOpen: Schema.optionalKey(Schema.Struct({
    probes: Schema.optionalKey(PositiveInt),
    successesToClose: Schema.optionalKey(PositiveInt),
    probeTimeout: Schema.optionalKey(DurationInput)
  })),
  classify: Schema.optionalKey(Schema.declare(isFunction, { expected: "a function from Exit to Outcome" })),
  keys: Schema.optionalKey(Schema.Struct({
    maxKeys: PositiveInt,
    idleTimeToLive: Schema.optionalKey(DurationInput),
    exposeKeys: Schema.optionalKey(Schema.Boolean)
  }))
})

/**
 * @since 0.1.0
 * @category options
 */
export interface Options {
  /** Appears in errors, stats and metric labels. */
  readonly name: string
  /** One policy or several (any of them trips the circuit). */
  readonly trip: TripPolicy | ReadonlyArray<TripPolicy>
  /**
   * How long the circuit stays open: a duration, or a Schedule whose n-th
   * delay is the open time of the n-th consecutive opening (cap it, e.g.
   * `Schedule.exponential("1 second").pipe(Schedule.modifyDelay(({ duration }) =>
   * Effect.succeed(Duration.min(duration, Duration.minutes(1)))))`).
   * The schedule's delays are computed once per opening count and reused.
   */
  readonly openFor: Duration.Input | Schedule.Schedule<unknown, unknown>
  readonly halfOpen?: {
    /** Concurrent probes allowed while half-open; default 1. */
    readonly probes?: number | undefined
    /** Successful probes needed to close; default 1. */
    readonly successesToClose?: number | undefined
    /** A probe running longer is lost and counts as a failure; default 1 minute. */
    readonly probeTimeout?: Duration.Input | undefined
  } | undefined
  /** What an exit means; default: success is Success, failure and defect are Failure, interruption is Ignored. */
  readonly classify?: ((exit: Exit.Exit<unknown, unknown>) => Outcome) | undefined
  /** One circuit per key (host, tenant): every call then passes `{ key }` to `guard`. */
  readonly keys?: {
    /** Most circuits alive at once. */
    readonly maxKeys: number
    /** A circuit idle this long (and not open) is reclaimed; default 10 minutes. */
    readonly idleTimeToLive?: Duration.Input | undefined
    /** Put keys in errors, state reads and events; default false. */
    readonly exposeKeys?: boolean | undefined
  } | undefined
}

/**
 * Trips fast and probes carefully: for dependencies where every failed call is
 * expensive (payments). Opens after 3 failures in a row or when half of the
 * last 10 calls failed; stays open 5 s, then 10, 20, ... up to 1 minute;
 * closes after 2 successful probes.
 *
 * @since 0.1.0
 * @category presets
 */
export const sensitive: Pick<Options, "trip" | "openFor" | "halfOpen"> = {
  trip: [consecutive(3), failureRate({ threshold: 0.5, minimumCalls: 10, window: 10 })],
  openFor: Schedule.exponential("5 seconds").pipe(
    Schedule.modifyDelay(({ duration }) => Effect.succeed(Duration.min(duration, Duration.minutes(1))))
  ),
  halfOpen: { probes: 1, successesToClose: 2, probeTimeout: "30 seconds" }
}

/**
 * Rides out blips: for dependencies with occasional errors that callers
 * tolerate (search, recommendations). Opens when 50% of the calls of the last
 * minute failed (at least 50 calls) or 20 failures in a row; stays open 15 s;
 * three concurrent probes, closes after 3 successes.
 *
 * @since 0.1.0
 * @category presets
 */
export const tolerant: Pick<Options, "trip" | "openFor" | "halfOpen"> = {
  trip: [consecutive(20), failureRate({ threshold: 0.5, minimumCalls: 50, window: "1 minute" })],
  openFor: "15 seconds",
  halfOpen: { probes: 3, successesToClose: 3, probeTimeout: "1 minute" }
}

// -----------------------------------------------------------------------------
// the breaker
// -----------------------------------------------------------------------------

/**
 * A running circuit breaker. Create one with {@link make} (scoped) or
 * {@link layer}.
 *
 * @since 0.1.0
 * @category models
 */
export interface CircuitBreaker extends Pipeable {
  readonly [TypeId]: typeof TypeId
  readonly name: string
  /** True when created with `keys`: calls must pass a key. */
  readonly keyed: boolean
  /** @internal */
  readonly impl: BreakerImpl
}

/**
 * A breaker, or a service key that resolves to one.
 *
 * @since 0.1.0
 * @category models
 */
export type CircuitBreakerOrKey<I = never> = CircuitBreaker | Context.Key<I, CircuitBreaker>

/**
 * A state change.
 *
 * @since 0.1.0
 * @category events
 */
export interface Transition {
  readonly _tag: "Transition"
  readonly name: string
  /** Only for keyed breakers with `exposeKeys: true`. */
  readonly key: string | undefined
  readonly from: State
  readonly to: State
  /** Clock time, epoch milliseconds. */
  readonly at: number
}

/**
 * What a breaker reports on its {@link events} stream.
 *
 * @since 0.1.0
 * @category events
 */
export type Event =
  | Transition
  | { readonly _tag: "Recorded"; readonly name: string; readonly outcome: Outcome }
  | { readonly _tag: "Rejected"; readonly name: string; readonly reason: CircuitOpen["reason"] }

class BreakerImpl {
  readonly counters = new internal.Counters()
  readonly single: internal.Circuit | undefined
  readonly circuits: Map<string, internal.Circuit> | undefined
  reclaimed = 0
  readonly name: string
  readonly policy: internal.Policy
  readonly classify: (exit: Exit.Exit<unknown, unknown>) => Outcome
  readonly maxKeys: number
  readonly idleTtlMs: number
  readonly exposeKeys: boolean
  readonly needsTime: boolean

  constructor(
    policy: internal.Policy,
    classify: (exit: Exit.Exit<unknown, unknown>) => Outcome,
    keys: { readonly maxKeys: number; readonly idleTtlMs: number; readonly exposeKeys: boolean } | undefined,
    now: number
  ) {
    this.name = policy.name
    this.policy = policy
    this.classify = classify
    this.maxKeys = keys?.maxKeys ?? 1
    this.idleTtlMs = keys?.idleTtlMs ?? Infinity
    this.exposeKeys = keys?.exposeKeys ?? false
    this.needsTime = policy.needsTimeWhenClosed
    if (keys === undefined) this.single = new internal.Circuit(policy, undefined, now)
    else this.circuits = new Map()
    this.singleTransition = this.single === undefined ? undefined : this.onTransition(this.single)
  }

  readonly onTransition = (circuit: internal.Circuit) => (from: State, to: State, at: number): void => {
    const counters = this.counters
    counters.transitions++
    if (to === "Open") counters.openings++
    if (counters.hub.active) {
      counters.hub.emit({ _tag: "Transition", name: this.name, key: this.exposeKeys ? circuit.key : undefined, from, to, at })
    }
  }

  private readonly singleTransition: ((from: State, to: State, at: number) => void) | undefined

  transitionsOf(circuit: internal.Circuit): (from: State, to: State, at: number) => void {
    return circuit === this.single ? this.singleTransition! : this.onTransition(circuit)
  }

  /** The circuit for a key, created on demand; LRU order is kept by re-insertion. */
  circuit(key: string, now: number): internal.Circuit {
    const circuits = this.circuits!
    const found = circuits.get(key)
    if (found !== undefined) {
      circuits.delete(key)
      circuits.set(key, found)
      found.lastActivity = now
      return found
    }
    this.reclaim(now)
    const circuit = new internal.Circuit(this.policy, key, now)
    circuits.set(key, circuit)
    return circuit
  }

  /**
   * A keyed call finished: the circuit becomes the most recently used, so that
   * the LRU order of the map is the order of last activity and reclaiming can
   * stop at the first circuit that is still fresh.
   */
  completed(circuit: internal.Circuit, now: number): void {
    circuit.running--
    circuit.lastActivity = now
    const circuits = this.circuits!
    if (circuit.key !== undefined && circuits.get(circuit.key) === circuit) {
      circuits.delete(circuit.key)
      circuits.set(circuit.key, circuit)
    }
  }

  /**
   * Reclaims circuits idle past the TTL (an Open circuit only once its open
   * time has passed), then, at `maxKeys`, the least recently used circuit
   * that has no probe running. Runs on the caller's fiber, O(reclaimed).
   */
  private reclaim(now: number): void {
    const circuits = this.circuits!
    for (const [key, circuit] of circuits) {
      if (!circuit.idle) continue
      if (now - circuit.lastActivity < this.idleTtlMs) break
      if (circuit.state === "Open" && now < circuit.openUntil) continue
      circuits.delete(key)
      this.reclaimed++
    }
    if (circuits.size < this.maxKeys) return
    for (const [key, circuit] of circuits) {
      if (circuit.idle) {
        circuits.delete(key)
        this.reclaimed++
        return
      }
    }
    // Every circuit has a probe running: evict the least recently used anyway;
    // its probes' late reports will find no circuit and change nothing.
    const oldest = circuits.keys().next().value
    if (oldest !== undefined) {
      circuits.delete(oldest)
      this.reclaimed++
    }
  }

  reject(circuit: internal.Circuit, code: number, now: number): Effect.Effect<never, CircuitOpen> {
    const reason: CircuitOpen["reason"] = code === internal.REJECT_OPEN
      ? "Open"
      : code === internal.REJECT_PROBES_BUSY
      ? "ProbesBusy"
      : "Isolated"
    this.counters.rejected[reason]++
    if (this.counters.hub.active) this.counters.hub.emit({ _tag: "Rejected", name: this.name, reason })
    const state = reason === "Open" ? "Open" : reason === "ProbesBusy" ? "HalfOpen" : "Isolated"
    return Effect.fail(
      internal.fastOpenError(
        this.name,
        this.exposeKeys ? circuit.key : undefined,
        reason,
        state,
        circuit.retryAfterMs(now)
      )
    )
  }

  /**
   * One call. Its finalizer is on the fiber's stack before `admit` runs, so
   * no interruption can fall between taking a permit (a half-open probe slot)
   * and registering the outcome that gives it back: no interruption mask, and
   * one finalizer for every exit. A circuit that is open with time to go
   * rejects before any of that: a rejection holds nothing.
   */
  run<A, E, R>(clock: Clock.Clock, circuit: internal.Circuit, self: Effect.Effect<A, E, R>): Effect.Effect<A, E | CircuitOpen, R> {
    if (circuit.state === "Open" || circuit.state === "Isolated") {
      const now = clock.currentTimeMillisUnsafe()
      if (circuit.state === "Isolated") return this.reject(circuit, internal.REJECT_ISOLATED, now)
      if (now < circuit.openUntil) return this.reject(circuit, internal.REJECT_OPEN, now)
    }
    const onTransition = this.transitionsOf(circuit)
    const keyed = this.circuits !== undefined
    let permit = internal.PASS
    let startedAt = 0
    return Effect.onExitPrimitive(
      Effect.suspend((): Effect.Effect<A, E | CircuitOpen, R> => {
        const admitted = circuit.admit(clock, onTransition)
        if (admitted === internal.PASS) return self
        if (admitted < 0) return this.reject(circuit, admitted, clock.currentTimeMillisUnsafe())
        permit = admitted
        if (this.needsTime || circuit.state === "HalfOpen") startedAt = clock.currentTimeMillisUnsafe()
        if (keyed) circuit.running++
        return self
      }),
      (exit) => {
        if (permit < 0) return undefined
        if (keyed) this.completed(circuit, clock.currentTimeMillisUnsafe())
        const outcome = this.classify(exit)
        const counters = this.counters
        if (outcome === "Success") counters.successes++
        else if (outcome === "Failure") counters.failures++
        else counters.ignored++
        circuit.record(permit, outcome, startedAt, clock, onTransition)
        if (counters.hub.active) counters.hub.emit({ _tag: "Recorded", name: this.name, outcome })
        return undefined
      }
    )
  }
}

const BreakerProto = {
  [TypeId]: TypeId,
  pipe() {
    return pipeArguments(this, arguments)
  },
  toJSON(this: CircuitBreaker) {
    return { _id: "CircuitBreaker", name: this.name }
  }
}

/**
 * @since 0.1.0
 * @category guards
 */
export const isCircuitBreaker = (u: unknown): u is CircuitBreaker => typeof u === "object" && u !== null && TypeId in u

const decode = decodeOptions("CircuitBreaker", Options)

const toSpec = (policy: typeof TripPolicy.Type): internal.TripSpec => {
  const window = (w: number | Duration.Duration) =>
    typeof w === "number"
      ? { windowCalls: w, windowMs: undefined }
      : { windowCalls: undefined, windowMs: Duration.toMillis(w) }
  switch (policy._tag) {
    case "Consecutive":
      return { _tag: "Consecutive", failures: policy.failures }
    case "FailureRate":
      return {
        _tag: "FailureRate",
        threshold: policy.threshold,
        minimumCalls: policy.minimumCalls,
        ...window(policy.window)
      }
    case "SlowCalls":
      return {
        _tag: "SlowCalls",
        slowerThanMs: Duration.toMillis(policy.slowerThan),
        threshold: policy.threshold,
        minimumCalls: policy.minimumCalls,
        ...window(policy.window)
      }
  }
}

/**
 * The open time of the n-th consecutive opening. A Schedule is stepped once
 * per opening count, in the creating fiber's context, and its delays cached;
 * once the schedule ends its last delay is reused.
 */
const openTimes = (
  openFor: Duration.Duration | Schedule.Schedule<unknown, unknown>,
  context: Context.Context<never>
): ((opening: number, now: number) => number) => {
  if (Duration.isDuration(openFor)) {
    const ms = Duration.toMillis(openFor)
    return () => ms
  }
  const delays: Array<number> = []
  let step: ((now: number, input: unknown) => Effect.Effect<[unknown, Duration.Duration], unknown>) | undefined
  let ended = false
  return (opening, now) => {
    while (delays.length < opening && !ended) {
      step ??= Effect.runSync(Effect.provideContext(Schedule.toStep(openFor) as any, context)) as any
      const exit = Effect.runSyncExit(Effect.provideContext(step!(now, delays.length), context))
      if (Exit.isSuccess(exit)) delays.push(Duration.toMillis(exit.value[1]))
      else ended = true
    }
    if (delays.length === 0) return 0
    return delays[Math.min(opening, delays.length) - 1]
  }
}

/**
 * Creates a circuit breaker that lives as long as the current scope. Its
 * pull-based metrics (`bulwark.circuitbreaker.*`) are registered in the
 * creating fiber's `MetricRegistry` and removed when the scope closes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<CircuitBreaker, InvalidOptions, Scope.Scope> =>
  Effect.flatMap(decode(options), (decoded) =>
    Effect.withFiber((fiber) => {
      const trips = (Array.isArray(decoded.trip) ? decoded.trip : [decoded.trip]).map(toSpec)
      const policy: internal.Policy = {
        name: decoded.name,
        trips,
        openForMs: openTimes(decoded.openFor as Duration.Duration | Schedule.Schedule<unknown, unknown>, fiber.context),
        probes: decoded.halfOpen?.probes ?? 1,
        successesToClose: decoded.halfOpen?.successesToClose ?? 1,
        probeTimeoutMs: decoded.halfOpen?.probeTimeout === undefined
          ? 60_000
          : Duration.toMillis(decoded.halfOpen.probeTimeout),
        needsTimeWhenClosed: trips.some((t) => t._tag !== "Consecutive" && (t._tag === "SlowCalls" || t.windowMs !== undefined)),
        reclaimable: decoded.keys !== undefined
      }
      const now = fiber.getRef(Clock.Clock).currentTimeMillisUnsafe()
      const keys = decoded.keys === undefined ? undefined : {
        maxKeys: decoded.keys.maxKeys,
        idleTtlMs: decoded.keys.idleTimeToLive === undefined ? 600_000 : Duration.toMillis(decoded.keys.idleTimeToLive),
        exposeKeys: decoded.keys.exposeKeys ?? false
      }
      const impl = new BreakerImpl(
        policy,
        (decoded.classify as ((exit: Exit.Exit<unknown, unknown>) => Outcome) | undefined) ?? internal.defaultClassify,
        keys,
        now
      )
      const registrations = internal.registerMetrics(
        fiber.context,
        impl.name,
        impl.counters,
        impl.single === undefined ? undefined : (now) => {
          // A lost probe is noticed lazily: read as a state read would.
          impl.single!.refresh(now, impl.transitionsOf(impl.single!))
          return impl.single!.state
        },
        () => impl.circuits?.size ?? 1
      )
      const self: CircuitBreaker = Object.assign(Object.create(BreakerProto), {
        name: impl.name,
        keyed: keys !== undefined,
        impl
      })
      return Effect.as(
        Effect.addFinalizer(() =>
          Effect.sync(() => {
            for (const registration of registrations) registration.remove()
            impl.counters.hub.end()
          })
        ),
        self
      )
    }))

/**
 * Builds a circuit breaker as a service.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <I>(key: Context.Key<I, CircuitBreaker>, options: Options): Layer.Layer<I, InvalidOptions> =>
  Layer.effect(key, make(options))

/**
 * Per-call options of {@link guard}.
 *
 * @since 0.1.0
 * @category options
 */
export interface GuardOptions {
  /** The circuit's key; required by keyed breakers, refused by plain ones. */
  readonly key?: string | undefined
}

const withBreaker = <I, A, E, R>(
  breaker: CircuitBreakerOrKey<I>,
  f: (breaker: CircuitBreaker) => Effect.Effect<A, E, R>
): Effect.Effect<A, E, R | I> => isCircuitBreaker(breaker) ? f(breaker) : Effect.flatMap(breaker, f)

const keyMismatch = (breaker: CircuitBreaker, key: string | undefined): Effect.Effect<never> | undefined => {
  if (breaker.keyed && key === undefined) {
    return Effect.die(new Error(`CircuitBreaker.guard: breaker "${breaker.name}" has keys, the option "key" is required`))
  }
  if (!breaker.keyed && key !== undefined) {
    return Effect.die(
      new Error(`CircuitBreaker.guard: breaker "${breaker.name}" has no keys, the option "key" must be omitted`)
    )
  }
  return undefined
}

const circuitOf = (impl: BreakerImpl, key: string | undefined, now: number): internal.Circuit =>
  impl.single ?? impl.circuit(key!, now)

const compileGuard = <I>(
  breaker: CircuitBreakerOrKey<I>,
  options: GuardOptions | undefined
): (<A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | CircuitOpen, R | I>) => {
  const key = options?.key
  const admit = <A, E, R>(resolved: CircuitBreaker, self: Effect.Effect<A, E, R>) => {
    const mismatch = keyMismatch(resolved, key)
    if (mismatch !== undefined) return mismatch
    const impl = resolved.impl
    return Effect.withFiber((fiber) => {
      const clock = fiber.getRef(Clock.Clock)
      const circuit = impl.single ?? impl.circuit(key!, clock.currentTimeMillisUnsafe())
      return impl.run(clock, circuit, self)
    })
  }
  if (isCircuitBreaker(breaker)) return (self) => admit(breaker, self)
  return (self) => Effect.flatMap(breaker, (resolved) => admit(resolved, self))
}

/**
 * Runs an effect through the breaker: rejected with `CircuitOpen` while the
 * circuit is open, half-open with every probe slot taken, or isolated; its
 * outcome recorded otherwise.
 *
 * **Example** (Guarding calls)
 *
 * ```ts
 * import { CircuitBreaker } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * declare const payments: CircuitBreaker.CircuitBreaker
 * declare const perHost: CircuitBreaker.CircuitBreaker // created with `keys`
 * declare const charge: Effect.Effect<string>
 *
 * charge.pipe(CircuitBreaker.guard(payments))                     // E | CircuitOpen
 * charge.pipe(CircuitBreaker.guard(perHost, { key: "eu-1.psp" }))  // one circuit per host
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const guard: {
  <I = never>(
    breaker: CircuitBreakerOrKey<I>,
    options?: GuardOptions
  ): <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | CircuitOpen, R | I>
  <A, E, R, I = never>(
    self: Effect.Effect<A, E, R>,
    breaker: CircuitBreakerOrKey<I>,
    options?: GuardOptions
  ): Effect.Effect<A, E | CircuitOpen, R | I>
} = function(this: unknown) {
  if (arguments.length >= 2 && (isCircuitBreaker(arguments[1]) || Context.isKey(arguments[1]))) {
    return compileGuard(arguments[1], arguments[2])(arguments[0])
  }
  return compileGuard(arguments[0], arguments[1])
} as any

/**
 * The state of a circuit as read now (an Open circuit whose open time has
 * passed reads as Open until a call makes it half-open).
 *
 * @since 0.1.0
 * @category models
 */
export interface StateInfo {
  readonly state: State
  /** Time until a probe may run (Open), infinite when Isolated, zero otherwise. */
  readonly retryAfter: Duration.Duration
  /** Openings since the backoff last reset. */
  readonly consecutiveOpenings: number
  /** Probes running (HalfOpen). */
  readonly probing: number
}

const readCircuit = <I, A>(
  breaker: CircuitBreakerOrKey<I>,
  key: string | undefined,
  f: (impl: BreakerImpl, circuit: internal.Circuit | undefined, now: number) => A
): Effect.Effect<A, never, I> =>
  withBreaker(breaker, (b) =>
    Effect.withFiber((fiber) => {
      const mismatch = keyMismatch(b, key)
      if (mismatch !== undefined) return mismatch
      const now = fiber.getRef(Clock.Clock).currentTimeMillisUnsafe()
      const circuit = b.impl.single ?? b.impl.circuits!.get(key!)
      return Effect.succeed(f(b.impl, circuit, now))
    }))

/**
 * Reads the state of the breaker's circuit (or of `key`'s circuit).
 *
 * @since 0.1.0
 * @category observability
 */
export const state = <I = never>(breaker: CircuitBreakerOrKey<I>, key?: string): Effect.Effect<StateInfo, never, I> =>
  readCircuit(breaker, key, (impl, circuit, now) => {
    if (circuit === undefined) {
      return { state: "Closed", retryAfter: Duration.zero, consecutiveOpenings: 0, probing: 0 }
    }
    circuit.refresh(now, impl.transitionsOf(circuit))
    const retryAfter = circuit.retryAfterMs(now)
    return {
      state: circuit.state,
      retryAfter: retryAfter === Infinity ? Duration.infinity : Duration.millis(retryAfter),
      consecutiveOpenings: circuit.consecutiveOpenings,
      probing: circuit.probes.length
    }
  })

const force = (to: "Isolated" | "Disabled" | "Closed") =>
<I = never>(breaker: CircuitBreakerOrKey<I>, key?: string): Effect.Effect<void, never, I> =>
  withBreaker(breaker, (b) =>
    Effect.withFiber((fiber) => {
      const mismatch = keyMismatch(b, key)
      if (mismatch !== undefined) return mismatch
      const now = fiber.getRef(Clock.Clock).currentTimeMillisUnsafe()
      const circuit = circuitOf(b.impl, key, now)
      const from = circuit.force(to, now)
      if (from !== circuit.state) b.impl.transitionsOf(circuit)(from, circuit.state, now)
      return Effect.void
    }))

/**
 * Rejects every call (reason `Isolated`) until {@link reset}: for planned
 * maintenance or an operator's kill switch.
 *
 * @since 0.1.0
 * @category control
 */
export const isolate: <I = never>(breaker: CircuitBreakerOrKey<I>, key?: string) => Effect.Effect<void, never, I> =
  force("Isolated")

/**
 * Lets every call through and records nothing until {@link reset}.
 *
 * @since 0.1.0
 * @category control
 */
export const disable: <I = never>(breaker: CircuitBreakerOrKey<I>, key?: string) => Effect.Effect<void, never, I> =
  force("Disabled")

/**
 * Closes the circuit and clears its counters and backoff, whatever its state.
 *
 * @since 0.1.0
 * @category control
 */
export const reset: <I = never>(breaker: CircuitBreakerOrKey<I>, key?: string) => Effect.Effect<void, never, I> =
  force("Closed")

/**
 * What happens in the breaker from the moment the stream is consumed:
 * transitions, recorded outcomes and rejections. Free while nobody listens;
 * a slow consumer loses the oldest events beyond `bufferSize` (default 4096).
 *
 * @since 0.1.0
 * @category observability
 */
export const events = <I = never>(
  breaker: CircuitBreakerOrKey<I>,
  options?: { readonly bufferSize?: number | undefined }
): Stream.Stream<Event, never, I> =>
  isCircuitBreaker(breaker)
    ? breaker.impl.counters.hub.stream(options?.bufferSize ?? 4096)
    : Stream.unwrap(Effect.map(breaker, (b) => b.impl.counters.hub.stream(options?.bufferSize ?? 4096)))

/**
 * The state transitions only.
 *
 * **Example** (Logging transitions)
 *
 * ```ts
 * import { CircuitBreaker } from "@bulwark/core"
 * import { Effect, Stream } from "effect"
 *
 * declare const payments: CircuitBreaker.CircuitBreaker
 * const watch = CircuitBreaker.transitions(payments).pipe(
 *   Stream.runForEach((t) => Effect.logWarning(`${t.name}: ${t.from} -> ${t.to}`))
 * )
 * ```
 *
 * @since 0.1.0
 * @category observability
 */
export const transitions = <I = never>(
  breaker: CircuitBreakerOrKey<I>,
  options?: { readonly bufferSize?: number | undefined }
): Stream.Stream<Transition, never, I> =>
  events(breaker, options).pipe(Stream.filter((event): event is Transition => event._tag === "Transition"))

/**
 * Cumulative counters of a breaker (all its circuits).
 *
 * @since 0.1.0
 * @category models
 */
export interface Snapshot {
  readonly name: string
  /** The state of the single circuit; `undefined` for keyed breakers. */
  readonly state: State | undefined
  readonly successes: number
  readonly failures: number
  readonly ignored: number
  readonly rejected: Readonly<Record<CircuitOpen["reason"], number>>
  readonly transitions: number
  readonly openings: number
  /** Live circuits (1 for a plain breaker). */
  readonly circuits: number
  /** Keyed circuits reclaimed so far. */
  readonly reclaimed: number
}

/**
 * @since 0.1.0
 * @category observability
 */
export const stats = <I = never>(breaker: CircuitBreakerOrKey<I>): Effect.Effect<Snapshot, never, I> =>
  withBreaker(breaker, ({ impl }) =>
    Effect.withFiber((fiber) => {
      const now = fiber.getRef(Clock.Clock).currentTimeMillisUnsafe()
      if (impl.single !== undefined) impl.single.refresh(now, impl.transitionsOf(impl.single))
      const c = impl.counters
      return Effect.succeed({
        name: impl.name,
        state: impl.single?.state,
        successes: c.successes,
        failures: c.failures,
        ignored: c.ignored,
        rejected: { ...c.rejected },
        transitions: c.transitions,
        openings: c.openings,
        circuits: impl.single !== undefined ? 1 : impl.circuits!.size,
        reclaimed: impl.reclaimed
      })
    }))

/**
 * The keys of the live circuits of a keyed breaker created with
 * `exposeKeys: true` (empty otherwise), least recently used first.
 *
 * @since 0.1.0
 * @category observability
 */
export const keys = <I = never>(breaker: CircuitBreakerOrKey<I>): Effect.Effect<ReadonlyArray<string>, never, I> =>
  withBreaker(breaker, ({ impl }) =>
    Effect.sync(() => impl.circuits !== undefined && impl.exposeKeys ? Array.from(impl.circuits.keys()) : []))
