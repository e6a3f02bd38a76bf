import { Clock, Duration, Effect, Metric } from "effect"
import type * as Context from "effect/Context"
import type * as Fiber from "effect/Fiber"
import type * as RateLimiter from "../RateLimiter.ts"
import { RateLimited } from "../RateLimiter.ts"
import type * as Store from "../RateLimiterStore.ts"
import type { OnStoreError, StoreError } from "../Store.ts"
import { EventHub } from "./events.ts"
import { pullCounter, pullGauge } from "./metrics.ts"
import { MemoryStore } from "./rateLimiterStore.ts"
import { StoreFallback, storeReasons } from "./storeFallback.ts"
import * as tracing from "./tracing.ts"

type Reason = RateLimiter.Reason
type Restore = <X, Y, Z>(effect: Effect.Effect<X, Y, Z>) => Effect.Effect<X, Y, Z>
type Listeners = EventHub<RateLimiter.Event>

/** @internal */
export const reasons: ReadonlyArray<Reason> = ["Exceeded", "Blocked", "WaitTooLong", "TooManyKeys", "StoreUnavailable"]

/** @internal */
export const emptyRejected = (): Record<Reason, number> => ({
  Exceeded: 0,
  Blocked: 0,
  WaitTooLong: 0,
  TooManyKeys: 0,
  StoreUnavailable: 0
})

/** @internal */
export const sumRejected = (r: Readonly<Record<Reason, number>>): number =>
  r.Exceeded + r.Blocked + r.WaitTooLong + r.TooManyKeys + r.StoreUnavailable

/**
 * The reasons a limiter reports as metric series: `TooManyKeys` only for
 * keyed limiters, `StoreUnavailable` only on a shared store (an in-process
 * store never fails).
 *
 * @internal
 */
export const reportedReasons = (keyed: boolean, shared: boolean): ReadonlyArray<Reason> =>
  reasons.filter((r) => (r !== "TooManyKeys" || keyed) && (r !== "StoreUnavailable" || shared))

/**
 * The in-memory stand-in of `onStoreError: "local"`: the same algorithms as
 * the limiter's own memory store, one state per store key. A keyed limiter's
 * stand-in drops keys at rest once it holds more than `maxKeys` (a fresh
 * state decides exactly like a state at rest).
 *
 * @internal
 */
export class StandIn extends MemoryStore {
  private readonly maxKeys: number
  private pruneAbove: number
  constructor(maxKeys: number) {
    super()
    this.maxKeys = maxKeys
    this.pruneAbove = maxKeys
  }
  pruneAtRest(algorithm: Store.Algorithm, now: number): void {
    if (this.states.size <= this.pruneAbove) return
    for (const [key, state] of this.states) {
      if (state.resetAt(algorithm, now) <= now) this.forget(key)
    }
    // Keys still busy stay; scanning again only once the map has doubled keeps this O(1) amortized.
    this.pruneAbove = Math.max(this.maxKeys, this.states.size * 2)
  }
}

/**
 * A shared store's fallback, or `undefined` for an in-process store (its
 * hot path never asks).
 *
 * @internal
 */
export const fallbackFor = (
  store: Store.RateLimiterStore,
  mode: OnStoreError,
  maxKeys: number
): StoreFallback<StandIn> | undefined =>
  store.inProcess === undefined ? new StoreFallback(mode, () => new StandIn(maxKeys)) : undefined

/**
 * Builds a `RateLimited` without running its Schema constructor (see
 * `internal/bulkhead.ts` `fastError`): a rejection is an expected outcome
 * under load, and field validation plus a stack trace would cost more than
 * the whole decision.
 *
 * @internal
 */
export const fastError = (
  name: string,
  key: string | undefined,
  reason: Reason,
  retryAfterMs: number,
  limit: number
): RateLimited => {
  const error = Object.create(RateLimited.prototype)
  error._tag = "RateLimited"
  error.name = name
  if (key !== undefined) error.key = key
  error.reason = reason
  error.retryAfter = retryAfterMs === Infinity
    ? Duration.infinity
    : retryAfterMs > 0
    ? Duration.millis(retryAfterMs)
    : Duration.zero
  error.limit = limit
  return error
}

/**
 * A caller waiting for its reserved slot. The queue is intrusive so that
 * removing an interrupted waiter is O(1) and admission never scans.
 *
 * A waiter goes through two queues, both in arrival order: the waiting room
 * (`linked`: its slot has not come) and the turn queue (`ready`: admitted, its
 * body not started yet). Only the first of the turn queue starts; it then hands
 * the turn to the next. Which waiting fiber happens to wake first (timers due
 * at the same millisecond fire in the order they were set, and a waiter moved
 * by a re-planning sets a new one) then never decides the order of starts.
 */
