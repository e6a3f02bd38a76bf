/**
 * `Chaos.fault` fails a share of calls with an error of your choice, before
 * they run. The share is drawn from Effect's `Random`, so under a seed the
 * same calls fail on every run: a test can assert the exact sequence, and the
 * policies around the call (here a fallback) are exercised on purpose.
 */
import { Chaos } from "@bulwark/core"
import { Data, Effect, Random } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

class Unavailable extends Data.TaggedError("Unavailable")<{ readonly call: number }> {}

export const program = Effect.gen(function*() {
  let started = 0
  const query = (call: number) =>
    Effect.sync(() => {
      started++
      return `rows ${call}`
    }).pipe(
      // Three calls in ten, on average, fail with Unavailable instead of running.
      Chaos.fault({ name: "db", rate: 0.3, error: () => new Unavailable({ call }) }),
      Effect.catchTag("Unavailable", (e) => Effect.succeed(`cached ${e.call}`))
    )

  const run = Effect.forEach([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], query)

  // Under a seed the injected faults are the same on every run.
  const first = yield* run.pipe(Random.withSeed("chaos"))
  const again = yield* run.pipe(Random.withSeed("chaos"))
  assert.deepEqual(first, [
    "rows 0", "rows 1", "rows 2", "rows 3", "cached 4",
    "rows 5", "rows 6", "cached 7", "cached 8", "rows 9"
  ])
  assert.deepEqual(again, first)
  // A failed call was never started.
  assert.equal(started, 14)

  // Rate 0 never injects; rate 1 always does.
  const calm = yield* Effect.succeed("ok").pipe(Chaos.fault({ rate: 0, error: "down" }))
  const broken = yield* Effect.flip(Effect.succeed("ok").pipe(Chaos.fault({ rate: 1, error: "down" })))
  assert.equal(calm, "ok")
  assert.equal(broken, "down")
  return first.join(", ")
})

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
