import { Clock, Duration, Effect, Exit, Fiber } from "effect"
import type * as Context from "effect/Context"
import type * as Metric from "effect/Metric"
import type * as Bulkhead from "../Bulkhead.ts"
import type { Acquisition, BulkheadStore, Operation } from "../BulkheadStore.ts"
import type * as DistributedBulkhead from "../DistributedBulkhead.ts"
import type { OnStoreError, Reason as StoreErrorReason, StoreError } from "../Store.ts"
import { BulkheadState, fastError } from "./bulkhead.ts"
import { EventHub } from "./events.ts"
import { pullCounter, pullGauge } from "./metrics.ts"
import * as tracing from "./tracing.ts"

type Reason = DistributedBulkhead.Reason
type Event = DistributedBulkhead.Event

/** @internal */
export const reasons: ReadonlyArray<Reason> = ["QueueFull", "QueueTimeout", "Closed", "StoreUnavailable"]

/** @internal */
export const storeReasons: ReadonlyArray<StoreErrorReason> = ["Unavailable", "Timeout", "Rejected"]

/** The first poll of a waiting call; each next one waits twice as long, up to the `pollInterval` option. */
export const firstPollMs = 10

/**
 * How long a ticket stays in the waiting room without a poll: ten polls at
 * the longest interval, and never under two seconds, so that a live waiter
 * keeps its place through a slow round trip or two, while a crashed one
 * frees the head of the queue within seconds (its slots take a lease).
 */
export const ticketMsOf = (pollMs: number): number => Math.max(2000, 10 * pollMs)

/** In `local` mode, the first wait before the store is tried again; each failed probe doubles it, up to {@link maxProbeMs}. */
export const firstProbeMs = 100

/** @internal */
export const maxProbeMs = 2000

/**
 * Decoded options, in milliseconds.
 *
 * @internal
 */
export interface Settings {
  readonly name: string
  readonly maxConcurrent: number
  readonly maxQueue: number
  /** `Infinity`: wait until admitted, closed or interrupted. */
  readonly queueTimeoutMs: number
  readonly leaseMs: number
  readonly pollMs: number
  readonly onStoreError: OnStoreError
  readonly localMaxConcurrent: number
  readonly store: BulkheadStore
}

let instances = 0

/**
 * Forwards the insurance bulkhead's events to the distributed bulkhead's
 * stream, as calls admitted (or rejected, or released) locally: one stream
 * tells what happened to every call, whichever way it went.
 */
class LocalHub extends EventHub<Bulkhead.Event> {
  private readonly target: EventHub<Event>
  constructor(target: EventHub<Event>) {
    super()
    this.target = target
  }
  override get active(): boolean {
    return this.target.active
  }
  override emit(event: Bulkhead.Event): void {
    const name = event.name
    switch (event._tag) {
      case "Admitted":
        return this.target.emit({ _tag: "Admitted", name, via: "Local", waited: event.waited })
      case "Rejected":
        return this.target.emit({ _tag: "Rejected", name, reason: event.reason as Reason, waited: event.waited })
      case "Released":
        return this.target.emit({ _tag: "Released", name, via: "Local", outcome: event.outcome })
    }
  }
}

/**
 * A distributed bulkhead's identity, its mode, its counters and the calls
 * of this process that wait in the store's waiting room. The counters are
 * plain fields: stats and metrics read them.
 *
 * @internal
 */
export class State {
  readonly id = ++instances
  readonly name: string
  readonly settings: Settings
  readonly store: BulkheadStore
  readonly ticketMs: number
  readonly hub = new EventHub<Event>()
  /** The insurance bulkhead of `onStoreError: "local"` (unused otherwise): the in-process machinery of `Bulkhead`. */
  readonly local: BulkheadState

  /** `Local` while the insurance bulkhead decides (only with `onStoreError: "local"`). */
  mode: DistributedBulkhead.Mode = "Store"
  /** Clock time from which the next call tries the store again (in `Local` mode). */
  probeAt = 0
  probeBackoffMs = firstProbeMs
  /** A call is trying the store in `Local` mode: the others stay local meanwhile. */
  probing = false
  closed = false

