import { InvalidOptions } from "@bulwark/core"
import { Duration, Schema } from "effect"

/** SQLite's busy timeout is a C `int` of milliseconds. */
const MAX_LOCK_TIMEOUT_MS = 2_147_483_647

/**
 * What SQLite's busy timeout takes: a whole number of milliseconds, 0 or
 * more (0: fail at once when the file is locked).
 *
 * @internal
 */
export const LockTimeout = InvalidOptions.wholeMillis({ minimum: 0, maximum: MAX_LOCK_TIMEOUT_MS, example: `"100 millis"` })

/**
 * A time to live: a whole number of milliseconds, at least one.
 *
 * @internal
 */
export const TimeToLive = InvalidOptions.wholeMillis({ minimum: 1, example: `"10 minutes"` })

/**
 * A path to the database file: a non-empty string without NUL bytes.
 *
 * @internal
 */
export const File = Schema.String.check(
  Schema.makeFilter((s: string) =>
    s.length > 0 && !s.includes("\0") ? undefined : `Expected a path to the database file, got ${JSON.stringify(s)}`
  )
)

/**
 * The options every SQLite store takes.
 *
 * @internal
 */
export const databaseFields = {
  file: Schema.optional(File),
  lockTimeout: Schema.optional(LockTimeout)
}

/** The default bound on waiting for the file's lock. @internal */
export const DEFAULT_LOCK_TIMEOUT_MS = 100

/** @internal */
export const lockTimeoutMs = (decoded: Duration.Duration | undefined): number =>
  decoded === undefined ? DEFAULT_LOCK_TIMEOUT_MS : Duration.toMillis(decoded)

/**
 * Decodes a store's options, reporting every bad field in one
 * `InvalidOptions` (as `@bulwark/core` does).
 *
 * @internal
 */
export const decodeOptions = InvalidOptions.decoder
