/**
 * `Policy.layer` builds a policy as a service. Primitives given as service
 * keys are resolved when the layer is built: the layer requires them, the
 * guarded calls do not, and the policy guards with the very instances other
 * code reaches through those keys. A primitive may also be given as the
 * effect that makes it (`Bulkhead.make({ ... })`): it is made with the
 * policy, in the layer's scope, and belongs to the policy alone.
 * `Policy.guard`, `stats` and `events` accept the policy's key as well as the
 * policy.
 */
import { Bulkhead, BulkheadFull, CircuitBreaker, CircuitOpen, InvalidOptions, Policy, Retry, TimeoutExceeded } from "@bulwark/core"
import { Context, Data, Effect, Layer } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

class Declined extends Data.TaggedError("Declined") {}

class PaymentsPool extends Context.Service<PaymentsPool, Bulkhead.Bulkhead>()("app/PaymentsPool") {}
class PaymentsBreaker extends Context.Service<PaymentsBreaker, CircuitBreaker.CircuitBreaker>()("app/PaymentsBreaker") {}
class Payments extends Context.Service<Payments, Policy.Policy<BulkheadFull | CircuitOpen | TimeoutExceeded>>()("app/Payments") {}
class Search extends Context.Service<Search, Policy.Policy<BulkheadFull>>()("app/Search") {}

// The keys are requirements of the layer...
const PaymentsLive: Layer.Layer<Payments, InvalidOptions, PaymentsPool | PaymentsBreaker> = Policy.layer(Payments, {
  name: "payments",
  timeout: "2 seconds",
  bulkhead: PaymentsPool,
  retry: Retry.policy({ maxAttempts: 3, base: "10 millis" }),
  circuitBreaker: PaymentsBreaker
})

const AppLive = PaymentsLive.pipe(Layer.provideMerge(Layer.mergeAll(
  Bulkhead.layer(PaymentsPool, { name: "payments", maxConcurrent: 10 }),
  CircuitBreaker.layer(PaymentsBreaker, { name: "payments", trip: CircuitBreaker.consecutive(5), openFor: "30 seconds" })
)))

// A bulkhead of its own, made with the policy and closed with the layer: nothing to provide.
const SearchLive: Layer.Layer<Search, InvalidOptions> = Policy.layer(Search, {
  name: "search",
  bulkhead: Bulkhead.make({ name: "search", maxConcurrent: 8 })
})

// ... and a guarded call needs only the policy's key.
let attempts = 0
const charge = Effect.suspend(() => (++attempts < 2 ? Effect.fail(new Declined()) : Effect.succeed("charged")))
const checkout: Effect.Effect<string, Declined | BulkheadFull | CircuitOpen | TimeoutExceeded, Payments> = charge.pipe(
  Policy.guard(Payments)
)

export const program = Effect.gen(function*() {
  assert.equal(yield* checkout, "charged")
  const policy = yield* Payments
  assert.equal(policy.components.bulkhead, yield* PaymentsPool) // the same instance, shared
  assert.equal((yield* Bulkhead.stats(PaymentsPool)).admitted, 1)
  assert.equal((yield* CircuitBreaker.stats(PaymentsBreaker)).failures, 1)
  const stats = yield* Policy.stats(Payments)
  assert.deepEqual([stats.name, stats.calls, stats.succeeded], ["payments", 1, 1])

  assert.equal(yield* Effect.succeed("results").pipe(Policy.guard(Search)), "results")
  const search = yield* Search
  assert.equal(search.components.bulkhead?.name, "search")
  assert.equal((yield* Bulkhead.stats(search.components.bulkhead!)).admitted, 1)
  return stats
}).pipe(Effect.provide(Layer.merge(AppLive, SearchLive)))

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
