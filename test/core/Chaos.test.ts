import { assert, describe, expectTypeOf, it } from "@effect/vitest"
import { Chaos, InvalidOptions } from "@bulwark/core"
import { Cause, Data, Effect, Exit, Fiber, Random, Schema } from "effect"
import { TestClock } from "effect/testing"

class Unavailable extends Data.TaggedError("Unavailable")<{ readonly n: number }> {}

/** Lets every fiber that is ready run. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 10; i++) yield* Effect.yieldNow
})

const isDone = (fiber: Fiber.Fiber<unknown, unknown>): boolean => fiber.pollUnsafe() !== undefined

/** Runs `guarded` `n` times in sequence and says which calls were hit ("x") and which ran ("."). */
const pattern = <E>(n: number, guarded: (ran: () => void) => Effect.Effect<unknown, E>) =>
  Effect.gen(function*() {
    let out = ""
    for (let i = 0; i < n; i++) {
      let ran = false
      const exit = yield* Effect.exit(guarded(() => (ran = true)))
      out += ran && Exit.isSuccess(exit) ? "." : "x"
    }
    return out
  })

const call = (ran: () => void) => Effect.sync(ran)

/** The defect of a guard built with bad options. */
const invalid = (exit: Exit.Exit<unknown, unknown>): InvalidOptions => {
  assert.isTrue(Exit.isFailure(exit))
  const defect = Cause.squash((exit as Exit.Failure<unknown, unknown>).cause)
  assert.instanceOf(defect, InvalidOptions)
  return defect as InvalidOptions
}

describe("a seeded Random fixes the injection sequence", () => {
  // Random.withSeed("chaos") draws 0.858 0.389 0.579 0.810 0.268 0.306 0.688 0.073 0.181 0.326 ...
  it.effect("fault at rate 0.3 hits exactly the calls whose draw is below 0.3", () =>
    Effect.gen(function*() {
      const run = pattern(10, (ran) => call(ran).pipe(Chaos.fault({ rate: 0.3, error: "down" })))
      assert.strictEqual(yield* run.pipe(Random.withSeed("chaos")), "....x..xx.")
      // The same seed, the same faults.
      assert.strictEqual(yield* run.pipe(Random.withSeed("chaos")), "....x..xx.")
      // Another seed, another sequence.
      const long = pattern(40, (ran) => call(ran).pipe(Chaos.fault({ rate: 0.3, error: "down" })))
      assert.notStrictEqual(yield* long.pipe(Random.withSeed("other")), yield* long.pipe(Random.withSeed("chaos")))
    }))

  it.effect("each guard draws exactly one number per call", () =>
    Effect.gen(function*() {
      const draws = yield* Effect.gen(function*() {
        yield* call(() => {}).pipe(Chaos.fault({ rate: 0.3, error: "down" }), Effect.exit)
        yield* call(() => {}).pipe(Chaos.outcome({ rate: 0, outcome: "defect" }))
        return yield* Random.next
      }).pipe(Random.withSeed("chaos"))
      assert.strictEqual(draws.toFixed(3), "0.579")
    }))

  it.effect("the failure is the given error, or a new one from the function on each injection", () =>
    Effect.gen(function*() {
      let n = 0
      const guarded = Effect.succeed("rows").pipe(Chaos.fault({ rate: 1, error: () => new Unavailable({ n: ++n }) }))
      expectTypeOf(guarded).toEqualTypeOf<Effect.Effect<string, Unavailable>>()
      assert.deepStrictEqual(yield* Effect.flip(guarded), new Unavailable({ n: 1 }))
      assert.deepStrictEqual(yield* Effect.flip(guarded), new Unavailable({ n: 2 }))
      const value = Chaos.fault(Effect.succeed(1), { rate: 1, error: "down" as const })
      expectTypeOf(value).toEqualTypeOf<Effect.Effect<number, "down">>()
      assert.strictEqual(yield* Effect.flip(value), "down")
    }))

  it.effect("outcome injects a defect or an interruption instead of running the call", () =>
    Effect.gen(function*() {
      let ran = 0
      const work = Effect.sync(() => ++ran)
      const died = yield* Effect.exit(work.pipe(Chaos.outcome({ name: "db", rate: 1, outcome: "defect" })))
      assert.isTrue(Exit.isFailure(died) && Cause.hasDies(died.cause))
      assert.strictEqual((Cause.squash((died as Exit.Failure<number, never>).cause) as Error).message, `Chaos "db": injected defect`)
      const custom = yield* Effect.exit(Chaos.outcome(work, { rate: 1, outcome: "defect", defect: () => new RangeError("bad row") }))
      assert.instanceOf(Cause.squash((custom as Exit.Failure<number, never>).cause), RangeError)
      const interrupted = yield* Effect.exit(work.pipe(Chaos.outcome({ rate: 1, outcome: "interrupt" })))
      assert.isTrue(Exit.isFailure(interrupted) && Cause.hasInterruptsOnly(interrupted.cause))
      assert.strictEqual(ran, 0)
    }))
})

