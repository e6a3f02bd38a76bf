/**
 * `onStoreError` of RateLimiter, KeyedRateLimiter and CircuitBreaker (issue 5): what a call
 * does when a shared store cannot decide. The store here is a real in-process store (the
 * in-memory one) seen only through its `Effect` operations, as a remote store would be, and
 * made to fail with `StoreError` on demand; time is TestClock's.
 *
 * One `describe` per rule:
 *
 * - "local" (the default): an in-memory stand-in with the same options decides until the
 *   store answers again;
 * - "fail-open": the call passes (the breaker runs it unrecorded);
 * - "fail-closed": the call fails with reason `StoreUnavailable`, `retryAfter` the time until
 *   the store is asked again;
 * - while the store is down (Unavailable, Timeout) it is asked once per second, not per call;
 *   a `Rejected` error does not back off;
 * - store errors are counted in stats and pull-based metrics, and reported as events;
 * - an in-process store never fails: none of this costs its hot path anything.
 */
import { assert, describe, it } from "@effect/vitest"
import {
  CircuitBreaker,
  CircuitBreakerStore,
  CircuitOpen,
  InvalidOptions,
  KeyedRateLimiter,
  RateLimited,
  RateLimiter,
  RateLimiterStore,
  StoreError,
  type Store
} from "@bulwark/core"
import { Cause, Data, Deferred, Duration, Effect, Exit, Fiber, Metric, Schema, Stream } from "effect"
import { TestClock } from "effect/testing"

// -----------------------------------------------------------------------------
// a store that fails on demand
// -----------------------------------------------------------------------------

/** What the failing stores below are told to do. */
interface Switch {
  /** Fail every operation with this reason; `undefined`: answer. */
  failing: Store.Reason | undefined
}

const storeError = (operation: string, reason: Store.Reason) =>
  new StoreError({ store: "test", operation, reason, message: `the test store is ${reason}` })

/** The in-memory rate limiter store, through its `Effect` operations only, failing on demand; counts every call. */
const flakyLimiterStore = () => {
  const inner = RateLimiterStore.memory()
  const calls = { consume: 0, refund: 0, block: 0 }
  const control: Switch = { failing: undefined }
  const guard = <A>(operation: "consume" | "refund" | "block", run: () => Effect.Effect<A, StoreError>) =>
    Effect.suspend(() => {
      calls[operation]++
      return control.failing === undefined ? run() : Effect.fail(storeError(operation, control.failing))
    })
  const store = RateLimiterStore.make({
    consume: (...args) => guard("consume", () => inner.consume(...args)),
    refund: (...args) => guard("refund", () => inner.refund(...args)),
    block: (...args) => guard("block", () => inner.block(...args))
  })
  return { store, calls, control, inner }
}

/** The in-memory circuit breaker store, through its `Effect` operations only, failing on demand. */
const flakyBreakerStore = () => {
  const inner = CircuitBreakerStore.memory()
  const calls = { admit: 0, record: 0, read: 0, force: 0 }
  const control: Switch = { failing: undefined }
  const guard = <A>(operation: keyof typeof calls, run: () => Effect.Effect<A, StoreError>) =>
    Effect.suspend(() => {
      calls[operation]++
      return control.failing === undefined ? run() : Effect.fail(storeError(operation, control.failing))
    })
  const store = CircuitBreakerStore.make({
    admit: (...args) => guard("admit", () => inner.admit(...args)),
    record: (...args) => guard("record", () => inner.record(...args)),
    read: (...args) => guard("read", () => inner.read(...args)),
    force: (...args) => guard("force", () => inner.force(...args))
  })
  return { store, calls, control, inner }
}

// -----------------------------------------------------------------------------
// helpers
// -----------------------------------------------------------------------------

class Boom extends Data.TaggedError("Boom") {}

const settle = Effect.gen(function*() {
  for (let i = 0; i < 20; i++) yield* Effect.yieldNow
})

const ms = (d: Duration.Duration): number => Duration.toMillis(d)

/** Runs a guarded no-op: the exit says whether it passed. */
const attempt = (guarded: Effect.Effect<void, RateLimited>) => Effect.exit(guarded)