  /** Calls of this process holding a slot of the global cap. */
  inFlight = 0
  /** Calls running without a slot because the store failed (`fail-open`). */
  runningOpen = 0
  /** Calls of this process in the store's waiting room. */
  queued = 0
  admitted = 0
  admittedAfterWait = 0
  admittedOpen = 0
  completed = 0
  cancelled = 0
  renewals = 0
  leasesLost = 0
  localSwitches = 0
  totalWaitMs = 0
  maxWaitMs = 0
  snapshots = 0
  readonly rejected: Record<Reason, number> = { QueueFull: 0, QueueTimeout: 0, Closed: 0, StoreUnavailable: 0 }
  readonly storeErrors: Record<StoreErrorReason, number> = { Unavailable: 0, Timeout: 0, Rejected: 0 }

  /** Calls inside the guard that have not settled yet (for `drain`). */
  active = 0
  private drains: Array<() => void> | undefined = undefined
  /** This process' waiters in arrival order: a slot released here wakes the first to poll at once. */
  private head: Call | undefined = undefined
  private tail: Call | undefined = undefined

  constructor(settings: Settings) {
    this.name = settings.name
    this.settings = settings
    this.store = settings.store
    this.ticketMs = ticketMsOf(settings.pollMs)
    this.local = new BulkheadState(
      settings.name,
      settings.localMaxConcurrent,
      settings.maxQueue,
      settings.queueTimeoutMs,
      undefined,
      new LocalHub(this.hub)
    )
  }

  emit(event: Event): void {
    if (this.hub.active) this.hub.emit(event)
  }

  reject(reason: Reason, waitedMs: number, fiber: Fiber.Fiber<unknown, unknown>): Effect.Effect<never, Bulkhead.BulkheadFull> {
    this.rejected[reason]++
    this.emit({ _tag: "Rejected", name: this.name, reason, waited: Duration.millis(waitedMs) })
    this.trace(fiber, "rejected", { "bulwark.distributed_bulkhead.reason": reason })
    return Effect.fail(fastError(this.name, undefined, reason, this.settings.maxConcurrent, this.settings.maxQueue, waitedMs))
  }

  trace(fiber: Fiber.Fiber<unknown, unknown>, what: string, attributes: tracing.Attributes): void {
    if (fiber.cache.span === undefined) return
    const span = tracing.spanOf(fiber)
    if (span === undefined) return
    tracing.event(fiber, span, `bulwark.distributed_bulkhead.${what}`, { "bulwark.name": this.name, ...attributes })
  }

  /**
   * A store operation failed: counted, told, and with `onStoreError:
   * "local"` the insurance bulkhead takes over (or, for a failed probe, keeps
   * deciding for twice as long).
   */
  storeFailed(operation: Operation, error: StoreError, now: number, probe: boolean): void {
    this.storeErrors[error.reason]++
    this.emit({ _tag: "StoreFailed", name: this.name, operation, reason: error.reason, message: error.message })
    if (this.settings.onStoreError !== "local") return
    if (this.mode === "Store") {
      this.mode = "Local"
      this.localSwitches++
      this.probeBackoffMs = firstProbeMs
      this.probeAt = now + this.probeBackoffMs
      this.emit({ _tag: "ModeChanged", name: this.name, mode: "Local" })
    } else if (probe) {
      this.probeBackoffMs = Math.min(this.probeBackoffMs * 2, maxProbeMs)
      this.probeAt = now + this.probeBackoffMs
    }
  }

  /** The store answered a probe: it decides again. */
  storeAnswered(): void {
    if (this.mode === "Local") {
      this.mode = "Store"
      this.emit({ _tag: "ModeChanged", name: this.name, mode: "Store" })
    }
  }

  recordWait(waitedMs: number): void {
    this.admittedAfterWait++
    this.totalWaitMs += waitedMs
    if (waitedMs > this.maxWaitMs) this.maxWaitMs = waitedMs
  }

  link(call: Call): void {
    if (this.tail === undefined) {
      this.head = this.tail = call
    } else {
      call.prev = this.tail
      this.tail.next = call
      this.tail = call
    }
    this.queued++
  }

