/**
 * A policy composes the primitives into one guard, in an order that is known
 * to work: one `Policy.guard` instead of seven nested ones, an error type that
 * names exactly the rejections it can raise, and a description of what runs
 * around the call.
 *
 * **Details**
 *
 * The canonical order, outermost first (see {@link canonicalOrder} and
 * docs/pipeline.md for the reasons and how other libraries disagree):
 *
 * 1. `fallback`: sees every failure, rejections and timeouts included.
 * 2. `timeout`: the deadline of the whole call, queueing and backoff included.
 * 3. `hedge`: each hedged attempt passes every stage below on its own, so it
 *    takes its own slot and runs its own retries: hedging 2 attempts of a
 *    3-attempt retry can make 6 calls to the dependency.
 * 4. `bulkhead`: one slot per call, held across its retries, so retries
 *    cannot multiply the concurrency and a `BulkheadFull` is final.
 * 5. `retry`: honours the `retryAfter` of a `CircuitOpen` or `RateLimited`
 *    from the stages inside it, and never starts an attempt after `timeout`.
 * 6. `rateLimiter`: one permit per attempt, as the dependency sees attempts.
 * 7. `circuitBreaker`: checked last, so an admitted half-open probe is never
 *    rejected by a later stage; sees every attempt's outcome.
 * 8. `attemptTimeout`: inside the breaker, so a hung attempt counts as a
 *    failure instead of an interruption the breaker ignores.
 *
 * An explicit `order` replaces it. Orders known to misbehave give a
 * {@link Warning} (logged by default, or an `InvalidOptions` with
 * `warnings: "fail"`); an order that leaves out or repeats a stage is an
 * `InvalidOptions`.
 *
 * **Example** (A payments policy)
 *
 * ```ts
 * import { Bulkhead, CircuitBreaker, Policy, Retry } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * declare const chargeCard: Effect.Effect<string, Error>
 *
 * const program = Effect.gen(function*() {
 *   const payments = yield* Policy.make({
 *     name: "payments",
 *     timeout: "5 seconds",
 *     bulkhead: yield* Bulkhead.make({ name: "payments", maxConcurrent: 10 }),
 *     retry: Retry.policy({ maxAttempts: 3 }),
 *     circuitBreaker: yield* CircuitBreaker.make({
 *       name: "payments",
 *       trip: CircuitBreaker.consecutive(5),
 *       openFor: "30 seconds"
 *     }),
 *     attemptTimeout: "1 second"
 *   })
 *   // E = Error | TimeoutExceeded | BulkheadFull | CircuitOpen
 *   return yield* chargeCard.pipe(Policy.guard(payments))
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 */
import { Cause, Clock, Config, Context, Duration, Effect, Exit, Layer, Schedule, Schema, SchemaIssue, SchemaTransformation, Scope } from "effect"
import { type Pipeable, pipeArguments } from "effect/Pipeable"
import * as Stream from "effect/Stream"
import * as Bulkhead from "./Bulkhead.ts"
import * as CircuitBreaker from "./CircuitBreaker.ts"
import type * as CircuitBreakerStore from "./CircuitBreakerStore.ts"
import * as Hedge from "./Hedge.ts"
import { EventHub } from "./internal/events.ts"
import { Deadline } from "./internal/retry.ts"
import * as tracing from "./internal/tracing.ts"
import { pullCounter } from "./internal/metrics.ts"
import { decodeOptions, Name, NonNegativeInt, PositiveDuration, PositiveInt } from "./internal/options.ts"
import { InvalidOptions } from "./InvalidOptions.ts"
import { OnStoreError } from "./Store.ts"
import * as RateLimiter from "./RateLimiter.ts"
import type * as RateLimiterStore from "./RateLimiterStore.ts"
import * as Retry from "./Retry.ts"
import * as Timeout from "./Timeout.ts"

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: "~@bulwark/core/Policy" = "~@bulwark/core/Policy"

// -----------------------------------------------------------------------------
// stages and order
// -----------------------------------------------------------------------------

/**
 * The stages a policy can have.
 *
 * @since 0.1.0
 * @category order
 */
export const Stage = Schema.Literals([
  "fallback",
  "timeout",
  "hedge",
  "bulkhead",
  "retry",
  "rateLimiter",
  "circuitBreaker",
  "attemptTimeout"
])

/**
 * @since 0.1.0
 * @category order
 */
export type Stage = typeof Stage.Type

/**
 * The order used when the options give none, outermost first. A policy uses
 * the stages it has, in this order.
 *
 * @since 0.1.0
 * @category order
 */
export const canonicalOrder: ReadonlyArray<Stage> = Stage.literals

/**
 * The known ways an order misbehaves. Each comes with a message that says
 * what goes wrong.
 *
 * - `BulkheadInsideRetry`: every retry queues again behind newer calls and a
 *   `BulkheadFull` is retried, adding load to a saturated bulkhead.
 * - `RetryIgnoresRetryAfter`: a retry given as a plain `Schedule` outside a
 *   breaker or rate limiter retries their rejections on its own timing
 *   instead of their `retryAfter`.
 * - `BreakerBeforeAdmission`: the breaker counts every rejection of the
 *   bulkhead or rate limiter inside it as a failure of the dependency (a
 *   saturated bulkhead alone can open the circuit), and a half-open probe it
 *   admits can be rejected before reaching the dependency.
 * - `AttemptTimeoutOutsideBreaker`: a timed-out attempt reaches the breaker
 *   as an interruption, which it ignores: a hung dependency never trips it.
 * - `AttemptTimeoutOutsideRetry`: the attempt timeout bounds all attempts
 *   together.
 * - `TimeoutInsideRetry`: the overall timeout bounds each attempt, not the
 *   call.
 * - `FallbackNotOutermost`: the stages outside the fallback never see a
 *   failure (a retry outside it never retries, a breaker never trips).
 * - `HedgeInsideAdmission`: hedged attempts share one slot, permit or probe,
 *   so the extra attempts escape the cap.
 * - `AttemptTimeoutNotShorter`: the attempt timeout is not shorter than the
 *   overall timeout, so it never fires.
 *
 * @since 0.1.0
 * @category order
 */
export const WarningCode = Schema.Literals([
  "BulkheadInsideRetry",
  "RetryIgnoresRetryAfter",
  "BreakerBeforeAdmission",
  "AttemptTimeoutOutsideBreaker",
  "AttemptTimeoutOutsideRetry",
  "TimeoutInsideRetry",
  "FallbackNotOutermost",
  "HedgeInsideAdmission",
  "AttemptTimeoutNotShorter"
])

/**
 * @since 0.1.0
 * @category order
 */
export type WarningCode = typeof WarningCode.Type

/**
 * A configuration that works but is known to misbehave. `Policy.make` logs
 * each one at warning level (or fails with `warnings: "fail"`), and
 * {@link describe} lists them.
 *
 * @since 0.1.0
 * @category order
 */
export class Warning extends Schema.TaggedClass<Warning>()("PolicyWarning", {
  code: WarningCode,
  message: Schema.String
}) {}

// -----------------------------------------------------------------------------
// models
// -----------------------------------------------------------------------------

/**
 * A composed policy. `E` is the union of the errors its stages can raise,
 * `R` the services its fallback or retry schedule need, `F` the type of its
 * fallback (`never` without one). Build one with {@link make},
 * {@link fromSettings} or a Layer.
 *
 * @since 0.1.0
 * @category models
 */
