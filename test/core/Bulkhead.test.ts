import { assert, describe, it } from "@effect/vitest"
import { Bulkhead, BulkheadFull, InvalidOptions } from "@bulwark/core"
import { Cause, Clock, Context, Data, Deferred, Duration, Effect, Exit, Fiber, Layer, Metric, Result, Schedule, Scope, Stream } from "effect"
import { TestClock } from "effect/testing"

// -----------------------------------------------------------------------------
// helpers
// -----------------------------------------------------------------------------

class Boom extends Data.TaggedError("Boom")<{ readonly label: string }> {}

type Reason = "QueueFull" | "QueueTimeout" | "Closed" | "Oversized"
const reasons: ReadonlyArray<Reason> = ["QueueFull", "QueueTimeout", "Closed", "Oversized"]

/**
 * Every fiber a test forks. When an assertion fails they are interrupted
 * before the test's scope closes: otherwise the scope would close the
 * bulkhead and drain it, waiting for calls that will never finish.
 */
const live = new Set<Fiber.Fiber<unknown, unknown>>()

const fork = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<Fiber.Fiber<A, E>, never, R> =>
  Effect.tap(Effect.forkChild(effect), (fiber) => Effect.sync(() => void live.add(fiber)))

/** `it.effect`, with the forked fibers interrupted if the test fails. */
const test = (name: string, body: () => Effect.Effect<void, unknown, Scope.Scope>): void =>
  it.effect(name, () =>
    Effect.suspend(body).pipe(
      Effect.onError(() => Fiber.interruptAll(Array.from(live))),
      Effect.ensuring(Effect.sync(() => live.clear()))
    ))

/**
 * Lets every fiber that is ready run. Waking a queued call goes through the
 * scheduler, so one yield is not always enough.
 */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 20; i++) yield* Effect.yieldNow
})

interface Call {
  readonly label: string
  readonly fiber: Fiber.Fiber<string, BulkheadFull | Boom>
  readonly gate: Deferred.Deferred<string, Boom>
}

/**
 * A bench around one bulkhead: `start` launches a guarded call that records
 * its admission in `log` (so the order of admission can be asserted exactly)
 * and then runs until its gate is opened.
 */
const bench = (b: Bulkhead.Bulkhead) => {
  const log: Array<string> = []
  const start = (label: string, options?: Bulkhead.GuardOptions) =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<string, Boom>()
      const fiber = yield* fork(
        Effect.sync(() => log.push(label)).pipe(
          Effect.andThen(Deferred.await(gate)),
          Bulkhead.guard(b, options)
        )
      )
      yield* settle
      return { label, fiber, gate } satisfies Call
    })
  return { log, start }
}

/** Lets a running call succeed, waits for its end and for the wake-ups its release caused. */
const finish = (call: Call) =>
  Effect.gen(function*() {
    yield* Deferred.succeed(call.gate, call.label)
    const value = yield* Fiber.join(call.fiber)
    yield* settle
    return value
  })

/** Lets a running call fail with a typed error. */
const failCall = (call: Call) =>
  Effect.gen(function*() {
    yield* Deferred.fail(call.gate, new Boom({ label: call.label }))
    const exit = yield* Fiber.await(call.fiber)
    yield* settle
    return exit
  })

const isDone = (fiber: Fiber.Fiber<unknown, unknown>): boolean => fiber.pollUnsafe() !== undefined

/** The call has already ended with a `BulkheadFull` of this reason and wait. */
const expectRejected = (fiber: Fiber.Fiber<unknown, unknown>, reason: Reason, waitedMs: number) => {
  const exit = fiber.pollUnsafe()
  assert.isDefined(exit, `expected the call to be rejected with ${reason}, but it has not ended`)
  if (exit === undefined) throw new Error("unreachable")
  assert.isTrue(Exit.isFailure(exit), `expected a failure with ${reason}, got ${String(exit)}`)
  if (!Exit.isFailure(exit)) throw new Error("unreachable")
  const error = Cause.squash(exit.cause)
  assert.instanceOf(error, BulkheadFull)
  const full = error as BulkheadFull
  assert.strictEqual(full._tag, "BulkheadFull")
  assert.strictEqual(full.reason, reason)
  assert.strictEqual(Duration.toMillis(full.waited), waitedMs)
  return full
}

interface Counts {
  readonly inFlight: number
  readonly running: number
  readonly queued: number
  readonly admitted: number
  readonly completed: number
  readonly rejected?: Partial<Record<Reason, number>>
  readonly cancelled?: number
}

/** Asserts the exact counters of a bulkhead (every rejection reason not given must be 0). */
const expectCounts = (b: Bulkhead.Bulkhead, expected: Counts) =>
  Effect.gen(function*() {
    const s = yield* Bulkhead.stats(b)
    const rejected = { QueueFull: 0, QueueTimeout: 0, Closed: 0, Oversized: 0, ...expected.rejected }
    const rejectedTotal = reasons.reduce((n, r) => n + rejected[r], 0)
    assert.deepStrictEqual(
      {
        inFlight: s.inFlight,
        running: s.running,
        queued: s.queued,
        admitted: s.admitted,
        completed: s.completed,
        rejected: { QueueFull: s.rejected.QueueFull, QueueTimeout: s.rejected.QueueTimeout, Closed: s.rejected.Closed, Oversized: s.rejected.Oversized },
        rejectedTotal: s.rejectedTotal
      },
      {
        inFlight: expected.inFlight,
        running: expected.running,
        queued: expected.queued,
        admitted: expected.admitted,
        completed: expected.completed,
        rejected,
        rejectedTotal
      }
    )
    if (expected.cancelled !== undefined) assert.strictEqual(s.cancelled, expected.cancelled)
    return s
  })

/**
 * Proves that a bulkhead with `maxConcurrent` 1 and `maxQueue` 1 has its full
 * capacity and nothing more: one call runs, one waits, the next is rejected.
 */
const expectCapacityOneAndOne = (b: Bulkhead.Bulkhead) =>
  Effect.gen(function*() {
    const { log, start } = bench(b)
    const first = yield* start("first")
    const second = yield* start("second")
    const third = yield* start("third")
    assert.deepStrictEqual(log, ["first"])
    assert.isFalse(isDone(second.fiber))
    expectRejected(third.fiber, "QueueFull", 0)
    assert.strictEqual(yield* finish(first), "first")
    assert.deepStrictEqual(log, ["first", "second"])
    assert.strictEqual(yield* finish(second), "second")
    const s = yield* Bulkhead.stats(b)
    assert.strictEqual(s.inFlight, 0)
    assert.strictEqual(s.running, 0)
    assert.strictEqual(s.queued, 0)
  })

const millis = (d: Duration.Duration) => Duration.toMillis(d)

// -----------------------------------------------------------------------------
// 1. caps and FIFO
// -----------------------------------------------------------------------------

describe("Bulkhead rule 1: at most maxConcurrent permits, at most maxQueue waiting, strict FIFO", () => {
  test("at most maxConcurrent calls run; the others wait in the queue", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "cap", maxConcurrent: 2, maxQueue: 5 })
      const { log, start } = bench(b)
      const a = yield* start("a")
      const c1 = yield* start("b")
      const c2 = yield* start("c")
      const c3 = yield* start("d")
      assert.deepStrictEqual(log, ["a", "b"])
      yield* expectCounts(b, { inFlight: 2, running: 2, queued: 2, admitted: 2, completed: 0 })
      assert.strictEqual(yield* finish(a), "a")
      assert.deepStrictEqual(log, ["a", "b", "c"])
      yield* expectCounts(b, { inFlight: 2, running: 2, queued: 1, admitted: 3, completed: 1 })
      yield* finish(c1)
      assert.deepStrictEqual(log, ["a", "b", "c", "d"])
      yield* expectCounts(b, { inFlight: 2, running: 2, queued: 0, admitted: 4, completed: 2 })
      yield* finish(c2)
      yield* finish(c3)
      const s = yield* expectCounts(b, { inFlight: 0, running: 0, queued: 0, admitted: 4, completed: 4 })
      assert.strictEqual(s.peakInFlight, 2)
      assert.strictEqual(s.peakQueued, 2)
    }))

  test("weights count: a call holds `weight` permits", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "weights", maxConcurrent: 4, maxQueue: 5 })
      const { log, start } = bench(b)
      const a = yield* start("a", { weight: 3 })
      const c = yield* start("b", { weight: 2 })
      assert.deepStrictEqual(log, ["a"])
      yield* expectCounts(b, { inFlight: 3, running: 1, queued: 1, admitted: 1, completed: 0 })
      yield* finish(a)
      assert.deepStrictEqual(log, ["a", "b"])
      yield* expectCounts(b, { inFlight: 2, running: 1, queued: 0, admitted: 2, completed: 1 })
      const d = yield* start("c", { weight: 2 }) // 2 + 2 = 4 fits exactly
      assert.deepStrictEqual(log, ["a", "b", "c"])
      yield* expectCounts(b, { inFlight: 4, running: 2, queued: 0, admitted: 3, completed: 1 })
      yield* finish(c)
      yield* finish(d)
      yield* expectCounts(b, { inFlight: 0, running: 0, queued: 0, admitted: 3, completed: 3 })
    }))

  test("queued calls are admitted in strict arrival order", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "fifo", maxConcurrent: 1, maxQueue: 10 })
      const { log, start } = bench(b)
      const calls: Array<Call> = []
      for (const label of ["0", "1", "2", "3", "4", "5", "6"]) calls.push(yield* start(label))
      assert.deepStrictEqual(log, ["0"])
      for (const call of calls) yield* finish(call)
      assert.deepStrictEqual(log, ["0", "1", "2", "3", "4", "5", "6"])
    }))

  test("a light call never overtakes a queued heavy call, even when it would fit", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "heavy-first", maxConcurrent: 3, maxQueue: 5 })
      const { log, start } = bench(b)
      const a = yield* start("a", { weight: 2 })
      const heavy = yield* start("heavy", { weight: 2 }) // 2 + 2 > 3: waits
      const light = yield* start("light", { weight: 1 }) // 2 + 1 <= 3 would fit, but heavy is first
      assert.deepStrictEqual(log, ["a"])
      yield* expectCounts(b, { inFlight: 2, running: 1, queued: 2, admitted: 1, completed: 0 })
      yield* finish(a)
      assert.deepStrictEqual(log, ["a", "heavy", "light"])
      yield* expectCounts(b, { inFlight: 3, running: 2, queued: 0, admitted: 3, completed: 1 })
      yield* finish(heavy)
      yield* finish(light)
    }))

  test("a light call waits behind a heavy one until the heavy one is in", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "heavy-long", maxConcurrent: 4, maxQueue: 5 })
      const { log, start } = bench(b)
      const a = yield* start("a", { weight: 2 })
      const c = yield* start("b", { weight: 2 })
      const heavy = yield* start("heavy", { weight: 4 })
      const light = yield* start("light", { weight: 1 })
      yield* finish(a) // 2 held: heavy (4) does not fit, light (1) would
      assert.deepStrictEqual(log, ["a", "b"])
      yield* expectCounts(b, { inFlight: 2, running: 1, queued: 2, admitted: 2, completed: 1 })
      yield* finish(c) // 0 held: heavy in, light still behind it
      assert.deepStrictEqual(log, ["a", "b", "heavy"])
      yield* expectCounts(b, { inFlight: 4, running: 1, queued: 1, admitted: 3, completed: 2 })
      yield* finish(heavy)
      assert.deepStrictEqual(log, ["a", "b", "heavy", "light"])
      yield* finish(light)
    }))

  test("a call that finds every slot and every queue place taken is rejected at once with QueueFull", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "full", maxConcurrent: 1, maxQueue: 1 })
      const { log, start } = bench(b)
      const a = yield* start("a")
      const c = yield* start("b")
      const d = yield* start("c") // no time passes: it must already be over
      const error = expectRejected(d.fiber, "QueueFull", 0)
      assert.strictEqual(error.name, "full")
      assert.strictEqual(error.maxConcurrent, 1)
      assert.strictEqual(error.maxQueue, 1)
      assert.strictEqual(error.key, undefined)
      assert.include(error.message, "full")
      assert.include(error.message, "QueueFull")
      assert.deepStrictEqual(log, ["a"])
      yield* expectCounts(b, { inFlight: 1, running: 1, queued: 1, admitted: 1, completed: 0, rejected: { QueueFull: 1 } })
      yield* finish(a)
      yield* finish(c)
      assert.deepStrictEqual(log, ["a", "b"])
    }))

  test("maxQueue defaults to 0: a call is rejected with QueueFull as soon as every slot is busy", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "no-queue", maxConcurrent: 2 })
      const { start } = bench(b)
      const a = yield* start("a")
      const c = yield* start("b")
      const d = yield* start("c")
      expectRejected(d.fiber, "QueueFull", 0)
      const s = yield* expectCounts(b, { inFlight: 2, running: 2, queued: 0, admitted: 2, completed: 0, rejected: { QueueFull: 1 } })
      assert.strictEqual(s.maxQueue, 0)
      yield* finish(a)
      yield* finish(c)
    }))

  test("the guarded effect's own value and typed error pass through unchanged", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "transparent", maxConcurrent: 1 })
      assert.strictEqual(yield* Effect.succeed(42).pipe(Bulkhead.guard(b)), 42)
      const error = yield* Effect.flip(Effect.fail(new Boom({ label: "x" })).pipe(Bulkhead.guard(b)))
      assert.instanceOf(error, Boom)
      assert.strictEqual(yield* Bulkhead.guard(Effect.succeed("data-first"), b), "data-first")
      yield* expectCounts(b, { inFlight: 0, running: 0, queued: 0, admitted: 3, completed: 3 })
    }))
})

