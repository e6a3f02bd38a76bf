/**
 * Bulkheads and `Effect.retry`. Outside the retry, one admission and one
 * permit cover every attempt. `BulkheadFull` is an ordinary typed error, so a
 * retry's `while` predicate decides whether a refusal is worth retrying.
 */
import { Bulkhead } from "@bulwark/core"
import { Data, Effect, Latch, Schedule } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

class Conflict extends Data.TaggedError("Conflict") {}

export const program = Effect.gen(function*() {
  const inventory = yield* Bulkhead.make({ name: "inventory", maxConcurrent: 1 })
  let attempts = 0
  const reserve = Effect.suspend(() => ++attempts < 3 ? Effect.fail(new Conflict()) : Effect.succeed("reserved"))

  // Bulkhead outside the retry: three attempts, one admission, never more than one permit.
  assert.equal(yield* reserve.pipe(Effect.retry({ times: 5 }), Bulkhead.guard(inventory)), "reserved")
  const outside = yield* Bulkhead.stats(inventory)
  assert.deepEqual([attempts, outside.admitted, outside.peakInFlight], [3, 1, 1])

  // Hold the only permit for 30 ms.
  const restock = yield* Latch.make()
  yield* Effect.forkChild(restock.await.pipe(Bulkhead.guard(inventory)), { startImmediately: true })
  yield* Effect.forkChild(Effect.sleep("30 millis").pipe(Effect.andThen(restock.open)))

  // Retry everything but refusals: a refusal surfaces at once instead of hammering a full bulkhead.
  attempts = 0
  const refused = yield* reserve.pipe(
    Bulkhead.guard(inventory),
    Effect.retry({ times: 5, while: (e) => e._tag !== "BulkheadFull" }),
    Effect.flip
  )
  assert.deepEqual([refused._tag, attempts], ["BulkheadFull", 0])

  // Retry refusals too, with a pause: each attempt is a new admission, refused until the permit is back.
  attempts = 2
  const retried = yield* reserve.pipe(
    Bulkhead.guard(inventory),
    Effect.retry({ schedule: Schedule.spaced("10 millis"), times: 20, while: (e) => e._tag === "BulkheadFull" })
  )
  const inside = yield* Bulkhead.stats(inventory)
  assert.equal(retried, "reserved")
  assert.ok(inside.rejected.QueueFull >= 2) // the first refusal above, and at least one retried one
  return inside.rejected
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
