/**
 * Retry runs a call again after a typed failure, waiting longer each time
 * (capped exponential backoff with jitter), within limits on attempts, on
 * elapsed time and, with a shared budget, on how many retries a whole
 * service may send.
 *
 * **When to use**
 *
 * For transient failures of idempotent calls: a dropped connection, a 503, a
 * `CircuitOpen` or `RateLimited` that says when to come back.
 *
 * **Details**
 *
 * - Only typed failures are retried. A defect or an interruption anywhere in
 *   the cause ends the call at once, as it is.
 * - The failure returned when retrying stops is the last attempt's own
 *   failure, never wrapped: `E` is unchanged, and callers handle the same
 *   errors with or without a retry.
 * - Backoff before retry `n` (1 for the first): `none` = min(max, base *
 *   2^(n-1)); `full` = random in [0, that); `equal` = half of it plus random
 *   in [0, the other half); `decorrelated` = min(max, random in [base,
 *   3 * previous)). Randomness comes from Effect's `Random` service, so
 *   `Random.withSeed` makes delays reproducible.
 * - An error with a `retryAfter` field holding a `Duration` (`CircuitOpen`,
 *   `RateLimited`, your own) makes the next delay at least that long, even
 *   above `max`.
 * - `maxElapsed` bounds when a retry may *start*, counted from the start of
 *   the first attempt: a retry whose delay would end past it is not made (the
 *   failure is returned at once rather than after a pointless wait).
 * - A {@link budget} shared by many policies caps retries at a ratio of calls
 *   over a sliding window; when it is spent the failure is returned as it is.
 *
 * **Policy or instance**
 *
 * - {@link policy} is a plain value: synchronous, usable at module level,
 *   with no counters. Its options are validated at once; an invalid policy
 *   makes every call guarded by it die with the `InvalidOptions` (a
 *   programming error, like a bad per-call option). A throwing constructor
 *   could not put `InvalidOptions` in a type.
 * - {@link make} (scoped) and {@link layer} build an instance from the same
 *   options: `InvalidOptions` is a typed failure, and the instance has
 *   {@link stats}, pull-based metrics `bulwark.retry.*` and {@link events}.
 *
 * **Gotchas**
 *
 * - Retry only idempotent calls.
 * - `maxElapsed` does not cut a running attempt short: wrap the retried call
 *   in `Timeout.guard` for a hard deadline, and put a `Timeout` inside the
 *   retry to bound each attempt.
 * - With {@link schedule} and `Effect.retry`, Effect decides which causes are
 *   retried: a typed error alongside an interruption is retried there.
 *
 * **Example** (Retrying a flaky call)
 *
 * ```ts
 * import { Retry } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * const policy = Retry.policy({ maxAttempts: 4, base: "100 millis", max: "2 seconds", jitter: "full" })
 * declare const fetchUser: Effect.Effect<string, { readonly _tag: "Unavailable" }>
 * const user = fetchUser.pipe(Retry.guard(policy)) // same E: the last failure when retrying stops
 * ```
 *
 * @since 0.1.0
 */
import { Clock, Duration, Effect, Layer, Schedule, Schema, type Scope } from "effect"
import * as Context from "effect/Context"
import { type Pipeable, pipeArguments } from "effect/Pipeable"
import * as Stream from "effect/Stream"
import * as internal from "./internal/retry.ts"
import { decodeOptions, DurationInput, Name, PositiveDuration, PositiveInt } from "./internal/options.ts"
import { InvalidOptions } from "./InvalidOptions.ts"

// -----------------------------------------------------------------------------
// models
// -----------------------------------------------------------------------------

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: "~@bulwark/core/Retry" = "~@bulwark/core/Retry"

/**
 * @since 0.1.0
 * @category type ids
 */
export const PolicyTypeId: "~@bulwark/core/Retry/Policy" = "~@bulwark/core/Retry/Policy"

/**
 * @since 0.1.0
 * @category type ids
 */
export const BudgetTypeId: "~@bulwark/core/Retry/Budget" = "~@bulwark/core/Retry/Budget"

/**
 * How the backoff is randomised; see the module documentation for formulas.
 *
 * @since 0.1.0
 * @category options
 */
export const Jitter = Schema.Literals(["decorrelated", "full", "equal", "none"])

