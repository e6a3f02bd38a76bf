/**
 * A rate limiter caps how much work passes per unit of time: calls to an API
 * with a quota, messages to a provider that bills per request, logins per
 * account.
 *
 * **When to use**
 *
 * Use a rate limiter when the constraint is *throughput over time* (100
 * requests per minute). When the constraint is *how many at once*, use a
 * `Bulkhead`; when a dependency is failing, a `CircuitBreaker`.
 *
 * **Details**
 *
 * - Four algorithms, chosen per limiter: {@link tokenBucket} (bursts up to a
 *   capacity, refilled in steps), {@link gcra} (a smooth, continuously
 *   refilled bucket), {@link fixedWindow} (at most `limit` per clock-aligned
 *   window) and {@link slidingWindow} (at most `limit` in *any* window: an
 *   exact log, no approximation).
 * - A call takes `cost` units (default 1). A cost above what the algorithm can
 *   ever admit (`capacity`, `burst` or `limit`) fails at once with reason
 *   `Exceeded` and an infinite `retryAfter`: it would never pass.
 * - `onExceeded: "fail"` (the default): a call that does not fit now fails at
 *   once with `RateLimited` (reason `Exceeded`) and a `retryAfter`.
 * - `onExceeded: "wait"`: the call reserves the earliest slot in time that
 *   fits (at arrival: its place is fixed then) and waits until that slot.
 *   Callers are served in strict FIFO order: a later caller never overtakes an
 *   earlier one, even a cheaper one. An interrupted waiter gives its
 *   reservation back, and the waiters behind it move up. A call whose slot
 *   would be more than `maxWait` away fails at once with reason `WaitTooLong`
 *   (it does not wait and then fail).
 * - {@link block}: the server said `Retry-After`; nothing passes until then
 *   (reason `Blocked`). Waiting callers whose `maxWait` covers the block keep
 *   waiting; the others fail at once.
 * - Each decision is one synchronous call into the in-memory store (a few
 *   hundred nanoseconds); the state sits behind a `RateLimiterStore`, whose
 *   one-call-per-decision contract a remote store implements in one round
 *   trip (`RedisRateLimiterStore` of `@bulwark/redis`: one limit for every
 *   process). When a shared store cannot decide, `onStoreError` does:
 *   `"local"` (default, an in-memory limiter of the same options),
 *   `"fail-open"` or `"fail-closed"` (reason `StoreUnavailable`).
 *
 * **Gotchas**
 *
 * - One instance is one limit. Two `make` calls are two limits; share the
 *   instance or provide one `layer` once.
 * - The limit applies to *starts*: a rate limiter does not bound how many run
 *   at once (combine with a `Bulkhead` for that).
 * - Put the limiter *inside* a retry, so that every attempt is counted; a
 *   retry that honours `retryAfter` then waits as long as the limiter asks.
 * - Fixed windows are aligned to the epoch, so every key shares boundaries,
 *   and up to `2 * limit` may pass around a boundary. Use `slidingWindow` or
 *   `gcra` when that matters.
 *
 * **Example** (Staying under an API quota)
 *
 * ```ts
 * import { RateLimiter } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const github = yield* RateLimiter.make({
 *     name: "github",
 *     algorithm: RateLimiter.tokenBucket({ capacity: 50, refill: 10, per: "1 second" }),
 *     onExceeded: "wait",
 *     maxWait: "5 seconds"
 *   })
 *   return yield* Effect.succeed("repos").pipe(RateLimiter.guard(github, { cost: 2 }))
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 */
import { Clock, Duration, Effect, Layer, Schema, Scope } from "effect"
import * as Context from "effect/Context"
import type * as Fiber from "effect/Fiber"
import { dual } from "effect/Function"
import { type Pipeable, pipeArguments } from "effect/Pipeable"
import * as Stream from "effect/Stream"
import { EventHub } from "./internal/events.ts"
import * as internal from "./internal/rateLimiter.ts"
import * as options from "./internal/rateLimiterOptions.ts"
import { limitOf } from "./internal/rateLimiterStore.ts"
import { decodeOptions } from "./internal/options.ts"
import type { InvalidOptions } from "./InvalidOptions.ts"
import * as KeyedRateLimiter from "./KeyedRateLimiter.ts"
import * as RateLimiterStore from "./RateLimiterStore.ts"
import type * as Store from "./Store.ts"

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: "~@bulwark/core/RateLimiter" = "~@bulwark/core/RateLimiter"

