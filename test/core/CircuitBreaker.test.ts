/**
 * The CircuitBreaker rules of issue 3, one `describe` per rule, all under TestClock
 * (the clock starts at 0 in every test, so transition times are exact).
 *
 * Calls are driven by hand: `call` runs one guarded call to its end, `start` launches a
 * guarded call that runs until the test ends it (`succeed`, `fail`, `die`, `interrupt`),
 * `slow` runs a call that takes a given time of the test clock.
 */
import { assert, describe, it } from "@effect/vitest"
import { CircuitBreaker, CircuitBreakerStore, CircuitOpen, InvalidOptions } from "@bulwark/core"
import { Cause, Context, Data, Deferred, Duration, Effect, Exit, Fiber, Metric, Schedule, Schema, Scope, Stream } from "effect"
import { TestClock } from "effect/testing"

// -----------------------------------------------------------------------------
// helpers
// -----------------------------------------------------------------------------

class Boom extends Data.TaggedError("Boom")<{ readonly label: string }> {}

type Breaker = CircuitBreaker.CircuitBreaker
type Reason = CircuitOpen["reason"]
type Kind = "success" | "failure" | "defect" | "interrupt"

const kinds: Record<string, Kind> = { S: "success", F: "failure", D: "defect", I: "interrupt" }

const body = (kind: Kind, label = kind): Effect.Effect<string, Boom> => {
  switch (kind) {
    case "success":
      return Effect.succeed(label)
    case "failure":
      return Effect.fail(new Boom({ label }))
    case "defect":
      return Effect.die(new Error(label))
    case "interrupt":
      return Effect.interrupt
  }
}

const guardOptions = (key: string | undefined): CircuitBreaker.GuardOptions | undefined =>
  key === undefined ? undefined : { key }

type CallExit = Exit.Exit<string, Boom | CircuitOpen>

/** Runs one call through the breaker to its end. */
const call = (b: Breaker, kind: Kind, key?: string): Effect.Effect<CallExit> =>
  Effect.exit(body(kind).pipe(CircuitBreaker.guard(b, guardOptions(key))))

/** Runs calls one after the other: S success, F failure, D defect, I interruption. */
const calls = (b: Breaker, pattern: string, key?: string): Effect.Effect<Array<CallExit>> =>
  Effect.forEach(pattern.split(""), (c) => call(b, kinds[c], key))

const settle = Effect.gen(function*() {
  for (let i = 0; i < 10; i++) yield* Effect.yieldNow
})

const advance = (ms: number) => TestClock.adjust(Duration.millis(ms))

/** A call that takes `ms` of the test clock, then ends as `kind`. The clock moves by `ms`. */
const slow = (b: Breaker, ms: number, kind: Kind, key?: string): Effect.Effect<CallExit> =>
  Effect.gen(function*() {
    const fiber = yield* Effect.forkChild(
      Effect.exit(Effect.sleep(Duration.millis(ms)).pipe(Effect.andThen(body(kind)), CircuitBreaker.guard(b, guardOptions(key))))
    )
    yield* settle
    yield* advance(ms)
    return yield* Fiber.join(fiber)
  })

interface Pending {
  readonly fiber: Fiber.Fiber<string, Boom | CircuitOpen>
  /** Whether the call's own effect started (false when the breaker rejected it). */
  readonly started: () => boolean
  readonly exit: () => CallExit | undefined
  readonly succeed: (value?: string) => Effect.Effect<CallExit>
  readonly fail: (label?: string) => Effect.Effect<CallExit>
  readonly die: () => Effect.Effect<CallExit>
  readonly interrupt: Effect.Effect<CallExit>
}

/** Launches a guarded call that runs until the test ends it. */
const start = (b: Breaker, key?: string): Effect.Effect<Pending> =>
  Effect.gen(function*() {
    const gate = yield* Deferred.make<string, Boom>()
    let started = false
    const fiber = yield* Effect.forkChild(
      Effect.suspend(() => {
        started = true
        return Deferred.await(gate)
      }).pipe(CircuitBreaker.guard(b, guardOptions(key)))
    )
    yield* settle
    const end = (complete: Effect.Effect<boolean>) =>
      Effect.gen(function*() {
        yield* complete
        const exit = yield* Fiber.await(fiber)
        yield* settle
        return exit
      })
    return {
      fiber,
      started: () => started,
      exit: () => fiber.pollUnsafe(),
      succeed: (value = "late") => end(Deferred.succeed(gate, value)),
      fail: (label = "late") => end(Deferred.fail(gate, new Boom({ label }))),
      die: () => end(Deferred.die(gate, new Error("late defect"))),
      interrupt: Effect.gen(function*() {
        yield* Fiber.interrupt(fiber)
        const exit = yield* Fiber.await(fiber)
        yield* settle
        return exit
      })
    }
  })

const expectSuccess = (exit: CallExit | undefined, value: string) => {
  assert.isDefined(exit, "the call has ended")
  assert.isTrue(exit !== undefined && Exit.isSuccess(exit), `expected success, got ${String(exit)}`)
  if (exit !== undefined && Exit.isSuccess(exit)) assert.strictEqual(exit.value, value)
}

/** The call ended with its own typed failure (not a rejection). */
const expectBoom = (exit: CallExit | undefined, label: string) => {
  assert.isDefined(exit, "the call has ended")
  if (exit === undefined || Exit.isSuccess(exit)) return assert.fail(`expected Boom(${label}), got ${String(exit)}`)
  const reasons = exit.cause.reasons
  assert.strictEqual(reasons.length, 1)
  const reason = reasons[0]
  if (!Cause.isFailReason(reason)) return assert.fail(`expected a typed failure, got ${reason._tag}`)
  assert.instanceOf(reason.error, Boom)
  assert.strictEqual((reason.error as Boom).label, label)
}

const rejection = (exit: CallExit | undefined): CircuitOpen => {
  assert.isDefined(exit, "expected a rejection, but the call has not ended")
  if (exit === undefined || Exit.isSuccess(exit)) return assert.fail(`expected a CircuitOpen, got ${String(exit)}`)
  const reasons = exit.cause.reasons
  assert.strictEqual(reasons.length, 1, "one reason in the cause")
  const reason = reasons[0]
  if (!Cause.isFailReason(reason)) return assert.fail(`expected a typed failure, got ${reason._tag}`)
  assert.instanceOf(reason.error, CircuitOpen)
  return reason.error as CircuitOpen
}

interface Rejected {
  readonly reason: Reason
  /** Milliseconds; Infinity for an isolated circuit. */
  readonly retryAfter: number
  readonly name?: string
  /** The key the error must carry; when absent the error must have no `key` field. */
  readonly key?: string
}

const stateOfReason: Record<Reason, CircuitOpen["state"]> = {
  Open: "Open",
  ProbesBusy: "HalfOpen",
  Isolated: "Isolated",
  StoreUnavailable: "Unknown"
}

const expectRejected = (exit: CallExit | undefined, expected: Rejected): CircuitOpen => {
  const error = rejection(exit)
  assert.strictEqual(error._tag, "CircuitOpen")
  assert.strictEqual(error.reason, expected.reason)
  assert.strictEqual(error.state, stateOfReason[expected.reason])
  assert.strictEqual(Duration.toMillis(error.retryAfter), expected.retryAfter, "retryAfter (ms)")
  if (expected.name !== undefined) assert.strictEqual(error.name, expected.name)
  if (expected.key === undefined) assert.isFalse("key" in error, "no key in the error")
  else assert.strictEqual(error.key, expected.key)
  return error
}

interface ExpectedState {
  readonly state: CircuitBreaker.State
  readonly retryAfter?: number
  readonly consecutiveOpenings?: number
  readonly probing?: number
}

const expectState = (b: Breaker, expected: ExpectedState, key?: string) =>
  Effect.gen(function*() {
    const info = yield* CircuitBreaker.state(b, key)
    assert.strictEqual(info.state, expected.state, "state")
    const retryAfter = expected.retryAfter ??
      (expected.state === "Isolated" ? Infinity : expected.state === "Open" ? undefined : 0)
    if (retryAfter !== undefined) assert.strictEqual(Duration.toMillis(info.retryAfter), retryAfter, "retryAfter (ms)")
    if (expected.consecutiveOpenings !== undefined) {
      assert.strictEqual(info.consecutiveOpenings, expected.consecutiveOpenings, "consecutiveOpenings")
    }
    if (expected.probing !== undefined) assert.strictEqual(info.probing, expected.probing, "probing")
  })

interface ExpectedStats {
  readonly successes: number
  readonly failures: number
  readonly ignored: number
  readonly rejected?: Partial<Record<Reason, number>>
  readonly transitions?: number
  readonly openings?: number
}

/** Asserts the counters; every rejection reason not given must be 0. */
const expectStats = (b: Breaker, expected: ExpectedStats) =>
  Effect.gen(function*() {
    const s = yield* CircuitBreaker.stats(b)
    assert.strictEqual(s.successes, expected.successes, "successes")
    assert.strictEqual(s.failures, expected.failures, "failures")
    assert.strictEqual(s.ignored, expected.ignored, "ignored")
    assert.deepStrictEqual(s.rejected, { Open: 0, ProbesBusy: 0, Isolated: 0, StoreUnavailable: 0, ...expected.rejected }, "rejected")
    if (expected.transitions !== undefined) assert.strictEqual(s.transitions, expected.transitions, "transitions")
    if (expected.openings !== undefined) assert.strictEqual(s.openings, expected.openings, "openings")
    return s
  })

/** A breaker that opens on the first failure: the quickest way to an Open circuit. */
const oneStrike = (options: Partial<CircuitBreaker.Options> = {}) =>
  CircuitBreaker.make({ name: "cb", trip: CircuitBreaker.consecutive(1), openFor: "10 seconds", ...options })

/** Opens the circuit with one failure and waits out `openMs`, so the next call is a probe. */
const openThenWait = (b: Breaker, openMs: number) =>
  Effect.gen(function*() {
    yield* call(b, "failure")
    yield* advance(openMs)
  })

// -----------------------------------------------------------------------------
// trip policies
// -----------------------------------------------------------------------------

describe("CircuitBreaker rule: consecutive(n) opens after n failures in a row, counted in completion order", () => {
  it.effect("n - 1 failures leave it closed; the n-th opens it and the next call is rejected without running", () =>
    Effect.gen(function*() {
      const b = yield* CircuitBreaker.make({ name: "cb", trip: CircuitBreaker.consecutive(3), openFor: "10 seconds" })
      const exits = yield* calls(b, "FF")
      for (const exit of exits) expectBoom(exit, "failure")
      yield* expectState(b, { state: "Closed", consecutiveOpenings: 0 })
      expectBoom((yield* calls(b, "F"))[0], "failure") // the tripping call ends with its own error
      yield* expectState(b, { state: "Open", retryAfter: 10_000, consecutiveOpenings: 1 })
      const p = yield* start(b)
      assert.isFalse(p.started(), "a rejected call does not run")
      expectRejected(p.exit(), { reason: "Open", retryAfter: 10_000 })
      yield* expectStats(b, { successes: 0, failures: 3, ignored: 0, rejected: { Open: 1 }, transitions: 1, openings: 1 })
    }))

  it.effect("a success resets the count", () =>
    Effect.gen(function*() {
      const b = yield* CircuitBreaker.make({ name: "cb", trip: CircuitBreaker.consecutive(3), openFor: "10 seconds" })
      yield* calls(b, "FFSFF")
      yield* expectState(b, { state: "Closed" })
      yield* calls(b, "F")
      yield* expectState(b, { state: "Open", retryAfter: 10_000 })
    }))

  it.effect("an Ignored outcome (interruption) neither counts nor breaks the run of failures", () =>
    Effect.gen(function*() {
      const b = yield* CircuitBreaker.make({ name: "cb", trip: CircuitBreaker.consecutive(2), openFor: "10 seconds" })
      yield* calls(b, "FIII")
      yield* expectState(b, { state: "Closed" })
      yield* calls(b, "F")
      yield* expectState(b, { state: "Open" })
      yield* expectStats(b, { successes: 0, failures: 2, ignored: 3 })
    }))

  it.effect("a defect counts as a failure", () =>
    Effect.gen(function*() {
      const b = yield* CircuitBreaker.make({ name: "cb", trip: CircuitBreaker.consecutive(2), openFor: "10 seconds" })
      yield* calls(b, "DF")
      yield* expectState(b, { state: "Open" })
    }))

  it.effect("two slow calls admitted before a fast failing one: a success completing in between breaks the run", () =>
    Effect.gen(function*() {
      const b = yield* CircuitBreaker.make({ name: "cb", trip: CircuitBreaker.consecutive(2), openFor: "10 seconds" })
      const a = yield* start(b)
      const c = yield* start(b)
      yield* calls(b, "F") // completes first
      yield* a.succeed() // completes second: resets the run
      yield* c.fail() // completes third: a run of one
      // In admission order this would be S, F, F: open. In completion order it is F, S, F: closed.
      yield* expectState(b, { state: "Closed" })
      yield* calls(b, "F")
      yield* expectState(b, { state: "Open" })
    }))

  it.effect("two slow calls admitted before a fast failing one: failures completing in a row open it while another call runs", () =>
    Effect.gen(function*() {
      const b = yield* CircuitBreaker.make({ name: "cb", trip: CircuitBreaker.consecutive(2), openFor: "10 seconds" })
      const a = yield* start(b)
      const c = yield* start(b)
      yield* calls(b, "F")
      yield* expectState(b, { state: "Closed" })
      yield* a.fail() // two failures in completion order, although c was admitted in between
      yield* expectState(b, { state: "Open", retryAfter: 10_000 })
      expectSuccess(yield* c.succeed("c"), "c") // finishes normally, changes nothing
      yield* expectState(b, { state: "Open", retryAfter: 10_000, consecutiveOpenings: 1 })
    }))
})

