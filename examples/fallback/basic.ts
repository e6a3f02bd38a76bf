/**
 * `Fallback.onTag` answers with another effect when the call fails with one
 * of the tags you name; `Fallback.when` does the same for errors a predicate
 * accepts. The matched errors leave the error channel, the fallback's own
 * errors join it, and everything else passes through.
 */
import { Bulkhead, Fallback } from "@bulwark/core"
import { Data, Effect, Fiber } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

class HttpError extends Data.TaggedError("HttpError")<{ readonly status: number }> {}
class CacheMiss extends Data.TaggedError("CacheMiss") {}

export const program = Effect.scoped(Effect.gen(function*() {
  const pool = yield* Bulkhead.make({ name: "prices", maxConcurrent: 1 })
  const cache = new Map([["apple", 1]])
  const fromCache = (item: string): Effect.Effect<number, CacheMiss> =>
    cache.has(item) ? Effect.succeed(cache.get(item)!) : Effect.fail(new CacheMiss())

  const price = (item: string, fetch: Effect.Effect<number, HttpError>) =>
    fetch.pipe(
      Bulkhead.guard(pool),                                                      // E = HttpError | BulkheadFull
      Fallback.onTag("BulkheadFull", () => fromCache(item)),                     // E = HttpError | CacheMiss
      Fallback.when((e) => e._tag === "HttpError" && e.status >= 500, () => fromCache(item))
    )

  // The pool is busy: the rejection is answered from the cache.
  const busy = yield* Effect.forkChild(Bulkhead.guard(Effect.never, pool))
  yield* Effect.yieldNow
  assert.equal(yield* price("apple", Effect.succeed(2)), 1)
  // ... unless the cache has nothing: the fallback's own error is the result.
  assert.deepEqual(yield* Effect.flip(price("pear", Effect.succeed(2))), new CacheMiss())
  yield* Fiber.interrupt(busy)

  // A server error falls back; a client error passes through untouched.
  assert.equal(yield* price("apple", Effect.fail(new HttpError({ status: 503 }))), 1)
  assert.deepEqual(yield* Effect.flip(price("apple", Effect.fail(new HttpError({ status: 404 })))), new HttpError({ status: 404 }))
  return yield* price("apple", Effect.succeed(2))
}))

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
