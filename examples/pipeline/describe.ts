/**
 * `Policy.describe` says what runs around the call, outermost first, then
 * the warnings. It is computed when called: a bulkhead resized since the
 * policy was made shows its new size. The retry's line shows `maxElapsed`
 * only when the retry sets one (the call's deadline is the timeout's line).
 */
import { Bulkhead, Policy, Retry } from "@bulwark/core"
import { Effect, Schedule } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

export const program = Effect.gen(function*() {
  const pool = yield* Bulkhead.make({ name: "reports", maxConcurrent: 4, maxQueue: 8 })
  const reports = yield* Policy.make({
    name: "reports",
    timeout: "10 seconds",
    bulkhead: pool,
    retry: Retry.policy({ maxAttempts: 4, base: "50 millis", max: "1 second", jitter: "none", maxElapsed: "3 seconds" })
  })
  const text = () => Policy.describe(reports).text
  assert.equal(
    text(),
    [
      `policy "reports", outermost first:`,
      `  1. timeout   10s for the whole call`,
      `  2. bulkhead  "reports": 4 at once, 8 queued`,
      `  3. retry     up to 4 attempts, backoff 50ms to 1s, no jitter, none after 3s`,
      `  4. call      the guarded effect`
    ].join("\n")
  )

  // An operator doubles the bulkhead at run time: the description follows.
  yield* Bulkhead.resize(pool, 8)
  assert.ok(text().includes(`"reports": 8 at once, 8 queued`))

  // The same as data, and a plain Schedule, which has no numbers to show. The warnings come last.
  const legacy = yield* Policy.make({
    name: "legacy",
    retry: Schedule.recurs(2),
    bulkhead: pool,
    order: ["retry", "bulkhead"],
    warnings: "ignore"
  })
  const description = Policy.describe(legacy)
  assert.deepEqual(description.stages.map((s) => s.stage), ["retry", "bulkhead"])
  assert.equal(description.stages[0].detail, "an Effect Schedule (does not honour retryAfter)")
  assert.ok(description.text.split("\n")[4].startsWith("  warning BulkheadInsideRetry: bulkhead inside retry"))
  assert.deepEqual(JSON.parse(JSON.stringify(legacy)), {
    _id: "Policy",
    name: "legacy",
    order: ["retry", "bulkhead"],
    warnings: ["BulkheadInsideRetry"]
  })
  return text()
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
