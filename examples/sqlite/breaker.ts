/**
 * A circuit breaker shared by the runs of a command-line tool: the issue
 * tracker is down, and the first run finds out the hard way (three failed
 * calls). The circuit it opened is in the file, so the next run, a new
 * process with its own store and breaker, is refused at once with
 * `CircuitOpen` instead of waiting on the dead tracker again.
 *
 * The file is a temporary one; a real tool leaves out `file` and gets
 * `~/.cache/bulwark/bulwark.sqlite` (see `SqliteDatabase.defaultFile`).
 */
import { CircuitBreaker } from "@bulwark/core"
import { SqliteCircuitBreakerStore } from "@bulwark/sqlite"
import { Data, Duration, Effect } from "effect"
import assert from "node:assert/strict"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

class TrackerDown extends Data.TaggedError("TrackerDown") {}

let requests = 0
/** The tracker times out on every request. */
const fetchIssues = Effect.suspend(() => {
  requests++
  return Effect.fail(new TrackerDown())
})

/** One run of `mytool issues`: three attempts, each through the shared breaker. */
const run = (file: string) =>
  Effect.gen(function*() {
    const tracker = yield* CircuitBreaker.make({
      name: "tracker",
      trip: CircuitBreaker.consecutive(3),
      openFor: "1 minute",
      store: yield* SqliteCircuitBreakerStore.make({ file, prefix: "mytool:" }),
      onStoreError: "fail-open" // a CLI never hangs on its cache
    })
    const outcomes: Array<string> = []
    for (let attempt = 0; attempt < 3; attempt++) {
      const exit = yield* fetchIssues.pipe(CircuitBreaker.guard(tracker), Effect.result)
      outcomes.push(exit._tag === "Success" ? "ok" : exit.failure._tag)
    }
    const { retryAfter, state } = yield* CircuitBreaker.state(tracker)
    return { outcomes, state, retryAfter }
  }).pipe(Effect.scoped)

export const program = Effect.gen(function*() {
  const dir = mkdtempSync(join(tmpdir(), "bulwark-example-"))
  yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
  const file = join(dir, "bulwark.sqlite")

  const first = yield* run(file)
  assert.deepEqual(first.outcomes, ["TrackerDown", "TrackerDown", "TrackerDown"])
  assert.equal(first.state, "Open")

  // The next run, a minute's fraction later: the circuit is still open, for every process.
  const second = yield* run(file)
  assert.deepEqual(second.outcomes, ["CircuitOpen", "CircuitOpen", "CircuitOpen"])
  assert.ok(Duration.toSeconds(second.retryAfter) > 50)
  assert.equal(requests, 3) // the second run never reached the tracker
  return { first: first.outcomes, second: second.outcomes }
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
