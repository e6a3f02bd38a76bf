/**
 * RateLimiter, KeyedRateLimiter and RateLimiterStore: one `describe` per rule of
 * issue 3 (RateLimiter section), then property tests against a reference model.
 *
 * The reference model (section "model") is written from the definitions in the
 * docs, not from the implementation: each algorithm is a plain simulation (a
 * token bucket that is refilled tick by tick and clipped at its capacity, a
 * continuously refilled bucket for GCRA, window counts, an explicit log), and a
 * call's slot is found by trying every millisecond from its lower bound until
 * the simulation accepts it. Waiting, interruption (reservations given back,
 * later waiters planned again) and blocks are replayed on that model, and every
 * call's outcome (admission time, or reason and retryAfter) must match exactly.
 */
import { assert, describe, it } from "@effect/vitest"
import { InvalidOptions, KeyedRateLimiter, RateLimited, RateLimiter, RateLimiterStore } from "@bulwark/core"
import { Cause, Clock, Context, Duration, Effect, Exit, Fiber, Metric, Schema, Scope, Stream } from "effect"
import * as Arbitrary from "effect/Arbitrary"
import { TestClock } from "effect/testing"

// -----------------------------------------------------------------------------
// helpers
// -----------------------------------------------------------------------------

/** Lets every ready fiber run: waking a waiter goes through the scheduler. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 20; i++) yield* Effect.yieldNow
})

const now = Effect.clockWith((clock) => Effect.succeed(clock.currentTimeMillisUnsafe()))

const ms = (d: Duration.Duration): number => Duration.toMillis(d)

/** A guarded call that records the clock time at which its body runs. */
const caller = (guarded: (self: Effect.Effect<number>) => Effect.Effect<number, RateLimited>) => {
  const started: Array<{ readonly label: string; readonly at: number }> = []
  const start = (label: string) =>
    Effect.gen(function*() {
      const fiber = yield* Effect.forkChild(
        guarded(Effect.clockWith((clock) =>
          Effect.sync(() => {
            const at = clock.currentTimeMillisUnsafe()
            started.push({ label, at })
            return at
          })
        ))
      )
      yield* settle
      return fiber
    })
  return { started, start }
}

const isDone = (fiber: Fiber.Fiber<unknown, unknown>): boolean => fiber.pollUnsafe() !== undefined

/** The call has ended with `RateLimited`; returns the error. */
const rejection = (fiber: Fiber.Fiber<unknown, unknown>): RateLimited => {
  const exit = fiber.pollUnsafe()
  assert.isDefined(exit, "expected the call to have been rejected, but it has not ended")
  if (exit === undefined || !Exit.isFailure(exit)) throw new Error(`expected a failure, got ${String(exit)}`)
  const error = Cause.squash(exit.cause)
  assert.instanceOf(error, RateLimited)
  return error as RateLimited
}

const admittedAt = (fiber: Fiber.Fiber<number, unknown>): number => {
  const exit = fiber.pollUnsafe()
  if (exit === undefined || !Exit.isSuccess(exit)) throw new Error(`expected an admitted call, got ${String(exit)}`)
  return exit.value
}

const pass = (limiter: RateLimiter.RateLimiter, cost = 1) =>
  Effect.void.pipe(RateLimiter.guard(limiter, { cost }), Effect.as(true), Effect.catchTag("RateLimited", () => Effect.succeed(false)))

/** How many cost-1 calls pass right now, one after the other. */
const burst = (limiter: RateLimiter.RateLimiter, max = 1000) =>
  Effect.gen(function*() {
    let n = 0
    while (n < max && (yield* pass(limiter))) n++
    return n
  })

// -----------------------------------------------------------------------------
// rule 1: make, layer, guard
// -----------------------------------------------------------------------------

describe("RateLimiter rule 1: make is scoped, layer shares one limit, guard is pipeable and data-first and takes a key", () => {
  it.effect("guard works piped, data-first, with the instance and with a service key", () =>
    Effect.gen(function*() {
      class Api extends Context.Service<Api, RateLimiter.RateLimiter>()("test/Api") {}
      const limiter = yield* RateLimiter.make({ name: "api", algorithm: RateLimiter.fixedWindow({ limit: 4, window: "1 second" }) })
      assert.strictEqual(yield* Effect.succeed(1).pipe(RateLimiter.guard(limiter)), 1)
      assert.strictEqual(yield* RateLimiter.guard(Effect.succeed(2), limiter), 2)
      assert.strictEqual(yield* RateLimiter.guard(Effect.succeed(3), limiter, { cost: 1 }), 3)
      const viaKey = Effect.succeed(4).pipe(RateLimiter.guard(Api)) // R = Api
      assert.strictEqual(yield* viaKey.pipe(Effect.provideService(Api, limiter)), 4)
      const over = yield* Effect.flip(viaKey.pipe(Effect.provideService(Api, limiter)))
      assert.strictEqual(over.reason, "Exceeded")
      assert.strictEqual((yield* RateLimiter.stats(Api).pipe(Effect.provideService(Api, limiter))).admitted, 4)
      assert.isTrue(RateLimiter.isRateLimiter(limiter))
      assert.deepStrictEqual((limiter as unknown as { toJSON(): unknown }).toJSON(), {
        _id: "RateLimiter",
        name: "api",
        algorithm: { _tag: "FixedWindow", limit: 4, windowMillis: 1000 }
      })
    }))

  it.effect("a layer provided once is one joint limit for every user of the key", () =>
    Effect.gen(function*() {
      class Sms extends Context.Service<Sms, RateLimiter.RateLimiter>()("test/Sms") {}
      const SmsLive = RateLimiter.layer(Sms, { name: "sms", algorithm: RateLimiter.tokenBucket({ capacity: 3, refill: 1, per: "1 second" }) })
      const alerts = Effect.succeed("alert").pipe(RateLimiter.guard(Sms))
      const codes = Effect.succeed("code").pipe(RateLimiter.guard(Sms))
      const results = yield* Effect.all([alerts, codes, alerts, Effect.flip(codes)]).pipe(Effect.provide(SmsLive))
      assert.deepStrictEqual(results.slice(0, 3), ["alert", "code", "alert"])
      assert.strictEqual((results[3] as RateLimited).reason, "Exceeded")
    }))

  it.effect("a guard built once can be applied many times", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make({ name: "once", algorithm: RateLimiter.slidingWindow({ limit: 3, window: "1 second" }) })
      const guarded = RateLimiter.guard(limiter, { cost: 1 })
      const outcomes = yield* Effect.forEach([1, 2, 3, 4], (i) => guarded(Effect.succeed(i)).pipe(Effect.exit))
      assert.deepStrictEqual(outcomes.map(Exit.isSuccess), [true, true, true, false])
    }))
})

// -----------------------------------------------------------------------------
// rule 2: the error
// -----------------------------------------------------------------------------

describe("RateLimiter rule 2: RateLimited carries name, retryAfter, limit and reason", () => {
  it.effect("the fields, the message, and an ordinary Schema instance (is, instanceof, catchTag, encoding)", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make({ name: "github", algorithm: RateLimiter.tokenBucket({ capacity: 2, refill: 1, per: "1 second" }) })
      yield* TestClock.adjust("300 millis")
      yield* Effect.void.pipe(RateLimiter.guard(limiter, { cost: 2 }))
      const e = yield* Effect.flip(Effect.void.pipe(RateLimiter.guard(limiter)))
      assert.strictEqual(e._tag, "RateLimited")
      assert.strictEqual(e.name, "github")
      assert.strictEqual(e.reason, "Exceeded")
      assert.strictEqual(e.limit, 2)
      assert.strictEqual(ms(e.retryAfter), 700) // the next refill is at 1000, an epoch-aligned tick
      assert.isFalse("key" in e)
      assert.strictEqual(e.message, `Rate limiter "github" rejected the call: Exceeded (retry after 700ms)`)
      assert.isTrue(Schema.is(RateLimited)(e))
      assert.instanceOf(e, RateLimited)
      assert.instanceOf(e, RateLimiter.RateLimited)
      const encoded = Schema.encodeUnknownSync(RateLimited)(e) as Record<string, unknown>
      assert.strictEqual(encoded.reason, "Exceeded")
      const caught = yield* Effect.void.pipe(
        RateLimiter.guard(limiter),
        Effect.as("passed"),
        Effect.catchTag("RateLimited", (r) => Effect.succeed(`caught ${r.reason}`))
      )
      assert.strictEqual(caught, "caught Exceeded")
    }))

  it.effect("retryAfter is the time until a call of this cost could pass, for each algorithm", () =>
    Effect.gen(function*() {
      const retry = (algorithm: RateLimiter.Algorithm, admit: ReadonlyArray<readonly [at: number, cost: number]>, at: number, cost = 1) =>
        Effect.gen(function*() {
          const scope = yield* Scope.make()
          const limiter = yield* RateLimiter.make({ name: "r", algorithm }).pipe(Scope.provide(scope))
          for (const [t, c] of admit) {
            yield* TestClock.setTime(t)
            assert.isTrue(yield* pass(limiter, c), `admission at ${t}`)
          }
          yield* TestClock.setTime(at)
          const e = yield* Effect.flip(Effect.void.pipe(RateLimiter.guard(limiter, { cost })))
          yield* Scope.close(scope, Exit.void)
          return [e.reason, ms(e.retryAfter), e.limit] as const
        })
      // token bucket: capacity 3, +1 every 100 ms; drained at 10: the 2nd token needs two ticks
      assert.deepStrictEqual(yield* retry(RateLimiter.tokenBucket({ capacity: 3, refill: 1, per: 100 }), [[10, 3]], 50, 2), ["Exceeded", 150, 3])
      // GCRA: 4 per second (one every 250 ms), burst 2
      assert.deepStrictEqual(yield* retry(RateLimiter.gcra({ rate: 4, per: "1 second", burst: 2 }), [[1000, 2]], 1100), ["Exceeded", 150, 2])
      // fixed window of 1 s: full at 2250, the next window starts at 3000
      assert.deepStrictEqual(yield* retry(RateLimiter.fixedWindow({ limit: 2, window: "1 second" }), [[2100, 2]], 2250), ["Exceeded", 750, 2])
      // sliding window of 1 s: admissions at 3000 and 3400; at 3600 the first leaves at 4000
      assert.deepStrictEqual(
        yield* retry(RateLimiter.slidingWindow({ limit: 2, window: "1 second" }), [[3000, 1], [3400, 1]], 3600),
        ["Exceeded", 400, 2]
      )
      // ... and a cost of 2 must wait for both to leave (3400 + 1000)
      assert.deepStrictEqual(
        yield* retry(RateLimiter.slidingWindow({ limit: 2, window: "1 second" }), [[5000, 1], [5400, 1]], 5600, 2),
        ["Exceeded", 800, 2]
      )
    }))
})

