/**
 * Interruption of a guarded call (issue 4) at every place a call can wait or run inside a
 * policy: queued in the bulkhead, running an attempt, sleeping in the retry's backoff,
 * waiting for a rate limiter's slot, with hedged attempts in flight, while the fallback
 * runs, as the breaker's half-open probe, and in the same TestClock instant as the
 * overall timeout fires.
 *
 * Each time, every permit, slot, probe and reservation must be back (the bulkhead's,
 * breaker's and rate limiter's own stats and state say so, and a later call gets in at
 * once), nothing runs on after the interruption (no further attempt, no hedged attempt
 * left behind), and Policy.stats counts the call once, as interrupted.
 */
import { assert, describe, it } from "@effect/vitest"
import { Bulkhead, CircuitBreaker, Policy, RateLimiter, Retry } from "@bulwark/core"
import { Cause, Clock, Data, Deferred, Effect, Exit, Fiber, Latch, Ref, Stream } from "effect"
import { TestClock } from "effect/testing"

class HttpError extends Data.TaggedError("HttpError")<{ readonly status: number }> {}

const settle = Effect.gen(function*() {
  for (let i = 0; i < 20; i++) yield* Effect.yieldNow
})

const noJitter = (options: Retry.Options<unknown>) => Retry.policy({ jitter: "none", ...options })

const isInterruptedOnly = (exit: Exit.Exit<unknown, unknown>): boolean =>
  Exit.isFailure(exit) && exit.cause.reasons.length > 0 && exit.cause.reasons.every(Cause.isInterruptReason)

const zeroFailed = { BulkheadFull: 0, CircuitOpen: 0, RateLimited: 0, TimeoutExceeded: 0, Error: 0, Defect: 0 }
/** A fallback replaces typed failures only: no Defect. */
const zeroFallbacks = { BulkheadFull: 0, CircuitOpen: 0, RateLimited: 0, TimeoutExceeded: 0, Error: 0 }

/** Policy.stats as plain data, without the name. */
const counts = (policy: Policy.Policy<any, any, any>) =>
  Effect.map(Policy.stats(policy), ({ calls, failed, fallbacks, interrupted, succeeded }) => {
    const replaced: Record<string, number> = fallbacks
    return {
      calls,
      succeeded,
      interrupted,
      failed: { ...failed },
      fallbacks: {
        BulkheadFull: replaced.BulkheadFull,
        CircuitOpen: replaced.CircuitOpen,
        RateLimited: replaced.RateLimited,
        TimeoutExceeded: replaced.TimeoutExceeded,
        Error: replaced.Error,
        // Never a defect, whether or not the snapshot has the key.
        ...(replaced.Defect ? { Defect: replaced.Defect } : {})
      }
    }
  })

/** A body that never ends, counting its starts and its interruptions. */
const hanging = (started: Ref.Ref<number>, interrupted: Ref.Ref<number>) =>
  Ref.update(started, (n) => n + 1).pipe(
    Effect.andThen(Effect.never),
    Effect.onInterrupt(() => Ref.update(interrupted, (n) => n + 1))
  )

