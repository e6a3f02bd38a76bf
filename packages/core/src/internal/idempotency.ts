import { Cause, Clock, Duration, Effect, Exit, Fiber, Schema } from "effect"
import type * as Context from "effect/Context"
import type * as Metric from "effect/Metric"
import type * as Idempotency from "../Idempotency.ts"
import { IdempotencyError } from "../Idempotency.ts"
import type { IdempotencyStore, Operation, StoreError, StoreErrorReason } from "../IdempotencyStore.ts"
import { EventHub } from "./events.ts"
import { pullCounter, pullGauge } from "./metrics.ts"
import * as tracing from "./tracing.ts"

type Reason = Idempotency.Reason

/** @internal */
export const reasons: ReadonlyArray<Reason> = [
  "DuplicateInFlight",
  "StoreUnavailable",
  "StoreTimeout",
  "StoreRejected",
  "Undecodable"
]

/** @internal */
export const storeReasons: ReadonlyArray<StoreErrorReason> = ["Unavailable", "Timeout", "Rejected"]

const rejectionOf: Record<StoreErrorReason, Reason> = {
  Unavailable: "StoreUnavailable",
  Timeout: "StoreTimeout",
  Rejected: "StoreRejected"
}

/** The first poll of a waiting duplicate; each next one waits twice as long, up to {@link maxPollMs}. */
export const firstPollMs = 10

/** @internal */
export const maxPollMs = 1000

let instances = 0

/**
 * An instance's identity and counters. The counters are plain fields: the
 * metrics read them when an exporter collects.
 *
 * @internal
 */
export class State {
  readonly id: number
  readonly name: string
  readonly store: IdempotencyStore
  readonly exposeKeys: boolean
  readonly hub = new EventHub<Idempotency.Event>()
  claims = 0
  replays = 0
  replayedFailures = 0
  stored = 0
  abandoned = 0
  leasesLost = 0
  waited = 0
  inFlight = 0
  snapshots = 0
  readonly rejected: Record<Reason, number> = {
    DuplicateInFlight: 0,
    StoreUnavailable: 0,
    StoreTimeout: 0,
    StoreRejected: 0,
    Undecodable: 0
  }
  readonly storeErrors: Record<StoreErrorReason, number> = { Unavailable: 0, Timeout: 0, Rejected: 0 }

  constructor(name: string, store: IdempotencyStore, exposeKeys: boolean) {
    this.id = ++instances
    this.name = name
    this.store = store
    this.exposeKeys = exposeKeys
  }
}

/** What a call stores, before and after the JSON codec. */
export type Entry =
  | { readonly _tag: "Success"; readonly value: unknown }
  | { readonly _tag: "Failure"; readonly error: unknown }

/**
 * A call's options, decoded once when the guard is built: times in
 * milliseconds, the Schemas compiled into one JSON codec.
 *
 * @internal
 */
export interface Settings {
  readonly ttlMs: number
  readonly leaseMs: number
  readonly wait: boolean
  /** 0 with `onDuplicate: "fail"`. */
  readonly maxWaitMs: number
  /** Is this failure one to store? `undefined` when failures are not cached. */
  readonly caches: ((error: unknown) => boolean) | undefined
  readonly encode: (entry: Entry) => Effect.Effect<string, Schema.SchemaError>
  readonly decode: (text: string) => Effect.Effect<Entry, Schema.SchemaError>
}

/**
 * The stored text: `{"_tag":"Success","value":...}` or
 * `{"_tag":"Failure","error":...}`, each value in the JSON form that
 * `Schema.toCodecJson` derives from the user's Schema (so dates, bigints,
 * classes and tagged errors survive the round trip).
 *
 * @internal
 */