// -----------------------------------------------------------------------------
// rule 3: what each algorithm admits
// -----------------------------------------------------------------------------

describe("RateLimiter rule 3: each algorithm admits exactly what its definition allows", () => {
  it.effect("token bucket: a full bucket of `capacity`, then `refill` tokens at every multiple of `per` since the epoch", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(1_050)
      const limiter = yield* RateLimiter.make({ name: "tb", algorithm: RateLimiter.tokenBucket({ capacity: 5, refill: 2, per: "1 second" }) })
      assert.strictEqual(yield* burst(limiter), 5)
      yield* TestClock.setTime(1_999)
      assert.strictEqual(yield* burst(limiter), 0)
      yield* TestClock.setTime(2_000) // a tick: +2
      assert.strictEqual(yield* burst(limiter), 2)
      yield* TestClock.setTime(10_000) // 8 ticks, but never beyond the capacity
      assert.strictEqual(yield* burst(limiter), 5)
    }))

  it.effect("fixed window: `limit` per epoch-aligned window, and up to twice that around a boundary", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make({ name: "fw", algorithm: RateLimiter.fixedWindow({ limit: 3, window: "1 second" }) })
      yield* TestClock.setTime(900)
      assert.strictEqual(yield* burst(limiter), 3)
      yield* TestClock.setTime(1_000)
      assert.strictEqual(yield* burst(limiter), 3) // 6 within 100 ms: the documented boundary effect
      yield* TestClock.setTime(1_999)
      assert.strictEqual(yield* burst(limiter), 0)
    }))

  it.effect("sliding window: at most `limit` in any window, each admission leaving exactly `window` after it", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make({ name: "sw", algorithm: RateLimiter.slidingWindow({ limit: 3, window: "1 second" }) })
      yield* TestClock.setTime(900)
      assert.strictEqual(yield* burst(limiter), 3)
      yield* TestClock.setTime(1_000)
      assert.strictEqual(yield* burst(limiter), 0) // unlike the fixed window
      yield* TestClock.setTime(1_899)
      assert.strictEqual(yield* burst(limiter), 0)
      yield* TestClock.setTime(1_900)
      assert.strictEqual(yield* burst(limiter), 3)
    }))

  it.effect("GCRA: a burst, then one unit every per / rate", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make({ name: "g", algorithm: RateLimiter.gcra({ rate: 10, per: "1 second", burst: 3 }) })
      assert.strictEqual(yield* burst(limiter), 3)
      yield* TestClock.adjust("99 millis")
      assert.strictEqual(yield* burst(limiter), 0)
      yield* TestClock.adjust("1 millis")
      assert.strictEqual(yield* burst(limiter), 1)
      yield* TestClock.adjust("250 millis")
      assert.strictEqual(yield* burst(limiter), 2)
      yield* TestClock.adjust("10 seconds")
      assert.strictEqual(yield* burst(limiter), 3)
    }))

  it.effect("GCRA without a burst spaces calls evenly", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make({ name: "g1", algorithm: RateLimiter.gcra({ rate: 2, per: "1 second" }) })
      assert.isTrue(yield* pass(limiter))
      assert.isFalse(yield* pass(limiter))
      yield* TestClock.adjust("500 millis")
      assert.isTrue(yield* pass(limiter))
      assert.isFalse(yield* pass(limiter))
    }))

  it.effect("a call takes `cost` units", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make({ name: "c", algorithm: RateLimiter.fixedWindow({ limit: 10, window: "1 minute" }) })
      assert.isTrue(yield* pass(limiter, 7))
      assert.isFalse(yield* pass(limiter, 4))
      assert.isTrue(yield* pass(limiter, 3))
      const s = yield* RateLimiter.stats(limiter)
      assert.deepStrictEqual([s.admitted, s.admittedCost, s.rejected.Exceeded, s.remaining], [2, 10, 1, 0])
    }))
})

// -----------------------------------------------------------------------------
// rule 4: waiting
// -----------------------------------------------------------------------------

const waitingLimiter = (maxWait?: Duration.Input) =>
  RateLimiter.make({
    name: "w",
    algorithm: RateLimiter.tokenBucket({ capacity: 2, refill: 1, per: "100 millis" }),
    onExceeded: "wait",
    ...(maxWait === undefined ? {} : { maxWait })
  })

describe("RateLimiter rule 4: waiting callers reserve their slot at arrival and are served in FIFO order", () => {
  it.effect("a call that fits passes at once; the others wait for their reserved slot, in arrival order", () =>
    Effect.gen(function*() {
      const limiter = yield* waitingLimiter()
      const { started, start } = caller(RateLimiter.guard(limiter))
      const fibers = yield* Effect.forEach(["a", "b", "c", "d", "e"], start)
      assert.deepStrictEqual(started.map((s) => s.label), ["a", "b"])
      assert.strictEqual((yield* RateLimiter.stats(limiter)).waiting, 3)
      yield* TestClock.adjust("300 millis")
      assert.deepStrictEqual(started, [
        { label: "a", at: 0 },
        { label: "b", at: 0 },
        { label: "c", at: 100 },
        { label: "d", at: 200 },
        { label: "e", at: 300 }
      ])
      for (const fiber of fibers) assert.isTrue(isDone(fiber))
      const s = yield* RateLimiter.stats(limiter)
      assert.deepStrictEqual([s.admitted, s.admittedAfterWait, s.waiting, ms(s.totalWait), ms(s.longestWait)], [5, 3, 0, 600, 300])
    }))

  it.effect("a later caller never overtakes an earlier one, even a cheaper one", () =>
    Effect.gen(function*() {
      const limiter = yield* waitingLimiter()
      const big = caller(RateLimiter.guard(limiter, { cost: 2 }))
      const small = caller(RateLimiter.guard(limiter, { cost: 1 }))
      yield* big.start("drain") // takes both tokens at 0
      yield* big.start("big") // needs 2 tokens: slot 200
      yield* small.start("small") // 1 token would come at 100, but it queues behind "big": slot 300
      yield* TestClock.adjust("100 millis")
      assert.deepStrictEqual(big.started.map((s) => s.label), ["drain"])
      assert.deepStrictEqual(small.started, [])
      yield* TestClock.adjust("300 millis")
      assert.deepStrictEqual(big.started, [{ label: "drain", at: 0 }, { label: "big", at: 200 }])
      assert.deepStrictEqual(small.started, [{ label: "small", at: 300 }])
    }))

  it.effect("the slot is fixed at arrival: what arrives while others wait is planned after them", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make({
        name: "sw-wait",
        algorithm: RateLimiter.slidingWindow({ limit: 2, window: "1 second" }),
        onExceeded: "wait"
      })
      const { started, start } = caller(RateLimiter.guard(limiter))
      yield* start("a")
      yield* TestClock.adjust("400 millis")
      yield* start("b")
      yield* start("c") // slot 1000 (a leaves)
      yield* TestClock.adjust("500 millis")
      yield* start("d") // slot 1400 (b leaves), not earlier
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(started, [
        { label: "a", at: 0 },
        { label: "b", at: 400 },
        { label: "c", at: 1000 },
        { label: "d", at: 1400 }
      ])
    }))

  it.effect("interrupting a waiter gives its reservation back and the waiters behind it move up", () =>
    Effect.gen(function*() {
      const limiter = yield* waitingLimiter()
      const { started, start } = caller(RateLimiter.guard(limiter))
      yield* start("a")
      yield* start("b")
      yield* start("c") // slot 100
      const d = yield* start("d") // slot 200
      yield* start("e") // slot 300
      yield* start("f") // slot 400
      yield* TestClock.adjust("150 millis")
      yield* Fiber.interrupt(d)
      yield* settle
      const s = yield* RateLimiter.stats(limiter)
      assert.deepStrictEqual([s.cancelled, s.waiting], [1, 2])
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(started.map((x) => `${x.label}@${x.at}`), ["a@0", "b@0", "c@100", "e@200", "f@300"])
    }))

  it.effect("the reservation of an interrupted last waiter goes to the next arrival", () =>
    Effect.gen(function*() {
      const limiter = yield* waitingLimiter()
      const { started, start } = caller(RateLimiter.guard(limiter))
      yield* start("a")
      yield* start("b")
      const c = yield* start("c") // slot 100
      yield* Fiber.interrupt(c)
      yield* start("d") // gets slot 100
      yield* TestClock.adjust("100 millis")
      assert.deepStrictEqual(started.map((x) => `${x.label}@${x.at}`), ["a@0", "b@0", "d@100"])
    }))

  it.effect("a wait that would exceed maxWait fails at once with WaitTooLong, without waiting", () =>
    Effect.gen(function*() {
      const limiter = yield* waitingLimiter("250 millis")
      const { started, start } = caller(RateLimiter.guard(limiter))
      yield* start("a")
      yield* start("b")
      yield* start("c") // slot 100
      yield* start("d") // slot 200
      const tooLate = yield* start("e") // slot 300 > 250: fails now, at time 0
      assert.isTrue(isDone(tooLate))
      const e = rejection(tooLate)
      assert.deepStrictEqual([e.reason, ms(e.retryAfter), e.limit], ["WaitTooLong", 300, 2])
      const cheap = yield* Effect.flip(Effect.void.pipe(RateLimiter.guard(limiter, { cost: 2 })))
      assert.deepStrictEqual([cheap.reason, ms(cheap.retryAfter)], ["WaitTooLong", 400])
      // the rejected calls reserved nothing: the next one gets slot 300 when the clock allows it
      yield* TestClock.adjust("100 millis")
      const f = yield* start("f") // at 100, slot 300: 200 <= 250
      assert.isFalse(isDone(f))
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(started.map((x) => `${x.label}@${x.at}`), ["a@0", "b@0", "c@100", "d@200", "f@300"])
      assert.strictEqual((yield* RateLimiter.stats(limiter)).rejected.WaitTooLong, 2)
    }))

  it.effect("maxWait 0 with wait means: pass now or fail with WaitTooLong", () =>
    Effect.gen(function*() {
      const limiter = yield* waitingLimiter(0)
      assert.isTrue(yield* pass(limiter, 2))
      const e = yield* Effect.flip(Effect.void.pipe(RateLimiter.guard(limiter)))
      assert.deepStrictEqual([e.reason, ms(e.retryAfter)], ["WaitTooLong", 100])
    }))

  it.effect("the user's effect stays interruptible and an error of the effect passes through", () =>
    Effect.gen(function*() {
      const limiter = yield* waitingLimiter()
      const running = yield* Effect.forkChild(Effect.never.pipe(RateLimiter.guard(limiter)))
      yield* settle
      yield* Fiber.interrupt(running)
      const failed = yield* Effect.flip(Effect.fail("boom").pipe(RateLimiter.guard(limiter)))
      assert.strictEqual(failed, "boom")
      assert.strictEqual((yield* RateLimiter.stats(limiter)).admitted, 2)
    }))
})

