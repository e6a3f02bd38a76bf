/**
 * Idempotency runs an effect **at most once per key** across every process
 * that shares the store: a retried request, a redelivered message or a
 * double-clicked button with the same idempotency key gets the first call's
 * result instead of charging the card twice.
 *
 * **When to use**
 *
 * Around any side effect that a client may repeat and must not happen twice:
 * payments, orders, emails, webhook handlers, message consumers with
 * at-least-once delivery. The key comes from the caller (an `Idempotency-Key`
 * header, a message id), never from the clock.
 *
 * **Details**
 *
 * - `once(key, effect, { ttl, result })` claims the key in the store. The
 *   caller that gets the claim runs the effect; its success is encoded with
 *   the `result` Schema and stored for `ttl`. A later call with that key
 *   gets the stored value back, decoded with the same Schema, without
 *   running anything (a **replay**).
 * - A call arriving while another one runs with its key is a **duplicate in
 *   flight**: by default it fails at once with `IdempotencyError` (reason
 *   `DuplicateInFlight`); with `onDuplicate: "wait"` it polls the store (10
 *   ms, doubling up to 1 s, on Effect's `Clock`) until the result is stored
 *   (then replays it) or the claim is freed (then runs the effect itself),
 *   for at most `maxWait` (default: the lease).
 * - Failures are not cached: a failed call releases its claim and the next
 *   call runs the effect again. With `cacheFailures: { error }`, a typed
 *   failure that the `error` Schema accepts is stored and replayed like a
 *   success. Defects and interruptions are never stored.
 * - The claim is a **lease** (`lease`, default 30 seconds), renewed every
 *   third of a lease while the effect runs. A process that crashes stops
 *   renewing, and its claim frees itself when the lease runs out.
 * - Interrupting a call releases its claim. If the store cannot be reached
 *   then, the claim frees itself when its lease runs out.
 * - The store is a service: provide {@link layerMemory} (one process) or a
 *   shared store such as `RedisIdempotencyStore.layer` from
 *   `@bulwark/redis`. An instance counts what it does ({@link stats},
 *   {@link events}, metrics `bulwark.idempotency.*`).
 * - The stored text is JSON: `{"_tag":"Success","value":...}` or
 *   `{"_tag":"Failure","error":...}`, each value in the JSON form
 *   `Schema.toCodecJson` derives from your Schema.
 *
 * **Gotchas**
 *
 * - "At most once" holds while the owner holds its lease. An owner that
 *   cannot renew for a whole lease (paused, cut off from the store) loses its
 *   claim, and a duplicate may then run the effect again; the late owner's
 *   result is then not stored (fencing) and `leasesLost` counts it. Choose a
 *   lease well above the longest pause you expect.
 * - A store failure before the claim fails the call with reason
 *   `StoreUnavailable`, `StoreTimeout` or `StoreRejected`, without running
 *   the effect. After the effect ran, its outcome stands even if it cannot
 *   be stored: the call returns it, and the failure is counted.
 * - A stored result that no longer decodes (the Schema changed) fails with
 *   reason `Undecodable` until it expires.
 * - Use the same options for every call of a key: the `result` Schema, the
 *   `ttl` and the failure policy are the caller's, not the store's.
 *
 * **Example** (Charging a card once per request)
 *
 * ```ts
 * import { Idempotency } from "@bulwark/core"
 * import { Effect, Schema } from "effect"
 *
 * class Receipt extends Schema.Class<Receipt>("Receipt")({ id: Schema.String, cents: Schema.Int }) {}
 * declare const charge: (cents: number) => Effect.Effect<Receipt>
 *
 * const handle = (idempotencyKey: string, cents: number) =>
 *   Idempotency.once(idempotencyKey, charge(cents), { ttl: "1 day", result: Receipt })
 *
 * const program = handle("req-7f3a", 4200).pipe(Effect.provide(Idempotency.layerMemory()))
 * ```
 *
 * @since 0.1.0
 */
