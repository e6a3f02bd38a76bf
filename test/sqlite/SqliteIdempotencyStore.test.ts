/**
 * SqliteIdempotencyStore on real SQLite files in a temporary directory:
 *
 * - the store contract and the store-dependent rules of `Idempotency.once`,
 *   the same suites as the in-memory and Redis stores run
 *   (test/support/idempotencyContract.ts), on `TestClock` (the store decides
 *   at the `now` it is given);
 * - what is particular to SQLite: the row layout, results read back without
 *   the lock, a claim left by a crashed process taken over at once, a file
 *   locked by another process (a Timeout within the bound), a foreign file,
 *   options;
 * - several OS processes (test/sqlite/workers/once.ts) racing on the same
 *   keys through one file: each key runs exactly once, and every process
 *   gets that run's result.
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import { it as vitest } from "vitest"
import { Idempotency, IdempotencyStore, InvalidOptions } from "@bulwark/core"
import { SqliteDatabase, SqliteIdempotencyStore } from "@bulwark/sqlite"
import { Effect, Layer, Schema } from "effect"
import { TestClock } from "effect/testing"
import { writeFileSync } from "node:fs"
import { DatabaseSync } from "node:sqlite"
import { idempotencyRules, type StoreSetup, storeContract } from "../support/idempotencyContract.ts"
import { forkWorker, tempFiles } from "./support.ts"

const files = tempFiles()
afterAll(files.cleanup)

/** A store on a file of its own: no other test sees its keys. */
const freshStore = (options?: SqliteIdempotencyStore.Options) =>
  Effect.suspend(() => SqliteIdempotencyStore.make({ file: files.next("idempotency"), ...options })).pipe(Effect.orDie)

const claimed = (claim: IdempotencyStore.Claim): string => {
  if (claim._tag !== "Claimed") throw new Error(`expected Claimed, got ${JSON.stringify(claim)}`)
  return claim.token
}