// -----------------------------------------------------------------------------
// rule 5: block
// -----------------------------------------------------------------------------

describe("RateLimiter rule 5: block (Retry-After): nothing passes until then, reason Blocked", () => {
  it.effect("calls fail with Blocked and the time left of the block; afterwards they pass again", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make({ name: "b", algorithm: RateLimiter.tokenBucket({ capacity: 5, refill: 5, per: "1 second" }) })
      yield* RateLimiter.block(limiter, "30 seconds")
      yield* TestClock.adjust("10 seconds")
      const e = yield* Effect.flip(Effect.void.pipe(RateLimiter.guard(limiter)))
      assert.deepStrictEqual([e.reason, ms(e.retryAfter)], ["Blocked", 20_000])
      assert.strictEqual(ms((yield* RateLimiter.stats(limiter)).blockedFor), 20_000)
      assert.strictEqual((yield* RateLimiter.stats(limiter)).remaining, 0)
      yield* TestClock.adjust("20 seconds")
      assert.strictEqual(yield* burst(limiter), 5) // the bucket refilled meanwhile
      assert.strictEqual((yield* RateLimiter.stats(limiter)).rejected.Blocked, 1)
    }))

  it.effect("a block never shortens one in force; a longer one extends it", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make({ name: "b2", algorithm: RateLimiter.fixedWindow({ limit: 5, window: "1 second" }) })
      yield* limiter.pipe(RateLimiter.block("10 seconds")) // pipeable
      yield* RateLimiter.block(limiter, "1 second")
      yield* TestClock.adjust("5 seconds")
      assert.strictEqual(ms((yield* Effect.flip(Effect.void.pipe(RateLimiter.guard(limiter)))).retryAfter), 5_000)
      yield* RateLimiter.block(limiter, "20 seconds")
      assert.strictEqual(ms((yield* Effect.flip(Effect.void.pipe(RateLimiter.guard(limiter)))).retryAfter), 20_000)
      yield* RateLimiter.block(limiter, 0)
      assert.isFalse(yield* pass(limiter))
    }))

  it.effect("waiters whose maxWait covers the block keep waiting in order; the others fail at once", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make({
        name: "b3",
        algorithm: RateLimiter.tokenBucket({ capacity: 1, refill: 1, per: "100 millis" }),
        onExceeded: "wait",
        maxWait: "1 second"
      })
      const { started, start } = caller(RateLimiter.guard(limiter))
      yield* start("a") // at 0
      yield* TestClock.adjust("50 millis")
      const b = yield* start("b") // slot 100, deadline 1050
      yield* TestClock.adjust("450 millis")
      const c = yield* start("c") // at 500: slot 500, passes now
      const d = yield* start("d") // at 500: slot 600, deadline 1500
      yield* RateLimiter.block(limiter, "800 millis") // until 1300
      yield* settle
      assert.isTrue(isDone(b)) // was admitted at 100, before the block
      assert.strictEqual(admittedAt(b), 100)
      assert.strictEqual(admittedAt(c), 500)
      assert.isFalse(isDone(d)) // 1300 <= 1500: keeps waiting
      const e = yield* start("e") // at 500: slot 1400 (after d), 900 <= 1000
      const f = yield* start("f") // slot 1500: 1000 <= 1000, still fine
      const g = yield* start("g") // slot 1600 > 1500: WaitTooLong at once
      assert.strictEqual(rejection(g).reason, "WaitTooLong")
      yield* TestClock.adjust("2 seconds")
      assert.deepStrictEqual([admittedAt(d), admittedAt(e), admittedAt(f)], [1300, 1400, 1500])
      assert.deepStrictEqual(started.map((x) => x.label), ["a", "b", "c", "d", "e", "f"])
    }))

  it.effect("a block pushes waiters beyond their maxWait: they fail with Blocked at once, the rest move up", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make({
        name: "b4",
        algorithm: RateLimiter.fixedWindow({ limit: 1, window: "100 millis" }),
        onExceeded: "wait",
        maxWait: "500 millis"
      })
      const { started, start } = caller(RateLimiter.guard(limiter))
      yield* start("a") // 0
      const b = yield* start("b") // slot 100, deadline 500
      yield* TestClock.adjust("200 millis")
      const c = yield* start("c") // at 200: slot 200? window 2 is free -> passes now
      const d = yield* start("d") // at 200: slot 300, deadline 700
      assert.strictEqual(admittedAt(b), 100)
      assert.strictEqual(admittedAt(c), 200)
      yield* RateLimiter.block(limiter, "600 millis") // until 800 > 700
      yield* settle
      const e = rejection(d)
      assert.deepStrictEqual([e.reason, ms(e.retryAfter)], ["Blocked", 600])
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(started.map((x) => `${x.label}@${x.at}`), ["a@0", "b@100", "c@200"])
      const s = yield* RateLimiter.stats(limiter)
      assert.deepStrictEqual([s.rejected.Blocked, s.waiting], [1, 0])
    }))

  it.effect("with wait and no maxWait, callers arriving during a block wait until it ends", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make({
        name: "b5",
        algorithm: RateLimiter.gcra({ rate: 10, per: "1 second", burst: 2 }),
        onExceeded: "wait"
      })
      yield* RateLimiter.block(limiter, "1 second")
      const { started, start } = caller(RateLimiter.guard(limiter))
      yield* start("a")
      yield* start("b")
      yield* start("c")
      yield* TestClock.adjust("2 seconds")
      assert.deepStrictEqual(started.map((x) => x.at), [1000, 1000, 1100])
    }))

  it.effect("block accepts a service key; a bad duration is a defect", () =>
    Effect.gen(function*() {
      class Api extends Context.Service<Api, RateLimiter.RateLimiter>()("test/BlockApi") {}
      const limiter = yield* RateLimiter.make({ name: "bk", algorithm: RateLimiter.fixedWindow({ limit: 1, window: "1 second" }) })
      yield* RateLimiter.block(Api, "1 second").pipe(Effect.provideService(Api, limiter))
      assert.strictEqual((yield* Effect.flip(Effect.void.pipe(RateLimiter.guard(limiter)))).reason, "Blocked")
      const exit = yield* Effect.exit(RateLimiter.block(limiter, -5))
      assert.isTrue(Exit.hasDies(exit))
    }))
})

// -----------------------------------------------------------------------------
// rule 6: impossible costs
// -----------------------------------------------------------------------------

describe("RateLimiter rule 6: a cost above what the algorithm can ever admit fails at once with Exceeded and an infinite retryAfter", () => {
  const algorithms: ReadonlyArray<RateLimiter.Algorithm> = [
    RateLimiter.tokenBucket({ capacity: 3, refill: 1, per: "1 second" }),
    RateLimiter.gcra({ rate: 3, per: "1 second", burst: 3 }),
    RateLimiter.fixedWindow({ limit: 3, window: "1 second" }),
    RateLimiter.slidingWindow({ limit: 3, window: "1 second" })
  ]
  for (const onExceeded of ["fail", "wait"] as const) {
    it.effect(`onExceeded ${onExceeded}: every algorithm, and nothing is taken`, () =>
      Effect.gen(function*() {
        for (const algorithm of algorithms) {
          const scope = yield* Scope.make()
          const limiter = yield* RateLimiter.make({ name: algorithm._tag, algorithm, onExceeded }).pipe(Scope.provide(scope))
          const e = yield* Effect.flip(Effect.void.pipe(RateLimiter.guard(limiter, { cost: 4 })))
          assert.deepStrictEqual([e.reason, Duration.isFinite(e.retryAfter), e.limit], ["Exceeded", false, 3], algorithm._tag)
          const s = yield* RateLimiter.stats(limiter)
          assert.deepStrictEqual([s.remaining, s.waiting, s.rejected.Exceeded], [3, 0, 1], algorithm._tag)
          assert.isTrue(yield* pass(limiter, 3), algorithm._tag)
          yield* Scope.close(scope, Exit.void)
        }
      }))
  }
})

// -----------------------------------------------------------------------------
// rule 7: keyed limiters
// -----------------------------------------------------------------------------