// -----------------------------------------------------------------------------
// algorithms
// -----------------------------------------------------------------------------

/**
 * How a limiter decides. Build one with {@link tokenBucket}, {@link gcra},
 * {@link fixedWindow} or {@link slidingWindow}; `make` validates it.
 *
 * @since 0.1.0
 * @category algorithms
 */
export type Algorithm = TokenBucket | FixedWindow | SlidingWindow | Gcra

/**
 * @since 0.1.0
 * @category algorithms
 */
export interface TokenBucket {
  readonly _tag: "TokenBucket"
  /** Most tokens the bucket holds, and the largest cost a call may have. A new bucket is full. */
  readonly capacity: number
  /** Tokens added at every multiple of `per` since the epoch, never beyond `capacity`. */
  readonly refill: number
  /** A whole number of milliseconds. */
  readonly per: Duration.Input
}

/**
 * @since 0.1.0
 * @category algorithms
 */
export interface FixedWindow {
  readonly _tag: "FixedWindow"
  /** Most cost admitted per window. */
  readonly limit: number
  /** Windows are `[k * window, (k + 1) * window)` in epoch time; a whole number of milliseconds. */
  readonly window: Duration.Input
}

/**
 * @since 0.1.0
 * @category algorithms
 */
export interface SlidingWindow {
  readonly _tag: "SlidingWindow"
  /** Most cost admitted in any window `(t - window, t]`, for every `t`. */
  readonly limit: number
  readonly window: Duration.Input
}

/**
 * @since 0.1.0
 * @category algorithms
 */
export interface Gcra {
  readonly _tag: "Gcra"
  /** Sustained rate: `rate` per `per`, spread evenly (one unit every `per / rate`). */
  readonly rate: number
  readonly per: Duration.Input
  /** Most cost admitted at once after an idle period; default 1 (strict spacing). */
  readonly burst?: number | undefined
}

/**
 * A bucket of `capacity` tokens, full at first, to which `refill` tokens are
 * added at every multiple of `per` since the epoch (never beyond
 * `capacity`). A call takes `cost` tokens.
 *
 * **Guarantee**: over any interval `[a, b]`, the cost admitted is at most
 * `capacity + refill * n`, where `n` is the number of refill instants in
 * `(a, b]`. An idle bucket holds `min(capacity, left + refill * n)` tokens.
 *
 * Effect's `persistence/RateLimiter` token bucket with `limit` and `window`
 * is `tokenBucket({ capacity: limit, refill: 1, per: window / limit })`.
 *
 * @since 0.1.0
 * @category algorithms
 */
export const tokenBucket = (o: {
  readonly capacity: number
  readonly refill: number
  readonly per: Duration.Input
}): TokenBucket => ({ _tag: "TokenBucket", capacity: o.capacity, refill: o.refill, per: o.per })

/**
 * At most `limit` per window; windows are aligned to multiples of `window`
 * since the epoch (so every key and every process shares boundaries).
 *
 * **Guarantee**: in every window `[k * window, (k + 1) * window)` the cost
 * admitted is at most `limit`; a new window starts with all of `limit`.
 * Around a boundary up to `2 * limit` may pass within one `window`.
 *
 * @since 0.1.0
 * @category algorithms
 */
export const fixedWindow = (o: { readonly limit: number; readonly window: Duration.Input }): FixedWindow => ({
  _tag: "FixedWindow",
  limit: o.limit,
  window: o.window
})

/**
 * At most `limit` in any window of length `window`: an exact log of
 * admissions (not the two-window approximation), one entry per millisecond
 * that admitted something.
 *
 * **Guarantee**: for every time `t`, the cost admitted in `(t - window, t]`
 * is at most `limit`; what a new call may take at `t` is `limit` minus that
 * cost. Memory per key is at most one entry per millisecond of the window
 * (and at most `limit` entries).
 *
 * @since 0.1.0
 * @category algorithms
 */
export const slidingWindow = (o: { readonly limit: number; readonly window: Duration.Input }): SlidingWindow => ({
  _tag: "SlidingWindow",
  limit: o.limit,
  window: o.window
})

