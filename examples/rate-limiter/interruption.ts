/**
 * A waiting call holds a reservation: its slot in time. When the waiting fiber
 * is interrupted (its client went away, a timeout fired), the reservation
 * goes back and the calls behind it move up. A later call still never
 * overtakes an earlier one.
 */
import { RateLimiter } from "@bulwark/core"
import { Clock, Effect, Fiber } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

export const program = Effect.gen(function*() {
  const reports = yield* RateLimiter.make({
    name: "reports",
    algorithm: RateLimiter.gcra({ rate: 4, per: "1 second" }), // one every 250 ms
    onExceeded: "wait"
  })
  const started = new Map<string, number>()
  const render = (name: string) =>
    Clock.currentTimeMillis.pipe(
      Effect.flatMap((at) => Effect.sync(() => started.set(name, at))),
      RateLimiter.guard(reports)
    )

  const t0 = yield* Clock.currentTimeMillis
  const first = yield* Effect.forkChild(render("first"), { startImmediately: true }) // now
  const abandoned = yield* Effect.forkChild(render("abandoned"), { startImmediately: true }) // slot +250 ms
  const last = yield* Effect.forkChild(render("last"), { startImmediately: true }) // slot +500 ms

  // The second caller gives up: its slot goes back, and "last" moves up to +250 ms.
  yield* Fiber.interrupt(abandoned)
  yield* Fiber.joinAll([first, last])
  const waited = started.get("last")! - t0
  assert.ok(waited >= 250 && waited < 450, `"last" started after ${waited} ms`)
  assert.equal(started.has("abandoned"), false)

  const stats = yield* RateLimiter.stats(reports)
  assert.deepEqual([stats.admitted, stats.cancelled, stats.waiting], [2, 1, 0])
  return `"last" waited ${waited} ms instead of 500`
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
