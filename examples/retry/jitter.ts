/**
 * The four jitter modes of the AWS Architecture Blog's "Exponential Backoff
 * And Jitter", computed for a base of 100 ms capped at 1 second. The random
 * numbers come from Effect's `Random` service, so a seed makes the delays
 * reproducible. `Retry.schedule` exposes the policy as an Effect `Schedule`;
 * driving it by hand shows each delay without waiting for it.
 */
import { Retry } from "@bulwark/core"
import { Duration, Effect, Exit, Random, Schedule } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

const delays = (jitter: Retry.Jitter) =>
  Effect.gen(function*() {
    const policy = Retry.policy({ maxAttempts: 6, base: "100 millis", max: "1 second", jitter })
    const step = yield* Schedule.toStep(Retry.schedule(policy))
    const out: Array<number> = []
    for (;;) {
      const next = yield* Effect.exit(step(0, "failure"))
      if (Exit.isFailure(next)) return out // the policy is done: 5 retries
      out.push(Math.round(Duration.toMillis(next.value[1])))
    }
  }).pipe(Random.withSeed("jitter example"))

export const program = Effect.gen(function*() {
  const none = yield* delays("none")
  const full = yield* delays("full")
  const equal = yield* delays("equal")
  const decorrelated = yield* delays("decorrelated")

  const caps = [100, 200, 400, 800, 1000] // min(max, base * 2^n)
  assert.deepEqual(none, caps)
  full.forEach((d, n) => assert.ok(d >= 0 && d <= caps[n])) // random in [0, cap)
  equal.forEach((d, n) => assert.ok(d >= caps[n] / 2 && d <= caps[n])) // cap / 2 + random in [0, cap / 2)
  decorrelated.forEach((d, n) => assert.ok(d >= 100 && d <= Math.min(1000, 3 * (n === 0 ? 100 : decorrelated[n - 1]) + 1)))

  // Same seed, same delays.
  assert.deepEqual(yield* delays("full"), full)
  return { none, full, equal, decorrelated }
})

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
