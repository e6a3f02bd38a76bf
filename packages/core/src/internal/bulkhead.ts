import { Clock, Duration, Effect, Exit, Metric } from "effect"
import type * as Context from "effect/Context"
import type * as Fiber from "effect/Fiber"
import type * as Bulkhead from "../Bulkhead.ts"
import { BulkheadFull } from "../Bulkhead.ts"
import { InvalidOptions } from "../InvalidOptions.ts"
import { EventHub } from "./events.ts"
import { pullCounter, pullGauge, pullHistogram } from "./metrics.ts"
import * as tracing from "./tracing.ts"

type Reason = Bulkhead.BulkheadFull["reason"]

/** Upper bounds (ms) of the queue-wait histogram buckets; the last bucket is open. */
export const waitBoundaries: ReadonlyArray<number> = [0, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000]

const bucketOf = (ms: number): number => {
  let i = 0
  while (i < waitBoundaries.length && ms > waitBoundaries[i]) i++
  return i
}

/**
 * A queued call. The queue is intrusive (each waiter links to its neighbours)
 * so that removing an interrupted or timed-out waiter from the middle is O(1)
 * and admission never scans.
 */
const epochMs = Date.now()

export class Waiter {
  prev: Waiter | undefined = undefined
  next: Waiter | undefined = undefined
  linked = true
  granted = false
  /** Set once the call is admitted or rejected; the waiting fiber resumes with it. */
  outcome: Effect.Effect<void, Bulkhead.BulkheadFull> | undefined = undefined
  resume: ((effect: Effect.Effect<void, Bulkhead.BulkheadFull>) => void) | undefined = undefined
  /** What the waiting fiber resumes with once admitted (the guarded effect itself when there is no timeout). */
  onGrant: Effect.Effect<any, any, any> = Effect.void
  readonly weight: number
  readonly seq: number
  readonly enqueuedAt: number
  readonly clock: Clock.Clock
  readonly fiber: Fiber.Fiber<unknown, unknown>
  constructor(weight: number, seq: number, enqueuedAt: number, clock: Clock.Clock, fiber: Fiber.Fiber<unknown, unknown>) {
    this.weight = weight
    this.seq = seq
    // An offset from a fixed epoch stays a small integer (no boxed double per waiter).
    this.enqueuedAt = enqueuedAt - epochMs
    this.clock = clock
    this.fiber = fiber
  }
}

interface DrainWaiter {
  readonly mark: number
  remaining: number
  readonly resume: (effect: Effect.Effect<void>) => void
}

let nextId = 0

/** @internal */
export const emptyRejected = (): Record<Reason, number> => ({
  QueueFull: 0,
  QueueTimeout: 0,
  Closed: 0,
  Oversized: 0,
  TooManyKeys: 0,
  // Only a distributed bulkhead rejects for this reason; an in-process one keeps it at 0.
  StoreUnavailable: 0
})

/** @internal */
export const sumRejected = (rejected: Readonly<Record<Reason, number>>): number =>
  rejected.QueueFull + rejected.QueueTimeout + rejected.Closed + rejected.Oversized + rejected.TooManyKeys +
  rejected.StoreUnavailable

/** @internal */
export const reasons: ReadonlyArray<Reason> = ["QueueFull", "QueueTimeout", "Closed", "Oversized", "TooManyKeys"]

/** The mutable heart of a bulkhead. Every method is synchronous and O(1) unless it says otherwise. */
export class BulkheadState {
  readonly id = ++nextId
  maxConcurrent: number
  readonly maxQueue: number
  readonly queueTimeoutMs: number

  inFlight = 0
  running = 0
  queued = 0
  closed = false

  admitted = 0
  admittedAfterWait = 0
  completed = 0
  cancelled = 0
  readonly rejected: Record<Reason, number> = emptyRejected()
  totalWaitMs = 0
  maxWaitMs = 0
  minWaitMs = Infinity
  peakInFlight = 0
  peakQueued = 0
  readonly waitBuckets = new Float64Array(waitBoundaries.length + 1)
  snapshotSeq = 0

