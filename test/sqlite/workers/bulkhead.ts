/**
 * A worker of test/sqlite/SqliteBulkheadStore.test.ts: one of several OS
 * processes guarding calls with one `DistributedBulkhead` (name `shared`)
 * on the SQLite store of `FILE`. It reports to the test over IPC.
 *
 * Settings in the environment: `FILE` (the database), `CAP`
 * (`maxConcurrent`), `LEASE_MS` (the lease).
 *
 * - mode `cap`: after "go", `FIBERS` fibers call through the bulkhead in a
 *   loop for `RUN_MS`, each call holding its slot 2-10 ms. Every call
 *   records, inside the guarded effect, the time it was entered and the
 *   time it is left (`performance.timeOrigin + performance.now()`: the
 *   machine's clock, to a fraction of a millisecond), so that its interval
 *   lies inside the time it held its slot. It also counts itself in a
 *   witness file `WITNESS` (a one-row SQLite table, `n + 1` on entering,
 *   `n - 1` on leaving, each an atomic write): the highest count any call
 *   saw is a second measure of the global concurrency, on no clock at all.
 *   Reports the intervals, that highest count and the stats.
 * - mode `hold`: `HOLD` calls that never end; reports "holding" once they
 *   are all admitted, then waits to be killed.
 *
 * Nothing starts before the test sends "go"; before that, a call of its own
 * opens the file and warms the connection.
 */
import { DistributedBulkhead } from "@bulwark/core"
import { SqliteBulkheadStore } from "@bulwark/sqlite"
import { Effect, Random } from "effect"
import { DatabaseSync } from "node:sqlite"

const mode = process.argv[2]
const env = (name: string, fallback?: number) => Number(process.env[name] ?? fallback)
const file = process.env.FILE!
const cap = env("CAP", 3)

/** Resolves once the message is handed to the IPC channel: the process may exit right after. */
const send = (message: unknown) =>
  Effect.callback<void>((resume) => {
    process.send!(message, undefined, {}, () => resume(Effect.void))
  })

const go = Effect.callback<void>((resume) => {
  process.once("message", (message) => message === "go" && resume(Effect.void))
})

const clock = () => performance.timeOrigin + performance.now()

const program = Effect.gen(function*() {
  // A generous lock bound and fail-closed: a failure of the file must show, never let a call through.
  const store = yield* SqliteBulkheadStore.make({ file, lockTimeout: "2 seconds" })
  const bulkhead = yield* DistributedBulkhead.make({
    name: "shared",
    maxConcurrent: cap,
    maxQueue: 1000,
    lease: env("LEASE_MS", 5000),
    pollInterval: 20,
    onStoreError: "fail-closed",
    store
  })
  yield* Effect.void.pipe(DistributedBulkhead.guard(bulkhead))
  yield* send({ type: "ready", pid: process.pid })
  yield* go

  if (mode === "cap") {
    const witness = new DatabaseSync(process.env.WITNESS!, { timeout: 5000 })
    const enter = witness.prepare("UPDATE witness SET n = n + 1 RETURNING n")
    const leave = witness.prepare("UPDATE witness SET n = n - 1")
    const deadline = clock() + env("RUN_MS")
    const intervals: Array<readonly [number, number]> = []
    let highest = 0
    const call = Effect.gen(function*() {
      const entered = clock()
      highest = Math.max(highest, (enter.get() as { n: number }).n)
      yield* Effect.sleep(yield* Random.nextIntBetween(2, 10))
      leave.run()
      intervals.push([entered, clock()])
    }).pipe(DistributedBulkhead.guard(bulkhead))
    const loop = Effect.gen(function*() {
      while (clock() < deadline) yield* call
    })
    yield* Effect.all(Array.from({ length: env("FIBERS") }, () => loop), { concurrency: "unbounded" })
    witness.close()
    const s = yield* DistributedBulkhead.stats(bulkhead)
    yield* send({
      type: "done",
      pid: process.pid,
      intervals,
      highest,
      // The warm-up call is the first admission.
      admitted: s.admitted - 1,
      waited: s.admittedAfterWait,
      rejected: s.rejectedTotal,
      withoutStore: s.admittedWithoutStore + s.admittedLocally,
      storeErrors: s.storeErrors,
      leasesLost: s.leasesLost
    })
  } else if (mode === "hold") {
    const hold = env("HOLD")
    for (let i = 0; i < hold; i++) yield* Effect.forkChild(Effect.never.pipe(DistributedBulkhead.guard(bulkhead)))
    while ((yield* DistributedBulkhead.stats(bulkhead)).inFlight < hold) yield* Effect.sleep(5)
    yield* send({ type: "holding", pid: process.pid })
    yield* Effect.never
  }
}).pipe(Effect.scoped)

Effect.runPromise(program).then(
  () => process.exit(0),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
