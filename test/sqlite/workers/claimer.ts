/**
 * A worker of test/sqlite: a process that claims an idempotency key in the
 * database file `argv[2]` and then crashes before it completes: it runs
 * `Idempotency.once(argv[3], never)` with a long lease, reports "claimed"
 * with its pid once the effect has started, and waits for the test to kill
 * it (SIGKILL: no finalizer runs, the claim stays in the file).
 */
import { Idempotency } from "@bulwark/core"
import { SqliteIdempotencyStore } from "@bulwark/sqlite"
import { Effect, Schema } from "effect"

const [file, key] = process.argv.slice(2) as [string, string]

const program = Idempotency.once(
  key,
  Effect.andThen(Effect.sync(() => process.send!({ type: "claimed", pid: process.pid })), Effect.never),
  { ttl: "1 hour", lease: "1 hour", result: Schema.String }
).pipe(Effect.provide(SqliteIdempotencyStore.layer({ name: "crash", file })))

Effect.runPromise(program).then(
  () => process.exit(0),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
