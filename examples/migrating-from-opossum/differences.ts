/**
 * Three behaviours that change when you port an opossum breaker, each run
 * through both libraries against the same promise-returning dependency.
 *
 * 1. A timeout does not stop opossum's action, and frees its `capacity`
 *    slot at once: with `capacity: 1`, two requests end up running. Bulwark
 *    interrupts the call (its `AbortSignal` is aborted) before the slot is
 *    given back.
 * 2. opossum keeps its rolling window when a probe closes the circuit: the
 *    old failures are still counted, and the next failure opens it again.
 *    Bulwark starts every closed period with empty windows.
 * 3. opossum counts a `capacity` rejection (`ESEMLOCKED`) as a failure of
 *    the dependency: a healthy dependency can open the circuit. A Bulwark
 *    bulkhead outside the breaker refuses calls the breaker never sees.
 */
import { Bulkhead, CircuitBreaker, Timeout } from "@bulwark/core"
import CircuitBreakerOpossum from "opossum"
import { Data, Effect, Fiber } from "effect"
import assert from "node:assert/strict"
import { setTimeout as sleep } from "node:timers/promises"
import { fileURLToPath } from "node:url"

// The dependency: answers after `ms` (stopping at once if its signal is aborted), or fails with a 503.
let running = 0
let peak = 0
const answer = (ms: number, signal?: AbortSignal) =>
  new Promise<string>((resolve, reject) => {
    peak = Math.max(peak, ++running)
    const onAbort = () => {
      running--
      clearTimeout(timer)
      reject(signal!.reason)
    }
    const timer = setTimeout(() => {
      running--
      signal?.removeEventListener("abort", onAbort)
      resolve("ok")
    }, ms)
    signal?.addEventListener("abort", onAbort, { once: true })
  })
const unavailable = () => Promise.reject(new Error("503"))
class Failed extends Data.TaggedError("Failed")<{ readonly cause: unknown }> {}
const fromPromise = <A>(f: (signal: AbortSignal) => Promise<A>) =>
  Effect.tryPromise({ try: f, catch: (cause) => new Failed({ cause }) })
const stateOf = (breaker: CircuitBreakerOpossum<Array<unknown>, unknown>) =>
  breaker.opened ? "Open" : breaker.halfOpen ? "HalfOpen" : "Closed"

// 1. capacity 1 and a 20 ms timeout; a 100 ms request, then another 30 ms later.
const capacityOpossum = async () => {
  peak = 0
  const breaker = new CircuitBreakerOpossum(() => answer(100), { timeout: 20, capacity: 1, errorThresholdPercentage: 100 })
  const first = breaker.fire().catch((e: { code?: string }) => e.code)
  await sleep(30)
  const second = breaker.fire().catch((e: { code?: string }) => e.code)
  assert.deepEqual(await Promise.all([first, second]), ["ETIMEDOUT", "ETIMEDOUT"])
  await sleep(100) // both requests run to their end, unobserved
  assert.equal(running, 0)
  breaker.shutdown()
  return peak
}

const capacityBulwark = Effect.gen(function*() {
  peak = 0
  const pool = yield* Bulkhead.make({ name: "rates", maxConcurrent: 1 })
  const call = fromPromise((signal) => answer(100, signal)).pipe(Timeout.guard("20 millis"), Bulkhead.guard(pool))
  const first = yield* Effect.forkChild(Effect.flip(call), { startImmediately: true })
  yield* Effect.sleep("30 millis")
  const second = yield* Effect.flip(call)
  assert.deepEqual([(yield* Fiber.join(first))._tag, second._tag], ["TimeoutExceeded", "TimeoutExceeded"])
  assert.equal(running, 0) // both were aborted
  return peak
}).pipe(Effect.scoped)

