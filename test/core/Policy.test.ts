import { assert, describe, expectTypeOf, it } from "@effect/vitest"
import {
  Bulkhead,
  BulkheadFull,
  CircuitBreaker,
  CircuitOpen,
  InvalidOptions,
  Policy,
  RateLimited,
  RateLimiter,
  Retry,
  TimeoutExceeded
} from "@bulwark/core"
import { Context, Data, Effect, Exit, Fiber, Layer, Ref, Schedule } from "effect"
import { TestClock } from "effect/testing"

class HttpError extends Data.TaggedError("HttpError")<{ readonly status: number }> {}
class CacheMiss extends Data.TaggedError("CacheMiss") {}

const settle = Effect.gen(function*() {
  for (let i = 0; i < 20; i++) yield* Effect.yieldNow
})

const noJitter = (options: Retry.Options<unknown>) => Retry.policy({ jitter: "none", ...options })

const failure = (exit: Exit.Exit<unknown, unknown>): unknown => {
  assert.isTrue(Exit.isFailure(exit), "expected a failure")
  const error = Exit.isFailure(exit) ? exit.cause.reasons.find((r) => r._tag === "Fail") : undefined
  assert.isDefined(error, "expected a typed failure")
  return (error as { readonly error: unknown }).error
}

describe("Policy rule: one canonical order, outermost first", () => {
  it.effect("every stage configured: fallback, timeout, hedge, bulkhead, retry, rateLimiter, circuitBreaker, attemptTimeout", () =>
    Effect.gen(function*() {
      const policy = yield* Policy.make({
        name: "payments",
        attemptTimeout: "1 second",
        circuitBreaker: yield* CircuitBreaker.make({ name: "payments", trip: CircuitBreaker.consecutive(5), openFor: "30 seconds" }),
        rateLimiter: yield* RateLimiter.make({ name: "payments", algorithm: RateLimiter.gcra({ rate: 100, per: "1 second" }) }),
        retry: Retry.policy({ maxAttempts: 3 }),
        bulkhead: yield* Bulkhead.make({ name: "payments", maxConcurrent: 10, maxQueue: 20 }),
        hedge: { after: "200 millis", maxAttempts: 2 },
        timeout: "5 seconds",
        fallback: () => Effect.succeed("cached")
      })
      assert.deepStrictEqual(policy.order, [...Policy.canonicalOrder])
      assert.deepStrictEqual(policy.warnings, [])
      const description = Policy.describe(policy)
      assert.deepStrictEqual(description.stages.map((s) => s.stage), [...Policy.canonicalOrder])
      assert.include(description.text, `policy "payments", outermost first:`)
      assert.include(description.text, "timeout         5s for the whole call")
      assert.include(description.text, `"payments": 10 at once, 20 queued`)
      assert.include(description.text, "up to 3 attempts")
      assert.match(description.text, /9\. call +the guarded effect/)
    }).pipe(Effect.scoped))

  it.effect("a policy uses only the stages it has, in the canonical order", () =>
    Effect.gen(function*() {
      const policy = yield* Policy.make({ name: "p", attemptTimeout: 100, timeout: 500, retry: Retry.policy({}) })
      assert.deepStrictEqual(policy.order, ["timeout", "retry", "attemptTimeout"])
    }).pipe(Effect.scoped))

  it.effect("the canonical order never warns, whatever subset of stages is configured", () =>
    Effect.sync(() => {
      const stages = Policy.canonicalOrder
      for (let mask = 0; mask < 1 << stages.length; mask++) {
        const order = stages.filter((_, i) => (mask & (1 << i)) !== 0)
        assert.deepStrictEqual(Policy.check(order), [], order.join(","))
      }
    }))
})