describe("CircuitBreaker rule: failureRate over a count window (the last N calls)", () => {
  const rate = (threshold: number, minimumCalls: number, window: number) =>
    CircuitBreaker.make({
      name: "rate",
      trip: CircuitBreaker.failureRate({ threshold, minimumCalls, window }),
      openFor: "10 seconds"
    })

  /** Runs the pattern call by call, checking the state after each. */
  const walk = (b: Breaker, pattern: string, states: string) =>
    Effect.gen(function*() {
      for (let i = 0; i < pattern.length; i++) {
        yield* call(b, kinds[pattern[i]])
        const info = yield* CircuitBreaker.state(b)
        assert.strictEqual(info.state, states[i] === "C" ? "Closed" : "Open", `after call ${i + 1} of ${pattern}`)
      }
    })

  it.effect("does not open before minimumCalls calls, even at 100% failures", () =>
    Effect.gen(function*() {
      const b = yield* rate(0.5, 4, 10)
      yield* walk(b, "FFFS", "CCCO") // 3 failures of 3: too few calls; then 3 of 4
    }))

  it.effect("the threshold is inclusive: exactly threshold opens", () =>
    Effect.gen(function*() {
      yield* walk(yield* rate(0.5, 4, 4), "SSFF", "CCCO") // 2/4 = 0.5
      yield* walk(yield* rate(0.5, 4, 4), "SSSF", "CCCC") // 1/4
      yield* walk(yield* rate(0.51, 4, 4), "SSFF", "CCCC")
      yield* walk(yield* rate(1, 3, 3), "FFSFFF", "CCCCCO") // threshold 1: only all-failures
    }))

  it.effect("outcomes older than the last N calls leave the window", () =>
    Effect.gen(function*() {
      // window 4, threshold 0.75: the two early failures leave, so F F S S S S F F stays closed
      // (a window that forgot to drop failures would see 3 of 4 at the 7th call) and the 9th opens.
      yield* walk(yield* rate(0.75, 4, 4), "FFSSSSFFF", "CCCCCCCCO")
    }))

  it.effect("Ignored outcomes do not enter the window", () =>
    Effect.gen(function*() {
      yield* walk(yield* rate(0.5, 4, 4), "FFIIS", "CCCCC") // 3 counted calls
      yield* walk(yield* rate(0.5, 4, 4), "FFIISS", "CCCCCO")
    }))

  it.effect("the window starts empty again after the circuit closes", () =>
    Effect.gen(function*() {
      const b = yield* rate(0.6, 2, 4)
      yield* walk(b, "SFF", "CCO") // 2/3
      yield* advance(10_000)
      yield* walk(b, "S", "C") // the probe closes it
      yield* walk(b, "F", "C") // 1 call in the new window (the old one would hold S F F F: 3/4)
      yield* walk(b, "SF", "CO") // 2/3
    }))
})

describe("CircuitBreaker rule: failureRate over a time window of ten buckets (outcomes leave 90%..100% of the window after they were recorded)", () => {
  // A 10 s window: ten buckets of 1 s, by clock time. An outcome recorded in bucket k
  // (k * 1000 <= t < (k + 1) * 1000) counts until the clock reaches (k + 10) * 1000.
  const rate = CircuitBreaker.make({
    name: "timed",
    trip: CircuitBreaker.failureRate({ threshold: 0.5, minimumCalls: 2, window: "10 seconds" }),
    openFor: "10 seconds"
  })

  it.effect("a failure recorded at 0 ms still counts at 9 999 ms", () =>
    Effect.gen(function*() {
      const b = yield* rate
      yield* calls(b, "F")
      yield* advance(9_999)
      yield* calls(b, "S")
      yield* expectState(b, { state: "Open" })
    }))

  it.effect("a failure recorded at 0 ms no longer counts at 10 000 ms (100% of the window)", () =>
    Effect.gen(function*() {
      const b = yield* rate
      yield* calls(b, "F")
      yield* advance(10_000)
      yield* calls(b, "S")
      yield* expectState(b, { state: "Closed" }) // one call in the window
      yield* calls(b, "F")
      yield* expectState(b, { state: "Open" }) // 1 of 2, both recent
    }))

  it.effect("a failure recorded at 999 ms leaves with its bucket at 10 000 ms (90.01% of the window)", () =>
    Effect.gen(function*() {
      const b = yield* rate
      yield* advance(999)
      yield* calls(b, "F")
      yield* advance(9_001)
      yield* calls(b, "S")
      yield* expectState(b, { state: "Closed" })
    }))

  it.effect("a failure recorded at 999 ms still counts at 9 999 ms", () =>
    Effect.gen(function*() {
      const b = yield* rate
      yield* advance(999)
      yield* calls(b, "F")
      yield* advance(9_000)
      yield* calls(b, "S")
      yield* expectState(b, { state: "Open" })
    }))

  it.effect("failures spread over the window add up; a long idle gap empties it", () =>
    Effect.gen(function*() {
      const b = yield* CircuitBreaker.make({
        name: "timed",
        trip: CircuitBreaker.failureRate({ threshold: 0.6, minimumCalls: 5, window: "10 seconds" }),
        openFor: "10 seconds"
      })
      for (const pattern of ["SF", "FF"]) {
        yield* calls(b, pattern)
        yield* advance(2_000)
      }
      yield* expectState(b, { state: "Closed" }) // 4 calls
      yield* advance(60_000) // everything leaves
      yield* calls(b, "FFFS")
      yield* expectState(b, { state: "Closed" }) // 4 calls again, not 8
      yield* calls(b, "S")
      yield* expectState(b, { state: "Open" }) // F F F S S: 3 of 5 = 0.6
    }))
})

describe("CircuitBreaker rule: slowCalls opens when enough calls took longer than slowerThan, whatever their outcome", () => {
  const slowPolicy = (threshold = 0.5) =>
    CircuitBreaker.make({
      name: "slow",
      trip: CircuitBreaker.slowCalls({ slowerThan: "1 second", threshold, minimumCalls: 2, window: 2 }),
      openFor: "10 seconds"
    })

  it.effect("a slow success counts as slow", () =>
    Effect.gen(function*() {
      const b = yield* slowPolicy()
      expectSuccess(yield* slow(b, 1_001, "success"), "success") // the slow call itself succeeds
      yield* expectState(b, { state: "Closed" }) // minimumCalls 2
      yield* calls(b, "S")
      yield* expectState(b, { state: "Open", retryAfter: 10_000 })
      yield* expectStats(b, { successes: 2, failures: 0, ignored: 0, openings: 1 })
    }))

  it.effect("a call of exactly slowerThan is not slow", () =>
    Effect.gen(function*() {
      const b = yield* slowPolicy()
      yield* slow(b, 1_000, "success")
      yield* slow(b, 1_000, "success")
      yield* expectState(b, { state: "Closed" })
    }))

  it.effect("a slow failure counts as slow", () =>
    Effect.gen(function*() {
      const b = yield* slowPolicy(1)
      yield* slow(b, 1_500, "failure")
      yield* slow(b, 2_000, "success")
      yield* expectState(b, { state: "Open" })
    }))

  it.effect("fast failures are not slow calls", () =>
    Effect.gen(function*() {
      const b = yield* slowPolicy()
      yield* calls(b, "FFFFFF")
      yield* expectState(b, { state: "Closed" })
    }))

  it.effect("a slow call that is interrupted is Ignored, not slow", () =>
    Effect.gen(function*() {
      const b = yield* slowPolicy()
      const p = yield* start(b)
      yield* advance(5_000)
      yield* p.interrupt
      yield* calls(b, "S")
      yield* expectState(b, { state: "Closed" }) // one counted call
      yield* expectStats(b, { successes: 1, failures: 0, ignored: 1 })
    }))

  it.effect("over a time window, slow calls older than the window stop counting", () =>
    Effect.gen(function*() {
      const b = yield* CircuitBreaker.make({
        name: "slow",
        trip: CircuitBreaker.slowCalls({ slowerThan: "1 second", threshold: 0.5, minimumCalls: 2, window: "10 seconds" }),
        openFor: "10 seconds"
      })
      yield* slow(b, 2_000, "success") // recorded at 2 000 ms, in bucket 2
      yield* advance(10_000) // 12 000 ms: bucket 2 has left
      yield* calls(b, "S")
      yield* expectState(b, { state: "Closed" })
      yield* slow(b, 2_000, "success")
      yield* expectState(b, { state: "Open" })
    }))

  it.effect("a probe slower than slowerThan reopens the circuit instead of closing it", () =>
    Effect.gen(function*() {
      const b = yield* CircuitBreaker.make({
        name: "slow",
        trip: [CircuitBreaker.consecutive(1), CircuitBreaker.slowCalls({ slowerThan: "1 second", threshold: 1, minimumCalls: 5, window: 5 })],
        openFor: "10 seconds"
      })
      yield* openThenWait(b, 10_000)
      yield* slow(b, 1_001, "success")
      yield* expectState(b, { state: "Open", retryAfter: 10_000, consecutiveOpenings: 2 })
      yield* advance(10_000)
      yield* slow(b, 1_000, "success")
      yield* expectState(b, { state: "Closed" })
    }))
})

describe("CircuitBreaker rule: several trip policies combine, and any of them opens the circuit", () => {
  const combined = CircuitBreaker.make({
    name: "combined",
    trip: [CircuitBreaker.consecutive(3), CircuitBreaker.failureRate({ threshold: 0.6, minimumCalls: 6, window: 6 })],
    openFor: "10 seconds"
  })

  it.effect("the consecutive policy alone opens it (3 in a row, 3/6 below the rate)", () =>
    Effect.gen(function*() {
      const b = yield* combined
      yield* calls(b, "SSSFF")
      yield* expectState(b, { state: "Closed" })
      yield* calls(b, "F")
      yield* expectState(b, { state: "Open" })
    }))

  it.effect("the failure rate alone opens it (4/6, never 3 in a row)", () =>
    Effect.gen(function*() {
      const b = yield* combined
      yield* calls(b, "FFSFF")
      yield* expectState(b, { state: "Closed" })
      yield* calls(b, "S")
      yield* expectState(b, { state: "Open" })
    }))

  it.effect("neither policy met keeps it closed", () =>
    Effect.gen(function*() {
      const b = yield* combined
      yield* calls(b, "FFSFSSFFSF")
      yield* expectState(b, { state: "Closed" })
    }))

  it.effect("every policy starts afresh after the circuit closes", () =>
    Effect.gen(function*() {
      const b = yield* combined
      yield* calls(b, "FFSFFS") // opens by rate
      yield* advance(10_000)
      yield* calls(b, "S") // the probe closes it
      yield* calls(b, "FF")
      yield* expectState(b, { state: "Closed" })
      yield* calls(b, "F")
      yield* expectState(b, { state: "Open" })
    }))
})

// -----------------------------------------------------------------------------
// open, half-open
// -----------------------------------------------------------------------------

describe("CircuitBreaker rule: an Open circuit rejects at once with CircuitOpen{name, reason Open, state Open, retryAfter = remaining open time}", () => {
  it.effect("retryAfter is the open time still to run, to the millisecond", () =>
    Effect.gen(function*() {
      const b = yield* CircuitBreaker.make({ name: "payments", trip: CircuitBreaker.consecutive(1), openFor: "10 seconds" })
      yield* calls(b, "F")
      yield* advance(3_000)
      const p = yield* start(b)
      assert.isFalse(p.started())
      const error = expectRejected(p.exit(), { name: "payments", reason: "Open", retryAfter: 7_000 })
      assert.isTrue(Schema.is(CircuitOpen)(error))
      assert.strictEqual(error.message, `Circuit "payments" rejected the call: Open`)
      yield* advance(6_999)
      expectRejected((yield* calls(b, "S"))[0], { name: "payments", reason: "Open", retryAfter: 1 })
      yield* expectState(b, { state: "Open", retryAfter: 1 })
      yield* expectStats(b, { successes: 0, failures: 1, ignored: 0, rejected: { Open: 2 } })
    }))

  it.effect("the rejection can be caught by tag", () =>
    Effect.gen(function*() {
      const b = yield* oneStrike({ name: "payments" })
      yield* calls(b, "F")
      const out = yield* Effect.succeed("charged").pipe(
        CircuitBreaker.guard(b),
        Effect.catchTag("CircuitOpen", (e) => Effect.succeed(`down for ${Duration.toMillis(e.retryAfter)}`))
      )
      assert.strictEqual(out, "down for 10000")
    }))
})

describe("CircuitBreaker rule: openFor as a fixed duration keeps the circuit open exactly that long, for every opening", () => {
  for (const openFor of ["10 seconds", 10_000, Duration.seconds(10)] as const) {
    it.effect(`openFor ${typeof openFor === "object" ? "Duration" : JSON.stringify(openFor)}: rejected until 10 000 ms, a probe at 10 000 ms`, () =>
      Effect.gen(function*() {
        const b = yield* oneStrike({ openFor })
        yield* calls(b, "F")
        yield* advance(9_999)
        expectRejected((yield* calls(b, "S"))[0], { reason: "Open", retryAfter: 1 })
        yield* advance(1)
        // Read as Open (retryAfter 0) until a call makes it half-open.
        yield* expectState(b, { state: "Open", retryAfter: 0 })
        const probe = yield* start(b)
        assert.isTrue(probe.started())
        yield* expectState(b, { state: "HalfOpen", probing: 1 })
        yield* probe.fail()
        yield* expectState(b, { state: "Open", retryAfter: 10_000, consecutiveOpenings: 2 })
      }))
  }
})

