/**
 * A worker process of test/redis/RedisCircuitBreakerStore.test.ts: one of
 * several OS processes sharing one circuit (consecutive(3), open for
 * `OPEN_MS`, one probe at a time) through the same redis-server. Once the
 * test says "go", it calls through the breaker every 10 ms for `RUN_MS`
 * (each call takes 5 ms and succeeds), and reports what happened to each
 * call ("ran" or the rejection's reason) and the transitions this process
 * saw on its events stream (`remote ...` for those another process caused).
 */
import { CircuitBreaker } from "@bulwark/core"
import { RedisCircuitBreakerStore } from "@bulwark/redis"
import * as NodeRedis from "@effect/platform-node/NodeRedis"
import { Effect, References, Stream } from "effect"

const url = process.env.REDIS_URL!
const prefix = process.env.PREFIX!
const openMs = Number(process.env.OPEN_MS)
const runMs = Number(process.env.RUN_MS)

const send = (message: unknown) => Effect.sync(() => process.send!(message))

const go = Effect.callback<void>((resume) => {
  process.once("message", (message) => message === "go" && resume(Effect.void))
})

const program = Effect.gen(function*() {
  const breaker = yield* CircuitBreaker.make({
    name: "fleet",
    trip: CircuitBreaker.consecutive(3),
    openFor: openMs,
    halfOpen: { probes: 1, probeTimeout: "5 seconds" },
    store: yield* RedisCircuitBreakerStore.make({ prefix }),
    onStoreError: "fail-closed"
  })
  const transitions: Array<string> = []
  yield* Effect.forkScoped(
    Stream.runForEach(
      CircuitBreaker.transitions(breaker),
      (t) => Effect.sync(() => void transitions.push(`${t.remote ? "remote " : ""}${t.from} -> ${t.to}`))
    ),
    { startImmediately: true }
  )
  yield* CircuitBreaker.state(breaker) // loads the script, warms the connection
  // The subscription to other processes' transitions is made in the background: let it be made.
  yield* Effect.sleep(300)
  yield* send({ type: "ready" })
  yield* go
  const outcomes: Array<string> = []
  const deadline = Date.now() + runMs
  while (Date.now() < deadline) {
    const outcome = yield* Effect.sleep(5).pipe(
      CircuitBreaker.guard(breaker),
      Effect.as("ran"),
      Effect.catchTag("CircuitOpen", (e) => Effect.succeed(e.reason))
    )
    outcomes.push(outcome)
    yield* Effect.sleep(10)
  }
  yield* send({ type: "done", report: { outcomes, transitions } })
}).pipe(
  Effect.scoped,
  Effect.provide(NodeRedis.layer({ url, disableOfflineQueue: true })),
  Effect.provideService(References.MinimumLogLevel, "Error")
)

Effect.runPromise(program).then(
  () => process.exit(0),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
