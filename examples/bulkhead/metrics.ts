/**
 * Every bulkhead publishes Effect metrics named `bulwark.bulkhead.*`,
 * labelled with its name only. They are read from the bulkhead's own counters
 * when an exporter asks, so a call pays nothing for them.
 */
import { Bulkhead } from "@bulwark/core"
import { Effect, Fiber, Latch, Metric } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

const show = (metric: Metric.Metric.Snapshot): string => {
  const reason = metric.attributes?.reason === undefined ? "" : `{reason=${metric.attributes.reason}}`
  switch (metric.type) {
    case "Counter":
      return `${metric.id}${reason} ${metric.state.count}`
    case "Gauge":
      return `${metric.id} ${metric.state.value}`
    case "Histogram":
      return `${metric.id} count=${metric.state.count}`
    default:
      return metric.id
  }
}

export const program = Effect.gen(function*() {
  const db = yield* Bulkhead.make({ name: "orders-db", maxConcurrent: 2 })
  yield* Effect.void.pipe(Bulkhead.guard(db))
  const query = yield* Latch.make()
  const running = yield* Effect.forEach([1, 2], () => Effect.forkChild(query.await.pipe(Bulkhead.guard(db)), { startImmediately: true }))
  yield* Effect.void.pipe(Bulkhead.guard(db), Effect.ignore) // refused: QueueFull

  const mine = (yield* Metric.snapshot).filter((m) => m.id.startsWith("bulwark.bulkhead.") && m.attributes?.name === "orders-db")
  assert.deepEqual(mine.map(show).sort(), [
    "bulwark.bulkhead.admitted 3",
    "bulwark.bulkhead.completed 1",
    "bulwark.bulkhead.in_flight 2",
    "bulwark.bulkhead.queue_wait count=3",
    "bulwark.bulkhead.queued 0",
    "bulwark.bulkhead.rejected{reason=Closed} 0",
    "bulwark.bulkhead.rejected{reason=Oversized} 0",
    "bulwark.bulkhead.rejected{reason=QueueFull} 1",
    "bulwark.bulkhead.rejected{reason=QueueTimeout} 0"
  ])
  yield* query.open
  yield* Fiber.joinAll(running)
  return mine.map(show)
}).pipe(Effect.scoped) // closing the scope also removes the bulkhead's metrics

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