const limited = (exit: Exit.Exit<unknown, unknown>): RateLimited => {
  if (Exit.isSuccess(exit)) return assert.fail("expected RateLimited, got a success")
  const error = Cause.squash(exit.cause)
  assert.instanceOf(error, RateLimited)
  return error as RateLimited
}

const opened = (exit: Exit.Exit<unknown, unknown>): CircuitOpen => {
  if (Exit.isSuccess(exit)) return assert.fail("expected CircuitOpen, got a success")
  const error = Cause.squash(exit.cause)
  assert.instanceOf(error, CircuitOpen)
  return error as CircuitOpen
}

const limiter = (store: RateLimiterStore.RateLimiterStore, onStoreError?: Store.OnStoreError, wait = false) =>
  RateLimiter.make({
    name: "api",
    algorithm: RateLimiter.fixedWindow({ limit: 2, window: "1 second" }),
    store,
    ...(onStoreError === undefined ? {} : { onStoreError }),
    ...(wait ? { onExceeded: "wait" as const } : {})
  })

const breaker = (store: CircuitBreakerStore.CircuitBreakerStore, onStoreError?: Store.OnStoreError) =>
  CircuitBreaker.make({
    name: "payments",
    trip: CircuitBreaker.consecutive(2),
    openFor: "10 seconds",
    store,
    ...(onStoreError === undefined ? {} : { onStoreError })
  })

const succeed = (b: CircuitBreaker.CircuitBreaker) => Effect.exit(Effect.succeed("ok").pipe(CircuitBreaker.guard(b)))
const fail = (b: CircuitBreaker.CircuitBreaker) => Effect.exit(Effect.fail(new Boom()).pipe(CircuitBreaker.guard(b)))

/** The count of a pull-based counter series in the current MetricRegistry. */
const counter = (id: string, attributes: Record<string, string>) =>
  Effect.map(Metric.snapshot, (snapshot) => {
    const found = snapshot.find((m) =>
      m.id === id && Object.entries(attributes).every(([k, v]) => (m.attributes as Record<string, string> | undefined)?.[k] === v)
    )
    return found === undefined ? undefined : Number((found.state as { readonly count: number }).count)
  })

const withRegistry = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.provideService(effect, Metric.MetricRegistry, new Map())

// -----------------------------------------------------------------------------
// rate limiter
// -----------------------------------------------------------------------------

describe("RateLimiter onStoreError \"local\" (the default): an in-memory limiter of the same options decides until the store answers", () => {
  it.effect("the store fails: the stand-in admits the limit and rejects beyond it, as the store would", () =>
    Effect.gen(function*() {
      const { control, store } = flakyLimiterStore()
      const l = yield* limiter(store)
      control.failing = "Unavailable"
      const guarded = Effect.void.pipe(RateLimiter.guard(l))
      assert.isTrue(Exit.isSuccess(yield* attempt(guarded)))
      assert.isTrue(Exit.isSuccess(yield* attempt(guarded)))
      const e = limited(yield* attempt(guarded))
      assert.deepStrictEqual([e.reason, ms(e.retryAfter)], ["Exceeded", 1_000])
      const s = yield* RateLimiter.stats(l)
      assert.deepStrictEqual([s.admitted, s.rejected.Exceeded, s.remaining], [2, 1, 0])
    }))

  it.effect("with onExceeded \"wait\", the stand-in reserves slots; an interrupted waiter gives its slot back to the stand-in, not to the store", () =>
    Effect.gen(function*() {
      const { calls, control, store } = flakyLimiterStore()
      const l = yield* limiter(store, "local", true)
      control.failing = "Unavailable"
      const started: Array<string> = []
      const run = (label: string) =>
        Effect.forkChild(Effect.sync(() => void started.push(label)).pipe(RateLimiter.guard(l)))
      yield* run("a")
      yield* run("b")
      yield* settle
      const c = yield* run("c") // the next window: 1 000
      yield* settle
      yield* Fiber.interrupt(c)
      const d = yield* run("d") // takes c's slot
      yield* settle
      assert.deepStrictEqual(started, ["a", "b"])
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(d)
      assert.deepStrictEqual(started, ["a", "b", "d"])
      assert.strictEqual(calls.refund, 0, "the store never saw the stand-in's reservation")
    }))

  it.effect("when the store answers again it decides again; the stand-in is not consulted meanwhile", () =>
    Effect.gen(function*() {
      const { calls, control, inner, store } = flakyLimiterStore()
      const l = yield* limiter(store)
      control.failing = "Timeout"
      yield* attempt(Effect.void.pipe(RateLimiter.guard(l)))
      control.failing = undefined
      yield* TestClock.adjust("1 second")
      for (let i = 0; i < 3; i++) yield* attempt(Effect.void.pipe(RateLimiter.guard(l)))
      assert.strictEqual(calls.consume, 4)
      // The store's own state has the three calls (two admitted, one refused), the stand-in's the first.
      assert.strictEqual(inner.inProcess!.remaining("api", l.algorithm, 1_000), 0)
    }))
})

