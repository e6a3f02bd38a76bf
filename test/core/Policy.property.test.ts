/**
 * Property tests for Policy (issue 4): random policies (a random subset of the stages,
 * random options, in the canonical order or in a random order) run random workloads
 * under TestClock: calls arriving at random times, each attempt of a call succeeding,
 * failing, dying or hanging after a random time, some calls interrupted from outside at
 * a random time. Everything is driven by one `TestClock.adjust`, which wakes the sleepers
 * one at a time and lets each wake-up settle, so a run is deterministic.
 *
 * During the run, every attempt body checks the concurrency at the call: with a bulkhead,
 * never more bodies at once than `maxConcurrent` (each hedged attempt takes its own slot;
 * only a hedge inside the bulkhead may share one); and when a call ends, none of the
 * attempts it started is still running (a hedge's losers, an attempt cut by a timeout).
 *
 * After everything settled (the clock moved far past every timer, then the calls still
 * hanging were interrupted), the run checks
 * - the bulkhead: nothing in flight, running or queued; admitted == completed; peak <=
 *   maxConcurrent; admitted + rejected + cancelled == the calls that reached it (every call
 *   without hedging, between 1 and maxAttempts per call with it); only QueueFull and
 *   QueueTimeout rejections;
 * - the breaker: no probe held (`probing === 0`); with the breaker right around the call,
 *   one recorded outcome per attempt body and one success per body that succeeded;
 * - the rate limiter: nobody waiting; with only the breaker or attemptTimeout inside it,
 *   every admitted attempt reached the call (or the breaker), but for waiters whose slot
 *   came in the instant they were interrupted; after a long idle time it is back at rest
 *   (`remaining` is its full capacity, so no reservation leaked);
 * - Policy.stats against the exits: calls == calls that entered == succeeded +
 *   interrupted + sum(failed); each reason counted as it came out; fallbacks counted
 *   exactly when (and with the reason with which) the fallback function ran;
 * - every call's outcome: a success with its own value (or the fallback's), a typed
 *   error of a stage that is configured and outside the fallback (never `BulkheadFull`
 *   without a bulkhead, ...), the fallback's own error, a defect only from an attempt
 *   that died, an interruption only for calls interrupted from outside, and no
 *   interruption mixed into the cause of a call nobody interrupted;
 * - bounds: at most retry.maxAttempts * hedge.maxAttempts bodies per call; with the
 *   timeout outermost (but for a fallback) no call lasts longer than the timeout and none
 *   is left hanging; with attemptTimeout right around the call no body runs longer;
 * - liveness: a new call then succeeds (every permit, slot, probe and reservation is back).
 *
 * A third property checks that a `Retry.policy` inside the timeout never sleeps a backoff
 * into the call's deadline (it stops at once with the attempt's error), whatever the call
 * spent first queueing in the bulkhead or as a late hedged attempt; examples follow.
 *
 * Each property is followed by a test that its runs reached the interesting outcomes,
 * so that a tamer generator cannot make it pass vacuously. `BULWARK_PROPERTY_RUNS=n`
 * overrides the number of runs.
 */
import { assert, describe, it } from "@effect/vitest"
import { Bulkhead, CircuitBreaker, Policy, RateLimiter, Retry } from "@bulwark/core"
import { Cause, Clock, Data, Duration, Effect, Exit, Fiber, Schema, Scope, Stream } from "effect"
import * as Arbitrary from "effect/Arbitrary"
import { TestClock } from "effect/testing"

// -----------------------------------------------------------------------------
// generated scenarios
// -----------------------------------------------------------------------------

type Kind = "succeed" | "fail" | "die" | "hang"

interface Behaviour {
  readonly kind: Kind
  readonly ms: number
}

interface CallSpec {
  readonly arrival: number
  /** Attempt k of the call behaves as `attempts[min(k, length - 1)]`. */
  readonly attempts: ReadonlyArray<Behaviour>
  /** Interrupted from outside this long after its arrival. */
  readonly interruptAfter: number | undefined
}

type Algorithm = "token-bucket" | "gcra" | "fixed-window" | "sliding-window"

interface Stages {
  readonly fallback: "succeed" | "fail" | undefined
  readonly timeout: number | undefined
  readonly hedge: { readonly after: number; readonly maxAttempts: number } | undefined
  readonly bulkhead: { readonly maxConcurrent: number; readonly maxQueue: number; readonly queueTimeout: number | undefined } | undefined
  readonly retry: { readonly maxAttempts: number; readonly base: number; readonly jitter: "none" | "full" } | undefined
  readonly rateLimiter: {
    readonly algorithm: Algorithm
    readonly limit: number
    readonly per: number
    readonly onExceeded: "fail" | "wait"
    readonly maxWait: number | undefined
  } | undefined
  readonly circuitBreaker: { readonly failures: number; readonly openFor: number; readonly probes: number } | undefined
  readonly attemptTimeout: number | undefined
}

interface Scenario {
  readonly stages: Stages
  /** One sort key per stage of the canonical order; `undefined` keeps the canonical order. */
  readonly orderKeys: ReadonlyArray<number> | undefined
  readonly calls: ReadonlyArray<CallSpec>
}

const int = (minimum: number, maximum: number) => Arbitrary.schema(Schema.Int.check(Schema.isBetween({ minimum, maximum })))

/** Present with probability `percent`; the raw zero (what shrinking goes to) is absent. */
const sometimes = <A>(percent: number, arb: Arbitrary.Arbitrary<A>): Arbitrary.Arbitrary<A | undefined> =>
  Arbitrary.all([int(0, 99), arb]).pipe(Arbitrary.map(([d, a]) => (d >= 100 - percent ? a : undefined)))

const behaviour = Arbitrary.all([int(0, 19), int(0, 150)]).pipe(
  Arbitrary.map(([k, ms]): Behaviour => ({
    kind: k < 9 ? "succeed" : k < 14 ? "fail" : k < 16 ? "die" : "hang",
    ms
  }))
)