// -----------------------------------------------------------------------------
// 2. timeouts and deadlines
// -----------------------------------------------------------------------------

describe("Bulkhead rule 2: QueueTimeout when the allowed wait runs out, QueueFull when there is no place", () => {
  test("a queued call is rejected with QueueTimeout exactly when queueTimeout has passed", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "qt", maxConcurrent: 1, maxQueue: 5, queueTimeout: "100 millis" })
      const { log, start } = bench(b)
      const a = yield* start("a")
      const w = yield* start("w")
      yield* TestClock.adjust("99 millis")
      yield* settle
      assert.isFalse(isDone(w.fiber))
      yield* expectCounts(b, { inFlight: 1, running: 1, queued: 1, admitted: 1, completed: 0 })
      yield* TestClock.adjust("1 millis")
      yield* settle
      const error = expectRejected(w.fiber, "QueueTimeout", 100)
      assert.strictEqual(error.maxConcurrent, 1)
      assert.strictEqual(error.maxQueue, 5)
      yield* expectCounts(b, { inFlight: 1, running: 1, queued: 0, admitted: 1, completed: 0, rejected: { QueueTimeout: 1 } })
      yield* finish(a)
      assert.deepStrictEqual(log, ["a"])
      // the timed-out call left no phantom place: the next call is admitted at once
      const c = yield* start("c")
      assert.deepStrictEqual(log, ["a", "c"])
      yield* finish(c)
    }))

  test("a queued call admitted before its timeout is not rejected afterwards", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "qt-in-time", maxConcurrent: 1, maxQueue: 5, queueTimeout: "100 millis" })
      const { log, start } = bench(b)
      const a = yield* start("a")
      const w = yield* start("w")
      yield* TestClock.adjust("60 millis")
      yield* finish(a)
      assert.deepStrictEqual(log, ["a", "w"])
      yield* TestClock.adjust("200 millis")
      yield* settle
      assert.isFalse(isDone(w.fiber))
      assert.strictEqual(yield* finish(w), "w")
      const s = yield* expectCounts(b, { inFlight: 0, running: 0, queued: 0, admitted: 2, completed: 2 })
      assert.strictEqual(s.admittedAfterWait, 1)
      assert.strictEqual(millis(s.maxWait), 60)
      assert.strictEqual(millis(s.totalWait), 60)
    }))

  test("queueTimeout 0 with room in the queue and no free slot is rejected with QueueTimeout, not QueueFull", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "qt0", maxConcurrent: 1, maxQueue: 5, queueTimeout: 0 })
      const { start } = bench(b)
      const a = yield* start("a")
      const w = yield* start("w")
      expectRejected(w.fiber, "QueueTimeout", 0)
      yield* expectCounts(b, { inFlight: 1, running: 1, queued: 0, admitted: 1, completed: 0, rejected: { QueueTimeout: 1 } })
      yield* finish(a)
    }))

  test("queueTimeout 0 still admits a call when a slot is free", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "qt0-free", maxConcurrent: 1, maxQueue: 5, queueTimeout: 0 })
      assert.strictEqual(yield* Effect.succeed("in").pipe(Bulkhead.guard(b)), "in")
      yield* expectCounts(b, { inFlight: 0, running: 0, queued: 0, admitted: 1, completed: 1 })
    }))

  test("a per-call queueTimeout of 0 with room in the queue is rejected with QueueTimeout", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "call-qt0", maxConcurrent: 1, maxQueue: 5 })
      const { start } = bench(b)
      const a = yield* start("a")
      const w = yield* start("w", { queueTimeout: 0 })
      expectRejected(w.fiber, "QueueTimeout", 0)
      yield* expectCounts(b, { inFlight: 1, running: 1, queued: 0, admitted: 1, completed: 0, rejected: { QueueTimeout: 1 } })
      yield* finish(a)
    }))

  test("maxQueue 0 is QueueFull even with queueTimeout 0: there is no place to have waited in", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "mq0", maxConcurrent: 1, maxQueue: 0, queueTimeout: 0 })
      const { start } = bench(b)
      const a = yield* start("a")
      const w = yield* start("w")
      expectRejected(w.fiber, "QueueFull", 0)
      yield* expectCounts(b, { inFlight: 1, running: 1, queued: 0, admitted: 1, completed: 0, rejected: { QueueFull: 1 } })
      yield* finish(a)
    }))

  test("a full queue is QueueFull even for a call whose deadline has not passed", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "qf-deadline", maxConcurrent: 1, maxQueue: 1, queueTimeout: "1 second" })
      const { start } = bench(b)
      const a = yield* start("a")
      const w = yield* start("w")
      const now = yield* Clock.currentTimeMillis
      const x = yield* start("x", { deadline: now + 500, queueTimeout: "200 millis" })
      expectRejected(x.fiber, "QueueFull", 0)
      yield* finish(a)
      yield* finish(w)
    }))

  test("a deadline already passed is rejected with QueueTimeout even when a slot is free", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(10_000)
      const b = yield* Bulkhead.make({ name: "spent", maxConcurrent: 2, maxQueue: 5 })
      const { log, start } = bench(b)
      const past = yield* start("past", { deadline: 9_999 })
      expectRejected(past.fiber, "QueueTimeout", 0)
      const now = yield* start("now", { deadline: 10_000 }) // a deadline equal to now is spent too
      expectRejected(now.fiber, "QueueTimeout", 0)
      assert.deepStrictEqual(log, [])
      yield* expectCounts(b, { inFlight: 0, running: 0, queued: 0, admitted: 0, completed: 0, rejected: { QueueTimeout: 2 } })
      const future = yield* start("future", { deadline: 10_001 })
      assert.deepStrictEqual(log, ["future"])
      yield* finish(future)
    }))

  test("a per-call queueTimeout shortens the wait", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "shorter", maxConcurrent: 1, maxQueue: 5, queueTimeout: "100 millis" })
      const { start } = bench(b)
      const a = yield* start("a")
      const w = yield* start("w", { queueTimeout: "30 millis" })
      yield* TestClock.adjust("29 millis")
      yield* settle
      assert.isFalse(isDone(w.fiber))
      yield* TestClock.adjust("1 millis")
      yield* settle
      expectRejected(w.fiber, "QueueTimeout", 30)
      yield* finish(a)
    }))

  test("a longer per-call queueTimeout does not extend the bulkhead's", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "not-longer", maxConcurrent: 1, maxQueue: 5, queueTimeout: "100 millis" })
      const { start } = bench(b)
      const a = yield* start("a")
      const w = yield* start("w", { queueTimeout: "500 millis" })
      yield* TestClock.adjust("99 millis")
      yield* settle
      assert.isFalse(isDone(w.fiber))
      yield* TestClock.adjust("1 millis")
      yield* settle
      expectRejected(w.fiber, "QueueTimeout", 100)
      yield* finish(a)
    }))

  test("a per-call queueTimeout applies when the bulkhead has none", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "call-only", maxConcurrent: 1, maxQueue: 5 })
      const { start } = bench(b)
      const a = yield* start("a")
      const w = yield* start("w", { queueTimeout: "50 millis" })
      const forever = yield* start("forever")
      yield* TestClock.adjust("50 millis")
      yield* settle
      expectRejected(w.fiber, "QueueTimeout", 50)
      yield* TestClock.adjust("1 hour")
      yield* settle
      assert.isFalse(isDone(forever.fiber)) // no timeout at all: it waits
      yield* finish(a)
      yield* finish(forever)
    }))

  test("a deadline shortens the wait", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "deadline", maxConcurrent: 1, maxQueue: 5, queueTimeout: "1 second" })
      const { start } = bench(b)
      const a = yield* start("a")
      const now = yield* Clock.currentTimeMillis
      const w = yield* start("w", { deadline: now + 40 })
      yield* TestClock.adjust("39 millis")
      yield* settle
      assert.isFalse(isDone(w.fiber))
      yield* TestClock.adjust("1 millis")
      yield* settle
      expectRejected(w.fiber, "QueueTimeout", 40)
      yield* finish(a)
    }))

  test("a deadline later than the queueTimeout does not extend it", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "deadline-late", maxConcurrent: 1, maxQueue: 5, queueTimeout: "100 millis" })
      const { start } = bench(b)
      const a = yield* start("a")
      const now = yield* Clock.currentTimeMillis
      const w = yield* start("w", { deadline: now + 1_000 })
      yield* TestClock.adjust("100 millis")
      yield* settle
      expectRejected(w.fiber, "QueueTimeout", 100)
      yield* finish(a)
    }))

  test("the shortest of queueTimeout, per-call queueTimeout and deadline wins", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "min-of-three", maxConcurrent: 1, maxQueue: 5, queueTimeout: "100 millis" })
      const { start } = bench(b)
      const a = yield* start("a")
      const now = yield* Clock.currentTimeMillis
      const byDeadline = yield* start("d", { deadline: now + 20, queueTimeout: "70 millis" })
      const byCall = yield* start("c", { deadline: now + 90, queueTimeout: "70 millis" })
      yield* TestClock.adjust("20 millis")
      yield* settle
      expectRejected(byDeadline.fiber, "QueueTimeout", 20)
      assert.isFalse(isDone(byCall.fiber))
      yield* TestClock.adjust("50 millis")
      yield* settle
      expectRejected(byCall.fiber, "QueueTimeout", 70)
      yield* expectCounts(b, { inFlight: 1, running: 1, queued: 0, admitted: 1, completed: 0, rejected: { QueueTimeout: 2 } })
      yield* finish(a)
    }))

  test("when a heavy head times out, the light call behind it is admitted if it fits", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "head-timeout", maxConcurrent: 2, maxQueue: 5 })
      const { log, start } = bench(b)
      const a = yield* start("a")
      const heavy = yield* start("heavy", { weight: 2, queueTimeout: "10 millis" })
      const light = yield* start("light")
      assert.deepStrictEqual(log, ["a"])
      yield* TestClock.adjust("10 millis")
      yield* settle
      expectRejected(heavy.fiber, "QueueTimeout", 10)
      assert.deepStrictEqual(log, ["a", "light"])
      const s = yield* expectCounts(b, { inFlight: 2, running: 2, queued: 0, admitted: 2, completed: 0, rejected: { QueueTimeout: 1 } })
      assert.strictEqual(millis(s.maxWait), 10)
      yield* finish(a)
      yield* finish(light)
    }))

  test("a timed-out call in the middle of the queue keeps the order of the others", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "middle-timeout", maxConcurrent: 1, maxQueue: 5 })
      const { log, start } = bench(b)
      const a = yield* start("a")
      const first = yield* start("first")
      const middle = yield* start("middle", { queueTimeout: "5 millis" })
      const last = yield* start("last")
      yield* TestClock.adjust("5 millis")
      yield* settle
      expectRejected(middle.fiber, "QueueTimeout", 5)
      yield* finish(a)
      yield* finish(first)
      yield* finish(last)
      assert.deepStrictEqual(log, ["a", "first", "last"])
    }))
})

// -----------------------------------------------------------------------------
// 3. release on every exit, no leaks
// -----------------------------------------------------------------------------

