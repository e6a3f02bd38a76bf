/**
 * RedisRateLimiterStore against a real redis-server (started by this file on
 * a loopback port of its own, see test/support/redis.ts; never mocked):
 *
 * - the store contract, the same suite as the in-memory store runs
 *   (test/support/rateLimiterStoreContract.ts), with `clock: "caller"` so
 *   that its explicit times are the store's; and random sequences of
 *   operations that must decide exactly as the in-memory store does;
 * - what is particular to Redis: the key layout and expiries, the server's
 *   clock (callers with skewed clocks agree), values Bulwark did not write,
 *   scripts flushed, a server that does not answer in time, options, one
 *   round trip per decision (INFO commandstats);
 * - RateLimiter on the store in real time: instances sharing a name share a
 *   limit, waiting callers, keyed limiters;
 * - an outage: the server killed mid-run, each `onStoreError` policy
 *   observed, no call outlasting the store's timeout; restarted, the store
 *   decides again;
 * - four OS processes (test/redis/workers/limiter.ts) sharing one limit:
 *   the merged timeline of admissions holds the rate within 1%.
 */
import { afterAll, assert, describe, layer } from "@effect/vitest"
import { it as vitest } from "vitest"
import { InvalidOptions, KeyedRateLimiter, RateLimiter } from "@bulwark/core"
import { RedisRateLimiterStore } from "@bulwark/redis"
import * as NodeRedis from "@effect/platform-node/NodeRedis"
import { Cause, Duration, Effect, Exit, Metric, References } from "effect"
import * as Redis from "effect/persistence/Redis"
import { differential, storeContract, type StoreSetup } from "../support/rateLimiterStoreContract.ts"
import { describeRedis, monitor, redisServerPath, startRedis } from "../support/redis.ts"
import { runWorkers } from "../support/workers.ts"

const server = redisServerPath === undefined ? undefined : await startRedis()
afterAll(() => server?.stop())

const url = server?.url ?? "redis://127.0.0.1:1"
/** Offline commands fail at once instead of waiting in node-redis' queue (see the module's Gotchas). */
const connect = (to: string) => NodeRedis.layer({ url: to, disableOfflineQueue: true })
/** The client logs a warning per failed reconnect while a server is down: expected here. */
const quiet = Effect.provideService(References.MinimumLogLevel, "Error")

let prefixes = 0
/** A store with a prefix of its own: no other test sees its keys. */
const freshStore = (options?: RedisRateLimiterStore.Options) =>
  Effect.suspend(() => RedisRateLimiterStore.make({ prefix: `t${++prefixes}:`, ...options })).pipe(Effect.orDie)

/** What a worker of test/redis/workers/limiter.ts reports: its admissions, as Redis times. */
interface Report {
  /** The times the store committed for its admitted calls. */
  readonly slots: ReadonlyArray<number>
  /** The times its calls started. */
  readonly starts: ReadonlyArray<number>
}

/** The most entries of a sorted timeline within any interval shorter than `ms`. */
const densest = (times: ReadonlyArray<number>, ms: number): number => {
  let tail = 0
  let most = 0
  for (let head = 0; head < times.length; head++) {
    while (times[head] - times[tail] >= ms) tail++
    most = Math.max(most, head - tail + 1)
  }
  return most
}

const passes = (l: RateLimiter.RateLimiter) => Effect.map(Effect.exit(Effect.void.pipe(RateLimiter.guard(l))), Exit.isSuccess)

/**
 * Calls until one is decided by the store again (not by `onStoreError`),
 * for at most five seconds: the client reconnects on its own, and the
 * limiter asks the store once per second while it is down.
 */
const untilTheStoreDecides = (l: RateLimiter.RateLimiter) =>
  Effect.gen(function*() {
    for (let attempt = 0; attempt < 100; attempt++) {
      yield* Effect.sleep(50)
      const before = (yield* RateLimiter.stats(l)).decidedWithoutStore
      const passed = yield* passes(l)
      if (passed && (yield* RateLimiter.stats(l)).decidedWithoutStore === before) return true
    }
    return false
  })

const reasonOf = (exit: Exit.Exit<unknown, unknown>): string =>
  Exit.isSuccess(exit) ? "passed" : String((Cause.squash(exit.cause) as { readonly reason?: unknown }).reason)

