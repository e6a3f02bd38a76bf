/**
 * How long a call may wait: the bulkhead's `queueTimeout`, a shorter per-call
 * `queueTimeout`, or an absolute `deadline` read from Effect's `Clock`. When
 * the allowed wait runs out, the call is refused with reason `QueueTimeout`.
 */
import { Bulkhead } from "@bulwark/core"
import { Clock, Duration, Effect, Fiber, Latch } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

export const program = Effect.gen(function*() {
  const search = yield* Bulkhead.make({ name: "search", maxConcurrent: 1, maxQueue: 5, queueTimeout: "50 millis" })
  const backend = yield* Latch.make()
  const busy = yield* Effect.forkChild(backend.await.pipe(Bulkhead.guard(search)), { startImmediately: true })
  const query = (options?: Bulkhead.GuardOptions) => Effect.flip(Effect.void.pipe(Bulkhead.guard(search, options)))
  const waitedMs = (e: Bulkhead.BulkheadFull) => Duration.toMillis(e.waited)

  // The only permit is held, so each call below waits in the queue until its allowed wait runs out.
  const plain = yield* query() // the bulkhead's queueTimeout: 50 ms
  assert.equal(plain.reason, "QueueTimeout")
  assert.ok(waitedMs(plain) >= 40)

  const patient = yield* query({ queueTimeout: "10 seconds" }) // a per-call timeout may only shorten: still 50 ms
  assert.ok(waitedMs(patient) >= 40 && waitedMs(patient) < 1000)

  const hurried = yield* query({ queueTimeout: 0 }) // no wait at all: refused at once, but as a timeout
  assert.deepEqual([hurried.reason, waitedMs(hurried)], ["QueueTimeout", 0])

  const now = yield* Clock.currentTimeMillis
  const budgeted = yield* query({ deadline: now + 20 }) // an absolute deadline ends the wait too
  assert.equal(budgeted.reason, "QueueTimeout")
  assert.ok(waitedMs(budgeted) < 40)

  // With the permit free, a deadline in the future runs at once...
  yield* backend.open
  yield* Fiber.join(busy)
  yield* Effect.void.pipe(Bulkhead.guard(search, { deadline: (yield* Clock.currentTimeMillis) + 1000 }))
  // ...but a deadline already passed is refused: the caller's budget is spent, nobody waits for the result.
  const late = yield* query({ deadline: (yield* Clock.currentTimeMillis) - 1 })
  assert.deepEqual([late.reason, waitedMs(late)], ["QueueTimeout", 0])

  const stats = yield* Bulkhead.stats(search)
  assert.deepEqual([stats.admitted, stats.rejected.QueueTimeout], [2, 5])
  return stats.rejected
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