describe("Bulkhead rule 3: the permit is released on every exit, and interruption leaves nothing behind", () => {
  const exits: ReadonlyArray<{ readonly name: string; readonly end: (call: Call) => Effect.Effect<Exit.Exit<string, unknown>> }> = [
    {
      name: "success",
      end: (call) => Effect.andThen(Deferred.succeed(call.gate, call.label), Fiber.await(call.fiber))
    },
    {
      name: "typed failure",
      end: (call) => Effect.andThen(Deferred.fail(call.gate, new Boom({ label: call.label })), Fiber.await(call.fiber))
    },
    {
      name: "defect",
      end: (call) => Effect.andThen(Deferred.die(call.gate, new Error("defect")), Fiber.await(call.fiber))
    },
    {
      name: "interruption of a running call",
      end: (call) => Effect.andThen(Fiber.interrupt(call.fiber), Fiber.await(call.fiber))
    }
  ]

  for (const { end, name } of exits) {
    test(`the permit is released on ${name}, and the next queued call is admitted`, () =>
      Effect.gen(function*() {
        const b = yield* Bulkhead.make({ name: "release", maxConcurrent: 1, maxQueue: 1 })
        const { log, start } = bench(b)
        const a = yield* start("a", { weight: 1 })
        const w = yield* start("w")
        yield* expectCounts(b, { inFlight: 1, running: 1, queued: 1, admitted: 1, completed: 0 })
        const exit = yield* end(a)
        yield* settle
        if (name === "success") assert.isTrue(Exit.isSuccess(exit))
        if (name === "typed failure") assert.isTrue(Exit.isFailure(exit) && Cause.squash(exit.cause) instanceof Boom)
        if (name === "defect") assert.isTrue(Exit.hasDies(exit))
        if (name === "interruption of a running call") assert.isTrue(Exit.hasInterrupts(exit))
        assert.deepStrictEqual(log, ["a", "w"])
        yield* expectCounts(b, { inFlight: 1, running: 1, queued: 0, admitted: 2, completed: 1 })
        yield* finish(w)
        yield* expectCounts(b, { inFlight: 0, running: 0, queued: 0, admitted: 2, completed: 2 })
        yield* expectCapacityOneAndOne(b)
      }))
  }

  test("a weighted call gives back all of its permits on failure", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "weighted-release", maxConcurrent: 3, maxQueue: 2 })
      const { log, start } = bench(b)
      const a = yield* start("a", { weight: 3 })
      const w = yield* start("w", { weight: 3 })
      yield* failCall(a)
      assert.deepStrictEqual(log, ["a", "w"])
      yield* expectCounts(b, { inFlight: 3, running: 1, queued: 0, admitted: 2, completed: 1 })
      yield* finish(w)
      yield* expectCounts(b, { inFlight: 0, running: 0, queued: 0, admitted: 2, completed: 2 })
    }))

  test("interrupting a queued call frees its place and leaves no phantom slot", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "cancel", maxConcurrent: 1, maxQueue: 1 })
      const { log, start } = bench(b)
      const a = yield* start("a")
      const w = yield* start("w")
      yield* Fiber.interrupt(w.fiber)
      yield* settle
      assert.isTrue(Exit.hasInterrupts(w.fiber.pollUnsafe()!))
      yield* expectCounts(b, { inFlight: 1, running: 1, queued: 0, admitted: 1, completed: 0, cancelled: 1 })
      // its place in the queue is free again: the next call waits instead of being rejected
      const c = yield* start("c")
      assert.isFalse(isDone(c.fiber))
      yield* expectCounts(b, { inFlight: 1, running: 1, queued: 1, admitted: 1, completed: 0 })
      yield* finish(a)
      assert.deepStrictEqual(log, ["a", "c"])
      yield* finish(c)
      yield* expectCounts(b, { inFlight: 0, running: 0, queued: 0, admitted: 2, completed: 2, cancelled: 1 })
      yield* expectCapacityOneAndOne(b)
    }))

  test("interrupting a call in the middle of the queue keeps the order of the others", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "cancel-middle", maxConcurrent: 1, maxQueue: 5 })
      const { log, start } = bench(b)
      const a = yield* start("a")
      const first = yield* start("first")
      const middle = yield* start("middle")
      const last = yield* start("last")
      yield* Fiber.interrupt(middle.fiber)
      yield* expectCounts(b, { inFlight: 1, running: 1, queued: 2, admitted: 1, completed: 0, cancelled: 1 })
      yield* finish(a)
      yield* finish(first)
      yield* finish(last)
      assert.deepStrictEqual(log, ["a", "first", "last"])
      yield* expectCounts(b, { inFlight: 0, running: 0, queued: 0, admitted: 3, completed: 3, cancelled: 1 })
    }))

  test("interrupting the last call of the queue keeps the queue usable", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "cancel-tail", maxConcurrent: 1, maxQueue: 2 })
      const { log, start } = bench(b)
      const a = yield* start("a")
      const first = yield* start("first")
      const tail = yield* start("tail")
      yield* Fiber.interrupt(tail.fiber)
      const next = yield* start("next") // appended after "first", where "tail" was
      yield* finish(a)
      yield* finish(first)
      yield* finish(next)
      assert.deepStrictEqual(log, ["a", "first", "next"])
    }))

  test("interrupting a heavy head admits the light calls behind it that fit", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "cancel-head", maxConcurrent: 2, maxQueue: 5 })
      const { log, start } = bench(b)
      const a = yield* start("a")
      const heavy = yield* start("heavy", { weight: 2 })
      const light = yield* start("light")
      yield* Fiber.interrupt(heavy.fiber)
      yield* settle
      assert.deepStrictEqual(log, ["a", "light"])
      yield* expectCounts(b, { inFlight: 2, running: 2, queued: 0, admitted: 2, completed: 0, cancelled: 1 })
      yield* finish(a)
      yield* finish(light)
    }))

  test("interrupting a queued call in the same tick it is granted a permit does not leak the permit", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "grant-race", maxConcurrent: 1, maxQueue: 1 })
      const ran: Array<string> = []
      // The test fiber itself holds the only permit, so the release happens on this fiber,
      // and nothing runs between the release and the interruption below.
      const waiter = yield* Effect.gen(function*() {
        const fiber = yield* fork(Effect.sync(() => ran.push("waiter")).pipe(Bulkhead.guard(b)))
        yield* settle
        yield* expectCounts(b, { inFlight: 1, running: 1, queued: 1, admitted: 1, completed: 0 })
        return fiber
      }).pipe(Bulkhead.guard(b))
      const granted = yield* Bulkhead.stats(b) // still the same tick as the release
      assert.strictEqual(granted.admitted, 2, "the release must have granted the permit to the waiter")
      assert.strictEqual(granted.queued, 0)
      assert.strictEqual(granted.inFlight, 1)
      yield* Fiber.interrupt(waiter)
      yield* settle
      assert.isTrue(Exit.hasInterrupts(waiter.pollUnsafe()!))
      assert.deepStrictEqual(ran, [])
      yield* expectCounts(b, { inFlight: 0, running: 0, queued: 0, admitted: 2, completed: 2 })
      yield* expectCapacityOneAndOne(b)
    }))

  test("releasing and interrupting a waiter in any order of yields never leaks a permit", () =>
    Effect.gen(function*() {
      for (const yields of [0, 1, 2, 3, 5, 10]) {
        for (const order of ["release-first", "interrupt-first"] as const) {
          const outcome = yield* Effect.scoped(Effect.gen(function*() {
            const b = yield* Bulkhead.make({ name: `race-${order}-${yields}`, maxConcurrent: 1, maxQueue: 1 })
            const { start } = bench(b)
            const holder = yield* start("holder")
            const waiter = yield* start("waiter")
            if (order === "release-first") yield* Deferred.succeed(holder.gate, "holder")
            else waiter.fiber.interruptUnsafe()
            for (let i = 0; i < yields; i++) yield* Effect.yieldNow
            if (order === "release-first") waiter.fiber.interruptUnsafe()
            else yield* Deferred.succeed(holder.gate, "holder")
            yield* Fiber.join(holder.fiber)
            const exit = yield* Fiber.await(waiter.fiber)
            yield* settle
            const s = yield* Bulkhead.stats(b)
            assert.strictEqual(s.inFlight, 0, `${order}/${yields}: inFlight`)
            assert.strictEqual(s.running, 0, `${order}/${yields}: running`)
            assert.strictEqual(s.queued, 0, `${order}/${yields}: queued`)
            assert.strictEqual(s.admitted, s.completed, `${order}/${yields}: every admitted call completed`)
            // the waiter was either admitted (and then released) or cancelled in the queue, never both
            assert.strictEqual(s.admitted - 1 + s.cancelled, 1, `${order}/${yields}: admitted ${s.admitted}, cancelled ${s.cancelled}`)
            assert.strictEqual(s.rejectedTotal, 0)
            yield* expectCapacityOneAndOne(b)
            return exit
          }).pipe(Effect.onError(() => Fiber.interruptAll(Array.from(live)))))
          assert.isTrue(Exit.hasInterrupts(outcome))
        }
      }
    }))

  test("a timeout firing at the same instant as the release (release scheduled first) does not leak", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "timeout-race-1", maxConcurrent: 1, maxQueue: 1, queueTimeout: "100 millis" })
      const holder = yield* fork(Effect.sleep("100 millis").pipe(Effect.as("holder"), Bulkhead.guard(b)))
      yield* settle
      const waiter = yield* fork(Effect.succeed("waiter").pipe(Bulkhead.guard(b)))
      yield* settle
      yield* TestClock.adjust("100 millis")
      yield* settle
      assert.strictEqual(yield* Fiber.join(holder), "holder")
      const exit = yield* Fiber.await(waiter)
      const s = yield* Bulkhead.stats(b)
      if (Exit.isSuccess(exit)) {
        // admitted at the last instant of its budget
        assert.strictEqual(exit.value, "waiter")
        yield* expectCounts(b, { inFlight: 0, running: 0, queued: 0, admitted: 2, completed: 2 })
        assert.strictEqual(millis(s.maxWait), 100)
      } else {
        expectRejected(waiter, "QueueTimeout", 100)
        yield* expectCounts(b, { inFlight: 0, running: 0, queued: 0, admitted: 1, completed: 1, rejected: { QueueTimeout: 1 } })
      }
      yield* expectCapacityOneAndOne(b)
    }))

  test("a timeout firing at the same instant as the release (timeout scheduled first) does not leak", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "timeout-race-2", maxConcurrent: 1, maxQueue: 1, queueTimeout: "100 millis" })
      const go = yield* Deferred.make<void>()
      // the holder starts its 100 ms only after the waiter's timer is set, so the timer comes first
      const holder = yield* fork(
        Deferred.await(go).pipe(Effect.andThen(Effect.sleep("100 millis")), Effect.as("holder"), Bulkhead.guard(b))
      )
      yield* settle
      const waiter = yield* fork(Effect.succeed("waiter").pipe(Bulkhead.guard(b)))
      yield* settle
      yield* Deferred.succeed(go, undefined)
      yield* settle
      yield* TestClock.adjust("100 millis")
      yield* settle
      assert.strictEqual(yield* Fiber.join(holder), "holder")
      const exit = yield* Fiber.await(waiter)
      if (Exit.isSuccess(exit)) {
        assert.strictEqual(exit.value, "waiter")
        yield* expectCounts(b, { inFlight: 0, running: 0, queued: 0, admitted: 2, completed: 2 })
      } else {
        expectRejected(waiter, "QueueTimeout", 100)
        yield* expectCounts(b, { inFlight: 0, running: 0, queued: 0, admitted: 1, completed: 1, rejected: { QueueTimeout: 1 } })
      }
      yield* expectCapacityOneAndOne(b)
    }))

  test("interrupting a queued call and closing in the same tick counts it once", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "cancel-close", maxConcurrent: 1, maxQueue: 1 })
      const { start } = bench(b)
      const a = yield* start("a")
      const w = yield* start("w")
      w.fiber.interruptUnsafe()
      yield* Bulkhead.close(b)
      yield* settle
      const exit = yield* Fiber.await(w.fiber)
      assert.isTrue(Exit.isFailure(exit))
      const s = yield* Bulkhead.stats(b)
      assert.strictEqual(s.cancelled + s.rejected.Closed, 1)
      assert.strictEqual(s.queued, 0)
      assert.strictEqual(s.inFlight, 1)
      yield* finish(a)
      yield* expectCounts(b, { inFlight: 0, running: 0, queued: 0, admitted: 1, completed: 1, rejected: { Closed: s.rejected.Closed } })
      yield* Bulkhead.drain(b)
    }))

  test("closing in the same tick a waiter is granted a permit leaves no leak and lets drain finish", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "grant-close", maxConcurrent: 1, maxQueue: 1 })
      const waiter = yield* Effect.gen(function*() {
        const fiber = yield* fork(Effect.succeed("waiter").pipe(Bulkhead.guard(b)))
        yield* settle
        return fiber
      }).pipe(Bulkhead.guard(b))
      yield* Bulkhead.close(b) // same tick as the release that granted the waiter
      yield* settle
      const exit = yield* Fiber.await(waiter)
      if (Exit.isSuccess(exit)) {
        // it was admitted before the close: running work continues
        yield* expectCounts(b, { inFlight: 0, running: 0, queued: 0, admitted: 2, completed: 2 })
      } else {
        expectRejected(waiter, "Closed", 0)
        yield* expectCounts(b, { inFlight: 0, running: 0, queued: 0, admitted: 1, completed: 1, rejected: { Closed: 1 } })
      }
      yield* Bulkhead.drain(b)
    }))
})

