/**
 * Weighted calls hold several permits. The queue stays strictly FIFO: a light
 * call that would fit never overtakes a heavy call that arrived first. Effect's
 * `Semaphore` lets it overtake, which can starve heavy calls.
 */
import { Bulkhead } from "@bulwark/core"
import { Effect, Fiber, Latch, Semaphore } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

export const program = Effect.gen(function*() {
  const reports = yield* Bulkhead.make({ name: "reports", maxConcurrent: 4, maxQueue: 10 })
  const warehouse = yield* Latch.make()
  const started: Array<string> = []
  const job = (name: string, weight: number) =>
    Effect.sync(() => started.push(name)).pipe(Effect.andThen(warehouse.await), Bulkhead.guard(reports, { weight }))

  const summary = yield* Effect.forkChild(job("summary", 2), { startImmediately: true }) // holds 2 of 4
  const fullExport = yield* Effect.forkChild(job("export", 4), { startImmediately: true }) // needs all 4: waits
  const ping = yield* Effect.forkChild(job("ping", 1), { startImmediately: true }) // would fit, but waits its turn
  assert.deepEqual(started, ["summary"])
  yield* warehouse.open
  yield* Fiber.joinAll([summary, fullExport, ping])
  assert.deepEqual(started, ["summary", "export", "ping"])

  // A weight above maxConcurrent could never be admitted: refused at once, never queued forever.
  const oversized = yield* Effect.flip(job("archive", 5))
  assert.equal(oversized.reason, "Oversized")

  // A weight that is not a positive integer is a bug in the caller: the call dies, naming the option.
  const defect = yield* job("typo", 0).pipe(Effect.as("ran"), Effect.catchDefect((e) => Effect.succeed(String(e))))
  assert.equal(defect, `Error: Bulkhead.guard: option "weight" must be a positive integer, got 0`)

  // The same three jobs on Effect's Semaphore: "ping" overtakes "export".
  const semaphore = yield* Semaphore.make(4)
  const gate = yield* Latch.make()
  const overtaken: Array<string> = []
  const semaphoreJob = (name: string, weight: number) =>
    Effect.sync(() => overtaken.push(name)).pipe(Effect.andThen(gate.await), semaphore.withPermits(weight))
  const fibers = [
    yield* Effect.forkChild(semaphoreJob("summary", 2), { startImmediately: true }),
    yield* Effect.forkChild(semaphoreJob("export", 4), { startImmediately: true }),
    yield* Effect.forkChild(semaphoreJob("ping", 1), { startImmediately: true })
  ]
  assert.deepEqual(overtaken, ["summary", "ping"])
  yield* gate.open
  yield* Fiber.joinAll(fibers)
  return { bulkhead: started, semaphore: overtaken }
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
