/**
 * The store is a contract of four one-step operations (`claim`, `complete`,
 * `abandon`, `renew`), so a store of your own (SQL, a key-value service) is
 * four functions given to `IdempotencyStore.make`. This one keeps its keys
 * in a Map and shows what each operation must decide; instances with
 * different names share it without their keys colliding.
 */
import { Idempotency, IdempotencyStore } from "@bulwark/core"
import { Effect, Schema } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

type Entry =
  | { readonly state: "in-flight"; readonly token: string; readonly until: number }
  | { readonly state: "completed"; readonly encoded: string; readonly storedAt: number; readonly until: number }

const mapStore = () => {
  const entries = new Map<string, Entry>()
  let tokens = 0
  const live = (key: string, now: number) => {
    const entry = entries.get(key)
    return entry !== undefined && entry.until > now ? entry : undefined
  }
  // Only the token that holds the key, within its lease, may complete, abandon or renew it (fencing).
  const owns = (key: string, token: string, now: number) => {
    const entry = live(key, now)
    return entry?.state === "in-flight" && entry.token === token
  }
  return IdempotencyStore.make({
    claim: (key, leaseMs, now) =>
      Effect.sync((): IdempotencyStore.Claim => {
        const entry = live(key, now)
        if (entry?.state === "completed") return { _tag: "Completed", encoded: entry.encoded, storedAt: entry.storedAt }
        if (entry?.state === "in-flight") return { _tag: "InFlight", leaseLeftMs: entry.until - now }
        const token = `t${++tokens}` // never reused, even after the key expires
        entries.set(key, { state: "in-flight", token, until: now + leaseMs })
        return { _tag: "Claimed", token }
      }),
    complete: (key, token, encoded, ttlMs, now) =>
      Effect.sync(() =>
        owns(key, token, now) && entries.set(key, { state: "completed", encoded, storedAt: now, until: now + ttlMs }) !== undefined
      ),
    abandon: (key, token, now) => Effect.sync(() => owns(key, token, now) && entries.delete(key)),
    renew: (key, token, leaseMs, now) =>
      Effect.sync(() => owns(key, token, now) && entries.set(key, { state: "in-flight", token, until: now + leaseMs }) !== undefined)
  })
}

export const program = Effect.gen(function*() {
  const store = mapStore()
  const orders = yield* Idempotency.make({ name: "orders", store })
  const refunds = yield* Idempotency.make({ name: "refunds", store })
  const call = (using: Idempotency.Idempotency, value: string) =>
    Idempotency.once("42", Effect.succeed(value), { ttl: "1 hour", result: Schema.String, using })

  // Same key, different names: two entries ("orders:42" and "refunds:42"), two results.
  assert.deepEqual([yield* call(orders, "order 42"), yield* call(refunds, "refund 42")], ["order 42", "refund 42"])
  assert.equal(yield* call(orders, "order 42, again"), "order 42")

  // What the store holds: JSON of the Schema's encoded form.
  const read = yield* store.claim("orders:42", 1000, Date.now())
  assert.equal(read._tag, "Completed")
  assert.equal(read._tag === "Completed" && read.encoded, `{"_tag":"Success","value":"order 42"}`)
  return read
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