// -----------------------------------------------------------------------------
// 4. resize and weights
// -----------------------------------------------------------------------------

describe("Bulkhead rule 4: resize keeps FIFO and never interrupts; oversized calls are rejected", () => {
  test("resize up admits queued calls at once, in FIFO order", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "grow", maxConcurrent: 1, maxQueue: 5 })
      const { log, start } = bench(b)
      const calls = [yield* start("a"), yield* start("b"), yield* start("c"), yield* start("d")]
      assert.deepStrictEqual(log, ["a"])
      yield* Bulkhead.resize(b, 3)
      yield* settle
      assert.deepStrictEqual(log, ["a", "b", "c"])
      const s = yield* expectCounts(b, { inFlight: 3, running: 3, queued: 1, admitted: 3, completed: 0 })
      assert.strictEqual(s.maxConcurrent, 3)
      for (const call of calls) yield* finish(call)
      assert.deepStrictEqual(log, ["a", "b", "c", "d"])
    }))

  test("resize up keeps a light call behind a heavy one that still does not fit", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "grow-weights", maxConcurrent: 3, maxQueue: 5 })
      const { log, start } = bench(b)
      const a = yield* start("a", { weight: 3 })
      const c1 = yield* start("b", { weight: 2 })
      const c2 = yield* start("c", { weight: 2 })
      const c3 = yield* start("d", { weight: 1 })
      yield* Bulkhead.resize(b, 6) // 3 + 2 = 5 fits; 5 + 2 does not, and d may not overtake c
      yield* settle
      assert.deepStrictEqual(log, ["a", "b"])
      yield* expectCounts(b, { inFlight: 5, running: 2, queued: 2, admitted: 2, completed: 0 })
      yield* finish(a)
      assert.deepStrictEqual(log, ["a", "b", "c", "d"])
      yield* expectCounts(b, { inFlight: 5, running: 3, queued: 0, admitted: 4, completed: 1 })
      yield* finish(c1)
      yield* finish(c2)
      yield* finish(c3)
    }))

  test("resize down lets running work finish and admits again only below the new limit", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "shrink", maxConcurrent: 3, maxQueue: 5 })
      const { log, start } = bench(b)
      const a = yield* start("a")
      const c1 = yield* start("b")
      const c2 = yield* start("c")
      const d = yield* start("d")
      const e = yield* start("e")
      yield* Bulkhead.resize(b, 1)
      yield* settle
      const s = yield* expectCounts(b, { inFlight: 3, running: 3, queued: 2, admitted: 3, completed: 0 })
      assert.strictEqual(s.maxConcurrent, 1)
      assert.strictEqual(yield* finish(a), "a") // running work is not interrupted
      assert.deepStrictEqual(log, ["a", "b", "c"])
      yield* expectCounts(b, { inFlight: 2, running: 2, queued: 2, admitted: 3, completed: 1 })
      assert.strictEqual(yield* finish(c1), "b")
      assert.deepStrictEqual(log, ["a", "b", "c"])
      yield* expectCounts(b, { inFlight: 1, running: 1, queued: 2, admitted: 3, completed: 2 })
      assert.strictEqual(yield* finish(c2), "c")
      assert.deepStrictEqual(log, ["a", "b", "c", "d"])
      yield* expectCounts(b, { inFlight: 1, running: 1, queued: 1, admitted: 4, completed: 3 })
      yield* finish(d)
      assert.deepStrictEqual(log, ["a", "b", "c", "d", "e"])
      yield* finish(e)
      yield* expectCounts(b, { inFlight: 0, running: 0, queued: 0, admitted: 5, completed: 5 })
    }))

  test("new calls after a resize down queue until the permits held fall below the new limit", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "shrink-new", maxConcurrent: 2, maxQueue: 5 })
      const { log, start } = bench(b)
      const a = yield* start("a")
      const c = yield* start("b")
      yield* Bulkhead.resize(b, 1)
      const late = yield* start("late")
      assert.deepStrictEqual(log, ["a", "b"])
      yield* finish(a)
      assert.deepStrictEqual(log, ["a", "b"]) // 1 held, limit 1: still no room
      yield* finish(c)
      assert.deepStrictEqual(log, ["a", "b", "late"])
      yield* finish(late)
    }))

  for (const size of [0, -1, Number.NaN, 1.5, Infinity]) {
    test(`resize to ${size} fails with InvalidOptions and leaves the size unchanged`, () =>
      Effect.gen(function*() {
        const b = yield* Bulkhead.make({ name: "bad-resize", maxConcurrent: 2 })
        const error = yield* Effect.flip(Bulkhead.resize(b, size))
        assert.instanceOf(error, InvalidOptions)
        assert.strictEqual(error._tag, "InvalidOptions")
        assert.strictEqual(error.primitive, "Bulkhead")
        assert.strictEqual(error.name, "bad-resize")
        assert.include(error.message, "maxConcurrent")
        assert.include(error.message, ">= 1")
        assert.strictEqual((yield* Bulkhead.stats(b)).maxConcurrent, 2)
        // still exactly two permits
        const { log, start } = bench(b)
        const x = yield* start("x")
        const y = yield* start("y")
        const z = yield* start("z")
        assert.deepStrictEqual(log, ["x", "y"])
        expectRejected(z.fiber, "QueueFull", 0)
        yield* finish(x)
        yield* finish(y)
      }))
  }

  test("resize is data-last too", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "resize-pipe", maxConcurrent: 2 })
      yield* b.pipe(Bulkhead.resize(5))
      assert.strictEqual((yield* Bulkhead.stats(b)).maxConcurrent, 5)
    }))

  test("a weight above maxConcurrent is rejected at once with Oversized, never queued", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "oversized", maxConcurrent: 2, maxQueue: 5 })
      const { log, start } = bench(b)
      const big = yield* start("big", { weight: 3 })
      const error = expectRejected(big.fiber, "Oversized", 0)
      assert.strictEqual(error.maxConcurrent, 2)
      yield* expectCounts(b, { inFlight: 0, running: 0, queued: 0, admitted: 0, completed: 0, rejected: { Oversized: 1 } })
      // even when the bulkhead is busy and the queue has room
      const a = yield* start("a")
      const big2 = yield* start("big2", { weight: 3 })
      expectRejected(big2.fiber, "Oversized", 0)
      // a weight equal to maxConcurrent is fine
      yield* finish(a)
      const exact = yield* start("exact", { weight: 2 })
      assert.deepStrictEqual(log, ["a", "exact"])
      yield* finish(exact)
      // the limit is the current one: after a resize up, the same weight is admitted
      yield* Bulkhead.resize(b, 3)
      const big3 = yield* start("big3", { weight: 3 })
      assert.deepStrictEqual(log, ["a", "exact", "big3"])
      yield* finish(big3)
      yield* expectCounts(b, { inFlight: 0, running: 0, queued: 0, admitted: 3, completed: 3, rejected: { Oversized: 2 } })
    }))

  test("queued calls that a resize makes oversized are rejected with Oversized; the others keep their order", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "made-oversized", maxConcurrent: 4, maxQueue: 5 })
      const { log, start } = bench(b)
      const a = yield* start("a", { weight: 2 })
      const w3 = yield* start("w3", { weight: 3 })
      const w1 = yield* start("w1", { weight: 1 })
      const w4 = yield* start("w4", { weight: 4 })
      const w2 = yield* start("w2", { weight: 2 })
      assert.deepStrictEqual(log, ["a"])
      yield* TestClock.adjust("30 millis")
      yield* Bulkhead.resize(b, 2)
      yield* settle
      const e3 = expectRejected(w3.fiber, "Oversized", 30)
      const e4 = expectRejected(w4.fiber, "Oversized", 30)
      assert.strictEqual(e3.maxConcurrent, 2)
      assert.strictEqual(e4.maxConcurrent, 2)
      assert.isFalse(isDone(w1.fiber))
      assert.isFalse(isDone(w2.fiber))
      yield* expectCounts(b, { inFlight: 2, running: 1, queued: 2, admitted: 1, completed: 0, rejected: { Oversized: 2 } })
      yield* finish(a)
      assert.deepStrictEqual(log, ["a", "w1"])
      yield* finish(w1)
      assert.deepStrictEqual(log, ["a", "w1", "w2"])
      yield* finish(w2)
      yield* expectCounts(b, { inFlight: 0, running: 0, queued: 0, admitted: 3, completed: 3, rejected: { Oversized: 2 } })
    }))

  test("a resize rejects every waiter it makes oversized, even those behind a waiter it admits", () =>
    Effect.gen(function*() {
      // regression: evicting the head used to pump mid-walk, admit the next waiter and stop the walk there
      const b = yield* Bulkhead.make({ name: "oversized-walk", maxConcurrent: 10, maxQueue: 5 })
      const { log, start } = bench(b)
      const holder = yield* start("holder")
      const w10 = yield* start("w10", { weight: 10 })
      const w1 = yield* start("w1")
      const w8 = yield* start("w8", { weight: 8 })
      const w2 = yield* start("w2", { weight: 2 })
      yield* Bulkhead.resize(b, 5)
      yield* settle
      expectRejected(w10.fiber, "Oversized", 0)
      expectRejected(w8.fiber, "Oversized", 0)
      assert.deepStrictEqual(log, ["holder", "w1", "w2"])
      yield* expectCounts(b, { inFlight: 4, running: 3, queued: 0, admitted: 3, completed: 0, rejected: { Oversized: 2 } })
      yield* finish(holder)
      yield* finish(w1)
      yield* finish(w2)
    }))

  for (const weight of [0, -1, 1.5, Number.NaN]) {
    test(`a per-call weight of ${weight} dies with a message naming "weight"`, () =>
      Effect.gen(function*() {
        const b = yield* Bulkhead.make({ name: "bad-weight", maxConcurrent: 2, maxQueue: 2 })
        const ran: Array<string> = []
        const exit = yield* Effect.exit(Effect.sync(() => ran.push("ran")).pipe(Bulkhead.guard(b, { weight })))
        assert.isTrue(Exit.isFailure(exit) && Exit.hasDies(exit), "a bad weight is a defect, not a typed error")
        if (Exit.isFailure(exit)) {
          assert.isUndefined(Cause.findErrorOption(exit.cause).pipe((o) => o._tag === "Some" ? o.value : undefined))
          const defect = Cause.squash(exit.cause)
          assert.instanceOf(defect, Error)
          assert.include((defect as Error).message, "weight")
          assert.include((defect as Error).message, String(weight))
        }
        assert.deepStrictEqual(ran, [])
        yield* expectCounts(b, { inFlight: 0, running: 0, queued: 0, admitted: 0, completed: 0 })
      }))
  }

  test("a malformed per-call queueTimeout or deadline dies with a message naming the option", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "bad-call", maxConcurrent: 1 })
      const timeout = yield* Effect.exit(Effect.void.pipe(Bulkhead.guard(b, { queueTimeout: -5 })))
      assert.isTrue(Exit.hasDies(timeout))
      if (Exit.isFailure(timeout)) assert.include(String((Cause.squash(timeout.cause) as Error).message), "queueTimeout")
      const deadline = yield* Effect.exit(Effect.void.pipe(Bulkhead.guard(b, { deadline: Number.NaN })))
      assert.isTrue(Exit.hasDies(deadline))
      if (Exit.isFailure(deadline)) assert.include(String((Cause.squash(deadline.cause) as Error).message), "deadline")
      yield* expectCounts(b, { inFlight: 0, running: 0, queued: 0, admitted: 0, completed: 0 })
    }))
})