  head: Waiter | undefined = undefined
  /** The compiled `guard(b)` without options, shared by every `effect.pipe(Bulkhead.guard(b))`. */
  defaultGuard: unknown = undefined
  private tail: Waiter | undefined = undefined
  private arrivals = 0
  private drains: Array<DrainWaiter> | undefined = undefined
  /** Compartments of a keyed bulkhead share their parent's hub. */
  readonly hub: EventHub<Bulkhead.Event>
  /** Clock time of creation, the origin of a capacity report without `since`. */
  createdAt = 0

  readonly name: string
  /** Extra field put on errors (keyed bulkheads that expose their keys). */
  readonly key: string | undefined

  constructor(
    name: string,
    maxConcurrent: number,
    maxQueue: number,
    queueTimeoutMs: number,
    key?: string,
    hub?: EventHub<Bulkhead.Event>
  ) {
    this.name = name
    this.key = key
    this.hub = hub ?? new EventHub()
    this.maxConcurrent = maxConcurrent
    this.maxQueue = maxQueue
    this.queueTimeoutMs = queueTimeoutMs
  }

  get idle(): boolean {
    return this.inFlight === 0 && this.queued === 0
  }

  // ---------------------------------------------------------------------------
  // errors and events
  // ---------------------------------------------------------------------------

  /**
   * Tracing is left to the callers (`traceRejection`): a bigger `reject`
   * costs every rejection, traced or not, through lost inlining.
   */
  reject(reason: Reason, waitedMs: number, weight: number): Effect.Effect<never, Bulkhead.BulkheadFull> {
    this.rejected[reason]++
    if (this.hub.active) {
      this.emit({ _tag: "Rejected", name: this.name, reason, weight, waited: Duration.millis(waitedMs) })
    }
    // A fresh error per rejection: callers may annotate or keep it, and a shared
    // instance would carry one caller's annotations into another's failure.
    return Effect.fail(this.makeError(reason, waitedMs))
  }

  /**
   * A rejection decided in the caller's fiber, as an event on its span (if
   * traced). A waiter rejected by another fiber (close, resize) has its wait
   * span instead.
   */
  traceRejection(caller: Fiber.Fiber<unknown, unknown>, reason: Reason): void {
    const span = tracing.spanOf(caller)
    if (span === undefined) return
    tracing.event(caller, span, "bulwark.bulkhead.rejected", this.spanAttributes({ "bulwark.bulkhead.reason": reason }))
  }

  /**
   * `traceRejection` for a call `rejectAtDoor` just refused: its checks in its
   * order give the reason (when the others pass, only a zero wait is left).
   */
  traceDoorRejection(caller: Fiber.Fiber<unknown, unknown>, weight: number): void {
    this.traceRejection(
      caller,
      this.closed ? "Closed" : weight > this.maxConcurrent ? "Oversized" : this.queued >= this.maxQueue ? "QueueFull" : "QueueTimeout"
    )
  }

  /** `bulwark.name`, the key when the keyed bulkhead exposes its keys, and `extra`. */
  spanAttributes(extra: tracing.Attributes): tracing.Attributes {
    const attributes: tracing.Attributes = { "bulwark.name": this.name }
    if (this.key !== undefined) attributes["bulwark.bulkhead.key"] = this.key
    return Object.assign(attributes, extra)
  }

  /**
   * The wait of a queued call; in a child span `bulwark.bulkhead.wait` when
   * the caller is traced (the call waits anyway, a span costs little next to it).
   */
  tracedWait(fiber: Fiber.Fiber<unknown, unknown>, waiter: Waiter, callTimeoutMs: number): Effect.Effect<void, Bulkhead.BulkheadFull> {
    const wait = this.wait(waiter, callTimeoutMs)
    if (tracing.spanOf(fiber) === undefined) return wait
    return tracing.withWaitSpan(
      "bulwark.bulkhead.wait",
      this.spanAttributes({ "bulwark.bulkhead.weight": waiter.weight }),
      "bulwark.bulkhead.outcome",
      wait
    )
  }

  makeError(reason: Reason, waitedMs: number): Bulkhead.BulkheadFull {
    return fastError(this.name, this.key, reason, this.maxConcurrent, this.maxQueue, waitedMs)
  }

  emit(event: Bulkhead.Event): void {
    this.hub.emit(event)
  }

