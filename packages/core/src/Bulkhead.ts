/**
 * A bulkhead caps how many calls to one dependency run at once, and how many
 * may wait for a turn, so that a slow dependency cannot take every fiber,
 * socket and byte of memory a service has.
 *
 * **When to use**
 *
 * Put a bulkhead around each dependency that can become slow (a payment API, a
 * database pool, a report generator). When the dependency slows down, calls
 * beyond `maxConcurrent + maxQueue` are rejected at once with a typed
 * `BulkheadFull` instead of piling up.
 *
 * **Details**
 *
 * - At most `maxConcurrent` permits are held; a call holds `weight` permits
 *   (default 1) from admission until it exits, whatever the exit: success,
 *   failure, defect or interruption.
 * - At most `maxQueue` calls wait, in strict FIFO order: a later call never
 *   overtakes an earlier one, and a light call never overtakes a heavy one
 *   (Effect's `Semaphore` lets small requests overtake).
 * - A queued call waits at most `queueTimeout` (or its own, shorter, timeout or
 *   deadline), then fails with reason `QueueTimeout`.
 * - Admission and release are O(1); a rejection costs well under a microsecond
 *   because the error is built without a stack trace.
 *
 * **Gotchas**
 *
 * - One instance is one cap. Two `make` calls are two caps; to share a cap,
 *   share the instance or provide one `layer` once.
 * - Put the bulkhead *outside* a retry so that one slot covers all attempts,
 *   and *inside* an overall timeout.
 *
 * **Example** (Guarding a dependency)
 *
 * ```ts
 * import { Bulkhead } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const payments = yield* Bulkhead.make({ name: "payments", maxConcurrent: 10, maxQueue: 50 })
 *   return yield* Effect.succeed("charged").pipe(
 *     Bulkhead.guard(payments),
 *     Effect.catchTag("BulkheadFull", (e) => Effect.succeed(`busy: ${e.reason}`))
 *   )
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 */
import { Clock, Duration, Effect, Layer, Result, Schema, Scope } from "effect"
import * as Context from "effect/Context"
import { dual } from "effect/Function"
import { type Pipeable, pipeArguments } from "effect/Pipeable"
import * as Stream from "effect/Stream"
import * as internal from "./internal/bulkhead.ts"
import { decodeOptions, DurationInput, Name, NonNegativeInt, PositiveInt } from "./internal/options.ts"
import * as tracing from "./internal/tracing.ts"
import type { InvalidOptions } from "./InvalidOptions.ts"
import * as KeyedBulkhead from "./KeyedBulkhead.ts"

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: "~@bulwark/core/Bulkhead" = "~@bulwark/core/Bulkhead"

/**
 * A running bulkhead. Create one with {@link make} (scoped) or {@link layer}.
 *
 * @since 0.1.0
 * @category models
 */
export interface Bulkhead extends Pipeable {
  readonly [TypeId]: typeof TypeId
  /** The name given in the options; it appears in errors, stats and metrics. */
  readonly name: string
  /** @internal */
  readonly state: internal.BulkheadState
}

/**
 * A bulkhead, or a service key that resolves to one. Every operation of this
 * module accepts both; with a key, the key's identifier is added to `R`.
 *
 * @since 0.1.0
 * @category models
 */
export type BulkheadOrKey<I = never> = Bulkhead | Context.Key<I, Bulkhead>

/**
 * Why a call was not admitted.
 *
 * - `QueueFull`: every slot and every place in the queue was taken.
 * - `QueueTimeout`: the call had, or would have had, a place in the queue, but
 *   its allowed wait ran out (including a wait of 0 and a deadline already
 *   passed).
 * - `Closed`: the bulkhead was closed before the call was admitted.
 * - `Oversized`: the call's weight is above `maxConcurrent`, so it could never
 *   be admitted.
 * - `TooManyKeys`: (keyed bulkheads only) the call's key would need a new
 *   compartment, but `maxKeys` compartments are all busy.
 * - `StoreUnavailable`: (distributed bulkheads only, `onStoreError:
 *   "fail-closed"`) the shared store could not decide the admission, so the
 *   call was refused rather than run outside the global cap.
 *
 * @since 0.1.0
 * @category errors
 */
export const Reason = Schema.Literals(["QueueFull", "QueueTimeout", "Closed", "Oversized", "TooManyKeys", "StoreUnavailable"])

