/**
 * Policy settings (issue 4): `Policy.Settings`, `Policy.config`, `Policy.fromSettings` and
 * `Policy.layerConfig`, read from environment variables (`ConfigProvider.fromEnv` with
 * `ConfigProvider.constantCase`) and from JSON (`ConfigProvider.fromUnknown`).
 *
 * Every field is checked where it lands: the built primitives' own behaviour (a bulkhead
 * that queues and rejects as configured, a retry that backs off on the configured
 * schedule, a breaker that trips and probes as configured, each rate limiter algorithm
 * admitting as configured), their snapshots and `Policy.describe`; bad values give a
 * `ConfigError` naming the key path and the rule; `layerConfig` provides a working policy
 * and fails with `ConfigError` or `InvalidOptions` as typed errors.
 */
import { assert, describe, it } from "@effect/vitest"
import {
  Bulkhead,
  CircuitBreaker,
  CircuitBreakerStore,
  type CircuitOpen,
  InvalidOptions,
  Policy,
  RateLimiter,
  RateLimiterStore,
  Retry,
  StoreError
} from "@bulwark/core"
import { Cause, Clock, Config, ConfigProvider, Context, Data, Duration, Effect, Exit, Fiber, Latch, Ref } from "effect"
import { TestClock } from "effect/testing"

class HttpError extends Data.TaggedError("HttpError")<{ readonly status: number }> {}

const env = (vars: Record<string, string>) => ConfigProvider.fromEnv({ env: vars }).pipe(ConfigProvider.constantCase)
const json = (root: unknown) => ConfigProvider.fromUnknown(root)

/** The settings with every Duration as milliseconds, to compare as plain data. */
const plain = (u: unknown): unknown => {
  if (Duration.isDuration(u)) return { ms: Duration.toMillis(u) }
  if (Array.isArray(u)) return u.map(plain)
  if (typeof u === "object" && u !== null) return Object.fromEntries(Object.entries(u).map(([k, v]) => [k, plain(v)]))
  return u
}

const read = (provider: ConfigProvider.ConfigProvider, path: string | ReadonlyArray<string> = "payments") =>
  Policy.config(path).parse(provider)

const readError = (provider: ConfigProvider.ConfigProvider) =>
  Effect.gen(function*() {
    const error = yield* Effect.flip(read(provider))
    assert.instanceOf(error, Config.ConfigError)
    return error.message
  })

/** A policy made from settings read from `provider`, in the test's scope. */
const build = (provider: ConfigProvider.ConfigProvider, extras?: Policy.SettingsExtras<undefined>) =>
  Effect.flatMap(read(provider), (settings) => Policy.fromSettings("payments", settings, extras))

const settle = Effect.gen(function*() {
  for (let i = 0; i < 20; i++) yield* Effect.yieldNow
})

const typedError = (exit: Exit.Exit<unknown, unknown>): unknown => {
  assert.isTrue(Exit.isFailure(exit), "expected a failure")
  const reason = Exit.isFailure(exit) ? exit.cause.reasons.find(Cause.isFailReason) : undefined
  assert.isDefined(reason, "expected a typed failure")
  return reason!.error
}

const tagOf = (exit: Exit.Exit<unknown, unknown>) => (typedError(exit) as { readonly _tag: string })._tag

// -----------------------------------------------------------------------------

