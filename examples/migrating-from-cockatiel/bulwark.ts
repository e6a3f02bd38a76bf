/**
 * The same payments client with Bulwark: the same limits, composed by
 * `Policy.make` in its canonical order (bulkhead, retry, circuit breaker,
 * attempt timeout: the order of the cockatiel `wrap`). The gateway's promise
 * is wrapped once with `Effect.tryPromise`, which hands it an `AbortSignal`
 * that is aborted when the call is interrupted; every failure is a value in
 * the error type.
 */
import { Bulkhead, CircuitBreaker, Policy, Retry } from "@bulwark/core"
import { Data, Effect, Fiber, Stream } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"
import { expected, Gateway, GatewayError, line, plan, summary } from "./gateway.ts"

class PaymentFailed extends Data.TaggedError("PaymentFailed")<{ readonly status: number }> {}

export const program = Effect.gen(function*() {
  const gateway = new Gateway(plan)
  const chargeCard = (order: string) =>
    Effect.tryPromise({
      try: (signal) => gateway.charge(order, signal),
      catch: (error) => new PaymentFailed({ status: error instanceof GatewayError ? error.status : 500 })
    })

  const breaker = yield* CircuitBreaker.make({ name: "payments", trip: CircuitBreaker.consecutive(3), openFor: "100 millis" })
  const payments = yield* Policy.make({
    name: "payments",
    bulkhead: yield* Bulkhead.make({ name: "payments", maxConcurrent: 2, maxQueue: 1 }),
    retry: Retry.policy({
      maxAttempts: 3, // attempts, the first included
      base: "10 millis",
      max: "1 second",
      jitter: "none",
      while: (error: { readonly _tag: string }) => error._tag !== "CircuitOpen"
    }),
    circuitBreaker: breaker,
    attemptTimeout: "50 millis"
  })

  const circuit = yield* Effect.forkChild(
    CircuitBreaker.transitions(breaker).pipe(Stream.take(3), Stream.runCollect),
    { startImmediately: true }
  )

  // E = PaymentFailed | TimeoutExceeded | CircuitOpen | BulkheadFull: the compiler lists what can go wrong.
  const charge = (order: string) =>
    chargeCard(order).pipe(
      Policy.guard(payments),
      Effect.catchTags({
        TimeoutExceeded: () => Effect.succeed("timed out"),
        CircuitOpen: () => Effect.succeed("circuit open"),
        BulkheadFull: () => Effect.succeed("bulkhead full")
      }),
      Effect.map((outcome) => line(gateway, order, outcome))
    )

  const lines = [yield* charge("A"), yield* charge("B"), yield* charge("C")]
  yield* Effect.sleep("120 millis") // the circuit's open time passes
  lines.push(yield* charge("D"))
  lines.push(...yield* Effect.forEach(["E", "F", "G", "H"], charge, { concurrency: "unbounded" }))

  const states = ["Closed", ...(yield* Fiber.join(circuit)).map((t) => t.to)]
  const retries = (yield* Retry.stats(payments.components.retry!)).retries
  const transcript = [...lines, ...summary(gateway, states, retries)]
  assert.deepEqual(transcript, expected)
  return transcript
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log((await Effect.runPromise(program)).join("\n"))