const call = Arbitrary.all({
  arrival: int(0, 300),
  attempts: Arbitrary.array(behaviour, { minLength: 1, maxLength: 3 }),
  interruptAfter: sometimes(30, int(1, 250))
})

const algorithms: ReadonlyArray<Algorithm> = ["token-bucket", "gcra", "fixed-window", "sliding-window"]

const stages = Arbitrary.all({
  fallback: sometimes(35, int(0, 1).pipe(Arbitrary.map((n) => (n === 0 ? "succeed" as const : "fail" as const)))),
  timeout: sometimes(45, int(20, 400)),
  hedge: sometimes(35, Arbitrary.all({ after: int(5, 120), maxAttempts: int(2, 3) })),
  bulkhead: sometimes(
    60,
    Arbitrary.all({ maxConcurrent: int(1, 3), maxQueue: int(0, 3), queueTimeout: sometimes(60, int(5, 120)) })
  ),
  retry: sometimes(
    55,
    Arbitrary.all({
      maxAttempts: int(1, 4),
      base: int(1, 60),
      jitter: int(0, 1).pipe(Arbitrary.map((n) => (n === 0 ? "none" as const : "full" as const)))
    })
  ),
  rateLimiter: sometimes(
    45,
    Arbitrary.all([int(0, 3), int(1, 4), int(20, 300), int(0, 4), sometimes(70, int(1, 80))]).pipe(
      Arbitrary.map(([a, limit, per, wait, maxWait]) => ({
        algorithm: algorithms[a],
        limit,
        per,
        onExceeded: wait >= 2 ? "wait" as const : "fail" as const,
        maxWait: wait >= 2 ? maxWait : undefined
      }))
    )
  ),
  circuitBreaker: sometimes(45, Arbitrary.all({ failures: int(1, 3), openFor: int(10, 250), probes: int(1, 2) })),
  attemptTimeout: sometimes(40, int(10, 200))
})

const scenario = (randomOrder: boolean, stagesOf: Arbitrary.Arbitrary<Stages> = stages): Arbitrary.Arbitrary<Scenario> =>
  Arbitrary.all({
    stages: stagesOf,
    orderKeys: randomOrder ? Arbitrary.array(int(0, 99), { minLength: 8, maxLength: 8 }) : Arbitrary.Constant(undefined),
    calls: Arbitrary.array(call, { minLength: 1, maxLength: 12 })
  })

/**
 * Policies with a timeout around a retry (jitter none), and the stages that make a retry
 * start late or wait (a bulkhead queue, hedged attempts, breaker and rate limiter
 * rejections with a retryAfter). The timeout ends half a millisecond off the whole
 * milliseconds every other timer uses, so no backoff ends in the very instant of the
 * deadline (that tie has its own example below).
 */
const deadlineStages: Arbitrary.Arbitrary<Stages> = Arbitrary.all({
  fallback: Arbitrary.Constant(undefined),
  timeout: int(20, 300).pipe(Arbitrary.map((ms) => ms + 0.5)),
  hedge: sometimes(40, Arbitrary.all({ after: int(5, 120), maxAttempts: int(2, 3) })),
  bulkhead: sometimes(
    60,
    Arbitrary.all({ maxConcurrent: int(1, 2), maxQueue: int(0, 3), queueTimeout: Arbitrary.Constant(undefined) })
  ),
  retry: Arbitrary.all({ maxAttempts: int(2, 4), base: int(1, 60), jitter: Arbitrary.Constant("none" as const) }),
  rateLimiter: sometimes(
    40,
    Arbitrary.all([int(0, 3), int(1, 3), int(20, 200)]).pipe(
      Arbitrary.map(([a, limit, per]) => ({
        algorithm: algorithms[a],
        limit,
        per,
        onExceeded: "fail" as const,
        maxWait: undefined
      }))
    )
  ),
  circuitBreaker: sometimes(40, Arbitrary.all({ failures: int(1, 2), openFor: int(10, 200), probes: int(1, 2) })),
  attemptTimeout: sometimes(30, int(10, 150))
})

// -----------------------------------------------------------------------------
// running a scenario
// -----------------------------------------------------------------------------

class Boom extends Data.TaggedError("Boom")<{ readonly call: number; readonly attempt: number }> {}
class FallbackFailed extends Data.TaggedError("FallbackFailed")<{ readonly reason: string }> {}

type Reason = Policy.Reason
const zero = (): Record<Reason, number> => ({
  BulkheadFull: 0,
  CircuitOpen: 0,
  RateLimited: 0,
  TimeoutExceeded: 0,
  Error: 0,
  Defect: 0
})

/** The documented meaning of the failure and fallback counters: a stage's rejection by its tag, any other typed error is "Error". */
const reasonOfError = (error: unknown): Reason => {
  const tag = typeof error === "object" && error !== null && "_tag" in error ? (error as { _tag: unknown })._tag : undefined
  return tag === "BulkheadFull" || tag === "CircuitOpen" || tag === "RateLimited" || tag === "TimeoutExceeded"
    ? tag
    : "Error"
}

/** How a call ended, by what came out of the policy: the first typed failure, else a defect, else an interruption. */
const reasonOfExit = (exit: Exit.Exit<unknown, unknown>): Reason | "Succeeded" | "Interrupted" => {
  if (Exit.isSuccess(exit)) return "Succeeded"
  const fail = exit.cause.reasons.find(Cause.isFailReason)
  if (fail !== undefined) return reasonOfError(fail.error)
  if (exit.cause.reasons.some(Cause.isDieReason)) return "Defect"
  return "Interrupted"
}

interface BodyRun {
  readonly attempt: number
  readonly startedAt: number
  endedAt: number | undefined
  outcome: "Success" | "Failure" | "Defect" | "Interrupted" | undefined
}

