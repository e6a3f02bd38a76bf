/**
 * Failures are not cached: a failed call releases its key and the next call
 * with that key runs the effect again (a timeout is worth retrying). With
 * `cacheFailures: { error }`, typed failures that the `error` Schema accepts
 * are stored and replayed like a success (a declined card stays declined);
 * other errors, defects and interruptions are never stored.
 */
import { Idempotency } from "@bulwark/core"
import { Effect, Schema } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

class CardDeclined extends Schema.TaggedError<CardDeclined>()("CardDeclined", { code: Schema.String }) {}
class ProviderTimeout extends Schema.TaggedError<ProviderTimeout>()("ProviderTimeout", {}) {}

export const program = Effect.gen(function*() {
  // Not cached: the second call runs again, and succeeds.
  let calls = 0
  const flaky = Effect.suspend(() => ++calls === 1 ? Effect.fail(new ProviderTimeout()) : Effect.succeed("charged"))
  const options = { ttl: "1 day", result: Schema.String } as const
  assert.equal((yield* Effect.flip(Idempotency.once("order-1", flaky, options)))._tag, "ProviderTimeout")
  assert.equal(yield* Idempotency.once("order-1", flaky, options), "charged")
  assert.equal(calls, 2)

  // Cached: a decline is an answer, not an accident. The replay is a CardDeclined again.
  let attempts = 0
  const decline = Effect.suspend(() => {
    attempts++
    return Effect.fail(new CardDeclined({ code: "insufficient_funds" }))
  })
  const cached = { ttl: "1 day", result: Schema.String, cacheFailures: { error: CardDeclined } } as const
  const first = yield* Effect.flip(Idempotency.once("order-2", decline, cached))
  const replayed = yield* Effect.flip(Idempotency.once("order-2", decline, cached))
  assert.ok(replayed instanceof CardDeclined)
  assert.deepEqual(replayed, first)
  assert.equal(attempts, 1)

  // Only what the Schema accepts is stored: a timeout under the same options is not.
  let tries = 0
  const timesOut = Effect.suspend(() => (++tries, Effect.fail(new ProviderTimeout())))
  yield* Effect.flip(Idempotency.once("order-3", timesOut, cached))
  yield* Effect.flip(Idempotency.once("order-3", timesOut, cached))
  assert.equal(tries, 2)

  const stats = yield* Idempotency.stats(Idempotency.Store)
  assert.deepEqual([stats.replayedFailures, stats.abandoned], [1, 3])
  return stats
}).pipe(Effect.provide(Idempotency.layerMemory()))

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
