/**
 * An `IdempotencyStore` in a SQLite file, so that `Idempotency.once` runs an
 * effect at most once per key across every process of one machine that
 * uses the file: the invocations of a command-line tool, the workers of a
 * job runner.
 *
 * It runs on Node's built-in `node:sqlite` (Node >= 22.19): no dependency,
 * no server.
 *
 * **Details**
 *
 * - One row per idempotency key in `bulwark_idempotency`. A claim inserts
 *   the row under a fresh random token with the claiming process's identity
 *   (pid, start time); `complete` turns it into a stored result; `abandon`
 *   deletes it; `renew` moves its lease. Each is one `BEGIN IMMEDIATE`
 *   transaction that checks the token first (fencing), so two processes
 *   never both claim a key and an owner whose lease ran out never writes.
 * - A claim that finds a live result or a live claim answers from a plain
 *   read, without taking the file's write lock: replays do not queue behind
 *   writers.
 * - **A claim left by a dead process is taken over at once** (with
 *   `reclaimDeadOwners`, the default), instead of blocking the key until its
 *   lease runs out: the command that crashed can be run again right away.
 *   A process is dead when no process has its pid, or (on Linux) the process
 *   with that pid started at another time (the pid was reused) or is a
 *   zombie. When that cannot be known for sure (an owner in another
 *   container or on another host, no `/proc`) the lease decides, as usual.
 * - Times are the `now` the caller passes (Effect's `Clock`), so every
 *   process of the machine shares one clock, and `TestClock` drives tests.
 * - Expired rows are deleted a few at a time by later claims.
 * - Failures become `IdempotencyStore.StoreError`: `Timeout` when the file
 *   stays locked by another process for longer than `lockTimeout` (default
 *   100 ms; nothing was written), `Rejected` for a file that is not a
 *   Bulwark database (another application's, a newer schema, corrupt),
 *   `Unavailable` when the file cannot be opened or written (permissions, a
 *   full disk). `Idempotency` turns them into `StoreTimeout`, `StoreRejected`
 *   and `StoreUnavailable`, without running the effect.
 *
 * **Gotchas**
 *
 * - One machine: SQLite's locks (and WAL mode) do not work over network file
 *   systems. For several machines use `@bulwark/redis`.
 * - node:sqlite is synchronous: waiting for the lock (up to `lockTimeout`)
 *   blocks this process's thread. Keep `lockTimeout` short.
 * - A result is stored as one text value: keep results small.
 *
 * **Example** (At most once across invocations of a CLI)
 *
 * ```ts
 * import { Idempotency } from "@bulwark/core"
 * import { SqliteIdempotencyStore } from "@bulwark/sqlite"
 * import { Effect, Schema } from "effect"
 *
 * declare const deploy: Effect.Effect<string>
 * const program = Idempotency.once("deploy:v1.2.3", deploy, { ttl: "1 day", result: Schema.String }).pipe(
 *   Effect.provide(SqliteIdempotencyStore.layer({ name: "deployments" })) // ~/.cache/bulwark/bulwark.sqlite
 * )
 * ```
 *
 * @since 0.1.0
 */
import { Idempotency, IdempotencyStore, type InvalidOptions } from "@bulwark/core"
import { Effect, Layer, Schema, type Scope } from "effect"
import { type Database, DatabaseFailure } from "./internal/database.ts"
import { databaseFields, decodeOptions, lockTimeoutMs } from "./internal/options.ts"
import { isGone, self } from "./internal/process.ts"
import type * as SqliteDatabase from "./SqliteDatabase.ts"
import { acquireDatabase, attempt } from "./internal/store.ts"

// -----------------------------------------------------------------------------
// options
// -----------------------------------------------------------------------------

/**
 * The options of {@link make}, as a Schema.
 *
 * @since 0.1.0
 * @category options
 */
export const Options = Schema.Struct({
  ...databaseFields,
  prefix: Schema.optional(Schema.String),
  reclaimDeadOwners: Schema.optional(Schema.Boolean)
})

/**
 * @since 0.1.0
 * @category options
 */
