import { assert, describe, expectTypeOf, it } from "@effect/vitest"
import { Bulkhead, Hedge, InvalidOptions } from "@bulwark/core"
import { Cause, Data, Effect, Exit, Fiber } from "effect"
import { TestClock } from "effect/testing"

class Boom extends Data.TaggedError("Boom")<{ readonly attempt: number }> {}

/** Lets every fiber that is ready run. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 10; i++) yield* Effect.yieldNow
})

type Plan = { readonly ms: number; readonly outcome: "succeed" | "fail" | "die" } | "never"

/**
 * A call whose n-th attempt (from 1) follows `plans[n - 1]`: after `ms`
 * it succeeds with `attempt n`, fails with `Boom`, or dies. It records which
 * attempts started and which ran their finalizer.
 */
const scripted = (plans: ReadonlyArray<Plan>) => {
  const log = { started: [] as Array<number>, finalized: [] as Array<number>, running: 0, maxRunning: 0 }
  const call = Effect.suspend(() => {
    const n = log.started.length + 1
    log.started.push(n)
    log.running++
    log.maxRunning = Math.max(log.maxRunning, log.running)
    const plan = plans[n - 1] ?? "never"
    const body: Effect.Effect<string, Boom> = plan === "never"
      ? Effect.never
      : Effect.sleep(plan.ms).pipe(Effect.andThen(
        plan.outcome === "succeed"
          ? Effect.succeed(`attempt ${n}`)
          : plan.outcome === "fail"
          ? Effect.fail(new Boom({ attempt: n }))
          : Effect.die(new Error(`defect ${n}`))
      ))
    return body.pipe(Effect.ensuring(Effect.sync(() => {
      log.running--
      log.finalized.push(n)
    })))
  })
  return { log, call }
}

const invalid = (exit: Exit.Exit<unknown, unknown>): InvalidOptions => {
  assert.isTrue(Exit.isFailure(exit))
  const defect = Cause.squash((exit as Exit.Failure<unknown, unknown>).cause)
  assert.instanceOf(defect, InvalidOptions)
  return defect as InvalidOptions
}

describe("Hedge rule: no hedge while the first attempt answers within `after`", () => {
  it.effect("a fast first attempt never starts a second", () =>
    Effect.gen(function*() {
      const { call, log } = scripted([{ ms: 40, outcome: "succeed" }])
      const fiber = yield* call.pipe(Hedge.guard({ after: "50 millis", maxAttempts: 3 }), Effect.forkChild)
      yield* TestClock.adjust("40 millis")
      assert.strictEqual(yield* Fiber.join(fiber), "attempt 1")
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(log.started, [1])
    }))

  it.effect("maxAttempts 1 is the call itself", () =>
    Effect.gen(function*() {
      const { call, log } = scripted(["never"])
      const fiber = yield* call.pipe(Hedge.guard({ after: 10, maxAttempts: 1 }), Effect.forkChild)
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(log.started, [1])
      yield* Fiber.interrupt(fiber)
    }))
})

describe("Hedge rule: after `after` another attempt starts; the first success wins and the others are interrupted", () => {
  it.effect("the second attempt's success wins and the first is interrupted (its finalizer ran)", () =>
    Effect.gen(function*() {
      const { call, log } = scripted([{ ms: 1000, outcome: "succeed" }, { ms: 10, outcome: "succeed" }])
      const fiber = yield* call.pipe(Hedge.guard({ after: "50 millis", maxAttempts: 2 }), Effect.forkChild)
      yield* TestClock.adjust("49 millis")
      assert.deepStrictEqual(log.started, [1])
      yield* TestClock.adjust("1 millis")
      assert.deepStrictEqual(log.started, [1, 2])
      yield* TestClock.adjust("10 millis")
      assert.strictEqual(yield* Fiber.join(fiber), "attempt 2")
      // The call returned after the loser's finalizer ran.
      assert.deepStrictEqual([...log.finalized].sort(), [1, 2])
      assert.strictEqual(log.running, 0)
    }))

  it.effect("the first attempt can still win after a hedge started", () =>
    Effect.gen(function*() {
      const { call, log } = scripted([{ ms: 60, outcome: "succeed" }, "never"])
      const fiber = yield* call.pipe(Hedge.guard({ after: "50 millis", maxAttempts: 2 }), Effect.forkChild)
      yield* TestClock.adjust("60 millis")
      assert.strictEqual(yield* Fiber.join(fiber), "attempt 1")
      assert.deepStrictEqual(log.started, [1, 2])
      assert.strictEqual(log.running, 0)
    }))

  it.effect("data-first form", () =>
    Effect.gen(function*() {
      const { call } = scripted([{ ms: 500, outcome: "succeed" }, { ms: 1, outcome: "succeed" }])
      const guarded = Hedge.guard(call, { after: 100, maxAttempts: 2 })
      expectTypeOf(guarded).toEqualTypeOf<Effect.Effect<string, Boom>>()
      const fiber = yield* Effect.forkChild(guarded)
      yield* TestClock.adjust("101 millis")
      assert.strictEqual(yield* Fiber.join(fiber), "attempt 2")
    }))
})

