/**
 * One rate limit per key (per user, per API key, per tenant) from one policy:
 * a heavy user exhausts their own limit and is rejected there, while every
 * other key keeps its full allowance.
 *
 * **Details**
 *
 * - Each key gets the algorithm, `onExceeded` and `maxWait` of the keyed
 *   limiter, with the same semantics as a plain `RateLimiter` (FIFO waiting,
 *   reservations, `block` per key).
 * - At most `maxKeys` keys have state at once. A key's state can be dropped
 *   without loss once nobody waits on it and its algorithm is back at rest
 *   (full bucket, empty window): it would start exactly like that again. Keys
 *   are kept in least-recently-used order; when a new key arrives, keys at
 *   rest and unused for `idleTimeToLive` are dropped, and at `maxKeys` the
 *   least recently used key at rest is dropped. If no key is at rest, a call
 *   with a new key fails with reason `TooManyKeys` (dropping a key that is not
 *   at rest would hand its user a fresh allowance). All of this happens on the
 *   caller's fiber: there is no background fiber.
 * - Keys are user data. They never appear in errors, events or metric labels
 *   unless `exposeKeys: true`; by default metrics are totals over all keys.
 *
 * **Gotchas**
 *
 * - Size `maxKeys` for the keys active within one refill period: with a
 *   daily quota, a key stays in use for a day after its last call.
 * - With a store passed in `store` that is shared between processes, the
 *   state lives in the store and only the waiting callers are local: a key
 *   with nobody waiting is dropped locally at once.
 *
 * **Example** (A limit per API key)
 *
 * ```ts
 * import { KeyedRateLimiter, RateLimiter } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const perKey = yield* KeyedRateLimiter.make({
 *     name: "public-api",
 *     algorithm: RateLimiter.gcra({ rate: 10, per: "1 second", burst: 20 }),
 *     maxKeys: 50_000
 *   })
 *   return yield* Effect.succeed("ok").pipe(KeyedRateLimiter.guard(perKey, "key-123"))
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 */
import { Clock, Duration, Effect, Layer, Schema, Scope } from "effect"
import * as Context from "effect/Context"
import type * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import { type Pipeable, pipeArguments } from "effect/Pipeable"
import * as Stream from "effect/Stream"
import { EventHub } from "./internal/events.ts"
import { pullGauge } from "./internal/metrics.ts"
import { decodeOptions, DurationInput, PositiveInt } from "./internal/options.ts"
import * as internal from "./internal/rateLimiter.ts"
import * as options from "./internal/rateLimiterOptions.ts"
import { limitOf } from "./internal/rateLimiterStore.ts"
import * as tracing from "./internal/tracing.ts"
import type { InvalidOptions } from "./InvalidOptions.ts"
import type { Algorithm, Event, GuardOptions, Permit, RateLimited, Reason } from "./RateLimiter.ts"
import { guardOf, permitOf, storeErrorsOf } from "./RateLimiter.ts"
import * as RateLimiterStore from "./RateLimiterStore.ts"
import type * as Store from "./Store.ts"

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: "~@bulwark/core/KeyedRateLimiter" = "~@bulwark/core/KeyedRateLimiter"

/**
 * @since 0.1.0
 * @category models
 */
export interface KeyedRateLimiter extends Pipeable {
  readonly [TypeId]: typeof TypeId
  readonly name: string
  readonly algorithm: RateLimiterStore.Algorithm
  /** @internal */
  readonly state: KeyedState
}

/**
 * A keyed rate limiter, or a service key that resolves to one.
 *
 * @since 0.1.0
 * @category models
 */
export type KeyedRateLimiterOrKey<I = never> = KeyedRateLimiter | Context.Key<I, KeyedRateLimiter>

/**
 * The options of a keyed rate limiter, as a Schema.
 *
 * @since 0.1.0
 * @category options
 */
export const Options = Schema.Struct({
  ...options.commonFields,
  maxKeys: PositiveInt,
  idleTimeToLive: Schema.optional(DurationInput),
  exposeKeys: Schema.optional(Schema.Boolean)
})

/**
 * @since 0.1.0
 * @category options
 */
