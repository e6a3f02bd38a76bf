/**
 * The pipeline suite: a call through five stages (overall timeout, bulkhead,
 * retry, circuit breaker, attempt timeout), the dependency answering at once.
 * Bulwark's `Policy.guard` side by side with the same Bulwark guards nested by
 * hand (what the policy itself costs), Effect's built-ins (timeout, Semaphore,
 * `Effect.retry`; Effect has no in-memory breaker outside persistence),
 * cockatiel's `wrap` of the same five policies, and opossum (one breaker with
 * its timeout and capacity, its whole feature set).
 *
 * Effect rows run in one fiber; promise rows `await` each call in an async loop.
 */
import { Bulkhead, CircuitBreaker, Policy, Retry, Timeout } from "@bulwark/core"
import {
  bulkhead as cockatielBulkhead,
  circuitBreaker as cockatielBreaker,
  ConsecutiveBreaker,
  handleAll,
  retry as cockatielRetry,
  timeout as cockatielTimeout,
  TimeoutStrategy,
  wrap
} from "cockatiel"
import { Effect, Exit, Schedule, Scope, Semaphore } from "effect"
import Opossum from "opossum"
import type { ScenarioResult } from "./bulkhead.ts"
import { type Case, fmt, goal, measure } from "./harness.ts"

const CALLS = 50_000

const noop = () => Promise.resolve()

export const successPath = async (): Promise<ScenarioResult> => {
  const started = performance.now()
  const N = CALLS
  const scope = Scope.makeUnsafe()
  const run = <A>(effect: Effect.Effect<A, unknown, Scope.Scope>) => Effect.runSync(effect.pipe(Scope.provide(scope)))
  const bulkhead = run(Bulkhead.make({ name: "bench-policy", maxConcurrent: 100 }))
  const breaker = run(CircuitBreaker.make({ name: "bench-policy", trip: CircuitBreaker.consecutive(5), openFor: "1 hour" }))
  const retry = Retry.policy({ maxAttempts: 3, base: "10 millis" })
  const policy = run(Policy.make({
    name: "bench-policy",
    timeout: "10 seconds",
    bulkhead,
    retry,
    circuitBreaker: breaker,
    attemptTimeout: "1 second"
  }))
  const viaPolicy = Policy.guard(policy)
  const overall = Timeout.guard("10 seconds")
  const bulkheadGuard = Bulkhead.guard(bulkhead)
  const retryGuard = Retry.guard(retry)
  const breakerGuard = CircuitBreaker.guard(breaker)
  const attempt = Timeout.guard("1 second")
  const byHand = <A, E, R>(self: Effect.Effect<A, E, R>) => overall(bulkheadGuard(retryGuard(breakerGuard(attempt(self)))))
  const semaphore = Semaphore.makeUnsafe(100)
  const effectBuiltIns = <A, E, R>(self: Effect.Effect<A, E, R>) =>
    self.pipe(
      Effect.timeout("1 second"),
      Effect.retry(Schedule.recurs(2)),
      semaphore.withPermits(1),
      Effect.timeout("10 seconds")
    )
  const cockatiel = wrap(
    cockatielTimeout(10_000, TimeoutStrategy.Aggressive),
    cockatielBulkhead(100),
    cockatielRetry(handleAll, { maxAttempts: 2 }),
    cockatielBreaker(handleAll, { halfOpenAfter: 3_600_000, breaker: new ConsecutiveBreaker(5) }),
    cockatielTimeout(1_000, TimeoutStrategy.Aggressive)
  )
  const opossum = new Opossum(noop, { timeout: 1_000, capacity: 100, errorThresholdPercentage: 50, resetTimeout: 3_600_000 })

  const cases: Array<Case> = [
    {
      peer: "Bulwark",
      variant: "`Policy.guard`: timeout, bulkhead, retry, breaker, attempt timeout",
      calls: N,
      effect: Effect.gen(function*() {
        for (let i = 0; i < N; i++) yield* viaPolicy(Effect.void)
      })
    },
    {
      peer: "Bulwark",
      variant: "the same five guards nested by hand",
      calls: N,
      effect: Effect.gen(function*() {
        for (let i = 0; i < N; i++) yield* byHand(Effect.void)
      })
    },
    {
      peer: "Effect built-ins",
      variant: "timeout, Semaphore.withPermits, Effect.retry, timeout (no breaker)",
      calls: N,
      effect: Effect.gen(function*() {
        for (let i = 0; i < N; i++) yield* effectBuiltIns(Effect.void)
      })
    },
    {
      peer: "cockatiel",
      variant: "`wrap(timeout, bulkhead, retry, circuitBreaker, timeout)`",
      calls: N,
      effect: async () => {
        for (let i = 0; i < N; i++) await cockatiel.execute(noop)
      }
    },
    {
      peer: "opossum",
      variant: "one breaker with timeout and capacity: `await breaker.fire()`",
      calls: N,
      effect: async () => {
        for (let i = 0; i < N; i++) await opossum.fire()
      }
    }
  ]
  const rows = await measure(cases, { warmup: 2, rounds: 7 })
  opossum.shutdown()
  await Effect.runPromise(Scope.close(scope, Exit.void))
  const [bulwark, hand, , cockatielRow] = rows
  return {
    id: "policy-success",
    title: "Pipeline: five stages around a call that succeeds",
    tables: [{
      id: "policy-success",
      title: "Loop of 50,000 successful calls through timeout, bulkhead, retry, breaker and attempt timeout",
      unit: "ns/call",
      base: 0,
      rows
    }],
    goals: [
      goal(
        "Policy.guard costs at most 10% more than the same guards nested by hand",
        bulwark.value,
        hand.value * 1.1,
        `${fmt(bulwark.value)} ns per call against ${fmt(hand.value)} ns by hand (${fmt(bulwark.value / hand.value, 2)}x)`
      ),
      goal(
        "Policy.guard is faster than cockatiel's wrap of the same five policies",
        bulwark.value,
        cockatielRow.value,
        `${fmt(bulwark.value)} ns per call against cockatiel ${fmt(cockatielRow.value)} ns (${
          fmt(cockatielRow.value / bulwark.value, 1)
        }x faster)`
      )
    ],
    seconds: (performance.now() - started) / 1000
  }
}

export const suites: ReadonlyArray<{ readonly name: string; readonly run: () => Promise<ScenarioResult> }> = [
  { name: "policy-success", run: successPath }
]