class Waiter {
  prev: Waiter | undefined = undefined
  next: Waiter | undefined = undefined
  /** In the waiting room. */
  linked = true
  /** Admitted, in the turn queue: it starts when every admitted caller ahead of it has started. */
  ready = false
  /** The reserved admission time; it only moves earlier (a reservation ahead was returned), or later on a block. */
  at: number
  /** Set when the waiter leaves the waiting room: `Effect.void` when admitted, a failure when rejected. */
  outcome: Effect.Effect<void, RateLimited> | undefined = undefined
  /** Its reservation is in the `"local"` stand-in (the shared store was down), which gets it back on interruption. */
  standIn = false
  resume: ((effect: Effect.Effect<void>) => void) | undefined = undefined
  readonly cost: number
  readonly arrivedAt: number
  /** Latest admission time its `maxWait` allows. */
  readonly deadline: number
  readonly clock: Clock.Clock
  readonly fiber: Fiber.Fiber<unknown, unknown>
  readonly wake: () => void
  readonly wait: Effect.Effect<void, RateLimited>

  constructor(
    owner: LimiterState,
    cost: number,
    at: number,
    arrivedAt: number,
    clock: Clock.Clock,
    fiber: Fiber.Fiber<unknown, unknown>
  ) {
    this.cost = cost
    this.at = at
    this.arrivedAt = arrivedAt
    this.deadline = arrivedAt + owner.maxWaitMs
    this.clock = clock
    this.fiber = fiber
    // Resuming runs the waiter's fiber; from another fiber's code that would
    // nest fibers on the stack, so it goes through the scheduler.
    this.wake = () => {
      const resume = this.resume
      if (resume !== undefined) {
        this.resume = undefined
        resume(Effect.void)
      }
    }
    const park = Effect.callback<void>((resume) => {
      this.resume = resume
      return Effect.sync(() => {
        this.resume = undefined
      })
    })
    // Admitted, waiting for its turn: parks unless the turn is already its own
    // (checked when parking, so a hand-over cannot be missed).
    const turn = Effect.callback<void>((resume) => {
      if (owner.hasTurn(this)) return resume(Effect.void)
      this.resume = resume
      return Effect.sync(() => {
        this.resume = undefined
      })
    })
    // Sleeps until the reserved time, and starts over whenever the limiter
    // moves the reservation or decides the waiter's fate; once admitted, waits
    // for its turn and hands the next one on as it starts.
    const loop: Effect.Effect<void, RateLimited> = Effect.suspend(() => {
      if (this.ready) {
        if (!owner.hasTurn(this)) return Effect.flatMap(turn, () => loop)
        owner.start(this)
        return Effect.void
      }
      if (this.outcome !== undefined) return this.outcome
      const now = clock.currentTimeMillisUnsafe()
      if (this.at <= now) {
        // Admits, in FIFO order, this waiter and every waiter ahead of it (their slots come first).
        owner.admitDue(now, this)
        return loop
      }
      return Effect.flatMap(
        Effect.timeoutOrElse(park, { duration: Duration.millis(this.at - now), orElse: () => Effect.void }),
        () => loop
      )
    })
    this.wait = loop
  }
}

/** @internal */
export interface LimiterConfig {
  readonly name: string
  /** Put in errors and events (keyed limiters with `exposeKeys`). */
  readonly key: string | undefined
  /** The key this limiter's state has in the store. */
  readonly storeKey: string
  readonly algorithm: Store.Algorithm
  readonly limit: number
  readonly wait: boolean
  readonly maxWaitMs: number
  readonly store: Store.RateLimiterStore
  readonly listeners: Listeners
  /** Told when a waiter leaves without being admitted (keyed limiters re-check their keys). */
  readonly onRelease?: (() => void) | undefined
  /** A shared store's `onStoreError` machinery (one per limiter, shared by a keyed limiter's keys). */
  readonly fallback?: StoreFallback<StandIn> | undefined
}

let nextId = 0

/** @internal */
export const pending: unique symbol = Symbol.for("@bulwark/core/RateLimiter/pending")

/**
 * The local side of one limiter (or one key of a keyed limiter): its waiting
 * callers, counters and listeners. The algorithm's state is in the store.
 *
 * @internal
 */