describe("Policy.config rule: environment variables, constant case, map to every settings field", () => {
  it.effect("top-level, retry, bulkhead and hedge keys: PAYMENTS_TIMEOUT, PAYMENTS_BULKHEAD_MAX_CONCURRENT, PAYMENTS_RETRY_BASE_DELAY, ...", () =>
    Effect.gen(function*() {
      const settings = yield* read(env({
        PAYMENTS_TIMEOUT: "5 seconds",
        PAYMENTS_ATTEMPT_TIMEOUT: "1 second",
        PAYMENTS_ORDER: "timeout, hedge, bulkhead, retry, attemptTimeout",
        PAYMENTS_WARNINGS: "fail",
        PAYMENTS_RETRY_MAX_ATTEMPTS: "4",
        PAYMENTS_RETRY_BASE_DELAY: "100 millis",
        PAYMENTS_RETRY_MAX_DELAY: "2 seconds",
        PAYMENTS_RETRY_JITTER: "equal",
        PAYMENTS_RETRY_MAX_ELAPSED: "4 seconds",
        PAYMENTS_BULKHEAD_MAX_CONCURRENT: "10",
        PAYMENTS_BULKHEAD_MAX_QUEUE: "20",
        PAYMENTS_BULKHEAD_QUEUE_TIMEOUT: "250 millis",
        PAYMENTS_HEDGE_AFTER: "300 millis",
        PAYMENTS_HEDGE_MAX_ATTEMPTS: "2",
        // Another policy's variables are not read.
        SEARCH_TIMEOUT: "1 second"
      }))
      assert.deepStrictEqual(plain(settings), {
        timeout: { ms: 5000 },
        attemptTimeout: { ms: 1000 },
        order: ["timeout", "hedge", "bulkhead", "retry", "attemptTimeout"],
        warnings: "fail",
        retry: { maxAttempts: 4, baseDelay: { ms: 100 }, maxDelay: { ms: 2000 }, jitter: "equal", maxElapsed: { ms: 4000 } },
        bulkhead: { maxConcurrent: 10, maxQueue: 20, queueTimeout: { ms: 250 } },
        hedge: { after: { ms: 300 }, maxAttempts: 2 }
      })
    }))

  it.effect("the breaker and limiter sections are found: PAYMENTS_BREAKER_*, PAYMENTS_LIMITER_* (one-word groups)", () =>
    Effect.gen(function*() {
      const settings = yield* read(env({
        PAYMENTS_BREAKER_CONSECUTIVE_FAILURES: "5",
        PAYMENTS_BREAKER_FAILURE_RATE: "0.5",
        PAYMENTS_BREAKER_MINIMUM_CALLS: "20",
        PAYMENTS_BREAKER_WINDOW: "1 minute",
        PAYMENTS_BREAKER_OPEN_FOR: "30 seconds",
        PAYMENTS_BREAKER_PROBES: "2",
        PAYMENTS_BREAKER_SUCCESSES_TO_CLOSE: "3",
        PAYMENTS_BREAKER_PROBE_TIMEOUT: "10 seconds",
        PAYMENTS_LIMITER_ALGORITHM: "token-bucket",
        PAYMENTS_LIMITER_LIMIT: "100",
        PAYMENTS_LIMITER_PER: "1 second",
        PAYMENTS_LIMITER_BURST: "150",
        PAYMENTS_LIMITER_ON_EXCEEDED: "wait",
        PAYMENTS_LIMITER_MAX_WAIT: "200 millis"
      }))
      assert.deepStrictEqual(plain(settings), {
        breaker: {
          consecutiveFailures: 5,
          failureRate: 0.5,
          minimumCalls: 20,
          window: { ms: 60_000 },
          openFor: { ms: 30_000 },
          probes: 2,
          successesToClose: 3,
          probeTimeout: { ms: 10_000 }
        },
        limiter: {
          algorithm: "token-bucket",
          limit: 100,
          per: { ms: 1000 },
          burst: 150,
          onExceeded: "wait",
          maxWait: { ms: 200 }
        }
      })
      // A window given as a bare number counts calls.
      const counted = yield* read(env({
        PAYMENTS_BREAKER_FAILURE_RATE: "1",
        PAYMENTS_BREAKER_MINIMUM_CALLS: "2",
        PAYMENTS_BREAKER_WINDOW: "10",
        PAYMENTS_BREAKER_OPEN_FOR: "1 second"
      }))
      assert.strictEqual(counted.breaker?.window, 10)
    }))

  it.effect("a section given in part is a ConfigError naming the missing key, never silently dropped", () =>
    Effect.gen(function*() {
      const breaker = yield* readError(env({ PAYMENTS_BREAKER_OPEN_FOR: "30 seconds" }))
      assert.include(breaker, `at ["payments"]["breaker"]["consecutiveFailures"]`)
      assert.include(breaker, "Expected consecutiveFailures or failureRate (or both)")
      const bulkhead = yield* readError(env({ PAYMENTS_BULKHEAD_MAX_QUEUE: "3" }))
      assert.include(bulkhead, "Missing key")
      assert.include(bulkhead, `at ["payments"]["bulkhead"]["maxConcurrent"]`)
      const limiter = yield* readError(env({ PAYMENTS_LIMITER_LIMIT: "3", PAYMENTS_LIMITER_PER: "1 second" }))
      assert.include(limiter, `at ["payments"]["limiter"]["algorithm"]`)
      const hedge = yield* readError(env({ PAYMENTS_HEDGE_AFTER: "1 second" }))
      assert.include(hedge, `at ["payments"]["hedge"]["maxAttempts"]`)
    }))

  it.effect("PAYMENTS_ORDER is a comma-separated list (spaces and a trailing comma allowed) and becomes the policy's order", () =>
    Effect.gen(function*() {
      const policy = yield* build(env({
        PAYMENTS_ORDER: " timeout ,bulkhead,  retry, ",
        PAYMENTS_TIMEOUT: "1 second",
        PAYMENTS_BULKHEAD_MAX_CONCURRENT: "2",
        PAYMENTS_RETRY_MAX_ATTEMPTS: "2"
      }))
      assert.deepStrictEqual(policy.order, ["timeout", "bulkhead", "retry"])
      assert.deepStrictEqual(Policy.describe(policy).stages.map((s) => s.stage), ["timeout", "bulkhead", "retry"])
      // An explicit order other than the canonical one is applied as given.
      const reordered = yield* build(env({
        PAYMENTS_ORDER: "bulkhead, timeout",
        PAYMENTS_TIMEOUT: "1 second",
        PAYMENTS_BULKHEAD_MAX_CONCURRENT: "2"
      }))
      assert.deepStrictEqual(reordered.order, ["bulkhead", "timeout"])
    }).pipe(Effect.scoped))

  it.effect("a path of several segments reads nested variables: [\"services\", \"payments\"] is SERVICES_PAYMENTS_*", () =>
    Effect.gen(function*() {
      const settings = yield* read(
        env({ SERVICES_PAYMENTS_TIMEOUT: "2 seconds", SERVICES_PAYMENTS_BULKHEAD_MAX_CONCURRENT: "3", PAYMENTS_TIMEOUT: "9 seconds" }),
        ["services", "payments"]
      )
      assert.deepStrictEqual(plain(settings), { timeout: { ms: 2000 }, bulkhead: { maxConcurrent: 3 } })
    }))

  it.effect("without constantCase the environment provider reads the path as written: payments_bulkhead_maxConcurrent", () =>
    Effect.gen(function*() {
      const settings = yield* read(ConfigProvider.fromEnv({
        env: { payments_timeout: "2 seconds", payments_bulkhead_maxConcurrent: "3", payments_breaker_consecutiveFailures: "2", payments_breaker_openFor: "1 second" }
      }))
      assert.deepStrictEqual(plain(settings), {
        timeout: { ms: 2000 },
        bulkhead: { maxConcurrent: 3 },
        breaker: { consecutiveFailures: 2, openFor: { ms: 1000 } }
      })
    }))
})

describe("Policy.config rule: JSON through ConfigProvider.fromUnknown", () => {
  it.effect("a JSON document gives the same settings as the environment (numbers as numbers, durations as text)", () =>
    Effect.gen(function*() {
      const fromJson = yield* read(json({
        payments: {
          timeout: "5 seconds",
          order: "timeout, bulkhead, retry, rateLimiter, circuitBreaker",
          retry: { maxAttempts: 3, baseDelay: "100 millis", jitter: "none" },
          bulkhead: { maxConcurrent: 10, maxQueue: 0 },
          breaker: { consecutiveFailures: 5, openFor: "30 seconds" },
          limiter: { algorithm: "gcra", limit: 50, per: "1 second", burst: 5 }
        }
      }))
      const fromEnv = yield* read(env({
        PAYMENTS_TIMEOUT: "5 seconds",
        PAYMENTS_ORDER: "timeout, bulkhead, retry, rateLimiter, circuitBreaker",
        PAYMENTS_RETRY_MAX_ATTEMPTS: "3",
        PAYMENTS_RETRY_BASE_DELAY: "100 millis",
        PAYMENTS_RETRY_JITTER: "none",
        PAYMENTS_BULKHEAD_MAX_CONCURRENT: "10",
        PAYMENTS_BULKHEAD_MAX_QUEUE: "0",
        PAYMENTS_BREAKER_CONSECUTIVE_FAILURES: "5",
        PAYMENTS_BREAKER_OPEN_FOR: "30 seconds",
        PAYMENTS_LIMITER_ALGORITHM: "gcra",
        PAYMENTS_LIMITER_LIMIT: "50",
        PAYMENTS_LIMITER_PER: "1 second",
        PAYMENTS_LIMITER_BURST: "5"
      }))
      assert.deepStrictEqual(plain(fromJson), plain(fromEnv))
      assert.strictEqual(fromJson.bulkhead?.maxQueue, 0)
      assert.deepStrictEqual(fromJson.order, ["timeout", "bulkhead", "retry", "rateLimiter", "circuitBreaker"])
    }))

  it.effect("durations are text: a bare JSON number is refused with the rule, not read as milliseconds", () =>
    Effect.gen(function*() {
      const message = yield* readError(json({ payments: { timeout: 5000 } }))
      assert.include(message, `Expected a finite duration such as "2 seconds" or "500 millis", got "5000"`)
      assert.include(message, `at ["payments"]["timeout"]`)
    }))

  it.effect("a missing policy is a ConfigError at its path; an empty one is a policy without stages", () =>
    Effect.gen(function*() {
      const missing = yield* readError(json({ search: { timeout: "1 second" } }))
      assert.include(missing, `at ["payments"]`)
      const empty = yield* build(json({ payments: {} }))
      assert.deepStrictEqual(empty.order, [])
      assert.strictEqual(yield* Effect.succeed("ok").pipe(Policy.guard(empty)), "ok")
    }).pipe(Effect.scoped))
})

