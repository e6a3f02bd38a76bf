/**
 * SqliteRateLimiterStore on real SQLite files in a temporary directory:
 *
 * - property: for every algorithm, random programs of consumes (with and
 *   without waiting), refunds, blocks and time on two keys get exactly the
 *   decisions of the in-memory store (the same algorithms, run on rows);
 * - the row layout, rows at rest swept, a changed algorithm (the key starts
 *   afresh, keeping its block);
 * - a block (Retry-After) written by a process that then exits holds for the
 *   next process;
 * - a file locked by another process: a `StoreError` (reason Timeout) within
 *   the bound, then the limiter's `onStoreError` decides (fail-open passes,
 *   fail-closed rejects); a call that would be rejected anyway is decided
 *   without the lock; a foreign file is Rejected;
 * - several OS processes share one limiter through one file: the slots it
 *   gives hold the rate within 1%, never two in one slot, and every call
 *   starts in its slot.
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import { it as vitest } from "vitest"
import { InvalidOptions, RateLimiter, RateLimiterStore } from "@bulwark/core"
import { SqliteRateLimiterStore } from "@bulwark/sqlite"
import { Context, Duration, Effect, Layer, Schema } from "effect"
import * as Arbitrary from "effect/Arbitrary"
import { DatabaseSync } from "node:sqlite"
import { forkWorker, tempFiles } from "./support.ts"

const files = tempFiles()
afterAll(files.cleanup)

type Algorithm = RateLimiterStore.Algorithm

const algorithms: ReadonlyArray<Algorithm> = [
  { _tag: "TokenBucket", capacity: 5, refill: 2, perMillis: 100 },
  { _tag: "Gcra", rate: 3, perMillis: 100, burst: 4 },
  { _tag: "FixedWindow", limit: 5, windowMillis: 100 },
  { _tag: "SlidingWindow", limit: 5, windowMillis: 100 }
]

const rows = (file: string) => {
  const db = new DatabaseSync(file, { readOnly: true })
  try {
    return db.prepare("SELECT key, state, reset_at FROM bulwark_rate_limiter ORDER BY key").all() as Array<{
      key: string
      state: string
      reset_at: number
    }>
  } finally {
    db.close()
  }
}

// -----------------------------------------------------------------------------
// property: the same decisions as the in-memory store
// -----------------------------------------------------------------------------

type Step =
  | { readonly _tag: "Consume"; readonly key: string; readonly cost: number; readonly maxWait: number }
  | { readonly _tag: "Refund"; readonly pick: number }
  | { readonly _tag: "Block"; readonly key: string; readonly forMs: number }
  | { readonly _tag: "Advance"; readonly ms: number }

const int = (minimum: number, maximum: number) => Arbitrary.schema(Schema.Int.check(Schema.isBetween({ minimum, maximum })))

const step = Arbitrary.all([int(0, 99), int(0, 1), int(1, 6), int(0, 3), int(0, 250)]).pipe(
  Arbitrary.map(([kind, key, cost, wait, x]): Step => {
    const k = key === 0 ? "a" : "b"
    if (kind < 55) return { _tag: "Consume", key: k, cost, maxWait: [0, 0, 150, 1000][wait] }
    if (kind < 65) return { _tag: "Refund", pick: x }
    if (kind < 70) return { _tag: "Block", key: k, forMs: x * 2 }
    return { _tag: "Advance", ms: x % 3 === 0 ? x * 4 : x % 40 }
  })
)

const propertyFile = files.next("property")
let runs = 0

const sameDecisions = (algorithm: Algorithm, steps: ReadonlyArray<Step>) =>
  Effect.gen(function*() {
    const memory = RateLimiterStore.memory()
    // One file for every run; each run's keys have a prefix of their own.
    const sqlite = yield* SqliteRateLimiterStore.make({ file: propertyFile, prefix: `run-${++runs}:` })
    let now = 1_700_000_000_000 + (runs % 97)
    const reservations: Array<{ readonly key: string; readonly cost: number; readonly at: number }> = []
    for (const [i, s] of steps.entries()) {
      switch (s._tag) {
        case "Consume": {
          const expected = yield* memory.consume(s.key, algorithm, s.cost, now, s.maxWait)
          const actual = yield* sqlite.consume(s.key, algorithm, s.cost, now, s.maxWait)
          // A key at rest may have been dropped (as the contract allows): any resetAt <= now says "at rest".
          const atRest = (d: RateLimiterStore.Decision) => ({ ...d, resetAt: Math.max(d.resetAt, now) })
          assert.deepStrictEqual(atRest(actual), atRest(expected), `step ${i}: ${JSON.stringify(s)} at ${now}`)
          if (expected.admitted && expected.at > now) reservations.push({ key: s.key, cost: s.cost, at: expected.at })
          break
        }
        case "Refund": {
          const open = reservations.filter((r) => r.at > now)
          if (open.length === 0) break
          const r = open[s.pick % open.length]
          reservations.splice(reservations.indexOf(r), 1)
          yield* memory.refund(r.key, algorithm, r.cost, r.at, now)
          yield* sqlite.refund(r.key, algorithm, r.cost, r.at, now)
          break
        }
        case "Block": {
          yield* memory.block(s.key, algorithm, now + s.forMs, now)
          yield* sqlite.block(s.key, algorithm, now + s.forMs, now)
          break
        }
        case "Advance":
          now += s.ms
      }
    }
  }).pipe(Effect.scoped)

describe("SqliteRateLimiterStore", () => {
  describe("property: the decisions of the in-memory store, for every algorithm (the same code, run on rows)", () => {
    for (const algorithm of algorithms) {
      it.effect.prop(
        `${algorithm._tag}: consumes, reservations, refunds, blocks and time on two keys`,
        { steps: Arbitrary.array(step, { minLength: 10, maxLength: 60 }) },
        ({ steps }) => sameDecisions(algorithm, steps),
        { arbitrary: { runs: 60, size: 60 } }
      )
    }
  })

  describe("SQLite: one row per key, written in BEGIN IMMEDIATE transactions", () => {
    it.effect("an admitted call writes the key's state and the time it is back at rest; a rejected one writes nothing", () =>
      Effect.gen(function*() {
        const file = files.next()
        const store = yield* SqliteRateLimiterStore.make({ file, prefix: "cli:" })
        const a: Algorithm = { _tag: "FixedWindow", limit: 2, windowMillis: 1000 }
        assert.isTrue((yield* store.consume("api", a, 2, 10_500, 0)).admitted)
        const [row] = rows(file)
        assert.deepStrictEqual([row.key, row.reset_at], ["cli:api", 11_000])
        assert.deepStrictEqual(JSON.parse(row.state).algorithm, a)
        const rejected = yield* store.consume("api", a, 1, 10_600, 0)
        assert.deepStrictEqual(rejected, { admitted: false, at: 11_000, blocked: false, remaining: 0, resetAt: 11_000 })
        assert.deepStrictEqual(rows(file), [row])
      }))

    it.effect("rows at rest are deleted by later admitted calls, a few at a time: nothing is lost", () =>
      Effect.gen(function*() {
        const file = files.next()
        const store = yield* SqliteRateLimiterStore.make({ file })
        const a: Algorithm = { _tag: "TokenBucket", capacity: 3, refill: 1, perMillis: 100 }
        for (let i = 0; i < 40; i++) yield* store.consume(`k${i}`, a, 1, 1000, 0)
        assert.strictEqual(rows(file).length, 40)
        // 100 ms later every bucket is full again: at rest.
        yield* store.consume("fresh", a, 1, 1100, 0)
        assert.strictEqual(rows(file).length, 40 - 16 + 1)
        yield* store.consume("fresh", a, 1, 1100, 0)
        yield* store.consume("fresh", a, 1, 1100, 0)
        assert.deepStrictEqual(rows(file).map((r) => r.key), ["fresh"])
        // A swept key starts full, as it would have been.
        assert.strictEqual((yield* store.consume("k0", a, 3, 1100, 0)).admitted, true)
      }))

    it.effect("a key whose algorithm changed (another configuration) starts afresh, but its block still holds", () =>
      Effect.gen(function*() {
        const file = files.next()
        const store = yield* SqliteRateLimiterStore.make({ file })
        const before: Algorithm = { _tag: "TokenBucket", capacity: 2, refill: 1, perMillis: 1000 }
        const after: Algorithm = { _tag: "TokenBucket", capacity: 5, refill: 1, perMillis: 1000 }
        yield* store.consume("api", before, 2, 1000, 0)
        assert.isFalse((yield* store.consume("api", before, 1, 1000, 0)).admitted)
        assert.isTrue((yield* store.consume("api", after, 5, 1000, 0)).admitted)
        yield* store.block("api", after, 60_000, 1000)
        const blocked = yield* store.consume("api", { _tag: "Gcra", rate: 1, perMillis: 1000, burst: 1 }, 1, 2000, 0)
        assert.deepInclude(blocked, { admitted: false, blocked: true, at: 60_000 })
      }))
  })

  describe("a block (Retry-After) survives across processes", () => {
    vitest("a process blocks the limiter for 30 s and exits; the next process is rejected with reason Blocked", async () => {
      const file = files.next()
      const worker = forkWorker<{ readonly type: string; readonly at: number }>("limiter.ts", ["block"], { FILE: file, BLOCK_MS: "30000" }, 20_000)
      const { at } = await worker.next((m) => m.type === "blocked")
      assert.strictEqual(await worker.exited, 0, worker.stderr())
      const program = Effect.gen(function*() {
        const store = yield* SqliteRateLimiterStore.make({ file })
        const limiter = yield* RateLimiter.make({
          name: "api",
          algorithm: RateLimiter.tokenBucket({ capacity: 10, refill: 10, per: "1 second" }),
          store
        })
        // The decision is taken after `decidedAfter`, so what is left of the block is at most its end minus that.
        const decidedAfter = Date.now()
        const e = yield* Effect.flip(Effect.void.pipe(RateLimiter.guard(limiter)))
        assert.strictEqual(e.reason, "Blocked")
        const left = Duration.toMillis(e.retryAfter)
        assert.isAbove(left, 25_000)
        assert.isAtMost(left, at + 30_000 - decidedAfter + 1)
      }).pipe(Effect.scoped)
      await Effect.runPromise(program)
    }, 20_000)
  })

  describe("a file locked by another process: a StoreError within the bound, then the limiter's onStoreError; never a hang", () => {
    vitest("consume fails with reason Timeout after ~100 ms; a fail-open limiter lets the call through, a fail-closed one rejects it; a call rejected anyway needs no lock", async () => {
      const file = files.next()
      const a: Algorithm = { _tag: "FixedWindow", limit: 1, windowMillis: 3_600_000 }
      const setup = Effect.gen(function*() {
        const store = yield* SqliteRateLimiterStore.make({ file })
        assert.isTrue((yield* store.consume("full", a, 1, Date.now(), 0)).admitted)
      }).pipe(Effect.scoped)
      await Effect.runPromise(setup)
      const holder = forkWorker<{ readonly type: string }>("holder.ts", [file], {}, 20_000)
      try {
        await holder.next((m) => m.type === "locked")
        const program = Effect.gen(function*() {
          const store = yield* SqliteRateLimiterStore.make({ file })
          const timed = <A, E>(effect: Effect.Effect<A, E>) =>
            Effect.gen(function*() {
              const t0 = performance.now()
              const exit = yield* Effect.exit(effect)
              return [exit, performance.now() - t0] as const
            })
          const [failed, took] = yield* timed(Effect.flip(store.consume("k", a, 1, Date.now(), 0)))
          assert.isTrue(failed._tag === "Success")
          const e = failed._tag === "Success" ? failed.value : undefined
          assert.deepInclude(e, { _tag: "StoreError", store: "sqlite", operation: "consume", reason: "Timeout" })
          assert.isAtLeast(took, 90)
          assert.isBelow(took, 400)
          // The window of "full" is used up: that is decided from a read, which the lock does not stop.
          const [rejected, tookRead] = yield* timed(store.consume("full", a, 1, Date.now(), 0))
          assert.deepInclude(rejected._tag === "Success" ? rejected.value : undefined, { admitted: false, blocked: false })
          assert.isBelow(tookRead, 40)
          const algorithm = RateLimiter.fixedWindow({ limit: 1, window: "1 hour" })
          const open = yield* RateLimiter.make({ name: "open", algorithm, store, onStoreError: "fail-open" })
          const [passed, tookOpen] = yield* timed(Effect.succeed("ran").pipe(RateLimiter.guard(open)))
          assert.deepStrictEqual(passed._tag === "Success" ? passed.value : undefined, "ran")
          assert.isBelow(tookOpen, 400)
          const closed = yield* RateLimiter.make({ name: "closed", algorithm, store, onStoreError: "fail-closed" })
          const refused = yield* Effect.flip(Effect.succeed("ran").pipe(RateLimiter.guard(closed)))
          assert.strictEqual(refused.reason, "StoreUnavailable")
          holder.send("release")
          yield* Effect.promise(() => holder.exited)
          assert.isTrue((yield* store.consume("k", a, 1, Date.now(), 0)).admitted)
        }).pipe(Effect.scoped)
        await Effect.runPromise(program)
      } finally {
        holder.kill()
      }
    }, 20_000)

    it.effect("a foreign file: reason Rejected, and the limiter's onStoreError decides", () =>
      Effect.gen(function*() {
        const file = files.next()
        const db = new DatabaseSync(file)
        db.exec("CREATE TABLE other_app (x)")
        db.close()
        const a: Algorithm = { _tag: "FixedWindow", limit: 1, windowMillis: 1000 }
        const store = yield* SqliteRateLimiterStore.make({ file })
        const e = yield* Effect.flip(store.consume("k", a, 1, 0, 0))
        assert.deepStrictEqual([e.reason, e.operation], ["Rejected", "consume"])
        assert.include(e.message, "another application")
        const limiter = yield* RateLimiter.make({
          name: "cli",
          algorithm: RateLimiter.fixedWindow({ limit: 1, window: "1 second" }),
          store,
          onStoreError: "fail-open"
        })
        assert.strictEqual(yield* Effect.succeed(1).pipe(RateLimiter.guard(limiter)), 1)
      }))
  })

  describe("a key's time never goes backwards", () => {
    it.effect("a decision whose clock was read before another's but that got the lock after it is decided at the later time, not rejected", () =>
      Effect.gen(function*() {
        const store = yield* SqliteRateLimiterStore.make({ file: files.next() })
        const bucket: Algorithm = { _tag: "TokenBucket", capacity: 1_000_000, refill: 1_000_000, perMillis: 1000 }
        // Process A read 1000 (a refill tick) and decided first; process B read 999 and got the lock next.
        assert.isTrue((yield* store.consume("k", bucket, 1, 1000, 0)).admitted)
        const late = yield* store.consume("k", bucket, 1, 999, 0)
        assert.deepStrictEqual([late.admitted, late.at], [true, 1000])
        // The in-memory store, which never sees this in one process, rejects it: the refill is ahead of 999.
        const memory = RateLimiterStore.memory()
        yield* memory.consume("k", bucket, 1, 1000, 0)
        assert.isFalse((yield* memory.consume("k", bucket, 1, 999, 0)).admitted)
      }).pipe(Effect.scoped))
  })

  describe("layer", () => {
    it.effect("a RateLimiter service on the store: two layers built apart (two processes' worth) share the limit", () =>
      Effect.gen(function*() {
        const file = files.next()
        class Api extends Context.Service<Api, RateLimiter.RateLimiter>()("test/Api") {}
        const live = SqliteRateLimiterStore.layer(Api, {
          name: "api",
          algorithm: RateLimiter.fixedWindow({ limit: 3, window: "1 hour" })
        }, { file, prefix: "cli:" })
        const call = Effect.gen(function*() {
          return yield* Effect.exit(Effect.void.pipe(RateLimiter.guard(yield* Api)))
        })
        const first = yield* Effect.all([call, call]).pipe(Effect.provide(Layer.fresh(live)))
        const second = yield* Effect.all([call, call]).pipe(Effect.provide(Layer.fresh(live)))
        assert.deepStrictEqual([...first, ...second].map((exit) => exit._tag), ["Success", "Success", "Success", "Failure"])
        assert.deepStrictEqual(rows(file).map((row) => row.key), ["cli:api"])
      }).pipe(Effect.scoped))
  })

  describe("options", () => {
    it.effect("bad options are InvalidOptions naming each field", () =>
      Effect.gen(function*() {
        const e = yield* Effect.flip(
          SqliteRateLimiterStore.make({ file: 1, prefix: 2, onStoreError: "local", lockTimeout: "x" } as any)
        )
        assert.instanceOf(e, InvalidOptions)
        assert.strictEqual(e.primitive, "SqliteRateLimiterStore")
        const fields = e.message.split("\n").map((line) => line.split(":")[0])
        assert.deepStrictEqual(fields.sort(), ["file", "lockTimeout", "onStoreError", "prefix"])
      }))
  })

  describe("several OS processes share one limiter through one file", () => {
    type Message =
      | { readonly type: "ready" }
      | {
        readonly type: "done"
        readonly slots: Array<number>
        readonly started: Array<number>
        readonly admitted: number
        readonly rejected: Record<string, number>
      }

    vitest("4 processes, 64 waiting callers each, on a limit of 400 per second: the slots given hold the rate within 1%, and every call starts in its slot", async () => {
      const file = files.next("shared")
      // One call every 2.5 ms: slots are whole milliseconds, and the rounding must not accumulate.
      const rate = 400
      const runMs = 2500
      const workers = Array.from({ length: 4 }, () =>
        // 256 callers waiting keep half a second of slots reserved: a machine that stalls every process for
        // less than that leaves no gap in the schedule (the test measures the limiter, not the machine).
        forkWorker<Message>("limiter.ts", ["share"], { FILE: file, RATE: String(rate), RUN_MS: String(runMs), FIBERS: "64" }, 25_000))
      try {
        await Promise.all(workers.map((w) => w.next((m) => m.type === "ready")))
        const at = Date.now() + 100
        for (const w of workers) w.send({ at })
        assert.deepStrictEqual(await Promise.all(workers.map((w) => w.exited)), [0, 0, 0, 0], workers.map((w) => w.stderr()).join(""))
        const reports = workers.map((w) => w.messages.find((m) => m.type === "done")!) as Array<Extract<Message, { type: "done" }>>
        for (const r of reports) assert.deepStrictEqual(r.rejected.StoreUnavailable, 0, "the file always decided")
        // Away from the edges of the run (start-up, the last slots): 2 seconds of steady state.
        const from = at + 250
        const to = from + 2000
        const expected = (rate * (to - from)) / 1000
        const slots = reports.flatMap((r) => r.slots).sort((x, y) => x - y)
        const given = slots.filter((t) => t >= from && t < to).length
        assert.isAtMost(Math.abs(given - expected) / expected, 0.01, `${given} slots given in 2 s, expected ${expected}`)
        // Never two callers in one slot, across processes: slots are the exact times (2.5 ms apart) rounded up.
        for (let i = 1; i < slots.length; i++) assert.isAtLeast(slots[i] - slots[i - 1], Math.floor(1000 / rate))
        // Every call started in its slot or later, never before it.
        const started = reports.flatMap((r) => r.started).sort((x, y) => x - y)
        assert.strictEqual(started.length, slots.length)
        for (let i = 0; i < started.length; i++) assert.isAtLeast(started[i], slots[i])
        // Every process got a share of the limit.
        for (const r of reports) assert.isAbove(r.admitted, expected / 10)
      } finally {
        for (const w of workers) w.kill()
      }
    }, 30_000)
  })
})
