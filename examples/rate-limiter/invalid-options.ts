/**
 * Options are decoded with a Schema before anything is built. Bad values fail
 * `make` (or the layer) with `InvalidOptions`, whose message names every bad
 * field and its rule; nothing is clamped into a value you did not ask for. A
 * bad per-call `cost` is a programming error: the call dies naming it.
 */
import { RateLimiter } from "@bulwark/core"
import { Cause, Effect, Exit } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

export const program = Effect.gen(function*() {
  const error = yield* Effect.flip(RateLimiter.make({
    name: "github",
    algorithm: RateLimiter.tokenBucket({ capacity: 0, refill: 2.5, per: "1500 micros" })
  }))
  assert.equal(error._tag, "InvalidOptions")
  assert.deepEqual([error.primitive, error.name], ["RateLimiter", "github"])
  assert.equal(
    error.message,
    [
      "algorithm.capacity: Expected an integer >= 1, got 0",
      "algorithm.refill: Expected an integer >= 1, got 2.5",
      "algorithm.per: Expected a whole number of milliseconds >= 1, got 1ms 500000ns"
    ].join("\n")
  )

  // maxWait only means something for callers that wait.
  const waitless = yield* Effect.flip(RateLimiter.make({
    name: "github",
    algorithm: RateLimiter.gcra({ rate: 10, per: "1 second" }),
    maxWait: "1 second"
  }))
  assert.equal(waitless.message, `maxWait: applies only with onExceeded "wait" (callers that fail at once never wait)`)

  const limiter = yield* RateLimiter.make({ name: "github", algorithm: RateLimiter.gcra({ rate: 10, per: "1 second" }) })
  const exit = yield* Effect.exit(Effect.void.pipe(RateLimiter.guard(limiter, { cost: 0.5 })))
  assert.ok(Exit.isFailure(exit) && Exit.hasDies(exit))
  assert.match(String(Cause.squash(exit.cause)), /option "cost" must be a positive integer, got 0.5/)
  return error.message
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