import { Clock, Duration, Effect, Layer, Schema, type Scope } from "effect"
import * as Context from "effect/Context"
import { type Pipeable, pipeArguments } from "effect/Pipeable"
import * as Stream from "effect/Stream"
import * as IdempotencyStore from "./IdempotencyStore.ts"
import * as internal from "./internal/idempotency.ts"
import { decodeOptions, decodeOrDie, DurationInput, Name } from "./internal/options.ts"
import type { InvalidOptions } from "./InvalidOptions.ts"

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: "~@bulwark/core/Idempotency" = "~@bulwark/core/Idempotency"

// -----------------------------------------------------------------------------
// errors
// -----------------------------------------------------------------------------

/**
 * Why a call did not run and has no stored result to replay.
 *
 * - `DuplicateInFlight`: another call holds the key (`onDuplicate: "fail"`),
 *   or still held it after `maxWait` (`onDuplicate: "wait"`).
 * - `StoreUnavailable`, `StoreTimeout`, `StoreRejected`: the store could not
 *   decide the claim (see `IdempotencyStore.StoreErrorReason`); the effect
 *   did not run.
 * - `Undecodable`: the stored result does not decode with the `result` (or
 *   `cacheFailures.error`) Schema.
 *
 * @since 0.1.0
 * @category errors
 */
export const Reason = Schema.Literals(["DuplicateInFlight", "StoreUnavailable", "StoreTimeout", "StoreRejected", "Undecodable"])

/**
 * @since 0.1.0
 * @category errors
 */
export type Reason = typeof Reason.Type

/**
 * The one error of `Idempotency`. Data only: never the caller's arguments or
 * results, and the key only for instances made with `exposeKeys: true`.
 *
 * One class with a `reason`, as every Bulwark primitive has, rather than a
 * `DuplicateInFlight` class beside a store error: a handler that answers a
 * duplicate with `409 Conflict` must not answer a store outage the same way,
 * and one `catchTag` with a switch on `reason` makes that choice visible.
 *
 * **Example** (Answering a duplicate)
 *
 * ```ts
 * import { Idempotency } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * declare const handled: Effect.Effect<string, Idempotency.IdempotencyError>
 * const status = handled.pipe(
 *   Effect.as(200),
 *   Effect.catchTag("IdempotencyError", (e) => Effect.succeed(e.reason === "DuplicateInFlight" ? 409 : 503))
 * )
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class IdempotencyError extends Schema.TaggedError<IdempotencyError>()("IdempotencyError", {
  /** The instance's name. */
  name: Schema.String,
  /** The key, only for instances made with `exposeKeys: true`. */
  key: Schema.optionalKey(Schema.String),
  reason: Reason,
  /** How long the call waited for a duplicate in flight (zero unless `onDuplicate: "wait"`). */
  waited: Schema.Duration,
  /** `DuplicateInFlight`: the lease time the other call had left when the store last answered. */
  leaseLeft: Schema.optionalKey(Schema.Duration),
  /** Store reasons: what the store or its client said. */
  storeMessage: Schema.optionalKey(Schema.String)
}) {
  override get message(): string {
    const key = this.key === undefined ? "" : ` [${this.key}]`
    const detail = this.storeMessage === undefined ? "" : `: ${this.storeMessage}`
    const waited = Duration.isZero(this.waited) ? "" : ` after waiting ${Duration.format(this.waited)}`
    return `Idempotency "${this.name}"${key} did not run the call: ${this.reason}${waited}${detail}`
  }
}

// -----------------------------------------------------------------------------
// instances
// -----------------------------------------------------------------------------

/**
 * An idempotency instance: a store, a name that namespaces its keys in the
 * store, and the counters behind {@link stats}, {@link events} and the
 * metrics. Create one with {@link make}, or provide one as the {@link Store}
 * service with {@link layerMemory}.
 *
 * @since 0.1.0
 * @category models
 */
export interface Idempotency extends Pipeable {
  readonly [TypeId]: typeof TypeId
  /** Appears in errors, stats and metric labels; keys are stored as `name:key`. */
  readonly name: string
  readonly store: IdempotencyStore.IdempotencyStore
  /** @internal */
  readonly state: internal.State
}

