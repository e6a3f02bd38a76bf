/**
 * A bulkhead as a Layer service. Everything that uses the key shares one
 * instance, so the cap is joint: two features calling the same dependency
 * cannot together exceed `maxConcurrent`.
 */
import { Bulkhead } from "@bulwark/core"
import { Context, Effect, Fiber, Latch } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

class Payments extends Context.Service<Payments, Bulkhead.Bulkhead>()("app/Payments") {}
const PaymentsLive = Bulkhead.layer(Payments, { name: "payments", maxConcurrent: 2 })

// Two features, written apart from each other, both call the payments API.
const charge = (api: Latch.Latch) => api.await.pipe(Effect.as("charged"), Bulkhead.guard(Payments))
const refund = (api: Latch.Latch) => api.await.pipe(Effect.as("refunded"), Bulkhead.guard(Payments))

export const program = Effect.gen(function*() {
  const api = yield* Latch.make()
  const running = [
    yield* Effect.forkChild(charge(api), { startImmediately: true }),
    yield* Effect.forkChild(refund(api), { startImmediately: true })
  ]
  // One charge and one refund hold both permits of the shared cap.
  assert.equal((yield* Bulkhead.stats(Payments)).inFlight, 2)
  const refused = yield* Effect.flip(charge(api))
  assert.equal(refused.reason, "QueueFull")

  yield* api.open
  return yield* Fiber.joinAll(running)
}).pipe(Effect.provide(PaymentsLive)) // provided once: one bulkhead, closed and drained with the layer

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