export class LimiterState {
  readonly id = ++nextId
  readonly name: string
  readonly key: string | undefined
  readonly storeKey: string
  readonly algorithm: Store.Algorithm
  readonly limit: number
  readonly wait: boolean
  readonly maxWaitMs: number
  readonly store: Store.RateLimiterStore
  /** The store's synchronous operations: present for in-process stores, which this limiter then owns. */
  readonly sync: Store.InProcess | undefined
  readonly listeners: Listeners
  /** Present for a shared store: what its failures mean, and what they cost so far. */
  readonly fallback: StoreFallback<StandIn> | undefined
  private readonly onRelease: (() => void) | undefined

  admitted = 0
  admittedCost = 0
  admittedAfterWait = 0
  cancelled = 0
  readonly rejected: Record<Reason, number> = emptyRejected()
  totalWaitMs = 0
  longestWaitMs = 0
  waiting = 0
  blockedUntil = -Infinity
  /** Last figures a shared store reported (an in-process store is read directly). */
  lastRemaining: number
  lastResetAt = -Infinity
  snapshotSeq = 0
  /** The guard of cost 1, compiled once: `effect.pipe(RateLimiter.guard(limiter))` then allocates nothing more. */
  defaultGuard: unknown = undefined

  /** The waiting room: reserved slots not yet come, in arrival (and slot) order. */
  private head: Waiter | undefined = undefined
  private tail: Waiter | undefined = undefined
  /** The turn queue: admitted waiters whose body has not started, in arrival order. */
  private readyHead: Waiter | undefined = undefined
  private readyTail: Waiter | undefined = undefined
  /** The clock of the last fiber seen, by its (immutable) context: one comparison instead of a lookup. */
  private clockContext: Context.Context<never> | undefined = undefined
  private clock: Clock.Clock | undefined = undefined

  constructor(config: LimiterConfig) {
    this.name = config.name
    this.key = config.key
    this.storeKey = config.storeKey
    this.algorithm = config.algorithm
    this.limit = config.limit
    this.wait = config.wait
    this.maxWaitMs = config.maxWaitMs
    this.store = config.store
    this.sync = config.store.inProcess
    this.listeners = config.listeners
    this.onRelease = config.onRelease
    this.fallback = config.fallback
    this.lastRemaining = config.limit
  }

  /** Nobody waiting for a slot or for a turn. */
  get idle(): boolean {
    return this.head === undefined && this.readyHead === undefined
  }

  // ---------------------------------------------------------------------------
  // outcomes
  // ---------------------------------------------------------------------------

  /**
   * `caller` is the fiber of the rejected call when the rejection is decided
   * in it: its current span gets the rejection as an event. A waiter rejected
   * by another fiber (a block) has its wait span instead.
   */
  reject(
    reason: Reason,
    retryAfterMs: number,
    cost: number,
    caller?: Fiber.Fiber<unknown, unknown>
  ): Effect.Effect<never, RateLimited> {
    this.rejected[reason]++
    // Out of line: a bigger `reject` would no longer be inlined into the paths that call it.
    if (caller !== undefined && caller.cache.span !== undefined) this.traceRejection(caller, reason, retryAfterMs, cost)
    if (this.listeners.active) {
      this.emit({
        _tag: "Rejected",
        name: this.name,
        ...(this.key === undefined ? {} : { key: this.key }),
        reason,
        cost,
        retryAfter: retryAfterMs === Infinity ? Duration.infinity : Duration.millis(Math.max(0, retryAfterMs))
      })
    }
    return Effect.fail(fastError(this.name, this.key, reason, retryAfterMs, this.limit))
  }

  /** A rejection decided in the caller's fiber, as an event on its span (if traced). */
  private traceRejection(caller: Fiber.Fiber<unknown, unknown>, reason: Reason, retryAfterMs: number, cost: number): void {
    const span = tracing.spanOf(caller)
    if (span === undefined) return
    const attributes = this.spanAttributes({ "bulwark.ratelimiter.reason": reason, "bulwark.ratelimiter.cost": cost })
    if (retryAfterMs !== Infinity) attributes["bulwark.ratelimiter.retry_after_ms"] = Math.max(0, retryAfterMs)
    tracing.event(caller, span, "bulwark.ratelimiter.rejected", attributes)
  }

  /** `bulwark.name`, the key when the keyed limiter exposes its keys, and `extra`. */
  spanAttributes(extra: tracing.Attributes): tracing.Attributes {
    const attributes: tracing.Attributes = { "bulwark.name": this.name }
    if (this.key !== undefined) attributes["bulwark.ratelimiter.key"] = this.key
    return Object.assign(attributes, extra)
  }

