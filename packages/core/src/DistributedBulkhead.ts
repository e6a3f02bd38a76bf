/**
 * A distributed bulkhead caps how many calls to one dependency run at once
 * **across every process** that shares a store: a database that takes 50
 * connections, a partner API that allows 20 requests in flight per account,
 * whatever the number of replicas.
 *
 * **When to use**
 *
 * When the limit belongs to the dependency rather than to one process. A
 * per-process `Bulkhead` of `limit / replicas` wastes capacity while
 * replicas are idle and overshoots when the deployment scales out; this one
 * keeps one global count in a store (`BulkheadStore.memory()` for one
 * process and tests, `RedisBulkheadStore` from `@bulwark/redis` for many).
 *
 * **Details**
 *
 * - A call takes a **slot** in the store before it runs and gives it back on
 *   every exit: success, failure, defect or interruption. At most
 *   `maxConcurrent` slots are held at once, whoever holds them.
 * - A slot is a **lease** (`lease`, default 30 seconds), renewed every third
 *   of a lease by a fiber tied to the call. A process that dies stops
 *   renewing, and its slots come back within one lease.
 * - With `maxQueue > 0` a call that finds no free slot takes a **ticket** in
 *   the store's waiting room (at most `maxQueue` tickets, shared by every
 *   process) and polls (10 ms, doubling up to `pollInterval`, default 100
 *   ms; at once when a slot is released in its own process). A call is
 *   admitted only when every live ticket ahead of it fits too: FIFO by
 *   ticket order. It waits at most `queueTimeout`, then fails with
 *   `QueueTimeout`.
 * - When the store cannot decide, `onStoreError` says what happens:
 *   `"local"` (default) lets an in-process insurance bulkhead with the same
 *   limits decide until the store answers again (tried after 100 ms, then
 *   backing off to 2 s); `"fail-open"` runs the call without a slot;
 *   `"fail-closed"` rejects it with `BulkheadFull`, reason
 *   `StoreUnavailable`. Store errors are counted by reason.
 *
 * **Gotchas**
 *
 * - Every call costs store round trips: one to acquire (one per poll while
 *   queued), one to release, one per renewal. Guard calls that take
 *   milliseconds or more, not microsecond work.
 * - A call whose lease runs out (its process could not renew for a whole
 *   lease: paused, cut off from the store) keeps running, but its slot may
 *   be given to another call: the cap can then be exceeded by such calls.
 *   `leasesLost` counts them. Choose a lease well above the longest pause
 *   you expect.
 * - In `"local"` mode the cap is per process: with `n` processes, up to
 *   `n × localMaxConcurrent` calls run. Calls admitted locally finish outside
 *   the global count after the store is back.
 * - Use the same `maxConcurrent` in every process for a name.
 *
 * **Example** (One cap for every replica)
 *
 * ```ts
 * import { BulkheadStore, DistributedBulkhead } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const db = yield* DistributedBulkhead.make({
 *     name: "db",
 *     maxConcurrent: 50,
 *     maxQueue: 100,
 *     queueTimeout: "2 seconds",
 *     store: BulkheadStore.memory() // RedisBulkheadStore.make() from @bulwark/redis across processes
 *   })
 *   return yield* Effect.succeed("rows").pipe(DistributedBulkhead.guard(db))
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 */
import { Clock, Duration, Effect, Layer, Schema, type Scope } from "effect"
import * as Context from "effect/Context"
import { type Pipeable, pipeArguments } from "effect/Pipeable"
import * as Stream from "effect/Stream"
import type { BulkheadFull } from "./Bulkhead.ts"
import * as BulkheadStore from "./BulkheadStore.ts"
import * as internal from "./internal/distributedBulkhead.ts"
import { decodeOptions, decodeOrDie, DurationInput, Name, NonNegativeInt, PositiveInt } from "./internal/options.ts"
import type { InvalidOptions } from "./InvalidOptions.ts"
import { OnStoreError, type Reason as StoreErrorReason, type StoreError } from "./Store.ts"

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: "~@bulwark/core/DistributedBulkhead" = "~@bulwark/core/DistributedBulkhead"

