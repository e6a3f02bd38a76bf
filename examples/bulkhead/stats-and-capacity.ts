/**
 * `stats` returns a snapshot of cumulative counters; `Snapshot.since` turns
 * two snapshots into interval figures; `capacityReport` reads them and says
 * whether the bulkhead looks too small, and says nothing on a small sample.
 */
import { Bulkhead } from "@bulwark/core"
import { Effect, Fiber, Latch, Result } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

export const program = Effect.gen(function*() {
  const reports = yield* Bulkhead.make({ name: "reports", maxConcurrent: 2, maxQueue: 10 })
  const render = yield* Latch.make()
  const report = render.await.pipe(Bulkhead.guard(reports), Effect.ignore)

  // Too little to go on: no finding at all (the default minimumSample is 50 calls).
  yield* Effect.forEach([1, 2, 3], () => Effect.forkChild(report, { startImmediately: true }))
  const early = yield* Bulkhead.capacityReport(reports)
  assert.deepEqual([early.sample, early.conclusive, early.findings.length], [2, false, 0]) // 2 admitted, 1 waiting

  // A burst of 60 more calls while rendering hangs: 9 more wait, 51 are refused.
  const before = yield* Bulkhead.stats(reports)
  const burst = yield* Effect.forEach(Array.from({ length: 60 }), () => Effect.forkChild(report, { startImmediately: true }))
  const during = yield* Bulkhead.stats(reports)
  assert.deepEqual([during.inFlight, during.running, during.queued, during.rejected.QueueFull], [2, 2, 10, 51])

  yield* render.open
  yield* Fiber.joinAll(burst)
  const after = yield* Bulkhead.stats(reports)
  assert.ok(after.sequence > before.sequence)
  const interval = Result.getOrThrow(after.since(before))
  assert.deepEqual([interval.admitted, interval.admittedAfterWait, interval.rejectedTotal, interval.completed], [10, 10, 51, 12])
  assert.equal(interval.rejectionRate, 51 / 61)
  // Two snapshots the wrong way round (or from two bulkheads) are refused.
  const reversed = before.since(after)
  assert.ok(Result.isFailure(reversed) && reversed.failure.reason === "Reversed")

  const verdict = yield* Bulkhead.capacityReport(reports)
  assert.deepEqual([verdict.sample, verdict.conclusive], [63, true])
  assert.deepEqual(verdict.findings.map((f) => f._tag), ["Saturated", "Rejecting"])
  assert.equal(verdict.findings[1].message, "reports: 81% of calls were rejected (QueueFull 51)")
  return verdict.findings.map((f) => f.message)
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