export interface Policy<out E = never, out R = never, out F = never> extends Pipeable {
  readonly [TypeId]: {
    readonly _E: (_: never) => E
    readonly _R: (_: never) => R
    readonly _F: (_: never) => F
  }
  readonly name: string
  /** The stages, outermost first. */
  readonly order: ReadonlyArray<Stage>
  readonly warnings: ReadonlyArray<Warning>
  /** The instances the policy guards with, to read their own stats and events. */
  readonly components: Components
  /** @internal */
  readonly state: PolicyState
}

/**
 * The primitive instances inside a policy.
 *
 * @since 0.1.0
 * @category models
 */
export interface Components {
  readonly bulkhead?: Bulkhead.Bulkhead | undefined
  readonly circuitBreaker?: CircuitBreaker.CircuitBreaker | undefined
  readonly rateLimiter?: RateLimiter.RateLimiter | undefined
  /** Present when the retry is a `Retry.Policy` (made into an instance named after the policy) or an instance. */
  readonly retry?: Retry.Retry<any> | undefined
}

/**
 * The rejections a policy can add: every stage's error.
 *
 * @since 0.1.0
 * @category models
 */
export type Rejection = Bulkhead.BulkheadFull | CircuitBreaker.CircuitOpen | RateLimiter.RateLimited | Timeout.TimeoutExceeded

/**
 * What a fallback may be: an effect that replaces any typed failure, or a
 * function of that failure.
 *
 * @since 0.1.0
 * @category options
 */
export type FallbackInput = Effect.Effect<any, any, any> | ((error: unknown) => Effect.Effect<any, any, any>)

/**
 * A primitive given to a policy: the instance, its service key (resolved when
 * the policy is made), or the effect that makes it (run in the policy's
 * scope, as in `bulkhead: Bulkhead.make({ ... })`).
 *
 * @since 0.1.0
 * @category options
 */
export type Component<A> = A | Context.Key<any, A> | Effect.Effect<A, InvalidOptions, Scope.Scope>

type RetryInput =
  | Retry.Policy<any>
  | Retry.Retry<any>
  | Context.Key<any, Retry.Retry<any>>
  | Effect.Effect<Retry.Retry<any>, InvalidOptions, Scope.Scope>
  | Schedule.Schedule<any, any, never, any>

/**
 * The options of {@link make}. The primitives may be given as instances,
 * service keys (resolved when the policy is made, so `make` and `layer`
 * require them) or the effects that make them (run in the policy's scope):
 * see {@link Component}.
 *
 * @since 0.1.0
 * @category options
 */
export interface Options {
  /** Appears in stats, metric labels, spans, logs and the timeouts' errors. */
  readonly name: string
  /** The deadline of the whole call: a finite duration > 0. */
  readonly timeout?: Duration.Input | undefined
  /** The deadline of each attempt: a finite duration > 0. */
  readonly attemptTimeout?: Duration.Input | undefined
  /**
   * A `Retry.Policy` (made into a `Retry` instance named after the policy),
   * a `Retry` instance, key or the effect that makes one, or an Effect
   * `Schedule` (which does not honour `retryAfter`). Inside `timeout`, a
   * `Retry` never starts an attempt past the call's deadline: it stops at
   * once with the last error.
   */
  readonly retry?: RetryInput | undefined
  readonly rateLimiter?: Component<RateLimiter.RateLimiter> | undefined
  readonly bulkhead?: Component<Bulkhead.Bulkhead> | undefined
  /** A breaker without `keys`: a policy has no per-call key. */
  readonly circuitBreaker?: Component<CircuitBreaker.CircuitBreaker> | undefined
  readonly hedge?: Omit<Hedge.Options, "name"> | undefined
  /** Replaces any typed failure that reaches it; its own errors are the policy's. */
  readonly fallback?: FallbackInput | undefined
  /** The stages, outermost first; every configured stage exactly once. Default {@link canonicalOrder}. */
  readonly order?: ReadonlyArray<Stage> | undefined
  /** What to do with {@link Warning}s: `"log"` (default), `"fail"` (an `InvalidOptions`), `"ignore"`. */
  readonly warnings?: "log" | "fail" | "ignore" | undefined
}

type Given<X, T> = [Exclude<X, undefined>] extends [never] ? never : T
type KeyId<X> = X extends Context.Key<infer I, any> ? I : never

/**
 * The error union a policy built from options `O` adds to the calls it
 * guards: exactly the errors of the stages it has.
 *
 * @since 0.1.0
 * @category type-level
 */
export type ErrorOf<O> =
  | (O extends { readonly bulkhead: infer X } ? Given<X, Bulkhead.BulkheadFull> : never)
  | (O extends { readonly circuitBreaker: infer X } ? Given<X, CircuitBreaker.CircuitOpen> : never)
  | (O extends { readonly rateLimiter: infer X } ? Given<X, RateLimiter.RateLimited> : never)
  | (O extends { readonly timeout: infer X } ? Given<X, Timeout.TimeoutExceeded> : never)
  | (O extends { readonly attemptTimeout: infer X } ? Given<X, Timeout.TimeoutExceeded> : never)

/**
 * The services the calls guarded by a policy built from `O` need: those of
 * its fallback and retry schedule.
 *
 * @since 0.1.0
 * @category type-level
 */
export type ServicesOf<O> =
  | (O extends { readonly retry: infer X } ? X extends Schedule.Schedule<any, any, any, infer R> ? R : never : never)
  | (O extends { readonly fallback: infer X } ? X extends Effect.Effect<any, any, infer R> ? R
      : X extends (error: any) => Effect.Effect<any, any, infer R> ? R
      : never
      : never)

/**
 * The services `make` needs to resolve the keys given in `O`.
 *
 * @since 0.1.0
 * @category type-level
 */
export type KeysOf<O> =
  | (O extends { readonly bulkhead: infer X } ? KeyId<X> : never)
  | (O extends { readonly circuitBreaker: infer X } ? KeyId<X> : never)
  | (O extends { readonly rateLimiter: infer X } ? KeyId<X> : never)
  | (O extends { readonly retry: infer X } ? X extends Schedule.Schedule<any, any, any, any> ? never : KeyId<X> : never)

/**
 * The fallback's effect type in `O`, `never` without one.
 *
 * @since 0.1.0
 * @category type-level
 */
export type FallbackOf<O> = O extends { readonly fallback: infer X } ?
  X extends Effect.Effect<any, any, any> ? X
  : X extends (error: any) => infer Fx ? Fx
  : never
  : never

/**
 * A call guarded by policy `P`.
 *
 * @since 0.1.0
 * @category type-level
 */
export type Guarded<P, A, E, R> = P extends Policy<infer PE, infer PR, infer F> ?
  [F] extends [never] ? Effect.Effect<A, E | PE, R | PR>
  : F extends Effect.Effect<infer A2, infer E2, any> ? Effect.Effect<A | A2, E2, R | PR>
  : never
  : never

/**
 * A policy, or a service key that resolves to one.
 *
 * @since 0.1.0
 * @category models
 */
export type PolicyOrKey<P extends Policy<any, any, any> = Policy<any, any, any>, I = never> = P | Context.Key<I, P>

// -----------------------------------------------------------------------------
// state
// -----------------------------------------------------------------------------

