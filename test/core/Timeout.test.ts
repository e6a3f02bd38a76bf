import { assert, describe, expectTypeOf, it } from "@effect/vitest"
import { InvalidOptions, Timeout, TimeoutExceeded, Timeouts } from "@bulwark/core"
import { Cause, Data, Duration, Effect, Exit, Fiber, Layer, Metric, Schema, Scope, Stream } from "effect"
import { TestClock } from "effect/testing"

class Boom extends Data.TaggedError("Boom")<{ readonly label: string }> {}

/** Lets every fiber that is ready run. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 10; i++) yield* Effect.yieldNow
})

const isDone = (fiber: Fiber.Fiber<unknown, unknown>): boolean => fiber.pollUnsafe() !== undefined

/** The fiber has ended with a `TimeoutExceeded`; returns it. */
const expectTimedOut = (fiber: Fiber.Fiber<unknown, unknown>): TimeoutExceeded => {
  const exit = fiber.pollUnsafe()
  assert.isDefined(exit, "expected the call to have timed out, but it is still running")
  assert.isTrue(exit !== undefined && Exit.isFailure(exit), `expected a failure, got ${String(exit)}`)
  const error = Cause.squash((exit as Exit.Failure<unknown, unknown>).cause)
  assert.instanceOf(error, TimeoutExceeded)
  return error as TimeoutExceeded
}

/** A call that never ends on its own and records whether it was interrupted. */
const hanging = () => {
  const log: Array<string> = []
  const effect = Effect.sync(() => log.push("started")).pipe(
    Effect.andThen(Effect.never),
    Effect.onInterrupt(() => Effect.sync(() => log.push("interrupted")))
  )
  return { log, effect }
}

const TimeoutsLive = Timeouts.layer({ default: "10 seconds", overrides: { report: "2 minutes" } })

// -----------------------------------------------------------------------------
// 1. guard
// -----------------------------------------------------------------------------