/**
 * @since 0.1.0
 * @category options
 */
export type Jitter = typeof Jitter.Type

/**
 * Why a call stopped retrying and returned its failure.
 *
 * - `NotRetryable`: the policy's `while` returned false for the error.
 * - `MaxAttempts`: `maxAttempts` attempts have run.
 * - `MaxElapsed`: the next retry could not start within `maxElapsed`.
 * - `BudgetRefused`: the shared retry budget was spent.
 *
 * Retry has no error of its own: the call's failure is returned unchanged.
 *
 * @since 0.1.0
 * @category models
 */
export const StopReason = Schema.Literals(["NotRetryable", "MaxAttempts", "MaxElapsed", "BudgetRefused"])

/**
 * @since 0.1.0
 * @category models
 */
export type StopReason = typeof StopReason.Type

/**
 * A validated retry policy: a plain value with no counters. Build one with
 * {@link policy}. `E` is the error type its `while` accepts.
 *
 * @since 0.1.0
 * @category models
 */
export interface Policy<in E = unknown> extends Pipeable {
  readonly [PolicyTypeId]: (_: E) => void
  /** The options as given. Spread them to derive a policy: `{ ...Retry.conservative.options, budget }`. */
  readonly options: Options<E>
  /** @internal */
  readonly config: internal.Config | InvalidOptions
}

/**
 * A retry instance: a policy with counters, metrics and events. Build one
 * with {@link make} (scoped) or {@link layer}.
 *
 * @since 0.1.0
 * @category models
 */
export interface Retry<in E = unknown> extends Pipeable {
  readonly [TypeId]: (_: E) => void
  readonly name: string
  /** @internal */
  readonly config: internal.Config
  /** @internal */
  readonly state: internal.RetryState
}

/**
 * A retry instance, or a service key that resolves to one; with a key, the
 * key's identifier is added to `R`.
 *
 * @since 0.1.0
 * @category models
 */
export type RetryOrKey<E = unknown, I = never> = Retry<E> | Context.Key<I, Retry<any>>

/**
 * A shared retry budget; see {@link budget}.
 *
 * @since 0.1.0
 * @category models
 */
export interface Budget extends Pipeable {
  readonly [BudgetTypeId]: typeof BudgetTypeId
  readonly name: string
  /** @internal */
  readonly state: internal.BudgetState
}

// -----------------------------------------------------------------------------
// options
// -----------------------------------------------------------------------------

const isFunction = Schema.Unknown.check(
  Schema.makeFilter((u) => typeof u === "function" ? undefined : "Expected a function (error) => boolean")
)

const isBudgetValue = Schema.Unknown.check(
  Schema.makeFilter((u) => isBudget(u) ? undefined : "Expected a budget made with Retry.budget")
)

// `optional` (not `optionalKey`): the interface allows an explicit `undefined`, as in `{ ...preset, maxElapsed: undefined }`.
const fields = {
  maxAttempts: Schema.optional(PositiveInt),
  base: Schema.optional(DurationInput),
  max: Schema.optional(DurationInput),
  jitter: Schema.optional(Jitter),
  maxElapsed: Schema.optional(DurationInput),
  while: Schema.optional(isFunction),
  budget: Schema.optional(isBudgetValue)
}

const baseAtMostMax = Schema.makeFilter((options: {
  readonly base?: Duration.Duration | undefined
  readonly max?: Duration.Duration | undefined
}) => {
  const base = options.base ?? internal.defaults.base
  const max = options.max ?? internal.defaults.max
  return Duration.isGreaterThan(base, max)
    ? { path: ["max"], issue: `Expected a duration >= base (${Duration.format(base)}), got ${Duration.format(max)}` }
    : undefined
})

/**
 * The options of a policy, as a Schema: {@link policy} and {@link make}
 * decode their input with it and report every bad field in one
 * `InvalidOptions`.
 *
 * @since 0.1.0
 * @category options
 */
export const Options = Schema.Struct({ name: Schema.optional(Name), ...fields }).check(baseAtMostMax)

const MakeOptions = Schema.Struct({ name: Name, ...fields }).check(baseAtMostMax)

/**
 * @since 0.1.0
 * @category options
 */
