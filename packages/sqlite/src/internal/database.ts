import { mkdirSync, statSync } from "node:fs"
import { homedir } from "node:os"
import { dirname, isAbsolute, join, resolve } from "node:path"
import { DatabaseSync, type StatementSync } from "node:sqlite"

/**
 * The database layer every SQLite store shares: one file, opened lazily, one
 * connection per file per process, every write a `BEGIN IMMEDIATE`
 * transaction with a bounded wait for the lock, a schema version with
 * migrations on open, and foreign or corrupt files refused with a typed
 * failure instead of a crash.
 */

// -----------------------------------------------------------------------------
// failures
// -----------------------------------------------------------------------------

/** The three reasons of the toolkit's `StoreError`. @internal */
export type FailureReason = "Unavailable" | "Timeout" | "Rejected"

/**
 * What went wrong with the database, before a store names the operation:
 * each store turns it into its contract's error.
 *
 * @internal
 */
export class DatabaseFailure {
  readonly reason: FailureReason
  readonly message: string
  constructor(reason: FailureReason, message: string) {
    this.reason = reason
    this.message = message
  }
}

/** SQLite's primary result codes that the stores tell apart (the low byte of an extended code). */
const SQLITE_ERROR = 1
const SQLITE_PERM = 3
const SQLITE_BUSY = 5
const SQLITE_LOCKED = 6
const SQLITE_NOMEM = 7
const SQLITE_READONLY = 8
const SQLITE_IOERR = 10
const SQLITE_CORRUPT = 11
const SQLITE_FULL = 13
const SQLITE_CANTOPEN = 14
const SQLITE_PROTOCOL = 15
const SQLITE_NOLFS = 22
const SQLITE_AUTH = 23
const SQLITE_NOTADB = 26

/** Codes that mean "the file cannot be used right now" rather than "the file is not what we expect". */
const unavailableCodes = new Set([
  SQLITE_PERM,
  SQLITE_NOMEM,
  SQLITE_READONLY,
  SQLITE_IOERR,
  SQLITE_FULL,
  SQLITE_CANTOPEN,
  SQLITE_PROTOCOL,
  SQLITE_NOLFS,
  SQLITE_AUTH
])

/**
 * Classifies what node:sqlite threw (an `Error` with `errcode`, the extended
 * result code) or what the file system did.
 *
 * - `SQLITE_BUSY`/`SQLITE_LOCKED`: the lock was not had within the bound:
 *   `Timeout` (the transaction never started, so nothing took effect).
 * - `SQLITE_NOTADB`, `SQLITE_CORRUPT`, and plain `SQLITE_ERROR` (a missing
 *   table or column: someone changed the file): `Rejected`.
 * - Permissions, read-only files, I/O errors, a full disk, a file that
 *   cannot be opened: `Unavailable`.
 *
 * @internal
 */
export const classify = (error: unknown, file: string, lockTimeoutMs: number): DatabaseFailure | undefined => {
  if (error instanceof DatabaseFailure) return error
  const message = error instanceof Error ? error.message : String(error)
  const errcode = (error as { readonly errcode?: unknown } | null)?.errcode
  if (typeof errcode === "number") {
    const primary = errcode & 0xff
    if (primary === SQLITE_BUSY || primary === SQLITE_LOCKED) {
      return new DatabaseFailure(
        "Timeout",
        `${file} is locked by another connection: the lock was not had within ${lockTimeoutMs} ms (${message})`
      )
    }
    if (primary === SQLITE_NOTADB) return new DatabaseFailure("Rejected", `${file} is not a SQLite database (${message})`)
    if (primary === SQLITE_CORRUPT) return new DatabaseFailure("Rejected", `${file} is corrupt (${message})`)
    if (unavailableCodes.has(primary)) return new DatabaseFailure("Unavailable", `${file} cannot be used: ${message}`)
    if (primary === SQLITE_ERROR) {
      return new DatabaseFailure("Rejected", `${file} does not have the expected schema: ${message}`)
    }
    return new DatabaseFailure("Rejected", `${file}: ${message}`)
  }
  // File-system errors (creating the directory): EACCES, EROFS, ENOTDIR, ENOSPC, ...
  const code = (error as NodeJS.ErrnoException | null)?.code
  if (typeof code === "string" && /^E[A-Z]+$/.test(code)) {
    return new DatabaseFailure("Unavailable", `${file} cannot be used: ${message}`)
  }
  // Anything else is a bug in this package, not a property of the file: it stays a defect.
  return undefined
}

