/**
 * A worker process of test/redis/RedisBulkheadStore.test.ts: one of several
 * OS processes guarding calls with one `DistributedBulkhead` through the
 * same redis-server. It reports to the test over IPC.
 *
 * Started with `fork(bulkhead.ts, [mode], { execArgv: ["--import", register.ts] })`
 * and its settings in the environment:
 *
 * - `REDIS_URL`, `PREFIX`: the server and the key prefix of the run.
 * - `CAP`: `maxConcurrent`; `LEASE_MS`: the lease.
 * - mode `cap`: `CALLS` calls, `FIBERS` at a time, each holding its slot
 *   5-20 ms. Every call reads Redis `TIME` as soon as it is admitted and
 *   again just before it ends, so that its recorded interval lies inside the
 *   time it held its slot, on the one clock every process shares. Reports
 *   the intervals.
 * - mode `hold`: `HOLD` calls that never end; reports "holding" once they
 *   are all admitted, then waits to be killed.
 * - mode `outage`: 3 fibers make calls (10-30 ms each) for `DURATION_MS`
 *   after "go" with `onStoreError: "local"`; the test stops and restarts the
 *   server meanwhile. Reports how calls were admitted, before and after the
 *   store came back, and the final stats.
 *
 * Nothing starts before the test sends "go"; before that, a call of its own
 * loads the scripts and warms the connection.
 */
import { DistributedBulkhead } from "@bulwark/core"
import { RedisBulkheadStore } from "@bulwark/redis"
import * as NodeRedis from "@effect/platform-node/NodeRedis"
import { Effect, Random, References, Stream } from "effect"
import * as Redis from "effect/persistence/Redis"

const mode = process.argv[2]
const env = (name: string, fallback?: number) => Number(process.env[name] ?? fallback)
const url = process.env.REDIS_URL!
const prefix = process.env.PREFIX!
const cap = env("CAP", 3)
const leaseMs = env("LEASE_MS", 2000)

const send = (message: unknown) => Effect.sync(() => process.send!(message))

const go = Effect.callback<void>((resume) => {
  process.once("message", (message) => message === "go" && resume(Effect.void))
})

const program = Effect.gen(function*() {
  const redis = yield* Redis.Redis
  const store = yield* RedisBulkheadStore.make({ prefix, timeout: "1 second" })
  const bulkhead = yield* DistributedBulkhead.make({
    name: "shared",
    maxConcurrent: cap,
    maxQueue: 1000,
    lease: leaseMs,
    pollInterval: 20,
    onStoreError: mode === "outage" ? "local" : "fail-closed",
    store
  })
  /** Redis' clock in microseconds: one clock for every process. */
  const time = Effect.map(redis.send<ReadonlyArray<string>>("TIME"), ([s, us]) => Number(s) * 1_000_000 + Number(us))
  yield* Effect.void.pipe(DistributedBulkhead.guard(bulkhead))
  yield* send({ type: "ready" })
  yield* go

  if (mode === "cap") {
    const intervals: Array<readonly [number, number]> = []
    const call = Effect.gen(function*() {
      const start = yield* time
      yield* Effect.sleep(yield* Random.nextIntBetween(5, 20))
      const end = yield* time
      intervals.push([start, end])
    }).pipe(DistributedBulkhead.guard(bulkhead))
    yield* Effect.forEach(Array.from({ length: env("CALLS") }), () => call, { concurrency: env("FIBERS") })
    const stats = yield* DistributedBulkhead.stats(bulkhead)
    yield* send({ type: "done", pid: process.pid, intervals, admitted: stats.admitted, waited: stats.admittedAfterWait })
  } else if (mode === "hold") {
    const hold = env("HOLD")
    for (let i = 0; i < hold; i++) yield* Effect.forkChild(Effect.never.pipe(DistributedBulkhead.guard(bulkhead)))
    while ((yield* DistributedBulkhead.stats(bulkhead)).inFlight < hold) yield* Effect.sleep(5)
    yield* send({ type: "holding", pid: process.pid })
    yield* Effect.never
  } else {
    // Counted from "go", so that a slow start does not eat into the run.
    const deadline = Date.now() + env("DURATION_MS")
    const via: Record<string, number> = {}
    const modes: Array<string> = []
    let storeAfterLocal = 0
    yield* DistributedBulkhead.events(bulkhead).pipe(
      Stream.runForEach((e) =>
        Effect.sync(() => {
          if (e._tag === "ModeChanged") modes.push(e.mode)
          if (e._tag === "Admitted") {
            via[e.via] = (via[e.via] ?? 0) + 1
            if (e.via === "Store" && modes.includes("Local")) storeAfterLocal++
          }
        })
      ),
      Effect.forkChild
    )
    const rejected: Record<string, number> = {}
    const loop = Effect.gen(function*() {
      while (Date.now() < deadline) {
        const exit = yield* Effect.exit(
          Effect.sleep(yield* Random.nextIntBetween(10, 30)).pipe(DistributedBulkhead.guard(bulkhead, { queueTimeout: "1 second" }))
        )
        if (exit._tag === "Failure") {
          const reason = exit.cause.reasons.find((r) => r._tag === "Fail")
          const key = reason?._tag === "Fail" ? String((reason.error as { readonly reason?: unknown }).reason) : "defect"
          rejected[key] = (rejected[key] ?? 0) + 1
        }
      }
    })
    yield* Effect.all([loop, loop, loop], { concurrency: "unbounded" })
    yield* Effect.sleep(20)
    const stats = yield* DistributedBulkhead.stats(bulkhead)
    yield* send({ type: "done", pid: process.pid, via, modes, storeAfterLocal, rejected, stats })
  }
}).pipe(
  Effect.scoped,
  Effect.provide(NodeRedis.layer({ url, disableOfflineQueue: true })),
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
