/**
 * Where a circuit breaker keeps its circuits, and the four operations it
 * needs from that place: `admit`, `record`, `read` and `force`.
 *
 * A `CircuitBreaker` never reads a circuit and then writes it in two steps.
 * Each decision is **one** store call that decides and commits atomically,
 * so a remote store (Redis, SQLite) can implement the whole contract in one
 * round trip per decision, for example one Lua script, and two processes
 * sharing a key can never both take the last probe slot.
 *
 * **The state of a key**
 *
 * One circuit per key: its state (`Closed`, `Open`, `HalfOpen`, `Isolated`,
 * `Disabled`), a **generation** (the fencing token), the trip policies'
 * counts, `openUntil`, the count of consecutive openings and the time it
 * resets, the running probes (permit and start time) and the probe successes.
 * A key never seen reads as a fresh `Closed` circuit. Every operation
 * receives the breaker's {@link Policy} as plain data, so a store needs no
 * configuration per key.
 *
 * **`admit(key, policy, now)`**
 *
 * - `Closed`: `Admitted`, with the current generation as the permit (every
 *   call of one closed period shares it). First, the count of consecutive
 *   openings resets to 0 if `now >= backoffResetAt`.
 * - `Disabled`: `Pass` (the call runs, nothing is recorded).
 * - `Isolated`: `Rejected`, reason `Isolated`, `retryAfterMs` `Infinity`.
 * - `Open`: before `openUntil`, `Rejected`, reason `Open`, `retryAfterMs =
 *   openUntil - now`. From `openUntil` on: the circuit becomes `HalfOpen`
 *   (new generation, no probe, no success; the transition is returned) and
 *   the call is a probe, as below.
 * - `HalfOpen`: if a running probe started more than `probeTimeoutMs`
 *   before `now`, or (when the policy has `probeLeaseMs`) its lease ended
 *   before `now`, it is **lost**: the circuit opens (see *opening*) and the
 *   call is `Rejected` with reason `Open`. Otherwise, with `probes` probes
 *   running the call is `Rejected`, reason `ProbesBusy`, `retryAfterMs` 0;
 *   else it is `Admitted` as a probe with a permit of its own (a new
 *   generation), recorded with its start time and a lease ending
 *   `probeLeaseMs` later.
 *
 * **`renew(key, policy, permit, now)`** (optional): if `permit` is a
 * running probe that is not lost, its lease ends `probeLeaseMs` after `now`
 * (`true`); otherwise `false`, and nothing changes (a lost probe is noticed
 * by the next `admit`, `record` or `read`).
 *
 * **`record(key, policy, permit, outcome, elapsedMs, now)`**
 *
 * - The permit of a running probe (`HalfOpen`): if any probe is lost (as
 *   above), the circuit opens. Otherwise the probe is removed; `Ignored`
 *   decides nothing; `Failure`, or an `elapsedMs` above the `slowerThanMs`
 *   of a `SlowCalls` trip, opens the circuit; `Success` counts, and
 *   `successesToClose` successes close it (see *closing*).
 * - The current generation in `Closed`: `Ignored` decides nothing; otherwise
 *   every trip spec counts the outcome at `now` (`failed` for `Consecutive`
 *   and `FailureRate`, `elapsedMs > slowerThanMs` for `SlowCalls`) and if any
 *   of them trips, the circuit opens.
 * - Any other permit is **stale** (a call admitted before a transition, a
 *   lost probe's late report): nothing changes.
 *
 * **Opening, closing, manual control, reads**
 *
 * - Opening: if it was `Closed`, the backoff count resets first as in
 *   `admit`; then `consecutiveOpenings += 1`, `openFor = openForMs[min(n,
 *   length) - 1]`, `openUntil = now + openFor`, a new generation, no probes,
 *   fresh trip counts.
 * - Closing: a new generation, fresh trip counts, `backoffResetAt = now +`
 *   the last open time.
 * - `force(key, policy, to, now)`: `Isolated` and `Disabled` take a new
 *   generation and drop the probes; `Closed` closes (even a closed circuit:
 *   a new generation, fresh trip counts) and clears the backoff
 *   (`consecutiveOpenings` 0, `backoffResetAt` 0). A key never seen is
 *   created. A transition is returned only when the state changed.
 * - `read(key, policy, now)`: resets the backoff count and opens on a lost
 *   probe as `admit` would, then reports; it creates nothing.
 * - Every operation returns the transition it caused, if any (at most one),
 *   with the time it happened: the breaker turns them into events and
 *   counters.
 *
 * **Trip counts**: `Consecutive` counts failures in a row in the order
 * outcomes are recorded. A count window (`windowCalls`) holds the last N
 * counted outcomes exactly. A time window (`windowMs`) has ten buckets of
 * `windowMs / 10`, aligned to multiples of the bucket since the epoch: an
 * outcome leaves it between 90% and 100% of `windowMs` after it was
 * recorded. A trip needs at least `minimumCalls` calls in the window and a
 * ratio `>= threshold`.
 *
 * **Generations** never repeat for a key, even after the store dropped the
 * key's state and created it again (otherwise a permit from before could
 * match the new circuit); a remote store can seed a new key's generation
 * from its clock. A store may drop a key's state (idle reclaiming, key
 * expiry, a bound on keys): the key starts again as a fresh `Closed`
 * circuit, and reports of calls admitted before change nothing. Dropping
 * only circuits with no call running that are not `Open` with open time to
 * go loses nothing; {@link memory} drops others only at its bound on keys.
 *
 * **In-process stores**
 *
 * A store whose circuits live in this process may also offer `inProcess`:
 * each key's circuit as an object whose methods are the same operations,
 * synchronous, reading the clock only when the decision needs it. The
 * breaker then calls them directly, with no `Effect` per call (this is what
 * keeps the closed path at a few hundred nanoseconds), and never uses the
 * `Effect` operations. {@link memory} is one; it is what `CircuitBreaker.make`
 * uses when no `store` is given.
 *
 * **Gotchas**
 *
 * - Times are epoch milliseconds from Effect's `Clock` (so `TestClock` drives
 *   everything), and `elapsedMs` is measured by the caller. A remote store
 *   may use its own clock instead, as long as it uses it for every decision
 *   of a key (durations such as `retryAfterMs` are the same in every frame;
 *   a transition's `at` is reported at the caller's `now`).
 * - An operation fails with `StoreError` (`Store.ts`) only when the store
 *   could not decide (unreachable, no answer in time, an error reply). The
 *   breaker then applies its `onStoreError` policy: run the call unrecorded,
 *   reject it with reason `StoreUnavailable`, or decide with an in-memory
 *   stand-in. A timed-out operation may still have been committed.
 * - A key is always used with the same policy: a store may keep the policy
 *   it saw first.
 * - A breaker given a store keys its state as `name` (plain breaker) or
 *   `name:key` (keyed breaker), so breakers with different names can share
 *   a store.
 *
 * @since 0.1.0
 */