// -----------------------------------------------------------------------------
// location
// -----------------------------------------------------------------------------

/**
 * The user's cache directory, as each platform names it: `$XDG_CACHE_HOME`
 * (when set to an absolute path) or `~/.cache` on Linux and other Unixes,
 * `~/Library/Caches` on macOS, `%LOCALAPPDATA%` on Windows.
 *
 * @internal
 */
export const cacheDirectory = (env: NodeJS.ProcessEnv = process.env, platform: string = process.platform): string => {
  if (platform === "win32") {
    const local = env.LOCALAPPDATA
    return local !== undefined && local.length > 0 ? local : join(homedir(), "AppData", "Local")
  }
  if (platform === "darwin") return join(homedir(), "Library", "Caches")
  const xdg = env.XDG_CACHE_HOME
  // The XDG spec: a relative value is invalid and must be ignored.
  return xdg !== undefined && isAbsolute(xdg) ? xdg : join(homedir(), ".cache")
}

/**
 * `<cache directory>/bulwark/bulwark.sqlite`.
 *
 * @internal
 */
export const defaultFile = (): string => join(cacheDirectory(), "bulwark", "bulwark.sqlite")

// -----------------------------------------------------------------------------
// schema
// -----------------------------------------------------------------------------

/**
 * The schema this version of the package writes. A file of a later version
 * is refused (its rows may mean something this code does not know); a file
 * of an earlier version is migrated on open.
 *
 * @internal
 */
export const SCHEMA_VERSION = 2

/**
 * `PRAGMA application_id` of every file Bulwark creates ("Bwk1"): tools like
 * `file(1)` and a quick check on open tell a Bulwark file from another
 * application's SQLite database without reading any table.
 *
 * @internal
 */
export const APPLICATION_ID = 0x42776b31

/**
 * Migration `i` takes the schema from version `i` to `i + 1`, inside the
 * open's `BEGIN IMMEDIATE` transaction. Append only: a published migration
 * never changes, since files in the wild were made by it.
 */
const migrations: ReadonlyArray<(db: DatabaseSync) => void> = [
  // 0 -> 1: every table of the first version.
  (db) =>
    db.exec(`
CREATE TABLE bulwark_meta (
  key TEXT PRIMARY KEY NOT NULL,
  value TEXT NOT NULL
) STRICT;

CREATE TABLE bulwark_idempotency (
  key TEXT PRIMARY KEY NOT NULL,
  token TEXT NOT NULL,
  completed INTEGER NOT NULL,
  encoded TEXT,
  stored_at INTEGER,
  expires_at INTEGER NOT NULL,
  owner_pid INTEGER NOT NULL,
  owner_start TEXT NOT NULL,
  owner_scope TEXT NOT NULL
) STRICT;
CREATE INDEX bulwark_idempotency_expires ON bulwark_idempotency (expires_at);

CREATE TABLE bulwark_rate_limiter (
  key TEXT PRIMARY KEY NOT NULL,
  state TEXT NOT NULL,
  reset_at REAL NOT NULL
) STRICT;
CREATE INDEX bulwark_rate_limiter_reset ON bulwark_rate_limiter (reset_at);
`),
  // 1 -> 2: circuit breakers and bulkheads.
  (db) =>
    db.exec(`
CREATE TABLE bulwark_circuit_breaker (
  key TEXT PRIMARY KEY NOT NULL,
  state TEXT NOT NULL,
  next_id INTEGER NOT NULL,
  expires_at REAL NOT NULL
) STRICT;
CREATE INDEX bulwark_circuit_breaker_expires ON bulwark_circuit_breaker (expires_at);

CREATE TABLE bulwark_bulkhead (
  name TEXT NOT NULL,
  token TEXT NOT NULL,
  slot INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  expires_at REAL NOT NULL,
  owner_pid INTEGER NOT NULL,
  owner_start TEXT NOT NULL,
  owner_scope TEXT NOT NULL,
  PRIMARY KEY (name, token)
) STRICT;
CREATE INDEX bulwark_bulkhead_order ON bulwark_bulkhead (name, slot, seq);
CREATE INDEX bulwark_bulkhead_expires ON bulwark_bulkhead (expires_at);
`)
]

/** The tables of the current schema: any other table makes the file foreign. */
const knownTables = new Set([
  "bulwark_meta",
  "bulwark_idempotency",
  "bulwark_rate_limiter",
  "bulwark_circuit_breaker",
  "bulwark_bulkhead"
])