describe("a guard interrupts the call when it runs longer and fails with TimeoutExceeded", () => {
  it.effect("at exactly `after`, not a millisecond sooner, and the call is interrupted", () =>
    Effect.gen(function*() {
      const { effect, log } = hanging()
      const fiber = yield* Effect.forkChild(effect.pipe(Timeout.guard("2 seconds")))
      yield* settle
      yield* TestClock.adjust("1999 millis")
      assert.isFalse(isDone(fiber))
      assert.deepStrictEqual(log, ["started"])
      yield* TestClock.adjust("1 millis")
      const error = expectTimedOut(fiber)
      assert.deepStrictEqual(log, ["started", "interrupted"])
      assert.strictEqual(error.name, "<unnamed>")
      assert.strictEqual(error.reason, "Elapsed")
      assert.isTrue(Duration.equals(error.after, Duration.seconds(2)))
    }))

  it.effect("a call that finishes in time returns its value, and nothing happens when the time would have run out", () =>
    Effect.gen(function*() {
      const fiber = yield* Effect.forkChild(Effect.sleep("1 second").pipe(Effect.as(42), Timeout.guard("2 seconds")))
      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* Fiber.join(fiber), 42)
      yield* TestClock.adjust("5 seconds")
      assert.strictEqual(yield* Fiber.join(fiber), 42)
    }))

  it.effect("a typed failure in time is returned unchanged; a defect too", () =>
    Effect.gen(function*() {
      const boom = new Boom({ label: "x" })
      const failed = yield* Effect.flip(Effect.fail(boom).pipe(Timeout.guard("1 second")))
      assert.strictEqual(failed, boom)
      const died = yield* Effect.exit(Effect.die("defect").pipe(Timeout.guard("1 second")))
      assert.isTrue(Exit.isFailure(died) && Cause.hasDies(died.cause))
    }))

  it.effect("{ name, after }: the name is in the error and its message", () =>
    Effect.gen(function*() {
      const fiber = yield* Effect.forkChild(Effect.never.pipe(Timeout.guard({ name: "report", after: 500 })))
      yield* TestClock.adjust("500 millis")
      const error = expectTimedOut(fiber)
      assert.strictEqual(error.name, "report")
      assert.isTrue(Duration.equals(error.after, Duration.millis(500)))
      assert.strictEqual(error.message, `Timeout "report" expired after 500ms`)
    }))

  it.effect("data-first works like data-last", () =>
    Effect.gen(function*() {
      const fiber = yield* Effect.forkChild(Timeout.guard(Effect.never, { name: "df", after: "1 second" }))
      const fixed = yield* Effect.forkChild(Timeout.guard(Effect.never, "3 seconds"))
      yield* TestClock.adjust("1 second")
      assert.strictEqual(expectTimedOut(fiber).name, "df")
      assert.isFalse(isDone(fixed))
      yield* TestClock.adjust("2 seconds")
      assert.isTrue(Duration.equals(expectTimedOut(fixed).after, Duration.seconds(3)))
    }))

  it.effect("the error is a real TimeoutExceeded: catchTag, instanceof, Schema.is and encoding agree", () =>
    Effect.gen(function*() {
      const fiber = yield* Effect.forkChild(Effect.never.pipe(Timeout.guard({ name: "n", after: 10 })))
      yield* TestClock.adjust("10 millis")
      const error = expectTimedOut(fiber)
      assert.isTrue(Schema.is(TimeoutExceeded)(error))
      const encoded = Schema.encodeSync(TimeoutExceeded)(error)
      assert.strictEqual(encoded.name, "n")
      const caught = yield* Effect.fail(error).pipe(
        Effect.catchTag("TimeoutExceeded", (e) => Effect.succeed(e.reason))
      )
      assert.strictEqual(caught, "Elapsed")
    }))

  it.effect("after: 0 fails at once without starting the call", () =>
    Effect.gen(function*() {
      const { effect, log } = hanging()
      const error = yield* Effect.flip(effect.pipe(Timeout.guard(0)))
      assert.instanceOf(error, TimeoutExceeded)
      assert.deepStrictEqual(log, [])
    }))

  it.effect("the TimeoutExceeded waits for the interrupted call's uninterruptible region to end", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const stubborn = Effect.uninterruptible(Effect.sleep("5 seconds")).pipe(
        Effect.ensuring(Effect.sync(() => log.push("released")))
      )
      const fiber = yield* Effect.forkChild(stubborn.pipe(Timeout.guard("1 second")))
      yield* TestClock.adjust("1 second")
      assert.isFalse(isDone(fiber))
      yield* TestClock.adjust("4 seconds")
      expectTimedOut(fiber)
      assert.deepStrictEqual(log, ["released"])
    }))

  it.effect("a guard built once can be applied to many calls; each gets its own time limit", () =>
    Effect.gen(function*() {
      const twoSeconds = Timeout.guard("2 seconds")
      const first = yield* Effect.forkChild(twoSeconds(Effect.never))
      yield* TestClock.adjust("1 second")
      const second = yield* Effect.forkChild(twoSeconds(Effect.never))
      yield* TestClock.adjust("1 second")
      expectTimedOut(first)
      assert.isFalse(isDone(second))
      yield* TestClock.adjust("1 second")
      expectTimedOut(second)
    }))
})

// -----------------------------------------------------------------------------
// 2. named timeouts
// -----------------------------------------------------------------------------

