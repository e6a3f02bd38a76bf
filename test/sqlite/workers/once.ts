/**
 * A worker of test/sqlite/SqliteIdempotencyStore.test.ts: one of several OS
 * processes calling `Idempotency.once` on the same keys through the same
 * database file. It reports every execution of an effect to the test over
 * IPC as it happens, then what each call returned.
 *
 * Settings in the environment: `FILE` (the database), `KEYS` (how many keys,
 * `key-0` ... `key-<n-1>`). Every key once, four at a time, in an order of
 * its own (the keys shuffled per process), duplicates waiting for the
 * result: the processes meet on keys while others are still running.
 *
 * Nothing starts before the test sends "go", so that the processes race;
 * before that, a call of its own opens the file and warms the connection.
 */
import { Idempotency } from "@bulwark/core"
import { SqliteIdempotencyStore } from "@bulwark/sqlite"
import { Effect, Random, Schema } from "effect"

const file = process.env.FILE!
const keys = Array.from({ length: Number(process.env.KEYS) }, (_, i) => `key-${i}`)

/** Resolves once the message is handed to the IPC channel: the process may exit right after. */
const send = (message: unknown) =>
  Effect.callback<void>((resume) => {
    process.send!(message, undefined, {}, () => resume(Effect.void))
  })

/** The effect that must run at most once per key: it tells the test, takes a moment, returns who ran it. */
const work = (key: string) =>
  send({ type: "executed", key, pid: process.pid }).pipe(
    Effect.andThen(Random.nextIntBetween(10, 30)),
    Effect.flatMap((ms) => Effect.sleep(ms)),
    Effect.as(`${process.pid}:${key}`)
  )

const options = { ttl: "1 minute", lease: "5 seconds", result: Schema.String, onDuplicate: "wait", maxWait: "10 seconds" } as const

const exactlyOnce = Effect.gen(function*() {
  const shuffled = yield* Random.shuffle(keys)
  const results = yield* Effect.forEach(shuffled, (key) => Effect.map(Idempotency.once(key, work(key), options), (v) => [key, v]), {
    concurrency: 4
  })
  const stats = yield* Idempotency.stats(Idempotency.Store)
  yield* send({
    type: "done",
    results: Object.fromEntries(results),
    claims: stats.claims,
    waited: stats.waited,
    storeErrors: stats.storeErrors
  })
})

const go = Effect.callback<void>((resume) => {
  process.once("message", (message) => message === "go" && resume(Effect.void))
})

const program = Effect.gen(function*() {
  yield* Idempotency.once(`warm-up-${process.pid}`, Effect.void, { ttl: "1 second", result: Schema.Void })
  yield* send({ type: "ready" })
  yield* go
  yield* exactlyOnce
}).pipe(
  // A generous lock bound: this test is about exactly-once, not about the bound.
  Effect.provide(SqliteIdempotencyStore.layer({ name: "workers", file, lockTimeout: "2 seconds" })),
  Effect.scoped
)

Effect.runPromise(program).then(
  () => process.exit(0),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
