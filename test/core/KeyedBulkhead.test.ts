import { assert, describe, it } from "@effect/vitest"
import { Bulkhead, KeyedBulkhead } from "@bulwark/core"
import { Context, Deferred, Duration, Effect, Exit, Fiber, Metric, Scope, Stream } from "effect"
import { TestClock } from "effect/testing"

const settle = Effect.gen(function*() {
  for (let i = 0; i < 5; i++) yield* Effect.yieldNow
})

/** Starts a guarded call that runs until its gate opens. */
const hold = (keyed: KeyedBulkhead.KeyedBulkhead, key: string) =>
  Effect.gen(function*() {
    const gate = yield* Deferred.make<void>()
    const fiber = yield* Effect.forkChild(Deferred.await(gate).pipe(KeyedBulkhead.guard(keyed, key)))
    yield* settle
    return { gate, fiber }
  })

describe("KeyedBulkhead: one independent compartment per key", () => {
  it.effect("a full compartment rejects its own key only", () =>
    Effect.gen(function*() {
      const keyed = yield* KeyedBulkhead.make({ name: "tenants", maxConcurrent: 1, maxKeys: 10 })
      const a = yield* hold(keyed, "a")
      const rejected = yield* Effect.flip(Effect.void.pipe(KeyedBulkhead.guard(keyed, "a")))
      assert.strictEqual(rejected.reason, "QueueFull")
      assert.strictEqual(yield* Effect.succeed("b").pipe(KeyedBulkhead.guard(keyed, "b")), "b")
      const s = yield* KeyedBulkhead.stats(keyed)
      assert.strictEqual(s.keys, 2)
      assert.strictEqual(s.inFlight, 1)
      assert.strictEqual(s.admitted, 2)
      assert.strictEqual(s.rejected.QueueFull, 1)
      yield* Deferred.succeed(a.gate, undefined)
      yield* Fiber.join(a.fiber)
      assert.strictEqual((yield* KeyedBulkhead.stats(keyed)).inFlight, 0)
    }))

  it.effect("compartments keep the FIFO, weight and timeout rules of a bulkhead", () =>
    Effect.gen(function*() {
      const keyed = yield* KeyedBulkhead.make({ name: "hosts", maxConcurrent: 2, maxQueue: 1, queueTimeout: "1 second", maxKeys: 4 })
      const busy = yield* Effect.forkChild(Effect.never.pipe(KeyedBulkhead.guard(keyed, "h", { weight: 2 })))
      yield* settle
      const oversized = yield* Effect.flip(Effect.void.pipe(KeyedBulkhead.guard(keyed, "h", { weight: 3 })))
      assert.strictEqual(oversized.reason, "Oversized")
      const waiting = yield* Effect.forkChild(Effect.flip(Effect.void.pipe(KeyedBulkhead.guard(keyed, "h"))))
      yield* settle
      yield* TestClock.adjust("1 second")
      const timedOut = yield* Fiber.join(waiting)
      assert.strictEqual(timedOut.reason, "QueueTimeout")
      assert.strictEqual(timedOut.key, undefined)
      yield* Fiber.interrupt(busy)
    }))
})

