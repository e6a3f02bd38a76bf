/**
 * A keyed bulkhead gives every key (tenant, host, API key) its own
 * compartment, so one noisy tenant is refused in its compartment while the
 * others keep their full capacity. `maxKeys` bounds the live compartments;
 * idle ones are reclaimed, busy ones never are.
 */
import { KeyedBulkhead } from "@bulwark/core"
import { Effect, Fiber, Latch } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

export const program = Effect.gen(function*() {
  const tenants = yield* KeyedBulkhead.make({ name: "tenants", maxConcurrent: 2, maxKeys: 2 })
  const warehouse = yield* Latch.make()
  const exportFor = (tenant: string) => warehouse.await.pipe(Effect.as(`${tenant}: exported`), KeyedBulkhead.guard(tenants, tenant))
  const quickFor = (tenant: string) => Effect.succeed(`${tenant}: ok`).pipe(KeyedBulkhead.guard(tenants, tenant))

  // acme fills its own compartment and is refused there...
  const acme = yield* Effect.forEach([1, 2], () => Effect.forkChild(exportFor("acme"), { startImmediately: true }))
  const refused = yield* Effect.flip(quickFor("acme"))
  assert.equal(refused.reason, "QueueFull")
  assert.equal(refused.key, undefined) // keys are user data: kept out of errors unless exposeKeys is set
  assert.equal(refused.message, `Bulkhead "tenants" rejected the call: QueueFull`)
  // ...while globex, in another compartment, is not affected.
  assert.equal(yield* quickFor("globex"), "globex: ok")

  // maxKeys is 2. A third tenant takes the place of the least recently used idle compartment (globex)...
  assert.equal(yield* quickFor("initech"), "initech: ok")
  // ...but when every compartment is busy, a new tenant is refused rather than growing memory.
  const initech = yield* Effect.forkChild(exportFor("initech"), { startImmediately: true })
  assert.equal((yield* Effect.flip(quickFor("umbrella"))).reason, "TooManyKeys")

  yield* warehouse.open
  yield* Fiber.joinAll([...acme, initech])
  const stats = yield* KeyedBulkhead.stats(tenants)
  assert.deepEqual([stats.keys, stats.reclaimed, stats.admitted, stats.rejected.QueueFull, stats.rejected.TooManyKeys], [2, 1, 5, 1, 1])
  assert.equal(stats.perKey, undefined)

  // Opting in: exposeKeys puts the key in errors, per-key stats and metric labels.
  const hosts = yield* KeyedBulkhead.make({ name: "hosts", maxConcurrent: 1, maxKeys: 100, exposeKeys: true })
  const blocked = yield* Effect.forkChild(warehouse.close.pipe(Effect.andThen(warehouse.await), KeyedBulkhead.guard(hosts, "api.example.com")), {
    startImmediately: true
  })
  const exposed = yield* Effect.flip(Effect.void.pipe(KeyedBulkhead.guard(hosts, "api.example.com")))
  assert.equal(exposed.key, "api.example.com")
  assert.equal(exposed.message, `Bulkhead "hosts" [api.example.com] rejected the call: QueueFull`)
  assert.deepEqual((yield* KeyedBulkhead.stats(hosts)).perKey, [{ key: "api.example.com", inFlight: 1, queued: 0 }])
  yield* warehouse.open
  yield* Fiber.join(blocked)
  return stats
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
