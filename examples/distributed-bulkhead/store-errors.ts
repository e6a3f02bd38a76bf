/**
 * When the store cannot decide, `onStoreError` says what happens: reject
 * (`fail-closed`), run without a slot (`fail-open`), or let an in-process
 * insurance bulkhead with the same limits decide until the store answers
 * again (`local`, the default). Store errors are counted by reason.
 *
 * The store here is a real in-memory store behind a switch, standing in for
 * a Redis server that goes away and comes back.
 */
import { BulkheadStore, DistributedBulkhead, StoreError } from "@bulwark/core"
import { Deferred, Effect, Fiber } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

const switchable = () => {
  const inner = BulkheadStore.memory()
  let up = true
  const down = Effect.fail(new StoreError({ store: "example", operation: "acquire", reason: "Unavailable", message: "connection refused" }))
  const store = BulkheadStore.make({ ...inner, acquire: (request) => (up ? inner.acquire(request) : down) })
  return { store, set: (value: boolean) => (up = value) }
}

export const program = Effect.gen(function*() {
  const { set, store } = switchable()
  const make = (onStoreError: "fail-closed" | "fail-open" | "local") =>
    DistributedBulkhead.make({ name: onStoreError, maxConcurrent: 1, onStoreError, store })
  const closed = yield* make("fail-closed")
  const open = yield* make("fail-open")
  const local = yield* make("local")

  set(false) // the store goes away

  // fail-closed: protection first, the call is refused.
  const refused = yield* Effect.flip(Effect.succeed("never").pipe(DistributedBulkhead.guard(closed)))
  assert.equal(refused.reason, "StoreUnavailable")

  // fail-open: availability first, the call runs without a slot.
  assert.equal(yield* Effect.succeed("ran anyway").pipe(DistributedBulkhead.guard(open)), "ran anyway")

  // local: the insurance bulkhead decides, with the same maxConcurrent, per process.
  const started = yield* Deferred.make<void>()
  const done = yield* Deferred.make<void>()
  const running = yield* Effect.forkChild(
    Deferred.succeed(started, undefined).pipe(Effect.andThen(Deferred.await(done)), DistributedBulkhead.guard(local))
  )
  yield* Deferred.await(started)
  assert.equal((yield* Effect.flip(Effect.void.pipe(DistributedBulkhead.guard(local)))).reason, "QueueFull")
  yield* Deferred.succeed(done, undefined)
  yield* Fiber.join(running)
  assert.equal((yield* DistributedBulkhead.stats(local)).mode, "Local")

  set(true) // the store is back
  // The store is tried again 100 ms after the failure (then 200, 400, ... up to 2 s while it keeps
  // failing): meanwhile calls go local; the first call the store answers brings its mode back.
  while ((yield* DistributedBulkhead.stats(local)).mode === "Local") {
    yield* Effect.sleep("50 millis")
    yield* Effect.void.pipe(DistributedBulkhead.guard(local))
  }

  const stats = yield* DistributedBulkhead.stats(local)
  assert.deepEqual([stats.mode, stats.admitted, stats.localSwitches], ["Store", 1, 1])
  assert.ok(stats.admittedLocally >= 1 && stats.storeErrors.Unavailable >= 1)
  assert.equal((yield* DistributedBulkhead.stats(open)).admittedWithoutStore, 1)
  assert.equal((yield* DistributedBulkhead.stats(closed)).rejected.StoreUnavailable, 1)
  return stats
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
