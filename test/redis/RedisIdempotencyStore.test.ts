/**
 * RedisIdempotencyStore against a real redis-server (started by this file on
 * a loopback port of its own, see test/support/redis.ts; never mocked):
 *
 * - the store contract and the store-dependent rules of `Idempotency.once`,
 *   the same suites as the in-memory store runs (test/support/
 *   idempotencyContract.ts), in real time;
 * - what is particular to Redis: the key layout and expiries, the server's
 *   clock, values Bulwark did not write, scripts flushed, a server that does
 *   not answer in time, options;
 * - an outage: the server killed mid-run fails calls with a typed store
 *   reason, counted in stats and metrics, without hanging; restarted, the
 *   service resumes;
 * - several OS processes (test/redis/workers/once.ts) racing on the same
 *   keys: each key runs exactly once, and every process gets that run's
 *   result; and the same processes through an outage.
 */
import { afterAll, assert, describe, layer } from "@effect/vitest"
import { it as vitest } from "vitest"
import { Idempotency, InvalidOptions } from "@bulwark/core"
import { RedisIdempotencyStore } from "@bulwark/redis"
import * as NodeRedis from "@effect/platform-node/NodeRedis"
import { Clock, Effect, Layer, Metric, References, Schema } from "effect"
import * as Redis from "effect/persistence/Redis"
import { fork } from "node:child_process"
import { fileURLToPath } from "node:url"
import { idempotencyRules, type StoreSetup, storeContract } from "../support/idempotencyContract.ts"
import { describeRedis, redisServerPath, startRedis } from "../support/redis.ts"

const server = redisServerPath === undefined ? undefined : await startRedis()
afterAll(() => server?.stop())

const url = server?.url ?? "redis://127.0.0.1:1"
/** Offline commands fail at once instead of waiting in node-redis' queue (see the module's Gotchas). */
const connect = (to: string) => NodeRedis.layer({ url: to, disableOfflineQueue: true })
/** The client logs a warning per failed reconnect while a server is down: expected here. */
const quiet = Effect.provideService(References.MinimumLogLevel, "Error")

let prefixes = 0
/** A store with a prefix of its own: no other test sees its keys. */
const freshStore = (options?: RedisIdempotencyStore.Options) =>
  Effect.suspend(() => RedisIdempotencyStore.make({ prefix: `t${++prefixes}:`, ...options })).pipe(Effect.orDie)

