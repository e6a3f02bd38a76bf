import { assert, describe, expectTypeOf, it } from "@effect/vitest"
import { InvalidOptions, Retry } from "@bulwark/core"
import { Cause, Clock, Context, Data, Duration, Effect, Exit, Fiber, Layer, Metric, Random, Schedule, Schema, Scope, Stream } from "effect"
import * as Arbitrary from "effect/Arbitrary"
import { TestClock } from "effect/testing"

// -----------------------------------------------------------------------------
// helpers
// -----------------------------------------------------------------------------

class Unavailable extends Data.TaggedError("Unavailable")<{ readonly attempt: number }> {}
class BadRequest extends Data.TaggedError("BadRequest")<{}> {}
class Throttled extends Data.TaggedError("Throttled")<{ readonly retryAfter: Duration.Duration }> {}

/** Lets every fiber that is ready run. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 10; i++) yield* Effect.yieldNow
})

/**
 * A call that fails with `Unavailable` on its first `failures` attempts and
 * then succeeds with "ok". It records when each attempt starts (clock time
 * relative to the first attempt) and keeps every error it raised, so tests can
 * assert exact attempt times and the identity of the error returned.
 */
const flaky = (failures: number, options?: { readonly work?: Duration.Input; readonly error?: (attempt: number) => Unavailable | Throttled | BadRequest }) => {
  const times: Array<number> = []
  const errors: Array<unknown> = []
  let first = 0
  const effect = Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    if (times.length === 0) first = now
    times.push(now - first)
    const attempt = times.length
    if (options?.work !== undefined) yield* Effect.sleep(options.work)
    if (attempt <= failures) {
      const error = options?.error?.(attempt) ?? new Unavailable({ attempt })
      errors.push(error)
      return yield* Effect.fail(error)
    }
    return "ok"
  }) as Effect.Effect<string, Unavailable | Throttled | BadRequest>
  return { times, errors, effect }
}

/** Forks `effect`, moves the clock far ahead, and returns its exit. */
const runToEnd = <A, E, R>(effect: Effect.Effect<A, E, R>, horizon: Duration.Input = "1 hour") =>
  Effect.gen(function*() {
    const fiber = yield* Effect.forkChild(effect)
    yield* settle
    yield* TestClock.adjust(horizon)
    return yield* Fiber.await(fiber)
  })

const failureOf = <A, E>(exit: Exit.Exit<A, E>): E => {
  assert.isTrue(Exit.isFailure(exit), `expected a failure, got ${String(exit)}`)
  const found = Cause.findErrorOption((exit as Exit.Failure<A, E>).cause)
  assert.strictEqual(found._tag, "Some")
  return (found as { readonly value: E }).value
}

/** The random numbers a seeded `Random` hands out, in order. */
const draws = (seed: string, n: number) =>
  Effect.all(Array.from({ length: n }, () => Random.next)).pipe(Random.withSeed(seed))

const near = (actual: number, expected: number, message?: string) => assert.closeTo(actual, expected, 1e-6, message)

const none = (options: Partial<Retry.Options<any>> = {}) =>
  Retry.policy({ maxAttempts: 4, base: "100 millis", max: "10 seconds", jitter: "none", ...options })

// -----------------------------------------------------------------------------
// 1. backoff
// -----------------------------------------------------------------------------

describe("typed failures are retried with exponential backoff from `base`, capped at `max`", () => {
  it.effect("jitter none: attempts at 0, 100, 300, 700 ms, then the last failure is returned", () =>
    Effect.gen(function*() {
      const call = flaky(Infinity)
      const exit = yield* runToEnd(call.effect.pipe(Retry.guard(none())))
      assert.deepStrictEqual(call.times, [0, 100, 300, 700])
      assert.strictEqual(failureOf(exit), call.errors[3])
    }))

  it.effect("each attempt starts exactly when its backoff ends, not a millisecond sooner", () =>
    Effect.gen(function*() {
      const call = flaky(Infinity)
      const fiber = yield* Effect.forkChild(call.effect.pipe(Retry.guard(none())))
      yield* settle
      yield* TestClock.adjust("99 millis")
      assert.deepStrictEqual(call.times, [0])
      yield* TestClock.adjust("1 millis")
      assert.deepStrictEqual(call.times, [0, 100])
      yield* TestClock.adjust("199 millis")
      assert.deepStrictEqual(call.times, [0, 100])
      yield* TestClock.adjust("1 millis")
      assert.deepStrictEqual(call.times, [0, 100, 300])
      yield* Fiber.interrupt(fiber)
    }))

  it.effect("the backoff is capped at `max`", () =>
    Effect.gen(function*() {
      const call = flaky(Infinity)
      yield* runToEnd(call.effect.pipe(Retry.guard(none({ maxAttempts: 6, max: "250 millis" }))))
      assert.deepStrictEqual(call.times, [0, 100, 300, 550, 800, 1050])
    }))

  it.effect("a success after retries is returned, and no attempt follows it", () =>
    Effect.gen(function*() {
      const call = flaky(2)
      const exit = yield* runToEnd(call.effect.pipe(Retry.guard(none({ maxAttempts: 10 }))))
      assert.deepStrictEqual(exit, Exit.succeed("ok"))
      assert.deepStrictEqual(call.times, [0, 100, 300])
    }))

  it.effect("maxAttempts counts the first attempt: 1 means no retry; the default is 3", () =>
    Effect.gen(function*() {
      const once = flaky(Infinity)
      yield* runToEnd(once.effect.pipe(Retry.guard(none({ maxAttempts: 1 }))))
      assert.deepStrictEqual(once.times, [0])
      const byDefault = flaky(Infinity)
      yield* runToEnd(byDefault.effect.pipe(Retry.guard(Retry.policy({ jitter: "none" }))))
      assert.deepStrictEqual(byDefault.times, [0, 100, 300])
    }))

  it.effect("a base of 0 retries at once, without waiting for the clock", () =>
    Effect.gen(function*() {
      const call = flaky(Infinity)
      const exit = yield* Effect.exit(call.effect.pipe(Retry.guard(none({ base: 0 }))))
      assert.deepStrictEqual(call.times, [0, 0, 0, 0])
      assert.strictEqual(failureOf(exit), call.errors[3])
    }))

  it.effect("data-first works like data-last", () =>
    Effect.gen(function*() {
      const call = flaky(Infinity)
      yield* runToEnd(Retry.guard(call.effect, none({ maxAttempts: 2 })))
      assert.deepStrictEqual(call.times, [0, 100])
    }))
})

