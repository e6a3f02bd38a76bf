/**
 * `BulkheadRegistry` keeps the named bulkheads of one application: names are
 * unique, snapshots of all of them come in name order, and shutting it down
 * (or releasing its layer) closes every bulkhead first, then drains them all.
 */
import { Bulkhead, BulkheadRegistry } from "@bulwark/core"
import { Effect, Fiber, Latch, Option } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

export const program = Effect.gen(function*() {
  const registry = yield* BulkheadRegistry.BulkheadRegistry
  const db = yield* registry.register({ name: "db", maxConcurrent: 10 })
  const api = yield* registry.register({ name: "api", maxConcurrent: 1, maxQueue: 5 })

  const taken = yield* Effect.flip(registry.register({ name: "db", maxConcurrent: 5 }))
  assert.equal(taken._tag, "InvalidOptions")
  assert.equal(taken.message, `name: must be unique in the registry, "db" is already registered`)

  yield* Effect.void.pipe(Bulkhead.guard(db))
  const found = yield* registry.get("api")
  assert.ok(Option.isSome(found) && found.value === api)
  const snapshots = yield* registry.snapshots
  assert.deepEqual(snapshots.map((s) => [s.name, s.admitted]), [["api", 0], ["db", 1]])

  // Shutdown: queued calls everywhere are refused at once, then running calls are waited for.
  const upstream = yield* Latch.make()
  const running = yield* Effect.forkChild(upstream.await.pipe(Effect.as("finished"), Bulkhead.guard(api)), { startImmediately: true })
  const queued = yield* Effect.forkChild(Effect.flip(Effect.void.pipe(Bulkhead.guard(api))), { startImmediately: true })
  const shutdown = yield* Effect.forkChild(registry.shutdown, { startImmediately: true })
  assert.equal((yield* Fiber.join(queued)).reason, "Closed")
  yield* upstream.open
  yield* Fiber.join(shutdown)
  assert.equal(yield* Fiber.join(running), "finished")
  return yield* registry.names
}).pipe(Effect.provide(BulkheadRegistry.layer))

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