describe("CircuitBreaker rule: openFor as a Schedule gives the n-th consecutive opening the schedule's n-th delay; the count resets once the circuit stayed closed as long as it was last open", () => {
  const backoff = CircuitBreaker.make({
    name: "backoff",
    trip: CircuitBreaker.consecutive(1),
    openFor: Schedule.exponential("1 second") // 1 s, 2 s, 4 s, 8 s, ...
  })

  /** Opens 3 times in a row (1 s, 2 s, 4 s), then closes at 7 000 ms. */
  const threeOpeningsThenClose = (b: Breaker) =>
    Effect.gen(function*() {
      yield* calls(b, "F")
      yield* expectState(b, { state: "Open", retryAfter: 1_000, consecutiveOpenings: 1 })
      yield* advance(1_000)
      yield* calls(b, "F") // failed probe
      yield* expectState(b, { state: "Open", retryAfter: 2_000, consecutiveOpenings: 2 })
      yield* advance(2_000)
      yield* calls(b, "F")
      yield* expectState(b, { state: "Open", retryAfter: 4_000, consecutiveOpenings: 3 })
      yield* advance(4_000)
      yield* calls(b, "S")
      yield* expectState(b, { state: "Closed" })
    })

  it.effect("1st, 2nd, 3rd openings stay open 1 s, 2 s, 4 s", () =>
    Effect.gen(function*() {
      const b = yield* backoff
      yield* threeOpeningsThenClose(b)
    }))

  it.effect("closed for less than the last open time (3 999 ms < 4 s): the next opening is the 4th (8 s)", () =>
    Effect.gen(function*() {
      const b = yield* backoff
      yield* threeOpeningsThenClose(b)
      yield* advance(3_999)
      yield* calls(b, "F")
      yield* expectState(b, { state: "Open", retryAfter: 8_000, consecutiveOpenings: 4 })
    }))

  it.effect("closed for as long as the last open time (4 s): the count resets and the next opening is the 1st (1 s)", () =>
    Effect.gen(function*() {
      const b = yield* backoff
      yield* threeOpeningsThenClose(b)
      yield* advance(4_000)
      yield* calls(b, "F")
      yield* expectState(b, { state: "Open", retryAfter: 1_000, consecutiveOpenings: 1 })
      yield* advance(1_000)
      yield* calls(b, "F")
      yield* expectState(b, { state: "Open", retryAfter: 2_000, consecutiveOpenings: 2 })
    }))

  it.effect("the count resets by the time of the trip, even when the tripping call was admitted before the reset time", () =>
    Effect.gen(function*() {
      const b = yield* backoff
      yield* calls(b, "F")
      yield* advance(1_000)
      yield* calls(b, "S") // closes at 1 000 ms after an open time of 1 s
      const slowFailure = yield* start(b) // admitted at 1 000 ms, before the reset time (2 000 ms)
      yield* advance(9_000)
      yield* slowFailure.fail() // trips at 10 000 ms: closed for 9 s
      yield* expectState(b, { state: "Open", retryAfter: 1_000, consecutiveOpenings: 1 })
    }))

  it.effect("a state read shows the count reset once the circuit has stayed closed long enough", () =>
    Effect.gen(function*() {
      const b = yield* backoff
      yield* threeOpeningsThenClose(b) // closed at 7 000 ms after 4 s open
      yield* expectState(b, { state: "Closed", consecutiveOpenings: 3 })
      yield* advance(3_999)
      yield* expectState(b, { state: "Closed", consecutiveOpenings: 3 })
      yield* advance(1)
      yield* expectState(b, { state: "Closed", consecutiveOpenings: 0 })
    }))

  it.effect("a capped schedule stays at its cap", () =>
    Effect.gen(function*() {
      const b = yield* CircuitBreaker.make({
        name: "capped",
        trip: CircuitBreaker.consecutive(1),
        openFor: Schedule.exponential("1 second").pipe(
          Schedule.modifyDelay(({ duration }) => Effect.succeed(Duration.min(duration, Duration.seconds(3))))
        )
      })
      const seen: Array<number> = []
      yield* calls(b, "F")
      for (let i = 0; i < 5; i++) {
        const info = yield* CircuitBreaker.state(b)
        seen.push(Duration.toMillis(info.retryAfter))
        yield* advance(Duration.toMillis(info.retryAfter))
        yield* calls(b, "F")
      }
      assert.deepStrictEqual(seen, [1_000, 2_000, 3_000, 3_000, 3_000])
    }))

  it.effect("once the schedule ends, its last delay is reused", () =>
    Effect.gen(function*() {
      const b = yield* CircuitBreaker.make({
        name: "ends",
        trip: CircuitBreaker.consecutive(1),
        openFor: Schedule.exponential("1 second").pipe(Schedule.upTo({ times: 2 }))
      })
      const seen: Array<number> = []
      yield* calls(b, "F")
      for (let i = 0; i < 4; i++) {
        const info = yield* CircuitBreaker.state(b)
        seen.push(Duration.toMillis(info.retryAfter))
        yield* advance(Duration.toMillis(info.retryAfter))
        yield* calls(b, "F")
      }
      assert.deepStrictEqual(seen, [1_000, 2_000, 2_000, 2_000])
    }))
})

describe("CircuitBreaker rule: HalfOpen admits at most `probes` concurrent probes; the others are rejected at once with ProbesBusy, not queued", () => {
  it.effect("with probes 2, two probes run and a third call is rejected at once with retryAfter 0", () =>
    Effect.gen(function*() {
      const b = yield* oneStrike({ name: "probing", halfOpen: { probes: 2, successesToClose: 2 } })
      yield* openThenWait(b, 10_000)
      const p1 = yield* start(b)
      const p2 = yield* start(b)
      assert.isTrue(p1.started() && p2.started())
      yield* expectState(b, { state: "HalfOpen", probing: 2 })
      const third = yield* start(b) // no clock advance: it must have ended already
      assert.isFalse(third.started())
      expectRejected(third.exit(), { name: "probing", reason: "ProbesBusy", retryAfter: 0 })
      yield* p1.succeed()
      yield* expectState(b, { state: "HalfOpen", probing: 1 })
      const p3 = yield* start(b) // the freed slot is taken at once
      assert.isTrue(p3.started())
      expectRejected((yield* calls(b, "S"))[0], { reason: "ProbesBusy", retryAfter: 0 })
      yield* p3.succeed()
      yield* expectState(b, { state: "Closed" })
      expectSuccess(yield* p2.succeed("p2"), "p2") // a probe that outlives the decision still ends normally
      yield* expectStats(b, { successes: 3, failures: 1, ignored: 0, rejected: { ProbesBusy: 2 } })
    }))

  it.effect("with probes 1 (the default), a second concurrent call is ProbesBusy", () =>
    Effect.gen(function*() {
      const b = yield* oneStrike()
      yield* openThenWait(b, 10_000)
      const p = yield* start(b)
      expectRejected((yield* calls(b, "S"))[0], { reason: "ProbesBusy", retryAfter: 0 })
      yield* p.succeed()
      yield* expectState(b, { state: "Closed" })
    }))
})

describe("CircuitBreaker rule: successesToClose successful probes close the circuit; one failed probe reopens it", () => {
  it.effect("successesToClose 3: HalfOpen after 1 and 2 successes, Closed after 3", () =>
    Effect.gen(function*() {
      const b = yield* oneStrike({ halfOpen: { successesToClose: 3 } })
      yield* openThenWait(b, 10_000)
      yield* calls(b, "S")
      yield* expectState(b, { state: "HalfOpen", probing: 0 })
      yield* calls(b, "S")
      yield* expectState(b, { state: "HalfOpen", probing: 0 })
      yield* calls(b, "S")
      yield* expectState(b, { state: "Closed", probing: 0 })
    }))

  it.effect("a failed probe reopens, even after successful ones, and the successes do not carry over", () =>
    Effect.gen(function*() {
      const b = yield* oneStrike({ halfOpen: { probes: 2, successesToClose: 2 } })
      yield* openThenWait(b, 10_000)
      const p1 = yield* start(b)
      const p2 = yield* start(b)
      yield* p1.succeed()
      yield* p2.fail()
      yield* expectState(b, { state: "Open", retryAfter: 10_000, consecutiveOpenings: 2, probing: 0 })
      yield* advance(10_000)
      yield* calls(b, "S")
      yield* expectState(b, { state: "HalfOpen" }) // needs 2 again
      yield* calls(b, "S")
      yield* expectState(b, { state: "Closed" })
    }))

  it.effect("a probe that dies reopens the circuit", () =>
    Effect.gen(function*() {
      const b = yield* oneStrike()
      yield* openThenWait(b, 10_000)
      yield* calls(b, "D")
      yield* expectState(b, { state: "Open", retryAfter: 10_000 })
    }))

  it.effect("after a failed probe the other running probe's outcome changes nothing", () =>
    Effect.gen(function*() {
      const b = yield* oneStrike({ halfOpen: { probes: 2, successesToClose: 1 } })
      yield* openThenWait(b, 10_000)
      const p1 = yield* start(b)
      const p2 = yield* start(b)
      yield* p1.fail()
      yield* advance(1_000)
      expectSuccess(yield* p2.succeed("p2"), "p2")
      yield* expectState(b, { state: "Open", retryAfter: 9_000, consecutiveOpenings: 2 })
    }))
})

describe("CircuitBreaker rule: an interrupted or Ignored probe frees its slot without deciding anything", () => {
  it.effect("an interrupted probe frees its slot; the circuit stays HalfOpen and the next call probes", () =>
    Effect.gen(function*() {
      const b = yield* oneStrike({ halfOpen: { successesToClose: 2 } })
      yield* openThenWait(b, 10_000)
      yield* calls(b, "S") // one success of two
      const p = yield* start(b)
      expectRejected((yield* calls(b, "S"))[0], { reason: "ProbesBusy", retryAfter: 0 })
      const exit = yield* p.interrupt
      assert.isTrue(Exit.hasInterrupts(exit))
      yield* expectState(b, { state: "HalfOpen", probing: 0 })
      yield* calls(b, "S") // the second success: the interruption did not reset the count
      yield* expectState(b, { state: "Closed" })
      yield* expectStats(b, { successes: 2, failures: 1, ignored: 1, rejected: { ProbesBusy: 1 } })
    }))

  it.effect("a probe classified Ignored by a custom classify frees its slot and counts neither way", () =>
    Effect.gen(function*() {
      const classify = (exit: Exit.Exit<unknown, unknown>): CircuitBreaker.Outcome => {
        if (Exit.isSuccess(exit)) return "Success"
        const error = Cause.findErrorOption(exit.cause)
        return error._tag === "Some" && (error.value as Boom).label === "cancelled" ? "Ignored" : "Failure"
      }
      const b = yield* oneStrike({ classify, halfOpen: { successesToClose: 2 } })
      yield* openThenWait(b, 10_000)
      yield* calls(b, "S")
      const p = yield* start(b)
      expectBoom(yield* p.fail("cancelled"), "cancelled") // the caller still gets its error
      yield* expectState(b, { state: "HalfOpen", probing: 0 })
      yield* calls(b, "S")
      yield* expectState(b, { state: "Closed" })
      yield* expectStats(b, { successes: 2, failures: 1, ignored: 1 })
    }))

  it.effect("a self-interrupting probe (Effect.interrupt) frees its slot", () =>
    Effect.gen(function*() {
      const b = yield* oneStrike()
      yield* openThenWait(b, 10_000)
      yield* calls(b, "II")
      yield* expectState(b, { state: "HalfOpen", probing: 0 })
      yield* calls(b, "S")
      yield* expectState(b, { state: "Closed" })
    }))
})