/**
 * Reasons of the failure counters: the rejections, then any other typed
 * error, then defects (a fallback sees typed failures only, so its counters
 * have no `Defect`).
 *
 * @since 0.1.0
 * @category observability
 */
export const Reason = Schema.Literals(["BulkheadFull", "CircuitOpen", "RateLimited", "TimeoutExceeded", "Error", "Defect"])

/**
 * @since 0.1.0
 * @category observability
 */
export type Reason = typeof Reason.Type

const reasonOfError = (error: unknown): Reason => {
  if (typeof error === "object" && error !== null && "_tag" in error) {
    switch ((error as { readonly _tag: unknown })._tag) {
      case "BulkheadFull":
      case "CircuitOpen":
      case "RateLimited":
      case "TimeoutExceeded":
        return (error as { readonly _tag: Reason })._tag
    }
  }
  return "Error"
}

const reasonOfCause = (cause: Cause.Cause<unknown>): Reason | undefined => {
  for (const reason of cause.reasons) {
    if (Cause.isFailReason(reason)) return reasonOfError(reason.error)
  }
  for (const reason of cause.reasons) {
    if (Cause.isDieReason(reason)) return "Defect"
  }
  return undefined
}

const zeroByReason = (): Record<Reason, number> => ({
  BulkheadFull: 0,
  CircuitOpen: 0,
  RateLimited: 0,
  TimeoutExceeded: 0,
  Error: 0,
  Defect: 0
})

/** @internal */
export class PolicyState {
  calls = 0
  succeeded = 0
  interrupted = 0
  readonly failed = zeroByReason()
  readonly fallbacks = zeroByReason()
  readonly hub = new EventHub<Event>()
  readonly name: string
  /** The stages composed; set once by `make`, after the stages that count into this state are built. */
  run: Wrap = (self) => self
  /** The options as decoded, for `describe`. */
  readonly decoded: Decoded
  constructor(name: string, decoded: Decoded) {
    this.name = name
    this.decoded = decoded
  }
}

// -----------------------------------------------------------------------------
// options
// -----------------------------------------------------------------------------

const declared = <A>(is: (u: unknown) => u is A, expected: string) => Schema.declare(is, { expected })

const isRetryInput = (u: unknown): u is RetryInput =>
  Retry.isPolicy(u) || Retry.isRetry(u) || Context.isKey(u) || Schedule.isSchedule(u) || Effect.isEffect(u)

const isFallbackInput = (u: unknown): u is FallbackInput => typeof u === "function" || Effect.isEffect(u)

/**
 * The options of {@link make} as a Schema: every bad field is reported in
 * one `InvalidOptions`.
 *
 * @since 0.1.0
 * @category options
 */
export const Options = Schema.Struct({
  name: Name,
  timeout: Schema.optional(PositiveDuration),
  attemptTimeout: Schema.optional(PositiveDuration),
  retry: Schema.optional(declared(isRetryInput, "a Retry.policy, a Retry instance, key or effect, or a Schedule")),
  rateLimiter: Schema.optional(
    declared(
      (u): u is unknown => RateLimiter.isRateLimiter(u) || Effect.isEffect(u),
      "a RateLimiter, its key, or an effect that makes one"
    )
  ),
  bulkhead: Schema.optional(
    declared((u): u is unknown => Bulkhead.isBulkhead(u) || Effect.isEffect(u), "a Bulkhead, its key, or an effect that makes one")
  ),
  circuitBreaker: Schema.optional(
    declared(
      (u): u is unknown => CircuitBreaker.isCircuitBreaker(u) || Effect.isEffect(u),
      "a CircuitBreaker, its key, or an effect that makes one"
    )
  ),
  hedge: Schema.optional(Schema.Struct({ after: PositiveDuration, maxAttempts: PositiveInt })),
  fallback: Schema.optional(declared(isFallbackInput, "an Effect or a function (error) => Effect")),
  order: Schema.optional(Schema.Array(Stage)),
  warnings: Schema.optional(Schema.Literals(["log", "fail", "ignore"]))
})

const decode = decodeOptions("Policy", Options)

type Decoded = typeof Options.Type

const configuredStages = (o: Decoded): Array<Stage> =>
  canonicalOrder.filter((stage) => o[stage] !== undefined)

/** The order problems that make the options invalid, as `order: rule` lines. */
const orderProblems = (o: Decoded): Array<string> => {
  if (o.order === undefined) return []
  const problems: Array<string> = []
  const seen = new Set<Stage>()
  for (const stage of o.order) {
    if (seen.has(stage)) problems.push(`order: "${stage}" appears more than once`)
    seen.add(stage)
    if (o[stage] === undefined) problems.push(`order: "${stage}" is listed but not configured`)
  }
  for (const stage of configuredStages(o)) {
    if (!seen.has(stage)) problems.push(`order: "${stage}" is configured but missing from the order`)
  }
  return problems
}

/**
 * The warnings of an order. Pure, so it can be checked without making a
 * policy (and tested over every order).
 *
 * @since 0.1.0
 * @category order
 */
export const check = (
  order: ReadonlyArray<Stage>,
  facts?: {
    /** True when the retry is a plain `Schedule`. */
    readonly retryIsSchedule?: boolean | undefined
    readonly timeout?: Duration.Input | undefined
    readonly attemptTimeout?: Duration.Input | undefined
  }
): ReadonlyArray<Warning> => {
  const at = (stage: Stage) => order.indexOf(stage)
  const has = (stage: Stage) => at(stage) >= 0
  const outside = (outer: Stage, inner: Stage) => has(outer) && has(inner) && at(outer) < at(inner)
  const warnings: Array<Warning> = []
  const warn = (code: WarningCode, message: string) => warnings.push(new Warning({ code, message }))
  if (outside("retry", "bulkhead")) {
    warn(
      "BulkheadInsideRetry",
      "bulkhead inside retry: every retry queues again behind newer calls, waiting out its backoff without a slot, and a BulkheadFull is itself retried, adding load to a saturated bulkhead; put the bulkhead outside the retry"
    )
  }
  if (facts?.retryIsSchedule === true) {
    for (const inner of ["circuitBreaker", "rateLimiter"] as const) {
      if (outside("retry", inner)) {
        warn(
          "RetryIgnoresRetryAfter",
          `a Schedule retry outside the ${inner} retries its rejections on the schedule's timing, not their retryAfter; use Retry.policy, which honours it`
        )
      }
    }
  }
  for (const admission of ["bulkhead", "rateLimiter"] as const) {
    if (outside("circuitBreaker", admission)) {
      warn(
        "BreakerBeforeAdmission",
        `circuitBreaker outside the ${admission}: the breaker counts every rejection of the ${admission} as a failure of the dependency (a saturated ${admission} alone can open the circuit), and a half-open probe it admits can be rejected before it reaches the dependency; check the ${admission} first`
      )
    }
  }
  if (outside("attemptTimeout", "circuitBreaker")) {
    warn(
      "AttemptTimeoutOutsideBreaker",
      "attemptTimeout outside the circuitBreaker: a timed-out attempt reaches the breaker as an interruption, which it ignores, so a hung dependency never trips it"
    )
  }
  if (outside("attemptTimeout", "retry")) {
    warn("AttemptTimeoutOutsideRetry", "attemptTimeout outside the retry bounds all attempts together, not each one")
  }
  if (outside("retry", "timeout")) {
    warn("TimeoutInsideRetry", "timeout inside the retry bounds each attempt, not the whole call; use attemptTimeout for that")
  }
  if (has("fallback") && at("fallback") > 0) {
    warn(
      "FallbackNotOutermost",
      `fallback inside ${order.slice(0, at("fallback")).join(", ")}: they never see a failure (a retry never retries, a breaker never trips)`
    )
  }
  for (const admission of ["bulkhead", "rateLimiter", "circuitBreaker"] as const) {
    if (outside(admission, "hedge")) {
      warn(
        "HedgeInsideAdmission",
        `hedge inside the ${admission}: the hedged attempts of a call share one admission, so the extra attempts escape it`
      )
    }
  }
  if (facts?.timeout !== undefined && facts.attemptTimeout !== undefined) {
    const total = Duration.fromInputUnsafe(facts.timeout)
    const attempt = Duration.fromInputUnsafe(facts.attemptTimeout)
    if (Duration.isGreaterThanOrEqualTo(attempt, total)) {
      warn(
        "AttemptTimeoutNotShorter",
        `attemptTimeout (${Duration.format(attempt)}) is not shorter than timeout (${Duration.format(total)}), so it never fires`
      )
    }
  }
  return warnings
}