describeRedis("RedisRateLimiterStore on a real redis-server", () => {
  layer(connect(url), { excludeTestServices: true })("one connection", (it) => {
    const setup: StoreSetup<Redis.Redis> = {
      test: (name, body) => it.effect(name, body),
      makeStore: freshStore({ clock: "caller" })
    }

    describe("the store contract (clock: caller, so that the contract's explicit times are the store's)", () => storeContract(setup))

    differential(setup, { seeds: 4, steps: 120 })

    describe("Redis: one hash per limiter key, prefixed, expiring when its state is back at rest", () => {
      it.effect("the key is <prefix>ratelimiter:<name>[:<key>]; its PTTL is the time until the state is at rest", () =>
        Effect.gen(function*() {
          const redis = yield* Redis.Redis
          const store = yield* RedisRateLimiterStore.make({ prefix: "shop:" })
          const plain = yield* RateLimiter.make({
            name: "layout",
            algorithm: RateLimiter.tokenBucket({ capacity: 10, refill: 1, per: "1 second" }),
            store
          })
          yield* RateLimiter.guard(Effect.void, plain, { cost: 3 })
          assert.strictEqual(yield* redis.send("TYPE", "shop:ratelimiter:layout"), "hash")
          assert.strictEqual(yield* redis.send("HGET", "shop:ratelimiter:layout", "a"), "TokenBucket")
          const pttl = Number(yield* redis.send("PTTL", "shop:ratelimiter:layout"))
          assert.isTrue(pttl > 2_000 && pttl <= 3_000, `PTTL ${pttl}: three tokens to refill, one per second`)
          const keyed = yield* KeyedRateLimiter.make({
            name: "login",
            algorithm: RateLimiter.slidingWindow({ limit: 5, window: "1 minute" }),
            maxKeys: 10,
            store
          })
          yield* KeyedRateLimiter.guard(Effect.void, keyed, "user-42")
          const logTtl = Number(yield* redis.send("PTTL", "shop:ratelimiter:login:user-42"))
          assert.isTrue(logTtl > 59_000 && logTtl <= 60_000, `PTTL ${logTtl}`)
        }))

      it.effect("a state back at rest leaves no key; a refusal at rest writes nothing", () =>
        Effect.gen(function*() {
          const redis = yield* Redis.Redis
          const store = yield* RedisRateLimiterStore.make({ prefix: "rest:" })
          const l = yield* RateLimiter.make({ name: "w", algorithm: RateLimiter.fixedWindow({ limit: 1, window: 50 }), store })
          yield* passes(l)
          yield* Effect.sleep(120)
          assert.strictEqual(yield* redis.send("EXISTS", "rest:ratelimiter:w"), 0, "expired at the end of its window")
          yield* Effect.exit(Effect.void.pipe(RateLimiter.guard(l, { cost: 2 }))) // more than the limit: refused, nothing stored
          assert.strictEqual(yield* redis.send("EXISTS", "rest:ratelimiter:w"), 0)
        }))
    })

    describe("Redis: the server's clock decides, so callers with skewed clocks agree", () => {
      it.effect("the caller's now only places the answer in its own frame: a caller an hour ahead and one on time share the window", () =>
        Effect.gen(function*() {
          const store = yield* freshStore()
          const a = { _tag: "FixedWindow", limit: 1, windowMillis: 10_000 } as const
          const onTime = Date.now()
          const ahead = onTime + 3_600_000
          const first = yield* store.consume("k", a, 1, ahead, 0)
          assert.isTrue(first.admitted)
          assert.isTrue(first.at >= ahead && first.at - ahead < 50, "admitted now, in the caller's frame (at the reply's arrival)")
          const frame = RedisRateLimiterStore.serverFrame(first)!
          assert.isAtMost(Math.abs(frame.now - onTime), 1_000, "decided on the server's clock")
          const second = yield* store.consume("k", a, 1, onTime, 0)
          assert.isFalse(second.admitted, "the same window for both callers")
          const waitOnTime = second.at - onTime
          const third = yield* store.consume("k", a, 1, ahead, 0)
          const waitAhead = third.at - ahead
          assert.isTrue(waitOnTime > 0 && waitOnTime <= 10_000, `wait ${waitOnTime}`)
          assert.isAtMost(Math.abs(waitAhead - waitOnTime), 50, "the same wait whatever the caller's clock")
        }))

      it.effect("reservations made on the server's clock are refunded exactly through the caller's frame", () =>
        Effect.gen(function*() {
          const store = yield* freshStore()
          const a = { _tag: "TokenBucket", capacity: 1, refill: 1, perMillis: 60_000 } as const
          const now = Date.now() + 123_456 // any frame
          assert.isTrue((yield* store.consume("k", a, 1, now, 0)).admitted)
          const reserved = yield* store.consume("k", a, 1, now, Infinity)
          assert.isTrue(reserved.admitted && reserved.at > now)
          yield* store.refund("k", a, 1, reserved.at, now)
          const again = yield* store.consume("k", a, 1, now, Infinity)
          assert.isAtMost(Math.abs(again.at - reserved.at), 5, "the same slot again: the reservation went back")
        }))
    })

    describe("Redis: failures are StoreError with a reason; nothing Bulwark did not write is overwritten", () => {
      it.effect("a key holding another type fails with Rejected (WRONGTYPE); a foreign hash with BULWARK_BAD_ENTRY", () =>
        Effect.gen(function*() {
          const redis = yield* Redis.Redis
          const store = yield* RedisRateLimiterStore.make({ prefix: "foreign:" })
          yield* redis.send("SET", "foreign:ratelimiter:text", "garbage")
          yield* redis.send("HSET", "foreign:ratelimiter:hash", "field", "value")
          const a = { _tag: "FixedWindow", limit: 1, windowMillis: 1_000 } as const
          const text = yield* Effect.flip(store.consume("text", a, 1, 0, 0))
          const hash = yield* Effect.flip(store.block("hash", a, 10, 0))
          assert.deepStrictEqual([text._tag, text.store, text.operation, text.reason], ["StoreError", "redis", "consume", "Rejected"])
          assert.include(text.message, "WRONGTYPE")
          assert.deepStrictEqual([hash.operation, hash.reason], ["block", "Rejected"])
          assert.include(hash.message, "BULWARK_BAD_ENTRY")
          assert.strictEqual(yield* redis.send("GET", "foreign:ratelimiter:text"), "garbage")
        }))

      it.effect("scripts run by EVALSHA are loaded again when the server has forgotten them (SCRIPT FLUSH)", () =>
        Effect.gen(function*() {
          const redis = yield* Redis.Redis
          const l = yield* RateLimiter.make({
            name: "flush",
            algorithm: RateLimiter.gcra({ rate: 100, per: "1 second" }),
            store: yield* freshStore(),
            onStoreError: "fail-closed"
          })
          assert.isTrue(yield* passes(l))
          yield* redis.send("SCRIPT", "FLUSH")
          yield* Effect.sleep(20)
          assert.isTrue(yield* passes(l))
          assert.strictEqual((yield* RateLimiter.stats(l)).storeErrors.Rejected, 0)
        }))

      it.effect("a server that does not answer within timeout fails the call with reason Timeout, in about timeout", () =>
        Effect.gen(function*() {
          const redis = yield* Redis.Redis
          const store = yield* freshStore({ timeout: "50 millis" })
          yield* redis.send("CLIENT", "PAUSE", "300", "ALL")
          const started = Date.now()
          const e = yield* Effect.flip(store.consume("paused", { _tag: "FixedWindow", limit: 1, windowMillis: 1_000 }, 1, 0, 0))
          assert.deepStrictEqual([e.reason, e.operation], ["Timeout", "consume"])
          assert.isBelow(Date.now() - started, 250)
          yield* Effect.sleep(350)
        }))

      it.effect("bad options are InvalidOptions naming each field", () =>
        Effect.gen(function*() {
          const e = yield* Effect.flip(RedisRateLimiterStore.make({ prefix: 5, timeout: "soon", clock: "mine", extra: 1 } as any))
          assert.instanceOf(e, InvalidOptions)
          assert.strictEqual(e.primitive, "RedisRateLimiterStore")
          const fields = e.message.split("\n").map((line) => line.split(":")[0])
          assert.deepStrictEqual(fields.sort(), ["clock", "extra", "prefix", "timeout"])
        }))
    })

    describe("Redis: one round trip per decision", () => {
      it.effect("N decisions through RateLimiter are N EVALSHA and no other command from the client (MONITOR)", () =>
        Effect.gen(function*() {
          const l = yield* RateLimiter.make({
            name: "trips",
            algorithm: RateLimiter.slidingWindow({ limit: 30, window: "1 minute" }),
            store: yield* freshStore()
          })
          yield* passes(l) // loads the script
          const watch = yield* Effect.promise(() => monitor(server!.port))
          let admitted = 0
          for (let i = 0; i < 50; i++) if (yield* passes(l)) admitted++
          const seen = yield* Effect.promise(() => watch.stop())
          assert.deepStrictEqual(seen.fromClients, Array.from({ length: 50 }, () => "EVALSHA"))
          assert.isAbove(seen.fromScripts, 50, "the work happens inside the script")
          assert.strictEqual(admitted, 29)
        }))
    })

    describe("RateLimiter on the store, in real time", () => {
      it.effect("two instances with one name share one limit, as two processes would", () =>
        Effect.gen(function*() {
          const store = yield* freshStore()
          const options = { name: "shared", algorithm: RateLimiter.fixedWindow({ limit: 3, window: "1 minute" }), store } as const
          const a = yield* RateLimiter.make(options)
          const b = yield* RateLimiter.make(options)
          const seen = [yield* passes(a), yield* passes(b), yield* passes(a), yield* passes(b), yield* passes(a)]
          assert.deepStrictEqual(seen, [true, true, true, false, false])
          const e = yield* Effect.flip(Effect.void.pipe(RateLimiter.guard(b)))
          assert.strictEqual(e.reason, "Exceeded")
        }))

      it.effect("waiting callers reserve their slot in Redis and start at it, in FIFO order", () =>
        Effect.gen(function*() {
          const l = yield* RateLimiter.make({
            name: "paced",
            algorithm: RateLimiter.gcra({ rate: 1, per: "40 millis" }),
            onExceeded: "wait",
            store: yield* freshStore()
          })
          const started: Array<readonly [number, number]> = []
          const t0 = Date.now()
          yield* Effect.forEach(
            [0, 1, 2, 3, 4],
            (i) => Effect.sync(() => void started.push([i, Date.now() - t0])).pipe(RateLimiter.guard(l)),
            { concurrency: "unbounded" }
          )
          assert.deepStrictEqual(started.map(([i]) => i), [0, 1, 2, 3, 4])
          const last = started[4][1]
          assert.isTrue(last >= 155 && last < 400, `the fifth starts after four spacings of 40 ms, at ${last} ms`)
        }))

      it.effect("block reaches every instance through the store", () =>
        Effect.gen(function*() {
          const store = yield* freshStore()
          const options = { name: "blocked", algorithm: RateLimiter.tokenBucket({ capacity: 5, refill: 1, per: "1 second" }), store } as const
          const a = yield* RateLimiter.make(options)
          const b = yield* RateLimiter.make(options)
          yield* RateLimiter.block(a, "5 seconds")
          const e = yield* Effect.flip(Effect.void.pipe(RateLimiter.guard(b)))
          assert.strictEqual(e.reason, "Blocked")
          assert.isAbove(Duration.toMillis(e.retryAfter), 4_000)
        }))
    })
  })

  describe("an outage: the server killed mid-run, then restarted", () => {
    vitest("each onStoreError policy is observed, no call outlasts the store's timeout; after the restart the store decides again", async () => {
      const own = await startRedis()
      try {
        const registry: Metric.MetricRegistry = new Map()
        const program = Effect.gen(function*() {
          const store = yield* RedisRateLimiterStore.make({ prefix: "outage:", timeout: "300 millis" })
          const make = (onStoreError: "local" | "fail-open" | "fail-closed") =>
            RateLimiter.make({
              name: onStoreError,
              algorithm: RateLimiter.fixedWindow({ limit: 2, window: "1 minute" }),
              store,
              onStoreError
            })
          const local = yield* make("local")
          const open = yield* make("fail-open")
          const closed = yield* make("fail-closed")
          const all = [local, open, closed]
          for (const l of all) assert.isTrue(yield* passes(l), `${l.name} before the outage`)

          yield* Effect.promise(() => own.stop("SIGKILL"))
          const timed = <A, E>(effect: Effect.Effect<A, E>) =>
            Effect.gen(function*() {
              const started = Date.now()
              const exit = yield* Effect.exit(effect)
              return { exit, took: Date.now() - started }
            })
          const during: Record<string, Array<string>> = {}
          let longest = 0
          for (const l of all) {
            during[l.name] = []
            for (let i = 0; i < 4; i++) {
              const { exit, took } = yield* timed(Effect.void.pipe(RateLimiter.guard(l)))
              longest = Math.max(longest, took)
              during[l.name].push(reasonOf(exit))
            }
          }
          assert.deepStrictEqual(during, {
            // The stand-in knows nothing of the store's state: a fresh limit of 2 in this process.
            local: ["passed", "passed", "Exceeded", "Exceeded"],
            "fail-open": ["passed", "passed", "passed", "passed"],
            "fail-closed": ["StoreUnavailable", "StoreUnavailable", "StoreUnavailable", "StoreUnavailable"]
          })
          assert.isBelow(longest, 300, "offline commands fail at once (disableOfflineQueue), well within the timeout")
          const s = yield* RateLimiter.stats(closed)
          assert.deepStrictEqual([s.storeErrors.Unavailable, s.decidedWithoutStore, s.rejected.StoreUnavailable], [1, 4, 4])

          yield* Effect.promise(() => own.restart())
          // The client reconnects on its own (backoff from 50 ms); the next ask after the backoff reaches the store.
          assert.isTrue(yield* untilTheStoreDecides(closed), "fail-closed passes again once the store answers")
          // The restarted server is empty: the store's own limit starts again.
          assert.isTrue(yield* passes(closed))
          assert.isFalse(yield* passes(closed))
          const errors = yield* Metric.snapshot
          const series = errors.find((m) =>
            m.id === "bulwark.ratelimiter.store_errors" && m.attributes?.name === "fail-closed" && m.attributes?.reason === "Unavailable"
          )?.state as { readonly count: number } | undefined
          assert.strictEqual(series?.count, (yield* RateLimiter.stats(closed)).storeErrors.Unavailable)
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

    vitest("without disableOfflineQueue a call waits for the store's timeout, once: then the backoff decides at once", async () => {
      const own = await startRedis()
      try {
        const program = Effect.gen(function*() {
          const l = yield* RateLimiter.make({
            name: "queued",
            algorithm: RateLimiter.fixedWindow({ limit: 100, window: "1 minute" }),
            store: yield* RedisRateLimiterStore.make({ timeout: "150 millis" }),
            onStoreError: "fail-open"
          })
          assert.isTrue(yield* passes(l))
          yield* Effect.promise(() => own.stop("SIGKILL"))
          const started = Date.now()
          assert.isTrue(yield* passes(l))
          const first = Date.now() - started
          assert.isTrue(first >= 140 && first < 1_000, `the first call waited for the timeout: ${first} ms`)
          const next = Date.now()
          for (let i = 0; i < 20; i++) assert.isTrue(yield* passes(l))
          assert.isBelow(Date.now() - next, 100, "the others did not wait")
          assert.strictEqual((yield* RateLimiter.stats(l)).storeErrors.Timeout, 1)
          // node-redis closes only once its queue is flushed: the server must be back, and the client reconnected.
          yield* Effect.promise(() => own.restart())
          assert.isTrue(yield* untilTheStoreDecides(l))
        }).pipe(Effect.scoped, Effect.provide(NodeRedis.layer({ url: own.url })), quiet)
        await Effect.runPromise(program)
      } finally {
        await own.stop()
      }
    }, 15_000)
  })

  describe("four OS processes sharing one limit", () => {
    vitest("the merged timeline of admissions (Redis TIME) holds the rate within 1%; no second holds more than the limit; no call starts before its slot", async () => {
      const rate = 400 // per second, burst 10
      const burst = 10
      const { reports } = await runWorkers<Report>({
        worker: "limiter.ts",
        count: 4,
        env: { REDIS_URL: url, PREFIX: "fleet:", RATE: String(rate), BURST: String(burst), RUN_MS: "2500" },
        limitMs: 20_000
      })
      assert.strictEqual(reports.length, 4)
      for (const r of reports) assert.isAbove(r.slots.length, 100, "every process got a share")
      // The slots the store committed (on Redis's clock: TIME), merged across processes.
      const slots = reports.flatMap((r) => r.slots).sort((a, b) => a - b)
      const span = slots[slots.length - 1] - slots[0]
      const expected = burst + span * rate / 1_000
      assert.isAtMost(Math.abs(slots.length - expected) / expected, 0.01, `${slots.length} slots in ${span} ms, expected ${expected}`)
      // GCRA: at most burst + rate * d / 1000 in any interval of d ms; here any second.
      assert.isAtMost(densest(slots, 1_000), burst + rate, "any second")
      // The calls started at those slots, never before (a process may start late: it shares the CPU).
      const starts = reports.flatMap((r) => r.starts).sort((a, b) => a - b)
      assert.strictEqual(starts.length, slots.length)
      for (let i = 0; i < starts.length; i++) assert.isAtLeast(starts[i], slots[i] - 2, "no call started before its slot (2 ms: clock offsets)")
    }, 30_000)
  })
})
