/**
 * `RateLimiter.consume` takes units without running anything and returns what
 * a server needs for `RateLimit-*` response headers; a refusal gives the
 * `Retry-After`.
 */
import { RateLimiter } from "@bulwark/core"
import { Duration, Effect } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

interface Response {
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
}

export const program = Effect.gen(function*() {
  const api = yield* RateLimiter.make({
    name: "public-api",
    algorithm: RateLimiter.fixedWindow({ limit: 3, window: "1 hour" })
  })
  const seconds = (d: Duration.Duration) => String(Math.ceil(Duration.toSeconds(d)))
  const respond: Effect.Effect<Response> = RateLimiter.consume(api).pipe(
    Effect.map((permit) => ({
      status: 200,
      headers: {
        "RateLimit-Limit": String(permit.limit),
        "RateLimit-Remaining": String(permit.remaining),
        "RateLimit-Reset": seconds(permit.resetAfter)
      }
    })),
    Effect.catchTag("RateLimited", (refused) =>
      Effect.succeed({ status: 429, headers: { "Retry-After": seconds(refused.retryAfter) } }))
  )

  const responses = yield* Effect.all([respond, respond, respond, respond])
  assert.deepEqual(responses.map((r) => r.status), [200, 200, 200, 429])
  assert.deepEqual(responses.slice(0, 3).map((r) => r.headers["RateLimit-Remaining"]), ["2", "1", "0"])
  const reset = Number(responses[0].headers["RateLimit-Reset"])
  assert.ok(reset > 0 && reset <= 3600) // the window ends at the next full hour
  assert.equal(responses[3].headers["Retry-After"], responses[2].headers["RateLimit-Reset"])
  return responses
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
