/**
 * The circuit breaker suites: Bulwark's `CircuitBreaker.guard` side by side
 * with Effect's own `persistence/CircuitBreaker` (memory store), cockatiel's
 * `circuitBreaker` policy and opossum, in one process, in one run.
 *
 * 1. Closed path: a loop of 100,000 successful calls through a closed breaker.
 * 2. Open rejection: a loop of 100,000 calls to an open breaker, each refused
 *    and the refusal handled.
 *
 * Effect rows run in one fiber; promise rows `await` each call in an async loop.
 */
import { CircuitBreaker } from "@bulwark/core"
import { circuitBreaker as cockatielBreaker, ConsecutiveBreaker, handleAll } from "cockatiel"
import { Effect, Exit, Layer, Scope } from "effect"
import { CircuitBreaker as EffectCircuitBreaker } from "effect/persistence"
import Opossum from "opossum"
import type { ScenarioResult } from "./bulkhead.ts"
import { type Case, fmt, goal, measure } from "./harness.ts"

const CALLS = 100_000

/** Breakers of one scenario live in one scope, closed when the scenario ends. */
const breakers = () => {
  const scope = Scope.makeUnsafe()
  const context = Effect.runSync(Layer.buildWithScope(EffectCircuitBreaker.layerStoreMemory(), scope))
  return {
    bulwark: (options: CircuitBreaker.Options) => Effect.runSync(CircuitBreaker.make(options).pipe(Scope.provide(scope))),
    effect: () =>
      Effect.runSync(
        EffectCircuitBreaker.make({ tripPolicy: EffectCircuitBreaker.consecutive(5), openDuration: "1 hour" }).pipe(
          Scope.provide(scope),
          Effect.provideContext(context)
        )
      ),
    close: () => Effect.runPromise(Scope.close(scope, Exit.void))
  }
}

const noop = () => Promise.resolve()
const failing = () => Promise.reject(new Error("down"))

export const closedPath = async (): Promise<ScenarioResult> => {
  const started = performance.now()
  const N = CALLS
  const made = breakers()
  const consecutive = made.bulwark({ name: "bench-closed", trip: CircuitBreaker.consecutive(5), openFor: "1 hour" })
  const timed = made.bulwark({
    name: "bench-closed-rate",
    trip: [CircuitBreaker.consecutive(5), CircuitBreaker.failureRate({ threshold: 0.5, minimumCalls: 20, window: "1 minute" })],
    openFor: "1 hour"
  })
  const effectBreaker = made.effect()
  const cockatiel = cockatielBreaker(handleAll, { halfOpenAfter: 3_600_000, breaker: new ConsecutiveBreaker(5) })
  const opossum = new Opossum(noop, { timeout: false, errorThresholdPercentage: 50, resetTimeout: 3_600_000 })
  const guarded = CircuitBreaker.guard(consecutive)
  const guardedTimed = CircuitBreaker.guard(timed)
  const executeEffect = effectBreaker.execute({ key: "bench" })

  const cases: Array<Case> = [
    {
      peer: "Bulwark",
      variant: "consecutive(5), guard built once: `guarded(Effect.void)`",
      calls: N,
      effect: Effect.gen(function*() {
        for (let i = 0; i < N; i++) yield* guarded(Effect.void)
      })
    },
    {
      peer: "Bulwark",
      variant: "consecutive(5) + failureRate over 1 minute (reads the clock)",
      calls: N,
      effect: Effect.gen(function*() {
        for (let i = 0; i < N; i++) yield* guardedTimed(Effect.void)
      })
    },
    {
      peer: "Bulwark",
      variant: "guard applied each call: `Effect.void.pipe(CircuitBreaker.guard(b))`",
      calls: N,
      effect: Effect.gen(function*() {
        for (let i = 0; i < N; i++) yield* Effect.void.pipe(CircuitBreaker.guard(consecutive))
      })
    },
    {
      peer: "Effect CircuitBreaker",
      variant: "`execute({ key })`, consecutive(5), memory store",
      calls: N,
      effect: Effect.gen(function*() {
        for (let i = 0; i < N; i++) yield* executeEffect(Effect.void)
      })
    },
    {
      peer: "cockatiel",
      variant: "`await policy.execute(noop)`, ConsecutiveBreaker(5)",
      calls: N,
      effect: async () => {
        for (let i = 0; i < N; i++) await cockatiel.execute(noop)
      }
    },
    {
      peer: "opossum",
      variant: "`await breaker.fire()`",
      calls: N,
      effect: async () => {
        for (let i = 0; i < N; i++) await opossum.fire()
      }
    },
    {
      peer: "(reference)",
      variant: "bare Effect loop: `yield* Effect.void`",
      reference: true,
      calls: N,
      effect: Effect.gen(function*() {
        for (let i = 0; i < N; i++) yield* Effect.void
      })
    }
  ]
  const rows = await measure(cases, { warmup: 2, rounds: 7 })
  opossum.shutdown()
  await made.close()
  const bulwark = rows[0]
  const effectRow = rows[3]
  return {
    id: "circuitbreaker-closed",
    title: "Circuit breaker: closed path",
    tables: [{
      id: "circuitbreaker-closed",
      title: "Loop of 100,000 successful calls through a closed breaker",
      unit: "ns/call",
      base: 0,
      rows
    }],
    goals: [
      goal(
        "Circuit breaker closed path <= 400 ns per call in an in-fiber loop",
        bulwark.value,
        400,
        `${fmt(bulwark.value)} ns per call, loop included (Effect's persistence/CircuitBreaker: ${fmt(effectRow.value)} ns, ${fmt(effectRow.value / bulwark.value, 1)}x)`
      )
    ],
    seconds: (performance.now() - started) / 1000
  }
}