describe("CircuitBreaker rule: a probe that outlives probeTimeout is lost: it counts as a failure and reopens the circuit, and its late outcome changes nothing", () => {
  const withTimeout = oneStrike({ halfOpen: { probeTimeout: "5 seconds" } }) // open 10 s

  it.effect("the next admission after probeTimeout reopens the circuit and is rejected with the full open time", () =>
    Effect.gen(function*() {
      const b = yield* withTimeout
      yield* openThenWait(b, 10_000)
      const hung = yield* start(b)
      yield* advance(4_999)
      expectRejected((yield* calls(b, "S"))[0], { reason: "ProbesBusy", retryAfter: 0 })
      yield* advance(2) // the probe has run 5 001 ms
      const p = yield* start(b)
      assert.isFalse(p.started())
      expectRejected(p.exit(), { reason: "Open", retryAfter: 10_000 })
      yield* expectState(b, { state: "Open", retryAfter: 10_000, consecutiveOpenings: 2, probing: 0 })
      // the late probe succeeds: still open, same open time
      expectSuccess(yield* hung.succeed("late"), "late")
      yield* expectState(b, { state: "Open", retryAfter: 10_000, consecutiveOpenings: 2 })
      yield* expectStats(b, { successes: 1, failures: 1, ignored: 0, rejected: { Open: 1, ProbesBusy: 1 }, openings: 2, transitions: 3 })
    }))

  it.effect("a state read after probeTimeout reopens the circuit", () =>
    Effect.gen(function*() {
      const b = yield* withTimeout
      yield* openThenWait(b, 10_000)
      yield* start(b)
      yield* advance(5_001)
      yield* expectState(b, { state: "Open", retryAfter: 10_000, consecutiveOpenings: 2, probing: 0 })
      yield* advance(2_000)
      yield* expectState(b, { state: "Open", retryAfter: 8_000 })
      const s = yield* CircuitBreaker.stats(b)
      assert.strictEqual(s.state, "Open")
    }))

  it.effect("a stats read after probeTimeout reopens the circuit", () =>
    Effect.gen(function*() {
      const b = yield* withTimeout
      yield* openThenWait(b, 10_000)
      yield* start(b)
      yield* advance(5_001)
      const s = yield* CircuitBreaker.stats(b)
      assert.strictEqual(s.state, "Open")
      assert.strictEqual(s.openings, 2)
    }))

  it.effect("the late probe's success does not count in the next half-open period", () =>
    Effect.gen(function*() {
      const b = yield* withTimeout
      yield* openThenWait(b, 10_000)
      const hung = yield* start(b)
      yield* advance(5_001)
      yield* expectState(b, { state: "Open", retryAfter: 10_000 })
      yield* advance(10_000)
      const next = yield* start(b)
      yield* expectState(b, { state: "HalfOpen", probing: 1 })
      yield* hung.succeed() // successesToClose is 1: would close it if it counted
      yield* expectState(b, { state: "HalfOpen", probing: 1 })
      yield* next.succeed()
      yield* expectState(b, { state: "Closed" })
    }))

  it.effect("a probe that reports after probeTimeout before anyone looked reopens the circuit, even with a success", () =>
    Effect.gen(function*() {
      const b = yield* withTimeout
      yield* openThenWait(b, 10_000)
      const late = yield* start(b)
      yield* advance(6_000)
      expectSuccess(yield* late.succeed("late"), "late")
      yield* expectState(b, { state: "Open", retryAfter: 10_000, consecutiveOpenings: 2 })
    }))

  it.effect("a probe that reports just before probeTimeout decides normally", () =>
    Effect.gen(function*() {
      const b = yield* withTimeout
      yield* openThenWait(b, 10_000)
      const p = yield* start(b)
      yield* advance(4_999)
      yield* p.succeed()
      yield* expectState(b, { state: "Closed" })
    }))

  it.effect("a probe that ends after exactly probeTimeout has not outlived it and decides normally", () =>
    Effect.gen(function*() {
      const b = yield* withTimeout
      yield* openThenWait(b, 10_000)
      const p = yield* start(b)
      yield* advance(5_000)
      yield* expectState(b, { state: "HalfOpen", probing: 1 }) // read at exactly 5 000 ms: not lost
      yield* p.succeed()
      yield* expectState(b, { state: "Closed" })
    }))

  it.effect("probeTimeout 0: a probe that ends without the clock moving closes the circuit; one that takes any time is lost", () =>
    Effect.gen(function*() {
      const b = yield* oneStrike({ halfOpen: { probeTimeout: 0 } })
      yield* openThenWait(b, 10_000)
      yield* calls(b, "S")
      yield* expectState(b, { state: "Closed" })
      yield* openThenWait(b, 10_000)
      expectSuccess(yield* slow(b, 1, "success"), "success")
      yield* expectState(b, { state: "Open", retryAfter: 10_000 })
    }))

  it.effect("the default probeTimeout is 1 minute", () =>
    Effect.gen(function*() {
      const b = yield* oneStrike()
      yield* openThenWait(b, 10_000)
      yield* start(b)
      yield* advance(59_999)
      yield* expectState(b, { state: "HalfOpen", probing: 1 })
      yield* advance(2)
      yield* expectState(b, { state: "Open", retryAfter: 10_000 })
    }))
})

describe("CircuitBreaker rule: calls admitted before a transition finish normally and their outcomes change nothing (fencing)", () => {
  it.effect("calls running when the circuit opens return their own result; their outcomes do not reopen or extend it", () =>
    Effect.gen(function*() {
      const b = yield* CircuitBreaker.make({ name: "cb", trip: CircuitBreaker.consecutive(2), openFor: "10 seconds" })
      const a = yield* start(b)
      const c = yield* start(b)
      yield* calls(b, "FF")
      yield* expectState(b, { state: "Open", retryAfter: 10_000, consecutiveOpenings: 1 })
      yield* advance(1_000)
      expectSuccess(yield* a.succeed("a"), "a")
      expectBoom(yield* c.fail("c"), "c")
      yield* expectState(b, { state: "Open", retryAfter: 9_000, consecutiveOpenings: 1 })
      yield* expectStats(b, { successes: 1, failures: 3, ignored: 0, openings: 1, transitions: 1 })
    }))

  it.effect("their outcomes do not count as probes in the next half-open period", () =>
    Effect.gen(function*() {
      const b = yield* oneStrike()
      const a = yield* start(b)
      const c = yield* start(b)
      yield* openThenWait(b, 10_000)
      const probe = yield* start(b)
      yield* a.succeed()
      yield* expectState(b, { state: "HalfOpen", probing: 1 })
      yield* c.fail()
      yield* expectState(b, { state: "HalfOpen", probing: 1 })
      yield* probe.succeed()
      yield* expectState(b, { state: "Closed" })
    }))

  it.effect("their outcomes do not count in the next closed period", () =>
    Effect.gen(function*() {
      const b = yield* CircuitBreaker.make({ name: "cb", trip: CircuitBreaker.consecutive(2), openFor: "10 seconds" })
      const a = yield* start(b)
      const c = yield* start(b)
      yield* calls(b, "FF")
      yield* advance(10_000)
      yield* calls(b, "S") // closes
      yield* a.fail()
      yield* c.fail()
      yield* expectState(b, { state: "Closed" }) // two stale failures did not trip it
      yield* calls(b, "F")
      yield* expectState(b, { state: "Closed" })
      yield* calls(b, "F")
      yield* expectState(b, { state: "Open" })
    }))

  it.effect("their outcomes do not count after a reset", () =>
    Effect.gen(function*() {
      const b = yield* oneStrike()
      const a = yield* start(b)
      yield* CircuitBreaker.reset(b)
      yield* a.fail()
      yield* expectState(b, { state: "Closed" })
    }))
})

// -----------------------------------------------------------------------------
// classify
// -----------------------------------------------------------------------------

describe("CircuitBreaker rule: by default a typed failure and a defect are Failure, success is Success, interruption is Ignored", () => {
  it.effect("each kind of exit is counted as its outcome", () =>
    Effect.gen(function*() {
      const b = yield* CircuitBreaker.make({ name: "cb", trip: CircuitBreaker.consecutive(100), openFor: "10 seconds" })
      yield* calls(b, "S")
      yield* expectStats(b, { successes: 1, failures: 0, ignored: 0 })
      yield* calls(b, "F")
      yield* expectStats(b, { successes: 1, failures: 1, ignored: 0 })
      yield* calls(b, "D")
      yield* expectStats(b, { successes: 1, failures: 2, ignored: 0 })
      yield* calls(b, "I") // interrupts itself
      yield* expectStats(b, { successes: 1, failures: 2, ignored: 1 })
      yield* (yield* start(b)).interrupt // interrupted from outside
      yield* expectStats(b, { successes: 1, failures: 2, ignored: 2 })
    }))

  it.effect("a failure together with an interruption is a Failure", () =>
    Effect.gen(function*() {
      const b = yield* oneStrike()
      yield* Effect.exit(
        Effect.failCause(Cause.combine(Cause.fail(new Boom({ label: "x" })), Cause.interrupt())).pipe(CircuitBreaker.guard(b))
      )
      yield* expectStats(b, { successes: 0, failures: 1, ignored: 0 })
      yield* expectState(b, { state: "Open" })
    }))

  it.effect("the caller gets the call's own exit unchanged", () =>
    Effect.gen(function*() {
      const b = yield* CircuitBreaker.make({ name: "cb", trip: CircuitBreaker.consecutive(100), openFor: "10 seconds" })
      const [s, f, d, i] = yield* calls(b, "SFDI")
      expectSuccess(s, "success")
      expectBoom(f, "failure")
      assert.isTrue(Exit.isFailure(d) && Cause.isDieReason(d.cause.reasons[0]))
      assert.isTrue(Exit.isFailure(i) && i.cause.reasons.every(Cause.isInterruptReason))
    }))
})

describe("CircuitBreaker rule: a custom classify decides what each exit means", () => {
  const classify = (exit: Exit.Exit<unknown, unknown>): CircuitBreaker.Outcome => {
    if (Exit.isSuccess(exit)) return exit.value === "degraded" ? "Failure" : "Success"
    const error = Cause.findErrorOption(exit.cause)
    if (error._tag === "Some") {
      const label = (error.value as Boom).label
      return label === "not-found" ? "Success" : label === "cancelled" ? "Ignored" : "Failure"
    }
    return "Ignored" // defects and interruptions
  }

  it.effect("errors mapped to Success and Ignored never trip; a success mapped to Failure does", () =>
    Effect.gen(function*() {
      const b = yield* CircuitBreaker.make({ name: "custom", trip: CircuitBreaker.consecutive(2), openFor: "10 seconds", classify })
      for (const label of ["not-found", "cancelled", "not-found", "cancelled"]) {
        expectBoom(yield* Effect.exit(Effect.fail(new Boom({ label })).pipe(CircuitBreaker.guard(b))), label)
      }
      yield* calls(b, "DDD")
      yield* expectState(b, { state: "Closed" })
      yield* expectStats(b, { successes: 2, failures: 0, ignored: 5 })
      yield* Effect.exit(Effect.succeed("degraded").pipe(CircuitBreaker.guard(b)))
      yield* expectState(b, { state: "Closed" })
      const exit = yield* Effect.exit(Effect.succeed("degraded").pipe(CircuitBreaker.guard(b)))
      expectSuccess(exit, "degraded") // the caller still gets its value
      yield* expectState(b, { state: "Open" })
      yield* expectStats(b, { successes: 2, failures: 2, ignored: 5 })
    }))
})

// -----------------------------------------------------------------------------
// manual control
// -----------------------------------------------------------------------------

describe("CircuitBreaker rule: isolate rejects every call (reason Isolated, retryAfter infinite) until reset", () => {
  it.effect("from Closed: rejected with Isolated for as long as it takes", () =>
    Effect.gen(function*() {
      const b = yield* oneStrike({ name: "maint" })
      yield* CircuitBreaker.isolate(b)
      yield* expectState(b, { state: "Isolated", retryAfter: Infinity })
      const p = yield* start(b)
      assert.isFalse(p.started())
      const error = expectRejected(p.exit(), { name: "maint", reason: "Isolated", retryAfter: Infinity })
      assert.isTrue(Duration.equals(error.retryAfter, Duration.infinity))
      yield* advance(3_600_000)
      expectRejected((yield* calls(b, "S"))[0], { reason: "Isolated", retryAfter: Infinity })
      yield* expectStats(b, { successes: 0, failures: 0, ignored: 0, rejected: { Isolated: 2 } })
      yield* CircuitBreaker.reset(b)
      yield* expectState(b, { state: "Closed" })
      expectSuccess((yield* calls(b, "S"))[0], "success")
    }))

  it.effect("from Open and from HalfOpen; a probe running when isolated changes nothing", () =>
    Effect.gen(function*() {
      const b = yield* oneStrike()
      yield* calls(b, "F")
      yield* CircuitBreaker.isolate(b)
      yield* advance(10_000)
      expectRejected((yield* calls(b, "S"))[0], { reason: "Isolated", retryAfter: Infinity })
      yield* CircuitBreaker.reset(b)
      yield* calls(b, "F")
      yield* advance(10_000)
      const probe = yield* start(b)
      yield* CircuitBreaker.isolate(b)
      yield* expectState(b, { state: "Isolated", probing: 0 })
      yield* probe.fail()
      yield* expectState(b, { state: "Isolated" })
      yield* probe.succeed().pipe(Effect.asVoid)
      yield* expectState(b, { state: "Isolated" })
    }))

  it.effect("reset closes the circuit and clears the trip counts and the backoff", () =>
    Effect.gen(function*() {
      const b = yield* CircuitBreaker.make({
        name: "cb",
        trip: CircuitBreaker.consecutive(2),
        openFor: Schedule.exponential("1 second")
      })
      yield* calls(b, "FF")
      yield* advance(1_000)
      yield* calls(b, "F") // 2nd opening
      yield* expectState(b, { state: "Open", retryAfter: 2_000, consecutiveOpenings: 2 })
      yield* CircuitBreaker.reset(b)
      yield* expectState(b, { state: "Closed", consecutiveOpenings: 0 })
      yield* calls(b, "F")
      yield* CircuitBreaker.reset(b) // clears the run of one failure
      yield* calls(b, "F")
      yield* expectState(b, { state: "Closed" })
      yield* calls(b, "F")
      yield* expectState(b, { state: "Open", retryAfter: 1_000, consecutiveOpenings: 1 }) // backoff from the start
    }))
})

describe("CircuitBreaker rule: disable lets every call through and records nothing until reset", () => {
  it.effect("failures pass through and neither trip the circuit nor count", () =>
    Effect.gen(function*() {
      const b = yield* oneStrike()
      yield* CircuitBreaker.disable(b)
      yield* expectState(b, { state: "Disabled", retryAfter: 0 })
      const exits = yield* calls(b, "FFFFSDI")
      expectBoom(exits[0], "failure")
      expectSuccess(exits[4], "success")
      yield* expectState(b, { state: "Disabled" })
      yield* expectStats(b, { successes: 0, failures: 0, ignored: 0, transitions: 1, openings: 0 })
      yield* CircuitBreaker.reset(b)
      yield* calls(b, "F")
      yield* expectState(b, { state: "Open" })
    }))

  it.effect("an Open circuit disabled lets calls through at once", () =>
    Effect.gen(function*() {
      const b = yield* oneStrike()
      yield* calls(b, "F")
      yield* CircuitBreaker.disable(b)
      expectSuccess((yield* calls(b, "S"))[0], "success")
      yield* expectStats(b, { successes: 0, failures: 1, ignored: 0, rejected: {} })
    }))

  it.effect("a call admitted while disabled records nothing, even when it ends after reset", () =>
    Effect.gen(function*() {
      const b = yield* oneStrike()
      yield* CircuitBreaker.disable(b)
      const p = yield* start(b)
      assert.isTrue(p.started())
      yield* CircuitBreaker.reset(b)
      expectBoom(yield* p.fail("passed"), "passed")
      yield* expectState(b, { state: "Closed" })
      yield* expectStats(b, { successes: 0, failures: 0, ignored: 0 })
    }))

  it.effect("reset after disable starts from fresh counts", () =>
    Effect.gen(function*() {
      const b = yield* CircuitBreaker.make({ name: "cb", trip: CircuitBreaker.consecutive(2), openFor: "10 seconds" })
      yield* calls(b, "F")
      yield* CircuitBreaker.disable(b)
      yield* calls(b, "FFF")
      yield* CircuitBreaker.reset(b)
      yield* calls(b, "F")
      yield* expectState(b, { state: "Closed" })
      yield* calls(b, "F")
      yield* expectState(b, { state: "Open" })
    }))
})