  /**
   * A waiter's wait; in a child span `bulwark.ratelimiter.wait` when the
   * caller is traced (the call waits anyway, a span costs little next to it).
   */
  private tracedWait(fiber: Fiber.Fiber<unknown, unknown>, waiter: Waiter, now: number): Effect.Effect<void, RateLimited> {
    if (tracing.spanOf(fiber) === undefined) return waiter.wait
    return tracing.withWaitSpan(
      "bulwark.ratelimiter.wait",
      this.spanAttributes({
        "bulwark.ratelimiter.cost": waiter.cost,
        "bulwark.ratelimiter.reserved_wait_ms": Math.max(0, waiter.at - now)
      }),
      "bulwark.ratelimiter.outcome",
      waiter.wait
    )
  }

  private admittedNow(cost: number): void {
    this.admitted++
    this.admittedCost += cost
    if (this.listeners.active) {
      this.emit({
        _tag: "Admitted",
        name: this.name,
        ...(this.key === undefined ? {} : { key: this.key }),
        cost,
        waited: Duration.zero
      })
    }
  }

  private reasonOf(d: Store.Decision): Reason {
    if (d.blocked) return "Blocked"
    if (d.at === Infinity || !this.wait) return "Exceeded"
    return "WaitTooLong"
  }

  emit(event: RateLimiter.Event): void {
    this.listeners.emit(event)
  }

  // ---------------------------------------------------------------------------
  // admission
  // ---------------------------------------------------------------------------

  /** The fiber's `Clock` (so `TestClock` drives everything). */
  clockOf(fiber: Fiber.Fiber<unknown, unknown>): Clock.Clock {
    if (fiber.context !== this.clockContext) {
      this.clock = fiber.getRef(Clock.Clock)
      this.clockContext = fiber.context
    }
    return this.clock!
  }

  /**
   * The decision when no waiting is involved: a limiter that never waits, or
   * the fast path of one that may (a decision with `maxWait = 0` commits
   * nothing unless the call passes now). `undefined` means "pass now";
   * `pending` means "may wait": the caller must decide again under an
   * interruption mask, where a reservation cannot leak.
   */
  decideNow(
    now: number,
    cost: number,
    caller: Fiber.Fiber<unknown, unknown>
  ): Effect.Effect<never, RateLimited> | typeof pending | undefined {
    // With callers waiting or about to start, a new call queues behind them even
    // if its slot is now (theirs came, their fibers have not run yet).
    if (this.head !== undefined || this.readyHead !== undefined) return pending
    const d = this.sync!.consume(this.storeKey, this.algorithm, cost, now, 0)
    if (d.admitted) {
      this.admittedNow(cost)
      return undefined
    }
    if (this.wait && d.at !== Infinity) return pending
    return this.reject(d.blocked ? "Blocked" : "Exceeded", d.at - now, cost, caller)
  }

  /**
   * Admission of a limiter whose callers may wait, on an in-process store.
   * Runs inside an uninterruptible region: the reservation and the
   * registration of its return on interruption happen in one step.
   */
  admitOrWait<A, E, R>(
    fiber: Fiber.Fiber<unknown, unknown>,
    self: Effect.Effect<A, E, R>,
    cost: number,
    restore: Restore
  ): Effect.Effect<A, E | RateLimited, R> {
    const clock = this.clockOf(fiber)
    const now = clock.currentTimeMillisUnsafe()
    const d = this.sync!.consume(this.storeKey, this.algorithm, cost, now, this.maxWaitMs)
    if (!d.admitted) return this.reject(this.reasonOf(d), d.at - now, cost, fiber)
    if (d.at <= now && this.head === undefined && this.readyHead === undefined) {
      this.admittedNow(cost)
      return restore(self)
    }
    const waiter = new Waiter(this, cost, d.at, now, clock, fiber)
    this.append(waiter)
    // A slot that is now, behind callers due before it: admitted with them, started after them.
    if (d.at <= now) this.admitDue(now, waiter)
    return Effect.flatMap(
      Effect.onInterrupt(restore(this.tracedWait(fiber, waiter, now)), () => Effect.sync(() => this.abandon(waiter))),
      () => restore(self)
    )
  }