export interface Options extends SqliteDatabase.Options {
  /** Put before every key, one per application sharing a file; default `""`. */
  readonly prefix?: string | undefined
  /** Take over at once a claim whose process is certainly dead; default true. */
  readonly reclaimDeadOwners?: boolean | undefined
}

/**
 * The options of {@link layer}: the store's and the `Idempotency` instance's.
 *
 * @since 0.1.0
 * @category options
 */
export interface LayerOptions extends Options {
  /** The instance's name (namespaces its keys, labels its metrics); default `"idempotency"`. */
  readonly name?: string | undefined
  /** Put keys in errors and events; default false. */
  readonly exposeKeys?: boolean | undefined
}

const decode = decodeOptions("SqliteIdempotencyStore", Options)

const decodeLayerOptions = decodeOptions(
  "SqliteIdempotencyStore",
  Schema.Struct({ ...Options.fields, name: Schema.optional(Schema.String), exposeKeys: Schema.optional(Schema.Boolean) })
)

// -----------------------------------------------------------------------------
// the store
// -----------------------------------------------------------------------------

interface Row {
  readonly token: string
  readonly completed: number
  readonly encoded: string | null
  readonly stored_at: number | null
  readonly expires_at: number
  readonly owner_pid: number
  readonly owner_start: string
  readonly owner_scope: string
}

const SELECT = "SELECT token, completed, encoded, stored_at, expires_at, owner_pid, owner_start, owner_scope " +
  "FROM bulwark_idempotency WHERE key = ?"
const CLAIM = "INSERT OR REPLACE INTO bulwark_idempotency " +
  "(key, token, completed, encoded, stored_at, expires_at, owner_pid, owner_start, owner_scope) " +
  "VALUES (?, ?, 0, NULL, NULL, ?, ?, ?, ?)"
/** A few expired rows per claim: the table stays proportional to the live keys, and no claim pays for a backlog. */
const SWEEP = "DELETE FROM bulwark_idempotency WHERE rowid IN " +
  "(SELECT rowid FROM bulwark_idempotency WHERE expires_at <= ? LIMIT 16)"
const COMPLETE = "UPDATE bulwark_idempotency SET completed = 1, encoded = ?, stored_at = ?, expires_at = ? " +
  "WHERE key = ? AND token = ? AND completed = 0 AND expires_at > ?"
const ABANDON = "DELETE FROM bulwark_idempotency WHERE key = ? AND token = ? AND completed = 0 AND expires_at > ?"
const RENEW = "UPDATE bulwark_idempotency SET expires_at = ? " +
  "WHERE key = ? AND token = ? AND completed = 0 AND expires_at > ?"

/**
 * What a row says at `now`, or `undefined` when the key is free: no row, an
 * expired one, or (with `reclaim`) a claim whose process is dead.
 */
const decide = (
  file: string,
  row: Row | undefined,
  now: number,
  reclaim: boolean
): IdempotencyStore.Claim | undefined => {
  if (row === undefined || row.expires_at <= now) return undefined
  if (row.completed === 1 && row.encoded !== null && row.stored_at !== null) {
    return { _tag: "Completed", encoded: row.encoded, storedAt: row.stored_at }
  }
  // A row this store cannot have written (edited by hand, or by another tool): never guess what it means.
  if (row.completed !== 0) {
    throw new DatabaseFailure("Rejected", `${file}: a row of bulwark_idempotency breaks the table's rules`)
  }
  if (reclaim && isGone({ pid: row.owner_pid, start: row.owner_start, scope: row.owner_scope })) return undefined
  return { _tag: "InFlight", leaseLeftMs: row.expires_at - now }
}

/** Epoch milliseconds as the table's integers (the contract's times are whole milliseconds). */
const whole = (ms: number): number => Math.floor(ms)

