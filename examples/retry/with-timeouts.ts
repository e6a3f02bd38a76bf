/**
 * Retry and Timeout compose by position. A timeout *inside* the retry bounds
 * each attempt, and a `TimeoutExceeded` is a typed failure like any other, so
 * the hung attempt is retried. A timeout *outside* bounds the whole call,
 * waits included: `maxElapsed` only decides when retries may start.
 */
import { Retry, Timeout } from "@bulwark/core"
import { Effect } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

export const program = Effect.gen(function*() {
  const policy = Retry.policy({ maxAttempts: 3, base: "5 millis", jitter: "none" })

  // The first attempt hangs; the second answers at once.
  let attempts = 0
  const search = Effect.suspend(() => (++attempts === 1 ? Effect.never : Effect.succeed("results")))
  const result = yield* search.pipe(
    Timeout.guard({ name: "search attempt", after: "20 millis" }), // per attempt
    Retry.guard(policy),
    Timeout.guard({ name: "search", after: "1 second" }) // overall
  )
  assert.deepEqual([result, attempts], ["results", 2])

  // Every attempt hangs: the overall timeout ends the call before the attempts run out.
  attempts = 0
  const hung = Effect.suspend(() => (++attempts, Effect.never))
  const error = yield* Effect.flip(hung.pipe(
    Timeout.guard({ name: "search attempt", after: "20 millis" }),
    Retry.guard(Retry.policy({ maxAttempts: 100, base: "5 millis", jitter: "none" })),
    Timeout.guard({ name: "search", after: "60 millis" })
  ))
  assert.equal(error.name, "search")
  assert.ok(attempts >= 2 && attempts < 100)
  return { result, overall: error.message }
})

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
