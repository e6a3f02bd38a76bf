/**
 * One independent bulkhead compartment per key: per tenant, per host, per API
 * key. A noisy tenant fills its own compartment and is rejected there, while
 * every other tenant keeps its full `maxConcurrent`.
 *
 * **Details**
 *
 * - Each key gets a compartment with the options of the keyed bulkhead
 *   (`maxConcurrent`, `maxQueue`, `queueTimeout`) and the same semantics as a
 *   plain `Bulkhead`: FIFO, weights, per-call timeouts and deadlines.
 * - At most `maxKeys` compartments live at once. Compartments are kept in
 *   least-recently-used order. A compartment idle (nothing running or queued)
 *   for `idleTimeToLive` is reclaimed when a new key arrives; when `maxKeys`
 *   is reached, the least recently used idle compartment is reclaimed at once.
 *   If every compartment is busy, a call with a new key is rejected with
 *   reason `TooManyKeys`. Reclaiming happens on the caller's fiber: there is
 *   no background fiber to leak.
 * - Keys are user data (tenant ids, hosts). They never appear in errors or
 *   metric labels unless `exposeKeys: true`; by default errors carry the keyed
 *   bulkhead's name only and metrics are aggregated over all keys.
 *
 * **Example** (A compartment per tenant)
 *
 * ```ts
 * import { KeyedBulkhead } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const tenants = yield* KeyedBulkhead.make({ name: "tenants", maxConcurrent: 2, maxQueue: 10, maxKeys: 10_000 })
 *   return yield* Effect.succeed("report").pipe(KeyedBulkhead.guard(tenants, "tenant-42"))
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
import type * as Bulkhead from "./Bulkhead.ts"
import type { BulkheadFull, GuardOptions, Reason } from "./Bulkhead.ts"
import * as internal from "./internal/bulkhead.ts"
import { EventHub } from "./internal/events.ts"
import { pullGauge } from "./internal/metrics.ts"
import { decodeOptions, DurationInput, Name, NonNegativeInt, PositiveInt } from "./internal/options.ts"
import * as tracing from "./internal/tracing.ts"
import type { InvalidOptions } from "./InvalidOptions.ts"

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: "~@bulwark/core/KeyedBulkhead" = "~@bulwark/core/KeyedBulkhead"

/**
 * @since 0.1.0
 * @category models
 */
export interface KeyedBulkhead extends Pipeable {
  readonly [TypeId]: typeof TypeId
  readonly name: string
  /** @internal */
  readonly state: KeyedState
}

/**
 * A keyed bulkhead, or a service key that resolves to one.
 *
 * @since 0.1.0
 * @category models
 */
export type KeyedBulkheadOrKey<I = never> = KeyedBulkhead | Context.Key<I, KeyedBulkhead>

/**
 * The options of a keyed bulkhead, as a Schema.
 *
 * @since 0.1.0
 * @category options
 */
