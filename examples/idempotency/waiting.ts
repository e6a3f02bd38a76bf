/**
 * With `onDuplicate: "wait"` a duplicate waits for the call in flight and
 * gets its result, instead of being refused. It polls the store (10 ms,
 * doubling up to 1 s) for at most `maxWait`; if the first call fails (a
 * failure is not stored), a waiter takes the claim and runs the effect itself.
 */
import { Idempotency } from "@bulwark/core"
import { Effect, Fiber, Schema } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

let renders = 0
const renderReport = Effect.sleep("100 millis").pipe(Effect.andThen(Effect.sync(() => `report #${++renders}`)))

const options = { ttl: "10 minutes", result: Schema.String, onDuplicate: "wait", maxWait: "5 seconds" } as const

export const program = Effect.gen(function*() {
  // Five users open the same dashboard at once: one render, five identical answers.
  const answers = yield* Effect.all(
    Array.from({ length: 5 }, () => Idempotency.once("report:2026-05", renderReport, options)),
    { concurrency: "unbounded" }
  )
  assert.deepEqual(answers, Array(5).fill("report #1"))
  assert.equal(renders, 1)

  // A waiter gives up after maxWait with DuplicateInFlight, saying how long it waited.
  const slow = Effect.sleep("2 seconds").pipe(Effect.as("slow"))
  const owner = yield* Effect.forkChild(Idempotency.once("slow", slow, options))
  yield* Effect.sleep("10 millis")
  const impatient = yield* Effect.flip(Idempotency.once("slow", slow, { ...options, maxWait: "200 millis" }))
  assert.equal(impatient.reason, "DuplicateInFlight")
  assert.ok(impatient.message.includes("after waiting"))

  // If the call in flight fails, a waiter runs the effect itself.
  let attempts = 0
  const flaky = Effect.sleep("50 millis").pipe(
    Effect.andThen(Effect.suspend(() => ++attempts === 1 ? Effect.fail("upstream 503") : Effect.succeed(`ok after ${attempts}`)))
  )
  const [failed, waited] = yield* Effect.all([
    Effect.flip(Idempotency.once("flaky", flaky, options)),
    Effect.delay(Idempotency.once("flaky", flaky, options), "10 millis")
  ], { concurrency: "unbounded" })
  assert.deepEqual([failed, waited], ["upstream 503", "ok after 2"])

  yield* Fiber.interrupt(owner) // its claim is released: nothing is left behind
  const stats = yield* Idempotency.stats(Idempotency.Store)
  return { waited: stats.waited, duplicates: stats.duplicates }
}).pipe(Effect.provide(Idempotency.layerMemory()))

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
