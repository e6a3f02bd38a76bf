/**
 * With `onExceeded: "wait"`, a call that does not fit now reserves the next
 * slot that fits and waits for it. Callers are served in arrival order, and a
 * call whose slot would be further away than `maxWait` fails at once: it does
 * not wait and then fail.
 */
import { RateLimiter } from "@bulwark/core"
import { Clock, Duration, Effect, Fiber } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

export const program = Effect.gen(function*() {
  const sms = yield* RateLimiter.make({
    name: "sms",
    algorithm: RateLimiter.gcra({ rate: 10, per: "1 second" }), // one every 100 ms
    onExceeded: "wait",
    maxWait: "350 millis"
  })
  const sent: Array<{ readonly to: string; readonly at: number }> = []
  const send = (to: string) =>
    Clock.currentTimeMillis.pipe(
      Effect.flatMap((at) => Effect.sync(() => sent.push({ to, at }))),
      RateLimiter.guard(sms)
    )

  const start = yield* Clock.currentTimeMillis
  // Four messages at once: the first goes now, each next one reserves the next slot, 100 ms apart.
  const sending = yield* Effect.forEach(["ann", "bob", "cyd", "dee"], (to) => Effect.forkChild(send(to), { startImmediately: true }))

  // A fifth would have to wait 400 ms, more than maxWait: it fails now, not after waiting.
  const tooLong = yield* Effect.flip(send("eve"))
  assert.equal(tooLong.reason, "WaitTooLong")
  assert.ok(Duration.toMillis(tooLong.retryAfter) > 350)
  assert.ok((yield* Clock.currentTimeMillis) - start < 300)

  yield* Fiber.joinAll(sending)
  assert.deepEqual(sent.map((s) => s.to), ["ann", "bob", "cyd", "dee"]) // arrival order
  sent.forEach((s, i) => assert.ok(s.at - start >= 100 * i, `${s.to} went before its slot`))
  const stats = yield* RateLimiter.stats(sms)
  assert.deepEqual([stats.admitted, stats.admittedAfterWait, stats.rejected.WaitTooLong], [4, 3, 1])
  return sent.map((s) => `${s.to} +${s.at - start} ms`)
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
