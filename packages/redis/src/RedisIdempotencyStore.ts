/**
 * An `IdempotencyStore` in Redis, so that `Idempotency.once` runs an effect
 * at most once per key across every process that shares the server.
 *
 * It is built on Effect's own `Redis` service (`effect/persistence/Redis`):
 * the application provides the connection, usually with
 * `NodeRedis.layer({ url })` from `@effect/platform-node`, and this package
 * never creates a client of its own.
 *
 * **Details**
 *
 * - Each operation is one Lua script, run with `EVALSHA` (Effect's `Redis`
 *   loads it once and loads it again after a server restart): one round trip,
 *   atomic on the server.
 * - One string key per idempotency key, `<prefix>idempotency:<name>:<key>`
 *   (`prefix` default `"bulwark:"`; `name` is the `Idempotency` instance's).
 *   `claim` is `SET key "i|<token>" NX PX <lease>`, or it reads what is there;
 *   `complete` replaces the value by `"c|<stored at>|<result>"` with `PX
 *   <ttl>`, only while the value is still the caller's token; `abandon` and
 *   `renew` check the token the same way. Every key expires: a claim with its
 *   lease, a result with its time to live.
 * - The time a result was stored is Redis's own (`TIME` inside the script);
 *   leases and lifetimes are expiries that Redis keeps. The caller's clock is
 *   never used, so processes with skewed clocks still agree.
 * - Tokens are random UUIDs, so they never repeat for a key.
 * - Failures become `IdempotencyStore.StoreError`: `Unavailable` (refused,
 *   closed, offline; also the `LOADING`, `READONLY`, `BUSY` replies),
 *   `Timeout` (no answer within `timeout`, default 2 seconds) or `Rejected`
 *   (any other error reply, such as `WRONGTYPE` for a key that holds
 *   something else). `Idempotency` counts them in `storeErrors` and
 *   `bulwark.idempotency.store_errors`.
 *
 * **Gotchas**
 *
 * - node-redis queues commands while it reconnects, so without
 *   `disableOfflineQueue: true` a call during an outage waits for `timeout`,
 *   and its claim may still be taken when the server is back (it then holds
 *   the key until its lease runs out). Give `NodeRedis.layer`
 *   `disableOfflineQueue: true` to fail such calls at once.
 * - Every script touches one key, named in `KEYS`, as Redis Cluster requires
 *   (not tested against a cluster).
 * - A result is stored as one string: keep results small (Redis strings go
 *   up to 512 MB, but every replay carries the whole result).
 *
 * **Example** (At most once across processes)
 *
 * ```ts
 * import { Idempotency } from "@bulwark/core"
 * import { RedisIdempotencyStore } from "@bulwark/redis"
 * import { NodeRedis } from "@effect/platform-node"
 * import { Effect, Layer, Schema } from "effect"
 *
 * const IdempotencyLive = RedisIdempotencyStore.layer({ name: "orders", prefix: "shop:" }).pipe(
 *   Layer.provide(NodeRedis.layer({ url: "redis://127.0.0.1:6379", disableOfflineQueue: true }))
 * )
 *
 * declare const placeOrder: Effect.Effect<string>
 * const handle = (requestId: string) =>
 *   Idempotency.once(requestId, placeOrder, { ttl: "1 day", result: Schema.String })
 *
 * const program = handle("req-1").pipe(Effect.provide(IdempotencyLive))
 * ```
 *
 * @since 0.1.0
 */
import { Idempotency, IdempotencyStore, type InvalidOptions } from "@bulwark/core"
import { Duration, Effect, Layer, Schema } from "effect"
import * as Redis from "effect/persistence/Redis"
import { decodeOptions, type FailureReason, guarded, WholeMillis } from "./internal/redis.ts"

// -----------------------------------------------------------------------------
// scripts
// -----------------------------------------------------------------------------

/**
 * `KEYS[1]` the key, `ARGV[1]` the lease (ms), `ARGV[2]` a fresh token.
 * Returns `{"Claimed"}`, `{"InFlight", <lease left ms>}` or
 * `{"Completed", <stored at ms>, <result>}`.
 */
