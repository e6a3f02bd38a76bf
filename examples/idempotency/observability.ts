/**
 * An instance counts what it does (stats), tells it as it happens (events,
 * keys only with `exposeKeys`), and exports pull-based metrics
 * `bulwark.idempotency.*` labelled by name and reason. Bad options are a
 * typed `InvalidOptions` from `make`, and a defect naming every bad field
 * from a call.
 */
import { Idempotency, InvalidOptions } from "@bulwark/core"
import { Cause, Effect, Exit, Fiber, Metric, Schema, Stream } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

export const program = Effect.gen(function*() {
  const webhooks = yield* Idempotency.make({ name: "webhooks", exposeKeys: true })
  const events = yield* Effect.forkChild(Stream.runCollect(Idempotency.events(webhooks).pipe(Stream.take(3))))
  yield* Effect.sleep("10 millis") // the stream is listening

  const options = { ttl: "3 days", result: Schema.Void, using: webhooks } as const
  const handled: Array<string> = []
  const handle = (eventId: string) => Idempotency.once(eventId, Effect.sync(() => void handled.push(eventId)), options)
  yield* handle("evt_1")
  yield* handle("evt_1") // redelivered by the sender: replayed, not handled again
  assert.deepEqual(handled, ["evt_1"])

  const story = Array.from(yield* Fiber.join(events)).map((e) => `${e._tag} ${e.key}`)
  assert.deepEqual(story, ["Claimed evt_1", "Stored evt_1", "Replayed evt_1"])

  const stats = yield* Idempotency.stats(webhooks)
  assert.deepEqual([stats.claims, stats.replays, stats.stored], [1, 1, 1])

  const snapshot = yield* Metric.snapshot
  const claims = snapshot.find((m) => m.id === "bulwark.idempotency.claims" && m.attributes?.name === "webhooks")
  assert.deepEqual(claims?.state, { count: 1, incremental: true })

  // Bad options: make fails with InvalidOptions; a call with bad options dies naming each field.
  const bad = yield* Effect.flip(Idempotency.make({ name: "" }))
  assert.ok(bad instanceof InvalidOptions)
  assert.equal(bad.message, "name: Expected a non-empty name")
  const exit = yield* Effect.exit(Idempotency.once("k", Effect.void, { ttl: 0, result: Schema.Void, using: webhooks }))
  assert.ok(Exit.isFailure(exit) && Cause.hasDies(exit.cause))
  assert.match(String(Cause.squash(exit.cause)), /ttl: Expected a whole number of milliseconds >= 1/)
  return story
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
