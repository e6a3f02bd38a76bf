/**
 * A `CircuitBreakerStore` in Redis, so that every process sharing the
 * server shares one circuit: a trip seen by one process rejects the calls
 * of all of them. Give it to `CircuitBreaker.make` as `store`.
 *
 * It is built on Effect's own `Redis` service (`effect/persistence/Redis`):
 * the application provides the connection, usually with
 * `NodeRedis.layer({ url })` from `@effect/platform-node`, and this package
 * never creates a client of its own.
 *
 * **Details**
 *
 * - The contract of `CircuitBreakerStore`, with the in-memory circuit's
 *   state machine: `admit`, `record`, `read` and `force`, every trip policy
 *   (consecutive failures, failure rate and slow calls over a count or a
 *   time window), backoff of the open time, half-open probes.
 * - Each operation is **one** round trip: one Lua script run with `EVALSHA`
 *   (loaded once, and again after a restart), atomic on the server: two
 *   processes never both take the last probe slot.
 * - Fencing: every admission carries a generation; a transition starts a new
 *   one, and each probe has a permit of its own. A report whose permit is no
 *   longer current (a call admitted before a trip, a lost probe's late
 *   success) changes nothing, whichever process sends it.
 * - A half-open probe holds a lease (`halfOpen.probeLease`, default 10
 *   seconds) that its breaker renews every third of it while the probe runs
 *   (`renew`, one script call). A probe whose lease ran out (its process
 *   crashed) or that ran longer than `halfOpen.probeTimeout` is lost, and
 *   the next operation on the circuit opens it again.
 * - One hash per circuit, `<prefix>breaker:<name>` (plain breaker) or
 *   `<prefix>breaker:<name>:<key>` (keyed breaker); `prefix` default
 *   `"bulwark:"`. A circuit expires (`PEXPIRE`) once unused for
 *   `idleTimeToLive` (default 10 minutes), never before its open time or its
 *   probes' leases end; an isolated or disabled circuit never expires.
 * - The clock is Redis's own (`TIME` inside the script): open times, leases
 *   and time windows run on one clock for every process. `clock: "caller"`
 *   uses the `now` the breaker passes instead (Effect's `Clock`).
 * - Failures become `StoreError` (store `"redis"`, reasons `Unavailable`,
 *   `Timeout` (no answer within `timeout`, default 500 ms) or `Rejected`);
 *   the breaker then applies its `onStoreError` policy.
 *
 * **Gotchas**
 *
 * - Give `NodeRedis.layer` `disableOfflineQueue: true`: otherwise calls made
 *   while the client reconnects wait for `timeout`.
 * - Transitions are published on `<prefix>breaker-transitions` from inside
 *   the script, and each store listens on one subscriber connection while a
 *   breaker uses it: a transition another process caused shows on this
 *   process's `events` as a `Transition` with `remote: true` (not counted in
 *   this process's metrics). Pub/sub is best effort: one published while
 *   this process is disconnected is missed; the circuit's state, read by
 *   every decision, stays the truth. `transitions: false` turns it off.
 * - A key is always used with the same policy: a circuit stored by a
 *   breaker with other trip specs is read with the caller's.
 * - Every script touches one key, named in `KEYS`, as Redis Cluster requires
 *   (not tested against a cluster).
 *
 * **Example** (One circuit across processes)
 *
 * ```ts
 * import { CircuitBreaker } from "@bulwark/core"
 * import { RedisCircuitBreakerStore } from "@bulwark/redis"
 * import { NodeRedis } from "@effect/platform-node"
 * import { Effect } from "effect"
 *
 * declare const charge: Effect.Effect<string>
 *
 * const program = Effect.gen(function*() {
 *   const payments = yield* CircuitBreaker.make({
 *     name: "payments",
 *     trip: CircuitBreaker.failureRate({ threshold: 0.5, minimumCalls: 20, window: "1 minute" }),
 *     openFor: "30 seconds",
 *     store: yield* RedisCircuitBreakerStore.make(),
 *     onStoreError: "local"
 *   })
 *   return yield* charge.pipe(CircuitBreaker.guard(payments))
 * }).pipe(
 *   Effect.scoped,
 *   Effect.provide(NodeRedis.layer({ url: "redis://127.0.0.1:6379", disableOfflineQueue: true }))
 * )
 * ```
 *
 * @since 0.1.0
 */
