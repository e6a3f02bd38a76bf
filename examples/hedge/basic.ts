/**
 * `Hedge.guard` starts a second attempt of a call that has not answered after
 * `after`, and takes the first success. Here the first replica is stuck: the
 * hedge answers, the stuck attempt is interrupted (its finalizer runs) and the
 * bulkhead around each attempt has its permit back when the call returns.
 */
import { Bulkhead, Hedge } from "@bulwark/core"
import { Effect } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

export const program = Effect.scoped(Effect.gen(function*() {
  const pool = yield* Bulkhead.make({ name: "replicas", maxConcurrent: 4 })
  const log: Array<string> = []
  let attempt = 0
  // Attempt 1 hangs (a slow replica); every later attempt answers in 5 ms.
  const read = Effect.suspend(() => {
    const n = ++attempt
    log.push(`start ${n}`)
    const work = n === 1 ? Effect.never : Effect.sleep("5 millis").pipe(Effect.as(`row from attempt ${n}`))
    return work.pipe(Effect.onInterrupt(() => Effect.sync(() => log.push(`interrupted ${n}`))))
  })

  const hedged = read.pipe(
    Bulkhead.guard(pool), // each attempt takes its own permit
    Hedge.guard({ name: "read", after: "20 millis", maxAttempts: 3 })
  )
  const row = yield* hedged
  assert.equal(row, "row from attempt 2")
  // The loser was interrupted before the call returned, and gave its permit back.
  assert.deepEqual(log, ["start 1", "start 2", "interrupted 1"])
  assert.equal((yield* Bulkhead.stats(pool)).inFlight, 0)

  // A call that answers within `after` is never hedged.
  attempt = 1
  log.length = 0
  assert.equal(yield* hedged, "row from attempt 2")
  assert.deepEqual(log, ["start 2"])
  return row
}))

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