/**
 * @since 0.1.0
 * @category errors
 */
export type Reason = typeof Reason.Type

/**
 * The call was not admitted. Data only: it never carries the caller's
 * arguments or results, so it is safe to log and to send over the wire.
 *
 * **Example** (Handling a rejection)
 *
 * ```ts
 * import { Bulkhead } from "@bulwark/core"
 * import { Duration, Effect } from "effect"
 *
 * const handle = (e: Bulkhead.BulkheadFull) =>
 *   Effect.logWarning(`${e.name} rejected (${e.reason}) after ${Duration.format(e.waited)}`)
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class BulkheadFull extends Schema.TaggedError<BulkheadFull>()("BulkheadFull", {
  /** The bulkhead's name. */
  name: Schema.String,
  /** The compartment key, only for keyed bulkheads created with `exposeKeys: true`. */
  key: Schema.optionalKey(Schema.String),
  reason: Reason,
  /** `maxConcurrent` at the time of the rejection. */
  maxConcurrent: Schema.Number,
  maxQueue: Schema.Number,
  /** How long the call waited before it was rejected (zero when rejected at the door). */
  waited: Schema.Duration
}) {
  override get message(): string {
    return `Bulkhead "${this.name}"${this.key === undefined ? "" : ` [${this.key}]`} rejected the call: ${this.reason}`
  }
}

/**
 * The options of a bulkhead, as a Schema: `make` and `layer` decode their
 * input with it and fail with `InvalidOptions` naming every bad field.
 *
 * @since 0.1.0
 * @category options
 */
export const Options = Schema.Struct({
  name: Name,
  maxConcurrent: PositiveInt,
  maxQueue: Schema.optional(NonNegativeInt),
  queueTimeout: Schema.optional(DurationInput)
})

/**
 * @since 0.1.0
 * @category options
 */
export interface Options {
  /** Required; appears in errors, stats and metric labels. */
  readonly name: string
  /** Permits available to running calls. An integer >= 1. */
  readonly maxConcurrent: number
  /** Calls allowed to wait for a permit. An integer >= 0; default 0 (reject when every permit is held). */
  readonly maxQueue?: number | undefined
  /** Longest wait in the queue. Default: wait until admitted, closed or interrupted. */
  readonly queueTimeout?: Duration.Input | undefined
}

/**
 * Per-call options of {@link guard}.
 *
 * @since 0.1.0
 * @category options
 */
export interface GuardOptions {
  /** Permits this call holds; a positive integer, default 1. */
  readonly weight?: number | undefined
  /** A wait limit for this call; it may only shorten the bulkhead's `queueTimeout`. */
  readonly queueTimeout?: Duration.Input | undefined
  /**
   * An absolute admission deadline in epoch milliseconds, read from Effect's
   * `Clock`. A call whose deadline has passed is rejected with `QueueTimeout`
   * even if a permit is free: its caller's budget is spent.
   */
  readonly deadline?: number | undefined
}

const decode = decodeOptions("Bulkhead", Options)

const BulkheadProto = {
  [TypeId]: TypeId,
  pipe() {
    return pipeArguments(this, arguments)
  },
  toJSON(this: Bulkhead) {
    return { _id: "Bulkhead", name: this.name }
  }
}

const fromState = (state: internal.BulkheadState): Bulkhead => {
  const self = Object.create(BulkheadProto)
  self.name = state.name
  self.state = state
  return self
}

/**
 * Is this value a bulkhead?
 *
 * @since 0.1.0
 * @category guards
 */
export const isBulkhead = (u: unknown): u is Bulkhead => typeof u === "object" && u !== null && TypeId in u