// -----------------------------------------------------------------------------
// 5. close, drain, scope
// -----------------------------------------------------------------------------

describe("Bulkhead rule 5: close rejects queued and new calls, drain waits, scope close does both", () => {
  test("close rejects queued calls and new calls with Closed; running work continues", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "closing", maxConcurrent: 1, maxQueue: 3 })
      const { log, start } = bench(b)
      const a = yield* start("a")
      const w1 = yield* start("w1")
      const w2 = yield* start("w2")
      yield* TestClock.adjust("20 millis")
      yield* Bulkhead.close(b)
      yield* settle
      const e1 = expectRejected(w1.fiber, "Closed", 20)
      expectRejected(w2.fiber, "Closed", 20)
      assert.strictEqual(e1.maxConcurrent, 1)
      assert.strictEqual(e1.maxQueue, 3)
      assert.isFalse(isDone(a.fiber))
      const s = yield* expectCounts(b, { inFlight: 1, running: 1, queued: 0, admitted: 1, completed: 0, rejected: { Closed: 2 } })
      assert.isTrue(s.closed)
      const late = yield* start("late")
      expectRejected(late.fiber, "Closed", 0)
      assert.strictEqual(yield* finish(a), "a")
      assert.deepStrictEqual(log, ["a"])
      yield* expectCounts(b, { inFlight: 0, running: 0, queued: 0, admitted: 1, completed: 1, rejected: { Closed: 3 } })
      // a closed bulkhead stays closed when it is idle
      const idle = yield* start("idle")
      expectRejected(idle.fiber, "Closed", 0)
    }))

  test("close rejects a light queued call behind a heavy head instead of admitting it", () =>
    Effect.gen(function*() {
      // regression: evicting the heavy head used to pump and admit the light call during close
      const b = yield* Bulkhead.make({ name: "close-light", maxConcurrent: 4, maxQueue: 5 })
      const { log, start } = bench(b)
      const holder = yield* start("holder", { weight: 2 })
      const heavy = yield* start("heavy", { weight: 3 })
      const light = yield* start("light")
      yield* Bulkhead.close(b)
      yield* settle
      expectRejected(heavy.fiber, "Closed", 0)
      expectRejected(light.fiber, "Closed", 0)
      assert.deepStrictEqual(log, ["holder"])
      yield* expectCounts(b, { inFlight: 2, running: 1, queued: 0, admitted: 1, completed: 0, rejected: { Closed: 2 } })
      yield* finish(holder)
    }))

  test("closing twice changes nothing", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "close-twice", maxConcurrent: 1, maxQueue: 1 })
      const { start } = bench(b)
      const a = yield* start("a")
      const w = yield* start("w")
      yield* Bulkhead.close(b)
      yield* Bulkhead.close(b)
      yield* settle
      expectRejected(w.fiber, "Closed", 0)
      yield* expectCounts(b, { inFlight: 1, running: 1, queued: 0, admitted: 1, completed: 0, rejected: { Closed: 1 } })
      yield* finish(a)
    }))

  test("drain waits until the calls running or queued when it was called have finished", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "drain", maxConcurrent: 1, maxQueue: 2 })
      const { start } = bench(b)
      const a = yield* start("a")
      const w = yield* start("w")
      const drain = yield* fork(Bulkhead.drain(b))
      yield* settle
      assert.isFalse(isDone(drain))
      yield* finish(a)
      assert.isFalse(isDone(drain), "the queued call is still to come")
      yield* finish(w)
      assert.isTrue(isDone(drain))
      yield* Fiber.join(drain)
    }))

  test("drain does not end early when later calls finish before the ones it waits for", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "drain-early", maxConcurrent: 3, maxQueue: 1 })
      const { start } = bench(b)
      const a = yield* start("a")
      const drain = yield* fork(Bulkhead.drain(b))
      yield* settle
      const quick1 = yield* start("quick1")
      const quick2 = yield* start("quick2")
      yield* finish(quick1)
      yield* finish(quick2)
      assert.isFalse(isDone(drain), "a is still running")
      yield* finish(a)
      assert.isTrue(isDone(drain))
    }))

  test("drain on an idle bulkhead returns at once", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "drain-idle", maxConcurrent: 1 })
      const drain = yield* fork(Bulkhead.drain(b))
      yield* settle
      assert.isTrue(isDone(drain))
    }))

  test("drain is not starved by calls that keep arriving", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "drain-busy", maxConcurrent: 1, maxQueue: 3 })
      const { log, start } = bench(b)
      const a = yield* start("a")
      const w = yield* start("w")
      const drain = yield* fork(Bulkhead.drain(b))
      yield* settle
      const n1 = yield* start("n1") // arrives after drain: must not extend it
      yield* finish(a)
      const n2 = yield* start("n2")
      assert.isFalse(isDone(drain))
      yield* finish(w)
      assert.isTrue(isDone(drain), "drain ends although n1 is running and n2 is queued")
      assert.deepStrictEqual(log, ["a", "w", "n1"])
      yield* expectCounts(b, { inFlight: 1, running: 1, queued: 1, admitted: 3, completed: 2 })
      // and it keeps working while new calls are fed in a loop
      let current = n1
      let next = n2
      const drain2 = yield* fork(Bulkhead.drain(b))
      yield* settle
      for (let i = 0; i < 5; i++) {
        const fresh = yield* start(`f${i}`)
        yield* finish(current)
        current = next
        next = fresh
      }
      assert.isTrue(isDone(drain2))
      yield* finish(current)
      yield* finish(next)
    }))

  test("drain also ends when the queued calls it waits for time out or are interrupted", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "drain-leavers", maxConcurrent: 1, maxQueue: 3 })
      const { start } = bench(b)
      const a = yield* start("a")
      const t = yield* start("t", { queueTimeout: "10 millis" })
      const i = yield* start("i")
      const drain = yield* fork(Bulkhead.drain(b))
      yield* settle
      yield* TestClock.adjust("10 millis")
      yield* settle
      expectRejected(t.fiber, "QueueTimeout", 10)
      yield* Fiber.interrupt(i.fiber)
      yield* settle
      assert.isFalse(isDone(drain))
      yield* finish(a)
      assert.isTrue(isDone(drain))
    }))

  test("close then drain: queued calls are rejected and drain waits only for running work", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "close-drain", maxConcurrent: 1, maxQueue: 2 })
      const { start } = bench(b)
      const a = yield* start("a")
      const w = yield* start("w")
      const drain = yield* fork(Bulkhead.drain(b))
      yield* settle
      yield* Bulkhead.close(b)
      yield* settle
      expectRejected(w.fiber, "Closed", 0)
      assert.isFalse(isDone(drain))
      yield* finish(a)
      assert.isTrue(isDone(drain))
    }))

  test("interrupting drain leaves the bulkhead unaffected", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "drain-interrupted", maxConcurrent: 1, maxQueue: 1 })
      const { start } = bench(b)
      const a = yield* start("a")
      const drain = yield* fork(Bulkhead.drain(b))
      yield* settle
      yield* Fiber.interrupt(drain)
      yield* finish(a)
      yield* expectCapacityOneAndOne(b)
    }))

  test("scope close closes the bulkhead (queued and new calls get Closed), then waits for running work", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const b = yield* Bulkhead.make({ name: "scoped", maxConcurrent: 1, maxQueue: 2 }).pipe(Scope.provide(scope))
      const { log, start } = bench(b)
      const a = yield* start("a")
      const w = yield* start("w")
      const closing = yield* fork(Scope.close(scope, Exit.void))
      yield* settle
      expectRejected(w.fiber, "Closed", 0)
      assert.isFalse(isDone(closing), "scope close waits for the running call")
      assert.isTrue((yield* Bulkhead.stats(b)).closed)
      const late = yield* start("late")
      expectRejected(late.fiber, "Closed", 0)
      assert.strictEqual(yield* finish(a), "a")
      assert.isTrue(isDone(closing))
      yield* Fiber.join(closing)
      assert.deepStrictEqual(log, ["a"])
      yield* expectCounts(b, { inFlight: 0, running: 0, queued: 0, admitted: 1, completed: 1, rejected: { Closed: 2 } })
    }))

  test("Effect.scoped around make closes and drains at the end of the block", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const finished: Array<string> = []
      let bulkhead: Bulkhead.Bulkhead | undefined
      const block = yield* fork(Effect.scoped(Effect.gen(function*() {
        const b = yield* Bulkhead.make({ name: "block", maxConcurrent: 1 })
        bulkhead = b
        // a call that outlives the block's own code
        const call = yield* Effect.forkDetach(
          Deferred.await(gate).pipe(Effect.andThen(Effect.sync(() => finished.push("call"))), Bulkhead.guard(b))
        )
        live.add(call)
        yield* settle
        assert.strictEqual((yield* Bulkhead.stats(b)).running, 1)
      })))
      // wait (boundedly) for the block's own code to end and its scope to close the bulkhead
      for (let i = 0; i < 100 && (bulkhead === undefined || !(yield* Bulkhead.stats(bulkhead)).closed); i++) {
        yield* Effect.yieldNow
      }
      assert.isTrue((yield* Bulkhead.stats(bulkhead!)).closed)
      yield* settle
      assert.isFalse(isDone(block), "the block's scope is draining the running call")
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(block)
      assert.deepStrictEqual(finished, ["call"])
    }))
})

// -----------------------------------------------------------------------------
// 6. one cap, shared
// -----------------------------------------------------------------------------

class Pool extends Context.Service<Pool, Bulkhead.Bulkhead>()("test/Bulkhead/Pool") {}

describe("Bulkhead rule 6: one instance (or one Layer provided once) is one joint cap", () => {
  test("several consumers sharing one instance share one cap", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "shared", maxConcurrent: 3, maxQueue: 1 })
      const consumerX = bench(b)
      const consumerY = bench(b)
      const x1 = yield* consumerX.start("x1")
      const y1 = yield* consumerY.start("y1")
      const x2 = yield* consumerX.start("x2")
      const y2 = yield* consumerY.start("y2") // the 4th call: queued
      const y3 = yield* consumerY.start("y3") // the 5th: no room anywhere
      assert.deepStrictEqual([consumerX.log, consumerY.log], [["x1", "x2"], ["y1"]])
      expectRejected(y3.fiber, "QueueFull", 0)
      yield* expectCounts(b, { inFlight: 3, running: 3, queued: 1, admitted: 3, completed: 0, rejected: { QueueFull: 1 } })
      yield* finish(x1)
      assert.deepStrictEqual(consumerY.log, ["y1", "y2"])
      yield* finish(x2)
      yield* finish(y1)
      yield* finish(y2)
    }))

  test("a Layer provided once is one cap for every user of the key", () =>
    Effect.gen(function*() {
      let running = 0
      let peak = 0
      const work = (label: string) =>
        Effect.gen(function*() {
          running++
          peak = Math.max(peak, running)
          yield* Effect.sleep("10 millis")
          running--
          return label
        }).pipe(Bulkhead.guard(Pool))
      const serviceA = Effect.all([work("a1"), work("a2"), work("a3")], { concurrency: "unbounded" })
      const serviceB = Effect.all([work("b1"), work("b2"), work("b3")], { concurrency: "unbounded" })
      const program = Effect.gen(function*() {
        const fiber = yield* fork(Effect.all([serviceA, serviceB], { concurrency: "unbounded" }))
        yield* settle
        const s = yield* Bulkhead.stats(Pool)
        assert.strictEqual(s.inFlight, 2)
        assert.strictEqual(s.queued, 4)
        yield* TestClock.adjust("10 millis")
        yield* settle
        yield* TestClock.adjust("10 millis")
        yield* settle
        yield* TestClock.adjust("10 millis")
        yield* settle
        const result = yield* Fiber.join(fiber)
        const after = yield* Bulkhead.stats(Pool)
        return { result, after }
      })
      const { after, result } = yield* program.pipe(
        Effect.provide(Bulkhead.layer(Pool, { name: "pool", maxConcurrent: 2, maxQueue: 10 }))
      )
      assert.deepStrictEqual(result, [["a1", "a2", "a3"], ["b1", "b2", "b3"]])
      assert.strictEqual(peak, 2)
      assert.strictEqual(after.peakInFlight, 2)
      assert.strictEqual(after.admitted, 6)
      assert.strictEqual(after.completed, 6)
      assert.strictEqual(after.name, "pool")
    }))

  test("stats, resize, close and drain accept the service key", () =>
    Effect.gen(function*() {
      const program = Effect.gen(function*() {
        yield* Bulkhead.resize(Pool, 4)
        assert.strictEqual((yield* Bulkhead.stats(Pool)).maxConcurrent, 4)
        yield* Bulkhead.close(Pool)
        yield* Bulkhead.drain(Pool)
        const error = yield* Effect.flip(Effect.void.pipe(Bulkhead.guard(Pool)))
        assert.strictEqual(error.reason, "Closed")
        assert.strictEqual((yield* Bulkhead.stats(Pool)).rejected.Closed, 1)
      })
      yield* program.pipe(Effect.provide(Bulkhead.layer(Pool, { name: "keyed-ops", maxConcurrent: 1 })))
    }))

  test("guard(Key) adds the key to R", () =>
    Effect.gen(function*() {
      const guarded = Effect.succeed("ok").pipe(Bulkhead.guard(Pool))
      const typed: Effect.Effect<string, BulkheadFull, Pool> = guarded
      // @ts-expect-error the key is required: R is not never
      const noRequirement: Effect.Effect<string, BulkheadFull, never> = guarded
      void noRequirement
      assert.strictEqual(
        yield* typed.pipe(Effect.provide(Bulkhead.layer(Pool, { name: "r", maxConcurrent: 1 }))),
        "ok"
      )
    }))

  test("the layer fails with InvalidOptions for invalid options", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Layer.build(Bulkhead.layer(Pool, { name: "bad-layer", maxConcurrent: 0 })))
      assert.instanceOf(error, InvalidOptions)
      assert.strictEqual(error.primitive, "Bulkhead")
      assert.include(error.message, "maxConcurrent")
    }))
})

