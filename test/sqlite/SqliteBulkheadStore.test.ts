/**
 * SqliteBulkheadStore on real SQLite files in a temporary directory:
 *
 * - the store contract and the store-dependent rules of
 *   `DistributedBulkhead`, the same suites as the in-memory and Redis stores
 *   run (test/support/bulkheadStoreContract.ts), on `TestClock` (the store
 *   decides at the `now` it is given);
 * - what is particular to SQLite: the row layout (slots, tickets in `seq`
 *   order, owners), expired rows purged, prefixes, rows of dead processes
 *   reclaimed only when they could change the answer (and never rows of a
 *   live process or of another scope), a row the store cannot have written,
 *   a file locked by another process (a Timeout within the bound, then
 *   `onStoreError`), a foreign file, options, the layer;
 * - several OS processes (test/sqlite/workers/bulkhead.ts) sharing one cap
 *   through one file: their merged timeline, and a witness counter on no
 *   clock at all, never exceed it; a process killed with SIGKILL while
 *   holding every slot (with a lease of a minute) gives them back within
 *   about a second, while a live one keeps them.
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import { it as vitest } from "vitest"
import { BulkheadFull, BulkheadStore, DistributedBulkhead, InvalidOptions, type StoreError } from "@bulwark/core"
import { SqliteBulkheadStore, SqliteDatabase } from "@bulwark/sqlite"
import { Context, Deferred, Effect, Fiber, Layer, type Scope } from "effect"
import { TestClock } from "effect/testing"
import { writeFileSync } from "node:fs"
import { DatabaseSync } from "node:sqlite"
import { contract, rules, type StoreSetup } from "../support/bulkheadStoreContract.ts"
import { forkWorker, tempFiles } from "./support.ts"

const files = tempFiles()
afterAll(files.cleanup)

/** A store on a file of its own: no other test sees its names. */
const freshStore = (options?: SqliteBulkheadStore.Options) =>
  Effect.suspend(() => SqliteBulkheadStore.make({ file: files.next("bulkhead"), ...options })).pipe(Effect.orDie)

interface Row {
  readonly name: string
  readonly token: string
  readonly slot: number
  readonly seq: number
  readonly expires_at: number
  readonly owner_pid: number
  readonly owner_start: string
  readonly owner_scope: string
}

/** Every row of the file, slots first, then tickets in order. */
const rows = (file: string): Array<Row> => {
  const db = new DatabaseSync(file, { readOnly: true })
  try {
    return db.prepare("SELECT * FROM bulwark_bulkhead ORDER BY name, slot DESC, seq, token").all() as unknown as Array<Row>
  } finally {
    db.close()
  }
}

/** Writes a row as another process (or a hand edit) would have. */
const insert = (file: string, row: Row) => {
  const db = new DatabaseSync(file)
  try {
    db.prepare("INSERT INTO bulwark_bulkhead VALUES (?, ?, ?, ?, ?, ?, ?, ?)").run(
      row.name,
      row.token,
      row.slot,
      row.seq,
      row.expires_at,
      row.owner_pid,
      row.owner_start,
      row.owner_scope
    )
  } finally {
    db.close()
  }
}

/** Above Linux's largest pid (2^22): no process has it. */
const DEAD_PID = 2 ** 22 + 12345

const request = (
  name: string,
  token: string,
  options?: Partial<BulkheadStore.AcquireRequest>
): BulkheadStore.AcquireRequest => ({
  name,
  token,
  limit: 1,
  leaseMs: 10_000,
  maxQueue: 0,
  ticketMs: 10_000,
  now: 0,
  ...options
})