// -----------------------------------------------------------------------------
// constructors
// -----------------------------------------------------------------------------

const PolicyProto = {
  [TypeId]: { _E: (_: never) => _, _R: (_: never) => _, _F: (_: never) => _ },
  pipe() {
    return pipeArguments(this, arguments)
  },
  toJSON(this: Policy<unknown, unknown, unknown>) {
    return { _id: "Policy", name: this.name, order: this.order, warnings: this.warnings.map((w) => w.code) }
  }
}

/**
 * Is this value a policy?
 *
 * @since 0.1.0
 * @category guards
 */
export const isPolicy = (u: unknown): u is Policy<unknown, unknown, unknown> =>
  typeof u === "object" && u !== null && TypeId in u

type Wrap = (self: Effect.Effect<any, any, any>) => Effect.Effect<any, any, any>

interface Resolved {
  readonly bulkhead?: Bulkhead.Bulkhead | undefined
  readonly circuitBreaker?: CircuitBreaker.CircuitBreaker | undefined
  readonly rateLimiter?: RateLimiter.RateLimiter | undefined
  readonly retry?: Retry.Retry<any> | Schedule.Schedule<any, any, never, any> | undefined
}

// A service key is itself an effect (of its service), so keys and effects that
// make the primitive resolve alike; only an instance is taken as it is.
const resolve = <A>(value: unknown, isInstance: (u: unknown) => boolean): Effect.Effect<A | undefined, InvalidOptions, Scope.Scope> =>
  value === undefined ? Effect.undefined : isInstance(value) ? Effect.succeed(value as A) : (value as Effect.Effect<A, InvalidOptions, Scope.Scope>)

const resolveRetry = (
  name: string,
  retry: RetryInput | undefined
): Effect.Effect<Retry.Retry<any> | Schedule.Schedule<any, any, never, any> | undefined, InvalidOptions, Scope.Scope> => {
  if (retry === undefined) return Effect.undefined
  // An instance of its own gives the policy's retries stats, metrics and events.
  if (Retry.isPolicy(retry)) return Retry.make({ ...retry.options, name })
  if (Schedule.isSchedule(retry)) return Effect.succeed(retry)
  return resolve<Retry.Retry<any>>(retry, Retry.isRetry)
}

const stageWrap = (
  order: ReadonlyArray<Stage>,
  stage: Stage,
  name: string,
  decoded: Decoded,
  resolved: Resolved,
  state: PolicyState
): Wrap => {
  switch (stage) {
    case "fallback": {
      const fallback = decoded.fallback as FallbackInput
      const handle = typeof fallback === "function" ? fallback : () => fallback
      return (self) =>
        Effect.catch(self, (error) => {
          const reason = reasonOfError(error)
          state.fallbacks[reason]++
          if (state.hub.active) state.hub.emit({ _tag: "FallbackUsed", name, reason })
          return handle(error)
        })
    }
    case "timeout": {
      const guard = Timeout.guard({ name, after: decoded.timeout! })
      // The policy's retry stops at once, with the real error, when its next
      // attempt would start past the deadline, instead of sleeping into the
      // timeout; time spent queueing before the retry counts. Providing the
      // deadline copies the call's context (about a microsecond), so only a
      // policy with a retry inside its timeout pays for it.
      if (!(order.indexOf("retry") > order.indexOf("timeout"))) return guard
      const ms = Duration.toMillis(decoded.timeout!)
      return (self) =>
        Effect.withFiber((fiber) => {
          const deadline = Math.min(fiber.getRef(Deadline), fiber.getRef(Clock.Clock).currentTimeMillisUnsafe() + ms)
          return guard(Effect.provideService(self, Deadline, deadline))
        })
    }
    case "attemptTimeout":
      return Timeout.guard({ name: `${name}.attempt`, after: decoded.attemptTimeout! })
    case "hedge":
      return Hedge.guard({ name, ...decoded.hedge! })
    case "bulkhead":
      return Bulkhead.guard(resolved.bulkhead!)
    case "rateLimiter":
      return RateLimiter.guard(resolved.rateLimiter!)
    case "circuitBreaker":
      return CircuitBreaker.guard(resolved.circuitBreaker!)
    case "retry": {
      const retry = resolved.retry!
      if (Retry.isRetry(retry)) return Retry.guard(retry)
      return (self) => Effect.retry(self, retry as Schedule.Schedule<any, any, never, never>)
    }
  }
}

const compose = (order: ReadonlyArray<Stage>, wraps: ReadonlyArray<Wrap>): Wrap => {
  let run: Wrap = (self) => self
  for (let i = order.length - 1; i >= 0; i--) {
    const inner = run
    const wrap = wraps[i]
    run = (self) => wrap(inner(self))
  }
  return run
}

const registerMetrics = (context: Context.Context<never>, state: PolicyState) => {
  const attributes = { name: state.name }
  const registrations = [
    pullCounter(context, "bulwark.policy.calls", "Calls guarded by the policy", attributes, () => state.calls),
    pullCounter(context, "bulwark.policy.succeeded", "Calls that succeeded (fallbacks included)", attributes, () =>
      state.succeeded),
    pullCounter(context, "bulwark.policy.interrupted", "Calls interrupted from outside", attributes, () =>
      state.interrupted)
  ]
  for (const reason of Reason.literals) {
    registrations.push(
      pullCounter(context, "bulwark.policy.failed", "Calls that failed, by the reason that came out", {
        ...attributes,
        reason
      }, () => state.failed[reason])
    )
    // A fallback sees typed failures only: there is no Defect series.
    if (reason !== "Defect") {
      registrations.push(
        pullCounter(context, "bulwark.policy.fallbacks", "Failures a fallback replaced, by reason", {
          ...attributes,
          reason
        }, () => state.fallbacks[reason])
      )
    }
  }
  return registrations
}


