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
import { Duration, Effect, Option, Schema, SchemaIssue, SchemaTransformation } from "effect"

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
}) {
  /** See {@link decoder}. */
  static readonly decoder = decoder
  /** See {@link wholeMillis}. */
  static readonly wholeMillis = wholeMillis
}

const formatter = SchemaIssue.makeFormatterStandardSchemaV1()

/** Each issue as `path: message`, one per line. @internal */
export const formatIssue = (issue: SchemaIssue.Issue): string =>
  formatter(issue).issues
    .map(({ message, path }) => (path === undefined || path.length === 0 ? message : `${path.map(String).join(".")}: ${message}`))
    .join("\n")

/** The name an instance gets when its options give none. @internal */
export const unnamed = "<unnamed>"

/** The `name` of options, if they have one. @internal */
export const nameOf = (input: unknown): string => {
  if (typeof input === "object" && input !== null && "name" in input) {
    const name = (input as { readonly name: unknown }).name
    if (typeof name === "string" && name.length > 0) return name
  }
  return unnamed
}

/**
 * Decodes options with every issue reported, turning a Schema failure into
 * the toolkit's `InvalidOptions`.
 *
 * @internal
 */
export const decodeOptions = <S extends Schema.Decoder<unknown>>(primitive: string, schema: S) => {
  const decode = Schema.decodeUnknownEffect(schema)
  return (input: unknown): Effect.Effect<S["Type"], InvalidOptions> =>
    Effect.mapError(
      decode(input, { errors: "all", onExcessProperty: "error" }) as Effect.Effect<S["Type"], Schema.SchemaError>,
      (error) => new InvalidOptions({ primitive, name: nameOf(input), message: formatIssue(error.issue) })
    )
}

/**
 * Decodes options the way every Bulwark primitive does, for packages that
 * add stores or primitives: every error at once, unknown fields refused,
 * absent options read as `{}`, and a failure is one `InvalidOptions` whose
 * `message` names each bad field and its rule (`field: rule` per line).
 *
 * **Example** (A store's options)
 *
 * ```ts
 * import { InvalidOptions } from "@bulwark/core"
 * import { Schema } from "effect"
 *
 * const Options = Schema.Struct({ prefix: Schema.optional(Schema.String) })
 * const decode = InvalidOptions.decoder("MyStore", Options)
 * const bad = decode({ prefix: 42 }) // fails: InvalidOptions "prefix: Expected string, got 42"
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export function decoder<S extends Schema.Decoder<unknown>>(
  primitive: string,
  schema: S
): (input: unknown) => Effect.Effect<S["Type"], InvalidOptions> {
  const decode = decodeOptions(primitive, schema)
  return (input) => decode(input ?? {})
}

const show = (input: unknown): string => {
  try {
    return JSON.stringify(input) ?? String(input)
  } catch {
    return String(input)
  }
}

/**
 * A duration option (`"100 millis"`, a number of milliseconds, a
 * `Duration`) that must be a whole number of milliseconds between `minimum`
 * and `maximum`: what a store's timeouts, leases and times to live take.
 * Anything else is refused with `Expected a duration of a whole number of
 * milliseconds >= <minimum> such as <example>, got <input>`.
 *
 * **Example** (A timeout of at least 1 ms)
 *
 * ```ts
 * import { InvalidOptions } from "@bulwark/core"
 * import { Schema } from "effect"
 *
 * const Options = Schema.Struct({
 *   timeout: Schema.optional(InvalidOptions.wholeMillis({ minimum: 1, example: `"500 millis"` }))
 * })
 * ```
 *
 * @since 0.1.0
 * @category schemas
 */
export function wholeMillis(rule: {
  readonly minimum: number
  readonly maximum?: number | undefined
  /** Shown in the message, e.g. `"100 millis"` (with its quotes). */
  readonly example: string
}): Schema.decodeTo<Schema.Duration, Schema.Unknown> {
  const maximum = rule.maximum ?? Number.MAX_SAFE_INTEGER
  return Schema.Unknown.pipe(
    Schema.decodeTo(
      Schema.Duration,
      SchemaTransformation.transformEffect<Duration.Duration, unknown>({
        decode: (input) => {
          const decoded = typeof input === "string" || typeof input === "number" || Duration.isDuration(input)
            ? Duration.fromInput(input as Duration.Input)
            : Option.none()
          if (Option.isSome(decoded)) {
            const ms = Duration.toMillis(decoded.value)
            if (Number.isInteger(ms) && ms >= rule.minimum && ms <= maximum) return Effect.succeed(decoded.value)
          }
          return Effect.fail(
            new SchemaIssue.InvalidValue({
              message: `Expected a duration of a whole number of milliseconds >= ${rule.minimum} such as ${rule.example}, got ${
                show(input)
              }`
            })
          )
        },
        encode: (duration) => Effect.succeed(duration)
      })
    )
  ) as any
}
