/**
 * A `RateLimiterStore` in a SQLite file: every process of one machine that
 * uses the file shares the limit, and a `Retry-After` block survives across
 * invocations of a command-line tool.
 *
 * It runs on Node's built-in `node:sqlite` (Node >= 22.19): no dependency,
 * no server.
 *
 * **Details**
 *
 * - One row per limiter key in `bulwark_rate_limiter`, holding the state of
 *   `@bulwark/core`'s own algorithms (token bucket, GCRA, fixed and sliding
 *   windows): a decision loads the row, runs the in-memory store's code on
 *   it, and writes it back, all in one `BEGIN IMMEDIATE` transaction. So a
 *   SQLite limiter decides exactly like an in-process one (reservations in
 *   FIFO order, refunds, blocks), across processes.
 * - A call that does not wait and is rejected is decided from a plain read,
 *   without the file's write lock: a crowd of rejected callers does not
 *   queue behind the admitted ones.
 * - `block` (a server's `Retry-After`) is written to the row: a later
 *   process, or the next run of the command, stays blocked until then.
 * - Rows whose state is back at rest (a full bucket, an empty window, no
 *   block) are deleted a few at a time by later decisions: nothing is lost.
 * - Times are the `now` the caller passes (Effect's `Clock`): every process
 *   of the machine shares one clock. A key's time never goes backwards: a
 *   process that read the clock before another but got the lock after it
 *   is decided at the other's (later) time, never rejected for arriving
 *   "before" a refill already applied.
 * - Failures are `StoreError`s (`store: "sqlite"`): `Timeout` when the file
 *   stays locked by another process for longer than `lockTimeout` (default
 *   100 ms; nothing was written), `Rejected` for a file that is not a
 *   Bulwark database (another application's, a newer schema, corrupt),
 *   `Unavailable` when the file cannot be opened or written. The limiter's
 *   `onStoreError` decides what the call does then: `"fail-open"` suits a
 *   command-line tool (it never hangs on its cache).
 *
 * **Gotchas**
 *
 * - One machine: SQLite's locks (and WAL mode) do not work over network file
 *   systems.
 * - node:sqlite is synchronous: waiting for the lock (up to `lockTimeout`)
 *   blocks this process's thread. Keep `lockTimeout` short.
 * - The key is the limiter's `name` (`name:key` for keyed limiters): use
 *   `prefix` so that two applications sharing the default file do not share
 *   a limit by accident.
 *
 * **Example** (One limit for every run of a CLI)
 *
 * ```ts
 * import { RateLimiter } from "@bulwark/core"
 * import { SqliteRateLimiterStore } from "@bulwark/sqlite"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const store = yield* SqliteRateLimiterStore.make({ prefix: "my-cli:" })
 *   const api = yield* RateLimiter.make({
 *     name: "api",
 *     algorithm: RateLimiter.gcra({ rate: 10, per: "1 second", burst: 5 }),
 *     store,
 *     onStoreError: "fail-open" // never hang on the cache file
 *   })
 *   return yield* Effect.succeed("fetched").pipe(RateLimiter.guard(api))
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 */
import { type InvalidOptions, RateLimiter, RateLimiterStore } from "@bulwark/core"
import { type Context, Effect, Layer, Schema, type Scope } from "effect"
import type { Database } from "./internal/database.ts"
import { databaseFields, decodeOptions, lockTimeoutMs } from "./internal/options.ts"
import { Engine } from "./internal/rateLimiterState.ts"
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
  prefix: Schema.optional(Schema.String)
})

/**
 * @since 0.1.0
 * @category options
 */
export interface Options extends SqliteDatabase.Options {
  /** Put before every key, one per application sharing a file; default `""`. */
  readonly prefix?: string | undefined
}

const decode = decodeOptions("SqliteRateLimiterStore", Options)

// -----------------------------------------------------------------------------
// the store
// -----------------------------------------------------------------------------

const SELECT = "SELECT state FROM bulwark_rate_limiter WHERE key = ?"
const UPSERT = "INSERT INTO bulwark_rate_limiter (key, state, reset_at) VALUES (?, ?, ?) " +
  "ON CONFLICT (key) DO UPDATE SET state = excluded.state, reset_at = excluded.reset_at"
/** A few rows at rest per admitted call: the table stays proportional to the keys in use. */
const SWEEP = "DELETE FROM bulwark_rate_limiter WHERE rowid IN " +
  "(SELECT rowid FROM bulwark_rate_limiter WHERE reset_at <= ? AND key <> ? LIMIT 16)"

type Decision = RateLimiterStore.Decision

/** The decision as plain data: the in-memory store's is a reused object with lazy fields. */
const copy = (d: Decision): Decision => ({
  admitted: d.admitted,
  at: d.at,
  blocked: d.blocked,
  remaining: d.remaining,
  resetAt: d.resetAt
})