/**
 * Creates a bulkhead that lives as long as the current scope. Closing the
 * scope closes the bulkhead (queued calls are rejected with `Closed`) and
 * then waits for running calls to finish.
 *
 * Metrics (`bulwark.bulkhead.*`, labelled by `name`) are registered in the
 * `MetricRegistry` of the creating fiber and removed when the scope closes.
 *
 * **Example** (Creating a bulkhead)
 *
 * ```ts
 * import { Bulkhead } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const db = yield* Bulkhead.make({ name: "db", maxConcurrent: 4, maxQueue: 16, queueTimeout: "2 seconds" })
 *   return yield* Effect.succeed(42).pipe(Bulkhead.guard(db))
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<Bulkhead, InvalidOptions, Scope.Scope> =>
  Effect.flatMap(decode(options), (decoded) =>
    Effect.withFiber((fiber) => {
      const state = new internal.BulkheadState(
        decoded.name,
        decoded.maxConcurrent,
        decoded.maxQueue ?? 0,
        decoded.queueTimeout === undefined ? Infinity : Duration.toMillis(decoded.queueTimeout)
      )
      state.createdAt = fiber.getRef(Clock.Clock).currentTimeMillisUnsafe()
      const registrations = internal.registerMetrics(
        fiber.context,
        { name: state.name },
        state,
        internal.reasons.slice(0, 4)
      )
      return Effect.as(
        Effect.addFinalizer(() =>
          Effect.sync(() => state.close()).pipe(
            Effect.andThen(state.drain),
            Effect.ensuring(Effect.sync(() => {
              for (const registration of registrations) registration.remove()
              state.hub.end()
            }))
          )
        ),
        fromState(state)
      )
    }))

/**
 * Builds a bulkhead as a service. Everyone who uses the key shares one cap.
 *
 * **Example** (A bulkhead as a Layer service)
 *
 * ```ts
 * import { Bulkhead } from "@bulwark/core"
 * import { Context, Effect } from "effect"
 *
 * class Payments extends Context.Service<Payments, Bulkhead.Bulkhead>()("app/Payments") {}
 * const PaymentsLive = Bulkhead.layer(Payments, { name: "payments", maxConcurrent: 10, maxQueue: 50 })
 *
 * const charge = Effect.succeed("ok").pipe(Bulkhead.guard(Payments)) // R = Payments
 * const main = charge.pipe(Effect.provide(PaymentsLive))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <I>(key: Context.Key<I, Bulkhead>, options: Options): Layer.Layer<I, InvalidOptions> =>
  Layer.effect(key, make(options))

const withBulkhead = <I, A, E, R>(
  bulkhead: BulkheadOrKey<I>,
  f: (bulkhead: Bulkhead) => Effect.Effect<A, E, R>
): Effect.Effect<A, E, R | I> => isBulkhead(bulkhead) ? f(bulkhead) : Effect.flatMap(bulkhead, f)

const compileGuard = <I>(
  bulkhead: BulkheadOrKey<I>,
  options: GuardOptions | undefined
): (<A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | BulkheadFull, R | I>) => {
  const call = internal.parseGuardOptions("Bulkhead.guard", options)
  if (Effect.isEffect(call)) return () => call
  const { weight, timeoutMs, deadline } = call
  if (isBulkhead(bulkhead)) {
    const state = bulkhead.state
    if (deadline !== undefined) {
      return (self) =>
        Effect.uninterruptibleMask((restore) =>
          Effect.withFiber((fiber) => state.admit(fiber, self, restore, weight, timeoutMs, deadline))
        )
    }
    return <A, E, R>(self: Effect.Effect<A, E, R>) =>
      Effect.withFiber((fiber) => {
        // Per run of the guarded effect (an effect value may run many times, even
        // concurrently). The finalizer is on the stack before admission, so no
        // yield point lies between taking the permits (or a place in the queue)
        // and registering their release: no mask needed, one finalizer for every exit.
        // A rejection at the door takes no permit, so it needs no finalizer.
        if (state.head !== undefined || state.inFlight + weight > state.maxConcurrent) {
          const rejected = state.rejectAtDoor(weight, timeoutMs)
          if (rejected !== undefined) {
            if (fiber.cache.span !== undefined) state.traceDoorRejection(fiber, weight)
            return rejected
          }
        }
        let seq = 0
        let waiter: internal.Waiter | undefined
        return Effect.onExitPrimitive(
          Effect.suspend((): Effect.Effect<A, E | BulkheadFull, R> => {
            seq = state.tryAdmit(weight)
            if (seq !== 0) return self
            const rejected = state.rejectAtDoor(weight, timeoutMs)
            if (rejected !== undefined) {
              if (fiber.cache.span !== undefined) state.traceDoorRejection(fiber, weight)
              return rejected
            }
            waiter = state.enqueueWaiter(fiber, weight)
            // A traced wait ends in its own span, before `self` starts: it takes the flatMap below.
            if (timeoutMs === Infinity && state.queueTimeoutMs === Infinity && tracing.spanOf(fiber) === undefined) {
              // No timeout around the wait: the fiber resumes straight into `self`
              // (the finalizer above is already in place), no flatMap per waiter.
              waiter.onGrant = self
              return state.wait(waiter, timeoutMs) as unknown as Effect.Effect<A, E | BulkheadFull, R>
            }
            return Effect.flatMap(state.tracedWait(fiber, waiter, timeoutMs), () => self)
          }),
          (exit) => {
            if (seq !== 0) state.release(weight, seq, exit)
            else if (waiter !== undefined) state.settleWaiter(waiter, exit)
            return undefined
          }
          // not `true`: an interrupted, interruptible fiber skips `interruptible` finalizers
        )
      })
  }
  return (self) =>
    Effect.flatMap(bulkhead, (resolved) =>
      Effect.uninterruptibleMask((restore) =>
        Effect.withFiber((fiber) => resolved.state.admit(fiber, self, restore, weight, timeoutMs, deadline))
      ))
}

/**
 * Runs an effect inside the bulkhead: it waits for a permit (or is rejected
 * with `BulkheadFull`), holds it while running and releases it on every exit.
 * Interrupting a queued call removes it from the queue.
 *
 * **Example** (Guarding calls)
 *
 * ```ts
 * import { Bulkhead } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * declare const payments: Bulkhead.Bulkhead
 * declare const report: Effect.Effect<string>
 *
 * report.pipe(Bulkhead.guard(payments))                                 // E | BulkheadFull
 * report.pipe(Bulkhead.guard(payments, { weight: 3 }))                  // holds 3 permits
 * report.pipe(Bulkhead.guard(payments, { queueTimeout: "100 millis" })) // may only shorten
 * Bulkhead.guard(report, payments)                                      // data-first
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const guard: {
  <I = never>(
    bulkhead: BulkheadOrKey<I>,
    options?: GuardOptions
  ): <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | BulkheadFull, R | I>
  <A, E, R, I = never>(
    self: Effect.Effect<A, E, R>,
    bulkhead: BulkheadOrKey<I>,
    options?: GuardOptions
  ): Effect.Effect<A, E | BulkheadFull, R | I>
} = function(this: unknown) {
  // Data-last compiles the options once, so a guard built once and applied in
  // a loop does not validate them again on every call.
  if (arguments.length >= 2 && (isBulkhead(arguments[1]) || Context.isKey(arguments[1]))) {
    return compileGuard(arguments[1], arguments[2])(arguments[0])
  }
  const bulkhead = arguments[0]
  // `effect.pipe(Bulkhead.guard(b))` with no options: reuse one compiled guard per bulkhead.
  if (arguments[1] === undefined && isBulkhead(bulkhead)) {
    return (bulkhead.state.defaultGuard ??= compileGuard(bulkhead, undefined)) as ReturnType<typeof compileGuard>
  }
  return compileGuard(bulkhead, arguments[1])
} as any

/**
 * A point-in-time view of a bulkhead's counters. Counters are cumulative
 * since creation; use {@link Snapshot.since} for interval figures.
 *
 * @since 0.1.0
 * @category models
 */