/**
 * Makes a policy. Keys given for the primitives are resolved now, so the
 * policy's guard adds no requirement of its own. A `Retry.Policy` becomes a
 * `Retry` instance named after the policy (with stats and metrics); inside
 * `timeout` it stops at once when its next attempt would start past the
 * call's deadline. Fails with `InvalidOptions` for bad
 * options, a bad order, a keyed breaker, or any {@link Warning} when
 * `warnings: "fail"`.
 *
 * **Example** (Canonical order, warnings, description)
 *
 * ```ts
 * import { Bulkhead, Policy } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const policy = yield* Policy.make({
 *     name: "search",
 *     timeout: "2 seconds",
 *     bulkhead: yield* Bulkhead.make({ name: "search", maxConcurrent: 8 }),
 *     fallback: Effect.succeed([])
 *   })
 *   console.log(Policy.describe(policy).text)
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <const O extends Options>(
  options: O
): Effect.Effect<Policy<ErrorOf<O>, ServicesOf<O>, FallbackOf<O>>, InvalidOptions, Scope.Scope | KeysOf<O>> =>
  Effect.gen(function*() {
    const decoded = yield* decode(options)
    const name = decoded.name
    const invalid = (lines: ReadonlyArray<string>) =>
      Effect.fail(new InvalidOptions({ primitive: "Policy", name, message: lines.join("\n") }))
    const problems = orderProblems(decoded)
    if (problems.length > 0) return yield* invalid(problems)
    const order = decoded.order ?? configuredStages(decoded)
    const warnings = check(order, {
      retryIsSchedule: Schedule.isSchedule(decoded.retry),
      timeout: decoded.timeout,
      attemptTimeout: decoded.attemptTimeout
    })
    const mode = decoded.warnings ?? "log"
    if (mode === "fail" && warnings.length > 0) {
      return yield* invalid(warnings.map((w) => `${w.code === "AttemptTimeoutNotShorter" ? "attemptTimeout" : "order"}: ${w.code}: ${w.message}`))
    }
    const resolved: Resolved = {
      bulkhead: yield* resolve<Bulkhead.Bulkhead>(decoded.bulkhead, Bulkhead.isBulkhead),
      circuitBreaker: yield* resolve<CircuitBreaker.CircuitBreaker>(decoded.circuitBreaker, CircuitBreaker.isCircuitBreaker),
      rateLimiter: yield* resolve<RateLimiter.RateLimiter>(decoded.rateLimiter, RateLimiter.isRateLimiter),
      retry: yield* resolveRetry(name, decoded.retry as RetryInput | undefined)
    }
    if (resolved.circuitBreaker?.keyed === true) {
      return yield* invalid([
        "circuitBreaker: Expected a breaker without keys (a policy has no per-call key); guard keyed calls with CircuitBreaker.guard"
      ])
    }
    if (mode === "log") {
      for (const warning of warnings) {
        yield* Effect.logWarning(`Policy "${name}": ${warning.message}`).pipe(
          Effect.annotateLogs({ "bulwark.policy": name, "bulwark.policy.warning": warning.code })
        )
      }
    }
    const state = new PolicyState(name, decoded)
    state.run = compose(order, order.map((stage) => stageWrap(order, stage, name, decoded, resolved, state)))
    const registrations = yield* Effect.withFiber((fiber) => Effect.succeed(registerMetrics(fiber.context, state)))
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        for (const registration of registrations) registration.remove()
        state.hub.end()
      })
    )
    const policy = Object.create(PolicyProto)
    policy.name = name
    policy.order = order
    policy.warnings = warnings
    policy.components = {
      bulkhead: resolved.bulkhead,
      circuitBreaker: resolved.circuitBreaker,
      rateLimiter: resolved.rateLimiter,
      retry: Retry.isRetry(resolved.retry) ? resolved.retry : undefined
    } satisfies Components
    policy.state = state
    return policy as Policy<ErrorOf<O>, ServicesOf<O>, FallbackOf<O>>
  })

/**
 * Builds a policy as a service.
 *
 * **Example** (A policy as a Layer service)
 *
 * ```ts
 * import { Bulkhead, Policy } from "@bulwark/core"
 * import { Context } from "effect"
 *
 * class Search extends Context.Service<Search, Policy.Policy<Bulkhead.BulkheadFull>>()("app/Search") {}
 *
 * const SearchLive = Policy.layer(Search, {
 *   name: "search",
 *   bulkhead: Bulkhead.make({ name: "search", maxConcurrent: 8 })
 * })
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <I, const O extends Options>(
  key: Context.Key<I, Policy<ErrorOf<O>, ServicesOf<O>, FallbackOf<O>>>,
  options: O | Effect.Effect<O, InvalidOptions, Scope.Scope>
): Layer.Layer<I, InvalidOptions, KeysOf<O>> =>
  Layer.effect(key, Effect.isEffect(options) ? Effect.flatMap(options, make) : make(options as O)) as any

// -----------------------------------------------------------------------------
// guard
// -----------------------------------------------------------------------------

const runGuarded = (policy: Policy<unknown, unknown, unknown>, self: Effect.Effect<any, any, any>) => {
  const state = policy.state
  const run = state.run
  return Effect.withFiber((fiber) => {
    state.calls++
    // A span of its own only under a recording tracer and a caller's span:
    // the stages' events then group under the policy that raised them.
    const guarded = tracing.spanOf(fiber) === undefined
      ? run(self)
      : tracing.withChildSpan("bulwark.policy", { "bulwark.name": state.name }, run(self))
    return Effect.onExit(guarded, (exit) => {
      if (Exit.isSuccess(exit)) {
        state.succeeded++
        return Effect.void
      }
      const reason = reasonOfCause(exit.cause)
      if (reason === undefined) state.interrupted++
      else {
        state.failed[reason]++
        if (state.hub.active) state.hub.emit({ _tag: "Failed", name: state.name, reason })
      }
      return Effect.void
    })
  })
}

/**
 * Runs an effect through every stage of the policy. Without a fallback, `E`
 * gains exactly the errors of the policy's stages; with one, `E` is the
 * fallback's errors. Accepts the policy or a service key for it.
 *
 * **Example** (Guarding calls)
 *
 * ```ts
 * import { Policy } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * declare const chargeCard: Effect.Effect<string, Error>
 * declare const payments: Policy.Policy<Policy.Rejection>
 *
 * chargeCard.pipe(Policy.guard(payments))   // pipeable
 * Policy.guard(chargeCard, payments)        // data-first
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const guard: {
  <P extends Policy<any, any, any>, I = never>(
    policy: PolicyOrKey<P, I>
  ): <A, E, R>(self: Effect.Effect<A, E, R>) => Guarded<P, A, E, R | I>
  <A, E, R, P extends Policy<any, any, any>, I = never>(
    self: Effect.Effect<A, E, R>,
    policy: PolicyOrKey<P, I>
  ): Guarded<P, A, E, R | I>
} = function() {
  if (arguments.length >= 2) return apply(arguments[0], arguments[1])
  const policy = arguments[0]
  return (self: Effect.Effect<any, any, any>) => apply(self, policy)
} as any

const apply = (self: Effect.Effect<any, any, any>, policy: unknown) =>
  isPolicy(policy)
    ? runGuarded(policy, self)
    : Effect.flatMap(policy as Effect.Effect<Policy<unknown, unknown, unknown>>, (p) => runGuarded(p, self))

// -----------------------------------------------------------------------------
// describe
// -----------------------------------------------------------------------------

/**
 * One stage of a description.
 *
 * @since 0.1.0
 * @category describe
 */
