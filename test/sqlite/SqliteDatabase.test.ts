/**
 * The database layer every SQLite store shares, on real files in a
 * temporary directory: where the file lives, what a new file holds (WAL,
 * application id, schema version), migrations under the lock when several
 * processes open a new file at once, files that are not Bulwark's (refused
 * with reason Rejected and left untouched), files that cannot be used
 * (Unavailable), a file replaced under an open connection, and the process
 * identity that tells a live owner from a dead one.
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import { it as vitest } from "vitest"
import { InvalidOptions, type StoreError } from "@bulwark/core"
import { SqliteDatabase, SqliteIdempotencyStore } from "@bulwark/sqlite"
import { Effect, Result } from "effect"
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from "node:fs"
import { homedir } from "node:os"
import { join } from "node:path"
import { DatabaseSync } from "node:sqlite"
import { cacheDirectory, IDENTITY_CHECK_MS } from "../../packages/sqlite/src/internal/database.ts"
import { isGone, self } from "../../packages/sqlite/src/internal/process.ts"
import { forkWorker, tempFiles } from "./support.ts"

const files = tempFiles()
afterAll(files.cleanup)

const query = <A>(file: string, sql: string): A => {
  const db = new DatabaseSync(file, { readOnly: true })
  try {
    return db.prepare(sql).get() as A
  } finally {
    db.close()
  }
}

const checkFails = (file: string) => Effect.flip(SqliteDatabase.check({ file })) as Effect.Effect<StoreError>

describe("SqliteDatabase", () => {
  describe("location: the user's cache directory by default", () => {
    it("XDG_CACHE_HOME when absolute, else ~/.cache; ~/Library/Caches on macOS; %LOCALAPPDATA% on Windows", () => {
      assert.strictEqual(cacheDirectory({ XDG_CACHE_HOME: "/xdg" }, "linux"), "/xdg")
      assert.strictEqual(cacheDirectory({ XDG_CACHE_HOME: "relative/dir" }, "linux"), join(homedir(), ".cache"))
      assert.strictEqual(cacheDirectory({}, "linux"), join(homedir(), ".cache"))
      assert.strictEqual(cacheDirectory({}, "freebsd"), join(homedir(), ".cache"))
      assert.strictEqual(cacheDirectory({ XDG_CACHE_HOME: "/xdg" }, "darwin"), join(homedir(), "Library", "Caches"))
      assert.strictEqual(cacheDirectory({ LOCALAPPDATA: "C:\\Users\\ada\\AppData\\Local" }, "win32"), "C:\\Users\\ada\\AppData\\Local")
    })

    it.effect("defaultFile is <cache>/bulwark/bulwark.sqlite, and a store given no file uses it (the directory is created)", () =>
      Effect.gen(function*() {
        const before = process.env.XDG_CACHE_HOME
        const cache = join(files.dir, "xdg-cache")
        process.env.XDG_CACHE_HOME = cache
        try {
          const file = SqliteDatabase.defaultFile()
          assert.strictEqual(file, join(cache, "bulwark", "bulwark.sqlite"))
          if (process.platform !== "linux") return
          yield* SqliteDatabase.check()
          assert.isTrue(statSync(file).isFile())
        } finally {
          if (before === undefined) delete process.env.XDG_CACHE_HOME
          else process.env.XDG_CACHE_HOME = before
        }
      }))
  })

  describe("a new file: WAL mode, Bulwark's application id, the current schema version, every table", () => {
    it.effect("created on first use, with its directories", () =>
      Effect.gen(function*() {
        const file = join(files.dir, "nested", "deeper", "new.sqlite")
        yield* SqliteDatabase.check({ file })
        assert.strictEqual(query<{ journal_mode: string }>(file, "PRAGMA journal_mode").journal_mode, "wal")
        assert.strictEqual(query<{ application_id: number }>(file, "PRAGMA application_id").application_id, SqliteDatabase.applicationId)
        assert.strictEqual(
          query<{ value: string }>(file, "SELECT value FROM bulwark_meta WHERE key = 'schema_version'").value,
          String(SqliteDatabase.schemaVersion)
        )
        const tables = query<{ names: string }>(
          file,
          "SELECT group_concat(name, ',') AS names FROM (SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name)"
        ).names
        assert.strictEqual(
          tables,
          "bulwark_bulkhead,bulwark_circuit_breaker,bulwark_idempotency,bulwark_meta,bulwark_rate_limiter"
        )
      }))

    it.effect("an empty file (0 bytes) is a new database", () =>
      Effect.gen(function*() {
        const file = files.next()
        writeFileSync(file, "")
        yield* SqliteDatabase.check({ file })
        assert.strictEqual(query<{ application_id: number }>(file, "PRAGMA application_id").application_id, SqliteDatabase.applicationId)
      }))

    vitest("4 processes open the same new file at once: the schema is created once, under the lock, and every process uses it", async () => {
      const file = files.next("race")
      const workers = Array.from({ length: 4 }, () => forkWorker<{ readonly type: string; readonly claim?: string }>("opener.ts", [file], {}, 20_000))
      try {
        await Promise.all(workers.map((w) => w.next((m) => m.type === "ready")))
        for (const w of workers) w.send("go")
        assert.deepStrictEqual(await Promise.all(workers.map((w) => w.exited)), [0, 0, 0, 0], workers.map((w) => w.stderr()).join(""))
        for (const w of workers) assert.strictEqual(w.messages.find((m) => m.type === "done")?.claim, "Claimed")
        assert.strictEqual(query<{ n: number }>(file, "SELECT count(*) AS n FROM bulwark_idempotency").n, 4)
        assert.strictEqual(query<{ n: number }>(file, "SELECT count(*) AS n FROM bulwark_meta WHERE key = 'schema_version'").n, 1)
      } finally {
        for (const w of workers) w.kill()
      }
    }, 20_000)
  })

  describe("migrations: a file of an earlier schema version is brought up to date on open, its rows kept", () => {
    it.effect("a version 1 file (idempotency keys and rate limits only) gains the circuit breaker and bulkhead tables", () =>
      Effect.gen(function*() {
        const file = files.next("v1")
        // Exactly what version 1 of this package created (a published migration never changes).
        const db = new DatabaseSync(file)
        db.exec(`
PRAGMA journal_mode = WAL;
CREATE TABLE bulwark_meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL) STRICT;
CREATE TABLE bulwark_idempotency (
  key TEXT PRIMARY KEY NOT NULL, token TEXT NOT NULL, completed INTEGER NOT NULL, encoded TEXT, stored_at INTEGER,
  expires_at INTEGER NOT NULL, owner_pid INTEGER NOT NULL, owner_start TEXT NOT NULL, owner_scope TEXT NOT NULL
) STRICT;
CREATE INDEX bulwark_idempotency_expires ON bulwark_idempotency (expires_at);
CREATE TABLE bulwark_rate_limiter (key TEXT PRIMARY KEY NOT NULL, state TEXT NOT NULL, reset_at REAL NOT NULL) STRICT;
CREATE INDEX bulwark_rate_limiter_reset ON bulwark_rate_limiter (reset_at);
PRAGMA application_id = ${SqliteDatabase.applicationId};
INSERT INTO bulwark_meta VALUES ('schema_version', '1'), ('created_at', '2026-11-01T00:00:00.000Z');
INSERT INTO bulwark_idempotency VALUES ('deploy', 't', 1, '"done"', 5, 9e15, 1, '', 'elsewhere');
INSERT INTO bulwark_rate_limiter VALUES ('api', '{}', 9e15);
`)
        db.close()
        // A store of the new version replays the key stored by the old one.
        const store = yield* SqliteIdempotencyStore.make({ file })
        const claim = yield* store.claim("deploy", 60_000, 10)
        assert.deepStrictEqual(claim, { _tag: "Completed", encoded: "\"done\"", storedAt: 5 })
        assert.strictEqual(
          query<{ value: string }>(file, "SELECT value FROM bulwark_meta WHERE key = 'schema_version'").value,
          String(SqliteDatabase.schemaVersion)
        )
        assert.strictEqual(query<{ value: string }>(file, "SELECT value FROM bulwark_meta WHERE key = 'created_at'").value, "2026-11-01T00:00:00.000Z")
        assert.strictEqual(query<{ n: number }>(file, "SELECT count(*) AS n FROM bulwark_rate_limiter").n, 1)
        assert.strictEqual(
          query<{ names: string }>(
            file,
            "SELECT group_concat(name, ',') AS names FROM (SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name)"
          ).names,
          "bulwark_bulkhead,bulwark_circuit_breaker,bulwark_idempotency,bulwark_meta,bulwark_rate_limiter"
        )
      }).pipe(Effect.scoped))
  })

  describe("files that are not Bulwark's: reason Rejected with a clear message, the file never written to", () => {
    const untouched = <E>(file: string, body: Effect.Effect<void, E>) =>
      Effect.gen(function*() {
        const before = readFileSync(file)
        yield* body
        assert.isTrue(readFileSync(file).equals(before), "the file was modified")
      })

    it.effect("not a database at all", () =>
      Effect.gen(function*() {
        const file = files.next()
        writeFileSync(file, "#!/bin/sh\necho this is a shell script\n".repeat(200))
        yield* untouched(file, Effect.gen(function*() {
          const e = yield* checkFails(file)
          assert.deepStrictEqual([e._tag, e.store, e.operation, e.reason], ["StoreError", "sqlite", "open", "Rejected"])
          assert.include(e.message, "is not a SQLite database")
        }))
      }))

    it.effect("another application's database (its own tables)", () =>
      Effect.gen(function*() {
        const file = files.next()
        const db = new DatabaseSync(file)
        db.exec("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); CREATE TABLE orders (id INTEGER PRIMARY KEY)")
        db.close()
        yield* untouched(file, Effect.gen(function*() {
          const e = yield* checkFails(file)
          assert.strictEqual(e.reason, "Rejected")
          assert.include(e.message, "a SQLite database of another application (tables users, orders)")
          // Every operation of a store says the same, and nothing is created.
          const store = yield* SqliteIdempotencyStore.make({ file })
          const claim = yield* Effect.flip(store.claim("k", 1000, 0))
          assert.deepStrictEqual([claim.reason, claim.operation], ["Rejected", "claim"])
        }).pipe(Effect.scoped))
        assert.strictEqual(query<{ journal_mode: string }>(file, "PRAGMA journal_mode").journal_mode, "delete")
      }))

    it.effect("another application's id, even with no table", () =>
      Effect.gen(function*() {
        const file = files.next()
        const db = new DatabaseSync(file)
        db.exec("PRAGMA application_id = 1234; CREATE TABLE t (x); DROP TABLE t")
        db.close()
        yield* untouched(file, Effect.gen(function*() {
          const e = yield* checkFails(file)
          assert.include(e.message, "belongs to another application (application_id 1234)")
        }))
      }))

    it.effect("a newer schema version", () =>
      Effect.gen(function*() {
        const file = files.next()
        yield* SqliteDatabase.check({ file })
        const db = new DatabaseSync(file)
        db.exec("UPDATE bulwark_meta SET value = '7' WHERE key = 'schema_version'; PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()
        yield* untouched(file, Effect.gen(function*() {
          const e = yield* checkFails(file)
          assert.include(e.message, "has schema version 7, written by a newer Bulwark; this one knows versions up to 2")
        }))
      }))

    it.effect("a Bulwark file with tables Bulwark did not create", () =>
      Effect.gen(function*() {
        const file = files.next()
        yield* SqliteDatabase.check({ file })
        const db = new DatabaseSync(file)
        db.exec("CREATE TABLE notes (text TEXT); PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()
        const e = yield* checkFails(file)
        assert.include(e.message, "holds tables Bulwark did not create (notes)")
      }))

    it.effect("a corrupt file: a typed Rejected, never a crash", () =>
      Effect.gen(function*() {
        const file = files.next()
        const store = yield* SqliteIdempotencyStore.make({ file })
        for (let i = 0; i < 200; i++) {
          const claim = yield* store.claim(`key-${i}`, 60_000, 0)
          if (claim._tag === "Claimed") yield* store.complete(`key-${i}`, claim.token, "x".repeat(500), 60_000, 0)
        }
        const db = new DatabaseSync(file)
        db.exec("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()
        // Garbage over every page but the first (the header and the schema stay readable).
        const size = statSync(file).size
        const fd = openSync(file, "r+")
        for (let offset = 4096; offset < size; offset += 4096) writeSync(fd, Buffer.alloc(4096, 0xa5), 0, 4096, offset)
        closeSync(fd)
        const reasons = new Set<string>()
        for (let i = 0; i < 200; i += 20) {
          const result = yield* Effect.result(store.claim(`key-${i}`, 60_000, 0))
          if (Result.isFailure(result)) reasons.add(result.failure.reason)
        }
        assert.deepStrictEqual([...reasons], ["Rejected"])
      }).pipe(Effect.scoped))
  })

  describe("files that cannot be used: reason Unavailable; every operation tries again", () => {
    it.effect("the directory cannot be created (a file is in the way), then can", () =>
      Effect.gen(function*() {
        const blocker = files.next("blocker")
        writeFileSync(blocker, "")
        const file = join(blocker, "bulwark.sqlite")
        const store = yield* SqliteIdempotencyStore.make({ file })
        const e = yield* Effect.flip(store.claim("k", 1000, 0))
        assert.deepStrictEqual([e.reason, e.operation], ["Unavailable", "claim"])
        rmSync(blocker)
        mkdirSync(blocker)
        assert.strictEqual((yield* store.claim("k", 1000, 0))._tag, "Claimed")
      }).pipe(Effect.scoped))

    it.effect("a file deleted under an open connection is opened again, within the identity check's period (not written to the deleted inode)", () =>
      Effect.gen(function*() {
        const file = files.next()
        const store = yield* SqliteIdempotencyStore.make({ file })
        assert.strictEqual((yield* store.claim("a", 60_000, 0))._tag, "Claimed")
        rmSync(file)
        rmSync(`${file}-wal`, { force: true })
        rmSync(`${file}-shm`, { force: true })
        // The path is checked at most once per IDENTITY_CHECK_MS of real time.
        yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, IDENTITY_CHECK_MS + 10)))
        assert.strictEqual((yield* store.claim("b", 60_000, 0))._tag, "Claimed")
        assert.strictEqual(query<{ n: number }>(file, "SELECT count(*) AS n FROM bulwark_idempotency").n, 1)
      }).pipe(Effect.scoped))

    it.effect("bad options are InvalidOptions naming each field", () =>
      Effect.gen(function*() {
        const e = yield* Effect.flip(SqliteDatabase.check({ file: 42, lockTimeout: "1.5 millis" } as any))
        assert.instanceOf(e, InvalidOptions)
        assert.strictEqual(e.primitive, "SqliteDatabase")
        assert.deepStrictEqual(e.message.split("\n").map((line) => line.split(":")[0]).sort(), ["file", "lockTimeout"])
      }))
  })

  describe("process identity: pid + start time tells a live owner from a dead one and from a reused pid", () => {
    it("this process: its pid, and on Linux its start time and a scope of boot id and pid namespace", () => {
      const me = self()
      assert.strictEqual(me.pid, process.pid)
      if (process.platform === "linux") {
        assert.match(me.start, /^\d+$/)
        assert.match(me.scope, /^linux:[0-9a-f-]+:pid:\[\d+\]$/)
      }
      assert.isFalse(isGone(me))
      assert.isFalse(isGone({ ...me, scope: "linux:elsewhere:pid:[1]", pid: 2 ** 22 + 1 }))
    })

    vitest("a live child is not gone; once killed it is; a live pid with another start time is gone (reused)", async () => {
      const file = files.next()
      const child = forkWorker<{ readonly type: string }>("holder.ts", [file], {}, 20_000)
      try {
        await child.next((m) => m.type === "locked")
        const me = self()
        const start = process.platform === "linux"
          ? readFileSync(`/proc/${child.pid}/stat`, "utf8").split(") ")[1].split(" ")[19]
          : ""
        const owner = { pid: child.pid, start, scope: me.scope }
        assert.isFalse(isGone(owner))
        if (process.platform === "linux") assert.isTrue(isGone({ ...owner, start: `${start}1` }))
        child.kill("SIGKILL")
        await child.exited
        assert.isTrue(isGone(owner))
      } finally {
        child.kill()
      }
    }, 20_000)
  })
})
