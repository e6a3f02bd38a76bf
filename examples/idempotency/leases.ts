/**
 * A claim is a lease. While the effect runs, the claim is renewed every
 * third of the lease, so a long call keeps it; a process that crashes stops
 * renewing and its claim frees itself when the lease runs out. Interrupting
 * a call releases its claim at once.
 */
import { Idempotency, IdempotencyStore } from "@bulwark/core"
import { Effect, Fiber, Schema } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

export const program = Effect.gen(function*() {
  const store = IdempotencyStore.memory()
  const jobs = yield* Idempotency.make({ name: "jobs", store })
  const options = { ttl: "1 hour", result: Schema.String, lease: "300 millis", using: jobs } as const

  // A call that runs for three leases keeps its claim: it is renewed every 100 ms.
  const long = yield* Effect.forkChild(Idempotency.once("nightly", Effect.sleep("900 millis").pipe(Effect.as("done")), options))
  yield* Effect.sleep("700 millis")
  assert.equal((yield* Effect.flip(Idempotency.once("nightly", Effect.succeed("again"), options))).reason, "DuplicateInFlight")
  assert.equal(yield* Fiber.join(long), "done")

  // Another process claimed "import" (instance "jobs" stores it as "jobs:import") and crashed.
  const crashed = yield* store.claim("jobs:import", 300, Date.now())
  assert.equal(crashed._tag, "Claimed")
  const refused = yield* Effect.flip(Idempotency.once("import", Effect.succeed("imported"), options))
  assert.equal(refused.reason, "DuplicateInFlight")
  assert.ok(refused.leaseLeft !== undefined) // how long the crashed claim still holds the key
  yield* Effect.sleep("350 millis")
  assert.equal(yield* Idempotency.once("import", Effect.succeed("imported"), options), "imported")

  // Interrupted while running: the claim is released at once, and the next call runs.
  const cancelled = yield* Effect.forkChild(Idempotency.once("export", Effect.never, options))
  yield* Effect.sleep("10 millis")
  yield* Fiber.interrupt(cancelled)
  assert.equal(yield* Idempotency.once("export", Effect.succeed("exported"), options), "exported")

  const stats = yield* Idempotency.stats(jobs)
  assert.deepEqual([stats.abandoned, stats.leasesLost, stats.inFlight], [1, 0, 0])
  return stats
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
