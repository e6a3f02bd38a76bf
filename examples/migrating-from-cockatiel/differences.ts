/**
 * Three behaviours that change when you port a cockatiel policy, each run
 * through both libraries against the same promise-returning dependency.
 *
 * 1. Half-open: cockatiel makes the calls beyond the probe wait for its
 *    verdict; Bulwark refuses them at once (`ProbesBusy`, `retryAfter` 0).
 * 2. A retry inside a timeout: cockatiel's backoff does not watch the
 *    signal, so one more attempt starts after the caller got its
 *    `TaskCancelledError`; Bulwark interrupts the backoff.
 * 3. What a timed-out call fails with: in cockatiel it depends on how the
 *    function reacts to the abort (here its own `AbortError`, not
 *    `TaskCancelledError`); in Bulwark it is always `TimeoutExceeded`.
 */
import { CircuitBreaker, Retry, Timeout } from "@bulwark/core"
import {
  circuitBreaker,
  ConsecutiveBreaker,
  ConstantBackoff,
  handleAll,
  isTaskCancelledError,
  retry,
  timeout,
  TimeoutStrategy,
  wrap
} from "cockatiel"
import { Data, Duration, Effect, Fiber } from "effect"
import assert from "node:assert/strict"
import { setTimeout as sleep } from "node:timers/promises"
import { fileURLToPath } from "node:url"

// The dependency: answers after `ms`, honouring an abort at once, or fails with a 503.
const answer = (ms: number, signal?: AbortSignal) =>
  new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => resolve("in stock"), ms)
    signal?.addEventListener("abort", () => {
      clearTimeout(timer)
      reject(signal.reason)
    }, { once: true })
  })
const unavailable = () => Promise.reject(new Error("503"))
class Failed extends Data.TaggedError("Failed")<{ readonly cause: unknown }> {}
const fromPromise = <A>(f: (signal: AbortSignal) => Promise<A>) =>
  Effect.tryPromise({ try: f, catch: (cause) => new Failed({ cause }) })

// 1. Half-open: a second call while the probe runs.
const halfOpenCockatiel = async () => {
  const breaker = circuitBreaker(handleAll, { halfOpenAfter: 20, breaker: new ConsecutiveBreaker(1) })
  await breaker.execute(unavailable).catch(() => "opened")
  await sleep(25)
  const started = Date.now()
  const probe = breaker.execute(({ signal }) => answer(30, signal))
  const second = await breaker.execute(({ signal }) => answer(0, signal)) // waits for the probe's verdict
  assert.equal(second, "in stock")
  assert.ok(Date.now() - started >= 20)
  await probe
  return "waited for the probe, then ran"
}

const halfOpenBulwark = Effect.gen(function*() {
  const breaker = yield* CircuitBreaker.make({ name: "inventory", trip: CircuitBreaker.consecutive(1), openFor: "20 millis" })
  yield* Effect.exit(fromPromise(unavailable).pipe(CircuitBreaker.guard(breaker)))
  yield* Effect.sleep("25 millis")
  const probe = yield* Effect.forkChild(fromPromise((signal) => answer(30, signal)).pipe(CircuitBreaker.guard(breaker)), {
    startImmediately: true
  })
  const second = yield* Effect.flip(fromPromise((signal) => answer(0, signal)).pipe(CircuitBreaker.guard(breaker)))
  assert.ok(second._tag === "CircuitOpen")
  yield* Fiber.join(probe)
  return `refused at once: ${second.reason}, retry after ${Duration.toMillis(second.retryAfter)} ms`
}).pipe(Effect.scoped)

// 2. A 30 ms timeout around a retry that waits 50 ms between attempts.
const retryCockatiel = async () => {
  let attempts = 0
  const failing = () => (attempts++, unavailable())
  const policy = wrap(timeout(30, TimeoutStrategy.Aggressive), retry(handleAll, { maxAttempts: 5, backoff: new ConstantBackoff(50) }))
  const error = await policy.execute(failing).catch((e: unknown) => e)
  assert.ok(isTaskCancelledError(error))
  const whenCallerGaveUp = attempts
  await sleep(50)
  return attempts - whenCallerGaveUp // attempts started after the caller got its error
}

const retryBulwark = Effect.gen(function*() {
  let attempts = 0
  const failing = () => (attempts++, unavailable())
  const error = yield* Effect.flip(fromPromise(failing).pipe(
    Retry.guard(Retry.policy({ maxAttempts: 6, base: "50 millis", jitter: "none" })), // 6 attempts = 5 retries
    Timeout.guard("30 millis")
  ))
  assert.equal(error._tag, "TimeoutExceeded")
  const whenCallerGaveUp = attempts
  yield* Effect.sleep("50 millis")
  return attempts - whenCallerGaveUp
})

// 3. A 20 ms timeout on a call that honours its signal.
const errorCockatiel = async () => {
  const error = await timeout(20, TimeoutStrategy.Aggressive)
    .execute(({ signal }) => answer(1000, signal))
    .catch((e: unknown) => e)
  assert.ok(!isTaskCancelledError(error))
  return (error as Error).name
}

const errorBulwark = fromPromise((signal) => answer(1000, signal)).pipe(
  Timeout.guard("20 millis"),
  Effect.flip,
  Effect.map((error) => error._tag)
)

export const program = Effect.gen(function*() {
  const findings = {
    "a call while the probe runs": {
      cockatiel: yield* Effect.promise(halfOpenCockatiel),
      bulwark: yield* halfOpenBulwark
    },
    "attempts started after the timeout": {
      cockatiel: yield* Effect.promise(retryCockatiel),
      bulwark: yield* retryBulwark
    },
    "a timed-out call fails with": {
      cockatiel: yield* Effect.promise(errorCockatiel),
      bulwark: yield* errorBulwark
    }
  }
  assert.deepEqual(findings, {
    "a call while the probe runs": {
      cockatiel: "waited for the probe, then ran",
      bulwark: "refused at once: ProbesBusy, retry after 0 ms"
    },
    "attempts started after the timeout": { cockatiel: 1, bulwark: 0 },
    "a timed-out call fails with": { cockatiel: "AbortError", bulwark: "TimeoutExceeded" }
  })
  return findings
})

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
