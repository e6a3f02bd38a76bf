/**
 * The dependency both exchange-rate clients call: a simulated rates API that
 * answers the n-th request it receives with the n-th behaviour of its plan,
 * with no network and nothing random. The opossum and the Bulwark clients
 * each check their transcript against `expected`, and print it.
 */
import { Effect } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

/** `ok`: answers after 5 ms. `error`: a 503 at once. `slow`: answers after 100 ms. */
export type Behaviour = "ok" | "error" | "slow"

/** What the API rejects with: a plain `Error`, as HTTP clients throw. */
export class RatesError extends Error {
  readonly status: number
  constructor(status: number) {
    super(`rates API answered ${status}`)
    this.status = status
  }
}

export class RatesApi {
  requests = 0
  /** Requests the API worked on to the end and answered, whether or not anyone was still waiting. */
  answered = 0
  failed = 0
  aborted = 0
  private readonly plan: Array<Behaviour>
  constructor(plan: ReadonlyArray<Behaviour>) {
    this.plan = [...plan]
  }

  /** The EUR/USD rate. Honours `signal` when given one, as `fetch` does. */
  fetchRate(signal?: AbortSignal): Promise<number> {
    const behaviour = this.plan.shift()
    this.requests++
    return new Promise((resolve, reject) => {
      if (behaviour === undefined) return reject(new Error("unplanned request"))
      if (signal?.aborted) return reject(signal.reason)
      if (behaviour === "error") {
        this.failed++
        return reject(new RatesError(503))
      }
      const onAbort = () => {
        clearTimeout(timer)
        this.aborted++
        setTimeout(() => reject(signal!.reason), 0)
      }
      const timer = setTimeout(() => {
        signal?.removeEventListener("abort", onAbort)
        this.answered++
        resolve(1.08)
      }, behaviour === "slow" ? 100 : 5)
      signal?.addEventListener("abort", onAbort, { once: true })
    })
  }
}

/** The answers, in the order the scenario's requests reach the API (call 5 never does). */
export const plan: ReadonlyArray<Behaviour> = ["ok", "error", "slow", "error", "ok"]

/** What the fallback answers with. */
export const cachedRate = "1.05"

/** What both clients must print. */
export const expected: ReadonlyArray<string> = [
  "call 1: 1.08",
  "call 2: 1.05 (cached: error)",
  "call 3: 1.05 (cached: timeout)",
  "call 4: 1.05 (cached: error)", // 3 of 4 calls failed: the circuit opens
  "call 5: 1.05 (cached: circuit open)",
  "call 6: 1.08", // after the open time: the probe succeeds and closes the circuit
  "circuit: Closed -> Open -> HalfOpen -> Closed",
  "6 calls: 2 succeeded, 3 failed (1 timed out), 1 rejected, 4 answered by the fallback"
]

/** The API checks itself: each behaviour, and the abort. */
export const program = Effect.promise(async () => {
  const api = new RatesApi(["ok", "error", "slow"])
  assert.equal(await api.fetchRate(), 1.08)
  await assert.rejects(api.fetchRate(), (error) => error instanceof RatesError && error.status === 503)
  const controller = new AbortController()
  const slow = api.fetchRate(controller.signal)
  controller.abort()
  await assert.rejects(slow, { name: "AbortError" })
  await assert.rejects(api.fetchRate(), /unplanned request/)
  assert.deepEqual([api.requests, api.answered, api.failed, api.aborted], [4, 1, 1, 1])
  return "the simulated rates API behaves as planned"
})

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
