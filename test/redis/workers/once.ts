/**
 * A worker process of test/redis/RedisIdempotencyStore.test.ts: one of
 * several OS processes calling `Idempotency.once` on the same keys through
 * the same redis-server. It reports every execution of an effect to the test
 * over IPC as it happens, then what each call returned.
 *
 * Started with `fork(once.ts, [mode], { execArgv: ["--import", register.ts] })`
 * and its settings in the environment:
 *
 * - `REDIS_URL`, `PREFIX`: the server and the key prefix of the run.
 * - `KEYS`: how many keys (`key-0` ... `key-<n-1>`).
 * - mode `exactly-once`: every key once, four at a time, in an order of
 *   its own (the keys shuffled per process), duplicates waiting for the
 *   result: the processes meet on keys while others are still running.
 * - mode `outage`: the keys one after the other until `DEADLINE_MS` (epoch
 *   ms), retrying a call that fails for a store reason after 20 ms; the test
 *   stops and restarts the server meanwhile.
 *
 * Nothing starts before the test sends "go", so that the processes race;
 * before that, a call of its own loads the scripts and warms the connection.
 */
import { Idempotency, type IdempotencyError } from "@bulwark/core"
import { RedisIdempotencyStore } from "@bulwark/redis"
import * as NodeRedis from "@effect/platform-node/NodeRedis"
import { Effect, Layer, Random, References, Schema } from "effect"

const mode = process.argv[2]
const url = process.env.REDIS_URL!
const prefix = process.env.PREFIX!
const keys = Array.from({ length: Number(process.env.KEYS) }, (_, i) => `key-${i}`)
const deadline = Number(process.env.DEADLINE_MS ?? 0)

const send = (message: unknown) => Effect.sync(() => process.send!(message))

/** The effect that must run at most once per key: it tells the test, takes a moment, returns who ran it. */
const work = (key: string) =>
  send({ type: "executed", key, pid: process.pid }).pipe(
    Effect.andThen(Random.nextIntBetween(20, 40)),
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
  yield* send({ type: "done", results: Object.fromEntries(results), claims: stats.claims, replays: stats.replays, waited: stats.waited })
})

const isStoreReason = (e: IdempotencyError) => e.reason.startsWith("Store")

const outage = Effect.gen(function*() {
  const reasons: Record<string, number> = {}
  const results: Record<string, string> = {}
  for (const key of keys) {
    while (Date.now() < deadline) {
      const exit = yield* Effect.exit(Idempotency.once(key, work(key), { ...options, maxWait: "2 seconds" }))
      if (exit._tag === "Success") {
        results[key] = exit.value
        break
      }
      const error = exit.cause.reasons.find((r) => r._tag === "Fail")
      const e = error?._tag === "Fail" ? (error.error as IdempotencyError) : undefined
      if (e === undefined || !isStoreReason(e)) return yield* Effect.die(exit.cause)
      reasons[e.reason] = (reasons[e.reason] ?? 0) + 1
      yield* Effect.sleep(20)
    }
    yield* Effect.sleep(10)
  }
  const stats = yield* Idempotency.stats(Idempotency.Store)
  yield* send({ type: "done", results, reasons, storeErrors: stats.storeErrors })
})

const RedisLive = NodeRedis.layer({ url, disableOfflineQueue: true })
const IdempotencyLive = RedisIdempotencyStore.layer({ prefix, name: "workers", timeout: "1 second" }).pipe(Layer.provide(RedisLive))

const go = Effect.callback<void>((resume) => {
  process.once("message", (message) => message === "go" && resume(Effect.void))
})

const program = Effect.gen(function*() {
  yield* Idempotency.once(`warm-up-${process.pid}`, Effect.void, { ttl: "1 second", result: Schema.Void })
  yield* send({ type: "ready" })
  yield* go
  yield* mode === "outage" ? outage : exactlyOnce
}).pipe(
  Effect.provide(IdempotencyLive),
  Effect.scoped,
  // The client's warnings while the server is down are expected here: keep the test's output clean.
  Effect.provideService(References.MinimumLogLevel, "Error")
)

Effect.runPromise(program).then(
  () => process.exit(0),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