interface Inspection {
  /** 0 for an empty database (nothing in it yet). */
  readonly version: number
  readonly applicationId: number
  readonly tables: ReadonlyArray<string>
}

const inspect = (db: DatabaseSync): Inspection => {
  const applicationId = Number((db.prepare("PRAGMA application_id").get() as { application_id: number }).application_id)
  const tables = (db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'")
    .all() as Array<{ name: string }>).map((row) => row.name)
  let version = 0
  if (tables.includes("bulwark_meta")) {
    const row = db.prepare("SELECT value FROM bulwark_meta WHERE key = 'schema_version'").get() as
      | { value: string }
      | undefined
    version = row === undefined ? -1 : Number(row.value)
  }
  return { version, applicationId, tables }
}

const list = (names: ReadonlyArray<string>): string =>
  names.length <= 5 ? names.join(", ") : `${names.slice(0, 5).join(", ")} and ${names.length - 5} more`

/**
 * Why this file is not ours to use, or `undefined`. Never writes anything:
 * a foreign file is left exactly as it was.
 */
const foreignReason = (file: string, found: Inspection): string | undefined => {
  if (found.applicationId !== 0 && found.applicationId !== APPLICATION_ID) {
    return `${file} belongs to another application (application_id ${found.applicationId}); Bulwark leaves it alone`
  }
  if (found.tables.length > 0 && !found.tables.includes("bulwark_meta")) {
    return `${file} is a SQLite database of another application (tables ${list(found.tables)}); Bulwark leaves it alone`
  }
  if (!Number.isInteger(found.version) || found.version < 0) {
    return `${file} has a bulwark_meta table without a valid schema_version; Bulwark leaves it alone`
  }
  if (found.version > SCHEMA_VERSION) {
    return `${file} has schema version ${found.version}, written by a newer Bulwark; this one knows versions up to ${SCHEMA_VERSION}`
  }
  if (found.version === SCHEMA_VERSION) {
    const unknown = found.tables.filter((name) => !knownTables.has(name))
    if (unknown.length > 0) return `${file} holds tables Bulwark did not create (${list(unknown)}); Bulwark leaves it alone`
  }
  return undefined
}

// -----------------------------------------------------------------------------
// the connection
// -----------------------------------------------------------------------------

/** How often the path is checked to still be the file opened. @internal */
export const IDENTITY_CHECK_MS = 50

/** Something to `Atomics.wait` on: a synchronous sleep (the open retries on a thread that waits anyway). */
const sleeper = new Int32Array(new SharedArrayBuffer(4))

const isBusy = (error: unknown): boolean => {
  const errcode = (error as { readonly errcode?: unknown } | null)?.errcode
  if (typeof errcode !== "number") return false
  const primary = errcode & 0xff
  return primary === SQLITE_BUSY || primary === SQLITE_LOCKED
}

/**
 * Runs `step` until it does not fail with `SQLITE_BUSY`, for at most
 * `lockTimeoutMs`: the busy timeout of this package, in place of SQLite's.
 *
 * Between tries the thread sleeps a short, random while (up to half a
 * millisecond at first, doubling to four): a transaction here holds the lock
 * for tens of microseconds, so a waiter that sleeps briefly gets its turn
 * among several processes, where SQLite's own handler (sleeps of 1, 2, 5,
 * ... up to 100 ms) lets an unlucky waiter sleep through its whole bound
 * while the others take the lock again and again. The last failure is
 * rethrown once the bound has passed (0: one try).
 *
 * @internal
 */
export const waitForLock = <A>(lockTimeoutMs: number, step: () => A): A => {
  let deadline = -1
  for (let attempt = 0;; attempt++) {
    try {
      return step()
    } catch (error) {
      if (!isBusy(error)) throw error
      const now = performance.now()
      if (deadline < 0) deadline = now + lockTimeoutMs
      const left = deadline - now
      if (left <= 0) throw error
      const upTo = attempt < 3 ? 0.5 * 2 ** attempt : 4
      Atomics.wait(sleeper, 0, 0, Math.min(left, upTo * (0.5 + Math.random() / 2)))
    }
  }
}

/**
 * One database file, shared by every store of this process that uses it.
 *
 * Node runs JavaScript on one thread and every transaction here is one
 * synchronous step (`BEGIN IMMEDIATE`, the statements, `COMMIT`, with no
 * `await` between), so one connection serves every store of the process:
 * transactions cannot interleave, and stores of one process never wait for
 * each other's locks.
 *
 * @internal
 */