describe("KeyedBulkhead: bounded keys, idle compartments reclaimed", () => {
  it.effect("at maxKeys the least recently used idle compartment is reclaimed", () =>
    Effect.gen(function*() {
      const keyed = yield* KeyedBulkhead.make({ name: "k", maxConcurrent: 1, maxKeys: 2, idleTimeToLive: "1 hour" })
      yield* Effect.void.pipe(KeyedBulkhead.guard(keyed, "a"))
      yield* Effect.void.pipe(KeyedBulkhead.guard(keyed, "b"))
      yield* Effect.void.pipe(KeyedBulkhead.guard(keyed, "a")) // "b" is now the least recently used
      yield* Effect.void.pipe(KeyedBulkhead.guard(keyed, "c"))
      const s = yield* KeyedBulkhead.stats(keyed)
      assert.strictEqual(s.keys, 2)
      assert.strictEqual(s.reclaimed, 1)
      // counters of the reclaimed compartment are kept in the totals
      assert.strictEqual(s.admitted, 4)
      assert.strictEqual(s.completed, 4)
    }))

  it.effect("busy compartments are never reclaimed; a new key is rejected with TooManyKeys", () =>
    Effect.gen(function*() {
      const keyed = yield* KeyedBulkhead.make({ name: "k", maxConcurrent: 1, maxKeys: 2 })
      const a = yield* hold(keyed, "a")
      const b = yield* hold(keyed, "b")
      const rejected = yield* Effect.flip(Effect.void.pipe(KeyedBulkhead.guard(keyed, "c")))
      assert.strictEqual(rejected.reason, "TooManyKeys")
      assert.strictEqual(rejected.name, "k")
      assert.strictEqual(rejected.key, undefined)
      let s = yield* KeyedBulkhead.stats(keyed)
      assert.strictEqual(s.keys, 2)
      assert.strictEqual(s.rejected.TooManyKeys, 1)
      yield* Deferred.succeed(a.gate, undefined)
      yield* Fiber.join(a.fiber)
      // "a" is idle now, so "c" can take its place
      yield* Effect.void.pipe(KeyedBulkhead.guard(keyed, "c"))
      s = yield* KeyedBulkhead.stats(keyed)
      assert.strictEqual(s.keys, 2)
      assert.strictEqual(s.reclaimed, 1)
      yield* Deferred.succeed(b.gate, undefined)
      yield* Fiber.join(b.fiber)
    }))

  it.effect("compartments idle past idleTimeToLive are reclaimed when a new key arrives", () =>
    Effect.gen(function*() {
      const keyed = yield* KeyedBulkhead.make({ name: "k", maxConcurrent: 1, maxKeys: 100, idleTimeToLive: "1 minute" })
      for (const key of ["a", "b", "c"]) yield* Effect.void.pipe(KeyedBulkhead.guard(keyed, key))
      yield* TestClock.adjust("30 seconds")
      yield* Effect.void.pipe(KeyedBulkhead.guard(keyed, "c")) // refreshes c
      yield* TestClock.adjust("31 seconds")
      yield* Effect.void.pipe(KeyedBulkhead.guard(keyed, "d"))
      const s = yield* KeyedBulkhead.stats(keyed)
      assert.strictEqual(s.reclaimed, 2) // a and b; c was used 31 s ago
      assert.strictEqual(s.keys, 2)
    }))

  it.effect("reclaiming starts no fiber: the test's scope closes with nothing left running", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const keyed = yield* Scope.provide(
        KeyedBulkhead.make({ name: "k", maxConcurrent: 1, maxKeys: 3, idleTimeToLive: "1 second" }),
        scope
      )
      for (let i = 0; i < 50; i++) {
        yield* Effect.void.pipe(KeyedBulkhead.guard(keyed, `key-${i}`))
        yield* TestClock.adjust("100 millis")
      }
      const s = yield* KeyedBulkhead.stats(keyed)
      assert.isAtMost(s.keys, 3)
      assert.strictEqual(s.keys + s.reclaimed, 50)
      yield* Scope.close(scope, Exit.void)
    }))
})

describe("KeyedBulkhead: keys stay private unless exposed", () => {
  it.effect("by default keys appear neither in errors nor in metric labels", () =>
    Effect.gen(function*() {
      const registry = new Map()
      yield* Effect.gen(function*() {
        const keyed = yield* KeyedBulkhead.make({ name: "tenants", maxConcurrent: 1, maxKeys: 10 })
        const a = yield* hold(keyed, "secret-tenant")
        const e = yield* Effect.flip(Effect.void.pipe(KeyedBulkhead.guard(keyed, "secret-tenant")))
        assert.notInclude(JSON.stringify(e), "secret-tenant")
        assert.notInclude(e.message, "secret-tenant")
        const snapshot = yield* Metric.snapshot
        assert.notInclude(JSON.stringify(snapshot.map((m) => m.attributes)), "secret-tenant")
        const inFlight = snapshot.find((m) => m.id === "bulwark.bulkhead.in_flight")
        assert.deepStrictEqual(inFlight?.attributes, { name: "tenants" })
        assert.deepStrictEqual(inFlight?.state, { value: 1 })
        assert.strictEqual((yield* KeyedBulkhead.stats(keyed)).perKey, undefined)
        yield* Fiber.interrupt(a.fiber)
      }).pipe(Effect.provideService(Metric.MetricRegistry, registry))
    }))

  it.effect("with exposeKeys the key is in errors, per-key stats and metric labels", () =>
    Effect.gen(function*() {
      const registry = new Map()
      yield* Effect.gen(function*() {
        const keyed = yield* KeyedBulkhead.make({ name: "tenants", maxConcurrent: 1, maxKeys: 10, exposeKeys: true })
        const a = yield* hold(keyed, "acme")
        const e = yield* Effect.flip(Effect.void.pipe(KeyedBulkhead.guard(keyed, "acme")))
        assert.strictEqual(e.key, "acme")
        const perKey = (yield* KeyedBulkhead.stats(keyed)).perKey
        assert.deepStrictEqual(perKey, [{ key: "acme", inFlight: 1, queued: 0 }])
        const snapshot = yield* Metric.snapshot
        const labelled = snapshot.find((m) => m.id === "bulwark.bulkhead.key.in_flight" && m.attributes?.key === "acme")
        assert.deepStrictEqual(labelled?.state, { value: 1 })
        // the aggregate series keeps its own name, so summing by name counts each call once
        const aggregate = snapshot.filter((m) => m.id === "bulwark.bulkhead.in_flight")
        assert.deepStrictEqual(aggregate.map((m) => [m.attributes, m.state]), [[{ name: "tenants" }, { value: 1 }]])
        yield* Fiber.interrupt(a.fiber)
      }).pipe(Effect.provideService(Metric.MetricRegistry, registry))
    }))
})