interface CallRecord {
  readonly id: number
  readonly spec: CallSpec
  entered: boolean
  enteredAt: number
  endedAt: number
  interruptedByUs: boolean
  woundDown: boolean
  bodies: Array<BodyRun>
  exit: Exit.Exit<unknown, unknown> | undefined
  fiber: Fiber.Fiber<unknown, unknown> | undefined
}

type Reached = Record<string, number>

interface Checks {
  /** The backoff rule (see its check); separate, so the other invariants are checked whatever it finds. */
  readonly retryStopsBeforeDeadline: boolean
}

/** Far beyond every timer a scenario can set (queue timeouts, backoffs, open times, reservations). */
const horizon = 10 * 60_000

/** Jittered backoffs are fractional milliseconds: time differences carry rounding errors. */
const epsilon = 1e-6

const settle = Effect.gen(function*() {
  for (let i = 0; i < 20; i++) yield* Effect.yieldNow
})

const algorithmOf = (rl: NonNullable<Stages["rateLimiter"]>): RateLimiter.Algorithm => {
  switch (rl.algorithm) {
    case "token-bucket":
      return RateLimiter.tokenBucket({ capacity: rl.limit, refill: rl.limit, per: rl.per })
    case "gcra":
      return RateLimiter.gcra({ rate: rl.limit, per: rl.per, burst: rl.limit })
    case "fixed-window":
      return RateLimiter.fixedWindow({ limit: rl.limit, window: rl.per })
    case "sliding-window":
      return RateLimiter.slidingWindow({ limit: rl.limit, window: rl.per })
  }
}

/** The documented canonical order, outermost first (written out here, not read from Policy.canonicalOrder). */
const canonical: ReadonlyArray<Policy.Stage> = [
  "fallback",
  "timeout",
  "hedge",
  "bulkhead",
  "retry",
  "rateLimiter",
  "circuitBreaker",
  "attemptTimeout"
]

const configured = (s: Stages): Array<Policy.Stage> => canonical.filter((stage) => s[stage] !== undefined)

const orderOf = (sc: Scenario): ReadonlyArray<Policy.Stage> => {
  const stagesHere = configured(sc.stages)
  const keys = sc.orderKeys
  if (keys === undefined) return stagesHere
  const rank = (stage: Policy.Stage) => keys[canonical.indexOf(stage)]
  // A stable sort: equal keys keep the canonical order (what shrinking goes to).
  return [...stagesHere].sort((a, b) => rank(a) - rank(b))
}

const describeScenario = (sc: Scenario): string => JSON.stringify({ ...sc, order: orderOf(sc) })

