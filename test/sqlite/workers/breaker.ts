/**
 * A worker of test/sqlite/SqliteCircuitBreakerStore.test.ts: a process with
 * a `CircuitBreaker` named "shared" on the SQLite store of `FILE`
 * (consecutive(`TRIP`) failures, open for `OPEN_MS`, one probe, a probe
 * timeout of `PROBE_MS`, a probe lease of `LEASE_MS` when given).
 *
 * - mode `calls`: after "go", `FIBERS` fibers call through the breaker in a
 *   loop until `RUN_MS` have passed; each admitted call holds for `HOLD_MS`
 *   and then fails (`OUTCOME=fail`) or succeeds. A rejected call waits 2 ms
 *   and tries again. The process reports every admitted call's start and
 *   end (wall clock, ms) and the rejections by reason.
 * - mode `probe`: one call, which never ends; the process reports
 *   "running" with its pid once the call has started (renewing the probe's
 *   lease while it lives), and waits to be killed (SIGKILL: nothing is
 *   reported to the store, and the renewals stop).
 */
import { CircuitBreaker, type CircuitOpen } from "@bulwark/core"
import { SqliteCircuitBreakerStore } from "@bulwark/sqlite"
import { Effect } from "effect"

const mode = process.argv[2]
const env = (name: string) => Number(process.env[name])

/** Resolves once the message is handed to the IPC channel: the process may exit right after. */
const send = (message: unknown) =>
  Effect.callback<void>((resume) => {
    process.send!(message, undefined, {}, () => resume(Effect.void))
  })

const wallClock = () => performance.timeOrigin + performance.now()

class Down {
  readonly _tag = "Down"
}

const program = Effect.gen(function*() {
  const breaker = yield* CircuitBreaker.make({
    name: "shared",
    trip: CircuitBreaker.consecutive(env("TRIP")),
    openFor: env("OPEN_MS"),
    halfOpen: {
      probes: 1,
      probeTimeout: env("PROBE_MS"),
      probeLease: process.env.LEASE_MS === undefined ? undefined : env("LEASE_MS")
    },
    store: yield* SqliteCircuitBreakerStore.make({ file: process.env.FILE!, lockTimeout: "2 seconds" }),
    // A failure of the file must show, not be papered over.
    onStoreError: "fail-closed"
  })

  if (mode === "probe") {
    yield* Effect.gen(function*() {
      yield* send({ type: "running", pid: process.pid })
      return yield* Effect.never
    }).pipe(CircuitBreaker.guard(breaker))
    return
  }

  yield* Effect.callback<void>((resume) => {
    process.once("message", () => resume(Effect.void))
    process.send!({ type: "ready" })
  })
  const end = Date.now() + env("RUN_MS")
  const calls: Array<{ readonly start: number; readonly end: number }> = []
  const rejected: Record<string, number> = {}
  const call = Effect.gen(function*() {
    const start = wallClock()
    yield* Effect.sleep(env("HOLD_MS"))
    calls.push({ start, end: wallClock() })
    if (process.env.OUTCOME === "fail") return yield* Effect.fail(new Down())
  }).pipe(CircuitBreaker.guard(breaker))
  const loop = Effect.gen(function*() {
    while (Date.now() < end) {
      yield* call.pipe(
        Effect.catchTag("CircuitOpen", (e: CircuitOpen) =>
          Effect.andThen(Effect.sync(() => (rejected[e.reason] = (rejected[e.reason] ?? 0) + 1)), Effect.sleep(2))),
        Effect.catchTag("Down", () => Effect.void)
      )
    }
  })
  yield* Effect.all(Array.from({ length: env("FIBERS") }, () => loop), { concurrency: "unbounded" })
  yield* send({ type: "done", calls, rejected })
})

Effect.runPromise(Effect.scoped(program)).then(
  () => process.exit(0),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
