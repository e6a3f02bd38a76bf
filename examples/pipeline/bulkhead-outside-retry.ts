/**
 * The bulkhead sits outside the retry. A call takes one slot and keeps it
 * across all its attempts, so retries never add concurrency, and a
 * `BulkheadFull` comes out at once: the retry inside never sees it. The price
 * is that the slot stays taken while the retry waits out its backoff.
 */
import { Bulkhead, Policy, Retry } from "@bulwark/core"
import { Data, Effect, Fiber } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

class Conflict extends Data.TaggedError("Conflict") {}

export const program = Effect.gen(function*() {
  const slots = yield* Bulkhead.make({ name: "inventory", maxConcurrent: 1 })
  const inventory = yield* Policy.make({
    name: "inventory",
    bulkhead: slots,
    retry: Retry.policy({ maxAttempts: 3, base: "100 millis", jitter: "none" })
  })

  // Fails twice, then answers.
  let attempts = 0
  const reserve = Effect.suspend(() => (++attempts < 3 ? Effect.fail(new Conflict()) : Effect.succeed("reserved")))
  const first = yield* Effect.forkChild(reserve.pipe(Policy.guard(inventory)), { startImmediately: true })

  // The first attempt failed; the call now waits 100 ms before its retry, holding the only slot.
  assert.equal(attempts, 1)
  assert.equal((yield* Bulkhead.stats(slots)).inFlight, 1)

  // Another call is refused at once. The refusal is final: it never reaches the retry.
  let started = 0
  const refused = yield* Effect.flip(Effect.sync(() => ++started).pipe(Policy.guard(inventory)))
  assert.equal(refused._tag, "BulkheadFull")
  assert.equal(started, 0)

  assert.equal(yield* Fiber.join(first), "reserved")
  const stats = yield* Bulkhead.stats(slots)
  assert.deepEqual([stats.admitted, stats.peakInFlight, stats.inFlight, stats.rejected.QueueFull], [1, 1, 0, 1])
  const retry = yield* Retry.stats(inventory.components.retry!)
  assert.deepEqual([retry.calls, retry.attempts], [1, 3]) // three attempts, one admission
  return stats
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