/**
 * Why a distributed bulkhead rejected a call (the `reason` of its
 * `BulkheadFull`):
 *
 * - `QueueFull`: every slot was held and the waiting room (shared by every
 *   process) was full, or `maxQueue` is 0.
 * - `QueueTimeout`: the call waited `queueTimeout` (or its own, shorter,
 *   one) without a slot.
 * - `Closed`: the instance's scope closed before the call was admitted.
 * - `StoreUnavailable`: the store could not decide and `onStoreError` is
 *   `"fail-closed"`.
 *
 * @since 0.1.0
 * @category errors
 */
export type Reason = Extract<BulkheadFull["reason"], "QueueFull" | "QueueTimeout" | "Closed" | "StoreUnavailable">

/**
 * Who decides admissions now: the store, or (after a store error, with
 * `onStoreError: "local"`) the in-process insurance bulkhead.
 *
 * @since 0.1.0
 * @category models
 */
export type Mode = "Store" | "Local"

/**
 * A running distributed bulkhead. Create one with {@link make} (scoped) or
 * {@link layer}.
 *
 * @since 0.1.0
 * @category models
 */
export interface DistributedBulkhead extends Pipeable {
  readonly [TypeId]: typeof TypeId
  /** Names the cap in the store (processes share a cap by name), and appears in errors, stats and metrics. */
  readonly name: string
  readonly store: BulkheadStore.BulkheadStore
  /** @internal */
  readonly state: internal.State
}

/**
 * An instance, or a service key that resolves to one. Every operation of
 * this module accepts both; with a key, the key's identifier is added to `R`.
 *
 * @since 0.1.0
 * @category models
 */
export type DistributedBulkheadOrKey<I = never> = DistributedBulkhead | Context.Key<I, DistributedBulkhead>

/** A duration of a whole number of milliseconds, at least `min`: what a store's expiry (Redis `PX`) takes. */
const wholeMillis = (min: number) =>
  DurationInput.check(
    Schema.makeFilter((d: Duration.Duration) => {
      const ms = Duration.toMillis(d)
      return Number.isInteger(ms) && ms >= min
        ? undefined
        : `Expected a whole number of milliseconds >= ${min}, got ${Duration.format(d)}`
    })
  )

/**
 * The options of {@link make}, as a Schema: `make` and `layer` decode their
 * input with it and fail with `InvalidOptions` naming every bad field.
 *
 * @since 0.1.0
 * @category options
 */
export const Options = Schema.Struct({
  name: Name,
  maxConcurrent: PositiveInt,
  store: Schema.optional(Schema.declare(BulkheadStore.isBulkheadStore, {
    expected: "a BulkheadStore (BulkheadStore.memory, BulkheadStore.make, or a store from @bulwark/redis)"
  })),
  lease: Schema.optional(wholeMillis(3)),
  maxQueue: Schema.optional(NonNegativeInt),
  queueTimeout: Schema.optional(DurationInput),
  pollInterval: Schema.optional(wholeMillis(1)),
  onStoreError: Schema.optional(OnStoreError),
  localMaxConcurrent: Schema.optional(PositiveInt)
})

/**
 * @since 0.1.0
 * @category options
 */
export interface Options {
  /** Required; the name of the cap in the store (every process using it shares the cap), errors, stats, metrics. */
  readonly name: string
  /** The global cap: slots held at once by every process sharing the store. An integer >= 1. */
  readonly maxConcurrent: number
  /** Where the slots live; default a fresh `BulkheadStore.memory()` (this process only). */
  readonly store?: BulkheadStore.BulkheadStore | undefined
  /** How long a slot is held without renewal; renewed every third of it while the call runs. Default 30 seconds. */
  readonly lease?: Duration.Input | undefined
  /** Calls allowed to wait for a slot, across every process. An integer >= 0; default 0 (reject when full). */
  readonly maxQueue?: number | undefined
  /** Longest wait for a slot. Default: wait until admitted, closed or interrupted. */
  readonly queueTimeout?: Duration.Input | undefined
  /** The longest gap between two polls of a waiting call; default 100 milliseconds. */
  readonly pollInterval?: Duration.Input | undefined
  /** What to do when the store cannot decide; default: the one the store declares (SQLite: `"fail-open"`), else `"local"`. */
  readonly onStoreError?: OnStoreError | undefined
  /** The insurance bulkhead's cap in `"local"` mode, per process; default `maxConcurrent`. */
  readonly localMaxConcurrent?: number | undefined
}

