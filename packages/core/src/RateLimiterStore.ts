/**
 * Where a rate limiter keeps its state, and the one operation it needs from
 * it: an atomic decision.
 *
 * A `RateLimiter` never reads and then writes its state in two steps. Each
 * call makes **one** store call, `consume(key, algorithm, cost, now, maxWait)`,
 * which in a single atomic step decides and, when the call may pass, commits
 * it. So a remote store (Redis, a database) can implement the whole contract
 * in one round trip, for example one Lua script, and two processes sharing a
 * key can never both take the last token.
 *
 * **The contract of `consume`**
 *
 * - Let `at` be the earliest time, not before `now`, at which a call of
 *   `cost` fits the algorithm, given everything committed so far for `key`
 *   (earlier calls and earlier reservations: `at` is never before the most
 *   recent reservation, so a later caller never overtakes an earlier one) and
 *   any block in force (`at` is never before the end of a block).
 * - If `at - now <= maxWait`, the store commits the call **at `at`** and
 *   returns `{ admitted: true, at }`: `at <= now` means "pass now", a later
 *   `at` is a reservation (the caller's slot in time; it waits until then).
 * - Otherwise it commits nothing and returns `{ admitted: false, at }`, where
 *   `at` says when such a call could pass (`Infinity` when `cost` is more than
 *   the algorithm can ever admit), and `blocked: true` when a block alone
 *   keeps the call out beyond `maxWait`.
 * - A limiter whose callers never wait passes `maxWait = 0`.
 *
 * `refund(key, algorithm, cost, at, now)` gives back a reservation whose time
 * has not come (the waiting caller was interrupted). A store may forfeit a
 * refund rather than credit it when crediting could break the algorithm's
 * guarantee: for the token bucket and GCRA, only the most recent reservation
 * can be credited exactly (an older one is followed by reservations that were
 * planned without its capacity). `block(key, algorithm, until, now)` keeps
 * every call of `key` out until `until`.
 *
 * **In-process stores**
 *
 * A store whose state lives in this process may also offer `inProcess`: the
 * same operations as plain synchronous functions. The limiter then calls them
 * directly, without an `Effect` per decision (this is what makes a decision
 * cost a few hundred nanoseconds), and treats the store as its own: it may
 * re-plan its waiting callers exactly (a returned reservation moves later
 * callers up). The store returned by {@link memory} is one; it is what
 * `RateLimiter.make` uses when no `store` is given.
 *
 * **Gotchas**
 *
 * - Times are epoch milliseconds from Effect's `Clock` (so `TestClock` drives
 *   everything). A remote store may use its own clock instead, as long as it
 *   uses it for every decision of a key and returns times in the caller's
 *   frame (`at - now` is the wait it means).
 * - An operation fails with `StoreError` (`Store.ts`) only when the store
 *   could not decide (unreachable, no answer in time, an error reply). The
 *   limiter then applies its `onStoreError` policy: let the call through,
 *   reject it with reason `StoreUnavailable`, or decide with an in-memory
 *   stand-in. A timed-out `consume` may still have been committed.
 * - Share one in-memory store only between limiters that use different keys:
 *   it trusts its owner to refund in reverse order of reservation.
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import * as internal from "./internal/rateLimiterStore.ts"
import type { OnStoreError, StoreError } from "./Store.ts"

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: "~@bulwark/core/RateLimiterStore" = "~@bulwark/core/RateLimiterStore"

/**
 * An algorithm as the store sees it: its tag and its numbers, durations in
 * whole milliseconds. These are the parameters a remote store receives with
 * every decision (so a store needs no configuration per key).
 *
 * - `TokenBucket`: holds at most `capacity` tokens; `refill` tokens are added
 *   at every multiple of `perMillis` since the epoch (not beyond `capacity`);
 *   a call takes `cost` tokens.
 * - `FixedWindow`: at most `limit` per window, windows aligned to multiples of
 *   `windowMillis` since the epoch.
 * - `SlidingWindow`: at most `limit` in any window `(t - windowMillis, t]`
 *   (an exact log of admissions; entries of the same millisecond are merged).
 * - `Gcra`: the generic cell rate algorithm: `rate` per `perMillis`, at most
 *   `burst` at once; a continuously refilling bucket of `burst` stored as one
 *   timestamp.
 *
 * @since 0.1.0
 * @category models
 */
export type Algorithm =
  | { readonly _tag: "TokenBucket"; readonly capacity: number; readonly refill: number; readonly perMillis: number }
  | { readonly _tag: "FixedWindow"; readonly limit: number; readonly windowMillis: number }
  | { readonly _tag: "SlidingWindow"; readonly limit: number; readonly windowMillis: number }
  | { readonly _tag: "Gcra"; readonly rate: number; readonly perMillis: number; readonly burst: number }

/**
 * The outcome of one `consume`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Decision {
  /** The call was committed: it passes at `at` (now when `at <= now`). */
  readonly admitted: boolean
  /**
   * Admitted: the time the call passes. Rejected: the earliest time a call
   * of this cost could pass, `Infinity` if never.
   */
  readonly at: number
  /** Rejected because a block keeps the key closed beyond `maxWait`. */
  readonly blocked: boolean
  /** What a new call could take right now after this decision (tokens, room in the window); 0 while blocked. */
  readonly remaining: number
  /** When the key's state is back at rest (full bucket, empty window): it can then be dropped without loss. */
  readonly resetAt: number
}