export interface Options<in E = unknown> {
  /** Appears in stats, metric labels and events. Required by {@link make}. */
  readonly name?: string | undefined
  /** Attempts in all, the first included: an integer >= 1, default 3 (so 2 retries). */
  readonly maxAttempts?: number | undefined
  /** Backoff of the first retry before jitter; default 100 millis. */
  readonly base?: Duration.Input | undefined
  /** Cap of the backoff (not of a `retryAfter` hint); >= base, default 10 seconds. */
  readonly max?: Duration.Input | undefined
  /** Default `"full"`. */
  readonly jitter?: Jitter | undefined
  /** No retry starts later than this after the first attempt started. Default: no limit. */
  readonly maxElapsed?: Duration.Input | undefined
  /** Which typed failures to retry; default all. */
  readonly while?: ((error: E) => boolean) | undefined
  /** A shared budget that must allow each retry. */
  readonly budget?: Budget | undefined
}

const toConfig = (decoded: typeof Options.Type): internal.Config => ({
  name: decoded.name ?? internal.unnamed,
  maxAttempts: decoded.maxAttempts ?? internal.defaults.maxAttempts,
  baseMs: Duration.toMillis(decoded.base ?? internal.defaults.base),
  maxMs: Duration.toMillis(decoded.max ?? internal.defaults.max),
  jitter: decoded.jitter ?? internal.defaults.jitter,
  maxElapsedMs: decoded.maxElapsed === undefined ? Infinity : Duration.toMillis(decoded.maxElapsed),
  retryable: decoded.while as ((error: unknown) => boolean) | undefined,
  budget: (decoded.budget as Budget | undefined)?.state
})

const decodePolicy = internal.decodeSync("Retry", Options)
const decodeMake = decodeOptions("Retry", MakeOptions)

// -----------------------------------------------------------------------------
// constructors
// -----------------------------------------------------------------------------

const PolicyProto = {
  [PolicyTypeId]: (_: unknown) => {},
  pipe() {
    return pipeArguments(this, arguments)
  },
  toJSON(this: Policy) {
    return { _id: "Retry.Policy", options: { ...this.options, while: undefined, budget: undefined } }
  }
}

/**
 * Is this value a retry policy?
 *
 * @since 0.1.0
 * @category guards
 */
export const isPolicy = (u: unknown): u is Policy<never> => typeof u === "object" && u !== null && PolicyTypeId in u

/**
 * Is this value a retry instance?
 *
 * @since 0.1.0
 * @category guards
 */
export const isRetry = (u: unknown): u is Retry<never> => typeof u === "object" && u !== null && TypeId in u

/**
 * Is this value a retry budget?
 *
 * @since 0.1.0
 * @category guards
 */
export const isBudget = (u: unknown): u is Budget => typeof u === "object" && u !== null && BudgetTypeId in u