export interface Options {
  readonly name: string
  readonly algorithm: Algorithm
  readonly onExceeded?: "wait" | "fail" | undefined
  readonly maxWait?: Duration.Input | undefined
  /** Default: a fresh in-memory store owned by this limiter. A shared store keys state as `name:key`. */
  readonly store?: RateLimiterStore.RateLimiterStore | undefined
  /** What a call does when a shared `store` cannot decide; default: the store's declared one, else `"local"` (see `RateLimiter.Options`). */
  readonly onStoreError?: Store.OnStoreError | undefined
  /** Most keys with state at once. Required: an unbounded key space is a memory leak. */
  readonly maxKeys: number
  /** A key at rest and unused for this long is dropped when a new key arrives; default 1 minute. */
  readonly idleTimeToLive?: Duration.Input | undefined
  /** Put keys in errors (`RateLimited.key`), events, stats and metric labels; default false. */
  readonly exposeKeys?: boolean | undefined
}

interface Entry {
  readonly limiter: internal.LimiterState
  lastUsed: number
  readonly registrations: Array<Metric.Registration> | undefined
}

/** How many least-recently-used keys a new key looks at for idle ones. */
const idleScan = 8

/** @internal */
export class KeyedState implements internal.MetricSource {
  readonly entries = new Map<string, Entry>()
  readonly listeners: internal.LimiterState["listeners"] = new EventHub()
  reclaimed = 0
  /** After a full scan found no key at rest: new keys are refused until this time without scanning again. */
  private saturatedUntil = -Infinity
  private readonly retired = {
    admitted: 0,
    admittedCost: 0,
    admittedAfterWait: 0,
    cancelled: 0,
    totalWaitMs: 0,
    longestWaitMs: 0,
    rejected: internal.emptyRejected()
  }
  /** Rejections decided before any key's state is involved. */
  private readonly door = internal.emptyRejected()
  private readonly ownStore: boolean
  private readonly onRelease = () => {
    this.saturatedUntil = -Infinity
  }

  readonly name: string
  readonly algorithm: RateLimiterStore.Algorithm
  readonly limit: number
  readonly wait: boolean
  readonly maxWaitMs: number
  readonly store: RateLimiterStore.RateLimiterStore
  readonly maxKeys: number
  readonly idleTtlMs: number
  readonly exposeKeys: boolean
  readonly metricContext: Context.Context<never>
  /** The creating fiber's clock, for metrics read outside any fiber. */
  readonly clock: Clock.Clock
  /** A shared store's `onStoreError` machinery, one for every key. */
  readonly fallback: ReturnType<typeof internal.fallbackFor>

  constructor(o: {
    readonly name: string
    readonly settings: options.Settings
    readonly store: RateLimiterStore.RateLimiterStore | undefined
    readonly maxKeys: number
    readonly idleTtlMs: number
    readonly exposeKeys: boolean
    readonly metricContext: Context.Context<never>
    readonly clock: Clock.Clock
  }) {
    this.name = o.name
    this.algorithm = o.settings.algorithm
    this.limit = limitOf(o.settings.algorithm)
    this.wait = o.settings.wait
    this.maxWaitMs = o.settings.maxWaitMs
    this.ownStore = o.store === undefined
    this.store = o.store ?? RateLimiterStore.memory()
    this.maxKeys = o.maxKeys
    this.idleTtlMs = o.idleTtlMs
    this.exposeKeys = o.exposeKeys
    this.metricContext = o.metricContext
    this.clock = o.clock
    this.fallback = internal.fallbackFor(this.store, o.settings.onStoreError, o.maxKeys)
  }

  /** The state for `key`, created (and idle keys dropped) on demand; `undefined` when no key can be dropped. */
  limiterFor(key: string, now: number): internal.LimiterState | undefined {
    const found = this.entries.get(key)
    if (found !== undefined) {
      // Re-insertion keeps the Map in least-recently-used order.
      this.entries.delete(key)
      this.entries.set(key, found)
      found.lastUsed = now
      return found.limiter
    }
    if (now < this.saturatedUntil) return undefined
    this.dropIdle(now)
    if (this.entries.size >= this.maxKeys && !this.dropLeastRecentlyUsed(now)) return undefined
    const limiter = new internal.LimiterState({
      name: this.name,
      key: this.exposeKeys ? key : undefined,
      storeKey: this.ownStore ? key : `${this.name}:${key}`,
      algorithm: this.algorithm,
      limit: this.limit,
      wait: this.wait,
      maxWaitMs: this.maxWaitMs,
      store: this.store,
      listeners: this.listeners,
      onRelease: this.onRelease,
      fallback: this.fallback
    })
    const registrations = this.exposeKeys
      ? internal.registerMetrics(
        this.metricContext,
        { name: this.name, key },
        limiter,
        internal.reportedReasons(false, this.fallback !== undefined),
        () => limiter.remainingAt(this.clock.currentTimeMillisUnsafe())
      )
      : undefined
    this.entries.set(key, { limiter, lastUsed: now, registrations })
    return limiter
  }

