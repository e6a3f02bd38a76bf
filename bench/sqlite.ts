/**
 * The SQLite suites: what one decision of Bulwark's primitives costs on
 * `@bulwark/sqlite`'s stores, on a real file (in a fresh directory under
 * `os.tmpdir()`, removed afterwards; default `lockTimeout`, 100 ms), next to
 * the same primitives on their in-memory stores and next to the engine's
 * own floor, measured with node:sqlite alone on a file set up like the
 * stores' (WAL mode, `synchronous = NORMAL`, prepared statements):
 *
 * - the read floor: a `SELECT` of one row by primary key;
 * - the write floor: `BEGIN IMMEDIATE`, an `UPDATE` of one row, `COMMIT`.
 *
 * 1. `sqlite-latency`: one fiber, one decision at a time, each timed (median
 *    and p99, µs): a `RateLimiter` call admitted (a write transaction) and
 *    rejected (a plain read); `CircuitBreaker` calls through a closed
 *    circuit with `consecutive(5)` (admit and record both plain reads), with
 *    a failure rate over a window (the record is a write), and a rejection
 *    by an open circuit; `Idempotency.once` replaying a stored result and
 *    running a fresh key (claim and complete: two writes); a
 *    `DistributedBulkhead` guarded call (acquire and release: two writes).
 * 2. `sqlite-contention`: worker processes (bench/sqlite-worker.ts) hammer
 *    one rate limiter key on one file for 2 s (admitted decisions of the
 *    `SqliteRateLimiterStore`, asked for directly as `RateLimiter.guard`
 *    asks), one process alone and then 4 at once, and the same with the raw
 *    write transaction: decisions per second, per-decision latency as the
 *    workers see it, and how many failed with `StoreError` reason
 *    `Timeout`.
 *
 * Never part of `npm test`. Standalone: `npm run -s build && node
 * --expose-gc bench/run.ts --only=sqlite-latency,sqlite-contention`.
 */
import {
  BulkheadStore,
  CircuitBreaker,
  DistributedBulkhead,
  Idempotency,
  IdempotencyStore,
  RateLimiter
} from "@bulwark/core"
import {
  SqliteBulkheadStore,
  SqliteCircuitBreakerStore,
  SqliteDatabase,
  SqliteIdempotencyStore,
  SqliteRateLimiterStore
} from "@bulwark/sqlite"
import { Effect, Exit, Schema, Scope } from "effect"
import { type ChildProcess, fork } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import * as os from "node:os"
import { join } from "node:path"
import { DatabaseSync } from "node:sqlite"
import { fileURLToPath } from "node:url"
import type { Goal, Row, ScenarioResult, Table } from "./bulkhead.ts"
import { fmt, goal, latency as latencyOf, percentile, type Subject } from "./harness.ts"
import type { Report } from "./sqlite-worker.ts"

// -----------------------------------------------------------------------------
// harness
// -----------------------------------------------------------------------------

/** One decision (or one guarded call). */
const LATENCY_ROUNDS = 5
const LATENCY_CALLS = 1_000

/** A fresh directory under the system's temporary directory, removed by `remove`. */
const temporaryDirectory = () => {
  const dir = mkdtempSync(join(os.tmpdir(), "bulwark-bench-sqlite-"))
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) }
}

/** Far above what a run takes: every rate limiter decision admits. */
const HUGE = 1e12

/**
 * A file of node:sqlite's own, set up like the stores' (WAL, `synchronous =
 * NORMAL`, a busy timeout of 100 ms) with one row shaped like a rate
 * limiter's: the engine's floor, with no store code around it.
 */
const rawFile = (file: string): DatabaseSync => {
  const db = new DatabaseSync(file, { timeout: 100 })
  db.exec("PRAGMA journal_mode = WAL")
  db.exec("PRAGMA synchronous = NORMAL")
  db.exec("CREATE TABLE IF NOT EXISTS t (key TEXT PRIMARY KEY NOT NULL, state TEXT NOT NULL, reset_at REAL NOT NULL) STRICT")
  db.prepare("INSERT OR REPLACE INTO t (key, state, reset_at) VALUES (?, ?, ?)").run(
    "contended",
    `{"tokens":1,"at":${Date.now()}}`,
    Date.now()
  )
  return db
}