  /**
   * Admission through a shared (remote) store: one store call, then the same
   * waiting as in process. When the store cannot decide (or is known to be
   * down, see `StoreFallback`), the `onStoreError` policy decides instead.
   */
  admitShared<A, E, R>(
    fiber: Fiber.Fiber<unknown, unknown>,
    self: Effect.Effect<A, E, R>,
    cost: number,
    restore: Restore
  ): Effect.Effect<A, E | RateLimited, R> {
    if (cost > this.limit) return this.reject("Exceeded", Infinity, cost, fiber)
    const clock = this.clockOf(fiber)
    const now = clock.currentTimeMillisUnsafe()
    const fallback = this.fallback!
    if (!fallback.ask(now)) return this.withoutStore(fiber, self, cost, restore, clock, now)
    return Effect.matchEffect(this.store.consume(this.storeKey, this.algorithm, cost, now, this.maxWaitMs), {
      onFailure: (error) => {
        const later = clock.currentTimeMillisUnsafe()
        this.storeFailed(error, later, fiber)
        return this.withoutStore(fiber, self, cost, restore, clock, later)
      },
      onSuccess: (d) => {
        if (fallback.answered()) this.storeRecovered()
        this.lastRemaining = d.remaining
        this.lastResetAt = d.resetAt
        return this.planned(fiber, self, cost, restore, clock, now, clock.currentTimeMillisUnsafe(), d, false)
      }
    })
  }

  /** What a shared store's (or the stand-in's) decision means for the call: pass, wait for its slot, or fail. */
  private planned<A, E, R>(
    fiber: Fiber.Fiber<unknown, unknown>,
    self: Effect.Effect<A, E, R>,
    cost: number,
    restore: Restore,
    clock: Clock.Clock,
    arrivedAt: number,
    now: number,
    d: Store.Decision,
    standIn: boolean
  ): Effect.Effect<A, E | RateLimited, R> {
    if (!d.admitted) return this.reject(this.reasonOf(d), d.at - now, cost, fiber)
    if (d.at <= now && this.head === undefined && this.readyHead === undefined) {
      this.admittedNow(cost)
      return restore(self)
    }
    const waiter = new Waiter(this, cost, d.at, arrivedAt, clock, fiber)
    waiter.standIn = standIn
    this.insertByTime(waiter)
    if (d.at <= now) this.admitDue(now, waiter)
    return Effect.flatMap(
      Effect.onInterrupt(restore(this.tracedWait(fiber, waiter, now)), () => this.abandonShared(waiter)),
      () => restore(self)
    )
  }

  /**
   * The `onStoreError` policy decides a call the shared store could not:
   * `"fail-open"` lets it through (a block this process knows of still
   * holds), `"fail-closed"` rejects it with `StoreUnavailable` and the time
   * until the store is asked again, `"local"` asks the in-memory stand-in.
   */
  private withoutStore<A, E, R>(
    fiber: Fiber.Fiber<unknown, unknown>,
    self: Effect.Effect<A, E, R>,
    cost: number,
    restore: Restore,
    clock: Clock.Clock,
    now: number
  ): Effect.Effect<A, E | RateLimited, R> {
    const fallback = this.fallback!
    fallback.decided++
    switch (fallback.mode) {
      case "fail-open": {
        if (this.blockedUntil > now) return this.reject("Blocked", this.blockedUntil - now, cost, fiber)
        this.admittedNow(cost)
        return restore(self)
      }
      case "fail-closed":
        return this.reject("StoreUnavailable", fallback.retryAfterMs(now), cost, fiber)
      case "local": {
        const standIn = fallback.standIn
        const d = standIn.consume(this.storeKey, this.algorithm, cost, now, this.maxWaitMs)
        // Read now: the stand-in reuses its decision object.
        this.lastRemaining = d.remaining
        this.lastResetAt = d.resetAt
        const decided = this.planned(fiber, self, cost, restore, clock, now, now, d, true)
        standIn.pruneAtRest(this.algorithm, now)
        return decided
      }
    }
  }

  /** A store operation failed: counted, reported, and (for a store-wide reason) the store is left alone for a while. */
  storeFailed(error: StoreError, now: number, caller: Fiber.Fiber<unknown, unknown> | undefined): void {
    const fallback = this.fallback!
    fallback.failed(error, now)
    if (caller !== undefined && caller.cache.span !== undefined) this.traceStoreError(caller, error)
    if (this.listeners.active) {
      this.emit({
        _tag: "StoreFailed",
        name: this.name,
        ...(this.key === undefined ? {} : { key: this.key }),
        operation: error.operation,
        reason: error.reason,
        message: error.message,
        onStoreError: fallback.mode
      })
    }
  }

  private storeRecovered(): void {
    if (this.listeners.active) {
      this.emit({ _tag: "StoreRecovered", name: this.name, ...(this.key === undefined ? {} : { key: this.key }) })
    }
  }

