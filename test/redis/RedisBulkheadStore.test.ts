/**
 * RedisBulkheadStore against a real redis-server (started by this file on a
 * loopback port of its own, see test/support/redis.ts; never mocked):
 *
 * - the store contract and the store-dependent rules of
 *   `DistributedBulkhead`, the same suites as the in-memory store runs
 *   (test/support/bulkheadStoreContract.ts), in real time;
 * - what is particular to Redis: the key layout, keys that expire when
 *   idle, the server's clock, values Bulwark did not write, scripts
 *   flushed, a server that does not answer in time, options;
 * - several OS processes (test/redis/workers/bulkhead.ts) sharing one cap:
 *   their merged timeline never exceeds it; a process killed with SIGKILL
 *   while holding slots gets them back within the lease;
 * - an outage: the server killed mid-run, each `onStoreError` policy does
 *   what it says without hanging, and after the restart the store decides
 *   again, in this process and in four worker processes.
 */
import { afterAll, assert, describe, layer } from "@effect/vitest"
import { it as vitest } from "vitest"
import { BulkheadFull, DistributedBulkhead, InvalidOptions } from "@bulwark/core"
import { RedisBulkheadStore } from "@bulwark/redis"
import * as NodeRedis from "@effect/platform-node/NodeRedis"
import { Context, Effect, Exit, Fiber, Layer, Metric, References } from "effect"
import * as Redis from "effect/persistence/Redis"
import { type ChildProcess, fork } from "node:child_process"
import { fileURLToPath } from "node:url"
import { contract, rules, type StoreSetup } from "../support/bulkheadStoreContract.ts"
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
const freshStore = (options?: RedisBulkheadStore.Options) =>
  Effect.suspend(() => RedisBulkheadStore.make({ prefix: `b${++prefixes}:`, ...options })).pipe(Effect.orDie)

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const request = (
  name: string,
  token: string,
  options?: { readonly limit?: number; readonly maxQueue?: number; readonly leaseMs?: number; readonly ticketMs?: number }
) => ({
  name,
  token,
  limit: options?.limit ?? 1,
  leaseMs: options?.leaseMs ?? 5000,
  maxQueue: options?.maxQueue ?? 0,
  ticketMs: options?.ticketMs ?? 3000,
  now: 0 // the caller's clock: ignored, Redis uses TIME
})