describe("Hedge rule: maxAttempts bounds the attempts in flight", () => {
  it.effect("a new attempt every `after`, never more than maxAttempts", () =>
    Effect.gen(function*() {
      const { call, log } = scripted([])
      const fiber = yield* call.pipe(Hedge.guard({ after: "50 millis", maxAttempts: 3 }), Effect.forkChild)
      yield* settle
      assert.deepStrictEqual(log.started, [1])
      yield* TestClock.adjust("50 millis")
      assert.deepStrictEqual(log.started, [1, 2])
      yield* TestClock.adjust("50 millis")
      assert.deepStrictEqual(log.started, [1, 2, 3])
      yield* TestClock.adjust("10 seconds")
      assert.deepStrictEqual(log.started, [1, 2, 3])
      assert.strictEqual(log.maxRunning, 3)
      yield* Fiber.interrupt(fiber)
    }))
})

describe("Hedge rule: failures are final only when every attempt failed", () => {
  it.effect("a failure starts the next attempt at once, which can still win", () =>
    Effect.gen(function*() {
      const { call, log } = scripted([{ ms: 5, outcome: "fail" }, { ms: 5, outcome: "succeed" }])
      const fiber = yield* call.pipe(Hedge.guard({ after: "1 second", maxAttempts: 2 }), Effect.forkChild)
      yield* TestClock.adjust("5 millis")
      assert.deepStrictEqual(log.started, [1, 2])
      yield* TestClock.adjust("5 millis")
      assert.strictEqual(yield* Fiber.join(fiber), "attempt 2")
    }))

  it.effect("when every attempt failed, the call fails with the error of the last attempt to fail", () =>
    Effect.gen(function*() {
      // Attempt 2 starts at 50 ms and fails at 60 ms; attempt 1 fails last, at 100 ms.
      const { call, log } = scripted([{ ms: 100, outcome: "fail" }, { ms: 10, outcome: "fail" }])
      const fiber = yield* call.pipe(Hedge.guard({ after: "50 millis", maxAttempts: 2 }), Effect.flip, Effect.forkChild)
      yield* TestClock.adjust("60 millis")
      assert.isUndefined(fiber.pollUnsafe(), "attempt 1 still runs: not final yet")
      yield* TestClock.adjust("40 millis")
      const error = yield* Fiber.join(fiber)
      assert.deepStrictEqual(error, new Boom({ attempt: 1 }))
      assert.deepStrictEqual(log.started, [1, 2])
    }))

  it.effect("a defect counts as a failure of that attempt; another attempt can still win", () =>
    Effect.gen(function*() {
      const { call } = scripted([{ ms: 5, outcome: "die" }, { ms: 5, outcome: "succeed" }])
      const fiber = yield* call.pipe(Hedge.guard({ after: "1 second", maxAttempts: 2 }), Effect.forkChild)
      yield* TestClock.adjust("10 millis")
      assert.strictEqual(yield* Fiber.join(fiber), "attempt 2")
    }))

  it.effect("when the last attempt to fail died, the call dies with that defect", () =>
    Effect.gen(function*() {
      const { call } = scripted([{ ms: 5, outcome: "fail" }, { ms: 5, outcome: "die" }])
      const fiber = yield* call.pipe(Hedge.guard({ after: "1 second", maxAttempts: 2 }), Effect.forkChild)
      yield* TestClock.adjust("10 millis")
      const exit = yield* Fiber.await(fiber)
      assert.isTrue(Exit.isFailure(exit))
      const defect = Cause.squash((exit as Exit.Failure<string, Boom>).cause)
      assert.strictEqual((defect as Error).message, "defect 2")
    }))
})