import { Duration, Effect, type Scope } from "effect"
import type { Outcome, State } from "./CircuitBreaker.ts"
import * as internal from "./internal/circuitBreakerStore.ts"
import type { OnStoreError, StoreError } from "./Store.ts"

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: "~@bulwark/core/CircuitBreakerStore" = "~@bulwark/core/CircuitBreakerStore"

/**
 * A trip policy as the store sees it, durations in milliseconds. A
 * `FailureRate` or `SlowCalls` window is either `windowCalls` (the last N
 * calls) or `windowMs` (a time window), the other one `undefined`.
 *
 * @since 0.1.0
 * @category models
 */
export type TripSpec =
  | { readonly _tag: "Consecutive"; readonly failures: number }
  | {
    readonly _tag: "FailureRate"
    readonly threshold: number
    readonly minimumCalls: number
    readonly windowCalls: number | undefined
    readonly windowMs: number | undefined
  }
  | {
    readonly _tag: "SlowCalls"
    readonly slowerThanMs: number
    readonly threshold: number
    readonly minimumCalls: number
    readonly windowCalls: number | undefined
    readonly windowMs: number | undefined
  }

/**
 * A breaker's policy as the store sees it: plain data, sent with every
 * operation.
 *
 * @since 0.1.0
 * @category models
 */
