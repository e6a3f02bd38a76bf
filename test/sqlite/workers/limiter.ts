/**
 * A worker of test/sqlite/SqliteRateLimiterStore.test.ts: a process with a
 * `RateLimiter` on the SQLite store of `FILE`.
 *
 * - mode `share`: a GCRA limiter of `RATE` calls per second (burst 1) that
 *   waits for its slot. After "go" (with the start time `{ at }`), `FIBERS`
 *   fibers call it in a loop until `at + RUN_MS`; the process reports the
 *   slot the store gave every admitted call, and the time every call
 *   started.
 * - mode `block`: the server said Retry-After: the limiter is blocked for
 *   `BLOCK_MS`, and the process exits, as a command-line tool would.
 */
import { RateLimiter, RateLimiterStore } from "@bulwark/core"
import { SqliteRateLimiterStore } from "@bulwark/sqlite"
import { Effect } from "effect"

const mode = process.argv[2]
const file = process.env.FILE!

/** Resolves once the message is handed to the IPC channel: the process may exit right after. */
const send = (message: unknown) =>
  Effect.callback<void>((resume) => {
    process.send!(message, undefined, {}, () => resume(Effect.void))
  })

const share = Effect.gen(function*() {
  const sqlite = yield* SqliteRateLimiterStore.make({ file, lockTimeout: "1 second" })
  // The slots the store gave: exact times, whatever this process's timers do under load.
  const slots: Array<number> = []
  const store = RateLimiterStore.make({
    consume: (key, algorithm, cost, now, maxWait) =>
      Effect.tap(sqlite.consume(key, algorithm, cost, now, maxWait), (d) =>
        Effect.sync(() => {
          if (d.admitted) slots.push(d.at)
        })),
    refund: sqlite.refund,
    block: sqlite.block
  })
  const limiter = yield* RateLimiter.make({
    name: "shared",
    algorithm: RateLimiter.gcra({ rate: Number(process.env.RATE), per: "1 second", burst: 1 }),
    onExceeded: "wait",
    maxWait: "10 seconds",
    store,
    // A failure of the file must show, not be papered over.
    onStoreError: "fail-closed"
  })
  const { at } = yield* Effect.callback<{ readonly at: number }>((resume) => {
    process.once("message", (message: { readonly at: number }) => resume(Effect.succeed(message)))
    process.send!({ type: "ready" })
  })
  yield* Effect.sleep(Math.max(0, at - Date.now()))
  const end = at + Number(process.env.RUN_MS)
  const started: Array<number> = []
  const loop = Effect.gen(function*() {
    while (Date.now() < end) {
      yield* Effect.sync(() => started.push(Date.now())).pipe(RateLimiter.guard(limiter))
    }
  })
  yield* Effect.all(Array.from({ length: Number(process.env.FIBERS) }, () => loop), { concurrency: "unbounded" })
  const stats = yield* RateLimiter.stats(limiter)
  yield* send({ type: "done", started, slots, admitted: stats.admitted, rejected: stats.rejected })
})

const block = Effect.gen(function*() {
  const store = yield* SqliteRateLimiterStore.make({ file })
  const limiter = yield* RateLimiter.make({
    name: "api",
    algorithm: RateLimiter.tokenBucket({ capacity: 10, refill: 10, per: "1 second" }),
    store
  })
  yield* Effect.sync(() => "one call").pipe(RateLimiter.guard(limiter))
  yield* RateLimiter.block(limiter, Number(process.env.BLOCK_MS))
  yield* send({ type: "blocked", at: Date.now() })
})

Effect.runPromise(Effect.scoped(mode === "block" ? block : share)).then(
  () => process.exit(0),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