describe("rate 0 never injects, rate 1 always does", () => {
  for (const seed of ["a", "b", "c"]) {
    it.effect(`seed ${seed}`, () =>
      Effect.gen(function*() {
        const never = yield* pattern(200, (ran) =>
          call(ran).pipe(
            Chaos.fault({ rate: 0, error: "down" }),
            Chaos.outcome({ rate: 0, outcome: "interrupt" }),
            Chaos.latency({ rate: 0, delay: "1 hour" })
          ))
        assert.strictEqual(never, ".".repeat(200))
        assert.strictEqual(yield* pattern(200, (ran) => call(ran).pipe(Chaos.fault({ rate: 1, error: "down" }))), "x".repeat(200))
        assert.strictEqual(yield* pattern(200, (ran) => call(ran).pipe(Chaos.outcome({ rate: 1, outcome: "defect" }))), "x".repeat(200))
      }).pipe(Random.withSeed(seed)))
  }
})

describe("latency sleeps on Effect's Clock", () => {
  it.effect("the delayed call moves only with TestClock.adjust", () =>
    Effect.gen(function*() {
      let ran = false
      const fiber = yield* Effect.sync(() => (ran = true)).pipe(
        Chaos.latency({ rate: 1, delay: "2 seconds" }),
        Effect.forkChild
      )
      yield* settle
      assert.isFalse(ran)
      yield* TestClock.adjust("1999 millis")
      yield* settle
      assert.isFalse(ran)
      assert.isFalse(isDone(fiber))
      yield* TestClock.adjust("1 milli")
      assert.isTrue(yield* Fiber.join(fiber))
    }))

  it.effect("a call not hit runs at once", () =>
    Effect.gen(function*() {
      const fiber = yield* Effect.succeed(1).pipe(Chaos.latency({ rate: 0, delay: 60_000 }), Effect.forkChild)
      yield* settle
      assert.isTrue(isDone(fiber))
    }))

  it.effect("the seeded sequence decides which calls wait", () =>
    Effect.gen(function*() {
      const fibers = []
      for (let i = 0; i < 10; i++) {
        fibers.push(yield* Effect.succeed(i).pipe(Chaos.latency({ rate: 0.3, delay: "1 second" }), Effect.forkChild))
      }
      yield* settle
      assert.strictEqual(fibers.map((f) => (isDone(f) ? "." : "x")).join(""), "....x..xx.")
      yield* TestClock.adjust("1 second")
      yield* settle
      assert.isTrue(fibers.every(isDone))
    }).pipe(Random.withSeed("chaos")))
})