const claimScript = Redis.script(
  (key: string, leaseMs: number, token: string) => [key, leaseMs, token],
  {
    numberOfKeys: 1,
    lua: `
if redis.call("SET", KEYS[1], "i|" .. ARGV[2], "NX", "PX", ARGV[1]) then
  return {"Claimed"}
end
local value = redis.call("GET", KEYS[1])
local kind = string.sub(value, 1, 2)
if kind == "i|" then
  return {"InFlight", redis.call("PTTL", KEYS[1])}
end
if kind == "c|" then
  local sep = string.find(value, "|", 3, true)
  if sep then
    return {"Completed", string.sub(value, 3, sep - 1), string.sub(value, sep + 1)}
  end
end
return redis.error_reply("BULWARK_BAD_ENTRY the key holds a value that Bulwark did not write")
`
  }
).withReturnType<ReadonlyArray<unknown>>()

/** `KEYS[1]` the key, `ARGV[1]` the token, `ARGV[2]` the time to live (ms), `ARGV[3]` the result. */
const completeScript = Redis.script(
  (key: string, token: string, ttlMs: number, encoded: string) => [key, token, ttlMs, encoded],
  {
    numberOfKeys: 1,
    lua: `
if redis.call("GET", KEYS[1]) ~= "i|" .. ARGV[1] then
  return 0
end
local now = redis.call("TIME")
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call("SET", KEYS[1], "c|" .. string.format("%.0f", ms) .. "|" .. ARGV[3], "PX", ARGV[2])
return 1
`
  }
).withReturnType<unknown>()

/** `KEYS[1]` the key, `ARGV[1]` the token. */
const abandonScript = Redis.script(
  (key: string, token: string) => [key, token],
  {
    numberOfKeys: 1,
    lua: `
if redis.call("GET", KEYS[1]) ~= "i|" .. ARGV[1] then
  return 0
end
redis.call("DEL", KEYS[1])
return 1
`
  }
).withReturnType<unknown>()

/** `KEYS[1]` the key, `ARGV[1]` the token, `ARGV[2]` the new lease (ms). */
const renewScript = Redis.script(
  (key: string, token: string, leaseMs: number) => [key, token, leaseMs],
  {
    numberOfKeys: 1,
    lua: `
if redis.call("GET", KEYS[1]) ~= "i|" .. ARGV[1] then
  return 0
end
redis.call("PEXPIRE", KEYS[1], ARGV[2])
return 1
`
  }
).withReturnType<unknown>()

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
  timeout: Schema.optional(WholeMillis)
})

/**
 * @since 0.1.0
 * @category options
 */
export interface Options {
  /** Put before every key, one per application sharing a server; default `"bulwark:"`. */
  readonly prefix?: string | undefined
  /** The longest an operation may take before it fails with reason `Timeout`; default 2 seconds. */
  readonly timeout?: Duration.Input | undefined
}

/**
 * The options of {@link layer}: the store's and the `Idempotency` instance's.
 *
 * @since 0.1.0
 * @category options
 */
export interface LayerOptions extends Options {
  /** The instance's name (namespaces its keys, labels its metrics); default `"idempotency"`. */
  readonly name?: string | undefined
  /** Put keys in errors and events; default false. */
  readonly exposeKeys?: boolean | undefined
}

const decode = decodeOptions("RedisIdempotencyStore", Options)

const decodeLayerOptions = decodeOptions(
  "RedisIdempotencyStore",
  Schema.Struct({ ...Options.fields, name: Schema.optional(Schema.String), exposeKeys: Schema.optional(Schema.Boolean) })
)

// -----------------------------------------------------------------------------
// the store
// -----------------------------------------------------------------------------

const rejected = (operation: IdempotencyStore.Operation, message: string) =>
  new IdempotencyStore.StoreError({ store: "redis", operation, reason: "Rejected", message })

const toClaim = (reply: ReadonlyArray<unknown>): IdempotencyStore.Claim | undefined => {
  if (!Array.isArray(reply)) return undefined
  switch (reply[0]) {
    case "Claimed":
      return undefined
    case "InFlight": {
      const left = Number(reply[1])
      // -1 (no expiry) cannot happen for keys this store wrote; read it as "any moment".
      return Number.isFinite(left) ? { _tag: "InFlight", leaseLeftMs: Math.max(0, left) } : undefined
    }
    case "Completed": {
      const storedAt = Number(reply[1])
      return Number.isFinite(storedAt) && typeof reply[2] === "string"
        ? { _tag: "Completed", encoded: reply[2], storedAt }
        : undefined
    }
  }
  return undefined
}

