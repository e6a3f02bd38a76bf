/**
 * SqliteCircuitBreakerStore on real SQLite files in a temporary directory:
 *
 * - the store contract, the same suite as the in-memory and Redis stores
 *   run (test/support/circuitBreakerStoreContract.ts), and the differential
 *   test: the decisions of the in-memory store on random sequences;
 * - what is particular to SQLite: one row per circuit, decisions that change
 *   nothing need no write lock, rows deleted once idle (never before they
 *   stop mattering), ids that never repeat for a key, rows this version did
 *   not write, changed trip policies, a locked or foreign file, options;
 * - several OS processes (test/sqlite/workers/breaker.ts): a trip seen by
 *   one rejects the calls of all; four processes racing for one half-open
 *   probe get exactly one; a probe left by a process killed with SIGKILL is
 *   lost after its probe timeout, and the circuit recovers.
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import { it as vitest } from "vitest"
import { CircuitBreaker, CircuitBreakerStore, type CircuitOpen, DistributedBulkhead, InvalidOptions, RateLimiter } from "@bulwark/core"
import { SqliteBulkheadStore, SqliteCircuitBreakerStore, SqliteRateLimiterStore } from "@bulwark/sqlite"
import { Cause, Context, Effect, Exit, Layer, type Scope } from "effect"
import { DatabaseSync } from "node:sqlite"
import { admitted, differential, policy, type StoreSetup, storeContract, t } from "../support/circuitBreakerStoreContract.ts"
import { forkWorker, tempFiles } from "./support.ts"

const files = tempFiles()
afterAll(files.cleanup)

const setup: StoreSetup<Scope.Scope> = {
  test: (name, body) => it.effect(name, body),
  // A file per store: no other test sees its circuits, or sweeps them.
  makeStore: Effect.suspend(() => SqliteCircuitBreakerStore.make({ file: files.next("contract") })).pipe(Effect.orDie)
}

interface Row {
  readonly key: string
  readonly state: string
  readonly next_id: number
  readonly expires_at: number
}

const rows = (file: string): Array<Row> => {
  const db = new DatabaseSync(file, { readOnly: true })
  try {
    return db.prepare("SELECT key, state, next_id, expires_at FROM bulwark_circuit_breaker ORDER BY key").all() as any
  } finally {
    db.close()
  }
}

const rowOf = (file: string, key: string): Row | undefined => rows(file).find((row) => row.key === key)

const exec = (file: string, sql: string) => {
  const db = new DatabaseSync(file)
  try {
    db.exec(sql)
  } finally {
    db.close()
  }
}

/** The failure of an exit, squashed. */
const failureOf = (exit: Exit.Exit<unknown, unknown>): { readonly _tag: string; readonly reason?: string } => {
  if (Exit.isSuccess(exit)) return assert.fail("expected a failure, got a success")
  return Cause.squash(exit.cause) as { readonly _tag: string; readonly reason?: string }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe("SqliteCircuitBreakerStore", () => {
  describe("the store contract", () => storeContract(setup))

  differential(setup, { seeds: 6, steps: 200 })

  describe("SQLite: one row per circuit; a decision that changes nothing takes no write lock", () => {
    it.effect("rows <prefix><name> and <prefix><name>:<key>, holding the circuit as JSON and its next id", () =>
      Effect.gen(function*() {
        const file = files.next()
        const store = yield* SqliteCircuitBreakerStore.make({ file, prefix: "app:" })
        const plain = yield* CircuitBreaker.make({ name: "db", trip: CircuitBreaker.consecutive(1), openFor: "1 minute", store })
        const keyed = yield* CircuitBreaker.make({
          name: "api",
          trip: CircuitBreaker.consecutive(1),
          openFor: "1 minute",
          keys: { maxKeys: 10 },
          store
        })
        yield* Effect.void.pipe(CircuitBreaker.guard(plain))
        yield* Effect.void.pipe(CircuitBreaker.guard(keyed, { key: "eu" }))
        yield* Effect.exit(Effect.fail("boom").pipe(CircuitBreaker.guard(keyed, { key: "us" })))
        assert.deepStrictEqual(rows(file).map((row) => row.key), ["app:api:eu", "app:api:us", "app:db"])
        const us = JSON.parse(rowOf(file, "app:api:us")!.state)
        assert.strictEqual(us.state, "Open")
        assert.strictEqual(us.c, 1)
        assert.strictEqual(rowOf(file, "app:api:us")!.next_id, us.n)
        assert.strictEqual(JSON.parse(rowOf(file, "app:db")!.state).state, "Closed")
        // Another key of the keyed breaker is not affected.
        assert.strictEqual((yield* CircuitBreaker.state(keyed, "eu")).state, "Closed")
        assert.strictEqual((yield* CircuitBreaker.state(keyed, "us")).state, "Open")
      }).pipe(Effect.scoped))

    it.effect("with the file's write lock held elsewhere: closed admissions, successes, open rejections and reads still decide; a trip fails with Timeout", () =>
      Effect.gen(function*() {
        const file = files.next()
        const store = yield* SqliteCircuitBreakerStore.make({ file, lockTimeout: 0 })
        const p = policy({ trips: [{ _tag: "Consecutive", failures: 2 }], openForMs: [1_000] })
        const permit = admitted(yield* store.admit("closed", p, 0))
        admitted(yield* store.admit("open", p, 0))
        yield* store.record("open", p, admitted(yield* store.admit("open", p, 0)), "Failure", 1, 1)
        yield* store.record("open", p, admitted(yield* store.admit("open", p, 1)), "Failure", 1, 2)
        const other = new DatabaseSync(file)
        other.exec("BEGIN IMMEDIATE")
        try {
          assert.strictEqual(admitted(yield* store.admit("closed", p, 10)), permit)
          assert.strictEqual(yield* store.record("closed", p, permit, "Success", 5, 11), undefined)
          const rejected = yield* store.admit("open", p, 12)
          assert.deepStrictEqual(rejected, { _tag: "Rejected", reason: "Open", retryAfterMs: 990, transition: undefined })
          assert.strictEqual((yield* store.read("open", p, 13)).state, "Open")
          assert.strictEqual((yield* store.read("never-seen", p, 13)).state, "Closed")
          // A failure counts: it needs the lock, which is not to be had within 0 ms.
          const error = yield* Effect.flip(store.record("closed", p, permit, "Failure", 5, 14))
          assert.deepStrictEqual([error._tag, error.store, error.operation, error.reason], ["StoreError", "sqlite", "record", "Timeout"])
          // So does a new key (its row is created).
          const created = yield* Effect.flip(store.admit("new", p, 15))
          assert.deepStrictEqual([created.operation, created.reason], ["admit", "Timeout"])
        } finally {
          other.exec("ROLLBACK")
          other.close()
        }
        // Nothing was half done: the failure counts now.
        yield* store.record("closed", p, permit, "Failure", 5, 20)
        assert.strictEqual(yield* store.record("closed", p, permit, "Failure", 5, 21).pipe(Effect.map((x) => x?.to)), "Open")
      }).pipe(Effect.scoped))
  })

  describe("rows live while they matter, and ids never repeat for a key", () => {
    it.effect("closed: deleted once idle for idleTimeToLive; open: not before its open time; isolated: never", () =>
      Effect.gen(function*() {
        const file = files.next()
        const store = yield* SqliteCircuitBreakerStore.make({ file, idleTimeToLive: "1 second" })
        const p = policy({ openForMs: [5_000] })
        admitted(yield* store.admit("closed", p, 0))
        assert.strictEqual(rowOf(file, "closed")!.expires_at, 1_000)
        // Use within a tenth of the idle time is not written down (no write per call) ...
        admitted(yield* store.admit("closed", p, 50))
        assert.strictEqual(rowOf(file, "closed")!.expires_at, 1_000)
        // ... later use is.
        admitted(yield* store.admit("closed", p, 300))
        assert.strictEqual(rowOf(file, "closed")!.expires_at, 1_300)

        const tripping = admitted(yield* store.admit("open", p, 300))
        yield* store.record("open", p, tripping, "Failure", 1, 400)
        assert.strictEqual(rowOf(file, "open")!.expires_at, 5_400)

        yield* store.force("isolated", p, "Isolated", 400)
        assert.strictEqual(rowOf(file, "isolated")!.expires_at, Infinity)

        // A decision that writes deletes the expired rows.
        yield* store.force("sweeper", p, "Closed", 2_000)
        assert.deepStrictEqual(rows(file).map((row) => row.key), ["isolated", "open", "sweeper"])
        yield* store.force("sweeper", p, "Closed", 6_000)
        assert.deepStrictEqual(rows(file).map((row) => row.key), ["isolated", "sweeper"])
      }).pipe(Effect.scoped))

    it.effect("a key deleted and made again issues new ids: a report of a call admitted before changes nothing", () =>
      Effect.gen(function*() {
        const file = files.next()
        const store = yield* SqliteCircuitBreakerStore.make({ file, idleTimeToLive: "1 second" })
        const p = policy()
        const old = admitted(yield* store.admit("k", p, 0))
        const oldNext = rowOf(file, "k")!.next_id
        yield* store.force("other", p, "Closed", 5_000) // sweeps "k"
        assert.isUndefined(rowOf(file, "k"))
        const fresh = admitted(yield* store.admit("k", p, 5_001))
        assert.isAbove(fresh, oldNext - 1)
        // The old call fails: its permit is not the new circuit's.
        assert.strictEqual(yield* store.record("k", p, old, "Failure", 5_000, 5_002), undefined)
        assert.strictEqual((yield* store.read("k", p, 5_003)).state, "Closed")
      }).pipe(Effect.scoped))

    it.effect("a row this version did not write: the key starts afresh, above the row's ids", () =>
      Effect.gen(function*() {
        const file = files.next()
        const store = yield* SqliteCircuitBreakerStore.make({ file })
        const p = policy()
        const old = admitted(yield* store.admit("k", p, 0))
        exec(file, "UPDATE bulwark_circuit_breaker SET state = '{\"written\":\"by hand\"}', next_id = next_id + 1000")
        assert.deepStrictEqual(yield* store.read("k", p, 1), { ...(yield* CircuitBreakerStore.memory().read("k", p, 1)) })
        const fresh = admitted(yield* store.admit("k", p, 2))
        assert.isAbove(fresh, old + 1000)
        assert.strictEqual(yield* store.record("k", p, old, "Failure", 1, 3), undefined)
        assert.strictEqual(JSON.parse(rowOf(file, "k")!.state).state, "Closed")
      }).pipe(Effect.scoped))

    it.effect("a breaker with other trip policies on the same key: the state holds, the counts start afresh", () =>
      Effect.gen(function*() {
        const file = files.next()
        const store = yield* SqliteCircuitBreakerStore.make({ file })
        const three = policy({ trips: [{ _tag: "Consecutive", failures: 3 }] })
        const two = policy({ trips: [{ _tag: "Consecutive", failures: 2 }] })
        const permit = admitted(yield* store.admit("k", three, 0))
        yield* store.record("k", three, permit, "Failure", 1, 1)
        yield* store.record("k", three, permit, "Failure", 1, 2)
        // Under the new policy the earlier failures are not counted: one more does not trip it.
        assert.strictEqual(yield* store.record("k", two, permit, "Failure", 1, 3), undefined)
        assert.deepStrictEqual(yield* store.record("k", two, permit, "Failure", 1, 4), t("Closed", "Open", 4))
        assert.strictEqual((yield* store.read("k", three, 5)).state, "Open")
      }).pipe(Effect.scoped))
  })

  describe("the SQLite stores make fail-open the default onStoreError: a command-line tool never hangs on its cache file", () => {
    it.effect("a breaker, a limiter and a distributed bulkhead on a foreign file, without onStoreError: the call runs; with fail-closed: it is rejected", () =>
      Effect.gen(function*() {
        const file = files.next()
        exec(file, "CREATE TABLE accounts (id INTEGER PRIMARY KEY)")
        const breakers = yield* SqliteCircuitBreakerStore.make({ file })
        const limiters = yield* SqliteRateLimiterStore.make({ file })
        const bulkheads = yield* SqliteBulkheadStore.make({ file })
        assert.deepStrictEqual([breakers.onStoreError, limiters.onStoreError, bulkheads.onStoreError], ["fail-open", "fail-open", "fail-open"])
        const breaker = yield* CircuitBreaker.make({ name: "b", trip: CircuitBreaker.consecutive(1), openFor: "1 second", store: breakers })
        const limiter = yield* RateLimiter.make({ name: "l", algorithm: RateLimiter.fixedWindow({ limit: 1, window: "1 hour" }), store: limiters })
        const bulkhead = yield* DistributedBulkhead.make({ name: "d", maxConcurrent: 1, store: bulkheads })
        assert.strictEqual(yield* Effect.succeed("ran").pipe(CircuitBreaker.guard(breaker)), "ran")
        assert.strictEqual(yield* Effect.succeed("ran").pipe(RateLimiter.guard(limiter)), "ran")
        assert.strictEqual(yield* Effect.succeed("ran").pipe(DistributedBulkhead.guard(bulkhead)), "ran")
        const strict = yield* RateLimiter.make({
          name: "strict",
          algorithm: RateLimiter.fixedWindow({ limit: 1, window: "1 hour" }),
          store: limiters,
          onStoreError: "fail-closed"
        })
        assert.strictEqual((yield* Effect.flip(Effect.void.pipe(RateLimiter.guard(strict)))).reason, "StoreUnavailable")
      }).pipe(Effect.scoped))
  })

  describe("layer", () => {
    it.effect("a CircuitBreaker service on the store: two layers built apart (two processes' worth) share the circuit", () =>
      Effect.gen(function*() {
        const file = files.next()
        class Tracker extends Context.Service<Tracker, CircuitBreaker.CircuitBreaker>()("test/Tracker") {}
        const live = SqliteCircuitBreakerStore.layer(Tracker, {
          name: "tracker",
          trip: CircuitBreaker.consecutive(2),
          openFor: "1 minute"
        }, { file, prefix: "cli:" })
        const failTwice = Effect.gen(function*() {
          const tracker = yield* Tracker
          for (let i = 0; i < 2; i++) yield* Effect.exit(Effect.fail("down").pipe(CircuitBreaker.guard(tracker)))
        })
        yield* failTwice.pipe(Effect.provide(Layer.fresh(live)))
        const state = yield* Effect.gen(function*() {
          return yield* CircuitBreaker.state(yield* Tracker)
        }).pipe(Effect.provide(Layer.fresh(live)))
        assert.strictEqual(state.state, "Open")
        assert.deepStrictEqual(rows(file).map((row) => row.key), ["cli:tracker"])
      }).pipe(Effect.scoped))
  })

  describe("files that cannot decide, and options", () => {
    it.effect("a foreign file: reason Rejected; the breaker's onStoreError decides (fail-closed: CircuitOpen StoreUnavailable)", () =>
      Effect.gen(function*() {
        const file = files.next()
        exec(file, "CREATE TABLE accounts (id INTEGER PRIMARY KEY)")
        const store = yield* SqliteCircuitBreakerStore.make({ file })
        const error = yield* Effect.flip(store.admit("k", policy(), 0))
        assert.deepStrictEqual([error.store, error.operation, error.reason], ["sqlite", "admit", "Rejected"])
        const closed = yield* CircuitBreaker.make({
          name: "b",
          trip: CircuitBreaker.consecutive(1),
          openFor: "1 second",
          store,
          onStoreError: "fail-closed"
        })
        const open = yield* CircuitBreaker.make({
          name: "b",
          trip: CircuitBreaker.consecutive(1),
          openFor: "1 second",
          store,
          onStoreError: "fail-open"
        })
        const rejected = failureOf(yield* Effect.exit(Effect.succeed("ran").pipe(CircuitBreaker.guard(closed)))) as CircuitOpen
        assert.deepStrictEqual([rejected._tag, rejected.reason, rejected.state], ["CircuitOpen", "StoreUnavailable", "Unknown"])
        assert.strictEqual(yield* Effect.succeed("ran").pipe(CircuitBreaker.guard(open)), "ran")
      }).pipe(Effect.scoped))

    it.effect("bad options are InvalidOptions naming each field", () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(
          SqliteCircuitBreakerStore.make({ file: "", lockTimeout: -1, idleTimeToLive: 0, prefix: 5 as never })
        )
        assert.instanceOf(error, InvalidOptions)
        assert.strictEqual(error.primitive, "SqliteCircuitBreakerStore")
        for (const field of ["file", "lockTimeout", "idleTimeToLive", "prefix"]) assert.include(error.message, `${field}:`)
        const extra = yield* Effect.flip(SqliteCircuitBreakerStore.make({ idleTimeToLve: "1 minute" } as never))
        assert.include(extra.message, "idleTimeToLve")
      }).pipe(Effect.scoped))
  })

  describe("several OS processes share one circuit through one file", () => {
    type Message =
      | { readonly type: "ready" }
      | { readonly type: "running"; readonly pid: number }
      | {
        readonly type: "done"
        readonly calls: ReadonlyArray<{ readonly start: number; readonly end: number }>
        readonly rejected: Record<string, number>
      }

    const workers = (file: string, env: Record<string, string>) =>
      Array.from({ length: 4 }, () =>
        forkWorker<Message>("breaker.ts", ["calls"], {
          FILE: file,
          TRIP: "5",
          OPEN_MS: "60000",
          PROBE_MS: "60000",
          FIBERS: "1",
          HOLD_MS: "5",
          RUN_MS: "800",
          ...env
        }, 30_000))

    const run = async (ws: ReadonlyArray<ReturnType<typeof workers>[number]>, beforeGo?: () => Promise<void>) => {
      await Promise.all(ws.map((w) => w.next((m) => m.type === "ready")))
      await beforeGo?.()
      for (const w of ws) w.send("go")
      const done = await Promise.all(ws.map((w) => w.next((m) => m.type === "done")))
      assert.deepStrictEqual(await Promise.all(ws.map((w) => w.exited)), [0, 0, 0, 0], ws.map((w) => w.stderr()).join(""))
      return done as Array<Extract<Message, { type: "done" }>>
    }

    vitest("4 processes calling a dead dependency: once one of them trips the circuit, every process is rejected (at most one call in flight each gets through)", async () => {
      const file = files.next("trip")
      const ws = workers(file, { OUTCOME: "fail" })
      try {
        const reports = await run(ws)
        const calls = reports.reduce((n, r) => n + r.calls.length, 0)
        // 5 failures in a row trip it; each other process may have had one call admitted before the trip.
        assert.isAtLeast(calls, 5)
        assert.isAtMost(calls, 5 + 3, JSON.stringify(reports.map((r) => r.calls.length)))
        for (const report of reports) assert.isAbove(report.rejected.Open ?? 0, 0, JSON.stringify(report.rejected))
        assert.strictEqual(JSON.parse(rowOf(file, "shared")!.state).state, "Open")
      } finally {
        for (const w of ws) w.kill()
      }
    }, 30_000)

    vitest("4 processes, 4 callers each, racing for a half-open circuit: exactly one probe runs, and its success closes the circuit for all", async () => {
      const file = files.next("probe")
      const ws = workers(file, { OUTCOME: "succeed", FIBERS: "4", HOLD_MS: "150", RUN_MS: "1200", OPEN_MS: "300" })
      try {
        const reports = await run(ws, () =>
          // Trip the circuit from this process, just before the workers start.
          Effect.runPromise(Effect.gen(function*() {
            const store = yield* SqliteCircuitBreakerStore.make({ file })
            const b = yield* CircuitBreaker.make({
              name: "shared",
              trip: CircuitBreaker.consecutive(5),
              openFor: 300,
              halfOpen: { probes: 1, probeTimeout: 60_000 },
              store
            })
            yield* CircuitBreaker.isolate(b)
            yield* CircuitBreaker.reset(b)
            for (let i = 0; i < 5; i++) yield* Effect.exit(Effect.fail("down").pipe(CircuitBreaker.guard(b)))
            assert.strictEqual((yield* CircuitBreaker.state(b)).state, "Open")
          }).pipe(Effect.scoped)))
        const calls = reports.flatMap((r) => r.calls).sort((a, b) => a.start - b.start)
        const [probe, ...rest] = calls
        // Nothing else ran while the probe did: the others were admitted only once it had closed the circuit.
        for (const call of rest) assert.isAbove(call.start, probe.end, JSON.stringify({ probe, call }))
        assert.isAbove(rest.length, 16, "the closed circuit admitted everyone afterwards")
        const rejected = reports.map((r) => r.rejected)
        assert.isAbove(rejected.reduce((n, r) => n + (r.ProbesBusy ?? 0), 0), 0, JSON.stringify(rejected))
        assert.isAbove(rejected.reduce((n, r) => n + (r.Open ?? 0), 0), 0, JSON.stringify(rejected))
        assert.strictEqual(JSON.parse(rowOf(file, "shared")!.state).state, "Closed")
      } finally {
        for (const w of ws) w.kill()
      }
    }, 30_000)

    vitest("a probe left by a process killed with SIGKILL: busy while its lease lasts, lost once it runs out (not after probeTimeout), then a new probe closes the circuit", async () => {
      const file = files.next("crash")
      const OPEN_MS = 150
      const LEASE_MS = 600
      const options = {
        name: "shared",
        trip: CircuitBreaker.consecutive(1),
        openFor: OPEN_MS,
        halfOpen: { probes: 1, probeTimeout: "1 minute", probeLease: LEASE_MS }
      } as const
      const program = Effect.gen(function*() {
        const b = yield* CircuitBreaker.make({ ...options, store: yield* SqliteCircuitBreakerStore.make({ file }), onStoreError: "fail-closed" })
        const reason = (exit: Exit.Exit<unknown, unknown>) => Exit.isSuccess(exit) ? "ran" : failureOf(exit).reason
        const call = Effect.exit(Effect.succeed("ok").pipe(CircuitBreaker.guard(b)))
        yield* Effect.exit(Effect.fail("down").pipe(CircuitBreaker.guard(b)))
        yield* Effect.promise(() => sleep(OPEN_MS + 50))
        // Another process takes the probe and renews its lease while it lives ...
        const worker = forkWorker<Message>("breaker.ts", ["probe"], {
          FILE: file,
          TRIP: "1",
          OPEN_MS: String(OPEN_MS),
          PROBE_MS: "60000",
          LEASE_MS: String(LEASE_MS)
        }, 30_000)
        yield* Effect.promise(() => worker.next((m) => m.type === "running"))
        // ... for longer than one lease: it is not lost while its process lives.
        yield* Effect.promise(() => sleep(LEASE_MS * 2))
        assert.strictEqual(reason(yield* call), "ProbesBusy")
        // Then it dies without a word, and its renewals stop.
        worker.kill("SIGKILL")
        const killedAt = yield* Effect.promise(() => worker.exited).pipe(Effect.map(() => Date.now()))
        assert.strictEqual(reason(yield* call), "ProbesBusy")
        assert.strictEqual((yield* CircuitBreaker.state(b)).probing, 1)
        // Once the lease (from the last renewal, at most a lease before the kill) has run out, the probe is lost.
        yield* Effect.promise(() => sleep(Math.max(0, killedAt + LEASE_MS + 50 - Date.now())))
        assert.strictEqual(reason(yield* call), "Open")
        const info = yield* CircuitBreaker.state(b)
        assert.deepStrictEqual([info.state, info.probing, info.consecutiveOpenings], ["Open", 0, 2])
        // After the (backed-off) open time, a new probe is admitted, and its success closes the circuit.
        yield* Effect.promise(() => sleep(OPEN_MS + 50))
        assert.strictEqual(reason(yield* call), "ran")
        assert.strictEqual((yield* CircuitBreaker.state(b)).state, "Closed")
      }).pipe(Effect.scoped)
      await Effect.runPromise(program)
    }, 30_000)
  })
})