describe("Policy rule: the error type is exact", () => {
  it.effect("only the configured stages' errors join E", () =>
    Effect.gen(function*() {
      const call: Effect.Effect<string, HttpError> = Effect.succeed("ok")
      const bulkheadOnly = yield* Policy.make({ name: "a", bulkhead: yield* Bulkhead.make({ name: "a", maxConcurrent: 1 }) })
      expectTypeOf(call.pipe(Policy.guard(bulkheadOnly))).toEqualTypeOf<Effect.Effect<string, HttpError | BulkheadFull>>()

      const retryOnly = yield* Policy.make({ name: "b", retry: Retry.policy({ maxAttempts: 2 }) })
      expectTypeOf(call.pipe(Policy.guard(retryOnly))).toEqualTypeOf<Effect.Effect<string, HttpError>>()

      const full = yield* Policy.make({
        name: "c",
        timeout: "1 second",
        circuitBreaker: yield* CircuitBreaker.make({ name: "c", trip: CircuitBreaker.consecutive(1), openFor: 10 }),
        rateLimiter: yield* RateLimiter.make({ name: "c", algorithm: RateLimiter.gcra({ rate: 1, per: "1 second" }), onExceeded: "fail" })
      })
      expectTypeOf(Policy.guard(call, full)).toEqualTypeOf<
        Effect.Effect<string, HttpError | CircuitOpen | RateLimited | TimeoutExceeded>
      >()
      assert.strictEqual(yield* Policy.guard(call, full), "ok")
    }).pipe(Effect.scoped))

  it.effect("with a fallback, E is the fallback's errors and A gains its result", () =>
    Effect.gen(function*() {
      const cached: Effect.Effect<number, CacheMiss> = Effect.succeed(0)
      const policy = yield* Policy.make({ name: "f", timeout: 10, fallback: () => cached })
      const call: Effect.Effect<string, HttpError> = Effect.fail(new HttpError({ status: 503 }))
      const guarded = call.pipe(Policy.guard(policy))
      expectTypeOf(guarded).toEqualTypeOf<Effect.Effect<string | number, CacheMiss>>()
      assert.strictEqual(yield* guarded, 0)

      const constant = yield* Policy.make({ name: "g", fallback: Effect.succeed("stale") })
      expectTypeOf(call.pipe(Policy.guard(constant))).toEqualTypeOf<Effect.Effect<string, never>>()
      assert.strictEqual(yield* call.pipe(Policy.guard(constant)), "stale")
    }).pipe(Effect.scoped))

  it.effect("a Schedule retry's and a fallback's requirements join R; keys are needed by make only", () =>
    Effect.gen(function*() {
      class Cache extends Context.Service<Cache, { readonly get: Effect.Effect<string> }>()("test/Cache") {}
      class Pool extends Context.Service<Pool, Bulkhead.Bulkhead>()("test/Pool") {}
      const made = Policy.make({
        name: "r",
        bulkhead: Pool,
        fallback: () => Effect.flatMap(Cache, (c) => c.get)
      })
      expectTypeOf(made).toEqualTypeOf<
        Effect.Effect<
          Policy.Policy<BulkheadFull, Cache, Effect.Effect<string, never, Cache>>,
          InvalidOptions,
          import("effect").Scope.Scope | Pool
        >
      >()
      const pool = yield* Bulkhead.make({ name: "pool", maxConcurrent: 1 })
      const policy = yield* made.pipe(Effect.provideService(Pool, pool))
      const guarded = Effect.fail(new HttpError({ status: 500 })).pipe(Policy.guard(policy))
      expectTypeOf(guarded).toEqualTypeOf<Effect.Effect<string, never, Cache>>()
      assert.strictEqual(yield* guarded.pipe(Effect.provideService(Cache, { get: Effect.succeed("from cache") })), "from cache")
      assert.strictEqual(policy.components.bulkhead, pool)
    }).pipe(Effect.scoped))
})