describe("Hedge rule: works with a bulkhead around each attempt", () => {
  it.effect("the loser's permit is released: inFlight is back to 0 when the call returns", () =>
    Effect.gen(function*() {
      const pool = yield* Bulkhead.make({ name: "db", maxConcurrent: 4 })
      const { call } = scripted([{ ms: 1000, outcome: "succeed" }, { ms: 10, outcome: "succeed" }])
      const fiber = yield* call.pipe(
        Bulkhead.guard(pool),
        Hedge.guard({ after: "50 millis", maxAttempts: 2 }),
        Effect.forkChild
      )
      yield* TestClock.adjust("50 millis")
      assert.strictEqual((yield* Bulkhead.stats(pool)).inFlight, 2)
      yield* TestClock.adjust("10 millis")
      assert.strictEqual(yield* Fiber.join(fiber), "attempt 2")
      const s = yield* Bulkhead.stats(pool)
      assert.strictEqual(s.inFlight, 0)
      assert.strictEqual(s.admitted, 2)
    }))
})

describe("Hedge rule: interrupting the hedged call interrupts every attempt", () => {
  it.effect("all attempts' finalizers run and no attempt starts afterwards", () =>
    Effect.gen(function*() {
      const { call, log } = scripted([])
      const fiber = yield* call.pipe(Hedge.guard({ after: "50 millis", maxAttempts: 3 }), Effect.forkChild)
      yield* TestClock.adjust("100 millis")
      assert.deepStrictEqual(log.started, [1, 2, 3])
      yield* Fiber.interrupt(fiber)
      assert.deepStrictEqual([...log.finalized].sort(), [1, 2, 3])
      assert.strictEqual(log.running, 0)
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(log.started, [1, 2, 3])
    }))

  it.effect("interrupted before any hedge: the only attempt is interrupted", () =>
    Effect.gen(function*() {
      const { call, log } = scripted([])
      const fiber = yield* call.pipe(Hedge.guard({ after: "50 millis", maxAttempts: 3 }), Effect.forkChild)
      yield* settle
      yield* Fiber.interrupt(fiber)
      assert.deepStrictEqual(log.finalized, [1])
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(log.started, [1])
    }))
})

describe("Hedge rule: invalid options make every call die with InvalidOptions naming the fields", () => {
  it.effect("after 0 and a fractional maxAttempts are both reported", () =>
    Effect.gen(function*() {
      const { call, log } = scripted([{ ms: 0, outcome: "succeed" }])
      const guard = Hedge.guard({ name: "reads", after: 0, maxAttempts: 1.5 })
      const e = invalid(yield* Effect.exit(guard(call)))
      assert.strictEqual(e.primitive, "Hedge.guard")
      assert.strictEqual(e.name, "reads")
      assert.include(e.message, "after: Expected a duration > 0")
      assert.include(e.message, "maxAttempts: Expected an integer >= 1, got 1.5")
      assert.deepStrictEqual(log.started, [])
    }))

  it.effect("a malformed duration, maxAttempts 0 and an unknown field", () =>
    Effect.gen(function*() {
      const e = invalid(
        yield* Effect.exit(Hedge.guard(Effect.succeed(1), { after: "soon", maxAttempts: 0, delay: 1 } as any))
      )
      assert.strictEqual(e.name, "<unnamed>")
      assert.include(e.message, "after: Expected a duration")
      assert.include(e.message, "maxAttempts: Expected an integer >= 1, got 0")
      assert.include(e.message, "delay")
    }))
})
