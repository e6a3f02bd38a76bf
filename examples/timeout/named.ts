/**
 * Named timeouts: durations live in one `Timeouts` layer instead of at every
 * call site. `Timeout.named("report")` gets the override for "report", any
 * other name gets the default, and `R` says the layer is needed. While the
 * layer is provided it counts calls and expirations per name.
 */
import { Timeout, Timeouts } from "@bulwark/core"
import { Duration, Effect } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

// Production durations; a test or a staging environment provides other ones.
const TimeoutsLive = Timeouts.layer({ default: "20 millis", overrides: { report: "2 seconds" } })

const report = Effect.sleep("50 millis").pipe(Effect.as("report"), Timeout.named("report")) // 2 seconds: in time
const profile = Effect.sleep("50 millis").pipe(Effect.as("profile"), Timeout.named("profile")) // the default: too slow

export const program = Effect.gen(function*() {
  assert.equal(yield* report, "report")
  const late = yield* Effect.flip(profile)
  assert.deepEqual([late.name, Duration.toMillis(late.after)], ["profile", 20])

  assert.equal(Duration.toMillis(yield* Timeouts.resolve("report")), 2000)
  assert.equal(Duration.toMillis(yield* Timeouts.resolve("anything else")), 20)

  const stats = yield* Timeouts.stats
  assert.deepEqual(stats.names.map((n) => [n.name, n.calls, n.expired]), [["report", 1, 0], ["profile", 1, 1]])
  return stats.names
}).pipe(Effect.provide(TimeoutsLive))

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