  // ---------------------------------------------------------------------------
  // admission
  // ---------------------------------------------------------------------------

  /**
   * The whole admission decision for one call. Runs inside an uninterruptible
   * region; `restore` makes only the wait and the user's effect interruptible.
   */
  /**
   * The whole admission decision for one call, for the paths that run under
   * `uninterruptibleMask` (calls with a deadline, keyed compartments);
   * `restore` makes only the wait and the user's effect interruptible.
   */
  admit<A, E, R>(
    fiber: Fiber.Fiber<unknown, unknown>,
    self: Effect.Effect<A, E, R>,
    restore: <X, Y, Z>(effect: Effect.Effect<X, Y, Z>) => Effect.Effect<X, Y, Z>,
    weight: number,
    callTimeoutMs: number,
    deadline: number | undefined
  ): Effect.Effect<A, E | Bulkhead.BulkheadFull, R> {
    let timeoutMs = callTimeoutMs
    if (deadline !== undefined) {
      const now = fiber.getRef(Clock.Clock).currentTimeMillisUnsafe()
      // The caller's budget is spent: admitting now would only do work whose result nobody waits for.
      const reason = this.closed ? "Closed" : weight > this.maxConcurrent ? "Oversized" : deadline <= now ? "QueueTimeout" : undefined
      if (reason !== undefined) {
        if (fiber.cache.span !== undefined) this.traceRejection(fiber, reason)
        return this.reject(reason, 0, weight)
      }
      if (deadline - now < timeoutMs) timeoutMs = deadline - now
    }
    const seq = this.tryAdmit(weight)
    if (seq !== 0) return this.run(self, restore, weight, seq)
    const rejected = this.rejectAtDoor(weight, timeoutMs)
    if (rejected !== undefined) {
      if (fiber.cache.span !== undefined) this.traceDoorRejection(fiber, weight)
      return rejected
    }
    const waiter = this.enqueueWaiter(fiber, weight)
    // Only the wait is interruptible; whatever interrupts it, `settleWaiter`
    // gives back the place in the queue or the permits granted a moment before.
    return Effect.flatMap(
      Effect.onInterrupt(restore(this.tracedWait(fiber, waiter, timeoutMs)), () => Effect.sync(() => this.settleWaiter(waiter, undefined))),
      () => this.run(self, restore, weight, waiter.seq)
    )
  }

  /**
   * The uncontended fast path: admits at once when nothing waits and the
   * weight fits, returning the call's sequence number, or 0 when the caller
   * must take the slow path (queue, rejection, deadline).
   */
  tryAdmit(weight: number): number {
    if (this.closed || this.head !== undefined || this.inFlight + weight > this.maxConcurrent) return 0
    this.inFlight += weight
    this.running++
    this.admitted++
    if (this.inFlight > this.peakInFlight) this.peakInFlight = this.inFlight
    if (this.hub.active) this.emit({ _tag: "Admitted", name: this.name, weight, waited: Duration.zero })
    return ++this.arrivals
  }

  /**
   * Rejections decided at the door (no wait involved): returns the failure,
   * or undefined when the call may queue.
   */
  rejectAtDoor(weight: number, callTimeoutMs: number): Effect.Effect<never, Bulkhead.BulkheadFull> | undefined {
    if (this.closed) return this.reject("Closed", 0, weight)
    if (weight > this.maxConcurrent) return this.reject("Oversized", 0, weight)
    if (this.queued >= this.maxQueue) return this.reject("QueueFull", 0, weight)
    if ((this.queueTimeoutMs < callTimeoutMs ? this.queueTimeoutMs : callTimeoutMs) <= 0) return this.reject("QueueTimeout", 0, weight)
    return undefined
  }

  /** Queues a call that passed `rejectAtDoor`; the caller then waits on `wait(waiter)`. */
  enqueueWaiter(fiber: Fiber.Fiber<unknown, unknown>, weight: number): Waiter {
    const clock = fiber.getRef(Clock.Clock)
    const waiter = new Waiter(weight, ++this.arrivals, clock.currentTimeMillisUnsafe(), clock, fiber)
    this.enqueue(waiter)
    return waiter
  }

