/**
 * Hedged requests: when a call has not answered after `after`, start another
 * attempt of the same call, up to `maxAttempts` in flight, and take the first
 * one that succeeds. A slow replica, a lost packet or a long GC pause then
 * costs `after` instead of the whole tail latency.
 *
 * **When to use**
 *
 * On idempotent reads whose latency has a long tail (p99 far above p50),
 * against a dependency with spare capacity. Set `after` near the p90-p95
 * latency so that only the slow few are hedged.
 *
 * **Details**
 *
 * - The first attempt starts at once. While no attempt has succeeded and
 *   fewer than `maxAttempts` have started, a new attempt starts every
 *   `after` (the timer restarts whenever an attempt starts).
 * - The first **success** wins: every other attempt is interrupted, and the
 *   hedged call returns only after their finalizers ran, so a `Bulkhead` or
 *   `CircuitBreaker` guard inside each attempt has given its permit or probe
 *   back by then.
 * - A failed attempt is not final while another attempt runs or can still
 *   start. A failure starts the next attempt **at once** (if `maxAttempts`
 *   allows one more) instead of waiting for `after`.
 * - Any non-success exit of an attempt counts as a failure of that attempt:
 *   a typed failure, a **defect**, or the attempt interrupting itself. The
 *   hedged call fails only when every one of the `maxAttempts` attempts
 *   failed, and then with the full `Cause` of the **last attempt to fail**
 *   (so a defect stays a defect).
 * - Interrupting the hedged call interrupts every attempt in flight. No
 *   attempt fiber outlives the call.
 * - `maxAttempts: 1` is the call itself, untouched.
 *
 * **Gotchas**
 *
 * - Every attempt runs the effect again: use hedging with idempotent calls.
 * - Hedging adds load by design (up to `maxAttempts` times the calls while
 *   the dependency is slow). Put a bulkhead or a rate limiter inside each
 *   attempt so that hedges cannot swamp a struggling dependency.
 * - Options are checked when the guard is built; bad options (`after` of 0,
 *   a `maxAttempts` of 1.5, an unknown field) are a programming error: every
 *   call of the guard dies with an `InvalidOptions` naming the fields.
 *
 * **Example** (Hedging a slow read)
 *
 * ```ts
 * import { Hedge } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * declare const read: Effect.Effect<string>
 *
 * // A second attempt after 50 ms without an answer, a third after 100 ms.
 * const fast = read.pipe(Hedge.guard({ after: "50 millis", maxAttempts: 3 }))
 * ```
 *
 * @since 0.1.0
 */
import { Cause, Duration, Effect, Exit, Option, Queue, Schema, Scope } from "effect"
import { decodeOrDie, Name, PositiveDuration, PositiveInt } from "./internal/options.ts"
import * as tracing from "./internal/tracing.ts"

/**
 * Options of `guard`.
 *
 * @since 0.1.0
 * @category options
 */
export interface Options {
  /** Shown in `InvalidOptions` and on the `bulwark.hedge.attempt` spans; optional. */
  readonly name?: string | undefined
  /**
   * How long to wait for a result before starting another attempt: a finite
   * duration > 0 (`"50 millis"`, a number of milliseconds, a `Duration`).
   */
  readonly after: Duration.Input
  /** The most attempts of one call, the first included: an integer >= 1. */
  readonly maxAttempts: number
}

/**
 * The Schema of {@link Options}: `after` is decoded to a `Duration`.
 *
 * **Example** (Decoding options from configuration)
 *
 * ```ts
 * import { Hedge } from "@bulwark/core"
 * import { Schema } from "effect"
 *
 * const options = Schema.decodeUnknownSync(Hedge.Options)({ after: "50 millis", maxAttempts: 2 })
 * ```
 *
 * @since 0.1.0
 * @category options
 */
export const Options = Schema.Struct({
  name: Schema.optional(Name),
  after: PositiveDuration,
  maxAttempts: PositiveInt
})

const parse = decodeOrDie("Hedge.guard", Options)

/** Why an attempt started: the call itself, `after` elapsed, or the previous attempt failed. */
type Trigger = "first" | "delay" | "failure"