describe("SqliteBulkheadStore", () => {
  const setup: StoreSetup<Scope.Scope> = {
    test: (name, body) => it.effect(name, body),
    makeStore: freshStore(),
    advance: (ms) => TestClock.adjust(ms),
    leaseMs: 1000,
    virtualTime: true
  }

  describe("the store contract", () => contract(setup))

  describe("DistributedBulkhead on the SQLite store", () => rules(setup))

  describe("SQLite: one row per slot or ticket, written in BEGIN IMMEDIATE transactions", () => {
    it.effect("a slot is a row (slot 1) with its lease end and its owner process; tickets are rows (slot 0) numbered in order of first enqueue", () =>
      Effect.gen(function*() {
        const file = files.next()
        const store = yield* SqliteBulkheadStore.make({ file, prefix: "shop:" })
        const q = { limit: 1, maxQueue: 5, leaseMs: 5000, ticketMs: 2000 }
        assert.deepStrictEqual(yield* store.acquire(request("db", "a", { ...q, now: 1000 })), { _tag: "Acquired", inFlight: 1 })
        assert.strictEqual((yield* store.acquire(request("db", "b", { ...q, now: 1000 })))._tag, "Queued")
        assert.strictEqual((yield* store.acquire(request("db", "c", { ...q, now: 1100 })))._tag, "Queued")
        let all = rows(file)
        assert.deepStrictEqual(
          all.map((r) => [r.name, r.token, r.slot, r.seq, r.expires_at]),
          [["shop:db", "a", 1, 0, 6000], ["shop:db", "b", 0, 1, 3000], ["shop:db", "c", 0, 2, 3100]]
        )
        for (const r of all) assert.strictEqual(r.owner_pid, process.pid)
        if (process.platform === "linux") {
          assert.match(all[0].owner_start, /^\d+$/)
          assert.match(all[0].owner_scope, /^linux:/)
        }
        // A poll refreshes the ticket, keeping its place; renew moves the lease.
        assert.deepStrictEqual(yield* store.acquire(request("db", "c", { ...q, now: 1500 })), {
          _tag: "Queued",
          position: 1,
          inFlight: 1
        })
        assert.isTrue(yield* store.renew("db", "a", 5000, 1500))
        all = rows(file)
        assert.deepStrictEqual(all.map((r) => [r.token, r.seq, r.expires_at]), [["a", 0, 6500], ["b", 1, 3000], ["c", 2, 3500]])
        // The head takes the freed slot: the same row, now a slot.
        assert.isTrue(yield* store.release("db", "a", 1600))
        assert.deepStrictEqual(yield* store.acquire(request("db", "b", { ...q, now: 1700 })), { _tag: "Acquired", inFlight: 1 })
        assert.deepStrictEqual(rows(file).map((r) => [r.token, r.slot, r.seq, r.expires_at]), [["b", 1, 1, 6700], ["c", 0, 2, 3500]])
        // A newcomer's ticket comes after every ticket held.
        yield* store.acquire(request("db", "d", { ...q, now: 1800 }))
        assert.deepStrictEqual(rows(file).map((r) => [r.token, r.seq]), [["b", 1], ["c", 2], ["d", 3]])
      }))

    it.effect("each write purges the name's expired rows (an expiry equal to now has run out); an acquire also sweeps a few expired rows of other names", () =>
      Effect.gen(function*() {
        const file = files.next()
        const store = yield* SqliteBulkheadStore.make({ file })
        yield* store.acquire(request("x", "a", { limit: 5, leaseMs: 100 }))
        yield* store.acquire(request("x", "b", { limit: 5, leaseMs: 200 }))
        yield* store.acquire(request("y", "c", { limit: 5, leaseMs: 100 }))
        assert.strictEqual(rows(file).length, 3)
        // inspect reads without writing: expired rows are not counted, and stay.
        assert.deepStrictEqual(yield* store.inspect("x", 100), { inFlight: 1, queued: 0 })
        assert.strictEqual(rows(file).length, 3)
        assert.isFalse(yield* store.release("x", "a", 100))
        assert.deepStrictEqual(rows(file).map((r) => r.token), ["b", "c"])
        assert.isFalse(yield* store.renew("x", "b", 1000, 200))
        assert.deepStrictEqual(rows(file).map((r) => r.token), ["c"])
        assert.strictEqual((yield* store.acquire(request("y", "d", { limit: 1, now: 100 })))._tag, "Acquired")
        assert.deepStrictEqual(rows(file).map((r) => r.token), ["d"])
        // A name no process uses again (its holder crashed): an acquire of another name deletes its expired rows.
        yield* store.acquire(request("abandoned", "e", { limit: 5, leaseMs: 100, now: 100 }))
        assert.deepStrictEqual(rows(file).map((r) => r.token).sort(), ["d", "e"])
        yield* store.acquire(request("z", "f", { limit: 5, leaseMs: 10_000, now: 200 }))
        assert.deepStrictEqual(rows(file).map((r) => r.token).sort(), ["d", "f"])
      }))

    it.effect("stores on one file share a cap; different prefixes do not; a released name leaves no row", () =>
      Effect.gen(function*() {
        const file = files.next()
        const a = yield* SqliteBulkheadStore.make({ file })
        const b = yield* SqliteBulkheadStore.make({ file })
        const other = yield* SqliteBulkheadStore.make({ file, prefix: "other:" })
        assert.strictEqual((yield* a.acquire(request("db", "t1")))._tag, "Acquired")
        assert.deepStrictEqual(yield* b.acquire(request("db", "t2")), { _tag: "Full", inFlight: 1, queued: 0 })
        assert.strictEqual((yield* other.acquire(request("db", "t2")))._tag, "Acquired")
        assert.deepStrictEqual(yield* b.inspect("db", 0), { inFlight: 1, queued: 0 })
        assert.isTrue(yield* b.release("db", "t1", 0))
        assert.deepStrictEqual(rows(file).map((r) => r.name), ["other:db"])
      }))

    it.effect("a row this store cannot have written (slot neither 0 nor 1) is refused with reason Rejected, never guessed at", () =>
      Effect.gen(function*() {
        const file = files.next()
        const store = yield* SqliteBulkheadStore.make({ file })
        yield* SqliteDatabase.check({ file })
        insert(file, { name: "db", token: "odd", slot: 7, seq: 0, expires_at: 1e15, owner_pid: 1, owner_start: "", owner_scope: "x" })
        const e = yield* Effect.flip(store.acquire(request("db", "t")))
        assert.deepStrictEqual([e._tag, e.store, e.operation, e.reason], ["StoreError", "sqlite", "acquire", "Rejected"])
        assert.include(e.message, "a row of bulwark_bulkhead breaks the table's rules")
        assert.strictEqual((yield* Effect.flip(store.inspect("db", 0))).reason, "Rejected")
        assert.strictEqual(rows(file).length, 1)
      }))
  })

  describe("slots and tickets of a dead process are taken back, only when they could change the answer", () => {
    /** The identity this process writes, read back from a row of its own. */
    const ownIdentity = (store: BulkheadStore.BulkheadStore, file: string) =>
      Effect.gen(function*() {
        yield* store.acquire(request("me", "mine"))
        const mine = rows(file).find((r) => r.token === "mine")!
        yield* store.release("me", "mine", 0)
        return { start: mine.owner_start, scope: mine.owner_scope }
      })

    it.effect("a dead owner's slot is not judged while slots are free; it is taken back when the answer would be Full", () =>
      Effect.gen(function*() {
        const file = files.next()
        const store = yield* SqliteBulkheadStore.make({ file })
        const me = yield* ownIdentity(store, file)
        const dead = { name: "db", slot: 1, seq: 0, expires_at: 60_000, owner_pid: DEAD_PID, owner_start: me.start, owner_scope: me.scope }
        insert(file, { ...dead, token: "dead" })
        // A slot is free: admitted without judging anyone, the dead slot still counted.
        assert.deepStrictEqual(yield* store.acquire(request("db", "a", { limit: 2 })), { _tag: "Acquired", inFlight: 2 })
        assert.strictEqual(rows(file).length, 2)
        // No slot left but the dead one's: taken back, and the call admitted.
        assert.deepStrictEqual(yield* store.acquire(request("db", "b", { limit: 2 })), { _tag: "Acquired", inFlight: 2 })
        assert.deepStrictEqual(rows(file).map((r) => r.token), ["a", "b"])
        // inspect never counts a dead process's rows, even before anyone deleted them.
        insert(file, { ...dead, name: "other", token: "dead-2" })
        assert.deepStrictEqual(yield* store.inspect("other", 0), { inFlight: 0, queued: 0 })
      }))

    it.effect("a dead process's ticket at the head does not hold the waiting room up", () =>
      Effect.gen(function*() {
        const file = files.next()
        const store = yield* SqliteBulkheadStore.make({ file })
        const me = yield* ownIdentity(store, file)
        insert(file, {
          name: "db",
          token: "dead-waiter",
          slot: 0,
          seq: 1,
          expires_at: 60_000,
          owner_pid: DEAD_PID,
          owner_start: me.start,
          owner_scope: me.scope
        })
        assert.deepStrictEqual(yield* store.acquire(request("db", "a", { maxQueue: 1 })), { _tag: "Acquired", inFlight: 1 })
        assert.deepStrictEqual(rows(file).map((r) => r.token), ["a"])
      }))

    it.effect("this pid with another start time is a dead process whose pid was reused (Linux); without start times the lease decides", () =>
      Effect.gen(function*() {
        const file = files.next()
        const store = yield* SqliteBulkheadStore.make({ file })
        const me = yield* ownIdentity(store, file)
        insert(file, {
          name: "db",
          token: "earlier",
          slot: 1,
          seq: 0,
          expires_at: 60_000,
          owner_pid: process.pid,
          owner_start: me.start === "" ? "" : `${me.start}0`,
          owner_scope: me.scope
        })
        assert.strictEqual((yield* store.acquire(request("db", "a")))._tag, me.start === "" ? "Full" : "Acquired")
      }))

    it.effect("an owner of another pid namespace, host or boot is never judged; with reclaimDeadOwners false only leases decide", () =>
      Effect.gen(function*() {
        const file = files.next()
        const store = yield* SqliteBulkheadStore.make({ file })
        const keep = yield* SqliteBulkheadStore.make({ file, reclaimDeadOwners: false })
        const me = yield* ownIdentity(store, file)
        const row = { slot: 1, seq: 0, expires_at: 60_000, owner_pid: DEAD_PID, owner_start: me.start }
        insert(file, { ...row, name: "elsewhere", token: "t", owner_scope: "linux:another-boot:pid:[1]" })
        assert.deepStrictEqual(yield* store.acquire(request("elsewhere", "a")), { _tag: "Full", inFlight: 1, queued: 0 })
        assert.deepStrictEqual(yield* store.inspect("elsewhere", 0), { inFlight: 1, queued: 0 })
        insert(file, { ...row, name: "kept", token: "t", owner_scope: me.scope })
        assert.deepStrictEqual(yield* keep.acquire(request("kept", "a")), { _tag: "Full", inFlight: 1, queued: 0 })
        assert.deepStrictEqual(yield* keep.inspect("kept", 0), { inFlight: 1, queued: 0 })
        // The lease still ends it.
        assert.strictEqual((yield* keep.acquire(request("kept", "a", { now: 60_000 })))._tag, "Acquired")
        // This process's own rows are never judged dead.
        assert.deepStrictEqual(yield* store.acquire(request("kept", "b", { now: 60_000 })), { _tag: "Full", inFlight: 1, queued: 0 })
      }))
  })

  describe("failures are typed StoreErrors, and the bulkhead's onStoreError decides; never a crash or a hang", () => {
    vitest("another process holds the write lock: acquire fails with reason Timeout within the bound, inspect still reads; fail-open runs the call, fail-closed rejects it", async () => {
      const file = files.next()
      await Effect.runPromise(Effect.scoped(Effect.flatMap(SqliteBulkheadStore.make({ file }), (s) => s.inspect("warm", 0))))
      const holder = forkWorker<{ readonly type: string }>("holder.ts", [file], {}, 20_000)
      try {
        await holder.next((m) => m.type === "locked")
        const program = Effect.gen(function*() {
          const store = yield* SqliteBulkheadStore.make({ file })
          const timed = <A, E>(effect: Effect.Effect<A, E>) =>
            Effect.gen(function*() {
              const t0 = performance.now()
              const result = yield* effect
              return [result, performance.now() - t0] as const
            })
          const [e, took] = yield* timed(Effect.flip(store.acquire(request("db", "t", { now: Date.now() }))))
          assert.deepStrictEqual([e._tag, e.store, e.operation, e.reason], ["StoreError", "sqlite", "acquire", "Timeout"])
          assert.include(e.message, "within 100 ms")
          assert.isAtLeast(took, 90)
          assert.isBelow(took, 400)
          // A committed snapshot answers inspect: it does not wait for the lock.
          const [occupancy, tookRead] = yield* timed(store.inspect("db", Date.now()))
          assert.deepStrictEqual(occupancy, { inFlight: 0, queued: 0 })
          assert.isBelow(tookRead, 80)

          const open = yield* DistributedBulkhead.make({ name: "open", maxConcurrent: 1, store, onStoreError: "fail-open" })
          const [ran, tookOpen] = yield* timed(Effect.succeed("ran").pipe(DistributedBulkhead.guard(open)))
          assert.strictEqual(ran, "ran")
          // The acquire's bound, and the bound of the release the bulkhead sends after an unanswered acquire.
          assert.isBelow(tookOpen, 1000)
          const so = yield* DistributedBulkhead.stats(open)
          assert.deepStrictEqual([so.admittedWithoutStore, so.storeErrors.Timeout], [1, 2])

          const closed = yield* DistributedBulkhead.make({ name: "closed", maxConcurrent: 1, store, onStoreError: "fail-closed" })
          const [refused, tookClosed] = yield* timed(Effect.flip(Effect.succeed("ran").pipe(DistributedBulkhead.guard(closed))))
          assert.instanceOf(refused, BulkheadFull)
          assert.deepStrictEqual([refused.reason, refused.name], ["StoreUnavailable", "closed"])
          assert.isBelow(tookClosed, 1000)

          holder.send("release")
          yield* Effect.promise(() => holder.exited)
          assert.strictEqual(yield* Effect.succeed("in").pipe(DistributedBulkhead.guard(closed)), "in")
          assert.deepStrictEqual(yield* store.inspect("closed", Date.now()), { inFlight: 0, queued: 0 })
        }).pipe(Effect.scoped)
        await Effect.runPromise(program)
      } finally {
        holder.kill()
      }
    }, 20_000)

    it.effect("another application's database: reason Rejected, the file left as it was, and fail-open runs the call", () =>
      Effect.gen(function*() {
        const file = files.next()
        const db = new DatabaseSync(file)
        db.exec("CREATE TABLE other_app (x)")
        db.close()
        const store = yield* SqliteBulkheadStore.make({ file })
        const e = yield* Effect.flip(store.acquire(request("db", "t")))
        assert.deepStrictEqual([e.reason, e.operation], ["Rejected", "acquire"])
        assert.include(e.message, "another application")
        const b = yield* DistributedBulkhead.make({ name: "cli", maxConcurrent: 1, store, onStoreError: "fail-open" })
        assert.strictEqual(yield* Effect.succeed(1).pipe(DistributedBulkhead.guard(b)), 1)
        const check = new DatabaseSync(file, { readOnly: true })
        const tables = check.prepare("SELECT name FROM sqlite_schema WHERE type = 'table'").all().map((r) => r.name)
        check.close()
        assert.deepStrictEqual(tables, ["other_app"])
      }))

    it.effect("a file that is not a SQLite database: reason Rejected for every operation", () =>
      Effect.gen(function*() {
        const file = files.next()
        writeFileSync(file, "not a database\n".repeat(100))
        const store = yield* SqliteBulkheadStore.make({ file })
        const operations: ReadonlyArray<readonly [BulkheadStore.Operation, Effect.Effect<unknown, StoreError>]> = [
          ["acquire", store.acquire(request("db", "t"))],
          ["renew", store.renew("db", "t", 1000, 0)],
          ["release", store.release("db", "t", 0)],
          ["inspect", store.inspect("db", 0)]
        ]
        for (const [operation, effect] of operations) {
          const e = yield* Effect.flip(effect)
          assert.deepStrictEqual([e.reason, e.operation], ["Rejected", operation])
          assert.include(e.message, "is not a SQLite database")
        }
      }))
  })

  describe("options and the layer", () => {
    it.effect("bad options are InvalidOptions naming each field", () =>
      Effect.gen(function*() {
        const e = yield* Effect.flip(
          SqliteBulkheadStore.make({ file: "", lockTimeout: "soon", prefix: 5, reclaimDeadOwners: "yes", extra: 1 } as any)
        )
        assert.instanceOf(e, InvalidOptions)
        assert.strictEqual(e.primitive, "SqliteBulkheadStore")
        const fields = e.message.split("\n").map((line) => line.split(":")[0])
        assert.deepStrictEqual(fields.sort(), ["extra", "file", "lockTimeout", "prefix", "reclaimDeadOwners"])
        const negative = yield* Effect.flip(SqliteBulkheadStore.make({ lockTimeout: -1 }))
        assert.match(negative.message, /^lockTimeout: Expected a duration of a whole number of milliseconds >= 0/)
      }))

    it.effect("a DistributedBulkhead service on the store: two layers built apart (two processes' worth) share the cap; bad options of either are InvalidOptions", () =>
      Effect.gen(function*() {
        class Db extends Context.Service<Db, DistributedBulkhead.DistributedBulkhead>()("test/Db") {}
        const file = files.next()
        const bad = yield* Effect.flip(Layer.build(SqliteBulkheadStore.layer(Db, { name: "db", maxConcurrent: 0 }, { file })))
        assert.instanceOf(bad, InvalidOptions)
        assert.strictEqual(bad.primitive, "DistributedBulkhead")
        const badStore = yield* Effect.flip(Layer.build(SqliteBulkheadStore.layer(Db, { name: "db", maxConcurrent: 1 }, { file: "" })))
        assert.strictEqual(badStore.primitive, "SqliteBulkheadStore")
        const live = SqliteBulkheadStore.layer(Db, { name: "db", maxConcurrent: 1 }, { file, prefix: "cli:" })
        const started = yield* Deferred.make<void>()
        const finish = yield* Deferred.make<void>()
        const holding = Effect.gen(function*() {
          const db = yield* Db
          return yield* Effect.andThen(Deferred.succeed(started, undefined), Deferred.await(finish)).pipe(
            Effect.as("held"),
            DistributedBulkhead.guard(db)
          )
        }).pipe(Effect.provide(Layer.fresh(live)))
        const first = yield* Effect.forkChild(holding)
        yield* Deferred.await(started)
        assert.deepStrictEqual(rows(file).map((r) => [r.name, r.slot]), [["cli:db", 1]])
        const other = Effect.gen(function*() {
          return yield* Effect.exit(Effect.void.pipe(DistributedBulkhead.guard(yield* Db)))
        }).pipe(Effect.provide(Layer.fresh(live)))
        const refused = yield* other
        assert.isTrue(refused._tag === "Failure")
        yield* Deferred.succeed(finish, undefined)
        assert.strictEqual(yield* Fiber.join(first), "held")
        assert.strictEqual((yield* other)._tag, "Success")
        assert.deepStrictEqual(rows(file), [])
      }))
  })

  describe("several OS processes share one cap through one file", () => {
    type Message =
      | { readonly type: "ready" | "holding"; readonly pid: number }
      | {
        readonly type: "done"
        readonly pid: number
        readonly intervals: Array<readonly [number, number]>
        readonly highest: number
        readonly admitted: number
        readonly waited: number
        readonly rejected: number
        readonly withoutStore: number
        readonly storeErrors: Record<string, number>
        readonly leasesLost: number
      }
    type Done = Extract<Message, { readonly type: "done" }>

    vitest("4 processes, 4 fibers each, calling for 1.5 s on a cap of 3: the merged timeline and a witness counter never exceed 3", async () => {
      const file = files.next("workers")
      const witnessFile = files.next("witness")
      const witness = new DatabaseSync(witnessFile)
      witness.exec("PRAGMA journal_mode = WAL; CREATE TABLE witness (n INTEGER NOT NULL); INSERT INTO witness VALUES (0)")
      witness.close()
      const env = { FILE: file, WITNESS: witnessFile, CAP: "3", FIBERS: "4", RUN_MS: "1500" }
      const workers = Array.from({ length: 4 }, () => forkWorker<Message>("bulkhead.ts", ["cap"], env, 30_000))
      try {
        await Promise.all(workers.map((w) => w.next((m) => m.type === "ready")))
        for (const w of workers) w.send("go")
        const codes = await Promise.all(workers.map((w) => w.exited))
        assert.deepStrictEqual(codes, [0, 0, 0, 0], workers.map((w) => w.stderr()).join(""))
        const done = workers.map((w) => w.messages.find((m): m is Done => m.type === "done")!)
        for (const report of done) {
          // Work happened in every process, every call through the store.
          assert.isAtLeast(report.admitted, 10, `process ${report.pid}`)
          assert.strictEqual(report.intervals.length, report.admitted)
          assert.deepStrictEqual(report.storeErrors, { Unavailable: 0, Timeout: 0, Rejected: 0 })
          assert.deepStrictEqual([report.rejected, report.withoutStore, report.leasesLost], [0, 0, 0])
        }
        // Each interval lies inside its call's slot: entered after the slot was taken, left before it was given
        // back. At equal times a departure counts first: touching intervals are not overlapping ones.
        const points = done.flatMap((r) => r.intervals).flatMap(([enter, exit]) => [[enter, 1], [exit, -1]] as const)
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
        // The witness counts calls inside their effect in one atomic write each, on no clock.
        const highest = Math.max(...done.map((r) => r.highest))
        assert.isAtMost(highest, 3)
        assert.strictEqual(highest, 3)
        // Calls did wait in the shared waiting room.
        assert.isAbove(done.reduce((n, r) => n + r.waited, 0), 0)
        assert.deepStrictEqual(rows(file), [])
      } finally {
        for (const w of workers) w.kill()
      }
    }, 40_000)

    vitest("a process killed with SIGKILL while holding every slot, on a lease of a minute: the slots come back within a second or two, not a minute; while it lives they do not", async () => {
      const file = files.next("killed")
      const worker = forkWorker<Message>("bulkhead.ts", ["hold"], { FILE: file, CAP: "3", HOLD: "3", LEASE_MS: "60000" }, 30_000)
      try {
        await worker.next((m) => m.type === "ready")
        worker.send("go")
        await worker.next((m) => m.type === "holding")
        const program = Effect.gen(function*() {
          const store = yield* SqliteBulkheadStore.make({ file })
          const b = yield* DistributedBulkhead.make({
            name: "shared",
            maxConcurrent: 3,
            maxQueue: 10,
            lease: 60_000,
            pollInterval: 20,
            onStoreError: "fail-closed",
            store
          })
          // No waiting room: a call that finds every slot held is rejected at once.
          const strict = yield* DistributedBulkhead.make({ name: "shared", maxConcurrent: 3, lease: 60_000, store })
          const held = () => rows(file).filter((r) => r.owner_pid === worker.pid && r.slot === 1).length
          assert.strictEqual(held(), 3)
          // The worker is alive: its slots are its own, judged again after each verdict runs out.
          for (let i = 0; i < 3; i++) {
            const full = yield* Effect.flip(Effect.void.pipe(DistributedBulkhead.guard(strict)))
            assert.strictEqual(full.reason, "QueueFull")
            assert.deepStrictEqual(yield* DistributedBulkhead.occupancy(b), { inFlight: 3, queued: 0 })
            yield* Effect.sleep(300)
          }
          assert.strictEqual(held(), 3)
          // A call of this process waits for a slot (a minute would be the lease: it gives up long before).
          const waiter = yield* Effect.forkChild(
            Effect.sync(() => performance.now()).pipe(DistributedBulkhead.guard(b, { queueTimeout: "5 seconds" }))
          )
          while ((yield* DistributedBulkhead.occupancy(b)).queued === 0) yield* Effect.sleep(10)
          const killedAt = performance.now()
          worker.kill("SIGKILL")
          yield* Effect.promise(() => worker.exited)
          const admittedAt = yield* Fiber.join(waiter)
          const took = admittedAt - killedAt
          // A verdict is kept for 500 ms, then the next poll judges the owner again.
          assert.isBelow(took, 2000, `admitted ${took} ms after the kill`)
          assert.strictEqual(held(), 0)
          assert.deepStrictEqual(yield* DistributedBulkhead.occupancy(b), { inFlight: 0, queued: 0 })
          // Every slot is back.
          for (let i = 1; i <= 3; i++) {
            const answer = yield* store.acquire(request("shared", `t${i}`, { limit: 3, now: Date.now() }))
            assert.deepStrictEqual(answer, { _tag: "Acquired", inFlight: i })
          }
        }).pipe(Effect.scoped)
        await Effect.runPromise(program)
      } finally {
        worker.kill()
      }
    }, 30_000)
  })
})
