/**
 * The dependency both payments clients call: a simulated card gateway that
 * answers the n-th request it receives with the n-th behaviour of its plan.
 * Two clients that send the same requests in the same order get the same
 * answers, with no network and nothing random. The cockatiel and the Bulwark
 * clients each check their transcript against `expected`, and print it.
 */
import { Effect } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

/** `ok`: charged after 5 ms. `unavailable`: a 503 at once. `slow`: would answer after 1 s. */
export type Behaviour = "ok" | "unavailable" | "slow"

/** What the gateway rejects with: a plain `Error`, as HTTP clients throw. */
export class GatewayError extends Error {
  readonly status: number
  constructor(status: number) {
    super(`gateway answered ${status}`)
    this.status = status
  }
}

export class Gateway {
  /** The order of every request received, in arrival order. */
  readonly requests: Array<string> = []
  charged = 0
  unavailable = 0
  aborted = 0
  private readonly plan: Array<Behaviour>
  constructor(plan: ReadonlyArray<Behaviour>) {
    this.plan = [...plan]
  }

  /** Charges a card. Honours `signal` as `fetch` does: an abort stops the work, and the promise rejects a moment later. */
  charge(order: string, signal?: AbortSignal): Promise<string> {
    const behaviour = this.plan.shift()
    this.requests.push(order)
    return new Promise((resolve, reject) => {
      if (behaviour === undefined) return reject(new Error(`unplanned request for order ${order}`))
      if (signal?.aborted) return reject(signal.reason)
      if (behaviour === "unavailable") {
        this.unavailable++
        return reject(new GatewayError(503))
      }
      const onAbort = () => {
        clearTimeout(timer)
        this.aborted++
        setTimeout(() => reject(signal!.reason), 0)
      }
      const timer = setTimeout(() => {
        signal?.removeEventListener("abort", onAbort)
        this.charged++
        resolve(`charged ${order}`)
      }, behaviour === "slow" ? 1000 : 5)
      signal?.addEventListener("abort", onAbort, { once: true })
    })
  }
}

/** The answers, in the order the scenario's requests reach the gateway. */
export const plan: ReadonlyArray<Behaviour> = [
  "unavailable", "ok", // order A: one 503, then charged on the retry
  "slow", "slow", "slow", // order B: every attempt times out; the circuit opens
  "ok", // order D: the probe after the open time, which closes the circuit
  "ok", "ok", "ok" // orders E, F, G (H never reaches the gateway)
]

/** One line of the transcript: the caller's outcome and how many requests the order cost the gateway. */
export const line = (gateway: Gateway, order: string, outcome: string): string => {
  const requests = gateway.requests.filter((o) => o === order).length
  return `${order}: ${outcome} (${requests} request${requests === 1 ? "" : "s"})`
}

/** The last lines of the transcript. */
export const summary = (gateway: Gateway, circuit: ReadonlyArray<string>, retries: number): Array<string> => [
  `circuit: ${circuit.join(" -> ")}`,
  `retries: ${retries}`,
  `gateway: ${gateway.requests.length} requests, ${gateway.charged} charged, ${gateway.unavailable} unavailable, ${gateway.aborted} aborted by the timeout`
]

/** What both clients must print. */
export const expected: ReadonlyArray<string> = [
  "A: charged A (2 requests)",
  "B: timed out (3 requests)",
  "C: circuit open (0 requests)",
  "D: charged D (1 request)",
  "E: charged E (1 request)",
  "F: charged F (1 request)",
  "G: charged G (1 request)",
  "H: bulkhead full (0 requests)",
  "circuit: Closed -> Open -> HalfOpen -> Closed",
  "retries: 3",
  "gateway: 9 requests, 5 charged, 1 unavailable, 3 aborted by the timeout"
]

/** The gateway checks itself: each behaviour, and the abort. */
export const program = Effect.promise(async () => {
  const gateway = new Gateway(["ok", "unavailable", "slow"])
  assert.equal(await gateway.charge("X"), "charged X")
  await assert.rejects(gateway.charge("Y"), (error) => error instanceof GatewayError && error.status === 503)
  const controller = new AbortController()
  const slow = gateway.charge("Z", controller.signal)
  controller.abort()
  await assert.rejects(slow, { name: "AbortError" })
  await assert.rejects(gateway.charge("W"), /unplanned request/)
  assert.deepEqual([gateway.charged, gateway.unavailable, gateway.aborted], [1, 1, 1])
  return gateway.requests
})

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
