/**
 * `Retry.schedule(policy)` is the same policy as an Effect `Schedule`, for
 * `Effect.retry` or any API that takes one. Backoff, jitter, `retryAfter`,
 * `maxElapsed`, `while` and the budget apply as with `Retry.guard`.
 */
import { Retry } from "@bulwark/core"
import { Data, Effect, Schedule } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

class Unavailable extends Data.TaggedError("Unavailable") {}
class BadRequest extends Data.TaggedError("BadRequest") {}

const policy = Retry.policy({
  maxAttempts: 5,
  base: "2 millis",
  jitter: "full",
  while: (e: Unavailable | BadRequest) => e._tag === "Unavailable" // a bad request will not get better
})

export const program = Effect.gen(function*() {
  let attempts = 0
  const call = (failures: number, error: Unavailable | BadRequest) =>
    Effect.suspend(() => (++attempts <= failures ? Effect.fail(error) : Effect.succeed(attempts)))

  assert.equal(yield* call(2, new Unavailable()).pipe(Effect.retry(Retry.schedule(policy))), 3)

  attempts = 0
  const bad = yield* Effect.flip(call(2, new BadRequest()).pipe(Effect.retry(Retry.schedule(policy))))
  assert.deepEqual([bad._tag, attempts], ["BadRequest", 1])

  // It composes like any Schedule: here, log each retry.
  const retried: Array<number> = []
  attempts = 0
  const logged = Retry.schedule(policy).pipe(Schedule.tap(({ output }) => Effect.sync(() => retried.push(output))))
  yield* call(3, new Unavailable()).pipe(Effect.retry(logged))
  assert.deepEqual(retried, [1, 2, 3])
  return retried
})

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