describe("RateLimiter onStoreError \"fail-open\": the call passes (a block this process knows of still holds)", () => {
  it.effect("every call passes while the store fails; a block given meanwhile still rejects with Blocked", () =>
    Effect.gen(function*() {
      const { control, store } = flakyLimiterStore()
      const l = yield* limiter(store, "fail-open")
      control.failing = "Unavailable"
      for (let i = 0; i < 5; i++) assert.isTrue(Exit.isSuccess(yield* attempt(Effect.void.pipe(RateLimiter.guard(l)))))
      yield* RateLimiter.block(l, "30 seconds")
      const e = limited(yield* attempt(Effect.void.pipe(RateLimiter.guard(l))))
      assert.deepStrictEqual([e.reason, ms(e.retryAfter)], ["Blocked", 30_000])
      const s = yield* RateLimiter.stats(l)
      assert.deepStrictEqual([s.admitted, s.decidedWithoutStore], [5, 6])
    }))
})

describe("RateLimiter onStoreError \"fail-closed\": the call fails with StoreUnavailable and the time until the store is asked again", () => {
  it.effect("reason StoreUnavailable; retryAfter counts down the one-second backoff", () =>
    Effect.gen(function*() {
      const { control, store } = flakyLimiterStore()
      const l = yield* limiter(store, "fail-closed")
      control.failing = "Unavailable"
      const first = limited(yield* attempt(Effect.void.pipe(RateLimiter.guard(l))))
      assert.deepStrictEqual([first.reason, ms(first.retryAfter), first.name], ["StoreUnavailable", 1_000, "api"])
      yield* TestClock.adjust("400 millis")
      assert.strictEqual(ms(limited(yield* attempt(Effect.void.pipe(RateLimiter.guard(l)))).retryAfter), 600)
      control.failing = undefined
      yield* TestClock.adjust("600 millis")
      assert.isTrue(Exit.isSuccess(yield* attempt(Effect.void.pipe(RateLimiter.guard(l)))))
      assert.strictEqual((yield* RateLimiter.stats(l)).rejected.StoreUnavailable, 2)
    }))

  it.effect("a RateLimited with reason StoreUnavailable is a valid RateLimited (Schema, catchTag)", () =>
    Effect.gen(function*() {
      const { control, store } = flakyLimiterStore()
      const l = yield* limiter(store, "fail-closed")
      control.failing = "Unavailable"
      const handled = yield* Effect.void.pipe(
        RateLimiter.guard(l),
        Effect.as("passed"),
        Effect.catchTag("RateLimited", (e) => Effect.succeed(e.reason))
      )
      assert.strictEqual(handled, "StoreUnavailable")
      const e = limited(yield* attempt(Effect.void.pipe(RateLimiter.guard(l))))
      assert.isTrue(Schema.is(RateLimited)(e))
      assert.strictEqual(Schema.encodeSync(RateLimited)(e).reason, "StoreUnavailable")
    }))
})