  unlink(call: Call): void {
    if (call.prev === undefined) this.head = call.next
    else call.prev.next = call.next
    if (call.next === undefined) this.tail = call.prev
    else call.next.prev = call.prev
    call.prev = call.next = undefined
    this.queued--
  }

  /**
   * A slot was released here: the first waiter of this process polls now
   * instead of at the end of its backoff (a waiter elsewhere still polls on
   * its own schedule). Through the scheduler, never inline from the
   * releasing fiber's finalizer, which would nest fibers on the stack.
   */
  wakeFirst(): void {
    const call = this.head
    if (call !== undefined) call.fiber.currentDispatcher.scheduleTask(() => call.wakeUp(), 0)
  }

  /** Closing: every waiter polls at once and finds the bulkhead closed. */
  wakeAll(): void {
    for (let call = this.head; call !== undefined; call = call.next) {
      const woken = call
      woken.fiber.currentDispatcher.scheduleTask(() => woken.wakeUp(), 0)
    }
  }

  settled(): void {
    this.active--
    if (this.drains !== undefined && this.active === 0) {
      const drains = this.drains
      this.drains = undefined
      for (const resume of drains) resume()
    }
  }

  /** Waits until every call inside the guard has settled, then for the insurance bulkhead's calls. */
  readonly drain: Effect.Effect<void> = Effect.andThen(
    Effect.callback<void>((resume) => {
      if (this.active === 0) return resume(Effect.void)
      const done = () => resume(Effect.void)
      ;(this.drains ??= []).push(done)
      return Effect.sync(() => {
        const index = this.drains?.indexOf(done) ?? -1
        if (index >= 0) this.drains!.splice(index, 1)
      })
    }),
    Effect.suspend(() => this.local.drain)
  )

  /** Calls running in this process, whichever way they were admitted. */
  get running(): number {
    return this.inFlight + this.runningOpen + this.local.running
  }
}

/**
 * Runs a call in the insurance bulkhead (`Local` mode). `restore` is the
 * caller's: only the wait and the call itself are interruptible.
 */
const runLocal = <A, E, R>(
  state: State,
  fiber: Fiber.Fiber<unknown, unknown>,
  self: Effect.Effect<A, E, R>,
  restore: <X, Y, Z>(effect: Effect.Effect<X, Y, Z>) => Effect.Effect<X, Y, Z>,
  timeoutMs: number
): Effect.Effect<A, E | Bulkhead.BulkheadFull, R> => {
  state.trace(fiber, "degraded", { "bulwark.distributed_bulkhead.via": "Local" })
  return state.local.admit(fiber, self, restore, 1, timeoutMs, undefined)
}

/**
 * One call through the store: its token, what it may hold there, and the
 * fibers that renew its lease and wake its polls.
 *
 * What it holds decides what its finalizer gives back: a slot or a ticket
 * is released; so is an acquire whose answer was lost to a timeout (it may
 * have taken a slot). A release that cannot reach the store leaves the slot
 * to its lease.
 *
 * @internal
 */
export class Call {
  prev: Call | undefined = undefined
  next: Call | undefined = undefined
  readonly token: string = globalThis.crypto.randomUUID()
  holds: "nothing" | "ticket" | "slot" | "unknown" = "nothing"
  /** Counted in `state.queued` and linked in the waiter list. */
  waiting = false
  running: "Store" | "FailOpen" | undefined = undefined
  leaseLost = false
  probe: boolean
  renewal: Fiber.Fiber<void> | undefined = undefined
  pollMs: number
  private woken: (() => void) | undefined = undefined
  readonly state: State
  readonly fiber: Fiber.Fiber<unknown, unknown>
  readonly clock: Clock.Clock
  readonly arrivedAt: number
  readonly timeoutMs: number

  constructor(state: State, fiber: Fiber.Fiber<unknown, unknown>, clock: Clock.Clock, arrivedAt: number, timeoutMs: number, probe: boolean) {
    this.state = state
    this.fiber = fiber
    this.clock = clock
    this.arrivedAt = arrivedAt
    this.timeoutMs = timeoutMs
    this.probe = probe
    this.pollMs = Math.min(firstPollMs, state.settings.pollMs)
    state.active++
  }

  now(): number {
    return this.clock.currentTimeMillisUnsafe()
  }

