/**
 * One table of named timeouts for an application, provided as a Layer, so
 * that durations live in configuration rather than at every call site:
 * `Timeout.named("report")` reads its limit from here.
 *
 * **When to use**
 *
 * When several calls share a limit, or limits must differ by environment
 * (tests, staging, production), or operators need timeouts counted per name.
 *
 * **Details**
 *
 * - A name listed in `overrides` gets its own duration; any other name gets
 *   `default`.
 * - The options are decoded with a Schema: a malformed or negative duration
 *   fails the layer with `InvalidOptions` naming every bad field.
 * - While the table is provided, every `Timeout` guard in its context is
 *   counted per name (calls and expirations), including guards with a fixed
 *   duration, which do not require the table. Counters feed {@link stats}, the
 *   pull-based metrics `bulwark.timeout.calls` and `bulwark.timeout.expired`
 *   (attribute `name`) and the {@link events} stream.
 * - At most `maxNames` names are tracked (default 1000, configured names
 *   always are); later names are counted under `"<other>"` so that metric
 *   cardinality stays bounded even if names come from data.
 *
 * **Gotchas**
 *
 * - The service key is this module's {@link Timeouts} class, not one you
 *   define: there is one table per context, and `Timeout.named` must find it.
 *   Provide a second table locally to override durations for part of a
 *   program.
 *
 * **Example** (Durations from a Layer)
 *
 * ```ts
 * import { Timeout, Timeouts } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * const TimeoutsLive = Timeouts.layer({ default: "10 seconds", overrides: { report: "2 minutes" } })
 *
 * const report = Effect.succeed("report").pipe(Timeout.named("report"))    // 2 minutes
 * const profile = Effect.succeed("profile").pipe(Timeout.named("profile")) // 10 seconds (default)
 * const main = Effect.all([report, profile]).pipe(Effect.provide(TimeoutsLive))
 * ```
 *
 * @since 0.1.0
 */
import { Clock, Context, Duration, Effect, Layer, Schema, type Scope } from "effect"
import * as Stream from "effect/Stream"
import * as internal from "./internal/timeout.ts"
import { decodeOptions, DurationInput, Name, PositiveInt } from "./internal/options.ts"
import type { InvalidOptions } from "./InvalidOptions.ts"

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: "~@bulwark/core/Timeouts" = "~@bulwark/core/Timeouts"

/**
 * A table of named timeouts. Create one with {@link make} (scoped) or provide
 * it with {@link layer}.
 *
 * @since 0.1.0
 * @category models
 */
export interface TimeoutTable {
  readonly [TypeId]: typeof TypeId
  /** The duration of names without an override. */
  readonly default: Duration.Duration
  /** The configured overrides. */
  readonly overrides: ReadonlyMap<string, Duration.Duration>
  /** The duration a guard named `name` gets. */
  readonly resolve: (name: string) => Duration.Duration
  /** @internal */
  readonly state: internal.TimeoutsState
}

/**
 * The service key `Timeout.named` and `Timeout.guard({ name })` read.
 *
 * @since 0.1.0
 * @category services
 */
export class Timeouts extends Context.Service<Timeouts, TimeoutTable>()("@bulwark/core/Timeouts") {}

/**
 * The options of a timeout table, as a Schema.
 *
 * @since 0.1.0
 * @category options
 */
export const Options = Schema.Struct({
  default: DurationInput,
  overrides: Schema.optional(Schema.Record(Name, DurationInput)),
  maxNames: Schema.optional(PositiveInt)
})

/**
 * @since 0.1.0
 * @category options
 */
export interface Options {
  /** The duration of every name without an override. A finite duration >= 0. */
  readonly default: Duration.Input
  /** Durations by name. */
  readonly overrides?: Readonly<Record<string, Duration.Input>> | undefined
  /** Names tracked separately in stats and metrics; an integer >= 1, default 1000. */
  readonly maxNames?: number | undefined
}

const decode = decodeOptions("Timeouts", Options)

