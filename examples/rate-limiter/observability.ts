/**
 * Stats, events and metrics. Metrics are named `bulwark.ratelimiter.*`,
 * labelled with the limiter's name (and, for rejections, the reason) only;
 * they are read from the limiter's own counters when an exporter asks, so a
 * decision pays nothing for them. Events cost nothing while nobody listens.
 */
import { RateLimiter } from "@bulwark/core"
import { Effect, Fiber, Metric, Stream } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

const show = (metric: Metric.Metric.Snapshot): string => {
  const reason = metric.attributes?.reason === undefined ? "" : `{reason=${metric.attributes.reason}}`
  switch (metric.type) {
    case "Counter":
      return `${metric.id}${reason} ${metric.state.count}`
    case "Gauge":
      return `${metric.id} ${metric.state.value}`
    default:
      return metric.id
  }
}

export const program = Effect.gen(function*() {
  const mail = yield* RateLimiter.make({
    name: "mail",
    algorithm: RateLimiter.fixedWindow({ limit: 2, window: "1 hour" })
  })
  const watching = yield* Effect.forkChild(RateLimiter.events(mail).pipe(Stream.take(3), Stream.runCollect), {
    startImmediately: true
  })
  for (let i = 0; i < 3; i++) yield* Effect.void.pipe(RateLimiter.guard(mail), Effect.ignore)

  const events = yield* Fiber.join(watching)
  assert.deepEqual(events.map((e) => e._tag), ["Admitted", "Admitted", "Rejected"])

  const stats = yield* RateLimiter.stats(mail)
  assert.deepEqual([stats.admitted, stats.rejectedTotal, stats.remaining, stats.waiting], [2, 1, 0, 0])

  const mine = (yield* Metric.snapshot).filter((m) => m.id.startsWith("bulwark.ratelimiter.") && m.attributes?.name === "mail")
  assert.deepEqual(mine.map(show).sort(), [
    "bulwark.ratelimiter.admitted 2",
    "bulwark.ratelimiter.rejected{reason=Blocked} 0",
    "bulwark.ratelimiter.rejected{reason=Exceeded} 1",
    "bulwark.ratelimiter.rejected{reason=WaitTooLong} 0",
    "bulwark.ratelimiter.remaining 0",
    "bulwark.ratelimiter.waiting 0"
  ])
  return mine.map(show)
}).pipe(Effect.scoped) // closing the scope removes the metrics and ends the event streams

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