const runScenario = (sc: Scenario, reached: Reached, checks: Checks) =>
  Effect.gen(function*() {
    const s = sc.stages
    const order = orderOf(sc)
    const at = (stage: Policy.Stage) => order.indexOf(stage)
    const has = (stage: Policy.Stage) => at(stage) >= 0
    const outside = (outer: Policy.Stage, inner: Policy.Stage) => has(outer) && has(inner) && at(outer) < at(inner)
    const note = (what: string, n = 1) => {
      if (n > 0) reached[what] = (reached[what] ?? 0) + n
    }
    const fail = (message: string): never => assert.fail(`${message}\n  scenario ${describeScenario(sc)}`)

    const scope = yield* Scope.make()
    const bulkhead = s.bulkhead === undefined ? undefined : yield* Bulkhead.make({
      name: "p",
      maxConcurrent: s.bulkhead.maxConcurrent,
      maxQueue: s.bulkhead.maxQueue,
      ...(s.bulkhead.queueTimeout === undefined ? {} : { queueTimeout: s.bulkhead.queueTimeout })
    }).pipe(Scope.provide(scope))
    const breaker = s.circuitBreaker === undefined ? undefined : yield* CircuitBreaker.make({
      name: "p",
      trip: CircuitBreaker.consecutive(s.circuitBreaker.failures),
      openFor: s.circuitBreaker.openFor,
      halfOpen: { probes: s.circuitBreaker.probes }
    }).pipe(Scope.provide(scope))
    const limiter = s.rateLimiter === undefined ? undefined : yield* RateLimiter.make({
      name: "p",
      algorithm: algorithmOf(s.rateLimiter),
      onExceeded: s.rateLimiter.onExceeded,
      ...(s.rateLimiter.maxWait === undefined ? {} : { maxWait: s.rateLimiter.maxWait })
    }).pipe(Scope.provide(scope))
    const fallbackRuns = zero()
    const fallbackInputs: Array<unknown> = []
    const policy = yield* Policy.make({
      name: "p",
      warnings: "ignore",
      ...(sc.orderKeys === undefined ? {} : { order }),
      timeout: s.timeout,
      attemptTimeout: s.attemptTimeout,
      hedge: s.hedge,
      bulkhead,
      circuitBreaker: breaker,
      rateLimiter: limiter,
      retry: s.retry === undefined
        ? undefined
        : Retry.policy({ maxAttempts: s.retry.maxAttempts, base: s.retry.base, jitter: s.retry.jitter }),
      fallback: s.fallback === undefined ? undefined : (error: unknown) => {
        fallbackInputs.push(error)
        const reason = reasonOfError(error)
        fallbackRuns[reason]++
        return s.fallback === "succeed" ? Effect.succeed("fallback") : Effect.fail(new FallbackFailed({ reason }))
      }
    }).pipe(Scope.provide(scope))
    assert.deepStrictEqual(policy.order, order)
    /** When each backoff the policy's retry decided on ends (clock time, relative to the run's start). */
    const backoffEnds: Array<number> = []

    const t0 = yield* Clock.currentTimeMillis
    const now = (fiberClock: Clock.Clock) => fiberClock.currentTimeMillisUnsafe() - t0
    const clock = yield* Clock.Clock

    // Bodies of attempts running now; a hedge inside the bulkhead shares one slot between its attempts.
    let executing = 0
    let peakExecuting = 0
    const violations: Array<string> = []
    const concurrencyCap = bulkhead === undefined
      ? Infinity
      : s.bulkhead!.maxConcurrent * (outside("bulkhead", "hedge") ? s.hedge!.maxAttempts : 1)

    const body = (rec: CallRecord) =>
      Effect.suspend(() => {
        const attempt = rec.bodies.length
        const b = rec.spec.attempts[Math.min(attempt, rec.spec.attempts.length - 1)]
        const run: BodyRun = { attempt, startedAt: now(clock), endedAt: undefined, outcome: undefined }
        rec.bodies.push(run)
        executing++
        if (executing > peakExecuting) peakExecuting = executing
        if (executing > concurrencyCap) {
          violations.push(`call ${rec.id} attempt ${attempt} started with ${executing} bodies running, cap ${concurrencyCap}`)
        }
        const effect: Effect.Effect<number, Boom> = b.kind === "hang"
          ? Effect.never
          : Effect.sleep(b.ms).pipe(
            Effect.andThen(
              b.kind === "succeed"
                ? Effect.succeed(rec.id)
                : b.kind === "fail"
                ? Effect.fail(new Boom({ call: rec.id, attempt }))
                : Effect.die(new Error(`defect of call ${rec.id}`))
            )
          )
        return effect.pipe(
          Effect.onExit((exit) =>
            Effect.sync(() => {
              executing--
              run.endedAt = now(clock)
              run.outcome = Exit.isSuccess(exit)
                ? "Success"
                : exit.cause.reasons.some(Cause.isFailReason)
                ? "Failure"
                : exit.cause.reasons.some(Cause.isDieReason)
                ? "Defect"
                : "Interrupted"
            })
          )
        )
      })

    const guarded = (rec: CallRecord) => Policy.guard(body(rec), policy) as Effect.Effect<unknown, unknown>

    const records: Array<CallRecord> = sc.calls.map((spec, id) => ({
      id,
      spec,
      entered: false,
      enteredAt: 0,
      endedAt: 0,
      interruptedByUs: false,
      woundDown: false,
      bodies: [],
      exit: undefined,
      fiber: undefined
    }))
    const helpers: Array<Fiber.Fiber<unknown, unknown>> = []
    const retry = policy.components.retry
    if (retry !== undefined) {
      helpers.push(
        yield* Effect.forkChild(Stream.runForEach(Retry.events(retry), (event) =>
          Effect.sync(() => {
            if (event._tag === "Retrying") backoffEnds.push(now(clock) + Duration.toMillis(event.delay))
          })))
      )
      yield* settle
    }

    const scenarioRun = Effect.gen(function*() {
      for (const rec of records) {
        rec.fiber = yield* Effect.sleep(rec.spec.arrival).pipe(
          Effect.andThen(Effect.suspend(() => {
            rec.entered = true
            rec.enteredAt = now(clock)
            return guarded(rec)
          })),
          Effect.onExit((exit) =>
            Effect.sync(() => {
              rec.exit = exit
              rec.endedAt = now(clock)
              // Structured concurrency: a call returns only once every attempt it started has ended
              // (a hedge's losers, an attempt cut by a timeout).
              const running = rec.bodies.filter((b) => b.endedAt === undefined)
              if (running.length > 0) {
                violations.push(`call ${rec.id} ended while its attempts ${running.map((b) => b.attempt).join(", ")} still ran`)
              }
            })
          ),
          Effect.forkChild
        )
      }
      for (const rec of records) {
        const after = rec.spec.interruptAfter
        if (after === undefined) continue
        helpers.push(
          yield* Effect.sleep(rec.spec.arrival + after).pipe(
            Effect.andThen(Effect.suspend(() => {
              if (rec.exit === undefined) rec.interruptedByUs = true
              return Fiber.interrupt(rec.fiber!)
            })),
            Effect.forkChild
          )
        )
      }
      yield* TestClock.adjust(horizon)
      yield* settle
      // Wind down: whatever still hangs (no timeout around it) is interrupted.
      for (const rec of records) {
        if (rec.exit === undefined) {
          rec.woundDown = true
          yield* Fiber.interrupt(rec.fiber!)
        }
      }
      yield* settle
      // Interruptions may give reservations back; let the limiter come to rest again.
      yield* TestClock.adjust(horizon)
      yield* settle

      if (violations.length > 0) fail(violations.join("; "))
      const entered = records.filter((r) => r.entered)
      for (const rec of records) if (rec.exit === undefined) fail(`call ${rec.id} never ended`)

      // ---- every call's outcome ------------------------------------------------
      const fallbackAt = s.fallback === undefined ? Infinity : at("fallback")
      /** A stage's error can come out of the policy: the stage exists and is outside the fallback. */
      const escapes = (stage: Policy.Stage | "call") =>
        (stage === "call" || has(stage)) && (stage === "call" ? order.length : at(stage)) < fallbackAt
      const bodyLimit = (s.retry?.maxAttempts ?? 1) * (s.hedge?.maxAttempts ?? 1)
      for (const rec of entered) {
        const exit = rec.exit!
        const label = `call ${rec.id} (${JSON.stringify(rec.spec)})`
        if (rec.bodies.length > bodyLimit) fail(`${label} ran ${rec.bodies.length} attempts, limit ${bodyLimit}`)
        note(`bodies per call: ${Math.min(rec.bodies.length, 4)}`)
        if (!rec.interruptedByUs && !rec.woundDown && Exit.isFailure(exit) && Cause.hasInterrupts(exit.cause)) {
          fail(`${label} was not interrupted from outside, yet its cause has an interruption: ${Cause.pretty(exit.cause)}`)
        }
        if (Exit.isSuccess(exit)) {
          const value = exit.value
          if (value === "fallback") {
            if (s.fallback !== "succeed") fail(`${label} returned the fallback's value without a succeeding fallback`)
            note("fallback answered")
          } else if (value !== rec.id) {
            fail(`${label} returned ${String(value)}`)
          } else if (!rec.bodies.some((b) => b.outcome === "Success")) {
            fail(`${label} returned its value, but no attempt succeeded`)
          } else {
            note("succeeded")
          }
          continue
        }
        const failure = exit.cause.reasons.find(Cause.isFailReason)
        if (failure !== undefined) {
          const error = failure.error as { readonly _tag?: string; readonly name?: string; readonly reason?: string }
          switch (error._tag) {
            case "Boom":
              if (!escapes("call")) fail(`${label}: the call's own error escaped the fallback`)
              if (!rec.bodies.some((b) => b.outcome === "Failure")) fail(`${label}: Boom without a failed attempt`)
              note("Boom")
              break
            case "FallbackFailed":
              if (s.fallback !== "fail") fail(`${label}: FallbackFailed without a failing fallback`)
              note("fallback failed")
              break
            case "BulkheadFull":
              if (!escapes("bulkhead")) fail(`${label}: BulkheadFull without a bulkhead outside the fallback`)
              if (error.reason !== "QueueFull" && error.reason !== "QueueTimeout") fail(`${label}: BulkheadFull ${error.reason}`)
              note(`BulkheadFull ${error.reason}`)
              break
            case "CircuitOpen":
              if (!escapes("circuitBreaker")) fail(`${label}: CircuitOpen without a breaker outside the fallback`)
              if (error.reason !== "Open" && error.reason !== "ProbesBusy") fail(`${label}: CircuitOpen ${error.reason}`)
              note(`CircuitOpen ${error.reason}`)
              break
            case "RateLimited": {
              if (!escapes("rateLimiter")) fail(`${label}: RateLimited without a rate limiter outside the fallback`)
              const expected = s.rateLimiter!.onExceeded === "fail" ? "Exceeded" : "WaitTooLong"
              if (error.reason !== expected) fail(`${label}: RateLimited ${error.reason}, expected ${expected}`)
              if (s.rateLimiter!.onExceeded === "wait" && s.rateLimiter!.maxWait === undefined) {
                fail(`${label}: RateLimited from a limiter that waits without a maxWait`)
              }
              note(`RateLimited ${error.reason}`)
              break
            }
            case "TimeoutExceeded":
              if (error.name === "p") {
                if (!escapes("timeout")) fail(`${label}: TimeoutExceeded "p" without a timeout outside the fallback`)
                note("TimeoutExceeded (call)")
              } else if (error.name === "p.attempt") {
                if (!escapes("attemptTimeout")) fail(`${label}: TimeoutExceeded "p.attempt" without an attemptTimeout outside the fallback`)
                note("TimeoutExceeded (attempt)")
              } else {
                fail(`${label}: TimeoutExceeded named ${String(error.name)}`)
              }
              break
            default:
              fail(`${label}: unexpected error ${Cause.pretty(exit.cause)}`)
          }
          continue
        }
        if (exit.cause.reasons.some(Cause.isDieReason)) {
          if (!rec.bodies.some((b) => b.outcome === "Defect")) fail(`${label} died without an attempt that died`)
          note("Defect")
          continue
        }
        if (!rec.interruptedByUs && !rec.woundDown) fail(`${label} ended interrupted, but nobody interrupted it`)
        note(rec.woundDown ? "wound down" : "interrupted from outside")
      }

      // ---- Policy.stats against the exits ------------------------------------------
      const stats = yield* Policy.stats(policy)
      const expected = { calls: entered.length, succeeded: 0, interrupted: 0, failed: zero() }
      for (const rec of entered) {
        const r = reasonOfExit(rec.exit!)
        if (r === "Succeeded") expected.succeeded++
        else if (r === "Interrupted") expected.interrupted++
        else expected.failed[r]++
      }
      // Key by key, in one order, so the comparison does not depend on how the snapshot lists its keys.
      const failedOf = (r: Readonly<Record<Reason, number>>) => Policy.Reason.literals.map((reason) => [reason, r[reason]])
      const actual = { calls: stats.calls, succeeded: stats.succeeded, interrupted: stats.interrupted, failed: stats.failed }
      if (
        JSON.stringify({ ...actual, failed: failedOf(actual.failed) }) !==
          JSON.stringify({ ...expected, failed: failedOf(expected.failed) })
      ) {
        fail(`Policy.stats ${JSON.stringify(actual)}\n  exits say ${JSON.stringify(expected)}`)
      }
      const failedTotal = Object.values(stats.failed).reduce((a, b) => a + b, 0)
      if (stats.calls !== stats.succeeded + stats.interrupted + failedTotal) {
        fail(`calls ${stats.calls} != succeeded + interrupted + failed in ${JSON.stringify(stats)}`)
      }
      // A fallback replaces typed failures only: it never runs for a defect, and the counters say so.
      if (fallbackRuns.Defect !== 0) fail(`the fallback ran for a defect`)
      const replaced: Record<string, number> = stats.fallbacks
      for (const reason of Policy.Reason.literals) {
        if ((replaced[reason] ?? 0) !== fallbackRuns[reason]) {
          fail(`Policy.stats fallbacks ${JSON.stringify(stats.fallbacks)}, the fallback ran for ${JSON.stringify(fallbackRuns)}`)
        }
      }
      // The fallback sees typed failures of the stages inside it (and the call's), never defects.
      for (const error of fallbackInputs) {
        const tag = (error as { readonly _tag?: string })._tag
        const producer: Policy.Stage | "call" | undefined = tag === "Boom"
          ? "call"
          : tag === "BulkheadFull"
          ? "bulkhead"
          : tag === "CircuitOpen"
          ? "circuitBreaker"
          : tag === "RateLimited"
          ? "rateLimiter"
          : tag === "TimeoutExceeded"
          ? ((error as { readonly name: string }).name === "p" ? "timeout" : "attemptTimeout")
          : undefined
        if (producer === undefined) fail(`the fallback received ${String(error)}`)
        if (producer !== "call" && !(has(producer!) && at(producer!) > fallbackAt)) {
          fail(`the fallback received a ${tag} from a stage that is not inside it`)
        }
      }
      note("fallback runs", fallbackInputs.length)

      // ---- bounds of the timeouts ---------------------------------------------
      const timeoutOutermost = s.timeout !== undefined && order.slice(0, at("timeout")).every((st) => st === "fallback")
      if (timeoutOutermost) {
        for (const rec of entered) {
          if (rec.woundDown) fail(`call ${rec.id} was still running at the horizon despite the timeout`)
          if (rec.endedAt - rec.enteredAt > s.timeout! + epsilon) {
            fail(`call ${rec.id} lasted ${rec.endedAt - rec.enteredAt} ms, timeout ${s.timeout}`)
          }
          for (const b of rec.bodies) {
            if (b.startedAt - rec.enteredAt > s.timeout! + epsilon) fail(`call ${rec.id} started an attempt after its timeout`)
          }
        }
      }
      if (s.attemptTimeout !== undefined && order[order.length - 1] === "attemptTimeout") {
        for (const rec of entered) {
          for (const b of rec.bodies) {
            if (b.endedAt === undefined || b.endedAt - b.startedAt > s.attemptTimeout + epsilon) {
              fail(`call ${rec.id} attempt ${b.attempt} ran ${String(b.endedAt)} - ${b.startedAt}, attemptTimeout ${s.attemptTimeout}`)
            }
          }
        }
      }
      for (const rec of entered) {
        for (const b of rec.bodies) if (b.endedAt === undefined) fail(`call ${rec.id} attempt ${b.attempt} never ended`)
      }
      // A Retry.policy inside the timeout has its maxElapsed capped by the timeout: a backoff that
      // would end after the deadline is not slept, the call stops at once with the attempt's error.
      // So a call cut by the timeout after an attempt ran was running an attempt (or waiting for
      // a rate limiter's slot, or a hedged attempt queued in the bulkhead), never sleeping a backoff.
      if (
        checks.retryStopsBeforeDeadline && s.timeout !== undefined && s.retry !== undefined && s.fallback === undefined && at("timeout") < at("retry") &&
        s.rateLimiter?.onExceeded !== "wait" && !(s.hedge !== undefined && s.bulkhead !== undefined)
      ) {
        for (const rec of entered) {
          const error = Exit.isFailure(rec.exit!) ? rec.exit.cause.reasons.find(Cause.isFailReason)?.error : undefined
          if ((error as { readonly _tag?: string } | undefined)?._tag !== "TimeoutExceeded") continue
          if ((error as { readonly name: string }).name !== "p" || rec.bodies.length === 0) continue
          const cut = rec.bodies.some((b) => b.outcome === "Interrupted" && Math.abs(b.endedAt! - rec.endedAt) <= epsilon)
          // A backoff ending in the very instant of the deadline is the tie of the example below
          // ("exactly at the deadline"): left to it, so that this property checks the rest.
          const tie = backoffEnds.some((end) => Math.abs(end - rec.endedAt) <= epsilon)
          if (tie) {
            note("a backoff ended exactly at a deadline (the tie, left to its example)")
            continue
          }
          if (!cut) {
            fail(
              `call ${rec.id} was cut by the timeout at ${rec.endedAt - rec.enteredAt} ms while sleeping a backoff (attempts ${
                JSON.stringify(rec.bodies)
              }), instead of stopping with the attempt's error`
            )
          }
          note("timeout cut a running attempt after a retry")
        }
      }
      const bodies = entered.reduce((n, r) => n + r.bodies.length, 0)
      const bodiesSucceeded = entered.reduce((n, r) => n + r.bodies.filter((b) => b.outcome === "Success").length, 0)
      note("hedged: a call ran attempts at once", entered.filter((r) => r.bodies.length > 1 && s.hedge !== undefined).length)

      // ---- the bulkhead --------------------------------------------------------
      if (bulkhead !== undefined) {
        const b = yield* Bulkhead.stats(bulkhead)
        const max = s.bulkhead!.maxConcurrent
        if (b.inFlight !== 0 || b.running !== 0 || b.queued !== 0) fail(`bulkhead left busy: ${JSON.stringify(b)}`)
        if (b.admitted !== b.completed) fail(`bulkhead admitted ${b.admitted} != completed ${b.completed}`)
        if (b.peakInFlight > max) fail(`bulkhead peakInFlight ${b.peakInFlight} > ${max}`)
        if (b.rejected.Closed + b.rejected.Oversized + b.rejected.TooManyKeys !== 0) {
          fail(`bulkhead rejected for a reason it cannot have here: ${JSON.stringify(b.rejected)}`)
        }
        if (!outside("bulkhead", "hedge") && peakExecuting > max) fail(`${peakExecuting} bodies at once > maxConcurrent ${max}`)
        const arrivals = b.admitted + b.rejectedTotal + b.cancelled
        // The stages outside the bulkhead: only the fallback and the timeout (each call reaches it
        // once), or a hedge (each hedged attempt reaches it), or more (then it can be any number).
        const before = order.slice(0, at("bulkhead"))
        if (before.every((st) => st === "fallback" || st === "timeout")) {
          if (arrivals !== entered.length) {
            fail(`bulkhead saw ${arrivals} arrivals (admitted + rejected + cancelled), ${entered.length} calls got past the stages outside it`)
          }
        } else if (before.every((st) => st === "fallback" || st === "timeout" || st === "hedge")) {
          if (arrivals < entered.length || arrivals > entered.length * s.hedge!.maxAttempts) {
            fail(`bulkhead saw ${arrivals} arrivals for ${entered.length} calls hedged up to ${s.hedge!.maxAttempts}`)
          }
        }
        note("bulkhead queued then admitted", b.admittedAfterWait)
        note("bulkhead cancelled while queued", b.cancelled)
        note("bulkhead saturated", peakExecuting === max ? 1 : 0)
      }

      // ---- the breaker --------------------------------------------------------
      if (breaker !== undefined) {
        const state = yield* CircuitBreaker.state(breaker)
        if (state.probing !== 0) fail(`breaker holds ${state.probing} probes with nothing running: ${JSON.stringify(state)}`)
        const c = yield* CircuitBreaker.stats(breaker)
        const recorded = c.successes + c.failures + c.ignored
        const innermost = order[order.length - 1]
        if (innermost === "circuitBreaker" || (innermost === "attemptTimeout" && order[order.length - 2] === "circuitBreaker")) {
          if (recorded !== bodies) fail(`breaker recorded ${recorded} outcomes for ${bodies} attempt bodies (${JSON.stringify(c)})`)
          if (c.successes !== bodiesSucceeded) fail(`breaker recorded ${c.successes} successes, ${bodiesSucceeded} bodies succeeded`)
        }
        note("breaker opened", c.openings)
        note("breaker ignored an interrupted attempt", c.ignored)
        note("breaker rejected ProbesBusy", c.rejected.ProbesBusy)
      }

      // ---- the rate limiter ---------------------------------------------------
      if (limiter !== undefined) {
        const l = yield* RateLimiter.stats(limiter)
        if (l.waiting !== 0) fail(`rate limiter has ${l.waiting} callers waiting with nothing running`)
        const capacity = s.rateLimiter!.limit
        if (l.remaining !== capacity) {
          fail(`rate limiter not at rest after a long idle time: remaining ${l.remaining}, capacity ${capacity} (${JSON.stringify(l)})`)
        }
        const innermostStages = order.slice(at("rateLimiter") + 1)
        if (innermostStages.every((st) => st === "attemptTimeout")) {
          // A waiter whose slot came in the instant it was interrupted (a hedge's loser) spent its
          // slot without running: only calls that waited can be admitted without a body.
          if (l.admitted < bodies || l.admitted - bodies > l.admittedAfterWait) {
            fail(`rate limiter admitted ${l.admitted} (${l.admittedAfterWait} after waiting), ${bodies} attempt bodies ran`)
          }
        } else if (innermostStages.every((st) => st === "attemptTimeout" || st === "circuitBreaker") && breaker !== undefined) {
          const c = yield* CircuitBreaker.stats(breaker)
          const seen = c.successes + c.failures + c.ignored + c.rejected.Open + c.rejected.ProbesBusy + c.rejected.Isolated
          if (l.admitted < seen || l.admitted - seen > l.admittedAfterWait) {
            fail(`rate limiter admitted ${l.admitted} (${l.admittedAfterWait} after waiting), the breaker inside it saw ${seen}`)
          }
        }
        note("rate limiter waited", l.admittedAfterWait)
        note("rate limiter wait cancelled", l.cancelled)
      }

      // ---- liveness: everything is back ---------------------------------------
      const fresh: CallRecord = {
        id: 1000,
        spec: { arrival: 0, attempts: [{ kind: "succeed", ms: 1 }], interruptAfter: undefined },
        entered: true,
        enteredAt: now(clock),
        endedAt: 0,
        interruptedByUs: false,
        woundDown: false,
        bodies: [],
        exit: undefined,
        fiber: undefined
      }
      const probe = yield* Effect.forkChild(Effect.exit(guarded(fresh)))
      yield* TestClock.adjust(1)
      yield* settle
      const freshExit = probe.pollUnsafe()
      if (freshExit === undefined || Exit.isFailure(freshExit) || !Exit.isSuccess(freshExit.value) || freshExit.value.value !== 1000) {
        fail(`a new call after everything settled did not succeed: ${JSON.stringify(freshExit)}`)
      }
      note("runs")
      return true
    })

    return yield* scenarioRun.pipe(
      Effect.ensuring(Effect.suspend(() =>
        Fiber.interruptAll([...records.flatMap((r) => (r.fiber === undefined ? [] : [r.fiber])), ...helpers])
      )),
      Effect.ensuring(Effect.suspend(() => Scope.close(scope, Exit.void)))
    )
  })