/**
 * An instance, or a service key that resolves to one.
 *
 * @since 0.1.0
 * @category models
 */
export type IdempotencyOrKey<I = never> = Idempotency | Context.Key<I, Idempotency>

/**
 * The service `once` and `guard` use when the call names no instance
 * (`using`). Provide it with {@link layerMemory}, with `layer(Store, ...)`
 * for a store of your own, or with `RedisIdempotencyStore.layer` from
 * `@bulwark/redis`.
 *
 * **Example** (Providing the store)
 *
 * ```ts
 * import { Idempotency, IdempotencyStore } from "@bulwark/core"
 *
 * const InMemory = Idempotency.layerMemory()
 * const Custom = Idempotency.layer(Idempotency.Store, { name: "orders", store: IdempotencyStore.memory() })
 * ```
 *
 * @since 0.1.0
 * @category services
 */
export class Store extends Context.Service<Store, Idempotency>()("@bulwark/core/Idempotency/Store") {}

/**
 * The options of {@link make}, as a Schema.
 *
 * @since 0.1.0
 * @category options
 */
export const Options = Schema.Struct({
  name: Name,
  store: Schema.optional(Schema.declare(IdempotencyStore.isIdempotencyStore, {
    expected: "an IdempotencyStore (IdempotencyStore.memory, IdempotencyStore.make, or a store from @bulwark/redis)"
  })),
  exposeKeys: Schema.optional(Schema.Boolean)
})

/**
 * @since 0.1.0
 * @category options
 */
export interface Options {
  /** Required; appears in errors, stats and metric labels, and namespaces the keys in the store. */
  readonly name: string
  /** Where claims and results live; default a fresh `IdempotencyStore.memory()`. */
  readonly store?: IdempotencyStore.IdempotencyStore | undefined
  /** Put keys in errors, events and span events; default false (keys often carry customer data). */
  readonly exposeKeys?: boolean | undefined
}

const decode = decodeOptions("Idempotency", Options)

const IdempotencyProto = {
  [TypeId]: TypeId,
  pipe() {
    return pipeArguments(this, arguments)
  },
  toJSON(this: Idempotency) {
    return { _id: "Idempotency", name: this.name }
  }
}

/**
 * Is this value an idempotency instance?
 *
 * @since 0.1.0
 * @category guards
 */
export const isIdempotency = (u: unknown): u is Idempotency => typeof u === "object" && u !== null && TypeId in u

