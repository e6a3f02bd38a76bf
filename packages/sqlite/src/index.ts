/**
 * Bulwark's SQLite stores, on Node's built-in `node:sqlite` (Node >= 22.19):
 * the processes of one machine share circuit breakers, bulkheads, rate
 * limits and idempotency keys through one database file, by default under
 * the user's cache directory. No dependency, no server.
 *
 * ```ts
 * import { SqliteBulkheadStore, SqliteCircuitBreakerStore, SqliteIdempotencyStore, SqliteRateLimiterStore } from "@bulwark/sqlite"
 * ```
 *
 * @since 0.1.0
 */

/**
 * A `BulkheadStore` in a SQLite file: one concurrency cap for every process of one machine; slots of dead
 * processes come back at once.
 *
 * @since 0.1.0
 */
export * as SqliteBulkheadStore from "./SqliteBulkheadStore.ts"

/**
 * A `CircuitBreakerStore` in a SQLite file: one circuit per breaker for every process of one machine.
 *
 * @since 0.1.0
 */
export * as SqliteCircuitBreakerStore from "./SqliteCircuitBreakerStore.ts"

/**
 * The shared file: default location, schema version, a start-up check.
 *
 * @since 0.1.0
 */
export * as SqliteDatabase from "./SqliteDatabase.ts"

/**
 * An `IdempotencyStore` in a SQLite file: at most once per key across the processes of one machine.
 *
 * @since 0.1.0
 */
export * as SqliteIdempotencyStore from "./SqliteIdempotencyStore.ts"

/**
 * A `RateLimiterStore` in a SQLite file: one limit for every process of one machine; blocks survive restarts.
 *
 * @since 0.1.0
 */
export * as SqliteRateLimiterStore from "./SqliteRateLimiterStore.ts"