describe("Policy.fromSettings rule: every field reaches the right primitive option", () => {
  it.effect("timeout and attemptTimeout: the whole call and each attempt, named after the policy", () =>
    Effect.gen(function*() {
      const policy = yield* build(env({ PAYMENTS_TIMEOUT: "300 millis", PAYMENTS_ATTEMPT_TIMEOUT: "100 millis", PAYMENTS_RETRY_MAX_ATTEMPTS: "5", PAYMENTS_RETRY_BASE_DELAY: "0 millis" }))
      const text = Policy.describe(policy).text
      assert.include(text, "300ms for the whole call")
      assert.include(text, "100ms per attempt")
      const attempts = yield* Ref.make(0)
      const t0 = yield* Clock.currentTimeMillis
      const fiber = yield* Ref.update(attempts, (n) => n + 1).pipe(
        Effect.andThen(Effect.never),
        Policy.guard(policy),
        Effect.exit,
        Effect.forkChild
      )
      yield* TestClock.adjust("299 millis")
      assert.isUndefined(fiber.pollUnsafe(), "ended before the call's timeout")
      // Attempts cut at 100 and 200 ms were retried; the third is cut by the call's timeout at 300 ms.
      assert.strictEqual(yield* Ref.get(attempts), 3)
      yield* TestClock.adjust("1 millis")
      const error = typedError(yield* Fiber.join(fiber)) as { readonly _tag: string; readonly name: string; readonly after: Duration.Duration }
      assert.strictEqual(error._tag, "TimeoutExceeded")
      assert.strictEqual(error.name, "payments")
      assert.strictEqual(Duration.toMillis(error.after), 300)
      assert.strictEqual((yield* Clock.currentTimeMillis) - t0, 300)
      // Alone, an attempt is cut at attemptTimeout and named "payments.attempt".
      const attemptOnly = yield* build(env({ PAYMENTS_ATTEMPT_TIMEOUT: "100 millis" }))
      const cut = yield* Effect.never.pipe(Policy.guard(attemptOnly), Effect.exit, Effect.forkChild)
      yield* TestClock.adjust("100 millis")
      const attemptError = typedError(yield* Fiber.join(cut)) as { readonly name: string }
      assert.strictEqual(attemptError.name, "payments.attempt")
    }).pipe(Effect.scoped))

  it.effect("bulkhead: maxConcurrent run, maxQueue wait, the next is QueueFull, a waiter times out after queueTimeout", () =>
    Effect.gen(function*() {
      const policy = yield* build(env({
        PAYMENTS_BULKHEAD_MAX_CONCURRENT: "2",
        PAYMENTS_BULKHEAD_MAX_QUEUE: "1",
        PAYMENTS_BULKHEAD_QUEUE_TIMEOUT: "50 millis"
      }))
      const bulkhead = policy.components.bulkhead!
      assert.strictEqual(bulkhead.name, "payments")
      assert.include(Policy.describe(policy).text, `"payments": 2 at once, 1 queued`)
      const s0 = yield* Bulkhead.stats(bulkhead)
      assert.deepStrictEqual([s0.maxConcurrent, s0.maxQueue, Duration.toMillis(s0.queueTimeout!)], [2, 1, 50])
      const running = [
        yield* Effect.never.pipe(Policy.guard(policy), Effect.forkChild),
        yield* Effect.never.pipe(Policy.guard(policy), Effect.forkChild)
      ]
      const queued = yield* Effect.succeed("late").pipe(Policy.guard(policy), Effect.exit, Effect.forkChild)
      yield* settle
      const full = yield* Effect.exit(Effect.succeed("no room").pipe(Policy.guard(policy)))
      assert.strictEqual((typedError(full) as Bulkhead.BulkheadFull).reason, "QueueFull")
      assert.deepStrictEqual([(yield* Bulkhead.stats(bulkhead)).inFlight, (yield* Bulkhead.stats(bulkhead)).queued], [2, 1])
      yield* TestClock.adjust("49 millis")
      assert.isUndefined(queued.pollUnsafe())
      yield* TestClock.adjust("1 millis")
      const timedOut = typedError(yield* Fiber.join(queued)) as Bulkhead.BulkheadFull
      assert.strictEqual(timedOut.reason, "QueueTimeout")
      assert.strictEqual(Duration.toMillis(timedOut.waited), 50)
      yield* Fiber.interruptAll(running)
      assert.strictEqual((yield* Bulkhead.stats(bulkhead)).inFlight, 0)
    }).pipe(Effect.scoped))

  it.effect("retry: maxAttempts, baseDelay doubling up to maxDelay, jitter none, no attempt after maxElapsed", () =>
    Effect.gen(function*() {
      const policy = yield* build(env({
        PAYMENTS_RETRY_MAX_ATTEMPTS: "6",
        PAYMENTS_RETRY_BASE_DELAY: "100 millis",
        PAYMENTS_RETRY_MAX_DELAY: "200 millis",
        PAYMENTS_RETRY_JITTER: "none",
        PAYMENTS_RETRY_MAX_ELAPSED: "600 millis"
      }))
      assert.include(Policy.describe(policy).text, "up to 6 attempts, backoff 100ms to 200ms")
      const retry = policy.components.retry!
      assert.strictEqual(retry.name, "payments")
      const t0 = yield* Clock.currentTimeMillis
      const starts: Array<number> = []
      const fiber = yield* Effect.flatMap(Clock.currentTimeMillis, (now) => {
        starts.push(now - t0)
        return Effect.fail(new HttpError({ status: 503 }))
      }).pipe(Policy.guard(policy), Effect.exit, Effect.forkChild)
      yield* TestClock.adjust("2 seconds")
      assert.instanceOf(typedError(yield* Fiber.join(fiber)), HttpError)
      // Delays 100, 200 (capped), 200, 200: the fifth attempt would start at 700 ms > maxElapsed.
      assert.deepStrictEqual(starts, [0, 100, 300, 500])
      const stats = yield* Retry.stats(retry)
      assert.strictEqual(stats.exhausted.MaxElapsed, 1)
      // Without maxElapsed, maxAttempts stops it.
      const byAttempts = yield* build(env({ PAYMENTS_RETRY_MAX_ATTEMPTS: "3", PAYMENTS_RETRY_BASE_DELAY: "10 millis", PAYMENTS_RETRY_JITTER: "none" }))
      const calls = yield* Ref.make(0)
      const second = yield* Ref.update(calls, (n) => n + 1).pipe(
        Effect.andThen(Effect.fail(new HttpError({ status: 500 }))),
        Policy.guard(byAttempts),
        Effect.exit,
        Effect.forkChild
      )
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(second)
      assert.strictEqual(yield* Ref.get(calls), 3)
      assert.strictEqual((yield* Retry.stats(byAttempts.components.retry!)).exhausted.MaxAttempts, 1)
    }).pipe(Effect.scoped))

  it.effect("breaker: consecutiveFailures trips it, openFor is the retryAfter, probes and successesToClose govern half-open", () =>
    Effect.gen(function*() {
      const policy = yield* build(env({
        PAYMENTS_BREAKER_CONSECUTIVE_FAILURES: "2",
        PAYMENTS_BREAKER_OPEN_FOR: "1 second",
        PAYMENTS_BREAKER_PROBES: "2",
        PAYMENTS_BREAKER_SUCCESSES_TO_CLOSE: "2"
      }))
      const breaker = policy.components.circuitBreaker!
      assert.strictEqual(breaker.name, "payments")
      const failing = Effect.fail(new HttpError({ status: 503 })).pipe(Policy.guard(policy), Effect.exit)
      yield* failing
      assert.strictEqual((yield* CircuitBreaker.state(breaker)).state, "Closed")
      yield* failing
      assert.strictEqual((yield* CircuitBreaker.state(breaker)).state, "Open")
      const open = typedError(yield* failing) as CircuitBreaker.CircuitOpen
      assert.strictEqual(open.reason, "Open")
      assert.strictEqual(Duration.toMillis(open.retryAfter), 1000)
      yield* TestClock.adjust("1 second")
      // Two probes at once; a third call is rejected while they run.
      const gate = yield* Latch.make()
      const probes = [
        yield* gate.await.pipe(Effect.as("probe"), Policy.guard(policy), Effect.forkChild),
        yield* gate.await.pipe(Effect.as("probe"), Policy.guard(policy), Effect.forkChild)
      ]
      yield* settle
      assert.deepStrictEqual(yield* CircuitBreaker.state(breaker), {
        state: "HalfOpen",
        retryAfter: Duration.zero,
        consecutiveOpenings: 1,
        probing: 2
      })
      assert.strictEqual((typedError(yield* Effect.exit(Effect.void.pipe(Policy.guard(policy)))) as CircuitBreaker.CircuitOpen).reason, "ProbesBusy")
      yield* gate.open
      assert.deepStrictEqual(yield* Fiber.joinAll(probes), ["probe", "probe"])
      // Two successful probes were needed; now it is closed.
      assert.strictEqual((yield* CircuitBreaker.state(breaker)).state, "Closed")
    }).pipe(Effect.scoped))

  it.effect("breaker: successesToClose 2 stays half-open after one good probe; probeTimeout reopens behind a hung probe", () =>
    Effect.gen(function*() {
      const policy = yield* build(env({
        PAYMENTS_BREAKER_CONSECUTIVE_FAILURES: "1",
        PAYMENTS_BREAKER_OPEN_FOR: "100 millis",
        PAYMENTS_BREAKER_SUCCESSES_TO_CLOSE: "2",
        PAYMENTS_BREAKER_PROBE_TIMEOUT: "500 millis"
      }))
      const breaker = policy.components.circuitBreaker!
      yield* Effect.exit(Effect.fail(new HttpError({ status: 503 })).pipe(Policy.guard(policy)))
      yield* TestClock.adjust("100 millis")
      assert.strictEqual(yield* Effect.succeed(1).pipe(Policy.guard(policy)), 1)
      assert.strictEqual((yield* CircuitBreaker.state(breaker)).state, "HalfOpen")
      // probes defaults to 1: a hung probe holds the only one...
      const hung = yield* Effect.never.pipe(Policy.guard(policy), Effect.forkChild)
      yield* settle
      assert.strictEqual((yield* CircuitBreaker.state(breaker)).probing, 1)
      yield* TestClock.adjust("500 millis")
      assert.strictEqual((yield* CircuitBreaker.state(breaker)).probing, 1)
      // ...until it outlives probeTimeout: then it is lost, and the circuit opens again.
      yield* TestClock.adjust("1 millis")
      const state = yield* CircuitBreaker.state(breaker)
      assert.strictEqual(state.state, "Open")
      assert.strictEqual(state.probing, 0)
      yield* Fiber.interrupt(hung)
    }).pipe(Effect.scoped))

  it.effect("breaker: failureRate, minimumCalls and window (a count of calls) decide together when it trips", () =>
    Effect.gen(function*() {
      // threshold 1 over the last 2 calls, at least 2 calls: F, S, F keeps it closed (1/1, 1/2, 1/2); F, F opens it.
      const policy = yield* build(json({
        payments: { breaker: { failureRate: 1, minimumCalls: 2, window: "2", openFor: "1 minute" } }
      }))
      const breaker = policy.components.circuitBreaker!
      const outcome = (ok: boolean) =>
        Effect.exit((ok ? Effect.succeed("ok") : Effect.fail(new HttpError({ status: 500 }))).pipe(Policy.guard(policy)))
      const states: Array<string> = []
      for (const ok of [false, true, false, false]) {
        yield* outcome(ok)
        states.push((yield* CircuitBreaker.state(breaker)).state)
      }
      assert.deepStrictEqual(states, ["Closed", "Closed", "Closed", "Open"])
    }).pipe(Effect.scoped))

  it.effect("limiter token-bucket: burst is the capacity (default limit), limit tokens come back every per", () =>
    Effect.gen(function*() {
      const policy = yield* build(env({ PAYMENTS_LIMITER_ALGORITHM: "token-bucket", PAYMENTS_LIMITER_LIMIT: "3", PAYMENTS_LIMITER_PER: "1 second" }))
      const limiter = policy.components.rateLimiter!
      assert.deepStrictEqual(limiter.algorithm, { _tag: "TokenBucket", capacity: 3, refill: 3, perMillis: 1000 })
      assert.include(Policy.describe(policy).text, `"payments": TokenBucket`)
      const call = Effect.exit(Effect.succeed("ok").pipe(Policy.guard(policy)))
      const burst = [yield* call, yield* call, yield* call, yield* call]
      assert.deepStrictEqual(burst.map((e) => e._tag), ["Success", "Success", "Success", "Failure"])
      const limited = typedError(burst[3]) as RateLimiter.RateLimited
      assert.strictEqual(limited.reason, "Exceeded")
      assert.strictEqual((yield* RateLimiter.stats(limiter)).onExceeded, "fail")
      yield* TestClock.adjust("1 second")
      assert.strictEqual((yield* call)._tag, "Success")
      const small = yield* build(env({ PAYMENTS_LIMITER_ALGORITHM: "token-bucket", PAYMENTS_LIMITER_LIMIT: "3", PAYMENTS_LIMITER_PER: "1 second", PAYMENTS_LIMITER_BURST: "1" }))
      assert.deepStrictEqual(small.components.rateLimiter!.algorithm, { _tag: "TokenBucket", capacity: 1, refill: 3, perMillis: 1000 })
    }).pipe(Effect.scoped))

  it.effect("limiter gcra: limit per per, spread evenly; burst defaults to 1", () =>
    Effect.gen(function*() {
      const policy = yield* build(env({ PAYMENTS_LIMITER_ALGORITHM: "gcra", PAYMENTS_LIMITER_LIMIT: "2", PAYMENTS_LIMITER_PER: "1 second" }))
      assert.deepStrictEqual(policy.components.rateLimiter!.algorithm, { _tag: "Gcra", rate: 2, perMillis: 1000, burst: 1 })
      assert.include(Policy.describe(policy).text, `"payments": Gcra`)
      const call = Effect.exit(Effect.succeed("ok").pipe(Policy.guard(policy)))
      assert.strictEqual((yield* call)._tag, "Success")
      const second = typedError(yield* call) as RateLimiter.RateLimited
      assert.strictEqual(Duration.toMillis(second.retryAfter), 500)
      yield* TestClock.adjust("500 millis")
      assert.strictEqual((yield* call)._tag, "Success")
      const bursty = yield* build(env({ PAYMENTS_LIMITER_ALGORITHM: "gcra", PAYMENTS_LIMITER_LIMIT: "2", PAYMENTS_LIMITER_PER: "1 second", PAYMENTS_LIMITER_BURST: "2" }))
      assert.deepStrictEqual(bursty.components.rateLimiter!.algorithm, { _tag: "Gcra", rate: 2, perMillis: 1000, burst: 2 })
      const b = Effect.exit(Effect.succeed("ok").pipe(Policy.guard(bursty)))
      assert.deepStrictEqual([(yield* b)._tag, (yield* b)._tag, (yield* b)._tag], ["Success", "Success", "Failure"])
    }).pipe(Effect.scoped))

  it.effect("limiter fixed-window and sliding-window: limit per window of per", () =>
    Effect.gen(function*() {
      for (const [algorithm, tag] of [["fixed-window", "FixedWindow"], ["sliding-window", "SlidingWindow"]] as const) {
        const policy = yield* build(env({ PAYMENTS_LIMITER_ALGORITHM: algorithm, PAYMENTS_LIMITER_LIMIT: "2", PAYMENTS_LIMITER_PER: "1 second" }))
        assert.deepStrictEqual(policy.components.rateLimiter!.algorithm, { _tag: tag, limit: 2, windowMillis: 1000 })
        assert.include(Policy.describe(policy).text, `"payments": ${tag}`)
        const call = Effect.exit(Effect.succeed("ok").pipe(Policy.guard(policy)))
        assert.deepStrictEqual([(yield* call)._tag, (yield* call)._tag, (yield* call)._tag], ["Success", "Success", "Failure"], algorithm)
        yield* TestClock.adjust("1 second")
        assert.strictEqual((yield* call)._tag, "Success", algorithm)
      }
    }).pipe(Effect.scoped))

  it.effect("limiter onExceeded wait: a call waits for its slot; with maxWait, a slot further away is WaitTooLong at once", () =>
    Effect.gen(function*() {
      const waits = yield* build(env({ PAYMENTS_LIMITER_ALGORITHM: "gcra", PAYMENTS_LIMITER_LIMIT: "1", PAYMENTS_LIMITER_PER: "1 second", PAYMENTS_LIMITER_ON_EXCEEDED: "wait" }))
      assert.strictEqual((yield* RateLimiter.stats(waits.components.rateLimiter!)).onExceeded, "wait")
      yield* Effect.succeed(1).pipe(Policy.guard(waits))
      const waiting = yield* Effect.succeed(2).pipe(Policy.guard(waits), Effect.forkChild)
      yield* TestClock.adjust("999 millis")
      assert.isUndefined(waiting.pollUnsafe())
      yield* TestClock.adjust("1 millis")
      assert.strictEqual(yield* Fiber.join(waiting), 2)
      const bounded = yield* build(env({
        PAYMENTS_LIMITER_ALGORITHM: "gcra",
        PAYMENTS_LIMITER_LIMIT: "1",
        PAYMENTS_LIMITER_PER: "1 second",
        PAYMENTS_LIMITER_ON_EXCEEDED: "wait",
        PAYMENTS_LIMITER_MAX_WAIT: "500 millis"
      }))
      yield* Effect.succeed(1).pipe(Policy.guard(bounded))
      const tooLong = typedError(yield* Effect.exit(Effect.succeed(2).pipe(Policy.guard(bounded)))) as RateLimiter.RateLimited
      assert.strictEqual(tooLong.reason, "WaitTooLong")
    }).pipe(Effect.scoped))

  it.effect("hedge: another attempt after `after`, never more than maxAttempts", () =>
    Effect.gen(function*() {
      const policy = yield* build(env({ PAYMENTS_HEDGE_AFTER: "100 millis", PAYMENTS_HEDGE_MAX_ATTEMPTS: "2" }))
      assert.include(Policy.describe(policy).text, "another attempt after 100ms, up to 2 in flight")
      const started = yield* Ref.make(0)
      const fiber = yield* Ref.updateAndGet(started, (n) => n + 1).pipe(
        Effect.flatMap((n) => (n === 1 ? Effect.never : Effect.sleep("50 millis").pipe(Effect.as(`attempt ${n}`)))),
        Policy.guard(policy),
        Effect.forkChild
      )
      yield* TestClock.adjust("99 millis")
      assert.strictEqual(yield* Ref.get(started), 1)
      yield* TestClock.adjust("1 millis")
      assert.strictEqual(yield* Ref.get(started), 2)
      yield* TestClock.adjust("50 millis")
      assert.strictEqual(yield* Fiber.join(fiber), "attempt 2")
      assert.strictEqual(yield* Ref.get(started), 2)
    }).pipe(Effect.scoped))

  it.effect("warnings: \"ignore\" keeps the warnings on the policy; \"fail\" makes a known-bad order an InvalidOptions", () =>
    Effect.gen(function*() {
      const vars = {
        PAYMENTS_ORDER: "retry, bulkhead",
        PAYMENTS_RETRY_MAX_ATTEMPTS: "2",
        PAYMENTS_BULKHEAD_MAX_CONCURRENT: "1"
      }
      const ignored = yield* build(env({ ...vars, PAYMENTS_WARNINGS: "ignore" }))
      assert.deepStrictEqual(ignored.warnings.map((w) => w.code), ["BulkheadInsideRetry"])
      const error = yield* Effect.flip(build(env({ ...vars, PAYMENTS_WARNINGS: "fail" })))
      assert.instanceOf(error, InvalidOptions)
      assert.strictEqual((error as InvalidOptions).primitive, "Policy")
      assert.include(error.message, "BulkheadInsideRetry")
      const notShorter = yield* Effect.flip(build(env({ PAYMENTS_TIMEOUT: "1 second", PAYMENTS_ATTEMPT_TIMEOUT: "1 second", PAYMENTS_WARNINGS: "fail" })))
      assert.include(notShorter.message, "AttemptTimeoutNotShorter")
    }).pipe(Effect.scoped))
})

