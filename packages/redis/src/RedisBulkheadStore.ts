/**
 * A `BulkheadStore` in Redis, so that a `DistributedBulkhead` caps
 * concurrency across every process that shares the server.
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
 * - Slots are a sorted set `<prefix>bulkhead:<name>` of token -> lease
 *   expiry. `acquire` first drops expired slots (`ZREMRANGEBYSCORE -inf
 *   now`), then takes one (`ZADD`) if `ZCARD` leaves room for it and for
 *   every ticket ahead of it; `renew` is `ZADD XX` if the token is still
 *   there; `release` is `ZREM`.
 * - The waiting room is two sorted sets: `<prefix>bulkhead-queue:<name>`
 *   (token -> arrival order) and `<prefix>bulkhead-tickets:<name>` (token ->
 *   ticket expiry). Expired tickets are dropped from both first.
 * - Every time is Redis' own (`TIME` inside the script): processes with
 *   skewed clocks still agree. Every key expires (`PEXPIREAT`) when its last
 *   slot or ticket does, so a bulkhead nobody uses leaves nothing behind.
 * - Failures become `StoreError` (`store: "redis"`): `Unavailable`
 *   (refused, closed, offline; also the `LOADING`, `READONLY`, `BUSY`
 *   replies), `Timeout` (no answer within `timeout`, default 500 milliseconds, as the
 *   limiter's and the breaker's stores) or
 *   `Rejected` (any other error reply, such as `WRONGTYPE` for a key that
 *   holds something else). `DistributedBulkhead` applies its `onStoreError`
 *   and counts them by reason.
 *
 * **Gotchas**
 *
 * - node-redis queues commands while it reconnects, so without
 *   `disableOfflineQueue: true` a call during an outage waits for `timeout`
 *   before `onStoreError` applies. Give `NodeRedis.layer`
 *   `disableOfflineQueue: true` to decide at once.
 * - A script touches the three keys of one name, named in `KEYS`. Redis
 *   Cluster needs them in one hash slot: put a hash tag in the name
 *   (`"{db}"`). Not tested against a cluster.
 * - Redis 5 or later (scripts that call `TIME` before writing).
 *
 * **Example** (One cap across processes)
 *
 * ```ts
 * import { DistributedBulkhead } from "@bulwark/core"
 * import { RedisBulkheadStore } from "@bulwark/redis"
 * import { NodeRedis } from "@effect/platform-node"
 * import { Effect } from "effect"
 *
 * declare const query: Effect.Effect<string>
 *
 * const program = Effect.gen(function*() {
 *   const store = yield* RedisBulkheadStore.make({ prefix: "shop:" })
 *   const db = yield* DistributedBulkhead.make({ name: "db", maxConcurrent: 50, maxQueue: 100, store })
 *   return yield* query.pipe(DistributedBulkhead.guard(db))
 * }).pipe(
 *   Effect.scoped,
 *   Effect.provide(NodeRedis.layer({ url: "redis://127.0.0.1:6379", disableOfflineQueue: true }))
 * )
 * ```
 *
 * @since 0.1.0
 */
import { BulkheadStore, DistributedBulkhead, type InvalidOptions, StoreError } from "@bulwark/core"
import { Duration, Effect, Layer, Schema } from "effect"
import type * as Context from "effect/Context"
import * as Redis from "effect/persistence/Redis"
import { decodeOptions, type FailureReason, guarded, WholeMillis } from "./internal/redis.ts"

// -----------------------------------------------------------------------------
// scripts
// -----------------------------------------------------------------------------

/**
 * Shared by every script: the server's time in milliseconds, numbers written
 * without an exponent (Lua would print 1.7e+12), the purge of expired slots
 * and tickets, and keys that expire with their last member.
 */
const prelude = `
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function int(x) return string.format("%.0f", x) end
local function expireWithLast(expiries, key)
  local last = redis.call("ZRANGE", expiries, -1, -1, "WITHSCORES")
  if #last > 0 then redis.call("PEXPIREAT", key, int(tonumber(last[2]))) end
end
local function purge()
  redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", now)
  local expired = redis.call("ZRANGEBYSCORE", KEYS[3], "-inf", now)
  for i = 1, #expired, 500 do
    local j = math.min(i + 499, #expired)
    redis.call("ZREM", KEYS[3], unpack(expired, i, j))
    redis.call("ZREM", KEYS[2], unpack(expired, i, j))
  end
end
`

/**
 * `KEYS` slots, queue, tickets; `ARGV[1]` the token, `ARGV[2]` the limit,
 * `ARGV[3]` the lease (ms), `ARGV[4]` the most tickets, `ARGV[5]` the ticket
 * lifetime (ms). Returns `{"Acquired", inFlight}`, `{"Queued", position,
 * inFlight}` or `{"Full", inFlight, queued}`.
 */