export interface StageDescription {
  readonly stage: Stage
  /** What the stage does here, in words. */
  readonly detail: string
}

/**
 * A policy as data and as text.
 *
 * @since 0.1.0
 * @category describe
 */
export interface Description {
  readonly name: string
  /** Outermost first. */
  readonly stages: ReadonlyArray<StageDescription>
  readonly warnings: ReadonlyArray<Warning>
  /** One line per stage, outermost first, then the warnings. */
  readonly text: string
}


const detailOf = (stage: Stage, policy: Policy<unknown, unknown, unknown>, decoded: Decoded): string => {
  const c = policy.components
  const fmt = (d: Duration.Input) => Duration.format(Duration.fromInputUnsafe(d))
  switch (stage) {
    case "fallback":
      return "replaces any typed failure that reaches it"
    case "timeout":
      return `${fmt(decoded.timeout!)} for the whole call`
    case "attemptTimeout":
      return `${fmt(decoded.attemptTimeout!)} per attempt`
    case "hedge":
      return `another attempt after ${fmt(decoded.hedge!.after)}, up to ${decoded.hedge!.maxAttempts} in flight`
    case "bulkhead": {
      const s = c.bulkhead!.state
      return `"${c.bulkhead!.name}": ${s.maxConcurrent} at once, ${s.maxQueue} queued`
    }
    case "rateLimiter":
      return `"${c.rateLimiter!.name}": ${c.rateLimiter!.algorithm._tag}`
    case "circuitBreaker":
      return `"${c.circuitBreaker!.name}"`
    case "retry": {
      const r = c.retry
      if (r === undefined) return "an Effect Schedule (does not honour retryAfter)"
      const cfg = r.config
      const elapsed = cfg.maxElapsedMs === Infinity ? "" : `, none after ${Duration.format(Duration.millis(cfg.maxElapsedMs))}`
      return `up to ${cfg.maxAttempts} attempts, backoff ${Duration.format(Duration.millis(cfg.baseMs))} to ${
        Duration.format(Duration.millis(cfg.maxMs))
      }, ${cfg.jitter === "none" ? "no" : cfg.jitter} jitter${elapsed}`
    }
  }
}

const textOf = (name: string, stages: ReadonlyArray<StageDescription>, warnings: ReadonlyArray<Warning>): string => {
  const width = Math.max(4, ...stages.map((s) => s.stage.length))
  const lines = [`policy "${name}", outermost first:`]
  stages.forEach((s, i) => lines.push(`  ${i + 1}. ${s.stage.padEnd(width)}  ${s.detail}`))
  lines.push(`  ${stages.length + 1}. ${"call".padEnd(width)}  the guarded effect`)
  for (const w of warnings) lines.push(`  warning ${w.code}: ${w.message}`)
  return lines.join("\n")
}

/**
 * The policy's stages, outermost first, as data and as text, with its
 * warnings.
 *
 * **Example** (Printing a policy)
 *
 * ```ts
 * import { Policy } from "@bulwark/core"
 *
 * declare const payments: Policy.Policy<Policy.Rejection>
 * console.log(Policy.describe(payments).text)
 * // policy "payments", outermost first:
 * //   1. timeout         5s for the whole call
 * //   ...
 * ```
 *
 * @since 0.1.0
 * @category describe
 */
export const describe = (policy: Policy<unknown, unknown, unknown>): Description => {
  // Computed now: a bulkhead may have been resized since the policy was made.
  const decoded = policy.state.decoded
  const stages = policy.order.map((stage) => ({ stage, detail: detailOf(stage, policy, decoded) }))
  return { name: policy.name, stages, warnings: policy.warnings, text: textOf(policy.name, stages, policy.warnings) }
}

// -----------------------------------------------------------------------------
// stats and events
// -----------------------------------------------------------------------------

/**
 * The policy's own counters (each primitive inside keeps its own; see
 * {@link Policy.components}).
 *
 * @since 0.1.0
 * @category observability
 */
export interface Snapshot {
  readonly name: string
  readonly calls: number
  /** Succeeded, a fallback's answer included. */
  readonly succeeded: number
  /** Interrupted from outside (a timeout inside the policy is a failure). */
  readonly interrupted: number
  /** Calls that failed, by the reason that came out of the policy. */
  readonly failed: Readonly<Record<Reason, number>>
  /** Failures a fallback replaced, by reason. */
  readonly fallbacks: Readonly<Record<Exclude<Reason, "Defect">, number>>
}

/**
 * A snapshot of the policy's counters.
 *
 * @since 0.1.0
 * @category observability
 */
export const stats = <I = never>(
  policy: PolicyOrKey<Policy<any, any, any>, I>
): Effect.Effect<Snapshot, never, I> =>
  isPolicy(policy)
    ? Effect.sync(() => snapshotOf(policy.state))
    : Effect.map(policy as Effect.Effect<Policy<unknown, unknown, unknown>, never, I>, (p) => snapshotOf(p.state))

const snapshotOf = (s: PolicyState): Snapshot => ({
  name: s.name,
  calls: s.calls,
  succeeded: s.succeeded,
  interrupted: s.interrupted,
  failed: { ...s.failed },
  fallbacks: {
    BulkheadFull: s.fallbacks.BulkheadFull,
    CircuitOpen: s.fallbacks.CircuitOpen,
    RateLimited: s.fallbacks.RateLimited,
    TimeoutExceeded: s.fallbacks.TimeoutExceeded,
    Error: s.fallbacks.Error
  }
})

/**
 * Events of a policy: a call failed, or a fallback replaced a failure. The
 * primitives inside emit their own events.
 *
 * @since 0.1.0
 * @category observability
 */
export type Event =
  | { readonly _tag: "Failed"; readonly name: string; readonly reason: Reason }
  | { readonly _tag: "FallbackUsed"; readonly name: string; readonly reason: Reason }

/**
 * The policy's events as a stream; costs nothing while nobody listens.
 *
 * @since 0.1.0
 * @category observability
 */
export const events = <I = never>(
  policy: PolicyOrKey<Policy<any, any, any>, I>,
  options?: { readonly bufferSize?: number | undefined }
): Stream.Stream<Event, never, I> =>
  isPolicy(policy)
    ? policy.state.hub.stream(options?.bufferSize ?? 4096)
    : Stream.unwrap(
      Effect.map(
        policy as Effect.Effect<Policy<unknown, unknown, unknown>, never, I>,
        (p) => p.state.hub.stream(options?.bufferSize ?? 4096)
      )
    )

// -----------------------------------------------------------------------------
// settings (configuration from Effect Config)
// -----------------------------------------------------------------------------

const durationText = (rule: "> 0" | ">= 0") =>
  Schema.String.pipe(
    Schema.decodeTo(
      Schema.Duration,
      SchemaTransformation.transformEffect<Duration.Duration, string>({
        decode: (text) => {
          const parsed = Duration.fromInput(text.trim() as Duration.Input)
          if (parsed._tag === "None" || !Duration.isFinite(parsed.value)) {
            return Effect.fail(
              new SchemaIssue.InvalidValue({
                message: `Expected a finite duration such as "2 seconds" or "500 millis", got ${JSON.stringify(text)}`
              })
            )
          }
          const d = parsed.value
          const ok = rule === "> 0" ? Duration.isGreaterThan(d, Duration.zero) : !Duration.isNegative(d)
          return ok
            ? Effect.succeed(d)
            : Effect.fail(new SchemaIssue.InvalidValue({ message: `Expected a duration ${rule}, got ${JSON.stringify(text)}` }))
        },
        encode: (d) => Effect.succeed(Duration.format(d))
      })
    )
  )

