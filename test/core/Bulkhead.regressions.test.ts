import { assert, describe, it } from "@effect/vitest"
import { Bulkhead, KeyedBulkhead } from "@bulwark/core"
import { Effect, Fiber } from "effect"
import { TestClock } from "effect/testing"

const settle = Effect.gen(function*() {
  for (let i = 0; i < 5; i++) yield* Effect.yieldNow
})

describe("Bulkhead: evicting several waiters at once", () => {
  it.effect("a resize rejects every waiter it makes oversized, even when evicting the head lets a later one in", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "r", maxConcurrent: 5, maxQueue: 10 })
      const running = yield* Effect.forkChild(Effect.never.pipe(Bulkhead.guard(b)))
      yield* settle
      const heavy = yield* Effect.forkChild(Effect.exit(Effect.void.pipe(Bulkhead.guard(b, { weight: 5 }))))
      const light = yield* Effect.forkChild(Effect.exit(Effect.succeed("light").pipe(Bulkhead.guard(b))))
      const big1 = yield* Effect.forkChild(Effect.flip(Effect.void.pipe(Bulkhead.guard(b, { weight: 4 }))))
      const big2 = yield* Effect.forkChild(Effect.flip(Effect.void.pipe(Bulkhead.guard(b, { weight: 4 }))))
      yield* settle
      assert.strictEqual((yield* Bulkhead.stats(b)).queued, 4)
      yield* Bulkhead.resize(b, 3)
      const heavyExit = yield* Fiber.join(heavy)
      assert.isTrue(heavyExit._tag === "Failure")
      assert.strictEqual((yield* Fiber.join(big1)).reason, "Oversized")
      assert.strictEqual((yield* Fiber.join(big2)).reason, "Oversized")
      const lightExit = yield* Fiber.join(light)
      assert.isTrue(lightExit._tag === "Success")
      const s = yield* Bulkhead.stats(b)
      assert.strictEqual(s.rejected.Oversized, 3)
      assert.strictEqual(s.queued, 0)
      yield* Fiber.interrupt(running)
    }))

  it.effect("close rejects every queued call, including a light one behind a heavy head that would now fit", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "c", maxConcurrent: 2, maxQueue: 10 })
      const running = yield* Effect.forkChild(Effect.never.pipe(Bulkhead.guard(b)))
      yield* settle
      const heavy = yield* Effect.forkChild(Effect.flip(Effect.void.pipe(Bulkhead.guard(b, { weight: 2 }))))
      const light = yield* Effect.forkChild(Effect.flip(Effect.void.pipe(Bulkhead.guard(b))))
      yield* settle
      yield* Bulkhead.close(b)
      assert.strictEqual((yield* Fiber.join(heavy)).reason, "Closed")
      assert.strictEqual((yield* Fiber.join(light)).reason, "Closed")
      const s = yield* Bulkhead.stats(b)
      assert.strictEqual(s.admitted, 1)
      assert.strictEqual(s.rejected.Closed, 2)
      yield* Fiber.interrupt(running)
    }))

  it.effect("one guarded effect run several times at once holds and releases a permit per run", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "shared-effect", maxConcurrent: 2, maxQueue: 5 })
      const call = Effect.sleep("10 millis").pipe(Bulkhead.guard(b))
      const all = yield* Effect.forkChild(Effect.all([call, call, call, call], { concurrency: 4 }))
      yield* settle
      let s = yield* Bulkhead.stats(b)
      assert.deepStrictEqual([s.inFlight, s.queued], [2, 2])
      yield* TestClock.adjust("10 millis")
      yield* settle
      yield* TestClock.adjust("10 millis")
      yield* Fiber.join(all)
      s = yield* Bulkhead.stats(b)
      assert.deepStrictEqual([s.inFlight, s.queued, s.admitted, s.completed], [0, 0, 4, 4])
    }))
})

describe("regression: an option given as undefined (as the Options types allow, e.g. from a spread config) means its default", () => {
  it.effect("Bulkhead maxQueue and queueTimeout; KeyedBulkhead's optional fields", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "spread", maxConcurrent: 1, maxQueue: undefined, queueTimeout: undefined })
      assert.strictEqual(yield* Effect.succeed("ran").pipe(Bulkhead.guard(b)), "ran")
      const keyed = yield* KeyedBulkhead.make({
        name: "spread-keyed",
        maxConcurrent: 1,
        maxKeys: 2,
        maxQueue: undefined,
        queueTimeout: undefined,
        idleTimeToLive: undefined,
        exposeKeys: undefined
      })
      assert.strictEqual(yield* Effect.succeed("ran").pipe(KeyedBulkhead.guard(keyed, "a")), "ran")
    }).pipe(Effect.scoped))
})