// -----------------------------------------------------------------------------
// properties
// -----------------------------------------------------------------------------

const runs = (n: number) => Number(process.env.BULWARK_PROPERTY_RUNS ?? n)

const property = (
  name: string,
  arbitrary: Arbitrary.Arbitrary<Scenario>,
  n: number,
  checks: Checks,
  mustReach: ReadonlyArray<string>
) => {
  const reached: Reached = {}
  it.effect.prop(name, { sc: arbitrary }, ({ sc }) => runScenario(sc, reached, checks), {
    arbitrary: { runs: runs(n) }
  })
  it(`${name}: the runs reached ${mustReach.join(", ")}`, () => {
    // Nothing to say when the property failed before its last run.
    if ((reached.runs ?? 0) < runs(n)) return
    for (const what of mustReach) assert.isAbove(reached[what] ?? 0, 0, `no run reached: ${what}`)
  })
}

const everything: Checks = { retryStopsBeforeDeadline: false }

describe("Policy properties (random stages, workloads, interruptions; invariants once everything settled)", () => {
  property("canonical order: resources come back, stats match the exits, only the configured stages' errors", scenario(false), 500, everything, [
    "succeeded",
    "Boom",
    "Defect",
    "fallback answered",
    "fallback failed",
    "BulkheadFull QueueFull",
    "BulkheadFull QueueTimeout",
    "CircuitOpen Open",
    "RateLimited Exceeded",
    "RateLimited WaitTooLong",
    "TimeoutExceeded (call)",
    "TimeoutExceeded (attempt)",
    "interrupted from outside",
    "wound down",
    "bulkhead queued then admitted",
    "bulkhead cancelled while queued",
    "bulkhead saturated",
    "breaker opened",
    "breaker ignored an interrupted attempt",
    "rate limiter waited",
    "rate limiter wait cancelled",
    "hedged: a call ran attempts at once",
    "bodies per call: 3"
  ])
  property("any order of the stages: resources come back and stats match the exits", scenario(true), 250, everything, [
    "succeeded",
    "Boom",
    "BulkheadFull QueueFull",
    "TimeoutExceeded (call)",
    "interrupted from outside",
    "fallback answered"
  ])
})

