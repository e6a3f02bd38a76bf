/**
 * `Retry.make` builds a named instance from the same options as a policy:
 * bad options fail with a typed `InvalidOptions`, and the instance counts
 * calls, attempts, retries, successes after retry, exhaustion and budget
 * refusals (`stats`, pull-based metrics `bulwark.retry.*`) and reports its
 * decisions on an `events` stream.
 */
import { Retry } from "@bulwark/core"
import { Data, Duration, Effect, Fiber, Metric, Stream } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

class Unavailable extends Data.TaggedError("Unavailable") {}

export const program = Effect.gen(function*() {
  const retry = yield* Retry.make({ name: "inventory", maxAttempts: 3, base: "5 millis", jitter: "none" })
  const events = yield* Effect.forkChild(Retry.events(retry).pipe(Stream.take(3), Stream.runCollect), {
    startImmediately: true
  })

  let calls = 0
  const flaky = Effect.suspend(() => (++calls % 2 === 1 ? Effect.fail(new Unavailable()) : Effect.succeed(calls)))
  yield* flaky.pipe(Retry.guard(retry)) // fails once, then succeeds
  yield* Effect.flip(Effect.fail(new Unavailable()).pipe(Retry.guard(retry))) // fails 3 times: exhausted

  const seen = Array.from(yield* Fiber.join(events), (e) =>
    e._tag === "Retrying" ? `retry after attempt ${e.attempt} in ${Duration.format(e.delay)}` : `${e._tag} after ${e.attempts}`)
  assert.deepEqual(seen, ["retry after attempt 1 in 5ms", "retry after attempt 1 in 5ms", "retry after attempt 2 in 10ms"])

  const stats = yield* Retry.stats(retry)
  assert.deepEqual(
    [stats.calls, stats.attempts, stats.retries, stats.succeededAfterRetry, stats.exhausted.MaxAttempts],
    [2, 5, 3, 1, 1]
  )

  const metrics = yield* Metric.snapshot
  const retries = metrics.find((m) => m.id === "bulwark.retry.retries" && m.attributes?.name === "inventory")
  assert.deepEqual(retries?.state, { count: 3, incremental: true })
  return stats
}).pipe(Effect.scoped) // closing the scope removes the metrics and ends the events stream

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