export const entryCodec = (
  result: Schema.Top,
  error: Schema.Top | undefined
): Pick<Settings, "encode" | "decode"> => {
  // `once` compiles its options on every call: derive each pair of Schemas' codec only once.
  let byError = codecs.get(result)
  if (byError === undefined) codecs.set(result, byError = new Map())
  const cached = byError.get(error)
  if (cached !== undefined) return cached
  const codec = Schema.fromJsonString(Schema.toCodecJson(Schema.Union([
    Schema.Struct({ _tag: Schema.tag("Success"), value: result }),
    // Without `cacheFailures` a stored failure (written by a caller that had it) does not decode.
    Schema.Struct({ _tag: Schema.tag("Failure"), error: error ?? Schema.Never })
  ]))) as unknown as Schema.Codec<Entry, string>
  const compiled = { encode: Schema.encodeEffect(codec), decode: Schema.decodeUnknownEffect(codec) }
  byError.set(error, compiled)
  return compiled
}

const codecs = new WeakMap<Schema.Top, Map<Schema.Top | undefined, Pick<Settings, "encode" | "decode">>>()

/**
 * Rejections are built without the Schema constructor (see
 * `internal/bulkhead.ts` `fastError`): a duplicate is an expected outcome
 * under load, and validation plus a stack trace cost more than the decision.
 *
 * @internal
 */
export const fastError = (
  name: string,
  key: string | undefined,
  reason: Reason,
  waitedMs: number,
  leaseLeftMs: number | undefined,
  storeMessage: string | undefined
): IdempotencyError => {
  const error = Object.create(IdempotencyError.prototype)
  error._tag = "IdempotencyError"
  error.name = name
  if (key !== undefined) error.key = key
  error.reason = reason
  error.waited = waitedMs <= 0 ? Duration.zero : Duration.millis(waitedMs)
  if (leaseLeftMs !== undefined) error.leaseLeft = Duration.millis(Math.max(0, leaseLeftMs))
  if (storeMessage !== undefined) error.storeMessage = storeMessage
  return error
}

/** A stored failure is replayed only when the call failed with exactly one typed error and nothing else. */
const onlyFailure = (cause: Cause.Cause<unknown>): { readonly error: unknown } | undefined => {
  if (cause.reasons.length !== 1) return undefined
  const reason = cause.reasons[0]
  return Cause.isFailReason(reason) ? { error: reason.error } : undefined
}

/**
 * One call of `once`: claim, then run and store, replay, wait, or refuse.
 *
 * The whole call runs uninterruptibly except the caller's effect and the
 * waits between polls, so that an interruption can never fall between
 * taking a claim and registering what releases it. A store call is thus
 * never cut short (a remote store bounds its calls with a timeout of its
 * own), and a claim taken is always either completed or abandoned, unless
 * the store cannot be reached: then it runs out with its lease.
 *
 * @internal
 */
