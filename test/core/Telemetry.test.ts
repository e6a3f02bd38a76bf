import { assert, describe, it } from "@effect/vitest"
import {
  Bulkhead,
  Chaos,
  CircuitBreaker,
  Fallback,
  Hedge,
  KeyedBulkhead,
  KeyedRateLimiter,
  RateLimiter,
  Retry,
  Timeout
} from "@bulwark/core"
import { Data, Duration, Effect, Exit, Fiber, Latch, Tracer } from "effect"
import { TestClock } from "effect/testing"

// -----------------------------------------------------------------------------
// helpers
// -----------------------------------------------------------------------------

class Boom extends Data.TaggedError("Boom")<{}> {}

/** A tracer that keeps every span it starts, in start order. */
const recorder = () => {
  const spans: Array<Tracer.NativeSpan> = []
  const tracer = Tracer.make({
    span: (options) => {
      const span = new Tracer.NativeSpan(options)
      spans.push(span)
      return span
    }
  })
  return { spans, tracer }
}

/** Runs a test under a recording tracer; `spans` fills as the test runs. */
const traced = <A, E, R>(body: (spans: ReadonlyArray<Tracer.NativeSpan>) => Effect.Effect<A, E, R>) =>
  Effect.suspend(() => {
    const { spans, tracer } = recorder()
    return Effect.withTracer(body(spans), tracer)
  })

const only = (spans: ReadonlyArray<Tracer.NativeSpan>, name: string): Tracer.NativeSpan => {
  const found = spans.filter((span) => span.name === name)
  assert.strictEqual(found.length, 1, `one span named ${name}, got ${found.length}`)
  return found[0]
}

const attributesOf = (span: Tracer.NativeSpan): Record<string, unknown> => Object.fromEntries(span._attributes ?? [])

const eventsOf = (span: Tracer.NativeSpan): Array<[string, Record<string, unknown>]> =>
  (span._events ?? []).map(([name, , attributes]) => [name, attributes])

/** Event times in milliseconds of the test clock. */
const eventTimesOf = (span: Tracer.NativeSpan): Array<number> =>
  (span._events ?? []).map(([, time]) => Number(time / BigInt(1_000_000)))

const parentOf = (span: Tracer.NativeSpan): Tracer.AnySpan | undefined =>
  span.parent._tag === "Some" ? span.parent.value : undefined

/** How a span ended, and how long it lasted in milliseconds of the test clock. */
const endOf = (span: Tracer.NativeSpan): { readonly exit: string; readonly ms: number } => {
  const status = span.status
  assert.strictEqual(status._tag, "Ended", `${span.name} has ended`)
  if (status._tag !== "Ended") throw new Error("unreachable")
  const exit = Exit.isSuccess(status.exit)
    ? "Success"
    : Exit.hasInterrupts(status.exit) && !Exit.hasFails(status.exit)
    ? "Interrupted"
    : "Failure"
  return { exit, ms: Number((status.endTime - status.startTime) / BigInt(1_000_000)) }
}

const fork = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.forkChild(effect, { startImmediately: true })

/** A bulkhead whose only permit is held until `release` opens. */
const busyBulkhead = (options: Bulkhead.Options) =>
  Effect.gen(function*() {
    const bulkhead = yield* Bulkhead.make(options)
    const release = yield* Latch.make()
    const holder = yield* fork(release.await.pipe(Bulkhead.guard(bulkhead)))
    return { bulkhead, release, holder }
  })

// -----------------------------------------------------------------------------
// waits
// -----------------------------------------------------------------------------

