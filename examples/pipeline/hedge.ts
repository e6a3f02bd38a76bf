/**
 * The hedge sits inside the overall timeout and outside the bulkhead. Each
 * hedged attempt takes its own bulkhead slot and passes the circuit breaker,
 * so hedging cannot overrun either; the loser is interrupted and gives its
 * slot back before the call returns. Each hedged attempt also runs the retry
 * inside it: the dependency can see up to `hedge.maxAttempts` times
 * `retry.maxAttempts` calls.
 */
import { Bulkhead, CircuitBreaker, Policy, Retry } from "@bulwark/core"
import { Data, Effect } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

class Unavailable extends Data.TaggedError("Unavailable") {}

export const program = Effect.gen(function*() {
  const replicas = yield* Bulkhead.make({ name: "replicas", maxConcurrent: 2 })
  const breaker = yield* CircuitBreaker.make({ name: "replicas", trip: CircuitBreaker.consecutive(5), openFor: "1 minute" })
  const read = yield* Policy.make({
    name: "read",
    timeout: "1 second",
    hedge: { after: "20 millis", maxAttempts: 2 },
    bulkhead: replicas,
    circuitBreaker: breaker
  })

  // The first attempt hangs on a slow replica; the hedged one answers, and sees both slots taken.
  let attempt = 0
  let inFlight = 0
  const query = Effect.suspend(() => {
    const n = ++attempt
    if (n === 1) return Effect.never
    return Effect.map(Bulkhead.stats(replicas), (stats) => {
      inFlight = stats.inFlight
      return `row from attempt ${n}`
    })
  })
  assert.equal(yield* query.pipe(Policy.guard(read)), "row from attempt 2")
  assert.equal(inFlight, 2) // each attempt held its own slot
  assert.equal((yield* Bulkhead.stats(replicas)).inFlight, 0) // the loser's slot is back
  const outcomes = yield* CircuitBreaker.stats(breaker)
  // The winner's success; the interrupted loser says nothing about the dependency.
  assert.deepEqual([outcomes.successes, outcomes.failures, outcomes.ignored], [1, 0, 1])

  // Hedge and retry multiply: 2 hedged attempts, each retrying up to 3 times.
  const search = yield* Policy.make({
    name: "search",
    hedge: { after: "1 minute", maxAttempts: 2 }, // a failed attempt starts the next one at once
    retry: Retry.policy({ maxAttempts: 3, base: "1 millis", jitter: "none" })
  })
  let calls = 0
  const down = Effect.suspend(() => (++calls, Effect.fail(new Unavailable())))
  assert.equal((yield* Effect.flip(down.pipe(Policy.guard(search))))._tag, "Unavailable")
  assert.equal(calls, 6) // 2 hedged attempts x 3 attempts each
  return { inFlight, calls }
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
