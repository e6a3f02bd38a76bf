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
 * @since 0.1.0
 */
export { BulkheadFull } from "./Bulkhead.ts"

/**
 * @since 0.1.0
 */
export { InvalidOptions } from "./InvalidOptions.ts"
