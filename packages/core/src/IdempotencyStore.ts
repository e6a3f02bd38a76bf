/**
 * Where `Idempotency` keeps its claims and results, and the four operations
 * it needs from that place: `claim`, `complete`, `abandon` and `renew`.
 *
 * Every operation is **one atomic step** on one key: it decides and commits
 * together, so a remote store (Redis, SQLite) implements each in one round
 * trip (a Lua script, one SQL statement), and two processes asking for the
 * same key can never both get a claim.
 *
 * **The state of a key**
 *
 * A key is absent, **in flight** (claimed by one owner, identified by a
 * token, until its lease runs out) or **completed** (a stored result, until
 * its time to live runs out). An expired lease or result reads as absent.
 *
 * - `claim(key, leaseMs, now)`: absent: the key becomes in flight for
 *   `leaseMs` under a new token, returned as `Claimed`. In flight: `InFlight`
 *   with the lease time left. Completed: `Completed` with the stored text and
 *   the time it was stored.
 * - `complete(key, token, encoded, ttlMs, now)`: only if `token` still owns
 *   the key (in flight under that token, lease not run out), the key becomes
 *   completed with `encoded` for `ttlMs`; returns whether it did. This is the
 *   fencing: an owner whose lease ran out (a paused process, a lost network)
 *   never overwrites the state of a newer owner, nor writes a result for a
 *   key it no longer holds.
 * - `abandon(key, token, now)`: only if `token` still owns the key, the key
 *   becomes absent (the call failed and failures are not cached, or it was
 *   interrupted); returns whether it did.
 * - `renew(key, token, leaseMs, now)`: only if `token` still owns the key,
 *   its lease is set to `leaseMs` from now; returns whether it did.
 *
 * Tokens never repeat for a key, even after the key expired and was claimed
 * again (otherwise an old owner could match a new claim). The stored text is
 * opaque to the store: `Idempotency` writes JSON (see its documentation).
 *
 * **Gotchas**
 *
 * - Times are epoch milliseconds from Effect's `Clock` (so `TestClock` drives
 *   the in-memory store). A remote store may use its own clock instead (Redis
 *   expires keys itself), as long as it uses it for every decision of a key.
 *   That is why `InFlight` reports the lease time *left*, not a deadline:
 *   the caller's clock and the store's need not agree.
 * - Operations fail with {@link StoreError} only when the store could not
 *   decide (unreachable, no answer in time, an answer outside this contract).
 *   A claim whose answer was lost may still have been taken: it holds the key
 *   until its lease runs out.
 *
 * @since 0.1.0
 */
import * as Store from "./Store.ts"
import { Effect, Schema } from "effect"
import * as internal from "./internal/idempotencyStore.ts"

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: "~@bulwark/core/IdempotencyStore" = "~@bulwark/core/IdempotencyStore"

/**
 * The answer of `claim`.
 *
 * - `Claimed`: the caller owns the key until its lease runs out; `token`
 *   identifies it to `complete`, `abandon` and `renew`.
 * - `InFlight`: another owner holds the key; `leaseLeftMs` is the time until
 *   its lease runs out (unless renewed).
 * - `Completed`: a result is stored: `encoded` as it was given to
 *   `complete`, `storedAt` in the store's clock (epoch milliseconds).
 *
 * @since 0.1.0
 * @category models
 */
export type Claim =
  | { readonly _tag: "Claimed"; readonly token: string }
  | { readonly _tag: "InFlight"; readonly leaseLeftMs: number }
  | { readonly _tag: "Completed"; readonly encoded: string; readonly storedAt: number }

/**
 * The store operation that failed.
 *
 * @since 0.1.0
 * @category errors
 */
export const Operation = Schema.Literals(["claim", "complete", "abandon", "renew"])

/**
 * @since 0.1.0
 * @category errors
 */
export type Operation = typeof Operation.Type

/**
 * Why a store operation failed: the shared `Store.Reason` (`Unavailable`,
 * `Timeout`, `Rejected`), as for every store of the toolkit.
 *
 * @since 0.1.0
 * @category errors
 */
export const StoreErrorReason = Store.Reason

/**
 * @since 0.1.0
 * @category errors
 */
export type StoreErrorReason = Store.Reason

