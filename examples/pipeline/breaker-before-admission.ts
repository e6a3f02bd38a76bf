/**
 * Why the bulkhead and the rate limiter are checked before the circuit
 * breaker. With the breaker outside them (warning `BreakerBeforeAdmission`),
 * it counts every rejection of theirs as a failure of the dependency: a
 * saturated bulkhead alone opens the circuit, although the dependency never
 * failed. In the canonical order the same refusals leave the breaker alone.
 */
import { Bulkhead, CircuitBreaker, Policy } from "@bulwark/core"
import { Effect, Fiber } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

/** A one-slot bulkhead and a breaker that opens after 2 failures in a row, in the given order. */
const stock = (order: ReadonlyArray<Policy.Stage> | undefined) =>
  Effect.gen(function*() {
    const bulkhead = yield* Bulkhead.make({ name: "stock", maxConcurrent: 1 })
    const circuitBreaker = yield* CircuitBreaker.make({ name: "stock", trip: CircuitBreaker.consecutive(2), openFor: "1 minute" })
    const policy = yield* Policy.make({ name: "stock", bulkhead, circuitBreaker, order, warnings: "ignore" })
    return { policy, circuitBreaker }
  })

/** Fills the only slot with a slow call, sends 3 more, and returns what they got and the circuit's state. */
const saturate = ({ circuitBreaker, policy }: Effect.Success<ReturnType<typeof stock>>) =>
  Effect.gen(function*() {
    const slow = yield* Effect.forkChild(Effect.never.pipe(Policy.guard(policy)), { startImmediately: true })
    const refused: Array<string> = []
    for (let i = 0; i < 3; i++) refused.push((yield* Effect.flip(Effect.succeed(7).pipe(Policy.guard(policy))))._tag)
    yield* Fiber.interrupt(slow)
    return { refused, state: (yield* CircuitBreaker.state(circuitBreaker)).state }
  })

export const program = Effect.gen(function*() {
  const breakerFirst = yield* stock(["circuitBreaker", "bulkhead"])
  assert.deepEqual(breakerFirst.policy.warnings.map((w) => w.code), ["BreakerBeforeAdmission"])
  // Two BulkheadFull opened the circuit; the third call was refused by the breaker.
  assert.deepEqual(yield* saturate(breakerFirst), { refused: ["BulkheadFull", "BulkheadFull", "CircuitOpen"], state: "Open" })

  const canonical = yield* stock(undefined)
  assert.deepEqual(canonical.policy.order, ["bulkhead", "circuitBreaker"])
  assert.deepEqual(yield* saturate(canonical), { refused: ["BulkheadFull", "BulkheadFull", "BulkheadFull"], state: "Closed" })
  return breakerFirst.policy.warnings[0].message
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
