/**
 * A policy counts its calls by how they came out (`Policy.stats`, pull-based
 * metrics `bulwark.policy.*`) and reports failures and fallbacks on an
 * `events` stream. Each primitive inside keeps its own stats, events and
 * metrics: `policy.components` reaches them.
 */
import { Bulkhead, Policy } from "@bulwark/core"
import { Data, Effect, Fiber, Metric, Stream } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

class Unavailable extends Data.TaggedError("Unavailable") {}

export const program = Effect.gen(function*() {
  const catalog = yield* Policy.make({
    name: "catalog",
    timeout: "200 millis",
    bulkhead: yield* Bulkhead.make({ name: "catalog", maxConcurrent: 1 })
  })
  const events = yield* Effect.forkChild(Policy.events(catalog).pipe(Stream.take(3), Stream.runCollect), {
    startImmediately: true
  })

  yield* Effect.succeed("page").pipe(Policy.guard(catalog)) // succeeded
  yield* Effect.exit(Effect.fail(new Unavailable()).pipe(Policy.guard(catalog))) // failed: Error
  yield* Effect.exit(Effect.never.pipe(Policy.guard(catalog))) // failed: TimeoutExceeded
  const hung = yield* Effect.forkChild(Effect.never.pipe(Policy.guard(catalog)), { startImmediately: true })
  yield* Effect.exit(Effect.succeed("page").pipe(Policy.guard(catalog))) // failed: BulkheadFull
  yield* Fiber.interrupt(hung) // interrupted from outside: neither a success nor a failure

  const stats = yield* Policy.stats(catalog)
  assert.deepEqual([stats.calls, stats.succeeded, stats.interrupted], [5, 1, 1])
  assert.deepEqual([stats.failed.Error, stats.failed.TimeoutExceeded, stats.failed.BulkheadFull], [1, 1, 1])

  const seen = Array.from(yield* Fiber.join(events), (e) => `${e._tag} ${e.reason}`)
  assert.deepEqual(seen, ["Failed Error", "Failed TimeoutExceeded", "Failed BulkheadFull"])

  // The same counters as metrics, labelled with the policy's name (and the reason).
  const metrics = yield* Metric.snapshot
  const failed = metrics.filter((m) => m.id === "bulwark.policy.failed" && m.attributes?.name === "catalog")
  const timeouts = failed.find((m) => m.attributes?.reason === "TimeoutExceeded")
  assert.deepEqual(timeouts?.state, { count: 1, incremental: true })
  // A fallback never sees a defect, so bulwark.policy.fallbacks has no Defect series.
  const fallbackReasons = metrics
    .filter((m) => m.id === "bulwark.policy.fallbacks" && m.attributes?.name === "catalog")
    .map((m) => m.attributes?.reason)
  assert.deepEqual(fallbackReasons, ["BulkheadFull", "CircuitOpen", "RateLimited", "TimeoutExceeded", "Error"])

  // The bulkhead inside reports on its own.
  const bulkhead = yield* Bulkhead.stats(catalog.components.bulkhead!)
  assert.deepEqual([bulkhead.admitted, bulkhead.rejected.QueueFull], [4, 1])
  return stats
}).pipe(Effect.scoped) // closing the scope removes the metrics and ends the events stream

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