export const Options = Schema.Struct({
  name: Name,
  maxConcurrent: PositiveInt,
  maxQueue: Schema.optional(NonNegativeInt),
  queueTimeout: Schema.optional(DurationInput),
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
  /** Permits per compartment. */
  readonly maxConcurrent: number
  /** Waiting room per compartment; default 0. */
  readonly maxQueue?: number | undefined
  /** Longest wait in a compartment's queue; default unbounded. */
  readonly queueTimeout?: Duration.Input | undefined
  /** Most compartments alive at once. Required: an unbounded key space is a memory leak. */
  readonly maxKeys: number
  /** An idle compartment older than this is reclaimed; default 1 minute. */
  readonly idleTimeToLive?: Duration.Input | undefined
  /** Put keys in errors (`BulkheadFull.key`), stats and metric labels; default false. */
  readonly exposeKeys?: boolean | undefined
}

interface Compartment {
  readonly bulkhead: internal.BulkheadState
  lastUsed: number
  registrations: Array<Metric.Registration> | undefined
}

/** @internal */
export class KeyedState implements internal.MetricSource {
  readonly compartments = new Map<string, Compartment>()
  readonly hub = new EventHub<Bulkhead.Event>()
  closed = false
  reclaimed = 0
  /** Counters of reclaimed compartments, so that totals stay cumulative. */
  private readonly retired = {
    admitted: 0,
    admittedAfterWait: 0,
    completed: 0,
    cancelled: 0,
    totalWaitMs: 0,
    maxWaitMs: 0,
    rejected: internal.emptyRejected(),
    waitBuckets: new Float64Array(internal.waitBoundaries.length + 1)
  }
  private readonly door: internal.BulkheadState
  readonly name: string
  readonly maxConcurrent: number
  readonly maxQueue: number
  readonly queueTimeoutMs: number
  readonly maxKeys: number
  readonly idleTtlMs: number
  readonly exposeKeys: boolean
  readonly metricContext: Context.Context<never>

  constructor(options: {
    readonly name: string
    readonly maxConcurrent: number
    readonly maxQueue: number
    readonly queueTimeoutMs: number
    readonly maxKeys: number
    readonly idleTtlMs: number
    readonly exposeKeys: boolean
    readonly metricContext: Context.Context<never>
  }) {
    this.name = options.name
    this.maxConcurrent = options.maxConcurrent
    this.maxQueue = options.maxQueue
    this.queueTimeoutMs = options.queueTimeoutMs
    this.maxKeys = options.maxKeys
    this.idleTtlMs = options.idleTtlMs
    this.exposeKeys = options.exposeKeys
    this.metricContext = options.metricContext
    // Counts the rejections decided before a compartment is involved.
    this.door = new internal.BulkheadState(
      this.name,
      this.maxConcurrent,
      this.maxQueue,
      this.queueTimeoutMs,
      undefined,
      this.hub
    )
  }

  /** The compartment for `key`, created (and older ones reclaimed) on demand; `undefined` when every compartment is busy. */
  compartment(key: string, now: number): internal.BulkheadState | undefined {
    const found = this.compartments.get(key)
    if (found !== undefined) {
      // Re-insertion keeps the Map in least-recently-used order.
      this.compartments.delete(key)
      this.compartments.set(key, found)
      found.lastUsed = now
      return found.bulkhead
    }
    this.reclaimIdle(now)
    if (this.compartments.size >= this.maxKeys && !this.reclaimLeastRecentlyUsed()) return undefined
    const bulkhead = new internal.BulkheadState(
      this.name,
      this.maxConcurrent,
      this.maxQueue,
      this.queueTimeoutMs,
      this.exposeKeys ? key : undefined,
      this.hub
    )
    // Per-key series have names of their own, so that summing the aggregate
    // series by name does not count every call twice.
    const registrations = this.exposeKeys
      ? internal.registerMetrics(
        this.metricContext,
        { name: this.name, key },
        bulkhead,
        internal.reasons.slice(0, 4),
        "bulwark.bulkhead.key"
      )
      : undefined
    this.compartments.set(key, { bulkhead, lastUsed: now, registrations })
    return bulkhead
  }

  /** Walks from the least recently used end; stops at the first idle compartment that is still fresh. */
  private reclaimIdle(now: number): void {
    for (const [key, compartment] of this.compartments) {
      if (!compartment.bulkhead.idle) continue
      if (now - compartment.lastUsed < this.idleTtlMs) return
      this.retire(key, compartment)
    }
  }

  private reclaimLeastRecentlyUsed(): boolean {
    for (const [key, compartment] of this.compartments) {
      if (compartment.bulkhead.idle) {
        this.retire(key, compartment)
        return true
      }
    }
    return false
  }

  private retire(key: string, compartment: Compartment): void {
    this.compartments.delete(key)
    this.reclaimed++
    const b = compartment.bulkhead
    const r = this.retired
    r.admitted += b.admitted
    r.admittedAfterWait += b.admittedAfterWait
    r.completed += b.completed
    r.cancelled += b.cancelled
    r.totalWaitMs += b.totalWaitMs
    if (b.maxWaitMs > r.maxWaitMs) r.maxWaitMs = b.maxWaitMs
    for (const reason of internal.reasons) r.rejected[reason] += b.rejected[reason]
    for (let i = 0; i < r.waitBuckets.length; i++) r.waitBuckets[i] += b.waitBuckets[i]
    if (compartment.registrations !== undefined) for (const registration of compartment.registrations) registration.remove()
  }

  /** Rejections decided before a compartment is involved (closed, or no compartment to be had). */
  rejectAtDoor(
    reason: "Closed" | "TooManyKeys",
    key: string,
    weight: number,
    caller: Fiber.Fiber<unknown, unknown>
  ): Effect.Effect<never, BulkheadFull> {
    if (!this.exposeKeys) {
      if (caller.cache.span !== undefined) this.door.traceRejection(caller, reason)
      return this.door.reject(reason, 0, weight)
    }
    this.door.rejected[reason]++
    const span = tracing.spanOf(caller)
    if (span !== undefined) {
      tracing.event(caller, span, "bulwark.bulkhead.rejected", {
        "bulwark.name": this.name,
        "bulwark.bulkhead.key": key,
        "bulwark.bulkhead.reason": reason
      })
    }
    return Effect.fail(internal.fastError(this.name, key, reason, this.maxConcurrent, this.maxQueue, 0))
  }

  closeAll(): void {
    if (this.closed) return
    this.closed = true
    // One Closed event for the keyed bulkhead, not one per compartment.
    for (const compartment of this.compartments.values()) compartment.bulkhead.close(false)
    if (this.hub.active) this.hub.emit({ _tag: "Closed", name: this.name })
  }

  get drain(): Effect.Effect<void> {
    return Effect.forEach(Array.from(this.compartments.values()), (c) => c.bulkhead.drain, {
      concurrency: "unbounded",
      discard: true
    })
  }

  removeMetrics(): void {
    for (const compartment of this.compartments.values()) {
      if (compartment.registrations !== undefined) for (const registration of compartment.registrations) registration.remove()
    }
  }

  // Aggregates, read by metrics and stats.
  private sum(read: (b: internal.BulkheadState) => number): number {
    let total = 0
    for (const compartment of this.compartments.values()) total += read(compartment.bulkhead)
    return total
  }
  get inFlight(): number {
    return this.sum((b) => b.inFlight)
  }
  get running(): number {
    return this.sum((b) => b.running)
  }
  get queued(): number {
    return this.sum((b) => b.queued)
  }
  get admitted(): number {
    return this.retired.admitted + this.sum((b) => b.admitted)
  }
  get admittedAfterWait(): number {
    return this.retired.admittedAfterWait + this.sum((b) => b.admittedAfterWait)
  }
  get completed(): number {
    return this.retired.completed + this.sum((b) => b.completed)
  }
  get cancelled(): number {
    return this.retired.cancelled + this.sum((b) => b.cancelled)
  }
  get totalWaitMs(): number {
    return this.retired.totalWaitMs + this.sum((b) => b.totalWaitMs)
  }
  get maxWaitMs(): number {
    let max = this.retired.maxWaitMs
    for (const c of this.compartments.values()) if (c.bulkhead.maxWaitMs > max) max = c.bulkhead.maxWaitMs
    return max
  }
  get rejected(): Record<Reason, number> {
    const total = internal.emptyRejected()
    for (const reason of internal.reasons) {
      total[reason] = this.retired.rejected[reason] + this.door.rejected[reason] +
        this.sum((b) => b.rejected[reason])
    }
    return total
  }
  waitHistogram(): Metric.HistogramState {
    const merged = new internal.BulkheadState(this.name, this.maxConcurrent, this.maxQueue, this.queueTimeoutMs)
    merged.admitted = this.admitted
    merged.admittedAfterWait = this.admittedAfterWait
    merged.totalWaitMs = this.totalWaitMs
    merged.maxWaitMs = this.maxWaitMs
    const buckets = merged.waitBuckets
    for (let i = 0; i < buckets.length; i++) buckets[i] = this.retired.waitBuckets[i]
    for (const c of this.compartments.values()) {
      for (let i = 0; i < buckets.length; i++) buckets[i] += c.bulkhead.waitBuckets[i]
      if (c.bulkhead.minWaitMs < merged.minWaitMs) merged.minWaitMs = c.bulkhead.minWaitMs
    }
    return merged.waitHistogram()
  }
}

const decode = decodeOptions("KeyedBulkhead", Options)

const KeyedProto = {
  [TypeId]: TypeId,
  pipe() {
    return pipeArguments(this, arguments)
  },
  toJSON(this: KeyedBulkhead) {
    return { _id: "KeyedBulkhead", name: this.name }
  }
}

/**
 * @since 0.1.0
 * @category guards
 */
export const isKeyedBulkhead = (u: unknown): u is KeyedBulkhead => typeof u === "object" && u !== null && TypeId in u

/**
 * Creates a keyed bulkhead that lives as long as the current scope. Closing
 * the scope closes every compartment, then waits for their running calls.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<KeyedBulkhead, InvalidOptions, Scope.Scope> =>
  Effect.flatMap(decode(options), (decoded) =>
    Effect.withFiber((fiber) => {
      const state = new KeyedState({
        name: decoded.name,
        maxConcurrent: decoded.maxConcurrent,
        maxQueue: decoded.maxQueue ?? 0,
        queueTimeoutMs: decoded.queueTimeout === undefined ? Infinity : Duration.toMillis(decoded.queueTimeout),
        maxKeys: decoded.maxKeys,
        idleTtlMs: decoded.idleTimeToLive === undefined ? 60_000 : Duration.toMillis(decoded.idleTimeToLive),
        exposeKeys: decoded.exposeKeys ?? false,
        metricContext: fiber.context
      })
      const registrations = internal.registerMetrics(fiber.context, { name: state.name }, state, internal.reasons)
      registrations.push(
        pullGauge(fiber.context, "bulwark.bulkhead.keys", "Live compartments", { name: state.name }, () => state.compartments.size)
      )
      const self: KeyedBulkhead = Object.assign(Object.create(KeyedProto), { name: state.name, state })
      return Effect.as(
        Effect.addFinalizer(() =>
          Effect.sync(() => state.closeAll()).pipe(
            Effect.andThen(state.drain),
            Effect.ensuring(Effect.sync(() => {
              for (const registration of registrations) registration.remove()
              state.removeMetrics()
              state.hub.end()
            }))
          )
        ),
        self
      )
    }))

/**
 * Builds a keyed bulkhead as a service.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <I>(key: Context.Key<I, KeyedBulkhead>, options: Options): Layer.Layer<I, InvalidOptions> =>
  Layer.effect(key, make(options))

const admitKeyed = <A, E, R>(
  state: KeyedState,
  key: string,
  self: Effect.Effect<A, E, R>,
  call: internal.CallOptions
): Effect.Effect<A, E | BulkheadFull, R> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.withFiber((fiber: Fiber.Fiber<unknown, unknown>) => {
      if (state.closed) return state.rejectAtDoor("Closed", key, call.weight, fiber)
      const compartment = state.compartment(key, fiber.getRef(Clock.Clock).currentTimeMillisUnsafe())
      if (compartment === undefined) return state.rejectAtDoor("TooManyKeys", key, call.weight, fiber)
      return compartment.admit(fiber, self, restore, call.weight, call.timeoutMs, call.deadline)
    })
  )

/**
 * Runs an effect in the compartment of `key`, with the same per-call options
 * as `Bulkhead.guard`.
 *
 * **Example** (Guarding per tenant)
 *
 * ```ts
 * import { KeyedBulkhead } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * declare const tenants: KeyedBulkhead.KeyedBulkhead
 * declare const render: (tenant: string) => Effect.Effect<string>
 *
 * const handle = (tenant: string) => render(tenant).pipe(KeyedBulkhead.guard(tenants, tenant))
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const guard: {
  <I = never>(
    keyed: KeyedBulkheadOrKey<I>,
    key: string,
    options?: GuardOptions
  ): <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | BulkheadFull, R | I>
  <A, E, R, I = never>(
    self: Effect.Effect<A, E, R>,
    keyed: KeyedBulkheadOrKey<I>,
    key: string,
    options?: GuardOptions
  ): Effect.Effect<A, E | BulkheadFull, R | I>
} = function(this: unknown) {
  if (arguments.length >= 3 && typeof arguments[2] === "string") {
    return compileGuard(arguments[1], arguments[2], arguments[3])(arguments[0])
  }
  return compileGuard(arguments[0], arguments[1], arguments[2])
} as any

const compileGuard = <I>(
  keyed: KeyedBulkheadOrKey<I>,
  key: string,
  options: GuardOptions | undefined
): (<A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | BulkheadFull, R | I>) => {
  const call = internal.parseGuardOptions("KeyedBulkhead.guard", options)
  if (Effect.isEffect(call)) return () => call
  if (isKeyedBulkhead(keyed)) return (self) => admitKeyed(keyed.state, key, self, call)
  return (self) => Effect.flatMap(keyed, (resolved) => admitKeyed(resolved.state, key, self, call))
}

/**
 * Totals over all compartments, live and reclaimed.
 *
 * @since 0.1.0
 * @category models
 */
export interface Snapshot {
  readonly name: string
  /** Live compartments. */
  readonly keys: number
  readonly maxKeys: number
  /** Compartments reclaimed so far (idle past their TTL, or evicted at `maxKeys`). */
  readonly reclaimed: number
  readonly inFlight: number
  readonly running: number
  readonly queued: number
  readonly admitted: number
  readonly completed: number
  readonly cancelled: number
  readonly rejected: Readonly<Record<Reason, number>>
  readonly totalWait: Duration.Duration
  readonly maxWait: Duration.Duration
  /** Per-key figures, only with `exposeKeys: true`. */
  readonly perKey: ReadonlyArray<{ readonly key: string; readonly inFlight: number; readonly queued: number }> | undefined
}

const withKeyed = <I, A, E, R>(
  keyed: KeyedBulkheadOrKey<I>,
  f: (keyed: KeyedBulkhead) => Effect.Effect<A, E, R>
): Effect.Effect<A, E, R | I> => isKeyedBulkhead(keyed) ? f(keyed) : Effect.flatMap(keyed, f)

/**
 * @since 0.1.0
 * @category observability
 */
export const stats = <I = never>(keyed: KeyedBulkheadOrKey<I>): Effect.Effect<Snapshot, never, I> =>
  withKeyed(keyed, ({ state }) =>
    Effect.sync(() => ({
      name: state.name,
      keys: state.compartments.size,
      maxKeys: state.maxKeys,
      reclaimed: state.reclaimed,
      inFlight: state.inFlight,
      running: state.running,
      queued: state.queued,
      admitted: state.admitted,
      completed: state.completed,
      cancelled: state.cancelled,
      rejected: state.rejected,
      totalWait: Duration.millis(state.totalWaitMs),
      maxWait: Duration.millis(state.maxWaitMs),
      perKey: state.exposeKeys
        ? Array.from(state.compartments, ([key, c]) => ({ key, inFlight: c.bulkhead.inFlight, queued: c.bulkhead.queued }))
        : undefined
    })))

/**
 * Rejects queued and later calls of every compartment with `Closed`.
 *
 * @since 0.1.0
 * @category lifecycle
 */
export const close = <I = never>(keyed: KeyedBulkheadOrKey<I>): Effect.Effect<void, never, I> =>
  withKeyed(keyed, ({ state }) => Effect.sync(() => state.closeAll()))

/**
 * Waits for the calls running or queued now in every compartment.
 *
 * @since 0.1.0
 * @category lifecycle
 */
export const drain = <I = never>(keyed: KeyedBulkheadOrKey<I>): Effect.Effect<void, never, I> =>
  withKeyed(keyed, ({ state }) => Effect.suspend(() => state.drain))

/**
 * What happens in every compartment, as one stream (the same events as
 * `Bulkhead.events`, named after the keyed bulkhead; keys are not included).
 *
 * @since 0.1.0
 * @category observability
 */
export const events = <I = never>(
  keyed: KeyedBulkheadOrKey<I>,
  options?: { readonly bufferSize?: number | undefined }
): Stream.Stream<Bulkhead.Event, never, I> =>
  isKeyedBulkhead(keyed)
    ? keyed.state.hub.stream(options?.bufferSize ?? 4096)
    : Stream.unwrap(Effect.map(keyed, (k) => k.state.hub.stream(options?.bufferSize ?? 4096)))
