/**
 * The exchange-rate client with opossum: 30 ms per call, the circuit opens
 * when more than half of the calls of the last second failed (once it has
 * seen 4), stays open 100 ms, and a fallback answers from the cache.
 */
import CircuitBreaker from "opossum"
import { Effect } from "effect"
import assert from "node:assert/strict"
import { setTimeout as sleep } from "node:timers/promises"
import { fileURLToPath } from "node:url"
import { cachedRate, expected, plan, RatesApi } from "./rates.ts"

export const run = async () => {
  const api = new RatesApi(plan)
  const breaker = new CircuitBreaker(() => api.fetchRate().then((rate) => rate.toFixed(2)), {
    timeout: 30,
    errorThresholdPercentage: 50,
    volumeThreshold: 4,
    rollingCountTimeout: 1000,
    rollingCountBuckets: 10,
    resetTimeout: 100
  })
  // Every failure is a thrown error: which one it was is read from its `code`.
  const why = (error: { readonly code?: string }) =>
    error.code === "ETIMEDOUT" ? "timeout" : error.code === "EOPENBREAKER" ? "circuit open" : "error"
  breaker.fallback((error: { readonly code?: string }) => `${cachedRate} (cached: ${why(error)})`)

  const circuit = ["Closed"]
  breaker.on("open", () => circuit.push("Open"))
  breaker.on("halfOpen", () => circuit.push("HalfOpen"))
  breaker.on("close", () => circuit.push("Closed"))

  const lines: Array<string> = []
  for (const call of [1, 2, 3, 4, 5]) lines.push(`call ${call}: ${await breaker.fire()}`)
  await sleep(110) // the circuit's open time passes
  lines.push(`call 6: ${await breaker.fire()}`)

  const s = breaker.stats // counts over the rolling window
  lines.push(
    `circuit: ${circuit.join(" -> ")}`,
    `${s.fires} calls: ${s.successes} succeeded, ${s.failures} failed (${s.timeouts} timed out), ${s.rejects} rejected, ${s.fallbacks} answered by the fallback`
  )
  breaker.shutdown()
  return { lines, api }
}

export const program = Effect.promise(run).pipe(
  Effect.map(({ api, lines }) => {
    assert.deepEqual(lines, expected)
    // The timed-out request was not stopped: the API finished it after its caller had moved on.
    assert.deepEqual([api.requests, api.answered, api.failed, api.aborted], [5, 3, 2, 0])
    return [...lines, `rates API: ${api.requests} requests, ${api.answered} answered, ${api.failed} failed, ${api.aborted} aborted`]
  })
)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log((await Effect.runPromise(program)).join("\n"))
