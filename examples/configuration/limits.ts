/**
 * What to know when writing settings, shown so that the page cannot outlive
 * it.
 *
 * 1. With `ConfigProvider.constantCase`, a path segment of two words is never
 *    found (`Policy.config("checkoutPayments")`): use one word, or a path of
 *    one-word segments.
 * 2. A variable the settings do not know is ignored, a misspelt one included.
 * 3. Only the first bad key is reported.
 * 4. Even in JSON, a duration is text with a unit and the order is one
 *    comma-separated string.
 */
import { Policy } from "@bulwark/core"
import { ConfigProvider, Effect } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

const env = (vars: Record<string, string>) => ConfigProvider.fromEnv({ env: vars }).pipe(ConfigProvider.constantCase)

/** The lines of the ConfigError that reading `path` from `provider` fails with. */
const refused = (path: string | ReadonlyArray<string>, provider: ConfigProvider.ConfigProvider) =>
  Effect.map(Effect.flip(Policy.config(path).parse(provider)), (error) => error.cause.message.split("\n").map((l) => l.trim()))

export const program = Effect.gen(function*() {
  // 1. CHECKOUT_PAYMENTS_TIMEOUT is there, but "checkoutPayments" is looked for as one group, never found.
  const vars = { CHECKOUT_PAYMENTS_TIMEOUT: "2 seconds", CHECKOUT_PAYMENTS_BULKHEAD_MAX_CONCURRENT: "10" }
  assert.deepEqual(yield* refused("checkoutPayments", env(vars)), ["Expected object", `at ["checkoutPayments"]`])
  const segments = yield* Policy.config(["checkout", "payments"]).parse(env(vars))
  assert.deepEqual(Object.keys(segments), ["timeout", "bulkhead"])
  const oneWord = yield* Policy.config("checkout").parse(env({ CHECKOUT_TIMEOUT: "2 seconds" }))
  assert.deepEqual(Object.keys(oneWord), ["timeout"])

  // 2. A misspelt variable (here the section's name spelt out) is not an error: the policy has no breaker.
  const typo = yield* Policy.config("payments").parse(env({
    PAYMENTS_TIMEOUT: "2 seconds",
    PAYMENTS_CIRCUIT_BREAKER_CONSECUTIVE_FAILURES: "5",
    PAYMENTS_CIRCUIT_BREAKER_OPEN_FOR: "30 seconds"
  }))
  assert.deepEqual(Object.keys(typo), ["timeout"])

  // 3. Two bad values, one error: fix them one at a time.
  assert.deepEqual(yield* refused("payments", env({ PAYMENTS_TIMEOUT: "5", PAYMENTS_BULKHEAD_MAX_CONCURRENT: "0" })), [
    `Expected a finite duration such as "2 seconds" or "500 millis", got "5"`,
    `at ["payments"]["timeout"]`
  ])

  // 4. JSON: a number is no duration, an array no order.
  const json = (payments: object) => ConfigProvider.fromUnknown({ payments })
  assert.deepEqual(yield* refused("payments", json({ timeout: 500 })), [
    `Expected a finite duration such as "2 seconds" or "500 millis", got "500"`,
    `at ["payments"]["timeout"]`
  ])
  assert.deepEqual(yield* refused("payments", json({ timeout: "1 second", order: ["timeout"] })), [
    "Expected string",
    `at ["payments"]["order"]`
  ])
  const ordered = yield* Policy.config("payments").parse(json({ timeout: "1 second", order: "timeout" }))
  assert.deepEqual(ordered.order, ["timeout"])
  return Object.keys(segments)
})

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