/**
 * The generic cell rate algorithm: `rate` per `per`, evenly spaced, with up
 * to `burst` at once after an idle period (default 1). Equivalent to a bucket
 * of `burst` tokens refilled continuously (one token every `per / rate`),
 * kept as a single timestamp.
 *
 * **Guarantee**: over any interval `[a, b]`, the cost admitted is at most
 * `burst + floor((b - a) * rate / per)`. A drained limiter idle for `d` can
 * admit `min(burst, floor(d * rate / per))` at once.
 *
 * @since 0.1.0
 * @category algorithms
 */
export const gcra = (o: {
  readonly rate: number
  readonly per: Duration.Input
  readonly burst?: number | undefined
}): Gcra => ({ _tag: "Gcra", rate: o.rate, per: o.per, burst: o.burst })

// -----------------------------------------------------------------------------
// models, errors, options
// -----------------------------------------------------------------------------

/**
 * A running rate limiter. Create one with {@link make} (scoped) or
 * {@link layer}.
 *
 * @since 0.1.0
 * @category models
 */
export interface RateLimiter extends Pipeable {
  readonly [TypeId]: typeof TypeId
  /** The name given in the options; it appears in errors, stats and metrics, and is the store key. */
  readonly name: string
  /** The algorithm as the store sees it (durations in milliseconds). */
  readonly algorithm: RateLimiterStore.Algorithm
  /** @internal */
  readonly state: internal.LimiterState
}

/**
 * A rate limiter, or a service key that resolves to one.
 *
 * @since 0.1.0
 * @category models
 */
export type RateLimiterOrKey<I = never> = RateLimiter | Context.Key<I, RateLimiter>

/**
 * Why a call did not pass.
 *
 * - `Exceeded`: the call does not fit now (`onExceeded: "fail"`), or its cost
 *   is more than the algorithm can ever admit (then `retryAfter` is infinite).
 * - `Blocked`: {@link block} is in force (or a block pushed a waiting call's
 *   slot beyond its `maxWait`).
 * - `WaitTooLong`: (`onExceeded: "wait"`) the call's slot would be more than
 *   `maxWait` away; it fails at once.
 * - `TooManyKeys`: (keyed limiters) the key would need new state, but
 *   `maxKeys` keys are all in use.
 * - `StoreUnavailable`: (shared store, `onStoreError: "fail-closed"`) the
 *   store could not decide; `retryAfter` is the time until the limiter asks
 *   it again (at most one second).
 *
 * @since 0.1.0
 * @category errors
 */
export const Reason = Schema.Literals(["Exceeded", "Blocked", "WaitTooLong", "TooManyKeys", "StoreUnavailable"])

/**
 * @since 0.1.0
 * @category errors
 */
export type Reason = typeof Reason.Type

/**
 * The call did not pass. Data only: never the caller's arguments or results.
 *
 * **Example** (Honouring retryAfter)
 *
 * ```ts
 * import { RateLimiter } from "@bulwark/core"
 * import { Duration, Effect } from "effect"
 *
 * declare const call: Effect.Effect<string, RateLimiter.RateLimited>
 * const patient = call.pipe(
 *   Effect.catchTag("RateLimited", (e) =>
 *     Duration.isFinite(e.retryAfter) ? Effect.delay(call, e.retryAfter) : Effect.fail(e))
 * )
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class RateLimited extends Schema.TaggedError<RateLimited>()("RateLimited", {
  /** The limiter's name. */
  name: Schema.String,
  /** The key, only for keyed limiters created with `exposeKeys: true`. */
  key: Schema.optionalKey(Schema.String),
  reason: Reason,
  /** Time until a call of this cost could pass; infinite when it never can. */
  retryAfter: Schema.Duration,
  /** The largest cost the algorithm admits at once (`capacity`, `burst` or `limit`). */
  limit: Schema.Number
}) {
  override get message(): string {
    return `Rate limiter "${this.name}"${this.key === undefined ? "" : ` [${this.key}]`} rejected the call: ${this.reason} (retry after ${
      Duration.format(this.retryAfter)
    })`
  }
}

/**
 * The options of a rate limiter, as a Schema: `make` and `layer` decode their
 * input with it and fail with `InvalidOptions` naming every bad field.
 *
 * @since 0.1.0
 * @category options
 */
export const Options = Schema.Struct(options.commonFields)

/**
 * @since 0.1.0
 * @category options
 */