/**
 * A store operation did not decide: the toolkit's one `StoreError` (see
 * `Store`), so an idempotency store fails like every other store. Data only:
 * never the key or the stored result.
 *
 * **Example** (Failing a remote operation)
 *
 * ```ts
 * import { IdempotencyStore } from "@bulwark/core"
 *
 * const offline = new IdempotencyStore.StoreError({
 *   store: "redis",
 *   operation: "claim",
 *   reason: "Unavailable",
 *   message: "The client is offline"
 * })
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export const StoreError = Store.StoreError

/**
 * @since 0.1.0
 * @category errors
 */
export type StoreError = Store.StoreError

/**
 * An idempotency store. See the module documentation for the contract.
 *
 * @since 0.1.0
 * @category models
 */
export interface IdempotencyStore {
  readonly [TypeId]: typeof TypeId
  /** Takes the key if nobody holds it, else says who does or what is stored: one atomic step. */
  readonly claim: (key: string, leaseMs: number, now: number) => Effect.Effect<Claim, StoreError>
  /** Stores the result if `token` still owns the key; `false` when it does not (fencing). */
  readonly complete: (
    key: string,
    token: string,
    encoded: string,
    ttlMs: number,
    now: number
  ) => Effect.Effect<boolean, StoreError>
  /** Releases the claim without a result if `token` still owns the key. */
  readonly abandon: (key: string, token: string, now: number) => Effect.Effect<boolean, StoreError>
  /** Extends the lease to `leaseMs` from now if `token` still owns the key. */
  readonly renew: (key: string, token: string, leaseMs: number, now: number) => Effect.Effect<boolean, StoreError>
}

/**
 * Is this value a store?
 *
 * @since 0.1.0
 * @category guards
 */
export const isIdempotencyStore = (u: unknown): u is IdempotencyStore =>
  typeof u === "object" && u !== null && TypeId in u

/**
 * Builds a store from its operations (for example a SQL store that runs one
 * statement per operation).
 *
 * **Example** (A store backed by a remote service)
 *
 * ```ts
 * import { IdempotencyStore } from "@bulwark/core"
 *
 * declare const statements: {
 *   claim: IdempotencyStore.IdempotencyStore["claim"]
 *   complete: IdempotencyStore.IdempotencyStore["complete"]
 *   abandon: IdempotencyStore.IdempotencyStore["abandon"]
 *   renew: IdempotencyStore.IdempotencyStore["renew"]
 * }
 *
 * const remote = IdempotencyStore.make(statements)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (operations: {
  readonly claim: IdempotencyStore["claim"]
  readonly complete: IdempotencyStore["complete"]
  readonly abandon: IdempotencyStore["abandon"]
  readonly renew: IdempotencyStore["renew"]
}): IdempotencyStore => ({
  [TypeId]: TypeId,
  claim: operations.claim,
  complete: operations.complete,
  abandon: operations.abandon,
  renew: operations.renew
})

/**
 * A fresh in-memory store: keys in a `Map`, every operation synchronous and
 * O(1) amortized. Expired keys are dropped when they are next touched, and
 * all at once whenever the map has doubled since the last sweep, so memory
 * stays proportional to the keys that are live. There is no background
 * fiber.
 *
 * It is shared only within one process: use a remote store (Redis, from
 * `@bulwark/redis`) for "at most once" across processes.
 *
 * **Example** (One store for two instances)
 *
 * ```ts
 * import { Idempotency, IdempotencyStore } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * const store = IdempotencyStore.memory()
 * const program = Effect.gen(function*() {
 *   const orders = yield* Idempotency.make({ name: "orders", store })
 *   const refunds = yield* Idempotency.make({ name: "refunds", store }) // keys do not collide: names differ
 *   return [orders.name, refunds.name]
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const memory = (): IdempotencyStore => {
  const store = new internal.MemoryStore()
  return make({
    claim: (key, leaseMs, now) => Effect.sync(() => store.claim(key, leaseMs, now)),
    complete: (key, token, encoded, ttlMs, now) => Effect.sync(() => store.complete(key, token, encoded, ttlMs, now)),
    abandon: (key, token, now) => Effect.sync(() => store.abandon(key, token, now)),
    renew: (key, token, leaseMs, now) => Effect.sync(() => store.renew(key, token, leaseMs, now))
  })
}
