/**
 * A `CircuitBreakerStore` in a SQLite file: every process of one machine
 * that uses the file shares one circuit per breaker, so a dependency seen
 * failing by one invocation of a command-line tool is not hammered by the
 * next ten. Give it to `CircuitBreaker.make` as `store`.
 *
 * It runs on Node's built-in `node:sqlite` (Node >= 22.19): no dependency,
 * no server.
 *
 * **Details**
 *
 * - The contract of `CircuitBreakerStore`, with the in-memory circuit's
 *   rules: every trip policy (consecutive failures, failure rate and slow
 *   calls over a count or a time window), backoff of the open time,
 *   half-open probes, manual control. A differential test runs this store
 *   and the in-memory one on the same random sequences.
 * - One row per circuit in `bulwark_circuit_breaker`, keyed `<prefix><name>`
 *   (plain breaker) or `<prefix><name>:<key>` (keyed breaker). A decision
 *   that changes the circuit is one `BEGIN IMMEDIATE` transaction; one that
 *   changes nothing (a closed circuit admitting, an open one rejecting, a
 *   success after a success) is decided from a plain read, without the
 *   file's write lock, as it would have been decided at that instant.
 * - Fencing: every admission carries a generation, a transition starts a
 *   new one, and each probe has a permit of its own; a report whose permit
 *   is no longer current changes nothing, whichever process sends it. Ids
 *   never repeat for a key, even after its row was deleted and made again.
 * - **A probe left by a crashed process** is lost once its lease runs out:
 *   the breaker renews a probe's lease (`halfOpen.probeLease`, default 10
 *   seconds) every third of it while the probe runs, so a process that died
 *   stops renewing, and the next decision of any process finds the probe
 *   lost and opens the circuit again (the probe counts as a failure). A
 *   probe that runs longer than `probeTimeout` is lost as well. The circuit
 *   never stays half-open behind a probe that will never report.
 * - A circuit's row is deleted once unused for `idleTimeToLive` (default
 *   10 minutes), never before its open time, its backoff's reset or its
 *   probes' leases end; an isolated or disabled circuit is never deleted.
 *   Use is noted at most once per tenth of `idleTimeToLive`, so a row may go
 *   up to a tenth early. Expired rows are deleted a few at a time by later
 *   decisions.
 * - Times are the `now` the caller passes (Effect's `Clock`): every process
 *   of the machine shares one clock.
 * - Failures are `StoreError`s (`store: "sqlite"`): `Timeout` when the file
 *   stays locked by another process for longer than `lockTimeout` (default
 *   100 ms; nothing was written), `Rejected` for a file that is not a
 *   Bulwark database, `Unavailable` when the file cannot be opened or
 *   written. The breaker's `onStoreError` decides what the call does then.
 *
 * **Gotchas**
 *
 * - One machine: SQLite's locks (and WAL mode) do not work over network file
 *   systems. For several machines use `@bulwark/redis`.
 * - Each process sees the transitions it causes (its `events` stream); a
 *   transition caused by another process shows in the next decision (a
 *   rejection, a state read), not as an event.
 * - A key is always used with the same trip policies: a row made for other
 *   ones keeps its state and starts its counts afresh.
 * - node:sqlite is synchronous: waiting for the lock (up to `lockTimeout`)
 *   blocks this process's thread. Keep `lockTimeout` short.
 *
 * **Example** (A breaker shared by every run of a CLI)
 *
 * ```ts
 * import { CircuitBreaker } from "@bulwark/core"
 * import { SqliteCircuitBreakerStore } from "@bulwark/sqlite"
 * import { Effect } from "effect"
 *
 * declare const fetchIssues: Effect.Effect<ReadonlyArray<string>>
 *
 * const program = Effect.gen(function*() {
 *   const tracker = yield* CircuitBreaker.make({
 *     name: "tracker",
 *     trip: CircuitBreaker.consecutive(3),
 *     openFor: "1 minute",
 *     store: yield* SqliteCircuitBreakerStore.make({ prefix: "my-cli:" }),
 *     onStoreError: "fail-open" // never hang on the cache file
 *   })
 *   return yield* fetchIssues.pipe(CircuitBreaker.guard(tracker))
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 */
import { CircuitBreaker, CircuitBreakerStore, type InvalidOptions } from "@bulwark/core"
import { type Context, Duration, Effect, Layer, Schema, type Scope } from "effect"
import { create, Machine, parse, type Row } from "./internal/circuitState.ts"
import type { Database } from "./internal/database.ts"
import { databaseFields, decodeOptions, lockTimeoutMs, TimeToLive } from "./internal/options.ts"
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
  idleTimeToLive: Schema.optional(TimeToLive)
})

/**
 * @since 0.1.0
 * @category options
 */
export interface Options extends SqliteDatabase.Options {
  /** Put before every key, one per application sharing a file; default `""`. */
  readonly prefix?: string | undefined
  /** A circuit unused this long is deleted (when nothing about it is pending); default 10 minutes. */
  readonly idleTimeToLive?: Duration.Input | undefined
}