describe("Policy rule: an interrupted call gives back everything it held and counts as interrupted", () => {
  it.effect("(a) queued in the bulkhead: its place is given back, the running call keeps its slot, the next gets in at once", () =>
    Effect.gen(function*() {
      const bulkhead = yield* Bulkhead.make({ name: "b", maxConcurrent: 1, maxQueue: 2 })
      const policy = yield* Policy.make({
        name: "p",
        timeout: "10 seconds",
        bulkhead,
        retry: noJitter({ maxAttempts: 2, base: "10 millis" })
      })
      const events: Array<Policy.Event> = []
      yield* Effect.forkChild(Stream.runForEach(Policy.events(policy), (e) => Effect.sync(() => void events.push(e))))
      const gate = yield* Latch.make()
      const holder = yield* gate.await.pipe(Effect.as("held"), Policy.guard(policy), Effect.forkChild)
      const bodyRan = yield* Ref.make(false)
      const queued = yield* Ref.set(bodyRan, true).pipe(Effect.as("queued"), Policy.guard(policy), Effect.forkChild)
      yield* settle
      let b = yield* Bulkhead.stats(bulkhead)
      assert.deepStrictEqual([b.inFlight, b.queued], [1, 1])

      yield* Fiber.interrupt(queued)
      assert.isTrue(isInterruptedOnly(yield* Fiber.await(queued)))
      b = yield* Bulkhead.stats(bulkhead)
      assert.deepStrictEqual([b.inFlight, b.queued, b.cancelled, b.admitted], [1, 0, 1, 1])

      yield* gate.open
      assert.strictEqual(yield* Fiber.join(holder), "held")
      assert.isFalse(yield* Ref.get(bodyRan), "the interrupted call's body ran")
      b = yield* Bulkhead.stats(bulkhead)
      assert.deepStrictEqual([b.inFlight, b.running, b.admitted, b.completed], [0, 0, 1, 1])
      assert.strictEqual(yield* Effect.succeed("next").pipe(Policy.guard(policy)), "next")
      b = yield* Bulkhead.stats(bulkhead)
      assert.deepStrictEqual([b.admitted, b.admittedAfterWait, b.inFlight], [2, 0, 0])
      yield* settle
      assert.deepStrictEqual(yield* counts(policy), {
        calls: 3,
        succeeded: 2,
        interrupted: 1,
        failed: zeroFailed,
        fallbacks: zeroFallbacks
      })
      assert.deepStrictEqual(events, [], "an interruption is not a failure event")
    }).pipe(Effect.scoped))

  it.effect("(b) running an attempt: slot, rate limiter permit and breaker record settle; the breaker ignores it; no retry", () =>
    Effect.gen(function*() {
      const bulkhead = yield* Bulkhead.make({ name: "b", maxConcurrent: 1 })
      const limiter = yield* RateLimiter.make({ name: "l", algorithm: RateLimiter.gcra({ rate: 10, per: "1 second", burst: 10 }) })
      const breaker = yield* CircuitBreaker.make({ name: "c", trip: CircuitBreaker.consecutive(1), openFor: "1 minute" })
      const policy = yield* Policy.make({
        name: "p",
        timeout: "10 seconds",
        bulkhead,
        retry: noJitter({ maxAttempts: 3, base: "10 millis" }),
        rateLimiter: limiter,
        circuitBreaker: breaker,
        attemptTimeout: "5 seconds"
      })
      const started = yield* Ref.make(0)
      const interrupted = yield* Ref.make(0)
      const fiber = yield* hanging(started, interrupted).pipe(Policy.guard(policy), Effect.forkChild)
      yield* TestClock.adjust("1 second")
      assert.strictEqual((yield* Bulkhead.stats(bulkhead)).inFlight, 1)

      yield* Fiber.interrupt(fiber)
      assert.isTrue(isInterruptedOnly(yield* Fiber.await(fiber)))
      assert.strictEqual(yield* Ref.get(interrupted), 1)
      const b = yield* Bulkhead.stats(bulkhead)
      assert.deepStrictEqual([b.inFlight, b.running, b.admitted, b.completed], [0, 0, 1, 1])
      const c = yield* CircuitBreaker.stats(breaker)
      assert.deepStrictEqual([c.state, c.successes, c.failures, c.ignored], ["Closed", 0, 0, 1])
      const l = yield* RateLimiter.stats(limiter)
      assert.deepStrictEqual([l.admitted, l.waiting, l.rejectedTotal], [1, 0, 0])
      // Far past every timer: no retry, no second attempt.
      yield* TestClock.adjust("1 minute")
      assert.strictEqual(yield* Ref.get(started), 1)
      const r = yield* Retry.stats(policy.components.retry!)
      assert.deepStrictEqual([r.calls, r.retries], [1, 0])
      assert.strictEqual(yield* Effect.succeed("next").pipe(Policy.guard(policy)), "next")
      assert.deepStrictEqual(yield* counts(policy), {
        calls: 2,
        succeeded: 1,
        interrupted: 1,
        failed: zeroFailed,
        fallbacks: zeroFallbacks
      })
    }).pipe(Effect.scoped))

  it.effect("(c) sleeping in the retry backoff: no further attempt starts and the slot held across retries comes back", () =>
    Effect.gen(function*() {
      const bulkhead = yield* Bulkhead.make({ name: "b", maxConcurrent: 1 })
      const policy = yield* Policy.make({ name: "p", bulkhead, retry: noJitter({ maxAttempts: 3, base: "1 second" }) })
      const attempts = yield* Ref.make(0)
      const fiber = yield* Ref.update(attempts, (n) => n + 1).pipe(
        Effect.andThen(Effect.fail(new HttpError({ status: 503 }))),
        Policy.guard(policy),
        Effect.forkChild
      )
      yield* TestClock.adjust("500 millis")
      assert.strictEqual(yield* Ref.get(attempts), 1)
      // In the backoff, the call still holds its slot.
      assert.strictEqual((yield* Bulkhead.stats(bulkhead)).inFlight, 1)

      yield* Fiber.interrupt(fiber)
      assert.isTrue(isInterruptedOnly(yield* Fiber.await(fiber)))
      const b = yield* Bulkhead.stats(bulkhead)
      assert.deepStrictEqual([b.inFlight, b.running, b.completed], [0, 0, 1])
      yield* TestClock.adjust("1 minute")
      assert.strictEqual(yield* Ref.get(attempts), 1, "an attempt started after the interruption")
      const r = yield* Retry.stats(policy.components.retry!)
      assert.deepStrictEqual([r.calls, r.retries, r.exhausted.MaxAttempts], [1, 0, 0])
      assert.strictEqual(yield* Effect.succeed("next").pipe(Policy.guard(policy)), "next")
      assert.strictEqual((yield* Bulkhead.stats(bulkhead)).admittedAfterWait, 0)
      assert.deepStrictEqual(yield* counts(policy), {
        calls: 2,
        succeeded: 1,
        interrupted: 1,
        failed: zeroFailed,
        fallbacks: zeroFallbacks
      })
    }).pipe(Effect.scoped))

  it.effect("(d) waiting for a rate limiter slot (onExceeded \"wait\"): the reservation goes back, the next caller gets that slot", () =>
    Effect.gen(function*() {
      const bulkhead = yield* Bulkhead.make({ name: "b", maxConcurrent: 2 })
      const limiter = yield* RateLimiter.make({
        name: "l",
        algorithm: RateLimiter.gcra({ rate: 1, per: "1 second" }),
        onExceeded: "wait"
      })
      const policy = yield* Policy.make({
        name: "p",
        bulkhead,
        retry: noJitter({ maxAttempts: 2, base: "10 millis" }),
        rateLimiter: limiter
      })
      const t0 = yield* Clock.currentTimeMillis
      assert.strictEqual(yield* Effect.succeed("first").pipe(Policy.guard(policy)), "first")
      const bodyRan = yield* Ref.make(false)
      const waiting = yield* Ref.set(bodyRan, true).pipe(Policy.guard(policy), Effect.forkChild)
      yield* TestClock.adjust("100 millis")
      let l = yield* RateLimiter.stats(limiter)
      assert.strictEqual(l.waiting, 1)
      // The waiting call holds a bulkhead slot while it waits.
      assert.strictEqual((yield* Bulkhead.stats(bulkhead)).inFlight, 1)

      yield* Fiber.interrupt(waiting)
      assert.isTrue(isInterruptedOnly(yield* Fiber.await(waiting)))
      l = yield* RateLimiter.stats(limiter)
      assert.deepStrictEqual([l.waiting, l.cancelled, l.admitted], [0, 1, 1])
      assert.strictEqual((yield* Bulkhead.stats(bulkhead)).inFlight, 0)

      // The slot at 1 s is free again: a new caller gets it, not the one after (2 s).
      const next = yield* Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.succeed(now - t0)).pipe(
        Policy.guard(policy),
        Effect.forkChild
      )
      yield* TestClock.adjust("899 millis")
      assert.isUndefined(next.pollUnsafe(), "admitted before the reserved slot")
      yield* TestClock.adjust("1 millis")
      assert.strictEqual(yield* Fiber.join(next), 1000)
      assert.isFalse(yield* Ref.get(bodyRan))
      l = yield* RateLimiter.stats(limiter)
      assert.deepStrictEqual([l.waiting, l.admitted, l.admittedAfterWait], [0, 2, 1])
      assert.deepStrictEqual(yield* counts(policy), {
        calls: 3,
        succeeded: 2,
        interrupted: 1,
        failed: zeroFailed,
        fallbacks: zeroFallbacks
      })
    }).pipe(Effect.scoped))

  it.effect("(e) with hedged attempts in flight: each attempt is interrupted before the call returns, each slot, permit, record is back", () =>
    Effect.gen(function*() {
      const bulkhead = yield* Bulkhead.make({ name: "b", maxConcurrent: 3 })
      const limiter = yield* RateLimiter.make({ name: "l", algorithm: RateLimiter.gcra({ rate: 100, per: "1 second", burst: 10 }) })
      const breaker = yield* CircuitBreaker.make({ name: "c", trip: CircuitBreaker.consecutive(1), openFor: "1 minute" })
      const policy = yield* Policy.make({
        name: "p",
        timeout: "10 seconds",
        hedge: { after: "50 millis", maxAttempts: 3 },
        bulkhead,
        rateLimiter: limiter,
        circuitBreaker: breaker
      })
      const started = yield* Ref.make(0)
      const interrupted = yield* Ref.make(0)
      const fiber = yield* hanging(started, interrupted).pipe(Policy.guard(policy), Effect.forkChild)
      yield* TestClock.adjust("100 millis")
      assert.strictEqual(yield* Ref.get(started), 3)
      assert.strictEqual((yield* Bulkhead.stats(bulkhead)).inFlight, 3)

      yield* Fiber.interrupt(fiber)
      // Fiber.interrupt returns once the call has ended: by then every hedged attempt has ended too.
      assert.strictEqual(yield* Ref.get(interrupted), 3)
      const b = yield* Bulkhead.stats(bulkhead)
      assert.deepStrictEqual([b.inFlight, b.running, b.admitted, b.completed], [0, 0, 3, 3])
      assert.isTrue(isInterruptedOnly(yield* Fiber.await(fiber)))
      const c = yield* CircuitBreaker.stats(breaker)
      assert.deepStrictEqual([c.state, c.failures, c.ignored], ["Closed", 0, 3])
      assert.strictEqual((yield* RateLimiter.stats(limiter)).admitted, 3)
      yield* TestClock.adjust("1 minute")
      assert.strictEqual(yield* Ref.get(started), 3, "a hedged attempt started after the interruption")
      assert.deepStrictEqual(yield* counts(policy), {
        calls: 1,
        succeeded: 0,
        interrupted: 1,
        failed: zeroFailed,
        fallbacks: zeroFallbacks
      })
    }).pipe(Effect.scoped))

  it.effect("(f) while the fallback runs: the stages have let go, the fallback is interrupted, the call counts once as interrupted", () =>
    Effect.gen(function*() {
      const bulkhead = yield* Bulkhead.make({ name: "b", maxConcurrent: 1 })
      const fallbackStarted = yield* Deferred.make<void>()
      const fallbackInterrupted = yield* Ref.make(false)
      const policy = yield* Policy.make({
        name: "p",
        timeout: "1 second",
        bulkhead,
        fallback: () =>
          Deferred.succeed(fallbackStarted, undefined).pipe(
            Effect.andThen(Effect.never),
            Effect.onInterrupt(() => Ref.set(fallbackInterrupted, true))
          )
      })
      const fiber = yield* Effect.fail(new HttpError({ status: 500 })).pipe(Policy.guard(policy), Effect.forkChild)
      yield* Deferred.await(fallbackStarted)
      // The fallback is outermost: the bulkhead slot is free while it runs, and the timeout does not bound it.
      assert.strictEqual((yield* Bulkhead.stats(bulkhead)).inFlight, 0)
      yield* TestClock.adjust("5 seconds")
      assert.isUndefined(fiber.pollUnsafe())

      yield* Fiber.interrupt(fiber)
      assert.isTrue(isInterruptedOnly(yield* Fiber.await(fiber)))
      assert.isTrue(yield* Ref.get(fallbackInterrupted))
      assert.deepStrictEqual(yield* counts(policy), {
        calls: 1,
        succeeded: 0,
        interrupted: 1,
        failed: zeroFailed,
        fallbacks: { ...zeroFallbacks, Error: 1 }
      })
      const b = yield* Bulkhead.stats(bulkhead)
      assert.deepStrictEqual([b.inFlight, b.admitted, b.completed], [0, 1, 1])
    }).pipe(Effect.scoped))

  it.effect("(g) as the half-open probe: the probe is released, the circuit stays half-open and the next call probes and closes it", () =>
    Effect.gen(function*() {
      const bulkhead = yield* Bulkhead.make({ name: "b", maxConcurrent: 2 })
      const breaker = yield* CircuitBreaker.make({
        name: "c",
        trip: CircuitBreaker.consecutive(1),
        openFor: "1 second",
        halfOpen: { probes: 1 }
      })
      const policy = yield* Policy.make({ name: "p", bulkhead, circuitBreaker: breaker, attemptTimeout: "10 seconds" })
      const failed = yield* Effect.exit(Effect.fail(new HttpError({ status: 503 })).pipe(Policy.guard(policy)))
      assert.isTrue(Exit.isFailure(failed))
      assert.strictEqual((yield* CircuitBreaker.state(breaker)).state, "Open")
      yield* TestClock.adjust("1 second")

      const started = yield* Ref.make(0)
      const interrupted = yield* Ref.make(0)
      const probe = yield* hanging(started, interrupted).pipe(Policy.guard(policy), Effect.forkChild)
      yield* settle
      let state = yield* CircuitBreaker.state(breaker)
      assert.deepStrictEqual([state.state, state.probing], ["HalfOpen", 1])
      const busy = yield* Effect.exit(Effect.succeed("second").pipe(Policy.guard(policy)))
      assert.isTrue(Exit.isFailure(busy))
      const busyError = Exit.isFailure(busy) ? busy.cause.reasons.find(Cause.isFailReason)?.error : undefined
      assert.strictEqual((busyError as CircuitBreaker.CircuitOpen).reason, "ProbesBusy")

      yield* Fiber.interrupt(probe)
      assert.isTrue(isInterruptedOnly(yield* Fiber.await(probe)))
      assert.strictEqual(yield* Ref.get(interrupted), 1)
      state = yield* CircuitBreaker.state(breaker)
      assert.deepStrictEqual([state.state, state.probing], ["HalfOpen", 0])
      assert.strictEqual((yield* CircuitBreaker.stats(breaker)).ignored, 1)
      assert.strictEqual((yield* Bulkhead.stats(bulkhead)).inFlight, 0)

      assert.strictEqual(yield* Effect.succeed("probe").pipe(Policy.guard(policy)), "probe")
      assert.strictEqual((yield* CircuitBreaker.state(breaker)).state, "Closed")
      assert.deepStrictEqual(yield* counts(policy), {
        calls: 4,
        succeeded: 1,
        interrupted: 1,
        failed: { ...zeroFailed, Error: 1, CircuitOpen: 1 },
        fallbacks: zeroFallbacks
      })
    }).pipe(Effect.scoped))
})