// -----------------------------------------------------------------------------
// 2. defects and interruptions
// -----------------------------------------------------------------------------

describe("defects and interruptions are never retried", () => {
  const counting = <E>(cause: Cause.Cause<E>) => {
    let attempts = 0
    return { effect: Effect.suspend(() => (attempts++, Effect.failCause(cause))), attempts: () => attempts }
  }

  it.effect("a defect ends the call after one attempt, as it is", () =>
    Effect.gen(function*() {
      const call = counting(Cause.die("boom"))
      const exit = yield* runToEnd(call.effect.pipe(Retry.guard(none())))
      assert.strictEqual(call.attempts(), 1)
      assert.isTrue(Exit.isFailure(exit) && Cause.hasDies(exit.cause))
    }))

  it.effect("a typed failure alongside a defect, or alongside an interruption, is not retried", () =>
    Effect.gen(function*() {
      const withDefect = counting(Cause.combine(Cause.fail(new Unavailable({ attempt: 1 })), Cause.die("boom")))
      yield* runToEnd(withDefect.effect.pipe(Retry.guard(none())))
      assert.strictEqual(withDefect.attempts(), 1)
      const withInterrupt = counting(Cause.combine(Cause.fail(new Unavailable({ attempt: 1 })), Cause.interrupt(7)))
      yield* runToEnd(withInterrupt.effect.pipe(Retry.guard(none())))
      assert.strictEqual(withInterrupt.attempts(), 1)
    }))

  it.effect("an interrupted attempt is not retried", () =>
    Effect.gen(function*() {
      let attempts = 0
      const exit = yield* runToEnd(Effect.suspend(() => (attempts++, Effect.interrupt)).pipe(Retry.guard(none())))
      assert.strictEqual(attempts, 1)
      assert.isTrue(Exit.isFailure(exit) && Cause.hasInterrupts(exit.cause))
    }))

  it.effect("interrupting the caller during a backoff stops retrying", () =>
    Effect.gen(function*() {
      const retry = yield* Retry.make({ name: "interrupted", maxAttempts: 5, base: "1 second", jitter: "none" })
      const call = flaky(Infinity)
      const fiber = yield* Effect.forkChild(call.effect.pipe(Retry.guard(retry)))
      yield* settle
      yield* TestClock.adjust("500 millis")
      yield* Fiber.interrupt(fiber)
      yield* TestClock.adjust("1 minute")
      assert.deepStrictEqual(call.times, [0])
      const s = yield* Retry.stats(retry)
      assert.deepStrictEqual([s.calls, s.attempts, s.retries], [1, 1, 0])
    }))
})

// -----------------------------------------------------------------------------
// 3. while
// -----------------------------------------------------------------------------

describe("`while` decides which typed failures are retried", () => {
  it.effect("a failure it declines is returned at once; others are retried", () =>
    Effect.gen(function*() {
      const policy = none({ while: (e: Unavailable | BadRequest | Throttled) => e._tag !== "BadRequest" })
      const bad = flaky(Infinity, { error: () => new BadRequest() })
      const exit = yield* runToEnd(bad.effect.pipe(Retry.guard(policy)))
      assert.deepStrictEqual(bad.times, [0])
      assert.strictEqual(failureOf(exit), bad.errors[0])
      // retried until the error turns into one `while` declines
      const turning = flaky(Infinity, { error: (n) => (n < 3 ? new Unavailable({ attempt: n }) : new BadRequest()) })
      yield* runToEnd(turning.effect.pipe(Retry.guard(policy)))
      assert.deepStrictEqual(turning.times, [0, 100, 300])
    }))

  it.effect("`while` sees each attempt's own error", () =>
    Effect.gen(function*() {
      const seen: Array<number> = []
      const policy = none({ maxAttempts: 10, while: (e: Unavailable) => (seen.push(e.attempt), e.attempt < 3) })
      const call = flaky(Infinity, { error: (attempt) => new Unavailable({ attempt }) })
      yield* runToEnd(call.effect.pipe(Retry.guard(policy)))
      assert.deepStrictEqual(seen, [1, 2, 3])
    }))
})

// -----------------------------------------------------------------------------
// 4. jitter
// -----------------------------------------------------------------------------