const now = Clock.currentTimeMillis
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describeRedis("RedisIdempotencyStore on a real redis-server", () => {
  // excludeTestServices: the real clock, since Redis keeps its own time.
  layer(connect(url), { excludeTestServices: true })("one connection, real time", (it) => {
    const setup: StoreSetup<Redis.Redis> = {
      test: (name, body) => it.effect(name, body),
      makeStore: freshStore(),
      advance: (ms) => Effect.sleep(ms),
      leaseMs: 150,
      virtualTime: false
    }

    describe("the store contract", () => storeContract(setup))

    describe("Idempotency on the Redis store", () => idempotencyRules(setup))

    describe("Redis: one key per idempotency key, prefixed, always expiring, written only by the scripts", () => {
      it.effect("the key is <prefix>idempotency:<name>:<key>; a claim expires with its lease, a result with its ttl", () =>
        Effect.gen(function*() {
          const redis = yield* Redis.Redis
          const store = yield* RedisIdempotencyStore.make({ prefix: "shop:" })
          const key = "shop:idempotency:orders:42"
          const claim = yield* store.claim("orders:42", 5000, yield* now)
          assert.strictEqual(claim._tag, "Claimed")
          const token = claim._tag === "Claimed" ? claim.token : ""
          assert.strictEqual(yield* redis.send("GET", key), `i|${token}`)
          const leaseLeft = Number(yield* redis.send("PTTL", key))
          assert.isTrue(leaseLeft > 4000 && leaseLeft <= 5000, `PTTL ${leaseLeft}`)
          assert.isTrue(yield* store.renew("orders:42", token, 9000, yield* now))
          assert.isAbove(Number(yield* redis.send("PTTL", key)), 8000)
          assert.isTrue(yield* store.complete("orders:42", token, `{"_tag":"Success","value":1}`, 60_000, yield* now))
          const value = String(yield* redis.send("GET", key))
          assert.match(value, /^c\|\d{13}\|\{"_tag":"Success","value":1\}$/)
          const ttlLeft = Number(yield* redis.send("PTTL", key))
          assert.isTrue(ttlLeft > 59_000 && ttlLeft <= 60_000, `PTTL ${ttlLeft}`)
        }))

      it.effect("storedAt is the server's clock (TIME), not the caller's", () =>
        Effect.gen(function*() {
          const redis = yield* Redis.Redis
          const store = yield* freshStore()
          const claim = yield* store.claim("k", 5000, 0) // the caller's `now` is ignored
          yield* store.complete("k", claim._tag === "Claimed" ? claim.token : "", "x", 60_000, 0)
          const [seconds, micros] = (yield* redis.send<ReadonlyArray<string>>("TIME")).map(Number)
          const read = yield* store.claim("k", 5000, 0)
          assert.strictEqual(read._tag, "Completed")
          if (read._tag === "Completed") assert.isAtMost(Math.abs(seconds * 1000 + Math.floor(micros / 1000) - read.storedAt), 1000)
        }))

      it.effect("a key holding a value Bulwark did not write is refused with reason Rejected, not overwritten", () =>
        Effect.gen(function*() {
          const redis = yield* Redis.Redis
          const store = yield* RedisIdempotencyStore.make({ prefix: "foreign:" })
          yield* redis.send("SET", "foreign:idempotency:x:text", "garbage")
          yield* redis.send("HSET", "foreign:idempotency:x:hash", "field", "value")
          const text = yield* Effect.flip(store.claim("x:text", 1000, 0))
          const hash = yield* Effect.flip(store.claim("x:hash", 1000, 0))
          assert.deepStrictEqual([text.reason, text.operation, hash.reason], ["Rejected", "claim", "Rejected"])
          assert.include(text.message, "BULWARK_BAD_ENTRY")
          assert.include(hash.message, "WRONGTYPE")
          assert.strictEqual(yield* redis.send("GET", "foreign:idempotency:x:text"), "garbage")
          const using = yield* Idempotency.make({ name: "x", store })
          const e = yield* Effect.flip(Idempotency.once("text", Effect.succeed(1), { ttl: 1000, result: Schema.Number, using }))
          assert.strictEqual(e.reason, "StoreRejected")
          assert.include(e.storeMessage ?? "", "BULWARK_BAD_ENTRY")
        }))

      it.effect("scripts run by EVALSHA are loaded again when the server has forgotten them (SCRIPT FLUSH)", () =>
        Effect.gen(function*() {
          const redis = yield* Redis.Redis
          const using = yield* Idempotency.make({ name: "flush", store: yield* freshStore() })
          const options = { ttl: 60_000, result: Schema.String, using } as const
          assert.strictEqual(yield* Idempotency.once("a", Effect.succeed("a"), options), "a")
          yield* redis.send("SCRIPT", "FLUSH")
          assert.strictEqual(yield* Idempotency.once("b", Effect.succeed("b"), options), "b")
          assert.strictEqual(yield* Idempotency.once("a", Effect.succeed("again"), options), "a")
        }))

      it.effect("a server that does not answer within timeout fails the call with reason Timeout; its claim may land later", () =>
        Effect.gen(function*() {
          const redis = yield* Redis.Redis
          const store = yield* freshStore({ timeout: "50 millis" })
          yield* redis.send("CLIENT", "PAUSE", "300", "ALL")
          const started = Date.now()
          const e = yield* Effect.flip(store.claim("paused", 5000, 0))
          assert.deepStrictEqual([e.reason, e.operation], ["Timeout", "claim"])
          assert.isBelow(Date.now() - started, 250)
          yield* Effect.sleep(400)
          // The claim was sent and ran when the pause ended: it holds the key until its lease runs out.
          assert.strictEqual((yield* store.claim("paused", 5000, 0))._tag, "InFlight")
        }))

      it.effect("bad options are InvalidOptions naming each field", () =>
        Effect.gen(function*() {
          const e = yield* Effect.flip(RedisIdempotencyStore.make({ prefix: 5, timeout: "soon", extra: 1 } as any))
          assert.instanceOf(e, InvalidOptions)
          assert.strictEqual(e.primitive, "RedisIdempotencyStore")
          const fields = e.message.split("\n").map((line) => line.split(":")[0])
          assert.deepStrictEqual(fields.sort(), ["extra", "prefix", "timeout"])
          const misspelt = yield* Effect.flip(Layer.build(RedisIdempotencyStore.layer({ prefx: "shop:" } as any)))
          assert.instanceOf(misspelt, InvalidOptions)
          assert.match(misspelt.message, /^prefx: /)
        }))
    })
  })

  describe("an outage: the server killed mid-run, then restarted", () => {
    vitest("calls fail with a typed store reason, counted in stats and metrics, without hanging; after the restart the service resumes", async () => {
      const own = await startRedis()
      try {
        const registry: Metric.MetricRegistry = new Map()
        const live = RedisIdempotencyStore.layer({ name: "outage", timeout: "1 second" }).pipe(Layer.provide(connect(own.url)))
        const options = { ttl: 60_000, result: Schema.String } as const
        const program = Effect.gen(function*() {
          assert.strictEqual(yield* Idempotency.once("before", Effect.succeed("ok"), options), "ok")
          yield* Effect.promise(() => own.stop("SIGKILL"))
          const started = Date.now()
          let runs = 0
          const e = yield* Effect.flip(Idempotency.once("during", Effect.sync(() => ++runs), { ...options, result: Schema.Number }))
          const took = Date.now() - started
          assert.strictEqual(e.reason, "StoreUnavailable", e.message)
          assert.isBelow(took, 1500)
          assert.strictEqual(runs, 0)
          yield* Effect.promise(() => own.restart())
          // The client reconnects on its own (backoff from 50 ms); the scripts are loaded again.
          let resumed: string | undefined
          for (let attempt = 0; attempt < 200 && resumed === undefined; attempt++) {
            const exit = yield* Effect.exit(Idempotency.once("after", Effect.succeed("back"), options))
            if (exit._tag === "Success") resumed = exit.value
            else yield* Effect.sleep(25)
          }
          assert.strictEqual(resumed, "back")
          const s = yield* Idempotency.stats(Idempotency.Store)
          assert.isAtLeast(s.storeErrors.Unavailable, 1)
          assert.isAtLeast(s.rejected.StoreUnavailable, 1)
          const snapshot = yield* Metric.snapshot
          const errors = snapshot.find((m) =>
            m.id === "bulwark.idempotency.store_errors" && m.attributes?.name === "outage" && m.attributes?.reason === "Unavailable"
          )?.state as { readonly count: number } | undefined
          assert.strictEqual(errors?.count, s.storeErrors.Unavailable)
        }).pipe(Effect.provide(live), Effect.provideService(Metric.MetricRegistry, registry), quiet)
        await Effect.runPromise(program)
      } finally {
        await own.stop()
      }
    }, 15_000)
  })

  describe("several OS processes on the same keys", () => {
    const workerFile = fileURLToPath(new URL("./workers/once.ts", import.meta.url))
    const register = fileURLToPath(new URL("./workers/register.ts", import.meta.url))
    const compileCache = fileURLToPath(new URL("../../.cache/node-compile-cache", import.meta.url))

    type Message =
      | { readonly type: "ready" }
      | { readonly type: "executed"; readonly key: string; readonly pid: number }
      | {
        readonly type: "done"
        readonly results: Record<string, string>
        readonly claims?: number
        readonly waited?: number
        readonly reasons?: Record<string, number>
      }

    /**
     * Forks the workers, waits until every one is connected, sends "go", and
     * collects their reports. A worker that has not reported within
     * `limitMs` is killed and the run fails: nothing may hang.
     */
    const runWorkers = async (options: {
      readonly count: number
      readonly mode: "exactly-once" | "outage"
      readonly env: Record<string, string>
      readonly limitMs: number
      readonly whileRunning?: () => Promise<void>
    }) => {
      const executions: Array<{ readonly key: string; readonly pid: number }> = []
      const done = new Map<number, Extract<Message, { type: "done" }>>()
      const stderr: Array<string> = []
      const workers = Array.from({ length: options.count }, () =>
        fork(workerFile, [options.mode], {
          execArgv: ["--import", register],
          // Node's compile cache keeps the type-stripped sources between runs: workers start in about half the time.
          env: { ...process.env, NODE_COMPILE_CACHE: compileCache, ...options.env },
          stdio: ["ignore", "ignore", "pipe", "ipc"]
        }))
      const exits = workers.map((worker) =>
        new Promise<number | null>((resolve) => {
          worker.stderr?.on("data", (chunk) => stderr.push(String(chunk)))
          worker.on("message", (message: Message) => {
            if (message.type === "executed") executions.push({ key: message.key, pid: message.pid })
            if (message.type === "done") done.set(worker.pid!, message)
          })
          worker.once("exit", (code) => resolve(code))
        })
      )
      const ready = workers.map((worker) =>
        new Promise<void>((resolve) => worker.on("message", (m: Message) => m.type === "ready" && resolve()))
      )
      const limit = setTimeout(() => workers.forEach((w) => w.pid !== undefined && w.exitCode === null && process.kill(w.pid, "SIGKILL")), options.limitMs)
      try {
        await Promise.race([Promise.all(ready), Promise.all(exits).then(() => Promise.reject(new Error(stderr.join(""))))])
        for (const worker of workers) worker.send("go")
        await options.whileRunning?.()
        const codes = await Promise.all(exits)
        assert.deepStrictEqual(codes, workers.map(() => 0), `workers failed or hung:\n${stderr.join("")}`)
      } finally {
        clearTimeout(limit)
      }
      return { executions, done: [...done.values()], pids: workers.map((w) => w.pid!) }
    }

    vitest("4 processes race on 40 keys: each key runs exactly once and every process gets that run's result", async () => {
      const keys = 40
      const { done, executions, pids } = await runWorkers({
        count: 4,
        mode: "exactly-once",
        env: { REDIS_URL: url, PREFIX: "workers-once:", KEYS: String(keys) },
        limitMs: 20_000
      })
      const runsPerKey = new Map<string, Array<number>>()
      for (const { key, pid } of executions) runsPerKey.set(key, [...(runsPerKey.get(key) ?? []), pid])
      assert.strictEqual(runsPerKey.size, keys)
      for (const [key, runners] of runsPerKey) assert.strictEqual(runners.length, 1, `${key} ran in ${runners.join(", ")}`)
      assert.strictEqual(done.length, 4)
      for (const report of done) {
        for (const [key, [runner]] of runsPerKey) assert.strictEqual(report.results[key], `${runner}:${key}`)
      }
      // Each process also claimed a warm-up key of its own.
      assert.strictEqual(done.reduce((n, r) => n + (r.claims ?? 0), 0), keys + 4)
      // The processes did race: some calls found their key in flight and waited for another process.
      assert.isAbove(done.reduce((n, r) => n + (r.waited ?? 0), 0), 0)
      // More than one process did the work.
      assert.isAbove(new Set(executions.map((e) => e.pid)).size, 1, `pids ${pids.join(", ")}`)
    }, 30_000)

    vitest("4 processes through an outage: store reasons observed, nothing hangs, and every key is served after the restart", async () => {
      const own = await startRedis()
      try {
        const keys = 16
        const { done, executions } = await runWorkers({
          count: 4,
          mode: "outage",
          env: { REDIS_URL: own.url, PREFIX: "workers-outage:", KEYS: String(keys), DEADLINE_MS: String(Date.now() + 12_000) },
          limitMs: 15_000,
          whileRunning: async () => {
            await sleep(150)
            await own.stop("SIGKILL")
            await sleep(400)
            await own.restart()
          }
        })
        assert.strictEqual(done.length, 4)
        for (const report of done) assert.strictEqual(Object.keys(report.results).length, keys, "every key was served")
        const reasons = done.flatMap((r) => Object.keys(r.reasons ?? {}))
        assert.include(reasons, "StoreUnavailable")
        // Redis persists nothing here, so a key whose result or claim died with the server may run once more after the restart.
        const runsPerKey = new Map<string, number>()
        for (const { key } of executions) runsPerKey.set(key, (runsPerKey.get(key) ?? 0) + 1)
        assert.strictEqual(runsPerKey.size, keys)
        for (const [key, runs] of runsPerKey) assert.isAtMost(runs, 2, key)
      } finally {
        await own.stop()
      }
    }, 30_000)
  })
})

