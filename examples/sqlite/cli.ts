/**
 * The command-line case: every run of a tool is a short-lived process, and
 * the runs share what they know through one SQLite file. Here two runs of
 * the same "deploy" command, one after the other, each with its own store,
 * limiter and idempotency instance (as two processes would have):
 *
 * - the deployment runs once; the second run gets the stored result back;
 * - the API answered the first run with Retry-After: the block is written
 *   to the file, so the second run is refused at once (reason `Blocked`)
 *   instead of hammering the API again.
 *
 * The file is a temporary one; a real tool leaves out `file` and gets
 * `~/.cache/bulwark/bulwark.sqlite` (see `SqliteDatabase.defaultFile`).
 */
import { Idempotency, RateLimiter } from "@bulwark/core"
import { SqliteIdempotencyStore, SqliteRateLimiterStore } from "@bulwark/sqlite"
import { Effect, Layer, Schema } from "effect"
import assert from "node:assert/strict"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

let deployments = 0
const deploy = (version: string) => Effect.sync(() => `deployed ${version} (#${++deployments})`)

/** One run of `mytool deploy <version>`: everything it builds closes when the run ends. */
const run = (file: string, version: string) =>
  Effect.gen(function*() {
    const store = yield* SqliteRateLimiterStore.make({ file, prefix: "mytool:" })
    const api = yield* RateLimiter.make({
      name: "api",
      algorithm: RateLimiter.tokenBucket({ capacity: 5, refill: 5, per: "1 second" }),
      store,
      onStoreError: "fail-open" // a CLI never hangs on its cache
    })
    const result = yield* Idempotency.once(`deploy:${version}`, deploy(version), { ttl: "1 day", result: Schema.String })
    // The API is busy: it answers 429 with Retry-After: 60.
    const status = yield* Effect.succeed("429 Too Many Requests").pipe(RateLimiter.guard(api), Effect.result)
    if (status._tag === "Success") yield* RateLimiter.block(api, "60 seconds")
    return { result, status: status._tag === "Success" ? status.success : status.failure.reason }
  }).pipe(
    Effect.provide(Layer.fresh(SqliteIdempotencyStore.layer({ name: "mytool", file }))),
    Effect.scoped
  )

export const program = Effect.gen(function*() {
  const dir = mkdtempSync(join(tmpdir(), "bulwark-example-"))
  yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
  const file = join(dir, "bulwark.sqlite")

  const first = yield* run(file, "v1.2.3")
  assert.deepEqual(first, { result: "deployed v1.2.3 (#1)", status: "429 Too Many Requests" })

  // The next run: a new store on the same file.
  const second = yield* run(file, "v1.2.3")
  assert.equal(second.result, "deployed v1.2.3 (#1)") // replayed: the deployment did not run again
  assert.equal(second.status, "Blocked") // the first run's Retry-After still holds
  assert.equal(deployments, 1)
  return { first, second }
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