describe("named timeouts resolve from the Timeouts layer", () => {
  it.effect("a name with an override gets the override", () =>
    Effect.gen(function*() {
      const fiber = yield* Effect.forkChild(Effect.never.pipe(Timeout.named("report")))
      yield* settle
      yield* TestClock.adjust("119999 millis")
      assert.isFalse(isDone(fiber))
      yield* TestClock.adjust("1 millis")
      const error = expectTimedOut(fiber)
      assert.strictEqual(error.name, "report")
      assert.isTrue(Duration.equals(error.after, Duration.minutes(2)))
    }).pipe(Effect.provide(TimeoutsLive)))

  it.effect("any other name gets the default", () =>
    Effect.gen(function*() {
      const fiber = yield* Effect.forkChild(Effect.never.pipe(Timeout.named("profile")))
      yield* settle
      yield* TestClock.adjust("9999 millis")
      assert.isFalse(isDone(fiber))
      yield* TestClock.adjust("1 millis")
      const error = expectTimedOut(fiber)
      assert.strictEqual(error.name, "profile")
      assert.isTrue(Duration.equals(error.after, Duration.seconds(10)))
    }).pipe(Effect.provide(TimeoutsLive)))

  it.effect("guard({ name }) without after is the same as named(name), pipeable and data-first", () =>
    Effect.gen(function*() {
      const piped = yield* Effect.forkChild(Effect.never.pipe(Timeout.guard({ name: "report" })))
      const direct = yield* Effect.forkChild(Timeout.guard(Effect.never, { name: "report" }))
      const namedDirect = yield* Effect.forkChild(Timeout.named(Effect.never, "other"))
      yield* settle
      yield* TestClock.adjust("10 seconds")
      assert.strictEqual(expectTimedOut(namedDirect).name, "other")
      assert.isFalse(isDone(piped) || isDone(direct))
      yield* TestClock.adjust("110 seconds")
      assert.isTrue(Duration.equals(expectTimedOut(piped).after, Duration.minutes(2)))
      assert.isTrue(Duration.equals(expectTimedOut(direct).after, Duration.minutes(2)))
    }).pipe(Effect.provide(TimeoutsLive)))

  it.effect("a fixed `after` wins over the table, even for a configured name", () =>
    Effect.gen(function*() {
      const fiber = yield* Effect.forkChild(Effect.never.pipe(Timeout.guard({ name: "report", after: "1 second" })))
      yield* TestClock.adjust("1 second")
      assert.isTrue(Duration.equals(expectTimedOut(fiber).after, Duration.seconds(1)))
    }).pipe(Effect.provide(TimeoutsLive)))

  it.effect("the duration is read when the call starts, so a table provided closer to the call wins", () =>
    Effect.gen(function*() {
      const guarded = Effect.never.pipe(Timeout.named("report"))
      const fiber = yield* Effect.forkChild(
        guarded.pipe(Effect.provide(Timeouts.layer({ default: "1 second", overrides: { report: "3 seconds" } })))
      )
      yield* settle
      yield* TestClock.adjust("3 seconds")
      assert.isTrue(Duration.equals(expectTimedOut(fiber).after, Duration.seconds(3)))
    }).pipe(Effect.provide(TimeoutsLive)))

  it.effect("Timeouts.resolve returns the duration a name gets", () =>
    Effect.gen(function*() {
      assert.strictEqual(Duration.toMillis(yield* Timeouts.resolve("report")), 120_000)
      assert.strictEqual(Duration.toMillis(yield* Timeouts.resolve("anything")), 10_000)
    }).pipe(Effect.provide(TimeoutsLive)))

  it.effect("Timeouts.make gives a table that can be provided by hand", () =>
    Effect.gen(function*() {
      const table = yield* Timeouts.make({ default: 50 })
      assert.strictEqual(Duration.toMillis(table.resolve("x")), 50)
      const fiber = yield* Effect.forkChild(
        Effect.never.pipe(Timeout.named("x"), Effect.provideService(Timeouts.Timeouts, table))
      )
      yield* settle
      yield* TestClock.adjust("50 millis")
      expectTimedOut(fiber)
    }))
})

// -----------------------------------------------------------------------------
// 3. types
// -----------------------------------------------------------------------------

describe("the types are exact: only a guard that needs the Timeouts service requires it", () => {
  it("fixed guards add TimeoutExceeded to E and nothing to R; named guards add Timeouts to R", () => {
    const self = Effect.fail(new Boom({ label: "t" })) as Effect.Effect<number, Boom, "Env">
    expectTypeOf(self.pipe(Timeout.guard("1 second"))).toEqualTypeOf<Effect.Effect<number, Boom | TimeoutExceeded, "Env">>()
    expectTypeOf(self.pipe(Timeout.guard({ name: "n", after: 5 }))).toEqualTypeOf<
      Effect.Effect<number, Boom | TimeoutExceeded, "Env">
    >()
    expectTypeOf(Timeout.guard(self, Duration.seconds(1))).toEqualTypeOf<Effect.Effect<number, Boom | TimeoutExceeded, "Env">>()
    expectTypeOf(self.pipe(Timeout.guard({ name: "n" }))).toEqualTypeOf<
      Effect.Effect<number, Boom | TimeoutExceeded, "Env" | Timeouts.Timeouts>
    >()
    expectTypeOf(self.pipe(Timeout.named("n"))).toEqualTypeOf<
      Effect.Effect<number, Boom | TimeoutExceeded, "Env" | Timeouts.Timeouts>
    >()
    expectTypeOf(Timeout.named(self, "n")).toEqualTypeOf<
      Effect.Effect<number, Boom | TimeoutExceeded, "Env" | Timeouts.Timeouts>
    >()
    expectTypeOf(TimeoutsLive).toEqualTypeOf<Layer.Layer<Timeouts.Timeouts, InvalidOptions>>()
  })
})