export const run = <A, E, R>(
  state: State,
  key: string,
  self: Effect.Effect<A, E, R>,
  settings: Settings
): Effect.Effect<A, E | IdempotencyError, R> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.withFiber((fiber) => {
      const clock = fiber.getRef(Clock.Clock)
      const now = () => clock.currentTimeMillisUnsafe()
      const store = state.store
      // Instances with different names can share a store without their keys colliding.
      const storeKey = `${state.name}:${key}`
      const shownKey = state.exposeKeys ? key : undefined
      const arrived = now()
      let pollMs = firstPollMs
      let waiting = false

      const emit = (event: Idempotency.Event) => {
        if (state.hub.active) state.hub.emit(event)
      }
      const trace = (what: string, reason?: string) => {
        const span = tracing.spanOf(fiber)
        if (span === undefined) return
        const attributes: tracing.Attributes = { "bulwark.name": state.name }
        if (reason !== undefined) attributes["bulwark.idempotency.reason"] = reason
        if (shownKey !== undefined) attributes["bulwark.idempotency.key"] = shownKey
        tracing.event(fiber, span, `bulwark.idempotency.${what}`, attributes)
      }
      const storeFailed = (operation: Operation, error: StoreError) => {
        state.storeErrors[error.reason]++
        emit({ _tag: "StoreFailed", name: state.name, ...keyField(shownKey), operation, reason: error.reason, message: error.message })
      }
      const reject = (reason: Reason, leaseLeftMs: number | undefined, storeMessage: string | undefined) => {
        state.rejected[reason]++
        // Only a call that waited for a duplicate says so: a store round trip is not a wait.
        const waitedMs = waiting ? now() - arrived : 0
        emit({ _tag: "Rejected", name: state.name, ...keyField(shownKey), reason, waited: Duration.millis(waitedMs) })
        trace("rejected", reason)
        return Effect.fail(fastError(state.name, shownKey, reason, waitedMs, leaseLeftMs, storeMessage))
      }

      const replay = (encoded: string): Effect.Effect<A, E | IdempotencyError> =>
        Effect.matchEffect(settings.decode(encoded), {
          onFailure: () => reject("Undecodable", undefined, undefined),
          onSuccess: (entry) => {
            state.replays++
            if (entry._tag === "Failure") state.replayedFailures++
            emit({ _tag: "Replayed", name: state.name, ...keyField(shownKey), outcome: entry._tag })
            trace("replayed")
            return entry._tag === "Success" ? Effect.succeed(entry.value as A) : Effect.fail(entry.error as E)
          }
        })

      const execute = (token: string): Effect.Effect<A, E, R> => {
        state.claims++
        state.inFlight++
        emit({ _tag: "Claimed", name: state.name, ...keyField(shownKey) })
        trace("claimed")
        let lost = false
        const leaseLost = () => {
          if (lost) return
          lost = true
          state.leasesLost++
          emit({ _tag: "LeaseLost", name: state.name, ...keyField(shownKey) })
        }
        // Renewing at a third of the lease leaves two more chances before it runs out.
        const renewEvery = Math.max(1, Math.floor(settings.leaseMs / 3))
        const renewing: Effect.Effect<void> = Effect.sleep(renewEvery).pipe(
          Effect.andThen(Effect.suspend(() => store.renew(storeKey, token, settings.leaseMs, now()))),
          Effect.matchEffect({
            onFailure: (error) => {
              storeFailed("renew", error)
              return renewing
            },
            onSuccess: (renewed) => {
              if (renewed) return renewing
              leaseLost()
              return Effect.void
            }
          })
        )
        const abandon = Effect.suspend(() => store.abandon(storeKey, token, now())).pipe(
          Effect.matchEffect({
            onFailure: (error) => Effect.sync(() => storeFailed("abandon", error)),
            onSuccess: (released) =>
              Effect.sync(() => {
                if (!released) return leaseLost()
                state.abandoned++
                emit({ _tag: "Abandoned", name: state.name, ...keyField(shownKey) })
              })
          })
        )
        const complete = (entry: Entry) =>
          Effect.flatMap(settings.encode(entry), (encoded) =>
            Effect.suspend(() => store.complete(storeKey, token, encoded, settings.ttlMs, now())).pipe(
              Effect.matchEffect({
                // The call has run: its outcome stands even when it cannot be stored.
                onFailure: (error) => Effect.sync(() => storeFailed("complete", error)),
                onSuccess: (stored) =>
                  Effect.sync(() => {
                    if (!stored) return leaseLost()
                    state.stored++
                    emit({ _tag: "Stored", name: state.name, ...keyField(shownKey), outcome: entry._tag })
                  })
              })
            ))

        const settle = (exit: Exit.Exit<A, E>): Effect.Effect<A, E> => {
          // A claim known to be lost is someone else's now: nothing to store or release.
          if (lost) return exit
          if (Exit.isSuccess(exit)) {
            return complete({ _tag: "Success", value: exit.value }).pipe(
              Effect.matchEffect({
                onFailure: (issue) =>
                  Effect.andThen(
                    abandon,
                    Effect.die(
                      new Error(
                        `Idempotency "${state.name}": the result does not match the result Schema, nothing was stored: ${issue.message}`
                      )
                    )
                  ),
                onSuccess: () => exit
              })
            )
          }
          const failure = settings.caches === undefined ? undefined : onlyFailure(exit.cause)
          if (failure === undefined || !settings.caches!(failure.error)) return Effect.andThen(abandon, exit)
          // A failure the error Schema accepts but cannot encode is not cached (like one it does not accept).
          return complete({ _tag: "Failure", error: failure.error }).pipe(
            Effect.catch(() => abandon),
            Effect.andThen(exit)
          )
        }

        return Effect.forkChild(renewing).pipe(
          Effect.flatMap((renewal) =>
            Effect.exit(restore(self)).pipe(
              Effect.flatMap((exit) =>
                Fiber.interrupt(renewal).pipe(
                  Effect.andThen(Effect.suspend(() => {
                    state.inFlight--
                    return settle(exit)
                  }))
                )
              )
            )
          )
        )
      }

      const attempt: Effect.Effect<A, E | IdempotencyError, R> = Effect.suspend(() =>
        Effect.matchEffect(store.claim(storeKey, settings.leaseMs, now()), {
          onFailure: (error) => {
            storeFailed("claim", error)
            return reject(rejectionOf[error.reason], undefined, error.message)
          },
          onSuccess: (claim) => {
            switch (claim._tag) {
              case "Claimed":
                return execute(claim.token)
              case "Completed":
                return replay(claim.encoded)
              case "InFlight": {
                const elapsed = now() - arrived
                if (!settings.wait || elapsed >= settings.maxWaitMs) {
                  return reject("DuplicateInFlight", claim.leaseLeftMs, undefined)
                }
                if (!waiting) {
                  waiting = true
                  state.waited++
                  trace("waiting")
                }
                // Never past the deadline, and not past the lease: a crashed owner's claim frees then.
                const sleepMs = Math.max(1, Math.min(pollMs, settings.maxWaitMs - elapsed, claim.leaseLeftMs))
                pollMs = Math.min(pollMs * 2, maxPollMs)
                return Effect.andThen(restore(Effect.sleep(sleepMs)), attempt)
              }
            }
          }
        })
      )
      return attempt
    })
  )

