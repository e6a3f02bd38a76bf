/**
 * A permit comes back on every exit: success, failure, defect, interruption.
 * Interrupting a queued call (a timeout, a client going away) removes it from
 * the queue without leaving a phantom place behind.
 */
import { Bulkhead } from "@bulwark/core"
import { Cause, Effect, Fiber } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

export const program = Effect.gen(function*() {
  const db = yield* Bulkhead.make({ name: "db", maxConcurrent: 1, maxQueue: 1 })
  const held = Effect.map(Bulkhead.stats(db), (s) => [s.inFlight, s.queued])

  yield* Effect.fail("constraint violated").pipe(Bulkhead.guard(db), Effect.ignore)
  yield* Effect.die("bug").pipe(Bulkhead.guard(db), Effect.catchDefect(() => Effect.void))
  const timedOut = yield* Effect.flip(Effect.never.pipe(Bulkhead.guard(db), Effect.timeout("10 millis")))
  assert.ok(Cause.isTimeoutError(timedOut))
  assert.deepEqual(yield* held, [0, 0]) // three calls, three exits, no permit lost

  // The permit is held and the one place in the queue is taken.
  const slowQuery = yield* Effect.forkChild(Effect.never.pipe(Bulkhead.guard(db)), { startImmediately: true })
  const waiting = yield* Effect.forkChild(Effect.void.pipe(Bulkhead.guard(db)), { startImmediately: true })
  assert.equal((yield* Effect.flip(Effect.void.pipe(Bulkhead.guard(db)))).reason, "QueueFull")

  // Interrupting the waiting call frees its place: the next call queues instead of being refused.
  yield* Fiber.interrupt(waiting)
  assert.deepEqual(yield* held, [1, 0])
  const next = yield* Effect.forkChild(Effect.succeed("next").pipe(Bulkhead.guard(db)), { startImmediately: true })
  assert.deepEqual(yield* held, [1, 1])

  // Interrupting the running call frees its permit: the next call is admitted.
  yield* Fiber.interrupt(slowQuery)
  assert.equal(yield* Fiber.join(next), "next")
  const stats = yield* Bulkhead.stats(db)
  assert.deepEqual([stats.inFlight, stats.queued, stats.cancelled, stats.completed], [0, 0, 1, 5])
  return stats.completed
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
