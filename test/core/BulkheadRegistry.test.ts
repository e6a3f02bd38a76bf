import { assert, describe, it } from "@effect/vitest"
import { Bulkhead, BulkheadRegistry } from "@bulwark/core"
import { Deferred, Effect, Exit, Fiber, Layer, Option, Scope } from "effect"

const settle = Effect.gen(function*() {
  for (let i = 0; i < 5; i++) yield* Effect.yieldNow
})

describe("BulkheadRegistry", () => {
  it.effect("names are unique: a second registration of a name fails with InvalidOptions", () =>
    Effect.gen(function*() {
      const registry = yield* BulkheadRegistry.BulkheadRegistry
      yield* registry.register({ name: "db", maxConcurrent: 2 })
      const e = yield* Effect.flip(registry.register({ name: "db", maxConcurrent: 5 }))
      assert.strictEqual(e._tag, "InvalidOptions")
      assert.strictEqual(e.primitive, "BulkheadRegistry")
      assert.include(e.message, "name: must be unique")
      const invalid = yield* Effect.flip(registry.register({ name: "x", maxConcurrent: 0 }))
      assert.strictEqual(invalid.primitive, "Bulkhead")
      assert.deepStrictEqual(yield* registry.names, ["db"])
    }).pipe(Effect.provide(BulkheadRegistry.layer)))

  it.effect("snapshots come ordered by name and get finds by name", () =>
    Effect.gen(function*() {
      const registry = yield* BulkheadRegistry.BulkheadRegistry
      const zeta = yield* registry.register({ name: "zeta", maxConcurrent: 1 })
      yield* registry.register({ name: "alpha", maxConcurrent: 1 })
      yield* registry.register({ name: "mid", maxConcurrent: 1 })
      yield* Effect.void.pipe(Bulkhead.guard(zeta))
      const snapshots = yield* registry.snapshots
      assert.deepStrictEqual(snapshots.map((s) => s.name), ["alpha", "mid", "zeta"])
      assert.deepStrictEqual(snapshots.map((s) => s.admitted), [0, 0, 1])
      const found = yield* registry.get("zeta")
      assert.isTrue(Option.isSome(found) && found.value === zeta)
      assert.isTrue(Option.isNone(yield* registry.get("nope")))
    }).pipe(Effect.provide(BulkheadRegistry.layer)))

  it.effect("shutdown closes every bulkhead first, then waits for all to drain", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const registry = yield* Layer.buildWithScope(BulkheadRegistry.layer, scope).pipe(
        Effect.map((context) => context.mapUnsafe.get(BulkheadRegistry.BulkheadRegistry.key) as BulkheadRegistry.Registry)
      )
      const a = yield* registry.register({ name: "a", maxConcurrent: 1, maxQueue: 5 })
      const b = yield* registry.register({ name: "b", maxConcurrent: 1, maxQueue: 5 })
      const gateA = yield* Deferred.make<void>()
      const gateB = yield* Deferred.make<void>()
      const runA = yield* Effect.forkChild(Deferred.await(gateA).pipe(Bulkhead.guard(a)))
      const runB = yield* Effect.forkChild(Deferred.await(gateB).pipe(Bulkhead.guard(b)))
      yield* settle
      const queuedA = yield* Effect.forkChild(Effect.flip(Effect.void.pipe(Bulkhead.guard(a))))
      const queuedB = yield* Effect.forkChild(Effect.flip(Effect.void.pipe(Bulkhead.guard(b))))
      yield* settle
      const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
      yield* settle
      // both queues were rejected before anything finished draining
      assert.strictEqual((yield* Fiber.join(queuedA)).reason, "Closed")
      assert.strictEqual((yield* Fiber.join(queuedB)).reason, "Closed")
      assert.isUndefined(closing.pollUnsafe())
      yield* Deferred.succeed(gateA, undefined)
      yield* Fiber.join(runA)
      yield* settle
      assert.isUndefined(closing.pollUnsafe())
      yield* Deferred.succeed(gateB, undefined)
      yield* Fiber.join(runB)
      yield* Fiber.join(closing)
      const late = yield* Effect.flip(registry.register({ name: "c", maxConcurrent: 1 }))
      assert.include(late.message, "shut down")
    }))
})
