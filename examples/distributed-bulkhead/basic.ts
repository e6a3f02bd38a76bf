/**
 * One cap for every process: two instances with the same name and the same
 * store (here two "processes" in one, sharing an in-memory store; across
 * real processes the store is Redis) share `maxConcurrent` slots. A call
 * that finds every slot held is rejected at once with a typed
 * `BulkheadFull`, whichever process holds them.
 */
import { BulkheadFull, BulkheadStore, DistributedBulkhead } from "@bulwark/core"
import { Deferred, Effect, Fiber } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

export const program = Effect.gen(function*() {
  // RedisBulkheadStore.make() from @bulwark/redis across processes; the same contract in memory.
  const store = BulkheadStore.memory()
  const options = { name: "reports-db", maxConcurrent: 2, store } as const
  const api = yield* DistributedBulkhead.make(options) // process 1
  const worker = yield* DistributedBulkhead.make(options) // process 2

  const gate = yield* Deferred.make<void>()
  const report = (id: string) => Deferred.await(gate).pipe(Effect.as(id))
  const started = [yield* Deferred.make<void>(), yield* Deferred.make<void>()]
  const holding = (id: string, i: number) => Deferred.succeed(started[i], undefined).pipe(Effect.andThen(report(id)))
  const a = yield* Effect.forkChild(holding("a", 0).pipe(DistributedBulkhead.guard(api)))
  const b = yield* Effect.forkChild(holding("b", 1).pipe(DistributedBulkhead.guard(worker)))
  yield* Effect.forEach(started, Deferred.await)

  // Both slots are held, one by each process: a third call is rejected wherever it runs.
  assert.deepEqual(yield* DistributedBulkhead.occupancy(api), { inFlight: 2, queued: 0 })
  const rejected = yield* Effect.flip(report("c").pipe(DistributedBulkhead.guard(api)))
  assert.ok(rejected instanceof BulkheadFull)
  assert.equal(rejected.reason, "QueueFull")
  assert.equal(rejected.message, `Bulkhead "reports-db" rejected the call: QueueFull`)

  // Every exit gives the slot back: success, failure, defect or interruption.
  yield* Deferred.succeed(gate, undefined)
  assert.deepEqual([yield* Fiber.join(a), yield* Fiber.join(b)], ["a", "b"])
  assert.equal(yield* report("c").pipe(DistributedBulkhead.guard(worker)), "c")
  assert.deepEqual(yield* DistributedBulkhead.occupancy(api), { inFlight: 0, queued: 0 })

  // Stats are per process; occupancy is global.
  const [apiStats, workerStats] = [yield* DistributedBulkhead.stats(api), yield* DistributedBulkhead.stats(worker)]
  assert.deepEqual([apiStats.admitted, apiStats.rejected.QueueFull, workerStats.admitted], [1, 1, 2])
  return { api: apiStats.admitted, worker: workerStats.admitted }
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
