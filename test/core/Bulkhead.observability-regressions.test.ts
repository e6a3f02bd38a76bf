/**
 * Bulkhead behaviours that break the contract (issue 2). Each test is a
 * normal test that FAILS against the current implementation; it should pass
 * once the bug is fixed. Every test records what it saw, cleans up (so a
 * failure never hangs the scope's drain), and only then asserts.
 */
import { assert, describe, it } from "@effect/vitest"
import { Bulkhead } from "@bulwark/core"
import { Duration, Effect, Exit, Fiber, Scope, Stream } from "effect"
import { TestClock } from "effect/testing"

const settle = Effect.gen(function*() {
  for (let i = 0; i < 20; i++) yield* Effect.yieldNow
})

describe("Bulkhead bugs", () => {
  // Rule 8: capacityReport "reads the bulkhead's figures (since creation, or
  // since `since`)". Without `since`, the synthetic origin snapshot copies
  // `at` from the current snapshot, so the interval since creation always has
  // elapsed 0 and throughput 0.
  it.effect("capacityReport without `since` measures the interval from creation", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "report-bug", maxConcurrent: 1 })
      yield* TestClock.adjust("1 second")
      for (let i = 0; i < 10; i++) yield* Effect.void.pipe(Bulkhead.guard(b))
      const report = yield* Bulkhead.capacityReport(b)
      assert.deepStrictEqual(
        { elapsed: Duration.toMillis(report.interval.elapsed), throughput: report.interval.throughput },
        { elapsed: 1000, throughput: 10 }
      )
    }))

  // Rule 8 / events doc: "The stream ends when the bulkhead's scope closes."
  // A stream consumed after the scope has closed registers a listener that
  // `endEvents` has already run for, so it never ends.
  it.effect("the events stream of a bulkhead whose scope has closed ends at once", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const b = yield* Bulkhead.make({ name: "events-bug", maxConcurrent: 1 }).pipe(Scope.provide(scope))
      yield* Scope.close(scope, Exit.void)
      const consumer = yield* Effect.forkChild(Stream.runCollect(Bulkhead.events(b)))
      yield* settle
      const ended = consumer.pollUnsafe() !== undefined
      yield* Fiber.interrupt(consumer)
      assert.isTrue(ended, "the stream should have ended")
    }))
})
