/**
 * Bulwark: resilience primitives for Effect 4.
 *
 * Each primitive is a module imported as a namespace:
 *
 * ```ts
 * import { Bulkhead } from "@bulwark/core"
 * ```
 *
 * @since 0.1.0
 */

/**
 * Concurrency caps with a FIFO waiting room.
 *
 * @since 0.1.0
 */
export * as Bulkhead from "./Bulkhead.ts"

/**
 * One bulkhead compartment per key (tenant, host), with a bound on live keys.
 *
 * @since 0.1.0
 */
export * as KeyedBulkhead from "./KeyedBulkhead.ts"

/**
 * Named bulkheads of one application, shut down together.
 *
 * @since 0.1.0
 */
export * as BulkheadRegistry from "./BulkheadRegistry.ts"

/**
 * @since 0.1.0
 */
export { BulkheadFull } from "./Bulkhead.ts"

/**
 * @since 0.1.0
 */
export { InvalidOptions } from "./InvalidOptions.ts"

/**
 * Fail fast while a dependency keeps failing.
 *
 * @since 0.1.0
 */
export * as CircuitBreaker from "./CircuitBreaker.ts"

/**
 * @since 0.1.0
 */
export { CircuitOpen } from "./CircuitBreaker.ts"

/**
 * Time limits on calls, fixed or named and configured in one Layer.
 *
 * @since 0.1.0
 */
export * as Timeout from "./Timeout.ts"

/**
 * The table of named timeouts `Timeout.named` reads, with counters per name.
 *
 * @since 0.1.0
 */
export * as Timeouts from "./Timeouts.ts"

/**
 * @since 0.1.0
 */
export { TimeoutExceeded } from "./Timeout.ts"

/**
 * Retries with capped exponential backoff, jitter, `retryAfter` and a shared retry budget.
 *
 * @since 0.1.0
 */
export * as Retry from "./Retry.ts"

/**
 * Throughput over time: token bucket, GCRA, fixed and exact sliding windows, FIFO waiting with reservations.
 *
 * @since 0.1.0
 */
export * as RateLimiter from "./RateLimiter.ts"

/**
 * One rate limit per key (user, API key, tenant), with a bound on keys with state.
 *
 * @since 0.1.0
 */
export * as KeyedRateLimiter from "./KeyedRateLimiter.ts"

/**
 * Where rate limiter state lives: the one-call-per-decision store contract and the in-memory store.
 *
 * @since 0.1.0
 */
export * as RateLimiterStore from "./RateLimiterStore.ts"

/**
 * @since 0.1.0
 */
export { RateLimited } from "./RateLimiter.ts"

/**
 * Where circuit breaker state lives: the one-call-per-decision store contract and the in-memory store.
 *
 * @since 0.1.0
 */
export * as CircuitBreakerStore from "./CircuitBreakerStore.ts"

/**
 * Fault injection for tests and game days: failures, latency, defects and interruptions at a seeded rate.
 *
 * @since 0.1.0
 */
export * as Chaos from "./Chaos.ts"

/**
 * Hedged requests: a second attempt when the first is slow, the first success wins.
 *
 * @since 0.1.0
 */
export * as Hedge from "./Hedge.ts"

/**
 * Typed fallbacks chosen by error tag or predicate.
 *
 * @since 0.1.0
 */
export * as Fallback from "./Fallback.ts"

/**
 * Policies: the primitives composed in a known order, with an exact error type, a description, and configuration from Effect Config.
 *
 * @since 0.1.0
 */
export * as Policy from "./Policy.ts"

/**
 * At most one execution per key across the processes sharing a store; duplicates fail or wait, completed keys replay.
 *
 * @since 0.1.0
 */
export * as Idempotency from "./Idempotency.ts"

/**
 * @since 0.1.0
 */
export { IdempotencyError } from "./Idempotency.ts"

/**
 * Where idempotency claims and results live: the one-step-per-operation store contract and the in-memory store.
 *
 * @since 0.1.0
 */
export * as IdempotencyStore from "./IdempotencyStore.ts"

/**
 * Shared stores: the error every store fails with, and the `onStoreError` policies.
 *
 * @since 0.1.0
 */
export * as Store from "./Store.ts"

/**
 * A shared store could not decide (see `Store`).
 *
 * @since 0.1.0
 */
export { StoreError } from "./Store.ts"

/**
 * One concurrency cap across processes: slots held as leases in a shared store, FIFO waiting by ticket, a policy for store failures.
 *
 * @since 0.1.0
 */
export * as DistributedBulkhead from "./DistributedBulkhead.ts"

/**
 * Where distributed bulkhead slots live: the one-step-per-operation store contract and the in-memory store.
 *
 * @since 0.1.0
 */
export * as BulkheadStore from "./BulkheadStore.ts"