  private traceStoreError(caller: Fiber.Fiber<unknown, unknown>, error: StoreError): void {
    const span = tracing.spanOf(caller)
    if (span === undefined) return
    tracing.event(
      caller,
      span,
      "bulwark.ratelimiter.store_error",
      this.spanAttributes({
        "bulwark.store.operation": error.operation,
        "bulwark.store.reason": error.reason,
        "bulwark.ratelimiter.on_store_error": this.fallback!.mode
      })
    )
  }

  /**
   * Gives a reservation back to the store that holds it. While the shared
   * store is down the refund is forfeited (the contract allows it) rather
   * than waited for; a refund that fails is counted and forfeited too.
   */
  private refundShared(waiter: Waiter, now: number): Effect.Effect<void> {
    const fallback = this.fallback!
    if (waiter.standIn) {
      fallback.standInIfAny?.refund(this.storeKey, this.algorithm, waiter.cost, waiter.at, now)
      return Effect.void
    }
    if (!fallback.healthy) return Effect.void
    return Effect.catch(
      this.store.refund(this.storeKey, this.algorithm, waiter.cost, waiter.at, now),
      (error) => Effect.sync(() => this.storeFailed(error, now, undefined))
    )
  }

  // ---------------------------------------------------------------------------
  // the waiting room
  // ---------------------------------------------------------------------------

  private append(waiter: Waiter): void {
    if (this.tail === undefined) {
      this.head = this.tail = waiter
    } else {
      waiter.prev = this.tail
      this.tail.next = waiter
      this.tail = waiter
    }
    this.waiting++
  }

  /** A shared store orders reservations; answers may arrive out of that order. */
  private insertByTime(waiter: Waiter): void {
    let after = this.tail
    while (after !== undefined && after.at > waiter.at) after = after.prev
    if (after === this.tail) return this.append(waiter)
    waiter.prev = after
    waiter.next = after === undefined ? this.head : after.next
    if (after === undefined) this.head = waiter
    else after.next = waiter
    waiter.next!.prev = waiter
    this.waiting++
  }

  private unlink(waiter: Waiter): void {
    if (waiter.prev === undefined) this.head = waiter.next
    else waiter.prev.next = waiter.next
    if (waiter.next === undefined) this.tail = waiter.prev
    else waiter.next.prev = waiter.prev
    waiter.prev = waiter.next = undefined
    waiter.linked = false
    this.waiting--
  }

  private schedule(waiter: Waiter): void {
    if (waiter.resume !== undefined) waiter.fiber.currentDispatcher.scheduleTask(waiter.wake, 0)
  }

  /**
   * Admits, in FIFO order, every waiter whose reserved time has come, and with
   * `through` every waiter up to that one (slots follow arrival order, so the
   * waiters ahead of a due one are due too). The admitted join the turn queue:
   * they start in that order, whichever fiber runs first.
   */
  admitDue(now: number, through?: Waiter): void {
    let waiter = this.head
    while (waiter !== undefined && (waiter.at <= now || (through !== undefined && through.linked))) {
      const next = waiter.next
      this.unlink(waiter)
      const waitedMs = now - waiter.arrivedAt
      this.admitted++
      this.admittedCost += waiter.cost
      if (waitedMs > 0) this.admittedAfterWait++
      this.totalWaitMs += waitedMs
      if (waitedMs > this.longestWaitMs) this.longestWaitMs = waitedMs
      waiter.outcome = Effect.void
      if (this.listeners.active) {
        this.emit({
          _tag: "Admitted",
          name: this.name,
          ...(this.key === undefined ? {} : { key: this.key }),
          cost: waiter.cost,
          waited: Duration.millis(waitedMs)
        })
      }
      this.enqueueReady(waiter)
      waiter = next
    }
  }

  // ---------------------------------------------------------------------------
  // the turn queue
  // ---------------------------------------------------------------------------

  /** Whether every admitted waiter ahead of this one has started. */
  hasTurn(waiter: Waiter): boolean {
    return this.readyHead === waiter
  }

  /**
   * Every admitted waiter is woken at once, in FIFO order (usually they then
   * run in that order, each finding its turn); one that runs before its turn
   * parks until the waiter ahead of it starts.
   */
  private enqueueReady(waiter: Waiter): void {
    waiter.ready = true
    if (this.readyTail === undefined) {
      this.readyHead = this.readyTail = waiter
    } else {
      waiter.prev = this.readyTail
      this.readyTail.next = waiter
      this.readyTail = waiter
    }
    this.schedule(waiter)
  }

