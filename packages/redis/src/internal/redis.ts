import { InvalidOptions, StoreError } from "@bulwark/core"
import { Effect, Schema } from "effect"
import type * as Redis from "effect/persistence/Redis"

// -----------------------------------------------------------------------------
// errors
// -----------------------------------------------------------------------------

/** How every Redis store reports a failed operation (the same three reasons in every store contract). */
export type FailureReason = "Unavailable" | "Timeout" | "Rejected"

/**
 * Error replies that mean "not now" rather than "never": the server is
 * loading its data, busy with a script, a replica that cannot take writes,
 * or a cluster that is re-forming.
 */
const transientReplies = new Set(["LOADING", "BUSY", "MASTERDOWN", "READONLY", "TRYAGAIN", "CLUSTERDOWN", "NOREPLICAS"])

/** The name of `cause`'s class or of any class it extends. */
const hasClassNamed = (cause: unknown, names: ReadonlyArray<string>): boolean => {
  for (let proto = Object.getPrototypeOf(cause); proto !== null && proto !== Object.prototype; proto = Object.getPrototypeOf(proto)) {
    const name = (proto.constructor as { readonly name?: unknown } | undefined)?.name
    if (typeof name === "string" && names.includes(name)) return true
  }
  return false
}

/** An error reply reads `CODE message`, the code in capitals (`WRONGTYPE`, `ERR`, `NOSCRIPT`). */
const replyCode = (message: string): string | undefined => /^([A-Z][A-Z_]+)(\s|$)/.exec(message)?.[1]

/**
 * Classifies what a Redis client failed with. Effect's `Redis` service wraps
 * the client's error as `cause`; the checks go by class name and by the shape
 * of the message, never by importing a client, so that they hold for any
 * client behind the service (node-redis exports its classes, so their names
 * survive bundling).
 *
 * @internal
 */
export const classify = (cause: unknown): { readonly reason: FailureReason; readonly message: string } => {
  const message = cause instanceof Error ? cause.message : String(cause)
  if (hasClassNamed(cause, ["TimeoutError", "SocketTimeoutError", "ConnectionTimeoutError"])) {
    return { reason: "Timeout", message }
  }
  // Clients other than node-redis do not all have a class for replies; the reply's shape says it.
  const code = replyCode(message)
  if (code !== undefined) return { reason: transientReplies.has(code) ? "Unavailable" : "Rejected", message }
  // Everything else is about reaching the server: refused, reset, closed, offline.
  return { reason: "Unavailable", message }
}

/**
 * Runs one Redis operation with a time limit, turning every failure into the
 * store's own error.
 *
 * @internal
 */
export const guarded = <A, E>(
  operation: Effect.Effect<A, Redis.RedisError>,
  timeoutMs: number,
  onError: (reason: FailureReason, message: string) => E
): Effect.Effect<A, E> =>
  operation.pipe(
    Effect.mapError((error) => {
      const { message, reason } = classify(error.cause)
      return onError(reason, message)
    }),
    Effect.timeoutOrElse({
      duration: timeoutMs,
      orElse: () => Effect.fail(onError("Timeout", `No answer from Redis within ${timeoutMs} ms`))
    })
  )

// -----------------------------------------------------------------------------
// options
// -----------------------------------------------------------------------------

/**
 * A duration (`"2 seconds"`, milliseconds, a `Duration`) of a whole number
 * of milliseconds, at least one: what Redis `PX` takes.
 *
 * @internal
 */
export const WholeMillis = InvalidOptions.wholeMillis({ minimum: 1, example: `"2 seconds"` })

/**
 * Decodes a store's options, reporting every bad field in one
 * `InvalidOptions` (as `@bulwark/core` does).
 *
 * @internal
 */
export const decodeOptions = InvalidOptions.decoder

/**
 * Whose clock a store's scripts use: Redis `TIME` (every process agrees) or
 * the `now` the primitive passes (Effect's `Clock`, so `TestClock` drives a
 * test against a real server).
 *
 * @internal
 */
export const ClockOption = Schema.Literals(["redis", "caller"])

/**
 * With the caller's clock, Redis still expires keys on its own clock: keys
 * then outlive the time they come back to rest by this much, so that a test
 * moving `TestClock` ahead of real time never loses state it still needs.
 *
 * @internal
 */
export const callerClockMarginMs = 60_000

/**
 * The store error of a primitive's store (`StoreError` of `@bulwark/core`,
 * store `"redis"`).
 *
 * @internal
 */
export const storeError = (operation: string) => (reason: FailureReason, message: string): StoreError =>
  new StoreError({ store: "redis", operation, reason, message })

/**
 * A reply outside the contract: the key holds something else, or a script
 * of another version answered.
 *
 * @internal
 */
export const unexpectedReply = (operation: string, reply: unknown): StoreError =>
  new StoreError({ store: "redis", operation, reason: "Rejected", message: `Unexpected reply ${JSON.stringify(reply)}` })

/**
 * Whole numbers in a script's reply (node-redis gives integers as numbers);
 * `undefined` when the reply has another shape.
 *
 * @internal
 */
export const integers = (reply: unknown, length: number): ReadonlyArray<number> | undefined => {
  if (!Array.isArray(reply) || reply.length !== length) return undefined
  const out: Array<number> = []
  for (const item of reply) {
    const n = typeof item === "number" ? item : typeof item === "string" && item !== "" ? Number(item) : Number.NaN
    if (!Number.isFinite(n)) return undefined
    out.push(n)
  }
  return out
}