export interface Options {
  /** Required; appears in errors, stats and metric labels, and is the key in the store. */
  readonly name: string
  readonly algorithm: Algorithm
  /** `"fail"` (default): reject at once. `"wait"`: reserve the earliest slot and wait for it. */
  readonly onExceeded?: "wait" | "fail" | undefined
  /** With `"wait"`: the longest a call may wait for its slot; default unbounded. Refused with `"fail"`. */
  readonly maxWait?: Duration.Input | undefined
  /** Where the state lives; default a fresh in-memory store owned by this limiter. */
  readonly store?: RateLimiterStore.RateLimiterStore | undefined
  /**
   * What a call does when a shared `store` cannot decide (unreachable, no
   * answer within its timeout, an error reply); an in-process store never
   * fails. Default: the one the store declares (the SQLite stores say
   * `"fail-open"`), else `"local"`.
   *
   * - `"local"`: an in-memory limiter of the same options decides in this
   *   process until the store answers again. Limits hold per process: a
   *   fleet of N processes admits up to N times the limit meanwhile.
   * - `"fail-open"`: the call passes (availability first; a block this
   *   process knows of still holds).
   * - `"fail-closed"`: the call fails with reason `StoreUnavailable`
   *   (protection first).
   *
   * While the store is down (`Unavailable` or `Timeout`), the limiter asks
   * it again once per second, and the policy decides every other call at
   * once, so a dead store costs one failed round trip per second.
   */
  readonly onStoreError?: Store.OnStoreError | undefined
}

/**
 * Per-call options of {@link guard} and {@link consume}.
 *
 * @since 0.1.0
 * @category options
 */
export interface GuardOptions {
  /** Units this call takes (tokens, requests); a positive integer, default 1. */
  readonly cost?: number | undefined
}

const decode = decodeOptions("RateLimiter", Options)

const RateLimiterProto = {
  [TypeId]: TypeId,
  pipe() {
    return pipeArguments(this, arguments)
  },
  toJSON(this: RateLimiter) {
    return { _id: "RateLimiter", name: this.name, algorithm: this.algorithm }
  }
}

/**
 * Is this value a rate limiter?
 *
 * @since 0.1.0
 * @category guards
 */
export const isRateLimiter = (u: unknown): u is RateLimiter => typeof u === "object" && u !== null && TypeId in u

const fromState = (state: internal.LimiterState): RateLimiter => {
  const self = Object.create(RateLimiterProto)
  self.name = state.name
  self.algorithm = state.algorithm
  self.state = state
  return self
}

