import { assert, describe, expectTypeOf, it } from "@effect/vitest"
import { Fallback, InvalidOptions } from "@bulwark/core"
import { Cause, Data, Effect, Exit } from "effect"

class BulkheadFull extends Data.TaggedError("BulkheadFull") {}
class CircuitOpen extends Data.TaggedError("CircuitOpen") {}
class HttpError extends Data.TaggedError("HttpError")<{ readonly status: number }> {}
class CacheMiss extends Data.TaggedError("CacheMiss") {}

const failWith = (e: BulkheadFull | CircuitOpen | HttpError): Effect.Effect<string, BulkheadFull | CircuitOpen | HttpError> =>
  Effect.fail(e)
const cached: Effect.Effect<string, CacheMiss> = Effect.succeed("cached")

const invalid = (exit: Exit.Exit<unknown, unknown>): InvalidOptions => {
  assert.isTrue(Exit.isFailure(exit))
  const defect = Cause.squash((exit as Exit.Failure<unknown, unknown>).cause)
  assert.instanceOf(defect, InvalidOptions)
  return defect as InvalidOptions
}

describe("Fallback rule: chosen by tag, exactly typed", () => {
  it.effect("a matched tag runs the fallback; the tag leaves E and the fallback's E joins it", () =>
    Effect.gen(function*() {
      const guarded = failWith(new BulkheadFull()).pipe(Fallback.onTag("BulkheadFull", () => cached))
      expectTypeOf(guarded).toEqualTypeOf<Effect.Effect<string, CircuitOpen | HttpError | CacheMiss>>()
      assert.strictEqual(yield* guarded, "cached")
    }))

  it.effect("several tags, data-first; the handler sees only the matched types", () =>
    Effect.gen(function*() {
      const guarded = Fallback.onTag(failWith(new CircuitOpen()), ["BulkheadFull", "CircuitOpen"], (e) => {
        expectTypeOf(e).toEqualTypeOf<BulkheadFull | CircuitOpen>()
        return Effect.succeed(e._tag.length)
      })
      expectTypeOf(guarded).toEqualTypeOf<Effect.Effect<string | number, HttpError>>()
      assert.strictEqual(yield* guarded, "CircuitOpen".length)
    }))

  it.effect("unmatched errors pass through unchanged", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(failWith(new HttpError({ status: 503 })).pipe(Fallback.onTag("BulkheadFull", () => cached)))
      assert.deepStrictEqual(error, new HttpError({ status: 503 }))
    }))

  it.effect("the fallback's own failure is the call's failure", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(failWith(new BulkheadFull()).pipe(Fallback.onTag("BulkheadFull", () => Effect.fail(new CacheMiss()))))
      assert.deepStrictEqual(error, new CacheMiss())
    }))

  it.effect("defects pass through", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(Effect.die("bug").pipe(Effect.andThen(failWith(new BulkheadFull())), Fallback.onTag("BulkheadFull", () => cached)))
      assert.isTrue(Exit.isFailure(exit) && Cause.hasDies(exit.cause))
    }))
})

describe("Fallback rule: chosen by predicate", () => {
  it.effect("a refinement removes the refined type from E", () =>
    Effect.gen(function*() {
      const guarded = failWith(new HttpError({ status: 500 })).pipe(
        Fallback.when((e): e is HttpError => e._tag === "HttpError", (e) => Effect.succeed(e.status))
      )
      expectTypeOf(guarded).toEqualTypeOf<Effect.Effect<string | number, BulkheadFull | CircuitOpen>>()
      assert.strictEqual(yield* guarded, 500)
    }))

  it.effect("a plain predicate keeps E; a rejected error passes through", () =>
    Effect.gen(function*() {
      const http = (status: number): Effect.Effect<string, HttpError> => Effect.fail(new HttpError({ status }))
      const guarded = (status: number) => http(status).pipe(Fallback.when((e) => e.status >= 500, () => cached))
      expectTypeOf(guarded(503)).toEqualTypeOf<Effect.Effect<string, HttpError | CacheMiss>>()
      assert.strictEqual(yield* guarded(503), "cached")
      assert.deepStrictEqual(yield* Effect.flip(guarded(404)), new HttpError({ status: 404 }))
      assert.strictEqual(yield* Fallback.when(http(500), (e) => e.status === 500, () => Effect.succeed("dfirst")), "dfirst")
    }))
})

describe("Fallback rule: bad arguments make every call die with InvalidOptions naming them", () => {
  it.effect("an empty tag list and a fallback that is not a function", () =>
    Effect.gen(function*() {
      const e = invalid(yield* Effect.exit((Fallback.onTag as any)([], "x")(failWith(new BulkheadFull())) as Effect.Effect<unknown, unknown>))
      assert.strictEqual(e.primitive, "Fallback.onTag")
      assert.include(e.message, "tags: Expected at least one tag")
      assert.include(e.message, "fallback: Expected a function")
    }))

  it.effect("a predicate that is not a function", () =>
    Effect.gen(function*() {
      const e = invalid(yield* Effect.exit((Fallback.when as any)(null, () => cached)(Effect.succeed(1)) as Effect.Effect<unknown, unknown>))
      assert.strictEqual(e.primitive, "Fallback.when")
      assert.include(e.message, "predicate: Expected a function")
    }))
})