const acquireScript = Redis.script(
  (slots: string, queue: string, tickets: string, token: string, limit: number, leaseMs: number, maxQueue: number, ticketMs: number) => [
    slots,
    queue,
    tickets,
    token,
    limit,
    leaseMs,
    maxQueue,
    ticketMs
  ],
  {
    numberOfKeys: 3,
    lua: `${prelude}
purge()
local token = ARGV[1]
local leaseUntil = int(now + tonumber(ARGV[3]))
if redis.call("ZSCORE", KEYS[1], token) then
  redis.call("ZADD", KEYS[1], leaseUntil, token)
  expireWithLast(KEYS[1], KEYS[1])
  return {"Acquired", redis.call("ZCARD", KEYS[1])}
end
local inFlight = redis.call("ZCARD", KEYS[1])
local free = tonumber(ARGV[2]) - inFlight
local rank = redis.call("ZRANK", KEYS[2], token)
local ahead = rank
if not rank then ahead = redis.call("ZCARD", KEYS[2]) end
if ahead < free then
  if rank then
    redis.call("ZREM", KEYS[2], token)
    redis.call("ZREM", KEYS[3], token)
  end
  redis.call("ZADD", KEYS[1], leaseUntil, token)
  expireWithLast(KEYS[1], KEYS[1])
  return {"Acquired", inFlight + 1}
end
local ticketUntil = int(now + tonumber(ARGV[5]))
if rank then
  redis.call("ZADD", KEYS[3], ticketUntil, token)
  expireWithLast(KEYS[3], KEYS[3])
  expireWithLast(KEYS[3], KEYS[2])
  return {"Queued", rank, inFlight}
end
if ahead < tonumber(ARGV[4]) then
  local order = 0
  local last = redis.call("ZRANGE", KEYS[2], -1, -1, "WITHSCORES")
  if #last > 0 then order = tonumber(last[2]) + 1 end
  redis.call("ZADD", KEYS[2], int(order), token)
  redis.call("ZADD", KEYS[3], ticketUntil, token)
  expireWithLast(KEYS[3], KEYS[3])
  expireWithLast(KEYS[3], KEYS[2])
  return {"Queued", ahead, inFlight}
end
return {"Full", inFlight, ahead}
`
  }
).withReturnType<ReadonlyArray<unknown>>()

/** `KEYS` slots, queue, tickets; `ARGV[1]` the token, `ARGV[2]` the lease (ms). Returns 1 if renewed. */
const renewScript = Redis.script(
  (slots: string, queue: string, tickets: string, token: string, leaseMs: number) => [slots, queue, tickets, token, leaseMs],
  {
    numberOfKeys: 3,
    lua: `${prelude}
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", now)
if not redis.call("ZSCORE", KEYS[1], ARGV[1]) then
  return 0
end
redis.call("ZADD", KEYS[1], "XX", int(now + tonumber(ARGV[2])), ARGV[1])
expireWithLast(KEYS[1], KEYS[1])
return 1
`
  }
).withReturnType<unknown>()

/** `KEYS` slots, queue, tickets; `ARGV[1]` the token. Returns 1 if it held a live slot or ticket. */
const releaseScript = Redis.script(
  (slots: string, queue: string, tickets: string, token: string) => [slots, queue, tickets, token],
  {
    numberOfKeys: 3,
    lua: `${prelude}
purge()
local released = redis.call("ZREM", KEYS[1], ARGV[1])
released = released + redis.call("ZREM", KEYS[2], ARGV[1])
redis.call("ZREM", KEYS[3], ARGV[1])
if released > 0 then return 1 end
return 0
`
  }
).withReturnType<unknown>()

/** `KEYS` slots, queue, tickets. Returns `{inFlight, queued}`. */
const inspectScript = Redis.script(
  (slots: string, queue: string, tickets: string) => [slots, queue, tickets],
  {
    numberOfKeys: 3,
    lua: `${prelude}
purge()
return {redis.call("ZCARD", KEYS[1]), redis.call("ZCARD", KEYS[2])}
`
  }
).withReturnType<ReadonlyArray<unknown>>()

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
  /** The longest an operation may take before it fails with reason `Timeout`; default 500 milliseconds. */
  readonly timeout?: Duration.Input | undefined
}

const decode = decodeOptions("RedisBulkheadStore", Options)

// -----------------------------------------------------------------------------
// the store
// -----------------------------------------------------------------------------

const rejected = (operation: BulkheadStore.Operation, reply: unknown) =>
  new StoreError({ store: "redis", operation, reason: "Rejected", message: `Unexpected reply ${JSON.stringify(reply)}` })

const count = (value: unknown): number | undefined => {
  const n = typeof value === "number" ? value : typeof value === "string" ? Number(value) : NaN
  return Number.isInteger(n) && n >= 0 ? n : undefined
}

const toAcquisition = (reply: ReadonlyArray<unknown>): BulkheadStore.Acquisition | undefined => {
  if (!Array.isArray(reply)) return undefined
  const a = count(reply[1])
  if (a === undefined) return undefined
  switch (reply[0]) {
    case "Acquired":
      return { _tag: "Acquired", inFlight: a }
    case "Queued": {
      const inFlight = count(reply[2])
      return inFlight === undefined ? undefined : { _tag: "Queued", position: a, inFlight }
    }
    case "Full": {
      const queued = count(reply[2])
      return queued === undefined ? undefined : { _tag: "Full", inFlight: a, queued }
    }
  }
  return undefined
}