describe("RateLimiter rule 7: keyed limiters, one limit per key, bounded keys reclaimed lazily", () => {
  const fixed = RateLimiter.fixedWindow({ limit: 2, window: "1 second" })
  const passKey = (keyed: KeyedRateLimiter.KeyedRateLimiter, key: string) =>
    Effect.void.pipe(KeyedRateLimiter.guard(keyed, key), Effect.as(true), Effect.catchTag("RateLimited", () => Effect.succeed(false)))

  it.effect("each key has its own independent limit", () =>
    Effect.gen(function*() {
      const keyed = yield* RateLimiter.keyed({ name: "users", algorithm: fixed, maxKeys: 10 })
      const outcomes = yield* Effect.forEach(["a", "a", "a", "b", "b", "b"], (k) => passKey(keyed, k))
      assert.deepStrictEqual(outcomes, [true, true, false, true, true, false])
      const e = yield* Effect.flip(KeyedRateLimiter.guard(Effect.void, keyed, "a")) // data-first
      assert.deepStrictEqual([e.reason, e.name, "key" in e], ["Exceeded", "users", false])
      const s = yield* KeyedRateLimiter.stats(keyed)
      assert.deepStrictEqual([s.keys, s.admitted, s.rejected.Exceeded, s.perKey], [2, 4, 3, undefined])
    }))

  it.effect("a key at rest is dropped without loss; a key not at rest is never dropped: TooManyKeys instead", () =>
    Effect.gen(function*() {
      const keyed = yield* KeyedRateLimiter.make({ name: "k", algorithm: fixed, maxKeys: 2 })
      assert.isTrue(yield* passKey(keyed, "a"))
      assert.isTrue(yield* passKey(keyed, "b"))
      const e = yield* Effect.flip(Effect.void.pipe(KeyedRateLimiter.guard(keyed, "c")))
      assert.deepStrictEqual([e.reason, ms(e.retryAfter)], ["TooManyKeys", 1000]) // "a" is at rest when its window ends
      yield* TestClock.adjust("1 second") // both windows over: both keys at rest
      assert.isTrue(yield* passKey(keyed, "c")) // "a", least recently used, is dropped
      assert.isTrue(yield* passKey(keyed, "b"))
      assert.isTrue(yield* passKey(keyed, "b"))
      assert.isFalse(yield* passKey(keyed, "b")) // "b" kept its count
      const s = yield* KeyedRateLimiter.stats(keyed)
      assert.deepStrictEqual([s.keys, s.reclaimed, s.rejected.TooManyKeys, s.admitted], [2, 1, 1, 5])
    }))

  it.effect("keys unused for idleTimeToLive and at rest are dropped when a new key arrives", () =>
    Effect.gen(function*() {
      const keyed = yield* KeyedRateLimiter.make({ name: "ttl", algorithm: fixed, maxKeys: 100, idleTimeToLive: "5 seconds" })
      yield* Effect.forEach(["a", "b", "c"], (k) => passKey(keyed, k))
      yield* TestClock.adjust("3 seconds")
      yield* passKey(keyed, "b")
      yield* TestClock.adjust("3 seconds")
      yield* passKey(keyed, "d") // "a" and "c" idle for 6 s: dropped; "b" used 3 s ago: kept
      const s = yield* KeyedRateLimiter.stats(keyed)
      assert.deepStrictEqual([s.keys, s.reclaimed], [2, 2])
    }))

  it.effect("a key with a waiting caller is not dropped; the new key is refused until one can be", () =>
    Effect.gen(function*() {
      const keyed = yield* KeyedRateLimiter.make({
        name: "kw",
        algorithm: RateLimiter.tokenBucket({ capacity: 1, refill: 1, per: "1 second" }),
        onExceeded: "wait",
        maxKeys: 1
      })
      yield* Effect.void.pipe(KeyedRateLimiter.guard(keyed, "a"))
      const waiting = yield* Effect.forkChild(Effect.void.pipe(KeyedRateLimiter.guard(keyed, "a")))
      yield* settle
      const e = yield* Effect.flip(Effect.void.pipe(KeyedRateLimiter.guard(keyed, "b")))
      assert.deepStrictEqual([e.reason, ms(e.retryAfter)], ["TooManyKeys", 2000]) // "a" is full again at 2000
      yield* Fiber.interrupt(waiting) // its reservation goes back: "a" is full at 1000
      assert.isFalse(yield* Effect.void.pipe(KeyedRateLimiter.guard(keyed, "b"), Effect.as(true), Effect.catchTag("RateLimited", () => Effect.succeed(false))))
      yield* TestClock.adjust("1 second")
      assert.isTrue(yield* Effect.void.pipe(KeyedRateLimiter.guard(keyed, "b"), Effect.as(true)))
    }))

  it.effect("keys stay out of errors, events and metric labels unless exposeKeys", () =>
    Effect.gen(function*() {
      const registry: Metric.MetricRegistry = new Map()
      const withRegistry = Effect.provideService(Metric.MetricRegistry, registry)
      const hidden = yield* KeyedRateLimiter.make({ name: "hidden", algorithm: fixed, maxKeys: 10 }).pipe(withRegistry)
      const shown = yield* KeyedRateLimiter.make({ name: "shown", algorithm: fixed, maxKeys: 10, exposeKeys: true }).pipe(withRegistry)
      const collected = yield* Effect.forkChild(
        Stream.runCollect(Stream.merge(KeyedRateLimiter.events(hidden), KeyedRateLimiter.events(shown)).pipe(Stream.take(6)))
      )
      yield* settle
      for (const keyed of [hidden, shown]) {
        for (let i = 0; i < 3; i++) yield* Effect.exit(Effect.void.pipe(KeyedRateLimiter.guard(keyed, "tenant-secret")))
      }
      const events = yield* Fiber.join(collected)
      assert.deepStrictEqual(events.filter((e) => e.name === "hidden").map((e) => "key" in e), [false, false, false])
      assert.deepStrictEqual(events.filter((e) => e.name === "shown").map((e) => "key" in e ? e.key : undefined), [
        "tenant-secret",
        "tenant-secret",
        "tenant-secret"
      ])
      const hiddenError = yield* Effect.flip(Effect.void.pipe(KeyedRateLimiter.guard(hidden, "tenant-secret")))
      const shownError = yield* Effect.flip(Effect.void.pipe(KeyedRateLimiter.guard(shown, "tenant-secret")))
      assert.isFalse("key" in hiddenError)
      assert.strictEqual(shownError.key, "tenant-secret")
      assert.include(shownError.message, "[tenant-secret]")
      const snapshot = yield* Metric.snapshot.pipe(withRegistry)
      const labels = (name: string) =>
        snapshot.filter((m) => m.id.startsWith("bulwark.ratelimiter.") && m.attributes?.name === name).map((m) => m.attributes ?? {})
      assert.isFalse(labels("hidden").some((a) => "key" in a))
      assert.isTrue(labels("shown").some((a) => a.key === "tenant-secret"))
      const perKey = (yield* KeyedRateLimiter.stats(shown)).perKey
      assert.deepStrictEqual(perKey?.map((k) => [k.key, k.remaining]), [["tenant-secret", 0]])
    }))

  it.effect("block, consume and layer work per key", () =>
    Effect.gen(function*() {
      class PerUser extends Context.Service<PerUser, KeyedRateLimiter.KeyedRateLimiter>()("test/PerUser") {}
      const live = KeyedRateLimiter.layer(PerUser, { name: "pu", algorithm: fixed, maxKeys: 10 })
      yield* Effect.gen(function*() {
        yield* KeyedRateLimiter.block(PerUser, "a", "5 seconds")
        const e = yield* Effect.flip(Effect.void.pipe(KeyedRateLimiter.guard(PerUser, "a")))
        assert.deepStrictEqual([e.reason, ms(e.retryAfter)], ["Blocked", 5000])
        const permit = yield* KeyedRateLimiter.consume(PerUser, "b")
        assert.deepStrictEqual([permit.limit, permit.remaining, ms(permit.resetAfter)], [2, 1, 1000])
        const over = yield* Effect.flip(KeyedRateLimiter.consume(PerUser, "b", { cost: 3 }))
        assert.deepStrictEqual([over.reason, Duration.isFinite(over.retryAfter)], ["Exceeded", false])
      }).pipe(Effect.provide(live))
    }))
})

// -----------------------------------------------------------------------------
// rule 8: stats, events, metrics
// -----------------------------------------------------------------------------