describe("Telemetry rule: a call that waits gets a child span for its wait, ended with the wait's outcome", () => {
  it.effect("a queued bulkhead admission: bulwark.bulkhead.wait, a child of the caller's span, not of the call", () =>
    traced((spans) =>
      Effect.gen(function*() {
        const { bulkhead, holder, release } = yield* busyBulkhead({ name: "db", maxConcurrent: 1, maxQueue: 1 })
        const queued = yield* fork(
          Effect.succeed("row").pipe(Effect.withSpan("query"), Bulkhead.guard(bulkhead), Effect.withSpan("request"))
        )
        yield* TestClock.adjust("30 millis")
        yield* release.open
        assert.strictEqual(yield* Fiber.join(queued), "row")
        yield* Fiber.join(holder)

        assert.deepStrictEqual(spans.map((span) => span.name), ["request", "bulwark.bulkhead.wait", "query"])
        const request = only(spans, "request")
        const wait = only(spans, "bulwark.bulkhead.wait")
        assert.deepStrictEqual(attributesOf(wait), {
          "bulwark.name": "db",
          "bulwark.bulkhead.weight": 1,
          "bulwark.bulkhead.outcome": "Admitted"
        })
        assert.deepStrictEqual(endOf(wait), { exit: "Success", ms: 30 })
        assert.strictEqual(parentOf(wait), request)
        // The guarded call runs after the wait, under the caller's span.
        assert.strictEqual(parentOf(only(spans, "query")), request)
        assert.deepStrictEqual(eventsOf(request), [])
        assert.deepStrictEqual(attributesOf(request), {})
      })
    ))

  it.effect("a queued call with a weight and a wait limit that runs out: outcome QueueTimeout, the span fails", () =>
    traced((spans) =>
      Effect.gen(function*() {
        const { bulkhead, release } = yield* busyBulkhead({ name: "db", maxConcurrent: 2, maxQueue: 1 })
        const queued = yield* fork(
          Effect.void.pipe(
            Bulkhead.guard(bulkhead, { weight: 2, queueTimeout: "50 millis" }),
            Effect.withSpan("request"),
            Effect.flip
          )
        )
        yield* TestClock.adjust("50 millis")
        const error = yield* Fiber.join(queued)
        assert.strictEqual(error.reason, "QueueTimeout")
        yield* release.open

        const wait = only(spans, "bulwark.bulkhead.wait")
        assert.deepStrictEqual(attributesOf(wait), {
          "bulwark.name": "db",
          "bulwark.bulkhead.weight": 2,
          "bulwark.bulkhead.outcome": "QueueTimeout"
        })
        assert.deepStrictEqual(endOf(wait), { exit: "Failure", ms: 50 })
        assert.deepStrictEqual(eventsOf(only(spans, "request")), [])
      })
    ))

  it.effect("a wait ended by closing the bulkhead or by interruption says so", () =>
    traced((spans) =>
      Effect.gen(function*() {
        const { bulkhead, release } = yield* busyBulkhead({ name: "db", maxConcurrent: 1, maxQueue: 2 })
        const interrupted = yield* fork(Effect.void.pipe(Bulkhead.guard(bulkhead), Effect.withSpan("first")))
        const closed = yield* fork(Effect.void.pipe(Bulkhead.guard(bulkhead), Effect.withSpan("second"), Effect.flip))
        yield* TestClock.adjust("10 millis")
        yield* Fiber.interrupt(interrupted)
        yield* TestClock.adjust("10 millis")
        yield* Bulkhead.close(bulkhead)
        assert.strictEqual((yield* Fiber.join(closed)).reason, "Closed")
        yield* release.open

        const waits = spans.filter((span) => span.name === "bulwark.bulkhead.wait")
        assert.deepStrictEqual(waits.map((wait) => [attributesOf(wait)["bulwark.bulkhead.outcome"], endOf(wait)]), [
          ["Interrupted", { exit: "Interrupted", ms: 10 }],
          ["Closed", { exit: "Failure", ms: 20 }]
        ])
        assert.deepStrictEqual(waits.map((wait) => parentOf(wait)?.spanId), [
          only(spans, "first").spanId,
          only(spans, "second").spanId
        ])
      })
    ))

  it.effect("a keyed compartment's queued call gets the same wait span, without the key", () =>
    traced((spans) =>
      Effect.gen(function*() {
        const tenants = yield* KeyedBulkhead.make({ name: "tenants", maxConcurrent: 1, maxQueue: 1, maxKeys: 10 })
        const release = yield* Latch.make()
        yield* fork(release.await.pipe(KeyedBulkhead.guard(tenants, "acme")))
        const queued = yield* fork(Effect.succeed(1).pipe(KeyedBulkhead.guard(tenants, "acme"), Effect.withSpan("request")))
        yield* TestClock.adjust("5 millis")
        yield* release.open
        assert.strictEqual(yield* Fiber.join(queued), 1)
        assert.deepStrictEqual(attributesOf(only(spans, "bulwark.bulkhead.wait")), {
          "bulwark.name": "tenants",
          "bulwark.bulkhead.weight": 1,
          "bulwark.bulkhead.outcome": "Admitted"
        })
      })
    ))

  it.effect("a rate limiter wait for a reserved slot: bulwark.ratelimiter.wait with the cost and the reserved wait", () =>
    traced((spans) =>
      Effect.gen(function*() {
        const limiter = yield* RateLimiter.make({
          name: "github",
          algorithm: RateLimiter.tokenBucket({ capacity: 2, refill: 1, per: "1 second" }),
          onExceeded: "wait"
        })
        yield* Effect.void.pipe(RateLimiter.guard(limiter, { cost: 2 }))
        const waiting = yield* fork(Effect.succeed("repos").pipe(RateLimiter.guard(limiter), Effect.withSpan("request")))
        yield* TestClock.adjust("1 second")
        assert.strictEqual(yield* Fiber.join(waiting), "repos")

        assert.deepStrictEqual(spans.map((span) => span.name), ["request", "bulwark.ratelimiter.wait"])
        const wait = only(spans, "bulwark.ratelimiter.wait")
        assert.deepStrictEqual(attributesOf(wait), {
          "bulwark.name": "github",
          "bulwark.ratelimiter.cost": 1,
          "bulwark.ratelimiter.reserved_wait_ms": 1000,
          "bulwark.ratelimiter.outcome": "Admitted"
        })
        assert.deepStrictEqual(endOf(wait), { exit: "Success", ms: 1000 })
        assert.strictEqual(parentOf(wait), only(spans, "request"))
      })
    ))

  it.effect("hedged attempts run in bulwark.hedge.attempt spans: what started them, and the loser interrupted", () =>
    traced((spans) =>
      Effect.gen(function*() {
        let attempts = 0
        const read = Effect.suspend(() => {
          attempts++
          return attempts === 1
            ? Effect.sleep("1 minute").pipe(Effect.as("slow"))
            : attempts === 2
            ? Effect.sleep("5 millis").pipe(Effect.andThen(Effect.fail(new Boom())))
            : Effect.sleep("10 millis").pipe(Effect.as("fast"))
        }).pipe(Effect.withSpan("read"))
        const fiber = yield* fork(
          read.pipe(Hedge.guard({ name: "replicas", after: "50 millis", maxAttempts: 3 }), Effect.withSpan("request"))
        )
        yield* TestClock.adjust("50 millis") // attempt 2 starts (delay) and fails 5 ms later: attempt 3 starts at once
        yield* TestClock.adjust("15 millis")
        assert.strictEqual(yield* Fiber.join(fiber), "fast")

        const request = only(spans, "request")
        const hedges = spans.filter((span) => span.name === "bulwark.hedge.attempt")
        assert.deepStrictEqual(hedges.map(attributesOf), [
          { "bulwark.name": "replicas", "bulwark.hedge.attempt": 1, "bulwark.hedge.trigger": "first" },
          { "bulwark.name": "replicas", "bulwark.hedge.attempt": 2, "bulwark.hedge.trigger": "delay" },
          { "bulwark.name": "replicas", "bulwark.hedge.attempt": 3, "bulwark.hedge.trigger": "failure" }
        ])
        assert.deepStrictEqual(hedges.map(endOf), [
          { exit: "Interrupted", ms: 65 },
          { exit: "Failure", ms: 5 },
          { exit: "Success", ms: 10 }
        ])
        assert.isTrue(hedges.every((span) => parentOf(span) === request))
        // Each attempt's own spans are children of their attempt's span.
        const reads = spans.filter((span) => span.name === "read")
        assert.deepStrictEqual(reads.map((span) => parentOf(span)), hedges)
      })
    ))
})

