import { Cause, Clock, Duration, Effect, Metric, Random, Schedule } from "effect"
import * as Context from "effect/Context"
import * as Fiber from "effect/Fiber"
import { EventHub } from "./events.ts"
import { pullCounter, pullGauge } from "./metrics.ts"
import * as tracing from "./tracing.ts"
import type * as Retry from "../Retry.ts"

// -----------------------------------------------------------------------------
// configuration
// -----------------------------------------------------------------------------

/** A decoded, validated policy: everything in milliseconds, defaults applied. */
export interface Config {
  readonly name: string
  readonly maxAttempts: number
  readonly baseMs: number
  readonly maxMs: number
  readonly jitter: Retry.Jitter
  /** `Infinity` when the policy has no `maxElapsed`. */
  readonly maxElapsedMs: number
  readonly retryable: ((error: unknown) => boolean) | undefined
  readonly budget: BudgetState | undefined
}

export const defaults = {
  maxAttempts: 3,
  base: Duration.millis(100),
  max: Duration.seconds(10),
  jitter: "full"
} as const

export { decodeSync, unnamed } from "./options.ts"

// -----------------------------------------------------------------------------
// backoff
// -----------------------------------------------------------------------------

/**
 * The backoff before retry number `retry` (1 for the first retry), following
 * "Exponential Backoff And Jitter" (AWS Architecture Blog, 2015):
 *
 * - `none`:  cap = min(max, base * 2^(retry - 1))
 * - `full`:  random in [0, cap)
 * - `equal`: cap / 2 + random in [0, cap / 2)
 * - `decorrelated`: min(max, random in [base, previous * 3)), previous
 *   starting at `base`
 *
 * `draw` returns a number in [0, 1).
 */
export const backoffMs = (config: Config, retry: number, previousMs: number, draw: () => number): number => {
  switch (config.jitter) {
    case "none":
      return cap(config, retry)
    case "full":
      return cap(config, retry) * draw()
    case "equal": {
      const half = cap(config, retry) / 2
      return half + half * draw()
    }
    case "decorrelated": {
      const upper = previousMs * 3
      return Math.min(config.maxMs, config.baseMs + (upper - config.baseMs) * draw())
    }
  }
}

const cap = (config: Config, retry: number): number => Math.min(config.maxMs, config.baseMs * Math.pow(2, retry - 1))

/** The `retryAfter` of an error that carries one as a `Duration`, in milliseconds; 0 otherwise. */
export const retryAfterMs = (error: unknown): number => {
  if (typeof error !== "object" || error === null || !("retryAfter" in error)) return 0
  const hint = (error as { readonly retryAfter: unknown }).retryAfter
  if (!Duration.isDuration(hint)) return 0
  const ms = Duration.toMillis(hint)
  return ms > 0 ? ms : 0
}

// -----------------------------------------------------------------------------
// one call
// -----------------------------------------------------------------------------

/** Why a call stopped retrying (a failure was returned). */
export type StopReason = Retry.StopReason

/**
 * The time (epoch ms) after which a retry inside it would only be cut off: a
 * `Policy` with an overall `timeout` sets it for the call, so the retry stops
 * at once with the real error instead of sleeping into the timeout. Counted
 * from when the policy's timeout stage starts, so time spent queueing between
 * it and the retry counts.
 *
 * @internal
 */
export const Deadline: Context.Reference<number> = Context.Reference<number>("@bulwark/core/Retry/Deadline", {
  defaultValue: () => Infinity
})

/**
 * The retry state of one guarded call (or one `Effect.retry` run of a
 * schedule): how many attempts ran, when the first started, the previous
 * backoff (for decorrelated jitter).
 */
export class Attempts {
  attempt = 1
  previousMs: number
  readonly startedAt: number
  readonly config: Config
  /** The decision of the last failure: a delay in ms, or why the call stops. */
  delayMs = 0
  /** Epoch ms after which no retry may start: an enclosing deadline (see {@link Deadline}). */
  readonly deadline: number
  constructor(config: Config, startedAt: number, deadline: number) {
    this.config = config
    this.startedAt = startedAt
    this.deadline = deadline
    this.previousMs = config.baseMs
  }