describe("RateLimiter rule 8: stats, events and pull-based metrics", () => {
  it.effect("events report admissions, rejections, cancellations and blocks, and end with the scope", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const limiter = yield* RateLimiter.make({
        name: "ev",
        algorithm: RateLimiter.tokenBucket({ capacity: 1, refill: 1, per: "100 millis" }),
        onExceeded: "wait",
        maxWait: "150 millis"
      }).pipe(Scope.provide(scope))
      const collected = yield* Effect.forkChild(Stream.runCollect(RateLimiter.events(limiter)))
      yield* settle
      const { start } = caller(RateLimiter.guard(limiter))
      yield* start("a") // Admitted, waited 0
      const b = yield* start("b") // waits for 100
      yield* start("c") // slot 200 > 150: Rejected WaitTooLong
      yield* Fiber.interrupt(b) // Cancelled
      yield* start("d") // takes b's slot
      yield* TestClock.adjust("100 millis") // Admitted, waited 100
      yield* RateLimiter.block(limiter, "1 second")
      yield* Scope.close(scope, Exit.void)
      const events = yield* Fiber.join(collected)
      assert.deepStrictEqual(
        events.map((e) => {
          switch (e._tag) {
            case "Admitted":
              return `Admitted ${e.cost} ${ms(e.waited)}`
            case "Rejected":
              return `Rejected ${e.reason} ${ms(e.retryAfter)}`
            case "Cancelled":
              return `Cancelled ${e.cost}`
            case "Blocked":
              return `Blocked ${e.until}`
          }
        }),
        ["Admitted 1 0", "Rejected WaitTooLong 200", "Cancelled 1", "Admitted 1 100", "Blocked 1100"]
      )
    }))

  it.effect("stats: cumulative counters, remaining, waiting and sequence", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make({ name: "st", algorithm: RateLimiter.gcra({ rate: 1, per: "1 second", burst: 4 }) })
      yield* pass(limiter, 3)
      yield* pass(limiter, 2)
      const a = yield* RateLimiter.stats(limiter)
      const b = yield* RateLimiter.stats(limiter)
      assert.deepStrictEqual([a.admitted, a.admittedCost, a.rejectedTotal, a.remaining, a.onExceeded, a.waiting], [1, 3, 1, 1, "fail", 0])
      assert.isTrue(b.sequence > a.sequence)
      assert.strictEqual(a.limiterId, b.limiterId)
      assert.deepStrictEqual(a.algorithm, { _tag: "Gcra", rate: 1, perMillis: 1000, burst: 4 })
    }))

  it.effect("metrics: admitted, rejected by reason, waiting and remaining, labelled by name (and reason) only, removed with the scope", () =>
    Effect.gen(function*() {
      const registry: Metric.MetricRegistry = new Map()
      const withRegistry = Effect.provideService(Metric.MetricRegistry, registry)
      const scope = yield* Scope.make()
      const limiter = yield* RateLimiter.make({
        name: "m",
        algorithm: RateLimiter.fixedWindow({ limit: 3, window: "1 second" }),
        onExceeded: "wait",
        maxWait: "500 millis"
      }).pipe(Scope.provide(scope), withRegistry)
      yield* pass(limiter, 2)
      yield* TestClock.adjust("600 millis")
      const waiter = yield* Effect.forkChild(Effect.void.pipe(RateLimiter.guard(limiter, { cost: 2 }))) // slot 1000
      yield* settle
      yield* Effect.exit(Effect.void.pipe(RateLimiter.guard(limiter, { cost: 3 }))) // slot 2000: too long
      const read = Metric.snapshot.pipe(withRegistry)
      const value = (snapshot: ReadonlyArray<Metric.Metric.Snapshot>, id: string, attributes: Record<string, string>) => {
        const found = snapshot.filter((m) => m.id === id && JSON.stringify(m.attributes) === JSON.stringify(attributes))
        assert.strictEqual(found.length, 1, `${id} ${JSON.stringify(attributes)}`)
        const state = found[0].state as { readonly count?: number; readonly value?: number }
        return Number(state.count ?? state.value)
      }
      let s = yield* read
      assert.strictEqual(value(s, "bulwark.ratelimiter.admitted", { name: "m" }), 1)
      assert.strictEqual(value(s, "bulwark.ratelimiter.waiting", { name: "m" }), 1)
      assert.strictEqual(value(s, "bulwark.ratelimiter.remaining", { name: "m" }), 0)
      assert.strictEqual(value(s, "bulwark.ratelimiter.rejected", { name: "m", reason: "WaitTooLong" }), 1)
      assert.strictEqual(value(s, "bulwark.ratelimiter.rejected", { name: "m", reason: "Exceeded" }), 0)
      assert.strictEqual(value(s, "bulwark.ratelimiter.rejected", { name: "m", reason: "Blocked" }), 0)
      for (const m of s.filter((m) => m.id.startsWith("bulwark.ratelimiter."))) {
        const keys = Object.keys(m.attributes ?? {}).sort()
        assert.deepStrictEqual(keys, m.id === "bulwark.ratelimiter.rejected" ? ["name", "reason"] : ["name"], m.id)
      }
      yield* TestClock.adjust("400 millis")
      yield* Fiber.join(waiter)
      s = yield* read
      assert.strictEqual(value(s, "bulwark.ratelimiter.admitted", { name: "m" }), 2)
      assert.strictEqual(value(s, "bulwark.ratelimiter.waiting", { name: "m" }), 0)
      assert.strictEqual(value(s, "bulwark.ratelimiter.remaining", { name: "m" }), 1)
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual((yield* read).filter((m) => m.id.startsWith("bulwark.ratelimiter.")), [])
    }))

  it.effect("keyed metrics are totals over keys, with a keys gauge and TooManyKeys", () =>
    Effect.gen(function*() {
      const registry: Metric.MetricRegistry = new Map()
      const withRegistry = Effect.provideService(Metric.MetricRegistry, registry)
      const keyed = yield* KeyedRateLimiter.make({
        name: "km",
        algorithm: RateLimiter.fixedWindow({ limit: 1, window: "1 second" }),
        maxKeys: 2
      }).pipe(withRegistry)
      for (const key of ["a", "b", "a", "c"]) yield* Effect.exit(Effect.void.pipe(KeyedRateLimiter.guard(keyed, key)))
      const s = yield* Metric.snapshot.pipe(withRegistry)
      const find = (id: string, attributes: Record<string, string>) =>
        s.find((m) => m.id === id && JSON.stringify(m.attributes) === JSON.stringify(attributes))?.state as
          | { readonly count?: number; readonly value?: number }
          | undefined
      assert.strictEqual(find("bulwark.ratelimiter.keys", { name: "km" })?.value, 2)
      assert.strictEqual(find("bulwark.ratelimiter.admitted", { name: "km" })?.count, 2)
      assert.strictEqual(find("bulwark.ratelimiter.rejected", { name: "km", reason: "Exceeded" })?.count, 1)
      assert.strictEqual(find("bulwark.ratelimiter.rejected", { name: "km", reason: "TooManyKeys" })?.count, 1)
    }))
})

// -----------------------------------------------------------------------------
// rule 9: the store
// -----------------------------------------------------------------------------

/** The in-memory store seen through its `Effect` operations only, as a remote store would be. */
const sharedMemoryStore = () => {
  const inner = RateLimiterStore.memory()
  const calls = { consume: 0, refund: 0, block: 0 }
  const store = RateLimiterStore.make({
    consume: (...args) => Effect.suspend(() => (calls.consume++, inner.consume(...args))),
    refund: (...args) => Effect.suspend(() => (calls.refund++, inner.refund(...args))),
    block: (...args) => Effect.suspend(() => (calls.block++, inner.block(...args)))
  })
  return { store, calls, inner }
}

describe("RateLimiter rule 9: state behind a store, one atomic call per decision", () => {
  it.effect("an in-process store is called synchronously, exactly once per decision", () =>
    Effect.gen(function*() {
      const memory = RateLimiterStore.memory()
      const inProcess = memory.inProcess!
      let consumes = 0
      const counted = RateLimiterStore.make({
        ...memory,
        inProcess: {
          ...inProcess,
          consume: (...args) => (consumes++, inProcess.consume(...args))
        }
      })
      const limiter = yield* RateLimiter.make({
        name: "count",
        algorithm: RateLimiter.tokenBucket({ capacity: 2, refill: 1, per: "1 second" }),
        store: counted
      })
      yield* pass(limiter)
      yield* pass(limiter)
      yield* pass(limiter)
      assert.strictEqual(consumes, 3)
      assert.strictEqual(inProcess.size(), 1)
      assert.strictEqual(inProcess.remaining("count", limiter.algorithm, 0), 0)
    }))

  it.effect("a shared store (Effect operations only) gives the same decisions, one consume per decision", () =>
    Effect.gen(function*() {
      const { store, calls } = sharedMemoryStore()
      const algorithm = RateLimiter.slidingWindow({ limit: 3, window: "1 second" })
      const local = yield* RateLimiter.make({ name: "s", algorithm })
      const shared = yield* RateLimiter.make({ name: "s", algorithm, store })
      const steps = [0, 100, 100, 500, 300, 50, 400, 200]
      for (const step of steps) {
        yield* TestClock.adjust(step)
        const [a, b] = [yield* Effect.exit(Effect.void.pipe(RateLimiter.guard(local))), yield* Effect.exit(Effect.void.pipe(RateLimiter.guard(shared)))]
        assert.strictEqual(Exit.isSuccess(a), Exit.isSuccess(b))
        if (Exit.isFailure(a) && Exit.isFailure(b)) {
          const [ea, eb] = [Cause.squash(a.cause) as RateLimited, Cause.squash(b.cause) as RateLimited]
          assert.deepStrictEqual([ea.reason, ms(ea.retryAfter)], [eb.reason, ms(eb.retryAfter)])
        }
      }
      assert.strictEqual(calls.consume, steps.length)
      yield* TestClock.adjust("1 second")
      const permit = yield* RateLimiter.consume(shared)
      assert.deepStrictEqual([permit.limit, permit.remaining, ms(permit.resetAfter)], [3, 2, 1000])
    }))

  it.effect("with a shared store, waiting, FIFO and refunds on interruption work through Effect calls", () =>
    Effect.gen(function*() {
      const { store, calls } = sharedMemoryStore()
      const limiter = yield* RateLimiter.make({
        name: "sh",
        algorithm: RateLimiter.fixedWindow({ limit: 1, window: "100 millis" }),
        onExceeded: "wait",
        maxWait: "250 millis",
        store
      })
      const { started, start } = caller(RateLimiter.guard(limiter))
      yield* start("a")
      const b = yield* start("b") // slot 100
      const c = yield* start("c") // slot 200
      const d = yield* start("d") // slot 300 > 250
      assert.strictEqual(rejection(d).reason, "WaitTooLong")
      yield* Fiber.interrupt(c) // the latest reservation goes back
      yield* start("e") // and the next arrival takes it: slot 200
      yield* Fiber.interrupt(b) // refunded too; with a shared store the waiters behind keep their slot
      assert.strictEqual(calls.refund, 2)
      yield* TestClock.adjust("300 millis")
      assert.deepStrictEqual(started.map((x) => `${x.label}@${x.at}`), ["a@0", "e@200"])
    }))

  it.effect("with a shared store, a block rejects the waiters whose slot falls inside it and keeps the others", () =>
    Effect.gen(function*() {
      const { store, calls } = sharedMemoryStore()
      const limiter = yield* RateLimiter.make({
        name: "shb",
        algorithm: RateLimiter.fixedWindow({ limit: 1, window: "100 millis" }),
        onExceeded: "wait",
        store
      })
      const { started, start } = caller(RateLimiter.guard(limiter))
      yield* start("a")
      const b = yield* start("b") // slot 100
      const c = yield* start("c") // slot 200
      yield* RateLimiter.block(limiter, "150 millis")
      yield* settle
      assert.deepStrictEqual([rejection(b).reason, ms(rejection(b).retryAfter)], ["Blocked", 150])
      assert.deepStrictEqual([calls.block, calls.refund], [1, 1])
      yield* TestClock.adjust("300 millis")
      assert.strictEqual(admittedAt(c), 200)
      assert.deepStrictEqual(started.map((x) => x.label), ["a", "c"])
    }))

  it.effect("the memory store undoes the latest reservation exactly, and forfeits a token bucket refund that is not the latest", () =>
    Effect.sync(() => {
      const store = RateLimiterStore.memory().inProcess!
      const bucket: RateLimiterStore.Algorithm = { _tag: "TokenBucket", capacity: 1, refill: 1, perMillis: 100 }
      assert.isTrue(store.consume("k", bucket, 1, 0, 0).admitted)
      const first = store.consume("k", bucket, 1, 0, Infinity).at // 100
      const second = store.consume("k", bucket, 1, 0, Infinity).at // 200
      assert.deepStrictEqual([first, second], [100, 200])
      store.refund("k", bucket, 1, first, 0) // not the latest: crediting it would let two pass at 200
      assert.strictEqual(store.consume("k", bucket, 1, 0, Infinity).at, 300)
      store.refundLatest("k", bucket, 1, 300, 0)
      store.refundLatest("k", bucket, 1, second, 0)
      store.refundLatest("k", bucket, 1, first, 0)
      assert.strictEqual(store.consume("k", bucket, 1, 0, Infinity).at, 100)
      const windowed: RateLimiterStore.Algorithm = { _tag: "FixedWindow", limit: 1, windowMillis: 100 }
      assert.isTrue(store.consume("w", windowed, 1, 0, 0).admitted)
      const w1 = store.consume("w", windowed, 1, 0, Infinity).at
      store.consume("w", windowed, 1, 0, Infinity)
      store.refund("w", windowed, 1, w1, 0) // window counts: exact in any order
      assert.strictEqual(store.consume("w", windowed, 1, 0, Infinity).at, 300) // FIFO: never before the last reservation
      assert.strictEqual(store.resetAt("w", windowed, 0), 400)
      store.forget("w")
      assert.strictEqual(store.size(), 1)
      assert.isTrue(RateLimiterStore.isRateLimiterStore(RateLimiterStore.memory()))
    }))

  it.effect("consume returns the figures for RateLimit headers", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make({
        name: "hdr",
        algorithm: RateLimiter.tokenBucket({ capacity: 10, refill: 2, per: "1 second" }),
        onExceeded: "wait"
      })
      const first = yield* RateLimiter.consume(limiter, { cost: 4 })
      assert.deepStrictEqual([first.limit, first.remaining, ms(first.resetAfter), ms(first.waited)], [10, 6, 2000, 0])
      yield* RateLimiter.consume(limiter, { cost: 6 })
      const waited = yield* Effect.forkChild(RateLimiter.consume(limiter, { cost: 3 }))
      yield* TestClock.adjust("2 seconds")
      const p = yield* Fiber.join(waited)
      assert.deepStrictEqual([p.remaining, ms(p.waited), ms(p.resetAfter)], [1, 2000, 5000])
    }))
})

