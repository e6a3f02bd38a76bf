/**
 * At most `maxConcurrent` calls run and at most `maxQueue` wait, in arrival
 * order. A call that finds both full is refused at once with a typed
 * `BulkheadFull`.
 */
import { Bulkhead } from "@bulwark/core"
import { Duration, Effect, Fiber, Latch } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

export const program = Effect.gen(function*() {
  const payments = yield* Bulkhead.make({ name: "payments", maxConcurrent: 2, maxQueue: 2 })
  const paymentsApi = yield* Latch.make() // closed: every call hangs until we open it
  const started: Array<number> = []
  const charge = (order: number) =>
    Effect.sync(() => started.push(order)).pipe(
      Effect.andThen(paymentsApi.await),
      Effect.as(`order ${order} charged`),
      Bulkhead.guard(payments)
    )

  // Four calls arrive while the payments API hangs: two run, two wait.
  const calls = yield* Effect.forEach([1, 2, 3, 4], (order) => Effect.forkChild(charge(order), { startImmediately: true }))
  const busy = yield* Bulkhead.stats(payments)
  assert.deepEqual([busy.inFlight, busy.queued], [2, 2])

  // A fifth call finds every slot and every place taken: refused at once, with a typed error.
  const refused = yield* Effect.flip(charge(5))
  assert.equal(refused._tag, "BulkheadFull")
  assert.equal(refused.reason, "QueueFull")
  assert.equal(refused.message, `Bulkhead "payments" rejected the call: QueueFull`)
  assert.deepEqual([refused.maxConcurrent, refused.maxQueue, Duration.toMillis(refused.waited)], [2, 2, 0])

  // The API recovers: the waiting calls run in arrival order and every permit comes back.
  yield* paymentsApi.open
  const results = yield* Fiber.joinAll(calls)
  assert.deepEqual(started, [1, 2, 3, 4])
  const idle = yield* Bulkhead.stats(payments)
  assert.deepEqual([idle.inFlight, idle.queued, idle.admitted, idle.completed, idle.rejectedTotal], [0, 0, 4, 4, 1])
  return results
}).pipe(Effect.scoped) // the bulkhead lives as long as this scope

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
