/**
 * The circuit breaker sits inside the retry. Every attempt is a real call to
 * the dependency, and the breaker counts each one. Once the circuit opens, the
 * retry's next attempt gets a `CircuitOpen`: if its `retryAfter` lies past the
 * call's deadline (the policy's `timeout`), the retry stops at once with that
 * error; if it is short, the retry waits it out and its attempt is the
 * half-open probe.
 */
import { CircuitBreaker, Policy, Retry } from "@bulwark/core"
import { Clock, Data, Effect } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

class Unavailable extends Data.TaggedError("Unavailable") {}

export const program = Effect.gen(function*() {
  // A dependency that is down. The third failed attempt opens the circuit for a minute.
  const ledger = yield* CircuitBreaker.make({ name: "ledger", trip: CircuitBreaker.consecutive(3), openFor: "1 minute" })
  const policy = yield* Policy.make({
    name: "ledger",
    timeout: "2 seconds",
    retry: Retry.policy({ maxAttempts: 5, base: "5 millis", jitter: "none" }),
    circuitBreaker: ledger
  })
  let calls = 0
  const post = Effect.suspend(() => (++calls, Effect.fail(new Unavailable())))

  const t0 = yield* Clock.currentTimeMillis
  const error = yield* Effect.flip(post.pipe(Policy.guard(policy)))
  // Three attempts reached the dependency and opened the circuit. The fourth was rejected with a
  // retryAfter of one minute, past the call's 2-second deadline: the retry gave up at once, with that error.
  assert.equal(calls, 3)
  assert.equal(error._tag, "CircuitOpen")
  assert.ok((yield* Clock.currentTimeMillis) - t0 < 1000)
  const retry = yield* Retry.stats(policy.components.retry!)
  assert.deepEqual([retry.attempts, retry.exhausted.MaxElapsed], [4, 1]) // a stop at the deadline counts as MaxElapsed

  // A short open time: the retry waits out the CircuitOpen's retryAfter, and its next attempt is the
  // probe that closes the circuit. The rejected attempt counts against maxAttempts, not against the dependency.
  const quotes = yield* CircuitBreaker.make({ name: "quotes", trip: CircuitBreaker.consecutive(1), openFor: "50 millis" })
  const quoting = yield* Policy.make({
    name: "quotes",
    timeout: "2 seconds",
    retry: Retry.policy({ maxAttempts: 3, base: "1 millis", jitter: "none" }),
    circuitBreaker: quotes
  })
  calls = 0
  const quote = Effect.suspend(() => (++calls === 1 ? Effect.fail(new Unavailable()) : Effect.succeed(42)))
  const t1 = yield* Clock.currentTimeMillis
  assert.equal(yield* quote.pipe(Policy.guard(quoting)), 42)
  assert.ok((yield* Clock.currentTimeMillis) - t1 >= 49) // never sooner than the circuit allowed
  assert.equal(calls, 2)
  assert.equal((yield* Retry.stats(quoting.components.retry!)).attempts, 3)
  assert.equal((yield* CircuitBreaker.state(quotes)).state, "Closed")
  return error.message
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