export class Snapshot {
  /** Identifies the bulkhead instance (two instances may share a name). */
  declare readonly bulkheadId: number
  declare readonly name: string
  /** Strictly increasing across the snapshots of one bulkhead. */
  declare readonly sequence: number
  /** Clock time of the snapshot, epoch milliseconds. */
  declare readonly at: number
  /** Permits held (weights count). */
  declare readonly inFlight: number
  /** Calls holding permits. */
  declare readonly running: number
  /** Calls waiting for a permit. */
  declare readonly queued: number
  declare readonly admitted: number
  /** Admitted calls that had to wait in the queue first. */
  declare readonly admittedAfterWait: number
  declare readonly rejected: Readonly<Record<Reason, number>>
  /** Admitted calls that finished, whatever their exit. */
  declare readonly completed: number
  /** Queued calls whose fiber was interrupted while waiting. */
  declare readonly cancelled: number
  declare readonly maxConcurrent: number
  declare readonly maxQueue: number
  /** The configured `queueTimeout`; `undefined` when calls may wait indefinitely. */
  declare readonly queueTimeout: Duration.Duration | undefined
  declare readonly closed: boolean
  /** Sum of the waits of all admitted calls. */
  declare readonly totalWait: Duration.Duration
  /** Longest wait of an admitted call. */
  declare readonly maxWait: Duration.Duration
  /** Highest number of permits held at once. */
  declare readonly peakInFlight: number
  /** Highest number of calls waiting at once. */
  declare readonly peakQueued: number