describe("jitter follows the AWS formulas and draws from Effect's Random service", () => {
  /** The delays before each retry, read from the attempts' start times. */
  const delaysOf = (jitter: Retry.Jitter, seed: string, options: Partial<Retry.Options> = {}) =>
    Effect.gen(function*() {
      const call = flaky(Infinity)
      yield* runToEnd(call.effect.pipe(
        Retry.guard(Retry.policy({ maxAttempts: 5, base: "100 millis", max: "1 second", jitter, ...options })),
        Random.withSeed(seed)
      ))
      return call.times.slice(1).map((t, i) => t - call.times[i])
    })

  it.effect("full: random in [0, min(max, base * 2^n))", () =>
    Effect.gen(function*() {
      const r = yield* draws("full", 4)
      const delays = yield* delaysOf("full", "full")
      const caps = [100, 200, 400, 800]
      assert.strictEqual(delays.length, 4)
      delays.forEach((d, i) => near(d, caps[i] * r[i], `retry ${i + 1}`))
    }))

  it.effect("equal: half the capped backoff plus a random share of the other half", () =>
    Effect.gen(function*() {
      const r = yield* draws("equal", 4)
      const delays = yield* delaysOf("equal", "equal", { max: "300 millis" })
      const caps = [100, 200, 300, 300]
      delays.forEach((d, i) => near(d, caps[i] / 2 + (caps[i] / 2) * r[i], `retry ${i + 1}`))
    }))

  it.effect("decorrelated: min(max, random in [base, 3 * previous delay)), starting from base", () =>
    Effect.gen(function*() {
      const r = yield* draws("decorrelated", 4)
      const delays = yield* delaysOf("decorrelated", "decorrelated", { max: "500 millis" })
      let previous = 100
      delays.forEach((d, i) => {
        const expected = Math.min(500, 100 + (previous * 3 - 100) * r[i])
        near(d, expected, `retry ${i + 1}`)
        previous = expected
      })
    }))

  it.effect("decorrelated: a delay stretched by retryAfter does not stretch the next backoff", () =>
    Effect.gen(function*() {
      const r = yield* draws("hinted", 2)
      const call = flaky(Infinity, {
        error: (n) => (n === 1 ? new Throttled({ retryAfter: Duration.seconds(5) }) : new Unavailable({ attempt: n }))
      })
      const policy = Retry.policy({ maxAttempts: 3, base: "100 millis", max: "10 seconds", jitter: "decorrelated" })
      yield* runToEnd(call.effect.pipe(Retry.guard(policy), Random.withSeed("hinted")))
      const firstBackoff = 100 + (300 - 100) * r[0]
      near(call.times[1], 5000)
      near(call.times[2] - call.times[1], 100 + (firstBackoff * 3 - 100) * r[1])
    }))

  it.effect("the same seed gives the same delays; another seed other delays", () =>
    Effect.gen(function*() {
      const a = yield* delaysOf("full", "same")
      const b = yield* delaysOf("full", "same")
      const c = yield* delaysOf("full", "other")
      assert.strictEqual(a.length, 4)
      a.forEach((d, i) => near(d, b[i]))
      assert.isTrue(a.some((d, i) => Math.abs(d - c[i]) > 1))
    }))
})

// -----------------------------------------------------------------------------
// 5. retryAfter
// -----------------------------------------------------------------------------

describe("an error's `retryAfter` makes the next delay at least that long", () => {
  const throttled = (ms: number) => (_attempt: number) => new Throttled({ retryAfter: Duration.millis(ms) })

  it.effect("never sooner than asked: a 5 second hint beats a 100 ms backoff", () =>
    Effect.gen(function*() {
      const call = flaky(1, { error: throttled(5000) })
      const fiber = yield* Effect.forkChild(call.effect.pipe(Retry.guard(none())))
      yield* settle
      yield* TestClock.adjust("4999 millis")
      assert.deepStrictEqual(call.times, [0])
      yield* TestClock.adjust("1 millis")
      assert.strictEqual(yield* Fiber.join(fiber), "ok")
      assert.deepStrictEqual(call.times, [0, 5000])
    }))

  it.effect("a hint shorter than the backoff does not shorten it", () =>
    Effect.gen(function*() {
      const call = flaky(2, { error: throttled(10) })
      yield* runToEnd(call.effect.pipe(Retry.guard(none())))
      assert.deepStrictEqual(call.times, [0, 100, 300])
    }))

  it.effect("a hint above `max` is honoured all the same", () =>
    Effect.gen(function*() {
      const call = flaky(1, { error: throttled(30_000) })
      yield* runToEnd(call.effect.pipe(Retry.guard(none({ max: "1 second" }))))
      assert.deepStrictEqual(call.times, [0, 30_000])
    }))

  it.effect("if honouring it would pass maxElapsed, the error is returned at once", () =>
    Effect.gen(function*() {
      const retry = yield* Retry.make({ name: "hinted", maxAttempts: 5, base: "100 millis", jitter: "none", maxElapsed: "10 seconds" })
      const call = flaky(Infinity, { error: throttled(30_000) })
      const fiber = yield* Effect.forkChild(call.effect.pipe(Retry.guard(retry)))
      yield* settle
      // no clock movement: it did not wait
      const exit = fiber.pollUnsafe()
      assert.isDefined(exit)
      assert.strictEqual(failureOf(exit!), call.errors[0])
      assert.deepStrictEqual(call.times, [0])
      assert.deepStrictEqual((yield* Retry.stats(retry)).exhausted, { MaxAttempts: 0, MaxElapsed: 1 })
    }))

  it.effect("an infinite hint (an isolated circuit) returns the error at once, even without maxElapsed", () =>
    Effect.gen(function*() {
      const retry = yield* Retry.make({ name: "isolated", maxAttempts: 5, jitter: "none" })
      const call = flaky(Infinity, { error: () => new Throttled({ retryAfter: Duration.infinity }) })
      const fiber = yield* Effect.forkChild(call.effect.pipe(Retry.guard(retry)))
      yield* settle
      const exit = fiber.pollUnsafe()
      assert.isDefined(exit, "it must not sleep forever")
      assert.strictEqual(failureOf(exit!), call.errors[0])
      assert.deepStrictEqual((yield* Retry.stats(retry)).exhausted, { MaxAttempts: 0, MaxElapsed: 1 })
    }))

  it.effect("only a Duration counts: a number in `retryAfter` is ignored", () =>
    Effect.gen(function*() {
      class Odd extends Data.TaggedError("Odd")<{ readonly retryAfter: number }> {}
      const times: Array<number> = []
      const effect = Effect.gen(function*() {
        times.push(yield* Clock.currentTimeMillis)
        return yield* Effect.fail(new Odd({ retryAfter: 5000 }))
      })
      yield* runToEnd(effect.pipe(Retry.guard(none({ maxAttempts: 2 }))))
      assert.deepStrictEqual(times, [0, 100])
    }))
})