/**
 * A retry policy: a plain, synchronous value, validated at once. Never
 * throws: if the options are invalid, every call it guards (and every run of
 * its {@link schedule}) dies with the `InvalidOptions` naming each bad field.
 * Use {@link make} when options come from configuration and should fail as a
 * typed error.
 *
 * **Example** (A policy with a filter and a budget)
 *
 * ```ts
 * import { Retry } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * type ApiError = { readonly _tag: "BadRequest" } | { readonly _tag: "Unavailable" }
 *
 * const program = Effect.gen(function*() {
 *   const sharedBudget = yield* Retry.budget({ ratio: 0.2, minPerSecond: 10 })
 *   const policy = Retry.policy({
 *     maxAttempts: 5, base: "100 millis", max: "10 seconds", jitter: "decorrelated",
 *     maxElapsed: "30 seconds", while: (e: ApiError) => e._tag !== "BadRequest", budget: sharedBudget
 *   })
 *   return policy
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const policy = <E = unknown>(options: Options<E>): Policy<E> => {
  const self = Object.create(PolicyProto)
  self.options = options
  const decoded = decodePolicy(options)
  self.config = decoded instanceof InvalidOptions ? decoded : toConfig(decoded)
  return self
}

const RetryProto = {
  [TypeId]: (_: unknown) => {},
  pipe() {
    return pipeArguments(this, arguments)
  },
  toJSON(this: Retry) {
    return { _id: "Retry", name: this.name }
  }
}

/**
 * Creates a retry instance that lives as long as the current scope. Options
 * are those of {@link policy}, with a required `name`; invalid options fail
 * with `InvalidOptions`. Metrics (`bulwark.retry.*`, attribute `name`, plus
 * `reason` on `exhausted`) are registered in the creating fiber's
 * `MetricRegistry` and removed when the scope closes; the events stream ends
 * then too.
 *
 * **Example** (An instance with stats)
 *
 * ```ts
 * import { Retry } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const retry = yield* Retry.make({ name: "payments", maxAttempts: 3, base: "200 millis" })
 *   yield* Effect.succeed("ok").pipe(Retry.guard(retry))
 *   return (yield* Retry.stats(retry)).calls // 1
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <E = unknown>(
  options: Options<E> & { readonly name: string }
): Effect.Effect<Retry<E>, InvalidOptions, Scope.Scope> =>
  Effect.flatMap(decodeMake(options), (decoded) =>
    Effect.withFiber((fiber) => {
      const config = toConfig(decoded)
      const state = new internal.RetryState(config.name)
      const registrations = internal.registerMetrics(fiber.context, state)
      const self = Object.create(RetryProto)
      self.name = config.name
      self.config = config
      self.state = state
      return Effect.as(
        Effect.addFinalizer(() =>
          Effect.sync(() => {
            for (const registration of registrations) registration.remove()
            state.hub.end()
          })
        ),
        self as Retry<E>
      )
    }))

/**
 * Builds a retry instance as a service: everyone who uses the key shares its
 * counters (and its budget, if it has one).
 *
 * **Example** (A retry instance as a Layer service)
 *
 * ```ts
 * import { Retry } from "@bulwark/core"
 * import { Context, Effect } from "effect"
 *
 * class PaymentsRetry extends Context.Service<PaymentsRetry, Retry.Retry>()("app/PaymentsRetry") {}
 * const PaymentsRetryLive = Retry.layer(PaymentsRetry, { name: "payments", maxAttempts: 4 })
 *
 * const charge = Effect.succeed("ok").pipe(Retry.guard(PaymentsRetry)) // R = PaymentsRetry
 * const main = charge.pipe(Effect.provide(PaymentsRetryLive))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <I>(
  key: Context.Key<I, Retry<any>>,
  options: Options<any> & { readonly name: string }
): Layer.Layer<I, InvalidOptions> => Layer.effect(key, make(options))

// -----------------------------------------------------------------------------
// guard and schedule
// -----------------------------------------------------------------------------

type Guard<R0> = <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R | R0>

const compileGuard = <I>(retry: Policy<any> | RetryOrKey<any, I>): Guard<I> => {
  if (isRetry(retry)) {
    const { config, state } = retry
    return (self) => internal.retryLoop(self, config, state)
  }
  if (isPolicy(retry)) {
    const config = retry.config
    if (config instanceof InvalidOptions) return () => Effect.die(config)
    return (self) => internal.retryLoop(self, config, undefined)
  }
  return (self) => Effect.flatMap(retry, (resolved: Retry) => internal.retryLoop(self, resolved.config, resolved.state))
}

/**
 * Runs an effect, retrying its typed failures as the policy allows. Defects
 * and interruptions are never retried. When retrying stops, the last
 * attempt's failure is returned unchanged, so `E` is the same as without the
 * guard. Accepts a {@link Policy}, a {@link Retry} instance (counted in its
 * stats) or a service key for one.
 *
 * **Example** (Guarding calls)
 *
 * ```ts
 * import { Retry } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * declare const fetchUser: Effect.Effect<string, Error>
 *
 * fetchUser.pipe(Retry.guard(Retry.aggressive))            // a preset policy
 * fetchUser.pipe(Retry.guard(Retry.policy({ maxAttempts: 2, jitter: "none" })))
 * Retry.guard(fetchUser, Retry.conservative)                // data-first
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const guard: {
  <E0, I = never>(
    retry: Policy<E0> | RetryOrKey<E0, I>
  ): <A, E extends E0, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R | I>
  <A, E extends E0, R, E0, I = never>(
    self: Effect.Effect<A, E, R>,
    retry: Policy<E0> | RetryOrKey<E0, I>
  ): Effect.Effect<A, E, R | I>
} = function() {
  if (arguments.length >= 2) return compileGuard(arguments[1])(arguments[0])
  return compileGuard(arguments[0])
} as any

/**
 * The policy as an Effect `Schedule`, for `Effect.retry` or anything else
 * that takes one. Its input is the error and its output the number of the
 * retry. Backoff, jitter, `retryAfter`, `maxElapsed`, `while` and the budget
 * apply as in {@link guard}; with an instance, calls, attempts, retries and
 * stops are counted (a schedule cannot see successes, so `succeeded` is
 * counted by `guard` only).
 *
 * **Example** (With `Effect.retry`)
 *
 * ```ts
 * import { Retry } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * declare const fetchUser: Effect.Effect<string, Error>
 * const user = fetchUser.pipe(Effect.retry(Retry.schedule(Retry.aggressive)))
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const schedule = <E0, I = never>(retry: Policy<E0> | RetryOrKey<E0, I>): Schedule.Schedule<number, E0, never, I> => {
  if (isRetry(retry)) return internal.toSchedule(retry.config, retry.state)
  if (isPolicy(retry)) {
    const config = retry.config
    if (config instanceof InvalidOptions) return Schedule.fromStep(Effect.die(config))
    return internal.toSchedule(config, undefined)
  }
  return Schedule.fromStep(Effect.flatMap(retry, (resolved: Retry) =>
    Schedule.toStep(internal.toSchedule(resolved.config, resolved.state))))
}

// -----------------------------------------------------------------------------
// presets
// -----------------------------------------------------------------------------

/**
 * For fast, cheap, idempotent calls inside a data centre, where a retry soon
 * after a blip usually works: 5 attempts, backoff from 20 millis capped at 1
 * second, full jitter, no retry after 5 seconds.
 *
 * @since 0.1.0
 * @category presets
 */
