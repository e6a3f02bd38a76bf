/**
 * A `RateLimiterStore` in Redis, so that every process sharing the server
 * shares one limit: give it to `RateLimiter.make` (or
 * `KeyedRateLimiter.make`) as `store`.
 *
 * It is built on Effect's own `Redis` service (`effect/persistence/Redis`):
 * the application provides the connection, usually with
 * `NodeRedis.layer({ url })` from `@effect/platform-node`, and this package
 * never creates a client of its own.
 *
 * **Details**
 *
 * - Every algorithm of the in-memory store (token bucket, GCRA, fixed
 *   window, exact sliding window log), with the same decisions: the script
 *   is the in-memory state machine, line for line. `consume`, `refund` and
 *   `block` keep the contract of `RateLimiterStore`: reservations in FIFO
 *   order, exact refunds of the latest reservation (any refund for the
 *   windows), blocks that only extend.
 * - Each decision is **one** round trip: one Lua script run with `EVALSHA`
 *   (Effect's `Redis` loads it once, and again after a server restart or a
 *   `SCRIPT FLUSH`), atomic on the server, so two processes never both take
 *   the last token.
 * - One hash per limiter key, `<prefix>ratelimiter:<name>` (plain limiter)
 *   or `<prefix>ratelimiter:<name>:<key>` (keyed limiter); `prefix` default
 *   `"bulwark:"`. A key expires (`PEXPIRE`) when its state comes back to
 *   rest (full bucket, empty window): an idle limiter holds nothing in Redis.
 * - The clock is Redis's own (`TIME` inside the script): every process
 *   decides on the same clock, whatever the skew between their hosts. Times
 *   go back to the caller relative to that clock (`at - now`), placed at the
 *   moment the reply arrived on the caller's clock: a wait is a duration
 *   measured locally, and a caller never starts before the slot Redis gave
 *   it (at worst one round trip after it). `clock: "caller"` uses the `now`
 *   the limiter passes instead (Effect's `Clock`: for tests on `TestClock`,
 *   or hosts with synchronized clocks). {@link serverFrame} gives a
 *   decision's times on the script's clock.
 * - Failures become `StoreError` (store `"redis"`): `Unavailable` (refused,
 *   closed, offline; also `LOADING`, `READONLY`, `BUSY`), `Timeout` (no
 *   answer within `timeout`, default 500 ms) or `Rejected` (any other error
 *   reply, such as `WRONGTYPE` for a key that holds something else). The
 *   limiter then applies its `onStoreError` policy.
 *
 * **Gotchas**
 *
 * - node-redis queues commands while it reconnects, so without
 *   `disableOfflineQueue: true` a call during an outage waits for `timeout`
 *   and may still be committed when the server is back. Give
 *   `NodeRedis.layer` `disableOfflineQueue: true` to fail such calls at once.
 * - A timed-out `consume` may still have been committed: the token is spent
 *   although the limiter decided without the store.
 * - Every script touches one key, named in `KEYS`, as Redis Cluster requires
 *   (not tested against a cluster).
 * - A sliding window log keeps one hash field per millisecond that admitted
 *   something within the window (at most `limit`).
 *
 * **Example** (One limit across processes)
 *
 * ```ts
 * import { RateLimiter } from "@bulwark/core"
 * import { RedisRateLimiterStore } from "@bulwark/redis"
 * import { NodeRedis } from "@effect/platform-node"
 * import { Effect, Layer } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const github = yield* RateLimiter.make({
 *     name: "github",
 *     algorithm: RateLimiter.gcra({ rate: 5000, per: "1 hour", burst: 100 }),
 *     store: yield* RedisRateLimiterStore.make({ prefix: "shop:" }),
 *     onStoreError: "local"
 *   })
 *   return yield* Effect.succeed("repos").pipe(RateLimiter.guard(github))
 * }).pipe(
 *   Effect.scoped,
 *   Effect.provide(NodeRedis.layer({ url: "redis://127.0.0.1:6379", disableOfflineQueue: true }))
 * )
 * ```
 *
 * @since 0.1.0
 */