// -----------------------------------------------------------------------------
// 8. observability
// -----------------------------------------------------------------------------

describe("Bulkhead rule 8: stats and Snapshot.since", () => {
  test("the snapshot sequence strictly increases", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "seq", maxConcurrent: 1 })
      const sequences: Array<number> = []
      for (let i = 0; i < 5; i++) {
        sequences.push((yield* Bulkhead.stats(b)).sequence)
        yield* Bulkhead.capacityReport(b)
        yield* Effect.void.pipe(Bulkhead.guard(b))
      }
      for (let i = 1; i < sequences.length; i++) assert.isAbove(sequences[i], sequences[i - 1])
    }))

  test("a snapshot reports the configuration and the cumulative counters", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "fields", maxConcurrent: 2, maxQueue: 1, queueTimeout: "1 second" })
      const s0 = yield* Bulkhead.stats(b)
      assert.strictEqual(s0.name, "fields")
      assert.strictEqual(s0.maxConcurrent, 2)
      assert.strictEqual(s0.maxQueue, 1)
      assert.strictEqual(millis(s0.queueTimeout!), 1000)
      assert.isFalse(s0.closed)
      const noTimeout = yield* Bulkhead.make({ name: "no-timeout", maxConcurrent: 1 })
      assert.isUndefined((yield* Bulkhead.stats(noTimeout)).queueTimeout)
    }))

  test("since gives the figures of the interval between two snapshots", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "interval", maxConcurrent: 1, maxQueue: 1, queueTimeout: "100 millis" })
      const { start } = bench(b)
      const s0 = yield* Bulkhead.stats(b)
      const a = yield* start("a") // admitted at once
      const w = yield* start("w") // queued
      yield* start("full") // QueueFull
      yield* TestClock.adjust("40 millis")
      yield* finish(a) // w admitted after 40 ms
      const t = yield* start("t") // queued behind w
      yield* TestClock.adjust("100 millis")
      yield* settle
      expectRejected(t.fiber, "QueueTimeout", 100)
      yield* finish(w)
      const s1 = yield* Bulkhead.stats(b)
      const i1 = s1.since(s0)
      assert.isTrue(Result.isSuccess(i1))
      if (Result.isFailure(i1)) return
      const v = i1.success
      assert.strictEqual(v.name, "interval")
      assert.strictEqual(millis(v.elapsed), 140)
      assert.strictEqual(v.admitted, 2)
      assert.strictEqual(v.admittedAfterWait, 1)
      assert.deepStrictEqual(
        [v.rejected.QueueFull, v.rejected.QueueTimeout, v.rejected.Closed, v.rejected.Oversized],
        [1, 1, 0, 0]
      )
      assert.strictEqual(v.rejectedTotal, 2)
      assert.strictEqual(v.completed, 2)
      assert.strictEqual(v.cancelled, 0)
      assert.strictEqual(millis(v.averageWait), 20) // (0 + 40) / 2
      assert.strictEqual(v.rejectionRate, 0.5)
      assert.closeTo(v.throughput, 2000 / 140, 1e-9)
      // the next interval holds only what happened after s1
      yield* TestClock.adjust("60 millis")
      yield* Effect.void.pipe(Bulkhead.guard(b))
      const s2 = yield* Bulkhead.stats(b)
      assert.strictEqual(s2.admitted, 3) // cumulative
      const i2 = s2.since(s1)
      assert.isTrue(Result.isSuccess(i2))
      if (Result.isFailure(i2)) return
      assert.strictEqual(i2.success.admitted, 1)
      assert.strictEqual(i2.success.admittedAfterWait, 0)
      assert.strictEqual(i2.success.rejectedTotal, 0)
      assert.strictEqual(i2.success.completed, 1)
      assert.strictEqual(millis(i2.success.averageWait), 0)
      assert.strictEqual(i2.success.rejectionRate, 0)
      assert.strictEqual(millis(i2.success.elapsed), 60)
      // an interval with no arrival
      const s3 = yield* Bulkhead.stats(b)
      const i3 = s3.since(s2)
      assert.isTrue(Result.isSuccess(i3) && i3.success.admitted === 0 && i3.success.rejectionRate === 0)
    }))

  test("since refuses a snapshot of another bulkhead, even one with the same name", () =>
    Effect.gen(function*() {
      const one = yield* Bulkhead.make({ name: "twin", maxConcurrent: 1 })
      const two = yield* Bulkhead.make({ name: "twin", maxConcurrent: 1 })
      const s1 = yield* Bulkhead.stats(one)
      const s2 = yield* Bulkhead.stats(two)
      const result = s2.since(s1)
      assert.isTrue(Result.isFailure(result))
      if (Result.isSuccess(result)) return
      assert.strictEqual(result.failure._tag, "SnapshotMismatch")
      assert.strictEqual(result.failure.reason, "OtherBulkhead")
    }))

  test("since refuses a reversed pair and a snapshot compared with itself", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "reversed", maxConcurrent: 1 })
      const earlier = yield* Bulkhead.stats(b)
      yield* Effect.void.pipe(Bulkhead.guard(b))
      const later = yield* Bulkhead.stats(b)
      const reversed = earlier.since(later)
      assert.isTrue(Result.isFailure(reversed) && reversed.failure.reason === "Reversed")
      const same = later.since(later)
      assert.isTrue(Result.isFailure(same) && same.failure.reason === "Reversed")
      assert.isTrue(Result.isSuccess(later.since(earlier)))
    }))
})

describe("Bulkhead rule 8: capacityReport", () => {
  /** One round: one call admitted at once, one admitted after `waitMs`, one rejected (QueueFull). */
  const unhealthyRound = (b: Bulkhead.Bulkhead, waitMs: number) =>
    Effect.gen(function*() {
      const { start } = bench(b)
      const a = yield* start("a")
      const w = yield* start("w")
      yield* start("r")
      yield* TestClock.adjust(Duration.millis(waitMs))
      yield* finish(a)
      yield* finish(w)
    })

  test("makes no finding below the minimum sample, however bad the figures", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "small", maxConcurrent: 1, maxQueue: 1 })
      for (let i = 0; i < 16; i++) yield* unhealthyRound(b, 2000) // 48 arrivals
      const report = yield* Bulkhead.capacityReport(b)
      assert.strictEqual(report.name, "small")
      assert.strictEqual(report.sample, 48)
      assert.isFalse(report.conclusive)
      assert.deepStrictEqual(report.findings, [])
      assert.strictEqual(report.interval.admitted, 32)
      // with a smaller minimum the same figures are conclusive
      const lenient = yield* Bulkhead.capacityReport(b, { minimumSample: 48 })
      assert.isTrue(lenient.conclusive)
      assert.deepStrictEqual(lenient.findings.map((f) => f._tag), ["Saturated", "Rejecting", "LongWaits"])
    }))

  test("reports Saturated, Rejecting and LongWaits when warranted", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "hot", maxConcurrent: 1, maxQueue: 1 })
      for (let i = 0; i < 20; i++) yield* unhealthyRound(b, 2000) // 60 arrivals, 20 rejected, 20 waited 2 s
      const report = yield* Bulkhead.capacityReport(b)
      assert.strictEqual(report.sample, 60)
      assert.isTrue(report.conclusive)
      assert.deepStrictEqual(report.findings.map((f) => f._tag), ["Saturated", "Rejecting", "LongWaits"])
      for (const finding of report.findings) assert.include(finding.message, "hot")
      assert.include(report.findings[1].message, "QueueFull")
    }))

  test("a healthy bulkhead gets no finding", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "healthy", maxConcurrent: 2, maxQueue: 2 })
      for (let i = 0; i < 60; i++) yield* Effect.void.pipe(Bulkhead.guard(b))
      const report = yield* Bulkhead.capacityReport(b)
      assert.strictEqual(report.sample, 60)
      assert.isTrue(report.conclusive)
      assert.deepStrictEqual(report.findings, [])
    }))

  test("only Saturated when calls queue briefly and none is rejected", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "busy", maxConcurrent: 1, maxQueue: 1 })
      const { start } = bench(b)
      for (let i = 0; i < 30; i++) {
        const a = yield* start("a")
        const w = yield* start("w")
        yield* TestClock.adjust("5 millis")
        yield* finish(a)
        yield* finish(w)
      }
      const report = yield* Bulkhead.capacityReport(b)
      assert.strictEqual(report.sample, 60)
      assert.deepStrictEqual(report.findings.map((f) => f._tag), ["Saturated"])
    }))

  test("LongWaits is judged against half the queueTimeout when there is one", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "waits", maxConcurrent: 1, maxQueue: 1, queueTimeout: "100 millis" })
      const { start } = bench(b)
      for (let i = 0; i < 30; i++) {
        const a = yield* start("a")
        const w = yield* start("w")
        yield* TestClock.adjust("60 millis") // above 50 ms, far below the 1 s default threshold
        yield* finish(a)
        yield* finish(w)
      }
      const report = yield* Bulkhead.capacityReport(b)
      assert.deepStrictEqual(report.findings.map((f) => f._tag), ["Saturated", "LongWaits"])
    }))

  test("since limits the report to the calls after a snapshot", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "recovered", maxConcurrent: 1, maxQueue: 1 })
      for (let i = 0; i < 20; i++) yield* unhealthyRound(b, 2000)
      const mark = yield* Bulkhead.stats(b)
      for (let i = 0; i < 60; i++) yield* Effect.void.pipe(Bulkhead.guard(b))
      const report = yield* Bulkhead.capacityReport(b, { since: mark })
      assert.strictEqual(report.sample, 60)
      assert.isTrue(report.conclusive)
      assert.deepStrictEqual(report.findings, [])
      const whole = yield* Bulkhead.capacityReport(b)
      assert.strictEqual(whole.sample, 120)
      assert.deepStrictEqual(whole.findings.map((f) => f._tag), ["Saturated", "Rejecting", "LongWaits"])
    }))

  test("capacityReport fails with SnapshotMismatch given a snapshot of another bulkhead", () =>
    Effect.gen(function*() {
      const one = yield* Bulkhead.make({ name: "one", maxConcurrent: 1 })
      const two = yield* Bulkhead.make({ name: "two", maxConcurrent: 1 })
      const error = yield* Effect.flip(Bulkhead.capacityReport(two, { since: yield* Bulkhead.stats(one) }))
      assert.strictEqual(error._tag, "SnapshotMismatch")
      assert.strictEqual(error.reason, "OtherBulkhead")
    }))
})