import { CircuitBreaker, CircuitBreakerStore, type InvalidOptions } from "@bulwark/core"
import { type Context, Duration, Effect, Exit, Layer, Queue, Schedule, Schema, Scope } from "effect"
import * as Redis from "effect/persistence/Redis"
import { script } from "./internal/circuitBreakerScript.ts"
import {
  callerClockMarginMs,
  ClockOption,
  decodeOptions,
  guarded,
  storeError,
  unexpectedReply,
  WholeMillis
} from "./internal/redis.ts"

// -----------------------------------------------------------------------------
// options
// -----------------------------------------------------------------------------

/**
 * The options of {@link make}, as a Schema.
 *
 * @since 0.1.0
 * @category options
 */
export const Options = Schema.Struct({
  prefix: Schema.optional(Schema.String),
  timeout: Schema.optional(WholeMillis),
  clock: Schema.optional(ClockOption),
  idleTimeToLive: Schema.optional(WholeMillis),
  transitions: Schema.optional(Schema.Boolean)
})

/**
 * @since 0.1.0
 * @category options
 */
export interface Options {
  /** Put before every key, one per application sharing a server; default `"bulwark:"`. */
  readonly prefix?: string | undefined
  /** The longest an operation may take before it fails with reason `Timeout`; default 500 ms. */
  readonly timeout?: Duration.Input | undefined
  /** `"redis"` (default): Redis `TIME`, one clock for every process. `"caller"`: the `now` the breaker passes. */
  readonly clock?: "redis" | "caller" | undefined
  /** A circuit unused this long (and not open, half-open with a lease running, isolated or disabled) expires; default 10 minutes. */
  readonly idleTimeToLive?: Duration.Input | undefined
  /**
   * Publish every transition on `<prefix>breaker-transitions`, and report the
   * ones other processes caused on this process's breakers' `events` (as
   * `Transition` with `remote: true`); default `true`. Listening takes one
   * subscriber connection per store, while a breaker uses it.
   */
  readonly transitions?: boolean | undefined
}

const decode = decodeOptions("RedisCircuitBreakerStore", Options)

// -----------------------------------------------------------------------------
// replies
// -----------------------------------------------------------------------------

const stateOf: Record<string, CircuitBreaker.State> = {
  C: "Closed",
  O: "Open",
  H: "HalfOpen",
  I: "Isolated",
  D: "Disabled"
}

const reasonOf: Record<string, CircuitBreakerStore.Reason> = { O: "Open", B: "ProbesBusy", I: "Isolated" }

const letterOf: Record<"Isolated" | "Disabled" | "Closed", string> = { Closed: "C", Isolated: "I", Disabled: "D" }

/** A transition in a reply (`from`, `to` as state letters, `""` when none), at the caller's `now`. */
const transitionOf = (from: unknown, to: unknown, now: number): CircuitBreakerStore.Transition | undefined | null => {
  if (from === "" && to === "") return undefined
  const a = typeof from === "string" ? stateOf[from] : undefined
  const b = typeof to === "string" ? stateOf[to] : undefined
  return a === undefined || b === undefined ? null : { from: a, to: b, at: now }
}

const toNumber = (u: unknown): number => (typeof u === "number" ? u : typeof u === "string" && u !== "" ? Number(u) : Number.NaN)

const isReply = (reply: unknown, length: number): reply is ReadonlyArray<unknown> =>
  Array.isArray(reply) && reply.length === length

/** The policy as the script reads it (JSON with short keys), encoded once per policy object. */
const policyJson = (policy: CircuitBreakerStore.Policy): string =>
  JSON.stringify({
    t: policy.trips.map((spec) => {
      switch (spec._tag) {
        case "Consecutive":
          return { k: "C", f: spec.failures }
        case "FailureRate":
          return { k: "F", h: spec.threshold, m: spec.minimumCalls, wc: spec.windowCalls, wm: spec.windowMs }
        case "SlowCalls":
          return { k: "S", s: spec.slowerThanMs, h: spec.threshold, m: spec.minimumCalls, wc: spec.windowCalls, wm: spec.windowMs }
      }
    }),
    o: policy.openForMs,
    p: policy.probes,
    s: policy.successesToClose,
    pt: policy.probeTimeoutMs,
    pl: policy.probeLeaseMs
  })

// -----------------------------------------------------------------------------
// transitions of other processes
// -----------------------------------------------------------------------------

/** `origin|from|to|at|key`, as the script publishes it; `undefined` for this store's own or a malformed one. */
const parseTransition = (message: string, origin: string, prefix: string): CircuitBreakerStore.RemoteTransition | undefined => {
  const parts = message.split("|")
  if (parts.length < 5 || parts[0] === origin) return undefined
  const from = stateOf[parts[1]]
  const to = stateOf[parts[2]]
  const at = Number(parts[3])
  // The key may itself hold "|".
  const key = parts.slice(4).join("|")
  if (from === undefined || to === undefined || !Number.isFinite(at) || !key.startsWith(prefix)) return undefined
  return { key: key.slice(prefix.length), from, to, at }
}