  /**
   * Decides what follows the failure of the current attempt: returns
   * `undefined` and sets `delayMs` to retry, or returns why it stops. Draws
   * at most one random number, and withdraws from the budget only when it
   * retries.
   */
  decide(error: unknown, now: number, random: Random.Random): StopReason | undefined {
    const config = this.config
    if (config.retryable !== undefined && !config.retryable(error)) return "NotRetryable"
    if (this.attempt >= config.maxAttempts) return "MaxAttempts"
    const backoff = backoffMs(config, this.attempt, this.previousMs, () => random.nextDoubleUnsafe())
    const hint = retryAfterMs(error)
    const delay = hint > backoff ? hint : backoff
    // An infinite hint (an isolated circuit) would sleep forever even without a maxElapsed.
    // At the deadline itself the timeout fires first (its timer was set first): not worth sleeping for.
    if (delay === Infinity || now - this.startedAt + delay > config.maxElapsedMs || now + delay >= this.deadline) {
      return "MaxElapsed"
    }
    if (config.budget !== undefined && !config.budget.tryWithdraw(now)) return "BudgetRefused"
    this.previousMs = backoff
    this.delayMs = delay
    return undefined
  }
}

/** The first typed error of a cause made of typed failures only; `noError` otherwise. */
const noError: unique symbol = Symbol.for("@bulwark/core/Retry/noError")

const typedErrorOf = <E>(cause: Cause.Cause<E>): E | typeof noError => {
  let found: E | typeof noError = noError
  for (const reason of cause.reasons) {
    // A defect or an interruption anywhere in the cause is never retried.
    if (!Cause.isFailReason(reason)) return noError
    if (found === noError) found = reason.error
  }
  return found
}

// -----------------------------------------------------------------------------
// instance state, stats, events
// -----------------------------------------------------------------------------

/** Counters and listeners of a `Retry` instance. Plain increments on the hot path. */
export class RetryState {
  readonly name: string
  calls = 0
  attempts = 0
  retries = 0
  succeeded = 0
  succeededAfterRetry = 0
  exhaustedMaxAttempts = 0
  exhaustedMaxElapsed = 0
  budgetRefused = 0
  notRetryable = 0
  totalDelayMs = 0
  readonly hub = new EventHub<Retry.Event>()

  constructor(name: string) {
    this.name = name
  }

  stopped(reason: StopReason, attempts: number): void {
    switch (reason) {
      case "NotRetryable":
        this.notRetryable++
        return
      case "MaxAttempts":
        this.exhaustedMaxAttempts++
        break
      case "MaxElapsed":
        this.exhaustedMaxElapsed++
        break
      case "BudgetRefused":
        this.budgetRefused++
        if (this.hub.active) this.hub.emit({ _tag: "BudgetRefused", name: this.name, attempts })
        return
    }
    if (this.hub.active) this.hub.emit({ _tag: "Exhausted", name: this.name, attempts, reason })
  }

  scheduled(attempt: number, delayMs: number): void {
    this.totalDelayMs += delayMs
    if (this.hub.active) {
      this.hub.emit({ _tag: "Retrying", name: this.name, attempt, delay: Duration.millis(delayMs) })
    }
  }
}

/**
 * Registers the `bulwark.retry.*` series, computed from the instance's
 * counters when an exporter reads them: the hot path pays nothing for metrics.
 */
export const registerMetrics = (context: Context.Context<never>, state: RetryState): Array<Metric.Registration> => {
  const name = state.name
  const attributes = { name }
  return [
    pullCounter(context, "bulwark.retry.calls", "Guarded calls (first attempts)", attributes, () => state.calls),
    pullCounter(context, "bulwark.retry.attempts", "Attempts, first ones and retries", attributes, () => state.attempts),
    pullCounter(context, "bulwark.retry.retries", "Retries started", attributes, () => state.retries),
    pullCounter(context, "bulwark.retry.succeeded", "Calls that succeeded", attributes, () => state.succeeded),
    pullCounter(
      context,
      "bulwark.retry.succeeded_after_retry",
      "Calls that succeeded after at least one retry",
      attributes,
      () => state.succeededAfterRetry
    ),
    pullCounter(
      context,
      "bulwark.retry.exhausted",
      "Calls that failed because the policy allowed no more retries, by reason",
      { name, reason: "MaxAttempts" },
      () => state.exhaustedMaxAttempts
    ),
    pullCounter(
      context,
      "bulwark.retry.exhausted",
      "Calls that failed because the policy allowed no more retries, by reason",
      { name, reason: "MaxElapsed" },
      () => state.exhaustedMaxElapsed
    ),
    pullCounter(
      context,
      "bulwark.retry.budget_refused",
      "Retries refused because the retry budget was spent",
      attributes,
      () => state.budgetRefused
    ),
    pullCounter(
      context,
      "bulwark.retry.not_retryable",
      "Typed failures the policy's `while` declined to retry",
      attributes,
      () => state.notRetryable
    )
  ]
}