  wakeUp(): void {
    const woken = this.woken
    this.woken = undefined
    woken?.()
  }

  /** Sleeps between two polls, or less when a slot is released in this process. */
  nap(ms: number): Effect.Effect<void> {
    return Effect.timeoutOrElse(
      Effect.callback<void>((resume) => {
        this.woken = () => resume(Effect.void)
        return Effect.sync(() => {
          this.woken = undefined
        })
      }),
      {
        duration: ms,
        orElse: () =>
          Effect.sync(() => {
            this.woken = undefined
          })
      }
    )
  }

  /** Acquires (polling while queued), then runs `self` holding the slot; or applies `onStoreError`. */
  start<A, E, R>(
    self: Effect.Effect<A, E, R>,
    restore: <X, Y, Z>(effect: Effect.Effect<X, Y, Z>) => Effect.Effect<X, Y, Z>
  ): Effect.Effect<A, E | Bulkhead.BulkheadFull, R> {
    const state = this.state
    const settings = state.settings
    // Without time to wait there is no point in a ticket.
    const maxQueue = this.timeoutMs <= 0 ? 0 : settings.maxQueue
    const attempt: Effect.Effect<A, E | Bulkhead.BulkheadFull, R> = Effect.suspend(() => {
      if (state.closed) return state.reject("Closed", this.waitedMs(), this.fiber)
      return Effect.matchEffect(
        state.store.acquire({
          name: state.name,
          token: this.token,
          limit: settings.maxConcurrent,
          leaseMs: settings.leaseMs,
          maxQueue,
          ticketMs: state.ticketMs,
          now: this.now()
        }),
        {
          onFailure: (error) => this.storeFailed(error, self, restore),
          onSuccess: (answer) => this.answered(answer, self, restore, attempt)
        }
      )
    })
    return attempt
  }

  waitedMs(): number {
    return this.waiting ? Math.max(0, this.now() - this.arrivedAt) : 0
  }

  private leaveQueue(): void {
    if (!this.waiting) return
    this.waiting = false
    this.state.unlink(this)
  }

  private endProbe(answered: boolean): void {
    if (!this.probe) return
    this.probe = false
    this.state.probing = false
    if (answered) this.state.storeAnswered()
  }

  private answered<A, E, R>(
    answer: Acquisition,
    self: Effect.Effect<A, E, R>,
    restore: <X, Y, Z>(effect: Effect.Effect<X, Y, Z>) => Effect.Effect<X, Y, Z>,
    attempt: Effect.Effect<A, E | Bulkhead.BulkheadFull, R>
  ): Effect.Effect<A, E | Bulkhead.BulkheadFull, R> {
    const state = this.state
    this.endProbe(true)
    switch (answer._tag) {
      case "Acquired": {
        this.holds = "slot"
        const waitedMs = this.waitedMs()
        if (this.waiting) {
          this.leaveQueue()
          state.recordWait(waitedMs)
        }
        this.running = "Store"
        state.inFlight++
        state.admitted++
        state.emit({ _tag: "Admitted", name: state.name, via: "Store", waited: Duration.millis(waitedMs) })
        return Effect.flatMap(
          // Tied to the call: interrupted by its finalizer before the slot is released.
          Effect.forkChild(this.renewing(), { startImmediately: true }),
          (renewal) => {
            this.renewal = renewal
            return restore(self)
          }
        )
      }
      case "Queued": {
        this.holds = "ticket"
        if (!this.waiting) {
          this.waiting = true
          state.link(this)
          state.emit({ _tag: "Queued", name: state.name, position: answer.position })
          state.trace(this.fiber, "queued", { "bulwark.distributed_bulkhead.position": answer.position })
        }
        const elapsed = this.now() - this.arrivedAt
        if (elapsed >= this.timeoutMs) return state.reject("QueueTimeout", this.waitedMs(), this.fiber)
        const napMs = Math.max(1, Math.min(this.pollMs, this.timeoutMs - elapsed))
        this.pollMs = Math.min(this.pollMs * 2, state.settings.pollMs)
        // Only the nap is interruptible: the finalizer then gives the ticket back.
        return Effect.andThen(restore(this.nap(napMs)), attempt)
      }
      case "Full": {
        this.holds = "nothing"
        const waitedMs = this.waitedMs()
        this.leaveQueue()
        // A call that could have queued but may not wait at all: its wait ran out, as `Bulkhead` says.
        const reason = state.settings.maxQueue > 0 && this.timeoutMs <= 0 && answer.queued < state.settings.maxQueue
          ? "QueueTimeout"
          : "QueueFull"
        return state.reject(reason, waitedMs, this.fiber)
      }
    }
  }