// -----------------------------------------------------------------------------
// decisions taken at once
// -----------------------------------------------------------------------------

describe("Telemetry rule: a decision taken at once is an attribute or an event on the caller's span, never a span", () => {
  it.effect("calls admitted at once by a bulkhead or a rate limiter add nothing", () =>
    traced((spans) =>
      Effect.gen(function*() {
        const bulkhead = yield* Bulkhead.make({ name: "db", maxConcurrent: 1 })
        const limiter = yield* RateLimiter.make({
          name: "github",
          algorithm: RateLimiter.fixedWindow({ limit: 10, window: "1 second" })
        })
        const value = yield* Effect.succeed(1).pipe(
          Bulkhead.guard(bulkhead),
          RateLimiter.guard(limiter),
          Effect.withSpan("request")
        )
        assert.strictEqual(value, 1)
        assert.deepStrictEqual(spans.map((span) => span.name), ["request"])
        assert.deepStrictEqual(attributesOf(spans[0]), {})
        assert.deepStrictEqual(eventsOf(spans[0]), [])
      })
    ))

  it.effect("a bulkhead rejection at the door: a bulwark.bulkhead.rejected event with the reason", () =>
    traced((spans) =>
      Effect.gen(function*() {
        const { bulkhead, release } = yield* busyBulkhead({ name: "db", maxConcurrent: 1 })
        const full = yield* Effect.void.pipe(Bulkhead.guard(bulkhead), Effect.withSpan("full"), Effect.flip)
        const oversized = yield* Effect.void.pipe(Bulkhead.guard(bulkhead, { weight: 2 }), Effect.withSpan("oversized"), Effect.flip)
        yield* release.open
        assert.deepStrictEqual([full.reason, oversized.reason], ["QueueFull", "Oversized"])

        assert.deepStrictEqual(spans.map((span) => span.name), ["full", "oversized"])
        assert.deepStrictEqual(eventsOf(only(spans, "full")), [
          ["bulwark.bulkhead.rejected", { "bulwark.name": "db", "bulwark.bulkhead.reason": "QueueFull" }]
        ])
        assert.deepStrictEqual(eventsOf(only(spans, "oversized")), [
          ["bulwark.bulkhead.rejected", { "bulwark.name": "db", "bulwark.bulkhead.reason": "Oversized" }]
        ])
      })
    ))

  it.effect("a bulkhead call whose deadline has passed is rejected with an event too", () =>
    traced((spans) =>
      Effect.gen(function*() {
        const bulkhead = yield* Bulkhead.make({ name: "db", maxConcurrent: 1 })
        yield* TestClock.adjust("1 second")
        const late = yield* Effect.void.pipe(Bulkhead.guard(bulkhead, { deadline: 500 }), Effect.withSpan("request"), Effect.flip)
        assert.strictEqual(late.reason, "QueueTimeout")
        assert.deepStrictEqual(eventsOf(only(spans, "request")), [
          ["bulwark.bulkhead.rejected", { "bulwark.name": "db", "bulwark.bulkhead.reason": "QueueTimeout" }]
        ])
      })
    ))

  it.effect("the circuit breaker: the state met as an attribute, transitions and rejections as events", () =>
    traced((spans) =>
      Effect.gen(function*() {
        const breaker = yield* CircuitBreaker.make({
          name: "payments",
          trip: CircuitBreaker.consecutive(2),
          openFor: "10 seconds"
        })
        const call = (label: string, effect: Effect.Effect<number, Boom>) =>
          effect.pipe(CircuitBreaker.guard(breaker), Effect.withSpan(label), Effect.exit)
        yield* call("ok", Effect.succeed(1))
        yield* call("failed", Effect.fail(new Boom()))
        yield* call("tripped", Effect.fail(new Boom()))
        const rejected = yield* call("rejected", Effect.succeed(1))
        yield* TestClock.adjust("10 seconds")
        const probe = yield* call("probe", Effect.succeed(1))
        assert.isTrue(Exit.isFailure(rejected))
        assert.deepStrictEqual(probe, Exit.succeed(1))

        assert.deepStrictEqual(spans.map((span) => span.name), ["ok", "failed", "tripped", "rejected", "probe"])
        const state = (label: string) => attributesOf(only(spans, label))
        const closed = { "bulwark.circuitbreaker.name": "payments", "bulwark.circuitbreaker.state": "Closed" }
        assert.deepStrictEqual(state("ok"), closed)
        assert.deepStrictEqual(state("failed"), closed)
        assert.deepStrictEqual(state("tripped"), closed)
        assert.deepStrictEqual(state("rejected"), { "bulwark.circuitbreaker.name": "payments", "bulwark.circuitbreaker.state": "Open" })
        assert.deepStrictEqual(state("probe"), { "bulwark.circuitbreaker.name": "payments", "bulwark.circuitbreaker.state": "HalfOpen" })

        assert.deepStrictEqual(eventsOf(only(spans, "ok")), [])
        assert.deepStrictEqual(eventsOf(only(spans, "failed")), [])
        assert.deepStrictEqual(eventsOf(only(spans, "tripped")), [
          ["bulwark.circuitbreaker.transition", {
            "bulwark.name": "payments",
            "bulwark.circuitbreaker.from": "Closed",
            "bulwark.circuitbreaker.to": "Open"
          }]
        ])
        assert.deepStrictEqual(eventsOf(only(spans, "rejected")), [
          ["bulwark.circuitbreaker.rejected", {
            "bulwark.name": "payments",
            "bulwark.circuitbreaker.reason": "Open",
            "bulwark.circuitbreaker.state": "Open",
            "bulwark.circuitbreaker.retry_after_ms": 10000
          }]
        ])
        assert.deepStrictEqual(eventsOf(only(spans, "probe")), [
          ["bulwark.circuitbreaker.transition", {
            "bulwark.name": "payments",
            "bulwark.circuitbreaker.from": "Open",
            "bulwark.circuitbreaker.to": "HalfOpen"
          }],
          ["bulwark.circuitbreaker.transition", {
            "bulwark.name": "payments",
            "bulwark.circuitbreaker.from": "HalfOpen",
            "bulwark.circuitbreaker.to": "Closed"
          }]
        ])
        assert.deepStrictEqual(eventTimesOf(only(spans, "probe")), [10_000, 10_000])
      })
    ))

  it.effect("the circuit breaker: an isolated circuit and a busy probe slot are rejections with their reasons", () =>
    traced((spans) =>
      Effect.gen(function*() {
        const breaker = yield* CircuitBreaker.make({ name: "search", trip: CircuitBreaker.consecutive(1), openFor: "1 second" })
        yield* Effect.fail(new Boom()).pipe(CircuitBreaker.guard(breaker), Effect.exit)
        yield* TestClock.adjust("1 second")
        const release = yield* Latch.make()
        const probe = yield* fork(release.await.pipe(CircuitBreaker.guard(breaker)))
        const busy = yield* Effect.void.pipe(CircuitBreaker.guard(breaker), Effect.withSpan("busy"), Effect.flip)
        yield* release.open
        yield* Fiber.join(probe)
        yield* CircuitBreaker.isolate(breaker)
        const isolated = yield* Effect.void.pipe(CircuitBreaker.guard(breaker), Effect.withSpan("isolated"), Effect.flip)
        assert.deepStrictEqual([busy.reason, isolated.reason], ["ProbesBusy", "Isolated"])

        assert.deepStrictEqual(eventsOf(only(spans, "busy")), [
          ["bulwark.circuitbreaker.rejected", {
            "bulwark.name": "search",
            "bulwark.circuitbreaker.reason": "ProbesBusy",
            "bulwark.circuitbreaker.state": "HalfOpen",
            "bulwark.circuitbreaker.retry_after_ms": 0
          }]
        ])
        // An isolated circuit has no time to wait for: no retry_after_ms.
        assert.deepStrictEqual(eventsOf(only(spans, "isolated")), [
          ["bulwark.circuitbreaker.rejected", {
            "bulwark.name": "search",
            "bulwark.circuitbreaker.reason": "Isolated",
            "bulwark.circuitbreaker.state": "Isolated"
          }]
        ])
        assert.strictEqual(attributesOf(only(spans, "isolated"))["bulwark.circuitbreaker.state"], "Isolated")
      })
    ))

  it.effect("a rate limiter rejection: a bulwark.ratelimiter.rejected event with the reason, cost and retry time", () =>
    traced((spans) =>
      Effect.gen(function*() {
        const limiter = yield* RateLimiter.make({
          name: "github",
          algorithm: RateLimiter.fixedWindow({ limit: 2, window: "1 second" })
        })
        yield* Effect.void.pipe(RateLimiter.guard(limiter))
        yield* TestClock.adjust("400 millis")
        const limited = yield* Effect.void.pipe(RateLimiter.guard(limiter, { cost: 2 }), Effect.withSpan("request"), Effect.flip)
        const impossible = yield* Effect.void.pipe(RateLimiter.guard(limiter, { cost: 3 }), Effect.withSpan("impossible"), Effect.flip)
        assert.deepStrictEqual([limited.reason, impossible.reason], ["Exceeded", "Exceeded"])

        assert.deepStrictEqual(eventsOf(only(spans, "request")), [
          ["bulwark.ratelimiter.rejected", {
            "bulwark.name": "github",
            "bulwark.ratelimiter.reason": "Exceeded",
            "bulwark.ratelimiter.cost": 2,
            "bulwark.ratelimiter.retry_after_ms": 600
          }]
        ])
        // A cost the limit can never admit has no retry time.
        assert.deepStrictEqual(eventsOf(only(spans, "impossible")), [
          ["bulwark.ratelimiter.rejected", { "bulwark.name": "github", "bulwark.ratelimiter.reason": "Exceeded", "bulwark.ratelimiter.cost": 3 }]
        ])
      })
    ))

  it.effect("a waiting rate limiter refuses a slot beyond maxWait with WaitTooLong", () =>
    traced((spans) =>
      Effect.gen(function*() {
        const limiter = yield* RateLimiter.make({
          name: "sms",
          algorithm: RateLimiter.tokenBucket({ capacity: 1, refill: 1, per: "10 seconds" }),
          onExceeded: "wait",
          maxWait: "1 second"
        })
        yield* Effect.void.pipe(RateLimiter.guard(limiter))
        const error = yield* Effect.void.pipe(RateLimiter.guard(limiter), Effect.withSpan("request"), Effect.flip)
        assert.strictEqual(error.reason, "WaitTooLong")
        assert.deepStrictEqual(spans.map((span) => span.name), ["request"])
        assert.deepStrictEqual(eventsOf(only(spans, "request")), [
          ["bulwark.ratelimiter.rejected", {
            "bulwark.name": "sms",
            "bulwark.ratelimiter.reason": "WaitTooLong",
            "bulwark.ratelimiter.cost": 1,
            "bulwark.ratelimiter.retry_after_ms": 10000
          }]
        ])
      })
    ))

  it.effect("a retry sequence: one bulwark.retry.retrying event per failed attempt, with its number and the delay", () =>
    traced((spans) =>
      Effect.gen(function*() {
        const retry = yield* Retry.make({ name: "fetch", maxAttempts: 4, base: "100 millis", jitter: "none" })
        let attempts = 0
        const flaky = Effect.suspend(() => ++attempts < 3 ? Effect.fail(new Boom()) : Effect.succeed(attempts))
        const fiber = yield* fork(flaky.pipe(Retry.guard(retry), Effect.withSpan("request")))
        yield* TestClock.adjust("300 millis")
        assert.strictEqual(yield* Fiber.join(fiber), 3)

        const request = only(spans, "request")
        assert.deepStrictEqual(eventsOf(request), [
          ["bulwark.retry.retrying", { "bulwark.name": "fetch", "bulwark.retry.attempt": 1, "bulwark.retry.delay_ms": 100 }],
          ["bulwark.retry.retrying", { "bulwark.name": "fetch", "bulwark.retry.attempt": 2, "bulwark.retry.delay_ms": 200 }]
        ])
        assert.deepStrictEqual(eventTimesOf(request), [0, 100])
        assert.deepStrictEqual(spans.map((span) => span.name), ["request"])
      })
    ))

  it.effect("a retry that gives up ends with a bulwark.retry.stopped event: the reason and the attempts made", () =>
    traced((spans) =>
      Effect.gen(function*() {
        const retry = yield* Retry.make({ name: "fetch", maxAttempts: 3, base: "100 millis", jitter: "none" })
        const failing = Effect.fail(new Boom())
        const exhausted = yield* fork(failing.pipe(Retry.guard(retry), Effect.withSpan("exhausted"), Effect.flip))
        yield* TestClock.adjust("300 millis")
        assert.strictEqual((yield* Fiber.join(exhausted))._tag, "Boom")
        const picky = Retry.policy<Boom>({ name: "picky", while: () => false })
        yield* failing.pipe(Retry.guard(picky), Effect.withSpan("declined"), Effect.flip)

        assert.deepStrictEqual(eventsOf(only(spans, "exhausted")), [
          ["bulwark.retry.retrying", { "bulwark.name": "fetch", "bulwark.retry.attempt": 1, "bulwark.retry.delay_ms": 100 }],
          ["bulwark.retry.retrying", { "bulwark.name": "fetch", "bulwark.retry.attempt": 2, "bulwark.retry.delay_ms": 200 }],
          ["bulwark.retry.stopped", { "bulwark.name": "fetch", "bulwark.retry.reason": "MaxAttempts", "bulwark.retry.attempts": 3 }]
        ])
        assert.deepStrictEqual(eventsOf(only(spans, "declined")), [
          ["bulwark.retry.stopped", { "bulwark.name": "picky", "bulwark.retry.reason": "NotRetryable", "bulwark.retry.attempts": 1 }]
        ])
      })
    ))

  it.effect("Retry.schedule under Effect.retry reports the same events", () =>
    traced((spans) =>
      Effect.gen(function*() {
        const retry = yield* Retry.make({ name: "fetch", maxAttempts: 2, base: "100 millis", jitter: "none" })
        const fiber = yield* fork(
          Effect.fail(new Boom()).pipe(Effect.retry(Retry.schedule(retry)), Effect.withSpan("request"), Effect.flip)
        )
        yield* TestClock.adjust("100 millis")
        assert.strictEqual((yield* Fiber.join(fiber))._tag, "Boom")
        assert.deepStrictEqual(eventsOf(only(spans, "request")), [
          ["bulwark.retry.retrying", { "bulwark.name": "fetch", "bulwark.retry.attempt": 1, "bulwark.retry.delay_ms": 100 }],
          ["bulwark.retry.stopped", { "bulwark.name": "fetch", "bulwark.retry.reason": "MaxAttempts", "bulwark.retry.attempts": 2 }]
        ])
      })
    ))

  it.effect("a timeout that expires: a bulwark.timeout.expired event at the expiry, with the limit", () =>
    traced((spans) =>
      Effect.gen(function*() {
        const fiber = yield* fork(
          Effect.never.pipe(Timeout.guard({ name: "report", after: "2 seconds" }), Effect.withSpan("request"), Effect.flip)
        )
        yield* TestClock.adjust("2 seconds")
        assert.strictEqual((yield* Fiber.join(fiber))._tag, "TimeoutExceeded")
        const spent = yield* Effect.void.pipe(Timeout.guard({ name: "spent", after: 0 }), Effect.withSpan("spent"), Effect.flip)
        assert.strictEqual(spent._tag, "TimeoutExceeded")
        yield* Effect.void.pipe(Timeout.guard("1 second"), Effect.withSpan("in time"))

        const request = only(spans, "request")
        assert.deepStrictEqual(eventsOf(request), [
          ["bulwark.timeout.expired", { "bulwark.name": "report", "bulwark.timeout.after_ms": 2000 }]
        ])
        assert.deepStrictEqual(eventTimesOf(request), [2000])
        assert.deepStrictEqual(eventsOf(only(spans, "spent")), [
          ["bulwark.timeout.expired", { "bulwark.name": "spent", "bulwark.timeout.after_ms": 0 }]
        ])
        assert.deepStrictEqual(eventsOf(only(spans, "in time")), [])
      })
    ))

  it.effect("a fallback taken and a chaos injection are events, so a trace tells them from real outcomes", () =>
    traced((spans) =>
      Effect.gen(function*() {
        const cached = yield* Effect.fail(new Boom()).pipe(
          Fallback.onTag("Boom", () => Effect.succeed("cached")),
          Effect.withSpan("fallback")
        )
        assert.strictEqual(cached, "cached")
        const injected = yield* Effect.succeed(1).pipe(
          Chaos.fault({ name: "db-down", rate: 1, error: () => new Boom() }),
          Effect.withSpan("fault"),
          Effect.flip
        )
        assert.strictEqual(injected._tag, "Boom")
        const slow = yield* fork(Effect.succeed(1).pipe(Chaos.latency({ name: "db-slow", rate: 1, delay: "3 seconds" }), Effect.withSpan("latency")))
        yield* TestClock.adjust("3 seconds")
        assert.strictEqual(yield* Fiber.join(slow), 1)
        yield* Effect.succeed(1).pipe(Chaos.fault({ name: "off", rate: 0, error: "never" }), Effect.withSpan("missed"))

        assert.deepStrictEqual(eventsOf(only(spans, "fallback")), [
          ["bulwark.fallback.taken", { "bulwark.fallback.error": "Boom" }]
        ])
        assert.deepStrictEqual(eventsOf(only(spans, "fault")), [
          ["bulwark.chaos.injected", { "bulwark.name": "db-down", "bulwark.chaos.kind": "fault" }]
        ])
        assert.deepStrictEqual(eventsOf(only(spans, "latency")), [
          ["bulwark.chaos.injected", { "bulwark.name": "db-slow", "bulwark.chaos.kind": "latency", "bulwark.chaos.delay_ms": 3000 }]
        ])
        assert.deepStrictEqual(eventsOf(only(spans, "missed")), [])
      })
    ))
})

