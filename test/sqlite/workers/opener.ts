/**
 * A worker of test/sqlite/SqliteDatabase.test.ts: one of several processes
 * opening the same new database file at the same moment. It waits for "go",
 * runs `SqliteDatabase.check` (which creates the schema under the lock) and
 * a claim, and reports how that went.
 */
import { SqliteDatabase, SqliteIdempotencyStore } from "@bulwark/sqlite"
import { Effect } from "effect"

const file = process.argv[2]!

const program = Effect.gen(function*() {
  yield* Effect.callback<void>((resume) => {
    process.once("message", (message) => message === "go" && resume(Effect.void))
    process.send!({ type: "ready" })
  })
  yield* SqliteDatabase.check({ file, lockTimeout: "5 seconds" })
  const store = yield* SqliteIdempotencyStore.make({ file, lockTimeout: "5 seconds" })
  const claim = yield* store.claim(`opener-${process.pid}`, 60_000, Date.now())
  yield* Effect.callback<void>((resume) => {
    process.send!({ type: "done", claim: claim._tag }, undefined, {}, () => resume(Effect.void))
  })
}).pipe(Effect.scoped)

Effect.runPromise(program).then(
  () => process.exit(0),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