  private storeFailed<A, E, R>(
    error: StoreError,
    self: Effect.Effect<A, E, R>,
    restore: <X, Y, Z>(effect: Effect.Effect<X, Y, Z>) => Effect.Effect<X, Y, Z>
  ): Effect.Effect<A, E | Bulkhead.BulkheadFull, R> {
    const state = this.state
    const probe = this.probe
    this.endProbe(false)
    state.storeFailed("acquire", error, this.now(), probe)
    // No answer in time: the acquire may still take a slot; the finalizer gives it back if it can.
    if (error.reason === "Timeout" && this.holds === "nothing") this.holds = "unknown"
    const waitedMs = this.waitedMs()
    this.leaveQueue()
    switch (state.settings.onStoreError) {
      case "fail-open": {
        this.running = "FailOpen"
        state.runningOpen++
        state.admittedOpen++
        state.emit({ _tag: "Admitted", name: state.name, via: "FailOpen", waited: Duration.millis(waitedMs) })
        state.trace(this.fiber, "degraded", { "bulwark.distributed_bulkhead.via": "FailOpen" })
        return restore(self)
      }
      case "fail-closed":
        return state.reject("StoreUnavailable", waitedMs, this.fiber)
      case "local": {
        // What is left of the call's wait carries over to the local queue.
        const leftMs = this.timeoutMs === Infinity ? Infinity : Math.max(0, this.timeoutMs - (this.now() - this.arrivedAt))
        return runLocal(state, this.fiber, self, restore, leftMs)
      }
    }
  }

  /** Renews the lease every third of it while the call runs: two more chances before it runs out. */
  private renewing(): Effect.Effect<void> {
    const state = this.state
    const { leaseMs } = state.settings
    const every = Math.max(1, Math.floor(leaseMs / 3))
    const loop: Effect.Effect<void> = Effect.sleep(every).pipe(
      Effect.andThen(Effect.suspend(() => state.store.renew(state.name, this.token, leaseMs, this.now()))),
      Effect.matchEffect({
        onFailure: (error) => {
          state.storeFailed("renew", error, this.now(), false)
          return loop
        },
        onSuccess: (renewed) => {
          if (renewed) {
            state.renewals++
            return loop
          }
          this.lostLease()
          return Effect.void
        }
      })
    )
    return loop
  }

  private lostLease(): void {
    if (this.leaseLost) return
    this.leaseLost = true
    this.state.leasesLost++
    this.state.emit({ _tag: "LeaseLost", name: this.state.name })
  }

  /**
   * The call's single finalizer, for every exit: stops the renewals, gives
   * back the slot or ticket, then counts.
   */
  settle(exit: Exit.Exit<unknown, unknown>): Effect.Effect<void> {
    const state = this.state
    this.endProbe(false)
    if (this.waiting) {
      this.leaveQueue()
      if (Exit.hasInterrupts(exit)) state.cancelled++
    }
    const stop = this.renewal === undefined ? Effect.void : Fiber.interrupt(this.renewal)
    return Effect.andThen(
      stop,
      Effect.suspend(() => {
        const held = this.holds
        this.holds = "nothing"
        if (held === "nothing") return Effect.sync(() => this.finish(exit))
        return Effect.matchEffect(state.store.release(state.name, this.token, this.now()), {
          onFailure: (error) =>
            Effect.sync(() => {
              state.storeFailed("release", error, this.now(), false)
              this.finish(exit)
            }),
          onSuccess: (released) =>
            Effect.sync(() => {
              // The slot was gone before the call ended: its lease ran out (renewals failed or came too late).
              if (!released && held === "slot") this.lostLease()
              this.finish(exit)
            })
        })
      })
    )
  }

