/**
 * One limit per user from one policy: a user who exhausts their allowance is
 * refused there, while everyone else keeps theirs. At most `maxKeys` users
 * have state at once, and keys stay out of errors and metrics unless
 * `exposeKeys: true`.
 */
import { KeyedRateLimiter, RateLimiter } from "@bulwark/core"
import { Effect } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

export const program = Effect.gen(function*() {
  const perUser = yield* KeyedRateLimiter.make({
    name: "search",
    algorithm: RateLimiter.slidingWindow({ limit: 2, window: "1 hour" }),
    maxKeys: 10_000
  })
  const search = (user: string) => Effect.succeed(`results for ${user}`).pipe(KeyedRateLimiter.guard(perUser, user))

  assert.equal(yield* search("alice"), "results for alice")
  assert.equal(yield* search("alice"), "results for alice")
  const refused = yield* Effect.flip(search("alice"))
  assert.deepEqual([refused.reason, refused.name], ["Exceeded", "search"])
  assert.equal("key" in refused, false) // the user id is not in the error

  // Bob has his own allowance.
  assert.equal(yield* search("bob"), "results for bob")

  const stats = yield* KeyedRateLimiter.stats(perUser)
  assert.deepEqual([stats.keys, stats.admitted, stats.rejected.Exceeded], [2, 3, 1])
  return `${stats.keys} users, ${stats.admitted} searches, ${stats.rejected.Exceeded} refused`
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