export const aggressive: Policy = policy({
  name: "aggressive",
  maxAttempts: 5,
  base: "20 millis",
  max: "1 second",
  jitter: "full",
  maxElapsed: "5 seconds"
})

/**
 * For calls to shared or external services that must not be piled onto: 3
 * attempts, backoff from 1 second capped at 30 seconds, equal jitter (each
 * wait is at least half its backoff), no retry after 2 minutes.
 *
 * @since 0.1.0
 * @category presets
 */
export const conservative: Policy = policy({
  name: "conservative",
  maxAttempts: 3,
  base: "1 second",
  max: "30 seconds",
  jitter: "equal",
  maxElapsed: "2 minutes"
})

// -----------------------------------------------------------------------------
// budget
// -----------------------------------------------------------------------------


const NonNegativeNumber = Schema.Number.check(
  Schema.makeFilter((n: number) =>
    Number.isFinite(n) && n >= 0 ? undefined : `Expected a finite number >= 0, got ${String(n)}`
  )
)

/**
 * The options of a retry budget, as a Schema.
 *
 * @since 0.1.0
 * @category options
 */
export const BudgetOptions = Schema.Struct({
  name: Schema.optional(Name),
  ratio: Schema.optional(NonNegativeNumber),
  minPerSecond: Schema.optional(NonNegativeNumber),
  ttl: Schema.optional(PositiveDuration)
})

/**
 * @since 0.1.0
 * @category options
 */
export interface BudgetOptions {
  /** Appears in stats and metric labels; default `"<unnamed>"`. */
  readonly name?: string | undefined
  /** Retries allowed per call, over the window: a finite number >= 0, default 0.2. */
  readonly ratio?: number | undefined
  /** Retries allowed per second on top of the ratio, for low traffic: >= 0, default 10. */
  readonly minPerSecond?: number | undefined
  /** The sliding window over which calls and retries count: > 0, default 10 seconds. */
  readonly ttl?: Duration.Input | undefined
}

const decodeBudget = decodeOptions("RetryBudget", BudgetOptions)

const BudgetProto = {
  [BudgetTypeId]: BudgetTypeId,
  pipe() {
    return pipeArguments(this, arguments)
  },
  toJSON(this: Budget) {
    return { _id: "Retry.Budget", name: this.name }
  }
}

