/**
 * Fallbacks: when a call fails with an error you chose (by its `_tag`, or by
 * a predicate), answer with another effect instead: a cached value, a default,
 * a secondary dependency. The types say exactly what is left: the matched
 * errors leave the error channel and the fallback's own errors join it.
 *
 * **When to use**
 *
 * Outermost in a pipeline, to turn the rejections of the policies inside
 * (`BulkheadFull`, `CircuitOpen`, `TimeoutExceeded`, `RateLimited`) or a
 * dependency's typed failures into a degraded answer.
 *
 * **Details**
 *
 * - `Fallback.onTag(tags, fallback)` matches errors whose `_tag` is one of
 *   `tags` (one tag or a non-empty array). Those tags are removed from `E`;
 *   the fallback's `A`, `E` and `R` are added.
 * - `Fallback.when(predicate, fallback)` matches errors the predicate accepts.
 *   With a refinement (`(e): e is X => ...`) the refined type leaves `E`; with
 *   a plain predicate `E` is kept (the compiler cannot know what was matched).
 * - Unmatched errors pass through unchanged. A fallback's own failure is the
 *   call's failure: fallbacks do not chain unless you pipe another one.
 * - Only typed failures are matched. Defects and interruptions pass through:
 *   a fallback never hides a bug or a cancellation.
 * - Both are pipeable and data-first, and add nothing else to `R`.
 *
 * **Gotchas**
 *
 * - The arguments are checked when the guard is built. An empty tag list, a
 *   tag that is not a non-empty string, or a fallback that is not a function
 *   is a programming error: every call dies with an `InvalidOptions` naming
 *   the argument.
 *
 * **Example** (Serving a cached answer when the bulkhead is full)
 *
 * ```ts
 * import { Bulkhead, Fallback } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * declare const pool: Bulkhead.Bulkhead
 * declare const query: Effect.Effect<string>
 *
 * const answer = query.pipe(
 *   Bulkhead.guard(pool),                                            // E = BulkheadFull
 *   Fallback.onTag("BulkheadFull", () => Effect.succeed("cached"))  // E = never
 * )
 * ```
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import type * as Arr from "effect/Array"
import * as Fiber from "effect/Fiber"
import type * as Predicate from "effect/Predicate"
import type * as Types from "effect/Types"
import * as tracing from "./internal/tracing.ts"
import { InvalidOptions } from "./InvalidOptions.ts"

type TagOf<K> = K extends Arr.NonEmptyReadonlyArray<string> ? K[number] : K extends string ? K : never

const invalid = (api: string, message: string): Effect.Effect<never> =>
  Effect.die(new InvalidOptions({ primitive: api, name: "<unnamed>", message }))

/**
 * The fallback handler, reporting on the failing fiber's current span (if
 * traced) that the fallback was taken and for which error tag. Only a matched
 * failure gets here: the success path is `catchIf`'s own.
 */
const taken = (fallback: (e: unknown) => Effect.Effect<unknown, unknown, unknown>) => (error: unknown) => {
  const fiber = Fiber.getCurrent()
  const span = fiber === undefined ? undefined : tracing.spanOf(fiber)
  if (span !== undefined) {
    const attributes: tracing.Attributes = {}
    // A tag names an error type of the program, never its data.
    const tag = typeof error === "object" && error !== null && "_tag" in error ? error._tag : undefined
    if (typeof tag === "string") attributes["bulwark.fallback.error"] = tag
    tracing.event(fiber!, span, "bulwark.fallback.taken", attributes)
  }
  return fallback(error)
}

const checkFallback = (fallback: unknown): Array<string> =>
  typeof fallback === "function" ? [] : [`fallback: Expected a function, got ${typeof fallback}`]

const compileOnTag = (tags: unknown, fallback: unknown) => {
  const api = "Fallback.onTag"
  const list: ReadonlyArray<unknown> = Array.isArray(tags) ? tags : [tags]
  const problems: Array<string> = []
  if (list.length === 0) problems.push("tags: Expected at least one tag")
  list.forEach((tag, i) => {
    if (typeof tag !== "string" || tag.length === 0) {
      problems.push(`tags${Array.isArray(tags) ? `.${i}` : ""}: Expected a non-empty string, got ${JSON.stringify(tag) ?? String(tag)}`)
    }
  })
  problems.push(...checkFallback(fallback))
  if (problems.length > 0) {
    const died = invalid(api, problems.join("\n"))
    return (_: Effect.Effect<any, any, any>) => died
  }
  const set = new Set(list as ReadonlyArray<string>)
  const matches = (e: unknown): boolean =>
    typeof e === "object" && e !== null && "_tag" in e && set.has((e as { readonly _tag: unknown })._tag as string)
  const f = taken(fallback as (e: unknown) => Effect.Effect<unknown, unknown, unknown>)
  return (self: Effect.Effect<any, any, any>) => Effect.catchIf(self, matches, f)
}

