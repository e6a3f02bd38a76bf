import { Duration, Effect, Schema } from "effect"
import { InvalidOptions } from "../InvalidOptions.ts"
import type * as Store from "../RateLimiterStore.ts"
import { isRateLimiterStore } from "../RateLimiterStore.ts"
import { OnStoreError } from "../Store.ts"
import { DurationInput, Name, PositiveInt } from "./options.ts"

/** A duration of a whole number of milliseconds, at least one: the resolution of Effect's `Clock`. */
export const WholeMillis = DurationInput.check(
  Schema.makeFilter((d: Duration.Duration) => {
    const ms = Duration.toMillis(d)
    return Number.isInteger(ms) && ms >= 1
      ? undefined
      : `Expected a whole number of milliseconds >= 1, got ${Duration.format(d)}`
  })
)

export const TokenBucket = Schema.Struct({
  _tag: Schema.tag("TokenBucket"),
  capacity: PositiveInt,
  refill: PositiveInt,
  per: WholeMillis
})

export const FixedWindow = Schema.Struct({
  _tag: Schema.tag("FixedWindow"),
  limit: PositiveInt,
  window: WholeMillis
})

export const SlidingWindow = Schema.Struct({
  _tag: Schema.tag("SlidingWindow"),
  limit: PositiveInt,
  window: WholeMillis
})

export const Gcra = Schema.Struct({
  _tag: Schema.tag("Gcra"),
  rate: PositiveInt,
  per: WholeMillis,
  burst: Schema.optional(PositiveInt)
})

export const Algorithm = Schema.Union([TokenBucket, FixedWindow, SlidingWindow, Gcra])

export const StoreSchema = Schema.declare(isRateLimiterStore, {
  expected: "a RateLimiterStore (RateLimiterStore.make or RateLimiterStore.memory)"
})

export const OnExceeded = Schema.Literals(["wait", "fail"])

export const commonFields = {
  name: Name,
  algorithm: Algorithm,
  onExceeded: Schema.optional(OnExceeded),
  maxWait: Schema.optional(DurationInput),
  store: Schema.optional(StoreSchema),
  onStoreError: Schema.optional(OnStoreError)
}

/** The store's view of a decoded algorithm: numbers only. */
export const toStoreAlgorithm = (a: typeof Algorithm.Type): Store.Algorithm => {
  switch (a._tag) {
    case "TokenBucket":
      return { _tag: "TokenBucket", capacity: a.capacity, refill: a.refill, perMillis: Duration.toMillis(a.per) }
    case "FixedWindow":
      return { _tag: "FixedWindow", limit: a.limit, windowMillis: Duration.toMillis(a.window) }
    case "SlidingWindow":
      return { _tag: "SlidingWindow", limit: a.limit, windowMillis: Duration.toMillis(a.window) }
    case "Gcra":
      return { _tag: "Gcra", rate: a.rate, perMillis: Duration.toMillis(a.per), burst: a.burst ?? 1 }
  }
}

export interface Settings {
  readonly algorithm: Store.Algorithm
  readonly wait: boolean
  /** 0 when callers never wait; `Infinity` when they wait as long as it takes. */
  readonly maxWaitMs: number
  /** What a shared store's failure means (an in-process store never fails). */
  readonly onStoreError: OnStoreError
}

/** The checks that involve more than one field; the Schema has checked each field. */
export const settingsOf = (
  primitive: string,
  decoded: {
    readonly name: string
    readonly algorithm: typeof Algorithm.Type
    readonly onExceeded?: "wait" | "fail" | undefined
    readonly maxWait?: Duration.Duration | undefined
    readonly store?: Store.RateLimiterStore | undefined
    readonly onStoreError?: OnStoreError | undefined
  }
): Effect.Effect<Settings, InvalidOptions> => {
  const wait = decoded.onExceeded === "wait"
  if (!wait && decoded.maxWait !== undefined) {
    return Effect.fail(
      new InvalidOptions({
        primitive,
        name: decoded.name,
        message: `maxWait: applies only with onExceeded "wait" (callers that fail at once never wait)`
      })
    )
  }
  return Effect.succeed({
    algorithm: toStoreAlgorithm(decoded.algorithm),
    wait,
    maxWaitMs: wait ? (decoded.maxWait === undefined ? Infinity : Duration.toMillis(decoded.maxWait)) : 0,
    onStoreError: decoded.onStoreError ?? decoded.store?.onStoreError ?? "local"
  })
}

/**
 * Per-call cost, validated once when a guard is built. A bad cost is a
 * programming error: the call dies with a message naming the option.
 */
export const parseCost = (
  api: string,
  options: { readonly cost?: number | undefined } | undefined
): number | Effect.Effect<never> => {
  const cost = options?.cost ?? 1
  if (!(typeof cost === "number" && Number.isInteger(cost) && cost >= 1)) {
    return Effect.die(new globalThis.Error(`${api}: option "cost" must be a positive integer, got ${String(cost)}`))
  }
  return cost
}

/** A block duration; a bad one is a programming error. */
export const parseBlock = (api: string, duration: Duration.Input): number | Effect.Effect<never> => {
  const decoded = Duration.fromInput(duration)
  if (decoded._tag === "None" || Duration.isNegative(decoded.value) || !Duration.isFinite(decoded.value)) {
    return Effect.die(new globalThis.Error(`${api}: the duration must be finite and >= 0, got ${String(duration)}`))
  }
  return Duration.toMillis(decoded.value)
}