// -----------------------------------------------------------------------------
// rule 10: options
// -----------------------------------------------------------------------------

describe("RateLimiter rule 10: invalid options fail with InvalidOptions naming every field; a bad cost is a defect", () => {
  it.effect("every bad field and its rule, in one InvalidOptions", () =>
    Effect.gen(function*() {
      const e = yield* Effect.flip(RateLimiter.make({
        name: " ",
        algorithm: RateLimiter.tokenBucket({ capacity: 0, refill: 1.5, per: "1500 micros" }),
        onExceeded: "sometimes" as "wait",
        maxWait: "soon" as Duration.Input
      }))
      assert.instanceOf(e, InvalidOptions)
      assert.strictEqual(e.primitive, "RateLimiter")
      for (const field of ["name", "algorithm.capacity", "algorithm.refill", "algorithm.per", "onExceeded", "maxWait"]) {
        assert.include(e.message, `${field}: `, field)
      }
      const g = yield* Effect.flip(RateLimiter.make({ name: "g", algorithm: RateLimiter.gcra({ rate: 0, per: 0, burst: -1 }) }))
      for (const field of ["algorithm.rate", "algorithm.per", "algorithm.burst"]) assert.include(g.message, `${field}: `, field)
      const w = yield* Effect.flip(RateLimiter.make({ name: "w", algorithm: RateLimiter.slidingWindow({ limit: 1, window: "1 second" }), maxWait: "1 second" }))
      assert.strictEqual(w.message, `maxWait: applies only with onExceeded "wait" (callers that fail at once never wait)`)
      const s = yield* Effect.flip(RateLimiter.make({ name: "s", algorithm: RateLimiter.fixedWindow({ limit: 1, window: 1 }), store: {} as RateLimiterStore.RateLimiterStore }))
      assert.include(s.message, "store: ")
      const k = yield* Effect.flip(KeyedRateLimiter.make({ name: "k", algorithm: RateLimiter.fixedWindow({ limit: 1, window: 1 }), maxKeys: 0 }))
      assert.deepStrictEqual([k.primitive, k.message.startsWith("maxKeys: ")], ["KeyedRateLimiter", true])
    }))

  it.effect("a cost that is not a positive integer is a defect naming the option", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make({ name: "c", algorithm: RateLimiter.fixedWindow({ limit: 5, window: "1 second" }) })
      for (const cost of [0, 1.5, -1, Number.NaN]) {
        const exit = yield* Effect.exit(Effect.void.pipe(RateLimiter.guard(limiter, { cost })))
        assert.isTrue(Exit.hasDies(exit))
        assert.include(String(Cause.squash((exit as Exit.Failure<void, unknown>).cause)), `option "cost" must be a positive integer`)
      }
      assert.strictEqual((yield* RateLimiter.stats(limiter)).admitted, 0)
    }))
})

// -----------------------------------------------------------------------------
// model
// -----------------------------------------------------------------------------

type Algorithm = RateLimiterStore.Algorithm
interface Entry {
  readonly id: number
  readonly time: number
  readonly cost: number
  /** GCRA: the theoretical time the call was charged at, scaled by the rate (ms * rate, an integer). */
  readonly charged?: number
}

const limitOf = (a: Algorithm): number =>
  a._tag === "TokenBucket" ? a.capacity : a._tag === "Gcra" ? a.burst : a.limit

/**
 * Whether a call of `cost` at `s` fits, given `log` (every admission and
 * reservation, all at or before `s`), by each algorithm's definition.
 */
const fits = (a: Algorithm, log: ReadonlyArray<Entry>, s: number, cost: number): boolean => {
  switch (a._tag) {
    case "TokenBucket": {
      // A bucket full from the start, refilled tick by tick and clipped at its capacity.
      let tokens = a.capacity
      let tick = log.length === 0 ? Math.floor(s / a.perMillis) : Math.floor(log[0].time / a.perMillis)
      const refillTo = (t: number) => {
        const k = Math.floor(t / a.perMillis)
        for (; tick < k; tick++) tokens = Math.min(a.capacity, tokens + a.refill)
      }
      for (const e of log) {
        refillTo(e.time)
        tokens -= e.cost
      }
      refillTo(s)
      return tokens >= cost
    }
    case "Gcra":
      return gcraCharge(a, log, s, cost) === s * a.rate
    case "FixedWindow": {
      const window = Math.floor(s / a.windowMillis)
      let used = 0
      for (const e of log) if (Math.floor(e.time / a.windowMillis) === window) used += e.cost
      return used + cost <= a.limit
    }
    case "SlidingWindow": {
      let used = 0
      for (const e of log) if (e.time > s - a.windowMillis && e.time <= s) used += e.cost
      return used + cost <= a.limit
    }
  }
}

/**
 * GCRA as a bucket of `burst` refilled continuously at rate/per, in time
 * scaled by the rate (1 unit = 1/rate ms) so that every level and time is an
 * integer: the earliest theoretical time at or after `from` (ms) at which a
 * call of `cost` fits, given the calls charged so far at their theoretical
 * times. The call's slot is that time rounded up to a whole millisecond,
 * but it is charged at the theoretical time: the rounding never accumulates.
 */
const gcraCharge = (a: Extract<Algorithm, { _tag: "Gcra" }>, log: ReadonlyArray<Entry>, from: number, cost: number): number => {
  const cap = a.burst * a.perMillis
  let level = cap
  let last = -Infinity
  for (const e of log) {
    const t = e.charged!
    level = last === -Infinity ? cap : Math.min(cap, level + (t - last))
    level -= e.cost * a.perMillis
    last = t
  }
  const start = from * a.rate
  const need = cost * a.perMillis
  if (last === -Infinity) return start
  const atStart = Math.min(cap, level + (start - last))
  return atStart >= need ? start : last + (need - level)
}

/** The earliest millisecond at or after `from` at which the call fits. */
const earliest = (a: Algorithm, log: ReadonlyArray<Entry>, from: number, cost: number): number => {
  if (cost > limitOf(a)) return Infinity
  if (a._tag === "Gcra") return Math.ceil(gcraCharge(a, log, from, cost) / a.rate)
  let s = from
  for (let guard = 0; guard < 1_000_000; guard++) {
    if (fits(a, log, s, cost)) return s
    // Within a tick (token bucket) or a window (fixed window) nothing changes.
    if (a._tag === "TokenBucket") s = (Math.floor(s / a.perMillis) + 1) * a.perMillis
    else if (a._tag === "FixedWindow") s = (Math.floor(s / a.windowMillis) + 1) * a.windowMillis
    else s++
  }
  throw new Error("model: no slot found")
}

type Outcome =
  | { readonly _tag: "Admitted"; readonly at: number }
  | { readonly _tag: "Rejected"; readonly reason: string; readonly retryAfter: number }
  | { readonly _tag: "Interrupted" }

interface ModelWaiter {
  readonly id: number
  readonly cost: number
  readonly deadline: number
  slot: number
}

/** The limiter by its documented rules, over the simulations above. */
class Model {
  readonly log: Array<Entry> = []
  readonly waiters: Array<ModelWaiter> = []
  readonly outcomes = new Map<number, Outcome>()
  blockedUntil = -Infinity
  readonly a: Algorithm
  readonly wait: boolean
  readonly maxWait: number
  constructor(a: Algorithm, wait: boolean, maxWait: number) {
    this.a = a
    this.wait = wait
    this.maxWait = maxWait
  }

  private lowerBound(now: number): number {
    // GCRA needs no floor from the last slot: its theoretical times only grow, and so do their slots.
    const last = this.log.length === 0 || this.a._tag === "Gcra" ? -Infinity : this.log[this.log.length - 1].time
    return Math.max(now, last, this.blockedUntil)
  }

  /** Plans a call: its slot, and the log entry that charges it. */
  private plan(id: number, cost: number, now: number): Entry {
    const from = this.lowerBound(now)
    const slot = earliest(this.a, this.log, from, cost)
    const a = this.a
    return a._tag === "Gcra" && slot !== Infinity
      ? { id, time: slot, cost, charged: gcraCharge(a, this.log, from, cost) }
      : { id, time: slot, cost }
  }

  arrive(id: number, cost: number, now: number): void {
    if (cost > limitOf(this.a)) {
      this.outcomes.set(id, { _tag: "Rejected", reason: "Exceeded", retryAfter: Infinity })
      return
    }
    const entry = this.plan(id, cost, now)
    const slot = entry.time
    if (slot - now > this.maxWait) {
      const reason = this.blockedUntil - now > this.maxWait ? "Blocked" : this.wait ? "WaitTooLong" : "Exceeded"
      this.outcomes.set(id, { _tag: "Rejected", reason, retryAfter: slot - now })
      return
    }
    this.log.push(entry)
    if (slot <= now) this.outcomes.set(id, { _tag: "Admitted", at: now })
    else this.waiters.push({ id, cost, deadline: now + this.maxWait, slot })
  }