describe("Policy.config rule: a bad value is a ConfigError naming the key path and the rule", () => {
  const cases: ReadonlyArray<readonly [string, Record<string, string>, string, string]> = [
    ["a bad duration", { PAYMENTS_TIMEOUT: "soon" }, `["payments"]["timeout"]`, `Expected a finite duration such as "2 seconds" or "500 millis", got "soon"`],
    ["an infinite duration", { PAYMENTS_ATTEMPT_TIMEOUT: "Infinity" }, `["payments"]["attemptTimeout"]`, "Expected a finite duration"],
    ["a zero timeout", { PAYMENTS_TIMEOUT: "0 seconds" }, `["payments"]["timeout"]`, `Expected a duration > 0, got "0 seconds"`],
    ["a negative delay", { PAYMENTS_RETRY_MAX_DELAY: "-1 seconds" }, `["payments"]["retry"]["maxDelay"]`, "Expected a duration >= 0"],
    ["0 where >= 1 is required", { PAYMENTS_BULKHEAD_MAX_CONCURRENT: "0" }, `["payments"]["bulkhead"]["maxConcurrent"]`, "Expected an integer >= 1, got 0"],
    ["0 attempts", { PAYMENTS_RETRY_MAX_ATTEMPTS: "0" }, `["payments"]["retry"]["maxAttempts"]`, "Expected an integer >= 1, got 0"],
    ["a fraction", { PAYMENTS_HEDGE_AFTER: "1 second", PAYMENTS_HEDGE_MAX_ATTEMPTS: "1.5" }, `["payments"]["hedge"]["maxAttempts"]`, "Expected an integer >= 1, got 1.5"],
    ["a negative queue", { PAYMENTS_BULKHEAD_MAX_CONCURRENT: "1", PAYMENTS_BULKHEAD_MAX_QUEUE: "-1" }, `["payments"]["bulkhead"]["maxQueue"]`, "Expected an integer >= 0, got -1"],
    ["not a number", { PAYMENTS_BULKHEAD_MAX_CONCURRENT: "ten" }, `["payments"]["bulkhead"]["maxConcurrent"]`, "finite number"],
    ["an unknown stage in order", { PAYMENTS_ORDER: "timeout, cache" }, `["payments"]["order"][1]`, `Expected "fallback" | "timeout" | "hedge" | "bulkhead" | "retry" | "rateLimiter" | "circuitBreaker" | "attemptTimeout"`],
    ["a breaker without any trip", { PAYMENTS_BREAKER_OPEN_FOR: "1 second", PAYMENTS_BREAKER_PROBES: "2" }, `["payments"]["breaker"]["consecutiveFailures"]`, "Expected consecutiveFailures or failureRate (or both)"],
    ["a ratio above 1", { PAYMENTS_BREAKER_OPEN_FOR: "1 second", PAYMENTS_BREAKER_FAILURE_RATE: "1.5", PAYMENTS_BREAKER_MINIMUM_CALLS: "4", PAYMENTS_BREAKER_WINDOW: "10" }, `["payments"]["breaker"]["failureRate"]`, "Expected a ratio in (0, 1], got 1.5"],
    ["a ratio of 0", { PAYMENTS_BREAKER_OPEN_FOR: "1 second", PAYMENTS_BREAKER_FAILURE_RATE: "0", PAYMENTS_BREAKER_MINIMUM_CALLS: "4", PAYMENTS_BREAKER_WINDOW: "10" }, `["payments"]["breaker"]["failureRate"]`, "Expected a ratio in (0, 1], got 0"],
    ["a failure rate without minimumCalls", { PAYMENTS_BREAKER_OPEN_FOR: "1 second", PAYMENTS_BREAKER_FAILURE_RATE: "0.5", PAYMENTS_BREAKER_WINDOW: "10" }, `["payments"]["breaker"]["minimumCalls"]`, "Expected minimumCalls with failureRate"],
    ["a window without a failure rate", { PAYMENTS_BREAKER_OPEN_FOR: "1 second", PAYMENTS_BREAKER_CONSECUTIVE_FAILURES: "3", PAYMENTS_BREAKER_WINDOW: "10" }, `["payments"]["breaker"]["window"]`, "Expected failureRate: minimumCalls and window belong to it"],
    ["a window of 0 calls", { PAYMENTS_BREAKER_OPEN_FOR: "1 second", PAYMENTS_BREAKER_FAILURE_RATE: "0.5", PAYMENTS_BREAKER_MINIMUM_CALLS: "4", PAYMENTS_BREAKER_WINDOW: "0" }, `["payments"]["breaker"]["window"]`, `Expected a count >= 1 or a duration, got "0"`],
    ["a zero openFor", { PAYMENTS_BREAKER_OPEN_FOR: "0 millis", PAYMENTS_BREAKER_CONSECUTIVE_FAILURES: "3" }, `["payments"]["breaker"]["openFor"]`, "Expected a duration > 0"],
    ["an unknown algorithm", { PAYMENTS_LIMITER_ALGORITHM: "leaky-bucket", PAYMENTS_LIMITER_LIMIT: "3", PAYMENTS_LIMITER_PER: "1 second" }, `["payments"]["limiter"]["algorithm"]`, `Expected "token-bucket" | "gcra" | "fixed-window" | "sliding-window"`],
    ["a burst for a window", { PAYMENTS_LIMITER_ALGORITHM: "sliding-window", PAYMENTS_LIMITER_LIMIT: "3", PAYMENTS_LIMITER_PER: "1 second", PAYMENTS_LIMITER_BURST: "5" }, `["payments"]["limiter"]["burst"]`, "Expected no burst with sliding-window"],
    ["an unknown onExceeded", { PAYMENTS_LIMITER_ALGORITHM: "gcra", PAYMENTS_LIMITER_LIMIT: "3", PAYMENTS_LIMITER_PER: "1 second", PAYMENTS_LIMITER_ON_EXCEEDED: "queue" }, `["payments"]["limiter"]["onExceeded"]`, `Expected "wait" | "fail"`],
    ["an unknown jitter", { PAYMENTS_RETRY_JITTER: "some" }, `["payments"]["retry"]["jitter"]`, `Expected "decorrelated" | "full" | "equal" | "none"`],
    ["an unknown warnings mode", { PAYMENTS_WARNINGS: "loud" }, `["payments"]["warnings"]`, `Expected "log" | "fail" | "ignore"`]
  ]
  for (const [what, vars, path, rule] of cases) {
    it.effect(`${what}: ConfigError at ${path}, "${rule}"`, () =>
      Effect.gen(function*() {
        const message = yield* readError(env(vars))
        assert.include(message, `at ${path}`)
        assert.include(message, rule)
      }))
  }
})