/**
 * Synchronous operations of a store whose state lives in this process. The
 * `Decision` returned by `consume` may be a reused object: read it before the
 * next call.
 *
 * @since 0.1.0
 * @category models
 */
export interface InProcess {
  readonly consume: (key: string, algorithm: Algorithm, cost: number, now: number, maxWait: number) => Decision
  /**
   * Undoes the most recent reservation of `key` still outstanding (the caller
   * refunds in reverse order of reservation). Exact: later decisions are as if
   * the reservation had never been made.
   */
  readonly refundLatest: (key: string, algorithm: Algorithm, cost: number, at: number, now: number) => void
  /** Same contract as {@link RateLimiterStore.refund}: safe in any order, may forfeit. */
  readonly refund: (key: string, algorithm: Algorithm, cost: number, at: number, now: number) => void
  readonly block: (key: string, algorithm: Algorithm, until: number, now: number) => void
  /** What a new call could take at `now`, without committing anything. */
  readonly remaining: (key: string, algorithm: Algorithm, now: number) => number
  /** When the key is at rest (see `Decision.resetAt`), or `-Infinity` for an unknown key. */
  readonly resetAt: (key: string, algorithm: Algorithm, now: number) => number
  /** Drops the state of `key` (the owner does it only when the key is at rest). */
  readonly forget: (key: string) => void
  /** Keys with state. */
  readonly size: () => number
}

/**
 * A rate limiter's state. See the module documentation for the contract.
 *
 * @since 0.1.0
 * @category models
 */
export interface RateLimiterStore {
  readonly [TypeId]: typeof TypeId
  /** Decides and, when admitted, commits: one atomic step, one round trip. */
  readonly consume: (
    key: string,
    algorithm: Algorithm,
    cost: number,
    now: number,
    maxWait: number
  ) => Effect.Effect<Decision, StoreError>
  /** Gives back a reservation whose time has not come; may be forfeited (see the module documentation). */
  readonly refund: (
    key: string,
    algorithm: Algorithm,
    cost: number,
    at: number,
    now: number
  ) => Effect.Effect<void, StoreError>
  /** Nothing passes for `key` before `until` (a later block extends, an earlier one changes nothing). */
  readonly block: (key: string, algorithm: Algorithm, until: number, now: number) => Effect.Effect<void, StoreError>
  /** Present for in-process stores: the same operations, synchronous. */
  readonly inProcess?: InProcess | undefined
  /**
   * What a primitive on this store does when the store cannot decide, if
   * the primitive's own `onStoreError` is not given (then `"local"`). A
   * store for command-line tools says `"fail-open"`: never hang.
   */
  readonly onStoreError?: OnStoreError | undefined
}

/**
 * Is this value a store?
 *
 * @since 0.1.0
 * @category guards
 */
export const isRateLimiterStore = (u: unknown): u is RateLimiterStore =>
  typeof u === "object" && u !== null && TypeId in u

/**
 * Builds a store from its operations (for example a Redis store that runs
 * one script per decision).
 *
 * **Example** (A store backed by a remote service)
 *
 * ```ts
 * import { RateLimiterStore, type StoreError } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * declare const script: (
 *   key: string, algorithm: RateLimiterStore.Algorithm, cost: number, now: number, maxWait: number
 * ) => Effect.Effect<RateLimiterStore.Decision, StoreError> // StoreError when it cannot decide
 *
 * const remote = RateLimiterStore.make({
 *   consume: script,
 *   refund: () => Effect.void, // forfeit: always safe
 *   block: () => Effect.void
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (operations: {
  readonly consume: RateLimiterStore["consume"]
  readonly refund: RateLimiterStore["refund"]
  readonly block: RateLimiterStore["block"]
  readonly inProcess?: InProcess | undefined
  readonly onStoreError?: OnStoreError | undefined
}): RateLimiterStore => ({ [TypeId]: TypeId, ...operations })

/**
 * A fresh in-memory store: state per key in a `Map`, every operation
 * synchronous and O(1) amortized (a sliding window's log is O(entries in one
 * window) in memory, one entry per millisecond that admitted something).
 *
 * `RateLimiter.make` creates one per limiter when no `store` is given; pass
 * one explicitly only to read or share state in tests.
 *
 * @since 0.1.0
 * @category constructors
 */
export const memory = (): RateLimiterStore => {
  const store = new internal.MemoryStore()
  const copy = (d: Decision): Decision => ({
    admitted: d.admitted,
    at: d.at,
    blocked: d.blocked,
    remaining: d.remaining,
    resetAt: d.resetAt
  })
  return make({
    consume: (key, algorithm, cost, now, maxWait) =>
      Effect.sync(() => copy(store.consume(key, algorithm, cost, now, maxWait))),
    refund: (key, algorithm, cost, at, now) => Effect.sync(() => store.refund(key, algorithm, cost, at, now)),
    block: (key, algorithm, until, now) => Effect.sync(() => store.block(key, algorithm, until, now)),
    inProcess: store
  })
}