/**
 * Per-call options of {@link guard}.
 *
 * @since 0.1.0
 * @category options
 */
export interface GuardOptions {
  /** A wait limit for this call; it may only shorten the instance's `queueTimeout`. */
  readonly queueTimeout?: Duration.Input | undefined
}

const defaultLeaseMs = 30_000
const defaultPollMs = 100

const decode = decodeOptions("DistributedBulkhead", Options)

const DistributedBulkheadProto = {
  [TypeId]: TypeId,
  pipe() {
    return pipeArguments(this, arguments)
  },
  toJSON(this: DistributedBulkhead) {
    return { _id: "DistributedBulkhead", name: this.name }
  }
}

/**
 * Is this value a distributed bulkhead?
 *
 * @since 0.1.0
 * @category guards
 */
export const isDistributedBulkhead = (u: unknown): u is DistributedBulkhead =>
  typeof u === "object" && u !== null && TypeId in u

/**
 * Creates an instance that lives as long as the current scope. Closing the
 * scope rejects waiting calls with `Closed` (their tickets are given back)
 * and waits for running calls to finish; the slots they hold are released
 * as they do.
 *
 * Metrics (`bulwark.distributed_bulkhead.*`, labelled by `name` and, for
 * rejections, store errors and degraded admissions, `reason`) are
 * registered in the creating fiber's `MetricRegistry` and removed when the
 * scope closes.
 *
 * **Example** (Creating an instance)
 *
 * ```ts
 * import { DistributedBulkhead } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const partner = yield* DistributedBulkhead.make({ name: "partner-api", maxConcurrent: 20, lease: "10 seconds" })
 *   return yield* Effect.succeed(42).pipe(DistributedBulkhead.guard(partner))
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<DistributedBulkhead, InvalidOptions, Scope.Scope> =>
  Effect.flatMap(decode(options), (decoded) =>
    Effect.withFiber((fiber) => {
      const state = new internal.State({
        name: decoded.name,
        maxConcurrent: decoded.maxConcurrent,
        maxQueue: decoded.maxQueue ?? 0,
        queueTimeoutMs: decoded.queueTimeout === undefined ? Infinity : Duration.toMillis(decoded.queueTimeout),
        leaseMs: decoded.lease === undefined ? defaultLeaseMs : Duration.toMillis(decoded.lease),
        pollMs: decoded.pollInterval === undefined ? defaultPollMs : Duration.toMillis(decoded.pollInterval),
        onStoreError: decoded.onStoreError ?? decoded.store?.onStoreError ?? "local",
        localMaxConcurrent: decoded.localMaxConcurrent ?? decoded.maxConcurrent,
        store: decoded.store ?? BulkheadStore.memory()
      })
      const registrations = internal.registerMetrics(fiber.context, state)
      const self = Object.create(DistributedBulkheadProto)
      self.name = state.name
      self.store = state.store
      self.state = state
      return Effect.as(
        Effect.addFinalizer(() =>
          Effect.sync(() => closeState(state)).pipe(
            Effect.andThen(state.drain),
            Effect.ensuring(Effect.sync(() => {
              for (const registration of registrations) registration.remove()
              state.hub.end()
            }))
          )
        ),
        self as DistributedBulkhead
      )
    }))

const closeState = (state: internal.State): void => {
  if (state.closed) return
  state.closed = true
  state.local.close(false)
  state.wakeAll()
  state.emit({ _tag: "Closed", name: state.name })
}

/**
 * Builds an instance as a service. Everyone who uses the key shares it (and
 * every process using the same name and store shares its cap).
 *
 * **Example** (A service on a shared store)
 *
 * ```ts
 * import { BulkheadStore, DistributedBulkhead } from "@bulwark/core"
 * import { Context, Effect } from "effect"
 *
 * class Reports extends Context.Service<Reports, DistributedBulkhead.DistributedBulkhead>()("app/Reports") {}
 * const ReportsLive = DistributedBulkhead.layer(Reports, { name: "reports", maxConcurrent: 4, store: BulkheadStore.memory() })
 *
 * const render = Effect.succeed("pdf").pipe(DistributedBulkhead.guard(Reports)) // R = Reports
 * const main = render.pipe(Effect.provide(ReportsLive))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <I>(key: Context.Key<I, DistributedBulkhead>, options: Options): Layer.Layer<I, InvalidOptions> =>
  Layer.effect(key, make(options))

const withInstance = <I, A, E, R>(
  instance: DistributedBulkheadOrKey<I>,
  f: (instance: DistributedBulkhead) => Effect.Effect<A, E, R>
): Effect.Effect<A, E, R | I> => isDistributedBulkhead(instance) ? f(instance) : Effect.flatMap(instance, f)

const GuardOptionsSchema = Schema.Struct({ queueTimeout: Schema.optional(DurationInput) })
const decodeGuardOptions = decodeOrDie("DistributedBulkhead", GuardOptionsSchema)

const compileGuard = <I>(
  instance: DistributedBulkheadOrKey<I>,
  options: GuardOptions | undefined
): (<A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | BulkheadFull, R | I>) => {
  let timeoutMs = Infinity
  if (options !== undefined) {
    const decoded = decodeGuardOptions(options)
    if (Effect.isEffect(decoded)) return () => decoded
    if (decoded.queueTimeout !== undefined) timeoutMs = Duration.toMillis(decoded.queueTimeout)
  }
  return (self) => withInstance(instance, (resolved) => internal.run(resolved.state, self, timeoutMs))
}

/**
 * Runs an effect under the global cap: it takes a slot (waiting in the
 * store's waiting room if `maxQueue` allows, or rejected with
 * `BulkheadFull`), holds it while running, renewing its lease, and releases
 * it on every exit. Interrupting a waiting call gives its ticket back.
 *
 * **Example** (Guarding calls)
 *
 * ```ts
 * import { DistributedBulkhead } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * declare const db: DistributedBulkhead.DistributedBulkhead
 * declare const query: Effect.Effect<string>
 *
 * query.pipe(DistributedBulkhead.guard(db))                                 // E | BulkheadFull
 * query.pipe(DistributedBulkhead.guard(db, { queueTimeout: "100 millis" })) // may only shorten
 * DistributedBulkhead.guard(query, db)                                      // data-first
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const guard: {
  <I = never>(
    instance: DistributedBulkheadOrKey<I>,
    options?: GuardOptions
  ): <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | BulkheadFull, R | I>
  <A, E, R, I = never>(
    self: Effect.Effect<A, E, R>,
    instance: DistributedBulkheadOrKey<I>,
    options?: GuardOptions
  ): Effect.Effect<A, E | BulkheadFull, R | I>
} = function(this: unknown) {
  if (arguments.length >= 2 && (isDistributedBulkhead(arguments[1]) || Context.isKey(arguments[1]))) {
    return compileGuard(arguments[1], arguments[2])(arguments[0])
  }
  return compileGuard(arguments[0], arguments[1])
} as any

/**
 * Cumulative counters of an instance: this process only (other processes
 * sharing the store count their own; {@link occupancy} reads the global
 * figures).
 *
 * @since 0.1.0
 * @category models
 */
