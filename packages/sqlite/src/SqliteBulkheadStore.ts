/**
 * A `BulkheadStore` in a SQLite file, so that a `DistributedBulkhead` caps
 * concurrency across every process of one machine that uses the file: the
 * invocations of a command-line tool started from several terminals,
 * scripts and cron jobs at once, or a few workers on one host.
 *
 * It runs on Node's built-in `node:sqlite` (Node >= 22.19): no dependency,
 * no server.
 *
 * **Details**
 *
 * - One row per slot or ticket in `bulwark_bulkhead`: the bulkhead's name
 *   (after `prefix`), the call's token, whether it holds a slot (1) or a
 *   ticket (0), its place in the waiting room (`seq`, the order of first
 *   enqueue), when it runs out, and the process that took it (pid, start
 *   time). `acquire`, `renew` and `release` are each one `BEGIN IMMEDIATE`
 *   transaction that first deletes the name's expired rows, then decides
 *   and commits, exactly as the contract of `BulkheadStore` says: at most
 *   `limit` slots, FIFO by ticket order, a repeated acquire of a held slot
 *   renews it. Each costs a few indexed statements on the name's rows,
 *   O(slots + tickets).
 * - `inspect` is a plain read, without the write lock (in WAL mode it never
 *   waits for a writer): expired rows are not counted, and neither (with
 *   `reclaimDeadOwners`) are rows of processes that are certainly gone.
 * - **Slots of a dead process come back at once** (with
 *   `reclaimDeadOwners`, the default), not only when their lease runs out:
 *   a command killed with `SIGKILL` (or by a crash, or the OOM killer) while
 *   holding a slot does not shrink the cap for the whole lease. A process is
 *   dead when no process has its pid, or (on Linux) the process with that
 *   pid started at another time (the pid was reused) or is a zombie. When
 *   that cannot be known for sure (an owner in another container or on
 *   another host, no `/proc`) the lease decides, as usual.
 * - Judging owners costs a system call and a read of `/proc` per process,
 *   so it is done only when it can change the answer: when an `acquire`
 *   would otherwise answer `Queued` or `Full`. An admission never judges
 *   anyone, and while slots are free a dead process's rows simply wait for
 *   the next crowded moment (or their lease). Rows of this process are
 *   never judged, and each verdict about another process is kept for 500
 *   ms, so that a crowd of waiters polling the store costs at most one
 *   check per process and half second. A slot of a process that dies comes
 *   back within that, plus one poll of the waiters.
 * - Times are the `now` the caller passes (Effect's `Clock`): every process
 *   of the machine shares one clock, and `TestClock` drives tests.
 * - Failures are `StoreError`s (`store: "sqlite"`): `Timeout` when the file
 *   stays locked by another process for longer than `lockTimeout` (default
 *   100 ms; nothing was written), `Rejected` for a file that is not a
 *   Bulwark database (another application's, a newer schema, corrupt) or a
 *   row this store cannot have written, `Unavailable` when the file cannot
 *   be opened or written. The bulkhead's `onStoreError` decides what the
 *   call does then: `"fail-open"` suits a command-line tool (it never hangs
 *   on its cache, and runs the call without a slot).
 *
 * **Gotchas**
 *
 * - One machine: SQLite's locks (and WAL mode) do not work over network file
 *   systems. For several machines use `@bulwark/redis`.
 * - node:sqlite is synchronous: waiting for the lock (up to `lockTimeout`)
 *   blocks this process's thread. Keep `lockTimeout` short.
 * - A call holds its slot in the file while it runs, and the bulkhead
 *   renews it every third of a lease (default 30 seconds): a process that
 *   is stopped (`SIGSTOP`, a debugger) keeps its slots until its lease runs
 *   out, since it is not dead.
 * - The key is the bulkhead's `name`: use `prefix` so that two applications
 *   sharing the default file do not share a cap by accident.
 * - Expired rows of a name are deleted by the next operation on that name,
 *   and a few of other names' by every `acquire`: the file stays
 *   proportional to the slots and tickets in use.
 *
 * **Example** (One cap for every run of a CLI)
 *
 * ```ts
 * import { DistributedBulkhead } from "@bulwark/core"
 * import { SqliteBulkheadStore } from "@bulwark/sqlite"
 * import { Effect } from "effect"
 *
 * declare const upload: Effect.Effect<string>
 *
 * const program = Effect.gen(function*() {
 *   const store = yield* SqliteBulkheadStore.make({ prefix: "my-cli:" }) // ~/.cache/bulwark/bulwark.sqlite
 *   const uploads = yield* DistributedBulkhead.make({
 *     name: "uploads",
 *     maxConcurrent: 3, // at most 3 uploads, whatever the number of runs of the tool
 *     maxQueue: 100,
 *     store,
 *     onStoreError: "fail-open" // never hang on the cache file
 *   })
 *   return yield* upload.pipe(DistributedBulkhead.guard(uploads))
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 */
import { BulkheadStore, DistributedBulkhead, type InvalidOptions } from "@bulwark/core"
import { Effect, Layer, Schema, type Scope } from "effect"
import type * as Context from "effect/Context"
import { type Database, DatabaseFailure } from "./internal/database.ts"
import { databaseFields, decodeOptions, lockTimeoutMs } from "./internal/options.ts"
import { isGone, type ProcessIdentity, self } from "./internal/process.ts"
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
  /** Put before every bulkhead name, one per application sharing a file; default `""`. */
  readonly prefix?: string | undefined
  /** Take back at once the slots and tickets of a process that is certainly dead; default true. */
  readonly reclaimDeadOwners?: boolean | undefined
}

