/**
 * The same settings from JSON (or YAML, or any nested object) with
 * `ConfigProvider.fromUnknown`. Counts may be JSON numbers; durations are
 * still text with a unit (`"500 millis"`, not `500`). The path may be
 * nested. Every section here, the `breaker` and the `limiter` included,
 * makes its primitive, named after the policy; the breaker's half-open keys
 * (`probes`, `successesToClose`, `probeTimeout`) are optional.
 */
import { Policy } from "@bulwark/core"
import { ConfigProvider, Effect } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

const file = `{
  "services": {
    "search": {
      "timeout": "2 seconds",
      "attemptTimeout": "500 millis",
      "bulkhead": { "maxConcurrent": 8 },
      "retry": { "maxAttempts": 2, "baseDelay": "20 millis", "jitter": "full" },
      "limiter": { "algorithm": "token-bucket", "limit": 50, "per": "1 second", "burst": 100 },
      "breaker": { "failureRate": 0.5, "minimumCalls": 20, "window": "1 minute", "openFor": "15 seconds", "probes": 2 }
    }
  }
}`

export const program = Effect.gen(function*() {
  const provider = ConfigProvider.fromUnknown(JSON.parse(file))
  const settings = yield* Policy.config(["services", "search"]).parse(provider)
  const search = yield* Policy.fromSettings("search", settings)
  assert.equal(
    Policy.describe(search).text,
    [
      `policy "search", outermost first:`,
      `  1. timeout         2s for the whole call`,
      `  2. bulkhead        "search": 8 at once, 0 queued`,
      `  3. retry           up to 2 attempts, backoff 20ms to 10s, full jitter`,
      `  4. rateLimiter     "search": TokenBucket`,
      `  5. circuitBreaker  "search"`,
      `  6. attemptTimeout  500ms per attempt`,
      `  7. call            the guarded effect`
    ].join("\n")
  )
  // "limit" per "per" is the refill, "burst" the bucket's capacity.
  assert.deepEqual(search.components.rateLimiter?.algorithm, { _tag: "TokenBucket", capacity: 100, refill: 50, perMillis: 1000 })
  return Policy.describe(search).text
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
