/**
 * With `maxQueue`, a call that finds no free slot takes a ticket in the
 * store's waiting room and polls. Tickets are served in the order they were
 * taken, across processes: a call is admitted only when every ticket ahead
 * of it fits too. A call waits at most `queueTimeout`, then fails with
 * `QueueTimeout`, and gives its ticket back.
 */
import { BulkheadStore, DistributedBulkhead } from "@bulwark/core"
import { Deferred, Duration, Effect, Fiber } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

export const program = Effect.gen(function*() {
  const store = BulkheadStore.memory()
  const options = { name: "exports", maxConcurrent: 1, maxQueue: 10, pollInterval: "20 millis", store } as const
  const east = yield* DistributedBulkhead.make(options)
  const west = yield* DistributedBulkhead.make(options)

  const started: Array<string> = []
  const job = (id: string, ms: number) => Effect.sync(() => started.push(id)).pipe(Effect.andThen(Effect.sleep(ms)))
  /** Waits until the store's waiting room holds `n` tickets. */
  const queued = (n: number) =>
    Effect.gen(function*() {
      while ((yield* DistributedBulkhead.occupancy(east)).queued < n) yield* Effect.sleep("1 millis")
    })

  const done = yield* Deferred.make<void>()
  const first = yield* Effect.forkChild(Effect.andThen(job("first", 0), Deferred.await(done)).pipe(DistributedBulkhead.guard(east)))
  // Four waiters, taking their tickets in this order, alternating between the two processes.
  const waiters = []
  for (const [id, bulkhead] of [["w1", west], ["e1", east], ["w2", west], ["e2", east]] as const) {
    waiters.push(yield* Effect.forkChild(job(id, 20).pipe(DistributedBulkhead.guard(bulkhead))))
    yield* queued(waiters.length)
  }
  assert.deepEqual(yield* DistributedBulkhead.occupancy(east), { inFlight: 1, queued: 4 })

  // A call that may wait only 30 ms gives up with QueueTimeout; its ticket is given back.
  const impatient = yield* Effect.flip(job("impatient", 0).pipe(DistributedBulkhead.guard(west, { queueTimeout: "30 millis" })))
  assert.equal(impatient.reason, "QueueTimeout")
  assert.ok(Duration.toMillis(impatient.waited) >= 30)

  yield* Deferred.succeed(done, undefined)
  yield* Fiber.join(first)
  for (const waiter of waiters) yield* Fiber.join(waiter)
  // Ticket order, whichever process polled first.
  assert.deepEqual(started, ["first", "w1", "e1", "w2", "e2"])

  const stats = yield* DistributedBulkhead.stats(west)
  assert.deepEqual([stats.admittedAfterWait, stats.rejected.QueueTimeout], [2, 1])
  return started
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