const keyField = (key: string | undefined): { readonly key?: string } => key === undefined ? {} : { key }

/**
 * Pull-based series, computed from the counters when an exporter reads them.
 *
 * @internal
 */
export const registerMetrics = (context: Context.Context<never>, state: State): Array<Metric.Registration> => {
  const attributes = { name: state.name }
  const counter = (id: string, description: string, get: () => number, attrs: Record<string, string> = attributes) =>
    pullCounter(context, id, description, attrs, get)
  const registrations = [
    counter("bulwark.idempotency.claims", "Calls that claimed their key and ran", () => state.claims),
    counter("bulwark.idempotency.replays", "Calls answered with a stored result", () => state.replays),
    counter("bulwark.idempotency.stored", "Results stored", () => state.stored),
    counter("bulwark.idempotency.abandoned", "Claims released without a result", () => state.abandoned),
    counter("bulwark.idempotency.leases_lost", "Claims that ran out before their call ended", () => state.leasesLost),
    pullGauge(context, "bulwark.idempotency.in_flight", "Calls running under a claim now", attributes, () => state.inFlight)
  ]
  for (const reason of reasons) {
    registrations.push(
      counter("bulwark.idempotency.rejected", "Calls refused, by reason", () => state.rejected[reason], { ...attributes, reason })
    )
  }
  for (const reason of storeReasons) {
    registrations.push(
      counter("bulwark.idempotency.store_errors", "Store operations that failed, by reason", () => state.storeErrors[reason], {
        ...attributes,
        reason
      })
    )
  }
  return registrations
}