export interface Snapshot {
  /** Identifies the instance (two instances may share a name). */
  readonly instanceId: number
  readonly name: string
  /** Strictly increasing across the snapshots of one instance. */
  readonly sequence: number
  /** Clock time of the snapshot, epoch milliseconds. */
  readonly at: number
  readonly maxConcurrent: number
  readonly maxQueue: number
  /** Who decides admissions now. */
  readonly mode: Mode
  /** Calls of this process holding a slot of the global cap. */
  readonly inFlight: number
  /** Calls of this process running, whichever way they were admitted (slot, local, fail-open). */
  readonly running: number
  /** Calls of this process waiting (in the store's waiting room, or locally in `Local` mode). */
  readonly queued: number
  /** Calls admitted with a slot of the global cap. */
  readonly admitted: number
  /** Of those, calls that waited in the waiting room first. */
  readonly admittedAfterWait: number
  /** Calls admitted by the insurance bulkhead (`onStoreError: "local"`). */
  readonly admittedLocally: number
  /** Calls run without a slot because the store failed (`onStoreError: "fail-open"`). */
  readonly admittedWithoutStore: number
  readonly rejected: Readonly<Record<Reason, number>>
  readonly rejectedTotal: number
  /** Admitted calls that finished, whatever their exit. */
  readonly completed: number
  /** Waiting calls whose fiber was interrupted. */
  readonly cancelled: number
  /** Lease renewals that succeeded. */
  readonly renewals: number
  /** Calls whose slot ran out before they ended (their process could not renew in time). */
  readonly leasesLost: number
  /** Store operations that failed (acquire, renew, release), by reason. */
  readonly storeErrors: Readonly<Record<StoreErrorReason, number>>
  /** Times the insurance bulkhead took over. */
  readonly localSwitches: number
  /** Sum of the waits of the calls admitted after waiting. */
  readonly totalWait: Duration.Duration
  /** Longest wait of an admitted call. */
  readonly maxWait: Duration.Duration
}