// -----------------------------------------------------------------------------
// bounded attributes
// -----------------------------------------------------------------------------

describe("Telemetry rule: attributes are bounded; keys appear only with exposeKeys", () => {
  const keyedRejections = (exposeKeys: boolean) =>
    traced((spans) =>
      Effect.gen(function*() {
        const tenants = yield* KeyedBulkhead.make({ name: "tenants", maxConcurrent: 1, maxKeys: 1, exposeKeys })
        const release = yield* Latch.make()
        yield* fork(release.await.pipe(KeyedBulkhead.guard(tenants, "acme")))
        yield* Effect.void.pipe(KeyedBulkhead.guard(tenants, "acme"), Effect.withSpan("full"), Effect.flip)
        yield* Effect.void.pipe(KeyedBulkhead.guard(tenants, "globex"), Effect.withSpan("no compartment"), Effect.flip)
        yield* release.open

        const users = yield* KeyedRateLimiter.make({
          name: "users",
          algorithm: RateLimiter.fixedWindow({ limit: 1, window: "1 minute" }),
          maxKeys: 10,
          exposeKeys
        })
        yield* Effect.void.pipe(KeyedRateLimiter.guard(users, "user-42"))
        yield* Effect.void.pipe(KeyedRateLimiter.guard(users, "user-42"), Effect.withSpan("limited"), Effect.flip)

        const breaker = yield* CircuitBreaker.make({
          name: "hosts",
          trip: CircuitBreaker.consecutive(1),
          openFor: "1 minute",
          keys: { maxKeys: 10, exposeKeys }
        })
        yield* Effect.fail(new Boom()).pipe(CircuitBreaker.guard(breaker, { key: "eu-1" }), Effect.withSpan("tripped"), Effect.flip)
        return ["full", "no compartment", "limited", "tripped"].map((name) => ({
          attributes: attributesOf(only(spans, name)),
          events: eventsOf(only(spans, name))
        }))
      })
    )

  it.effect("without exposeKeys no key is recorded", () =>
    Effect.gen(function*() {
      const [full, noCompartment, limited, tripped] = yield* keyedRejections(false)
      assert.deepStrictEqual(full.events, [
        ["bulwark.bulkhead.rejected", { "bulwark.name": "tenants", "bulwark.bulkhead.reason": "QueueFull" }]
      ])
      assert.deepStrictEqual(noCompartment.events, [
        ["bulwark.bulkhead.rejected", { "bulwark.name": "tenants", "bulwark.bulkhead.reason": "TooManyKeys" }]
      ])
      assert.deepStrictEqual(limited.events, [
        ["bulwark.ratelimiter.rejected", {
          "bulwark.name": "users",
          "bulwark.ratelimiter.reason": "Exceeded",
          "bulwark.ratelimiter.cost": 1,
          "bulwark.ratelimiter.retry_after_ms": 60000
        }]
      ])
      assert.deepStrictEqual(tripped.attributes, { "bulwark.circuitbreaker.name": "hosts", "bulwark.circuitbreaker.state": "Closed" })
      assert.deepStrictEqual(tripped.events, [
        ["bulwark.circuitbreaker.transition", {
          "bulwark.name": "hosts",
          "bulwark.circuitbreaker.from": "Closed",
          "bulwark.circuitbreaker.to": "Open"
        }]
      ])
    }))

  it.effect("with exposeKeys the key is recorded too", () =>
    Effect.gen(function*() {
      const [full, noCompartment, limited, tripped] = yield* keyedRejections(true)
      assert.deepStrictEqual(full.events, [
        ["bulwark.bulkhead.rejected", { "bulwark.name": "tenants", "bulwark.bulkhead.key": "acme", "bulwark.bulkhead.reason": "QueueFull" }]
      ])
      assert.deepStrictEqual(noCompartment.events, [
        ["bulwark.bulkhead.rejected", { "bulwark.name": "tenants", "bulwark.bulkhead.key": "globex", "bulwark.bulkhead.reason": "TooManyKeys" }]
      ])
      assert.deepStrictEqual(limited.events, [
        ["bulwark.ratelimiter.rejected", {
          "bulwark.name": "users",
          "bulwark.ratelimiter.key": "user-42",
          "bulwark.ratelimiter.reason": "Exceeded",
          "bulwark.ratelimiter.cost": 1,
          "bulwark.ratelimiter.retry_after_ms": 60000
        }]
      ])
      assert.deepStrictEqual(tripped.attributes, {
        "bulwark.circuitbreaker.name": "hosts",
        "bulwark.circuitbreaker.state": "Closed",
        "bulwark.circuitbreaker.key": "eu-1"
      })
      assert.deepStrictEqual(tripped.events, [
        ["bulwark.circuitbreaker.transition", {
          "bulwark.name": "hosts",
          "bulwark.circuitbreaker.from": "Closed",
          "bulwark.circuitbreaker.to": "Open",
          "bulwark.circuitbreaker.key": "eu-1"
        }]
      ])
    }))
})