  private atRest(limiter: internal.LimiterState, now: number): boolean {
    return limiter.idle && (limiter.sync === undefined || limiter.resetAt(now) <= now)
  }

  /** Looks at the few least recently used keys; stops at the first one used within `idleTimeToLive`. */
  private dropIdle(now: number): void {
    let looked = 0
    for (const [key, entry] of this.entries) {
      if (looked++ >= idleScan || now - entry.lastUsed < this.idleTtlMs) return
      if (this.atRest(entry.limiter, now)) this.drop(key, entry)
    }
  }

  private dropLeastRecentlyUsed(now: number): boolean {
    let earliest = Infinity
    for (const [key, entry] of this.entries) {
      if (this.atRest(entry.limiter, now)) {
        this.drop(key, entry)
        return true
      }
      const at = entry.limiter.reclaimableAt(now)
      if (at < earliest) earliest = at
    }
    this.saturatedUntil = earliest
    return false
  }

  private drop(key: string, entry: Entry): void {
    this.entries.delete(key)
    this.reclaimed++
    const l = entry.limiter
    const r = this.retired
    r.admitted += l.admitted
    r.admittedCost += l.admittedCost
    r.admittedAfterWait += l.admittedAfterWait
    r.cancelled += l.cancelled
    r.totalWaitMs += l.totalWaitMs
    if (l.longestWaitMs > r.longestWaitMs) r.longestWaitMs = l.longestWaitMs
    for (const reason of internal.reasons) r.rejected[reason] += l.rejected[reason]
    l.sync?.forget(l.storeKey)
    if (entry.registrations !== undefined) for (const registration of entry.registrations) registration.remove()
  }

  /** Rejections decided before a key's state is involved: an impossible cost, or no room for a new key. */
  rejectAtDoor(
    reason: "Exceeded" | "TooManyKeys",
    key: string,
    cost: number,
    now: number,
    caller: Fiber.Fiber<unknown, unknown>
  ): Effect.Effect<never, RateLimited> {
    this.door[reason]++
    const retryAfterMs = reason === "Exceeded" ? Infinity : Math.max(0, this.saturatedUntil - now)
    const shownKey = this.exposeKeys ? key : undefined
    const span = tracing.spanOf(caller)
    if (span !== undefined) {
      const attributes: tracing.Attributes = {
        "bulwark.name": this.name,
        "bulwark.ratelimiter.reason": reason,
        "bulwark.ratelimiter.cost": cost
      }
      if (shownKey !== undefined) attributes["bulwark.ratelimiter.key"] = shownKey
      if (retryAfterMs !== Infinity) attributes["bulwark.ratelimiter.retry_after_ms"] = retryAfterMs
      tracing.event(caller, span, "bulwark.ratelimiter.rejected", attributes)
    }
    if (this.listeners.active) {
      const event: Event = {
        _tag: "Rejected",
        name: this.name,
        ...(shownKey === undefined ? {} : { key: shownKey }),
        reason,
        cost,
        retryAfter: retryAfterMs === Infinity ? Duration.infinity : Duration.millis(retryAfterMs)
      }
      this.listeners.emit(event)
    }
    return Effect.fail(internal.fastError(this.name, shownKey, reason, retryAfterMs, this.limit))
  }

  removeMetrics(): void {
    for (const entry of this.entries.values()) {
      if (entry.registrations !== undefined) for (const registration of entry.registrations) registration.remove()
    }
  }