const decode = decodeOptions("SqliteCircuitBreakerStore", Options)

// -----------------------------------------------------------------------------
// the store
// -----------------------------------------------------------------------------

const SELECT = "SELECT state, next_id, expires_at FROM bulwark_circuit_breaker WHERE key = ?"
const UPSERT = "INSERT INTO bulwark_circuit_breaker (key, state, next_id, expires_at) VALUES (?, ?, ?, ?) " +
  "ON CONFLICT (key) DO UPDATE SET state = excluded.state, next_id = excluded.next_id, expires_at = excluded.expires_at"
const TOUCH = "UPDATE bulwark_circuit_breaker SET expires_at = ? WHERE key = ?"
const EXPIRED = "SELECT key, next_id FROM bulwark_circuit_breaker WHERE expires_at <= ? AND key <> ? LIMIT 16"
const DELETE = "DELETE FROM bulwark_circuit_breaker WHERE key = ?"
/** Above every id of every deleted circuit: a key made again never reissues an old permit. */
const FLOOR = "SELECT value FROM bulwark_meta WHERE key = 'circuit_breaker_floor'"
const SET_FLOOR = "INSERT INTO bulwark_meta (key, value) VALUES ('circuit_breaker_floor', ?) " +
  "ON CONFLICT (key) DO UPDATE SET value = excluded.value"

interface Stored {
  readonly state: string
  readonly next_id: number
  readonly expires_at: number
}

type Operation = "admit" | "record" | "read" | "force" | "renew"

/** What an operation does to a circuit, and what it answers for a key without one. */
interface Step<A> {
  readonly operation: Operation
  readonly run: (machine: Machine) => A
  /** The answer for a key without a circuit, or `undefined` when the operation creates it. */
  readonly absent: (() => A) | undefined
  /** The operation marks the circuit used (its row lives `idleTimeToLive` more). */
  readonly uses: boolean
  /** The operation is often decided without a change: try it on a plain read first. */
  readonly readFirst: boolean
}

const fresh: CircuitBreakerStore.Reading = {
  state: "Closed",
  retryAfterMs: 0,
  consecutiveOpenings: 0,
  probing: 0,
  transition: undefined
}

/** A success after a success changes nothing only when every trip policy counts consecutive failures. */
const streaksOnly = new WeakMap<CircuitBreakerStore.Policy, boolean>()
const onlyStreaks = (policy: CircuitBreakerStore.Policy): boolean => {
  let only = streaksOnly.get(policy)
  if (only === undefined) {
    only = policy.trips.every((spec) => spec._tag === "Consecutive")
    streaksOnly.set(policy, only)
  }
  return only
}

const makeStore = (
  database: Database,
  lockMs: number,
  prefix: string,
  idleMs: number
): CircuitBreakerStore.CircuitBreakerStore => {
  const stored = (db: Database, key: string) => db.statement(SELECT).get(key) as Stored | undefined
  /** Use is noted once the row's expiry lags a tenth of the idle time behind: not on every call. */
  const slack = idleMs / 10

  /** Deletes a few expired circuits, raising the floor above their ids. */
  const sweep = (db: Database, key: string, now: number): void => {
    const rows = db.statement(EXPIRED).all(now, key) as Array<{ key: string; next_id: number }>
    if (rows.length === 0) return
    let floor = Number((db.statement(FLOOR).get() as { value: string } | undefined)?.value ?? 0)
    for (const row of rows) {
      floor = Math.max(floor, row.next_id)
      db.statement(DELETE).run(row.key)
    }
    db.statement(SET_FLOOR).run(String(floor))
  }

  /** A new circuit's first id: above the floor, and above an unreadable row's ids; seeded from the clock in µs. */
  const seed = (db: Database, above: number): number => {
    const floor = Number((db.statement(FLOOR).get() as { value: string } | undefined)?.value ?? 0)
    return Math.max(floor + 1, above + 1, Math.floor(Date.now() * 1000))
  }

  const decide = <A>(key: string, policy: CircuitBreakerStore.Policy, now: number, step: Step<A>) =>
    attempt(step.operation, () => {
      const k = prefix + key
      if (step.readFirst) {
        const seen = database.read(lockMs, (db) => {
          const found = stored(db, k)
          const row = found === undefined ? undefined : parse(found.state, policy)
          if (found === undefined || row === undefined) return step.absent === undefined ? undefined : { result: step.absent() }
          const machine = new Machine(row, policy, now)
          const result = step.run(machine)
          const stale = step.uses && machine.expiresAt(idleMs) - found.expires_at > slack
          return machine.changed || stale ? undefined : { result }
        })
        if (seen !== undefined) return seen.result
      }
      return database.write(lockMs, (db) => {
        const found = stored(db, k)
        let row: Row | undefined = found === undefined ? undefined : parse(found.state, policy)
        const created = row === undefined
        if (row === undefined) {
          if (step.absent !== undefined) return step.absent()
          row = create(policy, seed(db, found?.next_id ?? 0))
        }
        const machine = new Machine(row, policy, now)
        const result = step.run(machine)
        const expiresAt = machine.expiresAt(idleMs)
        if (created || machine.changed) {
          sweep(db, k, now)
          db.statement(UPSERT).run(k, JSON.stringify(row), row.n, expiresAt)
        } else if (step.uses && found !== undefined && expiresAt - found.expires_at > slack) {
          db.statement(TOUCH).run(expiresAt, k)
        }
        return result
      })
    })

  return CircuitBreakerStore.make({
    // A command-line tool never hangs on its cache file: unless the primitive says otherwise, the call runs.
    onStoreError: "fail-open",
    admit: (key, policy, now) =>
      decide(key, policy, now, {
        operation: "admit",
        run: (machine) => machine.admit(),
        absent: undefined,
        uses: true,
        readFirst: true
      }),
    record: (key, policy, permit, outcome, elapsedMs, now) =>
      decide(key, policy, now, {
        operation: "record",
        run: (machine) => machine.record(permit, outcome, Math.max(0, elapsedMs)),
        absent: () => undefined,
        uses: true,
        // A count window or a time window changes with every outcome: a read first would be wasted.
        readFirst: onlyStreaks(policy)
      }),
    read: (key, policy, now) =>
      decide(key, policy, now, {
        operation: "read",
        run: (machine) => machine.read(),
        absent: () => fresh,
        uses: false,
        readFirst: true
      }),
    renew: (key, policy, permit, now) =>
      decide(key, policy, now, {
        operation: "renew",
        run: (machine) => permit >= machine.row.f && machine.renew(permit),
        absent: () => false,
        uses: true,
        readFirst: false
      }),
    force: (key, policy, to, now) =>
      decide(key, policy, now, {
        operation: "force",
        run: (machine) => machine.force(to),
        absent: undefined,
        uses: true,
        readFirst: false
      })
  })
}