// -----------------------------------------------------------------------------
// untraced calls
// -----------------------------------------------------------------------------

/** An exit as a line: the value, or the error's tag, reason and wait or retry time. */
const render = (exit: Exit.Exit<unknown, unknown>): string => {
  if (Exit.isSuccess(exit)) return `ok ${String(exit.value)}`
  const failure = exit.cause.reasons.find((reason) => reason._tag === "Fail")
  if (failure === undefined || failure._tag !== "Fail") return "interrupted or died"
  const error = failure.error as {
    readonly _tag?: string
    readonly reason?: string
    readonly waited?: Duration.Duration
    readonly retryAfter?: Duration.Duration
  }
  if (typeof error !== "object") return `failed ${String(error)}`
  const time = error.waited ?? error.retryAfter
  return ["failed", error._tag, error.reason, time === undefined ? undefined : Duration.toMillis(time)]
    .filter((part) => part !== undefined)
    .join(" ")
}

/**
 * Every traced path of the primitives, once: a queued bulkhead admission and
 * a rejection, a breaker tripping and rejecting, a rate limiter wait and a
 * rejection, a retry sequence, a timeout, a hedge, a fallback and a chaos
 * injection. `around` wraps every call (a parent span, or nothing). Returns
 * each call's exit, rendered.
 */