  wait(waiter: Waiter, callTimeoutMs: number): Effect.Effect<void, Bulkhead.BulkheadFull> {
    const waiting: Effect.Effect<void, Bulkhead.BulkheadFull> = Effect.callback<void, Bulkhead.BulkheadFull>((resume) => {
      if (waiter.outcome !== undefined) resume(waiter.outcome)
      else waiter.resume = resume
    })
    const waitMs = this.queueTimeoutMs < callTimeoutMs ? this.queueTimeoutMs : callTimeoutMs
    if (waitMs === Infinity) return waiting
    return Effect.timeoutOrElse(waiting, { duration: waitMs, orElse: () => this.timedOut(waiter) })
  }

  /**
   * The single finalizer of a queued call: gives back its place if it was
   * still waiting (interrupted), or its permits if it was admitted (`exit`
   * undefined: interrupted before it could start).
   */
  settleWaiter(waiter: Waiter, exit: Exit.Exit<unknown, unknown> | undefined): void {
    if (waiter.linked) {
      const wasHead = waiter === this.head
      this.unlink(waiter)
      this.cancelled++
      if (this.drains !== undefined) this.settle(waiter.seq)
      if (wasHead && this.head !== undefined) this.pump()
    } else if (waiter.granted) {
      waiter.granted = false
      this.release(waiter.weight, waiter.seq, exit)
    }
  }

  private run<A, E, R>(
    self: Effect.Effect<A, E, R>,
    restore: <X, Y, Z>(effect: Effect.Effect<X, Y, Z>) => Effect.Effect<X, Y, Z>,
    weight: number,
    seq: number
  ): Effect.Effect<A, E, R> {
    return Effect.onExit(restore(self), (exit) => {
      this.release(weight, seq, exit)
      // Effect's own finalizers (Semaphore) return nothing here to skip a flatMap per call.
      return undefined as unknown as Effect.Effect<void>
    })
  }

  release(weight: number, seq: number, exit: Exit.Exit<unknown, unknown> | undefined): void {
    this.inFlight -= weight
    this.running--
    this.completed++
    if (this.head !== undefined) this.pump()
    if (this.drains !== undefined) this.settle(seq)
    if (this.hub.active) {
      this.emit({ _tag: "Released", name: this.name, weight, outcome: exit === undefined ? "Interrupted" : outcomeOf(exit) })
    }
  }

  // ---------------------------------------------------------------------------
  // the waiting room
  // ---------------------------------------------------------------------------

  private enqueue(waiter: Waiter): void {
    if (this.tail === undefined) {
      this.head = this.tail = waiter
    } else {
      waiter.prev = this.tail
      this.tail.next = waiter
      this.tail = waiter
    }
    this.queued++
    if (this.queued > this.peakQueued) this.peakQueued = this.queued
  }

  private unlink(waiter: Waiter): void {
    if (waiter.prev === undefined) this.head = waiter.next
    else waiter.prev.next = waiter.next
    if (waiter.next === undefined) this.tail = waiter.prev
    else waiter.next.prev = waiter.prev
    waiter.prev = waiter.next = undefined
    waiter.linked = false
    this.queued--
  }

  /** Admits waiters from the head while they fit: strict FIFO, a light call never overtakes a heavy one. */
  private pump(): void {
    let waiter = this.head
    while (waiter !== undefined && this.inFlight + waiter.weight <= this.maxConcurrent) {
      const next = waiter.next
      this.unlink(waiter)
      this.inFlight += waiter.weight
      this.running++
      this.admitted++
      this.admittedAfterWait++
      if (this.inFlight > this.peakInFlight) this.peakInFlight = this.inFlight
      const waitedMs = Math.max(0, waiter.clock.currentTimeMillisUnsafe() - (epochMs + waiter.enqueuedAt))
      this.recordWait(waitedMs)
      waiter.granted = true
      waiter.outcome = waiter.onGrant as Effect.Effect<void, Bulkhead.BulkheadFull>
      if (this.hub.active) {
        this.emit({ _tag: "Admitted", name: this.name, weight: waiter.weight, waited: Duration.millis(waitedMs) })
      }
      this.wake(waiter)
      waiter = next
    }
  }

  private woken: Array<Waiter> = []