/**
 * Creates a rate limiter that lives as long as the current scope.
 *
 * Metrics (`bulwark.ratelimiter.*`, labelled by `name` and, for rejections,
 * `reason`) are registered in the `MetricRegistry` of the creating fiber and
 * removed when the scope closes; so are event streams ended. The limiter
 * holds no fiber: callers waiting when the scope closes keep their slot.
 *
 * **Example** (Creating a limiter)
 *
 * ```ts
 * import { RateLimiter } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const sms = yield* RateLimiter.make({
 *     name: "sms",
 *     algorithm: RateLimiter.slidingWindow({ limit: 100, window: "1 minute" })
 *   })
 *   return yield* Effect.succeed("sent").pipe(RateLimiter.guard(sms))
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options_: Options): Effect.Effect<RateLimiter, InvalidOptions, Scope.Scope> =>
  Effect.flatMap(decode(options_), (decoded) =>
    Effect.flatMap(options.settingsOf("RateLimiter", decoded), (settings) =>
      Effect.withFiber((fiber) => {
        const store = decoded.store ?? RateLimiterStore.memory()
        const fallback = internal.fallbackFor(store, settings.onStoreError, 1)
        const state = new internal.LimiterState({
          name: decoded.name,
          key: undefined,
          storeKey: decoded.name,
          algorithm: settings.algorithm,
          limit: limitOf(settings.algorithm),
          wait: settings.wait,
          maxWaitMs: settings.maxWaitMs,
          store,
          listeners: new EventHub(),
          fallback
        })
        const clock = fiber.getRef(Clock.Clock)
        const registrations = internal.registerMetrics(
          fiber.context,
          { name: state.name },
          state,
          internal.reportedReasons(false, fallback !== undefined),
          () => state.remainingAt(clock.currentTimeMillisUnsafe()),
          fallback
        )
        return Effect.as(
          Effect.addFinalizer(() =>
            Effect.sync(() => {
              for (const registration of registrations) registration.remove()
              state.listeners.end()
            })
          ),
          fromState(state)
        )
      })))

/**
 * Builds a rate limiter as a service. Everyone who uses the key shares one
 * limit.
 *
 * **Example** (A limiter as a Layer service)
 *
 * ```ts
 * import { RateLimiter } from "@bulwark/core"
 * import { Context, Effect } from "effect"
 *
 * class GitHub extends Context.Service<GitHub, RateLimiter.RateLimiter>()("app/GitHub") {}
 * const GitHubLive = RateLimiter.layer(GitHub, {
 *   name: "github",
 *   algorithm: RateLimiter.gcra({ rate: 5000, per: "1 hour", burst: 100 })
 * })
 *
 * const listRepos = Effect.succeed(["bulwark"]).pipe(RateLimiter.guard(GitHub)) // R = GitHub
 * const main = listRepos.pipe(Effect.provide(GitHubLive))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <I>(key: Context.Key<I, RateLimiter>, options: Options): Layer.Layer<I, InvalidOptions> =>
  Layer.effect(key, make(options))

const withLimiter = <I, A, E, R>(
  limiter: RateLimiterOrKey<I>,
  f: (limiter: RateLimiter) => Effect.Effect<A, E, R>
): Effect.Effect<A, E, R | I> => isRateLimiter(limiter) ? f(limiter) : Effect.flatMap(limiter, f)

type Guard = <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | RateLimited, R>

/**
 * The admission of one limiter with one cost. On an in-process store, a call
 * that passes (or fails) at once is decided in one synchronous step with no
 * interruption mask: it holds nothing an interruption could leak.
 *
 * @internal
 */
export const guardOf = (state: internal.LimiterState, cost: number): Guard => {
  if (state.sync === undefined) {
    return (self) =>
      Effect.uninterruptibleMask((restore) =>
        Effect.withFiber((fiber) => state.admitShared(fiber as Fiber.Fiber<unknown, unknown>, self, cost, restore))
      )
  }
  // Only a call that may wait needs the mask; deciding it again under the
  // mask costs a second store call on the path that waits anyway.
  const slow = <A, E, R>(self: Effect.Effect<A, E, R>) =>
    Effect.uninterruptibleMask((restore) =>
      Effect.withFiber((fiber) => state.admitOrWait(fiber as Fiber.Fiber<unknown, unknown>, self, cost, restore))
    )
  return <A, E, R>(self: Effect.Effect<A, E, R>) =>
    Effect.withFiber<A, E | RateLimited, R>((fiber) => {
      const now = state.clockOf(fiber as Fiber.Fiber<unknown, unknown>).currentTimeMillisUnsafe()
      const decided = state.decideNow(now, cost, fiber as Fiber.Fiber<unknown, unknown>)
      if (decided === undefined) return self
      return decided === internal.pending ? slow(self) : decided
    })
}

const compileGuard = <I>(
  limiter: RateLimiterOrKey<I>,
  options_: GuardOptions | undefined
): (<A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | RateLimited, R | I>) => {
  if (options_ === undefined && isRateLimiter(limiter)) {
    return (limiter.state.defaultGuard ??= guardOf(limiter.state, 1)) as Guard
  }
  const cost = options.parseCost("RateLimiter.guard", options_)
  if (typeof cost !== "number") return () => cost
  if (isRateLimiter(limiter)) return guardOf(limiter.state, cost)
  if (options_ === undefined) {
    return (self) =>
      Effect.flatMap(limiter, (resolved) => ((resolved.state.defaultGuard ??= guardOf(resolved.state, 1)) as Guard)(self))
  }
  return (self) => Effect.flatMap(limiter, (resolved) => guardOf(resolved.state, cost)(self))
}