  private sum(read: (l: internal.LimiterState) => number): number {
    let total = 0
    for (const entry of this.entries.values()) total += read(entry.limiter)
    return total
  }
  get admitted(): number {
    return this.retired.admitted + this.sum((l) => l.admitted)
  }
  get admittedCost(): number {
    return this.retired.admittedCost + this.sum((l) => l.admittedCost)
  }
  get admittedAfterWait(): number {
    return this.retired.admittedAfterWait + this.sum((l) => l.admittedAfterWait)
  }
  get cancelled(): number {
    return this.retired.cancelled + this.sum((l) => l.cancelled)
  }
  get waiting(): number {
    return this.sum((l) => l.waiting)
  }
  get totalWaitMs(): number {
    return this.retired.totalWaitMs + this.sum((l) => l.totalWaitMs)
  }
  get longestWaitMs(): number {
    let longest = this.retired.longestWaitMs
    for (const entry of this.entries.values()) if (entry.limiter.longestWaitMs > longest) longest = entry.limiter.longestWaitMs
    return longest
  }
  get rejected(): Record<Reason, number> {
    const total = internal.emptyRejected()
    for (const reason of internal.reasons) {
      total[reason] = this.retired.rejected[reason] + this.door[reason] + this.sum((l) => l.rejected[reason])
    }
    return total
  }
}

const decode = decodeOptions("KeyedRateLimiter", Options)

const KeyedProto = {
  [TypeId]: TypeId,
  pipe() {
    return pipeArguments(this, arguments)
  },
  toJSON(this: KeyedRateLimiter) {
    return { _id: "KeyedRateLimiter", name: this.name, algorithm: this.algorithm }
  }
}

/**
 * @since 0.1.0
 * @category guards
 */
export const isKeyedRateLimiter = (u: unknown): u is KeyedRateLimiter =>
  typeof u === "object" && u !== null && TypeId in u