describe("Policy.fromSettings rule: what only the primitives can check is an InvalidOptions naming the setting", () => {
  it.effect("maxWait without onExceeded \"wait\", an order listing an unconfigured stage, baseDelay above maxDelay", () =>
    Effect.gen(function*() {
      const maxWait = yield* Effect.flip(build(env({
        PAYMENTS_LIMITER_ALGORITHM: "gcra",
        PAYMENTS_LIMITER_LIMIT: "1",
        PAYMENTS_LIMITER_PER: "1 second",
        PAYMENTS_LIMITER_MAX_WAIT: "1 second"
      })))
      assert.instanceOf(maxWait, InvalidOptions)
      assert.include(maxWait.message, `maxWait: applies only with onExceeded "wait"`)
      const order = yield* Effect.flip(build(env({ PAYMENTS_ORDER: "timeout, retry", PAYMENTS_TIMEOUT: "1 second" })))
      assert.instanceOf(order, InvalidOptions)
      assert.include(order.message, `order: "retry" is listed but not configured`)
      const delays = yield* Effect.flip(build(env({ PAYMENTS_RETRY_BASE_DELAY: "5 seconds", PAYMENTS_RETRY_MAX_DELAY: "1 second" })))
      assert.instanceOf(delays, InvalidOptions)
      assert.include(delays.message, "max: Expected a duration >= base (5s), got 1s")
    }).pipe(Effect.scoped))
})

