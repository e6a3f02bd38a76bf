/**
 * An error with a `retryAfter` field holding a `Duration` (Bulwark's
 * `CircuitOpen` and `RateLimited`, or your own) makes the next delay at least
 * that long: never sooner than the server asked. If honouring it would start
 * the retry after `maxElapsed`, the error is returned at once instead of after
 * a useless wait.
 */
import { Retry } from "@bulwark/core"
import { Clock, Data, Duration, Effect } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

class TooManyRequests extends Data.TaggedError("TooManyRequests")<{ readonly retryAfter: Duration.Duration }> {}

export const program = Effect.gen(function*() {
  const policy = Retry.policy({ maxAttempts: 3, base: "1 millis", jitter: "none", maxElapsed: "1 second" })

  // The server says "come back in 50 ms": the 1 ms backoff is stretched to 50 ms.
  const started: Array<number> = []
  const api = (retryAfter: Duration.Input) =>
    Effect.gen(function*() {
      started.push(yield* Clock.currentTimeMillis)
      if (started.length === 1) return yield* new TooManyRequests({ retryAfter: Duration.fromInputUnsafe(retryAfter) })
      return "accepted"
    })
  assert.equal(yield* api("50 millis").pipe(Retry.guard(policy)), "accepted")
  assert.ok(started[1] - started[0] >= 49)

  // The server says "come back in a minute", beyond maxElapsed: the error is returned without waiting.
  started.length = 0
  const t0 = yield* Clock.currentTimeMillis
  const refused = yield* Effect.flip(api("1 minute").pipe(Retry.guard(policy)))
  assert.equal(refused._tag, "TooManyRequests")
  assert.equal(Duration.toSeconds(refused.retryAfter), 60)
  assert.equal(started.length, 1)
  assert.ok((yield* Clock.currentTimeMillis) - t0 < 500)
  return started.length
})

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
