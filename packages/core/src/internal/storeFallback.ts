import type { OnStoreError, Reason, StoreError } from "../Store.ts"

/**
 * What a primitive whose state lives in a shared store (Redis, SQLite) does
 * when the store cannot decide: the `onStoreError` policy, the counters of
 * store errors, the in-memory stand-in of `"local"`, and the backoff that
 * keeps a dead store from costing a failed round trip per call.
 *
 * Only primitives on a store without `inProcess` have one: an in-process
 * store never fails, and its hot path never looks here.
 */

/**
 * After a store error that says the store is down (`Unavailable`,
 * `Timeout`), decisions are taken without it for this long; then one call
 * asks it again. A dead store therefore costs one failed round trip per
 * second, not one per call.
 *
 * @internal
 */
export const STORE_RETRY_MS = 1000

/** @internal */
export const storeReasons: ReadonlyArray<Reason> = ["Unavailable", "Timeout", "Rejected"]

/** @internal */
export const emptyStoreErrors = (): Record<Reason, number> => ({ Unavailable: 0, Timeout: 0, Rejected: 0 })

/** @internal */
export class StoreFallback<Local> {
  readonly mode: OnStoreError
  readonly errors: Record<Reason, number> = emptyStoreErrors()
  /** Decisions taken by the policy instead of the store (the failed call's own included). */
  decided = 0
  /**
   * `-Infinity` while the store answers; otherwise the time from which one
   * call asks it again (each call that asks pushes it one backoff further,
   * so the others keep deciding without the store while that call waits).
   */
  retryAt = -Infinity
  private local: Local | undefined = undefined
  private readonly makeLocal: () => Local

  constructor(mode: OnStoreError, makeLocal: () => Local) {
    this.mode = mode
    this.makeLocal = makeLocal
  }

  /** The stand-in of `"local"`: created on first use, kept across outages (it still holds what it admitted). */
  get standIn(): Local {
    return this.local ??= this.makeLocal()
  }

  /** The stand-in if one was ever made (blocks and refunds need not create it). */
  get standInIfAny(): Local | undefined {
    return this.local
  }

  /** The store is believed to answer (no store-wide error since the last answer). */
  get healthy(): boolean {
    return this.retryAt === -Infinity
  }

  /**
   * Whether a decision at `now` should ask the store. While the store is
   * down, only the first call after each backoff asks; the others decide by
   * the policy at once.
   */
  ask(now: number): boolean {
    if (this.retryAt === -Infinity) return true
    if (now < this.retryAt) return false
    this.retryAt = now + STORE_RETRY_MS
    return true
  }

  /**
   * Counts a store error. `Unavailable` and `Timeout` are about the store
   * as a whole: decisions go without it until the backoff ends. `Rejected`
   * is about one operation (a key holding something else, a script error):
   * the next call asks again.
   */
  failed(error: StoreError, now: number): void {
    this.errors[error.reason]++
    if (error.reason !== "Rejected") this.retryAt = now + STORE_RETRY_MS
  }

  /** The store answered. True when that ends an outage. */
  answered(): boolean {
    if (this.retryAt === -Infinity) return false
    this.retryAt = -Infinity
    return true
  }

  /** The `retryAfter` of a `"fail-closed"` rejection: until the store is asked again. */
  retryAfterMs(now: number): number {
    return this.retryAt > now ? this.retryAt - now : 0
  }
}