// -----------------------------------------------------------------------------
// 6. maxElapsed
// -----------------------------------------------------------------------------

describe("maxElapsed: no retry starts later than maxElapsed after the first attempt started", () => {
  it.effect("a retry may start exactly at maxElapsed; the next one, which would start later, is not made", () =>
    Effect.gen(function*() {
      const call = flaky(Infinity)
      const fiber = yield* Effect.forkChild(call.effect.pipe(Retry.guard(none({ maxAttempts: 10, maxElapsed: 300 }))))
      yield* settle
      yield* TestClock.adjust("300 millis")
      assert.deepStrictEqual(call.times, [0, 100, 300])
      // it stopped at 300 ms without waiting for a backoff that could not be used
      assert.strictEqual(failureOf(fiber.pollUnsafe()!), call.errors[2])
    }))

  it.effect("one millisecond less and that retry is not made either", () =>
    Effect.gen(function*() {
      const call = flaky(Infinity)
      yield* runToEnd(call.effect.pipe(Retry.guard(none({ maxAttempts: 10, maxElapsed: 299 }))))
      assert.deepStrictEqual(call.times, [0, 100])
    }))

  it.effect("the time attempts take counts", () =>
    Effect.gen(function*() {
      const call = flaky(Infinity, { work: "1 second" })
      yield* runToEnd(call.effect.pipe(Retry.guard(none({ maxAttempts: 10, maxElapsed: "2500 millis" }))))
      assert.deepStrictEqual(call.times, [0, 1100, 2300])
    }))
})

// -----------------------------------------------------------------------------
// 7. budget
// -----------------------------------------------------------------------------

describe("a spent retry budget returns the original error", () => {
  it.effect("retries <= ratio * calls: 11 calls at 0.2 buy exactly 2 retries, the third is refused", () =>
    Effect.gen(function*() {
      const budget = yield* Retry.budget({ name: "backend", ratio: 0.2, minPerSecond: 0 })
      const retry = yield* Retry.make({ name: "reads", maxAttempts: 10, base: 0, jitter: "none", budget })
      for (let i = 0; i < 10; i++) yield* Effect.succeed(i).pipe(Retry.guard(retry))
      const call = flaky(Infinity)
      const exit = yield* Effect.exit(call.effect.pipe(Retry.guard(retry)))
      assert.strictEqual(call.times.length, 3, "1 attempt + 2 retries")
      assert.strictEqual(failureOf(exit), call.errors[2], "the original error, unwrapped")
      const b = yield* Retry.budgetStats(budget)
      assert.deepStrictEqual([b.deposits, b.withdrawals, b.refused], [11, 2, 1])
      near(b.balance, 0.2)
      const s = yield* Retry.stats(retry)
      assert.deepStrictEqual([s.calls, s.retries, s.budgetRefused], [11, 2, 1])
      assert.deepStrictEqual(s.exhausted, { MaxAttempts: 0, MaxElapsed: 0 })
    }))

  it.effect("minPerSecond is a floor: minPerSecond * ttl retries per window without any deposit", () =>
    Effect.gen(function*() {
      const budget = yield* Retry.budget({ ratio: 0, minPerSecond: 1, ttl: "10 seconds" })
      const policy = none({ maxAttempts: 100, base: 0, budget })
      const first = flaky(Infinity)
      yield* Effect.exit(first.effect.pipe(Retry.guard(policy)))
      assert.strictEqual(first.times.length, 11, "1 attempt + 10 retries from the reserve")
      const refusedAtOnce = flaky(Infinity)
      yield* Effect.exit(refusedAtOnce.effect.pipe(Retry.guard(policy)))
      assert.strictEqual(refusedAtOnce.times.length, 1)
      // the withdrawals leave the window after ttl
      yield* TestClock.adjust("9999 millis")
      const stillSpent = flaky(Infinity)
      yield* Effect.exit(stillSpent.effect.pipe(Retry.guard(policy)))
      assert.strictEqual(stillSpent.times.length, 1)
      yield* TestClock.adjust("1 millis")
      const again = flaky(Infinity)
      yield* Effect.exit(again.effect.pipe(Retry.guard(policy)))
      assert.strictEqual(again.times.length, 11)
    }))

  it.effect("deposits expire after ttl", () =>
    Effect.gen(function*() {
      const budget = yield* Retry.budget({ ratio: 1, minPerSecond: 0, ttl: "10 seconds" })
      const policy = none({ maxAttempts: 100, base: 0, budget })
      for (let i = 0; i < 3; i++) yield* Effect.void.pipe(Retry.guard(policy))
      yield* TestClock.adjust("10 seconds")
      // the three deposits are gone: only this call's own deposit is left
      const call = flaky(Infinity)
      yield* Effect.exit(call.effect.pipe(Retry.guard(policy)))
      assert.strictEqual(call.times.length, 2)
    }))

  it.effect("deposits within ttl all count", () =>
    Effect.gen(function*() {
      const budget = yield* Retry.budget({ ratio: 1, minPerSecond: 0, ttl: "10 seconds" })
      const policy = none({ maxAttempts: 100, base: 0, budget })
      for (let i = 0; i < 3; i++) yield* Effect.void.pipe(Retry.guard(policy))
      yield* TestClock.adjust("9 seconds")
      const call = flaky(Infinity)
      yield* Effect.exit(call.effect.pipe(Retry.guard(policy)))
      assert.strictEqual(call.times.length, 5, "3 old deposits + its own = 4 retries")
    }))

  it.effect("one budget is shared by every policy that names it", () =>
    Effect.gen(function*() {
      const budget = yield* Retry.budget({ ratio: 0.5, minPerSecond: 0 })
      const reads = none({ maxAttempts: 100, base: 0, budget })
      const writes = none({ maxAttempts: 100, base: 0, budget })
      for (let i = 0; i < 4; i++) yield* Effect.void.pipe(Retry.guard(reads))
      const write = flaky(Infinity)
      yield* Effect.exit(write.effect.pipe(Retry.guard(writes)))
      assert.strictEqual(write.times.length, 3, "4.5 tokens: 2 from reads, 0.5 own -> 2 retries")
      assert.strictEqual((yield* Retry.budgetStats(budget)).refused, 1)
    }))

  it.effect("the budget is asked only when a retry would otherwise be made", () =>
    Effect.gen(function*() {
      const budget = yield* Retry.budget({ ratio: 0, minPerSecond: 0 })
      const policy = none({ maxAttempts: 1, budget, while: () => true })
      yield* Effect.exit(flaky(Infinity).effect.pipe(Retry.guard(policy)))
      const declined = none({ budget, while: () => false })
      yield* Effect.exit(flaky(Infinity).effect.pipe(Retry.guard(declined)))
      assert.strictEqual((yield* Retry.budgetStats(budget)).refused, 0)
    }))
})

