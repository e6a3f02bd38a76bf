/**
 * `resize` changes `maxConcurrent` while calls run. Growing admits queued
 * calls in arrival order; shrinking never interrupts running work, it only
 * stops admitting until the permits held fall below the new limit.
 */
import { Bulkhead } from "@bulwark/core"
import { Effect, Fiber, Latch } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

export const program = Effect.gen(function*() {
  const exports = yield* Bulkhead.make({ name: "exports", maxConcurrent: 1, maxQueue: 10 })
  const held = Effect.map(Bulkhead.stats(exports), (s) => [s.inFlight, s.queued])
  // Each job runs until its own latch opens.
  const job = Effect.fnUntraced(function*() {
    const finish = yield* Latch.make()
    const fiber = yield* Effect.forkChild(finish.await.pipe(Bulkhead.guard(exports)), { startImmediately: true })
    return { finish: finish.open, done: Fiber.join(fiber) }
  })

  const [a, b, c, d] = [yield* job(), yield* job(), yield* job(), yield* job()]
  assert.deepEqual(yield* held, [1, 3]) // a runs; b, c, d wait

  yield* Bulkhead.resize(exports, 3) // grow: b and c are admitted, in arrival order
  assert.deepEqual(yield* held, [3, 1])

  yield* Bulkhead.resize(exports, 1) // shrink: a, b and c keep running
  yield* a.finish
  yield* a.done
  yield* b.finish
  yield* b.done
  assert.deepEqual(yield* held, [1, 1]) // c still holds the one permit: d keeps waiting
  yield* c.finish
  yield* c.done
  assert.deepEqual(yield* held, [1, 0]) // below the new limit again: d is admitted
  yield* d.finish
  yield* d.done

  // An invalid size is refused with the same error as invalid options.
  const invalid = yield* Effect.flip(Bulkhead.resize(exports, 0))
  assert.equal(invalid._tag, "InvalidOptions")
  assert.equal(invalid.message, "maxConcurrent: Expected an integer >= 1, got 0")

  const stats = yield* Bulkhead.stats(exports)
  assert.deepEqual([stats.maxConcurrent, stats.admitted, stats.peakInFlight], [1, 4, 3])
  return stats.maxConcurrent
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