  advance(to: number): void {
    while (this.waiters.length > 0 && this.waiters[0].slot <= to) {
      const w = this.waiters.shift()!
      this.outcomes.set(w.id, { _tag: "Admitted", at: w.slot })
    }
  }

  private withdraw(from: number): Array<ModelWaiter> {
    const moved = this.waiters.splice(from)
    const ids = new Set(moved.map((w) => w.id))
    for (let i = this.log.length - 1; i >= 0; i--) if (ids.has(this.log[i].id)) this.log.splice(i, 1)
    return moved
  }

  interrupt(id: number, now: number): void {
    const index = this.waiters.findIndex((w) => w.id === id)
    if (index < 0) return // already admitted or rejected
    const [gone, ...behind] = this.withdraw(index)
    this.outcomes.set(gone.id, { _tag: "Interrupted" })
    for (const w of behind) {
      const entry = this.plan(w.id, w.cost, now)
      if (entry.time > w.slot) throw new Error("model: a waiter moved later after a reservation was returned")
      w.slot = entry.time
      this.log.push(entry)
      this.waiters.push(w)
    }
    this.advance(now)
  }

  block(until: number, now: number): void {
    this.blockedUntil = Math.max(this.blockedUntil, until)
    for (const w of this.withdraw(0)) {
      const entry = this.plan(w.id, w.cost, now)
      if (entry.time > w.deadline) {
        this.outcomes.set(w.id, { _tag: "Rejected", reason: "Blocked", retryAfter: entry.time - now })
        continue
      }
      w.slot = entry.time
      this.log.push(entry)
      this.waiters.push(w)
    }
    this.advance(now)
  }
}

/** Model-independent check of an admission log against each algorithm's guarantee. */
const checkGuarantee = (a: Algorithm, admitted: ReadonlyArray<Entry>): void => {
  const log = [...admitted].sort((x, y) => x.time - y.time)
  const sumIn = (from: number, to: number, openStart: boolean) =>
    log.reduce((n, e) => (openStart ? e.time > from : e.time >= from) && e.time <= to ? n + e.cost : n, 0)
  for (const first of log) {
    for (const last of log) {
      if (last.time < first.time) continue
      const [lo, hi] = [first.time, last.time]
      switch (a._tag) {
        case "TokenBucket": {
          const ticks = Math.floor(hi / a.perMillis) - Math.floor(lo / a.perMillis)
          assert.isAtMost(sumIn(lo, hi, false), a.capacity + a.refill * ticks, `token bucket over [${lo}, ${hi}]`)
          break
        }
        case "Gcra":
          // Each slot is its theoretical time rounded up to a whole millisecond: at most 1 ms of slack.
          assert.isAtMost(sumIn(lo, hi, false) * a.perMillis, a.burst * a.perMillis + (hi - lo + 1) * a.rate, `GCRA over [${lo}, ${hi}]`)
          break
        case "FixedWindow":
          if (Math.floor(lo / a.windowMillis) === Math.floor(hi / a.windowMillis)) {
            const start = Math.floor(lo / a.windowMillis) * a.windowMillis
            assert.isAtMost(sumIn(start, start + a.windowMillis - 1, false), a.limit, `fixed window at ${start}`)
          }
          break
        case "SlidingWindow":
          assert.isAtMost(sumIn(hi - a.windowMillis, hi, true), a.limit, `sliding window ending at ${hi}`)
          break
      }
    }
  }
}

// -----------------------------------------------------------------------------
// properties
// -----------------------------------------------------------------------------

const int = (minimum: number, maximum: number) => Arbitrary.schema(Schema.Int.check(Schema.isBetween({ minimum, maximum })))

type Kind = RateLimiter.Algorithm["_tag"]
const kinds: ReadonlyArray<Kind> = ["TokenBucket", "Gcra", "FixedWindow", "SlidingWindow"]

/** Small parameters, so that windows, ticks and waits interleave with the steps below. */
const algorithmArbitrary = (kind: Kind) =>
  Arbitrary.all([int(1, 5), int(1, 4), int(3, 40)]).pipe(
    Arbitrary.map(([size, rate, period]): RateLimiter.Algorithm => {
      switch (kind) {
        case "TokenBucket":
          return RateLimiter.tokenBucket({ capacity: size, refill: Math.min(rate, size), per: period })
        case "Gcra":
          // small bursts, so that calls often take the whole bucket and slots are rounded up
          return RateLimiter.gcra({ rate, per: period, burst: Math.min(size, 3) })
        case "FixedWindow":
          return RateLimiter.fixedWindow({ limit: size, window: period })
        case "SlidingWindow":
          return RateLimiter.slidingWindow({ limit: size, window: period })
      }
    })
  )

const anyAlgorithm = Arbitrary.all([int(0, 3), algorithmArbitrary("TokenBucket"), algorithmArbitrary("Gcra"), algorithmArbitrary("FixedWindow"), algorithmArbitrary("SlidingWindow")]).pipe(
  Arbitrary.map(([i, ...algorithms]) => algorithms[i])
)

type Step =
  | { readonly _tag: "Arrive"; readonly cost: number }
  | { readonly _tag: "Advance"; readonly millis: number }
  | { readonly _tag: "Interrupt"; readonly index: number }
  | { readonly _tag: "Block"; readonly millis: number }

/** [kind 0..99, cost selector 0..9, x 0..40, index 0..30]; costs are mostly 1, sometimes 2 or 3, rarely 6 (often impossible). */
const stepArbitrary = (withInterrupts: boolean, withBlocks: boolean) =>
  Arbitrary.all([int(0, 99), int(0, 9), int(0, 40), int(0, 30)]).pipe(
    Arbitrary.map(([kind, selector, x, index]): Step => {
      if (kind < 50) return { _tag: "Arrive", cost: selector < 6 ? 1 : selector < 8 ? 2 : selector < 9 ? 3 : 6 }
      if (kind < 78) return { _tag: "Advance", millis: x }
      if (kind < 93 && withInterrupts) return { _tag: "Interrupt", index }
      if (withBlocks) return { _tag: "Block", millis: x * 2 }
      return { _tag: "Advance", millis: x % 7 }
    })
  )

interface Program {
  readonly algorithm: RateLimiter.Algorithm
  readonly wait: boolean
  readonly maxWait: number | undefined
  readonly steps: ReadonlyArray<Step>
}

const programArbitrary = (kind: Kind, mode: "fail" | "wait", withInterrupts: boolean, withBlocks: boolean) =>
  Arbitrary.all({
    algorithm: algorithmArbitrary(kind),
    maxWait: int(0, 250),
    unbounded: int(0, 3),
    start: int(0, 2000),
    steps: Arbitrary.array(stepArbitrary(withInterrupts, withBlocks), { minLength: 1, maxLength: 60 })
  }).pipe(Arbitrary.map((p) => ({
    algorithm: p.algorithm,
    wait: mode === "wait",
    maxWait: mode === "fail" ? undefined : p.unbounded === 0 ? undefined : p.maxWait,
    start: p.start,
    steps: p.steps
  })))

const toStore = (a: RateLimiter.Algorithm): Algorithm => {
  switch (a._tag) {
    case "TokenBucket":
      return { _tag: "TokenBucket", capacity: a.capacity, refill: a.refill, perMillis: a.per as number }
    case "Gcra":
      return { _tag: "Gcra", rate: a.rate, perMillis: a.per as number, burst: a.burst ?? 1 }
    case "FixedWindow":
      return { _tag: "FixedWindow", limit: a.limit, windowMillis: a.window as number }
    case "SlidingWindow":
      return { _tag: "SlidingWindow", limit: a.limit, windowMillis: a.window as number }
  }
}

/**
 * Runs a program against the real limiter under TestClock and against the
 * model, then compares every call's outcome and checks the admission log
 * against the algorithm's guarantee.
 */
const runProgram = (p: Program & { readonly start: number }) =>
  Effect.gen(function*() {
    yield* TestClock.setTime(p.start)
    const limiter = yield* RateLimiter.make({
      name: "prop",
      algorithm: p.algorithm,
      onExceeded: p.wait ? "wait" : "fail",
      ...(p.maxWait === undefined || !p.wait ? {} : { maxWait: p.maxWait })
    })
    const maxWait = !p.wait ? 0 : p.maxWait ?? Infinity
    const model = new Model(toStore(p.algorithm), p.wait, maxWait)
    const calls: Array<{ readonly id: number; readonly cost: number; readonly fiber: Fiber.Fiber<number, RateLimited> }> = []
    const bodies: Array<{ readonly id: number; readonly at: number }> = []
    for (const step of p.steps) {
      const t = yield* now
      switch (step._tag) {
        case "Arrive": {
          const id = calls.length
          const fiber = yield* Effect.forkChild(
            Effect.clockWith((clock) => Effect.sync(() => {
              const at = clock.currentTimeMillisUnsafe()
              bodies.push({ id, at })
              return at
            })).pipe(RateLimiter.guard(limiter, { cost: step.cost }))
          )
          calls.push({ id, cost: step.cost, fiber })
          model.arrive(id, step.cost, t)
          break
        }
        case "Advance":
          yield* TestClock.adjust(step.millis)
          model.advance(t + step.millis)
          break
        case "Interrupt": {
          // Interrupting a call that has ended does nothing: aim at the waiting ones.
          const live = calls.filter((c) => !isDone(c.fiber))
          if (live.length === 0) break
          const call = live[step.index % live.length]
          yield* Fiber.interrupt(call.fiber)
          model.interrupt(call.id, t)
          break
        }
        case "Block":
          yield* RateLimiter.block(limiter, step.millis)
          model.block(t + step.millis, t)
          break
      }
      yield* settle
    }
    const end = (yield* now) + 1_000_000
    yield* TestClock.setTime(end)
    model.advance(end)
    yield* settle
    for (const call of calls) {
      const exit = call.fiber.pollUnsafe()
      assert.isDefined(exit, `call ${call.id} has not ended`)
      let actual: Outcome
      if (Exit.isSuccess(exit!)) actual = { _tag: "Admitted", at: exit.value }
      else if (Exit.hasInterrupts(exit!)) actual = { _tag: "Interrupted" }
      else {
        const e = Cause.squash((exit as Exit.Failure<number, RateLimited>).cause) as RateLimited
        actual = { _tag: "Rejected", reason: e.reason, retryAfter: ms(e.retryAfter) }
      }
      assert.deepStrictEqual(actual, model.outcomes.get(call.id), `call ${call.id} (cost ${call.cost})`)
    }
    // FIFO: bodies start in arrival order, at non-decreasing times
    for (let i = 1; i < bodies.length; i++) {
      assert.isTrue(bodies[i].id > bodies[i - 1].id, `call ${bodies[i].id} started before call ${bodies[i - 1].id}`)
      assert.isAtLeast(bodies[i].at, bodies[i - 1].at)
    }
    checkGuarantee(
      toStore(p.algorithm),
      bodies.map((b) => ({ id: b.id, time: b.at, cost: calls[b.id].cost }))
    )
    const s = yield* RateLimiter.stats(limiter)
    assert.strictEqual(s.waiting, 0)
    assert.strictEqual(s.admitted, bodies.length)
  })