import { type InvalidOptions, RateLimiter, RateLimiterStore } from "@bulwark/core"
import { type Context, Duration, Effect, Layer, Schema } from "effect"
import * as Redis from "effect/persistence/Redis"
import {
  callerClockMarginMs,
  ClockOption,
  decodeOptions,
  guarded,
  integers,
  storeError,
  unexpectedReply,
  WholeMillis
} from "./internal/redis.ts"
import { script } from "./internal/rateLimiterScript.ts"

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
  clock: Schema.optional(ClockOption)
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
  /**
   * `"redis"` (default): decide on Redis `TIME`, one clock for every
   * process. `"caller"`: on the `now` the limiter passes (Effect's `Clock`);
   * keys then expire a minute after they come back to rest, since Redis
   * expires them on its own clock.
   */
  readonly clock?: "redis" | "caller" | undefined
}

const decode = decodeOptions("RedisRateLimiterStore", Options)

// -----------------------------------------------------------------------------
// the store
// -----------------------------------------------------------------------------

const numbersOf = (a: RateLimiterStore.Algorithm): [string, string, string, string] => {
  switch (a._tag) {
    case "TokenBucket":
      return [a._tag, String(a.capacity), String(a.refill), String(a.perMillis)]
    case "Gcra":
      return [a._tag, String(a.rate), String(a.perMillis), String(a.burst)]
    case "FixedWindow":
    case "SlidingWindow":
      return [a._tag, String(a.limit), String(a.windowMillis), "0"]
  }
}

/** Reservations remembered for refunds: more than this many outstanding and the oldest are forfeited. */
const maxReservations = 100_000

/**
 * The store, on the `Redis` service of the context.
 *
 * **Example** (A keyed limiter on Redis)
 *
 * ```ts
 * import { KeyedRateLimiter, RateLimiter } from "@bulwark/core"
 * import { RedisRateLimiterStore } from "@bulwark/redis"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const store = yield* RedisRateLimiterStore.make({ timeout: "200 millis" })
 *   const perUser = yield* KeyedRateLimiter.make({
 *     name: "login",
 *     algorithm: RateLimiter.slidingWindow({ limit: 5, window: "1 minute" }),
 *     maxKeys: 10_000,
 *     store, // keys bulwark:ratelimiter:login:<user>
 *     onStoreError: "fail-closed"
 *   })
 *   return yield* Effect.succeed("ok").pipe(KeyedRateLimiter.guard(perUser, "user-42"))
 * }) // needs Redis.Redis and a Scope
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options?: Options
): Effect.Effect<RateLimiterStore.RateLimiterStore, InvalidOptions, Redis.Redis> =>
  Effect.flatMap(decode(options), (decoded) =>
    Effect.map(Redis.Redis, (redis) => {
      const prefix = `${decoded.prefix ?? "bulwark:"}ratelimiter:`
      const timeoutMs = decoded.timeout === undefined ? 500 : Duration.toMillis(decoded.timeout)
      const caller = decoded.clock === "caller"
      const margin = String(caller ? callerClockMarginMs : 0)
      const clockArg = (now: number) => (caller ? String(now) : "")
      const run = redis.eval(script)
      const call = (operation: string, key: string, args: ReadonlyArray<string>) =>
        guarded(run(prefix + key, args), timeoutMs, storeError(operation))

      /**
       * A reservation's time on the script's clock, by key and time on the
       * caller's: a refund must name the reservation exactly, and the
       * caller's frame moves against Redis's by the latency of each call.
       */
      const reservations = new Map<string, { readonly at: number; readonly scriptAt: number }>()
      const remember = (key: string, at: number, scriptAt: number, now: number) => {
        for (const [k, r] of reservations) {
          // Reservations whose time has come can no longer be refunded.
          if (r.at > now && reservations.size < maxReservations) break
          reservations.delete(k)
        }
        reservations.set(`${key}\u0000${at}`, { at, scriptAt })
      }
      const scriptTimeOf = (key: string, at: number): number | undefined => {
        if (caller) return at
        const id = `${key}\u0000${at}`
        const found = reservations.get(id)
        if (found !== undefined) reservations.delete(id)
        return found?.scriptAt
      }

      return RateLimiterStore.make({
        consume: (key, algorithm, cost, now, maxWait) =>
          Effect.clockWith((clock) => {
            const sent = clock.currentTimeMillisUnsafe()
            return Effect.flatMap(
              call("consume", key, [
                "consume",
                clockArg(now),
                ...numbersOf(algorithm),
                margin,
                String(cost),
                maxWait === Infinity ? "-1" : String(maxWait)
              ]),
              (reply) => {
                const r = integers(reply, 8)
                if (r === undefined) return Effect.fail(unexpectedReply("consume", reply))
                const [admitted, blocked, atRel, atInfinite, remaining, restRel, restNone, scriptNow] = r
                // The script decided somewhere within the round trip: its times are placed at the
                // reply's arrival, so that a caller never starts before the slot Redis gave it.
                const base = caller ? now : now + Math.max(0, clock.currentTimeMillisUnsafe() - sent)
                const at = atInfinite === 1 ? Infinity : base + atRel
                if (admitted === 1 && atRel > 0 && !caller) remember(key, at, scriptNow + atRel, now)
                const decision: RateLimiterStore.Decision = {
                  admitted: admitted === 1,
                  at,
                  blocked: blocked === 1,
                  remaining,
                  resetAt: restNone === 1 ? -Infinity : base + restRel
                }
                serverFrames.set(decision, { now: scriptNow, at: atInfinite === 1 ? Infinity : scriptNow + atRel })
                return Effect.succeed(decision)
              }
            )
          }),
        refund: (key, algorithm, cost, at, now) =>
          Effect.suspend(() => {
            if (at <= now) return Effect.void
            const scriptAt = scriptTimeOf(key, at)
            // Unknown here (made by another store instance, or forgotten): forfeited, as the contract allows.
            if (scriptAt === undefined) return Effect.void
            return Effect.asVoid(
              call("refund", key, ["refund", clockArg(now), ...numbersOf(algorithm), margin, String(cost), String(scriptAt)])
            )
          }),
        block: (key, algorithm, until, now) =>
          Effect.asVoid(
            call("block", key, ["block", clockArg(now), ...numbersOf(algorithm), margin, String(Math.max(0, until - now))])
          )
      })
    }))