/**
 * Takes a {@link Snapshot} of the instance's counters.
 *
 * **Example** (Reading stats)
 *
 * ```ts
 * import { DistributedBulkhead } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * declare const db: DistributedBulkhead.DistributedBulkhead
 * const log = Effect.gen(function*() {
 *   const s = yield* DistributedBulkhead.stats(db)
 *   yield* Effect.log(`${s.inFlight} slots held here, mode ${s.mode}, ${s.storeErrors.Unavailable} store errors`)
 * })
 * ```
 *
 * @since 0.1.0
 * @category observability
 */
export const stats = <I = never>(instance: DistributedBulkheadOrKey<I>): Effect.Effect<Snapshot, never, I> =>
  withInstance(instance, ({ state }) =>
    Effect.withFiber((fiber) => {
      const local = state.local
      const rejected = {
        QueueFull: internal.rejectedOf(state, "QueueFull"),
        QueueTimeout: internal.rejectedOf(state, "QueueTimeout"),
        Closed: internal.rejectedOf(state, "Closed"),
        StoreUnavailable: internal.rejectedOf(state, "StoreUnavailable")
      }
      return Effect.succeed({
        instanceId: state.id,
        name: state.name,
        sequence: ++state.snapshots,
        at: fiber.getRef(Clock.Clock).currentTimeMillisUnsafe(),
        maxConcurrent: state.settings.maxConcurrent,
        maxQueue: state.settings.maxQueue,
        mode: state.mode,
        inFlight: state.inFlight,
        running: state.running,
        queued: state.queued + local.queued,
        admitted: state.admitted,
        admittedAfterWait: state.admittedAfterWait,
        admittedLocally: local.admitted,
        admittedWithoutStore: state.admittedOpen,
        rejected,
        rejectedTotal: rejected.QueueFull + rejected.QueueTimeout + rejected.Closed + rejected.StoreUnavailable,
        completed: state.completed + local.completed,
        cancelled: state.cancelled + local.cancelled,
        renewals: state.renewals,
        leasesLost: state.leasesLost,
        storeErrors: { ...state.storeErrors },
        localSwitches: state.localSwitches,
        totalWait: Duration.millis(state.totalWaitMs),
        maxWait: Duration.millis(state.maxWaitMs)
      })
    }))