/**
 * Creates an instance that lives as long as the current scope. Its metrics
 * (`bulwark.idempotency.*`, labelled by `name` and, for rejections and store
 * errors, `reason`) are registered in the creating fiber's `MetricRegistry`
 * and removed when the scope closes; so are event streams ended. The store
 * outlives the instance: stored results stay.
 *
 * **Example** (An instance of its own)
 *
 * ```ts
 * import { Idempotency } from "@bulwark/core"
 * import { Effect, Schema } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const emails = yield* Idempotency.make({ name: "emails" })
 *   return yield* Idempotency.once("welcome:42", Effect.succeed("sent"), { ttl: "7 days", result: Schema.String, using: emails })
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<Idempotency, InvalidOptions, Scope.Scope> =>
  Effect.flatMap(decode(options), (decoded) =>
    Effect.withFiber((fiber) => {
      const state = new internal.State(decoded.name, decoded.store ?? IdempotencyStore.memory(), decoded.exposeKeys ?? false)
      const registrations = internal.registerMetrics(fiber.context, state)
      const self = Object.create(IdempotencyProto)
      self.name = state.name
      self.store = state.store
      self.state = state
      return Effect.as(
        Effect.addFinalizer(() =>
          Effect.sync(() => {
            for (const registration of registrations) registration.remove()
            state.hub.end()
          })
        ),
        self as Idempotency
      )
    }))

/**
 * Builds an instance as a service under a key of your own (or under
 * {@link Store}).
 *
 * **Example** (Two instances as services)
 *
 * ```ts
 * import { Idempotency, IdempotencyStore } from "@bulwark/core"
 * import { Context, Effect, Layer, Schema } from "effect"
 *
 * class Payments extends Context.Service<Payments, Idempotency.Idempotency>()("app/Payments") {}
 * const store = IdempotencyStore.memory()
 * const Live = Layer.mergeAll(
 *   Idempotency.layer(Payments, { name: "payments", store }),
 *   Idempotency.layer(Idempotency.Store, { name: "default", store })
 * )
 * const charge = Effect.succeed(1).pipe(Idempotency.guard("k", { ttl: "1 hour", result: Schema.Number, using: Payments }))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <I>(key: Context.Key<I, Idempotency>, options: Options): Layer.Layer<I, InvalidOptions> =>
  Layer.effect(key, make(options))

/**
 * The {@link Store} service on a fresh in-memory store: at most once per
 * key within this process.
 *
 * **Example** (Providing the in-memory store)
 *
 * ```ts
 * import { Idempotency } from "@bulwark/core"
 * import { Effect, Schema } from "effect"
 *
 * const program = Idempotency.once("k", Effect.succeed(1), { ttl: "1 hour", result: Schema.Number }).pipe(
 *   Effect.provide(Idempotency.layerMemory({ name: "jobs" }))
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerMemory = (options?: {
  /** Default `"idempotency"`. */
  readonly name?: string | undefined
  readonly exposeKeys?: boolean | undefined
}): Layer.Layer<Store, InvalidOptions> =>
  layer(Store, {
    name: options?.name ?? "idempotency",
    store: IdempotencyStore.memory(),
    exposeKeys: options?.exposeKeys
  })

// -----------------------------------------------------------------------------
// once and guard
// -----------------------------------------------------------------------------

const SchemaValue = Schema.Unknown.check(
  Schema.makeFilter((u) => Schema.isSchema(u) ? undefined : "Expected a Schema")
)

/** A whole number of milliseconds, at least one: what a store's expiry (Redis `PX`) takes. */
const WholeMillis = DurationInput.check(
  Schema.makeFilter((d: Duration.Duration) => {
    const ms = Duration.toMillis(d)
    return Number.isInteger(ms) && ms >= 1 ? undefined : `Expected a whole number of milliseconds >= 1, got ${Duration.format(d)}`
  })
)

const maxWaitOnlyWhenWaiting = Schema.makeFilter((options: {
  readonly onDuplicate?: "fail" | "wait" | undefined
  readonly maxWait?: Duration.Duration | undefined
}) =>
  options.maxWait !== undefined && options.onDuplicate !== "wait"
    ? { path: ["maxWait"], issue: `Expected no maxWait unless onDuplicate is "wait"` }
    : undefined
)

/**
 * The per-call options of {@link once} and {@link guard}, as a Schema. They
 * are decoded once when the guard is built; bad options make every call of
 * that guard die with `InvalidOptions` naming each bad field (a programming
 * error, not a condition to handle).
 *
 * @since 0.1.0
 * @category options
 */
export const CallOptions = Schema.Struct({
  ttl: WholeMillis,
  result: SchemaValue,
  lease: Schema.optional(WholeMillis),
  onDuplicate: Schema.optional(Schema.Literals(["fail", "wait"])),
  maxWait: Schema.optional(DurationInput),
  cacheFailures: Schema.optional(Schema.Struct({ error: SchemaValue })),
  using: Schema.optional(Schema.Unknown.check(
    Schema.makeFilter((u) =>
      isIdempotency(u) || Context.isKey(u) ? undefined : "Expected an Idempotency instance or its service key"
    )
  ))
}).check(maxWaitOnlyWhenWaiting)

/**
 * @since 0.1.0
 * @category options
 */
