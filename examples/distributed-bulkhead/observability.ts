/**
 * What an instance tells: `stats` (this process' counters), `occupancy`
 * (the store's global figures), `events` (each call's story, free while
 * nobody listens) and pull-based metrics `bulwark.distributed_bulkhead.*`
 * labelled by `name` and, for rejections, store errors and degraded
 * admissions, `reason`.
 */
import { DistributedBulkhead } from "@bulwark/core"
import { Deferred, Effect, Fiber, Metric, Stream } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

export const program = Effect.gen(function*() {
  const db = yield* DistributedBulkhead.make({ name: "db", maxConcurrent: 1, maxQueue: 1 })
  const seen: Array<string> = []
  yield* DistributedBulkhead.events(db).pipe(
    Stream.runForEach((e) => Effect.sync(() => seen.push(e._tag === "Admitted" ? `Admitted via ${e.via}` : e._tag))),
    Effect.forkChild({ startImmediately: true }) // listening from now on
  )

  const done = yield* Deferred.make<void>()
  const held = yield* Effect.forkChild(Deferred.await(done).pipe(DistributedBulkhead.guard(db)), { startImmediately: true })
  const waiting = yield* Effect.forkChild(Effect.void.pipe(DistributedBulkhead.guard(db)), { startImmediately: true })
  yield* Effect.flip(Effect.void.pipe(DistributedBulkhead.guard(db))) // the waiting room is full
  assert.deepEqual(yield* DistributedBulkhead.occupancy(db), { inFlight: 1, queued: 1 })
  yield* Deferred.succeed(done, undefined)
  yield* Fiber.join(held)
  yield* Fiber.join(waiting)
  while (seen.length < 6) yield* Effect.sleep("1 millis")

  assert.deepEqual(seen, ["Admitted via Store", "Queued", "Rejected", "Released", "Admitted via Store", "Released"])

  const stats = yield* DistributedBulkhead.stats(db)
  assert.deepEqual([stats.admitted, stats.admittedAfterWait, stats.rejected.QueueFull, stats.completed], [2, 1, 1, 2])

  const metrics = (yield* Metric.snapshot).filter((m) => m.id.startsWith("bulwark.distributed_bulkhead.") && m.attributes?.name === "db")
  const rejected = metrics.find((m) => m.id === "bulwark.distributed_bulkhead.rejected" && m.attributes?.reason === "QueueFull")
  assert.deepEqual(rejected?.state, { count: 1, incremental: true })
  return metrics.map((m) => `${m.id}${m.attributes?.reason === undefined ? "" : `{reason=${m.attributes.reason}}`}`)
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
