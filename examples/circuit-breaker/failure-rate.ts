/**
 * Trip policies can be combined: any one of them opens the circuit. Here the
 * circuit opens when half of the last 10 calls failed (once 10 calls were
 * seen), or when half of them were slower than 50 ms, even if they succeeded.
 */
import { CircuitBreaker } from "@bulwark/core"
import { Effect } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

const search = (mode: "ok" | "error" | "slow") =>
  mode === "ok" ? Effect.succeed("hits") : mode === "error" ? Effect.fail("5xx" as const) : Effect.sleep("60 millis").pipe(Effect.as("late hits"))

export const program = Effect.gen(function*() {
  const errors = yield* CircuitBreaker.make({
    name: "search-errors",
    trip: [
      CircuitBreaker.failureRate({ threshold: 0.5, minimumCalls: 10, window: 10 }),
      CircuitBreaker.slowCalls({ slowerThan: "50 millis", threshold: 0.5, minimumCalls: 10, window: 10 })
    ],
    openFor: "1 minute"
  })

  // 4 errors in 9 calls: below the minimum number of calls, nothing is decided yet.
  for (const mode of ["ok", "error", "ok", "error", "ok", "error", "ok", "error", "ok"] as const) {
    yield* Effect.exit(search(mode).pipe(CircuitBreaker.guard(errors)))
  }
  assert.equal((yield* CircuitBreaker.state(errors)).state, "Closed")
  // The 10th call is the 5th error: 5 of the last 10 calls failed, the circuit opens.
  yield* Effect.exit(search("error").pipe(CircuitBreaker.guard(errors)))
  assert.equal((yield* CircuitBreaker.state(errors)).state, "Open")

  // The same policies on a fresh breaker: successes that come too late trip it too.
  const slow = yield* CircuitBreaker.make({
    name: "search-latency",
    trip: CircuitBreaker.slowCalls({ slowerThan: "50 millis", threshold: 0.5, minimumCalls: 4, window: 4 }),
    openFor: "1 minute"
  })
  for (const mode of ["ok", "slow", "ok", "slow"] as const) {
    assert.ok((yield* search(mode).pipe(CircuitBreaker.guard(slow))).includes("hits"))
  }
  assert.equal((yield* CircuitBreaker.state(slow)).state, "Open")
  return "both opened"
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