export interface CallOptions<A, X = never, U extends IdempotencyOrKey<any> | undefined = undefined> {
  /** How long a stored result is kept (and replayed); a whole number of milliseconds >= 1. */
  readonly ttl: Duration.Input
  /** Encodes the success for the store and decodes it on replay; its JSON form is what is stored. */
  readonly result: Schema.Codec<A, unknown, never, never>
  /** The claim's lease, renewed every third of it while the effect runs; default 30 seconds. */
  readonly lease?: Duration.Input | undefined
  /** `"fail"` (default): a duplicate in flight fails at once. `"wait"`: it waits for the result. */
  readonly onDuplicate?: "fail" | "wait" | undefined
  /** With `"wait"`: the longest a duplicate waits; default the lease. Refused with `"fail"`. */
  readonly maxWait?: Duration.Input | undefined
  /** Store and replay typed failures that this Schema accepts; default: failures are not stored. */
  readonly cacheFailures?: { readonly error: Schema.Codec<X, unknown, never, never> } | undefined
  /** The instance (or its service key) to use; default the {@link Store} service. */
  readonly using?: U
}

/**
 * The service a call needs: {@link Store} by default, the key given as
 * `using`, or nothing for an instance.
 *
 * @since 0.1.0
 * @category models
 */
export type Requires<U> = [U] extends [undefined] ? Store : U extends Context.Key<infer I, any> ? I : never

const defaultLeaseMs = 30_000

const decodeCallOptions = decodeOrDie("Idempotency", CallOptions)

const compile = (options: CallOptions<any, any, any>): {
  readonly settings: internal.Settings
  readonly using: IdempotencyOrKey<any>
} | Effect.Effect<never> => {
  const decoded = decodeCallOptions(options)
  if (Effect.isEffect(decoded)) return decoded
  const leaseMs = decoded.lease === undefined ? defaultLeaseMs : Duration.toMillis(decoded.lease)
  const wait = decoded.onDuplicate === "wait"
  const errorSchema = decoded.cacheFailures?.error as Schema.Top | undefined
  return {
    settings: {
      ttlMs: Duration.toMillis(decoded.ttl),
      leaseMs,
      wait,
      maxWaitMs: !wait ? 0 : decoded.maxWait === undefined ? leaseMs : Duration.toMillis(decoded.maxWait),
      caches: errorSchema === undefined ? undefined : Schema.is(errorSchema),
      ...internal.entryCodec(decoded.result as Schema.Top, errorSchema)
    },
    using: (decoded.using as IdempotencyOrKey<any> | undefined) ?? Store
  }
}

const badKey = (api: string, key: unknown): Effect.Effect<never> | undefined =>
  typeof key === "string" && key.length > 0
    ? undefined
    : Effect.die(new Error(`${api}: the key must be a non-empty string, got ${JSON.stringify(key) ?? String(key)}`))

const guardOf = (api: string, key: string, options: CallOptions<any, any, any>) => {
  const invalid = badKey(api, key)
  if (invalid !== undefined) return () => invalid
  const compiled = compile(options)
  if (Effect.isEffect(compiled)) return () => compiled
  const { settings, using } = compiled
  return <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, any, any> =>
    isIdempotency(using)
      ? internal.run(using.state, key, self, settings)
      : Effect.flatMap(using, (instance: Idempotency) => internal.run(instance.state, key, self, settings))
}