export const openRejection = async (): Promise<ScenarioResult> => {
  const started = performance.now()
  const N = CALLS
  const made = breakers()
  const open = made.bulwark({ name: "bench-open", trip: CircuitBreaker.consecutive(1), openFor: "1 hour" })
  const guarded = CircuitBreaker.guard(open)
  Effect.runSync(Effect.exit(Effect.fail("down").pipe(guarded)))
  const effectBreaker = made.effect()
  const executeEffect = effectBreaker.execute({ key: "bench-open" })
  for (let i = 0; i < 5; i++) Effect.runSync(Effect.exit(Effect.fail("down").pipe(executeEffect)))
  const cockatiel = cockatielBreaker(handleAll, { halfOpenAfter: 3_600_000, breaker: new ConsecutiveBreaker(1) })
  await cockatiel.execute(failing).catch(() => undefined)
  const opossum = new Opossum(noop, { timeout: false, resetTimeout: 3_600_000 })
  opossum.open()
  let handled = 0
  const cases: Array<Case> = [
    {
      peer: "Bulwark",
      variant: "`Effect.exit(guarded(Effect.void))`",
      calls: N,
      effect: Effect.gen(function*() {
        for (let i = 0; i < N; i++) if (Exit.isFailure(yield* Effect.exit(guarded(Effect.void)))) handled++
      })
    },
    {
      peer: "Bulwark",
      variant: "`guarded(Effect.void).pipe(Effect.catchTag(\"CircuitOpen\", ...))`",
      calls: N,
      effect: Effect.gen(function*() {
        for (let i = 0; i < N; i++) {
          yield* guarded(Effect.void).pipe(Effect.catchTag("CircuitOpen", () => Effect.sync(() => void handled++)))
        }
      })
    },
    {
      peer: "Effect CircuitBreaker",
      variant: "`Effect.exit(execute({ key })(Effect.void))`",
      calls: N,
      effect: Effect.gen(function*() {
        for (let i = 0; i < N; i++) if (Exit.isFailure(yield* Effect.exit(executeEffect(Effect.void)))) handled++
      })
    },
    {
      peer: "cockatiel",
      variant: "`await policy.execute(noop)` rejected with BrokenCircuitError, caught",
      calls: N,
      effect: async () => {
        for (let i = 0; i < N; i++) {
          try {
            await cockatiel.execute(noop)
          } catch {
            handled++
          }
        }
      }
    },
    {
      peer: "opossum",
      variant: "`await breaker.fire()` rejected (open), caught",
      calls: N,
      effect: async () => {
        for (let i = 0; i < N; i++) {
          try {
            await opossum.fire()
          } catch {
            handled++
          }
        }
      }
    }
  ]
  const rows = await measure(cases, { warmup: 2, rounds: 7 })
  opossum.shutdown()
  await made.close()
  if (handled === 0) throw new Error("bench: no call was rejected")
  const bulwark = rows[0]
  const effectRow = rows[2]
  return {
    id: "circuitbreaker-open",
    title: "Circuit breaker: open-circuit rejection",
    tables: [{
      id: "circuitbreaker-open",
      title: "Loop of 100,000 calls to an open breaker, each refused and handled",
      unit: "ns/call",
      base: 0,
      rows
    }],
    goals: [
      goal(
        "Circuit breaker rejection <= 1 microsecond",
        bulwark.value,
        1000,
        `${fmt(bulwark.value)} ns per rejected call, loop and handling included (Effect's persistence/CircuitBreaker: ${fmt(effectRow.value)} ns, ${fmt(effectRow.value / bulwark.value, 0)}x)`
      )
    ],
    seconds: (performance.now() - started) / 1000
  }
}

export const suites: ReadonlyArray<{ readonly name: string; readonly run: () => Promise<ScenarioResult> }> = [
  { name: "circuitbreaker-closed", run: closedPath },
  { name: "circuitbreaker-open", run: openRejection }
]