/**
 * Runs an effect once the limiter lets it pass: at once, after waiting for
 * its reserved slot (`onExceeded: "wait"`), or not at all (`RateLimited`).
 *
 * **Example** (Guarding calls)
 *
 * ```ts
 * import { RateLimiter } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * declare const github: RateLimiter.RateLimiter
 * declare const search: Effect.Effect<string>
 *
 * search.pipe(RateLimiter.guard(github))              // E | RateLimited
 * search.pipe(RateLimiter.guard(github, { cost: 2 })) // takes 2 units
 * RateLimiter.guard(search, github)                   // data-first
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const guard: {
  <I = never>(
    limiter: RateLimiterOrKey<I>,
    options?: GuardOptions
  ): <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | RateLimited, R | I>
  <A, E, R, I = never>(
    self: Effect.Effect<A, E, R>,
    limiter: RateLimiterOrKey<I>,
    options?: GuardOptions
  ): Effect.Effect<A, E | RateLimited, R | I>
} = function(this: unknown) {
  // Data-last compiles the options once, so a guard built once and applied in
  // a loop does not validate them again on every call.
  if (arguments.length >= 2 && (isRateLimiter(arguments[1]) || Context.isKey(arguments[1]))) {
    return compileGuard(arguments[1], arguments[2])(arguments[0])
  }
  return compileGuard(arguments[0], arguments[1])
} as any

/**
 * What {@link consume} returns: the figures for `RateLimit-*` response
 * headers.
 *
 * @since 0.1.0
 * @category models
 */
export interface Permit {
  /** The largest cost the algorithm admits at once. */
  readonly limit: number
  /** What a new call could take right after this one passed. */
  readonly remaining: number
  /** Time until the limiter is back at rest (full bucket, empty window). */
  readonly resetAfter: Duration.Duration
  /** How long this call waited for its slot. */
  readonly waited: Duration.Duration
}

/** @internal */
export const permitOf = (state: internal.LimiterState, guard: Guard): Effect.Effect<Permit, RateLimited> =>
  Effect.withFiber((fiber) => {
    const clock = fiber.getRef(Clock.Clock)
    const arrived = clock.currentTimeMillisUnsafe()
    return guard(Effect.sync(() => {
      const now = clock.currentTimeMillisUnsafe()
      const resetAt = state.resetAt(now)
      return {
        limit: state.limit,
        remaining: state.remainingAt(now),
        resetAfter: resetAt > now ? Duration.millis(resetAt - now) : Duration.zero,
        waited: Duration.millis(now - arrived)
      }
    }))
  })

/**
 * Takes `cost` units without running anything, and says what is left: the
 * counterpart of Effect's `RateLimiter.consume`, for setting `RateLimit-*`
 * headers or for pacing a loop.
 *
 * **Example** (Rate-limit headers)
 *
 * ```ts
 * import { RateLimiter } from "@bulwark/core"
 * import { Duration, Effect } from "effect"
 *
 * declare const api: RateLimiter.RateLimiter
 * const headers = RateLimiter.consume(api).pipe(
 *   Effect.map((p) => ({
 *     "RateLimit-Limit": String(p.limit),
 *     "RateLimit-Remaining": String(p.remaining),
 *     "RateLimit-Reset": String(Math.ceil(Duration.toSeconds(p.resetAfter)))
 *   }))
 * )
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const consume = <I = never>(
  limiter: RateLimiterOrKey<I>,
  options_?: GuardOptions
): Effect.Effect<Permit, RateLimited, I> => {
  const cost = options.parseCost("RateLimiter.consume", options_)
  if (typeof cost !== "number") return cost
  return withLimiter(limiter, (l) => permitOf(l.state, guardOf(l.state, cost)))
}

/**
 * Nothing passes before `duration` from now: for a server's `Retry-After` (a
 * 429 or 503 response). Calls fail with reason `Blocked` and the remaining
 * time as `retryAfter`; with `onExceeded: "wait"`, callers whose `maxWait`
 * covers the block wait instead, in FIFO order, and the others fail at once.
 * A block never shortens one already in force. The algorithm's state goes on
 * refilling meanwhile.
 *
 * **Example** (Honouring Retry-After)
 *
 * ```ts
 * import { RateLimiter } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * declare const github: RateLimiter.RateLimiter
 * declare const response: { readonly status: number; readonly retryAfterSeconds: number }
 *
 * const feedback = response.status === 429
 *   ? RateLimiter.block(github, `${response.retryAfterSeconds} seconds`)
 *   : Effect.void
 * ```
 *
 * @since 0.1.0
 * @category control
 */
