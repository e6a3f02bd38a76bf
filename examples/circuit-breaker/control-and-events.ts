/**
 * Operators can isolate a circuit (reject everything until reset) or
 * disable it (let everything through, record nothing). Every state change is
 * on the `transitions` stream.
 */
import { CircuitBreaker } from "@bulwark/core"
import { Effect, Fiber, Stream } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

export const program = Effect.gen(function*() {
  const ledger = yield* CircuitBreaker.make({ name: "ledger", trip: CircuitBreaker.consecutive(3), openFor: "1 minute" })
  const seen = yield* Effect.forkChild(
    CircuitBreaker.transitions(ledger).pipe(Stream.take(4), Stream.runCollect),
    { startImmediately: true }
  )

  yield* CircuitBreaker.isolate(ledger) // maintenance window
  const refused = yield* Effect.flip(Effect.succeed("posted").pipe(CircuitBreaker.guard(ledger)))
  assert.equal(refused._tag === "CircuitOpen" && refused.reason, "Isolated")

  yield* CircuitBreaker.reset(ledger)
  yield* CircuitBreaker.disable(ledger) // e.g. while the breaker misbehaves: calls pass, nothing is recorded
  for (let i = 0; i < 5; i++) yield* Effect.exit(Effect.fail("boom").pipe(CircuitBreaker.guard(ledger)))
  assert.equal((yield* CircuitBreaker.state(ledger)).state, "Disabled")
  yield* CircuitBreaker.reset(ledger)

  const transitions = (yield* Fiber.join(seen)).map((t) => `${t.from} -> ${t.to}`)
  assert.deepEqual(transitions, ["Closed -> Isolated", "Isolated -> Closed", "Closed -> Disabled", "Disabled -> Closed"])
  return transitions
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