describe("Policy.fromSettings rule: extras add what is not data (fallback, retryWhile)", () => {
  it.effect("a fallback from code replaces a failure of the configured stages", () =>
    Effect.gen(function*() {
      const settings = yield* read(env({ PAYMENTS_TIMEOUT: "100 millis" }))
      const policy = yield* Policy.fromSettings("payments", settings, {
        fallback: (error: unknown) => Effect.succeed(`fallback for ${(error as { readonly _tag: string })._tag}`)
      })
      const fiber = yield* Effect.never.pipe(Policy.guard(policy), Effect.forkChild)
      yield* TestClock.adjust("100 millis")
      assert.strictEqual(yield* Fiber.join(fiber), "fallback for TimeoutExceeded")
      const stats = yield* Policy.stats(policy)
      assert.strictEqual(stats.fallbacks.TimeoutExceeded, 1)
      assert.strictEqual(stats.succeeded, 1)
    }).pipe(Effect.scoped))

  it.effect("retryWhile decides which typed failures the configured retry retries", () =>
    Effect.gen(function*() {
      const settings = yield* read(env({ PAYMENTS_RETRY_MAX_ATTEMPTS: "3", PAYMENTS_RETRY_BASE_DELAY: "0 millis" }))
      const policy = yield* Policy.fromSettings("payments", settings, {
        retryWhile: (error) => (error as HttpError).status >= 500
      })
      const attempts = yield* Ref.make(0)
      const failWith = (status: number) =>
        Ref.update(attempts, (n) => n + 1).pipe(Effect.andThen(Effect.fail(new HttpError({ status }))), Policy.guard(policy), Effect.exit)
      const clientError = yield* Effect.forkChild(failWith(404))
      yield* TestClock.adjust("1 second")
      assert.strictEqual(tagOf(yield* Fiber.join(clientError)), "HttpError")
      assert.strictEqual(yield* Ref.get(attempts), 1)
      const serverError = yield* Effect.forkChild(failWith(503))
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(serverError)
      assert.strictEqual(yield* Ref.get(attempts), 4)
      assert.strictEqual((yield* Retry.stats(policy.components.retry!)).notRetryable, 1)
    }).pipe(Effect.scoped))

  it.effect("with an order from the settings, a fallback from code goes outermost unless the order places it", () =>
    Effect.gen(function*() {
      const fallback = { fallback: Effect.succeed("queued") }
      const unlisted = yield* read(env({ PAYMENTS_ORDER: "timeout", PAYMENTS_TIMEOUT: "1 second" }))
      const outermost = yield* Policy.fromSettings("payments", unlisted, fallback)
      assert.deepStrictEqual(outermost.order, ["fallback", "timeout"])
      assert.strictEqual(yield* Effect.fail(new HttpError({ status: 500 })).pipe(Policy.guard(outermost)), "queued")
      const listed = yield* read(env({ PAYMENTS_ORDER: "timeout, fallback", PAYMENTS_TIMEOUT: "1 second", PAYMENTS_WARNINGS: "ignore" }))
      const placed = yield* Policy.fromSettings("payments", listed, fallback)
      assert.deepStrictEqual(placed.order, ["timeout", "fallback"])
      assert.deepStrictEqual(placed.warnings.map((w) => w.code), ["FallbackNotOutermost"])
    }).pipe(Effect.scoped))
})

