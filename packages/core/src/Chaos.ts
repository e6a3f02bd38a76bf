/**
 * Chaos guards inject faults into calls on purpose (a typed failure, extra
 * latency, a defect or an interruption) so that the policies around those
 * calls (retry, timeout, circuit breaker, fallback) can be tested before a
 * real dependency misbehaves. They play the part Polly's Simmy plays for .NET.
 *
 * **When to use**
 *
 * In tests, to drive a pipeline through its failure paths with a fixed seed;
 * in a staging or game-day build, behind the `Enabled` switch, to check that
 * a service degrades the way its runbook says.
 *
 * **Details**
 *
 * - Every guard draws one number from Effect's `Random` service per call
 *   while injection is enabled, and injects when that number is below `rate`.
 *   Under `Random.withSeed` the sequence of injections is therefore fixed:
 *   the same seed and the same calls give the same faults.
 * - `rate: 0` never injects, `rate: 1` always does.
 * - `latency` sleeps on Effect's `Clock`, so under `TestClock` the call moves
 *   only when the test adjusts the clock.
 * - `Enabled` (a `Context.Reference`, default `true`) turns every guard into
 *   a pass-through; a disabled guard draws nothing from `Random`.
 * - Guards compose by piping: each one draws its own number.
 * - Guards are applied to effects. There are no Layers that wrap a service
 *   for you: wrap the service's methods with the guards where the service is
 *   built (see docs/chaos.md).
 * - No stats or metrics are kept: an injection is visible in the result, and
 *   in a trace as a `bulwark.chaos.injected` event on the call's span.
 *
 * **Gotchas**
 *
 * - Options are checked when the guard is built; bad options (a `rate`
 *   outside [0, 1], a negative `delay`, an unknown field) are a programming
 *   error: every call of the guard dies with an `InvalidOptions` whose
 *   message names the option.
 * - Adding or removing a guard changes how many numbers each call draws, and
 *   so which calls later guards hit under a given seed.
 *
 * **Example** (Failing one call in ten)
 *
 * ```ts
 * import { Chaos } from "@bulwark/core"
 * import { Data, Effect, Random } from "effect"
 *
 * class Unavailable extends Data.TaggedError("Unavailable") {}
 *
 * const query = Effect.succeed("rows").pipe(
 *   Chaos.fault({ rate: 0.1, error: () => new Unavailable() })
 * )
 * const seeded = query.pipe(Random.withSeed("game-day")) // the same faults on every run
 * ```
 *
 * @since 0.1.0
 */
import { Duration, Effect, Layer, Random, Schema } from "effect"
import * as Context from "effect/Context"
import { decodeOrDie, DurationInput, Name } from "./internal/options.ts"
import * as tracing from "./internal/tracing.ts"

/**
 * The switch every guard reads on every call. `true` (the default): guards
 * inject at their rate; `false`: guards run the call untouched and draw
 * nothing from `Random`.
 *
 * **Example** (Turning chaos off for one effect)
 *
 * ```ts
 * import { Chaos } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * const flaky = Effect.succeed(1).pipe(Chaos.fault({ rate: 1, error: "boom" }))
 * const calm = flaky.pipe(Effect.provideService(Chaos.Enabled, false)) // succeeds with 1
 * ```
 *
 * @since 0.1.0
 * @category switch
 */
export const Enabled: Context.Reference<boolean> = Context.Reference<boolean>("@bulwark/core/Chaos/Enabled", {
  defaultValue: () => true
})

/**
 * Runs an effect with injection turned on or off. Same as
 * `Effect.provideService(Chaos.Enabled, enabled)`.
 *
 * **Example** (Switching chaos off)
 *
 * ```ts
 * import { Chaos } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * const flaky = Effect.succeed(1).pipe(Chaos.fault({ rate: 1, error: "boom" }))
 * flaky.pipe(Chaos.withEnabled(false)) // succeeds with 1
 * Chaos.withEnabled(flaky, true)       // fails with "boom"
 * ```
 *
 * @since 0.1.0
 * @category switch
 */
export const withEnabled: {
  (enabled: boolean): <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  <A, E, R>(self: Effect.Effect<A, E, R>, enabled: boolean): Effect.Effect<A, E, R>
} = function() {
  if (arguments.length >= 2) return Effect.provideService(arguments[0], Enabled, arguments[1])
  const enabled = arguments[0]
  return (self: Effect.Effect<unknown, unknown, unknown>) => Effect.provideService(self, Enabled, enabled)
} as any

/**
 * A Layer that sets the switch for everything it is provided to, e.g. from
 * an operator's configuration.
 *
 * **Example** (Chaos on only in staging)
 *
 * ```ts
 * import { Chaos } from "@bulwark/core"
 *
 * const ChaosSwitch = Chaos.layerEnabled(process.env.STAGE === "staging")
 * ```
 *
 * @since 0.1.0
 * @category switch
 */
