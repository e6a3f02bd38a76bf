/**
 * A timeout interrupts a call that runs longer than `after` and fails with a
 * typed `TimeoutExceeded`. The interrupted call's finalizers run before the
 * error is returned, so nothing it holds is leaked. A call that finishes in
 * time is not affected.
 */
import { Timeout } from "@bulwark/core"
import { Duration, Effect } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

export const program = Effect.gen(function*() {
  const log: Array<string> = []
  const report = (takes: Duration.Input) =>
    Effect.sleep(takes).pipe(
      Effect.as("report"),
      Effect.onInterrupt(() => Effect.sync(() => log.push("report interrupted, connection released")))
    )

  // In time: the value comes back as usual.
  assert.equal(yield* report("5 millis").pipe(Timeout.guard("1 second")), "report")

  // Too slow: interrupted after 20 ms, with a typed error that names the timeout.
  const late = yield* Effect.flip(report("10 seconds").pipe(Timeout.guard({ name: "report", after: "20 millis" })))
  assert.equal(late._tag, "TimeoutExceeded")
  assert.equal(late.reason, "Elapsed")
  assert.equal(late.name, "report")
  assert.equal(Duration.toMillis(late.after), 20)
  assert.equal(late.message, `Timeout "report" expired after 20ms`)
  assert.deepEqual(log, ["report interrupted, connection released"])

  // It is an ordinary typed error: recover with catchTag.
  const fallback = yield* report("10 seconds").pipe(
    Timeout.guard({ name: "report", after: "20 millis" }),
    Effect.catchTag("TimeoutExceeded", (e) => Effect.succeed(`cached report (live one took over ${Duration.format(e.after)})`))
  )
  assert.equal(fallback, "cached report (live one took over 20ms)")
  return fallback
})

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