/**
 * Creates a keyed rate limiter that lives as long as the current scope.
 * Metrics: `bulwark.ratelimiter.admitted`, `.rejected` (by reason, including
 * `TooManyKeys`) and `.waiting`, totals over all keys, plus
 * `bulwark.ratelimiter.keys` (keys with state); per-key series only with
 * `exposeKeys: true`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options_: Options): Effect.Effect<KeyedRateLimiter, InvalidOptions, Scope.Scope> =>
  Effect.flatMap(decode(options_), (decoded) =>
    Effect.flatMap(options.settingsOf("KeyedRateLimiter", decoded), (settings) =>
      Effect.withFiber((fiber) => {
        const state = new KeyedState({
          name: decoded.name,
          settings,
          store: decoded.store,
          maxKeys: decoded.maxKeys,
          idleTtlMs: decoded.idleTimeToLive === undefined ? 60_000 : Duration.toMillis(decoded.idleTimeToLive),
          exposeKeys: decoded.exposeKeys ?? false,
          metricContext: fiber.context,
          clock: fiber.getRef(Clock.Clock)
        })
        const registrations = internal.registerMetrics(
          fiber.context,
          { name: state.name },
          state,
          internal.reportedReasons(true, state.fallback !== undefined),
          undefined,
          state.fallback
        )
        registrations.push(
          pullGauge(fiber.context, "bulwark.ratelimiter.keys", "Keys with state", { name: state.name }, () => state.entries.size)
        )
        const self: KeyedRateLimiter = Object.assign(Object.create(KeyedProto), {
          name: state.name,
          algorithm: state.algorithm,
          state
        })
        return Effect.as(
          Effect.addFinalizer(() =>
            Effect.sync(() => {
              for (const registration of registrations) registration.remove()
              state.removeMetrics()
              state.listeners.end()
            })
          ),
          self
        )
      })))

/**
 * Builds a keyed rate limiter as a service.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <I>(key: Context.Key<I, KeyedRateLimiter>, options_: Options): Layer.Layer<I, InvalidOptions> =>
  Layer.effect(key, make(options_))

const withKeyed = <I, A, E, R>(
  keyed: KeyedRateLimiterOrKey<I>,
  f: (keyed: KeyedRateLimiter) => Effect.Effect<A, E, R>
): Effect.Effect<A, E, R | I> => isKeyedRateLimiter(keyed) ? f(keyed) : Effect.flatMap(keyed, f)

type Guard = <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | RateLimited, R>

const keyedGuard = (state: KeyedState, key: string, cost: number): Guard => {
  if (cost > state.limit) {
    return () =>
      Effect.withFiber((fiber) =>
        state.rejectAtDoor("Exceeded", key, cost, fiber.getRef(Clock.Clock).currentTimeMillisUnsafe(), fiber)
      )
  }
  const shared = state.store.inProcess === undefined
  const slow = <A, E, R>(self: Effect.Effect<A, E, R>) =>
    Effect.uninterruptibleMask((restore) =>
      Effect.withFiber((fiber) => {
        const now = fiber.getRef(Clock.Clock).currentTimeMillisUnsafe()
        const limiter = state.limiterFor(key, now)
        const f = fiber as Fiber.Fiber<unknown, unknown>
        if (limiter === undefined) return state.rejectAtDoor("TooManyKeys", key, cost, now, f)
        return shared ? limiter.admitShared(f, self, cost, restore) : limiter.admitOrWait(f, self, cost, restore)
      })
    )
  if (shared) return slow
  return <A, E, R>(self: Effect.Effect<A, E, R>) =>
    Effect.withFiber<A, E | RateLimited, R>((fiber) => {
      const now = fiber.getRef(Clock.Clock).currentTimeMillisUnsafe()
      const limiter = state.limiterFor(key, now)
      if (limiter === undefined) return state.rejectAtDoor("TooManyKeys", key, cost, now, fiber)
      const decided = limiter.decideNow(now, cost, fiber)
      if (decided === undefined) return self
      return decided === internal.pending ? slow(self) : decided
    })
}

const compileGuard = <I>(
  keyed: KeyedRateLimiterOrKey<I>,
  key: string,
  options_: GuardOptions | undefined
): (<A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | RateLimited, R | I>) => {
  const cost = options.parseCost("KeyedRateLimiter.guard", options_)
  if (typeof cost !== "number") return () => cost
  if (isKeyedRateLimiter(keyed)) return keyedGuard(keyed.state, key, cost)
  return (self) => Effect.flatMap(keyed, (resolved) => keyedGuard(resolved.state, key, cost)(self))
}

/**
 * Runs an effect under the limit of `key`, with the same per-call options as
 * `RateLimiter.guard`.
 *
 * **Example** (Guarding per user)
 *
 * ```ts
 * import { KeyedRateLimiter } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * declare const perUser: KeyedRateLimiter.KeyedRateLimiter
 * declare const search: (user: string) => Effect.Effect<string>
 *
 * const handle = (user: string) => search(user).pipe(KeyedRateLimiter.guard(perUser, user))
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const guard: {
  <I = never>(
    keyed: KeyedRateLimiterOrKey<I>,
    key: string,
    options?: GuardOptions
  ): <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | RateLimited, R | I>
  <A, E, R, I = never>(
    self: Effect.Effect<A, E, R>,
    keyed: KeyedRateLimiterOrKey<I>,
    key: string,
    options?: GuardOptions
  ): Effect.Effect<A, E | RateLimited, R | I>
} = function(this: unknown) {
  if (arguments.length >= 3 && typeof arguments[2] === "string") {
    return compileGuard(arguments[1], arguments[2], arguments[3])(arguments[0])
  }
  return compileGuard(arguments[0], arguments[1], arguments[2])
} as any

/**
 * Takes `cost` units of `key` without running anything; see
 * `RateLimiter.consume`.
 *
 * @since 0.1.0
 * @category combinators
 */
export const consume = <I = never>(
  keyed: KeyedRateLimiterOrKey<I>,
  key: string,
  options_?: GuardOptions
): Effect.Effect<Permit, RateLimited, I> => {
  const cost = options.parseCost("KeyedRateLimiter.consume", options_)
  if (typeof cost !== "number") return cost
  return withKeyed(keyed, ({ state }) =>
    Effect.withFiber((fiber) => {
      const now = fiber.getRef(Clock.Clock).currentTimeMillisUnsafe()
      if (cost > state.limit) return state.rejectAtDoor("Exceeded", key, cost, now, fiber)
      const limiter = state.limiterFor(key, now)
      if (limiter === undefined) return state.rejectAtDoor("TooManyKeys", key, cost, now, fiber)
      return permitOf(limiter, guardOf(limiter, cost))
    }))
}