export const layerEnabled = (enabled: boolean): Layer.Layer<never> => Layer.succeed(Enabled, enabled)

/**
 * A probability in [0, 1].
 *
 * @since 0.1.0
 * @category options
 */
export const Rate = Schema.Number.check(
  Schema.makeFilter((n: number) =>
    Number.isFinite(n) && n >= 0 && n <= 1 ? undefined : `Expected a probability between 0 and 1, got ${String(n)}`
  )
)

/**
 * Options of `fault`.
 *
 * @since 0.1.0
 * @category options
 */
export interface FaultOptions<E> {
  /** Shown in `InvalidOptions` and on the `bulwark.chaos.injected` trace event; optional. */
  readonly name?: string | undefined
  /** The probability of failing a call, in [0, 1]. */
  readonly rate: number
  /**
   * The error to fail with, or a function building it on each injection. A
   * function is always called: to fail with a function value, wrap it.
   */
  readonly error: E | (() => E)
}

/**
 * @since 0.1.0
 * @category options
 */
export const FaultOptions = Schema.Struct({
  name: Schema.optional(Name),
  rate: Rate,
  error: Schema.Unknown
})

/**
 * Options of `latency`.
 *
 * @since 0.1.0
 * @category options
 */
export interface LatencyOptions {
  /** Shown in `InvalidOptions` and on the `bulwark.chaos.injected` trace event; optional. */
  readonly name?: string | undefined
  /** The probability of delaying a call, in [0, 1]. */
  readonly rate: number
  /** How long to sleep before the call: a finite duration >= 0 (`"2 seconds"`, milliseconds, a `Duration`). */
  readonly delay: Duration.Input
}

/**
 * @since 0.1.0
 * @category options
 */
export const LatencyOptions = Schema.Struct({
  name: Schema.optional(Name),
  rate: Rate,
  delay: DurationInput
})

/**
 * Options of `outcome`. `"defect"` replaces the call with `Effect.die`
 * (of `defect`, or of an `Error` naming the guard); `"interrupt"` replaces it
 * with `Effect.interrupt`, as if the caller had been cancelled.
 *
 * @since 0.1.0
 * @category options
 */
export interface OutcomeOptions {
  /** Shown in `InvalidOptions`, in the default defect's message and on the `bulwark.chaos.injected` trace event; optional. */
  readonly name?: string | undefined
  /** The probability of replacing a call, in [0, 1]. */
  readonly rate: number
  readonly outcome: "defect" | "interrupt"
  /** The defect for `"defect"`, or a function building it; an `Error` naming the guard by default. */
  readonly defect?: unknown
}

/**
 * @since 0.1.0
 * @category options
 */
export const OutcomeOptions = Schema.Struct({
  name: Schema.optional(Name),
  rate: Rate,
  outcome: Schema.Literals(["defect", "interrupt"]),
  defect: Schema.optional(Schema.Unknown)
})

const parse = <S extends Schema.Decoder<unknown>>(api: string, schema: S, options: unknown): S["Type"] | Effect.Effect<never> =>
  decodeOrDie(api, schema)(options)

/** One draw per call while enabled; `true` when the call is hit. */
const hit = (enabled: boolean, random: Random.Random, rate: number): boolean =>
  enabled && random.nextDoubleUnsafe() < rate

type Guard<E2> = <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | E2, R>

/** What an injection did, for the `bulwark.chaos.injected` event: the kind, and the delay of a latency. */
type Injection = Readonly<Record<string, unknown>>

const makeGuard = <E2>(
  inject: <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | E2, R>,
  rate: number,
  name: string | undefined,
  injection: Injection
): Guard<E2> => {
  const attributes = { "bulwark.name": name ?? "<unnamed>", ...injection }
  return (self) =>
    Effect.withFiber((fiber) => {
      if (!hit(fiber.getRef(Enabled), fiber.getRef(Random.Random), rate)) return self
      // An injected fault looks like a real one in a trace unless it says otherwise.
      const span = tracing.spanOf(fiber)
      if (span !== undefined) tracing.event(fiber, span, "bulwark.chaos.injected", attributes)
      return inject(self)
    })
}

const dual = (compile: (options: any) => Guard<any>): any =>
  function() {
    // The options are checked once, when a data-last guard is built.
    if (arguments.length >= 2 && Effect.isEffect(arguments[0])) return compile(arguments[1])(arguments[0])
    return compile(arguments[0])
  }

const isEffect = (u: unknown): u is Effect.Effect<never> => Effect.isEffect(u)