describe("Bulkhead rule 8: events", () => {
  type Seen = Record<string, unknown>
  const normalize = (e: Bulkhead.Event): Seen => {
    const out: Seen = { ...e }
    if ("waited" in e) out.waited = millis(e.waited)
    return out
  }
  const byJson = (xs: ReadonlyArray<Seen>) => xs.map((x) => JSON.stringify(x)).sort()

  const watch = (b: Bulkhead.Bulkhead) =>
    Effect.gen(function*() {
      const seen: Array<Bulkhead.Event> = []
      const fiber = yield* fork(Stream.runForEach(Bulkhead.events(b), (e) => Effect.sync(() => seen.push(e))))
      yield* settle
      /** The events since the last call, in any order within one step. */
      const take = Effect.gen(function*() {
        yield* settle
        return byJson(seen.splice(0).map(normalize))
      })
      return { fiber, take }
    })

  test("the events stream reports admitted, rejected, released, resized and closed", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "ev", maxConcurrent: 1, maxQueue: 1, queueTimeout: "50 millis" })
      const { start } = bench(b)
      const before = yield* start("before") // before anyone listens: not reported
      yield* finish(before)
      const { fiber, take } = yield* watch(b)
      const name = "ev"

      const a = yield* start("a")
      assert.deepStrictEqual((yield* take), byJson([{ _tag: "Admitted", name, weight: 1, waited: 0 }]))
      const w = yield* start("w")
      assert.deepStrictEqual((yield* take), [], "joining the queue is not an event")
      yield* start("full")
      assert.deepStrictEqual((yield* take), byJson([{ _tag: "Rejected", name, reason: "QueueFull", weight: 1, waited: 0 }]))

      yield* TestClock.adjust("20 millis")
      yield* finish(a)
      assert.deepStrictEqual((yield* take), byJson([
        { _tag: "Released", name, weight: 1, outcome: "Success" },
        { _tag: "Admitted", name, weight: 1, waited: 20 }
      ]))
      yield* failCall(w)
      assert.deepStrictEqual((yield* take), byJson([{ _tag: "Released", name, weight: 1, outcome: "Failure" }]))

      yield* start("big", { weight: 2 })
      assert.deepStrictEqual((yield* take), byJson([{ _tag: "Rejected", name, reason: "Oversized", weight: 2, waited: 0 }]))

      yield* Effect.exit(Effect.die("boom").pipe(Bulkhead.guard(b)))
      assert.deepStrictEqual((yield* take), byJson([
        { _tag: "Admitted", name, weight: 1, waited: 0 },
        { _tag: "Released", name, weight: 1, outcome: "Defect" }
      ]))

      const doomed = yield* start("doomed")
      yield* Fiber.interrupt(doomed.fiber)
      assert.deepStrictEqual((yield* take), byJson([
        { _tag: "Admitted", name, weight: 1, waited: 0 },
        { _tag: "Released", name, weight: 1, outcome: "Interrupted" }
      ]))

      const g = yield* start("g")
      const late = yield* start("late")
      yield* take
      yield* TestClock.adjust("50 millis")
      yield* settle
      expectRejected(late.fiber, "QueueTimeout", 50)
      assert.deepStrictEqual((yield* take), byJson([{ _tag: "Rejected", name, reason: "QueueTimeout", weight: 1, waited: 50 }]))

      const cancelled = yield* start("cancelled")
      yield* Fiber.interrupt(cancelled.fiber)
      assert.deepStrictEqual((yield* take), [], "leaving the queue by interruption is neither admission nor rejection")

      yield* Bulkhead.resize(b, 3)
      assert.deepStrictEqual((yield* take), byJson([{ _tag: "Resized", name, from: 1, to: 3 }]))

      const heavy = yield* start("heavy", { weight: 3 }) // 1 + 3 > 3: queued
      yield* TestClock.adjust("5 millis")
      yield* Bulkhead.close(b)
      yield* settle
      expectRejected(heavy.fiber, "Closed", 5)
      assert.deepStrictEqual((yield* take), byJson([
        { _tag: "Rejected", name, reason: "Closed", weight: 3, waited: 5 },
        { _tag: "Closed", name }
      ]))
      yield* start("after-close")
      assert.deepStrictEqual((yield* take), byJson([{ _tag: "Rejected", name, reason: "Closed", weight: 1, waited: 0 }]))

      yield* finish(g)
      assert.deepStrictEqual((yield* take), byJson([{ _tag: "Released", name, weight: 1, outcome: "Success" }]))
      yield* Fiber.interrupt(fiber)
    }))

  test("a waiter interrupted just after it was granted is reported released as Interrupted", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "ev-race", maxConcurrent: 1, maxQueue: 1 })
      const { fiber, take } = yield* watch(b)
      const waiter = yield* Effect.gen(function*() {
        const f = yield* fork(Effect.void.pipe(Bulkhead.guard(b)))
        yield* settle
        return f
      }).pipe(Bulkhead.guard(b))
      yield* Fiber.interrupt(waiter)
      yield* settle
      const events = (yield* take).map((s) => JSON.parse(s) as Seen)
      const released = events.filter((e) => e._tag === "Released")
      assert.strictEqual(events.filter((e) => e._tag === "Admitted").length, 2)
      assert.deepStrictEqual(released.map((e) => e.outcome).sort(), ["Interrupted", "Success"])
      yield* Fiber.interrupt(fiber)
    }))

  test("the events stream ends when the bulkhead's scope closes", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const b = yield* Bulkhead.make({ name: "ev-end", maxConcurrent: 1 }).pipe(Scope.provide(scope))
      const collected = yield* fork(Stream.runCollect(Bulkhead.events(b)))
      yield* settle
      yield* Effect.void.pipe(Bulkhead.guard(b))
      yield* Scope.close(scope, Exit.void)
      yield* settle
      assert.isTrue(isDone(collected))
      const events = yield* Fiber.join(collected)
      assert.deepStrictEqual(Array.from(events).map((e) => e._tag), ["Admitted", "Released", "Closed"])
    }))

  test("two listeners both receive every event", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "ev-two", maxConcurrent: 1 })
      const one = yield* fork(Stream.runCollect(Stream.take(Bulkhead.events(b), 2)))
      const two = yield* fork(Stream.runCollect(Stream.take(Bulkhead.events(b), 2)))
      yield* settle
      yield* Effect.void.pipe(Bulkhead.guard(b))
      const [e1, e2] = [yield* Fiber.join(one), yield* Fiber.join(two)]
      assert.deepStrictEqual(Array.from(e1).map((e) => e._tag), ["Admitted", "Released"])
      assert.deepStrictEqual(Array.from(e2).map((e) => e._tag), ["Admitted", "Released"])
    }))
})

describe("Bulkhead rule 8: metrics", () => {
  const ids = [
    "bulwark.bulkhead.in_flight",
    "bulwark.bulkhead.queued",
    "bulwark.bulkhead.admitted",
    "bulwark.bulkhead.rejected",
    "bulwark.bulkhead.queue_wait"
  ]

  const read = (registry: Metric.MetricRegistry) =>
    Metric.snapshot.pipe(Effect.provideService(Metric.MetricRegistry, registry))

  const find = (
    snapshot: ReadonlyArray<Metric.Metric.Snapshot>,
    id: string,
    attributes: Record<string, string>
  ): Metric.Metric.Snapshot => {
    const found = snapshot.filter((m) => m.id === id && JSON.stringify(m.attributes) === JSON.stringify(attributes))
    assert.strictEqual(found.length, 1, `one series ${id} ${JSON.stringify(attributes)}`)
    return found[0]
  }
  const gauge = (s: ReadonlyArray<Metric.Metric.Snapshot>, id: string, name: string) => {
    const m = find(s, id, { name })
    assert.strictEqual(m.type, "Gauge")
    return Number((m.state as Metric.GaugeState<number>).value)
  }
  const counter = (s: ReadonlyArray<Metric.Metric.Snapshot>, id: string, attributes: Record<string, string>) => {
    const m = find(s, id, attributes)
    assert.strictEqual(m.type, "Counter")
    return Number((m.state as Metric.CounterState<number>).count)
  }

  test("in-flight and queued gauges, admitted and rejected counters and a queue-wait histogram, labelled by name", () =>
    Effect.gen(function*() {
      const registry: Metric.MetricRegistry = new Map()
      const scope = yield* Scope.make()
      const b = yield* Bulkhead.make({ name: "db", maxConcurrent: 3, maxQueue: 1 }).pipe(
        Scope.provide(scope),
        Effect.provideService(Metric.MetricRegistry, registry)
      )
      const { start } = bench(b)
      const a = yield* start("a", { weight: 2 })
      const c = yield* start("b")
      const w = yield* start("w")
      yield* start("full")
      yield* start("big", { weight: 4 })

      let s = yield* read(registry)
      assert.strictEqual(gauge(s, "bulwark.bulkhead.in_flight", "db"), 3) // permits, not calls
      assert.strictEqual(gauge(s, "bulwark.bulkhead.queued", "db"), 1)
      assert.strictEqual(counter(s, "bulwark.bulkhead.admitted", { name: "db" }), 2)
      assert.strictEqual(counter(s, "bulwark.bulkhead.rejected", { name: "db", reason: "QueueFull" }), 1)
      assert.strictEqual(counter(s, "bulwark.bulkhead.rejected", { name: "db", reason: "Oversized" }), 1)
      assert.strictEqual(counter(s, "bulwark.bulkhead.rejected", { name: "db", reason: "QueueTimeout" }), 0)
      assert.strictEqual(counter(s, "bulwark.bulkhead.rejected", { name: "db", reason: "Closed" }), 0)

      yield* TestClock.adjust("30 millis")
      yield* finish(a) // w admitted after 30 ms
      s = yield* read(registry)
      assert.strictEqual(gauge(s, "bulwark.bulkhead.in_flight", "db"), 2)
      assert.strictEqual(gauge(s, "bulwark.bulkhead.queued", "db"), 0)
      assert.strictEqual(counter(s, "bulwark.bulkhead.admitted", { name: "db" }), 3)
      const wait = find(s, "bulwark.bulkhead.queue_wait", { name: "db" })
      assert.strictEqual(wait.type, "Histogram")
      const h = wait.state as Metric.HistogramState
      assert.strictEqual(h.count, 3)
      assert.strictEqual(h.sum, 30)
      assert.strictEqual(h.max, 30)
      assert.strictEqual(h.min, 0)
      const bucket = (le: number) => h.buckets.find(([bound]) => bound === le)?.[1]
      assert.strictEqual(bucket(0), 2) // the two immediate admissions
      assert.strictEqual(bucket(25), 2)
      assert.strictEqual(bucket(50), 3) // cumulative
      for (let i = 1; i < h.buckets.length; i++) assert.isAtLeast(h.buckets[i][1], h.buckets[i - 1][1])

      // labelled by name only (plus the reason of a rejection): no key, no call data
      for (const m of s.filter((m) => m.id.startsWith("bulwark.bulkhead."))) {
        const keys = Object.keys(m.attributes ?? {}).sort()
        assert.deepStrictEqual(keys, m.id === "bulwark.bulkhead.rejected" ? ["name", "reason"] : ["name"], m.id)
      }
      for (const id of ids) assert.isTrue(s.some((m) => m.id === id), id)

      yield* finish(c)
      yield* finish(w)
      yield* Scope.close(scope, Exit.void)
      s = yield* read(registry)
      assert.deepStrictEqual(s.filter((m) => m.id.startsWith("bulwark.bulkhead.")), [], "removed after the scope closes")
    }))

  test("two bulkheads have separate series, and closing one removes only its own", () =>
    Effect.gen(function*() {
      const registry: Metric.MetricRegistry = new Map()
      const scopeA = yield* Scope.make()
      const scopeB = yield* Scope.make()
      const withRegistry = Effect.provideService(Metric.MetricRegistry, registry)
      const a = yield* Bulkhead.make({ name: "alpha", maxConcurrent: 1 }).pipe(Scope.provide(scopeA), withRegistry)
      const b = yield* Bulkhead.make({ name: "beta", maxConcurrent: 1 }).pipe(Scope.provide(scopeB), withRegistry)
      yield* Effect.void.pipe(Bulkhead.guard(a))
      yield* Effect.void.pipe(Bulkhead.guard(a))
      yield* Effect.void.pipe(Bulkhead.guard(b))
      let s = yield* read(registry)
      assert.strictEqual(counter(s, "bulwark.bulkhead.admitted", { name: "alpha" }), 2)
      assert.strictEqual(counter(s, "bulwark.bulkhead.admitted", { name: "beta" }), 1)
      yield* Scope.close(scopeA, Exit.void)
      s = yield* read(registry)
      assert.isFalse(s.some((m) => m.attributes?.name === "alpha"))
      assert.strictEqual(counter(s, "bulwark.bulkhead.admitted", { name: "beta" }), 1)
      yield* Scope.close(scopeB, Exit.void)
    }))

  test("a rejection after the wait is counted by reason, and timeouts are not observed as queue waits", () =>
    Effect.gen(function*() {
      const registry: Metric.MetricRegistry = new Map()
      const b = yield* Bulkhead.make({ name: "m-timeout", maxConcurrent: 1, maxQueue: 1, queueTimeout: "10 millis" }).pipe(
        Effect.provideService(Metric.MetricRegistry, registry)
      )
      const { start } = bench(b)
      const a = yield* start("a")
      yield* start("t")
      yield* TestClock.adjust("10 millis")
      yield* settle
      const s = yield* read(registry)
      assert.strictEqual(counter(s, "bulwark.bulkhead.rejected", { name: "m-timeout", reason: "QueueTimeout" }), 1)
      const h = find(s, "bulwark.bulkhead.queue_wait", { name: "m-timeout" }).state as Metric.HistogramState
      assert.strictEqual(h.count, 1)
      assert.strictEqual(h.sum, 0)
      yield* finish(a)
    }))
})

