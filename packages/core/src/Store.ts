/**
 * The error of a shared store (Redis, SQLite, your own) that could not decide:
 * one class for every store contract of the toolkit, so that a primitive's
 * `onStoreError` policy and the metrics treat every backend alike.
 *
 * @since 0.1.0
 */
import { Schema } from "effect"

/**
 * Why a store operation did not decide.
 *
 * - `Unavailable`: the store could not be reached (connection refused or
 *   lost, client offline, server loading or read-only, database locked by
 *   another process beyond the bound).
 * - `Timeout`: no answer in time. The operation may still take effect.
 * - `Rejected`: the store answered with an error or with something outside
 *   the contract (another type of value at the key, a script error, a
 *   foreign or corrupt database).
 *
 * @since 0.1.0
 * @category errors
 */
export const Reason = Schema.Literals(["Unavailable", "Timeout", "Rejected"])

/**
 * @since 0.1.0
 * @category errors
 */
export type Reason = typeof Reason.Type

/**
 * A store operation did not decide. Data only: never a key or a stored value,
 * only where and what went wrong.
 *
 * **Example** (Failing a remote operation)
 *
 * ```ts
 * import { StoreError } from "@bulwark/core"
 *
 * const offline = new StoreError({
 *   store: "redis",
 *   operation: "consume",
 *   reason: "Unavailable",
 *   message: "The client is offline"
 * })
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class StoreError extends Schema.TaggedError<StoreError>()("StoreError", {
  /** The backend: `"redis"`, `"sqlite"`, or a custom store's name. */
  store: Schema.String,
  /** The contract operation: `"consume"`, `"admit"`, `"claim"`, ... */
  operation: Schema.String,
  reason: Reason,
  /** What the store or its client said. */
  message: Schema.String
}) {}

/**
 * What a primitive does when its store cannot decide.
 *
 * - `"fail-open"`: let the call through (availability first).
 * - `"fail-closed"`: reject the call with the primitive's own error, reason
 *   `StoreUnavailable` (protection first).
 * - `"local"`: decide with an in-memory stand-in (an insurance limiter,
 *   breaker or bulkhead of the same options, per process) until the store
 *   answers again.
 *
 * @since 0.1.0
 * @category policies
 */
export const OnStoreError = Schema.Literals(["fail-open", "fail-closed", "local"])

/**
 * @since 0.1.0
 * @category policies
 */
export type OnStoreError = typeof OnStoreError.Type
