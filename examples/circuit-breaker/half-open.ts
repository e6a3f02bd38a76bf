/**
 * After the open time the circuit is half-open: a bounded number of probes
 * run at once and every other call is rejected at once (reason
 * `ProbesBusy`), never queued. Two successful probes close the circuit.
 */
import { CircuitBreaker } from "@bulwark/core"
import { Effect, Fiber, Latch } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

export const program = Effect.gen(function*() {
  const inventory = yield* CircuitBreaker.make({
    name: "inventory",
    trip: CircuitBreaker.consecutive(1),
    openFor: "50 millis",
    halfOpen: { probes: 2, successesToClose: 2, probeTimeout: "10 seconds" }
  })
  yield* Effect.exit(Effect.fail("down").pipe(CircuitBreaker.guard(inventory)))
  yield* Effect.sleep("50 millis")

  // Two probes start and hang on the dependency.
  const reply = yield* Latch.make()
  const probes = yield* Effect.forEach([1, 2], () =>
    Effect.forkChild(reply.await.pipe(Effect.as("stock"), CircuitBreaker.guard(inventory)), { startImmediately: true }))
  assert.equal((yield* CircuitBreaker.state(inventory)).probing, 2)

  // A third call is not queued behind them: it is rejected at once.
  const busy = yield* Effect.flip(Effect.succeed("stock").pipe(CircuitBreaker.guard(inventory)))
  assert.equal(busy._tag === "CircuitOpen" && busy.reason, "ProbesBusy")

  // Both probes succeed: the circuit closes.
  yield* reply.open
  assert.deepEqual(yield* Fiber.joinAll(probes), ["stock", "stock"])
  assert.equal((yield* CircuitBreaker.state(inventory)).state, "Closed")
  return (yield* CircuitBreaker.stats(inventory)).rejected
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