// -----------------------------------------------------------------------------
// observability
// -----------------------------------------------------------------------------

const transition = (from: CircuitBreaker.State, to: CircuitBreaker.State, at: number, name = "cb", key?: string): CircuitBreaker.Transition => ({
  _tag: "Transition",
  name,
  key,
  from,
  to,
  at
})

describe("CircuitBreaker rule: `transitions` streams every state change (from, to, clock time) from the moment it is consumed", () => {
  it.effect("open, half-open, closed, isolated, disabled, closed: in order, with their times", () =>
    Effect.gen(function*() {
      const b = yield* oneStrike({ openFor: "1 second" })
      const collector = yield* Effect.forkChild(Stream.runCollect(Stream.take(CircuitBreaker.transitions(b), 6)))
      yield* Effect.yieldNow
      yield* calls(b, "SF")
      yield* advance(1_000)
      yield* calls(b, "S")
      yield* CircuitBreaker.isolate(b)
      yield* advance(500)
      yield* CircuitBreaker.disable(b)
      yield* CircuitBreaker.reset(b)
      assert.deepStrictEqual(yield* Fiber.join(collector), [
        transition("Closed", "Open", 0),
        transition("Open", "HalfOpen", 1_000),
        transition("HalfOpen", "Closed", 1_000),
        transition("Closed", "Isolated", 1_000),
        transition("Isolated", "Disabled", 1_500),
        transition("Disabled", "Closed", 1_500)
      ])
      yield* expectStats(b, { successes: 2, failures: 1, ignored: 0, transitions: 6, openings: 1 })
    }))

  it.effect("a failed probe and a lost probe each emit HalfOpen -> Open; a reset of a closed circuit emits nothing", () =>
    Effect.gen(function*() {
      const b = yield* oneStrike({ halfOpen: { probeTimeout: "5 seconds" } })
      const collector = yield* Effect.forkChild(Stream.runCollect(Stream.take(CircuitBreaker.transitions(b), 5)))
      yield* Effect.yieldNow
      yield* CircuitBreaker.reset(b) // Closed -> Closed: no transition
      yield* openThenWait(b, 10_000)
      yield* calls(b, "F")
      yield* advance(10_000)
      yield* start(b)
      yield* advance(7_000)
      yield* CircuitBreaker.state(b) // detects the lost probe
      assert.deepStrictEqual(yield* Fiber.join(collector), [
        transition("Closed", "Open", 0),
        transition("Open", "HalfOpen", 10_000),
        transition("HalfOpen", "Open", 10_000),
        transition("Open", "HalfOpen", 20_000),
        transition("HalfOpen", "Open", 27_000)
      ])
    }))

  it.effect("a consumer that starts later sees only later transitions", () =>
    Effect.gen(function*() {
      const b = yield* oneStrike({ openFor: "1 second" })
      yield* calls(b, "F")
      const collector = yield* Effect.forkChild(Stream.runCollect(Stream.take(CircuitBreaker.transitions(b), 1)))
      yield* Effect.yieldNow
      yield* advance(1_000)
      yield* calls(b, "S")
      assert.deepStrictEqual(yield* Fiber.join(collector), [transition("Open", "HalfOpen", 1_000)])
    }))
})

describe("CircuitBreaker rule: `events` streams transitions, recorded outcomes and rejections", () => {
  it.effect("every event, in the order it happened", () =>
    Effect.gen(function*() {
      const b = yield* oneStrike({ name: "ev", openFor: "1 second" })
      const collector = yield* Effect.forkChild(Stream.runCollect(Stream.take(CircuitBreaker.events(b), 12)))
      yield* Effect.yieldNow
      yield* calls(b, "SIF")
      yield* calls(b, "S")
      yield* advance(1_000)
      const probe = yield* start(b)
      yield* calls(b, "S")
      yield* probe.succeed()
      yield* CircuitBreaker.isolate(b)
      yield* calls(b, "S")
      yield* CircuitBreaker.reset(b)
      const recorded = (outcome: CircuitBreaker.Outcome): CircuitBreaker.Event => ({ _tag: "Recorded", name: "ev", outcome })
      const rejected = (reason: Reason): CircuitBreaker.Event => ({ _tag: "Rejected", name: "ev", reason })
      assert.deepStrictEqual(yield* Fiber.join(collector), [
        recorded("Success"),
        recorded("Ignored"),
        transition("Closed", "Open", 0, "ev"), // reported while the failure is recorded, before its Recorded event
        recorded("Failure"),
        rejected("Open"),
        transition("Open", "HalfOpen", 1_000, "ev"),
        rejected("ProbesBusy"),
        transition("HalfOpen", "Closed", 1_000, "ev"),
        recorded("Success"),
        transition("Closed", "Isolated", 1_000, "ev"),
        rejected("Isolated"),
        transition("Isolated", "Closed", 1_000, "ev")
      ])
    }))

  it.effect("two consumers each get every event", () =>
    Effect.gen(function*() {
      const b = yield* oneStrike({ name: "ev" })
      const one = yield* Effect.forkChild(Stream.runCollect(Stream.take(CircuitBreaker.events(b), 2)))
      const two = yield* Effect.forkChild(Stream.runCollect(Stream.take(CircuitBreaker.events(b), 2)))
      yield* Effect.yieldNow
      yield* calls(b, "SS")
      const expected: Array<CircuitBreaker.Event> = [
        { _tag: "Recorded", name: "ev", outcome: "Success" },
        { _tag: "Recorded", name: "ev", outcome: "Success" }
      ]
      assert.deepStrictEqual(yield* Fiber.join(one), expected)
      assert.deepStrictEqual(yield* Fiber.join(two), expected)
    }))

  it.effect("the stream ends when the breaker's scope closes", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const b = yield* oneStrike({ name: "ev" }).pipe(Scope.provide(scope))
      const collector = yield* Effect.forkChild(Stream.runCollect(CircuitBreaker.events(b)))
      yield* Effect.yieldNow
      yield* calls(b, "F")
      yield* Scope.close(scope, Exit.void)
      const events = yield* Fiber.join(collector)
      assert.deepStrictEqual(events.map((e) => e._tag), ["Transition", "Recorded"])
    }))
})

describe("CircuitBreaker rule: `events` is free while nobody listens and never slows the breaker down", () => {
  it.effect("a consumer that falls behind loses the oldest events beyond bufferSize", () =>
    Effect.gen(function*() {
      const b = yield* CircuitBreaker.make({ name: "ev", trip: CircuitBreaker.consecutive(100), openFor: "1 second" })
      const collector = yield* Effect.forkChild(Stream.runCollect(Stream.take(CircuitBreaker.events(b, { bufferSize: 2 }), 2)))
      yield* Effect.yieldNow
      yield* calls(b, "SSSFI") // the collector does not run in between
      assert.deepStrictEqual(yield* Fiber.join(collector), [
        { _tag: "Recorded", name: "ev", outcome: "Failure" },
        { _tag: "Recorded", name: "ev", outcome: "Ignored" }
      ])
    }))

  it.effect("a stream consumed after the breaker's scope closed ends at once, empty", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const b = yield* oneStrike({ name: "ev" }).pipe(Scope.provide(scope))
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(yield* Stream.runCollect(CircuitBreaker.events(b)), [])
    }))
})

describe("CircuitBreaker rule: `stats` gives exact cumulative counters", () => {
  it.effect("a fresh breaker", () =>
    Effect.gen(function*() {
      const b = yield* oneStrike({ name: "fresh" })
      assert.deepStrictEqual(yield* CircuitBreaker.stats(b), {
        name: "fresh",
        state: "Closed",
        successes: 0,
        failures: 0,
        ignored: 0,
        rejected: { Open: 0, ProbesBusy: 0, Isolated: 0, StoreUnavailable: 0 },
        transitions: 0,
        openings: 0,
        probeRenewals: 0,
        circuits: 1,
        reclaimed: 0,
        storeErrors: { Unavailable: 0, Timeout: 0, Rejected: 0 },
        decidedWithoutStore: 0
      })
    }))

  it.effect("after a mixed history; outcomes of fenced calls are still counted by kind", () =>
    Effect.gen(function*() {
      const b = yield* CircuitBreaker.make({
        name: "mixed",
        trip: CircuitBreaker.consecutive(2),
        openFor: "1 second",
        halfOpen: { probes: 2 }
      })
      const stale = yield* start(b)
      yield* calls(b, "SIDF") // opens
      yield* calls(b, "SS") // rejected Open
      yield* stale.succeed() // fenced, still a success
      yield* advance(1_000)
      const p1 = yield* start(b)
      const p2 = yield* start(b)
      yield* calls(b, "S") // ProbesBusy
      yield* p1.interrupt
      yield* p2.fail() // reopens
      yield* CircuitBreaker.isolate(b)
      yield* calls(b, "S") // Isolated
      assert.deepStrictEqual(yield* CircuitBreaker.stats(b), {
        name: "mixed",
        state: "Isolated",
        successes: 2,
        failures: 3,
        ignored: 2,
        rejected: { Open: 2, ProbesBusy: 1, Isolated: 1, StoreUnavailable: 0 },
        transitions: 4, // Closed->Open, Open->HalfOpen, HalfOpen->Open, Open->Isolated
        openings: 2,
        probeRenewals: 0,
        circuits: 1,
        reclaimed: 0,
        storeErrors: { Unavailable: 0, Timeout: 0, Rejected: 0 },
        decidedWithoutStore: 0
      })
    }))

  it.effect("the snapshot is a copy: later calls do not change it", () =>
    Effect.gen(function*() {
      const b = yield* oneStrike()
      yield* calls(b, "F")
      const before = yield* CircuitBreaker.stats(b)
      yield* calls(b, "SS")
      assert.deepStrictEqual(before.rejected, { Open: 0, ProbesBusy: 0, Isolated: 0, StoreUnavailable: 0 })
      assert.strictEqual((yield* CircuitBreaker.stats(b)).rejected.Open, 2)
    }))
})