/**
 * Runs `effect` at most once for `key` while its result is stored: the first
 * call runs it and stores its success for `ttl`; later calls replay it; a
 * call arriving while another runs is refused (`DuplicateInFlight`) or waits
 * (`onDuplicate: "wait"`).
 *
 * **Example** (A payment made once)
 *
 * ```ts
 * import { Idempotency } from "@bulwark/core"
 * import { Effect, Schema } from "effect"
 *
 * let charges = 0
 * const charge = Effect.sync(() => `receipt-${++charges}`)
 *
 * const program = Effect.gen(function*() {
 *   const first = yield* Idempotency.once("order-1", charge, { ttl: "1 day", result: Schema.String })
 *   const again = yield* Idempotency.once("order-1", charge, { ttl: "1 day", result: Schema.String })
 *   return [first, again, charges] // ["receipt-1", "receipt-1", 1]
 * }).pipe(Effect.provide(Idempotency.layerMemory()))
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const once = <A, E, R, X = never, U extends IdempotencyOrKey<any> | undefined = undefined>(
  key: string,
  effect: Effect.Effect<A, E, R>,
  options: CallOptions<A, X, U>
): Effect.Effect<A, E | X | IdempotencyError, R | Requires<U>> => guardOf("Idempotency.once", key, options)(effect)

/**
 * {@link once} as a pipeable guard, built once and applied to any number of
 * effects (the options are decoded when the guard is built). Data-first:
 * `guard(effect, key, options)`.
 *
 * **Example** (A guard in a pipe)
 *
 * ```ts
 * import { Idempotency } from "@bulwark/core"
 * import { Effect, Schema } from "effect"
 *
 * declare const sendWelcomeEmail: (userId: string) => Effect.Effect<void>
 * const welcome = (userId: string) =>
 *   sendWelcomeEmail(userId).pipe(
 *     Idempotency.guard(`welcome:${userId}`, { ttl: "30 days", result: Schema.Void, onDuplicate: "wait" })
 *   ) // Effect<void, IdempotencyError, Idempotency.Store>
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const guard: {
  <A, X = never, U extends IdempotencyOrKey<any> | undefined = undefined>(
    key: string,
    options: CallOptions<A, X, U>
  ): <E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | X | IdempotencyError, R | Requires<U>>
  <A, E, R, X = never, U extends IdempotencyOrKey<any> | undefined = undefined>(
    self: Effect.Effect<A, E, R>,
    key: string,
    options: CallOptions<A, X, U>
  ): Effect.Effect<A, E | X | IdempotencyError, R | Requires<U>>
} = function(this: unknown) {
  if (Effect.isEffect(arguments[0])) return guardOf("Idempotency.guard", arguments[1], arguments[2])(arguments[0])
  return guardOf("Idempotency.guard", arguments[0], arguments[1])
} as any

// -----------------------------------------------------------------------------
// observability
// -----------------------------------------------------------------------------

const withInstance = <I, A, E, R>(
  instance: IdempotencyOrKey<I>,
  f: (instance: Idempotency) => Effect.Effect<A, E, R>
): Effect.Effect<A, E, R | I> => isIdempotency(instance) ? f(instance) : Effect.flatMap(instance, f)

/**
 * Cumulative counters of an instance (this process only: other processes
 * sharing the store count their own).
 *
 * @since 0.1.0
 * @category models
 */
export interface Snapshot {
  /** Identifies the instance (two instances may share a name). */
  readonly instanceId: number
  readonly name: string
  /** Strictly increasing across the snapshots of one instance. */
  readonly sequence: number
  /** Clock time of the snapshot, epoch milliseconds. */
  readonly at: number
  /** Calls that claimed their key and ran the effect. */
  readonly claims: number
  /** Calls answered with a stored result (success or cached failure). */
  readonly replays: number
  /** Replays of a stored failure. */
  readonly replayedFailures: number
  /** Outcomes stored. */
  readonly stored: number
  /** Claims released without a result (a failure not cached, an interruption, a defect). */
  readonly abandoned: number
  /** Claims that ran out (or were taken over) before their call ended. */
  readonly leasesLost: number
  /** Calls that waited for a duplicate in flight (`onDuplicate: "wait"`), whatever came of it. */
  readonly waited: number
  /** Calls refused, by reason. */
  readonly rejected: Readonly<Record<Reason, number>>
  /** Duplicates refused (`rejected.DuplicateInFlight`). */
  readonly duplicates: number
  /** Store operations that failed (claims, completions, releases, renewals), by reason. */
  readonly storeErrors: Readonly<Record<IdempotencyStore.StoreErrorReason, number>>
  /** Calls running under a claim now. */
  readonly inFlight: number
}

/**
 * Takes a {@link Snapshot} of an instance.
 *
 * **Example** (Reading stats)
 *
 * ```ts
 * import { Idempotency } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * const log = Effect.gen(function*() {
 *   const s = yield* Idempotency.stats(Idempotency.Store)
 *   yield* Effect.log(`${s.claims} ran, ${s.replays} replayed, ${s.duplicates} duplicates refused`)
 * })
 * ```
 *
 * @since 0.1.0
 * @category observability
 */