const toBoolean = (operation: IdempotencyStore.Operation) => (reply: unknown) =>
  reply === 1 || reply === "1"
    ? Effect.succeed(true)
    : reply === 0 || reply === "0"
    ? Effect.succeed(false)
    : Effect.fail(rejected(operation, `Unexpected reply ${JSON.stringify(reply)}`))

/**
 * The store, on the `Redis` service of the context.
 *
 * **Example** (A store for an instance of your own)
 *
 * ```ts
 * import { Idempotency } from "@bulwark/core"
 * import { RedisIdempotencyStore } from "@bulwark/redis"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const store = yield* RedisIdempotencyStore.make({ prefix: "billing:", timeout: "500 millis" })
 *   return yield* Idempotency.make({ name: "invoices", store })
 * }) // needs Redis.Redis and a Scope
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options?: Options
): Effect.Effect<IdempotencyStore.IdempotencyStore, InvalidOptions, Redis.Redis> =>
  Effect.flatMap(decode(options), (decoded) =>
    Effect.map(Redis.Redis, (redis) => {
      const prefix = `${decoded.prefix ?? "bulwark:"}idempotency:`
      const timeoutMs = decoded.timeout === undefined ? 2000 : Duration.toMillis(decoded.timeout)
      const run = <A>(operation: IdempotencyStore.Operation, effect: Effect.Effect<A, Redis.RedisError>) =>
        guarded(effect, timeoutMs, (reason: FailureReason, message) =>
          new IdempotencyStore.StoreError({ store: "redis", operation, reason, message }))
      const claim = redis.eval(claimScript)
      const complete = redis.eval(completeScript)
      const abandon = redis.eval(abandonScript)
      const renew = redis.eval(renewScript)
      return IdempotencyStore.make({
        claim: (key, leaseMs) =>
          Effect.suspend(() => {
            // Web Crypto, present in Node, Bun and Deno alike.
            const token = globalThis.crypto.randomUUID()
            return Effect.flatMap(run("claim", claim(prefix + key, leaseMs, token)), (reply) => {
              if (Array.isArray(reply) && reply[0] === "Claimed") return Effect.succeed({ _tag: "Claimed", token } as const)
              const decoded = toClaim(reply)
              return decoded === undefined
                ? Effect.fail(rejected("claim", `Unexpected reply ${JSON.stringify(reply)}`))
                : Effect.succeed(decoded)
            })
          }),
        complete: (key, token, encoded, ttlMs) =>
          Effect.flatMap(run("complete", complete(prefix + key, token, ttlMs, encoded)), toBoolean("complete")),
        abandon: (key, token) => Effect.flatMap(run("abandon", abandon(prefix + key, token)), toBoolean("abandon")),
        renew: (key, token, leaseMs) =>
          Effect.flatMap(run("renew", renew(prefix + key, token, leaseMs)), toBoolean("renew"))
      })
    }))

/**
 * The `Idempotency.Store` service on this store: what `Idempotency.once`
 * uses by default. Provide `Redis.Redis` to it (`NodeRedis.layer`).
 *
 * **Example** (Wiring the service)
 *
 * ```ts
 * import { RedisIdempotencyStore } from "@bulwark/redis"
 * import { NodeRedis } from "@effect/platform-node"
 * import { Layer } from "effect"
 *
 * const IdempotencyLive = RedisIdempotencyStore.layer({ prefix: "shop:" }).pipe(
 *   Layer.provide(NodeRedis.layer({ url: "redis://127.0.0.1:6379", disableOfflineQueue: true }))
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options?: LayerOptions): Layer.Layer<Idempotency.Store, InvalidOptions, Redis.Redis> =>
  Layer.effect(
    Idempotency.Store,
    Effect.gen(function*() {
      // Every field at once, so that a misspelt one is reported rather than ignored.
      const { exposeKeys, name, prefix, timeout } = yield* decodeLayerOptions(options)
      const store = yield* make({ prefix, timeout })
      return yield* Idempotency.make({ name: name ?? "idempotency", store, exposeKeys })
    })
  )
