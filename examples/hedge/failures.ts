/**
 * A failed attempt is not the end of a hedged call: it starts the next
 * attempt at once. The call fails only when every attempt failed, with the
 * error of the last attempt to fail. Bad options are a programming error: the
 * call dies with an `InvalidOptions` naming every bad field.
 */
import { Hedge, InvalidOptions } from "@bulwark/core"
import { Cause, Data, Effect, Exit } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

class Unavailable extends Data.TaggedError("Unavailable")<{ readonly attempt: number }> {}

export const program = Effect.gen(function*() {
  let attempt = 0
  const flaky = (failures: number) =>
    Effect.suspend(() => {
      const n = ++attempt
      return n <= failures ? Effect.fail(new Unavailable({ attempt: n })) : Effect.succeed(`ok on attempt ${n}`)
    })
  // `after` is one minute, yet the call takes no time: each failure starts the next attempt at once.
  const options = { after: "1 minute", maxAttempts: 3 } as const

  attempt = 0
  assert.equal(yield* flaky(2).pipe(Hedge.guard(options)), "ok on attempt 3")

  attempt = 0
  const error = yield* Effect.flip(flaky(3).pipe(Hedge.guard(options)))
  assert.deepEqual(error, new Unavailable({ attempt: 3 })) // the last attempt to fail

  const exit = yield* Effect.exit(Effect.succeed(1).pipe(Hedge.guard({ name: "read", after: 0, maxAttempts: 0 })))
  assert.ok(Exit.isFailure(exit))
  const invalid = Cause.squash(exit.cause)
  assert.ok(invalid instanceof InvalidOptions)
  assert.equal(invalid.message, "after: Expected a duration > 0, got 0\nmaxAttempts: Expected an integer >= 1, got 0")
  return error._tag
})

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