const workload = (around: <A, E>(effect: Effect.Effect<A, E>) => Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const outcomes: Array<string> = []
    const record = (exit: Exit.Exit<unknown, unknown>) => outcomes.push(render(exit))
    const run = <A, E>(effect: Effect.Effect<A, E>) => fork(Effect.exit(around(effect)))

    const { bulkhead, holder, release } = yield* busyBulkhead({ name: "db", maxConcurrent: 1, maxQueue: 1 })
    const queued = yield* run(Effect.succeed("row").pipe(Bulkhead.guard(bulkhead)))
    record(yield* Fiber.join(yield* run(Effect.succeed("row").pipe(Bulkhead.guard(bulkhead)))))
    yield* TestClock.adjust("10 millis")
    yield* release.open
    record(yield* Fiber.join(queued))
    yield* Fiber.join(holder)

    const breaker = yield* CircuitBreaker.make({ name: "payments", trip: CircuitBreaker.consecutive(1), openFor: "1 minute" })
    record(yield* Fiber.join(yield* run(Effect.fail(new Boom()).pipe(CircuitBreaker.guard(breaker)))))
    record(yield* Fiber.join(yield* run(Effect.succeed(1).pipe(CircuitBreaker.guard(breaker)))))

    const limiter = yield* RateLimiter.make({
      name: "github",
      algorithm: RateLimiter.tokenBucket({ capacity: 1, refill: 1, per: "1 second" }),
      onExceeded: "wait",
      maxWait: "1 second"
    })
    yield* Effect.void.pipe(RateLimiter.guard(limiter))
    const waiting = yield* run(Effect.succeed("repos").pipe(RateLimiter.guard(limiter)))
    record(yield* Fiber.join(yield* run(Effect.succeed("repos").pipe(RateLimiter.guard(limiter)))))
    yield* TestClock.adjust("1 second")
    record(yield* Fiber.join(waiting))

    const retry = yield* Retry.make({ name: "fetch", maxAttempts: 2, base: "100 millis", jitter: "none" })
    const retried = yield* run(Effect.fail(new Boom()).pipe(Retry.guard(retry)))
    const timedOut = yield* run(Effect.never.pipe(Timeout.guard({ name: "report", after: "100 millis" })))
    let attempt = 0
    const hedged = yield* run(
      Effect.suspend(() => ++attempt === 1 ? Effect.never : Effect.succeed(`attempt ${attempt}`)).pipe(
        Hedge.guard({ after: "50 millis", maxAttempts: 2 })
      )
    )
    yield* TestClock.adjust("100 millis")
    record(yield* Fiber.join(retried))
    record(yield* Fiber.join(timedOut))
    record(yield* Fiber.join(hedged))

    record(yield* Fiber.join(yield* run(Effect.fail(new Boom()).pipe(Fallback.onTag("Boom", () => Effect.succeed("cached"))))))
    record(yield* Fiber.join(yield* run(Effect.succeed(1).pipe(Chaos.fault({ rate: 1, error: "injected" })))))
    return outcomes
  })