describe("RateLimiter: while the store is down it is asked once per second, not per call", () => {
  it.effect("Unavailable and Timeout back off for one second; then one call asks again; Rejected does not back off", () =>
    Effect.gen(function*() {
      const { calls, control, store } = flakyLimiterStore()
      const l = yield* limiter(store, "fail-open")
      const call = attempt(Effect.void.pipe(RateLimiter.guard(l)))
      control.failing = "Unavailable"
      for (let i = 0; i < 10; i++) yield* call
      assert.strictEqual(calls.consume, 1, "one failed round trip, then the policy decides")
      yield* TestClock.adjust("999 millis")
      yield* call
      assert.strictEqual(calls.consume, 1)
      yield* TestClock.adjust("1 millis")
      for (let i = 0; i < 10; i++) yield* call
      assert.strictEqual(calls.consume, 2, "one call asks again after the backoff")
      control.failing = undefined
      yield* TestClock.adjust("1 second")
      for (let i = 0; i < 3; i++) yield* call
      assert.strictEqual(calls.consume, 5, "the store answered: every call asks it again")
      control.failing = "Rejected"
      for (let i = 0; i < 3; i++) yield* call
      assert.strictEqual(calls.consume, 8, "an error reply is about one operation: no backoff")
      assert.deepStrictEqual((yield* RateLimiter.stats(l)).storeErrors, { Unavailable: 2, Timeout: 0, Rejected: 3 })
    }))

  it.effect("refunds and blocks are not sent while the store is down (a refund is forfeited, a block holds locally)", () =>
    Effect.gen(function*() {
      const { calls, control, store } = flakyLimiterStore()
      const l = yield* RateLimiter.make({
        name: "w",
        algorithm: RateLimiter.fixedWindow({ limit: 1, window: "1 second" }),
        onExceeded: "wait",
        store
      })
      yield* attempt(Effect.void.pipe(RateLimiter.guard(l)))
      const waiting = yield* Effect.forkChild(Effect.void.pipe(RateLimiter.guard(l))) // a reservation in the store
      yield* settle
      control.failing = "Unavailable"
      yield* attempt(Effect.void.pipe(RateLimiter.guard(l))) // fails: the store is down from here
      yield* Fiber.interrupt(waiting)
      yield* RateLimiter.block(l, "5 seconds")
      assert.deepStrictEqual([calls.refund, calls.block], [0, 0])
      assert.strictEqual((yield* RateLimiter.stats(l)).blockedFor.pipe(ms), 5_000)
    }))
})

describe("RateLimiter: store errors are counted in stats and metrics and reported as events", () => {
  it.effect("stats.storeErrors by reason; bulwark.ratelimiter.store_errors{name,reason} and rejected{StoreUnavailable}; StoreFailed and StoreRecovered events", () =>
    withRegistry(Effect.gen(function*() {
      const { control, store } = flakyLimiterStore()
      const l = yield* limiter(store, "fail-closed")
      const events = yield* Effect.forkChild(Stream.runCollect(Stream.take(RateLimiter.events(l), 3)), { startImmediately: true })
      control.failing = "Timeout"
      yield* attempt(Effect.void.pipe(RateLimiter.guard(l)))
      control.failing = undefined
      yield* TestClock.adjust("1 second")
      yield* attempt(Effect.void.pipe(RateLimiter.guard(l)))
      const seen = Array.from(yield* Fiber.join(events))
      assert.deepStrictEqual(seen.map((e) => e._tag), ["StoreFailed", "Rejected", "StoreRecovered"])
      assert.deepStrictEqual(seen[0], {
        _tag: "StoreFailed",
        name: "api",
        operation: "consume",
        reason: "Timeout",
        message: "the test store is Timeout",
        onStoreError: "fail-closed"
      })
      const s = yield* RateLimiter.stats(l)
      assert.deepStrictEqual([s.storeErrors, s.decidedWithoutStore], [{ Unavailable: 0, Timeout: 1, Rejected: 0 }, 1])
      assert.strictEqual(yield* counter("bulwark.ratelimiter.store_errors", { name: "api", reason: "Timeout" }), 1)
      assert.strictEqual(yield* counter("bulwark.ratelimiter.store_errors", { name: "api", reason: "Unavailable" }), 0)
      assert.strictEqual(yield* counter("bulwark.ratelimiter.rejected", { name: "api", reason: "StoreUnavailable" }), 1)
    })))

  it.effect("an in-process store never fails: no store_errors or StoreUnavailable series, zeros in stats", () =>
    withRegistry(Effect.gen(function*() {
      const l = yield* limiter(RateLimiterStore.memory(), "fail-closed")
      yield* attempt(Effect.void.pipe(RateLimiter.guard(l)))
      assert.strictEqual(yield* counter("bulwark.ratelimiter.store_errors", { name: "api" }), undefined)
      assert.strictEqual(yield* counter("bulwark.ratelimiter.rejected", { name: "api", reason: "StoreUnavailable" }), undefined)
      const s = yield* RateLimiter.stats(l)
      assert.deepStrictEqual([s.storeErrors, s.decidedWithoutStore], [{ Unavailable: 0, Timeout: 0, Rejected: 0 }, 0])
    })))
})