export const block: {
  (duration: Duration.Input): <I = never>(limiter: RateLimiterOrKey<I>) => Effect.Effect<void, never, I>
  <I = never>(limiter: RateLimiterOrKey<I>, duration: Duration.Input): Effect.Effect<void, never, I>
} = dual(2, <I>(limiter: RateLimiterOrKey<I>, duration: Duration.Input): Effect.Effect<void, never, I> => {
  const ms = options.parseBlock("RateLimiter.block", duration)
  if (typeof ms !== "number") return ms
  return withLimiter(limiter, (l) =>
    Effect.withFiber((fiber) => {
      const now = fiber.getRef(Clock.Clock).currentTimeMillisUnsafe()
      return l.state.block(now + ms, now)
    }))
})

/**
 * A point-in-time view of a limiter. Counters are cumulative since creation.
 *
 * @since 0.1.0
 * @category models
 */
export interface Snapshot {
  /** Identifies the limiter instance (two instances may share a name). */
  readonly limiterId: number
  readonly name: string
  /** Strictly increasing across the snapshots of one limiter. */
  readonly sequence: number
  /** Clock time of the snapshot, epoch milliseconds. */
  readonly at: number
  readonly algorithm: RateLimiterStore.Algorithm
  readonly onExceeded: "wait" | "fail"
  /** Calls admitted (at once or after waiting). */
  readonly admitted: number
  /** Sum of the costs of the admitted calls. */
  readonly admittedCost: number
  /** Admitted calls that waited for their slot first. */
  readonly admittedAfterWait: number
  readonly rejected: Readonly<Record<Reason, number>>
  readonly rejectedTotal: number
  /** Waiting calls that were interrupted (their reservation given back). */
  readonly cancelled: number
  /** Calls waiting for their slot now. */
  readonly waiting: number
  /** What a new call could take now (tokens, room in the window); 0 while blocked or while callers wait. */
  readonly remaining: number
  /** Time left of a block in force; zero when none. */
  readonly blockedFor: Duration.Duration
  /** Sum of the waits of all admitted calls. */
  readonly totalWait: Duration.Duration
  /** Longest wait of an admitted call. */
  readonly longestWait: Duration.Duration
  /** Operations of a shared store that failed, by reason (always zero for an in-process store). */
  readonly storeErrors: Readonly<Record<Store.Reason, number>>
  /** Calls decided by `onStoreError` instead of the shared store (the failed calls and those while it was down). */
  readonly decidedWithoutStore: number
}

/** @internal */
export const snapshotOf = (state: internal.LimiterState, now: number): Snapshot => {
  const rejected = { ...state.rejected }
  return {
    limiterId: state.id,
    name: state.name,
    sequence: ++state.snapshotSeq,
    at: now,
    algorithm: state.algorithm,
    onExceeded: state.wait ? "wait" : "fail",
    admitted: state.admitted,
    admittedCost: state.admittedCost,
    admittedAfterWait: state.admittedAfterWait,
    rejected,
    rejectedTotal: internal.sumRejected(rejected),
    cancelled: state.cancelled,
    waiting: state.waiting,
    remaining: state.remainingAt(now),
    blockedFor: state.blockedUntil > now ? Duration.millis(state.blockedUntil - now) : Duration.zero,
    totalWait: Duration.millis(state.totalWaitMs),
    longestWait: Duration.millis(state.longestWaitMs),
    storeErrors: storeErrorsOf(state.fallback),
    decidedWithoutStore: state.fallback?.decided ?? 0
  }
}

/** @internal */
export const storeErrorsOf = (
  fallback: { readonly errors: Readonly<Record<Store.Reason, number>> } | undefined
): Readonly<Record<Store.Reason, number>> =>
  fallback === undefined ? { Unavailable: 0, Timeout: 0, Rejected: 0 } : { ...fallback.errors }

/**
 * Takes a {@link Snapshot} of the limiter.
 *
 * **Example** (Reading stats)
 *
 * ```ts
 * import { RateLimiter } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * declare const github: RateLimiter.RateLimiter
 * const log = Effect.gen(function*() {
 *   const s = yield* RateLimiter.stats(github)
 *   yield* Effect.log(`${s.admitted} admitted, ${s.rejectedTotal} rejected, ${s.remaining} left, ${s.waiting} waiting`)
 * })
 * ```
 *
 * @since 0.1.0
 * @category observability
 */