export class Database {
  readonly file: string
  /** Stores using this file (the registry closes the connection when none is left). */
  refs = 0
  private db: DatabaseSync | undefined = undefined
  /** The file's identity when opened: a file deleted or replaced under us is opened again. */
  private dev = 0
  private ino = 0
  /** When the path was last checked to still be the file opened (`performance.now()`). */
  private checkedAt = -Infinity
  private busyTimeoutMs = -1
  private readonly statements = new Map<string, StatementSync>()

  constructor(file: string) {
    this.file = file
  }

  /**
   * Runs `f` in a `BEGIN IMMEDIATE` transaction: the write lock is taken
   * first, waiting at most `lockTimeoutMs` (SQLite's busy timeout, spent
   * inside SQLite: this thread sleeps meanwhile), so that two processes
   * never decide on the same rows at once. Commits when `f` returns, rolls
   * back when it throws. Throws a {@link DatabaseFailure}.
   */
  write<A>(lockTimeoutMs: number, f: (connection: Database) => A): A {
    let db: DatabaseSync
    try {
      db = this.connect(lockTimeoutMs)
      const begin = db
      waitForLock(lockTimeoutMs, () => begin.exec("BEGIN IMMEDIATE"))
    } catch (error) {
      throw this.fail(error, lockTimeoutMs)
    }
    try {
      const result = f(this)
      db.exec("COMMIT")
      return result
    } catch (error) {
      try {
        if (db.isOpen && db.isTransaction) db.exec("ROLLBACK")
      } catch {
        // The rollback failed too (the file vanished): closing below discards the transaction.
      }
      throw this.fail(error, lockTimeoutMs)
    }
  }

  /**
   * Runs `f` outside a transaction: each statement reads a committed
   * snapshot, and in WAL mode a reader never waits for a writer. For
   * decisions that need no write (a stored result read back).
   */
  read<A>(lockTimeoutMs: number, f: (connection: Database) => A): A {
    try {
      this.connect(lockTimeoutMs)
      // A reader waits only in rare moments (another connection recovering the WAL index): `f` only reads, so it is run again.
      return waitForLock(lockTimeoutMs, () => f(this))
    } catch (error) {
      throw this.fail(error, lockTimeoutMs)
    }
  }

  /** A prepared statement, prepared once per connection. */
  statement(sql: string): StatementSync {
    let statement = this.statements.get(sql)
    if (statement === undefined) {
      statement = this.db!.prepare(sql)
      this.statements.set(sql, statement)
    }
    return statement
  }

  /** Closes the connection (the next use opens it again). */
  close(): void {
    const db = this.db
    this.db = undefined
    this.statements.clear()
    this.busyTimeoutMs = -1
    try {
      db?.close()
    } catch {
      // Already closed, or the file is gone: nothing to release.
    }
  }

  /** The failure to throw for `error`; rethrows what is not about the database (a bug stays a defect). */
  private fail(error: unknown, lockTimeoutMs: number): DatabaseFailure {
    const failure = classify(error, this.file, lockTimeoutMs)
    if (failure === undefined) throw error
    // A file found corrupt, foreign or unusable is inspected again from scratch
    // on the next use: it may have been repaired or replaced meanwhile.
    if (failure.reason !== "Timeout") this.close()
    return failure
  }

  /** The open connection, opening (and if needed creating or migrating) the file first. */
  private connect(lockTimeoutMs: number): DatabaseSync {
    let db = this.db
    if (db !== undefined && !this.stillSameFile()) {
      this.close()
      db = undefined
    }
    if (db === undefined) db = this.open(lockTimeoutMs)
    if (this.busyTimeoutMs !== 0) {
      // The wait for the lock is `waitForLock`'s, with short sleeps: SQLite's own busy handler sleeps up to
      // 100 ms at a time once it has waited a little, so under contention a waiter that was unlucky once
      // sleeps through many turns of the others and runs out of its bound.
      db.exec("PRAGMA busy_timeout = 0")
      this.busyTimeoutMs = 0
    }
    return db
  }

  /** Is the path still the file we opened (not deleted, not replaced by another file)? One `stat`. */
  /**
   * {@link sameFile}, at most once per {@link IDENTITY_CHECK_MS}: a `stat`
   * costs microseconds, a good share of a decision, and a file deleted or
   * replaced under a running process is rare. Decisions in the moments
   * after such a change still go to the file as it was opened, as they
   * would have just before the change.
   */
  private stillSameFile(): boolean {
    const now = performance.now()
    if (now - this.checkedAt < IDENTITY_CHECK_MS) return true
    this.checkedAt = now
    return this.sameFile()
  }