// -----------------------------------------------------------------------------
// 4. invalid options
// -----------------------------------------------------------------------------

describe("invalid options: a bad per-call option dies naming it; a bad table fails with InvalidOptions", () => {
  const defectMessage = (exit: Exit.Exit<unknown, unknown>): string => {
    assert.isTrue(Exit.isFailure(exit))
    const defect = Cause.squash((exit as Exit.Failure<unknown, unknown>).cause)
    assert.instanceOf(defect, Error)
    return (defect as Error).message
  }

  it.effect("a negative, malformed or infinite `after`, or an empty name, dies before running the call", () =>
    Effect.gen(function*() {
      const { effect, log } = hanging()
      const negative = yield* Effect.exit(effect.pipe(Timeout.guard(-1)))
      assert.strictEqual(defectMessage(negative), `Timeout.guard: option "after" must be a finite duration >= 0, got -1`)
      const malformed = yield* Effect.exit(effect.pipe(Timeout.guard({ name: "x", after: "soon" as Duration.Input })))
      assert.strictEqual(defectMessage(malformed), `Timeout.guard: option "after" must be a finite duration >= 0, got "soon"`)
      const infinite = yield* Effect.exit(Timeout.guard(effect, "Infinity"))
      assert.include(defectMessage(infinite), `option "after"`)
      const empty = yield* Effect.exit(effect.pipe(Timeout.guard({ name: " ", after: 5 })))
      assert.strictEqual(defectMessage(empty), `Timeout.guard: option "name" must be a non-empty string, got " "`)
      const emptyNamed = yield* Effect.exit(effect.pipe(Timeout.named(""), Effect.provide(TimeoutsLive)))
      assert.include(defectMessage(emptyNamed), `option "name"`)
      assert.deepStrictEqual(log, [], "the call never started")
    }))

  it.effect("Timeouts.layer reports every bad field in one InvalidOptions", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Effect.void.pipe(
          Effect.provide(Timeouts.layer({ default: "soon" as Duration.Input, overrides: { report: -5, ok: "1 second" }, maxNames: 0 }))
        )
      )
      assert.instanceOf(error, InvalidOptions)
      assert.strictEqual(error.primitive, "Timeouts")
      assert.strictEqual(
        error.message,
        [
          `default: Expected a duration such as "2 seconds" or a number of milliseconds, got "soon"`,
          "overrides.report: Expected a duration >= 0, got -5",
          "maxNames: Expected an integer >= 1, got 0"
        ].join("\n")
      )
    }))

  it.effect("a missing default and unknown fields are reported too", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Timeouts.make({ overrides: {}, defualt: "1 second" } as unknown as Timeouts.Options))
      assert.include(error.message, "default:")
      assert.include(error.message, "defualt:")
    }))
})

// -----------------------------------------------------------------------------
// 5. stats, metrics, events
// -----------------------------------------------------------------------------

