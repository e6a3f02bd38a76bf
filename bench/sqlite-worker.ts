/**
 * A worker process of bench/sqlite.ts's contention suite, in one of two
 * modes (`process.argv[2]`):
 *
 * - `limiter`: decisions of a `SqliteRateLimiterStore` on `FILE` (default
 *   `lockTimeout`, 100 ms), asked for directly, as `RateLimiter.guard` asks
 *   for a call that does not wait: a token bucket with limits far above the
 *   run, so that every decision admits and is one `BEGIN IMMEDIATE`
 *   transaction on the same row as the other workers'. (Through a
 *   `RateLimiter`, one `Timeout` would make the limiter decide without the
 *   store for the next second, by its `onStoreError`: the store is asked
 *   directly so that every decision is the store's, and every failure
 *   counts.)
 * - `raw`: the engine's floor, with node:sqlite alone: `BEGIN IMMEDIATE`,
 *   an `UPDATE` of one row of table `t` of `FILE` (made by the parent), and
 *   `COMMIT`, with the same 100 ms busy timeout.
 *
 * It warms up, says "ready", waits for "go" (`{ at, runMs }`: a wall-clock
 * start shared by every worker), then runs one operation at a time until
 * `at + runMs` and reports each successful one's latency (µs, as a
 * `Float64Array`: fork it with `serialization: "advanced"`), the ones that
 * failed, and the store errors by reason.
 *
 * Not run on its own: bench/sqlite.ts forks it.
 */
import type { RateLimiterStore } from "@bulwark/core"
import { SqliteRateLimiterStore } from "@bulwark/sqlite"
import { Cause, Effect, Exit, Option } from "effect"
import { DatabaseSync } from "node:sqlite"

/** What the worker reports when done. */
export interface Report {
  readonly type: "done"
  /** Latency of every decision that admitted, µs, in the order they ran. */
  readonly latencies: Float64Array
  /** Operations that failed: a `StoreError` (`SQLITE_BUSY` or another error in `raw` mode), or a defect. */
  readonly failed: number
  /** Decisions that did not admit, though the limits are far above the run (none expected; 0 in `raw` mode). */
  readonly notAdmitted: number
  readonly storeErrors: { readonly Unavailable: number; readonly Timeout: number; readonly Rejected: number }
  /** Longest single operation, µs (failed ones included). */
  readonly longest: number
}

const HUGE = 1e12
const file = process.env.FILE!

/** The start signal, once every worker is ready. */
const go = Effect.callback<{ readonly at: number; readonly runMs: number }>((resume) => {
  process.once("message", (message: { readonly at: number; readonly runMs: number }) => resume(Effect.succeed(message)))
  process.send!({ type: "ready" })
})

/** Latencies in a growing `Float64Array`. */
class Samples {
  private values = new Float64Array(1 << 16)
  private n = 0
  longest = 0
  push(us: number): void {
    if (this.n === this.values.length) {
      const grown = new Float64Array(this.values.length * 2)
      grown.set(this.values)
      this.values = grown
    }
    this.values[this.n++] = us
  }
  taken(): Float64Array {
    return this.values.slice(0, this.n)
  }
}

/** Resolves once the message is handed to the IPC channel: the process may exit right after. */
const send = (message: unknown) =>
  Effect.callback<void>((resume) => {
    process.send!(message, undefined, {}, () => resume(Effect.void))
  })

const limiter = Effect.gen(function*() {
  const store = yield* SqliteRateLimiterStore.make({ file, prefix: "bench:" })
  const algorithm: RateLimiterStore.Algorithm = { _tag: "TokenBucket", capacity: HUGE, refill: HUGE, perMillis: 1_000 }
  // What `RateLimiter.guard` asks the store for a call that does not wait.
  const decide = Effect.exit(Effect.suspend(() => store.consume("contended", algorithm, 1, Date.now(), 0)))
  // Warm-up (the JIT, the prepared statements) before "go".
  for (let i = 0; i < 2_000; i++) yield* decide
  const { at, runMs } = yield* go
  yield* Effect.sleep(Math.max(0, at - Date.now()))
  const end = performance.now() + runMs
  const samples = new Samples()
  const storeErrors = { Unavailable: 0, Timeout: 0, Rejected: 0 }
  let failed = 0
  let notAdmitted = 0
  for (;;) {
    const start = performance.now()
    if (start >= end) break
    const exit = yield* decide
    const us = (performance.now() - start) * 1000
    if (us > samples.longest) samples.longest = us
    if (Exit.isFailure(exit)) {
      failed++
      const error = Cause.findErrorOption(exit.cause)
      if (Option.isSome(error)) storeErrors[error.value.reason]++
      if (process.env.BENCH_DEBUG) console.error(`sqlite-worker: failed: ${Cause.pretty(exit.cause)}`)
    } else if (!exit.value.admitted) {
      notAdmitted++
      if (process.env.BENCH_DEBUG) console.error(`sqlite-worker: not admitted at ${Date.now()}: ${JSON.stringify(exit.value)}`)
    } else {
      samples.push(us)
    }
  }
  const report: Report = { type: "done", latencies: samples.taken(), failed, notAdmitted, storeErrors, longest: samples.longest }
  yield* send(report)
})

const raw = Effect.gen(function*() {
  const db = new DatabaseSync(file, { timeout: 100 })
  db.exec("PRAGMA synchronous = NORMAL")
  const update = db.prepare("UPDATE t SET state = ?, reset_at = ? WHERE key = ?")
  let busy = 0
  let other = 0
  const transaction = (): boolean => {
    try {
      db.exec("BEGIN IMMEDIATE")
      update.run(`{"tokens":${Math.random()}}`, Date.now(), "contended")
      db.exec("COMMIT")
      return true
    } catch (error) {
      if (db.isTransaction) db.exec("ROLLBACK")
      const errcode = (error as { readonly errcode?: unknown }).errcode
      if (typeof errcode === "number" && ((errcode & 0xff) === 5 || (errcode & 0xff) === 6)) busy++
      else other++
      return false
    }
  }
  for (let i = 0; i < 2_000; i++) transaction()
  const { at, runMs } = yield* go
  yield* Effect.sleep(Math.max(0, at - Date.now()))
  busy = 0
  other = 0
  const end = performance.now() + runMs
  const samples = new Samples()
  let failed = 0
  for (;;) {
    const start = performance.now()
    if (start >= end) break
    const ok = transaction()
    const us = (performance.now() - start) * 1000
    if (us > samples.longest) samples.longest = us
    if (ok) samples.push(us)
    else failed++
  }
  db.close()
  const report: Report = {
    type: "done",
    latencies: samples.taken(),
    failed,
    notAdmitted: 0,
    storeErrors: { Unavailable: other, Timeout: busy, Rejected: 0 },
    longest: samples.longest
  }
  yield* send(report)
})

Effect.runPromise(Effect.scoped(process.argv[2] === "raw" ? raw : limiter)).then(
  () => process.exit(0),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
