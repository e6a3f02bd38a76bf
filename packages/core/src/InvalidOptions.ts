/**
 * The one error every Bulwark primitive raises for bad configuration.
 *
 * Options are decoded with `effect/Schema` before anything is built, so a
 * `maxConcurrent` of `0`, a negative `maxQueue` or a malformed duration fails
 * construction with `InvalidOptions` instead of being clamped into something
 * the caller did not ask for. The `message` names every bad field and the rule
 * it broke, so it can be shown to an operator as it is.
 *
 * **Example** (Reporting bad options)
 *
 * ```ts
 * import { Bulkhead, InvalidOptions } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * const program = Bulkhead.make({ name: "db", maxConcurrent: 0 }).pipe(
 *   Effect.catchTag("InvalidOptions", (e: InvalidOptions) =>
 *     Effect.logError(e.message) // "maxConcurrent: Expected a value greater than or equal to 1, got 0"
 *   )
 * )
 * ```
 *
 * @since 0.1.0
 */
import { Schema } from "effect"

/**
 * Raised by `make`, `layer`, `resize` and friends of every primitive when the
 * options do not satisfy their Schema.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidOptions extends Schema.TaggedError<InvalidOptions>()("InvalidOptions", {
  /** The primitive whose options were rejected, e.g. `"Bulkhead"`. */
  primitive: Schema.String,
  /** The instance name if it could be read, otherwise `"<unnamed>"`. */
  name: Schema.String,
  /** Each bad field and its rule, one per line: `field: rule`. */
  message: Schema.String
}) {}
