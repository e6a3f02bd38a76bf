/**
 * `Chaos.latency` delays a share of calls on Effect's clock, which is how a
 * timeout is shown to work before the dependency is slow for real.
 * `Chaos.outcome` injects what is not a typed error: a defect or an
 * interruption. And `Chaos.Enabled` turns every guard off at once, for an
 * operator or for the tests that should see no chaos.
 */
import { Chaos, Timeout } from "@bulwark/core"
import { Cause, Effect, Exit, Random } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

const query = (call: number) =>
  Effect.succeed(`rows ${call}`).pipe(
    // Three calls in ten wait 200 ms before they start...
    Chaos.latency({ name: "db", rate: 0.3, delay: "200 millis" }),
    // ...and the timeout turns them into a typed TimeoutExceeded.
    Timeout.guard({ name: "db", after: "20 millis" }),
    Effect.catchTag("TimeoutExceeded", () => Effect.succeed(`timed out ${call}`))
  )

export const program = Effect.gen(function*() {
  const results = yield* Effect.forEach([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], query).pipe(Random.withSeed("chaos"))
  assert.deepEqual(results.filter((r) => r.startsWith("timed out")), ["timed out 4", "timed out 7", "timed out 8"])

  // Defects and interruptions are injected outside the error channel.
  const died = yield* Effect.exit(Effect.succeed(1).pipe(Chaos.outcome({ name: "db", rate: 1, outcome: "defect" })))
  assert.ok(Exit.isFailure(died) && Cause.hasDies(died.cause))
  const interrupted = yield* Effect.exit(Effect.succeed(1).pipe(Chaos.outcome({ rate: 1, outcome: "interrupt" })))
  assert.ok(Exit.isFailure(interrupted) && Cause.hasInterruptsOnly(interrupted.cause))

  // The switch: with chaos disabled every guard is a pass-through.
  const calm = yield* Effect.forEach([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], query).pipe(
    Chaos.withEnabled(false),
    Random.withSeed("chaos")
  )
  assert.ok(calm.every((r) => r.startsWith("rows")))

  // Bad options are a programming error: the call dies with InvalidOptions.
  const bad = yield* Effect.exit(Effect.void.pipe(Chaos.latency({ rate: 1.5, delay: "1 second" })))
  assert.ok(Exit.isFailure(bad))
  const defect = Cause.squash(bad.cause) as { readonly _tag: string; readonly message: string }
  assert.equal(defect._tag, "InvalidOptions")
  assert.equal(defect.message, "rate: Expected a probability between 0 and 1, got 1.5")
  return results.join(", ")
})

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
