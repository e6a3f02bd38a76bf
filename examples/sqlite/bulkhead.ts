/**
 * One concurrency cap for every run of a command-line tool: the runs share
 * `maxConcurrent` slots through the SQLite file, whoever started them. Here
 * two runs of `mytool upload` at once, each with its own store and
 * bulkhead (as two processes would have), on a cap of one upload at a time:
 *
 * - the first run takes the slot: a row of the file, owned by this process
 *   (its pid and start time), so that a run killed while holding it gives
 *   it back at once instead of after its lease;
 * - the second run waits in the file's waiting room (a ticket row), and
 *   uploads as soon as the first is done;
 * - another writer holds the file's lock for longer than `lockTimeout`:
 *   with `onStoreError: "fail-open"` the upload runs anyway, without a
 *   slot, instead of hanging on the cache.
 *
 * The file is a temporary one; a real tool leaves out `file` and gets
 * `~/.cache/bulwark/bulwark.sqlite` (see `SqliteDatabase.defaultFile`).
 */
import { DistributedBulkhead } from "@bulwark/core"
import { SqliteBulkheadStore } from "@bulwark/sqlite"
import { Deferred, Effect, Fiber } from "effect"
import assert from "node:assert/strict"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { DatabaseSync } from "node:sqlite"
import { fileURLToPath } from "node:url"

/** One run of `mytool upload <id>`: its bulkhead closes when the run ends. */
const run = (file: string, upload: Effect.Effect<string>) =>
  Effect.gen(function*() {
    const store = yield* SqliteBulkheadStore.make({ file, prefix: "mytool:" })
    const uploads = yield* DistributedBulkhead.make({
      name: "uploads",
      maxConcurrent: 1,
      maxQueue: 10,
      pollInterval: "20 millis",
      store,
      onStoreError: "fail-open" // a CLI never hangs on its cache
    })
    const result = yield* upload.pipe(DistributedBulkhead.guard(uploads))
    return { result, stats: yield* DistributedBulkhead.stats(uploads) }
  }).pipe(Effect.scoped)

const rows = (file: string) => {
  const db = new DatabaseSync(file, { readOnly: true })
  const all = db.prepare("SELECT name, slot, owner_pid FROM bulwark_bulkhead ORDER BY slot DESC, seq").all()
  db.close()
  return all.map((row) => ({ ...row }))
}

export const program = Effect.gen(function*() {
  const dir = mkdtempSync(join(tmpdir(), "bulwark-example-"))
  yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
  const file = join(dir, "bulwark.sqlite")

  const log: Array<string> = []
  const started = yield* Deferred.make<void>()
  const finish = yield* Deferred.make<void>()
  const first = yield* Effect.forkChild(run(
    file,
    Effect.gen(function*() {
      log.push("first starts")
      yield* Deferred.succeed(started, undefined)
      yield* Deferred.await(finish)
      log.push("first ends")
      return "a.tar uploaded"
    })
  ))
  yield* Deferred.await(started)
  const second = yield* Effect.forkChild(run(
    file,
    Effect.sync(() => {
      log.push("second runs")
      return "b.tar uploaded"
    })
  ))

  // The slot and the ticket are rows of the file, owned by this process.
  while (rows(file).length < 2) yield* Effect.sleep("10 millis")
  assert.deepEqual(rows(file), [
    { name: "mytool:uploads", slot: 1, owner_pid: process.pid },
    { name: "mytool:uploads", slot: 0, owner_pid: process.pid }
  ])
  yield* Deferred.succeed(finish, undefined)
  assert.equal((yield* Fiber.join(first)).result, "a.tar uploaded")
  const waited = yield* Fiber.join(second)
  assert.equal(waited.result, "b.tar uploaded")
  assert.equal(waited.stats.admittedAfterWait, 1)
  assert.deepEqual(log, ["first starts", "first ends", "second runs"])
  assert.deepEqual(rows(file), []) // every slot and ticket given back

  // Another writer holds the lock: after lockTimeout (100 ms) the upload runs without a slot.
  const other = new DatabaseSync(file)
  other.exec("BEGIN IMMEDIATE")
  const locked = yield* run(file, Effect.succeed("c.tar uploaded")).pipe(
    Effect.ensuring(Effect.sync(() => {
      other.exec("COMMIT")
      other.close()
    }))
  )
  assert.equal(locked.result, "c.tar uploaded")
  assert.equal(locked.stats.admittedWithoutStore, 1)
  assert.ok(locked.stats.storeErrors.Timeout >= 1)
  return { log, locked: locked.stats.storeErrors }
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
