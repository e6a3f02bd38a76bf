/**
 * `Policy.make` takes the primitives and runs them in the canonical order,
 * outermost first, whatever the order of the options. `Policy.describe` says
 * what runs around the call. Each stage sees the call its own way: one
 * bulkhead slot for the call, one rate-limiter permit and one breaker outcome
 * per attempt.
 */
import { Bulkhead, CircuitBreaker, Policy, RateLimiter, Retry } from "@bulwark/core"
import { Data, Effect } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

class Declined extends Data.TaggedError("Declined") {}

export const program = Effect.gen(function*() {
  const payments = yield* Policy.make({
    name: "payments",
    // The options in any order: the policy runs them in the canonical one.
    attemptTimeout: "1 second",
    circuitBreaker: yield* CircuitBreaker.make({ name: "payments", trip: CircuitBreaker.consecutive(5), openFor: "30 seconds" }),
    rateLimiter: yield* RateLimiter.make({ name: "payments", algorithm: RateLimiter.gcra({ rate: 100, per: "1 second", burst: 10 }) }),
    retry: Retry.policy({ maxAttempts: 3, base: "10 millis", max: "200 millis" }),
    bulkhead: yield* Bulkhead.make({ name: "payments", maxConcurrent: 10, maxQueue: 20 }),
    hedge: { after: "2 seconds", maxAttempts: 2 },
    timeout: "5 seconds",
    fallback: () => Effect.succeed("queued for later")
  })
  assert.deepEqual(payments.order, Policy.canonicalOrder)
  assert.deepEqual(payments.warnings, [])
  assert.equal(
    Policy.describe(payments).text,
    [
      `policy "payments", outermost first:`,
      `  1. fallback        replaces any typed failure that reaches it`,
      `  2. timeout         5s for the whole call`,
      `  3. hedge           another attempt after 2s, up to 2 in flight`,
      `  4. bulkhead        "payments": 10 at once, 20 queued`,
      `  5. retry           up to 3 attempts, backoff 10ms to 200ms, full jitter`,
      `  6. rateLimiter     "payments": Gcra`,
      `  7. circuitBreaker  "payments"`,
      `  8. attemptTimeout  1s per attempt`,
      `  9. call            the guarded effect`
    ].join("\n")
  )

  // A card declined twice, then charged.
  let attempts = 0
  const charge = Effect.suspend(() => (++attempts < 3 ? Effect.fail(new Declined()) : Effect.succeed("charged")))
  assert.equal(yield* charge.pipe(Policy.guard(payments)), "charged")

  const { bulkhead, rateLimiter, circuitBreaker, retry } = payments.components
  assert.equal((yield* Bulkhead.stats(bulkhead!)).admitted, 1) // one slot for the whole call
  assert.equal((yield* RateLimiter.stats(rateLimiter!)).admitted, 3) // one permit per attempt
  const breaker = yield* CircuitBreaker.stats(circuitBreaker!)
  assert.deepEqual([breaker.failures, breaker.successes], [2, 1]) // one outcome per attempt
  assert.equal((yield* Retry.stats(retry!)).attempts, 3)
  return Policy.describe(payments).text
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