describe("Policy rule: a retry inside the timeout stops with the real error rather than sleep into the deadline", () => {
  property(
    "canonical order: a call cut by the timeout after an attempt ran was running an attempt, not sleeping a backoff",
    scenario(false, deadlineStages),
    250,
    { retryStopsBeforeDeadline: true },
    ["timeout cut a running attempt after a retry"]
  )
})

// -----------------------------------------------------------------------------
// the cases the property above found, as plain examples
// -----------------------------------------------------------------------------

class HttpError extends Data.TaggedError("HttpError")<{ readonly attempt: number }> {}

describe("Policy rule: a retry inside the timeout stops with the real error rather than sleep into the deadline (examples)", () => {
  /** A call that fails at once on every attempt, recording when each started. */
  const failing = (starts: Array<number>) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      starts.push(now)
      return Effect.fail(new HttpError({ attempt: starts.length }))
    })

  const typedError = (exit: Exit.Exit<unknown, unknown>): unknown =>
    Exit.isFailure(exit) ? exit.cause.reasons.find(Cause.isFailReason)?.error : undefined

  it.effect("a backoff that ends exactly at the deadline is not slept: the call fails with the attempt's error", () =>
    Effect.gen(function*() {
      const policy = yield* Policy.make({
        name: "p",
        timeout: "100 millis",
        retry: Retry.policy({ maxAttempts: 2, base: "60 millis", jitter: "none" })
      })
      const starts: Array<number> = []
      const call = Effect.andThen(Effect.sleep("40 millis"), failing(starts))
      const t0 = yield* Clock.currentTimeMillis
      const fiber = yield* call.pipe(Policy.guard(policy), Effect.exit, Effect.forkChild)
      yield* TestClock.adjust("40 millis")
      yield* settle
      // The first attempt failed at 40 ms; its backoff (60 ms) would end at the deadline (100 ms),
      // where the timeout, set first, fires first: the retry can only wait to be cut off.
      const early = fiber.pollUnsafe()
      yield* TestClock.adjust("60 millis")
      const exit = yield* Fiber.join(fiber)
      assert.deepStrictEqual(starts.map((t) => t - t0), [40])
      assert.instanceOf(typedError(exit), HttpError, `the call ended with ${JSON.stringify(typedError(exit))}`)
      assert.isDefined(early, "the call did not stop at once when the backoff reached the deadline")
    }).pipe(Effect.scoped))

  it.effect("the time a call queued in the bulkhead counts: a backoff past the call's deadline is not slept", () =>
    Effect.gen(function*() {
      const bulkhead = yield* Bulkhead.make({ name: "p", maxConcurrent: 1, maxQueue: 1 })
      const policy = yield* Policy.make({
        name: "p",
        timeout: "100 millis",
        bulkhead,
        retry: Retry.policy({ maxAttempts: 3, base: "30 millis", jitter: "none" })
      })
      const holder = yield* Effect.sleep("60 millis").pipe(Policy.guard(policy), Effect.forkChild)
      const starts: Array<number> = []
      const t0 = yield* Clock.currentTimeMillis
      const fiber = yield* failing(starts).pipe(Policy.guard(policy), Effect.exit, Effect.forkChild)
      yield* settle
      assert.strictEqual((yield* Bulkhead.stats(bulkhead)).queued, 1)
      // Admitted at 60 ms: attempts at 60 and 90 ms; the next backoff (60 ms) ends at 150 ms,
      // past the call's deadline (100 ms): the retry stops at 90 ms with the attempt's error.
      yield* TestClock.adjust("100 millis")
      const exit = yield* Fiber.join(fiber)
      yield* Fiber.join(holder)
      assert.deepStrictEqual(starts.map((t) => t - t0), [60, 90])
      assert.instanceOf(typedError(exit), HttpError, `the call ended with ${JSON.stringify(typedError(exit))}`)
    }).pipe(Effect.scoped))

  it.effect("a hedged attempt started late retries within what is left of the call's deadline", () =>
    Effect.gen(function*() {
      const policy = yield* Policy.make({
        name: "p",
        timeout: "100 millis",
        hedge: { after: "1 second", maxAttempts: 2 },
        retry: Retry.policy({ maxAttempts: 2, base: "60 millis", jitter: "none" })
      })
      const starts: Array<number> = []
      const t0 = yield* Clock.currentTimeMillis
      const fiber = yield* failing(starts).pipe(Policy.guard(policy), Effect.exit, Effect.forkChild)
      // First hedged attempt: tries at 0 and 60 ms, then fails; the hedge starts the second at
      // 60 ms, which fails at once: its backoff (60 ms) would end at 120 ms, past the deadline.
      yield* TestClock.adjust("100 millis")
      const exit = yield* Fiber.join(fiber)
      assert.deepStrictEqual(starts.map((t) => t - t0), [0, 60, 60])
      assert.instanceOf(typedError(exit), HttpError, `the call ended with ${JSON.stringify(typedError(exit))}`)
    }).pipe(Effect.scoped))
})
