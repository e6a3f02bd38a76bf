/**
 * The payments client with cockatiel: at most 2 charges at once and 1
 * waiting, 3 attempts with exponential backoff (10 ms, then 20 ms), a
 * circuit that opens after 3 failures in a row for 100 ms, and 50 ms per
 * attempt. Outermost first: bulkhead, retry, circuit breaker, timeout.
 */
import {
  BrokenCircuitError,
  bulkhead,
  circuitBreaker,
  CircuitState,
  ConsecutiveBreaker,
  ExponentialBackoff,
  handleAll,
  handleWhen,
  isBulkheadRejectedError,
  isTaskCancelledError,
  noJitterGenerator,
  retry,
  timeout,
  TimeoutStrategy,
  wrap
} from "cockatiel"
import { Effect } from "effect"
import assert from "node:assert/strict"
import { setTimeout as sleep } from "node:timers/promises"
import { fileURLToPath } from "node:url"
import { expected, Gateway, line, plan, summary } from "./gateway.ts"

export const run = async (): Promise<Array<string>> => {
  const gateway = new Gateway(plan)

  const perAttempt = timeout(50, TimeoutStrategy.Aggressive)
  const breaker = circuitBreaker(handleAll, { halfOpenAfter: 100, breaker: new ConsecutiveBreaker(3) })
  const retries = retry(handleWhen((error) => !(error instanceof BrokenCircuitError)), {
    maxAttempts: 2, // retries, after the first attempt
    backoff: new ExponentialBackoff({ initialDelay: 10, maxDelay: 1000, generator: noJitterGenerator })
  })
  const payments = wrap(bulkhead(2, 1), retries, breaker, perAttempt)

  const circuit = ["Closed"]
  breaker.onStateChange((state) => circuit.push(CircuitState[state]))
  let retried = 0
  retries.onRetry(() => retried++)

  // Every failure is a thrown error: which one it was is found out at run time.
  const charge = (order: string) =>
    payments.execute(({ signal }) => gateway.charge(order, signal)).then(
      (receipt) => line(gateway, order, receipt),
      (error: unknown) => {
        const outcome = isTaskCancelledError(error) ? "timed out"
          : error instanceof BrokenCircuitError ? "circuit open"
          : isBulkheadRejectedError(error) ? "bulkhead full"
          : `failed: ${error}`
        return line(gateway, order, outcome)
      }
    )

  const lines = [await charge("A"), await charge("B"), await charge("C")]
  await sleep(120) // the circuit's open time passes
  lines.push(await charge("D"))
  lines.push(...await Promise.all(["E", "F", "G", "H"].map(charge))) // at once: 2 run, 1 waits, 1 is refused
  return [...lines, ...summary(gateway, circuit, retried)]
}

export const program = Effect.promise(run).pipe(Effect.tap((lines) => Effect.sync(() => assert.deepEqual(lines, expected))))

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log((await Effect.runPromise(program)).join("\n"))