const runs = Number(process.env.RATELIMITER_RUNS ?? 400)

describe("RateLimiter properties: accuracy under TestClock", () => {
  for (const kind of kinds) {
    it.effect.prop(
      `${kind}, onExceeded fail: every decision and retryAfter matches the model, and admitted cost never exceeds the algorithm's bound over any window`,
      { p: programArbitrary(kind, "fail", false, true) },
      ({ p }) => runProgram(p),
      { arbitrary: { runs } }
    )
  }

  it.effect.prop(
    "an idle limiter refills as specified",
    { algorithm: anyAlgorithm, drainAt: int(0, 5000), idle: int(0, 200) },
    ({ algorithm, drainAt, idle }) =>
      Effect.gen(function*() {
        yield* TestClock.setTime(drainAt)
        const limiter = yield* RateLimiter.make({ name: "idle", algorithm })
        const a = toStore(algorithm)
        const full = yield* burst(limiter)
        assert.strictEqual(full, limitOf(a), "a new limiter admits its whole limit at once")
        yield* TestClock.adjust(idle)
        const t = drainAt + idle
        const expected = (() => {
          switch (a._tag) {
            case "TokenBucket":
              return Math.min(a.capacity, a.refill * (Math.floor(t / a.perMillis) - Math.floor(drainAt / a.perMillis)))
            case "Gcra":
              return Math.min(a.burst, Math.floor((idle * a.rate) / a.perMillis))
            case "FixedWindow":
              return Math.floor(t / a.windowMillis) > Math.floor(drainAt / a.windowMillis) ? a.limit : 0
            case "SlidingWindow":
              return idle >= a.windowMillis ? a.limit : 0
          }
        })()
        assert.strictEqual(yield* burst(limiter), expected)
      }),
    { arbitrary: { runs: runs * 2 } }
  )
})

describe("RateLimiter properties: FIFO and reservations under random arrive / interrupt / advance / block", () => {
  for (const kind of kinds) {
    it.effect.prop(
      `${kind}, onExceeded wait: every admission time, rejection and retryAfter matches the model (interrupted waiters' reservations go back, later ones move up); FIFO and the bound hold`,
      { p: programArbitrary(kind, "wait", true, false) },
      ({ p }) => runProgram(p),
      { arbitrary: { runs } }
    )
    it.effect.prop(
      `${kind}, onExceeded wait with blocks: waiters are planned again within their maxWait, or fail with Blocked`,
      { p: programArbitrary(kind, "wait", true, true) },
      ({ p }) => runProgram(p),
      { arbitrary: { runs } }
    )
  }
})

// -----------------------------------------------------------------------------
// regressions: shrunk counterexamples of the properties above, replayed step by step
// -----------------------------------------------------------------------------

describe("RateLimiter regressions", () => {
  // Property "Gcra, onExceeded wait with blocks", replay
  // [0,"-7827042135174027",11323,8,[1,8,1,1,1,1,0,2,3,7,3,8,11,9,11,10],"PropertyError"]: as reported
  // (start 0, no maxWait), and as the replay token decodes (start 846, maxWait 130).
  for (const { start, maxWait } of [{ start: 0, maxWait: undefined }, { start: 846, maxWait: 130 }]) {
    it.effect(`GCRA, wait, blocks: a waiter moved onto the slot of a later waiter still starts first (start ${start}, maxWait ${maxWait})`, () =>
      // GCRA 2 per 30 ms, burst 3: one unit every 15 ms. At +1 ms call 1 (cost 2) has slot +30 and
      // call 2 (cost 1) slot +45. A block until +45 moves call 1 to +45 and leaves call 2 at +45: both
      // are due at the same instant (call 2's timer, set first, fires first), and call 1 must still
      // start first.
      Effect.gen(function*() {
        yield* TestClock.setTime(start)
        const limiter = yield* RateLimiter.make({
          name: "regression-gcra-block",
          algorithm: RateLimiter.gcra({ rate: 2, per: 30, burst: 3 }),
          onExceeded: "wait",
          ...(maxWait === undefined ? {} : { maxWait })
        })
        const bodies: Array<string> = []
        const arrive = (id: number, cost: number) =>
          Effect.forkChild(
            Effect.clockWith((clock) => Effect.sync(() => bodies.push(`${id}@+${clock.currentTimeMillisUnsafe() - start}`))).pipe(
              RateLimiter.guard(limiter, { cost })
            )
          ).pipe(Effect.tap(() => settle))
        const calls = [yield* arrive(0, 3)] // passes now, empties the bucket
        yield* TestClock.adjust(1)
        yield* settle
        calls.push(yield* arrive(1, 2)) // slot +30
        calls.push(yield* arrive(2, 1)) // slot +45
        yield* RateLimiter.block(limiter, 44) // until +45: call 1 moves to +45, call 2 stays at +45
        yield* settle
        calls.push(yield* arrive(3, 1)) // slot +60
        yield* RateLimiter.block(limiter, 2) // shorter than the block in force: changes nothing
        yield* settle
        yield* TestClock.adjust(1_000)
        yield* settle
        assert.deepStrictEqual(calls.map(isDone), [true, true, true, true])
        assert.deepStrictEqual(bodies, ["0@+0", "1@+45", "2@+45", "3@+60"])
        const s = yield* RateLimiter.stats(limiter)
        assert.deepStrictEqual([s.admitted, s.admittedAfterWait, s.waiting], [4, 3, 0])
      }))
  }

  it.effect("token bucket, wait, block: the same collision, found by hand from the GCRA one", () =>
    // Not GCRA-specific: b's slot moves from 100 onto c's slot 200 (the bucket holds 2 at the end of
    // the block), c keeps its slot and its older timer, and b must still start first.
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make({
        name: "regression-tb-block",
        algorithm: RateLimiter.tokenBucket({ capacity: 2, refill: 1, per: "100 millis" }),
        onExceeded: "wait"
      })
      const { started, start } = caller(RateLimiter.guard(limiter))
      yield* caller(RateLimiter.guard(limiter, { cost: 2 })).start("a") // empties the bucket at 0
      yield* start("b") // slot 100
      yield* start("c") // slot 200
      yield* RateLimiter.block(limiter, "200 millis") // b moves to 200, c stays at 200
      yield* settle
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(started.map((x) => `${x.label}@${x.at}`), ["b@200", "c@200"])
    }))

  for (const shared of [false, true]) {
    it.effect(`a call whose slot is now starts after the waiters whose slot has come but whose fibers have not run yet (${shared ? "shared" : "in-process"} store)`, () =>
      // On a real clock a waiter's timer can fire after its slot: a caller arriving in between, whose slot
      // is the same millisecond, must not start first. The late timer is simulated by a caller whose clock
      // is 100 ms ahead of the TestClock that the waiter sleeps on.
      Effect.gen(function*() {
        const limiter = yield* RateLimiter.make({
          name: "regression-late-timer",
          algorithm: RateLimiter.tokenBucket({ capacity: 2, refill: 2, per: "100 millis" }),
          onExceeded: "wait",
          ...(shared ? { store: sharedMemoryStore().store } : {})
        })
        const bodies: Array<string> = []
        const body = (label: string) => Effect.sync(() => bodies.push(label))
        yield* body("a").pipe(RateLimiter.guard(limiter, { cost: 2 })) // the bucket is empty until 100
        const b = yield* Effect.forkChild(body("b").pipe(RateLimiter.guard(limiter))) // slot 100
        yield* settle
        const testClock = yield* Clock.Clock
        const ahead: Clock.Clock = Object.assign(Object.create(testClock), {
          currentTimeMillisUnsafe: () => testClock.currentTimeMillisUnsafe() + 100
        })
        // at 100 by its clock: one token is left at tick 1, so its slot is now, behind b
        const c = yield* Effect.forkChild(body("c").pipe(RateLimiter.guard(limiter), Effect.provideService(Clock.Clock, ahead)))
        yield* settle
        assert.deepStrictEqual([isDone(b), isDone(c)], [true, true])
        assert.deepStrictEqual(bodies, ["a", "b", "c"])
        const s = yield* RateLimiter.stats(limiter)
        assert.deepStrictEqual([s.admitted, s.admittedAfterWait, s.waiting], [3, 1, 0])
      }))
  }
})

describe("RateLimiter rule: GCRA's rate is exact when its spacing is not a whole number of milliseconds", () => {
  it.effect("400 per second (one every 2.5 ms), 1,000 waiting callers: 400 start in each second, each at its exact time rounded up", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make({
        name: "gcra-400",
        algorithm: RateLimiter.gcra({ rate: 400, per: "1 second" }),
        onExceeded: "wait"
      })
      const t0 = yield* Clock.currentTimeMillis
      const starts: Array<number> = []
      const fibers = []
      for (let i = 0; i < 1_000; i++) {
        fibers.push(yield* Effect.forkChild(Effect.clockWith((clock) => Effect.sync(() => void starts.push(clock.currentTimeMillisUnsafe() - t0))).pipe(RateLimiter.guard(limiter)), { startImmediately: true }))
      }
      yield* TestClock.adjust("3 seconds")
      for (const f of fibers) yield* Fiber.join(f)
      assert.strictEqual(starts.filter((t) => t < 1000).length, 400)
      assert.strictEqual(starts.filter((t) => t >= 1000 && t < 2000).length, 400)
      assert.deepStrictEqual(starts.slice(0, 6), [0, 3, 5, 8, 10, 13])
      assert.deepStrictEqual(starts.map((t, i) => t - Math.ceil(i * 2.5)).filter((d) => d !== 0), [])
    }))
})