export interface Policy {
  /** Any of them tripping opens the circuit. */
  readonly trips: ReadonlyArray<TripSpec>
  /**
   * Open time of the 1st, 2nd, ... consecutive opening, in ms; the last one
   * is reused for every later opening (a fixed `openFor` is one number).
   */
  readonly openForMs: ReadonlyArray<number>
  /** Probes allowed at once while half-open. */
  readonly probes: number
  /** Successful probes that close the circuit. */
  readonly successesToClose: number
  /** A probe running longer than this is lost. */
  readonly probeTimeoutMs: number
  /**
   * A probe whose lease was not renewed for this long is lost too (its
   * process died); `undefined`: probes have no lease, only `probeTimeoutMs`.
   * Set by breakers on shared stores, which renew their probes' leases.
   */
  readonly probeLeaseMs?: number | undefined
}

/**
 * A state change caused by a store operation.
 *
 * @since 0.1.0
 * @category models
 */
export interface Transition {
  readonly from: State
  readonly to: State
  /** Epoch milliseconds. */
  readonly at: number
}

/**
 * Why a call was rejected.
 *
 * @since 0.1.0
 * @category models
 */
export type Reason = "Open" | "ProbesBusy" | "Isolated"

/**
 * The decision of one `admit`.
 *
 * @since 0.1.0
 * @category models
 */
export type Admission =
  | {
    readonly _tag: "Admitted"
    /** Hand it back to `record` (a non-negative number). */
    readonly permit: number
    /** The call is a half-open probe. */
    readonly probe: boolean
    readonly transition: Transition | undefined
  }
  | {
    readonly _tag: "Rejected"
    readonly reason: Reason
    /** Time until a call may be admitted: `Infinity` when isolated. */
    readonly retryAfterMs: number
    readonly transition: Transition | undefined
  }
  /** The circuit is `Disabled`: run the call, record nothing. */
  | { readonly _tag: "Pass" }

/**
 * A circuit as read now.
 *
 * @since 0.1.0
 * @category models
 */
export interface CircuitInfo {
  readonly state: State
  /** The open time left when `Open`, `Infinity` when `Isolated`, 0 otherwise. */
  readonly retryAfterMs: number
  readonly consecutiveOpenings: number
  /** Probes running. */
  readonly probing: number
}

/**
 * The result of `read`: the circuit, and the transition the read caused (a
 * lost probe noticed).
 *
 * @since 0.1.0
 * @category models
 */
export interface Reading extends CircuitInfo {
  readonly transition: Transition | undefined
}

/**
 * Where an in-process circuit reads the time, only when a decision needs it
 * (Effect's `Clock` is one).
 *
 * @since 0.1.0
 * @category models
 */
export interface TimeSource {
  readonly currentTimeMillisUnsafe: () => number
}

/**
 * Receives the transition an in-process operation caused.
 *
 * @since 0.1.0
 * @category models
 */
export type OnTransition = (from: State, to: State, at: number) => void

/**
 * `admit` of an in-process circuit returns a permit (>= 0) or one of these.
 *
 * @since 0.1.0
 * @category in-process
 */
export const REJECT_OPEN: -1 = internal.REJECT_OPEN as -1

/**
 * @since 0.1.0
 * @category in-process
 */
export const REJECT_PROBES_BUSY: -2 = internal.REJECT_PROBES_BUSY as -2

/**
 * @since 0.1.0
 * @category in-process
 */
export const REJECT_ISOLATED: -3 = internal.REJECT_ISOLATED as -3

/**
 * The circuit is `Disabled`: run the call, record nothing.
 *
 * @since 0.1.0
 * @category in-process
 */
export const PASS: -4 = internal.PASS as -4

/**
 * One key's circuit in an in-process store. Its methods are the store's
 * operations for that key, synchronous and allocation-free on the closed
 * path.
 *
 * @since 0.1.0
 * @category in-process
 */
