/**
 * The same exchange-rate client with Bulwark: a failure-rate circuit breaker,
 * a timeout on each call inside it (so a timeout counts as a failure, as in
 * opossum) and a fallback outside everything, composed by `Policy.make`. The
 * API's promise gets an `AbortSignal` from `Effect.tryPromise`, aborted when
 * the timeout interrupts the call.
 */
import { CircuitBreaker, CircuitOpen, Policy, TimeoutExceeded } from "@bulwark/core"
import { Data, Effect, Fiber, Stream } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"
import { cachedRate, expected, plan, RatesApi, RatesError } from "./rates.ts"

class RatesUnavailable extends Data.TaggedError("RatesUnavailable")<{ readonly status: number }> {}

export const program = Effect.gen(function*() {
  const api = new RatesApi(plan)
  const fetchRate = Effect.tryPromise({
    try: (signal) => api.fetchRate(signal),
    catch: (error) => new RatesUnavailable({ status: error instanceof RatesError ? error.status : 500 })
  }).pipe(Effect.map((rate) => rate.toFixed(2)))

  const breaker = yield* CircuitBreaker.make({
    name: "rates",
    trip: CircuitBreaker.failureRate({ threshold: 0.5, minimumCalls: 4, window: "1 second" }),
    openFor: "100 millis"
  })
  // Every failure is a typed value: which one it was is its class.
  const why = (error: unknown) =>
    error instanceof TimeoutExceeded ? "timeout" : error instanceof CircuitOpen ? "circuit open" : "error"
  const rates = yield* Policy.make({
    name: "rates",
    fallback: (error) => Effect.succeed(`${cachedRate} (cached: ${why(error)})`),
    circuitBreaker: breaker,
    attemptTimeout: "30 millis"
  })

  const circuit = yield* Effect.forkChild(
    CircuitBreaker.transitions(breaker).pipe(Stream.take(3), Stream.runCollect),
    { startImmediately: true }
  )

  const lines: Array<string> = []
  for (const call of [1, 2, 3, 4, 5]) lines.push(`call ${call}: ${yield* fetchRate.pipe(Policy.guard(rates))}`) // E = never
  yield* Effect.sleep("110 millis") // the circuit's open time passes
  lines.push(`call 6: ${yield* fetchRate.pipe(Policy.guard(rates))}`)

  const states = ["Closed", ...(yield* Fiber.join(circuit)).map((t) => t.to)]
  const p = yield* Policy.stats(rates) // cumulative counters
  const b = yield* CircuitBreaker.stats(breaker)
  const fallbacks = Object.values(p.fallbacks).reduce((sum, n) => sum + n, 0)
  lines.push(
    `circuit: ${states.join(" -> ")}`,
    `${p.calls} calls: ${b.successes} succeeded, ${b.failures} failed (${p.fallbacks.TimeoutExceeded} timed out), ${b.rejected.Open} rejected, ${fallbacks} answered by the fallback`
  )
  assert.deepEqual(lines, expected)
  // The timed-out request was aborted: the API stopped working on it.
  assert.deepEqual([api.requests, api.answered, api.failed, api.aborted], [5, 2, 2, 1])
  return [...lines, `rates API: ${api.requests} requests, ${api.answered} answered, ${api.failed} failed, ${api.aborted} aborted`]
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log((await Effect.runPromise(program)).join("\n"))
