/**
 * A guarded call fails with its own errors plus exactly the rejections of the
 * stages its policy has; a retry or a hedge adds none. With a fallback, the
 * errors are the fallback's own and the result type gains its answer. The
 * fallback replaces every typed failure that reaches it, rejections
 * included, but never a defect or an interruption.
 */
import { Bulkhead, BulkheadFull, Fallback, Policy, Retry, TimeoutExceeded } from "@bulwark/core"
import { Cause, Data, Duration, Effect, Exit, Fiber } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

class Declined extends Data.TaggedError("Declined") {}
class QueueDown extends Data.TaggedError("QueueDown") {}

/** A card processor: declines stolen cards, hangs on slow ones. */
const charge = (card: string): Effect.Effect<string, Declined> =>
  card === "stolen" ? Effect.fail(new Declined()) : card === "slow" ? Effect.never : Effect.succeed(`charged ${card}`)

export const program = Effect.gen(function*() {
  const payments = yield* Policy.make({
    name: "payments",
    timeout: "100 millis",
    bulkhead: yield* Bulkhead.make({ name: "payments", maxConcurrent: 1 }),
    retry: Retry.policy({ maxAttempts: 2, base: "1 millis" })
  })

  // The call's own error, plus the timeout's and the bulkhead's: nothing from the retry.
  const pay = (card: string): Effect.Effect<string, Declined | TimeoutExceeded | BulkheadFull> =>
    charge(card).pipe(Policy.guard(payments))
  // Handling these three tags leaves no error at all (and catchTags refuses a tag that is not in E).
  const checkout = (card: string): Effect.Effect<string> =>
    pay(card).pipe(Effect.catchTags({
      Declined: () => Effect.succeed("declined"),
      TimeoutExceeded: (e) => Effect.succeed(`${e.name} timed out after ${Duration.format(e.after)}`),
      BulkheadFull: (e) => Effect.succeed(`refused: ${e.reason}`)
    }))

  assert.equal(yield* checkout("visa"), "charged visa")
  assert.equal(yield* checkout("stolen"), "declined")
  const slow = yield* Effect.forkChild(checkout("slow"), { startImmediately: true }) // holds the only slot
  assert.equal(yield* checkout("visa"), "refused: QueueFull")
  assert.equal(yield* Fiber.join(slow), "payments timed out after 100ms")

  // To answer only some rejections, with their types, pipe Fallback after the guard.
  const orLater: Effect.Effect<string, Declined | TimeoutExceeded> = pay("visa").pipe(
    Fallback.onTag("BulkheadFull", () => Effect.succeed("try again later"))
  )
  assert.equal(yield* orLater, "charged visa")

  // A fallback stage replaces every typed failure; its own errors are what is left.
  const enqueue: Effect.Effect<"queued", QueueDown> = Effect.succeed("queued")
  const seen: Array<string> = []
  const lenient = yield* Policy.make({
    name: "payments-lenient",
    timeout: "50 millis",
    fallback: (error) => Effect.andThen(Effect.sync(() => seen.push((error as { readonly _tag: string })._tag)), enqueue)
  })
  const lenientPay = (card: string): Effect.Effect<string, QueueDown> => charge(card).pipe(Policy.guard(lenient))
  assert.equal(yield* lenientPay("stolen"), "queued")
  assert.equal(yield* lenientPay("slow"), "queued")
  assert.deepEqual(seen, ["Declined", "TimeoutExceeded"])

  // A defect is a bug, not a failure: it passes through the fallback.
  const bug = yield* Effect.exit(Effect.die("bug").pipe(Policy.guard(lenient)))
  assert.ok(Exit.isFailure(bug) && Cause.hasDies(bug.cause))
  const stats = yield* Policy.stats(lenient)
  assert.deepEqual([stats.fallbacks.Error, stats.fallbacks.TimeoutExceeded, stats.failed.Defect], [1, 1, 1])
  return seen
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
