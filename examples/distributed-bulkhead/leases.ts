/**
 * A slot is a lease. While the call runs, a fiber tied to it renews the
 * lease every third of it, so a long call keeps its slot; a process that
 * dies stops renewing, and its slots come back when their lease runs out.
 */
import { BulkheadStore, DistributedBulkhead } from "@bulwark/core"
import { Deferred, Effect, Fiber } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

export const program = Effect.gen(function*() {
  const store = BulkheadStore.memory()
  const renderer = yield* DistributedBulkhead.make({ name: "renderer", maxConcurrent: 1, lease: "600 millis", store })

  // A render that runs for more than two leases keeps its slot: it is renewed every 200 ms.
  const done = yield* Deferred.make<void>()
  const long = yield* Effect.forkChild(Deferred.await(done).pipe(Effect.as("rendered"), DistributedBulkhead.guard(renderer)))
  yield* Effect.sleep("1300 millis")
  assert.deepEqual(yield* DistributedBulkhead.occupancy(renderer), { inFlight: 1, queued: 0 })
  assert.equal((yield* Effect.flip(Effect.void.pipe(DistributedBulkhead.guard(renderer)))).reason, "QueueFull")
  assert.ok((yield* DistributedBulkhead.stats(renderer)).renewals >= 3)
  yield* Deferred.succeed(done, undefined)
  assert.equal(yield* Fiber.join(long), "rendered")

  // Another process took the slot and died: it will never renew or release it.
  yield* store.acquire({
    name: "renderer",
    token: "crashed-process-call",
    limit: 1,
    leaseMs: 300,
    maxQueue: 0,
    ticketMs: 300,
    now: Date.now()
  })
  assert.equal((yield* Effect.flip(Effect.void.pipe(DistributedBulkhead.guard(renderer)))).reason, "QueueFull")
  // Within one lease the slot is back.
  yield* Effect.sleep("320 millis")
  assert.equal(yield* Effect.succeed("rendered again").pipe(DistributedBulkhead.guard(renderer)), "rendered again")

  const stats = yield* DistributedBulkhead.stats(renderer)
  assert.deepEqual([stats.admitted, stats.leasesLost, stats.inFlight], [2, 0, 0])
  return stats
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