const makeStore = (database: Database, lockMs: number, prefix: string): RateLimiterStore.RateLimiterStore => {
  const engine = new Engine()
  const stateOf = (db: Database, key: string) =>
    (db.statement(SELECT).get(key) as { readonly state: string } | undefined)?.state

  /**
   * Loads the row, runs `f` on it, writes it back: one `BEGIN IMMEDIATE`
   * transaction. Without a row, `create` says whether `f` makes one (a block
   * does; a refund of a key without state has nothing to give back to).
   */
  const update = (
    key: string,
    algorithm: RateLimiterStore.Algorithm,
    now: number,
    create: boolean,
    f: (local: RateLimiterStore.InProcess, key: string, now: number) => void
  ): void =>
    database.write(lockMs, (db) => {
      const current = stateOf(db, key)
      if (current === undefined && !create) return
      const { resetAt, state } = engine.run(current, algorithm, now, f)
      db.statement(UPSERT).run(key, state, resetAt)
    })

  return RateLimiterStore.make({
    // A command-line tool never hangs on its cache file: unless the primitive says otherwise, the call runs.
    onStoreError: "fail-open",
    consume: (key, algorithm, cost, now, maxWait) =>
      attempt("consume", () => {
        const k = prefix + key
        const consume = (local: RateLimiterStore.InProcess, at: string, decidedAt: number) =>
          copy(local.consume(at, algorithm, cost, decidedAt, maxWait))
        // A caller that does not wait is often rejected under load. A rejection commits nothing, so a
        // committed snapshot decides it, without the lock. (A caller that waits is nearly always
        // admitted: the read would only be done twice.)
        if (maxWait <= 0) {
          const seen = database.read(lockMs, (db) => engine.run(stateOf(db, k), algorithm, now, consume).result)
          if (!seen.admitted) return seen
        }
        return database.write(lockMs, (db) => {
          const { resetAt, result, state } = engine.run(stateOf(db, k), algorithm, now, consume)
          // A rejection under the lock (another process took the room meanwhile) commits nothing either.
          if (!result.admitted) return result
          db.statement(SWEEP).run(now, k)
          db.statement(UPSERT).run(k, state, resetAt)
          return result
        })
      }),
    refund: (key, algorithm, cost, at, now) =>
      attempt("refund", () => update(prefix + key, algorithm, now, false, (local, k, t) => local.refund(k, algorithm, cost, at, t))),
    block: (key, algorithm, until, now) =>
      attempt("block", () => update(prefix + key, algorithm, now, true, (local, k, t) => local.block(k, algorithm, until, t)))
  })
}

/**
 * The store, on the file given by `file` (default: the user's cache
 * directory). The file is opened (created, migrated) on first use, not
 * here, and tried again on every decision while it cannot be used. The
 * connection closes with the scope.
 *
 * **Example** (A limiter shared by every process of the machine)
 *
 * ```ts
 * import { RateLimiter } from "@bulwark/core"
 * import { SqliteRateLimiterStore } from "@bulwark/sqlite"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const store = yield* SqliteRateLimiterStore.make({ file: "/tmp/limits.sqlite", lockTimeout: "50 millis" })
 *   const limiter = yield* RateLimiter.make({
 *     name: "smtp",
 *     algorithm: RateLimiter.slidingWindow({ limit: 100, window: "1 minute" }),
 *     store,
 *     onStoreError: "fail-closed" // the file cannot decide: reject (reason StoreUnavailable)
 *   })
 *   return limiter.name
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options?: Options
): Effect.Effect<RateLimiterStore.RateLimiterStore, InvalidOptions, Scope.Scope> =>
  Effect.flatMap(decode(options), (decoded) =>
    Effect.map(
      acquireDatabase(decoded.file),
      (database) => makeStore(database, lockTimeoutMs(decoded.lockTimeout), decoded.prefix ?? "")
    ))

/**
 * A `RateLimiter` service on this store: {@link make} and `RateLimiter.make`
 * as one layer.
 *
 * **Example** (A limit shared by every run of a CLI, as a service)
 *
 * ```ts
 * import { RateLimiter } from "@bulwark/core"
 * import { SqliteRateLimiterStore } from "@bulwark/sqlite"
 * import { Context } from "effect"
 *
 * class Api extends Context.Service<Api, RateLimiter.RateLimiter>()("cli/Api") {}
 *
 * const ApiLive = SqliteRateLimiterStore.layer(Api, {
 *   name: "api",
 *   algorithm: RateLimiter.gcra({ rate: 10, per: "1 second", burst: 5 }),
 *   onStoreError: "fail-open"
 * }, { prefix: "my-cli:" })
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <I>(
  key: Context.Key<I, RateLimiter.RateLimiter>,
  options: Omit<RateLimiter.Options, "store">,
  storeOptions?: Options
): Layer.Layer<I, InvalidOptions> =>
  Layer.effect(key, Effect.flatMap(make(storeOptions), (store) => RateLimiter.make({ ...options, store })))