  private sameFile(): boolean {
    const stats = statSync(this.file, { throwIfNoEntry: false })
    return stats !== undefined && stats.dev === this.dev && stats.ino === this.ino
  }

  /**
   * Opens the file, retrying for up to `lockTimeoutMs` while it is busy.
   *
   * SQLite's busy timeout does not cover every wait of an open: when two
   * processes switch a new file to WAL mode at once, one of them gets
   * `SQLITE_BUSY` at once (SQLite refuses to wait where waiting could
   * deadlock). The open is then tried again from scratch, a few
   * milliseconds later, until the bound. Only the first opens of a new file
   * ever get here.
   */
  private open(lockTimeoutMs: number): DatabaseSync {
    const deadline = performance.now() + lockTimeoutMs
    for (let busyMs = lockTimeoutMs;;) {
      try {
        return this.openOnce(busyMs)
      } catch (error) {
        const busy = classify(error, this.file, lockTimeoutMs)?.reason === "Timeout"
        const left = deadline - performance.now()
        if (!busy || left <= 0) throw error
        // The thread sleeps, as it would inside SQLite's own busy handler.
        Atomics.wait(sleeper, 0, 0, Math.min(left, 2 + Math.random() * 3))
        // The next attempt waits only for what is left of the bound.
        busyMs = Math.max(1, Math.ceil(deadline - performance.now()))
      }
    }
  }

  private openOnce(busyMs: number): DatabaseSync {
    mkdirSync(dirname(this.file), { recursive: true })
    const db = new DatabaseSync(this.file, { timeout: busyMs })
    try {
      // Read-only first: a foreign file must be refused before anything is written to it.
      const found = inspect(db)
      const foreign = foreignReason(this.file, found)
      if (foreign !== undefined) throw new DatabaseFailure("Rejected", foreign)
      // WAL: readers never wait for the writer, and a commit is one append.
      // The mode is stored in the file, so this changes something only once.
      db.exec("PRAGMA journal_mode = WAL")
      // NORMAL is safe in WAL mode: a process crash loses nothing; a power
      // loss may lose the last transactions, never the file's integrity.
      db.exec("PRAGMA synchronous = NORMAL")
      if (found.version !== SCHEMA_VERSION) this.migrate(db)
      const stats = statSync(this.file)
      this.dev = stats.dev
      this.ino = stats.ino
      this.checkedAt = performance.now()
      this.db = db
      this.busyTimeoutMs = busyMs
      return db
    } catch (error) {
      db.close()
      throw error
    }
  }

  /**
   * Brings the schema to {@link SCHEMA_VERSION} in one `BEGIN IMMEDIATE`
   * transaction. The file is inspected again under the lock: another
   * process may have created or migrated it since.
   */
  private migrate(db: DatabaseSync): void {
    db.exec("BEGIN IMMEDIATE")
    try {
      const found = inspect(db)
      const foreign = foreignReason(this.file, found)
      if (foreign !== undefined) throw new DatabaseFailure("Rejected", foreign)
      for (let version = found.version; version < SCHEMA_VERSION; version++) migrations[version](db)
      db.exec(`PRAGMA application_id = ${APPLICATION_ID}`)
      db.prepare("INSERT OR REPLACE INTO bulwark_meta (key, value) VALUES ('schema_version', ?)").run(
        String(SCHEMA_VERSION)
      )
      db.prepare("INSERT OR IGNORE INTO bulwark_meta (key, value) VALUES ('created_at', ?)").run(
        new Date().toISOString()
      )
      db.exec("COMMIT")
    } catch (error) {
      if (db.isTransaction) db.exec("ROLLBACK")
      throw error
    }
  }
}

// -----------------------------------------------------------------------------
// one connection per file per process
// -----------------------------------------------------------------------------

const open = new Map<string, Database>()

/**
 * The shared connection to `file` (resolved against the working directory),
 * counted: {@link release} closes it when its last user is done.
 *
 * @internal
 */
export const acquire = (file: string): Database => {
  const path = resolve(file)
  let database = open.get(path)
  if (database === undefined) {
    database = new Database(path)
    open.set(path, database)
  }
  database.refs++
  return database
}

/** @internal */
export const release = (database: Database): void => {
  if (--database.refs > 0) return
  database.close()
  if (open.get(database.file) === database) open.delete(database.file)
}