describe("Policy rule: an interruption in the same instant as the timeout fires has one outcome, counted once, nothing held", () => {
  const race = (interrupterFirst: boolean) =>
    Effect.gen(function*() {
      const bulkhead = yield* Bulkhead.make({ name: "b", maxConcurrent: 1 })
      const limiter = yield* RateLimiter.make({ name: "l", algorithm: RateLimiter.gcra({ rate: 10, per: "1 second", burst: 10 }) })
      const breaker = yield* CircuitBreaker.make({ name: "c", trip: CircuitBreaker.consecutive(1), openFor: "1 minute" })
      const policy = yield* Policy.make({
        name: "p",
        timeout: "100 millis",
        bulkhead,
        retry: noJitter({ maxAttempts: 3, base: "10 millis" }),
        rateLimiter: limiter,
        circuitBreaker: breaker
      })
      const started = yield* Ref.make(0)
      const interrupted = yield* Ref.make(0)
      const call = yield* Deferred.make<Fiber.Fiber<never, unknown>>()
      const interrupter = Effect.sleep("100 millis").pipe(Effect.andThen(Effect.flatMap(Deferred.await(call), Fiber.interrupt)))
      // Which sleeper is registered first decides which of the two timers TestClock wakes first.
      const first = interrupterFirst ? yield* Effect.forkChild(interrupter) : undefined
      if (first !== undefined) yield* settle
      const fiber = yield* hanging(started, interrupted).pipe(Policy.guard(policy), Effect.forkChild)
      yield* Deferred.succeed(call, fiber)
      yield* settle
      const second = first === undefined ? yield* Effect.forkChild(interrupter) : undefined
      yield* settle
      yield* TestClock.adjust("100 millis")
      const exit = yield* Fiber.await(fiber)
      yield* settle

      // One outcome: the timeout's failure, or the interruption.
      const fail = Exit.isFailure(exit) ? exit.cause.reasons.find(Cause.isFailReason) : undefined
      const timedOut = fail !== undefined && (fail.error as { readonly _tag: string })._tag === "TimeoutExceeded"
      assert.isTrue(timedOut || isInterruptedOnly(exit), `unexpected exit ${String(Exit.isFailure(exit) ? Cause.pretty(exit.cause) : "success")}`)
      if (timedOut && Exit.isFailure(exit)) {
        assert.isFalse(exit.cause.reasons.some(Cause.isInterruptReason), "a timeout mixed with an interruption")
      }
      assert.deepStrictEqual(yield* counts(policy), {
        calls: 1,
        succeeded: 0,
        interrupted: timedOut ? 0 : 1,
        failed: { ...zeroFailed, TimeoutExceeded: timedOut ? 1 : 0 },
        fallbacks: zeroFallbacks
      })
      // Nothing held, the attempt ended once, and the breaker saw an interruption (the timeout is
      // outside it), not a failure of the dependency.
      assert.strictEqual(yield* Ref.get(started), 1)
      assert.strictEqual(yield* Ref.get(interrupted), 1)
      const b = yield* Bulkhead.stats(bulkhead)
      assert.deepStrictEqual([b.inFlight, b.running, b.queued, b.completed], [0, 0, 0, 1])
      const c = yield* CircuitBreaker.stats(breaker)
      assert.deepStrictEqual([c.state, c.failures, c.ignored], ["Closed", 0, 1])
      assert.strictEqual((yield* CircuitBreaker.state(breaker)).probing, 0)
      assert.strictEqual((yield* RateLimiter.stats(limiter)).waiting, 0)
      yield* TestClock.adjust("1 minute")
      assert.strictEqual(yield* Ref.get(started), 1, "an attempt started after the call ended")
      assert.strictEqual(yield* Effect.succeed("next").pipe(Policy.guard(policy)), "next")
      if (second !== undefined) yield* Fiber.join(second)
      if (first !== undefined) yield* Fiber.join(first)
      return timedOut
    })

  // TestClock wakes the timers due in the same instant in the order they were set: each case
  // reaches one side of the race.
  it.effect("the interrupter's timer set first: the call ends interrupted", () =>
    Effect.map(race(true), (timedOut) => assert.isFalse(timedOut)).pipe(Effect.scoped))
  it.effect("the timeout's timer set first: the call ends with TimeoutExceeded", () =>
    Effect.map(race(false), (timedOut) => assert.isTrue(timedOut)).pipe(Effect.scoped))

  it.effect("a queued call interrupted in the instant its queueTimeout fires: one outcome, its place given back once", () =>
    Effect.gen(function*() {
      const outcomes: Array<string> = []
      for (const interrupterFirst of [true, false]) {
        const bulkhead = yield* Bulkhead.make({ name: "b", maxConcurrent: 1, maxQueue: 1, queueTimeout: "100 millis" })
        const policy = yield* Policy.make({ name: "p", bulkhead })
        const gate = yield* Latch.make()
        const holder = yield* gate.await.pipe(Policy.guard(policy), Effect.forkChild)
        yield* settle
        const call = yield* Deferred.make<Fiber.Fiber<string, unknown>>()
        const interrupter = Effect.sleep("100 millis").pipe(Effect.andThen(Effect.flatMap(Deferred.await(call), Fiber.interrupt)))
        const first = interrupterFirst ? yield* Effect.forkChild(interrupter) : undefined
        yield* settle
        const queued = yield* Effect.succeed("ran").pipe(Policy.guard(policy), Effect.forkChild)
        yield* Deferred.succeed(call, queued)
        yield* settle
        const second = first === undefined ? yield* Effect.forkChild(interrupter) : undefined
        yield* settle
        assert.strictEqual((yield* Bulkhead.stats(bulkhead)).queued, 1)
        yield* TestClock.adjust("100 millis")
        const exit = yield* Fiber.await(queued)
        const fail = Exit.isFailure(exit) ? exit.cause.reasons.find(Cause.isFailReason) : undefined
        const rejected = fail !== undefined && (fail.error as Bulkhead.BulkheadFull).reason === "QueueTimeout"
        assert.isTrue(rejected || isInterruptedOnly(exit))
        outcomes.push(rejected ? "QueueTimeout" : "Interrupted")
        const b = yield* Bulkhead.stats(bulkhead)
        assert.deepStrictEqual(
          [b.queued, b.inFlight, b.cancelled + b.rejected.QueueTimeout],
          [0, 1, 1],
          "the queued call left the queue exactly once"
        )
        const stats = yield* counts(policy)
        assert.deepStrictEqual([stats.interrupted, stats.failed.BulkheadFull], rejected ? [0, 1] : [1, 0])
        yield* gate.open
        yield* Fiber.join(holder)
        assert.strictEqual((yield* Bulkhead.stats(bulkhead)).inFlight, 0)
        if (first !== undefined) yield* Fiber.join(first)
        if (second !== undefined) yield* Fiber.join(second)
      }
      // Same-instant timers wake in the order they were set: each case reaches one side of the race.
      assert.deepStrictEqual(outcomes, ["Interrupted", "QueueTimeout"])
    }).pipe(Effect.scoped))
})
