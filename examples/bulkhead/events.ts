/**
 * `events` is a Stream of what happens inside a bulkhead: admissions,
 * rejections, releases with their outcome, resizes and the close. It costs
 * nothing while nobody listens, and it ends when the bulkhead's scope closes.
 */
import { Bulkhead } from "@bulwark/core"
import { Effect, Fiber, Stream } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

const describe = (event: Bulkhead.Event): string => {
  switch (event._tag) {
    case "Admitted":
      return "admitted"
    case "Rejected":
      return `rejected: ${event.reason}`
    case "Released":
      return `released: ${event.outcome}`
    case "Resized":
      return `resized: ${event.from} -> ${event.to}`
    case "Closed":
      return "closed"
  }
}

export const program = Effect.gen(function*() {
  const watcher = yield* Effect.gen(function*() {
    const mailer = yield* Bulkhead.make({ name: "mailer", maxConcurrent: 1 })
    const watcher = yield* Bulkhead.events(mailer).pipe(
      Stream.map(describe),
      Stream.runCollect,
      Effect.forkChild({ startImmediately: true })
    )
    yield* Effect.succeed("sent").pipe(Bulkhead.guard(mailer))
    yield* Effect.fail("bounced").pipe(Bulkhead.guard(mailer), Effect.ignore)
    yield* Effect.die("bug").pipe(Bulkhead.guard(mailer), Effect.catchDefect(() => Effect.void))
    const stuck = yield* Effect.forkChild(Effect.never.pipe(Bulkhead.guard(mailer)), { startImmediately: true })
    yield* Effect.void.pipe(Bulkhead.guard(mailer), Effect.ignore) // refused: the permit is held
    yield* Fiber.interrupt(stuck)
    yield* Bulkhead.resize(mailer, 2)
    return watcher
  }).pipe(Effect.scoped) // closing the scope closes the bulkhead and ends the stream

  const seen = yield* Fiber.join(watcher)
  assert.deepEqual(seen, [
    "admitted",
    "released: Success",
    "admitted",
    "released: Failure",
    "admitted",
    "released: Defect",
    "admitted",
    "rejected: QueueFull",
    "released: Interrupted",
    "resized: 1 -> 2",
    "closed"
  ])
  return seen
})

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
