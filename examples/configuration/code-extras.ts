/**
 * Settings are data; what is code comes as extras to `fromSettings`: a
 * `fallback` and a `retryWhile` predicate. Which stages a policy has is only
 * known at run time, so its error type is every `Policy.Rejection`, whatever
 * the settings hold; a fallback replaces them all, as in `Policy.make`.
 */
import { Policy } from "@bulwark/core"
import { ConfigProvider, Data, Effect } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

class NotFound extends Data.TaggedError("NotFound") {}
class Unavailable extends Data.TaggedError("Unavailable") {}

const provider = ConfigProvider.fromUnknown({
  prices: { timeout: "1 second", retry: { maxAttempts: 3, baseDelay: "1 millis" } }
})

export const program = Effect.gen(function*() {
  const settings = yield* Policy.config("prices").parse(provider)

  // Without a fallback: the call's errors and every rejection, even those of stages these settings lack.
  const prices = yield* Policy.fromSettings("prices", settings, {
    retryWhile: (error) => !(error instanceof NotFound) // a missing price will not appear on retry
  })
  let attempts = 0
  const lookup = (item: string): Effect.Effect<number, NotFound | Unavailable> =>
    Effect.suspend((): Effect.Effect<number, NotFound | Unavailable> => {
      attempts++
      return item === "unknown" ? Effect.fail(new NotFound()) : attempts < 2 ? Effect.fail(new Unavailable()) : Effect.succeed(3)
    })
  const price = (item: string): Effect.Effect<number, NotFound | Unavailable | Policy.Rejection> =>
    lookup(item).pipe(Policy.guard(prices))
  // All four rejections are in E (catchTags refuses a tag that is not), and handling them leaves the call's own.
  const handled: Effect.Effect<number, NotFound | Unavailable> = price("apple").pipe(
    Effect.catchTags({ BulkheadFull: Effect.die, CircuitOpen: Effect.die, RateLimited: Effect.die, TimeoutExceeded: Effect.die })
  )
  assert.equal(yield* handled, 3)
  assert.equal(attempts, 2) // Unavailable was retried

  attempts = 0
  assert.equal((yield* Effect.flip(price("unknown")))._tag, "NotFound")
  assert.equal(attempts, 1) // NotFound was not

  // With a fallback: its errors are the only ones left.
  const cached = yield* Policy.fromSettings("cached-prices", settings, { fallback: Effect.succeed(-1) })
  const orCached: Effect.Effect<number> = lookup("unknown").pipe(Policy.guard(cached))
  assert.equal(yield* orCached, -1)
  return "ok"
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