describe("KeyedRateLimiter onStoreError: one policy for every key; the stand-in keeps a state per key", () => {
  it.effect("local: each key gets its own limit from the stand-in; fail-closed: StoreUnavailable for every key", () =>
    Effect.gen(function*() {
      const { control, store } = flakyLimiterStore()
      const options = {
        algorithm: RateLimiter.fixedWindow({ limit: 1, window: "1 second" }),
        maxKeys: 10,
        store
      } as const
      const local = yield* KeyedRateLimiter.make({ name: "local", ...options })
      const closed = yield* KeyedRateLimiter.make({ name: "closed", ...options, onStoreError: "fail-closed" })
      control.failing = "Unavailable"
      const pass = (k: KeyedRateLimiter.KeyedRateLimiter, key: string) =>
        Effect.map(Effect.exit(Effect.void.pipe(KeyedRateLimiter.guard(k, key))), Exit.isSuccess)
      assert.deepStrictEqual([yield* pass(local, "a"), yield* pass(local, "b"), yield* pass(local, "a")], [true, true, false])
      assert.strictEqual(limited(yield* Effect.exit(Effect.void.pipe(KeyedRateLimiter.guard(closed, "a")))).reason, "StoreUnavailable")
      const s = yield* KeyedRateLimiter.stats(local)
      assert.deepStrictEqual([s.storeErrors.Unavailable, s.decidedWithoutStore, s.rejected.Exceeded], [1, 3, 1])
    }))
})

describe("RateLimiter onStoreError is validated with the other options", () => {
  it.effect("an unknown policy fails make with InvalidOptions naming onStoreError", () =>
    Effect.gen(function*() {
      const e = yield* Effect.flip(RateLimiter.make({
        name: "x",
        algorithm: RateLimiter.fixedWindow({ limit: 1, window: "1 second" }),
        onStoreError: "retry" as Store.OnStoreError
      }))
      assert.instanceOf(e, InvalidOptions)
      assert.match(e.message, /^onStoreError: /)
      const c = yield* Effect.flip(CircuitBreaker.make({
        name: "y",
        trip: CircuitBreaker.consecutive(1),
        openFor: "1 second",
        onStoreError: "open" as Store.OnStoreError
      }))
      assert.instanceOf(c, InvalidOptions)
      assert.match(c.message, /^onStoreError: /)
    }))
})

// -----------------------------------------------------------------------------
// circuit breaker
// -----------------------------------------------------------------------------

describe("CircuitBreaker onStoreError \"local\" (the default): an in-memory breaker of the same policy decides until the store answers", () => {
  it.effect("the store fails: local failures still trip the stand-in, which rejects with Open and reports its transitions", () =>
    Effect.gen(function*() {
      const { calls, control, store } = flakyBreakerStore()
      const b = yield* breaker(store)
      const transitions = yield* Effect.forkChild(Stream.runCollect(Stream.take(CircuitBreaker.transitions(b), 1)), {
        startImmediately: true
      })
      control.failing = "Unavailable"
      yield* fail(b)
      yield* fail(b)
      const e = opened(yield* succeed(b))
      assert.deepStrictEqual([e.reason, e.state, ms(e.retryAfter)], ["Open", "Open", 10_000])
      assert.deepStrictEqual(Array.from(yield* Fiber.join(transitions)).map((t) => `${t.from} -> ${t.to}`), ["Closed -> Open"])
      assert.strictEqual(calls.admit, 1, "one failed round trip; the stand-in decided the rest")
      assert.strictEqual(calls.record, 0)
      const info = yield* CircuitBreaker.state(b)
      assert.deepStrictEqual([info.state, ms(info.retryAfter)], ["Open", 10_000], "state() reads the stand-in while the store is down")
      const s = yield* CircuitBreaker.stats(b)
      assert.deepStrictEqual([s.failures, s.rejected.Open, s.openings, s.decidedWithoutStore], [2, 1, 1, 3])
    }))

  it.effect("isolate while the store fails: the stand-in is isolated; when the store answers again it decides again", () =>
    Effect.gen(function*() {
      const { control, store } = flakyBreakerStore()
      const b = yield* breaker(store)
      control.failing = "Unavailable"
      yield* CircuitBreaker.isolate(b)
      assert.strictEqual(opened(yield* succeed(b)).reason, "Isolated")
      control.failing = undefined
      yield* TestClock.adjust("1 second")
      assert.isTrue(Exit.isSuccess(yield* succeed(b)), "the store never heard of the isolation")
    }))
})

