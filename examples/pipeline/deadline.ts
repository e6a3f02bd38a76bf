/**
 * A policy's `timeout` is the deadline of the whole call, counted from when
 * the timeout stage starts, so time spent queueing in the bulkhead counts. A
 * `Retry` inside it (a `Retry.policy`, or a `Retry` instance, key or effect)
 * never starts an attempt past that deadline: when its next attempt would, it
 * stops at once with the last error, instead of sleeping until the timeout
 * cuts it off with a `TimeoutExceeded`. A plain `Schedule` knows nothing of
 * the deadline.
 */
import { Bulkhead, Policy, Retry } from "@bulwark/core"
import { Clock, Data, Effect, Fiber, Schedule } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

class Unavailable extends Data.TaggedError("Unavailable") {}

/** The outcome of `self` and how long it took, in milliseconds. */
const timed = <A, E>(self: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const start = yield* Clock.currentTimeMillis
    const result = yield* self
    return [result, (yield* Clock.currentTimeMillis) - start] as const
  })

export const program = Effect.gen(function*() {
  const slots = yield* Bulkhead.make({ name: "ledger", maxConcurrent: 1, maxQueue: 1 })
  const ledger = yield* Policy.make({
    name: "ledger",
    timeout: "400 millis",
    bulkhead: slots,
    retry: Retry.policy({ maxAttempts: 5, base: "300 millis", jitter: "none" }) // waits 300 ms, then 600 ms
  })
  let calls = 0
  const post = Effect.suspend(() => (++calls, Effect.fail(new Unavailable())))

  // Alone: attempts at 0 and 300 ms. The third would start at 900 ms, past the deadline at 400 ms: the
  // call ends at 300 ms with the dependency's own error.
  const [alone, aloneMs] = yield* timed(Effect.flip(post.pipe(Policy.guard(ledger))))
  assert.equal(alone._tag, "Unavailable")
  assert.equal(calls, 2)
  assert.ok(aloneMs >= 280 && aloneMs < 400)

  // Behind a call that holds the only slot for 200 ms: admitted at 200 ms, its first attempt fails, and
  // the retry's would start at 500 ms. The 200 ms in the queue count: one attempt, then the error.
  calls = 0
  const holder = yield* Effect.forkChild(Effect.sleep("200 millis").pipe(Policy.guard(ledger)), { startImmediately: true })
  const [queued, queuedMs] = yield* timed(Effect.flip(post.pipe(Policy.guard(ledger))))
  yield* Fiber.join(holder)
  assert.equal(queued._tag, "Unavailable")
  assert.equal(calls, 1)
  assert.ok(queuedMs >= 180 && queuedMs < 400)
  // The retry reports a stop at the deadline as MaxElapsed, although this policy sets no maxElapsed.
  assert.equal((yield* Retry.stats(ledger.components.retry!)).exhausted.MaxElapsed, 2)

  // A plain Schedule sleeps into the timeout: the call fails with TimeoutExceeded, not the real error.
  const scheduled = yield* Policy.make({ name: "ledger-schedule", timeout: "400 millis", retry: Schedule.spaced("300 millis") })
  calls = 0
  const [cutOff, cutOffMs] = yield* timed(Effect.flip(post.pipe(Policy.guard(scheduled))))
  assert.equal(cutOff._tag, "TimeoutExceeded")
  assert.equal(calls, 2)
  assert.ok(cutOffMs >= 380)
  return { alone: aloneMs, queued: queuedMs, schedule: cutOffMs }
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
