import { InvalidOptions } from "@bulwark/core"
import { Duration, Effect, Option, Schema, SchemaIssue, SchemaTransformation } from "effect"

const formatter = SchemaIssue.makeFormatterStandardSchemaV1()

const formatIssue = (issue: SchemaIssue.Issue): string =>
  formatter(issue).issues
    .map(({ message, path }) => (path === undefined || path.length === 0 ? message : `${path.map(String).join(".")}: ${message}`))
    .join("\n")

const show = (input: unknown): string => {
  try {
    return JSON.stringify(input) ?? String(input)
  } catch {
    return String(input)
  }
}

/** SQLite's busy timeout is a C `int` of milliseconds. */
const MAX_LOCK_TIMEOUT_MS = 2_147_483_647

/**
 * A duration (`"100 millis"`, milliseconds, a `Duration`) of a whole number
 * of milliseconds between `min` and `max`.
 */
const wholeMillis = (min: number, max: number, example: string): Schema.decodeTo<Schema.Duration, Schema.Unknown> =>
  Schema.Unknown.pipe(
    Schema.decodeTo(
      Schema.Duration,
      SchemaTransformation.transformEffect<Duration.Duration, unknown>({
        decode: (input) => {
          const decoded = typeof input === "string" || typeof input === "number" || Duration.isDuration(input)
            ? Duration.fromInput(input as Duration.Input)
            : Option.none()
          if (Option.isSome(decoded)) {
            const ms = Duration.toMillis(decoded.value)
            if (Number.isInteger(ms) && ms >= min && ms <= max) return Effect.succeed(decoded.value)
          }
          return Effect.fail(
            new SchemaIssue.InvalidValue({
              message: `Expected a duration of a whole number of milliseconds >= ${min} such as ${example}, got ${show(input)}`
            })
          )
        },
        encode: (duration) => Effect.succeed(duration)
      })
    )
  ) as any

/**
 * What SQLite's busy timeout takes: a whole number of milliseconds, 0 or
 * more (0: fail at once when the file is locked).
 *
 * @internal
 */
export const LockTimeout = wholeMillis(0, MAX_LOCK_TIMEOUT_MS, `"100 millis"`)

/**
 * A time to live: a whole number of milliseconds, at least one.
 *
 * @internal
 */
export const TimeToLive = wholeMillis(1, Number.MAX_SAFE_INTEGER, `"10 minutes"`)

/**
 * A path to the database file: a non-empty string without NUL bytes.
 *
 * @internal
 */
export const File = Schema.String.check(
  Schema.makeFilter((s: string) =>
    s.length > 0 && !s.includes("\0") ? undefined : `Expected a path to the database file, got ${show(s)}`
  )
)

/**
 * The options every SQLite store takes.
 *
 * @internal
 */
export const databaseFields = {
  file: Schema.optional(File),
  lockTimeout: Schema.optional(LockTimeout)
}

/** The default bound on waiting for the file's lock. @internal */
export const DEFAULT_LOCK_TIMEOUT_MS = 100

/** @internal */
export const lockTimeoutMs = (decoded: Duration.Duration | undefined): number =>
  decoded === undefined ? DEFAULT_LOCK_TIMEOUT_MS : Duration.toMillis(decoded)

const nameOf = (input: unknown): string => {
  if (typeof input === "object" && input !== null && "name" in input) {
    const name = (input as { readonly name: unknown }).name
    if (typeof name === "string" && name.length > 0) return name
  }
  return "<unnamed>"
}

/**
 * Decodes a store's options, reporting every bad field in one
 * `InvalidOptions` (as `@bulwark/core` does).
 *
 * @internal
 */
export const decodeOptions = <S extends Schema.Decoder<unknown>>(primitive: string, schema: S) => {
  const decode = Schema.decodeUnknownEffect(schema)
  return (input: unknown): Effect.Effect<S["Type"], InvalidOptions> =>
    Effect.mapError(
      decode(input ?? {}, { errors: "all", onExcessProperty: "error" }) as Effect.Effect<S["Type"], Schema.SchemaError>,
      (error) => new InvalidOptions({ primitive, name: nameOf(input), message: formatIssue(error.issue) })
    )
}
