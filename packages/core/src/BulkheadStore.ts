/**
 * Where a `DistributedBulkhead` keeps its slots and its waiting room, and the
 * four operations it needs from that place: `acquire`, `renew`, `release` and
 * `inspect`.
 *
 * Every operation is **one atomic step** on one bulkhead name: it purges what
 * has expired, decides and commits together, so a remote store (Redis, SQL)
 * implements each in one round trip (a Lua script, one transaction), and two
 * processes can never both take the last slot.
 *
 * **The state of a name**
 *
 * A name has **slots** (at most `limit`, each held by a token until its lease
 * runs out) and a **waiting room** (tickets in the order they were first
 * enqueued, each held by a token until its ticket runs out). A token is
 * chosen by the caller, unique across every process sharing the store (the
 * bulkhead uses random UUIDs), and names one call from its first `acquire` to
 * its `release`: while it waits it is a ticket, once admitted it is a slot.
 * Because the caller knows the token before it asks, it can register the
 * `release` before the answer comes back, and release a slot whose answer
 * was lost.
 *
 * - `acquire(request)`: a token that holds a slot renews it and gets
 *   `Acquired` (a repeated acquire is safe). Otherwise, with `ahead` the
 *   tickets ahead of the token (its position if it holds one, every ticket if
 *   it does not) and `free` the slots not held: if `ahead < free` the token
 *   takes a slot for `leaseMs` (leaving the waiting room) and gets
 *   `Acquired`; a token that holds a ticket keeps it for another `ticketMs`
 *   and gets `Queued` with its position; a token without one gets a ticket at
 *   the end (`Queued`) if fewer than `maxQueue` tickets are held, else `Full`.
 * - `renew(name, token, leaseMs, now)`: only if `token` still holds a slot,
 *   its lease is set to `leaseMs` from now; returns whether it did. A lease
 *   that ran out is gone for good (its slot may be someone else's).
 * - `release(name, token, now)`: gives back the token's slot or ticket;
 *   returns whether it held one.
 * - `inspect(name, now)`: the slots and tickets held now.
 *
 * The rule `ahead < free` is what makes waiting FIFO: a call is admitted only
 * when every ticket ahead of it would fit too, so a later ticket (or a new
 * arrival) never takes a slot an earlier, live ticket needs. A name that holds
 * nothing is absent: a remote store lets it expire.
 *
 * **Gotchas**
 *
 * - Times are epoch milliseconds from Effect's `Clock` (so `TestClock` drives
 *   the in-memory store). A remote store may use its own clock instead (Redis
 *   `TIME`), as long as it uses it for every decision of a name: only
 *   durations (`leaseMs`, `ticketMs`) cross between the caller and the store.
 * - Operations fail with {@link StoreError} only when the store could not
 *   decide (unreachable, no answer in time, an answer outside this contract).
 *   An `acquire` whose answer was lost may still have taken a slot: the
 *   bulkhead releases its token anyway, and if that fails too the lease runs
 *   out.
 * - Every process must use the same `limit` for a name. While two limits are
 *   in use (a rolling deploy), each admission checks its own, so the larger
 *   one is the cap.
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import * as internal from "./internal/bulkheadStore.ts"
import type { OnStoreError, StoreError } from "./Store.ts"

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: "~@bulwark/core/BulkheadStore" = "~@bulwark/core/BulkheadStore"

/**
 * What `acquire` asks for.
 *
 * @since 0.1.0
 * @category models
 */
export interface AcquireRequest {
  /** The bulkhead's name: one set of slots and one waiting room per name. */
  readonly name: string
  /** The call's token, chosen by the caller and unique across every process. */
  readonly token: string
  /** The global cap: at most this many slots are held at once. */
  readonly limit: number
  /** How long a slot taken (or renewed) now is held without a renewal. */
  readonly leaseMs: number
  /** Tickets allowed in the waiting room; 0: never enqueue, answer `Full`. */
  readonly maxQueue: number
  /** How long a ticket taken (or refreshed) now is held without another `acquire`. */
  readonly ticketMs: number
  /** The caller's clock, epoch milliseconds (a remote store may use its own). */
  readonly now: number
}

/**
 * The answer of `acquire`.
 *
 * - `Acquired`: the token holds a slot until its lease runs out; `inFlight`
 *   counts the slots held, this one included.
 * - `Queued`: the token holds a ticket at `position` (0 is the head) until
 *   its ticket runs out; call `acquire` again with the same token to move on.
 * - `Full`: no slot and no place in the waiting room; the token holds nothing.
 *
 * @since 0.1.0
 * @category models
 */