// -----------------------------------------------------------------------------
// 8. Retry.schedule
// -----------------------------------------------------------------------------

describe("Retry.schedule gives the same policy as an Effect Schedule for Effect.retry", () => {
  it.effect("same attempt times and the same last error as guard", () =>
    Effect.gen(function*() {
      const call = flaky(Infinity)
      const exit = yield* runToEnd(call.effect.pipe(Effect.retry(Retry.schedule(none()))))
      assert.deepStrictEqual(call.times, [0, 100, 300, 700])
      assert.strictEqual(failureOf(exit), call.errors[3])
    }))

  it.effect("retryAfter, while and maxElapsed apply", () =>
    Effect.gen(function*() {
      const hinted = flaky(1, { error: () => new Throttled({ retryAfter: Duration.seconds(5) }) })
      yield* runToEnd(hinted.effect.pipe(Effect.retry(Retry.schedule(none()))))
      assert.deepStrictEqual(hinted.times, [0, 5000])
      const declined = flaky(Infinity, { error: () => new BadRequest() })
      yield* runToEnd(declined.effect.pipe(Effect.retry(Retry.schedule(none({ while: (e: { readonly _tag: string }) => e._tag !== "BadRequest" })))))
      assert.deepStrictEqual(declined.times, [0])
      const bounded = flaky(Infinity)
      yield* runToEnd(bounded.effect.pipe(Effect.retry(Retry.schedule(none({ maxAttempts: 10, maxElapsed: 300 })))))
      assert.deepStrictEqual(bounded.times, [0, 100, 300])
    }))

  it.effect("each Effect.retry run deposits once into the budget, even when it succeeds at once", () =>
    Effect.gen(function*() {
      const budget = yield* Retry.budget({ ratio: 0.2, minPerSecond: 0 })
      const schedule = Retry.schedule(none({ maxAttempts: 10, base: 0, budget }))
      for (let i = 0; i < 10; i++) yield* Effect.succeed(i).pipe(Effect.retry(schedule))
      const call = flaky(Infinity)
      yield* Effect.exit(call.effect.pipe(Effect.retry(schedule)))
      assert.strictEqual(call.times.length, 3)
      assert.deepStrictEqual((yield* Retry.budgetStats(budget)).deposits, 11)
    }))

  it.effect("with an instance, calls, retries and stops are counted", () =>
    Effect.gen(function*() {
      const retry = yield* Retry.make({ name: "scheduled", maxAttempts: 3, base: "100 millis", jitter: "none" })
      yield* runToEnd(flaky(Infinity).effect.pipe(Effect.retry(Retry.schedule(retry))))
      const s = yield* Retry.stats(retry)
      assert.deepStrictEqual([s.calls, s.attempts, s.retries, s.exhausted.MaxAttempts], [1, 3, 2, 1])
      assert.strictEqual(Duration.toMillis(s.totalDelay), 300)
    }))

  it.effect("its output is the number of the retry", () =>
    Effect.gen(function*() {
      const step = yield* Schedule.toStep(Retry.schedule(none()))
      const outputs: Array<number> = []
      for (let i = 0; i < 5; i++) {
        const result = yield* Effect.exit(step(0, new Unavailable({ attempt: i })))
        if (Exit.isFailure(result)) break
        outputs.push(result.value[0])
      }
      assert.deepStrictEqual(outputs, [1, 2, 3])
    }))
})

// -----------------------------------------------------------------------------
// 9. property
// -----------------------------------------------------------------------------