const decode = decodeOptions("SqliteBulkheadStore", Options)

// -----------------------------------------------------------------------------
// the store
// -----------------------------------------------------------------------------

/** Deletes the name's rows that have run out: an expiry equal to `now` has run out, as in every store. */
const PURGE = "DELETE FROM bulwark_bulkhead WHERE name = ? AND expires_at <= ?"
/** A few expired rows of other names per acquire: names no process uses again do not stay in the file. */
const SWEEP = "DELETE FROM bulwark_bulkhead WHERE rowid IN " +
  "(SELECT rowid FROM bulwark_bulkhead WHERE expires_at <= ? AND name <> ? LIMIT 16)"
const OWN = "SELECT slot, seq FROM bulwark_bulkhead WHERE name = ? AND token = ?"
const COUNTS = "SELECT count(*) FILTER (WHERE slot = 1) AS slots, count(*) FILTER (WHERE slot = 0) AS tickets, " +
  "count(*) AS total FROM bulwark_bulkhead WHERE name = ?"
const AHEAD = "SELECT count(*) AS n FROM bulwark_bulkhead WHERE name = ? AND slot = 0 AND seq < ?"
const LAST_SEQ = "SELECT max(seq) AS seq FROM bulwark_bulkhead WHERE name = ? AND slot = 0"
const INSERT = "INSERT INTO bulwark_bulkhead " +
  "(name, token, slot, seq, expires_at, owner_pid, owner_start, owner_scope) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
const TAKE = "UPDATE bulwark_bulkhead SET slot = 1, expires_at = ? WHERE name = ? AND token = ?"
const EXTEND = "UPDATE bulwark_bulkhead SET expires_at = ? WHERE name = ? AND token = ?"
const RENEW = "UPDATE bulwark_bulkhead SET expires_at = ? WHERE name = ? AND token = ? AND slot = 1"
const RELEASE = "DELETE FROM bulwark_bulkhead WHERE name = ? AND token = ?"
const OWNERS = "SELECT DISTINCT owner_pid, owner_start, owner_scope FROM bulwark_bulkhead WHERE name = ?"
const RECLAIM = "DELETE FROM bulwark_bulkhead WHERE name = ? AND owner_pid = ? AND owner_start = ? AND owner_scope = ?"
const OCCUPANCY = "SELECT slot, owner_pid, owner_start, owner_scope, count(*) AS n FROM bulwark_bulkhead " +
  "WHERE name = ? AND expires_at > ? GROUP BY slot, owner_pid, owner_start, owner_scope"

interface Owner {
  readonly owner_pid: number
  readonly owner_start: string
  readonly owner_scope: string
}

/** What the name holds now, as seen by one token. */
interface View {
  /** The token's own row: 1 a slot, 0 a ticket at `seq`. */
  readonly own: { readonly slot: number; readonly seq: number } | undefined
  readonly slots: number
  readonly tickets: number
  /** Tickets ahead of the token: its position if it holds one, every ticket if it holds nothing. */
  readonly ahead: number
}

/** How long a verdict about another process is kept: at most one check per process and half second. */
const VERDICT_MS = 500