describe("Policy.layerConfig rule: a working policy from configuration, or a typed ConfigError / InvalidOptions", () => {
  class Payments extends Context.Service<Payments, Policy.Policy<Policy.Rejection>>()("test/settings/Payments") {}
  const payments = Effect.gen(function*() {
    return yield* Payments
  })

  it.effect("provides a policy built from the provider's settings, named after the policy", () =>
    Effect.gen(function*() {
      const live = Policy.layerConfig(Payments, { name: "payments" })
      const result = yield* Effect.gen(function*() {
        const policy = yield* Payments
        assert.deepStrictEqual(policy.order, ["timeout", "bulkhead"])
        const bulkhead = policy.components.bulkhead!
        assert.strictEqual((yield* Bulkhead.stats(bulkhead)).maxConcurrent, 2)
        const held = yield* Effect.never.pipe(Policy.guard(Payments), Effect.forkChild)
        yield* settle
        assert.strictEqual((yield* Bulkhead.stats(bulkhead)).inFlight, 1)
        yield* TestClock.adjust("1 second")
        assert.strictEqual(tagOf(yield* Fiber.await(held)), "TimeoutExceeded")
        const stats = yield* Policy.stats(Payments)
        assert.strictEqual(stats.name, "payments")
        assert.strictEqual(stats.failed.TimeoutExceeded, 1)
        return yield* Effect.succeed("charged").pipe(Policy.guard(Payments))
      }).pipe(
        Effect.provide(live),
        Effect.provideService(ConfigProvider.ConfigProvider, env({ PAYMENTS_TIMEOUT: "1 second", PAYMENTS_BULKHEAD_MAX_CONCURRENT: "2" }))
      )
      assert.strictEqual(result, "charged")
    }))

  it.effect("path reads the settings elsewhere than under the name", () =>
    Effect.gen(function*() {
      const live = Policy.layerConfig(Payments, { name: "payments", path: ["services", "pay"] })
      const policy = yield* Effect.provide(payments, live).pipe(
        Effect.provideService(ConfigProvider.ConfigProvider, env({ SERVICES_PAY_BULKHEAD_MAX_CONCURRENT: "4", PAYMENTS_BULKHEAD_MAX_CONCURRENT: "9" }))
      )
      assert.strictEqual(policy.name, "payments")
      assert.strictEqual((yield* Bulkhead.stats(policy.components.bulkhead!)).maxConcurrent, 4)
    }))

  it.effect("a bad value fails the layer with the ConfigError as a typed error", () =>
    Effect.gen(function*() {
      const error = yield* Effect.provide(payments, Policy.layerConfig(Payments, { name: "payments" })).pipe(
        Effect.provideService(ConfigProvider.ConfigProvider, env({ PAYMENTS_BULKHEAD_MAX_CONCURRENT: "0" })),
        Effect.flip
      )
      assert.instanceOf(error, Config.ConfigError)
      assert.include(error.message, `at ["payments"]["bulkhead"]["maxConcurrent"]`)
    }))

  it.effect("settings the primitives refuse fail the layer with InvalidOptions as a typed error", () =>
    Effect.gen(function*() {
      const error = yield* Effect.provide(payments, Policy.layerConfig(Payments, { name: "payments" })).pipe(
        Effect.provideService(
          ConfigProvider.ConfigProvider,
          env({ PAYMENTS_ORDER: "retry, bulkhead", PAYMENTS_RETRY_MAX_ATTEMPTS: "2", PAYMENTS_BULKHEAD_MAX_CONCURRENT: "1", PAYMENTS_WARNINGS: "fail" })
        ),
        Effect.flip
      )
      assert.instanceOf(error, InvalidOptions)
      assert.include(error.message, "BulkheadInsideRetry")
    }))

  it.effect("extras given to layerConfig: the fallback answers, retryWhile decides", () =>
    Effect.gen(function*() {
      class Cached extends Context.Service<Cached, Policy.Policy<Policy.Rejection, never, Effect.Effect<string>>>()(
        "test/settings/Cached"
      ) {}
      const live = Policy.layerConfig(Cached, {
        name: "payments",
        fallback: Effect.succeed("from cache"),
        retryWhile: () => false
      })
      const attempts = yield* Ref.make(0)
      const out = yield* Effect.gen(function*() {
        const answer = yield* Ref.update(attempts, (n) => n + 1).pipe(
          Effect.andThen(Effect.fail(new HttpError({ status: 503 }))),
          Policy.guard(Cached)
        )
        return [answer, yield* Policy.stats(Cached)] as const
      }).pipe(
        Effect.provide(live),
        Effect.provideService(ConfigProvider.ConfigProvider, env({ PAYMENTS_RETRY_MAX_ATTEMPTS: "3", PAYMENTS_RETRY_BASE_DELAY: "0 millis" }))
      )
      assert.strictEqual(out[0], "from cache")
      assert.strictEqual(yield* Ref.get(attempts), 1)
      assert.strictEqual(out[1].fallbacks.Error, 1)
    }))
})