export interface LocalCircuit {
  readonly key: string
  readonly state: State
  /** When `Open`: the time from which a call makes it half-open. */
  readonly openUntil: number
  /** The store has dropped this circuit: its key must be looked up again; reports to it change nothing. */
  readonly dropped: boolean
  /** `admit`: a permit (>= 0), {@link PASS}, or a `REJECT_*` code. */
  readonly admit: (clock: TimeSource, onTransition: OnTransition) => number
  /** `record`, for a call admitted at `startedAt` (read only when the decision needs time). */
  readonly record: (
    permit: number,
    outcome: Outcome,
    startedAt: number,
    clock: TimeSource,
    onTransition: OnTransition
  ) => void
  /** `read` */
  readonly read: (now: number, onTransition: OnTransition) => CircuitInfo
  /** Brings the circuit up to date as `read` does and returns its state. */
  readonly refresh: (now: number, onTransition: OnTransition) => State
  /** `force` */
  readonly force: (to: "Isolated" | "Disabled" | "Closed", now: number, onTransition: OnTransition) => void
  /** The `retryAfterMs` a rejection at `now` carries. */
  readonly retryAfterMs: (now: number) => number
}

/**
 * The synchronous side of a store whose circuits live in this process.
 *
 * @since 0.1.0
 * @category in-process
 */
export interface InProcess {
  /** The circuit of `key`, created when absent, marked as used at `now` (it may reclaim others). */
  readonly circuit: (key: string, policy: Policy, now: number) => LocalCircuit
  /** The circuit of `key` if there is one, without creating it or marking it used. */
  readonly find: (key: string) => LocalCircuit | undefined
  /** Live circuits. */
  readonly size: () => number
  /** Keys of the live circuits, least recently used first. */
  readonly keys: () => ReadonlyArray<string>
  /** Circuits dropped so far (idle, or evicted at the bound on keys). */
  readonly reclaimed: () => number
}

/**
 * A circuit breaker's state. See the module documentation for the contract.
 *
 * @since 0.1.0
 * @category models
 */
export interface CircuitBreakerStore {
  readonly [TypeId]: typeof TypeId
  /** Decides one call and commits the decision: one atomic step, one round trip. */
  readonly admit: (key: string, policy: Policy, now: number) => Effect.Effect<Admission, StoreError>
  /** Records the outcome of an admitted call; a stale permit changes nothing. */
  readonly record: (
    key: string,
    policy: Policy,
    permit: number,
    outcome: Outcome,
    elapsedMs: number,
    now: number
  ) => Effect.Effect<Transition | undefined, StoreError>
  /** Reads a circuit (noticing a lost probe); creates nothing. */
  readonly read: (key: string, policy: Policy, now: number) => Effect.Effect<Reading, StoreError>
  /**
   * Extends the lease of a running probe to `probeLeaseMs` from `now`;
   * `false` when `permit` is not a running probe, or it is lost already.
   * Present on shared stores: the breaker then renews every probe's lease
   * while it runs.
   */
  readonly renew?: ((key: string, policy: Policy, permit: number, now: number) => Effect.Effect<boolean, StoreError>) | undefined
  /** Manual control: isolate, disable, or reset to `Closed`. */
  readonly force: (
    key: string,
    policy: Policy,
    to: "Isolated" | "Disabled" | "Closed",
    now: number
  ) => Effect.Effect<Transition | undefined, StoreError>
  /** Present for in-process stores: the same operations, synchronous, per circuit. */
  readonly inProcess?: InProcess | undefined
  /**
   * Present for shared stores that can tell about transitions caused
   * elsewhere (other processes): calls `onTransition` with each one for as
   * long as the scope lasts. Best effort: a transition may be missed (while
   * disconnected), so the circuit's state stays the truth.
   */
  readonly listen?: ((onTransition: (transition: RemoteTransition) => void) => Effect.Effect<void, never, Scope.Scope>) | undefined
  /**
   * What a primitive on this store does when the store cannot decide, if
   * the primitive's own `onStoreError` is not given (then `"local"`). A
   * store for command-line tools says `"fail-open"`: never hang.
   */
  readonly onStoreError?: OnStoreError | undefined
}