export const stats = <I = never>(instance: IdempotencyOrKey<I>): Effect.Effect<Snapshot, never, I> =>
  withInstance(instance, ({ state }) =>
    Effect.withFiber((fiber) =>
      Effect.succeed({
        instanceId: state.id,
        name: state.name,
        sequence: ++state.snapshots,
        at: fiber.getRef(Clock.Clock).currentTimeMillisUnsafe(),
        claims: state.claims,
        replays: state.replays,
        replayedFailures: state.replayedFailures,
        stored: state.stored,
        abandoned: state.abandoned,
        leasesLost: state.leasesLost,
        waited: state.waited,
        rejected: { ...state.rejected },
        duplicates: state.rejected.DuplicateInFlight,
        storeErrors: { ...state.storeErrors },
        inFlight: state.inFlight
      })
    ))

/**
 * What an instance reports on its {@link events} stream. `key` is present
 * only for instances made with `exposeKeys: true`.
 *
 * @since 0.1.0
 * @category events
 */
export type Event =
  | Event.Claimed
  | Event.Replayed
  | Event.Stored
  | Event.Abandoned
  | Event.Rejected
  | Event.LeaseLost
  | Event.StoreFailed

/**
 * @since 0.1.0
 * @category events
 */
export declare namespace Event {
  /** The call claimed its key and runs the effect. */
  export interface Claimed {
    readonly _tag: "Claimed"
    readonly name: string
    readonly key?: string
  }
  /** The call was answered with a stored outcome. */
  export interface Replayed {
    readonly _tag: "Replayed"
    readonly name: string
    readonly key?: string
    readonly outcome: "Success" | "Failure"
  }
  /** The call's outcome was stored. */
  export interface Stored {
    readonly _tag: "Stored"
    readonly name: string
    readonly key?: string
    readonly outcome: "Success" | "Failure"
  }
  /** The call's claim was released without a result. */
  export interface Abandoned {
    readonly _tag: "Abandoned"
    readonly name: string
    readonly key?: string
  }
  /** The call was refused. */
  export interface Rejected {
    readonly _tag: "Rejected"
    readonly name: string
    readonly key?: string
    readonly reason: Reason
    readonly waited: Duration.Duration
  }
  /** The call's claim ran out (or was taken over) before it ended: its outcome was not stored. */
  export interface LeaseLost {
    readonly _tag: "LeaseLost"
    readonly name: string
    readonly key?: string
  }
  /** A store operation failed. */
  export interface StoreFailed {
    readonly _tag: "StoreFailed"
    readonly name: string
    readonly key?: string
    readonly operation: IdempotencyStore.Operation
    readonly reason: IdempotencyStore.StoreErrorReason
    readonly message: string
  }
}

/**
 * A stream of what the instance does, from the moment it is consumed.
 * Events cost nothing while nobody listens; a slow consumer loses the oldest
 * events beyond `bufferSize` (default 4096). The stream ends when the
 * instance's scope closes.
 *
 * **Example** (Logging store failures)
 *
 * ```ts
 * import { Idempotency } from "@bulwark/core"
 * import { Effect, Stream } from "effect"
 *
 * const watch = Idempotency.events(Idempotency.Store).pipe(
 *   Stream.filter((e) => e._tag === "StoreFailed"),
 *   Stream.runForEach((e) => Effect.logWarning(`idempotency store: ${e._tag}`))
 * )
 * ```
 *
 * @since 0.1.0
 * @category observability
 */
export const events = <I = never>(
  instance: IdempotencyOrKey<I>,
  options?: { readonly bufferSize?: number | undefined }
): Stream.Stream<Event, never, I> => {
  const bufferSize = options?.bufferSize ?? 4096
  return isIdempotency(instance)
    ? instance.state.hub.stream(bufferSize)
    : Stream.unwrap(Effect.map(instance, (resolved) => resolved.state.hub.stream(bufferSize)))
}
