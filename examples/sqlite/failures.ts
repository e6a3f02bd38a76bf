/**
 * A file the stores cannot use never crashes the program and never makes it
 * hang: every operation fails with a typed `StoreError`, and each primitive
 * applies its own policy.
 *
 * - Another connection holds the file's write lock (here in this process;
 *   usually another process): the operation waits at most `lockTimeout`
 *   (default 100 ms), then fails with reason `Timeout`. A rate limiter with
 *   `onStoreError: "fail-open"` lets the call through.
 * - The file is another application's database: reason `Rejected`, and the
 *   file is left as it was. `Idempotency` refuses the call without running
 *   it (reason `StoreRejected`); `SqliteDatabase.check` tells at start-up.
 */
import { Idempotency, RateLimiter } from "@bulwark/core"
import { SqliteDatabase, SqliteIdempotencyStore, SqliteRateLimiterStore } from "@bulwark/sqlite"
import { Effect, Schema } from "effect"
import assert from "node:assert/strict"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { DatabaseSync } from "node:sqlite"
import { fileURLToPath } from "node:url"

const locked = (file: string) =>
  Effect.gen(function*() {
    const store = yield* SqliteRateLimiterStore.make({ file })
    const algorithm = { _tag: "FixedWindow", limit: 10, windowMillis: 1000 } as const
    yield* store.consume("warm-up", algorithm, 1, Date.now(), 0) // creates the file

    const other = new DatabaseSync(file)
    other.exec("BEGIN IMMEDIATE") // another writer holds the lock...
    const started = Date.now()
    const error = yield* Effect.flip(store.consume("api", algorithm, 1, Date.now(), 0))
    const waited = Date.now() - started
    assert.equal(error._tag, "StoreError")
    assert.equal(error.reason, "Timeout")
    assert.ok(waited >= 90 && waited < 1000, `waited ${waited} ms`) // ...for longer than the bound

    const api = yield* RateLimiter.make({
      name: "api",
      algorithm: RateLimiter.fixedWindow({ limit: 10, window: "1 second" }),
      store,
      onStoreError: "fail-open"
    })
    assert.equal(yield* Effect.succeed("called").pipe(RateLimiter.guard(api)), "called")
    other.exec("COMMIT")
    other.close()
    return error.reason
  }).pipe(Effect.scoped)

const foreign = (file: string) =>
  Effect.gen(function*() {
    const app = new DatabaseSync(file)
    app.exec("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total INTEGER)")
    app.close()

    const check = yield* Effect.flip(SqliteDatabase.check({ file }))
    assert.equal(check._tag, "StoreError")
    assert.equal(check.reason, "Rejected")
    assert.match(check.message, /is a SQLite database of another application \(tables invoices\)/)

    let runs = 0
    const error = yield* Effect.flip(
      Idempotency.once("job-1", Effect.sync(() => ++runs), { ttl: "1 hour", result: Schema.Number }).pipe(
        Effect.provide(SqliteIdempotencyStore.layer({ name: "jobs", file }))
      )
    )
    assert.ok(error._tag === "IdempotencyError") // not InvalidOptions: the options are fine
    assert.equal(error.reason, "StoreRejected")
    assert.equal(runs, 0)
    return error.reason
  })

export const program = Effect.gen(function*() {
  const dir = mkdtempSync(join(tmpdir(), "bulwark-example-"))
  yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
  return {
    locked: yield* locked(join(dir, "bulwark.sqlite")),
    foreign: yield* foreign(join(dir, "someone-else.sqlite"))
  }
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
