import { Clock, Context, Duration, Exit, Metric } from "effect"
import type * as CircuitBreaker from "../CircuitBreaker.ts"
import { CircuitOpen } from "../CircuitBreaker.ts"
import { EventHub } from "./events.ts"

/**
 * What a breaker keeps besides its circuits (which live in its store):
 * counters, errors, events and metrics.
 */

type State = CircuitBreaker.State
type Outcome = CircuitBreaker.Outcome
type Reason = CircuitOpen["reason"]

// -----------------------------------------------------------------------------
// counters, errors, events, metrics
// -----------------------------------------------------------------------------

export const stateCode: Record<State, number> = { Closed: 0, HalfOpen: 1, Open: 2, Isolated: 3, Disabled: 4 }

/** The counters of one breaker (all its circuits). */
export class Counters {
  successes = 0
  failures = 0
  ignored = 0
  readonly rejected: Record<Reason, number> = { Open: 0, ProbesBusy: 0, Isolated: 0 }
  transitions = 0
  openings = 0
  readonly hub = new EventHub<CircuitBreaker.Event>()
}

/**
 * Builds a `CircuitOpen` without running its Schema constructor: the same
 * prototype and fields, no validation and no stack trace, so that rejecting
 * while open stays well under a microsecond.
 */
export const fastOpenError = (
  name: string,
  key: string | undefined,
  reason: Reason,
  state: "Open" | "HalfOpen" | "Isolated",
  retryAfterMs: number
): CircuitOpen => {
  const error = Object.create(CircuitOpen.prototype)
  error._tag = "CircuitOpen"
  error.name = name
  if (key !== undefined) error.key = key
  error.reason = reason
  error.state = state
  error.retryAfter = retryAfterMs === Infinity ? Duration.infinity : Duration.millis(retryAfterMs)
  return error
}

export const defaultClassify = (exit: Exit.Exit<unknown, unknown>): Outcome => {
  if (Exit.isSuccess(exit)) return "Success"
  // An interruption says nothing about the dependency's health, unless the
  // call also failed or died.
  for (const reason of exit.cause.reasons) {
    if (reason._tag !== "Interrupt") return "Failure"
  }
  return "Ignored"
}

/** Pull-based metrics, read from the counters and the circuits when exported. */
export const registerMetrics = (
  context: Context.Context<never>,
  name: string,
  counters: Counters,
  currentState: ((now: number) => State) | undefined,
  circuits: () => number
): Array<Metric.Registration> => {
  const attributes = { name }
  const noop = () => {}
  const counter = (id: string, description: string, attrs: Readonly<Record<string, string>>, get: () => number) =>
    Metric.registerUnsafe(Metric.counter(id, { description, attributes: attrs }), context, {
      get: () => ({ count: get(), incremental: true }),
      update: noop,
      modify: noop
    })
  const registrations = [
    counter("bulwark.circuitbreaker.successes", "Calls recorded as Success", attributes, () => counters.successes),
    counter("bulwark.circuitbreaker.failures", "Calls recorded as Failure", attributes, () => counters.failures),
    counter("bulwark.circuitbreaker.ignored", "Calls recorded as Ignored", attributes, () => counters.ignored),
    counter("bulwark.circuitbreaker.transitions", "State transitions", attributes, () => counters.transitions),
    counter("bulwark.circuitbreaker.openings", "Transitions to Open", attributes, () => counters.openings)
  ]
  for (const reason of ["Open", "ProbesBusy", "Isolated"] as const) {
    registrations.push(
      counter("bulwark.circuitbreaker.rejected", "Calls rejected, by reason", { name, reason }, () => counters.rejected[reason])
    )
  }
  if (currentState !== undefined) {
    registrations.push(
      Metric.registerUnsafe(
        Metric.gauge("bulwark.circuitbreaker.state", {
          description: "0 Closed, 1 HalfOpen, 2 Open, 3 Isolated, 4 Disabled",
          attributes
        }),
        context,
        {
          get: (ctx) => ({ value: stateCode[currentState(Context.get(ctx, Clock.Clock).currentTimeMillisUnsafe())] }),
          update: noop,
          modify: noop
        }
      )
    )
  } else {
    registrations.push(
      Metric.registerUnsafe(
        Metric.gauge("bulwark.circuitbreaker.circuits", { description: "Live keyed circuits", attributes }),
        context,
        { get: () => ({ value: circuits() }), update: noop, modify: noop }
      )
    )
  }
  return registrations
}
