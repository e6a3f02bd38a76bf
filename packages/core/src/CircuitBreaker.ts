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
 * - Circuits live in a `CircuitBreakerStore` (default: an in-memory store of
 *   the breaker's own). Every decision is one store call, so a remote store
 *   can share circuits between processes (`RedisCircuitBreakerStore` of
 *   `@bulwark/redis`); see `CircuitBreakerStore`. When a shared store cannot
 *   decide, `onStoreError` does: `"local"` (default, an in-memory breaker of
 *   the same policy), `"fail-open"` or `"fail-closed"` (reason
 *   `StoreUnavailable`).
 *
 * **Gotchas**
 *
 * - The breaker never waits. Put retries *outside* it and let them honour
 *   `CircuitOpen.retryAfter` (Bulwark's `Retry` does); put the call's own
 *   timeout *inside* it so it sees one outcome per call.
 * - Admission, recording and rejection are synchronous and O(1) (a sliding
 *   count window is a ring, a time window ten buckets): no fiber, no lock,
 *   with the in-memory store. A store with only `Effect` operations costs
 *   one `admit` and one `record` call per guarded call.
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
import * as Fiber from "effect/Fiber"
import { type Pipeable, pipeArguments } from "effect/Pipeable"
import * as Stream from "effect/Stream"
import type * as Tracer from "effect/Tracer"
import * as Store from "./CircuitBreakerStore.ts"
import * as internal from "./internal/circuitBreaker.ts"
import { MemoryStore as CircuitMemory, needsTimeWhenClosed } from "./internal/circuitBreakerStore.ts"
import { StoreFallback } from "./internal/storeFallback.ts"
import { decodeOptions, DurationInput, DurationText, Name, PositiveInt } from "./internal/options.ts"
import * as tracing from "./internal/tracing.ts"
import type { InvalidOptions } from "./InvalidOptions.ts"
import * as SharedStore from "./Store.ts"

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
 * - reason `StoreUnavailable`: (shared store, `onStoreError:
 *   "fail-closed"`) the store could not decide, so the state is `Unknown`;
 *   `retryAfter` is the time until the breaker asks the store again (at most
 *   one second).
 *
 * @since 0.1.0
 * @category errors
 */
export class CircuitOpen extends Schema.TaggedError<CircuitOpen>()("CircuitOpen", {
  name: Schema.String,
  /** The circuit's key, only for keyed breakers created with `exposeKeys: true`. */
  key: Schema.optionalKey(Schema.String),
  reason: Schema.Literals(["Open", "ProbesBusy", "Isolated", "StoreUnavailable"]),
  state: Schema.Literals(["Open", "HalfOpen", "Isolated", "Unknown"]),
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
  halfOpen: Schema.optional(Schema.Struct({
    probes: Schema.optional(PositiveInt),
    successesToClose: Schema.optional(PositiveInt),
    probeTimeout: Schema.optional(DurationInput),
    probeLease: Schema.optional(DurationInput.check(
      Schema.makeFilter((d: Duration.Duration) =>
        Duration.toMillis(d) >= 1 ? undefined : `Expected a duration of at least 1 millisecond, got ${Duration.format(d)}`
      )
    ))
  })),
  classify: Schema.optional(Schema.declare(isFunction, { expected: "a function from Exit to Outcome" })),
  keys: Schema.optional(Schema.Struct({
    maxKeys: PositiveInt,
    idleTimeToLive: Schema.optional(DurationInput),
    exposeKeys: Schema.optional(Schema.Boolean)
  })),
  store: Schema.optional(Schema.declare(Store.isCircuitBreakerStore, {
    expected: "a CircuitBreakerStore (CircuitBreakerStore.memory or CircuitBreakerStore.make)"
  })),
  onStoreError: Schema.optional(SharedStore.OnStoreError)
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
   * The schedule's delays are computed once, when the breaker is made (for at
   * most 64 openings; later ones reuse the last delay), so that a store
   * receives them as plain numbers.
   */
  readonly openFor: Duration.Input | Schedule.Schedule<unknown, unknown>
  readonly halfOpen?: {
    /** Concurrent probes allowed while half-open; default 1. */
    readonly probes?: number | undefined
    /** Successful probes needed to close; default 1. */
    readonly successesToClose?: number | undefined
    /** A probe running longer is lost and counts as a failure; default 1 minute. */
    readonly probeTimeout?: Duration.Input | undefined
    /**
     * With a shared store (Redis, SQLite): a probe holds a lease of this
     * long, renewed every third of it while it runs, so that a probe whose
     * process died is lost once its lease runs out rather than after
     * `probeTimeout`. Default 10 seconds (at most `probeTimeout`). In-process
     * stores need none: a probe cannot outlive its process there.
     */
    readonly probeLease?: Duration.Input | undefined
  } | undefined
  /** What an exit means; default: success is Success, failure and defect are Failure, interruption is Ignored. */
  readonly classify?: ((exit: Exit.Exit<unknown, unknown>) => Outcome) | undefined
  /** One circuit per key (host, tenant): every call then passes `{ key }` to `guard`. */
  readonly keys?: {
    /** Most circuits alive at once (in the breaker's own store). */
    readonly maxKeys: number
    /** A circuit idle this long (and not open) is reclaimed; default 10 minutes (in the breaker's own store). */
    readonly idleTimeToLive?: Duration.Input | undefined
    /** Put keys in errors, state reads and events; default false. */
    readonly exposeKeys?: boolean | undefined
  } | undefined
  /**
   * Where the circuits live; default a fresh `CircuitBreakerStore.memory()`
   * owned by this breaker (bounded by `keys.maxKeys` and
   * `keys.idleTimeToLive`). A store given here is bounded by its own options
   * and keys the circuits `name` (plain) or `name:key` (keyed).
   */
  readonly store?: Store.CircuitBreakerStore | undefined
  /**
   * What a call does when a shared `store` cannot decide (unreachable, no
   * answer within its timeout, an error reply); an in-process store never
   * fails. Default: the one the store declares (the SQLite stores say
   * `"fail-open"`), else `"local"`.
   *
   * - `"local"`: an in-memory breaker of the same policy (this process's
   *   own circuits, bounded like the breaker's own store) decides until the
   *   store answers again: a failing dependency still trips it.
   * - `"fail-open"`: the call runs and nothing is recorded.
   * - `"fail-closed"`: the call fails with `CircuitOpen`, reason
   *   `StoreUnavailable`, state `Unknown`.
   *
   * While the store is down (`Unavailable` or `Timeout`), the breaker asks
   * it again once per second and the policy decides every other call at
   * once. The report of a call admitted by the store is dropped while the
   * store is down: a probe's lease then runs out, as a crashed caller's
   * would (`halfOpen.probeTimeout`).
   */
  readonly onStoreError?: SharedStore.OnStoreError | undefined
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
  /** Clock time, epoch milliseconds (the store's clock for a remote transition). */
  readonly at: number
  /**
   * `true` when another process caused it, reported by a shared store that
   * can tell (`RedisCircuitBreakerStore`); absent for this process's own.
   * Remote transitions are not counted in this process's metrics.
   */
  readonly remote?: true | undefined
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
  | StoreFailed
  | { readonly _tag: "StoreRecovered"; readonly name: string }

/**
 * An operation of the shared store failed; `onStoreError` decided instead.
 *
 * @since 0.1.0
 * @category events
 */
export interface StoreFailed {
  readonly _tag: "StoreFailed"
  readonly name: string
  /** Only for keyed breakers with `exposeKeys: true`. */
  readonly key: string | undefined
  /** `admit`, `record`, `read` or `force`. */
  readonly operation: string
  readonly reason: SharedStore.Reason
  /** What the store or its client said. */
  readonly message: string
  readonly onStoreError: SharedStore.OnStoreError
}

const stateOfReason: Record<CircuitOpen["reason"], CircuitOpen["state"]> = {
  Open: "Open",
  ProbesBusy: "HalfOpen",
  Isolated: "Isolated",
  StoreUnavailable: "Unknown"
}

const stateOfStoreReason: Record<Store.Reason, State> = {
  Open: "Open",
  ProbesBusy: "HalfOpen",
  Isolated: "Isolated"
}

const reasonOfCode = (code: number): CircuitOpen["reason"] =>
  code === Store.REJECT_OPEN ? "Open" : code === Store.REJECT_PROBES_BUSY ? "ProbesBusy" : "Isolated"

class BreakerImpl {
  readonly counters = new internal.Counters()
  readonly name: string
  readonly policy: Store.Policy
  /** The policy of the in-memory stand-in (`onStoreError: "local"`): no leases, nobody renews them there. */
  readonly standInPolicy: Store.Policy
  readonly classify: (exit: Exit.Exit<unknown, unknown>) => Outcome
  readonly keyed: boolean
  readonly exposeKeys: boolean
  /** Recording in Closed state needs the call's start time (a time window or a slow-call policy). */
  readonly needsTime: boolean
  readonly store: Store.CircuitBreakerStore
  /** The store's synchronous side, when its circuits live in this process: the hot path calls it directly. */
  readonly local: Store.InProcess | undefined
  /** The breaker's own store keys circuits by the caller's key; a store given in the options by `name:key`. */
  readonly ownStore: boolean
  private readonly prefix: string
  /** The plain breaker's circuit in an in-process store, looked up once (again only if the store dropped it). */
  single: Store.LocalCircuit | undefined
  /** The state last seen through a store without `inProcess`, for the state gauge. */
  lastState: State = "Closed"
  /** Present for a shared store: what its failures mean, and what they cost so far. */
  readonly fallback: StoreFallback<CircuitMemory> | undefined

  constructor(
    name: string,
    policy: Store.Policy,
    classify: (exit: Exit.Exit<unknown, unknown>) => Outcome,
    keys: { readonly exposeKeys: boolean; readonly maxKeys: number; readonly idleTimeToLive: Duration.Duration } | undefined,
    store: Store.CircuitBreakerStore,
    ownStore: boolean,
    now: number,
    onStoreError: SharedStore.OnStoreError
  ) {
    this.name = name
    this.policy = policy
    this.standInPolicy = policy.probeLeaseMs === undefined ? policy : { ...policy, probeLeaseMs: undefined }
    this.classify = classify
    this.keyed = keys !== undefined
    this.exposeKeys = keys?.exposeKeys ?? false
    this.needsTime = needsTimeWhenClosed(policy)
    this.store = store
    this.local = store.inProcess
    this.ownStore = ownStore
    this.prefix = `${name}:`
    if (!this.keyed && this.local !== undefined) this.single = this.local.circuit(name, policy, now)
    // The stand-in of "local" is bounded like the breaker's own store would be.
    this.fallback = this.local !== undefined ? undefined : new StoreFallback(onStoreError, () =>
      keys === undefined
        ? new CircuitMemory(1, Infinity)
        : new CircuitMemory(keys.maxKeys, Duration.toMillis(keys.idleTimeToLive)))
  }

  /** The circuit's key in the store. */
  storeKey(key: string | undefined): string {
    return key === undefined ? this.name : this.ownStore ? key : this.prefix + key
  }

  /** Counts a transition, and reports it to listeners. */
  readonly onTransition = (key: string | undefined) => (from: State, to: State, at: number): void => {
    const counters = this.counters
    counters.transitions++
    if (to === "Open") counters.openings++
    this.lastState = to
    if (counters.hub.active) {
      counters.hub.emit({ _tag: "Transition", name: this.name, key: this.exposeKeys ? key : undefined, from, to, at })
    }
  }

  /**
   * A transition another process caused, told by the store: reported, not
   * counted (that process counts it), and the state this breaker last saw.
   */
  readonly onRemoteTransition = (transition: Store.RemoteTransition): void => {
    let key: string | undefined
    if (transition.key === this.name && !this.keyed) key = undefined
    else if (this.keyed && transition.key.startsWith(this.prefix)) key = transition.key.slice(this.prefix.length)
    else return
    if (key === undefined) this.lastState = transition.to
    const hub = this.counters.hub
    if (hub.active) {
      hub.emit({
        _tag: "Transition",
        name: this.name,
        key: this.exposeKeys ? key : undefined,
        from: transition.from,
        to: transition.to,
        at: transition.at,
        remote: true
      })
    }
  }

  /** Transitions of circuits whose key is not shown (plain breakers, keys not exposed). */
  readonly hiddenTransition = this.onTransition(undefined)

  transitionsOf(key: string | undefined): (from: State, to: State, at: number) => void {
    return key === undefined || !this.exposeKeys ? this.hiddenTransition : this.onTransition(key)
  }

  observe(transition: Store.Transition | undefined, key: string | undefined): void {
    if (transition !== undefined) this.transitionsOf(key)(transition.from, transition.to, transition.at)
  }

  /** The in-process circuit of a call, created on demand and marked as used. */
  circuitFor(key: string | undefined, now: number): Store.LocalCircuit {
    if (key === undefined) {
      const single = this.single
      if (single !== undefined && !single.dropped) return single
      return this.single = this.local!.circuit(this.name, this.policy, now)
    }
    return this.local!.circuit(this.storeKey(key), this.policy, now)
  }

  /** The in-process circuit of a key if it exists, without creating it or marking it used. */
  findCircuit(key: string | undefined): Store.LocalCircuit | undefined {
    if (key === undefined && this.single !== undefined && !this.single.dropped) return this.single
    return this.local!.find(this.storeKey(key))
  }

  /** Keys of the live circuits, least recently used first (the caller's keys). */
  liveKeys(): ReadonlyArray<string> {
    const local = this.local
    if (local === undefined || !this.keyed) return []
    if (this.ownStore) return Array.from(local.keys())
    const prefix = this.prefix
    return local.keys().filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length))
  }

  /** Live circuits: 1 for a plain breaker; for a keyed one, those an in-process store holds. */
  circuitCount(): number {
    if (!this.keyed) return 1
    if (this.local === undefined) return 0
    return this.ownStore ? this.local.size() : this.liveKeys().length
  }

  reject(
    fiber: Fiber.Fiber<unknown, unknown>,
    key: string | undefined,
    reason: CircuitOpen["reason"],
    retryAfterMs: number
  ): Effect.Effect<never, CircuitOpen> {
    this.counters.rejected[reason]++
    if (this.counters.hub.active) this.counters.hub.emit({ _tag: "Rejected", name: this.name, reason })
    // Out of line: a bigger `reject` would no longer be inlined into the paths that call it.
    if (fiber.cache.span !== undefined) this.traceRejection(fiber, key, reason, retryAfterMs)
    return Effect.fail(
      internal.fastOpenError(this.name, this.exposeKeys ? key : undefined, reason, stateOfReason[reason], retryAfterMs)
    )
  }

  /** The rejected call's current span (if traced) gets the state and a `rejected` event. */
  traceRejection(
    fiber: Fiber.Fiber<unknown, unknown>,
    key: string | undefined,
    reason: CircuitOpen["reason"],
    retryAfterMs: number
  ): void {
    const span = tracing.spanOf(fiber)
    if (span === undefined) return
    const state = stateOfReason[reason]
    this.annotateState(span, key, state)
    const attributes: tracing.Attributes = {
      "bulwark.name": this.name,
      "bulwark.circuitbreaker.reason": reason,
      "bulwark.circuitbreaker.state": state
    }
    if (retryAfterMs !== Infinity) attributes["bulwark.circuitbreaker.retry_after_ms"] = retryAfterMs
    if (key !== undefined && this.exposeKeys) attributes["bulwark.circuitbreaker.key"] = key
    tracing.event(fiber, span, "bulwark.circuitbreaker.rejected", attributes)
  }

  /**
   * The state a traced call met, on the caller's span. The attributes are
   * namespaced by primitive (not `bulwark.name`): a bulkhead or a retry may
   * annotate the same span.
   */
  annotateState(span: Tracer.Span, key: string | undefined, state: State | "Unknown"): void {
    span.attribute("bulwark.circuitbreaker.name", this.name)
    span.attribute("bulwark.circuitbreaker.state", state)
    if (key !== undefined && this.exposeKeys) span.attribute("bulwark.circuitbreaker.key", key)
  }

  /** A transition caused by a traced call (its admission or its outcome), as an event on its span. */
  traceTransition(
    fiber: Fiber.Fiber<unknown, unknown>,
    span: Tracer.Span,
    key: string | undefined,
    from: State,
    to: State
  ): void {
    const attributes: tracing.Attributes = {
      "bulwark.name": this.name,
      "bulwark.circuitbreaker.from": from,
      "bulwark.circuitbreaker.to": to
    }
    if (key !== undefined && this.exposeKeys) attributes["bulwark.circuitbreaker.key"] = key
    tracing.event(fiber, span, "bulwark.circuitbreaker.transition", attributes)
  }

  /** `onTransition`, also reporting each transition on a traced call's span. */
  tracedTransitions(
    fiber: Fiber.Fiber<unknown, unknown>,
    span: Tracer.Span,
    key: string | undefined,
    onTransition: (from: State, to: State, at: number) => void
  ): (from: State, to: State, at: number) => void {
    return (from, to, at) => {
      onTransition(from, to, at)
      this.traceTransition(fiber, span, key, from, to)
    }
  }

  private count(outcome: Outcome): void {
    const counters = this.counters
    if (outcome === "Success") counters.successes++
    else if (outcome === "Failure") counters.failures++
    else counters.ignored++
  }

  /**
   * One call on an in-process circuit. Its finalizer is on the fiber's stack
   * before `admit` runs, so no interruption can fall between taking a permit
   * (a half-open probe slot) and registering the outcome that gives it back:
   * no interruption mask, and one finalizer for every exit. A circuit that
   * is open with time to go rejects before any of that: a rejection holds
   * nothing.
   */
  run<A, E, R>(
    fiber: Fiber.Fiber<unknown, unknown>,
    key: string | undefined,
    self: Effect.Effect<A, E, R>
  ): Effect.Effect<A, E | CircuitOpen, R> {
    // Time windows and slow-call policies read the clock twice per call: look it up once.
    const clock: Store.TimeSource = this.needsTime ? fiber.getRef(Clock.Clock) : currentClock
    const single = this.single
    const circuit = single !== undefined && !single.dropped ? single : this.circuitFor(key, clock.currentTimeMillisUnsafe())
    if (circuit.state === "Open" || circuit.state === "Isolated") {
      // A rejection holds nothing: decided before any finalizer is needed.
      const now = clock.currentTimeMillisUnsafe()
      if (circuit.state === "Isolated") return this.reject(fiber, key, "Isolated", circuit.retryAfterMs(now))
      if (now < circuit.openUntil) return this.reject(fiber, key, "Open", circuit.retryAfterMs(now))
    }
    let onTransition = key === undefined ? this.hiddenTransition : this.transitionsOf(key)
    // Untraced (the usual case) this is one property read. The traced variant of
    // `onTransition` is made elsewhere: a closure made here would cost every call.
    let span: Tracer.Span | undefined
    if (fiber.cache.span !== undefined) {
      span = tracing.spanOf(fiber)
      if (span !== undefined) onTransition = this.tracedTransitions(fiber, span, key, onTransition)
    }
    let permit = Store.PASS as number
    let startedAt = 0
    return Effect.onExitPrimitive(
      Effect.suspend((): Effect.Effect<A, E | CircuitOpen, R> => {
        const admitted = circuit.admit(clock, onTransition)
        if (admitted === Store.PASS) {
          if (span !== undefined) this.annotateState(span, key, "Disabled")
          return self
        }
        if (admitted < 0) {
          return this.reject(fiber, key, reasonOfCode(admitted), circuit.retryAfterMs(clock.currentTimeMillisUnsafe()))
        }
        if (span !== undefined) this.annotateState(span, key, circuit.state)
        permit = admitted
        if (this.needsTime || circuit.state === "HalfOpen") startedAt = clock.currentTimeMillisUnsafe()
        return self
      }),
      (exit) => {
        if (permit < 0) return undefined
        const outcome = this.classify(exit)
        this.count(outcome)
        circuit.record(permit, outcome, startedAt, clock, onTransition)
        if (this.counters.hub.active) this.counters.hub.emit({ _tag: "Recorded", name: this.name, outcome })
        return undefined
      }
    )
  }


  /**
   * Runs a probe while renewing its lease every third of it, so that the
   * store tells a running probe from one whose process died. A renewal that
   * says the probe is lost stops the renewals (the call goes on; its report
   * will be stale).
   */
  private renewingProbe<A, E, R>(
    self: Effect.Effect<A, E, R>,
    key: string | undefined,
    storeKey: string,
    permit: number,
    clock: Clock.Clock
  ): Effect.Effect<A, E, R> {
    const renew = this.store.renew!
    const every = Math.max(1, Math.floor(this.policy.probeLeaseMs! / 3))
    const loop: Effect.Effect<void> = Effect.sleep(every).pipe(
      Effect.andThen(Effect.suspend(() => renew(storeKey, this.policy, permit, clock.currentTimeMillisUnsafe()))),
      Effect.matchEffect({
        onFailure: (error) => {
          this.storeFailed(error, clock.currentTimeMillisUnsafe(), undefined, key)
          return loop
        },
        onSuccess: (renewed) => {
          if (!renewed) return Effect.void
          this.counters.probeRenewals++
          return loop
        }
      })
    )
    return Effect.flatMap(
      Effect.forkChild(loop, { startImmediately: true }),
      (renewal) => Effect.onExit(self, () => Fiber.interrupt(renewal))
    )
  }

  /**
   * One call through a store's `Effect` operations (a remote store). Still
   * finalizer-first: the finalizer is on the stack before `admit` runs, and
   * `admit` runs uninterruptibly up to the moment its permit is kept, so an
   * interrupted call always reports the permit it took. When the store
   * cannot decide (or is known to be down), `onStoreError` decides instead.
   */
  runThroughStore<A, E, R>(
    fiber: Fiber.Fiber<unknown, unknown>,
    key: string | undefined,
    self: Effect.Effect<A, E, R>
  ): Effect.Effect<A, E | CircuitOpen, R> {
    const clock = fiber.getRef(Clock.Clock)
    const fallback = this.fallback!
    if (!fallback.ask(clock.currentTimeMillisUnsafe())) return this.withoutStore(fiber, key, self, clock)
    const store = this.store
    const storeKey = this.storeKey(key)
    const span = tracing.spanOf(fiber)
    const observe = (transition: Store.Transition | undefined) => {
      this.observe(transition, key)
      if (transition !== undefined && span !== undefined) this.traceTransition(fiber, span, key, transition.from, transition.to)
    }
    let permit = -1
    let startedAt = 0
    return Effect.onExitPrimitive(
      Effect.flatMap(
        Effect.uninterruptible(Effect.suspend(() =>
          Effect.matchEffect(store.admit(storeKey, this.policy, clock.currentTimeMillisUnsafe()), {
            onFailure: (error) =>
              Effect.sync(() => {
                this.storeFailed(error, clock.currentTimeMillisUnsafe(), fiber, key)
                return undefined
              }),
            onSuccess: (admission) =>
              Effect.sync(() => {
                if (fallback.answered()) this.storeRecovered()
                switch (admission._tag) {
                  case "Admitted":
                    permit = admission.permit
                    startedAt = clock.currentTimeMillisUnsafe()
                    observe(admission.transition)
                    this.lastState = admission.probe ? "HalfOpen" : "Closed"
                    if (span !== undefined) this.annotateState(span, key, this.lastState)
                    break
                  case "Rejected":
                    observe(admission.transition)
                    this.lastState = stateOfStoreReason[admission.reason]
                    break
                  case "Pass":
                    this.lastState = "Disabled"
                    if (span !== undefined) this.annotateState(span, key, "Disabled")
                }
                return admission
              })
          })
        )),
        (admission): Effect.Effect<A, E | CircuitOpen, R> =>
          admission === undefined
            ? this.withoutStore(fiber, key, self, clock)
            : admission._tag === "Rejected"
            ? this.reject(fiber, key, admission.reason, admission.retryAfterMs)
            : admission._tag === "Admitted" && admission.probe && this.policy.probeLeaseMs !== undefined
            ? this.renewingProbe(self, key, storeKey, admission.permit, clock)
            : self
      ),
      (exit) => {
        if (permit < 0) return undefined
        const outcome = this.classify(exit)
        this.count(outcome)
        const recorded = () => {
          if (this.counters.hub.active) this.counters.hub.emit({ _tag: "Recorded", name: this.name, outcome })
        }
        // The store is down: the report is dropped rather than waited for (a probe's lease runs out).
        if (!fallback.healthy) return Effect.sync(recorded)
        const now = clock.currentTimeMillisUnsafe()
        return Effect.matchEffect(store.record(storeKey, this.policy, permit, outcome, now - startedAt, now), {
          onFailure: (error) =>
            Effect.sync(() => {
              this.storeFailed(error, clock.currentTimeMillisUnsafe(), undefined, key)
              recorded()
            }),
          onSuccess: (transition) =>
            Effect.sync(() => {
              if (fallback.answered()) this.storeRecovered()
              observe(transition)
              recorded()
            })
        })
      }
    )
  }

  /**
   * The `onStoreError` policy decides a call the shared store could not:
   * `"fail-open"` runs it unrecorded, `"fail-closed"` rejects it with
   * `StoreUnavailable`, `"local"` runs it through the stand-in's circuit.
   */
  private withoutStore<A, E, R>(
    fiber: Fiber.Fiber<unknown, unknown>,
    key: string | undefined,
    self: Effect.Effect<A, E, R>,
    clock: Clock.Clock
  ): Effect.Effect<A, E | CircuitOpen, R> {
    const fallback = this.fallback!
    fallback.decided++
    switch (fallback.mode) {
      case "fail-open":
        return self
      case "fail-closed":
        return this.reject(fiber, key, "StoreUnavailable", fallback.retryAfterMs(clock.currentTimeMillisUnsafe()))
      case "local":
        return this.runOnStandIn(fiber, key, self, clock)
    }
  }

  /** One call on the `"local"` stand-in's circuit: the in-process path, without its fast-path refinements. */
  private runOnStandIn<A, E, R>(
    fiber: Fiber.Fiber<unknown, unknown>,
    key: string | undefined,
    self: Effect.Effect<A, E, R>,
    clock: Clock.Clock
  ): Effect.Effect<A, E | CircuitOpen, R> {
    const circuit = this.fallback!.standIn.circuit(this.storeKey(key), this.standInPolicy, clock.currentTimeMillisUnsafe())
    const onTransition = this.transitionsOf(key)
    let permit = Store.PASS as number
    let startedAt = 0
    return Effect.onExitPrimitive(
      Effect.suspend((): Effect.Effect<A, E | CircuitOpen, R> => {
        const admitted = circuit.admit(clock, onTransition)
        if (admitted === Store.PASS) return self
        if (admitted < 0) {
          return this.reject(fiber, key, reasonOfCode(admitted), circuit.retryAfterMs(clock.currentTimeMillisUnsafe()))
        }
        permit = admitted
        startedAt = clock.currentTimeMillisUnsafe()
        return self
      }),
      (exit) => {
        if (permit < 0) return undefined
        const outcome = this.classify(exit)
        this.count(outcome)
        circuit.record(permit, outcome, startedAt, clock, onTransition)
        if (this.counters.hub.active) this.counters.hub.emit({ _tag: "Recorded", name: this.name, outcome })
        return undefined
      }
    )
  }

  /** A store operation failed: counted, reported, and (for a store-wide reason) the store is left alone for a while. */
  storeFailed(
    error: SharedStore.StoreError,
    now: number,
    fiber: Fiber.Fiber<unknown, unknown> | undefined,
    key: string | undefined
  ): void {
    const fallback = this.fallback!
    fallback.failed(error, now)
    if (fiber !== undefined && fiber.cache.span !== undefined) {
      const span = tracing.spanOf(fiber)
      if (span !== undefined) {
        const attributes: tracing.Attributes = {
          "bulwark.name": this.name,
          "bulwark.store.operation": error.operation,
          "bulwark.store.reason": error.reason,
          "bulwark.circuitbreaker.on_store_error": fallback.mode
        }
        if (key !== undefined && this.exposeKeys) attributes["bulwark.circuitbreaker.key"] = key
        tracing.event(fiber, span, "bulwark.circuitbreaker.store_error", attributes)
      }
    }
    if (this.counters.hub.active) {
      this.counters.hub.emit({
        _tag: "StoreFailed",
        name: this.name,
        key: this.exposeKeys ? key : undefined,
        operation: error.operation,
        reason: error.reason,
        message: error.message,
        onStoreError: fallback.mode
      })
    }
  }

  storeRecovered(): void {
    if (this.counters.hub.active) this.counters.hub.emit({ _tag: "StoreRecovered", name: this.name })
  }

  /**
   * A circuit as this process knows it while the store cannot say: the
   * stand-in's (`"local"`), or the last state seen through the store.
   */
  readWithoutStore(key: string | undefined, now: number): Store.CircuitInfo {
    const fallback = this.fallback!
    if (fallback.mode === "local") {
      const circuit = fallback.standInIfAny?.find(this.storeKey(key))
      if (circuit !== undefined) return circuit.read(now, this.transitionsOf(key))
    } else if (key === undefined) {
      return { state: this.lastState, retryAfterMs: 0, consecutiveOpenings: 0, probing: 0 }
    }
    return { state: "Closed", retryAfterMs: 0, consecutiveOpenings: 0, probing: 0 }
  }

  /**
   * Reads a circuit through the store, or without it when it is down or
   * fails (see {@link readWithoutStore}).
   */
  readShared(key: string | undefined, now: number): Effect.Effect<Store.CircuitInfo> {
    const fallback = this.fallback!
    if (!fallback.healthy) return Effect.sync(() => this.readWithoutStore(key, now))
    return Effect.matchEffect(this.store.read(this.storeKey(key), this.policy, now), {
      onFailure: (error) =>
        Effect.sync(() => {
          this.storeFailed(error, now, undefined, key)
          return this.readWithoutStore(key, now)
        }),
      onSuccess: (reading) =>
        Effect.sync(() => {
          if (fallback.answered()) this.storeRecovered()
          this.observe(reading.transition, key)
          if (key === undefined) this.lastState = reading.state
          return reading
        })
    })
  }

  /**
   * Manual control through the store. The `"local"` stand-in follows every
   * change, so that an isolation still holds if the store fails later; if
   * the store cannot take it, the change holds in this process only.
   */
  forceShared(key: string | undefined, to: "Isolated" | "Disabled" | "Closed", now: number): Effect.Effect<void> {
    const fallback = this.fallback!
    const standIn = fallback.mode === "local" ? fallback.standIn : undefined
    const onStandIn = (report: boolean) =>
      standIn?.circuit(this.storeKey(key), this.standInPolicy, now).force(to, now, report ? this.transitionsOf(key) : noTransition)
    if (!fallback.healthy) {
      return Effect.sync(() => {
        onStandIn(true)
        if (key === undefined) this.lastState = to
      })
    }
    return Effect.matchEffect(this.store.force(this.storeKey(key), this.policy, to, now), {
      onFailure: (error) =>
        Effect.sync(() => {
          this.storeFailed(error, now, undefined, key)
          onStandIn(true)
          if (key === undefined) this.lastState = to
        }),
      onSuccess: (transition) =>
        Effect.sync(() => {
          if (fallback.answered()) this.storeRecovered()
          onStandIn(false)
          this.observe(transition, key)
          if (key === undefined) this.lastState = to
        })
    })
  }
}

const noTransition = (): void => {}

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

const toSpec = (policy: typeof TripPolicy.Type): Store.TripSpec => {
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

/** Openings whose open time is computed from a Schedule; later ones reuse the last. */
const MAX_OPENINGS = 64

/**
 * The open times of the 1st, 2nd, ... consecutive opening, as the store's
 * plain array. A Schedule is stepped once per opening count when the breaker
 * is made, in the creating fiber (so a jittered schedule is jittered once),
 * as if each opening came right after the previous open time; it stops when
 * the schedule ends or after `MAX_OPENINGS` steps, and repeated trailing
 * delays are kept once (the store reuses the last one).
 */
const openTimes = (
  openFor: Duration.Duration | Schedule.Schedule<unknown, unknown>,
  now: number
): Effect.Effect<ReadonlyArray<number>> => {
  if (Duration.isDuration(openFor)) return Effect.succeed([Duration.toMillis(openFor)])
  return Effect.gen(function*() {
    const step = (yield* (Schedule.toStep(openFor) as Effect.Effect<any>)) as (
      now: number,
      input: unknown
    ) => Effect.Effect<[unknown, Duration.Duration], unknown>
    const delays: Array<number> = []
    let at = now
    while (delays.length < MAX_OPENINGS) {
      const exit = yield* Effect.exit(step(at, delays.length))
      if (Exit.isFailure(exit)) break
      const ms = Duration.toMillis(exit.value[1])
      delays.push(ms)
      at += ms
    }
    while (delays.length > 1 && delays[delays.length - 1] === delays[delays.length - 2]) delays.pop()
    return delays.length === 0 ? [0] : delays
  })
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
      const now = fiber.getRef(Clock.Clock).currentTimeMillisUnsafe()
      const openFor = decoded.openFor as Duration.Duration | Schedule.Schedule<unknown, unknown>
      return Effect.flatMap(openTimes(openFor, now), (openForMs) => {
        const trips = (Array.isArray(decoded.trip) ? decoded.trip : [decoded.trip]).map(toSpec)
        const given = decoded.store as Store.CircuitBreakerStore | undefined
        const probeTimeoutMs = decoded.halfOpen?.probeTimeout === undefined
          ? 60_000
          : Duration.toMillis(decoded.halfOpen.probeTimeout)
        // Only a shared store that can renew leases gets them: in process, a probe cannot outlive its process.
        const leased = given !== undefined && given.inProcess === undefined && given.renew !== undefined
        const policy: Store.Policy = {
          trips,
          openForMs,
          probes: decoded.halfOpen?.probes ?? 1,
          successesToClose: decoded.halfOpen?.successesToClose ?? 1,
          probeTimeoutMs,
          probeLeaseMs: leased
            ? Math.min(
              probeTimeoutMs,
              decoded.halfOpen?.probeLease === undefined ? 10_000 : Duration.toMillis(decoded.halfOpen.probeLease)
            )
            : undefined
        }
        const keys = decoded.keys === undefined ? undefined : {
          maxKeys: decoded.keys.maxKeys,
          idleTimeToLive: decoded.keys.idleTimeToLive ?? Duration.minutes(10),
          exposeKeys: decoded.keys.exposeKeys ?? false
        }
        // A plain breaker's own store holds one circuit: no bound to keep, nothing to reclaim.
        const store = given ?? Store.memory(
          keys === undefined
            ? { maxKeys: 1, idleTimeToLive: Duration.infinity }
            : { maxKeys: keys.maxKeys, idleTimeToLive: keys.idleTimeToLive }
        )
        const impl = new BreakerImpl(
          decoded.name,
          policy,
          (decoded.classify as ((exit: Exit.Exit<unknown, unknown>) => Outcome) | undefined) ?? internal.defaultClassify,
          keys,
          store,
          given === undefined,
          now,
          decoded.onStoreError ?? given?.onStoreError ?? "local"
        )
        const registrations = internal.registerMetrics(
          fiber.context,
          impl.name,
          impl.counters,
          impl.keyed ? undefined : (now) =>
            // A lost probe is noticed lazily: read as a state read would.
            impl.local === undefined
              ? impl.lastState
              : impl.circuitFor(undefined, now).refresh(now, impl.hiddenTransition),
          () => impl.circuitCount(),
          impl.fallback
        )
        const self: CircuitBreaker = Object.assign(Object.create(BreakerProto), {
          name: impl.name,
          keyed: impl.keyed,
          impl
        })
        const finalizer = Effect.addFinalizer(() =>
          Effect.sync(() => {
            for (const registration of registrations) registration.remove()
            impl.counters.hub.end()
          })
        )
        return Effect.as(
          store.listen === undefined ? finalizer : Effect.andThen(finalizer, store.listen(impl.onRemoteTransition)),
          self
        )
      })
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

/**
 * The clock of the fiber that asks, looked up only when a decision needs the
 * time: the closed path of a consecutive-failures breaker never reads it.
 */
const currentClock: Store.TimeSource = {
  // Guards only run inside a fiber, so there is always a current one here.
  currentTimeMillisUnsafe: () => Fiber.getCurrent()!.getRef(Clock.Clock).currentTimeMillisUnsafe()
}

const compileGuard = <I>(
  breaker: CircuitBreakerOrKey<I>,
  options: GuardOptions | undefined
): (<A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | CircuitOpen, R | I>) => {
  const key = options?.key
  const admit = <A, E, R>(resolved: CircuitBreaker, self: Effect.Effect<A, E, R>) => {
    const mismatch = keyMismatch(resolved, key)
    if (mismatch !== undefined) return mismatch
    const impl = resolved.impl
    // Per execution: the same guarded effect may run many times, even concurrently.
    if (impl.local === undefined) return Effect.withFiber((fiber) => impl.runThroughStore(fiber, key, self))
    return Effect.withFiber((fiber) => impl.run(fiber, key, self))
  }
  if (isCircuitBreaker(breaker)) {
    // An instance is known now: check the key and pick the path once, not per call.
    const mismatch = keyMismatch(breaker, key)
    if (mismatch !== undefined) return () => mismatch
    const impl = breaker.impl
    if (impl.local !== undefined) return (self) => Effect.withFiber((fiber) => impl.run(fiber, key, self))
    return (self) => admit(breaker, self)
  }
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

const withCircuit = <I, A>(
  breaker: CircuitBreakerOrKey<I>,
  key: string | undefined,
  f: (impl: BreakerImpl, now: number) => Effect.Effect<A>
): Effect.Effect<A, never, I> =>
  withBreaker(breaker, (b) =>
    Effect.withFiber((fiber) => {
      const mismatch = keyMismatch(b, key)
      if (mismatch !== undefined) return mismatch
      return f(b.impl, fiber.getRef(Clock.Clock).currentTimeMillisUnsafe())
    }))

const toStateInfo = (info: Store.CircuitInfo): StateInfo => ({
  state: info.state,
  retryAfter: info.retryAfterMs === Infinity ? Duration.infinity : Duration.millis(info.retryAfterMs),
  consecutiveOpenings: info.consecutiveOpenings,
  probing: info.probing
})

/**
 * Reads the state of the breaker's circuit (or of `key`'s circuit).
 *
 * @since 0.1.0
 * @category observability
 */
export const state = <I = never>(breaker: CircuitBreakerOrKey<I>, key?: string): Effect.Effect<StateInfo, never, I> =>
  withCircuit(breaker, key, (impl, now) => {
    if (impl.local !== undefined) {
      const circuit = impl.findCircuit(key)
      if (circuit === undefined) {
        return Effect.succeed({ state: "Closed", retryAfter: Duration.zero, consecutiveOpenings: 0, probing: 0 })
      }
      return Effect.succeed(toStateInfo(circuit.read(now, impl.transitionsOf(key))))
    }
    return Effect.map(impl.readShared(key, now), toStateInfo)
  })

const force = (to: "Isolated" | "Disabled" | "Closed") =>
<I = never>(breaker: CircuitBreakerOrKey<I>, key?: string): Effect.Effect<void, never, I> =>
  withCircuit(breaker, key, (impl, now) => {
    if (impl.local !== undefined) {
      impl.circuitFor(key, now).force(to, now, impl.transitionsOf(key))
      return Effect.void
    }
    return impl.forceShared(key, to, now)
  })

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
  /** Leases of running probes renewed in a shared store (see `halfOpen.probeLease`). */
  readonly probeRenewals: number
  /**
   * Live circuits: 1 for a plain breaker; for a keyed one, its circuits in an
   * in-process store, 0 with a store that has only `Effect` operations (the
   * store keeps them).
   */
  readonly circuits: number
  /** Keyed circuits reclaimed so far (by an in-process store; a store shared by breakers counts all of them). */
  readonly reclaimed: number
  /** Operations of a shared store that failed, by reason (always zero for an in-process store). */
  readonly storeErrors: Readonly<Record<SharedStore.Reason, number>>
  /** Calls decided by `onStoreError` instead of the shared store (the failed calls and those while it was down). */
  readonly decidedWithoutStore: number
}

/**
 * @since 0.1.0
 * @category observability
 */
export const stats = <I = never>(breaker: CircuitBreakerOrKey<I>): Effect.Effect<Snapshot, never, I> =>
  withBreaker(breaker, ({ impl }) =>
    Effect.withFiber((fiber) => {
      const now = fiber.getRef(Clock.Clock).currentTimeMillisUnsafe()
      const snapshot = (state: State | undefined): Snapshot => {
        const c = impl.counters
        return {
          name: impl.name,
          state,
          successes: c.successes,
          failures: c.failures,
          ignored: c.ignored,
          rejected: { ...c.rejected },
          transitions: c.transitions,
          openings: c.openings,
          probeRenewals: c.probeRenewals,
          circuits: impl.circuitCount(),
          reclaimed: impl.keyed && impl.local !== undefined ? impl.local.reclaimed() : 0,
          storeErrors: impl.fallback === undefined
            ? { Unavailable: 0, Timeout: 0, Rejected: 0 }
            : { ...impl.fallback.errors },
          decidedWithoutStore: impl.fallback?.decided ?? 0
        }
      }
      if (impl.keyed) return Effect.succeed(snapshot(undefined))
      if (impl.local !== undefined) {
        // Brought up to date first, as a state read would (a lost probe reopens the circuit).
        return Effect.succeed(snapshot(impl.circuitFor(undefined, now).refresh(now, impl.hiddenTransition)))
      }
      return Effect.map(impl.readShared(undefined, now), (reading) => snapshot(reading.state))
    }))

/**
 * The keys of the live circuits of a keyed breaker created with
 * `exposeKeys: true` (empty otherwise), least recently used first.
 *
 * @since 0.1.0
 * @category observability
 */
export const keys = <I = never>(breaker: CircuitBreakerOrKey<I>): Effect.Effect<ReadonlyArray<string>, never, I> =>
  withBreaker(breaker, ({ impl }) => Effect.sync(() => impl.exposeKeys ? impl.liveKeys() : []))
