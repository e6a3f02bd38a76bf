/**
 * Shutting down: `close` refuses queued and new calls with reason `Closed`
 * while running calls go on; `drain` waits for the calls that were running or
 * queued when it was called. Closing a bulkhead's scope does both: close,
 * then drain.
 */
import { Bulkhead } from "@bulwark/core"
import { Effect, Fiber, Latch } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

const explicitly = Effect.gen(function*() {
  const mailer = yield* Bulkhead.make({ name: "mailer", maxConcurrent: 1, maxQueue: 5 })
  const smtp = yield* Latch.make()
  const send = (to: string) =>
    smtp.await.pipe(
      Effect.as(`sent to ${to}`),
      Bulkhead.guard(mailer),
      Effect.catchTag("BulkheadFull", (e) => Effect.succeed(`not sent to ${to}: ${e.reason}`))
    )
  const running = yield* Effect.forkChild(send("ada"), { startImmediately: true })
  const queued = yield* Effect.forkChild(send("grace"), { startImmediately: true })

  yield* Bulkhead.close(mailer)
  assert.equal(yield* Fiber.join(queued), "not sent to grace: Closed") // the queue is emptied at once
  assert.equal(yield* send("alan"), "not sent to alan: Closed") // and so are later calls

  const draining = yield* Effect.forkChild(Bulkhead.drain(mailer), { startImmediately: true })
  assert.equal(draining.pollUnsafe(), undefined) // "ada" is still being sent
  yield* smtp.open
  yield* Fiber.join(draining)
  assert.equal(yield* Fiber.join(running), "sent to ada") // running work was never interrupted
  return (yield* Bulkhead.stats(mailer)).rejected.Closed
}).pipe(Effect.scoped)

const byScope = Effect.gen(function*() {
  const log: Array<string> = []
  yield* Effect.gen(function*() {
    const mailer = yield* Bulkhead.make({ name: "mailer", maxConcurrent: 1, maxQueue: 5 })
    const sendNewsletter = Effect.sleep("20 millis").pipe(Effect.andThen(Effect.sync(() => log.push("newsletter sent"))))
    yield* Effect.forkChild(Bulkhead.guard(sendNewsletter, mailer), { startImmediately: true })
    yield* Effect.forkChild(
      Effect.void.pipe(
        Bulkhead.guard(mailer),
        Effect.catchTag("BulkheadFull", (e) => Effect.sync(() => log.push(`queued call: ${e.reason}`)))
      ),
      { startImmediately: true }
    )
  }).pipe(Effect.scoped) // the scope closes here: close, then drain
  log.push("scope closed")
  assert.deepEqual(log, ["queued call: Closed", "newsletter sent", "scope closed"])
  return log
})

export const program = Effect.all([explicitly, byScope])

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