// 2. Open after 50% of 2 calls failed; 20 ms open; a probe closes the circuit; then one failure.
const reopenOpossum = async () => {
  const plan = [unavailable, unavailable, () => answer(0), unavailable]
  const breaker = new CircuitBreakerOpossum(() => plan.shift()!(), {
    errorThresholdPercentage: 50,
    volumeThreshold: 2,
    rollingCountTimeout: 1000,
    resetTimeout: 20
  })
  await breaker.fire().catch(() => "failed")
  await breaker.fire().catch(() => "failed")
  assert.equal(stateOf(breaker), "Open")
  await sleep(25)
  await breaker.fire() // the probe succeeds
  assert.equal(stateOf(breaker), "Closed")
  await breaker.fire().catch(() => "failed") // 3 failures in 4 fires, in the window that survived
  const state = stateOf(breaker)
  breaker.shutdown()
  return state
}

const reopenBulwark = Effect.gen(function*() {
  const plan = [unavailable, unavailable, () => answer(0), unavailable]
  const breaker = yield* CircuitBreaker.make({
    name: "rates",
    trip: CircuitBreaker.failureRate({ threshold: 0.5, minimumCalls: 2, window: "1 second" }),
    openFor: "20 millis"
  })
  const call = fromPromise(() => plan.shift()!()).pipe(CircuitBreaker.guard(breaker))
  yield* Effect.exit(call)
  yield* Effect.exit(call)
  assert.equal((yield* CircuitBreaker.state(breaker)).state, "Open")
  yield* Effect.sleep("25 millis")
  yield* call // the probe succeeds
  assert.equal((yield* CircuitBreaker.state(breaker)).state, "Closed")
  yield* Effect.exit(call) // 1 failure in 1 call: below minimumCalls
  return (yield* CircuitBreaker.state(breaker)).state
}).pipe(Effect.scoped)

// 3. capacity 1 and a healthy 20 ms dependency; two calls at once.
const rejectionOpossum = async () => {
  const breaker = new CircuitBreakerOpossum(() => answer(20), { capacity: 1, errorThresholdPercentage: 40 })
  const results = await Promise.all([breaker.fire(), breaker.fire().catch((e: { code?: string }) => e.code)])
  assert.deepEqual(results, ["ok", "ESEMLOCKED"])
  const state = stateOf(breaker)
  breaker.shutdown()
  return state
}

const rejectionBulwark = Effect.gen(function*() {
  const pool = yield* Bulkhead.make({ name: "rates", maxConcurrent: 1 })
  const breaker = yield* CircuitBreaker.make({
    name: "rates",
    trip: CircuitBreaker.failureRate({ threshold: 0.4, minimumCalls: 1, window: 10 }),
    openFor: "1 minute"
  })
  const call = fromPromise((signal) => answer(20, signal)).pipe(CircuitBreaker.guard(breaker), Bulkhead.guard(pool))
  const results = yield* Effect.all([call, call.pipe(Effect.catchTag("BulkheadFull", (e) => Effect.succeed(e.reason)))], {
    concurrency: "unbounded"
  })
  assert.deepEqual(results, ["ok", "QueueFull"])
  return (yield* CircuitBreaker.state(breaker)).state
}).pipe(Effect.scoped)

export const program = Effect.gen(function*() {
  const findings = {
    "requests running at once with capacity 1": {
      opossum: yield* Effect.promise(capacityOpossum),
      bulwark: yield* capacityBulwark
    },
    "after a probe closed the circuit, one failure leaves it": {
      opossum: yield* Effect.promise(reopenOpossum),
      bulwark: yield* reopenBulwark
    },
    "after a capacity rejection of a healthy call, the circuit is": {
      opossum: yield* Effect.promise(rejectionOpossum),
      bulwark: yield* rejectionBulwark
    }
  }
  assert.deepEqual(findings, {
    "requests running at once with capacity 1": { opossum: 2, bulwark: 1 },
    "after a probe closed the circuit, one failure leaves it": { opossum: "Open", bulwark: "Closed" },
    "after a capacity rejection of a healthy call, the circuit is": { opossum: "Open", bulwark: "Closed" }
  })
  return findings
})

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