describeRedis("RedisBulkheadStore on a real redis-server", () => {
  // excludeTestServices: the real clock, since Redis keeps its own time.
  layer(connect(url), { excludeTestServices: true })("one connection, real time", (it) => {
    const setup: StoreSetup<Redis.Redis> = {
      test: (name, body) => it.effect(name, body),
      // A generous timeout: these suites are about the contract, not about a slow machine.
      makeStore: freshStore({ timeout: "5 seconds" }),
      advance: (ms) => Effect.sleep(ms),
      leaseMs: 300,
      virtualTime: false
    }

    describe("the store contract", () => contract(setup))

    describe("DistributedBulkhead on the Redis store", () => rules(setup))

    describe("Redis: slots in a sorted set <prefix>bulkhead:<name>, keys that expire when idle, the server's clock", () => {
      it.effect("a slot is token -> lease expiry (Redis TIME) in <prefix>bulkhead:<name>; the key expires with its last lease", () =>
        Effect.gen(function*() {
          const redis = yield* Redis.Redis
          const store = yield* RedisBulkheadStore.make({ prefix: "shop:" })
          assert.deepStrictEqual(yield* store.acquire(request("db", "t1", { leaseMs: 5000 })), { _tag: "Acquired", inFlight: 1 })
          const [seconds, micros] = (yield* redis.send<ReadonlyArray<string>>("TIME")).map(Number)
          const serverNow = seconds * 1000 + Math.floor(micros / 1000)
          const expiry = Number(yield* redis.send("ZSCORE", "shop:bulkhead:db", "t1"))
          assert.isTrue(Math.abs(expiry - (serverNow + 5000)) < 1000, `lease expiry ${expiry}, server now ${serverNow}`)
          const ttl = Number(yield* redis.send("PTTL", "shop:bulkhead:db"))
          assert.isTrue(ttl > 4000 && ttl <= 5000, `PTTL ${ttl}`)
          assert.isTrue(yield* store.renew("db", "t1", 9000, 0))
          assert.isAbove(Number(yield* redis.send("PTTL", "shop:bulkhead:db")), 8000)
          assert.isTrue(yield* store.release("db", "t1", 0))
          // An empty sorted set is no key at all.
          assert.strictEqual(Number(yield* redis.send("EXISTS", "shop:bulkhead:db")), 0)
        }))

      it.effect("the waiting room is <prefix>bulkhead-queue:<name> and <prefix>bulkhead-tickets:<name>, expiring with the last ticket", () =>
        Effect.gen(function*() {
          const redis = yield* Redis.Redis
          const store = yield* RedisBulkheadStore.make({ prefix: "room:" })
          yield* store.acquire(request("db", "holder", { maxQueue: 2, leaseMs: 400 }))
          assert.strictEqual((yield* store.acquire(request("db", "waiter", { maxQueue: 2, ticketMs: 800 })))._tag, "Queued")
          assert.deepStrictEqual(yield* redis.send("ZRANGE", "room:bulkhead-queue:db", "0", "-1"), ["waiter"])
          assert.deepStrictEqual(yield* redis.send("ZRANGE", "room:bulkhead-tickets:db", "0", "-1"), ["waiter"])
          for (const key of ["room:bulkhead-queue:db", "room:bulkhead-tickets:db"]) {
            const ttl = Number(yield* redis.send("PTTL", key))
            assert.isTrue(ttl > 0 && ttl <= 800, `${key} PTTL ${ttl}`)
          }
          // Nobody touches the name again: every key disappears by itself.
          yield* Effect.sleep(850)
          const left = yield* redis.send<ReadonlyArray<string>>("KEYS", "room:*")
          assert.deepStrictEqual(left, [])
        }))

      it.effect("the caller's clock is never used: a request with now = 0 gets a lease from the server's TIME", () =>
        Effect.gen(function*() {
          const store = yield* freshStore()
          yield* store.acquire(request("clock", "a", { leaseMs: 600 }))
          assert.strictEqual((yield* store.acquire(request("clock", "b", { leaseMs: 600 })))._tag, "Full")
          yield* Effect.sleep(650)
          assert.strictEqual((yield* store.acquire(request("clock", "b", { leaseMs: 600 })))._tag, "Acquired")
        }))

      it.effect("a key holding something Bulwark did not write is refused with reason Rejected, not overwritten", () =>
        Effect.gen(function*() {
          const redis = yield* Redis.Redis
          const store = yield* RedisBulkheadStore.make({ prefix: "foreign:" })
          yield* redis.send("SET", "foreign:bulkhead:x", "garbage")
          const e = yield* Effect.flip(store.acquire(request("x", "t")))
          assert.deepStrictEqual([e._tag, e.store, e.operation, e.reason], ["StoreError", "redis", "acquire", "Rejected"])
          assert.include(e.message, "WRONGTYPE")
          assert.strictEqual(yield* redis.send("GET", "foreign:bulkhead:x"), "garbage")
          const b = yield* DistributedBulkhead.make({ name: "x", maxConcurrent: 1, store, onStoreError: "fail-closed" })
          const full = yield* Effect.flip(Effect.void.pipe(DistributedBulkhead.guard(b)))
          assert.strictEqual(full.reason, "StoreUnavailable")
          assert.strictEqual((yield* DistributedBulkhead.stats(b)).storeErrors.Rejected, 1)
        }))

      it.effect("scripts run by EVALSHA are loaded again when the server has forgotten them (SCRIPT FLUSH)", () =>
        Effect.gen(function*() {
          const redis = yield* Redis.Redis
          const b = yield* DistributedBulkhead.make({ name: "flush", maxConcurrent: 1, store: yield* freshStore(), onStoreError: "fail-closed" })
          assert.strictEqual(yield* Effect.succeed("a").pipe(DistributedBulkhead.guard(b)), "a")
          yield* redis.send("SCRIPT", "FLUSH")
          assert.strictEqual(yield* Effect.succeed("b").pipe(DistributedBulkhead.guard(b)), "b")
          assert.deepStrictEqual(yield* DistributedBulkhead.occupancy(b), { inFlight: 0, queued: 0 })
        }))

      it.effect("a server that does not answer in time: the call fails with a Timeout store error; the acquire that lands later is released", () =>
        Effect.gen(function*() {
          const redis = yield* Redis.Redis
          const prefix = `paused${++prefixes}:`
          // The scripts are loaded first, with the default timeout (a slow first load is not what this test is about).
          const warm = yield* DistributedBulkhead.make({
            name: "paused",
            maxConcurrent: 1,
            store: yield* freshStore({ prefix, timeout: "5 seconds" })
          })
          yield* Effect.void.pipe(DistributedBulkhead.guard(warm))
          const store = yield* freshStore({ prefix, timeout: "50 millis" })
          const b = yield* DistributedBulkhead.make({ name: "paused", maxConcurrent: 1, store, onStoreError: "fail-closed" })
          yield* redis.send("CLIENT", "PAUSE", "300", "ALL")
          const started = Date.now()
          const e = yield* Effect.flip(Effect.void.pipe(DistributedBulkhead.guard(b)))
          assert.strictEqual(e.reason, "StoreUnavailable")
          assert.isBelow(Date.now() - started, 250)
          const s = yield* DistributedBulkhead.stats(b)
          // The acquire timed out, and so did the release the finalizer sent after it.
          assert.deepStrictEqual([s.storeErrors.Timeout, s.rejected.StoreUnavailable], [2, 1])
          yield* Effect.sleep(400)
          // Both ran when the pause ended, in order: the slot the acquire took was given back.
          assert.deepStrictEqual(yield* DistributedBulkhead.occupancy(b), { inFlight: 0, queued: 0 })
        }))

      it.effect("bad options are InvalidOptions naming each field; the layer builds a distributed bulkhead on the store", () =>
        Effect.gen(function*() {
          const e = yield* Effect.flip(RedisBulkheadStore.make({ prefix: 5, timeout: "soon", extra: 1 } as any))
          assert.instanceOf(e, InvalidOptions)
          assert.strictEqual(e.primitive, "RedisBulkheadStore")
          const fields = e.message.split("\n").map((line) => line.split(":")[0])
          assert.deepStrictEqual(fields.sort(), ["extra", "prefix", "timeout"])
          class Db extends Context.Service<Db, DistributedBulkhead.DistributedBulkhead>()("test/Db") {}
          const bad = yield* Effect.flip(Layer.build(RedisBulkheadStore.layer(Db, { name: "db", maxConcurrent: 0 })))
          assert.instanceOf(bad, InvalidOptions)
          assert.strictEqual(bad.primitive, "DistributedBulkhead")
          const redis = yield* Redis.Redis
          const result = yield* Effect.succeed("ok").pipe(
            DistributedBulkhead.guard(Db),
            Effect.provide(RedisBulkheadStore.layer(Db, { name: "layered", maxConcurrent: 1, prefix: `layer${++prefixes}:` })),
            Effect.provideService(Redis.Redis, redis)
          )
          assert.strictEqual(result, "ok")
        }))
    })
  })

  describe("several OS processes share one cap", () => {
    const workerFile = fileURLToPath(new URL("./workers/bulkhead.ts", import.meta.url))
    const register = fileURLToPath(new URL("./workers/register.ts", import.meta.url))
    const compileCache = fileURLToPath(new URL("../../.cache/node-compile-cache", import.meta.url))

    type Message = { readonly type: string; readonly pid: number; readonly [field: string]: unknown }

    /**
     * Forks workers, waits until every one is connected (and has loaded the
     * scripts), sends "go", and collects their messages. A worker that has
     * not finished within `limitMs` is killed and the run fails: nothing
     * may hang.
     */
    const launch = async (options: {
      readonly count: number
      readonly mode: "cap" | "hold" | "outage"
      readonly env: Record<string, string>
      readonly limitMs: number
    }) => {
      const messages: Array<Message> = []
      const stderr: Array<string> = []
      const workers: Array<ChildProcess> = Array.from({ length: options.count }, () =>
        fork(workerFile, [options.mode], {
          execArgv: ["--import", register],
          env: { ...process.env, NODE_COMPILE_CACHE: compileCache, ...options.env },
          stdio: ["ignore", "ignore", "pipe", "ipc"]
        }))
      const exits = workers.map((worker) =>
        new Promise<number | null>((resolve) => {
          worker.stderr?.on("data", (chunk) => stderr.push(String(chunk)))
          worker.on("message", (message: Message) => messages.push(message))
          worker.once("exit", (code) => resolve(code))
        })
      )
      const ready = workers.map((worker) =>
        new Promise<void>((resolve) => worker.on("message", (m: Message) => m.type === "ready" && resolve()))
      )
      const limit = setTimeout(() => workers.forEach((w) => w.exitCode === null && w.kill("SIGKILL")), options.limitMs)
      await Promise.race([Promise.all(ready), Promise.all(exits).then(() => Promise.reject(new Error(stderr.join(""))))])
      for (const worker of workers) worker.send("go")
      return {
        workers,
        messages,
        stderr,
        /** Waits for every worker to exit and checks that each exited 0. */
        finished: async () => {
          try {
            const codes = await Promise.all(exits)
            assert.deepStrictEqual(codes, workers.map(() => 0), `workers failed or hung:\n${stderr.join("")}`)
          } finally {
            clearTimeout(limit)
          }
        },
        stop: () => {
          clearTimeout(limit)
          for (const w of workers) if (w.exitCode === null) w.kill("SIGKILL")
        }
      }
    }

    /** Waits until `condition` holds, polling every 10 ms, for at most `ms`. */
    const until = async (condition: () => boolean | Promise<boolean>, ms: number, what: string) => {
      const deadline = Date.now() + ms
      while (!(await condition())) {
        if (Date.now() > deadline) throw new Error(`gave up waiting until ${what}`)
        await sleep(10)
      }
    }

    /** The store's view, read from this process on a connection of its own. */
    const inspector = (redisUrl: string, prefix: string) =>
      Effect.gen(function*() {
        // The connection lives as long as the caller's scope.
        const services = yield* Layer.build(connect(redisUrl))
        const store = yield* RedisBulkheadStore.make({ prefix }).pipe(Effect.provideContext(services))
        return (name: string) => Effect.runPromise(store.inspect(name, 0))
      }).pipe(Effect.orDie)

    vitest("4 processes, 6 fibers each, 240 calls on a cap of 3: the merged Redis TIME timeline never exceeds 3", async () => {
      const run = await launch({
        count: 4,
        mode: "cap",
        env: { REDIS_URL: url, PREFIX: "workers-cap:", CAP: "3", CALLS: "60", FIBERS: "6" },
        limitMs: 25_000
      })
      await run.finished()
      const done = run.messages.filter((m) => m.type === "done")
      assert.strictEqual(done.length, 4)
      const intervals = done.flatMap((m) => m.intervals as Array<readonly [number, number]>)
      assert.strictEqual(intervals.length, 240)
      // Each interval lies inside its call's slot: admitted before it starts, released after it ends.
      // At equal times an end counts first, so that touching intervals are not taken for overlapping ones.
      const points = intervals.flatMap(([start, end]) => [[start, 1], [end, -1]] as const)
        .sort((a, b) => a[0] - b[0] || a[1] - b[1])
      let running = 0
      let peak = 0
      for (const [, delta] of points) {
        running += delta
        peak = Math.max(peak, running)
      }
      assert.isAtMost(peak, 3)
      // The cap was reached, so the check could have seen a fourth.
      assert.strictEqual(peak, 3)
      for (const m of done) assert.strictEqual(m.admitted, 60 + 1) // the warm-up call too
      assert.isAbove(done.reduce((n, m) => n + (m.waited as number), 0), 0)
      const left = await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
        const inspect = yield* inspector(url, "workers-cap:")
        return yield* Effect.promise(() => inspect("shared"))
      })))
      assert.deepStrictEqual(left, { inFlight: 0, queued: 0 })
    }, 30_000)

    vitest("a process killed with SIGKILL while holding slots: its slots come back within the lease (and not before its last renewal runs out)", async () => {
      const leaseMs = 1000
      await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
        const inspect = yield* inspector(url, "workers-kill:")
        const run = yield* Effect.promise(() =>
          launch({
            count: 1,
            mode: "hold",
            env: { REDIS_URL: url, PREFIX: "workers-kill:", CAP: "3", LEASE_MS: String(leaseMs), HOLD: "2" },
            limitMs: 15_000
          })
        )
        try {
          yield* Effect.promise(() => until(() => run.messages.some((m) => m.type === "holding"), 5000, "the worker holds 2 slots"))
          // Renewed every third of the lease: the slots outlive one lease while the process lives.
          yield* Effect.sleep(leaseMs * 1.5)
          assert.deepStrictEqual(yield* Effect.promise(() => inspect("shared")), { inFlight: 2, queued: 0 })
          const killedAt = Date.now()
          run.workers[0].kill("SIGKILL")
          yield* Effect.promise(() => until(() => run.workers[0].exitCode !== null || run.workers[0].signalCode !== null, 2000, "the worker is dead"))
          assert.strictEqual((yield* Effect.promise(() => inspect("shared"))).inFlight, 2)
          yield* Effect.promise(() => until(async () => (await inspect("shared")).inFlight === 0, leaseMs + 500, "the slots come back"))
          const took = Date.now() - killedAt
          // Measured from this process: the kill itself and the 10 ms polls add a little.
          assert.isAtMost(took, leaseMs + 250, `the slots came back ${took} ms after the kill`)
          // The last renewal was at most a third of a lease before the kill.
          assert.isAtLeast(took, (leaseMs * 2) / 3 - 100, `the slots came back ${took} ms after the kill`)
        } finally {
          run.stop()
        }
      }).pipe(quiet)))
    }, 20_000)
  })

  describe("an outage: the server killed mid-run, then restarted", () => {
    vitest("each policy does what it says without hanging: fail-closed rejects, fail-open runs, local caps per process; after the restart the store decides again", async () => {
      const own = await startRedis()
      try {
        const registry: Metric.MetricRegistry = new Map()
        const program = Effect.gen(function*() {
          const store = yield* RedisBulkheadStore.make({ prefix: "outage:", timeout: "1 second" })
          const make = (policy: "fail-closed" | "fail-open" | "local") =>
            DistributedBulkhead.make({ name: policy, maxConcurrent: 1, lease: 1000, onStoreError: policy, store })
          const closed = yield* make("fail-closed")
          const open = yield* make("fail-open")
          const local = yield* make("local")
          for (const b of [closed, open, local]) yield* Effect.void.pipe(DistributedBulkhead.guard(b))
          // A call that runs through the outage: its release cannot reach the server.
          const through = yield* Effect.forkChild(Effect.sleep(300).pipe(DistributedBulkhead.guard(closed)))
          yield* Effect.sleep(50)
          yield* Effect.promise(() => own.stop("SIGKILL"))

          const started = Date.now()
          const e = yield* Effect.flip(Effect.void.pipe(DistributedBulkhead.guard(closed)))
          assert.instanceOf(e, BulkheadFull)
          assert.strictEqual(e.reason, "StoreUnavailable")
          assert.strictEqual(yield* Effect.succeed("open").pipe(DistributedBulkhead.guard(open)), "open")
          const running = yield* Effect.forkChild(Effect.sleep(200).pipe(DistributedBulkhead.guard(local)))
          yield* Effect.sleep(20)
          assert.strictEqual((yield* Effect.flip(Effect.void.pipe(DistributedBulkhead.guard(local)))).reason, "QueueFull")
          yield* Fiber.join(running)
          assert.isBelow(Date.now() - started, 1500, "nothing waited for the dead server")
          assert.isTrue(Exit.isSuccess(yield* Fiber.await(through)))
          assert.strictEqual((yield* DistributedBulkhead.stats(local)).mode, "Local")

          yield* Effect.promise(() => own.restart())
          // The client reconnects on its own (backoff from 50 ms); the scripts are loaded again.
          let back = false
          for (let attempt = 0; attempt < 200 && !back; attempt++) {
            back = Exit.isSuccess(yield* Effect.exit(Effect.void.pipe(DistributedBulkhead.guard(closed))))
            if (!back) yield* Effect.sleep(25)
          }
          assert.isTrue(back, "fail-closed admits again")
          // The local instance tries the store again within its backoff (at most 2 s) and then decides with it.
          let mode: DistributedBulkhead.Mode = "Local"
          for (let attempt = 0; attempt < 200 && mode === "Local"; attempt++) {
            yield* Effect.void.pipe(DistributedBulkhead.guard(local))
            mode = (yield* DistributedBulkhead.stats(local)).mode
            if (mode === "Local") yield* Effect.sleep(25)
          }
          assert.strictEqual(mode, "Store")
          const s = yield* DistributedBulkhead.stats(local)
          assert.isAtLeast(s.admittedLocally, 1)
          assert.strictEqual(s.localSwitches, 1)
          const sc = yield* DistributedBulkhead.stats(closed)
          assert.isAtLeast(sc.storeErrors.Unavailable, 2) // the rejected acquire, and the release of the call that ran through
          assert.isAtLeast(sc.rejected.StoreUnavailable, 1)
          assert.strictEqual((yield* DistributedBulkhead.stats(open)).admittedWithoutStore, 1)
          const snapshot = yield* Metric.snapshot
          const errors = snapshot.find((m) =>
            m.id === "bulwark.distributed_bulkhead.store_errors" && m.attributes?.name === "fail-closed" &&
            m.attributes?.reason === "Unavailable"
          )?.state as { readonly count: number } | undefined
          assert.strictEqual(errors?.count, sc.storeErrors.Unavailable)
        }).pipe(
          Effect.scoped,
          Effect.provide(connect(own.url)),
          Effect.provideService(Metric.MetricRegistry, registry),
          quiet
        )
        await Effect.runPromise(program)
      } finally {
        await own.stop()
      }
    }, 20_000)

    vitest("4 processes with onStoreError local through an outage: each switches to its insurance bulkhead, nothing hangs, and each decides with the store again after the restart", async () => {
      const own = await startRedis()
      const workerFile = fileURLToPath(new URL("./workers/bulkhead.ts", import.meta.url))
      const register = fileURLToPath(new URL("./workers/register.ts", import.meta.url))
      const compileCache = fileURLToPath(new URL("../../.cache/node-compile-cache", import.meta.url))
      const messages: Array<{ readonly type: string; readonly [field: string]: unknown }> = []
      const stderr: Array<string> = []
      const workers = Array.from({ length: 4 }, () =>
        fork(workerFile, ["outage"], {
          execArgv: ["--import", register],
          env: {
            ...process.env,
            NODE_COMPILE_CACHE: compileCache,
            REDIS_URL: own.url,
            PREFIX: "workers-outage:",
            CAP: "2",
            DURATION_MS: "5000"
          },
          stdio: ["ignore", "ignore", "pipe", "ipc"]
        }))
      const limit = setTimeout(() => workers.forEach((w) => w.exitCode === null && w.kill("SIGKILL")), 15_000)
      try {
        const exits = workers.map((worker) =>
          new Promise<number | null>((resolve) => {
            worker.stderr?.on("data", (chunk) => stderr.push(String(chunk)))
            worker.on("message", (m: { readonly type: string }) => messages.push(m))
            worker.once("exit", (code) => resolve(code))
          })
        )
        await Promise.race([
          Promise.all(workers.map((w) => new Promise<void>((resolve) => w.on("message", (m: { type: string }) => m.type === "ready" && resolve())))),
          Promise.all(exits).then(() => Promise.reject(new Error(stderr.join(""))))
        ])
        for (const worker of workers) worker.send("go")
        await sleep(400)
        await own.stop("SIGKILL")
        await sleep(600)
        await own.restart()
        const codes = await Promise.all(exits)
        assert.deepStrictEqual(codes, [0, 0, 0, 0], `workers failed or hung:\n${stderr.join("")}`)
        const done = messages.filter((m) => m.type === "done") as unknown as Array<{
          readonly via: Record<string, number>
          readonly modes: Array<string>
          readonly storeAfterLocal: number
          readonly stats: { readonly mode: string; readonly storeErrors: Record<string, number>; readonly localSwitches: number }
        }>
        assert.strictEqual(done.length, 4)
        for (const report of done) {
          assert.deepStrictEqual(report.modes.slice(0, 2), ["Local", "Store"])
          assert.strictEqual(report.stats.mode, "Store")
          assert.isAtLeast(report.stats.storeErrors.Unavailable, 1)
          assert.isAtLeast(report.via.Store ?? 0, 1)
          assert.isAtLeast(report.via.Local ?? 0, 1)
          assert.isAtLeast(report.storeAfterLocal, 1, "admitted by the store after the restart")
        }
      } finally {
        clearTimeout(limit)
        workers.forEach((w) => w.exitCode === null && w.kill("SIGKILL"))
        await own.stop()
      }
    }, 25_000)
  })
})
