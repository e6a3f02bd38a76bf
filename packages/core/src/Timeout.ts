/**
 * A timeout bounds how long one call may run. When the time is up the call is
 * interrupted (its finalizers run) and the caller gets a typed
 * `TimeoutExceeded` instead of waiting on a dependency that will not answer.
 *
 * **When to use**
 *
 * Put a timeout on every call that crosses a process boundary. Inside a retry
 * it bounds each attempt; outside it bounds the whole call, retries included.
 *
 * **Details**
 *
 * - `guard("2 seconds")` or `guard({ name, after })` uses a fixed duration and
 *   needs nothing in `R`.
 * - `guard({ name })` and `named(name)` read the duration from the
 *   `Timeouts` service (an override for the name, or the default), so
 *   durations are configured in one Layer and `R` gains `Timeouts`.
 * - Every guard is counted by the `Timeouts` table in its context, if there is
 *   one, even a guard with a fixed duration that does not require it: calls
 *   and expirations per name, as stats, metrics and events.
 * - `after: 0` fails at once without starting the call: the budget is spent.
 *
 * **Gotchas**
 *
 * - Interruption waits for the interrupted call's finalizers. A call in an
 *   uninterruptible region is not cut short: the `TimeoutExceeded` arrives
 *   when that region ends.
 * - A timeout does not stop work the call already handed to another process.
 *   Use it with idempotent calls, or with a cancellation the remote side
 *   honours.
 *
 * **Example** (Bounding a call)
 *
 * ```ts
 * import { Timeout } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * const report = Effect.sleep("1 minute").pipe(Effect.as("report"))
 * const bounded = report.pipe(
 *   Timeout.guard({ name: "report", after: "2 seconds" }),
 *   Effect.catchTag("TimeoutExceeded", (e) => Effect.succeed(`gave up after ${e.after}`))
 * )
 * ```
 *
 * @since 0.1.0
 */
import { Duration, Effect, Schema } from "effect"
import * as Context from "effect/Context"
import * as internal from "./internal/timeout.ts"
import { Timeouts } from "./Timeouts.ts"

/**
 * Why the call was stopped. `Elapsed`: it ran for `after` without finishing.
 * (A union of one for now, so that the error has the same shape as every
 * other Bulwark error.)
 *
 * @since 0.1.0
 * @category errors
 */
export const Reason = Schema.Literals(["Elapsed"])

/**
 * @since 0.1.0
 * @category errors
 */
export type Reason = typeof Reason.Type

/**
 * The call ran longer than its timeout and was interrupted. Data only: it
 * never carries the caller's arguments or results.
 *
 * **Example** (Handling a timeout)
 *
 * ```ts
 * import { Timeout } from "@bulwark/core"
 * import { Duration, Effect } from "effect"
 *
 * const handle = (e: Timeout.TimeoutExceeded) =>
 *   Effect.logWarning(`${e.name} timed out after ${Duration.format(e.after)}`)
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class TimeoutExceeded extends Schema.TaggedError<TimeoutExceeded>()("TimeoutExceeded", {
  /** The timeout's name, `"<unnamed>"` for a guard given only a duration. */
  name: Schema.String,
  /** The time limit that expired. */
  after: Schema.Duration,
  reason: Reason
}) {
  override get message(): string {
    return `Timeout "${this.name}" expired after ${Duration.format(this.after)}`
  }
}

/**
 * A fixed time limit, with an optional name for errors, stats and metrics.
 *
 * @since 0.1.0
 * @category options
 */
export interface FixedOptions {
  readonly name?: string | undefined
  /** A finite duration >= 0; `"2 seconds"`, a number of milliseconds, a `Duration`. */
  readonly after: Duration.Input
}

/**
 * A time limit looked up by name in the `Timeouts` service.
 *
 * @since 0.1.0
 * @category options
 */
export interface NamedOptions {
  readonly name: string
  readonly after?: undefined
}

type Guard<R0> = <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | TimeoutExceeded, R | R0>

const isOptions = (u: unknown): u is FixedOptions | NamedOptions =>
  typeof u === "object" && u !== null && !Duration.isDuration(u) && !Array.isArray(u) &&
  ("after" in u || "name" in u)