export const stats = <I = never>(limiter: RateLimiterOrKey<I>): Effect.Effect<Snapshot, never, I> =>
  withLimiter(limiter, (l) =>
    Effect.withFiber((fiber) => Effect.succeed(snapshotOf(l.state, fiber.getRef(Clock.Clock).currentTimeMillisUnsafe()))))

/**
 * What a limiter reports on its {@link events} stream. `key` is present only
 * for keyed limiters created with `exposeKeys: true`.
 *
 * @since 0.1.0
 * @category events
 */
export type Event =
  | Event.Admitted
  | Event.Rejected
  | Event.Cancelled
  | Event.Blocked
  | Event.StoreFailed
  | Event.StoreRecovered

/**
 * @since 0.1.0
 * @category events
 */
export declare namespace Event {
  export interface Admitted {
    readonly _tag: "Admitted"
    readonly name: string
    readonly key?: string
    readonly cost: number
    /** Zero when admitted at once. */
    readonly waited: Duration.Duration
  }
  export interface Rejected {
    readonly _tag: "Rejected"
    readonly name: string
    readonly key?: string
    readonly reason: Reason
    readonly cost: number
    readonly retryAfter: Duration.Duration
  }
  /** A waiting call was interrupted; its reservation went back. */
  export interface Cancelled {
    readonly _tag: "Cancelled"
    readonly name: string
    readonly key?: string
    readonly cost: number
    readonly waited: Duration.Duration
  }
  export interface Blocked {
    readonly _tag: "Blocked"
    readonly name: string
    readonly key?: string
    /** Epoch milliseconds (Effect's `Clock`) until which nothing passes. */
    readonly until: number
  }
  /** An operation of the shared store failed; `onStoreError` decided instead. */
  export interface StoreFailed {
    readonly _tag: "StoreFailed"
    readonly name: string
    /** The key of the call that met the failure (keyed limiters with `exposeKeys`). */
    readonly key?: string
    /** `consume`, `refund` or `block`. */
    readonly operation: string
    readonly reason: Store.Reason
    /** What the store or its client said. */
    readonly message: string
    readonly onStoreError: Store.OnStoreError
  }
  /** The shared store answered again after failing: it decides again. */
  export interface StoreRecovered {
    readonly _tag: "StoreRecovered"
    readonly name: string
    readonly key?: string
  }
}

/**
 * A stream of what the limiter decides, from the moment it is consumed.
 * Events cost nothing while nobody listens; a slow consumer loses the oldest
 * events beyond `bufferSize` (default 4096). The stream ends when the
 * limiter's scope closes.
 *
 * **Example** (Logging rejections)
 *
 * ```ts
 * import { RateLimiter } from "@bulwark/core"
 * import { Effect, Stream } from "effect"
 *
 * declare const github: RateLimiter.RateLimiter
 * const watch = RateLimiter.events(github).pipe(
 *   Stream.filter((e) => e._tag === "Rejected"),
 *   Stream.runForEach((e) => Effect.logWarning(`rate limited: ${e._tag}`))
 * )
 * ```
 *
 * @since 0.1.0
 * @category observability
 */
export const events = <I = never>(
  limiter: RateLimiterOrKey<I>,
  options_?: { readonly bufferSize?: number | undefined }
): Stream.Stream<Event, never, I> =>
  isRateLimiter(limiter)
    ? limiter.state.listeners.stream(options_?.bufferSize ?? 4096)
    : Stream.unwrap(Effect.map(limiter, (l) => l.state.listeners.stream(options_?.bufferSize ?? 4096)))

/**
 * One rate limit per key (user, API key, tenant); see the `KeyedRateLimiter`
 * module.
 *
 * **Example** (A limit per user)
 *
 * ```ts
 * import { KeyedRateLimiter, RateLimiter } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const perUser = yield* RateLimiter.keyed({
 *     name: "login",
 *     algorithm: RateLimiter.fixedWindow({ limit: 5, window: "1 minute" }),
 *     maxKeys: 100_000
 *   })
 *   return yield* Effect.succeed("ok").pipe(KeyedRateLimiter.guard(perUser, "user-42"))
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const keyed = (
  options_: KeyedRateLimiter.Options
): Effect.Effect<KeyedRateLimiter.KeyedRateLimiter, InvalidOptions, Scope.Scope> => KeyedRateLimiter.make(options_)