  private dequeueReady(waiter: Waiter): void {
    const hadTurn = waiter.prev === undefined
    if (hadTurn) this.readyHead = waiter.next
    else waiter.prev!.next = waiter.next
    if (waiter.next === undefined) this.readyTail = waiter.prev
    else waiter.next.prev = waiter.prev
    waiter.prev = waiter.next = undefined
    waiter.ready = false
    // The turn passes on: the next one resumes after this fiber has gone on to its body.
    if (hadTurn && this.readyHead !== undefined) this.schedule(this.readyHead)
  }

  /** The waiter whose turn it is starts (its fiber goes on to the guarded effect). */
  start(waiter: Waiter): void {
    this.dequeueReady(waiter)
  }

  private cancel(waiter: Waiter, now: number): void {
    this.unlink(waiter)
    this.cancelled++
    if (this.listeners.active) {
      this.emit({
        _tag: "Cancelled",
        name: this.name,
        ...(this.key === undefined ? {} : { key: this.key }),
        cost: waiter.cost,
        waited: Duration.millis(Math.max(0, now - waiter.arrivedAt))
      })
    }
    this.onRelease?.()
  }

  /**
   * The waiting fiber was interrupted. Its reservation goes back, and so do
   * those of every waiter behind it (newest first, which the store undoes
   * exactly); then the waiters behind it reserve again in FIFO order, so each
   * gets the same slot or an earlier one.
   */
  private abandon(waiter: Waiter): void {
    // Admitted, not started: the reservation is spent; the turn passes on.
    if (waiter.ready) return this.dequeueReady(waiter)
    if (!waiter.linked) return
    const now = waiter.clock.currentTimeMillisUnsafe()
    if (waiter.at <= now) {
      // Its slot has come: it is spent, there is nothing to give back.
      this.cancel(waiter, now)
      this.admitDue(now)
      return
    }
    const sync = this.sync!
    for (let x = this.tail; x !== undefined; x = x.prev) {
      sync.refundLatest(this.storeKey, this.algorithm, x.cost, x.at, now)
      if (x === waiter) break
    }
    const behind = waiter.next
    this.cancel(waiter, now)
    for (let x = behind; x !== undefined; x = x.next) {
      const d = sync.consume(this.storeKey, this.algorithm, x.cost, now, Infinity)
      if (d.at !== x.at) {
        x.at = d.at
        this.schedule(x)
      }
    }
    this.admitDue(now)
  }

  private abandonShared(waiter: Waiter): Effect.Effect<void> {
    if (waiter.ready) {
      this.dequeueReady(waiter)
      return Effect.void
    }
    if (!waiter.linked) return Effect.void
    const now = waiter.clock.currentTimeMillisUnsafe()
    this.cancel(waiter, now)
    if (waiter.at <= now) {
      this.admitDue(now)
      return Effect.void
    }
    return this.refundShared(waiter, now)
  }

  // ---------------------------------------------------------------------------
  // block
  // ---------------------------------------------------------------------------

  private blocked(until: number): void {
    if (until > this.blockedUntil) this.blockedUntil = until
    if (this.listeners.active) {
      this.emit({
        _tag: "Blocked",
        name: this.name,
        ...(this.key === undefined ? {} : { key: this.key }),
        until: this.blockedUntil
      })
    }
  }

  /**
   * Nothing passes before `until`. With an in-process store the waiters are
   * planned again from scratch (every reservation given back, newest first,
   * then taken again in FIFO order): those whose `maxWait` still allows it
   * keep waiting, the others fail at once with `Blocked`.
   */
  block(until: number, now: number): Effect.Effect<void> {
    const sync = this.sync
    if (sync === undefined) return this.blockShared(until, now)
    sync.block(this.storeKey, this.algorithm, until, now)
    this.blocked(until)
    this.admitDue(now)
    if (this.head === undefined) return Effect.void
    for (let x = this.tail; x !== undefined; x = x.prev) {
      sync.refundLatest(this.storeKey, this.algorithm, x.cost, x.at, now)
    }
    let released = false
    for (let x: Waiter | undefined = this.head; x !== undefined;) {
      const next: Waiter | undefined = x.next
      const d = sync.consume(this.storeKey, this.algorithm, x.cost, now, x.deadline - now)
      if (d.admitted) {
        if (d.at !== x.at) {
          x.at = d.at
          this.schedule(x)
        }
      } else {
        this.unlink(x)
        x.outcome = this.reject("Blocked", d.at - now, x.cost)
        this.schedule(x)
        released = true
      }
      x = next
    }
    if (released) this.onRelease?.()
    this.admitDue(now)
    return Effect.void
  }