/**
 * A retry budget shared by the policies that name it, after Finagle's
 * `RetryBudget` (Envoy's retry budgets follow the same idea): a token balance
 * over a sliding window of `ttl`. Each call guarded by a policy with this
 * budget deposits `ratio` tokens when its first attempt starts; each retry
 * withdraws one, and is refused when less than one is left. Both expire after
 * `ttl`. A reserve of `minPerSecond * ttl` tokens is always available on top,
 * so a service with little traffic can still retry.
 *
 * Over any window of `ttl`, retries <= `ratio` * calls + `minPerSecond` *
 * `ttl` (to within a tenth of `ttl`, the window's slice). When dependencies
 * fail for everyone, retries add at most `ratio` to the load instead of
 * multiplying it by `maxAttempts`: a refused retry returns the call's own
 * failure at once.
 *
 * Metrics `bulwark.retry_budget.*` (attribute `name`) are registered in the
 * creating fiber's `MetricRegistry` and removed when the scope closes.
 *
 * **Example** (A budget shared by two policies)
 *
 * ```ts
 * import { Retry } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const budget = yield* Retry.budget({ name: "backend", ratio: 0.2, minPerSecond: 10 })
 *   const reads = Retry.policy({ maxAttempts: 4, budget })
 *   const writes = Retry.policy({ maxAttempts: 2, budget })
 *   return [reads, writes]
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 * @category budget
 */
export const budget = (options?: BudgetOptions): Effect.Effect<Budget, InvalidOptions, Scope.Scope> =>
  Effect.flatMap(decodeBudget(options ?? {}), (decoded) =>
    Effect.withFiber((fiber) => {
      const state = new internal.BudgetState(
        decoded.name ?? internal.unnamed,
        decoded.ratio ?? 0.2,
        decoded.minPerSecond ?? 10,
        Duration.toMillis(decoded.ttl ?? Duration.seconds(10)),
        fiber.getRef(Clock.Clock)
      )
      const registrations = internal.registerBudgetMetrics(fiber.context, state)
      const self = Object.create(BudgetProto)
      self.name = state.name
      self.state = state
      return Effect.as(
        Effect.addFinalizer(() => Effect.sync(() => registrations.forEach((registration) => registration.remove()))),
        self as Budget
      )
    }))

/**
 * Builds a budget as a service, for policies built in other layers.
 *
 * @since 0.1.0
 * @category budget
 */
export const budgetLayer = <I>(key: Context.Key<I, Budget>, options?: BudgetOptions): Layer.Layer<I, InvalidOptions> =>
  Layer.effect(key, budget(options))

/**
 * A point-in-time view of a budget.
 *
 * @since 0.1.0
 * @category budget
 */
export interface BudgetSnapshot {
  readonly name: string
  readonly ratio: number
  readonly minPerSecond: number
  readonly ttl: Duration.Duration
  /** Retries the budget would allow now (may be fractional). */
  readonly balance: number
  /** Calls that deposited, since creation. */
  readonly deposits: number
  /** Retries allowed, since creation. */
  readonly withdrawals: number
  /** Retries refused, since creation. */
  readonly refused: number
}

/**
 * Takes a {@link BudgetSnapshot} of a budget.
 *
 * @since 0.1.0
 * @category budget
 */
export const budgetStats = (budget: Budget): Effect.Effect<BudgetSnapshot> =>
  Effect.withFiber((fiber) => {
    const state = budget.state
    return Effect.succeed({
      name: state.name,
      ratio: state.ratio,
      minPerSecond: state.minPerSecond,
      ttl: Duration.millis(state.ttlMs),
      balance: state.balance(fiber.getRef(Clock.Clock).currentTimeMillisUnsafe()),
      deposits: state.deposits,
      withdrawals: state.withdrawals,
      refused: state.refused
    })
  })

// -----------------------------------------------------------------------------
// observability
// -----------------------------------------------------------------------------

/**
 * A point-in-time view of a retry instance's counters, cumulative since
 * creation.
 *
 * @since 0.1.0
 * @category models
 */
export interface Snapshot {
  readonly name: string
  /** Clock time of the snapshot, epoch milliseconds. */
  readonly at: number
  /** Guarded calls (first attempts). */
  readonly calls: number
  /** Attempts in all: calls plus retries. */
  readonly attempts: number
  /** Retries started. */
  readonly retries: number
  /** Calls that succeeded (counted by `guard` only). */
  readonly succeeded: number
  /** Calls that succeeded after at least one retry (counted by `guard` only). */
  readonly succeededAfterRetry: number
  /** Calls returned failed because the policy allowed no more retries. */
  readonly exhausted: Readonly<Record<"MaxAttempts" | "MaxElapsed", number>>
  /** Retries refused by the budget. */
  readonly budgetRefused: number
  /** Typed failures the policy's `while` declined. */
  readonly notRetryable: number
  /** Sum of the delays before retries. */
  readonly totalDelay: Duration.Duration
}

