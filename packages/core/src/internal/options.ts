import { Duration, Effect, Option, Schema, SchemaIssue, SchemaTransformation } from "effect"
import { decodeOptions, formatIssue, InvalidOptions, nameOf, unnamed } from "../InvalidOptions.ts"

export { decodeOptions, formatIssue, unnamed }

const describe = (input: unknown): string => {
  if (typeof input === "string") return JSON.stringify(input)
  if (typeof input === "bigint") return `${input}n`
  if (typeof input === "number") return String(input)
  if (Duration.isDuration(input)) return Duration.format(input)
  try {
    return JSON.stringify(input) ?? String(input)
  } catch {
    return String(input)
  }
}

/** `Duration.fromInput` reads any object as `{ seconds, millis, ... }`; only plain objects are meant that way. */
const isDurationShaped = (input: unknown): boolean => {
  if (input === null || input === undefined) return false
  if (typeof input !== "object") return true
  if (Duration.isDuration(input) || Array.isArray(input)) return true
  const proto = Object.getPrototypeOf(input)
  return proto === Object.prototype || proto === null
}

const durationFromInput = (acceptNumbers: boolean) =>
  SchemaTransformation.transformEffect<Duration.Duration, unknown>({
    decode: (input) => {
      if (!acceptNumbers && typeof input === "number") {
        return Effect.fail(
          new SchemaIssue.InvalidValue({
            message: `Expected a duration such as "1 minute" (a number counts calls and must be an integer >= 1), got ${describe(input)}`
          })
        )
      }
      const decoded = (typeof input === "number" && !Number.isFinite(input)) || !isDurationShaped(input)
        ? Option.none()
        : Duration.fromInput(input as Duration.Input)
      if (Option.isNone(decoded)) {
        return Effect.fail(
          new SchemaIssue.InvalidValue({
            message: `Expected a duration such as "2 seconds" or a number of milliseconds, got ${describe(input)}`
          })
        )
      }
      const duration = decoded.value
      if (Duration.isNegative(duration)) {
        return Effect.fail(new SchemaIssue.InvalidValue({ message: `Expected a duration >= 0, got ${describe(input)}` }))
      }
      if (!Duration.isFinite(duration)) {
        return Effect.fail(new SchemaIssue.InvalidValue({ message: `Expected a finite duration, got ${describe(input)}` }))
      }
      return Effect.succeed(duration)
    },
    encode: (duration) => Effect.succeed(duration)
  })

/**
 * Anything `Duration.fromInput` accepts (`"2 seconds"`, a number of
 * milliseconds, a `Duration`, ...), decoded to a finite, non-negative
 * `Duration`.
 *
 * @internal
 */
export const DurationInput: Schema.decodeTo<Schema.Duration, Schema.Unknown> = Schema.Unknown.pipe(
  Schema.decodeTo(Schema.Duration, durationFromInput(true))
) as any

/**
 * A {@link DurationInput} greater than zero.
 *
 * @internal
 */
export const PositiveDuration = DurationInput.check(
  Schema.makeFilter((d: Duration.Duration) =>
    Duration.isGreaterThan(d, Duration.zero) ? undefined : `Expected a duration > 0, got ${Duration.format(d)}`
  )
)

/**
 * A duration given as text or a `Duration`, never as a bare number: for
 * options where a number means something else (a count of calls).
 *
 * @internal
 */
export const DurationText: Schema.decodeTo<Schema.Duration, Schema.Unknown> = Schema.Unknown.pipe(
  Schema.decodeTo(Schema.Duration, durationFromInput(false))
) as any

/** @internal */
export const PositiveInt = Schema.Number.check(
  Schema.makeFilter((n: number) =>
    Number.isInteger(n) && n >= 1 ? undefined : `Expected an integer >= 1, got ${describe(n)}`
  )
)

/** @internal */
export const NonNegativeInt = Schema.Number.check(
  Schema.makeFilter((n: number) =>
    Number.isInteger(n) && n >= 0 ? undefined : `Expected an integer >= 0, got ${describe(n)}`
  )
)

/** @internal */
export const Name = Schema.String.check(
  Schema.makeFilter((s: string) => s.trim().length > 0 ? undefined : "Expected a non-empty name")
)

/**
 * Decodes options synchronously (for guards built outside an Effect), turning
 * a failure into `InvalidOptions` naming every bad field.
 *
 * @internal
 */
export const decodeSync = <S extends Schema.Decoder<unknown>>(primitive: string, schema: S) => {
  const decode = Schema.decodeUnknownResult(schema)
  return (input: unknown): S["Type"] | InvalidOptions => {
    const result = decode(input, { errors: "all", onExcessProperty: "error" })
    if (result._tag === "Success") return result.success
    return new InvalidOptions({ primitive, name: nameOf(input), message: formatIssue(result.failure.issue) })
  }
}

/**
 * For guards: the decoded options, or an effect that dies with the
 * `InvalidOptions` (bad options given to a guard are a programming error;
 * every call of that guard dies without starting).
 *
 * @internal
 */
export const decodeOrDie = <S extends Schema.Decoder<unknown>>(primitive: string, schema: S) => {
  const decode = decodeSync(primitive, schema)
  return (input: unknown): S["Type"] | Effect.Effect<never> => {
    const decoded = decode(input)
    return decoded instanceof InvalidOptions ? Effect.die(decoded) : decoded
  }
}