const serverFrames = new WeakMap<RateLimiterStore.Decision, { readonly now: number; readonly at: number }>()

/**
 * The script's own clock for a decision of a store made by {@link make}:
 * `now` when it decided and `at` on that clock (Redis `TIME` in epoch
 * milliseconds, or the caller's clock with `clock: "caller"`).
 * `undefined` for any other decision. For audits and tests that put the
 * decisions of several processes on one timeline.
 *
 * **Example** (The slot Redis committed)
 *
 * ```ts
 * import type { RateLimiterStore } from "@bulwark/core"
 * import { RedisRateLimiterStore } from "@bulwark/redis"
 *
 * declare const decision: RateLimiterStore.Decision
 * const committedAt = RedisRateLimiterStore.serverFrame(decision)?.at // Redis TIME, ms
 * ```
 *
 * @since 0.1.0
 * @category observability
 */
export const serverFrame = (
  decision: RateLimiterStore.Decision
): { readonly now: number; readonly at: number } | undefined => serverFrames.get(decision)

/**
 * A `RateLimiter` service on this store: what {@link make} and
 * `RateLimiter.make` give, as one layer. Provide `Redis.Redis` to it
 * (`NodeRedis.layer`).
 *
 * **Example** (A shared limit as a service)
 *
 * ```ts
 * import { RateLimiter } from "@bulwark/core"
 * import { RedisRateLimiterStore } from "@bulwark/redis"
 * import { NodeRedis } from "@effect/platform-node"
 * import { Context, Layer } from "effect"
 *
 * class Sms extends Context.Service<Sms, RateLimiter.RateLimiter>()("app/Sms") {}
 *
 * const SmsLive = RedisRateLimiterStore.layer(Sms, {
 *   name: "sms",
 *   algorithm: RateLimiter.slidingWindow({ limit: 100, window: "1 minute" })
 * }).pipe(Layer.provide(NodeRedis.layer({ url: "redis://127.0.0.1:6379", disableOfflineQueue: true })))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <I>(
  key: Context.Key<I, RateLimiter.RateLimiter>,
  options: Omit<RateLimiter.Options, "store">,
  storeOptions?: Options
): Layer.Layer<I, InvalidOptions, Redis.Redis> =>
  Layer.effect(key, Effect.flatMap(make(storeOptions), (store) => RateLimiter.make({ ...options, store })))