const identityOf = (row: Owner): ProcessIdentity => ({ pid: row.owner_pid, start: row.owner_start, scope: row.owner_scope })

const makeStore = (
  database: Database,
  lockMs: number,
  prefix: string,
  reclaim: boolean
): BulkheadStore.BulkheadStore => {
  const run = <A>(operation: BulkheadStore.Operation, f: () => A) => attempt(operation, f)
  const broken = () => new DatabaseFailure("Rejected", `${database.file}: a row of bulwark_bulkhead breaks the table's rules`)

  /** Verdicts about other processes, by identity, with the time (performance.now) until which they hold. */
  const verdicts = new Map<string, { readonly gone: boolean; readonly until: number }>()

  /** Is the owner certainly gone? This process never is; another one is judged at most once per `VERDICT_MS`. */
  const gone = (owner: Owner): boolean => {
    const me = self()
    if (owner.owner_pid === me.pid && owner.owner_start === me.start && owner.owner_scope === me.scope) return false
    const key = `${owner.owner_pid}\n${owner.owner_start}\n${owner.owner_scope}`
    const at = performance.now()
    const seen = verdicts.get(key)
    if (seen !== undefined && seen.until > at) return seen.gone
    if (verdicts.size >= 256) for (const [k, v] of verdicts) if (v.until <= at) verdicts.delete(k)
    const verdict = isGone(identityOf(owner))
    verdicts.set(key, { gone: verdict, until: at + VERDICT_MS })
    return verdict
  }

  const view = (db: Database, name: string, token: string): View => {
    const own = db.statement(OWN).get(name, token) as View["own"]
    const counts = db.statement(COUNTS).get(name) as { slots: number; tickets: number; total: number }
    // A slot column that is neither 0 nor 1: a row this store cannot have written; never guess what it means.
    if (counts.slots + counts.tickets !== counts.total) throw broken()
    const ahead = own === undefined
      ? counts.tickets
      : own.slot === 1
      ? 0
      : (db.statement(AHEAD).get(name, own.seq) as { n: number }).n
    return { own, slots: counts.slots, tickets: counts.tickets, ahead }
  }

  /** Deletes the name's rows whose process is certainly gone; true if there were any. */
  const reclaimDead = (db: Database, name: string): boolean => {
    let reclaimed = false
    for (const owner of db.statement(OWNERS).all(name) as unknown as ReadonlyArray<Owner>) {
      if (!gone(owner)) continue
      db.statement(RECLAIM).run(name, owner.owner_pid, owner.owner_start, owner.owner_scope)
      reclaimed = true
    }
    return reclaimed
  }

  const admitted = (v: View, limit: number) => v.own?.slot === 1 || v.ahead < limit - v.slots

  const acquire = (request: BulkheadStore.AcquireRequest): BulkheadStore.Acquisition =>
    database.write(lockMs, (db) => {
      const { leaseMs, limit, maxQueue, now, ticketMs, token } = request
      const name = prefix + request.name
      db.statement(PURGE).run(name, now)
      db.statement(SWEEP).run(now, name)
      let v = view(db, name, token)
      // Only when the answer would be Queued or Full can a dead process's rows change it: judge owners then.
      if (reclaim && !admitted(v, limit) && reclaimDead(db, name)) v = view(db, name, token)
      const { own, slots, tickets } = v
      // A repeated acquire of a slot already held (its first answer was lost) renews it.
      if (own?.slot === 1) {
        db.statement(EXTEND).run(now + leaseMs, name, token)
        return { _tag: "Acquired", inFlight: slots }
      }
      if (v.ahead < limit - slots) {
        if (own === undefined) {
          const owner = self()
          db.statement(INSERT).run(name, token, 1, 0, now + leaseMs, owner.pid, owner.start, owner.scope)
        } else {
          db.statement(TAKE).run(now + leaseMs, name, token)
        }
        return { _tag: "Acquired", inFlight: slots + 1 }
      }
      if (own !== undefined) {
        // Refreshing a ticket keeps its place: `seq` is the order of first enqueue.
        db.statement(EXTEND).run(now + ticketMs, name, token)
        return { _tag: "Queued", position: v.ahead, inFlight: slots }
      }
      if (tickets < maxQueue) {
        const last = (db.statement(LAST_SEQ).get(name) as { seq: number | null }).seq
        const owner = self()
        db.statement(INSERT).run(name, token, 0, (last ?? 0) + 1, now + ticketMs, owner.pid, owner.start, owner.scope)
        return { _tag: "Queued", position: tickets, inFlight: slots }
      }
      return { _tag: "Full", inFlight: slots, queued: tickets }
    })

  /** Live slots and tickets of live processes, from a committed snapshot: no lock, nothing written. */
  const inspect = (name: string, now: number): BulkheadStore.Occupancy =>
    database.read(lockMs, (db) => {
      let inFlight = 0
      let queued = 0
      const groups = db.statement(OCCUPANCY).all(prefix + name, now) as unknown as ReadonlyArray<Owner & { slot: number; n: number }>
      for (const group of groups) {
        if (group.slot !== 0 && group.slot !== 1) throw broken()
        if (reclaim && gone(group)) continue
        if (group.slot === 1) inFlight += group.n
        else queued += group.n
      }
      return { inFlight, queued }
    })

  return BulkheadStore.make({
    // A command-line tool never hangs on its cache file: unless the primitive says otherwise, the call runs.
    onStoreError: "fail-open",
    acquire: (request) => run("acquire", () => acquire(request)),
    renew: (name, token, leaseMs, now) =>
      run("renew", () =>
        database.write(lockMs, (db) => {
          const key = prefix + name
          db.statement(PURGE).run(key, now)
          return db.statement(RENEW).run(now + leaseMs, key, token).changes === 1
        })),
    release: (name, token, now) =>
      run("release", () =>
        database.write(lockMs, (db) => {
          const key = prefix + name
          db.statement(PURGE).run(key, now)
          return db.statement(RELEASE).run(key, token).changes === 1
        })),
    inspect: (name, now) => run("inspect", () => inspect(name, now))
  })
}