/**
 * `listen` of the store: one subscription for every breaker listening,
 * opened by the first and closed with the last. A subscription that fails
 * (the server is down, the connection closed) is made again every second
 * while anyone listens: transitions published meanwhile are missed, which
 * the contract allows (the circuit's state stays the truth).
 */
const listener = (redis: Redis.Redis["Service"], channel: string, origin: string, prefix: string) => {
  const listeners = new Set<(transition: CircuitBreakerStore.RemoteTransition) => void>()
  let subscription: Scope.Closeable | undefined
  const dispatch = (message: string) => {
    const transition = parseTransition(message, origin, prefix)
    if (transition !== undefined) for (const f of listeners) f(transition)
  }
  const consume = Effect.scoped(Effect.gen(function*() {
    const messages = yield* redis.subscribe(channel)
    while (true) dispatch((yield* Queue.take(messages)).message)
  })).pipe(Effect.retry(Schedule.spaced("1 second")), Effect.ignore)
  return (onTransition: (transition: CircuitBreakerStore.RemoteTransition) => void) =>
    Effect.acquireRelease(
      Effect.gen(function*() {
        listeners.add(onTransition)
        if (subscription !== undefined) return
        const scope = yield* Scope.make()
        subscription = scope
        yield* Effect.forkIn(consume, scope)
      }),
      () =>
        Effect.suspend(() => {
          listeners.delete(onTransition)
          const scope = subscription
          if (listeners.size > 0 || scope === undefined) return Effect.void
          subscription = undefined
          return Scope.close(scope, Exit.void)
        })
    )
}

// -----------------------------------------------------------------------------
// the store
// -----------------------------------------------------------------------------