// -----------------------------------------------------------------------------
// tracing
// -----------------------------------------------------------------------------

/**
 * A failed attempt, on the retrying fiber's current span (if traced): a
 * `retrying` event with the attempt that failed and the delay before the
 * next, or a `stopped` event saying why there is no next. Only failures get
 * here, so a call that succeeds at once pays nothing.
 */
const traceFailure = (
  fiber: Fiber.Fiber<unknown, unknown>,
  config: Config,
  attempts: Attempts,
  stop: StopReason | undefined
): void => {
  const span = tracing.spanOf(fiber)
  if (span === undefined) return
  if (stop === undefined) {
    tracing.event(fiber, span, "bulwark.retry.retrying", {
      "bulwark.name": config.name,
      "bulwark.retry.attempt": attempts.attempt,
      "bulwark.retry.delay_ms": attempts.delayMs
    })
  } else {
    tracing.event(fiber, span, "bulwark.retry.stopped", {
      "bulwark.name": config.name,
      "bulwark.retry.reason": stop,
      "bulwark.retry.attempts": attempts.attempt
    })
  }
}

// -----------------------------------------------------------------------------
// the guard and the schedule
// -----------------------------------------------------------------------------

/**
 * Runs `self`, retrying typed failures as `config` allows. The failure
 * returned when it stops is the last attempt's cause, untouched.
 *
 * @internal
 */
export const retryLoop = <A, E, R>(
  self: Effect.Effect<A, E, R>,
  config: Config,
  state: RetryState | undefined
): Effect.Effect<A, E, R> =>
  Effect.withFiber((fiber) => {
    const clock = fiber.getRef(Clock.Clock)
    const startedAt = clock.currentTimeMillisUnsafe()
    if (config.budget !== undefined) config.budget.deposit(startedAt)
    if (state !== undefined) {
      state.calls++
      state.attempts++
    }
    const attempts = new Attempts(config, startedAt, fiber.getRef(Deadline))
    const nextAttempt = Effect.suspend(() => {
      attempts.attempt++
      if (state !== undefined) {
        state.attempts++
        state.retries++
      }
      return loop
    })
    const afterDelay = (delayMs: number) => delayMs > 0 ? Effect.andThen(Effect.sleep(delayMs), nextAttempt) : Effect.andThen(Effect.yieldNow, nextAttempt)
    const loop: Effect.Effect<A, E, R> = Effect.matchCauseEffect(self, {
      onSuccess: (value) => {
        if (state !== undefined) {
          state.succeeded++
          if (attempts.attempt > 1) state.succeededAfterRetry++
        }
        return Effect.succeed(value)
      },
      onFailure: (cause) => {
        const error = typedErrorOf(cause)
        if (error === noError) return Effect.failCause(cause)
        const stop = attempts.decide(error, clock.currentTimeMillisUnsafe(), fiber.getRef(Random.Random))
        traceFailure(fiber, config, attempts, stop)
        if (stop !== undefined) {
          if (state !== undefined) state.stopped(stop, attempts.attempt)
          return Effect.failCause(cause)
        }
        if (state !== undefined) state.scheduled(attempts.attempt, attempts.delayMs)
        return afterDelay(attempts.delayMs)
      }
    })
    return loop
  })

/**
 * The policy as a `Schedule` for `Effect.retry`: its input is the error, its
 * output the number of the retry. The schedule's state is created per
 * `Effect.retry` run, when the run starts (so the budget deposit and
 * `maxElapsed` count from the first attempt).
 *
 * @internal
 */
export const toSchedule = (
  config: Config,
  state: RetryState | undefined
): Schedule.Schedule<number, unknown> =>
  Schedule.fromStep(Effect.withFiber((fiber) => {
    const startedAt = fiber.getRef(Clock.Clock).currentTimeMillisUnsafe()
    if (config.budget !== undefined) config.budget.deposit(startedAt)
    if (state !== undefined) {
      state.calls++
      state.attempts++
    }
    const attempts = new Attempts(config, startedAt, fiber.getRef(Deadline))
    const random = fiber.getRef(Random.Random)
    return Effect.succeed((now: number, error: unknown) => {
      const stop = attempts.decide(error, now, random)
      // A step runs in the retrying fiber, whose span is the one to annotate.
      const current = Fiber.getCurrent()
      if (current !== undefined) traceFailure(current, config, attempts, stop)
      if (stop !== undefined) {
        if (state !== undefined) state.stopped(stop, attempts.attempt)
        return Cause.done(attempts.attempt - 1)
      }
      if (state !== undefined) {
        state.scheduled(attempts.attempt, attempts.delayMs)
        // A schedule cannot see when the retry starts: it is counted now.
        state.attempts++
        state.retries++
      }
      const retry = attempts.attempt++
      return Effect.succeed([retry, Duration.millis(attempts.delayMs)] as [number, Duration.Duration])
    })
  }))