/**
 * The store, on the file given by `file` (default: the user's cache
 * directory). The file is opened (created, migrated) on first use, not
 * here: a file that cannot be used fails the operations with a
 * `StoreError`, so that the bulkhead's `onStoreError` applies, and is tried
 * again on the next operation. The connection closes with the scope.
 *
 * **Example** (A store for a distributed bulkhead)
 *
 * ```ts
 * import { DistributedBulkhead } from "@bulwark/core"
 * import { SqliteBulkheadStore } from "@bulwark/sqlite"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const store = yield* SqliteBulkheadStore.make({ file: "/var/tmp/render.sqlite", lockTimeout: "250 millis" })
 *   return yield* DistributedBulkhead.make({ name: "renderer", maxConcurrent: 4, store, onStoreError: "fail-closed" })
 * }) // needs a Scope
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options?: Options
): Effect.Effect<BulkheadStore.BulkheadStore, InvalidOptions, Scope.Scope> =>
  Effect.flatMap(decode(options), (decoded) =>
    Effect.map(
      acquireDatabase(decoded.file),
      (database) =>
        makeStore(database, lockTimeoutMs(decoded.lockTimeout), decoded.prefix ?? "", decoded.reclaimDeadOwners ?? true)
    ))

/**
 * A `DistributedBulkhead` service on this store: {@link make} and
 * `DistributedBulkhead.make` as one layer.
 *
 * **Example** (One cap for every run of a CLI, as a service)
 *
 * ```ts
 * import { DistributedBulkhead } from "@bulwark/core"
 * import { SqliteBulkheadStore } from "@bulwark/sqlite"
 * import { Context, Effect } from "effect"
 *
 * class Builds extends Context.Service<Builds, DistributedBulkhead.DistributedBulkhead>()("cli/Builds") {}
 *
 * const BuildsLive = SqliteBulkheadStore.layer(Builds, {
 *   name: "builds",
 *   maxConcurrent: 2,
 *   maxQueue: 10,
 *   onStoreError: "fail-open"
 * }, { prefix: "my-cli:" })
 * const build = Effect.succeed("built").pipe(DistributedBulkhead.guard(Builds), Effect.provide(BuildsLive))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <I>(
  key: Context.Key<I, DistributedBulkhead.DistributedBulkhead>,
  options: Omit<DistributedBulkhead.Options, "store">,
  storeOptions?: Options
): Layer.Layer<I, InvalidOptions> =>
  Layer.effect(key, Effect.flatMap(make(storeOptions), (store) => DistributedBulkhead.make({ ...options, store })))