describe("CircuitBreaker rule: metrics (state gauge, outcome counters, rejections by reason) labelled by name (+ reason) only, removed when the scope closes", () => {
  const read = (registry: Metric.MetricRegistry) => Metric.snapshot.pipe(Effect.provideService(Metric.MetricRegistry, registry))
  const find = (snapshot: ReadonlyArray<Metric.Metric.Snapshot>, id: string, attributes: Record<string, string>) => {
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
  const ours = (s: ReadonlyArray<Metric.Metric.Snapshot>) => s.filter((m) => m.id.startsWith("bulwark.circuitbreaker."))

  it.effect("state gauge 0 Closed, 2 Open, 1 HalfOpen, 3 Isolated, 4 Disabled; counters follow the calls", () =>
    Effect.gen(function*() {
      const registry: Metric.MetricRegistry = new Map()
      const scope = yield* Scope.make()
      const b = yield* oneStrike({ name: "m", openFor: "1 second" }).pipe(
        Scope.provide(scope),
        Effect.provideService(Metric.MetricRegistry, registry)
      )
      const stateOf = Effect.map(read(registry), (s) => gauge(s, "bulwark.circuitbreaker.state", "m"))
      assert.strictEqual(yield* stateOf, 0)
      yield* calls(b, "SIF")
      assert.strictEqual(yield* stateOf, 2)
      yield* calls(b, "S")
      yield* advance(1_000)
      const probe = yield* start(b)
      assert.strictEqual(yield* stateOf, 1)
      yield* calls(b, "S") // ProbesBusy
      yield* probe.interrupt
      yield* CircuitBreaker.isolate(b)
      assert.strictEqual(yield* stateOf, 3)
      yield* calls(b, "S")
      yield* CircuitBreaker.disable(b)
      assert.strictEqual(yield* stateOf, 4)
      yield* CircuitBreaker.reset(b)
      assert.strictEqual(yield* stateOf, 0)

      const s = yield* read(registry)
      assert.strictEqual(counter(s, "bulwark.circuitbreaker.successes", { name: "m" }), 1)
      assert.strictEqual(counter(s, "bulwark.circuitbreaker.failures", { name: "m" }), 1)
      assert.strictEqual(counter(s, "bulwark.circuitbreaker.ignored", { name: "m" }), 2)
      assert.strictEqual(counter(s, "bulwark.circuitbreaker.rejected", { name: "m", reason: "Open" }), 1)
      assert.strictEqual(counter(s, "bulwark.circuitbreaker.rejected", { name: "m", reason: "ProbesBusy" }), 1)
      assert.strictEqual(counter(s, "bulwark.circuitbreaker.rejected", { name: "m", reason: "Isolated" }), 1)
      assert.strictEqual(counter(s, "bulwark.circuitbreaker.transitions", { name: "m" }), 5)
      assert.strictEqual(counter(s, "bulwark.circuitbreaker.openings", { name: "m" }), 1)
      for (const m of ours(s)) {
        const keys = Object.keys(m.attributes ?? {}).sort()
        assert.deepStrictEqual(keys, m.id === "bulwark.circuitbreaker.rejected" ? ["name", "reason"] : ["name"], m.id)
      }
      assert.deepStrictEqual(ours(s).map((m) => m.id).sort(), [
        "bulwark.circuitbreaker.failures",
        "bulwark.circuitbreaker.ignored",
        "bulwark.circuitbreaker.openings",
        "bulwark.circuitbreaker.rejected",
        "bulwark.circuitbreaker.rejected",
        "bulwark.circuitbreaker.rejected",
        "bulwark.circuitbreaker.state",
        "bulwark.circuitbreaker.successes",
        "bulwark.circuitbreaker.transitions"
      ])

      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(ours(yield* read(registry)), [], "removed after the scope closes")
    }))

  it.effect("two breakers have separate series; closing one removes only its own", () =>
    Effect.gen(function*() {
      const registry: Metric.MetricRegistry = new Map()
      const withRegistry = Effect.provideService(Metric.MetricRegistry, registry)
      const scopeA = yield* Scope.make()
      const a = yield* oneStrike({ name: "alpha" }).pipe(Scope.provide(scopeA), withRegistry)
      const b = yield* oneStrike({ name: "beta" }).pipe(withRegistry)
      yield* calls(a, "SS")
      yield* calls(b, "F")
      let s = yield* read(registry)
      assert.strictEqual(counter(s, "bulwark.circuitbreaker.successes", { name: "alpha" }), 2)
      assert.strictEqual(counter(s, "bulwark.circuitbreaker.successes", { name: "beta" }), 0)
      assert.strictEqual(gauge(s, "bulwark.circuitbreaker.state", "alpha"), 0)
      assert.strictEqual(gauge(s, "bulwark.circuitbreaker.state", "beta"), 2)
      yield* Scope.close(scopeA, Exit.void)
      s = yield* read(registry)
      assert.isFalse(ours(s).some((m) => m.attributes?.name === "alpha"))
      assert.strictEqual(counter(s, "bulwark.circuitbreaker.failures", { name: "beta" }), 1)
    }))

  it.effect("a keyed breaker has no per-key series: its counters sum all circuits, labelled by name only", () =>
    Effect.gen(function*() {
      const registry: Metric.MetricRegistry = new Map()
      const b = yield* oneStrike({ name: "keyed", keys: { maxKeys: 10, exposeKeys: true } }).pipe(
        Effect.provideService(Metric.MetricRegistry, registry)
      )
      yield* calls(b, "F", "a")
      yield* calls(b, "S", "b")
      yield* calls(b, "S", "a")
      const s = yield* read(registry)
      assert.strictEqual(counter(s, "bulwark.circuitbreaker.successes", { name: "keyed" }), 1)
      assert.strictEqual(counter(s, "bulwark.circuitbreaker.failures", { name: "keyed" }), 1)
      assert.strictEqual(counter(s, "bulwark.circuitbreaker.rejected", { name: "keyed", reason: "Open" }), 1)
      for (const m of ours(s)) {
        const keys = Object.keys(m.attributes ?? {}).sort()
        assert.deepStrictEqual(keys, m.id === "bulwark.circuitbreaker.rejected" ? ["name", "reason"] : ["name"], m.id)
      }
      assert.isFalse(ours(s).some((m) => m.id === "bulwark.circuitbreaker.state"), "no single state for many circuits")
    }))
})

// -----------------------------------------------------------------------------
// keyed circuits
// -----------------------------------------------------------------------------

describe("CircuitBreaker rule: keyed circuits: one circuit per key, at most maxKeys (LRU), idle ones reclaimed after idleTimeToLive, Open ones not before their open time", () => {
  const keyed = (keys: CircuitBreaker.Options["keys"], openFor: Duration.Input = "10 seconds") =>
    CircuitBreaker.make({ name: "hosts", trip: CircuitBreaker.consecutive(1), openFor, keys })

  it.effect("circuits of different keys are independent", () =>
    Effect.gen(function*() {
      const b = yield* keyed({ maxKeys: 10 })
      assert.isTrue(b.keyed)
      yield* calls(b, "F", "a")
      yield* expectState(b, { state: "Open", retryAfter: 10_000 }, "a")
      expectSuccess((yield* calls(b, "S", "b"))[0], "success")
      yield* expectState(b, { state: "Closed" }, "b")
      expectRejected((yield* calls(b, "S", "a"))[0], { name: "hosts", reason: "Open", retryAfter: 10_000 })
      yield* CircuitBreaker.isolate(b, "b")
      yield* expectState(b, { state: "Isolated" }, "b")
      yield* expectState(b, { state: "Open" }, "a")
      yield* CircuitBreaker.reset(b, "a")
      yield* expectState(b, { state: "Closed" }, "a")
      yield* expectState(b, { state: "Isolated" }, "b")
      const s = yield* CircuitBreaker.stats(b)
      assert.strictEqual(s.state, undefined)
      assert.strictEqual(s.circuits, 2)
    }))

  it.effect("an unknown key reads as a fresh Closed circuit and creates nothing", () =>
    Effect.gen(function*() {
      const b = yield* keyed({ maxKeys: 10, exposeKeys: true })
      yield* expectState(b, { state: "Closed", consecutiveOpenings: 0, probing: 0 }, "nobody")
      assert.strictEqual((yield* CircuitBreaker.stats(b)).circuits, 0)
      assert.deepStrictEqual(yield* CircuitBreaker.keys(b), [])
    }))

  it.effect("at most maxKeys circuits live: a new key evicts the least recently used one", () =>
    Effect.gen(function*() {
      const b = yield* keyed({ maxKeys: 2, exposeKeys: true })
      yield* calls(b, "F", "a") // a: Open
      yield* calls(b, "S", "b")
      yield* calls(b, "S", "a") // a used again (rejected): b is now the least recently used
      yield* calls(b, "S", "c")
      assert.deepStrictEqual(yield* CircuitBreaker.keys(b), ["a", "c"])
      yield* expectState(b, { state: "Open" }, "a")
      yield* calls(b, "S", "d") // evicts a, even though it is open
      assert.deepStrictEqual(yield* CircuitBreaker.keys(b), ["c", "d"])
      yield* expectState(b, { state: "Closed", consecutiveOpenings: 0 }, "a")
      const s = yield* CircuitBreaker.stats(b)
      assert.strictEqual(s.circuits, 2)
      assert.strictEqual(s.reclaimed, 2)
      for (let i = 0; i < 10; i++) yield* calls(b, "S", `k${i}`)
      assert.deepStrictEqual(yield* CircuitBreaker.keys(b), ["k8", "k9"])
      assert.strictEqual((yield* CircuitBreaker.stats(b)).reclaimed, 12)
    }))

  it.effect("at maxKeys, a circuit with a probe running is evicted only after the idle ones", () =>
    Effect.gen(function*() {
      const b = yield* keyed({ maxKeys: 2, exposeKeys: true })
      yield* calls(b, "F", "a")
      yield* calls(b, "S", "b")
      yield* advance(10_000)
      const probe = yield* start(b, "a") // a: HalfOpen, one probe; a is now the most recent
      yield* calls(b, "S", "b") // b is the most recent
      yield* calls(b, "S", "c")
      assert.deepStrictEqual(yield* CircuitBreaker.keys(b), ["a", "c"]) // b went, not a
      yield* probe.succeed()
      yield* expectState(b, { state: "Closed" }, "a")
    }))

  it.effect("a circuit idle for idleTimeToLive is reclaimed (when a new key arrives)", () =>
    Effect.gen(function*() {
      const b = yield* keyed({ maxKeys: 10, idleTimeToLive: "1 minute", exposeKeys: true })
      yield* calls(b, "S", "a")
      yield* advance(59_999)
      yield* calls(b, "S", "b")
      assert.deepStrictEqual(yield* CircuitBreaker.keys(b), ["a", "b"])
      yield* advance(1)
      yield* calls(b, "S", "c")
      assert.deepStrictEqual(yield* CircuitBreaker.keys(b), ["b", "c"])
      assert.strictEqual((yield* CircuitBreaker.stats(b)).reclaimed, 1)
    }))

  it.effect("a circuit with a call running is not idle: it is kept, and the call's failure still counts", () =>
    Effect.gen(function*() {
      const b = yield* keyed({ maxKeys: 10, idleTimeToLive: "1 minute", exposeKeys: true })
      const running = yield* start(b, "a") // admitted at 0
      yield* advance(61_000)
      yield* calls(b, "S", "z")
      assert.deepStrictEqual(yield* CircuitBreaker.keys(b), ["a", "z"])
      yield* running.fail()
      yield* expectState(b, { state: "Open", retryAfter: 10_000 }, "a")
      yield* advance(61_000) // idle since its last call ended at 61 000 ms, open time over
      yield* calls(b, "S", "y")
      assert.deepStrictEqual(yield* CircuitBreaker.keys(b), ["y"])
    }))

  it.effect("idleness counts from a circuit's last activity (a call admitted or ended), whatever the creation order", () =>
    Effect.gen(function*() {
      const b = yield* keyed({ maxKeys: 10, idleTimeToLive: "1 minute", exposeKeys: true })
      const x = yield* start(b, "x") // x created first
      yield* advance(1)
      yield* calls(b, "S", "y") // y: last active at 1 ms
      yield* advance(30_000)
      yield* x.succeed() // x: last active at 30 001 ms
      assert.deepStrictEqual(yield* CircuitBreaker.keys(b), ["y", "x"]) // least recently used first
      yield* advance(31_000) // y idle 61 s, x idle 31 s
      yield* calls(b, "S", "z")
      assert.deepStrictEqual(yield* CircuitBreaker.keys(b), ["x", "z"])
    }))

  it.effect("the default idleTimeToLive is 10 minutes", () =>
    Effect.gen(function*() {
      const b = yield* keyed({ maxKeys: 10, exposeKeys: true })
      yield* calls(b, "S", "a")
      yield* advance(599_999)
      yield* calls(b, "S", "b")
      assert.deepStrictEqual(yield* CircuitBreaker.keys(b), ["a", "b"])
      yield* advance(1)
      yield* calls(b, "S", "c")
      assert.deepStrictEqual(yield* CircuitBreaker.keys(b), ["b", "c"])
    }))

  it.effect("an Open circuit is not reclaimed before its open time has passed", () =>
    Effect.gen(function*() {
      const b = yield* keyed({ maxKeys: 10, idleTimeToLive: "1 minute", exposeKeys: true }, "5 minutes")
      yield* calls(b, "F", "a") // open until 300 000 ms
      yield* advance(120_000)
      yield* calls(b, "S", "b")
      assert.deepStrictEqual(yield* CircuitBreaker.keys(b), ["a", "b"])
      yield* expectState(b, { state: "Open", retryAfter: 180_000 }, "a")
      yield* advance(179_999)
      yield* calls(b, "S", "c") // a is still open; b (idle 179 999 ms) goes
      assert.deepStrictEqual(yield* CircuitBreaker.keys(b), ["a", "c"])
      yield* advance(1)
      yield* calls(b, "S", "d") // a's open time has passed
      assert.deepStrictEqual(yield* CircuitBreaker.keys(b), ["c", "d"])
      yield* expectState(b, { state: "Closed", consecutiveOpenings: 0 }, "a")
    }))

  it.effect("keys are absent from errors, events and key listings unless exposeKeys", () =>
    Effect.gen(function*() {
      const hidden = yield* keyed({ maxKeys: 10 })
      const events = yield* Effect.forkChild(Stream.runCollect(Stream.take(CircuitBreaker.transitions(hidden), 1)))
      yield* Effect.yieldNow
      yield* calls(hidden, "F", "secret-tenant")
      const error = expectRejected((yield* calls(hidden, "S", "secret-tenant"))[0], { name: "hosts", reason: "Open", retryAfter: 10_000 })
      assert.notInclude(error.message, "secret-tenant")
      assert.deepStrictEqual(yield* Fiber.join(events), [transition("Closed", "Open", 0, "hosts", undefined)])
      assert.deepStrictEqual(yield* CircuitBreaker.keys(hidden), [])

      const shown = yield* keyed({ maxKeys: 10, exposeKeys: true })
      const shownEvents = yield* Effect.forkChild(Stream.runCollect(Stream.take(CircuitBreaker.transitions(shown), 1)))
      yield* Effect.yieldNow
      yield* calls(shown, "F", "eu-1")
      const shownError = expectRejected((yield* calls(shown, "S", "eu-1"))[0], {
        name: "hosts",
        reason: "Open",
        retryAfter: 10_000,
        key: "eu-1"
      })
      assert.strictEqual(shownError.message, `Circuit "hosts" [eu-1] rejected the call: Open`)
      assert.deepStrictEqual(yield* Fiber.join(shownEvents), [transition("Closed", "Open", 0, "hosts", "eu-1")])
      assert.deepStrictEqual(yield* CircuitBreaker.keys(shown), ["eu-1"])
    }))
})

describe("CircuitBreaker rule: a keyed breaker needs `key` and a plain one refuses it: the call dies with a message naming the option", () => {
  const expectDie = (exit: Exit.Exit<unknown, unknown>, includes: string) => {
    assert.isTrue(Exit.isFailure(exit))
    if (!Exit.isFailure(exit)) return
    const reason = exit.cause.reasons[0]
    assert.isTrue(Cause.isDieReason(reason), "dies")
    if (!Cause.isDieReason(reason)) return
    const message = (reason.defect as Error).message
    assert.include(message, `"key"`)
    assert.include(message, includes)
  }

  it.effect("guard on a keyed breaker without key", () =>
    Effect.gen(function*() {
      const b = yield* oneStrike({ name: "hosts", keys: { maxKeys: 2 } })
      let ran = false
      const exit = yield* Effect.exit(Effect.sync(() => (ran = true)).pipe(CircuitBreaker.guard(b)))
      expectDie(exit, "required")
      assert.include(Cause.pretty((exit as Exit.Failure<unknown, unknown>).cause), `"hosts"`)
      assert.isFalse(ran)
      expectDie(yield* Effect.exit(CircuitBreaker.state(b)), "required")
      expectDie(yield* Effect.exit(CircuitBreaker.isolate(b)), "required")
      expectDie(yield* Effect.exit(CircuitBreaker.reset(b)), "required")
    }))

  it.effect("guard on a plain breaker with a key", () =>
    Effect.gen(function*() {
      const b = yield* oneStrike({ name: "plain" })
      let ran = false
      const exit = yield* Effect.exit(Effect.sync(() => (ran = true)).pipe(CircuitBreaker.guard(b, { key: "a" })))
      expectDie(exit, "must be omitted")
      assert.isFalse(ran)
      expectDie(yield* Effect.exit(CircuitBreaker.state(b, "a")), "must be omitted")
      expectDie(yield* Effect.exit(CircuitBreaker.disable(b, "a")), "must be omitted")
      yield* expectStats(b, { successes: 0, failures: 0, ignored: 0 })
    }))
})

// -----------------------------------------------------------------------------
// construction
// -----------------------------------------------------------------------------

describe("CircuitBreaker rule: invalid options fail make with InvalidOptions naming each bad field", () => {
  const base: CircuitBreaker.Options = { name: "cb", trip: CircuitBreaker.consecutive(1), openFor: "1 second" }
  const rate = (o: Partial<{ threshold: number; minimumCalls: number; window: number | Duration.Input }>) =>
    CircuitBreaker.failureRate({ threshold: 0.5, minimumCalls: 1, window: 10, ...o })
  const cases: ReadonlyArray<{ readonly title: string; readonly options: unknown; readonly field: string; readonly rule: string }> = [
    { title: "threshold 0", options: { ...base, trip: rate({ threshold: 0 }) }, field: "trip.threshold", rule: "Expected a ratio in (0, 1], got 0" },
    { title: "threshold 2", options: { ...base, trip: rate({ threshold: 2 }) }, field: "trip.threshold", rule: "Expected a ratio in (0, 1], got 2" },
    { title: "minimumCalls 0", options: { ...base, trip: rate({ minimumCalls: 0 }) }, field: "trip.minimumCalls", rule: "Expected an integer >= 1, got 0" },
    { title: "consecutive failures 1.5", options: { ...base, trip: CircuitBreaker.consecutive(1.5) }, field: "trip.failures", rule: "Expected an integer >= 1, got 1.5" },
    { title: "a bad policy in a list", options: { ...base, trip: [CircuitBreaker.consecutive(2), CircuitBreaker.consecutive(0)] }, field: "trip.1.failures", rule: "Expected an integer >= 1, got 0" },
    { title: "slowCalls slowerThan malformed", options: { ...base, trip: CircuitBreaker.slowCalls({ slowerThan: "soon" as Duration.Input, threshold: 0.5, minimumCalls: 1, window: 2 }) }, field: "trip.slowerThan", rule: "duration" },
    { title: "no trip policy", options: { ...base, trip: [] }, field: "trip", rule: "length of at least 1" },
    { title: "probes 0", options: { ...base, halfOpen: { probes: 0 } }, field: "halfOpen.probes", rule: "Expected an integer >= 1, got 0" },
    { title: "successesToClose 0", options: { ...base, halfOpen: { successesToClose: 0 } }, field: "halfOpen.successesToClose", rule: "Expected an integer >= 1, got 0" },
    { title: "negative probeTimeout", options: { ...base, halfOpen: { probeTimeout: -1 } }, field: "halfOpen.probeTimeout", rule: "Expected a duration >= 0, got -1" },
    { title: "empty name", options: { ...base, name: "" }, field: "name", rule: "Expected a non-empty name" },
    { title: "maxKeys 0", options: { ...base, keys: { maxKeys: 0 } }, field: "keys.maxKeys", rule: "Expected an integer >= 1, got 0" },
    { title: "negative idleTimeToLive", options: { ...base, keys: { maxKeys: 1, idleTimeToLive: "-1 seconds" } }, field: "keys.idleTimeToLive", rule: ">= 0" },
    { title: "an unknown option", options: { ...base, probes: 3 }, field: "probes", rule: "Expected no excess property" }
  ]

  for (const { field, options, rule, title } of cases) {
    it.effect(`${title} fails make with InvalidOptions naming ${field}`, () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(CircuitBreaker.make(options as CircuitBreaker.Options))
        assert.instanceOf(error, InvalidOptions)
        assert.strictEqual(error._tag, "InvalidOptions")
        assert.strictEqual(error.primitive, "CircuitBreaker")
        assert.strictEqual(error.message.split("\n").length, 1, `only ${field} is named: ${error.message}`)
        assert.isTrue(error.message.startsWith(`${field}: `), error.message)
        assert.include(error.message, rule)
      }))
  }

  for (const window of [0, 2.5, -1]) {
    it.effect(`a count window of ${window} is refused: a number counts calls and must be an integer >= 1`, () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(CircuitBreaker.make({ ...base, trip: rate({ window }) }))
        assert.instanceOf(error, InvalidOptions)
        const lines = error.message.split("\n")
        for (const line of lines) assert.isTrue(line.startsWith("trip.window: "), line)
        assert.include(error.message, `integer >= 1, got ${window}`)
      }))
  }

  it.effect("a malformed openFor is named as neither a Schedule nor a duration", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(CircuitBreaker.make({ ...base, openFor: "soon" as Duration.Input }))
      const lines = error.message.split("\n")
      assert.isAbove(lines.length, 0)
      for (const line of lines) assert.isTrue(line.startsWith("openFor: "), line)
      assert.include(error.message, "Schedule")
      assert.include(error.message, `a duration such as "2 seconds"`)
      assert.strictEqual(error.name, "cb")
    }))

  it.effect("every bad field is named, each on its own line; the name is <unnamed> when unreadable", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(CircuitBreaker.make({
        name: "",
        trip: CircuitBreaker.consecutive(0),
        openFor: -5,
        halfOpen: { probes: 0, successesToClose: 1.5, probeTimeout: "later" as Duration.Input },
        keys: { maxKeys: 0 }
      }))
      assert.strictEqual(error.name, "<unnamed>")
      const fields = error.message.split("\n").map((line) => line.slice(0, line.indexOf(":")))
      assert.deepStrictEqual([...new Set(fields)], [
        "name",
        "trip.failures",
        "openFor",
        "halfOpen.probes",
        "halfOpen.successesToClose",
        "halfOpen.probeTimeout",
        "keys.maxKeys"
      ])
    }))

  it.effect("boundary values are accepted: threshold 1, minimumCalls 1, probeTimeout of 1 ms, openFor 0", () =>
    Effect.gen(function*() {
      const b = yield* CircuitBreaker.make({
        name: "edge",
        trip: CircuitBreaker.failureRate({ threshold: 1, minimumCalls: 1, window: 1 }),
        openFor: 0,
        halfOpen: { probes: 1, successesToClose: 1, probeTimeout: 1 },
        keys: { maxKeys: 1, idleTimeToLive: 0 }
      })
      yield* calls(b, "F", "a")
      yield* expectState(b, { state: "Open", retryAfter: 0 }, "a")
      yield* calls(b, "S", "a") // openFor 0: the next call is a probe
      yield* expectState(b, { state: "Closed" }, "a")
    }))

  it.effect("the layer fails with InvalidOptions too", () =>
    Effect.gen(function*() {
      class Bad extends Context.Service<Bad, CircuitBreaker.CircuitBreaker>()("test/Bad") {}
      const error = yield* Effect.flip(Effect.provide(Effect.gen(function*() {
        return yield* Bad
      }), CircuitBreaker.layer(Bad, { ...base, halfOpen: { probes: 0 } })))
      assert.instanceOf(error, InvalidOptions)
      assert.strictEqual(error.message, "halfOpen.probes: Expected an integer >= 1, got 0")
    }))
})