/**
 * The store, on the `Redis` service of the context.
 *
 * **Example** (Per-host circuits shared by a fleet)
 *
 * ```ts
 * import { CircuitBreaker } from "@bulwark/core"
 * import { RedisCircuitBreakerStore } from "@bulwark/redis"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const store = yield* RedisCircuitBreakerStore.make({ timeout: "200 millis", idleTimeToLive: "1 hour" })
 *   const perHost = yield* CircuitBreaker.make({
 *     name: "psp",
 *     trip: CircuitBreaker.consecutive(5),
 *     openFor: "10 seconds",
 *     keys: { maxKeys: 1000 }, // bounds the "local" stand-in; Redis keeps the circuits
 *     store // keys bulwark:breaker:psp:<host>
 *   })
 *   return yield* Effect.succeed("ok").pipe(CircuitBreaker.guard(perHost, { key: "eu-1.psp" }))
 * }) // needs Redis.Redis and a Scope
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options?: Options
): Effect.Effect<CircuitBreakerStore.CircuitBreakerStore, InvalidOptions, Redis.Redis> =>
  Effect.flatMap(decode(options), (decoded) =>
    Effect.map(Redis.Redis, (redis) => {
      const prefix = `${decoded.prefix ?? "bulwark:"}breaker:`
      const timeoutMs = decoded.timeout === undefined ? 500 : Duration.toMillis(decoded.timeout)
      const idle = String(decoded.idleTimeToLive === undefined ? 600_000 : Duration.toMillis(decoded.idleTimeToLive))
      const caller = decoded.clock === "caller"
      const margin = String(caller ? callerClockMarginMs : 0)
      const clockArg = (now: number) => (caller ? String(now) : "")
      const policies = new WeakMap<CircuitBreakerStore.Policy, string>()
      const encoded = (policy: CircuitBreakerStore.Policy): string => {
        let json = policies.get(policy)
        if (json === undefined) {
          json = policyJson(policy)
          policies.set(policy, json)
        }
        return json
      }
      const run = redis.eval(script)
      const channel = decoded.transitions === false ? "" : `${decoded.prefix ?? "bulwark:"}breaker-transitions`
      // Tells this store's own publications from other processes'.
      const origin = crypto.randomUUID()
      const call = (operation: string, key: string, now: number, policy: CircuitBreakerStore.Policy, args: ReadonlyArray<string>) =>
        guarded(
          run(prefix + key, [operation, clockArg(now), encoded(policy), idle, margin, channel, origin, ...args]),
          timeoutMs,
          storeError(operation)
        )

      return CircuitBreakerStore.make({
        listen: channel === "" ? undefined : listener(redis, channel, origin, prefix),
        admit: (key, policy, now) =>
          Effect.flatMap(call("admit", key, now, policy, []), (reply) => {
            if (!isReply(reply, 8)) return Effect.fail(unexpectedReply("admit", reply))
            const [kind, permit, probe, reason, wait, infinite, from, to] = reply
            const transition = transitionOf(from, to, now)
            if (transition === null) return Effect.fail(unexpectedReply("admit", reply))
            switch (kind) {
              case 0: {
                const p = toNumber(permit)
                if (!Number.isSafeInteger(p)) return Effect.fail(unexpectedReply("admit", reply))
                return Effect.succeed<CircuitBreakerStore.Admission>({ _tag: "Admitted", permit: p, probe: probe === 1, transition })
              }
              case 1: {
                const r = typeof reason === "string" ? reasonOf[reason] : undefined
                if (r === undefined) return Effect.fail(unexpectedReply("admit", reply))
                return Effect.succeed<CircuitBreakerStore.Admission>({
                  _tag: "Rejected",
                  reason: r,
                  retryAfterMs: infinite === 1 ? Infinity : toNumber(wait),
                  transition
                })
              }
              case 2:
                return Effect.succeed<CircuitBreakerStore.Admission>({ _tag: "Pass" })
            }
            return Effect.fail(unexpectedReply("admit", reply))
          }),
        record: (key, policy, permit, outcome, elapsedMs, now) =>
          Effect.flatMap(
            call("record", key, now, policy, [String(permit), outcome.charAt(0), String(Math.max(0, elapsedMs))]),
            (reply) => {
              const transition = isReply(reply, 2) ? transitionOf(reply[0], reply[1], now) : null
              return transition === null ? Effect.fail(unexpectedReply("record", reply)) : Effect.succeed(transition)
            }
          ),
        read: (key, policy, now) =>
          Effect.flatMap(call("read", key, now, policy, []), (reply) => {
            if (!isReply(reply, 7)) return Effect.fail(unexpectedReply("read", reply))
            const [state, wait, infinite, openings, probing, from, to] = reply
            const s = typeof state === "string" ? stateOf[state] : undefined
            const transition = transitionOf(from, to, now)
            if (s === undefined || transition === null) return Effect.fail(unexpectedReply("read", reply))
            return Effect.succeed<CircuitBreakerStore.Reading>({
              state: s,
              retryAfterMs: infinite === 1 ? Infinity : toNumber(wait),
              consecutiveOpenings: toNumber(openings),
              probing: toNumber(probing),
              transition
            })
          }),
        renew: (key, policy, permit, now) =>
          Effect.flatMap(call("renew", key, now, policy, [String(permit)]), (reply) =>
            reply === 0 || reply === 1 ? Effect.succeed(reply === 1) : Effect.fail(unexpectedReply("renew", reply))),
        force: (key, policy, to, now) =>
          Effect.flatMap(call("force", key, now, policy, [letterOf[to]]), (reply) => {
            const transition = isReply(reply, 2) ? transitionOf(reply[0], reply[1], now) : null
            return transition === null ? Effect.fail(unexpectedReply("force", reply)) : Effect.succeed(transition)
          })
      })
    }))

/**
 * A `CircuitBreaker` service on this store: {@link make} and
 * `CircuitBreaker.make` as one layer. Provide `Redis.Redis` to it
 * (`NodeRedis.layer`).
 *
 * **Example** (A shared breaker as a service)
 *
 * ```ts
 * import { CircuitBreaker } from "@bulwark/core"
 * import { RedisCircuitBreakerStore } from "@bulwark/redis"
 * import { NodeRedis } from "@effect/platform-node"
 * import { Context, Layer } from "effect"
 *
 * class Payments extends Context.Service<Payments, CircuitBreaker.CircuitBreaker>()("app/Payments") {}
 *
 * const PaymentsLive = RedisCircuitBreakerStore.layer(Payments, {
 *   name: "payments",
 *   trip: CircuitBreaker.consecutive(5),
 *   openFor: "30 seconds"
 * }).pipe(Layer.provide(NodeRedis.layer({ url: "redis://127.0.0.1:6379", disableOfflineQueue: true })))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <I>(
  key: Context.Key<I, CircuitBreaker.CircuitBreaker>,
  options: Omit<CircuitBreaker.Options, "store">,
  storeOptions?: Options
): Layer.Layer<I, InvalidOptions, Redis.Redis> =>
  Layer.effect(key, Effect.flatMap(make(storeOptions), (store) => CircuitBreaker.make({ ...options, store })))