// -----------------------------------------------------------------------------
// budget
// -----------------------------------------------------------------------------

/** Budget arithmetic is in integer units so that 5 deposits of 0.2 make exactly one retry. */
const unitsPerRetry = 1_000_000
const slices = 10

/**
 * A retry budget after Finagle's `RetryBudget`: a token balance over a
 * sliding window of `ttl`. Every call deposits `ratio` tokens, every retry
 * withdraws one; both expire `ttl` later. A reserve of `minPerSecond * ttl`
 * tokens is always there on top, so a service with little traffic can still
 * retry. Over any window of `ttl`, retries <= ratio * calls + minPerSecond * ttl
 * (within one slice, `ttl / 10`, of precision).
 */
export class BudgetState {
  readonly name: string
  readonly ratio: number
  readonly minPerSecond: number
  readonly ttlMs: number
  private readonly depositUnits: number
  private readonly reserveUnits: number
  private readonly sliceMs: number
  /** Net units deposited in each slice of the window, and which slice (absolute number) each position holds. */
  private readonly sliceUnits = new Float64Array(slices)
  private readonly sliceIds = new Float64Array(slices).fill(-Infinity)
  private windowUnits = 0
  private currentSlice = -Infinity

  deposits = 0
  withdrawals = 0
  refused = 0
  readonly clock: Clock.Clock

  constructor(name: string, ratio: number, minPerSecond: number, ttlMs: number, clock: Clock.Clock) {
    this.name = name
    this.ratio = ratio
    this.minPerSecond = minPerSecond
    this.ttlMs = ttlMs
    this.clock = clock
    this.depositUnits = Math.round(ratio * unitsPerRetry)
    this.reserveUnits = Math.round(minPerSecond * (ttlMs / 1000) * unitsPerRetry)
    this.sliceMs = ttlMs / slices
  }

  /** Moves the window to `now`: O(slices) when the slice changes, O(1) otherwise. */
  private slotAt(now: number): number {
    const slice = Math.floor(now / this.sliceMs)
    if (slice !== this.currentSlice) {
      this.currentSlice = slice
      for (let i = 0; i < slices; i++) {
        if (this.sliceIds[i] <= slice - slices) {
          this.windowUnits -= this.sliceUnits[i]
          this.sliceUnits[i] = 0
          this.sliceIds[i] = -Infinity
        }
      }
    }
    const position = ((slice % slices) + slices) % slices
    if (this.sliceIds[position] !== slice) {
      this.windowUnits -= this.sliceUnits[position]
      this.sliceUnits[position] = 0
      this.sliceIds[position] = slice
    }
    return position
  }

  deposit(now: number): void {
    this.deposits++
    if (this.depositUnits === 0) return
    const position = this.slotAt(now)
    this.sliceUnits[position] += this.depositUnits
    this.windowUnits += this.depositUnits
  }

  tryWithdraw(now: number): boolean {
    const position = this.slotAt(now)
    if (this.reserveUnits + this.windowUnits < unitsPerRetry) {
      this.refused++
      return false
    }
    this.withdrawals++
    this.sliceUnits[position] -= unitsPerRetry
    this.windowUnits -= unitsPerRetry
    return true
  }

  /** Retries the budget would allow now (may be fractional). */
  balance(now: number): number {
    this.slotAt(now)
    return Math.max(0, this.reserveUnits + this.windowUnits) / unitsPerRetry
  }
}

/**
 * Registers the `bulwark.retry_budget.*` series of a budget.
 */
export const registerBudgetMetrics = (context: Context.Context<never>, budget: BudgetState): Array<Metric.Registration> => {
  const attributes = { name: budget.name }
  return [
    pullGauge(
      context,
      "bulwark.retry_budget.balance",
      "Retries the budget allows now",
      attributes,
      () => budget.balance(budget.clock.currentTimeMillisUnsafe())
    ),
    pullCounter(context, "bulwark.retry_budget.deposits", "Calls that deposited into the budget", attributes, () => budget.deposits),
    pullCounter(context, "bulwark.retry_budget.withdrawals", "Retries the budget allowed", attributes, () => budget.withdrawals),
    pullCounter(context, "bulwark.retry_budget.refused", "Retries the budget refused", attributes, () => budget.refused)
  ]
}
