/**
 * Five failures in a row open the circuit: calls then fail at once with a
 * typed `CircuitOpen` that says when to come back. After `openFor`, one probe
 * runs; its success closes the circuit again.
 */
import { CircuitBreaker } from "@bulwark/core"
import { Data, Duration, Effect, Ref } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

class PaymentsDown extends Data.TaggedError("PaymentsDown") {}

export const program = Effect.gen(function*() {
  const payments = yield* CircuitBreaker.make({
    name: "payments",
    trip: CircuitBreaker.consecutive(5),
    openFor: "100 millis"
  })
  const healthy = yield* Ref.make(false)
  const calls = yield* Ref.make(0)
  const charge = Ref.update(calls, (n) => n + 1).pipe(
    Effect.andThen(Ref.get(healthy)),
    Effect.flatMap((ok) => (ok ? Effect.succeed("charged") : Effect.fail(new PaymentsDown()))),
    CircuitBreaker.guard(payments)
  )

  // Five failures reach the dependency, then the circuit opens.
  for (let i = 0; i < 5; i++) assert.equal((yield* Effect.flip(charge))._tag, "PaymentsDown")
  assert.equal((yield* CircuitBreaker.state(payments)).state, "Open")

  // While open, calls fail fast without touching the dependency.
  const rejected = yield* Effect.flip(charge)
  assert.equal(rejected._tag, "CircuitOpen")
  if (rejected._tag === "CircuitOpen") {
    assert.equal(rejected.reason, "Open")
    assert.ok(Duration.toMillis(rejected.retryAfter) <= 100)
  }
  assert.equal(yield* Ref.get(calls), 5)

  // The dependency recovers; after the open time one probe goes through and closes the circuit.
  yield* Ref.set(healthy, true)
  yield* Effect.sleep("100 millis")
  assert.equal(yield* charge, "charged")
  assert.equal((yield* CircuitBreaker.state(payments)).state, "Closed")

  const stats = yield* CircuitBreaker.stats(payments)
  assert.deepEqual([stats.failures, stats.successes, stats.rejected.Open, stats.openings], [5, 1, 1, 1])
  return stats
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