const PositiveDurationText = durationText("> 0")
const DurationText = durationText(">= 0")

const Ratio = Schema.Number.check(
  Schema.makeFilter((n: number) => n > 0 && n <= 1 ? undefined : `Expected a ratio in (0, 1], got ${n}`)
)

/** A comma-separated list such as `"timeout, bulkhead, retry"`, as environment variables give it. */
const OrderText = Schema.String.pipe(
  Schema.decodeTo(
    Schema.Array(Stage),
    // The stages are checked by the target schema, which names a bad one.
    SchemaTransformation.transform<ReadonlyArray<Stage>, string>({
      decode: (text) => text.split(",").map((s) => s.trim()).filter((s) => s.length > 0) as Array<Stage>,
      encode: (stages) => stages.join(", ")
    })
  )
)

const WindowText = Schema.String.pipe(
  Schema.decodeTo(
    Schema.Union([PositiveInt, Schema.Duration]),
    SchemaTransformation.transformEffect<number | Duration.Duration, string>({
      decode: (text) => {
        const trimmed = text.trim()
        if (/^\d+$/.test(trimmed)) {
          const n = Number(trimmed)
          return n >= 1
            ? Effect.succeed(n)
            : Effect.fail(new SchemaIssue.InvalidValue({ message: `Expected a count >= 1 or a duration, got "${text}"` }))
        }
        const parsed = Duration.fromInput(trimmed as Duration.Input)
        return parsed._tag === "Some" && Duration.isFinite(parsed.value) && Duration.isGreaterThan(parsed.value, Duration.zero)
          ? Effect.succeed(parsed.value)
          : Effect.fail(
            new SchemaIssue.InvalidValue({
              message: `Expected a number of calls ("100") or a duration ("1 minute"), got ${JSON.stringify(text)}`
            })
          )
      },
      encode: (w) => Effect.succeed(typeof w === "number" ? String(w) : Duration.format(w))
    })
  )
)

const breakerTrips = Schema.makeFilter((b: {
  readonly consecutiveFailures?: number
  readonly failureRate?: number
  readonly minimumCalls?: number
  readonly window?: unknown
}) => {
  if (b.consecutiveFailures === undefined && b.failureRate === undefined) {
    return { path: ["consecutiveFailures"], issue: "Expected consecutiveFailures or failureRate (or both)" }
  }
  if (b.failureRate !== undefined) {
    if (b.minimumCalls === undefined) return { path: ["minimumCalls"], issue: "Expected minimumCalls with failureRate" }
    if (b.window === undefined) return { path: ["window"], issue: "Expected window with failureRate" }
  } else if (b.minimumCalls !== undefined || b.window !== undefined) {
    return {
      path: [b.minimumCalls !== undefined ? "minimumCalls" : "window"],
      issue: "Expected failureRate: minimumCalls and window belong to it"
    }
  }
  return undefined
})

const burstFits = Schema.makeFilter((l: { readonly algorithm: string; readonly burst?: number }) =>
  l.burst !== undefined && (l.algorithm === "fixed-window" || l.algorithm === "sliding-window")
    ? { path: ["burst"], issue: `Expected no burst with ${l.algorithm}: a window has a limit only` }
    : undefined
)

/**
 * A policy as plain data, for configuration: durations are text (`"5
 * seconds"`), the order a comma-separated list. Read it with {@link config}
 * (environment variables, JSON, any `ConfigProvider`), build with
 * {@link fromSettings}. Each primitive section creates an instance named
 * after the policy.
 *
 * **Example** (Decoding settings)
 *
 * ```ts
 * import { Policy } from "@bulwark/core"
 * import { Schema } from "effect"
 *
 * const settings = Schema.decodeUnknownSync(Policy.Settings)({
 *   timeout: "5 seconds",
 *   bulkhead: { maxConcurrent: 10, maxQueue: 20 },
 *   retry: { maxAttempts: 3, baseDelay: "100 millis" }
 * })
 * ```
 *
 * @since 0.1.0
 * @category settings
 */
export const Settings = Schema.Struct({
  timeout: Schema.optionalKey(PositiveDurationText),
  attemptTimeout: Schema.optionalKey(PositiveDurationText),
  order: Schema.optionalKey(OrderText),
  warnings: Schema.optionalKey(Schema.Literals(["log", "fail", "ignore"])),
  // No key is a prefix of another at a word boundary (`max` and `maxAttempts`
  // would be MAX and MAX_ATTEMPTS in the environment, where MAX cannot be both
  // a value and a group): hence `baseDelay` and `maxDelay`.
  retry: Schema.optionalKey(Schema.Struct({
    maxAttempts: Schema.optionalKey(PositiveInt),
    baseDelay: Schema.optionalKey(DurationText),
    maxDelay: Schema.optionalKey(DurationText),
    jitter: Schema.optionalKey(Retry.Jitter),
    maxElapsed: Schema.optionalKey(DurationText)
  })),
  bulkhead: Schema.optionalKey(Schema.Struct({
    maxConcurrent: PositiveInt,
    maxQueue: Schema.optionalKey(NonNegativeInt),
    queueTimeout: Schema.optionalKey(DurationText)
  })),
  // Sections are one word (`breaker`, `limiter`) and flat: Effect's environment
  // provider finds a group by splitting variable names on "_", so a group
  // named CIRCUIT_BREAKER or FAILURE_RATE would never be found (leaf keys of
  // several words are fine: they are looked up whole).
  breaker: Schema.optionalKey(
    Schema.Struct({
      consecutiveFailures: Schema.optionalKey(PositiveInt),
      /** The failure-rate trip's threshold, a ratio in (0, 1]; needs `minimumCalls` and `window`. */
      failureRate: Schema.optionalKey(Ratio),
      minimumCalls: Schema.optionalKey(PositiveInt),
      window: Schema.optionalKey(WindowText),
      openFor: PositiveDurationText,
      probes: Schema.optionalKey(PositiveInt),
      successesToClose: Schema.optionalKey(PositiveInt),
      probeTimeout: Schema.optionalKey(PositiveDurationText),
      /** With a shared store from code (`SettingsExtras.stores`): the probe's lease. */
      probeLease: Schema.optionalKey(PositiveDurationText),
      /** With a shared store from code: what a call does when the store cannot decide. */
      onStoreError: Schema.optionalKey(OnStoreError)
    }).check(breakerTrips)
  ),
  limiter: Schema.optionalKey(Schema.Struct({
    algorithm: Schema.Literals(["token-bucket", "gcra", "fixed-window", "sliding-window"]),
    /** Calls per `per` (the bucket's refill, the GCRA rate, the window's limit). */
    limit: PositiveInt,
    per: PositiveDurationText,
    /** Token bucket capacity or GCRA burst; default `limit` (bucket) or 1 (GCRA). */
    burst: Schema.optionalKey(PositiveInt),
    onExceeded: Schema.optionalKey(Schema.Literals(["wait", "fail"])),
    maxWait: Schema.optionalKey(DurationText),
    /** With a shared store from code (`SettingsExtras.stores`): what a call does when the store cannot decide. */
    onStoreError: Schema.optionalKey(OnStoreError)
  }).check(burstFits)),
  hedge: Schema.optionalKey(Schema.Struct({
    after: PositiveDurationText,
    maxAttempts: PositiveInt
  }))
})