const compileWhen = (predicate: unknown, fallback: unknown) => {
  const api = "Fallback.when"
  const problems = typeof predicate === "function" ? [] : [`predicate: Expected a function, got ${typeof predicate}`]
  problems.push(...checkFallback(fallback))
  if (problems.length > 0) {
    const died = invalid(api, problems.join("\n"))
    return (_: Effect.Effect<any, any, any>) => died
  }
  const p = predicate as (e: unknown) => boolean
  const f = taken(fallback as (e: unknown) => Effect.Effect<unknown, unknown, unknown>)
  return (self: Effect.Effect<any, any, any>) => Effect.catchIf(self, p, f)
}

/**
 * Falls back when the call fails with one of the given tags. The matched
 * tags leave the error channel; the fallback's success, errors and
 * requirements are added. Other errors, defects and interruptions pass
 * through.
 *
 * **Example** (Degrading on rejections, exactly typed)
 *
 * ```ts
 * import { Fallback } from "@bulwark/core"
 * import { Data, Effect } from "effect"
 *
 * class BulkheadFull extends Data.TaggedError("BulkheadFull") {}
 * class CircuitOpen extends Data.TaggedError("CircuitOpen") {}
 * class NotFound extends Data.TaggedError("NotFound") {}
 * class CacheMiss extends Data.TaggedError("CacheMiss") {}
 *
 * declare const query: Effect.Effect<string, BulkheadFull | CircuitOpen | NotFound>
 * declare const cached: Effect.Effect<string, CacheMiss>
 *
 * query.pipe(Fallback.onTag(["BulkheadFull", "CircuitOpen"], () => cached)) // E = NotFound | CacheMiss
 * Fallback.onTag(query, "NotFound", () => Effect.succeed(""))              // E = BulkheadFull | CircuitOpen
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const onTag: {
  <const K extends Types.Tags<E> | Arr.NonEmptyReadonlyArray<Types.Tags<E>>, E, A2, E2, R2>(
    tags: K,
    fallback: (error: Types.ExtractTag<Types.NoInfer<E>, TagOf<K>>) => Effect.Effect<A2, E2, R2>
  ): <A, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A | A2, Types.ExcludeTag<E, TagOf<K>> | E2, R | R2>
  <A, E, R, const K extends Types.Tags<E> | Arr.NonEmptyReadonlyArray<Types.Tags<E>>, A2, E2, R2>(
    self: Effect.Effect<A, E, R>,
    tags: K,
    fallback: (error: Types.ExtractTag<Types.NoInfer<E>, TagOf<K>>) => Effect.Effect<A2, E2, R2>
  ): Effect.Effect<A | A2, Types.ExcludeTag<E, TagOf<K>> | E2, R | R2>
} = function() {
  // The arguments are checked once, when a data-last guard is built.
  if (arguments.length >= 3 && Effect.isEffect(arguments[0])) return compileOnTag(arguments[1], arguments[2])(arguments[0])
  return compileOnTag(arguments[0], arguments[1])
} as any

/**
 * Falls back when the call fails with an error the predicate accepts. With a
 * refinement the refined type leaves the error channel; with a plain
 * predicate the error channel keeps `E` (plus the fallback's errors).
 * Defects and interruptions pass through.
 *
 * **Example** (Falling back on server errors only)
 *
 * ```ts
 * import { Fallback } from "@bulwark/core"
 * import { Data, Effect } from "effect"
 *
 * class HttpError extends Data.TaggedError("HttpError")<{ readonly status: number }> {}
 * declare const fetchPrice: Effect.Effect<number, HttpError>
 *
 * fetchPrice.pipe(Fallback.when((e) => e.status >= 500, () => Effect.succeed(0))) // E = HttpError
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const when: {
  <E, EB extends E, A2, E2, R2>(
    refinement: Predicate.Refinement<Types.NoInfer<E>, EB>,
    fallback: (error: EB) => Effect.Effect<A2, E2, R2>
  ): <A, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A | A2, Exclude<E, EB> | E2, R | R2>
  <E, A2, E2, R2>(
    predicate: Predicate.Predicate<Types.NoInfer<E>>,
    fallback: (error: Types.NoInfer<E>) => Effect.Effect<A2, E2, R2>
  ): <A, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A | A2, E | E2, R | R2>
  <A, E, R, EB extends E, A2, E2, R2>(
    self: Effect.Effect<A, E, R>,
    refinement: Predicate.Refinement<E, EB>,
    fallback: (error: EB) => Effect.Effect<A2, E2, R2>
  ): Effect.Effect<A | A2, Exclude<E, EB> | E2, R | R2>
  <A, E, R, A2, E2, R2>(
    self: Effect.Effect<A, E, R>,
    predicate: Predicate.Predicate<E>,
    fallback: (error: E) => Effect.Effect<A2, E2, R2>
  ): Effect.Effect<A | A2, E | E2, R | R2>
} = function() {
  if (arguments.length >= 3 && Effect.isEffect(arguments[0])) return compileWhen(arguments[1], arguments[2])(arguments[0])
  return compileWhen(arguments[0], arguments[1])
} as any
