/**
 * `Retry.guard` runs a call again after a typed failure, with capped
 * exponential backoff. When the policy allows no more attempts, the last
 * failure is returned as it is: the error type does not change, and callers
 * handle the same errors with or without a retry. Defects are never retried.
 */
import { Retry } from "@bulwark/core"
import { Clock, Data, Effect } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

class Unavailable extends Data.TaggedError("Unavailable")<{ readonly attempt: number }> {}

// 4 attempts in all; waits of 10, 20, 40 ms between them ("none": no jitter, to make the numbers exact).
const policy = Retry.policy({ maxAttempts: 4, base: "10 millis", max: "1 second", jitter: "none" })

export const program = Effect.gen(function*() {
  // A dependency that fails twice, then answers.
  const started: Array<number> = []
  const inventory = Effect.gen(function*() {
    started.push(yield* Clock.currentTimeMillis)
    if (started.length <= 2) return yield* new Unavailable({ attempt: started.length })
    return "in stock"
  })
  assert.equal(yield* inventory.pipe(Retry.guard(policy)), "in stock")
  assert.equal(started.length, 3)
  assert.ok(started[1] - started[0] >= 9 && started[2] - started[1] >= 19) // 10 ms, then 20 ms (the clock's resolution is 1 ms)

  // A dependency that keeps failing: 4 attempts, then the 4th attempt's own error.
  let attempts = 0
  const down = Effect.suspend(() => Effect.fail(new Unavailable({ attempt: ++attempts })))
  const error = yield* Effect.flip(down.pipe(Retry.guard(policy)))
  assert.equal(error._tag, "Unavailable")
  assert.equal(error.attempt, 4)

  // A defect is a bug, not a transient failure: it is not retried.
  let defects = 0
  const buggy = Effect.suspend(() => (defects++, Effect.die(new Error("bug"))))
  yield* Effect.exit(buggy.pipe(Retry.guard(policy)))
  assert.equal(defects, 1)
  return { attempts, defects }
})

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