/**
 * Runs `self` hedged. The attempts are forked into a scope of their own
 * (parallel finalizers) that is closed when the call exits, however it exits:
 * closing it interrupts the attempts still in flight and waits for them.
 *
 * A traced call runs each attempt in a child span `bulwark.hedge.attempt`, so
 * that the spans of concurrent attempts are told apart and the losers show as
 * interrupted.
 */
const hedged = <A, E, R>(self: Effect.Effect<A, E, R>, name: string, after: Duration.Duration, maxAttempts: number) =>
  Effect.withFiber((fiber) => {
    const traced = tracing.spanOf(fiber) !== undefined
    return Effect.acquireUseRelease(
      Scope.make("parallel"),
      (scope) =>
        Effect.gen(function*() {
          const exits = yield* Queue.unbounded<Exit.Exit<A, E>>()
          const report = (exit: Exit.Exit<A, E>) => Queue.offer(exits, exit)
          const attempt = Effect.exit(self).pipe(Effect.flatMap(report))
          let started = 0
          let running = 0
          const launch = (trigger: Trigger) =>
            Effect.suspend(() => {
              started++
              running++
              if (!traced) return Effect.forkIn(attempt, scope)
              const inSpan = tracing.withChildSpan("bulwark.hedge.attempt", {
                "bulwark.name": name,
                "bulwark.hedge.attempt": started,
                "bulwark.hedge.trigger": trigger
              }, self)
              return Effect.forkIn(Effect.exit(inSpan).pipe(Effect.flatMap(report)), scope)
            })
          const awaitNext = Queue.take(exits).pipe(Effect.map(Option.some))
          const awaitNextOrHedge = Queue.take(exits).pipe(Effect.timeoutOption(after))
          yield* launch("first")
          while (true) {
            const next = yield* (started < maxAttempts ? awaitNextOrHedge : awaitNext)
            if (Option.isNone(next)) {
              // `after` elapsed without a result: hedge.
              yield* launch("delay")
              continue
            }
            running--
            const exit = next.value
            if (Exit.isSuccess(exit)) return exit.value
            if (started < maxAttempts) {
              // A failure starts the next attempt at once.
              yield* launch("failure")
              continue
            }
            if (running === 0) return yield* Effect.failCause(exit.cause as Cause.Cause<E>)
          }
        }),
      (scope, exit) => Scope.close(scope, exit)
    )
  })

const compile = (options: Options) => {
  const parsed = parse(options)
  if (Effect.isEffect(parsed)) return <A, E, R>(_: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => parsed
  const { after, maxAttempts } = parsed
  const name = parsed.name ?? "<unnamed>"
  if (maxAttempts === 1) return <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => self
  return <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => hedged(self, name, after, maxAttempts)
}

/**
 * Runs an effect hedged: if it has not finished after `after`, another
 * attempt starts, up to `maxAttempts` in flight; the first success wins and
 * the other attempts are interrupted. The call fails only when every attempt
 * failed, with the cause of the last attempt to fail. A failed attempt starts
 * the next one at once. Types are unchanged: the result, error and
 * requirements are those of the effect.
 *
 * **Example** (Guarding calls)
 *
 * ```ts
 * import { Bulkhead, Hedge } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * declare const read: Effect.Effect<string>
 * declare const pool: Bulkhead.Bulkhead
 *
 * read.pipe(Hedge.guard({ after: "50 millis", maxAttempts: 2 }))        // pipeable
 * Hedge.guard(read, { after: 50, maxAttempts: 2 })                      // data-first
 * read.pipe(Bulkhead.guard(pool), Hedge.guard({ after: 50, maxAttempts: 3 })) // each attempt takes a permit
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const guard: {
  (options: Options): <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  <A, E, R>(self: Effect.Effect<A, E, R>, options: Options): Effect.Effect<A, E, R>
} = function() {
  // The options are checked once, when a data-last guard is built.
  if (arguments.length >= 2 && Effect.isEffect(arguments[0])) return compile(arguments[1])(arguments[0])
  return compile(arguments[0])
} as any