describe("Policy rule: the stages behave as the order says", () => {
  it.effect("the bulkhead holds one slot for all attempts; the rate limiter takes one permit per attempt", () =>
    Effect.gen(function*() {
      const bulkhead = yield* Bulkhead.make({ name: "b", maxConcurrent: 1 })
      const limiter = yield* RateLimiter.make({ name: "l", algorithm: RateLimiter.gcra({ rate: 100, per: "1 second", burst: 100 }) })
      const policy = yield* Policy.make({
        name: "p",
        bulkhead,
        rateLimiter: limiter,
        retry: noJitter({ maxAttempts: 3, base: "100 millis" })
      })
      const attempts = yield* Ref.make(0)
      const call = Ref.updateAndGet(attempts, (n) => n + 1).pipe(
        Effect.flatMap((n) => n < 3 ? Effect.fail(new HttpError({ status: 503 })) : Effect.succeed("ok"))
      )
      const fiber = yield* call.pipe(Policy.guard(policy), Effect.forkChild)
      yield* settle
      // In the backoff after the first attempt, the call still holds its slot.
      assert.strictEqual((yield* Bulkhead.stats(bulkhead)).inFlight, 1)
      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* Fiber.join(fiber), "ok")
      const b = yield* Bulkhead.stats(bulkhead)
      assert.strictEqual(b.admitted, 1)
      assert.strictEqual(b.inFlight, 0)
      assert.strictEqual((yield* RateLimiter.stats(limiter)).admitted, 3)
    }).pipe(Effect.scoped))

  it.effect("a hung attempt is cut by attemptTimeout and counted by the breaker as a failure", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make({ name: "cb", trip: CircuitBreaker.consecutive(2), openFor: "1 minute" })
      const policy = yield* Policy.make({ name: "p", circuitBreaker: breaker, attemptTimeout: "100 millis" })
      for (let i = 0; i < 2; i++) {
        const fiber = yield* Effect.never.pipe(Policy.guard(policy), Effect.exit, Effect.forkChild)
        yield* TestClock.adjust("100 millis")
        const error = failure(yield* Fiber.join(fiber))
        assert.instanceOf(error, TimeoutExceeded)
        assert.strictEqual((error as TimeoutExceeded).name, "p.attempt")
      }
      assert.strictEqual((yield* CircuitBreaker.state(breaker)).state, "Open")
    }).pipe(Effect.scoped))

  it.effect("a retry stops at once on a CircuitOpen whose retryAfter lies beyond the timeout", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make({ name: "cb", trip: CircuitBreaker.consecutive(1), openFor: "30 seconds" })
      const policy = yield* Policy.make({
        name: "p",
        timeout: "5 seconds",
        retry: noJitter({ maxAttempts: 5, base: "10 millis" }),
        circuitBreaker: breaker
      })
      const calls = yield* Ref.make(0)
      const call = Effect.andThen(Ref.update(calls, (n) => n + 1), Effect.fail(new HttpError({ status: 503 })))
      const fiber = yield* call.pipe(Policy.guard(policy), Effect.exit, Effect.forkChild)
      yield* TestClock.adjust("10 millis")
      yield* settle
      const exit = yield* Fiber.join(fiber)
      const error = failure(exit)
      // The first attempt tripped the breaker; the retry got CircuitOpen (30 s) and gave up without waiting.
      assert.instanceOf(error, CircuitOpen)
      assert.strictEqual(yield* Ref.get(calls), 1)
      const retry = policy.components.retry!
      assert.strictEqual((yield* Retry.stats(retry)).exhausted.MaxElapsed, 1)
    }).pipe(Effect.scoped))

  it.effect("a retry honours a short CircuitOpen.retryAfter and the half-open probe succeeds", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make({ name: "cb", trip: CircuitBreaker.consecutive(1), openFor: "1 second" })
      const policy = yield* Policy.make({
        name: "p",
        timeout: "5 seconds",
        retry: noJitter({ maxAttempts: 3, base: "10 millis" }),
        circuitBreaker: breaker
      })
      const calls = yield* Ref.make(0)
      const call = Ref.updateAndGet(calls, (n) => n + 1).pipe(
        Effect.flatMap((n) => n === 1 ? Effect.fail(new HttpError({ status: 503 })) : Effect.succeed("ok"))
      )
      const fiber = yield* call.pipe(Policy.guard(policy), Effect.forkChild)
      yield* TestClock.adjust("10 millis")
      yield* settle
      assert.strictEqual(yield* Ref.get(calls), 1)
      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* Fiber.join(fiber), "ok")
      assert.strictEqual(yield* Ref.get(calls), 2)
      assert.strictEqual((yield* CircuitBreaker.state(breaker)).state, "Closed")
    }).pipe(Effect.scoped))

  it.effect("time queued in the bulkhead counts against the deadline the retry honours", () =>
    Effect.gen(function*() {
      const bulkhead = yield* Bulkhead.make({ name: "b", maxConcurrent: 1, maxQueue: 1 })
      const breaker = yield* CircuitBreaker.make({ name: "c", trip: CircuitBreaker.consecutive(1), openFor: "300 millis" })
      const policy = yield* Policy.make({
        name: "p",
        timeout: "500 millis",
        bulkhead,
        retry: noJitter({ maxAttempts: 3, base: "10 millis" }),
        circuitBreaker: breaker,
        order: ["timeout", "bulkhead", "retry", "circuitBreaker"]
      })
      const holder = yield* Effect.sleep("300 millis").pipe(Policy.guard(policy), Effect.forkChild)
      yield* settle
      const queued = yield* Effect.fail(new HttpError({ status: 503 })).pipe(Policy.guard(policy), Effect.forkChild)
      yield* TestClock.adjust("300 millis")
      yield* Fiber.join(holder)
      yield* settle
      // Admitted at 300 ms, it failed and opened the circuit for 300 ms; its retry at 310 ms got
      // CircuitOpen with a retryAfter of 290 ms: 600 ms is past the 500 ms deadline, so the retry
      // returns that error at once instead of sleeping into TimeoutExceeded.
      yield* TestClock.adjust("10 millis")
      yield* settle
      const exit = queued.pollUnsafe()
      assert.isDefined(exit, "the call must be over at 310 ms")
      assert.instanceOf(failure(exit!), CircuitOpen)
    }).pipe(Effect.scoped))

  it.effect("the overall timeout bounds queueing, attempts and backoff together", () =>
    Effect.gen(function*() {
      const policy = yield* Policy.make({
        name: "p",
        timeout: "1 second",
        retry: noJitter({ maxAttempts: 100, base: "300 millis", max: "300 millis" })
      })
      const fiber = yield* Effect.fail(new HttpError({ status: 503 })).pipe(Policy.guard(policy), Effect.exit, Effect.forkChild)
      yield* TestClock.adjust("1 second")
      const exit = yield* Fiber.join(fiber)
      // The retry stops before an attempt that would start after the deadline, with the real error.
      assert.instanceOf(failure(exit), HttpError)
    }).pipe(Effect.scoped))

  it.effect("each hedged attempt takes its own bulkhead slot, and the loser's is released", () =>
    Effect.gen(function*() {
      const bulkhead = yield* Bulkhead.make({ name: "b", maxConcurrent: 2 })
      const policy = yield* Policy.make({ name: "p", bulkhead, hedge: { after: "50 millis", maxAttempts: 2 } })
      const started = yield* Ref.make(0)
      const call = Ref.updateAndGet(started, (n) => n + 1).pipe(
        Effect.flatMap((n) => Effect.sleep(n === 1 ? "1 second" : "10 millis")),
        Effect.as("done")
      )
      const fiber = yield* call.pipe(Policy.guard(policy), Effect.forkChild)
      yield* TestClock.adjust("50 millis")
      yield* settle
      assert.strictEqual((yield* Bulkhead.stats(bulkhead)).inFlight, 2)
      yield* TestClock.adjust("10 millis")
      assert.strictEqual(yield* Fiber.join(fiber), "done")
      yield* settle
      assert.strictEqual((yield* Bulkhead.stats(bulkhead)).inFlight, 0)
    }).pipe(Effect.scoped))

  it.effect("the fallback sees rejections: a full bulkhead is served from the fallback", () =>
    Effect.gen(function*() {
      const bulkhead = yield* Bulkhead.make({ name: "b", maxConcurrent: 1 })
      const policy = yield* Policy.make({
        name: "p",
        bulkhead,
        fallback: (error) => Effect.succeed(`fallback for ${(error as { readonly _tag: string })._tag}`)
      })
      const holder = yield* Effect.never.pipe(Policy.guard(policy), Effect.forkChild)
      yield* settle
      assert.strictEqual(yield* Effect.succeed("fresh").pipe(Policy.guard(policy)), "fallback for BulkheadFull")
      yield* Fiber.interrupt(holder)
      const stats = yield* Policy.stats(policy)
      assert.strictEqual(stats.calls, 2)
      assert.strictEqual(stats.succeeded, 1)
      assert.strictEqual(stats.interrupted, 1)
      assert.strictEqual(stats.fallbacks.BulkheadFull, 1)
      assert.strictEqual((yield* Bulkhead.stats(bulkhead)).inFlight, 0)
    }).pipe(Effect.scoped))
})

