/**
 * A token bucket lets a burst through, up to its capacity, then refuses calls
 * at once with a typed `RateLimited` that says when a call could pass again.
 */
import { RateLimiter } from "@bulwark/core"
import { Duration, Effect } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

export const program = Effect.gen(function*() {
  const github = yield* RateLimiter.make({
    name: "github",
    algorithm: RateLimiter.tokenBucket({ capacity: 3, refill: 3, per: "1 hour" })
  })
  const fetchRepo = (n: number) => Effect.succeed(`repo ${n}`).pipe(RateLimiter.guard(github))

  // A burst of three passes at once...
  assert.deepEqual(yield* Effect.all([fetchRepo(1), fetchRepo(2), fetchRepo(3)]), ["repo 1", "repo 2", "repo 3"])

  // ...the fourth is refused, with the time until the next refill (at the next full hour).
  const refused = yield* Effect.flip(fetchRepo(4))
  assert.equal(refused._tag, "RateLimited")
  assert.deepEqual([refused.name, refused.reason, refused.limit], ["github", "Exceeded", 3])
  const retryAfter = Duration.toMillis(refused.retryAfter)
  assert.ok(retryAfter > 0 && retryAfter <= 3_600_000)
  assert.match(refused.message, /^Rate limiter "github" rejected the call: Exceeded \(retry after /)

  // A call that costs more than the bucket can ever hold would never pass, and says so.
  const tooBig = yield* Effect.flip(Effect.void.pipe(RateLimiter.guard(github, { cost: 4 })))
  assert.deepEqual([tooBig.reason, Duration.isFinite(tooBig.retryAfter)], ["Exceeded", false])

  const stats = yield* RateLimiter.stats(github)
  assert.deepEqual([stats.admitted, stats.rejected.Exceeded, stats.remaining], [3, 2, 0])
  return stats.rejected
}).pipe(Effect.scoped) // the limiter lives as long as this scope

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