  constructor(fields: Omit<Snapshot, "rejectedTotal" | "since">) {
    Object.assign(this, fields)
  }

  /** Rejections of every reason. */
  get rejectedTotal(): number {
    return internal.sumRejected(this.rejected)
  }

  /**
   * The figures of the interval between `earlier` and this snapshot. Fails
   * with `SnapshotMismatch` when `earlier` comes from another bulkhead or is
   * not earlier.
   */
  since(earlier: Snapshot): Result.Result<Interval, SnapshotMismatch> {
    if (earlier.bulkheadId !== this.bulkheadId) {
      return Result.fail(new SnapshotMismatch({ reason: "OtherBulkhead", name: this.name }))
    }
    if (earlier.sequence >= this.sequence) {
      return Result.fail(new SnapshotMismatch({ reason: "Reversed", name: this.name }))
    }
    const admitted = this.admitted - earlier.admitted
    const rejected = internal.emptyRejected()
    for (const reason of internal.reasons) rejected[reason] = this.rejected[reason] - earlier.rejected[reason]
    const rejectedTotal = internal.sumRejected(rejected)
    const waitMs = Duration.toMillis(this.totalWait) - Duration.toMillis(earlier.totalWait)
    const elapsedMs = this.at - earlier.at
    const completed = this.completed - earlier.completed
    return Result.succeed({
      name: this.name,
      elapsed: Duration.millis(elapsedMs),
      admitted,
      admittedAfterWait: this.admittedAfterWait - earlier.admittedAfterWait,
      rejected,
      rejectedTotal,
      completed,
      cancelled: this.cancelled - earlier.cancelled,
      averageWait: Duration.millis(admitted === 0 ? 0 : waitMs / admitted),
      rejectionRate: admitted + rejectedTotal === 0 ? 0 : rejectedTotal / (admitted + rejectedTotal),
      throughput: elapsedMs <= 0 ? 0 : (completed * 1000) / elapsedMs
    })
  }
}

/**
 * Interval figures between two snapshots of one bulkhead.
 *
 * @since 0.1.0
 * @category models
 */
export interface Interval {
  readonly name: string
  readonly elapsed: Duration.Duration
  readonly admitted: number
  readonly admittedAfterWait: number
  readonly rejected: Readonly<Record<Reason, number>>
  readonly rejectedTotal: number
  readonly completed: number
  readonly cancelled: number
  /** Average wait of the calls admitted in the interval (immediate admissions count as 0). */
  readonly averageWait: Duration.Duration
  /** rejected / (admitted + rejected), 0 when nothing arrived. */
  readonly rejectionRate: number
  /** Completed calls per second of clock time. */
  readonly throughput: number
}

/**
 * `Snapshot.since` was given a snapshot of another bulkhead, or one that is
 * not earlier.
 *
 * @since 0.1.0
 * @category errors
 */
export class SnapshotMismatch extends Schema.TaggedError<SnapshotMismatch>()("SnapshotMismatch", {
  reason: Schema.Literals(["OtherBulkhead", "Reversed"]),
  name: Schema.String
}) {}

/** @internal */
export const snapshotOf = (state: internal.BulkheadState, at: number): Snapshot =>
  new Snapshot({
    bulkheadId: state.id,
    name: state.name,
    sequence: ++state.snapshotSeq,
    at,
    inFlight: state.inFlight,
    running: state.running,
    queued: state.queued,
    admitted: state.admitted,
    admittedAfterWait: state.admittedAfterWait,
    rejected: { ...state.rejected },
    completed: state.completed,
    cancelled: state.cancelled,
    maxConcurrent: state.maxConcurrent,
    maxQueue: state.maxQueue,
    queueTimeout: state.queueTimeoutMs === Infinity ? undefined : Duration.millis(state.queueTimeoutMs),
    closed: state.closed,
    totalWait: Duration.millis(state.totalWaitMs),
    maxWait: Duration.millis(state.maxWaitMs),
    peakInFlight: state.peakInFlight,
    peakQueued: state.peakQueued
  })