const toBoolean = (operation: BulkheadStore.Operation) => (reply: unknown) =>
  reply === 1 || reply === "1"
    ? Effect.succeed(true)
    : reply === 0 || reply === "0"
    ? Effect.succeed(false)
    : Effect.fail(rejected(operation, reply))

/**
 * The store, on the `Redis` service of the context.
 *
 * **Example** (A store for a distributed bulkhead)
 *
 * ```ts
 * import { DistributedBulkhead } from "@bulwark/core"
 * import { RedisBulkheadStore } from "@bulwark/redis"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const store = yield* RedisBulkheadStore.make({ prefix: "billing:", timeout: "500 millis" })
 *   return yield* DistributedBulkhead.make({ name: "ledger", maxConcurrent: 8, store, onStoreError: "fail-closed" })
 * }) // needs Redis.Redis and a Scope
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options?: Options): Effect.Effect<BulkheadStore.BulkheadStore, InvalidOptions, Redis.Redis> =>
  Effect.flatMap(decode(options), (decoded) =>
    Effect.map(Redis.Redis, (redis) => {
      const prefix = decoded.prefix ?? "bulwark:"
      const timeoutMs = decoded.timeout === undefined ? 500 : Duration.toMillis(decoded.timeout)
      const keys = (name: string) =>
        [`${prefix}bulkhead:${name}`, `${prefix}bulkhead-queue:${name}`, `${prefix}bulkhead-tickets:${name}`] as const
      const run = <A>(operation: BulkheadStore.Operation, effect: Effect.Effect<A, Redis.RedisError>) =>
        guarded(effect, timeoutMs, (reason: FailureReason, message) => new StoreError({ store: "redis", operation, reason, message }))
      const acquire = redis.eval(acquireScript)
      const renew = redis.eval(renewScript)
      const release = redis.eval(releaseScript)
      const inspect = redis.eval(inspectScript)
      return BulkheadStore.make({
        acquire: (request) =>
          Effect.flatMap(
            run(
              "acquire",
              acquire(...keys(request.name), request.token, request.limit, request.leaseMs, request.maxQueue, request.ticketMs)
            ),
            (reply) => {
              const answer = toAcquisition(reply)
              return answer === undefined ? Effect.fail(rejected("acquire", reply)) : Effect.succeed(answer)
            }
          ),
        renew: (name, token, leaseMs) => Effect.flatMap(run("renew", renew(...keys(name), token, leaseMs)), toBoolean("renew")),
        release: (name, token) => Effect.flatMap(run("release", release(...keys(name), token)), toBoolean("release")),
        inspect: (name) =>
          Effect.flatMap(run("inspect", inspect(...keys(name))), (reply) => {
            const inFlight = Array.isArray(reply) ? count(reply[0]) : undefined
            const queued = Array.isArray(reply) ? count(reply[1]) : undefined
            return inFlight === undefined || queued === undefined
              ? Effect.fail(rejected("inspect", reply))
              : Effect.succeed({ inFlight, queued })
          })
      })
    }))

/**
 * The options of {@link layer}: the distributed bulkhead's, and the store's
 * `prefix` and `timeout`.
 *
 * @since 0.1.0
 * @category options
 */
export interface LayerOptions extends Omit<DistributedBulkhead.Options, "store"> {
  /** Put before every key; default `"bulwark:"`. */
  readonly prefix?: string | undefined
  /** The longest a store operation may take; default 500 milliseconds. */
  readonly timeout?: Duration.Input | undefined
}

/**
 * A distributed bulkhead on this store, as a service under a key of your
 * own. Provide `Redis.Redis` to it (`NodeRedis.layer`).
 *
 * **Example** (Wiring the service)
 *
 * ```ts
 * import { DistributedBulkhead } from "@bulwark/core"
 * import { RedisBulkheadStore } from "@bulwark/redis"
 * import { NodeRedis } from "@effect/platform-node"
 * import { Context, Effect, Layer } from "effect"
 *
 * class Db extends Context.Service<Db, DistributedBulkhead.DistributedBulkhead>()("app/Db") {}
 * const DbLive = RedisBulkheadStore.layer(Db, { name: "db", maxConcurrent: 50, prefix: "shop:" }).pipe(
 *   Layer.provide(NodeRedis.layer({ url: "redis://127.0.0.1:6379", disableOfflineQueue: true }))
 * )
 * const query = Effect.succeed("rows").pipe(DistributedBulkhead.guard(Db))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <I>(
  key: Context.Key<I, DistributedBulkhead.DistributedBulkhead>,
  options: LayerOptions
): Layer.Layer<I, InvalidOptions, Redis.Redis> =>
  Layer.effect(
    key,
    Effect.gen(function*() {
      const { prefix, timeout, ...bulkhead } = options
      const store = yield* make({ prefix, timeout })
      return yield* DistributedBulkhead.make({ ...bulkhead, store })
    })
  )