describe("KeyedBulkhead: events", () => {
  it.effect("every compartment reports on one stream, which ends when the scope closes", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const keyed = yield* Scope.provide(KeyedBulkhead.make({ name: "k", maxConcurrent: 1, maxKeys: 10 }), scope)
      const collected = yield* Effect.forkChild(Stream.runCollect(KeyedBulkhead.events(keyed)), { startImmediately: true })
      yield* Effect.void.pipe(KeyedBulkhead.guard(keyed, "a"))
      const a = yield* hold(keyed, "b")
      yield* Effect.exit(Effect.void.pipe(KeyedBulkhead.guard(keyed, "b")))
      yield* Fiber.interrupt(a.fiber)
      yield* Scope.close(scope, Exit.void)
      const events = yield* Fiber.join(collected)
      assert.deepStrictEqual(events.map((e) => e._tag === "Rejected" ? `Rejected:${e.reason}` : e._tag), [
        "Admitted",
        "Released",
        "Admitted",
        "Rejected:QueueFull",
        "Released",
        "Closed"
      ])
      assert.notInclude(JSON.stringify(events), "\"b\"")
    }))
})

describe("KeyedBulkhead: lifecycle and services", () => {
  it.effect("close rejects queued and new calls of every key with Closed; drain waits for running ones", () =>
    Effect.gen(function*() {
      const keyed = yield* KeyedBulkhead.make({ name: "k", maxConcurrent: 1, maxQueue: 5, maxKeys: 10 })
      const a = yield* hold(keyed, "a")
      const queued = yield* Effect.forkChild(Effect.flip(Effect.void.pipe(KeyedBulkhead.guard(keyed, "a"))))
      yield* settle
      yield* KeyedBulkhead.close(keyed)
      assert.strictEqual((yield* Fiber.join(queued)).reason, "Closed")
      assert.strictEqual((yield* Effect.flip(Effect.void.pipe(KeyedBulkhead.guard(keyed, "new")))).reason, "Closed")
      const draining = yield* Effect.forkChild(KeyedBulkhead.drain(keyed))
      yield* settle
      assert.isUndefined(draining.pollUnsafe())
      yield* Deferred.succeed(a.gate, undefined)
      yield* Fiber.join(a.fiber)
      yield* Fiber.join(draining)
      const s = yield* KeyedBulkhead.stats(keyed)
      assert.strictEqual(s.rejected.Closed, 2)
      assert.strictEqual(s.inFlight, 0)
    }))

  it.effect("Bulkhead.keyed and a Layer service key give the same compartments", () =>
    Effect.gen(function*() {
      class Tenants extends Context.Service<Tenants, KeyedBulkhead.KeyedBulkhead>()("test/Tenants") {}
      const viaKey = yield* Effect.gen(function*() {
        const first = yield* Effect.forkChild(Effect.never.pipe(KeyedBulkhead.guard(Tenants, "t")))
        yield* settle
        const e = yield* Effect.flip(Effect.void.pipe(KeyedBulkhead.guard(Tenants, "t")))
        yield* Fiber.interrupt(first)
        return e.reason
      }).pipe(Effect.provide(KeyedBulkhead.layer(Tenants, { name: "tenants", maxConcurrent: 1, maxKeys: 5 })))
      assert.strictEqual(viaKey, "QueueFull")
      const keyed = yield* Bulkhead.keyed({ name: "t2", maxConcurrent: 1, maxKeys: 1 })
      assert.strictEqual(yield* Effect.succeed(7).pipe(KeyedBulkhead.guard(keyed, "x")), 7)
    }))

  it.effect("invalid options fail with InvalidOptions naming each field", () =>
    Effect.gen(function*() {
      const e = yield* Effect.flip(
        KeyedBulkhead.make({ name: "k", maxConcurrent: 1, maxKeys: 0, idleTimeToLive: "soon" as Duration.Input })
      )
      assert.strictEqual(e._tag, "InvalidOptions")
      assert.strictEqual(e.primitive, "KeyedBulkhead")
      assert.include(e.message, "maxKeys: Expected an integer >= 1, got 0")
      assert.include(e.message, "idleTimeToLive: Expected a duration")
    }))

  it.effect("a bad per-call weight dies naming the option", () =>
    Effect.gen(function*() {
      const keyed = yield* KeyedBulkhead.make({ name: "k", maxConcurrent: 2, maxKeys: 5 })
      const exit = yield* Effect.exit(Effect.void.pipe(KeyedBulkhead.guard(keyed, "a", { weight: 0 })))
      assert.isTrue(Exit.hasDies(exit))
      assert.include(String(Exit.isFailure(exit) && exit.cause.reasons[0]._tag === "Die" ? exit.cause.reasons[0].defect : ""), "weight")
    }))
})