/**
 * Takes a {@link Snapshot} of the bulkhead's counters.
 *
 * **Example** (Reading stats)
 *
 * ```ts
 * import { Bulkhead } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * declare const db: Bulkhead.Bulkhead
 * const log = Effect.gen(function*() {
 *   const s = yield* Bulkhead.stats(db)
 *   yield* Effect.log(`${s.inFlight}/${s.maxConcurrent} in flight, ${s.queued} queued, ${s.rejectedTotal} rejected`)
 * })
 * ```
 *
 * @since 0.1.0
 * @category observability
 */
export const stats = <I = never>(bulkhead: BulkheadOrKey<I>): Effect.Effect<Snapshot, never, I> =>
  withBulkhead(bulkhead, (b) =>
    Effect.withFiber((fiber) => Effect.succeed(snapshotOf(b.state, fiber.getRef(Clock.Clock).currentTimeMillisUnsafe()))))

/**
 * Changes `maxConcurrent` while the bulkhead runs. Running calls are never
 * interrupted: after a shrink, calls are admitted again only once the permits
 * held fall below the new limit. Queued calls keep their FIFO order; those the
 * new size makes oversized are rejected with `Oversized`.
 *
 * **Example** (Resizing)
 *
 * ```ts
 * import { Bulkhead } from "@bulwark/core"
 *
 * declare const db: Bulkhead.Bulkhead
 * const grow = Bulkhead.resize(db, 20)
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const resize: {
  (maxConcurrent: number): <I = never>(bulkhead: BulkheadOrKey<I>) => Effect.Effect<void, InvalidOptions, I>
  <I = never>(bulkhead: BulkheadOrKey<I>, maxConcurrent: number): Effect.Effect<void, InvalidOptions, I>
} = dual(2, <I>(bulkhead: BulkheadOrKey<I>, maxConcurrent: number) =>
  withBulkhead(bulkhead, (b) =>
    Effect.suspend(() => {
      if (!(Number.isInteger(maxConcurrent) && maxConcurrent >= 1)) {
        return Effect.fail(internal.resizeError(b.name, maxConcurrent))
      }
      b.state.resize(maxConcurrent)
      return Effect.void
    })))

/**
 * Rejects the queued calls and every later call with `Closed`. Running calls
 * go on; use {@link drain} to wait for them. Closing twice does nothing.
 *
 * @since 0.1.0
 * @category lifecycle
 */
export const close = <I = never>(bulkhead: BulkheadOrKey<I>): Effect.Effect<void, never, I> =>
  withBulkhead(bulkhead, (b) => Effect.sync(() => void b.state.close()))

/**
 * Waits until the calls that were running or queued when `drain` was called
 * have finished (or left the queue). Calls that arrive later do not extend
 * the wait, so a busy bulkhead cannot starve it.
 *
 * **Example** (Graceful shutdown)
 *
 * ```ts
 * import { Bulkhead } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * declare const db: Bulkhead.Bulkhead
 * const shutdown = Bulkhead.close(db).pipe(Effect.andThen(Bulkhead.drain(db)))
 * ```
 *
 * @since 0.1.0
 * @category lifecycle
 */
export const drain = <I = never>(bulkhead: BulkheadOrKey<I>): Effect.Effect<void, never, I> =>
  withBulkhead(bulkhead, (b) => b.state.drain)

/**
 * What a bulkhead reports on its {@link events} stream.
 *
 * @since 0.1.0
 * @category events
 */
export type Event = Event.Admitted | Event.Rejected | Event.Released | Event.Resized | Event.Closed

/**
 * @since 0.1.0
 * @category events
 */
export declare namespace Event {
  /** How an admitted call ended. */
  export type Outcome = "Success" | "Failure" | "Defect" | "Interrupted"
  export interface Admitted {
    readonly _tag: "Admitted"
    readonly name: string
    readonly weight: number
    readonly waited: Duration.Duration
  }
  export interface Rejected {
    readonly _tag: "Rejected"
    readonly name: string
    readonly reason: Reason
    readonly weight: number
    readonly waited: Duration.Duration
  }
  export interface Released {
    readonly _tag: "Released"
    readonly name: string
    readonly weight: number
    readonly outcome: Outcome
  }
  export interface Resized {
    readonly _tag: "Resized"
    readonly name: string
    readonly from: number
    readonly to: number
  }
  export interface Closed {
    readonly _tag: "Closed"
    readonly name: string
  }
}