describe("backoff property: every delay is within its mode's bounds, never below retryAfter, never past maxElapsed", () => {
  const int = (minimum: number, maximum: number) => Arbitrary.schema(Schema.Int.check(Schema.isBetween({ minimum, maximum })))
  const jitters: ReadonlyArray<Retry.Jitter> = ["none", "full", "equal", "decorrelated"]
  const epsilon = 1e-6 // delays are Durations, precise to the nanosecond

  const Case = Arbitrary.all({
    jitter: int(0, 3),
    baseMs: int(0, 1000),
    extraMaxMs: int(0, 20_000),
    maxAttempts: int(1, 12),
    maxElapsed: Arbitrary.all([int(0, 2), int(0, 60_000)]).pipe(Arbitrary.map(([select, ms]) => (select === 0 ? undefined : ms))),
    seed: int(0, 1_000_000),
    attempts: Arbitrary.array(
      Arbitrary.all([int(0, 3), int(0, 8000), int(0, 3000)]).pipe(
        Arbitrary.map(([select, hintMs, workMs]) => ({ hintMs: select === 0 ? hintMs : undefined, workMs }))
      ),
      { minLength: 1, maxLength: 12 }
    )
  })

  it.effect.prop("bounds hold for every mode", { c: Case }, ({ c }) =>
    Effect.gen(function*() {
      const jitter = jitters[c.jitter]
      const baseMs = c.baseMs
      const maxMs = c.baseMs + c.extraMaxMs
      const policy = Retry.policy({ jitter, base: baseMs, max: maxMs, maxAttempts: c.maxAttempts, maxElapsed: c.maxElapsed })
      const start = yield* Clock.currentTimeMillis
      const step = yield* Schedule.toStep(Retry.schedule(policy))
      let now = start
      let retries = 0
      let previousBackoff: number | undefined = baseMs
      for (const attempt of c.attempts) {
        now += attempt.workMs
        const hint = attempt.hintMs ?? 0
        const error = attempt.hintMs === undefined
          ? new Unavailable({ attempt: retries + 1 })
          : new Throttled({ retryAfter: Duration.millis(attempt.hintMs) })
        const cap = Math.min(maxMs, baseMs * 2 ** retries)
        const [lower, upper] = jitter === "none"
          ? [cap, cap]
          : jitter === "full"
          ? [0, cap]
          : jitter === "equal"
          ? [cap / 2, cap]
          : [baseMs, previousBackoff === undefined ? maxMs : Math.min(maxMs, 3 * previousBackoff)]
        const result = yield* Effect.exit(step(now, error))
        if (Exit.isFailure(result)) {
          // it stopped: attempts ran out, or even the shortest delay it could have drawn passes maxElapsed
          if (retries < c.maxAttempts - 1) {
            assert.isDefined(c.maxElapsed, "stopped early without maxElapsed")
            assert.isAbove(now - start + Math.max(hint, upper), c.maxElapsed! - epsilon)
          }
          break
        }
        const delay = Duration.toMillis(result.value[1])
        retries++
        assert.isAtMost(retries, c.maxAttempts - 1, "more retries than maxAttempts allows")
        assert.isAtLeast(delay, hint - epsilon, "sooner than retryAfter")
        assert.isAtMost(delay, Math.max(hint, upper) + epsilon, `${jitter}: above the mode's upper bound`)
        if (delay > hint + epsilon) assert.isAtLeast(delay, lower - epsilon, `${jitter}: below the mode's lower bound`)
        if (jitter === "full" && attempt.hintMs === undefined) {
          assert.isTrue(delay >= 0 && delay <= maxMs + epsilon, "full jitter outside [0, max]")
        }
        if (c.maxElapsed !== undefined) assert.isAtMost(now - start + delay, c.maxElapsed + epsilon, "past maxElapsed")
        // the next decorrelated bound is known only when this delay was the backoff itself
        previousBackoff = delay > hint + epsilon ? delay : undefined
        now += delay
      }
    }).pipe(Random.withSeed(c.seed)), { arbitrary: { runs: 300 } })
})

// -----------------------------------------------------------------------------
// 10. invalid options
// -----------------------------------------------------------------------------

describe("invalid options: policy dies when used, make fails with InvalidOptions, naming every bad field", () => {
  const badOptions = {
    maxAttempts: 0,
    base: "soon",
    jitter: "wild",
    maxElapsed: -1,
    while: 3,
    budget: {}
  } as unknown as Retry.Options

  const expected = [
    "maxAttempts: Expected an integer >= 1, got 0",
    `base: Expected a duration such as "2 seconds" or a number of milliseconds, got "soon"`,
    `jitter: Expected "decorrelated" | "full" | "equal" | "none"`,
    "maxElapsed: Expected a duration >= 0, got -1",
    "while: Expected a function (error) => boolean",
    "budget: Expected a budget made with Retry.budget"
  ]

  it.effect("Retry.policy never throws; a call it guards dies with the InvalidOptions, without running", () =>
    Effect.gen(function*() {
      const policy = Retry.policy(badOptions)
      let ran = 0
      const exit = yield* Effect.exit(Effect.sync(() => ran++).pipe(Retry.guard(policy)))
      assert.strictEqual(ran, 0)
      assert.isTrue(Exit.isFailure(exit))
      const defect = Cause.squash((exit as Exit.Failure<unknown, unknown>).cause)
      assert.instanceOf(defect, InvalidOptions)
      const error = defect as InvalidOptions
      assert.strictEqual(error.primitive, "Retry")
      assert.deepStrictEqual(error.message.split("\n"), expected)
      const scheduled = yield* Effect.exit(Effect.fail("x").pipe(Effect.retry(Retry.schedule(policy))))
      assert.isTrue(Exit.isFailure(scheduled) && Cause.squash(scheduled.cause) === defect)
    }))

  it.effect("Retry.make fails with a typed InvalidOptions; its name is required", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Retry.make({ ...badOptions, name: "payments" }))
      assert.strictEqual(error.name, "payments")
      assert.deepStrictEqual(error.message.split("\n"), expected)
      const unnamed = yield* Effect.flip(Retry.make({} as { readonly name: string }))
      assert.strictEqual(unnamed.message, "name: Missing key")
    }))

  it.effect("base must not exceed max; unknown fields are reported", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Retry.make({ name: "x", base: "2 seconds", max: "1 second" }))
      assert.strictEqual(error.message, "max: Expected a duration >= base (2s), got 1s")
      const typo = yield* Effect.flip(Retry.make({ name: "x", maxAttempt: 3 } as Retry.Options & { readonly name: string }))
      assert.include(typo.message, "maxAttempt:")
    }))

  it.effect("Retry.budget fails with InvalidOptions for a negative ratio, a non-finite rate, a zero ttl", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Retry.budget({ name: "b", ratio: -1, minPerSecond: Infinity, ttl: 0 }))
      assert.strictEqual(error.primitive, "RetryBudget")
      assert.deepStrictEqual(error.message.split("\n"), [
        "ratio: Expected a finite number >= 0, got -1",
        "minPerSecond: Expected a finite number >= 0, got Infinity",
        "ttl: Expected a duration > 0, got 0"
      ])
    }))
})

