/**
 * Why the settings' sections are one word and flat, and why no key is a
 * prefix of another at a word boundary. Effect's environment provider finds
 * the keys of a group by splitting variable names on `_`.
 *
 * 1. A group whose name has two words is never found: `P_CIRCUIT_BREAKER_...`
 *    lists a group `CIRCUIT`, not `CIRCUIT_BREAKER`. Hence the sections
 *    `breaker` and `limiter`, and a flat `failureRate` (a ratio) next to
 *    `minimumCalls` and `window` instead of a `failureRate` group. Keys of
 *    several words are fine: they are looked up whole.
 * 2. With `max` next to `maxAttempts`, setting only `P_RETRY_MAX_ATTEMPTS`
 *    makes `P_RETRY_MAX` a group, and a group is not a value: reading `max`
 *    fails. Hence the retry's `baseDelay` and `maxDelay`.
 */
import { Policy } from "@bulwark/core"
import { Config, ConfigProvider, Effect, Schema } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

const env = (vars: Record<string, string>) => ConfigProvider.fromEnv({ env: vars }).pipe(ConfigProvider.constantCase)

// 1. A settings shape with a two-word section: being optional, it is silently missed.
const TwoWords = Schema.Struct({
  timeout: Schema.optionalKey(Schema.String),
  circuitBreaker: Schema.optionalKey(Schema.Struct({ openFor: Schema.String }))
})

// 2. A settings shape with the clash: `max` and `maxAttempts`.
const Clashing = Schema.Struct({
  retry: Schema.Struct({ max: Schema.optionalKey(Schema.String), maxAttempts: Schema.optionalKey(Schema.String) })
})

export const program = Effect.gen(function*() {
  const missed = yield* Config.schema(TwoWords, "p").parse(env({ P_TIMEOUT: "1 second", P_CIRCUIT_BREAKER_OPEN_FOR: "30 seconds" }))
  assert.deepEqual(missed, { timeout: "1 second" })

  // The real settings: a one-word section, every key of it found.
  const breaker = yield* Policy.config("p").parse(env({
    P_BREAKER_FAILURE_RATE: "0.5",
    P_BREAKER_MINIMUM_CALLS: "20",
    P_BREAKER_WINDOW: "100",
    P_BREAKER_OPEN_FOR: "30 seconds"
  }))
  assert.deepEqual(Object.keys(breaker.breaker ?? {}), ["failureRate", "minimumCalls", "window", "openFor"])

  const clash = yield* Effect.flip(Config.schema(Clashing, "p").parse(env({ P_RETRY_MAX_ATTEMPTS: "3" })))
  assert.equal(clash.cause.message, `Expected string\n  at ["p"]["retry"]["max"]`)

  // The real settings: each key can be set alone.
  const attempts = yield* Policy.config("p").parse(env({ P_RETRY_MAX_ATTEMPTS: "3" }))
  assert.deepEqual(attempts.retry, { maxAttempts: 3 })
  const delay = yield* Policy.config("p").parse(env({ P_RETRY_MAX_DELAY: "1 second" }))
  assert.deepEqual(Object.keys(delay.retry ?? {}), ["maxDelay"])
  return clash.cause.message
})

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
