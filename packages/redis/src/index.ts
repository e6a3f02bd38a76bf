/**
 * Bulwark's Redis stores, on Effect's own `Redis` service
 * (`effect/persistence/Redis`). The application provides the connection,
 * usually with `NodeRedis.layer({ url })` from `@effect/platform-node`;
 * nothing here creates a client.
 *
 * ```ts
 * import { RedisIdempotencyStore } from "@bulwark/redis"
 * ```
 *
 * @since 0.1.0
 */

/**
 * An `IdempotencyStore` in Redis: at most once per key across processes, one Lua script per decision.
 *
 * @since 0.1.0
 */
export * as RedisIdempotencyStore from "./RedisIdempotencyStore.ts"

/**
 * A `BulkheadStore` in Redis: one concurrency cap across processes, slots as leases in a sorted set, one Lua script per operation.
 *
 * @since 0.1.0
 */
export * as RedisBulkheadStore from "./RedisBulkheadStore.ts"

/**
 * A `RateLimiterStore` in Redis: one limit shared by every process, every algorithm, one Lua script per decision.
 *
 * @since 0.1.0
 */
export * as RedisRateLimiterStore from "./RedisRateLimiterStore.ts"

/**
 * A `CircuitBreakerStore` in Redis: circuits shared by every process, fenced permits, leased probes, one Lua script per decision.
 *
 * @since 0.1.0
 */
export * as RedisCircuitBreakerStore from "./RedisCircuitBreakerStore.ts"