/**
 * The store, on the file given by `file` (default: the user's cache
 * directory). The file is opened (created, migrated) on first use, not
 * here, and tried again on every decision while it cannot be used. The
 * connection closes with the scope.
 *
 * **Example** (A per-host breaker shared by the processes of a machine)
 *
 * ```ts
 * import { CircuitBreaker } from "@bulwark/core"
 * import { SqliteCircuitBreakerStore } from "@bulwark/sqlite"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const store = yield* SqliteCircuitBreakerStore.make({ file: "/tmp/breakers.sqlite", idleTimeToLive: "1 hour" })
 *   const perHost = yield* CircuitBreaker.make({
 *     name: "mirror",
 *     trip: CircuitBreaker.failureRate({ threshold: 0.5, minimumCalls: 10, window: "1 minute" }),
 *     openFor: "30 seconds",
 *     keys: { maxKeys: 1000 }, // bounds the "local" stand-in; the file keeps the circuits
 *     store // rows mirror:<host>
 *   })
 *   return yield* Effect.succeed("ok").pipe(CircuitBreaker.guard(perHost, { key: "eu.example.org" }))
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options?: Options
): Effect.Effect<CircuitBreakerStore.CircuitBreakerStore, InvalidOptions, Scope.Scope> =>
  Effect.flatMap(decode(options), (decoded) =>
    Effect.map(
      acquireDatabase(decoded.file),
      (database) =>
        makeStore(
          database,
          lockTimeoutMs(decoded.lockTimeout),
          decoded.prefix ?? "",
          decoded.idleTimeToLive === undefined ? 600_000 : Duration.toMillis(decoded.idleTimeToLive)
        )
    ))

/**
 * A `CircuitBreaker` service on this store: {@link make} and
 * `CircuitBreaker.make` as one layer.
 *
 * **Example** (A shared breaker as a service)
 *
 * ```ts
 * import { CircuitBreaker } from "@bulwark/core"
 * import { SqliteCircuitBreakerStore } from "@bulwark/sqlite"
 * import { Context } from "effect"
 *
 * class Tracker extends Context.Service<Tracker, CircuitBreaker.CircuitBreaker>()("cli/Tracker") {}
 *
 * const TrackerLive = SqliteCircuitBreakerStore.layer(Tracker, {
 *   name: "tracker",
 *   trip: CircuitBreaker.consecutive(3),
 *   openFor: "1 minute",
 *   onStoreError: "fail-open"
 * }, { prefix: "my-cli:" })
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <I>(
  key: Context.Key<I, CircuitBreaker.CircuitBreaker>,
  options: Omit<CircuitBreaker.Options, "store">,
  storeOptions?: Options
): Layer.Layer<I, InvalidOptions> =>
  Layer.effect(key, Effect.flatMap(make(storeOptions), (store) => CircuitBreaker.make({ ...options, store })))