/**
 * Creates a timeout table that lives as long as the current scope. Its
 * metrics are registered in the creating fiber's `MetricRegistry` and removed
 * when the scope closes; the events stream ends then too.
 *
 * **Example** (A table for one part of a program)
 *
 * ```ts
 * import { Timeout, Timeouts } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const table = yield* Timeouts.make({ default: "1 second" })
 *   return yield* Effect.succeed(1).pipe(Timeout.named("fast"), Effect.provideService(Timeouts.Timeouts, table))
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<TimeoutTable, InvalidOptions, Scope.Scope> =>
  Effect.flatMap(decode(options), (decoded) =>
    Effect.withFiber((fiber) => {
      const overrides = new Map(Object.entries(decoded.overrides ?? {}))
      const state = new internal.TimeoutsState(decoded.default, overrides, decoded.maxNames ?? 1000, fiber.context)
      const table: TimeoutTable = {
        [TypeId]: TypeId,
        default: decoded.default,
        overrides,
        resolve: (name) => state.resolve(name),
        state
      }
      return Effect.as(Effect.addFinalizer(() => Effect.sync(() => state.close())), table)
    }))

/**
 * Provides the {@link Timeouts} service.
 *
 * **Example** (Configuring timeouts)
 *
 * ```ts
 * import { Timeouts } from "@bulwark/core"
 *
 * const TimeoutsLive = Timeouts.layer({ default: "10 seconds", overrides: { report: "2 minutes" } })
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<Timeouts, InvalidOptions> => Layer.effect(Timeouts, make(options))

/**
 * The duration a guard named `name` gets from the provided table.
 *
 * @since 0.1.0
 * @category accessors
 */
export const resolve = (name: string): Effect.Effect<Duration.Duration, never, Timeouts> =>
  Effect.map(Timeouts, (table) => table.resolve(name))

/**
 * What the table counted for one name.
 *
 * @since 0.1.0
 * @category models
 */
export interface NameStats {
  readonly name: string
  /** The duration configured for the name (a guard with a fixed `after` may use another). */
  readonly after: Duration.Duration
  /** Calls that ran under a timeout of this name. */
  readonly calls: number
  /** Calls interrupted because their timeout expired. */
  readonly expired: number
}

/**
 * A point-in-time view of a table's counters (cumulative since creation).
 *
 * @since 0.1.0
 * @category models
 */
export interface Snapshot {
  /** Clock time of the snapshot, epoch milliseconds. */
  readonly at: number
  readonly default: Duration.Duration
  readonly calls: number
  readonly expired: number
  /** One entry per name seen (and per configured name), in first-seen order. */
  readonly names: ReadonlyArray<NameStats>
}

/**
 * Takes a {@link Snapshot} of the provided table's counters.
 *
 * **Example** (Reading stats)
 *
 * ```ts
 * import { Timeouts } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * const log = Effect.gen(function*() {
 *   const s = yield* Timeouts.stats
 *   for (const n of s.names) yield* Effect.log(`${n.name}: ${n.expired}/${n.calls} expired`)
 * })
 * ```
 *
 * @since 0.1.0
 * @category observability
 */
export const stats: Effect.Effect<Snapshot, never, Timeouts> = Effect.flatMap(
  Timeouts,
  (table) =>
    Effect.withFiber((fiber) => {
      const state = table.state
      const names: Array<NameStats> = []
      let calls = 0
      let expired = 0
      for (const counters of state.counters.values()) {
        calls += counters.calls
        expired += counters.expired
        names.push({ name: counters.name, after: state.resolve(counters.name), calls: counters.calls, expired: counters.expired })
      }
      return Effect.succeed({
        at: fiber.getRef(Clock.Clock).currentTimeMillisUnsafe(),
        default: state.defaultAfter,
        calls,
        expired,
        names
      })
    })
)

/**
 * What a table reports on its {@link events} stream.
 *
 * @since 0.1.0
 * @category events
 */
export type Event = Event.Expired

/**
 * @since 0.1.0
 * @category events
 */
export declare namespace Event {
  /** A call ran out of time and was interrupted. */
  export interface Expired {
    readonly _tag: "Expired"
    readonly name: string
    readonly after: Duration.Duration
  }
}

/**
 * A stream of expirations, from the moment it is consumed. Costs nothing while
 * nobody listens; a slow consumer loses the oldest events beyond `bufferSize`
 * (default 4096). The stream ends when the table's scope closes.
 *
 * **Example** (Logging expirations)
 *
 * ```ts
 * import { Timeouts } from "@bulwark/core"
 * import { Effect, Stream } from "effect"
 *
 * const watch = Timeouts.events().pipe(
 *   Stream.runForEach((e) => Effect.logWarning(`${e.name} timed out`))
 * )
 * ```
 *
 * @since 0.1.0
 * @category observability
 */
export const events = (options?: { readonly bufferSize?: number | undefined }): Stream.Stream<Event, never, Timeouts> =>
  Stream.unwrap(Effect.map(Timeouts, (table) => table.state.hub.stream(options?.bufferSize ?? 4096)))
