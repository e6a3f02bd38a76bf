/**
 * `Policy.config(path)` reads a policy's settings from the current
 * `ConfigProvider`, and `Policy.fromSettings` makes the policy and the
 * primitives it names, each named after the policy. With
 * `ConfigProvider.constantCase`, the environment variables are the setting's
 * path in constant case: `PAYMENTS_BULKHEAD_MAX_CONCURRENT`,
 * `PAYMENTS_BREAKER_OPEN_FOR`. Every section is one word and flat, so every
 * setting can come from the environment. Durations are text with a unit; the
 * order is a comma-separated list.
 */
import { Policy } from "@bulwark/core"
import { ConfigProvider, Duration, Effect } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

// In production: ConfigProvider.fromEnv() reads process.env. A literal environment keeps this example exact.
const env = {
  PAYMENTS_TIMEOUT: "5 seconds",
  PAYMENTS_ATTEMPT_TIMEOUT: "1 second",
  PAYMENTS_BULKHEAD_MAX_CONCURRENT: "10",
  PAYMENTS_BULKHEAD_MAX_QUEUE: "20",
  PAYMENTS_BULKHEAD_QUEUE_TIMEOUT: "500 millis",
  PAYMENTS_RETRY_MAX_ATTEMPTS: "3",
  PAYMENTS_RETRY_BASE_DELAY: "50 millis",
  PAYMENTS_RETRY_MAX_DELAY: "1 second",
  PAYMENTS_RETRY_JITTER: "equal",
  PAYMENTS_LIMITER_ALGORITHM: "gcra",
  PAYMENTS_LIMITER_LIMIT: "100",
  PAYMENTS_LIMITER_PER: "1 second",
  PAYMENTS_LIMITER_BURST: "10",
  PAYMENTS_BREAKER_CONSECUTIVE_FAILURES: "5",
  PAYMENTS_BREAKER_FAILURE_RATE: "0.5",
  PAYMENTS_BREAKER_MINIMUM_CALLS: "20",
  PAYMENTS_BREAKER_WINDOW: "1 minute",
  PAYMENTS_BREAKER_OPEN_FOR: "30 seconds",
  PAYMENTS_WARNINGS: "fail"
}
const provider = ConfigProvider.fromEnv({ env }).pipe(ConfigProvider.constantCase)

export const program = Effect.gen(function*() {
  const settings = yield* Policy.config("payments")
  assert.equal(settings.bulkhead?.maxConcurrent, 10) // a number, decoded from the text "10"
  assert.equal(Duration.toMillis(settings.retry!.baseDelay!), 50)
  assert.equal(settings.breaker?.failureRate, 0.5) // the failure-rate trip's threshold

  const payments = yield* Policy.fromSettings("payments", settings)
  assert.equal(
    Policy.describe(payments).text,
    [
      `policy "payments", outermost first:`,
      `  1. timeout         5s for the whole call`,
      `  2. bulkhead        "payments": 10 at once, 20 queued`,
      `  3. retry           up to 3 attempts, backoff 50ms to 1s, equal jitter`,
      `  4. rateLimiter     "payments": Gcra`,
      `  5. circuitBreaker  "payments"`,
      `  6. attemptTimeout  1s per attempt`,
      `  7. call            the guarded effect`
    ].join("\n")
  )
  assert.equal(payments.components.bulkhead?.name, "payments")
  assert.deepEqual(payments.components.rateLimiter?.algorithm, { _tag: "Gcra", rate: 100, perMillis: 1000, burst: 10 })
  assert.equal(yield* Effect.succeed("charged").pipe(Policy.guard(payments)), "charged")
  return Policy.describe(payments).text
}).pipe(
  Effect.provideService(ConfigProvider.ConfigProvider, provider),
  Effect.scoped
)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