const compileGuard = (options: Duration.Input | FixedOptions | NamedOptions): Guard<never> => {
  const api = "Timeout.guard"
  let name = internal.unnamed
  let input: unknown = options
  if (isOptions(options)) {
    if (options.name !== undefined) {
      const parsed = internal.parseName(api, options.name)
      if (Effect.isEffect(parsed)) return () => parsed
      name = parsed
    }
    if (options.after === undefined) {
      if (options.name === undefined) return () => internal.parseName(api, undefined) as Effect.Effect<never>
      return compileNamed(name)
    }
    input = options.after
  }
  const after = internal.parseAfter(api, input)
  if (Effect.isEffect(after)) return () => after
  return (self) =>
    Effect.withFiber((fiber) => {
      const table = Context.getOrUndefined(fiber.context, Timeouts)
      return internal.runWithin(self, name, after, table?.state)
    })
}

const compileNamed = (name: string): Guard<any> => (self) =>
  Effect.withFiber((fiber) => {
    const table = Context.getOrUndefined(fiber.context, Timeouts)
    // The type requires `Timeouts`; without it (an unsafe cast upstream) the
    // call cannot know its limit, which is a defect, not a timeout.
    if (table === undefined) return Effect.die(new globalThis.Error(`Timeout "${name}": no Timeouts service provided`))
    return internal.runWithin(self, name, table.state.resolve(name), table.state)
  })

/**
 * Runs an effect with a time limit: when it runs longer, it is interrupted
 * and the result is a `TimeoutExceeded`. With a duration (or `{ name, after }`)
 * the limit is fixed; with `{ name }` alone it is read from the `Timeouts`
 * service, which is then required.
 *
 * A bad `after` (negative, malformed) or an empty `name` is a programming
 * error: the guarded call dies with a message naming the option.
 *
 * **Example** (Guarding calls)
 *
 * ```ts
 * import { Timeout } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * declare const report: Effect.Effect<string>
 *
 * report.pipe(Timeout.guard("2 seconds"))                       // E | TimeoutExceeded
 * report.pipe(Timeout.guard({ name: "report", after: 2000 }))   // named in errors, stats, metrics
 * report.pipe(Timeout.guard({ name: "report" }))                // R | Timeouts: duration from the Layer
 * Timeout.guard(report, "2 seconds")                            // data-first
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const guard: {
  (after: Duration.Input | FixedOptions): <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | TimeoutExceeded, R>
  (options: NamedOptions): <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | TimeoutExceeded, R | Timeouts>
  <A, E, R>(self: Effect.Effect<A, E, R>, after: Duration.Input | FixedOptions): Effect.Effect<A, E | TimeoutExceeded, R>
  <A, E, R>(self: Effect.Effect<A, E, R>, options: NamedOptions): Effect.Effect<A, E | TimeoutExceeded, R | Timeouts>
} = function() {
  // The options are checked once, when a data-last guard is built.
  if (arguments.length >= 2 && Effect.isEffect(arguments[0])) return compileGuard(arguments[1])(arguments[0])
  return compileGuard(arguments[0])
} as any

/**
 * A timeout whose duration is configured in the `Timeouts` service: the
 * override for `name`, or the default. Same as `guard({ name })`.
 *
 * **Example** (Configuring durations in one place)
 *
 * ```ts
 * import { Timeout, Timeouts } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * const report = Effect.succeed("report").pipe(Timeout.named("report")) // R = Timeouts
 * const main = report.pipe(
 *   Effect.provide(Timeouts.layer({ default: "10 seconds", overrides: { report: "2 minutes" } }))
 * )
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const named: {
  (name: string): <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | TimeoutExceeded, R | Timeouts>
  <A, E, R>(self: Effect.Effect<A, E, R>, name: string): Effect.Effect<A, E | TimeoutExceeded, R | Timeouts>
} = function() {
  if (arguments.length >= 2) return compileGuard({ name: arguments[1] })(arguments[0])
  return compileGuard({ name: arguments[0] })
} as any