class Payments extends Context.Service<Payments, CircuitBreaker.CircuitBreaker>()("test/Payments") {}

describe("CircuitBreaker rule: `layer` builds a breaker as a service; every operation accepts the service key, which adds it to R", () => {
  const PaymentsLive = CircuitBreaker.layer(Payments, { name: "payments", trip: CircuitBreaker.consecutive(2), openFor: "10 seconds" })

  it.effect("guard(Key), data-last and data-first, stats, state, isolate, reset, events through the key", () =>
    Effect.gen(function*() {
      const collector = yield* Effect.forkChild(Stream.runCollect(Stream.take(CircuitBreaker.transitions(Payments), 1)))
      yield* Effect.yieldNow
      const failing: Effect.Effect<string, Boom | CircuitOpen, Payments> = Effect.fail(new Boom({ label: "x" })).pipe(
        CircuitBreaker.guard(Payments)
      )
      const dataFirst: Effect.Effect<string, Boom | CircuitOpen, Payments> = CircuitBreaker.guard(
        Effect.fail(new Boom({ label: "y" })),
        Payments
      )
      // @ts-expect-error the service key is in R: the guarded effect cannot run without it
      const needsTheKey: Effect.Effect<string, Boom | CircuitOpen, never> = failing
      void needsTheKey
      expectBoom(yield* Effect.exit(failing), "x")
      expectBoom(yield* Effect.exit(dataFirst), "y")
      const info: CircuitBreaker.StateInfo = yield* CircuitBreaker.state(Payments)
      assert.strictEqual(info.state, "Open")
      const rejected = yield* Effect.exit(Effect.succeed("ok").pipe(CircuitBreaker.guard(Payments)))
      expectRejected(rejected, { name: "payments", reason: "Open", retryAfter: 10_000 })
      const s: CircuitBreaker.Snapshot = yield* CircuitBreaker.stats(Payments)
      assert.strictEqual(s.name, "payments")
      assert.strictEqual(s.failures, 2)
      yield* CircuitBreaker.reset(Payments)
      yield* CircuitBreaker.isolate(Payments)
      assert.strictEqual((yield* CircuitBreaker.state(Payments)).state, "Isolated")
      assert.deepStrictEqual(yield* Fiber.join(collector), [transition("Closed", "Open", 0, "payments")])
      const service = yield* Payments
      assert.strictEqual(service.name, "payments")
      assert.isTrue(CircuitBreaker.isCircuitBreaker(service))
    }).pipe(Effect.provide(PaymentsLive)))

  it.effect("a guard built from a key resolves the service each time it runs", () =>
    Effect.gen(function*() {
      const guarded = Effect.fail(new Boom({ label: "x" })).pipe(CircuitBreaker.guard(Payments))
      // Two separately provided layers are two breakers: each sees its own failures.
      yield* Effect.exit(guarded).pipe(Effect.provide(PaymentsLive))
      const s = yield* Effect.gen(function*() {
        yield* Effect.exit(guarded)
        return yield* CircuitBreaker.stats(Payments)
      }).pipe(Effect.provide(PaymentsLive))
      assert.strictEqual(s.failures, 1)
    }))
})

// -----------------------------------------------------------------------------
// presets
// -----------------------------------------------------------------------------

describe("CircuitBreaker rule: preset `sensitive` trips after 3 failures in a row or half of the last 10 calls, stays open 5 s doubling to 1 minute, closes after 2 single probes", () => {
  const sensitive = CircuitBreaker.make({ name: "psp", ...CircuitBreaker.sensitive })

  it.effect("documented numbers", () =>
    Effect.sync(() => {
      assert.deepStrictEqual(CircuitBreaker.sensitive.trip, [
        CircuitBreaker.consecutive(3),
        CircuitBreaker.failureRate({ threshold: 0.5, minimumCalls: 10, window: 10 })
      ])
      assert.deepStrictEqual(CircuitBreaker.sensitive.halfOpen, { probes: 1, successesToClose: 2, probeTimeout: "30 seconds" })
    }))

  it.effect("3 failures in a row open it; 2 do not", () =>
    Effect.gen(function*() {
      const b = yield* sensitive
      yield* calls(b, "FFSFF")
      yield* expectState(b, { state: "Closed" })
      yield* calls(b, "F")
      yield* expectState(b, { state: "Open", retryAfter: 5_000 })
    }))

  it.effect("5 failures in the last 10 calls open it; 4 do not", () =>
    Effect.gen(function*() {
      const b = yield* sensitive
      yield* calls(b, "SFSFSFSFS")
      yield* expectState(b, { state: "Closed" }) // 4 of 9
      yield* calls(b, "S")
      yield* expectState(b, { state: "Closed" }) // 4 of 10
      yield* calls(b, "F") // the oldest call (S) leaves: F S F S F S F S S F
      yield* expectState(b, { state: "Open", retryAfter: 5_000 }) // 5 of 10
    }))

  it.effect("stays open 5, 10, 20, 40, then 60 s (capped at 1 minute)", () =>
    Effect.gen(function*() {
      const b = yield* sensitive
      yield* calls(b, "FFF")
      const seen: Array<number> = []
      for (let i = 0; i < 6; i++) {
        const info = yield* CircuitBreaker.state(b)
        seen.push(Duration.toMillis(info.retryAfter))
        yield* advance(Duration.toMillis(info.retryAfter))
        yield* calls(b, "F") // the probe fails
      }
      assert.deepStrictEqual(seen, [5_000, 10_000, 20_000, 40_000, 60_000, 60_000])
    }))

  it.effect("one probe at a time; 2 successful probes close it; a probe is lost after 30 s", () =>
    Effect.gen(function*() {
      const b = yield* sensitive
      yield* calls(b, "FFF")
      yield* advance(5_000)
      const probe = yield* start(b)
      expectRejected((yield* calls(b, "S"))[0], { name: "psp", reason: "ProbesBusy", retryAfter: 0 })
      yield* probe.succeed()
      yield* expectState(b, { state: "HalfOpen" })
      const hung = yield* start(b)
      yield* advance(29_999)
      yield* expectState(b, { state: "HalfOpen", probing: 1 })
      yield* advance(2)
      yield* expectState(b, { state: "Open", retryAfter: 10_000 })
      yield* hung.succeed()
      yield* advance(10_000)
      yield* calls(b, "SS")
      yield* expectState(b, { state: "Closed" })
    }))
})

