/**
 * The file every SQLite store of this package shares: where it lives, which
 * schema it has, and a check that it can be used.
 *
 * **Details**
 *
 * - Default location: `<user cache directory>/bulwark/bulwark.sqlite`, the
 *   cache directory being `$XDG_CACHE_HOME` (when absolute) or `~/.cache` on
 *   Linux, `~/Library/Caches` on macOS, `%LOCALAPPDATA%` on Windows. The
 *   directory is created when missing. Every store takes a `file` option.
 * - One connection per file per process, opened on first use and closed
 *   when the last store using it is closed. WAL mode (readers never wait for
 *   the writer), `synchronous = NORMAL` (a crashed process loses nothing).
 * - Every write is a `BEGIN IMMEDIATE` transaction: the file's write lock is
 *   taken first, waiting at most the store's `lockTimeout` (SQLite's busy
 *   timeout, default 100 ms). A lock not had by then fails the operation with
 *   `StoreError` reason `Timeout`: nothing was written.
 * - Schema-versioned: the `bulwark_meta` table holds `schema_version`, and
 *   `PRAGMA application_id` marks the file as Bulwark's. An empty file (or
 *   none) is created at the current version; an older version is migrated
 *   on open, under the lock. A file that is not a SQLite database, another
 *   application's database, a database with tables Bulwark did not create, a
 *   newer schema, or a corrupt file fails every operation with `StoreError`
 *   reason `Rejected`, and is never written to.
 *
 * @since 0.1.0
 */
import type { InvalidOptions, StoreError } from "@bulwark/core"
import { type Duration, Effect, Schema } from "effect"
import * as database from "./internal/database.ts"
import { databaseFields, decodeOptions, lockTimeoutMs } from "./internal/options.ts"
import { attempt } from "./internal/store.ts"

/**
 * The schema version this package writes and reads. A file of a later
 * version is refused with reason `Rejected`.
 *
 * **Example** (Reading a file's version with node:sqlite)
 *
 * ```ts
 * import { SqliteDatabase } from "@bulwark/sqlite"
 * import { DatabaseSync } from "node:sqlite"
 *
 * const db = new DatabaseSync(SqliteDatabase.defaultFile(), { readOnly: true })
 * const row = db.prepare("SELECT value FROM bulwark_meta WHERE key = 'schema_version'").get()
 * console.log(row?.value === String(SqliteDatabase.schemaVersion)) // true for a file of this version
 * ```
 *
 * @since 0.1.0
 * @category constants
 */
export const schemaVersion: number = database.SCHEMA_VERSION

/**
 * `PRAGMA application_id` of Bulwark's files (`0x42776b31`, "Bwk1"): how a
 * Bulwark file is told from another application's SQLite database.
 *
 * **Example** (Is this file Bulwark's?)
 *
 * ```ts
 * import { SqliteDatabase } from "@bulwark/sqlite"
 * import { DatabaseSync } from "node:sqlite"
 *
 * const db = new DatabaseSync("/tmp/some.sqlite", { readOnly: true })
 * const { application_id } = db.prepare("PRAGMA application_id").get() as { application_id: number }
 * console.log(application_id === SqliteDatabase.applicationId)
 * ```
 *
 * @since 0.1.0
 * @category constants
 */
export const applicationId: number = database.APPLICATION_ID

/**
 * The file the stores use when given none:
 * `<user cache directory>/bulwark/bulwark.sqlite`.
 *
 * **Example** (Where the default file is)
 *
 * ```ts
 * import { SqliteDatabase } from "@bulwark/sqlite"
 *
 * console.log(SqliteDatabase.defaultFile()) // e.g. /home/ada/.cache/bulwark/bulwark.sqlite
 * ```
 *
 * @since 0.1.0
 * @category location
 */
export const defaultFile = (): string => database.defaultFile()

/**
 * The options of {@link check}, as a Schema.
 *
 * @since 0.1.0
 * @category options
 */
export const Options = Schema.Struct(databaseFields)

/**
 * @since 0.1.0
 * @category options
 */
export interface Options {
  /** The database file; default {@link defaultFile}. */
  readonly file?: string | undefined
  /** The longest to wait for another process's lock; default 100 ms. */
  readonly lockTimeout?: Duration.Input | undefined
}

const decode = decodeOptions("SqliteDatabase", Options)

/**
 * Opens the file as the stores would (creating or migrating it), then
 * closes it: a start-up check, or a `doctor` command, that reports a file
 * the stores could not use as a `StoreError` (operation `"open"`) instead of
 * finding out at the first call.
 *
 * **Example** (Checking the file at start-up)
 *
 * ```ts
 * import { SqliteDatabase } from "@bulwark/sqlite"
 * import { Effect } from "effect"
 *
 * const doctor = SqliteDatabase.check({ file: "/tmp/bulwark-example.sqlite" }).pipe(
 *   Effect.catchTag("StoreError", (e) => Effect.logWarning(`the cache file cannot be used: ${e.message}`))
 * )
 * ```
 *
 * @since 0.1.0
 * @category checks
 */
export const check = (options?: Options): Effect.Effect<void, StoreError | InvalidOptions> =>
  Effect.flatMap(decode(options), (decoded) =>
    attempt("open", () => {
      const connection = database.acquire(decoded.file ?? database.defaultFile())
      try {
        connection.read(lockTimeoutMs(decoded.lockTimeout), () => undefined)
      } finally {
        database.release(connection)
      }
    }))
