/**
 * A `Timeouts` table counts every timeout that runs while it is provided,
 * including guards with a fixed duration (they do not require the table):
 * `stats`, the pull-based metrics `bulwark.timeout.calls` and
 * `bulwark.timeout.expired` (attribute `name`), and an `events` stream of
 * expirations.
 */
import { Timeout, Timeouts } from "@bulwark/core"
import { Duration, Effect, Fiber, Metric, Stream } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

export const program = Effect.gen(function*() {
  const expirations = yield* Effect.forkChild(
    Timeouts.events().pipe(Stream.take(2), Stream.runCollect),
    { startImmediately: true }
  )

  yield* Effect.void.pipe(Timeout.guard({ name: "search", after: "1 second" }))
  yield* Effect.ignore(Effect.never.pipe(Timeout.guard({ name: "search", after: "10 millis" })))
  yield* Effect.ignore(Effect.never.pipe(Timeout.named("checkout")))

  const events = yield* Fiber.join(expirations)
  assert.deepEqual(Array.from(events, (e) => [e._tag, e.name, Duration.toMillis(e.after)]), [
    ["Expired", "search", 10],
    ["Expired", "checkout", 30]
  ])

  const stats = yield* Timeouts.stats
  assert.deepEqual([stats.calls, stats.expired], [3, 2])

  const metrics = yield* Metric.snapshot
  const expired = (name: string) =>
    metrics.find((m) => m.id === "bulwark.timeout.expired" && m.attributes?.name === name)?.state
  assert.deepEqual(expired("search"), { count: 1, incremental: true })
  assert.deepEqual(expired("checkout"), { count: 1, incremental: true })
  return stats
}).pipe(Effect.provide(Timeouts.layer({ default: "30 millis" })))

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