/**
 * A stream of what happens in the bulkhead, from the moment it is consumed.
 * Events cost nothing while nobody listens. A slow consumer loses the oldest
 * events beyond `bufferSize` (default 4096) rather than slowing the bulkhead
 * down. The stream ends when the bulkhead's scope closes.
 *
 * **Example** (Logging rejections)
 *
 * ```ts
 * import { Bulkhead } from "@bulwark/core"
 * import { Effect, Stream } from "effect"
 *
 * declare const db: Bulkhead.Bulkhead
 * const watch = Bulkhead.events(db).pipe(
 *   Stream.filter((e) => e._tag === "Rejected"),
 *   Stream.runForEach((e) => Effect.logWarning(`rejected: ${e.reason}`))
 * )
 * ```
 *
 * @since 0.1.0
 * @category observability
 */
export const events = <I = never>(
  bulkhead: BulkheadOrKey<I>,
  options?: { readonly bufferSize?: number | undefined }
): Stream.Stream<Event, never, I> =>
  isBulkhead(bulkhead)
    ? bulkhead.state.hub.stream(options?.bufferSize ?? 4096)
    : Stream.unwrap(Effect.map(bulkhead, (b) => b.state.hub.stream(options?.bufferSize ?? 4096)))

/**
 * One observation of a {@link capacityReport}.
 *
 * - `Saturated`: a large share of admitted calls had to queue first.
 * - `Rejecting`: a noticeable share of calls was rejected.
 * - `LongWaits`: queued calls wait a long time (half the queue timeout or
 *   more, or a second or more without one).
 *
 * @since 0.1.0
 * @category observability
 */
export interface Finding {
  readonly _tag: "Saturated" | "Rejecting" | "LongWaits"
  readonly message: string
}

/**
 * @since 0.1.0
 * @category observability
 */
export interface CapacityReport {
  readonly name: string
  /** Calls that arrived in the interval (admitted + rejected). */
  readonly sample: number
  /** False when the sample is below `minimumSample`: no finding is made from too little data. */
  readonly conclusive: boolean
  readonly findings: ReadonlyArray<Finding>
  readonly interval: Interval
}

/**
 * Reads the bulkhead's figures (since creation, or since `since`) and says
 * whether it looks undersized. Conservative: with fewer than `minimumSample`
 * calls (default 50) it makes no finding at all.
 *
 * **Example** (Checking capacity)
 *
 * ```ts
 * import { Bulkhead } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * declare const db: Bulkhead.Bulkhead
 * const check = Effect.gen(function*() {
 *   const report = yield* Bulkhead.capacityReport(db)
 *   for (const finding of report.findings) yield* Effect.logWarning(finding.message)
 * })
 * ```
 *
 * @since 0.1.0
 * @category observability
 */
export const capacityReport = <I = never>(
  bulkhead: BulkheadOrKey<I>,
  options?: { readonly since?: Snapshot | undefined; readonly minimumSample?: number | undefined }
): Effect.Effect<CapacityReport, SnapshotMismatch, I> =>
  withBulkhead(bulkhead, (b) =>
    Effect.withFiber((fiber) => {
      const now = snapshotOf(b.state, fiber.getRef(Clock.Clock).currentTimeMillisUnsafe())
      const origin = options?.since ?? new Snapshot({
        ...now,
        sequence: 0,
        at: b.state.createdAt,
        inFlight: 0,
        running: 0,
        queued: 0,
        admitted: 0,
        admittedAfterWait: 0,
        rejected: internal.emptyRejected(),
        completed: 0,
        cancelled: 0,
        closed: false,
        totalWait: Duration.zero,
        maxWait: Duration.zero,
        peakInFlight: 0,
        peakQueued: 0
      })
      const result = now.since(origin)
      if (Result.isFailure(result)) return Effect.fail(result.failure)
      return Effect.succeed(internal.assess(now, result.success, options?.minimumSample ?? 50))
    }))

/**
 * A bulkhead with one compartment per key; see the `KeyedBulkhead` module.
 *
 * **Example** (A compartment per tenant)
 *
 * ```ts
 * import { Bulkhead, KeyedBulkhead } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const tenants = yield* Bulkhead.keyed({ name: "tenants", maxConcurrent: 2, maxKeys: 1000 })
 *   return yield* Effect.succeed(1).pipe(KeyedBulkhead.guard(tenants, "acme"))
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const keyed = (options: KeyedBulkhead.Options): Effect.Effect<KeyedBulkhead.KeyedBulkhead, InvalidOptions, Scope.Scope> =>
  KeyedBulkhead.make(options)
