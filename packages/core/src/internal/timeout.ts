import { Duration, Effect, Metric } from "effect"
import type * as Context from "effect/Context"
import * as Fiber from "effect/Fiber"
import { EventHub } from "./events.ts"
import { pullCounter } from "./metrics.ts"
import * as tracing from "./tracing.ts"
import type * as Timeout from "../Timeout.ts"
import { TimeoutExceeded } from "../Timeout.ts"
import type * as Timeouts from "../Timeouts.ts"

/** The name of a guard that was given none. */
export const unnamed = "<unnamed>"

/** Where names beyond `maxNames` are counted, so that metric cardinality stays bounded. */
export const otherNames = "<other>"

/**
 * Builds a `TimeoutExceeded` without running its Schema constructor (field
 * validation and a stack capture). The fields are valid by construction; the
 * result has the same prototype and own fields as a constructed instance, so
 * `Schema.is`, `catchTag` and `instanceof` agree.
 *
 * @internal
 */
export const fastError = (name: string, after: Duration.Duration): Timeout.TimeoutExceeded => {
  const error = Object.create(TimeoutExceeded.prototype)
  error._tag = "TimeoutExceeded"
  error.name = name
  error.after = after
  error.reason = "Elapsed"
  return error
}

/** The counters of one name. */
export class NameCounters {
  calls = 0
  expired = 0
  readonly name: string
  constructor(name: string) {
    this.name = name
  }
}

/**
 * The mutable heart of a `Timeouts` table: the configured durations, and
 * counters per name for every guard that runs while the table is provided.
 */
export class TimeoutsState {
  readonly defaultAfter: Duration.Duration
  readonly overrides: ReadonlyMap<string, Duration.Duration>
  readonly maxNames: number
  readonly counters = new Map<string, NameCounters>()
  readonly hub = new EventHub<Timeouts.Event>()
  private readonly registrations: Array<Metric.Registration> = []
  private readonly context: Context.Context<never>
  closed = false

  constructor(
    defaultAfter: Duration.Duration,
    overrides: ReadonlyMap<string, Duration.Duration>,
    maxNames: number,
    context: Context.Context<never>
  ) {
    this.defaultAfter = defaultAfter
    this.overrides = overrides
    this.maxNames = maxNames
    this.context = context
    // Configured names get their series at once, so dashboards show zeros
    // rather than gaps; other names are registered on first use.
    for (const name of overrides.keys()) this.countersOf(name)
  }

  resolve(name: string): Duration.Duration {
    return this.overrides.get(name) ?? this.defaultAfter
  }

  /** O(1); registers the name's metric series the first time it is seen. */
  countersOf(name: string): NameCounters {
    const existing = this.counters.get(name)
    if (existing !== undefined) return existing
    if (this.counters.size >= this.maxNames && !this.overrides.has(name)) {
      return this.counters.get(otherNames) ?? this.register(otherNames)
    }
    return this.register(name)
  }

  private register(name: string): NameCounters {
    const counters = new NameCounters(name)
    this.counters.set(name, counters)
    if (!this.closed) {
      const attributes = { name }
      const counter = (id: string, description: string, get: () => number) =>
        pullCounter(this.context, id, description, attributes, get)
      this.registrations.push(
        counter("bulwark.timeout.calls", "Calls run under a timeout", () => counters.calls),
        counter("bulwark.timeout.expired", "Calls interrupted because their timeout expired", () => counters.expired)
      )
    }
    return counters
  }

  expire(counters: NameCounters, after: Duration.Duration): void {
    counters.expired++
    if (this.hub.active) this.hub.emit({ _tag: "Expired", name: counters.name, after })
  }

  close(): void {
    this.closed = true
    for (const registration of this.registrations) registration.remove()
    this.registrations.length = 0
    this.hub.end()
  }
}


/**
 * The expiry, as an event on the current span (if traced) of the fiber that
 * notices it: the caller's, or the timer fiber it forked, which inherits the
 * caller's span.
 */
const traceExpiry = (name: string, after: Duration.Duration): void => {
  const fiber = Fiber.getCurrent()
  if (fiber === undefined) return
  const span = tracing.spanOf(fiber)
  if (span === undefined) return
  tracing.event(fiber, span, "bulwark.timeout.expired", {
    "bulwark.name": name,
    "bulwark.timeout.after_ms": Duration.toMillis(after)
  })
}

/**
 * Runs `self` with a time limit. `table` is the `Timeouts` table in the
 * caller's context, if any: the call is counted there whatever its guard.
 *
 * @internal
 */
export const runWithin = <A, E, R>(
  self: Effect.Effect<A, E, R>,
  name: string,
  after: Duration.Duration,
  table: TimeoutsState | undefined
): Effect.Effect<A, E | Timeout.TimeoutExceeded, R> => {
  const counters = table === undefined || table.closed ? undefined : table.countersOf(name)
  if (counters !== undefined) counters.calls++
  if (Duration.isZero(after)) {
    // The budget is spent before the call starts: failing at once is the only
    // deterministic answer (a race against a zero sleep depends on scheduling).
    if (counters !== undefined) table!.expire(counters, after)
    traceExpiry(name, after)
    return Effect.fail(fastError(name, after))
  }
  // What `Effect.timeoutOrElse` does (race, interrupt the loser, wait for its
  // finalizers), without the Option it allocates on every call.
  return Effect.raceFirst(
    self,
    Effect.flatMap(Effect.sleep(after), () => {
      if (counters !== undefined) table!.expire(counters, after)
      traceExpiry(name, after)
      return Effect.fail(fastError(name, after))
    })
  )
}

/**
 * Checks the per-call options of `Timeout.guard`. Bad per-call options are
 * programming errors: the guarded call dies with a message naming the option.
 *
 * @internal
 */
export const parseAfter = (api: string, after: unknown): Duration.Duration | Effect.Effect<never> => {
  const decoded = after === null || (typeof after === "number" && !Number.isFinite(after))
    ? undefined
    : Duration.fromInput(after as Duration.Input)
  if (decoded === undefined || decoded._tag === "None" || Duration.isNegative(decoded.value) || !Duration.isFinite(decoded.value)) {
    return dieWith(`${api}: option "after" must be a finite duration >= 0, got ${describe(after)}`)
  }
  return decoded.value
}

/** @internal */
export const parseName = (api: string, name: unknown): string | Effect.Effect<never> =>
  typeof name === "string" && name.trim().length > 0
    ? name
    : dieWith(`${api}: option "name" must be a non-empty string, got ${describe(name)}`)

const describe = (input: unknown): string => {
  if (typeof input === "string") return JSON.stringify(input)
  if (typeof input === "bigint") return `${input}n`
  try {
    return JSON.stringify(input) ?? String(input)
  } catch {
    return String(input)
  }
}

const dieWith = (message: string): Effect.Effect<never> => Effect.die(new globalThis.Error(message))
