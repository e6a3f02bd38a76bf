/**
 * A server that answers 429 or 503 with `Retry-After` knows better than any
 * local algorithm: `RateLimiter.block` keeps every call out until then (reason
 * `Blocked`). Callers that may wait, and whose `maxWait` covers the block,
 * wait for its end instead.
 */
import { RateLimiter } from "@bulwark/core"
import { Clock, Duration, Effect } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

interface Response {
  readonly status: number
  readonly retryAfterSeconds?: number
}

export const program = Effect.gen(function*() {
  const partner = yield* RateLimiter.make({
    name: "partner-api",
    algorithm: RateLimiter.fixedWindow({ limit: 100, window: "1 minute" })
  })
  // The partner is over its own quota and says so.
  const callPartner = Effect.succeed<Response>({ status: 429, retryAfterSeconds: 120 }).pipe(
    RateLimiter.guard(partner),
    Effect.tap((response) =>
      response.status === 429 && response.retryAfterSeconds !== undefined
        ? RateLimiter.block(partner, Duration.seconds(response.retryAfterSeconds))
        : Effect.void
    )
  )
  assert.equal((yield* callPartner).status, 429)

  // Nothing passes for two minutes: calls fail at once, saying how long is left.
  const blocked = yield* Effect.flip(callPartner)
  assert.equal(blocked.reason, "Blocked")
  assert.ok(Duration.toSeconds(blocked.retryAfter) > 119 && Duration.toSeconds(blocked.retryAfter) <= 120)
  assert.ok(Duration.toSeconds((yield* RateLimiter.stats(partner)).blockedFor) > 119)

  // A limiter whose callers may wait: a short block just delays them.
  const patient = yield* RateLimiter.make({
    name: "patient",
    algorithm: RateLimiter.fixedWindow({ limit: 100, window: "1 minute" }),
    onExceeded: "wait",
    maxWait: "1 second"
  })
  const start = yield* Clock.currentTimeMillis
  yield* RateLimiter.block(patient, "200 millis")
  const ranAt = yield* Clock.currentTimeMillis.pipe(RateLimiter.guard(patient))
  assert.ok(ranAt - start >= 200)
  return blocked.message
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