describe("the Enabled switch turns every guard off", () => {
  const guarded = (ran: () => void) =>
    call(ran).pipe(
      Chaos.fault({ rate: 1, error: "down" }),
      Chaos.outcome({ rate: 1, outcome: "interrupt" }),
      Chaos.latency({ rate: 1, delay: "1 hour" })
    )

  it.effect("on by default", () =>
    Effect.gen(function*() {
      assert.isTrue(yield* Chaos.Enabled)
      assert.strictEqual(yield* pattern(3, (ran) => call(ran).pipe(Chaos.fault({ rate: 1, error: "down" }))), "xxx")
    }))

  it.effect("withEnabled(false), provideService and layerEnabled(false) disable injection", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* pattern(5, guarded).pipe(Chaos.withEnabled(false)), ".....")
      assert.strictEqual(yield* Chaos.withEnabled(pattern(5, guarded), false), ".....")
      assert.strictEqual(yield* pattern(5, guarded).pipe(Effect.provideService(Chaos.Enabled, false)), ".....")
      assert.strictEqual(yield* pattern(5, guarded).pipe(Effect.provide(Chaos.layerEnabled(false))), ".....")
      assert.strictEqual(yield* pattern(2, (ran) => call(ran).pipe(Chaos.fault({ rate: 1, error: "down" }))).pipe(Effect.provide(Chaos.layerEnabled(true))), "xx")
    }))

  it.effect("a disabled guard draws nothing from Random", () =>
    Effect.gen(function*() {
      const next = yield* Effect.gen(function*() {
        yield* pattern(5, guarded).pipe(Chaos.withEnabled(false))
        return yield* Random.next
      }).pipe(Random.withSeed("chaos"))
      assert.strictEqual(next.toFixed(3), "0.858")
    }))
})

describe("invalid options: every call dies with InvalidOptions naming the option", () => {
  it.effect("rate outside [0, 1]", () =>
    Effect.gen(function*() {
      for (const rate of [-0.1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
        const e = invalid(yield* Effect.exit(Effect.void.pipe(Chaos.fault({ name: "db", rate, error: "down" }))))
        assert.strictEqual(e.primitive, "Chaos.fault")
        assert.strictEqual(e.name, "db")
        assert.include(e.message, "rate: Expected a probability between 0 and 1")
      }
    }))

  it.effect("negative or malformed delay", () =>
    Effect.gen(function*() {
      const e = invalid(yield* Effect.exit(Effect.void.pipe(Chaos.latency({ rate: 0.5, delay: -5 }))))
      assert.strictEqual(e.primitive, "Chaos.latency")
      assert.strictEqual(e.name, "<unnamed>")
      assert.strictEqual(e.message, "delay: Expected a duration >= 0, got -5")
      const bad = invalid(yield* Effect.exit(Chaos.latency(Effect.void, { rate: 0.5, delay: "soon" as any })))
      assert.include(bad.message, "delay: Expected a duration")
    }))

  it.effect("every bad field is reported at once, unknown fields included", () =>
    Effect.gen(function*() {
      const e = invalid(yield* Effect.exit(Effect.void.pipe(Chaos.latency({ rate: 2, delay: -1, jitter: 1 } as any))))
      assert.include(e.message, "rate: ")
      assert.include(e.message, "delay: ")
      assert.include(e.message, "jitter: ")
      const o = invalid(yield* Effect.exit(Effect.void.pipe(Chaos.outcome({ rate: 0.5, outcome: "explode" } as any))))
      assert.strictEqual(o.primitive, "Chaos.outcome")
      assert.include(o.message, "outcome: ")
      const f = invalid(yield* Effect.exit(Effect.void.pipe(Chaos.fault({ rate: 0.5 } as any))))
      assert.include(f.message, "error: Missing key")
    }))

  it.effect("the guarded call is not run", () =>
    Effect.gen(function*() {
      let ran = false
      yield* Effect.exit(Effect.sync(() => (ran = true)).pipe(Chaos.fault({ rate: 7, error: "down" })))
      assert.isFalse(ran)
    }))
})

describe("property: the injection frequency tracks rate", () => {
  const calls = 2000
  it.effect.prop(
    "over 2000 seeded calls, the share of hits is within 0.05 of rate",
    {
      rate: Schema.Number.check(Schema.isBetween({ minimum: 0, maximum: 1 })),
      seed: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 1_000_000 }))
    },
    ({ rate, seed }) =>
      Effect.gen(function*() {
        let hits = 0
        for (let i = 0; i < calls; i++) {
          const exit = yield* Effect.exit(Effect.void.pipe(Chaos.fault({ rate, error: "down" })))
          if (Exit.isFailure(exit)) hits++
        }
        assert.isAtMost(Math.abs(hits / calls - rate), 0.05, `rate ${rate}, seed ${seed}: ${hits} hits`)
        if (rate === 0) assert.strictEqual(hits, 0)
        if (rate === 1) assert.strictEqual(hits, calls)
      }).pipe(Random.withSeed(seed)),
    { arbitrary: { runs: 40, seed: 4 } }
  )
})