const expectedOutcomes = [
  "failed BulkheadFull QueueFull 0",
  "ok row",
  "failed Boom",
  "failed CircuitOpen Open 60000",
  "failed RateLimited WaitTooLong 1990",
  "ok repos",
  "failed Boom",
  "failed TimeoutExceeded Elapsed",
  "ok attempt 2",
  "ok cached",
  "failed injected"
]

describe("Telemetry rule: without a current span nothing is recorded, and the results are the same", () => {
  it.effect("the workload under a parent span records spans and events", () =>
    traced((spans) =>
      Effect.gen(function*() {
        const outcomes = yield* workload(Effect.withSpan("request"))
        assert.deepStrictEqual(outcomes, expectedOutcomes)
        const names = new Set(spans.map((span) => span.name))
        assert.deepStrictEqual([...names].sort(), ["bulwark.bulkhead.wait", "bulwark.hedge.attempt", "bulwark.ratelimiter.wait", "request"])
        const events = spans.flatMap((span) => eventsOf(span).map(([name]) => name)).sort()
        assert.deepStrictEqual(events, [
          "bulwark.bulkhead.rejected",
          "bulwark.chaos.injected",
          "bulwark.circuitbreaker.rejected",
          "bulwark.circuitbreaker.transition",
          "bulwark.fallback.taken",
          "bulwark.ratelimiter.rejected",
          "bulwark.retry.retrying",
          "bulwark.retry.stopped",
          "bulwark.timeout.expired"
        ])
      })
    ))

  it.effect("the same workload without a parent span starts no span and gives the same results", () =>
    traced((spans) =>
      Effect.gen(function*() {
        const outcomes = yield* workload((effect) => effect)
        assert.deepStrictEqual(outcomes, expectedOutcomes)
        assert.deepStrictEqual(spans.map((span) => span.name), [])
      })
    ))

  it.effect("under Effect's default native tracer, a current span is left untouched", () =>
    Effect.gen(function*() {
      const captured: Array<Tracer.Span> = []
      const capture = Effect.currentSpan.pipe(Effect.orDie, Effect.tap((span) => Effect.sync(() => captured.push(span))))
      const outcomes = yield* workload((effect) => Effect.withSpan(Effect.andThen(capture, effect), "request"))
      assert.deepStrictEqual(outcomes, expectedOutcomes)
      assert.strictEqual(captured.length, expectedOutcomes.length)
      for (const span of captured) {
        assert.instanceOf(span, Tracer.NativeSpan)
        assert.deepStrictEqual(attributesOf(span as Tracer.NativeSpan), {})
        assert.deepStrictEqual(eventsOf(span as Tracer.NativeSpan), [])
      }
    }))
})