/**
 * @since 0.1.0
 * @category settings
 */
export type Settings = typeof Settings.Type

/**
 * Reads {@link Settings} from the current `ConfigProvider` under `path`. The
 * default provider reads the environment with the path as written
 * (`payments_bulkhead_maxConcurrent`); with
 * `ConfigProvider.fromEnv().pipe(ConfigProvider.constantCase)` the variables
 * are `PAYMENTS_TIMEOUT`, `PAYMENTS_BULKHEAD_MAX_CONCURRENT`,
 * `PAYMENTS_BREAKER_OPEN_FOR`. Give a one-word path (or a path of one-word
 * segments): the environment provider finds groups by splitting names on
 * `_`. A bad value fails with a `ConfigError` whose message names the key
 * path and the rule (the first bad key only: Effect's `Config` stops there).
 *
 * **Example** (From JSON)
 *
 * ```ts
 * import { Policy } from "@bulwark/core"
 * import { ConfigProvider, Effect } from "effect"
 *
 * const provider = ConfigProvider.fromUnknown({ payments: { timeout: "5 seconds", bulkhead: { maxConcurrent: 10 } } })
 * const settings = Policy.config("payments").parse(provider)
 * ```
 *
 * @since 0.1.0
 * @category settings
 */
export const config = (path: string | ReadonlyArray<string>): Config.Config<Settings> =>
  Config.schema(Settings, typeof path === "string" ? path : [...path])

/**
 * What code adds to settings: the parts that are not data.
 *
 * @since 0.1.0
 * @category settings
 */
export interface SettingsExtras<F extends FallbackInput | undefined = undefined> {
  readonly fallback?: F
  /** Only for `retry`: which typed failures to retry. */
  readonly retryWhile?: ((error: unknown) => boolean) | undefined
  /**
   * Shared stores for the primitives the settings make (Redis, SQLite):
   * their state then lives there, and the sections' `onStoreError` (and the
   * breaker's `probeLease`) apply.
   */
  readonly stores?: {
    readonly breaker?: CircuitBreakerStore.CircuitBreakerStore | undefined
    readonly limiter?: RateLimiterStore.RateLimiterStore | undefined
  } | undefined
}

type FromSettings<F> = Policy<Rejection, ServicesOf<{ fallback: F }>, FallbackOf<{ fallback: F }>>

/**
 * Makes a policy, and the primitives it names, from {@link Settings}. Each
 * primitive is named after the policy. Its error type is every
 * {@link Rejection}, since which stages exist is only known at run time.
 *
 * **Example** (Settings and a fallback from code)
 *
 * ```ts
 * import { Policy } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const settings = yield* Policy.config("payments")
 *   const payments = yield* Policy.fromSettings("payments", settings, { fallback: Effect.succeed("queued") })
 *   return yield* Effect.succeed("charged").pipe(Policy.guard(payments))
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 * @category settings
 */
export const fromSettings = <F extends FallbackInput | undefined = undefined>(
  name: string,
  settings: Settings,
  extras?: SettingsExtras<F>
): Effect.Effect<FromSettings<F>, InvalidOptions, Scope.Scope> =>
  Effect.gen(function*() {
    const s = settings
    const bulkhead = s.bulkhead === undefined ? undefined : yield* Bulkhead.make({ name, ...s.bulkhead })
    const b = s.breaker
    const circuitBreaker = b === undefined ? undefined : yield* CircuitBreaker.make({
      name,
      trip: [
        ...(b.consecutiveFailures === undefined ? [] : [CircuitBreaker.consecutive(b.consecutiveFailures)]),
        ...(b.failureRate === undefined ? [] : [
          CircuitBreaker.failureRate({ threshold: b.failureRate, minimumCalls: b.minimumCalls!, window: b.window! })
        ])
      ],
      openFor: b.openFor,
      // An absent setting is `undefined`: the breaker's default.
      halfOpen: {
        probes: b.probes,
        successesToClose: b.successesToClose,
        probeTimeout: b.probeTimeout,
        probeLease: b.probeLease
      },
      store: extras?.stores?.breaker,
      onStoreError: b.onStoreError
    })
    const rl = s.limiter
    const rateLimiter = rl === undefined ? undefined : yield* RateLimiter.make({
      name,
      algorithm: rl.algorithm === "token-bucket"
        ? RateLimiter.tokenBucket({ capacity: rl.burst ?? rl.limit, refill: rl.limit, per: rl.per })
        : rl.algorithm === "gcra"
        ? RateLimiter.gcra({ rate: rl.limit, per: rl.per, burst: rl.burst })
        : rl.algorithm === "fixed-window"
        ? RateLimiter.fixedWindow({ limit: rl.limit, window: rl.per })
        : RateLimiter.slidingWindow({ limit: rl.limit, window: rl.per }),
      onExceeded: rl.onExceeded,
      maxWait: rl.maxWait,
      store: extras?.stores?.limiter,
      onStoreError: rl.onStoreError
    })
    const r = s.retry
    const retry = r === undefined ? undefined : Retry.policy({
      maxAttempts: r.maxAttempts,
      base: r.baseDelay,
      max: r.maxDelay,
      jitter: r.jitter,
      maxElapsed: r.maxElapsed,
      while: extras?.retryWhile
    })
    const options: Options = {
      name,
      timeout: s.timeout,
      attemptTimeout: s.attemptTimeout,
      // The fallback is code, which an operator's order cannot know about: outermost, where it belongs.
      order: s.order !== undefined && extras?.fallback !== undefined && !s.order.includes("fallback")
        ? ["fallback", ...s.order]
        : s.order,
      warnings: s.warnings,
      bulkhead,
      circuitBreaker,
      rateLimiter,
      retry,
      hedge: s.hedge,
      fallback: extras?.fallback
    }
    return (yield* make(options)) as unknown as FromSettings<F>
  })

/**
 * A policy service built from configuration: reads {@link Settings} at
 * `path` (default: the policy's name) and makes the policy with
 * {@link fromSettings}. Fails with the `ConfigError` naming a bad key, or
 * `InvalidOptions`.
 *
 * **Example** (Operators tune limits through the environment)
 *
 * ```ts
 * import { Policy } from "@bulwark/core"
 * import { Context } from "effect"
 *
 * class Payments extends Context.Service<Payments, Policy.Policy<Policy.Rejection>>()("app/Payments") {}
 *
 * // with ConfigProvider.constantCase: PAYMENTS_TIMEOUT="5 seconds" PAYMENTS_BULKHEAD_MAX_CONCURRENT=10 ...
 * const PaymentsLive = Policy.layerConfig(Payments, { name: "payments" })
 * ```
 *
 * @since 0.1.0
 * @category settings
 */
export const layerConfig = <I, F extends FallbackInput | undefined = undefined>(
  key: Context.Key<I, FromSettings<F>>,
  options: { readonly name: string; readonly path?: string | ReadonlyArray<string> | undefined } & SettingsExtras<F>
): Layer.Layer<I, InvalidOptions | Config.ConfigError> =>
  Layer.effect(
    key,
    Effect.flatMap(config(options.path ?? options.name), (settings) => fromSettings(options.name, settings, options))
  )