describe("CircuitBreaker onStoreError \"fail-open\": the call runs and nothing is recorded", () => {
  it.effect("calls run while the store fails; no outcome is recorded anywhere", () =>
    Effect.gen(function*() {
      const { calls, control, store } = flakyBreakerStore()
      const b = yield* breaker(store, "fail-open")
      control.failing = "Unavailable"
      for (let i = 0; i < 5; i++) {
        const exit = yield* fail(b)
        assert.isTrue(Exit.isFailure(exit) && Cause.squash(exit.cause) instanceof Boom, "the call ran")
      }
      assert.strictEqual(calls.record, 0)
      const s = yield* CircuitBreaker.stats(b)
      assert.deepStrictEqual([s.failures, s.openings, s.storeErrors.Unavailable], [0, 0, 1])
    }))
})

describe("CircuitBreaker onStoreError \"fail-closed\": CircuitOpen with reason StoreUnavailable, state Unknown", () => {
  it.effect("reason StoreUnavailable, state Unknown, retryAfter the time until the store is asked again", () =>
    Effect.gen(function*() {
      const { control, store } = flakyBreakerStore()
      const b = yield* breaker(store, "fail-closed")
      control.failing = "Timeout"
      const e = opened(yield* succeed(b))
      assert.deepStrictEqual([e.reason, e.state, ms(e.retryAfter)], ["StoreUnavailable", "Unknown", 1_000])
      assert.include(e.message, "StoreUnavailable")
      yield* TestClock.adjust("250 millis")
      assert.strictEqual(ms(opened(yield* succeed(b)).retryAfter), 750)
      const handled = yield* Effect.succeed(1).pipe(
        CircuitBreaker.guard(b),
        Effect.catchTag("CircuitOpen", (x) => Effect.succeed(x.reason))
      )
      assert.strictEqual(handled, "StoreUnavailable")
      assert.strictEqual((yield* CircuitBreaker.stats(b)).rejected.StoreUnavailable, 3)
    }))
})

describe("CircuitBreaker: a report the store cannot take is counted and dropped; the call's own result stands", () => {
  it.effect("record fails: the caller gets its result, the error is counted, nothing hangs", () =>
    Effect.gen(function*() {
      const { calls, control, store } = flakyBreakerStore()
      const b = yield* breaker(store)
      const gate = yield* Deferred.make<string>()
      const call = yield* Effect.forkChild(Deferred.await(gate).pipe(CircuitBreaker.guard(b)))
      yield* settle
      control.failing = "Unavailable" // after the admission, before the report
      yield* Deferred.succeed(gate, "charged")
      assert.strictEqual(yield* Fiber.join(call), "charged")
      assert.deepStrictEqual([calls.admit, calls.record], [1, 1])
      const s = yield* CircuitBreaker.stats(b)
      assert.deepStrictEqual([s.successes, s.storeErrors.Unavailable], [1, 1])
      // The store is now known to be down: the next report is not even sent.
      const second = yield* Effect.forkChild(Effect.succeed("x").pipe(CircuitBreaker.guard(b)))
      yield* Fiber.join(second)
      assert.strictEqual(calls.record, 1)
    }))
})

