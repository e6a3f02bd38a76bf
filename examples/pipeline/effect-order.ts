/**
 * Effect's own circuit breaker puts the retry and the timeout inside the
 * breaker, so that it sees one outcome per call. A policy runs that order
 * when you give it as `order`, and nothing warns about it. The difference
 * shows when the dependency goes down: the breaker counts calls instead of
 * attempts, so the dependency receives `maxAttempts` times as many calls
 * before the circuit opens.
 */
import { CircuitBreaker, Policy, Retry } from "@bulwark/core"
import { Data, Effect } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

class Unavailable extends Data.TaggedError("Unavailable") {}

const effectOrder: ReadonlyArray<Policy.Stage> = ["timeout", "circuitBreaker", "retry", "attemptTimeout"]

/** A policy over a fresh breaker that opens after 3 failures in a row. */
const inventory = (order: ReadonlyArray<Policy.Stage> | undefined) =>
  Effect.gen(function*() {
    const breaker = yield* CircuitBreaker.make({ name: "inventory", trip: CircuitBreaker.consecutive(3), openFor: "1 minute" })
    const policy = yield* Policy.make({
      name: "inventory",
      timeout: "2 seconds",
      retry: Retry.policy({ maxAttempts: 3, base: "1 millis", jitter: "none" }),
      circuitBreaker: breaker,
      attemptTimeout: "100 millis",
      order,
      warnings: "fail" // any warning would make this an InvalidOptions
    })
    return { breaker, policy }
  })

export const program = Effect.gen(function*() {
  // Nothing known to misbehave: no warning.
  assert.deepEqual(Policy.check(effectOrder, { timeout: "2 seconds", attemptTimeout: "100 millis" }), [])
  const effectStyle = yield* inventory(effectOrder)
  const canonical = yield* inventory(undefined)
  assert.deepEqual(effectStyle.policy.order, effectOrder)
  assert.deepEqual(canonical.policy.order, ["timeout", "retry", "circuitBreaker", "attemptTimeout"])

  // A call that a retry rescues: one success for Effect's order, two failures and a success for ours.
  for (const { policy } of [effectStyle, canonical]) {
    let attempts = 0
    const flaky = Effect.suspend(() => (++attempts < 3 ? Effect.fail(new Unavailable()) : Effect.succeed("in stock")))
    assert.equal(yield* flaky.pipe(Policy.guard(policy)), "in stock")
  }
  const rescued = yield* CircuitBreaker.stats(effectStyle.breaker)
  const counted = yield* CircuitBreaker.stats(canonical.breaker)
  assert.deepEqual([rescued.successes, rescued.failures], [1, 0])
  assert.deepEqual([counted.successes, counted.failures], [1, 2])

  // The dependency goes down. How many calls reach it before the circuit opens?
  const callsUntilOpen = ({ breaker, policy }: Effect.Success<ReturnType<typeof inventory>>) =>
    Effect.gen(function*() {
      let calls = 0
      const down = Effect.suspend(() => (++calls, Effect.fail(new Unavailable())))
      while ((yield* CircuitBreaker.state(breaker)).state === "Closed") yield* Effect.exit(down.pipe(Policy.guard(policy)))
      return calls
    })
  const effectCalls = yield* callsUntilOpen(effectStyle)
  const canonicalCalls = yield* callsUntilOpen(canonical)
  assert.equal(effectCalls, 9) // 3 failed calls of 3 attempts each
  assert.equal(canonicalCalls, 3) // 3 failed attempts
  return { effectCalls, canonicalCalls }
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