const makeStore = (
  database: Database,
  lockMs: number,
  prefix: string,
  reclaim: boolean
): IdempotencyStore.IdempotencyStore => {
  const rowOf = (db: Database, key: string) => db.statement(SELECT).get(key) as Row | undefined
  const run = <A>(operation: IdempotencyStore.Operation, f: () => A) => attempt(operation, f)

  const claim = (key: string, leaseMs: number, now: number): IdempotencyStore.Claim => {
    const at = whole(now)
    // Without the lock first: a stored result, or a claim of a live process, is the answer.
    const seen = database.read(lockMs, (db) => decide(database.file, rowOf(db, key), at, reclaim))
    if (seen !== undefined) return seen
    return database.write(lockMs, (db) => {
      // Under the lock, again: another process may have claimed the key since.
      const current = decide(database.file, rowOf(db, key), at, reclaim)
      if (current !== undefined) return current
      // Web Crypto: random, so a token never repeats for a key, even across processes.
      const token = globalThis.crypto.randomUUID()
      const owner = self()
      db.statement(SWEEP).run(at)
      db.statement(CLAIM).run(key, token, at + whole(leaseMs), owner.pid, owner.start, owner.scope)
      return { _tag: "Claimed", token }
    })
  }

  return IdempotencyStore.make({
    claim: (key, leaseMs, now) => run("claim", () => claim(prefix + key, leaseMs, now)),
    complete: (key, token, encoded, ttlMs, now) =>
      run("complete", () =>
        database.write(lockMs, (db) => {
          const at = whole(now)
          return db.statement(COMPLETE).run(encoded, at, at + whole(ttlMs), prefix + key, token, at).changes === 1
        })),
    abandon: (key, token, now) =>
      run("abandon", () => database.write(lockMs, (db) => db.statement(ABANDON).run(prefix + key, token, whole(now)).changes === 1)),
    renew: (key, token, leaseMs, now) =>
      run("renew", () =>
        database.write(lockMs, (db) => {
          const at = whole(now)
          return db.statement(RENEW).run(at + whole(leaseMs), prefix + key, token, at).changes === 1
        }))
  })
}

/**
 * The store, on the file given by `file` (default: the user's cache
 * directory). The file is opened (created, migrated) on first use, not
 * here: a file that cannot be used fails the operations with a
 * `StoreError`, so that `Idempotency` applies its rules, and is tried again
 * on the next operation. The connection closes with the scope.
 *
 * **Example** (A store for an instance of your own)
 *
 * ```ts
 * import { Idempotency } from "@bulwark/core"
 * import { SqliteIdempotencyStore } from "@bulwark/sqlite"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const store = yield* SqliteIdempotencyStore.make({ file: "/var/tmp/jobs.sqlite", lockTimeout: "250 millis" })
 *   return yield* Idempotency.make({ name: "jobs", store })
 * }) // needs a Scope
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options?: Options
): Effect.Effect<IdempotencyStore.IdempotencyStore, InvalidOptions, Scope.Scope> =>
  Effect.flatMap(decode(options), (decoded) =>
    Effect.map(
      acquireDatabase(decoded.file),
      (database) =>
        makeStore(database, lockTimeoutMs(decoded.lockTimeout), decoded.prefix ?? "", decoded.reclaimDeadOwners ?? true)
    ))

/**
 * The `Idempotency.Store` service on this store: what `Idempotency.once`
 * uses by default.
 *
 * **Example** (Wiring the service)
 *
 * ```ts
 * import { Idempotency } from "@bulwark/core"
 * import { SqliteIdempotencyStore } from "@bulwark/sqlite"
 * import { Effect, Schema } from "effect"
 *
 * const IdempotencyLive = SqliteIdempotencyStore.layer({ name: "sync", file: ".cache/sync.sqlite" })
 * const once = Idempotency.once("sync:2024-06-01", Effect.succeed(42), { ttl: "1 hour", result: Schema.Number })
 * const main = once.pipe(Effect.provide(IdempotencyLive))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options?: LayerOptions): Layer.Layer<Idempotency.Store, InvalidOptions> =>
  Layer.effect(
    Idempotency.Store,
    Effect.gen(function*() {
      // Every field at once, so that a misspelt one is reported rather than ignored.
      const { exposeKeys, file, lockTimeout, name, prefix, reclaimDeadOwners } = yield* decodeLayerOptions(options)
      const store = yield* make({ file, lockTimeout, prefix, reclaimDeadOwners })
      return yield* Idempotency.make({ name: name ?? "idempotency", store, exposeKeys })
    })
  )