// -----------------------------------------------------------------------------
// 11. stats, metrics, events
// -----------------------------------------------------------------------------

describe("attempts, retries, successes after retry, exhaustion and budget refusals are counted", () => {
  const read = (registry: Metric.MetricRegistry) => Metric.snapshot.pipe(Effect.provideService(Metric.MetricRegistry, registry))
  const series = (s: ReadonlyArray<Metric.Metric.Snapshot>, id: string, attributes: Record<string, string>) => {
    const found = s.filter((m) => m.id === id && JSON.stringify(m.attributes) === JSON.stringify(attributes))
    assert.strictEqual(found.length, 1, `one series ${id} ${JSON.stringify(attributes)}`)
    return found[0]
  }
  const count = (s: ReadonlyArray<Metric.Metric.Snapshot>, id: string, attributes: Record<string, string>) =>
    Number((series(s, id, attributes).state as Metric.CounterState<number>).count)

  /** One call of each outcome: success at once, success after 2 retries, exhausted, declined. */
  const scenario = (retry: Retry.Retry<Unavailable | BadRequest | Throttled>) =>
    Effect.gen(function*() {
      yield* runToEnd(flaky(0).effect.pipe(Retry.guard(retry)))
      yield* runToEnd(flaky(2).effect.pipe(Retry.guard(retry)))
      yield* runToEnd(flaky(Infinity).effect.pipe(Retry.guard(retry)))
      yield* runToEnd(flaky(Infinity, { error: () => new BadRequest() }).effect.pipe(Retry.guard(retry)))
    })

  const options = {
    name: "orders",
    maxAttempts: 3,
    base: "100 millis",
    jitter: "none",
    while: (e: Unavailable | BadRequest | Throttled) => e._tag !== "BadRequest"
  } as const

  it.effect("stats", () =>
    Effect.gen(function*() {
      const retry = yield* Retry.make(options)
      yield* scenario(retry)
      const s = yield* Retry.stats(retry)
      assert.strictEqual(s.name, "orders")
      assert.deepStrictEqual(
        [s.calls, s.attempts, s.retries, s.succeeded, s.succeededAfterRetry, s.notRetryable, s.budgetRefused],
        [4, 8, 4, 2, 1, 1, 0]
      )
      assert.deepStrictEqual(s.exhausted, { MaxAttempts: 1, MaxElapsed: 0 })
      assert.strictEqual(Duration.toMillis(s.totalDelay), 600)
    }))

  it.effect("pull-based metrics bulwark.retry.*, labelled by name (and reason), removed when the scope closes", () =>
    Effect.gen(function*() {
      const registry: Metric.MetricRegistry = new Map()
      const scope = yield* Scope.make()
      const withRegistry = Effect.provideService(Metric.MetricRegistry, registry)
      const budget = yield* Retry.budget({ name: "shared", ratio: 0, minPerSecond: 0.1, ttl: "10 seconds" }).pipe(Scope.provide(scope), withRegistry)
      const retry = yield* Retry.make({ ...options, budget }).pipe(Scope.provide(scope), withRegistry)
      yield* scenario(retry)
      const s = yield* read(registry)
      const name = { name: "orders" }
      assert.strictEqual(count(s, "bulwark.retry.calls", name), 4)
      // The reserve allows 1 retry per 10 seconds, and each call of the scenario runs an hour after the
      // previous one: calls 2 and 3 each get 1 retry, then are refused.
      assert.strictEqual(count(s, "bulwark.retry.attempts", name), 6)
      assert.strictEqual(count(s, "bulwark.retry.retries", name), 2)
      assert.strictEqual(count(s, "bulwark.retry.succeeded", name), 1)
      assert.strictEqual(count(s, "bulwark.retry.succeeded_after_retry", name), 0)
      assert.strictEqual(count(s, "bulwark.retry.budget_refused", name), 2)
      assert.strictEqual(count(s, "bulwark.retry.not_retryable", name), 1)
      assert.strictEqual(count(s, "bulwark.retry.exhausted", { name: "orders", reason: "MaxAttempts" }), 0)
      assert.strictEqual(count(s, "bulwark.retry.exhausted", { name: "orders", reason: "MaxElapsed" }), 0)
      const shared = { name: "shared" }
      assert.strictEqual(count(s, "bulwark.retry_budget.deposits", shared), 4)
      assert.strictEqual(count(s, "bulwark.retry_budget.withdrawals", shared), 2)
      assert.strictEqual(count(s, "bulwark.retry_budget.refused", shared), 2)
      // an hour later the withdrawals have left the window: the reserve is whole again
      assert.strictEqual((series(s, "bulwark.retry_budget.balance", shared).state as Metric.GaugeState<number>).value, 1)
      for (const m of s.filter((m) => m.id.startsWith("bulwark.retry"))) {
        const keys = Object.keys(m.attributes ?? {}).sort()
        assert.deepStrictEqual(keys, m.id === "bulwark.retry.exhausted" ? ["name", "reason"] : ["name"], m.id)
      }
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual((yield* read(registry)).filter((m) => m.id.startsWith("bulwark.retry")), [])
    }))

  it.effect("events: Retrying with the attempt and delay, Exhausted, BudgetRefused; the stream ends with the scope", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const budget = yield* Retry.budget({ ratio: 0, minPerSecond: 0.1, ttl: "10 seconds" })
      const retry = yield* Retry.make({ ...options, budget }).pipe(Scope.provide(scope))
      const exhausting = yield* Retry.make({ ...options, name: "exhausting" }).pipe(Scope.provide(scope))
      const collected = yield* Effect.forkChild(Stream.runCollect(Stream.merge(Retry.events(retry), Retry.events(exhausting))))
      yield* settle
      yield* runToEnd(flaky(Infinity).effect.pipe(Retry.guard(retry)))
      yield* runToEnd(flaky(Infinity).effect.pipe(Retry.guard(exhausting)))
      yield* Scope.close(scope, Exit.void)
      const events = Array.from(yield* Fiber.join(collected), (e) =>
        e._tag === "Retrying" ? [e._tag, e.name, e.attempt, Duration.toMillis(e.delay)] : [e._tag, e.name, e.attempts, "reason" in e ? e.reason : ""])
      assert.deepStrictEqual(events, [
        ["Retrying", "orders", 1, 100],
        ["BudgetRefused", "orders", 2, ""],
        ["Retrying", "exhausting", 1, 100],
        ["Retrying", "exhausting", 2, 200],
        ["Exhausted", "exhausting", 3, "MaxAttempts"]
      ])
    }))

  it.effect("maxElapsed exhaustion is counted under its own reason", () =>
    Effect.gen(function*() {
      const retry = yield* Retry.make({ name: "elapsed", maxAttempts: 10, base: "100 millis", jitter: "none", maxElapsed: 150 })
      yield* runToEnd(flaky(Infinity).effect.pipe(Retry.guard(retry)))
      assert.deepStrictEqual((yield* Retry.stats(retry)).exhausted, { MaxAttempts: 0, MaxElapsed: 1 })
    }))
})