  /**
   * With a shared store, re-planning cannot be made atomic across processes:
   * the waiters whose slot falls before the end of the block give their
   * reservation back and fail with `Blocked`; the others keep their slot.
   * The block holds in this process even when the store cannot take it (it
   * is counted as a store error), and the `"local"` stand-in learns every
   * block, so that a `Retry-After` in force when the store fails still holds.
   */
  private blockShared(until: number, now: number): Effect.Effect<void> {
    const fallback = this.fallback!
    if (fallback.mode === "local") fallback.standIn.block(this.storeKey, this.algorithm, until, now)
    const local = Effect.suspend(() => {
      this.blocked(until)
      const refunds: Array<Effect.Effect<void>> = []
      for (let x: Waiter | undefined = this.tail; x !== undefined;) {
        const prev: Waiter | undefined = x.prev
        if (x.at < until) {
          this.unlink(x)
          x.outcome = this.reject("Blocked", until - now, x.cost)
          this.schedule(x)
          refunds.push(this.refundShared(x, now))
        }
        x = prev
      }
      if (refunds.length > 0) this.onRelease?.()
      return Effect.all(refunds, { discard: true })
    })
    if (!fallback.healthy) return local
    return Effect.flatMap(
      Effect.catch(
        this.store.block(this.storeKey, this.algorithm, until, now),
        (error) => Effect.sync(() => this.storeFailed(error, now, undefined))
      ),
      () => local
    )
  }

  // ---------------------------------------------------------------------------
  // observation
  // ---------------------------------------------------------------------------

  remainingAt(now: number): number {
    return this.sync === undefined
      ? this.lastRemaining
      : this.sync.remaining(this.storeKey, this.algorithm, now)
  }

  resetAt(now: number): number {
    const sync = this.sync
    if (sync === undefined) return this.tail === undefined ? this.lastResetAt : Math.max(this.lastResetAt, this.tail.at)
    return sync.resetAt(this.storeKey, this.algorithm, now)
  }

  /** Earliest time this state could be dropped without loss: no waiter, and (in process) the algorithm at rest. */
  reclaimableAt(now: number): number {
    const lastSlot = this.tail === undefined ? -Infinity : this.tail.at
    if (this.sync === undefined) return lastSlot
    const rest = this.sync.resetAt(this.storeKey, this.algorithm, now)
    return rest > lastSlot ? rest : lastSlot
  }
}

/** What the pull-based metrics read: one limiter's state, or a keyed limiter's totals. */
export interface MetricSource {
  readonly admitted: number
  readonly waiting: number
  readonly rejected: Readonly<Record<Reason, number>>
}

/**
 * Registers the `bulwark.ratelimiter.*` metrics as pull-based series: they are
 * computed from the limiter's own counters when an exporter reads them, so a
 * decision pays nothing for metrics.
 *
 * @internal
 */
export const registerMetrics = (
  context: Context.Context<never>,
  attributes: Readonly<Record<string, string>>,
  source: MetricSource,
  reasonsToReport: ReadonlyArray<Reason>,
  remaining: (() => number) | undefined,
  fallback?: StoreFallback<unknown> | undefined
): Array<Metric.Registration> => {
  const gauge = (id: string, description: string, get: () => number) => pullGauge(context, id, description, attributes, get)
  const counter = (id: string, description: string, attrs: Readonly<Record<string, string>>, get: () => number) =>
    pullCounter(context, id, description, attrs, get)
  const registrations = [
    counter("bulwark.ratelimiter.admitted", "Calls admitted", attributes, () => source.admitted),
    gauge("bulwark.ratelimiter.waiting", "Calls waiting for their reserved slot", () => source.waiting)
  ]
  if (remaining !== undefined) {
    registrations.push(gauge("bulwark.ratelimiter.remaining", "What a new call could take now (tokens, room in the window)", remaining))
  }
  for (const reason of reasonsToReport) {
    registrations.push(
      counter("bulwark.ratelimiter.rejected", "Calls rejected, by reason", { ...attributes, reason }, () => source.rejected[reason])
    )
  }
  if (fallback !== undefined) {
    for (const reason of storeReasons) {
      registrations.push(
        counter(
          "bulwark.ratelimiter.store_errors",
          "Operations of the shared store that failed, by reason",
          { ...attributes, reason },
          () => fallback.errors[reason]
        )
      )
    }
  }
  return registrations
}