describe("Policy.fromSettings rule: shared stores come from code (SettingsExtras.stores); onStoreError and probeLease from settings", () => {
  /** memory()'s operations only, failing every operation while `down`: a shared store that is unreachable. */
  const unreachable = () => {
    const down = (operation: string) =>
      Effect.fail(new StoreError({ store: "test", operation, reason: "Unavailable", message: "down" }))
    return {
      breaker: CircuitBreakerStore.make({
        admit: () => down("admit"),
        record: () => down("record"),
        read: () => down("read"),
        force: () => down("force"),
        renew: () => down("renew")
      }),
      limiter: RateLimiterStore.make({
        consume: () => down("consume"),
        refund: () => down("refund"),
        block: () => down("block")
      })
    }
  }

  it.effect("PAYMENTS_BREAKER_ON_STORE_ERROR, PAYMENTS_BREAKER_PROBE_LEASE and PAYMENTS_LIMITER_ON_STORE_ERROR are read, and the primitives on the stores follow them", () =>
    Effect.gen(function*() {
      const provider = env({
        PAYMENTS_BREAKER_CONSECUTIVE_FAILURES: "3",
        PAYMENTS_BREAKER_OPEN_FOR: "10 seconds",
        PAYMENTS_BREAKER_PROBE_LEASE: "2 seconds",
        PAYMENTS_BREAKER_ON_STORE_ERROR: "fail-closed",
        PAYMENTS_LIMITER_ALGORITHM: "fixed-window",
        PAYMENTS_LIMITER_LIMIT: "10",
        PAYMENTS_LIMITER_PER: "1 second",
        PAYMENTS_LIMITER_ON_STORE_ERROR: "fail-open"
      })
      const settings = yield* read(provider)
      assert.deepStrictEqual(
        [settings.breaker?.onStoreError, plain(settings.breaker?.probeLease), settings.limiter?.onStoreError],
        ["fail-closed", { ms: 2000 }, "fail-open"]
      )
      const stores = unreachable()
      const policy = yield* Policy.fromSettings("payments", settings, { stores })
      // The limiter lets the call through (fail-open); the breaker, checked last, rejects it (fail-closed).
      const exit = yield* Effect.exit(Effect.succeed("ran").pipe(Policy.guard(policy)))
      const error = typedError(exit) as CircuitOpen
      assert.deepStrictEqual([error._tag, error.reason], ["CircuitOpen", "StoreUnavailable"])
      assert.strictEqual(policy.components.circuitBreaker?.impl.policy.probeLeaseMs, 2000)
      assert.strictEqual((yield* RateLimiter.stats(policy.components.rateLimiter!)).decidedWithoutStore, 1)
    }))

  it.effect("a bad onStoreError is a ConfigError naming the key and the choices", () =>
    Effect.gen(function*() {
      const message = yield* readError(env({
        PAYMENTS_LIMITER_ALGORITHM: "gcra",
        PAYMENTS_LIMITER_LIMIT: "10",
        PAYMENTS_LIMITER_PER: "1 second",
        PAYMENTS_LIMITER_ON_STORE_ERROR: "retry"
      }))
      assert.include(message, `at ["payments"]["limiter"]["onStoreError"]`)
      assert.include(message, "fail-open")
    }))
})
