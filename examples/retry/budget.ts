/**
 * A retry budget shared by every policy that names it: each call deposits
 * `ratio` tokens, each retry withdraws one, over a sliding window of `ttl`,
 * plus a reserve of `minPerSecond * ttl`. When a dependency fails for
 * everyone, retries add at most `ratio` to its load instead of multiplying it
 * by `maxAttempts`. A refused retry returns the call's own error, unwrapped.
 */
import { Retry } from "@bulwark/core"
import { Data, Effect } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

class Unavailable extends Data.TaggedError("Unavailable")<{ readonly attempt: number }> {}

export const program = Effect.gen(function*() {
  // Retries <= 50% of calls; no reserve, so the arithmetic below is exact.
  const budget = yield* Retry.budget({ name: "backend", ratio: 0.5, minPerSecond: 0, ttl: "10 seconds" })
  const reads = Retry.policy({ maxAttempts: 10, base: 0, budget })
  const writes = Retry.policy({ maxAttempts: 10, base: 0, budget })

  // Four successful reads deposit 4 * 0.5 = 2 tokens.
  for (let i = 0; i < 4; i++) yield* Effect.succeed(i).pipe(Retry.guard(reads))

  // The backend goes down. A write deposits its own 0.5 and may retry twice; the third retry is refused.
  let attempts = 0
  const write = Effect.suspend(() => Effect.fail(new Unavailable({ attempt: ++attempts })))
  const error = yield* Effect.flip(write.pipe(Retry.guard(writes)))
  assert.equal(attempts, 3) // not 10: maxAttempts is never reached
  assert.equal(error.attempt, 3) // the original error of the last attempt, not a "budget exhausted" wrapper

  // The next failing call: the 0.5 left plus its own 0.5 make one retry; the second is refused.
  attempts = 0
  yield* Effect.flip(write.pipe(Retry.guard(writes)))
  assert.equal(attempts, 2)

  const stats = yield* Retry.budgetStats(budget)
  assert.deepEqual([stats.deposits, stats.withdrawals, stats.refused], [6, 3, 2])
  return stats
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
