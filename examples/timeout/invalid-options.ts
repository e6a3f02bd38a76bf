/**
 * A bad per-call `after` is a programming error: the guarded call dies, before
 * it starts, with a message naming the option. A bad `Timeouts` layer fails
 * with `InvalidOptions` naming every bad field, like every Bulwark primitive.
 */
import { Timeout, Timeouts } from "@bulwark/core"
import { Cause, Duration, Effect, Exit } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

export const program = Effect.gen(function*() {
  let started = false
  const call = Effect.sync(() => (started = true))

  const exit = yield* Effect.exit(call.pipe(Timeout.guard(-5)))
  assert.ok(Exit.isFailure(exit) && Cause.hasDies(exit.cause))
  assert.equal(
    (Cause.squash(exit.cause) as Error).message,
    `Timeout.guard: option "after" must be a finite duration >= 0, got -5`
  )
  assert.equal(started, false)

  const error = yield* Effect.flip(
    Effect.void.pipe(Effect.provide(Timeouts.layer({ default: "soon" as Duration.Input, overrides: { report: -1 } })))
  )
  assert.equal(error._tag, "InvalidOptions")
  assert.equal(error.primitive, "Timeouts")
  assert.equal(
    error.message,
    [
      `default: Expected a duration such as "2 seconds" or a number of milliseconds, got "soon"`,
      "overrides.report: Expected a duration >= 0, got -1"
    ].join("\n")
  )
  return error.message
})

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