  /**
   * Resuming runs the waiter's fiber; doing that from the releasing fiber's
   * finalizer would nest fibers on the stack, so it goes through the
   * scheduler: one task per batch rather than one closure per waiter.
   */
  private wake(waiter: Waiter): void {
    this.woken.push(waiter)
    if (this.woken.length === 1) waiter.fiber.currentDispatcher.scheduleTask(this.wakeAll, 0)
  }

  private readonly wakeAll = (): void => {
    const woken = this.woken
    this.woken = []
    for (let i = 0; i < woken.length; i++) {
      const waiter = woken[i]
      if (waiter.resume !== undefined && waiter.outcome !== undefined) waiter.resume(waiter.outcome)
    }
  }

  private recordWait(waitedMs: number): void {
    this.totalWaitMs += waitedMs
    if (waitedMs > this.maxWaitMs) this.maxWaitMs = waitedMs
    if (waitedMs < this.minWaitMs) this.minWaitMs = waitedMs
    this.waitBuckets[bucketOf(waitedMs)]++
  }

  /**
   * Rejects a waiter that is still queued, waking it with the error. It does
   * not admit anyone: callers evict in a loop and admit once at the end, so
   * that an admission cannot unlink the waiter their loop goes to next.
   */
  private evict(waiter: Waiter, reason: Reason): void {
    this.unlink(waiter)
    const waitedMs = Math.max(0, waiter.clock.currentTimeMillisUnsafe() - (epochMs + waiter.enqueuedAt))
    waiter.outcome = this.reject(reason, waitedMs, waiter.weight)
    if (this.drains !== undefined) this.settle(waiter.seq)
    this.wake(waiter)
  }

  private timedOut(waiter: Waiter): Effect.Effect<void, Bulkhead.BulkheadFull> {
    return Effect.suspend(() => {
      // Admitted in the same instant the timer fired: the caller got in within its budget.
      if (waiter.granted) return Effect.void
      if (!waiter.linked) return waiter.outcome ?? Effect.void
      const wasHead = waiter === this.head
      this.unlink(waiter)
      const waitedMs = Math.max(0, waiter.clock.currentTimeMillisUnsafe() - (epochMs + waiter.enqueuedAt))
      const outcome = this.reject("QueueTimeout", waitedMs, waiter.weight)
      waiter.outcome = outcome
      if (this.drains !== undefined) this.settle(waiter.seq)
      if (wasHead && this.head !== undefined) this.pump()
      return outcome
    })
  }

  // ---------------------------------------------------------------------------
  // resize, close, drain
  // ---------------------------------------------------------------------------

  /** O(queued): rejects waiters the new size makes oversized, then admits in FIFO order. */
  resize(maxConcurrent: number): void {
    const from = this.maxConcurrent
    this.maxConcurrent = maxConcurrent
    if (maxConcurrent < from) {
      let waiter = this.head
      while (waiter !== undefined) {
        const next = waiter.next
        if (waiter.weight > maxConcurrent) this.evict(waiter, "Oversized")
        waiter = next
      }
    }
    if (this.hub.active) this.emit({ _tag: "Resized", name: this.name, from, to: maxConcurrent })
    if (this.head !== undefined) this.pump()
  }

  /** O(queued): rejects every waiter with `Closed`; running calls go on. */
  close(announce = true): boolean {
    if (this.closed) return false
    this.closed = true
    while (this.head !== undefined) this.evict(this.head, "Closed")
    if (announce && this.hub.active) this.emit({ _tag: "Closed", name: this.name })
    return true
  }

  /** Waits for the calls running or queued now; later arrivals do not extend the wait. */
  readonly drain: Effect.Effect<void> = Effect.callback<void>((resume) => {
    const remaining = this.running + this.queued
    if (remaining === 0) return resume(Effect.void)
    const waiter: DrainWaiter = { mark: this.arrivals, remaining, resume }
    ;(this.drains ??= []).push(waiter)
    return Effect.sync(() => this.removeDrain(waiter))
  })

  private removeDrain(waiter: DrainWaiter): void {
    if (this.drains === undefined) return
    const index = this.drains.indexOf(waiter)
    if (index >= 0) this.drains.splice(index, 1)
    if (this.drains.length === 0) this.drains = undefined
  }