const withRetry = <I, A, E, R>(
  retry: RetryOrKey<any, I>,
  f: (retry: Retry) => Effect.Effect<A, E, R>
): Effect.Effect<A, E, R | I> => isRetry(retry) ? f(retry) : Effect.flatMap(retry, f)

/**
 * Takes a {@link Snapshot} of a retry instance's counters.
 *
 * **Example** (Reading stats)
 *
 * ```ts
 * import { Retry } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * declare const retry: Retry.Retry
 * const log = Effect.gen(function*() {
 *   const s = yield* Retry.stats(retry)
 *   yield* Effect.log(`${s.retries} retries for ${s.calls} calls, ${s.budgetRefused} refused by the budget`)
 * })
 * ```
 *
 * @since 0.1.0
 * @category observability
 */
export const stats = <I = never>(retry: RetryOrKey<any, I>): Effect.Effect<Snapshot, never, I> =>
  withRetry(retry, (r) =>
    Effect.withFiber((fiber) => {
      const s = r.state
      return Effect.succeed({
        name: s.name,
        at: fiber.getRef(Clock.Clock).currentTimeMillisUnsafe(),
        calls: s.calls,
        attempts: s.attempts,
        retries: s.retries,
        succeeded: s.succeeded,
        succeededAfterRetry: s.succeededAfterRetry,
        exhausted: { MaxAttempts: s.exhaustedMaxAttempts, MaxElapsed: s.exhaustedMaxElapsed },
        budgetRefused: s.budgetRefused,
        notRetryable: s.notRetryable,
        totalDelay: Duration.millis(s.totalDelayMs)
      })
    }))

/**
 * What a retry instance reports on its {@link events} stream.
 *
 * @since 0.1.0
 * @category events
 */
export type Event = Event.Retrying | Event.Exhausted | Event.BudgetRefused

/**
 * @since 0.1.0
 * @category events
 */
export declare namespace Event {
  /** Attempt `attempt` failed; the next one starts after `delay`. */
  export interface Retrying {
    readonly _tag: "Retrying"
    readonly name: string
    readonly attempt: number
    readonly delay: Duration.Duration
  }
  /** The call failed after `attempts` attempts: the policy allowed no more. */
  export interface Exhausted {
    readonly _tag: "Exhausted"
    readonly name: string
    readonly attempts: number
    readonly reason: "MaxAttempts" | "MaxElapsed"
  }
  /** The budget refused a retry after `attempts` attempts; the call's failure was returned. */
  export interface BudgetRefused {
    readonly _tag: "BudgetRefused"
    readonly name: string
    readonly attempts: number
  }
}

/**
 * A stream of what the instance decides, from the moment it is consumed.
 * Costs nothing while nobody listens; a slow consumer loses the oldest events
 * beyond `bufferSize` (default 4096). The stream ends when the instance's
 * scope closes.
 *
 * **Example** (Logging retries)
 *
 * ```ts
 * import { Retry } from "@bulwark/core"
 * import { Duration, Effect, Stream } from "effect"
 *
 * declare const retry: Retry.Retry
 * const watch = Retry.events(retry).pipe(
 *   Stream.filter((e) => e._tag === "Retrying"),
 *   Stream.runForEach((e) => Effect.log(`attempt ${e.attempt} failed, retrying in ${Duration.format(e.delay)}`))
 * )
 * ```
 *
 * @since 0.1.0
 * @category observability
 */
export const events = <I = never>(
  retry: RetryOrKey<any, I>,
  options?: { readonly bufferSize?: number | undefined }
): Stream.Stream<Event, never, I> =>
  isRetry(retry)
    ? retry.state.hub.stream(options?.bufferSize ?? 4096)
    : Stream.unwrap(Effect.map(retry, (r: Retry) => r.state.hub.stream(options?.bufferSize ?? 4096)))