// -----------------------------------------------------------------------------
// 1. latency of one decision at a time
// -----------------------------------------------------------------------------

export const decisionLatency = async (): Promise<ScenarioResult> => {
  const started = performance.now()
  const tmp = temporaryDirectory()
  const scope = Scope.makeUnsafe()
  const inScope = <A, E>(effect: Effect.Effect<A, E, Scope.Scope>): Promise<A> =>
    Effect.runPromise(effect.pipe(Scope.provide(scope)))
  const raw = rawFile(join(tmp.dir, "raw.sqlite"))
  try {
    const file = join(tmp.dir, "bulwark.sqlite")
    await Effect.runPromise(SqliteDatabase.check({ file }))
    const options = { file, prefix: "bench:" }

    // --- the engine's floor
    const select = raw.prepare("SELECT state, reset_at FROM t WHERE key = ?")
    const update = raw.prepare("UPDATE t SET state = ?, reset_at = ? WHERE key = ?")
    let tick = 0
    const floorRead = Effect.sync(() => select.get("contended"))
    const floorWrite = Effect.sync(() => {
      raw.exec("BEGIN IMMEDIATE")
      update.run(`{"tokens":${++tick},"at":${Date.now()}}`, Date.now(), "contended")
      raw.exec("COMMIT")
    })
    const floors: Array<Subject> = [
      { peer: "(reference)", variant: "node:sqlite alone: `SELECT` of one row by primary key (prepared)", reference: true, run: floorRead },
      {
        peer: "(reference)",
        variant: "node:sqlite alone: `BEGIN IMMEDIATE`, `UPDATE` one row, `COMMIT`",
        reference: true,
        run: floorWrite
      }
    ]

    // --- rate limiter
    const limiterStore = await inScope(SqliteRateLimiterStore.make(options))
    const limiter = (name: string, algorithm: RateLimiter.Algorithm, store?: typeof limiterStore) =>
      inScope(RateLimiter.make({ name, algorithm, onStoreError: "fail-closed", ...(store === undefined ? {} : { store }) }))
    const bucket = RateLimiter.tokenBucket({ capacity: HUGE, refill: HUGE, per: "1 second" })
    const spentWindow = RateLimiter.fixedWindow({ limit: 1, window: "1 hour" })
    const admitting = await limiter("admitting", bucket, limiterStore)
    const spent = await limiter("spent", spentWindow, limiterStore)
    const memoryAdmitting = await limiter("memory-admitting", bucket)
    const memorySpent = await limiter("memory-spent", spentWindow)
    for (const l of [spent, memorySpent]) await Effect.runPromise(Effect.void.pipe(RateLimiter.guard(l)))
    const rejectedBy = (l: RateLimiter.RateLimiter) =>
      Effect.void.pipe(RateLimiter.guard(l), Effect.catchTag("RateLimited", () => Effect.void))
    const limiterSubjects: Array<Subject> = [
      { peer: "Bulwark", variant: "token bucket on SQLite: admitted (`BEGIN IMMEDIATE` transaction)", run: Effect.void.pipe(RateLimiter.guard(admitting)) },
      { peer: "Bulwark", variant: "fixed window on SQLite: rejected (a plain read, no write lock)", run: rejectedBy(spent) },
      { peer: "(reference)", variant: "token bucket, in-memory store: admitted", reference: true, run: Effect.void.pipe(RateLimiter.guard(memoryAdmitting)) },
      { peer: "(reference)", variant: "fixed window, in-memory store: rejected", reference: true, run: rejectedBy(memorySpent) }
    ]

    // --- circuit breaker
    const breakerStore = await inScope(SqliteCircuitBreakerStore.make(options))
    const breaker = (name: string, trip: CircuitBreaker.TripPolicy, store?: typeof breakerStore) =>
      inScope(CircuitBreaker.make({ name, trip, openFor: "1 hour", onStoreError: "fail-closed", ...(store === undefined ? {} : { store }) }))
    const rate = CircuitBreaker.failureRate({ threshold: 0.5, minimumCalls: 20, window: "1 minute" })
    const closed = await breaker("closed", CircuitBreaker.consecutive(5), breakerStore)
    const windowed = await breaker("windowed", rate, breakerStore)
    const open = await breaker("open", CircuitBreaker.consecutive(1), breakerStore)
    const memoryClosed = await breaker("memory-closed", CircuitBreaker.consecutive(5))
    const memoryWindowed = await breaker("memory-windowed", rate)
    const memoryOpen = await breaker("memory-open", CircuitBreaker.consecutive(1))
    for (const b of [open, memoryOpen]) await Effect.runPromise(Effect.exit(Effect.fail("down").pipe(CircuitBreaker.guard(b))))
    const rejectedWhenOpen = (b: CircuitBreaker.CircuitBreaker) =>
      Effect.void.pipe(CircuitBreaker.guard(b), Effect.catchTag("CircuitOpen", () => Effect.void))
    const breakerSubjects: Array<Subject> = [
      {
        peer: "Bulwark",
        variant: "closed, consecutive(5) on SQLite: `guard(Effect.void)` (admit + record, plain reads)",
        run: Effect.void.pipe(CircuitBreaker.guard(closed))
      },
      {
        peer: "Bulwark",
        variant: "closed, failure rate over 1 minute on SQLite (admit read + record transaction)",
        run: Effect.void.pipe(CircuitBreaker.guard(windowed))
      },
      { peer: "Bulwark", variant: "open on SQLite: the call rejected (a plain read)", run: rejectedWhenOpen(open) },
      { peer: "(reference)", variant: "closed, consecutive(5), in-memory store", reference: true, run: Effect.void.pipe(CircuitBreaker.guard(memoryClosed)) },
      { peer: "(reference)", variant: "closed, failure rate, in-memory store", reference: true, run: Effect.void.pipe(CircuitBreaker.guard(memoryWindowed)) },
      { peer: "(reference)", variant: "open, in-memory store: rejected", reference: true, run: rejectedWhenOpen(memoryOpen) }
    ]

    // --- idempotency
    const idempotencyStore = await inScope(SqliteIdempotencyStore.make(options))
    const onSqlite = await inScope(Idempotency.make({ name: "sqlite", store: idempotencyStore }))
    const inMemory = await inScope(Idempotency.make({ name: "memory", store: IdempotencyStore.memory() }))
    const replayOf = (using: Idempotency.Idempotency) =>
      Idempotency.once("done", Effect.succeed(42), { ttl: "1 hour", result: Schema.Number, using })
    let fresh = 0
    const freshOf = (using: Idempotency.Idempotency) =>
      Effect.suspend(() => Idempotency.once(`fresh:${fresh++}`, Effect.succeed(42), { ttl: "1 hour", result: Schema.Number, using }))
    for (const i of [onSqlite, inMemory]) await Effect.runPromise(replayOf(i))
    const idempotencySubjects: Array<Subject> = [
      { peer: "Bulwark", variant: "`Idempotency.once` on SQLite: replay of a completed key (a plain read)", run: replayOf(onSqlite) },
      { peer: "Bulwark", variant: "`Idempotency.once` on SQLite: a fresh key run once (claim + complete: two transactions)", run: freshOf(onSqlite) },
      { peer: "(reference)", variant: "in-memory store: replay", reference: true, run: replayOf(inMemory) },
      { peer: "(reference)", variant: "in-memory store: a fresh key", reference: true, run: freshOf(inMemory) }
    ]

    // --- distributed bulkhead
    const bulkheadStore = await inScope(SqliteBulkheadStore.make(options))
    const bulkhead = (name: string, store: BulkheadStore.BulkheadStore) =>
      inScope(DistributedBulkhead.make({ name, maxConcurrent: 10, store, onStoreError: "fail-closed" }))
    const sharedCap = await bulkhead("shared", bulkheadStore)
    const memoryCap = await bulkhead("memory", BulkheadStore.memory())
    const bulkheadSubjects: Array<Subject> = [
      {
        peer: "Bulwark",
        variant: "`DistributedBulkhead` on SQLite: `guard(Effect.void)` (acquire + release: two transactions)",
        run: Effect.void.pipe(DistributedBulkhead.guard(sharedCap))
      },
      { peer: "(reference)", variant: "`DistributedBulkhead`, in-memory store", reference: true, run: Effect.void.pipe(DistributedBulkhead.guard(memoryCap)) }
    ]

    const groups = [limiterSubjects, breakerSubjects, idempotencySubjects, bulkheadSubjects]
    const rows = await latencyOf([...floors, ...groups.flat()], { rounds: LATENCY_ROUNDS, calls: LATENCY_CALLS })
    const floorRows = rows.slice(0, floors.length)
    const [readFloor, writeFloor] = floorRows.map((r) => r.value)
    let at = floors.length
    const [limiterRows, breakerRows, idempotencyRows, bulkheadRows] = groups.map((g) => {
      const slice = rows.slice(at, at + g.length)
      at += g.length
      return slice
    })

    // Every store error would have failed a call (fail-closed) and the run; counted anyway.
    const errors = await Effect.runPromise(Effect.gen(function*() {
      let n = 0
      for (const l of [admitting, spent]) {
        const s = yield* RateLimiter.stats(l)
        n += s.storeErrors.Timeout + s.storeErrors.Unavailable + s.storeErrors.Rejected
      }
      for (const b of [closed, windowed, open]) {
        const s = yield* CircuitBreaker.stats(b)
        n += s.storeErrors.Timeout + s.storeErrors.Unavailable + s.storeErrors.Rejected
      }
      const i = yield* Idempotency.stats(onSqlite)
      n += i.storeErrors.Timeout + i.storeErrors.Unavailable + i.storeErrors.Rejected
      const d = yield* DistributedBulkhead.stats(sharedCap)
      n += d.storeErrors.Timeout + d.storeErrors.Unavailable + d.storeErrors.Rejected
      return n
    }))

    const calls = `${LATENCY_ROUNDS} x ${LATENCY_CALLS.toLocaleString("en-US")} each`
    const floorNote = `Floors: a prepared \`SELECT\` of one row ${fmt(readFloor, 1)} µs, a \`BEGIN IMMEDIATE\` / \`UPDATE\` / \`COMMIT\` transaction ${
      fmt(writeFloor, 1)
    } µs (median), on a file of node:sqlite's own in WAL mode with \`synchronous = NORMAL\`, like the stores'; each is run inside \`Effect.sync\`.`
    const checkpointNote =
      "Tails of a millisecond and more are mostly SQLite's automatic WAL checkpoint (every 1,000 pages of log, with an fsync), paid by whichever commit sets it off: the more pages a call writes, the more often it pays one."
    const table = (id: string, title: string, unit: string, subjectRows: Array<Row>, notes: Array<string>): Table => ({
      id,
      title: `${title}, one at a time, one fiber (${calls})`,
      unit,
      base: 0,
      rows: [...subjectRows, ...floorRows],
      extraHeader: "p99 (µs)",
      notes: [...notes, floorNote, checkpointNote]
    })
    const tables: Array<Table> = [
      table("sqlite-ratelimiter-latency", "Rate limiter decisions on SQLite", "µs/decision", limiterRows, [
        "Admitted: the limit is far above the run. Rejected: a fixed window of 1 per hour, spent before the run; the rejection is caught."
      ]),
      table("sqlite-circuitbreaker-latency", "Circuit breaker calls on SQLite", "µs/call", breakerRows, [
        "A call that runs is two decisions: admit before it, record after it. With `consecutive(5)` a success after a success changes nothing, so both are plain reads; with a failure rate over a time window every record updates the window's counts, in a write transaction. A rejection by the open circuit is one read."
      ]),
      table("sqlite-idempotency-latency", "`Idempotency.once` on SQLite", "µs/call", idempotencyRows, [
        "Result `Schema.Number`, ttl 1 hour. A fresh key builds the call (`Idempotency.once(key, ...)`, options decoded) on each call, as an application does; the in-memory row does the same."
      ]),
      table("sqlite-bulkhead-latency", "`DistributedBulkhead` calls on SQLite", "µs/call", bulkheadRows, [
        "`maxConcurrent: 10`, no queue: every call finds a free slot."
      ])
    ]

    const within = (what: string, row: Row, floor: number, floorName: string, times = 3): Goal =>
      goal(
        `${what} within ${times}x the raw ${floorName}`,
        row.value,
        times * floor,
        `${fmt(row.value, 1)} µs vs ${fmt(floor, 1)} µs (${fmt(row.value / floor, 2)}x; median)`
      )
    const sqliteRows = [...limiterRows, ...breakerRows, ...idempotencyRows, ...bulkheadRows].filter((r) => r.reference !== true)
    const worstTail = sqliteRows.reduce((a, b) => ((b.extra ?? 0) > (a.extra ?? 0) ? b : a))
    const goals: Array<Goal> = [
      // A call that does not wait reads first (a rejection needs no lock), then writes when admitted.
      within("Rate limiter admitted decision on SQLite (a read and a write)", limiterRows[0], readFloor + writeFloor, "SELECT floor plus the write-transaction floor"),
      within("Rate limiter rejected decision on SQLite (no write lock)", limiterRows[1], readFloor, "SELECT floor"),
      within("Closed circuit breaker call on SQLite with consecutive(5) (admit + record: two reads, no write transaction)", breakerRows[0], 2 * readFloor, "SELECT floor, twice"),
      within("Closed circuit breaker call on SQLite with a failure-rate window (a read and a write)", breakerRows[1], readFloor + writeFloor, "SELECT floor plus the write-transaction floor"),
      within("Rejection by an open circuit on SQLite (no write lock)", breakerRows[2], readFloor, "SELECT floor"),
      within("`Idempotency.once` replay on SQLite (no write lock)", idempotencyRows[0], readFloor, "SELECT floor"),
      within("`Idempotency.once` of a fresh key on SQLite (two writes)", idempotencyRows[1], 2 * writeFloor, "write-transaction floor, twice"),
      within("`DistributedBulkhead` call on SQLite (two writes)", bulkheadRows[0], 2 * writeFloor, "write-transaction floor, twice"),
      goal(
        "p99 of every SQLite decision at most 1 ms, one fiber, no contention",
        worstTail.extra ?? 0,
        1000,
        `worst p99 ${fmt(worstTail.extra ?? 0, 1)} µs (${worstTail.variant.replace(/`/g, "")})`
      ),
      { text: "No store error during the latency runs", met: errors === 0, detail: `${errors} store errors` }
    ]
    return {
      id: "sqlite-latency",
      title: "SQLite: decision latency, one at a time",
      tables,
      goals,
      seconds: (performance.now() - started) / 1000
    }
  } finally {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    raw.close()
    tmp.remove()
  }
}

// -----------------------------------------------------------------------------
// 2. contention across processes
// -----------------------------------------------------------------------------

const RUN_MS = 2_000
const PROCESSES = 4

const workerPath = fileURLToPath(new URL("./sqlite-worker.ts", import.meta.url))

interface Contended {
  readonly processes: number
  readonly seconds: number
  readonly decisions: number
  /** Every successful decision's latency, µs, sorted. */
  readonly sorted: Float64Array
  readonly perWorker: ReadonlyArray<number>
  readonly failed: number
  readonly notAdmitted: number
  readonly timeouts: number
  readonly otherErrors: number
  readonly longest: number
}

/** Forks `processes` workers in `mode` on `file`, starts them at once, and gathers their reports. */
const contend = async (mode: "limiter" | "raw", file: string, processes: number): Promise<Contended> => {
  const children: Array<ChildProcess> = []
  try {
    const reports = await new Promise<Array<Report>>((resolve, reject) => {
      const reports: Array<Report> = []
      let ready = 0
      for (let w = 0; w < processes; w++) {
        const child = fork(workerPath, [mode], {
          env: { ...process.env, FILE: file },
          serialization: "advanced",
          stdio: ["ignore", "inherit", "inherit", "ipc"]
        })
        children.push(child)
        child.once("error", reject)
        child.once("exit", (code) => {
          if (code !== 0) reject(new Error(`bench/sqlite-worker.ts (${mode}) exited with ${code}`))
        })
        child.on("message", (message: { readonly type: string } | Report) => {
          if (message.type === "ready" && ++ready === processes) {
            const at = Date.now() + 100
            for (const c of children) c.send({ at, runMs: RUN_MS })
          } else if (message.type === "done") {
            reports.push(message as Report)
            if (reports.length === processes) resolve(reports)
          }
        })
      }
    })
    // The workers exit once their report is sent; one still there after a second is killed below.
    await Promise.all(children.map((child) =>
      child.exitCode !== null ? undefined : new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 1_000)
        child.once("exit", () => {
          clearTimeout(timer)
          resolve()
        })
      })
    ))
    const all = new Float64Array(reports.reduce((n, r) => n + r.latencies.length, 0))
    let offset = 0
    for (const r of reports) {
      all.set(r.latencies, offset)
      offset += r.latencies.length
    }
    all.sort()
    const sum = (f: (r: Report) => number) => reports.reduce((n, r) => n + f(r), 0)
    return {
      processes,
      seconds: RUN_MS / 1000,
      decisions: all.length,
      sorted: all,
      perWorker: reports.map((r) => r.latencies.length),
      failed: sum((r) => r.failed),
      notAdmitted: sum((r) => r.notAdmitted),
      timeouts: sum((r) => r.storeErrors.Timeout),
      otherErrors: sum((r) => r.storeErrors.Unavailable + r.storeErrors.Rejected),
      longest: Math.max(...reports.map((r) => r.longest))
    }
  } finally {
    for (const child of children) {
      if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) process.kill(child.pid, "SIGKILL")
    }
  }
}

export const contention = async (): Promise<ScenarioResult> => {
  const started = performance.now()
  const tmp = temporaryDirectory()
  try {
    const file = join(tmp.dir, "bulwark.sqlite")
    const rawPath = join(tmp.dir, "raw.sqlite")
    await Effect.runPromise(SqliteDatabase.check({ file }))
    rawFile(rawPath).close()
    const runs = [
      { peer: "Bulwark", what: "`SqliteRateLimiterStore` decisions", result: await contend("limiter", file, 1) },
      { peer: "Bulwark", what: "`SqliteRateLimiterStore` decisions", result: await contend("limiter", file, PROCESSES) },
      { peer: "(reference)", what: "node:sqlite alone: `BEGIN IMMEDIATE` / `UPDATE` / `COMMIT`", result: await contend("raw", rawPath, 1) },
      { peer: "(reference)", what: "node:sqlite alone: `BEGIN IMMEDIATE` / `UPDATE` / `COMMIT`", result: await contend("raw", rawPath, PROCESSES) }
    ]
    const variant = (r: (typeof runs)[number]) =>
      `${r.what}, ${r.result.processes} process${r.result.processes === 1 ? "" : "es"}`
    const rate = (c: Contended) => c.decisions / c.seconds
    const row = (r: (typeof runs)[number], value: number, extra: number): Row => ({
      peer: r.peer,
      variant: variant(r),
      value,
      min: value,
      max: value,
      rounds: 1,
      extra,
      ...(r.peer === "(reference)" ? { reference: true } : {})
    })
    const [alone, crowd, rawAlone, rawCrowd] = runs.map((r) => r.result)
    const p = (c: Contended, q: number) => percentile(c.sorted, q)
    const tables: Array<Table> = [
      {
        id: "sqlite-contention-throughput",
        title: `One rate limiter key, one file, every process deciding one call at a time for ${fmt(RUN_MS / 1000)} s`,
        unit: "µs of wall time/decision",
        base: 0,
        rows: runs.map((r) => row(r, 1e6 / rate(r.result), rate(r.result))),
        extraHeader: "decisions/s (all processes)",
        notes: [
          `A token bucket with limits far above the run, its store asked directly as \`RateLimiter.guard\` asks it for a call that does not wait (a plain read, then the \`BEGIN IMMEDIATE\` transaction): every decision admits and writes the same row. Default \`lockTimeout\` (100 ms). Through a \`RateLimiter\`, one \`Timeout\` would make the limiter decide without the store for the next second (\`onStoreError\`); the store is asked directly so that every decision is the store's and every failure counts. ${os.cpus().length} cores: with more processes than cores, the one holding the write lock can be descheduled while the others wait for it.`,
          `Decisions per process: ${runs.map((r) => `${variant(r).replace(/`/g, "")}: ${r.result.perWorker.join(", ")}`).join("; ")}.`,
          `Failed decisions: ${
            runs.map((r) => `${variant(r).replace(/`/g, "")}: ${r.result.failed} (Timeout ${r.result.timeouts}, other ${r.result.otherErrors})`).join("; ")
          }. A Timeout is a \`StoreError\` (SQLITE_BUSY for node:sqlite alone): the write lock not had within 100 ms. Decisions that did not admit, though the bucket is nowhere near empty: ${
            runs.filter((r) => r.peer === "Bulwark").map((r) => `${r.result.processes} process${r.result.processes === 1 ? "" : "es"}: ${r.result.notAdmitted}`).join("; ")
          }.`
        ]
      },
      {
        id: "sqlite-contention-latency",
        title: "Latency of each decision as the workers see it (successful decisions, all processes)",
        unit: "µs/decision",
        base: 0,
        rows: runs.map((r) => row(r, p(r.result, 0.5), p(r.result, 0.99))),
        extraHeader: "p99 (µs)",
        notes: [
          "The tail includes SQLite's automatic WAL checkpoints (an fsync, paid by whichever commit sets one off) and, with more processes than cores, waits for a lock holder that is not running.",
          `p99.9 and longest (failed included): ${runs.map((r) => `${variant(r).replace(/`/g, "")}: ${fmt(p(r.result, 0.999))} µs, ${fmt(r.result.longest)} µs`).join("; ")}.`
        ]
      }
    ]
    const goals: Array<Goal> = [
      {
        text: `No StoreError under ${PROCESSES}-process contention at the default 100 ms lock bound`,
        met: crowd.failed === 0,
        detail: `${crowd.timeouts} Timeout, ${crowd.otherErrors} other store errors, out of ${crowd.decisions + crowd.notAdmitted + crowd.failed} decisions; node:sqlite alone: ${rawCrowd.timeouts} SQLITE_BUSY out of ${
          rawCrowd.decisions + rawCrowd.failed
        }`
      },
      {
        text: `Under ${PROCESSES}-process contention every decision of a token bucket far from its limit admits`,
        met: crowd.notAdmitted === 0,
        detail: `${crowd.notAdmitted} rejected out of ${crowd.decisions + crowd.notAdmitted + crowd.failed}`
      },
      goal(
        `p99 decision latency under ${PROCESSES}-process contention at most 10 ms (a tenth of the lock bound)`,
        p(crowd, 0.99),
        10_000,
        `p99 ${fmt(p(crowd, 0.99))} µs, p50 ${fmt(p(crowd, 0.5))} µs`
      ),
      {
        text: `${PROCESSES} processes together decide at least as many decisions per second as one process alone`,
        met: rate(crowd) >= rate(alone),
        detail: `${fmt(rate(crowd))} vs ${fmt(rate(alone))} decisions/s (${fmt(rate(crowd) / rate(alone), 2)}x); raw transactions: ${fmt(rate(rawCrowd))} vs ${
          fmt(rate(rawAlone))
        } /s`
      }
    ]
    return {
      id: "sqlite-contention",
      title: `SQLite: one rate limiter key under ${PROCESSES}-process contention`,
      tables,
      goals,
      seconds: (performance.now() - started) / 1000
    }
  } finally {
    tmp.remove()
  }
}

export const suites: ReadonlyArray<{ readonly name: string; readonly run: () => Promise<ScenarioResult> }> = [
  { name: "sqlite-latency", run: decisionLatency },
  { name: "sqlite-contention", run: contention }
]
