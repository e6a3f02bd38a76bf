/**
 * `Policy.layerConfig` is a policy service built from configuration: it
 * reads the settings at `path` (by default the policy's name) when the layer
 * is built, from whatever `ConfigProvider` is current. Operators change the
 * limits, the stages and even their order without a code change; a bad value
 * fails the layer with a typed error.
 */
import { InvalidOptions, Policy } from "@bulwark/core"
import { Config, ConfigProvider, Context, Effect, Layer } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

class Checkout extends Context.Service<Checkout, Policy.Policy<Policy.Rejection>>()("app/Checkout") {}

const CheckoutLive: Layer.Layer<Checkout, Config.ConfigError | InvalidOptions> = Policy.layerConfig(Checkout, {
  name: "checkout",
  path: ["shop", "checkout"]
})

// A configuration file in which the operators chose Effect's order: the retry inside the breaker.
const file = {
  shop: {
    checkout: {
      timeout: "3 seconds",
      order: "timeout, bulkhead, circuitBreaker, retry",
      bulkhead: { maxConcurrent: 16 },
      breaker: { consecutiveFailures: 5, openFor: "30 seconds" }, // the half-open keys take the breaker's defaults
      retry: { maxAttempts: 2, baseDelay: "10 millis" }
    }
  }
}
const ConfigLive = ConfigProvider.layer(ConfigProvider.fromUnknown(file))

export const program = Effect.gen(function*() {
  const checkout = yield* Checkout
  assert.deepEqual(checkout.order, ["timeout", "bulkhead", "circuitBreaker", "retry"])
  assert.deepEqual(checkout.warnings, [])
  assert.equal(yield* Effect.succeed("paid").pipe(Policy.guard(Checkout)), "paid")
  return Policy.describe(checkout).text
}).pipe(Effect.provide(CheckoutLive.pipe(Layer.provide(ConfigLive))))

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
