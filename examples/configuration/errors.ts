/**
 * Two kinds of typed errors. A value that breaks a rule of the settings
 * schema, or a rule between keys of a section, is a `ConfigError` naming the
 * key's path and the rule (the first bad key found). Settings that decode but
 * cannot make a policy (an order naming a stage that is not configured, a
 * retry whose `maxDelay` is below its `baseDelay`, a warning with
 * `warnings: "fail"`) are an `InvalidOptions` from `fromSettings`.
 */
import { Policy } from "@bulwark/core"
import { Config, ConfigProvider, Effect } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

const read = (env: Record<string, string>) =>
  Policy.config("payments").parse(ConfigProvider.fromEnv({ env }).pipe(ConfigProvider.constantCase))

/** The rule and the path of a ConfigError, as its SchemaError says them. */
const configError = (env: Record<string, string>) =>
  Effect.map(Effect.flip(read(env)), (error) => {
    assert.equal(error._tag, "ConfigError")
    return error.cause.message.split("\n").map((line) => line.trim())
  })

export const program = Effect.gen(function*() {
  assert.deepEqual(yield* configError({ PAYMENTS_TIMEOUT: "5" }), [
    `Expected a finite duration such as "2 seconds" or "500 millis", got "5"`,
    `at ["payments"]["timeout"]`
  ])
  assert.deepEqual(yield* configError({ PAYMENTS_BULKHEAD_MAX_CONCURRENT: "0" }), [
    "Expected an integer >= 1, got 0",
    `at ["payments"]["bulkhead"]["maxConcurrent"]`
  ])
  assert.deepEqual(yield* configError({ PAYMENTS_RETRY_JITTER: "random" }), [
    `Expected "decorrelated" | "full" | "equal" | "none"`,
    `at ["payments"]["retry"]["jitter"]`
  ])
  assert.deepEqual(yield* configError({ PAYMENTS_HEDGE_AFTER: "50 millis" }), [
    "Missing key",
    `at ["payments"]["hedge"]["maxAttempts"]`
  ])
  assert.deepEqual(yield* configError({ PAYMENTS_ORDER: "timeout, cache" }), [
    `Expected "fallback" | "timeout" | "hedge" | "bulkhead" | "retry" | "rateLimiter" | "circuitBreaker" | "attemptTimeout"`,
    `at ["payments"]["order"][1]`
  ])
  // Rules between the keys of a section: the failure-rate trip needs minimumCalls and window (and they
  // need it); a window limiter has no burst.
  assert.deepEqual(yield* configError({ PAYMENTS_BREAKER_FAILURE_RATE: "0.5", PAYMENTS_BREAKER_OPEN_FOR: "30 seconds" }), [
    "Expected minimumCalls with failureRate",
    `at ["payments"]["breaker"]["minimumCalls"]`
  ])
  assert.deepEqual(
    yield* configError({ PAYMENTS_BREAKER_CONSECUTIVE_FAILURES: "5", PAYMENTS_BREAKER_WINDOW: "100", PAYMENTS_BREAKER_OPEN_FOR: "30 seconds" }),
    ["Expected failureRate: minimumCalls and window belong to it", `at ["payments"]["breaker"]["window"]`]
  )
  assert.deepEqual(yield* configError({ PAYMENTS_BREAKER_OPEN_FOR: "30 seconds" }), [
    "Expected consecutiveFailures or failureRate (or both)",
    `at ["payments"]["breaker"]["consecutiveFailures"]`
  ])
  assert.deepEqual(
    yield* configError({
      PAYMENTS_LIMITER_ALGORITHM: "fixed-window",
      PAYMENTS_LIMITER_LIMIT: "100",
      PAYMENTS_LIMITER_PER: "1 minute",
      PAYMENTS_LIMITER_BURST: "10"
    }),
    ["Expected no burst with fixed-window: a window has a limit only", `at ["payments"]["limiter"]["burst"]`]
  )
  // Nothing at all under the path is an error too; Config.withDefault makes the whole policy optional.
  assert.deepEqual(yield* configError({}), ["Expected object", `at ["payments"]`])
  const none = yield* Policy.config("payments").pipe(Config.withDefault({})).parse(ConfigProvider.fromEnv({ env: {} }))
  assert.deepEqual(none, {})

  // Decoded, but not a policy: InvalidOptions, named after the primitive that refused.
  const invalid = (env: Record<string, string>) =>
    read(env).pipe(Effect.flatMap((settings) => Effect.flip(Policy.fromSettings("payments", settings))))
  const unconfigured = yield* invalid({ PAYMENTS_TIMEOUT: "1 second", PAYMENTS_ORDER: "bulkhead, timeout" })
  assert.deepEqual([unconfigured.primitive, unconfigured.message], ["Policy", `order: "bulkhead" is listed but not configured`])
  const delays = yield* invalid({ PAYMENTS_RETRY_BASE_DELAY: "5 seconds", PAYMENTS_RETRY_MAX_DELAY: "1 second" })
  assert.deepEqual([delays.primitive, delays.message], ["Retry", "max: Expected a duration >= base (5s), got 1s"])
  const strict = yield* invalid({ PAYMENTS_TIMEOUT: "1 second", PAYMENTS_ATTEMPT_TIMEOUT: "2 seconds", PAYMENTS_WARNINGS: "fail" })
  assert.equal(
    strict.message,
    "attemptTimeout: AttemptTimeoutNotShorter: attemptTimeout (2s) is not shorter than timeout (1s), so it never fires"
  )
  return strict.message
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
