import { Clock, Effect, Exit, References, Tracer } from "effect"
import type * as Fiber from "effect/Fiber"

/**
 * Tracing through Effect's `Tracer`, shared by every primitive (and by
 * pipelines built from them).
 *
 * The rules, so that a call without tracing pays nothing measurable:
 *
 * - Nothing happens unless the fiber has a current span that a backend
 *   records: {@link spanOf} is one property read and a comparison when there
 *   is none, and only then are attribute objects built. Bulwark never starts
 *   a trace of its own.
 * - A decision taken at once (admitted, rejected, retried) annotates the
 *   current span or adds an event to it; no span is created for it.
 * - A child span is created only where the call waits anyway (a queue, a
 *   reserved slot, a hedged attempt): its cost is small next to the wait.
 * - Attribute values are names, reasons, states and numbers from the
 *   configuration or the decision: never the caller's data, and keys of keyed
 *   primitives only when the user opted in with `exposeKeys`.
 *
 * Hot paths check first and build attributes second:
 *
 * ```ts
 * const span = tracing.spanOf(fiber)
 * if (span !== undefined) tracing.event(fiber, span, "bulwark.x.rejected", { "bulwark.name": name })
 * ```
 *
 * In the hottest functions (a rejection, the breaker's closed path) the
 * check is `fiber.cache.span !== undefined`, inline, and the rest goes to a
 * separate method: a function that grows past V8's inlining budget is no
 * longer inlined into its callers, which costs more than the check.
 *
 * @internal
 */

/** Span attributes and event attributes, as Effect's `Tracer.Span` takes them. */
export type Attributes = Record<string, unknown>

/**
 * The fiber's current span when it is worth annotating: an open, sampled
 * Effect span (an external parent cannot be written to) under a tracer that
 * exports something. With Effect's default native tracer nobody can read the
 * spans, so they are left alone, as `Tracer.nativeTracer`'s documentation
 * suggests.
 *
 * @internal
 */
export const spanOf = (fiber: Fiber.Fiber<any, any>): Tracer.Span | undefined => {
  const span = fiber.cache.span
  if (span === undefined) return undefined
  const tracer = fiber.cache.tracer
  if (tracer === undefined || tracer === Tracer.nativeTracer) return undefined
  if (span._tag !== "Span" || !span.sampled || span.status._tag === "Ended") return undefined
  return span
}

/**
 * Sets attributes on a span (the caller's current span, or one of Bulwark's).
 *
 * @internal
 */
export const annotate = (span: Tracer.Span, attributes: Attributes): void => {
  for (const key in attributes) span.attribute(key, attributes[key])
}

/**
 * The time of an event on the fiber's `Clock` (so `TestClock` drives it), or
 * 0 when span timing is turned off, as Effect does for span starts and ends.
 *
 * @internal
 */
export const timestamp = (fiber: Fiber.Fiber<any, any>): bigint =>
  fiber.getRef(References.TracerTimingEnabled) ? fiber.getRef(Clock.Clock).currentTimeNanosUnsafe() : BigInt(0)

/**
 * Adds an event to a span, timed by the fiber's clock.
 *
 * @internal
 */
export const event = (fiber: Fiber.Fiber<any, any>, span: Tracer.Span, name: string, attributes: Attributes): void => {
  span.event(name, timestamp(fiber), attributes)
}

/**
 * How a wait ended, for the `<primitive>.outcome` attribute of a wait span:
 * `Admitted`, the `reason` of the Bulwark error it failed with (every Bulwark
 * error has one), `Interrupted`, or `Defect`.
 *
 * @internal
 */
export const waitOutcome = (exit: Exit.Exit<unknown, unknown>): string => {
  if (Exit.isSuccess(exit)) return "Admitted"
  let interrupted = false
  for (const reason of exit.cause.reasons) {
    if (reason._tag === "Fail") {
      const error = reason.error
      return typeof error === "object" && error !== null && "reason" in error && typeof error.reason === "string"
        ? error.reason
        : "Failure"
    }
    if (reason._tag === "Interrupt") interrupted = true
    else return "Defect"
  }
  return interrupted ? "Interrupted" : "Defect"
}

/**
 * Runs `wait` (a wait for admission, never the guarded call itself) in a
 * child span of the current span, and records how it ended under
 * `outcomeKey` (see {@link waitOutcome}). The span ends with the wait's exit,
 * so a rejection after waiting also marks it as an error. Call it only when
 * {@link spanOf} found a span.
 *
 * @internal
 */
export const withWaitSpan = <A, E, R>(
  name: string,
  attributes: Attributes,
  outcomeKey: string,
  wait: Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> =>
  Effect.useSpan(name, { attributes }, (span) =>
    Effect.onExit(wait, (exit) =>
      Effect.sync(() => {
        span.attribute(outcomeKey, waitOutcome(exit))
      })))

/**
 * Runs `self` in a child span of the current span, as the parent of the
 * spans `self` creates and of the events Bulwark's primitives add inside it
 * (a hedged attempt, a `bulwark.policy` pipeline). Call it only when
 * {@link spanOf} found a span: without one it would start a trace of its own.
 *
 * @internal
 */
export const withChildSpan = <A, E, R>(
  name: string,
  attributes: Attributes,
  self: Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> =>
  Effect.useSpan(name, { attributes }, (span) =>
    // No stack capture: it costs an `Error` per call and points into Bulwark, not at the caller.
    Effect.withParentSpan(self, span, { captureStackTrace: false })) as Effect.Effect<A, E, R>