describe("CircuitBreaker rule: preset `tolerant` trips at 50% of the last minute's calls (at least 50) or 20 failures in a row, stays open 15 s, closes after 3 successes of 3 concurrent probes", () => {
  const tolerant = CircuitBreaker.make({ name: "search", ...CircuitBreaker.tolerant })

  it.effect("documented numbers", () =>
    Effect.sync(() => {
      assert.deepStrictEqual(CircuitBreaker.tolerant, {
        trip: [CircuitBreaker.consecutive(20), CircuitBreaker.failureRate({ threshold: 0.5, minimumCalls: 50, window: "1 minute" })],
        openFor: "15 seconds",
        halfOpen: { probes: 3, successesToClose: 3, probeTimeout: "1 minute" }
      })
    }))

  it.effect("20 failures in a row open it; 19 do not", () =>
    Effect.gen(function*() {
      const b = yield* tolerant
      yield* calls(b, "F".repeat(19))
      yield* expectState(b, { state: "Closed" })
      yield* calls(b, "F")
      yield* expectState(b, { state: "Open", retryAfter: 15_000 })
    }))

  it.effect("25 failures in 50 calls within a minute open it; 49 calls do not, and calls older than a minute leave", () =>
    Effect.gen(function*() {
      const b = yield* tolerant
      yield* calls(b, "FS".repeat(24) + "F") // 49 calls, 25 failures
      yield* expectState(b, { state: "Closed" })
      yield* advance(60_000) // all of them leave
      yield* calls(b, "S" + "FS".repeat(24)) // 49 calls, 24 failures
      yield* expectState(b, { state: "Closed" })
      yield* calls(b, "F") // 50 calls, 25 failures
      yield* expectState(b, { state: "Open", retryAfter: 15_000 })
    }))

  it.effect("stays open 15 s every time; 3 concurrent probes, the 4th is busy; 3 successes close it", () =>
    Effect.gen(function*() {
      const b = yield* tolerant
      yield* calls(b, "F".repeat(20))
      yield* advance(15_000)
      yield* calls(b, "F")
      yield* expectState(b, { state: "Open", retryAfter: 15_000 })
      yield* advance(15_000)
      const probes = [yield* start(b), yield* start(b), yield* start(b)]
      expectRejected((yield* calls(b, "S"))[0], { name: "search", reason: "ProbesBusy", retryAfter: 0 })
      yield* probes[0].succeed()
      yield* probes[1].succeed()
      yield* expectState(b, { state: "HalfOpen", probing: 1 })
      yield* probes[2].succeed()
      yield* expectState(b, { state: "Closed" })
    }))

  it.effect("a probe is lost after 1 minute", () =>
    Effect.gen(function*() {
      const b = yield* tolerant
      yield* calls(b, "F".repeat(20))
      yield* advance(15_000)
      yield* start(b)
      yield* advance(59_999)
      yield* expectState(b, { state: "HalfOpen" })
      yield* advance(2)
      yield* expectState(b, { state: "Open", retryAfter: 15_000 })
    }))
})

// -----------------------------------------------------------------------------
// interruption
// -----------------------------------------------------------------------------

describe("CircuitBreaker rule: interrupting a call is safe: it records Ignored and leaks nothing", () => {
  it.effect("a running call interrupted in Closed state records Ignored and leaves the trip counts alone", () =>
    Effect.gen(function*() {
      const b = yield* CircuitBreaker.make({ name: "cb", trip: CircuitBreaker.consecutive(2), openFor: "10 seconds" })
      yield* calls(b, "F")
      const running = yield* Effect.forEach([1, 2, 3], () => start(b))
      for (const p of running) assert.isTrue(Exit.hasInterrupts(yield* p.interrupt))
      yield* expectStats(b, { successes: 0, failures: 1, ignored: 3 })
      yield* expectState(b, { state: "Closed" })
      yield* calls(b, "F") // the run of failures continues
      yield* expectState(b, { state: "Open" })
    }))

  it.effect("a probe interrupted at any point of its life frees its slot", () =>
    Effect.gen(function*() {
      for (let hops = 0; hops < 8; hops++) {
        const b = yield* oneStrike()
        yield* openThenWait(b, 10_000)
        const fiber = yield* Effect.forkChild(Effect.never.pipe(CircuitBreaker.guard(b)))
        for (let i = 0; i < hops; i++) yield* Effect.yieldNow
        yield* Fiber.interrupt(fiber)
        const info = yield* CircuitBreaker.state(b)
        assert.strictEqual(info.probing, 0, `interrupted after ${hops} hops`)
        yield* calls(b, "S")
        yield* expectState(b, { state: "Closed" })
        const s = yield* CircuitBreaker.stats(b)
        assert.strictEqual(s.rejected.ProbesBusy, 0)
        assert.isAtMost(s.ignored, 1)
      }
    }))

  it.effect("many calls interrupted while running are each recorded once", () =>
    Effect.gen(function*() {
      const b = yield* CircuitBreaker.make({ name: "cb", trip: CircuitBreaker.consecutive(1), openFor: "10 seconds" })
      const fibers = yield* Effect.forEach(
        Array.from({ length: 50 }, (_, i) => i),
        () => Effect.forkChild(Effect.never.pipe(CircuitBreaker.guard(b)))
      )
      yield* settle
      yield* Fiber.interruptAll(fibers)
      yield* expectStats(b, { successes: 0, failures: 0, ignored: 50 })
      yield* expectState(b, { state: "Closed" })
    }))
})

describe("CircuitBreaker rule: a shared store's transitions caused elsewhere are reported as remote Transition events, mapped to this breaker's keys, not counted", () => {
  /** A store on memory() whose `listen` the test drives, as another process's publications would. */
  const listening = () => {
    const inner = CircuitBreakerStore.memory()
    const listeners = new Set<(t: CircuitBreakerStore.RemoteTransition) => void>()
    const store = CircuitBreakerStore.make({
      admit: inner.admit,
      record: inner.record,
      read: inner.read,
      force: inner.force,
      listen: (f) =>
        Effect.acquireRelease(Effect.sync(() => void listeners.add(f)), () => Effect.sync(() => void listeners.delete(f)))
    })
    const tell = (key: string, from: CircuitBreaker.State, to: CircuitBreaker.State, at: number) => {
      for (const f of listeners) f({ key, from, to, at })
    }
    return { store, tell, listeners }
  }

  it.effect("plain and keyed breakers: only their own circuits, keys shown only with exposeKeys; the last state heard is the state told", () =>
    Effect.gen(function*() {
      const { listeners, store, tell } = listening()
      const events: Array<CircuitBreaker.Event> = []
      yield* Effect.gen(function*() {
        const plain = yield* CircuitBreaker.make({ name: "db", trip: CircuitBreaker.consecutive(1), openFor: "1 minute", store })
        const keyed = yield* CircuitBreaker.make({
          name: "api",
          trip: CircuitBreaker.consecutive(1),
          openFor: "1 minute",
          keys: { maxKeys: 10, exposeKeys: true },
          store
        })
        const hidden = yield* CircuitBreaker.make({
          name: "psp",
          trip: CircuitBreaker.consecutive(1),
          openFor: "1 minute",
          keys: { maxKeys: 10 },
          store
        })
        assert.strictEqual(listeners.size, 3)
        for (const b of [plain, keyed, hidden]) {
          yield* Effect.forkChild(Stream.runForEach(CircuitBreaker.events(b), (e) => Effect.sync(() => void events.push(e))), {
            startImmediately: true
          })
        }
        tell("db", "Closed", "Open", 5)
        tell("api:eu", "Closed", "Isolated", 6)
        tell("psp:us", "Open", "HalfOpen", 7)
        tell("dbx", "Closed", "Open", 8) // another breaker's circuit
        tell("api", "Closed", "Open", 9) // a plain breaker named "api", not a key of the keyed one
        yield* Effect.yieldNow
        assert.deepStrictEqual(events, [
          { _tag: "Transition", name: "db", key: undefined, from: "Closed", to: "Open", at: 5, remote: true },
          { _tag: "Transition", name: "api", key: "eu", from: "Closed", to: "Isolated", at: 6, remote: true },
          { _tag: "Transition", name: "psp", key: undefined, from: "Open", to: "HalfOpen", at: 7, remote: true }
        ])
        // Not counted here: the process that caused them counts them.
        assert.strictEqual((yield* CircuitBreaker.stats(plain)).transitions, 0)
      }).pipe(Effect.scoped)
      // The breakers' scope closed: they stopped listening.
      assert.strictEqual(listeners.size, 0)
    }))
})

describe("CircuitBreaker rule: with a shared store, a probe's lease is renewed every third of halfOpen.probeLease while it runs; a probe nobody renews is lost when its lease runs out", () => {
  /** memory()'s operations without its in-process side: the breaker uses it as a shared (remote) store. */
  const shared = () => {
    const inner = CircuitBreakerStore.memory()
    return {
      inner,
      store: CircuitBreakerStore.make({
        admit: inner.admit,
        record: inner.record,
        read: inner.read,
        force: inner.force,
        renew: inner.renew
      })
    }
  }
  const options = {
    trip: CircuitBreaker.consecutive(1),
    openFor: "1 second",
    halfOpen: { probeTimeout: "1 minute", probeLease: "300 millis" }
  } as const

  it.effect("a probe running for ten leases keeps its lease (renewed every 100 ms), others get ProbesBusy; the renewals stop with the call", () =>
    Effect.gen(function*() {
      const { store } = shared()
      const b = yield* CircuitBreaker.make({ name: "leased", ...options, store })
      yield* Effect.exit(Effect.fail(new Boom({ label: "down" })).pipe(CircuitBreaker.guard(b)))
      yield* TestClock.adjust("1 second")
      const gate = yield* Deferred.make<void>()
      const probe = yield* Effect.forkChild(Deferred.await(gate).pipe(CircuitBreaker.guard(b)), { startImmediately: true })
      for (let i = 0; i < 30; i++) yield* TestClock.adjust("100 millis")
      assert.strictEqual((yield* CircuitBreaker.stats(b)).probeRenewals, 30)
      const busy = yield* Effect.flip(Effect.void.pipe(CircuitBreaker.guard(b)))
      assert.strictEqual(busy.reason, "ProbesBusy")
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(probe)
      assert.strictEqual((yield* CircuitBreaker.state(b)).state, "Closed")
      yield* TestClock.adjust("1 second")
      assert.strictEqual((yield* CircuitBreaker.stats(b)).probeRenewals, 30)
      // Calls of a closed circuit hold no lease.
      const closedCall = yield* Effect.forkChild(Effect.sleep("1 second").pipe(CircuitBreaker.guard(b)), { startImmediately: true })
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(closedCall)
      assert.strictEqual((yield* CircuitBreaker.stats(b)).probeRenewals, 30)
    }))

  it.effect("a probe taken by a process that died (nobody renews it) is lost once its lease runs out, not after probeTimeout", () =>
    Effect.gen(function*() {
      const { inner, store } = shared()
      const b = yield* CircuitBreaker.make({ name: "crashed", ...options, store })
      yield* Effect.exit(Effect.fail(new Boom({ label: "down" })).pipe(CircuitBreaker.guard(b)))
      yield* TestClock.adjust("1 second")
      // Another process takes the probe through the store, then dies: no renewal, no report.
      const policy = { ...b.impl.policy }
      const taken = yield* inner.admit("crashed", policy, 1_000)
      assert.deepStrictEqual([taken._tag, taken._tag === "Admitted" && taken.probe], ["Admitted", true])
      yield* TestClock.adjust("300 millis")
      assert.strictEqual((yield* Effect.flip(Effect.void.pipe(CircuitBreaker.guard(b)))).reason, "ProbesBusy")
      yield* TestClock.adjust("1 millis")
      const reopened = yield* Effect.flip(Effect.void.pipe(CircuitBreaker.guard(b)))
      assert.deepStrictEqual([reopened.reason, (yield* CircuitBreaker.state(b)).state], ["Open", "Open"])
    }))

  it.effect("probeLease must be at least 1 ms; the in-process store and the local stand-in hold no leases", () =>
    Effect.gen(function*() {
      const e = yield* Effect.flip(CircuitBreaker.make({ name: "bad", ...options, halfOpen: { probeLease: 0 } }))
      assert.instanceOf(e, InvalidOptions)
      assert.include(e.message, "halfOpen.probeLease")
      const local = yield* CircuitBreaker.make({ name: "local", ...options })
      assert.isUndefined(local.impl.policy.probeLeaseMs)
      const remote = yield* CircuitBreaker.make({ name: "remote", ...options, store: shared().store })
      assert.strictEqual(remote.impl.policy.probeLeaseMs, 300)
      assert.isUndefined(remote.impl.standInPolicy.probeLeaseMs)
      const capped = yield* CircuitBreaker.make({
        name: "capped",
        ...options,
        halfOpen: { probeTimeout: "200 millis" },
        store: shared().store
      })
      assert.strictEqual(capped.impl.policy.probeLeaseMs, 200) // default 10 s, at most probeTimeout
    }))
})

describe("CircuitBreaker rule: an option given as undefined (as the Options type allows, e.g. from a spread config) means its default", () => {
  it.effect("halfOpen, keys and classify fields set to undefined", () =>
    Effect.gen(function*() {
      const b = yield* CircuitBreaker.make({
        name: "spread",
        trip: CircuitBreaker.consecutive(1),
        openFor: "1 second",
        halfOpen: { probes: undefined, successesToClose: undefined, probeTimeout: undefined, probeLease: undefined },
        keys: { maxKeys: 2, idleTimeToLive: undefined, exposeKeys: undefined },
        classify: undefined
      })
      assert.deepStrictEqual(
        [b.impl.policy.probes, b.impl.policy.successesToClose, b.impl.policy.probeTimeoutMs, b.impl.policy.probeLeaseMs],
        [1, 1, 60_000, undefined]
      )
      assert.isTrue(b.keyed)
    }))
})