// -----------------------------------------------------------------------------
// 12. presets
// -----------------------------------------------------------------------------

describe("presets aggressive and conservative have their documented numbers", () => {
  it("their options", () => {
    assert.deepStrictEqual(Retry.aggressive.options, {
      name: "aggressive", maxAttempts: 5, base: "20 millis", max: "1 second", jitter: "full", maxElapsed: "5 seconds"
    })
    assert.deepStrictEqual(Retry.conservative.options, {
      name: "conservative", maxAttempts: 3, base: "1 second", max: "30 seconds", jitter: "equal", maxElapsed: "2 minutes"
    })
  })

  it.effect("aggressive: 5 attempts, each backoff below 20 ms * 2^n", () =>
    Effect.gen(function*() {
      const call = flaky(Infinity)
      yield* runToEnd(call.effect.pipe(Retry.guard(Retry.aggressive)))
      assert.strictEqual(call.times.length, 5)
      call.times.slice(1).forEach((t, i) => assert.isBelow(t - call.times[i], 20 * 2 ** i))
    }))

  it.effect("conservative: 3 attempts, each wait at least half its backoff (1 s, then 2 s)", () =>
    Effect.gen(function*() {
      const call = flaky(Infinity)
      yield* runToEnd(call.effect.pipe(Retry.guard(Retry.conservative)))
      assert.strictEqual(call.times.length, 3)
      const [first, second] = [call.times[1] - call.times[0], call.times[2] - call.times[1]]
      assert.isTrue(first >= 500 && first < 1000, `first wait ${first}`)
      assert.isTrue(second >= 1000 && second < 2000, `second wait ${second}`)
    }))

  it.effect("a preset can be extended by spreading its options", () =>
    Effect.gen(function*() {
      const call = flaky(Infinity)
      yield* runToEnd(call.effect.pipe(Retry.guard(Retry.policy({ ...Retry.conservative.options, maxAttempts: 1 }))))
      assert.strictEqual(call.times.length, 1)
    }))
})

// -----------------------------------------------------------------------------
// 13. service keys and types
// -----------------------------------------------------------------------------

class OrdersRetry extends Context.Service<OrdersRetry, Retry.Retry>()("test/OrdersRetry") {}

describe("a service key is accepted wherever an instance is", () => {
  it.effect("guard, schedule, stats and events resolve the key; everyone shares one instance", () =>
    Effect.gen(function*() {
      yield* runToEnd(flaky(Infinity).effect.pipe(Retry.guard(OrdersRetry)))
      yield* runToEnd(flaky(Infinity).effect.pipe(Effect.retry(Retry.schedule(OrdersRetry))))
      const s = yield* Retry.stats(OrdersRetry)
      assert.deepStrictEqual([s.name, s.calls, s.attempts], ["orders", 2, 4])
    }).pipe(Effect.provide(Retry.layer(OrdersRetry, { name: "orders", maxAttempts: 2, jitter: "none" }))))

  it("types: E is unchanged, a key adds itself to R, and `while` must accept every error of the call", () => {
    const self = Effect.fail(new Unavailable({ attempt: 1 })) as Effect.Effect<number, Unavailable | BadRequest, "Env">
    expectTypeOf(self.pipe(Retry.guard(Retry.aggressive))).toEqualTypeOf<Effect.Effect<number, Unavailable | BadRequest, "Env">>()
    expectTypeOf(self.pipe(Retry.guard(OrdersRetry))).toEqualTypeOf<
      Effect.Effect<number, Unavailable | BadRequest, "Env" | OrdersRetry>
    >()
    const both = Retry.policy({ while: (e: Unavailable | BadRequest) => e._tag === "Unavailable" })
    expectTypeOf(Retry.guard(self, both)).toEqualTypeOf<Effect.Effect<number, Unavailable | BadRequest, "Env">>()
    const onlyUnavailable = Retry.policy({ while: (e: Unavailable) => e.attempt < 3 })
    // @ts-expect-error the policy's `while` cannot handle BadRequest
    self.pipe(Retry.guard(onlyUnavailable))
    expectTypeOf(Retry.schedule(onlyUnavailable)).toEqualTypeOf<Schedule.Schedule<number, Unavailable>>()
    expectTypeOf(Retry.layer(OrdersRetry, { name: "x" })).toEqualTypeOf<Layer.Layer<OrdersRetry, InvalidOptions>>()
  })
})
