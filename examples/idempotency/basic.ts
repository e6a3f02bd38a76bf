/**
 * A payment runs once per idempotency key: the first call charges, a retry
 * with the same key gets the stored receipt back (decoded with its Schema,
 * a `Receipt` again), and a duplicate that arrives while the first call is
 * still running is refused with a typed `IdempotencyError`.
 */
import { Idempotency } from "@bulwark/core"
import { Effect, Fiber, Schema } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

class Receipt extends Schema.Class<Receipt>("Receipt")({
  id: Schema.String,
  cents: Schema.Int,
  chargedAt: Schema.Date
}) {}

let charges = 0
const chargeCard = (cents: number) =>
  Effect.sleep("50 millis").pipe( // the payment provider takes a moment
    Effect.andThen(Effect.sync(() => new Receipt({ id: `ch_${++charges}`, cents, chargedAt: new Date() })))
  )

// What an HTTP handler does with the request's Idempotency-Key header.
const pay = (idempotencyKey: string, cents: number) =>
  Idempotency.once(idempotencyKey, chargeCard(cents), { ttl: "1 day", result: Receipt })

export const program = Effect.gen(function*() {
  const first = yield* pay("req-7f3a", 4200)

  // The client timed out and retries: same key, no second charge, the same receipt.
  const retry = yield* pay("req-7f3a", 4200)
  assert.ok(retry instanceof Receipt && retry.chargedAt instanceof Date)
  assert.deepEqual(retry, first)
  assert.equal(charges, 1)

  // A double click: the second request arrives while the first one is still charging.
  const running = yield* Effect.forkChild(pay("req-b21c", 990))
  yield* Effect.sleep("10 millis")
  const duplicate = yield* Effect.flip(pay("req-b21c", 990))
  assert.equal(duplicate._tag, "IdempotencyError")
  assert.equal(duplicate.reason, "DuplicateInFlight")
  assert.match(duplicate.message, /^Idempotency "idempotency" did not run the call: DuplicateInFlight$/)
  const second = yield* Fiber.join(running)
  assert.equal(second.cents, 990)
  assert.equal(charges, 2)

  const stats = yield* Idempotency.stats(Idempotency.Store)
  assert.deepEqual([stats.claims, stats.replays, stats.duplicates, stats.stored], [2, 1, 1, 2])
  return { first: first.id, second: second.id, charges }
}).pipe(Effect.provide(Idempotency.layerMemory())) // one process; see RedisIdempotencyStore for many

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
