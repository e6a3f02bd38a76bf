/**
 * `Policy.check` names what is known to go wrong with an order, as typed
 * warnings. `Policy.make` logs them at warning level (the default), keeps
 * them to itself with `warnings: "ignore"`, or refuses them with
 * `warnings: "fail"`. An order that repeats a stage, leaves one out or lists
 * one that is not configured is never accepted.
 */
import { Bulkhead, CircuitBreaker, InvalidOptions, Policy, Retry } from "@bulwark/core"
import { Effect, Logger, References } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

const codes = (order: ReadonlyArray<Policy.Stage>, facts?: Parameters<typeof Policy.check>[1]) =>
  Policy.check(order, facts).map((warning) => warning.code)

export const program = Effect.gen(function*() {
  // Each warning, with the smallest order that causes it.
  assert.deepEqual(codes(["retry", "bulkhead"]), ["BulkheadInsideRetry"])
  assert.deepEqual(codes(["retry", "circuitBreaker"], { retryIsSchedule: true }), ["RetryIgnoresRetryAfter"])
  assert.deepEqual(codes(["circuitBreaker", "rateLimiter"]), ["BreakerBeforeAdmission"])
  assert.deepEqual(codes(["attemptTimeout", "circuitBreaker"]), ["AttemptTimeoutOutsideBreaker"])
  assert.deepEqual(codes(["attemptTimeout", "retry"]), ["AttemptTimeoutOutsideRetry"])
  assert.deepEqual(codes(["retry", "timeout"]), ["TimeoutInsideRetry"])
  assert.deepEqual(codes(["timeout", "fallback"]), ["FallbackNotOutermost"])
  assert.deepEqual(codes(["bulkhead", "hedge"]), ["HedgeInsideAdmission"])
  assert.deepEqual(codes(["timeout", "attemptTimeout"], { timeout: "1 second", attemptTimeout: "1 second" }), [
    "AttemptTimeoutNotShorter"
  ])
  assert.deepEqual(codes(Policy.canonicalOrder), [])

  // resilience4j's Spring Boot aspect order: retry outside the breaker, the bulkhead innermost.
  const bulkhead = yield* Bulkhead.make({ name: "orders", maxConcurrent: 4 })
  const circuitBreaker = yield* CircuitBreaker.make({ name: "orders", trip: CircuitBreaker.consecutive(5), openFor: "30 seconds" })
  const options = {
    name: "orders",
    bulkhead,
    circuitBreaker,
    retry: Retry.policy({ maxAttempts: 3 }),
    order: ["retry", "circuitBreaker", "bulkhead"]
  } as const

  // "log" (the default): one warning-level log line each, annotated with the code.
  const logged: Array<string> = []
  const capture = Logger.make((log) =>
    logged.push(`${log.logLevel} ${log.fiber.getRef(References.CurrentLogAnnotations)["bulwark.policy.warning"]}`)
  )
  const orders = yield* Policy.make(options).pipe(Effect.provide(Logger.layer([capture])))
  assert.deepEqual(logged, ["Warn BulkheadInsideRetry", "Warn BreakerBeforeAdmission"])
  assert.deepEqual(orders.warnings.map((w) => w.code), ["BulkheadInsideRetry", "BreakerBeforeAdmission"])
  assert.ok(Policy.describe(orders).text.includes("warning BreakerBeforeAdmission: circuitBreaker outside the bulkhead"))

  // "ignore": nothing logged, the warnings are still on the policy and in its description.
  logged.length = 0
  const quiet = yield* Policy.make({ ...options, warnings: "ignore" }).pipe(Effect.provide(Logger.layer([capture])))
  assert.deepEqual(logged, [])
  assert.equal(quiet.warnings.length, 2)

  // "fail": an InvalidOptions with one line per warning.
  const refused = yield* Effect.flip(Policy.make({ ...options, warnings: "fail" }))
  assert.ok(refused instanceof InvalidOptions)
  assert.deepEqual(refused.message.split("\n").map((line) => line.split(":").slice(0, 2).join(":")), [
    "order: BulkheadInsideRetry",
    "order: BreakerBeforeAdmission"
  ])

  // The one warning that is not about the order is reported under attemptTimeout.
  const durations = yield* Effect.flip(Policy.make({ name: "orders", timeout: "1 second", attemptTimeout: "1 second", warnings: "fail" }))
  assert.ok(durations.message.startsWith("attemptTimeout: AttemptTimeoutNotShorter: attemptTimeout (1s) is not shorter"))

  // Orders that are not orders of this policy.
  const bad = yield* Effect.flip(Policy.make({
    name: "orders",
    bulkhead,
    timeout: "1 second",
    retry: Retry.policy({}),
    order: ["retry", "retry", "circuitBreaker", "bulkhead"]
  }))
  assert.equal(bad.primitive, "Policy")
  assert.deepEqual(bad.message.split("\n"), [
    `order: "retry" appears more than once`,
    `order: "circuitBreaker" is listed but not configured`,
    `order: "timeout" is configured but missing from the order`
  ])
  const unknown = yield* Effect.flip(Policy.make({ name: "orders", timeout: "1 second", order: ["timeout", "cache" as Policy.Stage] }))
  assert.ok(unknown.message.startsWith(`order.1: Expected "fallback" | "timeout" | "hedge"`))
  return refused.message
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