/**
 * A transition caused through another instance of a shared store (usually
 * another process), for the breakers of this process to report.
 *
 * @since 0.1.0
 * @category models
 */
export interface RemoteTransition extends Transition {
  /** The circuit's key in the store: `name`, or `name:key` for a keyed breaker. */
  readonly key: string
}

/**
 * Is this value a store?
 *
 * @since 0.1.0
 * @category guards
 */
export const isCircuitBreakerStore = (u: unknown): u is CircuitBreakerStore =>
  typeof u === "object" && u !== null && TypeId in u

/**
 * Builds a store from its operations (for example a Redis store that runs
 * one script per decision).
 *
 * **Example** (A store backed by a remote service)
 *
 * ```ts
 * import { CircuitBreakerStore, type StoreError } from "@bulwark/core"
 * import type { Effect } from "effect"
 *
 * declare const scripts: {
 *   admit: (
 *     key: string,
 *     policy: CircuitBreakerStore.Policy,
 *     now: number
 *   ) => Effect.Effect<CircuitBreakerStore.Admission, StoreError> // StoreError when it cannot decide
 *   record: CircuitBreakerStore.CircuitBreakerStore["record"]
 *   read: CircuitBreakerStore.CircuitBreakerStore["read"]
 *   force: CircuitBreakerStore.CircuitBreakerStore["force"]
 * }
 *
 * const remote = CircuitBreakerStore.make(scripts)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (operations: {
  readonly admit: CircuitBreakerStore["admit"]
  readonly record: CircuitBreakerStore["record"]
  readonly read: CircuitBreakerStore["read"]
  readonly force: CircuitBreakerStore["force"]
  readonly inProcess?: InProcess | undefined
  readonly renew?: CircuitBreakerStore["renew"]
  readonly listen?: CircuitBreakerStore["listen"]
  readonly onStoreError?: OnStoreError | undefined
}): CircuitBreakerStore => ({ [TypeId]: TypeId, ...operations })

/**
 * Options of {@link memory}.
 *
 * @since 0.1.0
 * @category options
 */
export interface MemoryOptions {
  /** Most circuits alive at once; default unbounded. At the bound, a new key evicts the least recently used circuit, one with no call running first. */
  readonly maxKeys?: number | undefined
  /** A circuit idle this long (no call running, and not Open with open time to go) is dropped when a new key arrives; default 10 minutes. */
  readonly idleTimeToLive?: Duration.Input | undefined
}

/**
 * A fresh in-memory store: circuits in a `Map` in least-recently-used order,
 * every operation synchronous and O(1) (reclaiming is O(circuits reclaimed),
 * on the caller's fiber; there is no background fiber).
 *
 * `CircuitBreaker.make` creates one per breaker when no `store` is given,
 * bounded by the breaker's `keys` options; pass one explicitly only to
 * inspect or share state (breakers with different names).
 *
 * @since 0.1.0
 * @category constructors
 */
export const memory = (options?: MemoryOptions): CircuitBreakerStore => {
  const maxKeys = options?.maxKeys ?? Infinity
  if (!(maxKeys >= 1) || (maxKeys !== Infinity && !Number.isInteger(maxKeys))) {
    throw new RangeError(`CircuitBreakerStore.memory: maxKeys must be a positive integer, got ${maxKeys}`)
  }
  const idleTtlMs = options?.idleTimeToLive === undefined
    ? 600_000
    : Duration.toMillis(Duration.fromInputUnsafe(options.idleTimeToLive))
  const store = new internal.MemoryStore(maxKeys, idleTtlMs)
  return make({
    admit: (key, policy, now) => Effect.sync(() => store.admit(key, policy, now)),
    record: (key, policy, permit, outcome, elapsedMs, now) =>
      Effect.sync(() => store.record(key, policy, permit, outcome, elapsedMs, now)),
    read: (key, policy, now) => Effect.sync(() => store.read(key, policy, now)),
    force: (key, policy, to, now) => Effect.sync(() => store.force(key, policy, to, now)),
    renew: (key, policy, permit, now) => Effect.sync(() => store.renew(key, policy, permit, now)),
    inProcess: store
  })
}
