/**
 * One policy, one circuit per key: a failing host opens its own circuit and
 * the other hosts keep working. Keys stay out of errors unless `exposeKeys`.
 */
import { CircuitBreaker } from "@bulwark/core"
import { Data, Effect } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

class ConnectionRefused extends Data.TaggedError("ConnectionRefused") {}

const fetchFrom = (host: string) => host === "eu-2" ? Effect.fail(new ConnectionRefused()) : Effect.succeed(`ok from ${host}`)

export const program = Effect.gen(function*() {
  const hosts = yield* CircuitBreaker.make({
    name: "upstreams",
    trip: CircuitBreaker.consecutive(2),
    openFor: "30 seconds",
    keys: { maxKeys: 1000, idleTimeToLive: "10 minutes" }
  })
  const call = (host: string) => fetchFrom(host).pipe(CircuitBreaker.guard(hosts, { key: host }))

  yield* Effect.exit(call("eu-2"))
  yield* Effect.exit(call("eu-2"))
  const rejected = yield* Effect.flip(call("eu-2"))
  assert.equal(rejected._tag, "CircuitOpen")
  assert.equal(rejected._tag === "CircuitOpen" && rejected.key, undefined) // the host is not leaked

  assert.equal(yield* call("eu-1"), "ok from eu-1") // other hosts are unaffected
  assert.equal((yield* CircuitBreaker.state(hosts, "eu-2")).state, "Open")
  assert.equal((yield* CircuitBreaker.state(hosts, "eu-1")).state, "Closed")
  assert.equal((yield* CircuitBreaker.stats(hosts)).circuits, 2)
  return "eu-2 isolated by its own circuit"
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
