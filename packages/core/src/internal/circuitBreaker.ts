import { Clock, Context, Duration, Exit, type Metric } from "effect"
import type * as CircuitBreaker from "../CircuitBreaker.ts"
import { CircuitOpen } from "../CircuitBreaker.ts"
import { EventHub } from "./events.ts"
import { pullCounter, pullGauge } from "./metrics.ts"
import { type StoreFallback, storeReasons } from "./storeFallback.ts"

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
  readonly rejected: Record<Reason, number> = { Open: 0, ProbesBusy: 0, Isolated: 0, StoreUnavailable: 0 }
  transitions = 0
  openings = 0
  probeRenewals = 0
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
  state: CircuitOpen["state"],
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
  circuits: () => number,
  fallback?: StoreFallback<unknown> | undefined
): Array<Metric.Registration> => {
  const attributes = { name }
  const counter = (id: string, description: string, attrs: Readonly<Record<string, string>>, get: () => number) =>
    pullCounter(context, id, description, attrs, get)
  const registrations = [
    counter("bulwark.circuitbreaker.successes", "Calls recorded as Success", attributes, () => counters.successes),
    counter("bulwark.circuitbreaker.failures", "Calls recorded as Failure", attributes, () => counters.failures),
    counter("bulwark.circuitbreaker.ignored", "Calls recorded as Ignored", attributes, () => counters.ignored),
    counter("bulwark.circuitbreaker.transitions", "State transitions", attributes, () => counters.transitions),
    counter("bulwark.circuitbreaker.openings", "Transitions to Open", attributes, () => counters.openings)
  ]
  // StoreUnavailable only on a shared store: an in-process store never fails.
  const reasons: ReadonlyArray<Reason> = fallback === undefined
    ? ["Open", "ProbesBusy", "Isolated"]
    : ["Open", "ProbesBusy", "Isolated", "StoreUnavailable"]
  for (const reason of reasons) {
    registrations.push(
      counter("bulwark.circuitbreaker.rejected", "Calls rejected, by reason", { name, reason }, () => counters.rejected[reason])
    )
  }
  if (fallback !== undefined) {
    for (const reason of storeReasons) {
      registrations.push(
        counter(
          "bulwark.circuitbreaker.store_errors",
          "Operations of the shared store that failed, by reason",
          { name, reason },
          () => fallback.errors[reason]
        )
      )
    }
  }
  registrations.push(
    currentState !== undefined
      ? pullGauge(
        context,
        "bulwark.circuitbreaker.state",
        "0 Closed, 1 HalfOpen, 2 Open, 3 Isolated, 4 Disabled",
        attributes,
        (read) => stateCode[currentState(Context.get(read, Clock.Clock).currentTimeMillisUnsafe())]
      )
      : pullGauge(context, "bulwark.circuitbreaker.circuits", "Live keyed circuits", attributes, circuits)
  )
  return registrations
}
