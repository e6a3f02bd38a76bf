/**
 * The state lives behind a `RateLimiterStore`. A decision is one atomic
 * store call, `consume(key, algorithm, cost, now, maxWait)`, which decides
 * and commits in one step: a remote store (a Redis script) implements the
 * whole contract in one round trip. Here a store made from the in-memory
 * one, seen through its `Effect` operations only, counts the calls.
 */
import { RateLimiter, RateLimiterStore } from "@bulwark/core"
import { Effect } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

export const program = Effect.gen(function*() {
  const memory = RateLimiterStore.memory()
  let roundTrips = 0
  const remoteLike = RateLimiterStore.make({
    consume: (key, algorithm, cost, now, maxWait) =>
      Effect.suspend(() => {
        roundTrips++
        return memory.consume(key, algorithm, cost, now, maxWait)
      }),
    refund: memory.refund,
    block: memory.block
  })
  const exports = yield* RateLimiter.make({
    name: "exports",
    algorithm: RateLimiter.slidingWindow({ limit: 2, window: "1 hour" }),
    store: remoteLike
  })
  for (let i = 0; i < 3; i++) yield* Effect.void.pipe(RateLimiter.guard(exports), Effect.ignore)
  assert.equal(roundTrips, 3) // one per decision, admitted or not

  // The contract, called directly: the key is the limiter's name.
  const decision = yield* memory.consume("exports", exports.algorithm, 1, Date.now(), 0)
  assert.deepEqual([decision.admitted, decision.remaining, decision.blocked], [false, 0, false])
  assert.ok(decision.at > Date.now()) // when a call of this cost could pass
  assert.deepEqual(exports.algorithm, { _tag: "SlidingWindow", limit: 2, windowMillis: 3_600_000 })
  return decision
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