describe("CircuitBreaker: while the store is down it is asked once per second; errors counted in stats, metrics and events", () => {
  it.effect("one admit per second while down; store_errors and rejected{StoreUnavailable} series; StoreFailed and StoreRecovered events", () =>
    withRegistry(Effect.gen(function*() {
      const { calls, control, store } = flakyBreakerStore()
      const b = yield* breaker(store, "fail-closed")
      const events = yield* Effect.forkChild(
        Stream.runCollect(Stream.take(Stream.filter(CircuitBreaker.events(b), (e) => e._tag.startsWith("Store")), 2)),
        { startImmediately: true }
      )
      control.failing = "Unavailable"
      for (let i = 0; i < 5; i++) yield* succeed(b)
      assert.strictEqual(calls.admit, 1)
      yield* TestClock.adjust("1 second")
      control.failing = undefined
      for (let i = 0; i < 3; i++) assert.isTrue(Exit.isSuccess(yield* succeed(b)))
      assert.strictEqual(calls.admit, 4)
      const seen = Array.from(yield* Fiber.join(events))
      assert.deepStrictEqual(seen, [
        {
          _tag: "StoreFailed",
          name: "payments",
          key: undefined,
          operation: "admit",
          reason: "Unavailable",
          message: "the test store is Unavailable",
          onStoreError: "fail-closed"
        },
        { _tag: "StoreRecovered", name: "payments" }
      ])
      assert.strictEqual(yield* counter("bulwark.circuitbreaker.store_errors", { name: "payments", reason: "Unavailable" }), 1)
      assert.strictEqual(yield* counter("bulwark.circuitbreaker.rejected", { name: "payments", reason: "StoreUnavailable" }), 5)
      const s = yield* CircuitBreaker.stats(b)
      assert.deepStrictEqual([s.storeErrors, s.decidedWithoutStore], [{ Unavailable: 1, Timeout: 0, Rejected: 0 }, 5])
    })))

  it.effect("the breaker's own in-memory store: no store_errors series, the closed path untouched", () =>
    withRegistry(Effect.gen(function*() {
      const b = yield* CircuitBreaker.make({ name: "own", trip: CircuitBreaker.consecutive(1), openFor: "1 second", onStoreError: "fail-closed" })
      assert.isTrue(Exit.isSuccess(yield* succeed(b)))
      assert.strictEqual(yield* counter("bulwark.circuitbreaker.store_errors", { name: "own" }), undefined)
      assert.strictEqual(yield* counter("bulwark.circuitbreaker.rejected", { name: "own", reason: "StoreUnavailable" }), undefined)
    })))
})

describe("OnStoreError rule: a store may declare the default; the primitive's own onStoreError wins", () => {
  it.effect("a rate limiter and a breaker on stores that declare fail-closed reject without the option, and follow the option when given", () =>
    Effect.gen(function*() {
      const limiterStore = flakyLimiterStore()
      const breakerStore = flakyBreakerStore()
      const declared = {
        limiter: RateLimiterStore.make({ ...limiterStore.store, onStoreError: "fail-closed" }),
        breaker: CircuitBreakerStore.make({ ...breakerStore.store, onStoreError: "fail-closed" })
      }
      limiterStore.control.failing = "Unavailable"
      breakerStore.control.failing = "Unavailable"
      const algorithm = RateLimiter.fixedWindow({ limit: 10, window: "1 second" })
      const limiter = yield* RateLimiter.make({ name: "declared", algorithm, store: declared.limiter })
      const limiterOpen = yield* RateLimiter.make({ name: "own", algorithm, store: declared.limiter, onStoreError: "fail-open" })
      const breaker = yield* CircuitBreaker.make({
        name: "declared",
        trip: CircuitBreaker.consecutive(1),
        openFor: "1 second",
        store: declared.breaker
      })
      const breakerOpen = yield* CircuitBreaker.make({
        name: "own",
        trip: CircuitBreaker.consecutive(1),
        openFor: "1 second",
        store: declared.breaker,
        onStoreError: "fail-open"
      })
      assert.strictEqual((yield* Effect.flip(Effect.void.pipe(RateLimiter.guard(limiter)))).reason, "StoreUnavailable")
      assert.strictEqual(yield* Effect.succeed("ran").pipe(RateLimiter.guard(limiterOpen)), "ran")
      assert.strictEqual((yield* Effect.flip(Effect.void.pipe(CircuitBreaker.guard(breaker)))).reason, "StoreUnavailable")
      assert.strictEqual(yield* Effect.succeed("ran").pipe(CircuitBreaker.guard(breakerOpen)), "ran")
      // Without a declaration the default is "local": an in-memory stand-in decides.
      const local = yield* RateLimiter.make({ name: "local", algorithm, store: limiterStore.store })
      assert.strictEqual(yield* Effect.succeed("ran").pipe(RateLimiter.guard(local)), "ran")
      assert.strictEqual((yield* RateLimiter.stats(local)).decidedWithoutStore, 1)
    }))
})