// -----------------------------------------------------------------------------
// 10. invalid options
// -----------------------------------------------------------------------------

describe("Bulkhead rule 10: invalid options fail with InvalidOptions naming the field and rule, never clamped", () => {
  const cases: ReadonlyArray<{ readonly title: string; readonly options: unknown; readonly field: string; readonly rule: string }> = [
    { title: "maxConcurrent 0", options: { name: "x", maxConcurrent: 0 }, field: "maxConcurrent", rule: ">= 1" },
    { title: "negative maxConcurrent", options: { name: "x", maxConcurrent: -3 }, field: "maxConcurrent", rule: ">= 1" },
    { title: "NaN maxConcurrent", options: { name: "x", maxConcurrent: Number.NaN }, field: "maxConcurrent", rule: "integer" },
    { title: "non-integer maxConcurrent", options: { name: "x", maxConcurrent: 1.5 }, field: "maxConcurrent", rule: "integer" },
    { title: "infinite maxConcurrent", options: { name: "x", maxConcurrent: Infinity }, field: "maxConcurrent", rule: "integer" },
    { title: "missing maxConcurrent", options: { name: "x" }, field: "maxConcurrent", rule: "Missing" },
    { title: "negative maxQueue", options: { name: "x", maxConcurrent: 1, maxQueue: -1 }, field: "maxQueue", rule: ">= 0" },
    { title: "non-integer maxQueue", options: { name: "x", maxConcurrent: 1, maxQueue: 0.5 }, field: "maxQueue", rule: "integer" },
    { title: "negative queueTimeout", options: { name: "x", maxConcurrent: 1, queueTimeout: -5 }, field: "queueTimeout", rule: ">= 0" },
    { title: "negative queueTimeout string", options: { name: "x", maxConcurrent: 1, queueTimeout: "-1 seconds" }, field: "queueTimeout", rule: ">= 0" },
    { title: "malformed queueTimeout", options: { name: "x", maxConcurrent: 1, queueTimeout: "soon" }, field: "queueTimeout", rule: "duration" },
    { title: "NaN queueTimeout", options: { name: "x", maxConcurrent: 1, queueTimeout: Number.NaN }, field: "queueTimeout", rule: "duration" },
    { title: "empty name", options: { name: "", maxConcurrent: 1 }, field: "name", rule: "non-empty" },
    { title: "blank name", options: { name: "   ", maxConcurrent: 1 }, field: "name", rule: "non-empty" }
  ]

  for (const { field, options, rule, title } of cases) {
    test(`${title} fails make with InvalidOptions naming ${field}`, () =>
      Effect.gen(function*() {
        const exit = yield* Effect.exit(Bulkhead.make(options as Bulkhead.Options))
        assert.isTrue(Exit.isFailure(exit), "must fail, not build a clamped bulkhead")
        const error = yield* Effect.flip(Bulkhead.make(options as Bulkhead.Options))
        assert.instanceOf(error, InvalidOptions)
        assert.strictEqual(error._tag, "InvalidOptions")
        assert.strictEqual(error.primitive, "Bulkhead")
        assert.include(error.message, `${field}:`)
        assert.include(error.message, rule)
        assert.strictEqual(error.message.split("\n").length, 1, "only the bad field is named")
      }))
  }

  test("every bad field is named, one per line", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Bulkhead.make({ name: "", maxConcurrent: 0, maxQueue: -1, queueTimeout: "soon" } as unknown as Bulkhead.Options)
      )
      const lines = error.message.split("\n")
      assert.strictEqual(lines.length, 4)
      assert.isTrue(lines[0].startsWith("name:"))
      assert.isTrue(lines[1].startsWith("maxConcurrent:"))
      assert.isTrue(lines[2].startsWith("maxQueue:"))
      assert.isTrue(lines[3].startsWith("queueTimeout:"))
      assert.strictEqual(error.name, "<unnamed>")
    }))

  test("the error carries the bulkhead's name when it is readable", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Bulkhead.make({ name: "payments", maxConcurrent: 0 }))
      assert.strictEqual(error.name, "payments")
      assert.strictEqual(error.message, "maxConcurrent: Expected an integer >= 1, got 0")
    }))

  test("boundary values are accepted exactly as given", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "edge", maxConcurrent: 1, maxQueue: 0, queueTimeout: 0 })
      const s = yield* Bulkhead.stats(b)
      assert.strictEqual(s.maxConcurrent, 1)
      assert.strictEqual(s.maxQueue, 0)
      assert.strictEqual(millis(s.queueTimeout!), 0)
      const c = yield* Bulkhead.make({ name: "strings", maxConcurrent: 3, maxQueue: 7, queueTimeout: "2 seconds" })
      const t = yield* Bulkhead.stats(c)
      assert.deepStrictEqual([t.maxConcurrent, t.maxQueue, millis(t.queueTimeout!)], [3, 7, 2000])
    }))
})

// -----------------------------------------------------------------------------
// 11. composition with retry
// -----------------------------------------------------------------------------

describe("Bulkhead rule 11: composes with Effect.retry", () => {
  test("a bulkhead outside a retry holds one slot across all attempts", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "outside", maxConcurrent: 1, maxQueue: 1 })
      let attempts = 0
      const flaky = Effect.suspend(() =>
        ++attempts < 4 ? Effect.fail(new Boom({ label: `attempt ${attempts}` })) : Effect.succeed(attempts)
      )
      const fiber = yield* fork(
        flaky.pipe(Effect.retry(Schedule.spaced("10 millis")), Bulkhead.guard(b))
      )
      yield* settle
      const { log, start } = bench(b)
      const other = yield* start("other")
      for (let i = 1; i <= 2; i++) {
        yield* TestClock.adjust("10 millis")
        yield* settle
        assert.strictEqual(attempts, i + 1)
        // between attempts the slot stays held: the other call is still queued
        yield* expectCounts(b, { inFlight: 1, running: 1, queued: 1, admitted: 1, completed: 0 })
        assert.deepStrictEqual(log, [])
      }
      yield* TestClock.adjust("10 millis")
      yield* settle
      assert.strictEqual(yield* Fiber.join(fiber), 4)
      assert.deepStrictEqual(log, ["other"])
      yield* finish(other)
      const s = yield* expectCounts(b, { inFlight: 0, running: 0, queued: 0, admitted: 2, completed: 2 })
      assert.strictEqual(s.peakInFlight, 1)
    }))

  test("a retry outside the bulkhead is admitted once per attempt", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "inside", maxConcurrent: 1 })
      let attempts = 0
      const flaky = Effect.suspend(() =>
        ++attempts < 3 ? Effect.fail(new Boom({ label: "again" })) : Effect.succeed(attempts)
      )
      const result = yield* flaky.pipe(Bulkhead.guard(b), Effect.retry({ times: 5 }))
      assert.strictEqual(result, 3)
      yield* expectCounts(b, { inFlight: 0, running: 0, queued: 0, admitted: 3, completed: 3 })
    }))

  test("a retry while-predicate can include BulkheadFull: the call is retried until admitted", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "retry-full", maxConcurrent: 1 })
      const { start } = bench(b)
      const holder = yield* start("holder")
      const fiber = yield* fork(
        Effect.succeed("in").pipe(
          Bulkhead.guard(b),
          Effect.retry({
            schedule: Schedule.spaced("10 millis"),
            while: (e) => e._tag === "BulkheadFull" && e.reason === "QueueFull"
          })
        )
      )
      yield* settle
      yield* expectCounts(b, { inFlight: 1, running: 1, queued: 0, admitted: 1, completed: 0, rejected: { QueueFull: 1 } })
      yield* TestClock.adjust("10 millis")
      yield* settle
      yield* expectCounts(b, { inFlight: 1, running: 1, queued: 0, admitted: 1, completed: 0, rejected: { QueueFull: 2 } })
      yield* finish(holder)
      yield* TestClock.adjust("10 millis")
      yield* settle
      assert.strictEqual(yield* Fiber.join(fiber), "in")
      yield* expectCounts(b, { inFlight: 0, running: 0, queued: 0, admitted: 2, completed: 2, rejected: { QueueFull: 2 } })
    }))

  test("a retry while-predicate can exclude BulkheadFull: the rejection ends the call at once", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "retry-not-full", maxConcurrent: 1 })
      const { start } = bench(b)
      const holder = yield* start("holder")
      let attempts = 0
      const fiber = yield* fork(
        Effect.suspend(() => {
          attempts++
          return Effect.fail(new Boom({ label: "retryable" }))
        }).pipe(
          Bulkhead.guard(b),
          Effect.retry({ schedule: Schedule.spaced("10 millis"), while: (e) => e._tag !== "BulkheadFull" })
        )
      )
      yield* settle
      assert.isTrue(isDone(fiber), "not retried, no wait")
      const error = yield* Effect.flip(Fiber.join(fiber))
      assert.strictEqual(error._tag, "BulkheadFull")
      if (error._tag === "BulkheadFull") assert.strictEqual(error.reason, "QueueFull")
      assert.strictEqual(attempts, 0)
      yield* expectCounts(b, { inFlight: 1, running: 1, queued: 0, admitted: 1, completed: 0, rejected: { QueueFull: 1 } })
      // the same retry does retry the effect's own errors once admitted
      yield* finish(holder)
      const second = yield* fork(
        Effect.suspend(() => (++attempts < 3 ? Effect.fail(new Boom({ label: "again" })) : Effect.succeed(attempts))).pipe(
          Bulkhead.guard(b),
          Effect.retry({ schedule: Schedule.spaced("10 millis"), while: (e) => e._tag !== "BulkheadFull" })
        )
      )
      yield* settle
      yield* TestClock.adjust("10 millis")
      yield* settle
      yield* TestClock.adjust("10 millis")
      yield* settle
      assert.strictEqual(yield* Fiber.join(second), 3)
    }))

  test("a QueueTimeout rejection can be retried like any typed error", () =>
    Effect.gen(function*() {
      const b = yield* Bulkhead.make({ name: "retry-timeout", maxConcurrent: 1, maxQueue: 1, queueTimeout: "10 millis" })
      const { start } = bench(b)
      const holder = yield* start("holder")
      const fiber = yield* fork(
        Effect.succeed("late").pipe(
          Bulkhead.guard(b),
          Effect.retry({ times: 5, while: (e) => e.reason === "QueueTimeout" })
        )
      )
      yield* settle
      yield* TestClock.adjust("10 millis")
      yield* settle
      yield* TestClock.adjust("5 millis")
      yield* finish(holder)
      assert.strictEqual(yield* Fiber.join(fiber), "late")
      yield* expectCounts(b, { inFlight: 0, running: 0, queued: 0, admitted: 2, completed: 2, rejected: { QueueTimeout: 1 } })
    }))
})