  /** A call that arrived as number `seq` has left the bulkhead for good. */
  private settle(seq: number): void {
    const drains = this.drains!
    for (let i = drains.length - 1; i >= 0; i--) {
      const waiter = drains[i]
      if (seq <= waiter.mark && --waiter.remaining === 0) {
        drains.splice(i, 1)
        waiter.resume(Effect.void)
      }
    }
    if (drains.length === 0) this.drains = undefined
  }

  // ---------------------------------------------------------------------------
  // observation
  // ---------------------------------------------------------------------------

  /** Cumulative queue-wait histogram; calls admitted at once count as a wait of 0. */
  waitHistogram(): Metric.HistogramState {
    const immediate = this.admitted - this.admittedAfterWait
    const buckets: Array<[number, number]> = []
    let cumulated = immediate
    for (let i = 0; i < waitBoundaries.length; i++) {
      cumulated += this.waitBuckets[i]
      buckets.push([waitBoundaries[i], cumulated])
    }
    return {
      buckets,
      count: this.admitted,
      min: immediate > 0 ? 0 : this.admittedAfterWait > 0 ? this.minWaitMs : 0,
      max: this.maxWaitMs,
      sum: this.totalWaitMs
    }
  }
}

const outcomeOf = (exit: Exit.Exit<unknown, unknown>): Bulkhead.Event.Outcome => {
  if (Exit.isSuccess(exit)) return "Success"
  if (Exit.hasInterrupts(exit)) return "Interrupted"
  if (Exit.hasDies(exit)) return "Defect"
  return "Failure"
}

/** What the pull-based metrics read; a bulkhead's state is one, a keyed bulkhead's aggregate another. */
export interface MetricSource {
  readonly inFlight: number
  readonly queued: number
  readonly admitted: number
  readonly completed: number
  readonly rejected: Readonly<Record<Reason, number>>
  waitHistogram(): Metric.HistogramState
}

/**
 * Registers the `bulwark.bulkhead.*` metrics as pull-based series: they are
 * computed from the bulkhead's own counters when an exporter reads them, so
 * admission and release pay nothing for metrics.
 *
 * @internal
 */
export const registerMetrics = (
  context: Context.Context<never>,
  attributes: Readonly<Record<string, string>>,
  source: MetricSource,
  reasons: ReadonlyArray<Reason>,
  prefix = "bulwark.bulkhead"
): Array<Metric.Registration> => {
  const gauge = (id: string, description: string, get: () => number) => pullGauge(context, id, description, attributes, get)
  const counter = (id: string, description: string, attrs: Readonly<Record<string, string>>, get: () => number) =>
    pullCounter(context, id, description, attrs, get)
  const registrations = [
    gauge(`${prefix}.in_flight`, "Permits held by running calls", () => source.inFlight),
    gauge(`${prefix}.queued`, "Calls waiting for a permit", () => source.queued),
    counter(`${prefix}.admitted`, "Calls admitted", attributes, () => source.admitted),
    counter(`${prefix}.completed`, "Admitted calls that finished", attributes, () => source.completed),
    pullHistogram(
      context,
      `${prefix}.queue_wait`,
      "Time from arrival to admission, in milliseconds",
      waitBoundaries,
      attributes,
      () => source.waitHistogram()
    )
  ]
  for (const reason of reasons) {
    registrations.push(
      counter(`${prefix}.rejected`, "Calls rejected, by reason", { ...attributes, reason }, () => source.rejected[reason])
    )
  }
  return registrations
}

/**
 * Builds a `BulkheadFull` without running its Schema constructor. A rejection
 * is an expected, frequent outcome under load: the constructor's field
 * validation and stack capture cost over a microsecond and say nothing the
 * fields do not. The fields are produced here and valid by construction; the
 * result is an ordinary instance (same prototype, same own fields, `Schema.is`
 * and encoding agree), only without a `stack`.
 *
 * @internal
 */
export const fastError = (
  name: string,
  key: string | undefined,
  reason: Reason,
  maxConcurrent: number,
  maxQueue: number,
  waitedMs: number
): Bulkhead.BulkheadFull => {
  const error = Object.create(BulkheadFull.prototype)
  error._tag = "BulkheadFull"
  error.name = name
  if (key !== undefined) error.key = key
  error.reason = reason
  error.maxConcurrent = maxConcurrent
  error.maxQueue = maxQueue
  error.waited = waitedMs === 0 ? Duration.zero : Duration.millis(waitedMs)
  return error
}