describe("the Timeouts table counts calls and expirations per name", () => {
  const read = (registry: Metric.MetricRegistry) => Metric.snapshot.pipe(Effect.provideService(Metric.MetricRegistry, registry))
  const counter = (s: ReadonlyArray<Metric.Metric.Snapshot>, id: string, name: string): number => {
    const found = s.filter((m) => m.id === id && JSON.stringify(m.attributes) === JSON.stringify({ name }))
    assert.strictEqual(found.length, 1, `one series ${id} ${name}`)
    assert.strictEqual(found[0].type, "Counter")
    return Number((found[0].state as Metric.CounterState<number>).count)
  }

  it.effect("stats: calls and expirations by name, including guards with a fixed duration", () =>
    Effect.gen(function*() {
      const slow = yield* Effect.forkChild(Effect.never.pipe(Timeout.named("report")))
      const fast = yield* Effect.forkChild(Effect.sleep("1 second").pipe(Timeout.named("report")))
      const fixed = yield* Effect.forkChild(Effect.never.pipe(Timeout.guard({ name: "fixed", after: "5 seconds" })))
      const anonymous = yield* Effect.forkChild(Effect.never.pipe(Timeout.guard("5 seconds")))
      yield* settle
      yield* TestClock.adjust("2 minutes")
      for (const fiber of [slow, fixed, anonymous]) expectTimedOut(fiber)
      yield* Fiber.join(fast)
      const s = yield* Timeouts.stats
      assert.deepStrictEqual([s.calls, s.expired], [4, 3])
      assert.deepStrictEqual(
        s.names.map((n) => [n.name, n.calls, n.expired, Duration.toMillis(n.after)]),
        [["report", 2, 1, 120_000], ["fixed", 1, 1, 10_000], ["<unnamed>", 1, 1, 10_000]]
      )
      assert.strictEqual(Duration.toMillis(s.default), 10_000)
    }).pipe(Effect.provide(TimeoutsLive)))

  it.effect("metrics bulwark.timeout.calls and .expired, labelled by name only, removed with the table", () =>
    Effect.gen(function*() {
      const registry: Metric.MetricRegistry = new Map()
      const scope = yield* Scope.make()
      const table = yield* Timeouts.make({ default: "1 second", overrides: { report: "2 seconds" } }).pipe(
        Scope.provide(scope),
        Effect.provideService(Metric.MetricRegistry, registry)
      )
      let s = yield* read(registry)
      // configured names have series before their first call
      assert.strictEqual(counter(s, "bulwark.timeout.calls", "report"), 0)
      assert.strictEqual(counter(s, "bulwark.timeout.expired", "report"), 0)
      const provideTable = Effect.provideService(Timeouts.Timeouts, table)
      const a = yield* Effect.forkChild(Effect.never.pipe(Timeout.named("report"), provideTable))
      const b = yield* Effect.forkChild(Effect.never.pipe(Timeout.named("profile"), provideTable))
      yield* Effect.succeed(1).pipe(Timeout.named("profile"), provideTable)
      yield* settle
      yield* TestClock.adjust("2 seconds")
      expectTimedOut(a)
      expectTimedOut(b)
      s = yield* read(registry)
      assert.strictEqual(counter(s, "bulwark.timeout.calls", "report"), 1)
      assert.strictEqual(counter(s, "bulwark.timeout.expired", "report"), 1)
      assert.strictEqual(counter(s, "bulwark.timeout.calls", "profile"), 2)
      assert.strictEqual(counter(s, "bulwark.timeout.expired", "profile"), 1)
      for (const m of s.filter((m) => m.id.startsWith("bulwark.timeout."))) {
        assert.deepStrictEqual(Object.keys(m.attributes ?? {}), ["name"])
      }
      yield* Scope.close(scope, Exit.void)
      s = yield* read(registry)
      assert.deepStrictEqual(s.filter((m) => m.id.startsWith("bulwark.timeout.")), [])
    }))

  it.effect("beyond maxNames, new names are counted under <other>", () =>
    Effect.gen(function*() {
      for (const name of ["a", "b", "c", "d"]) {
        yield* Effect.void.pipe(Timeout.guard({ name, after: 10 }))
      }
      const s = yield* Timeouts.stats
      assert.deepStrictEqual(s.names.map((n) => [n.name, n.calls]), [["kept", 0], ["a", 1], ["<other>", 3]])
    }).pipe(Effect.provide(Timeouts.layer({ default: 10, overrides: { kept: 20 }, maxNames: 2 }))))

  it.effect("events: one Expired per expiration, nothing for calls in time; the stream ends with the table", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const table = yield* Timeouts.make({ default: "1 second" }).pipe(Scope.provide(scope))
      const provideTable = Effect.provideService(Timeouts.Timeouts, table)
      const collected = yield* Effect.forkChild(Stream.runCollect(Timeouts.events()).pipe(provideTable))
      yield* settle
      yield* Effect.void.pipe(Timeout.named("ok"), provideTable)
      const late = yield* Effect.forkChild(Effect.never.pipe(Timeout.named("late"), provideTable))
      yield* settle
      yield* TestClock.adjust("1 second")
      expectTimedOut(late)
      yield* Scope.close(scope, Exit.void)
      const events = yield* Fiber.join(collected)
      assert.deepStrictEqual(
        Array.from(events, (e) => [e._tag, e.name, Duration.toMillis(e.after)]),
        [["Expired", "late", 1000]]
      )
    }))
})