/**
 * Reads the global figures from the store: slots and tickets held now by
 * every process. Fails with the store's error when it cannot answer.
 *
 * **Example** (How busy is the dependency everywhere?)
 *
 * ```ts
 * import { DistributedBulkhead } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * declare const db: DistributedBulkhead.DistributedBulkhead
 * const report = DistributedBulkhead.occupancy(db).pipe(
 *   Effect.map(({ inFlight, queued }) => `${inFlight} running, ${queued} waiting, all processes`)
 * )
 * ```
 *
 * @since 0.1.0
 * @category observability
 */
export const occupancy = <I = never>(
  instance: DistributedBulkheadOrKey<I>
): Effect.Effect<BulkheadStore.Occupancy, StoreError, I> =>
  withInstance(instance, ({ state }) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => state.store.inspect(state.name, now)))

/**
 * What an instance reports on its {@link events} stream.
 *
 * @since 0.1.0
 * @category events
 */
export type Event =
  | Event.Admitted
  | Event.Queued
  | Event.Rejected
  | Event.Released
  | Event.LeaseLost
  | Event.StoreFailed
  | Event.ModeChanged
  | Event.Closed

/**
 * @since 0.1.0
 * @category events
 */
export declare namespace Event {
  /**
   * How a call was admitted: with a slot of the global cap (`Store`), by the
   * insurance bulkhead (`Local`), or without either because the store failed
   * (`FailOpen`).
   */
  export type Via = "Store" | "Local" | "FailOpen"
  /** How an admitted call ended. */
  export type Outcome = "Success" | "Failure" | "Defect" | "Interrupted"
  export interface Admitted {
    readonly _tag: "Admitted"
    readonly name: string
    readonly via: Via
    readonly waited: Duration.Duration
  }
  /** The call took a ticket in the store's waiting room, `position` 0 being the head. */
  export interface Queued {
    readonly _tag: "Queued"
    readonly name: string
    readonly position: number
  }
  export interface Rejected {
    readonly _tag: "Rejected"
    readonly name: string
    readonly reason: Reason
    readonly waited: Duration.Duration
  }
  export interface Released {
    readonly _tag: "Released"
    readonly name: string
    readonly via: Via
    readonly outcome: Outcome
  }
  /** A call's slot ran out before it ended. */
  export interface LeaseLost {
    readonly _tag: "LeaseLost"
    readonly name: string
  }
  /** A store operation failed. */
  export interface StoreFailed {
    readonly _tag: "StoreFailed"
    readonly name: string
    readonly operation: BulkheadStore.Operation
    readonly reason: StoreErrorReason
    readonly message: string
  }
  /** The insurance bulkhead took over (`Local`), or the store decides again (`Store`). */
  export interface ModeChanged {
    readonly _tag: "ModeChanged"
    readonly name: string
    readonly mode: Mode
  }
  export interface Closed {
    readonly _tag: "Closed"
    readonly name: string
  }
}

/**
 * A stream of what happens to this process' calls, from the moment it is
 * consumed. Events cost nothing while nobody listens; a slow consumer loses
 * the oldest events beyond `bufferSize` (default 4096). The stream ends when
 * the instance's scope closes.
 *
 * **Example** (Logging store failures and mode changes)
 *
 * ```ts
 * import { DistributedBulkhead } from "@bulwark/core"
 * import { Effect, Stream } from "effect"
 *
 * declare const db: DistributedBulkhead.DistributedBulkhead
 * const watch = DistributedBulkhead.events(db).pipe(
 *   Stream.filter((e) => e._tag === "StoreFailed" || e._tag === "ModeChanged"),
 *   Stream.runForEach((e) => Effect.logWarning(e))
 * )
 * ```
 *
 * @since 0.1.0
 * @category observability
 */
export const events = <I = never>(
  instance: DistributedBulkheadOrKey<I>,
  options?: { readonly bufferSize?: number | undefined }
): Stream.Stream<Event, never, I> => {
  const bufferSize = options?.bufferSize ?? 4096
  return isDistributedBulkhead(instance)
    ? instance.state.hub.stream(bufferSize)
    : Stream.unwrap(Effect.map(instance, (resolved) => resolved.state.hub.stream(bufferSize)))
}