describe("SqliteIdempotencyStore", () => {
  const setup: StoreSetup<never> = {
    test: (name, body) => it.effect(name, body),
    makeStore: freshStore() as any,
    advance: (ms) => TestClock.adjust(ms),
    leaseMs: 1000,
    virtualTime: true
  }

  describe("the store contract", () => storeContract(setup))

  describe("Idempotency on the SQLite store", () => idempotencyRules(setup))

  describe("SQLite: one row per key, fenced by the token, written in BEGIN IMMEDIATE transactions", () => {
    it.effect("the row holds the token, the lease end and the owner process (pid, start time); complete turns it into the result", () =>
      Effect.gen(function*() {
        const file = files.next()
        const store = yield* SqliteIdempotencyStore.make({ file, prefix: "shop:" })
        const token = claimed(yield* store.claim("orders:42", 5000, 1_000))
        const db = new DatabaseSync(file, { readOnly: true })
        const row = () => db.prepare("SELECT * FROM bulwark_idempotency WHERE key = 'shop:orders:42'").get() as Record<string, unknown>
        assert.deepInclude(row(), { token, completed: 0, encoded: null, expires_at: 6_000, owner_pid: process.pid })
        if (process.platform === "linux") assert.match(String(row().owner_start), /^\d+$/)
        assert.isTrue(yield* store.renew("orders:42", token, 9000, 2_000))
        assert.strictEqual(row().expires_at, 11_000)
        assert.isTrue(yield* store.complete("orders:42", token, `{"_tag":"Success","value":1}`, 60_000, 3_000))
        assert.deepInclude(row(), { completed: 1, encoded: `{"_tag":"Success","value":1}`, stored_at: 3_000, expires_at: 63_000 })
        db.close()
      }))

    it.effect("expired rows are deleted by later claims, a few at a time", () =>
      Effect.gen(function*() {
        const file = files.next()
        const store = yield* SqliteIdempotencyStore.make({ file })
        for (let i = 0; i < 40; i++) claimed(yield* store.claim(`old-${i}`, 100, 0))
        const count = () => {
          const db = new DatabaseSync(file, { readOnly: true })
          const n = (db.prepare("SELECT count(*) AS n FROM bulwark_idempotency").get() as { n: number }).n
          db.close()
          return n
        }
        assert.strictEqual(count(), 40)
        claimed(yield* store.claim("new-1", 100, 1000))
        assert.strictEqual(count(), 40 - 16 + 1)
        claimed(yield* store.claim("new-2", 100, 1000))
        claimed(yield* store.claim("new-3", 100, 1000))
        assert.strictEqual(count(), 3)
      }))

    it.effect("stores on one file share keys; different prefixes do not", () =>
      Effect.gen(function*() {
        const file = files.next()
        const a = yield* SqliteIdempotencyStore.make({ file })
        const b = yield* SqliteIdempotencyStore.make({ file })
        const other = yield* SqliteIdempotencyStore.make({ file, prefix: "other:" })
        claimed(yield* a.claim("k", 1000, 0))
        assert.strictEqual((yield* b.claim("k", 1000, 0))._tag, "InFlight")
        claimed(yield* other.claim("k", 1000, 0))
      }))
  })

  describe("a claim left by a crashed process is taken over at once", () => {
    vitest("a worker claims a key and is killed (SIGKILL): the next claim gets the key without waiting for the lease", async () => {
      const file = files.next()
      const worker = forkWorker<{ readonly type: string }>("claimer.ts", [file, "job-1"], {}, 20_000)
      try {
        await worker.next((m) => m.type === "claimed")
        const program = Effect.gen(function*() {
          const store = yield* SqliteIdempotencyStore.make({ file })
          const keep = yield* SqliteIdempotencyStore.make({ file, reclaimDeadOwners: false })
          // The worker is alive: its claim holds (the lease is an hour).
          assert.strictEqual((yield* store.claim("crash:job-1", 1000, Date.now()))._tag, "InFlight")
          worker.kill("SIGKILL")
          yield* Effect.promise(() => worker.exited)
          // Without reclaiming, the lease decides: still in flight.
          assert.strictEqual((yield* keep.claim("crash:job-1", 1000, Date.now()))._tag, "InFlight")
          claimed(yield* store.claim("crash:job-1", 1000, Date.now()))
        }).pipe(Effect.scoped)
        await Effect.runPromise(program)
      } finally {
        worker.kill()
      }
    }, 20_000)

    it.effect("an owner from another pid namespace, host or boot is never judged: its lease decides", () =>
      Effect.gen(function*() {
        const file = files.next()
        const store = yield* SqliteIdempotencyStore.make({ file })
        yield* SqliteDatabase.check({ file }) // creates the file
        const db = new DatabaseSync(file)
        // pid 1 in another container would be alive there; here it is someone else. Either way: not ours to judge.
        db.prepare(
          "INSERT INTO bulwark_idempotency VALUES ('k', 't', 0, NULL, NULL, 10000, 999999, '1', 'linux:another-boot:pid:[1]')"
        ).run()
        db.close()
        assert.strictEqual((yield* store.claim("k", 1000, 0))._tag, "InFlight")
      }))

    it.effect("a pid that no process has: the owner is dead; the same pid with another start time: the pid was reused", () =>
      Effect.gen(function*() {
        const file = files.next()
        const store = yield* SqliteIdempotencyStore.make({ file })
        // The identity this process writes, read from a claim of its own.
        claimed(yield* store.claim("mine", 10_000, 0))
        const db = new DatabaseSync(file)
        const own = db.prepare("SELECT owner_start, owner_scope FROM bulwark_idempotency WHERE key = 'mine'").get() as {
          owner_start: string
          owner_scope: string
        }
        const insert = db.prepare("INSERT INTO bulwark_idempotency VALUES (?, 't', 0, NULL, NULL, 10000, ?, ?, ?)")
        insert.run("no-such-pid", 2 ** 22 + 12345, own.owner_start, own.owner_scope)
        insert.run("reused-pid", process.pid, own.owner_start === "" ? "" : `${own.owner_start}0`, own.owner_scope)
        db.close()
        claimed(yield* store.claim("no-such-pid", 1000, 0))
        const reused = yield* store.claim("reused-pid", 1000, 0)
        // Without start times (not Linux) a pid alone cannot tell: the lease decides.
        assert.strictEqual(reused._tag, own.owner_start === "" ? "InFlight" : "Claimed")
        // This process's own claim is alive.
        assert.strictEqual((yield* store.claim("mine", 1000, 0))._tag, "InFlight")
      }))
  })

  describe("failures are typed StoreErrors, never a crash or a hang", () => {
    vitest("another process holds the file's write lock: a claim fails with reason Timeout within the bound, and succeeds once it is released", async () => {
      const file = files.next()
      await Effect.runPromise(Effect.scoped(Effect.flatMap(SqliteIdempotencyStore.make({ file }), (s) => s.claim("warm", 1000, 0))))
      const holder = forkWorker<{ readonly type: string }>("holder.ts", [file], {}, 20_000)
      try {
        await holder.next((m) => m.type === "locked")
        const program = Effect.gen(function*() {
          const store = yield* SqliteIdempotencyStore.make({ file })
          const started = performance.now()
          const e = yield* Effect.flip(store.claim("k", 1000, Date.now()))
          const took = performance.now() - started
          assert.instanceOf(e, IdempotencyStore.StoreError)
          assert.deepStrictEqual([e.reason, e.operation], ["Timeout", "claim"])
          assert.include(e.message, "within 100 ms")
          assert.isAtLeast(took, 90)
          assert.isBelow(took, 400)
          // Through Idempotency: the effect does not run, the reason says why.
          let runs = 0
          const using = yield* Idempotency.make({ name: "locked", store })
          const failed = yield* Effect.flip(Idempotency.once("k", Effect.sync(() => ++runs), { ttl: 1000, result: Schema.Number, using }))
          assert.deepStrictEqual([failed.reason, runs], ["StoreTimeout", 0])
          holder.send("release")
          yield* Effect.promise(() => holder.exited)
          assert.strictEqual(yield* Idempotency.once("k", Effect.sync(() => ++runs), { ttl: 1000, result: Schema.Number, using }), 1)
        }).pipe(Effect.scoped)
        await Effect.runPromise(program)
      } finally {
        holder.kill()
      }
    }, 20_000)

    it.effect("a file that is not a SQLite database: reason Rejected, the file left as it was", () =>
      Effect.gen(function*() {
        const file = files.next()
        writeFileSync(file, "not a database\n".repeat(100))
        const store = yield* SqliteIdempotencyStore.make({ file })
        const e = yield* Effect.flip(store.claim("k", 1000, 0))
        assert.deepStrictEqual([e.reason, e.operation], ["Rejected", "claim"])
        assert.include(e.message, "is not a SQLite database")
      }))
  })

  describe("options", () => {
    it.effect("bad options are InvalidOptions naming each field", () =>
      Effect.gen(function*() {
        const e = yield* Effect.flip(
          SqliteIdempotencyStore.make({ file: "", lockTimeout: "soon", reclaimDeadOwners: "yes", extra: 1 } as any)
        )
        assert.instanceOf(e, InvalidOptions)
        assert.strictEqual(e.primitive, "SqliteIdempotencyStore")
        const fields = e.message.split("\n").map((line) => line.split(":")[0])
        assert.deepStrictEqual(fields.sort(), ["extra", "file", "lockTimeout", "reclaimDeadOwners"])
        const misspelt = yield* Effect.flip(Layer.build(SqliteIdempotencyStore.layer({ fle: "x.sqlite" } as any)))
        assert.instanceOf(misspelt, InvalidOptions)
        assert.match(misspelt.message, /^fle: /)
        const negative = yield* Effect.flip(SqliteIdempotencyStore.make({ lockTimeout: -1 }))
        assert.match(negative.message, /^lockTimeout: Expected a duration of a whole number of milliseconds >= 0/)
      }))

    it.effect("the layer provides Idempotency.Store on the file", () =>
      Effect.gen(function*() {
        const file = files.next()
        const once = Idempotency.once("k", Effect.succeed("first"), { ttl: 60_000, result: Schema.String })
        assert.strictEqual(yield* once.pipe(Effect.provide(SqliteIdempotencyStore.layer({ name: "cli", file }))), "first")
        const again = Idempotency.once("k", Effect.succeed("second"), { ttl: 60_000, result: Schema.String })
        // Another layer (another run of the program) on the same file replays the stored result.
        assert.strictEqual(yield* again.pipe(Effect.provide(SqliteIdempotencyStore.layer({ name: "cli", file }))), "first")
      }))
  })

  describe("several OS processes on the same keys", () => {
    type Message =
      | { readonly type: "ready" }
      | { readonly type: "executed"; readonly key: string; readonly pid: number }
      | {
        readonly type: "done"
        readonly results: Record<string, string>
        readonly claims: number
        readonly waited: number
        readonly storeErrors: Record<string, number>
      }

    vitest("4 processes race on 40 keys through one file: each key runs exactly once and every process gets that run's result", async () => {
      const file = files.next("workers")
      const keys = 40
      const workers = Array.from({ length: 4 }, () => forkWorker<Message>("once.ts", [], { FILE: file, KEYS: String(keys) }, 25_000))
      try {
        await Promise.all(workers.map((w) => w.next((m) => m.type === "ready")))
        for (const w of workers) w.send("go")
        const codes = await Promise.all(workers.map((w) => w.exited))
        assert.deepStrictEqual(codes, [0, 0, 0, 0], workers.map((w) => w.stderr()).join(""))
        const executions = workers.flatMap((w) => w.messages.filter((m) => m.type === "executed"))
        const done = workers.map((w) => w.messages.find((m) => m.type === "done")!)
        const runsPerKey = new Map<string, Array<number>>()
        for (const { key, pid } of executions) runsPerKey.set(key, [...(runsPerKey.get(key) ?? []), pid])
        assert.strictEqual(runsPerKey.size, keys)
        for (const [key, runners] of runsPerKey) assert.strictEqual(runners.length, 1, `${key} ran in ${runners.join(", ")}`)
        for (const report of done) {
          for (const [key, [runner]] of runsPerKey) assert.strictEqual(report.results[key], `${runner}:${key}`)
          assert.deepStrictEqual(report.storeErrors, { Unavailable: 0, Timeout: 0, Rejected: 0 })
        }
        // Each process also claimed a warm-up key of its own.
        assert.strictEqual(done.reduce((n, r) => n + r.claims, 0), keys + 4)
        // The processes did race: some calls found their key in flight and waited for another process.
        assert.isAbove(done.reduce((n, r) => n + r.waited, 0), 0)
        assert.isAbove(new Set(executions.map((e) => e.pid)).size, 1)
      } finally {
        for (const w of workers) w.kill()
      }
    }, 30_000)
  })
})