  private finish(exit: Exit.Exit<unknown, unknown>): void {
    const state = this.state
    const running = this.running
    this.running = undefined
    if (running !== undefined) {
      if (running === "Store") state.inFlight--
      else state.runningOpen--
      state.completed++
      state.emit({ _tag: "Released", name: state.name, via: running, outcome: outcomeOf(exit) })
      if (running === "Store") state.wakeFirst()
    }
    state.settled()
  }
}

const outcomeOf = (exit: Exit.Exit<unknown, unknown>): Bulkhead.Event.Outcome => {
  if (Exit.isSuccess(exit)) return "Success"
  if (Exit.hasInterrupts(exit)) return "Interrupted"
  if (Exit.hasDies(exit)) return "Defect"
  return "Failure"
}

/**
 * One guarded call. Everything runs uninterruptibly except the waits between
 * polls and the caller's effect (through `restore`), and the call's
 * finalizer is registered before its first store operation: no
 * interruption can fall between taking a slot (or a ticket) and registering
 * what gives it back.
 *
 * @internal
 */
export const run = <A, E, R>(
  state: State,
  self: Effect.Effect<A, E, R>,
  callTimeoutMs: number
): Effect.Effect<A, E | Bulkhead.BulkheadFull, R> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.withFiber((fiber) => {
      if (state.closed) return state.reject("Closed", 0, fiber)
      const clock = fiber.getRef(Clock.Clock)
      const now = clock.currentTimeMillisUnsafe()
      const timeoutMs = state.settings.queueTimeoutMs < callTimeoutMs ? state.settings.queueTimeoutMs : callTimeoutMs
      let probe = false
      if (state.mode === "Local") {
        if (state.probing || now < state.probeAt) return runLocal(state, fiber, self, restore, timeoutMs)
        // This call tries the store; until it has an answer the others stay local.
        state.probing = true
        probe = true
      }
      const call = new Call(state, fiber, clock, now, timeoutMs, probe)
      return Effect.onExit(call.start(self, restore), (exit) => call.settle(exit))
    })
  )

/**
 * Pull-based series, computed from the counters when an exporter reads them.
 *
 * @internal
 */
export const registerMetrics = (context: Context.Context<never>, state: State): Array<Metric.Registration> => {
  const attributes = { name: state.name }
  const prefix = "bulwark.distributed_bulkhead"
  const counter = (id: string, description: string, get: () => number, attrs: Record<string, string> = attributes) =>
    pullCounter(context, `${prefix}.${id}`, description, attrs, get)
  const gauge = (id: string, description: string, get: () => number) =>
    pullGauge(context, `${prefix}.${id}`, description, attributes, get)
  const local = state.local
  const registrations = [
    gauge("in_flight", "Calls of this process holding a slot of the global cap", () => state.inFlight),
    gauge("queued", "Calls of this process waiting for a slot (in the store or, in local mode, locally)", () =>
      state.queued + local.queued),
    gauge("local", "1 while the insurance bulkhead decides because the store failed, else 0", () =>
      state.mode === "Local" ? 1 : 0),
    counter("admitted", "Calls admitted with a slot of the global cap", () => state.admitted),
    counter("degraded", "Calls admitted without the store, by policy", () => local.admitted, { ...attributes, reason: "Local" }),
    counter("degraded", "Calls admitted without the store, by policy", () => state.admittedOpen, {
      ...attributes,
      reason: "FailOpen"
    }),
    counter("completed", "Admitted calls that finished", () => state.completed + local.completed),
    counter("leases_lost", "Slots that ran out before their call ended", () => state.leasesLost)
  ]
  for (const reason of reasons) {
    registrations.push(
      counter("rejected", "Calls rejected, by reason", () => rejectedOf(state, reason), { ...attributes, reason })
    )
  }
  for (const reason of storeReasons) {
    registrations.push(
      counter("store_errors", "Store operations that failed, by reason", () => state.storeErrors[reason], {
        ...attributes,
        reason
      })
    )
  }
  return registrations
}

/** Rejections by this instance and by its insurance bulkhead. @internal */
export const rejectedOf = (state: State, reason: Reason): number =>
  state.rejected[reason] + (reason === "StoreUnavailable" ? 0 : state.local.rejected[reason])
