/**
 * A worker process of test/redis/RedisRateLimiterStore.test.ts: one of
 * several OS processes sharing one rate limit (GCRA, `RATE` per second,
 * burst `BURST`) through the same redis-server, callers waiting for their
 * slot. `FIBERS` fibers (default 32) call through the limiter back to back for `RUN_MS`
 * after the test says "go".
 *
 * It reports, as Redis times (`TIME`), the slot the store committed for
 * every admitted call (`RedisRateLimiterStore.serverFrame` of each decision,
 * read through a store that wraps the Redis store) and the time each call
 * started (this process's clock plus its offset to Redis's, measured first).
 */
import { RateLimiter, RateLimiterStore } from "@bulwark/core"
import { RedisRateLimiterStore } from "@bulwark/redis"
import * as NodeRedis from "@effect/platform-node/NodeRedis"
import { Effect, References } from "effect"
import * as Redis from "effect/persistence/Redis"

const url = process.env.REDIS_URL!
const prefix = process.env.PREFIX!
const rate = Number(process.env.RATE)
const burst = Number(process.env.BURST)
const runMs = Number(process.env.RUN_MS)
// Enough callers that reservations run far ahead: a process starved of CPU for a moment still has its slots taken.
const fibers = Number(process.env.FIBERS ?? 32)

const send = (message: unknown) => Effect.sync(() => process.send!(message))

const go = Effect.callback<void>((resume) => {
  process.once("message", (message) => message === "go" && resume(Effect.void))
})

/** Redis time minus this process's time, from the quickest of a few TIME round trips (error: half of it). */
const offsetToRedis = Effect.gen(function*() {
  const redis = yield* Redis.Redis
  let best = { rtt: Infinity, offset: 0 }
  for (let i = 0; i < 20; i++) {
    const before = Date.now()
    const [seconds, micros] = (yield* redis.send<ReadonlyArray<string>>("TIME")).map(Number)
    const after = Date.now()
    if (after - before < best.rtt) best = { rtt: after - before, offset: seconds * 1000 + micros / 1000 - (before + after) / 2 }
  }
  return best.offset
})

const program = Effect.gen(function*() {
  const redis = yield* RedisRateLimiterStore.make({ prefix })
  const offset = yield* offsetToRedis
  const slots: Array<number> = []
  const starts: Array<number> = []
  // The Redis store, with every admitted decision's slot written down on the way.
  const store = RateLimiterStore.make({
    consume: (...args) =>
      Effect.map(redis.consume(...args), (d) => {
        if (d.admitted) slots.push(RedisRateLimiterStore.serverFrame(d)!.at)
        return d
      }),
    refund: redis.refund,
    block: redis.block
  })
  const limiter = yield* RateLimiter.make({
    name: "fleet",
    algorithm: RateLimiter.gcra({ rate, per: "1 second", burst }),
    onExceeded: "wait",
    maxWait: "5 seconds",
    store
  })
  yield* send({ type: "ready" })
  yield* go
  const deadline = Date.now() + runMs
  const call = Effect.sync(() => void starts.push(Date.now() + offset)).pipe(RateLimiter.guard(limiter))
  const caller = Effect.gen(function*() {
    while (Date.now() < deadline) yield* call
  })
  yield* Effect.all(Array.from({ length: fibers }, () => caller), { concurrency: "unbounded", discard: true })
  yield* send({ type: "done", report: { slots, starts } })
}).pipe(
  Effect.scoped,
  Effect.provide(NodeRedis.layer({ url, disableOfflineQueue: true })),
  Effect.provideService(References.MinimumLogLevel, "Error")
)

Effect.runPromise(program).then(
  () => process.exit(0),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