describe("Policy rule: an explicit order, checked", () => {
  it.effect("an order that repeats, leaves out or adds a stage is an InvalidOptions naming each problem", () =>
    Effect.gen(function*() {
      const bulkhead = yield* Bulkhead.make({ name: "b", maxConcurrent: 1 })
      const error = yield* Policy.make({
        name: "p",
        bulkhead,
        timeout: 100,
        retry: Retry.policy({}),
        order: ["retry", "retry", "circuitBreaker", "bulkhead"]
      }).pipe(Effect.flip)
      assert.instanceOf(error, InvalidOptions)
      assert.strictEqual(error.primitive, "Policy")
      assert.strictEqual(
        error.message,
        [
          `order: "retry" appears more than once`,
          `order: "circuitBreaker" is listed but not configured`,
          `order: "timeout" is configured but missing from the order`
        ].join("\n")
      )
      const unknown = yield* Policy.make({ name: "p", timeout: 100, order: ["timeout", "cache" as Policy.Stage] })
        .pipe(Effect.flip)
      assert.include(unknown.message, "order.1")
    }).pipe(Effect.scoped))

  it.effect("bad fields are reported together", () =>
    Effect.gen(function*() {
      const error = yield* Policy.make({
        name: "",
        timeout: "soon" as never,
        attemptTimeout: 0,
        hedge: { after: 10, maxAttempts: 0 },
        bulkhead: {} as never
      }).pipe(Effect.flip)
      const lines = error.message.split("\n")
      assert.isTrue(lines.some((l) => l.startsWith("name: ")))
      assert.isTrue(lines.some((l) => l.startsWith("timeout: ")))
      assert.isTrue(lines.some((l) => l.startsWith("attemptTimeout: Expected a duration > 0")))
      assert.isTrue(lines.some((l) => l.startsWith("hedge.maxAttempts: ")))
      assert.isTrue(lines.some((l) => l.startsWith("bulkhead: Expected a Bulkhead, its key, or an effect that makes one")))
    }))

  it.effect("known-bad orders give typed warnings; warnings: \"fail\" makes them an InvalidOptions", () =>
    Effect.gen(function*() {
      const bulkhead = yield* Bulkhead.make({ name: "b", maxConcurrent: 1 })
      const breaker = yield* CircuitBreaker.make({ name: "c", trip: CircuitBreaker.consecutive(1), openFor: 10 })
      const options = {
        name: "p",
        bulkhead,
        circuitBreaker: breaker,
        retry: Retry.policy({}),
        attemptTimeout: 100,
        order: ["attemptTimeout", "circuitBreaker", "retry", "bulkhead"]
      } as const
      const policy = yield* Policy.make({ ...options, warnings: "ignore" })
      assert.deepStrictEqual(policy.warnings.map((w) => w.code), [
        "BulkheadInsideRetry",
        "BreakerBeforeAdmission",
        "AttemptTimeoutOutsideBreaker",
        "AttemptTimeoutOutsideRetry"
      ])
      assert.instanceOf(policy.warnings[0], Policy.Warning)
      assert.include(Policy.describe(policy).text, "warning BulkheadInsideRetry")
      const error = yield* Policy.make({ ...options, warnings: "fail" }).pipe(Effect.flip)
      assert.instanceOf(error, InvalidOptions)
      assert.strictEqual(error.message.split("\n").length, 4)
      assert.isTrue(error.message.startsWith("order: BulkheadInsideRetry: bulkhead inside retry"))
    }).pipe(Effect.scoped))

  it.effect("each warning has the order that causes it", () =>
    Effect.sync(() => {
      const codes = (order: ReadonlyArray<Policy.Stage>, facts?: Parameters<typeof Policy.check>[1]) =>
        Policy.check(order, facts).map((w) => w.code)
      assert.deepStrictEqual(codes(["retry", "circuitBreaker"], { retryIsSchedule: true }), ["RetryIgnoresRetryAfter"])
      assert.deepStrictEqual(codes(["retry", "circuitBreaker"]), [])
      assert.deepStrictEqual(codes(["circuitBreaker", "rateLimiter"]), ["BreakerBeforeAdmission"])
      assert.deepStrictEqual(codes(["retry", "timeout"]), ["TimeoutInsideRetry"])
      assert.deepStrictEqual(codes(["timeout", "fallback"]), ["FallbackNotOutermost"])
      assert.deepStrictEqual(codes(["bulkhead", "hedge"]), ["HedgeInsideAdmission"])
      assert.deepStrictEqual(codes(["timeout", "attemptTimeout"], { timeout: "1 second", attemptTimeout: "1 second" }), [
        "AttemptTimeoutNotShorter"
      ])
      assert.deepStrictEqual(codes(["timeout", "attemptTimeout"], { timeout: "1 second", attemptTimeout: "999 millis" }), [])
    }))

  it.effect("an explicit order is applied: breaker outside retry sees one outcome per call (Effect's order)", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make({ name: "c", trip: CircuitBreaker.consecutive(2), openFor: "1 minute" })
      const policy = yield* Policy.make({
        name: "p",
        circuitBreaker: breaker,
        retry: noJitter({ maxAttempts: 3, base: "10 millis" }),
        order: ["circuitBreaker", "retry"]
      })
      const fiber = yield* Effect.fail(new HttpError({ status: 503 })).pipe(Policy.guard(policy), Effect.exit, Effect.forkChild)
      yield* TestClock.adjust("1 second")
      assert.instanceOf(failure(yield* Fiber.join(fiber)), HttpError)
      // Three failed attempts, one failed call: the breaker (2 consecutive) is still closed.
      assert.strictEqual((yield* CircuitBreaker.state(breaker)).state, "Closed")
      assert.deepStrictEqual(policy.order, ["circuitBreaker", "retry"])
    }).pipe(Effect.scoped))

  it.effect("a keyed breaker is refused: a policy has no per-call key", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make({
        name: "c",
        trip: CircuitBreaker.consecutive(1),
        openFor: 10,
        keys: { maxKeys: 10 }
      })
      const error = yield* Policy.make({ name: "p", circuitBreaker: breaker }).pipe(Effect.flip)
      assert.include(error.message, "circuitBreaker: Expected a breaker without keys")
    }).pipe(Effect.scoped))

  it.effect("a Schedule is accepted as the retry", () =>
    Effect.gen(function*() {
      const policy = yield* Policy.make({ name: "p", retry: Schedule.recurs(2) })
      const calls = yield* Ref.make(0)
      const exit = yield* Effect.andThen(Ref.update(calls, (n) => n + 1), Effect.fail(new HttpError({ status: 1 }))).pipe(
        Policy.guard(policy),
        Effect.exit
      )
      assert.instanceOf(failure(exit), HttpError)
      assert.strictEqual(yield* Ref.get(calls), 3)
      assert.include(Policy.describe(policy).text, "an Effect Schedule")
    }).pipe(Effect.scoped))
})

describe("Policy rule: layers and keys", () => {
  it.effect("Policy.layer resolves the primitives' keys when the layer is built", () =>
    Effect.gen(function*() {
      class Pool extends Context.Service<Pool, Bulkhead.Bulkhead>()("test/Pool") {}
      class Payments extends Context.Service<Payments, Policy.Policy<BulkheadFull>>()("test/Payments") {}
      const live = Policy.layer(Payments, { name: "payments", bulkhead: Pool }).pipe(
        Layer.provide(Bulkhead.layer(Pool, { name: "pool", maxConcurrent: 1 }))
      )
      const result = yield* Effect.succeed("ok").pipe(Policy.guard(Payments), Effect.provide(live))
      assert.strictEqual(result, "ok")
      const stats = yield* Policy.stats(Payments).pipe(Effect.provide(live))
      assert.strictEqual(stats.name, "payments")
    }))
})