/** Per-call options, validated once when a guard is built. */
export interface CallOptions {
  readonly weight: number
  readonly timeoutMs: number
  readonly deadline: number | undefined
}

const defaultCall: CallOptions = { weight: 1, timeoutMs: Infinity, deadline: undefined }

/**
 * Bad per-call options are programming errors, not load conditions: the call
 * dies with a message naming the option instead of failing with a typed error.
 *
 * @internal
 */
export const parseGuardOptions = (
  api: string,
  options: { readonly weight?: number | undefined; readonly queueTimeout?: Duration.Input | undefined; readonly deadline?: number | undefined } | undefined
): CallOptions | Effect.Effect<never> => {
  if (options === undefined) return defaultCall
  const weight = options.weight ?? 1
  if (!(Number.isInteger(weight) && weight >= 1)) {
    return dieWith(`${api}: option "weight" must be a positive integer, got ${String(weight)}`)
  }
  let timeoutMs = Infinity
  if (options.queueTimeout !== undefined) {
    const decoded = Duration.fromInput(options.queueTimeout)
    if (decoded._tag === "None" || Duration.isNegative(decoded.value)) {
      return dieWith(`${api}: option "queueTimeout" must be a duration >= 0, got ${String(options.queueTimeout)}`)
    }
    timeoutMs = Duration.toMillis(decoded.value)
  }
  const deadline = options.deadline
  if (deadline !== undefined && (typeof deadline !== "number" || Number.isNaN(deadline))) {
    return dieWith(`${api}: option "deadline" must be epoch milliseconds, got ${String(deadline)}`)
  }
  return { weight, timeoutMs, deadline }
}

const dieWith = (message: string): Effect.Effect<never> => Effect.die(new globalThis.Error(message))

/** @internal */
export const resizeError = (name: string, value: unknown) =>
  new InvalidOptions({
    primitive: "Bulkhead",
    name,
    message: `maxConcurrent: Expected an integer >= 1, got ${String(value)}`
  })


/**
 * Turns interval figures into capacity findings. Thresholds are deliberately
 * high so that a report on a healthy bulkhead stays empty.
 *
 * @internal
 */
export const assess = (now: Bulkhead.Snapshot, interval: Bulkhead.Interval, minimumSample: number): Bulkhead.CapacityReport => {
  const sample = interval.admitted + interval.rejectedTotal
  const findings: Array<Bulkhead.Finding> = []
  const conclusive = sample >= minimumSample
  if (conclusive) {
    const queuedShare = interval.admitted === 0 ? 0 : interval.admittedAfterWait / interval.admitted
    if (queuedShare >= 0.2) {
      findings.push({
        _tag: "Saturated",
        message: `${now.name}: ${percent(queuedShare)} of admitted calls had to queue; all ${now.maxConcurrent} permits are often held`
      })
    }
    if (interval.rejectionRate >= 0.01) {
      const reasons = Object.entries(interval.rejected)
        .filter(([, n]) => n > 0)
        .map(([reason, n]) => `${reason} ${n}`)
        .join(", ")
      findings.push({
        _tag: "Rejecting",
        message: `${now.name}: ${percent(interval.rejectionRate)} of calls were rejected (${reasons})`
      })
    }
    if (interval.admittedAfterWait > 0) {
      const averageQueuedWaitMs = Duration.toMillis(interval.averageWait) * interval.admitted / interval.admittedAfterWait
      const limitMs = now.queueTimeout === undefined ? 1000 : Duration.toMillis(now.queueTimeout) / 2
      if (averageQueuedWaitMs >= limitMs) {
        findings.push({
          _tag: "LongWaits",
          message: `${now.name}: queued calls waited ${Math.round(averageQueuedWaitMs)} ms on average (threshold ${Math.round(limitMs)} ms)`
        })
      }
    }
  }
  return { name: now.name, sample, conclusive, findings, interval }
}

const percent = (x: number): string => `${(x * 100).toFixed(x < 0.1 ? 1 : 0)}%`
