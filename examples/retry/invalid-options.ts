/**
 * `Retry.policy` is a plain value and never throws: it validates its options
 * at once, and if they are bad, every call it guards dies with the
 * `InvalidOptions` (a programming error, found on the first call). When
 * options come from configuration, use `Retry.make`, which fails with a typed
 * `InvalidOptions` instead. Either way the message names every bad field.
 */
import { InvalidOptions, Retry } from "@bulwark/core"
import { Cause, Effect, Exit } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

export const program = Effect.gen(function*() {
  // A mistake in code: the policy is built, but using it is a defect, and the call never runs.
  let ran = false
  const policy = Retry.policy({ maxAttempts: 0, jitter: "random" as Retry.Jitter })
  const exit = yield* Effect.exit(Effect.sync(() => (ran = true)).pipe(Retry.guard(policy)))
  assert.ok(Exit.isFailure(exit))
  const defect = Cause.squash(exit.cause)
  assert.ok(defect instanceof InvalidOptions)
  assert.deepEqual(defect.message.split("\n"), [
    "maxAttempts: Expected an integer >= 1, got 0",
    `jitter: Expected "decorrelated" | "full" | "equal" | "none"`
  ])
  assert.equal(ran, false)

  // Configuration: a typed failure to handle.
  const config: Retry.Options & { readonly name: string } = JSON.parse(
    `{ "name": "payments", "base": "5 seconds", "max": "1 second" }`
  )
  const error = yield* Effect.flip(Retry.make(config))
  assert.equal(error._tag, "InvalidOptions")
  assert.equal(error.primitive, "Retry")
  assert.equal(error.name, "payments")
  assert.equal(error.message, "max: Expected a duration >= base (5s), got 1s")
  return error.message
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