export type Acquisition =
  | { readonly _tag: "Acquired"; readonly inFlight: number }
  | { readonly _tag: "Queued"; readonly position: number; readonly inFlight: number }
  | { readonly _tag: "Full"; readonly inFlight: number; readonly queued: number }

/**
 * What `inspect` reads: slots and tickets held now, by every process.
 *
 * @since 0.1.0
 * @category models
 */
export interface Occupancy {
  readonly inFlight: number
  readonly queued: number
}

/**
 * The store operation that failed, as `StoreError.operation` names it.
 *
 * @since 0.1.0
 * @category errors
 */
export type Operation = "acquire" | "renew" | "release" | "inspect"

/**
 * A bulkhead store. See the module documentation for the contract.
 *
 * @since 0.1.0
 * @category models
 */
export interface BulkheadStore {
  readonly [TypeId]: typeof TypeId
  /** Takes a slot, or a place in the waiting room, or says the bulkhead is full: one atomic step. */
  readonly acquire: (request: AcquireRequest) => Effect.Effect<Acquisition, StoreError>
  /** Extends the token's lease to `leaseMs` from now if it still holds a slot. */
  readonly renew: (name: string, token: string, leaseMs: number, now: number) => Effect.Effect<boolean, StoreError>
  /** Gives back the token's slot or ticket; `false` when it held neither (already released, or expired). */
  readonly release: (name: string, token: string, now: number) => Effect.Effect<boolean, StoreError>
  /** Slots and tickets held now. */
  readonly inspect: (name: string, now: number) => Effect.Effect<Occupancy, StoreError>
  /**
   * What a primitive on this store does when the store cannot decide, if
   * the primitive's own `onStoreError` is not given (then `"local"`). A
   * store for command-line tools says `"fail-open"`: never hang.
   */
  readonly onStoreError?: OnStoreError | undefined
}

/**
 * Is this value a bulkhead store?
 *
 * @since 0.1.0
 * @category guards
 */
export const isBulkheadStore = (u: unknown): u is BulkheadStore => typeof u === "object" && u !== null && TypeId in u

/**
 * Builds a store from its operations (for example a SQL store that runs one
 * transaction per operation, or a wrapper that counts or fails operations).
 *
 * **Example** (A store that logs every admission decision)
 *
 * ```ts
 * import { BulkheadStore } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * const inner = BulkheadStore.memory()
 * const logged = BulkheadStore.make({
 *   ...inner,
 *   acquire: (request) => Effect.tap(inner.acquire(request), (answer) => Effect.logDebug(`${request.name}: ${answer._tag}`))
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (operations: {
  readonly acquire: BulkheadStore["acquire"]
  readonly renew: BulkheadStore["renew"]
  readonly release: BulkheadStore["release"]
  readonly inspect: BulkheadStore["inspect"]
  readonly onStoreError?: OnStoreError | undefined
}): BulkheadStore => ({
  [TypeId]: TypeId,
  acquire: operations.acquire,
  renew: operations.renew,
  release: operations.release,
  inspect: operations.inspect,
  ...(operations.onStoreError === undefined ? {} : { onStoreError: operations.onStoreError })
})

/**
 * A fresh in-memory store: slots and tickets in a `Map` per name, every
 * operation synchronous. It is shared only within one process: give the same
 * store to several instances (or share one instance) for one cap in-process,
 * and use a remote store (Redis, from `@bulwark/redis`) for one cap across
 * processes. Names that hold nothing take no memory.
 *
 * **Example** (Two instances, one cap)
 *
 * ```ts
 * import { BulkheadStore, DistributedBulkhead } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * const store = BulkheadStore.memory()
 * const program = Effect.gen(function*() {
 *   const a = yield* DistributedBulkhead.make({ name: "db", maxConcurrent: 4, store })
 *   const b = yield* DistributedBulkhead.make({ name: "db", maxConcurrent: 4, store }) // same name, same 4 slots
 *   return [a.name, b.name]
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const memory = (): BulkheadStore => {
  const store = new internal.MemoryBulkheadStore()
  return make({
    acquire: (request) => Effect.sync(() => store.acquire(request)),
    renew: (name, token, leaseMs, now) => Effect.sync(() => store.renew(name, token, leaseMs, now)),
    release: (name, token, now) => Effect.sync(() => store.release(name, token, now)),
    inspect: (name, now) => Effect.sync(() => store.inspect(name, now))
  })
}