/**
 * Nothing passes for `key` before `duration` from now (a `Retry-After` for
 * one user or one API key); see `RateLimiter.block`. Fails with
 * `TooManyKeys` when the key has no state and none can be made.
 *
 * @since 0.1.0
 * @category control
 */
export const block = <I = never>(
  keyed: KeyedRateLimiterOrKey<I>,
  key: string,
  duration: Duration.Input
): Effect.Effect<void, RateLimited, I> => {
  const ms = options.parseBlock("KeyedRateLimiter.block", duration)
  if (typeof ms !== "number") return ms
  return withKeyed(keyed, ({ state }) =>
    Effect.withFiber((fiber) => {
      const now = fiber.getRef(Clock.Clock).currentTimeMillisUnsafe()
      const limiter = state.limiterFor(key, now)
      if (limiter === undefined) return state.rejectAtDoor("TooManyKeys", key, 0, now, fiber)
      return limiter.block(now + ms, now)
    }))
}

/**
 * Totals over all keys, live and dropped.
 *
 * @since 0.1.0
 * @category models
 */
export interface Snapshot {
  readonly name: string
  readonly algorithm: RateLimiterStore.Algorithm
  /** Keys with state now. */
  readonly keys: number
  readonly maxKeys: number
  /** Keys whose state was dropped (at rest and idle, or to make room). */
  readonly reclaimed: number
  readonly admitted: number
  readonly admittedCost: number
  readonly admittedAfterWait: number
  readonly rejected: Readonly<Record<Reason, number>>
  readonly rejectedTotal: number
  readonly cancelled: number
  readonly waiting: number
  readonly totalWait: Duration.Duration
  readonly longestWait: Duration.Duration
  /** Operations of a shared store that failed, by reason (always zero for an in-process store). */
  readonly storeErrors: Readonly<Record<Store.Reason, number>>
  /** Calls decided by `onStoreError` instead of the shared store. */
  readonly decidedWithoutStore: number
  /** Per-key figures, only with `exposeKeys: true`. */
  readonly perKey:
    | ReadonlyArray<{
      readonly key: string
      readonly waiting: number
      readonly remaining: number
      readonly blockedFor: Duration.Duration
    }>
    | undefined
}

/**
 * @since 0.1.0
 * @category observability
 */
export const stats = <I = never>(keyed: KeyedRateLimiterOrKey<I>): Effect.Effect<Snapshot, never, I> =>
  withKeyed(keyed, ({ state }) =>
    Effect.withFiber((fiber) => {
      const now = fiber.getRef(Clock.Clock).currentTimeMillisUnsafe()
      const rejected = state.rejected
      return Effect.succeed({
        name: state.name,
        algorithm: state.algorithm,
        keys: state.entries.size,
        maxKeys: state.maxKeys,
        reclaimed: state.reclaimed,
        admitted: state.admitted,
        admittedCost: state.admittedCost,
        admittedAfterWait: state.admittedAfterWait,
        rejected,
        rejectedTotal: internal.sumRejected(rejected),
        cancelled: state.cancelled,
        waiting: state.waiting,
        totalWait: Duration.millis(state.totalWaitMs),
        longestWait: Duration.millis(state.longestWaitMs),
        storeErrors: storeErrorsOf(state.fallback),
        decidedWithoutStore: state.fallback?.decided ?? 0,
        perKey: state.exposeKeys
          ? Array.from(state.entries, ([key, { limiter }]) => ({
            key,
            waiting: limiter.waiting,
            remaining: limiter.remainingAt(now),
            blockedFor: limiter.blockedUntil > now ? Duration.millis(limiter.blockedUntil - now) : Duration.zero
          }))
          : undefined
      })
    }))

/**
 * What every key decides, as one stream (see `RateLimiter.events`); events
 * carry the key only with `exposeKeys: true`.
 *
 * @since 0.1.0
 * @category observability
 */
export const events = <I = never>(
  keyed: KeyedRateLimiterOrKey<I>,
  options_?: { readonly bufferSize?: number | undefined }
): Stream.Stream<Event, never, I> =>
  isKeyedRateLimiter(keyed)
    ? keyed.state.listeners.stream(options_?.bufferSize ?? 4096)
    : Stream.unwrap(Effect.map(keyed, (k) => k.state.listeners.stream(options_?.bufferSize ?? 4096)))