/**
 * With probability `rate`, the call fails with `error` instead of running
 * (it is not started at all). `error` is a value, or a function called on
 * each injection.
 *
 * **Example** (Injecting a typed failure)
 *
 * ```ts
 * import { Chaos } from "@bulwark/core"
 * import { Data, Effect, Random } from "effect"
 *
 * class Unavailable extends Data.TaggedError("Unavailable") {}
 * declare const query: Effect.Effect<string>
 *
 * query.pipe(Chaos.fault({ rate: 0.2, error: () => new Unavailable() }))   // E | Unavailable
 * Chaos.fault(query, { rate: 1, error: "down" })                           // data-first
 * query.pipe(Chaos.fault({ rate: 0.2, error: "down" }), Random.withSeed(7)) // deterministic
 * ```
 *
 * @since 0.1.0
 * @category guards
 */
export const fault: {
  <E2>(options: FaultOptions<E2>): <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | E2, R>
  <A, E, R, E2>(self: Effect.Effect<A, E, R>, options: FaultOptions<E2>): Effect.Effect<A, E | E2, R>
} = dual((options: FaultOptions<unknown>): Guard<unknown> => {
  const parsed = parse("Chaos.fault", FaultOptions, options)
  if (isEffect(parsed)) return () => parsed
  const error = parsed.error
  const fail = typeof error === "function"
    ? Effect.suspend(() => Effect.fail((error as () => unknown)()))
    : Effect.fail(error)
  return makeGuard(() => fail, parsed.rate, parsed.name, { "bulwark.chaos.kind": "fault" })
})

/**
 * With probability `rate`, the call starts only after sleeping `delay` on
 * Effect's `Clock` (so `TestClock.adjust` drives it in tests). The call then
 * runs as usual; a timeout around the guard sees the extra time.
 *
 * **Example** (Injecting a latency spike)
 *
 * ```ts
 * import { Chaos, Timeout } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * declare const query: Effect.Effect<string>
 *
 * query.pipe(
 *   Chaos.latency({ rate: 0.05, delay: "3 seconds" }),
 *   Timeout.guard("1 second") // one call in twenty now times out
 * )
 * ```
 *
 * @since 0.1.0
 * @category guards
 */
export const latency: {
  (options: LatencyOptions): <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  <A, E, R>(self: Effect.Effect<A, E, R>, options: LatencyOptions): Effect.Effect<A, E, R>
} = dual((options: LatencyOptions): Guard<never> => {
  const parsed = parse("Chaos.latency", LatencyOptions, options)
  if (isEffect(parsed)) return () => parsed
  const sleep = Effect.sleep(parsed.delay)
  return makeGuard((self) => Effect.andThen(sleep, self), parsed.rate, parsed.name, {
    "bulwark.chaos.kind": "latency",
    "bulwark.chaos.delay_ms": Duration.toMillis(parsed.delay)
  })
})

/**
 * With probability `rate`, the call is replaced by an outcome outside the
 * error channel: a defect (`outcome: "defect"`, `Effect.die`) or an
 * interruption (`outcome: "interrupt"`, `Effect.interrupt`). Use it to check
 * that finalizers, supervisors and `Cause` handling cope with the unexpected.
 *
 * **Example** (Injecting defects and interruptions)
 *
 * ```ts
 * import { Chaos } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * declare const query: Effect.Effect<string>
 *
 * query.pipe(Chaos.outcome({ rate: 0.01, outcome: "defect" }))  // dies with Error('Chaos "<unnamed>": injected defect')
 * query.pipe(Chaos.outcome({ rate: 0.01, outcome: "defect", defect: () => new RangeError("bad row") }))
 * query.pipe(Chaos.outcome({ rate: 0.01, outcome: "interrupt" }))
 * ```
 *
 * @since 0.1.0
 * @category guards
 */
export const outcome: {
  (options: OutcomeOptions): <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  <A, E, R>(self: Effect.Effect<A, E, R>, options: OutcomeOptions): Effect.Effect<A, E, R>
} = dual((options: OutcomeOptions): Guard<never> => {
  const parsed = parse("Chaos.outcome", OutcomeOptions, options)
  if (isEffect(parsed)) return () => parsed
  let replacement: Effect.Effect<never>
  if (parsed.outcome === "interrupt") {
    replacement = Effect.interrupt
  } else if ("defect" in parsed && parsed.defect !== undefined) {
    const defect = parsed.defect
    replacement = typeof defect === "function"
      ? Effect.suspend(() => Effect.die((defect as () => unknown)()))
      : Effect.die(defect)
  } else {
    const name = parsed.name ?? "<unnamed>"
    replacement = Effect.suspend(() => Effect.die(new globalThis.Error(`Chaos "${name}": injected defect`)))
  }
  return makeGuard(() => replacement, parsed.rate, parsed.name, { "bulwark.chaos.kind": parsed.outcome })
})
