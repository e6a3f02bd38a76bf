/**
 * The contract every `CircuitBreakerStore` keeps (see the module
 * documentation of `CircuitBreakerStore`), written once and run against each
 * store: the in-memory store (test/core/CircuitBreakerStore.test.ts) and the
 * Redis store (test/redis/RedisCircuitBreakerStore.test.ts, on a real
 * redis-server with `clock: "caller"`, so that the explicit times below are
 * the store's).
 *
 * Every clause goes through the store's `Effect` operations with explicit
 * times: admission and permits, fencing, lost probes, trip specs, open times
 * and the backoff count, manual control.
 */
import { assert, describe } from "@effect/vitest"
import { type CircuitBreaker, CircuitBreakerStore } from "@bulwark/core"
import { Effect, type Scope } from "effect"

/** How a suite runs against one store. */
export interface StoreSetup<R> {
  /** Registers a test whose body needs `R` and a Scope. */
  readonly test: (name: string, body: () => Effect.Effect<void, unknown, R | Scope.Scope>) => void
  /** A fresh store: no other test sees its keys. */
  readonly makeStore: Effect.Effect<CircuitBreakerStore.CircuitBreakerStore, never, R>
}

type Policy = CircuitBreakerStore.Policy
type Admission = CircuitBreakerStore.Admission

/** Where the differential sequences start (the contract's own times start at 0). */
const T0 = 1_000_000_000

export const policy = (overrides: Partial<Policy> = {}): Policy => ({
  trips: [{ _tag: "Consecutive", failures: 1 }],
  openForMs: [1_000],
  probes: 1,
  successesToClose: 1,
  probeTimeoutMs: 60_000,
  ...overrides
})

export const admitted = (a: Admission): number => {
  if (a._tag !== "Admitted") return assert.fail(`expected Admitted, got ${JSON.stringify(a)}`)
  return a.permit
}

const rejected = (a: Admission, reason: CircuitBreakerStore.Reason, retryAfterMs: number) => {
  if (a._tag !== "Rejected") return assert.fail(`expected Rejected ${reason}, got ${JSON.stringify(a)}`)
  assert.strictEqual(a.reason, reason)
  assert.strictEqual(a.retryAfterMs, retryAfterMs)
  return a
}

export const t = (from: CircuitBreaker.State, to: CircuitBreaker.State, at: number): CircuitBreakerStore.Transition => ({
  from,
  to,
  at
})

/**
 * The store contract of `CircuitBreakerStore`, one test per clause.
 */
export const storeContract = <R>(setup: StoreSetup<R>): void => {
  const { makeStore, test } = setup

  describe("CircuitBreakerStore contract: admit decides one call and commits it", () => {
    test("Closed: every call of one closed period gets the same permit; Disabled passes; Isolated rejects with an infinite retryAfter", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const p = policy()
        const first = yield* store.admit("k", p, 0)
        assert.deepStrictEqual(first, { _tag: "Admitted", permit: admitted(first), probe: false, transition: undefined })
        assert.isAtLeast(admitted(first), 0)
        assert.strictEqual(admitted(yield* store.admit("k", p, 5)), admitted(first))

        assert.deepStrictEqual(yield* store.force("k", p, "Disabled", 10), t("Closed", "Disabled", 10))
        assert.deepStrictEqual(yield* store.admit("k", p, 11), { _tag: "Pass" })

        assert.deepStrictEqual(yield* store.force("k", p, "Isolated", 20), t("Disabled", "Isolated", 20))
        const isolated = rejected(yield* store.admit("k", p, 21), "Isolated", Infinity)
        assert.strictEqual(isolated.transition, undefined)

        assert.deepStrictEqual(yield* store.force("k", p, "Closed", 30), t("Isolated", "Closed", 30))
        assert.isAbove(admitted(yield* store.admit("k", p, 31)), admitted(first), "a new closed period, a new permit")
      }))

    test("record trips the circuit and returns the transition; admit then rejects with the open time left", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const p = policy({ trips: [{ _tag: "Consecutive", failures: 2 }] })
        const permit = admitted(yield* store.admit("k", p, 0))
        assert.strictEqual(yield* store.record("k", p, permit, "Failure", 5, 10), undefined)
        assert.deepStrictEqual(yield* store.record("k", p, permit, "Failure", 5, 20), t("Closed", "Open", 20))
        rejected(yield* store.admit("k", p, 500), "Open", 520)
        assert.deepStrictEqual(yield* store.read("k", p, 600), {
          state: "Open",
          retryAfterMs: 420,
          consecutiveOpenings: 1,
          probing: 0,
          transition: undefined
        })
      }))

    test("from openUntil the call is a probe (Open -> HalfOpen in the same admit); beyond `probes` ProbesBusy with retryAfter 0; successesToClose successes close", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const p = policy({ probes: 2, successesToClose: 2 })
        const closed = admitted(yield* store.admit("k", p, 0))
        yield* store.record("k", p, closed, "Failure", 0, 0)
        rejected(yield* store.admit("k", p, 999), "Open", 1)
        const probe1 = yield* store.admit("k", p, 1_000)
        assert.deepStrictEqual(probe1, { _tag: "Admitted", permit: admitted(probe1), probe: true, transition: t("Open", "HalfOpen", 1_000) })
        const probe2 = yield* store.admit("k", p, 1_001)
        assert.isTrue(probe2._tag === "Admitted" && probe2.probe && probe2.transition === undefined)
        assert.notStrictEqual(admitted(probe2), admitted(probe1), "each probe has its own permit")
        const busy = rejected(yield* store.admit("k", p, 1_002), "ProbesBusy", 0)
        assert.strictEqual(busy.transition, undefined)
        assert.strictEqual((yield* store.read("k", p, 1_003)).probing, 2)
        assert.strictEqual(yield* store.record("k", p, admitted(probe1), "Success", 3, 1_003), undefined)
        assert.deepStrictEqual(yield* store.record("k", p, admitted(probe2), "Success", 3, 1_004), t("HalfOpen", "Closed", 1_004))
      }))

    test("an Ignored probe frees its slot and decides nothing; a failed probe reopens with the next open time", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const p = policy({ openForMs: [100, 300] })
        yield* store.record("k", p, admitted(yield* store.admit("k", p, 0)), "Failure", 0, 0)
        const ignored = admitted(yield* store.admit("k", p, 100))
        rejected(yield* store.admit("k", p, 101), "ProbesBusy", 0)
        assert.strictEqual(yield* store.record("k", p, ignored, "Ignored", 1, 101), undefined)
        assert.strictEqual((yield* store.read("k", p, 101)).state, "HalfOpen")
        const failing = admitted(yield* store.admit("k", p, 102))
        assert.deepStrictEqual(yield* store.record("k", p, failing, "Failure", 1, 103), t("HalfOpen", "Open", 103))
        const info = yield* store.read("k", p, 103)
        assert.deepStrictEqual([info.state, info.retryAfterMs, info.consecutiveOpenings], ["Open", 300, 2])
      }))
  })

  describe("CircuitBreakerStore contract: stale permits change nothing (the fencing generation)", () => {
    test("a closed permit from before a transition, reported in Open, HalfOpen or a later Closed period, changes nothing", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const p = policy()
        const old = admitted(yield* store.admit("k", p, 0))
        assert.deepStrictEqual(yield* store.record("k", p, old, "Failure", 0, 0), t("Closed", "Open", 0))
        assert.strictEqual(yield* store.record("k", p, old, "Failure", 0, 1), undefined, "in Open")
        const probe = admitted(yield* store.admit("k", p, 1_000))
        assert.strictEqual(yield* store.record("k", p, old, "Failure", 0, 1_000), undefined, "in HalfOpen")
        assert.strictEqual((yield* store.read("k", p, 1_000)).probing, 1)
        assert.deepStrictEqual(yield* store.record("k", p, probe, "Success", 0, 1_000), t("HalfOpen", "Closed", 1_000))
        assert.strictEqual(yield* store.record("k", p, old, "Failure", 0, 1_001), undefined, "in a later closed period")
        assert.strictEqual(yield* store.record("k", p, probe, "Failure", 0, 1_001), undefined, "a probe permit after closing")
        assert.strictEqual(yield* store.record("k", p, 987_654_321, "Failure", 0, 1_001), undefined, "a permit never issued")
        assert.strictEqual((yield* store.read("k", p, 1_002)).state, "Closed")
      }))

    test("manual control starts a new generation: permits from before isolate, disable or reset change nothing", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const p = policy()
        for (const to of ["Isolated", "Disabled", "Closed"] as const) {
          const before = admitted(yield* store.admit("k", p, 0))
          yield* store.force("k", p, to, 0)
          yield* store.force("k", p, "Closed", 0)
          assert.strictEqual(yield* store.record("k", p, before, "Failure", 0, 0), undefined, to)
          assert.strictEqual((yield* store.read("k", p, 0)).state, "Closed", to)
        }
      }))

  })

  describe("CircuitBreakerStore contract: a probe that outlives probeTimeoutMs is lost", () => {
    const p = policy({ openForMs: [1_000, 2_000], probeTimeoutMs: 100 })
    const toHalfOpen = (store: CircuitBreakerStore.CircuitBreakerStore) =>
      Effect.gen(function*() {
        yield* store.record("k", p, admitted(yield* store.admit("k", p, 0)), "Failure", 0, 0)
        return admitted(yield* store.admit("k", p, 1_000))
      })

    test("read notices it after (not at) the timeout and reopens; the lost probe's late report changes nothing", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const probe = yield* toHalfOpen(store)
        const atTimeout = yield* store.read("k", p, 1_100)
        assert.deepStrictEqual([atTimeout.state, atTimeout.probing, atTimeout.transition], ["HalfOpen", 1, undefined])
        assert.deepStrictEqual(yield* store.read("k", p, 1_101), {
          state: "Open",
          retryAfterMs: 2_000,
          consecutiveOpenings: 2,
          probing: 0,
          transition: t("HalfOpen", "Open", 1_101)
        })
        assert.strictEqual(yield* store.record("k", p, probe, "Success", 150, 1_150), undefined)
        assert.strictEqual((yield* store.read("k", p, 1_150)).state, "Open")
      }))

    test("admit notices it: the call is rejected Open with the new open time and the transition", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        yield* toHalfOpen(store)
        const a = rejected(yield* store.admit("k", p, 1_101), "Open", 2_000)
        assert.deepStrictEqual(a.transition, t("HalfOpen", "Open", 1_101))
      }))

    test("another probe's report notices it: the circuit reopens instead of counting that report", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const p2 = { ...p, probes: 2 }
        yield* store.record("k", p2, admitted(yield* store.admit("k", p2, 0)), "Failure", 0, 0)
        admitted(yield* store.admit("k", p2, 1_000)) // hangs
        const second = admitted(yield* store.admit("k", p2, 1_050))
        assert.deepStrictEqual(yield* store.record("k", p2, second, "Success", 51, 1_101), t("HalfOpen", "Open", 1_101))
      }))
  })

  describe("CircuitBreakerStore contract: a probe's lease (probeLeaseMs) runs out unless renewed", () => {
    const p = policy({ openForMs: [1_000, 2_000], probeTimeoutMs: 60_000, probeLeaseMs: 100 })
    const toHalfOpen = (store: CircuitBreakerStore.CircuitBreakerStore, q: Policy = p) =>
      Effect.gen(function*() {
        yield* store.record("k", q, admitted(yield* store.admit("k", q, 0)), "Failure", 0, 0)
        return admitted(yield* store.admit("k", q, 1_000))
      })
    const renew = (store: CircuitBreakerStore.CircuitBreakerStore) => {
      if (store.renew === undefined) return assert.fail("a shared store renews leases")
      return store.renew
    }

    test("renew extends the lease from now; a lease that ran out is lost (after, not at, its end), long before probeTimeoutMs", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const probe = yield* toHalfOpen(store)
        assert.isTrue(yield* renew(store)("k", p, probe, 1_050)) // lease to 1_150
        assert.isTrue(yield* renew(store)("k", p, probe, 1_140)) // lease to 1_240
        const atEnd = yield* store.read("k", p, 1_240)
        assert.deepStrictEqual([atEnd.state, atEnd.probing, atEnd.transition], ["HalfOpen", 1, undefined])
        assert.deepStrictEqual(yield* store.read("k", p, 1_241), {
          state: "Open",
          retryAfterMs: 2_000,
          consecutiveOpenings: 2,
          probing: 0,
          transition: t("HalfOpen", "Open", 1_241)
        })
        // Lost is lost: neither a renewal nor the late report brings it back.
        assert.isFalse(yield* renew(store)("k", p, probe, 1_242))
        assert.strictEqual(yield* store.record("k", p, probe, "Success", 250, 1_250), undefined)
      }))

    test("a lease that ran out is noticed by admit, and a renewal that comes too late changes nothing", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const probe = yield* toHalfOpen(store)
        assert.isFalse(yield* renew(store)("k", p, probe, 1_101))
        assert.strictEqual((yield* store.read("k", p, 1_101)).state, "Open")
        const a = rejected(yield* store.admit("k", p, 1_102), "Open", 1_999)
        assert.strictEqual(a.transition, undefined)
      }))

    test("renew of a permit that is not a running probe is false and changes nothing", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        assert.isFalse(yield* renew(store)("never-seen", p, 1, 0))
        const closed = admitted(yield* store.admit("k", p, 0))
        assert.isFalse(yield* renew(store)("k", p, closed, 1))
        yield* store.record("k", p, closed, "Failure", 0, 2)
        const probe = admitted(yield* store.admit("k", p, 1_002))
        assert.isFalse(yield* renew(store)("k", p, closed, 1_003))
        assert.isFalse(yield* renew(store)("k", p, probe + 1_000_000, 1_003))
        assert.deepStrictEqual(yield* store.record("k", p, probe, "Success", 10, 1_012), t("HalfOpen", "Closed", 1_012))
      }))

    test("without probeLeaseMs a probe has no lease: renew is false, and only probeTimeoutMs loses it", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const q = policy({ openForMs: [1_000], probeTimeoutMs: 500 })
        const probe = yield* toHalfOpen(store, q)
        assert.isFalse(yield* renew(store)("k", q, probe, 1_010))
        assert.strictEqual((yield* store.read("k", q, 1_500)).state, "HalfOpen")
        assert.strictEqual((yield* store.read("k", q, 1_501)).state, "Open")
      }))
  })

  describe("CircuitBreakerStore contract: trip specs, slow probes, open times and the backoff count", () => {
    test("a probe slower than a SlowCalls spec's slowerThanMs reopens even when it succeeds; one at slowerThanMs closes", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const p = policy({
          trips: [
            { _tag: "Consecutive", failures: 1 },
            { _tag: "SlowCalls", slowerThanMs: 50, threshold: 1, minimumCalls: 10, windowCalls: 10, windowMs: undefined }
          ],
          openForMs: [100]
        })
        yield* store.record("k", p, admitted(yield* store.admit("k", p, 0)), "Failure", 0, 0)
        const slow = admitted(yield* store.admit("k", p, 100))
        assert.deepStrictEqual(yield* store.record("k", p, slow, "Success", 51, 151), t("HalfOpen", "Open", 151))
        const fast = admitted(yield* store.admit("k", p, 251))
        assert.deepStrictEqual(yield* store.record("k", p, fast, "Success", 50, 301), t("HalfOpen", "Closed", 301))
      }))

    test("FailureRate over a count window and SlowCalls over a time window count as specified", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const rate = policy({
          trips: [{ _tag: "FailureRate", threshold: 0.5, minimumCalls: 4, windowCalls: 4, windowMs: undefined }]
        })
        const permit = admitted(yield* store.admit("rate", rate, 0))
        for (const outcome of ["Failure", "Success", "Ignored", "Failure"] as const) {
          assert.strictEqual(yield* store.record("rate", rate, permit, outcome, 0, 0), undefined)
        }
        assert.deepStrictEqual(yield* store.record("rate", rate, permit, "Success", 0, 0), t("Closed", "Open", 0))

        const slow = policy({
          trips: [{ _tag: "SlowCalls", slowerThanMs: 10, threshold: 1, minimumCalls: 2, windowCalls: undefined, windowMs: 1_000 }]
        })
        const s = admitted(yield* store.admit("slow", slow, 0))
        assert.strictEqual(yield* store.record("slow", slow, s, "Success", 11, 0), undefined)
        // the first slow call left the window (10 buckets of 100 ms) by 1 000 ms
        assert.strictEqual(yield* store.record("slow", slow, s, "Failure", 11, 1_000), undefined)
        assert.deepStrictEqual(yield* store.record("slow", slow, s, "Success", 11, 1_050), t("Closed", "Open", 1_050))
      }))

    test("the n-th consecutive opening stays open openForMs[n - 1], the last one repeating; the count resets once closed for the last open time", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const p = policy({ openForMs: [100, 200] })
        yield* store.record("k", p, admitted(yield* store.admit("k", p, 0)), "Failure", 0, 0)
        const seen: Array<number> = []
        let now = 0
        for (let i = 0; i < 3; i++) {
          const info = yield* store.read("k", p, now)
          seen.push(info.retryAfterMs)
          now += info.retryAfterMs
          yield* store.record("k", p, admitted(yield* store.admit("k", p, now)), "Failure", 0, now)
        }
        assert.deepStrictEqual(seen, [100, 200, 200])
        now += 200
        yield* store.record("k", p, admitted(yield* store.admit("k", p, now)), "Success", 0, now) // closed at 700
        assert.strictEqual((yield* store.read("k", p, now + 199)).consecutiveOpenings, 4)
        assert.strictEqual((yield* store.read("k", p, now + 200)).consecutiveOpenings, 0)
      }))

    test("reset clears the backoff count; a key never seen reads as a fresh Closed circuit", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const p = policy({ openForMs: [100, 200] })
        yield* store.record("k", p, admitted(yield* store.admit("k", p, 0)), "Failure", 0, 0)
        assert.deepStrictEqual(yield* store.force("k", p, "Closed", 10), t("Open", "Closed", 10))
        yield* store.record("k", p, admitted(yield* store.admit("k", p, 10)), "Failure", 0, 10)
        assert.strictEqual((yield* store.read("k", p, 10)).retryAfterMs, 100, "the first open time again")
        assert.deepStrictEqual(yield* store.read("nobody", p, 10), {
          state: "Closed",
          retryAfterMs: 0,
          consecutiveOpenings: 0,
          probing: 0,
          transition: undefined
        })
      }))
  })
}

// -----------------------------------------------------------------------------
// differential: the same random operations on the store and on memory()
// -----------------------------------------------------------------------------

/** A small deterministic generator (mulberry32): the same seed gives the same sequence. */
const random = (seed: number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = a
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

const policies: ReadonlyArray<readonly [string, Policy]> = [
  ["consecutive(2), backoff 100/300, 2 probes", policy({
    trips: [{ _tag: "Consecutive", failures: 2 }],
    openForMs: [100, 300],
    probes: 2,
    successesToClose: 2,
    probeTimeoutMs: 250
  })],
  ["failure rate over the last 5 calls and consecutive(4)", policy({
    trips: [
      { _tag: "FailureRate", threshold: 0.6, minimumCalls: 3, windowCalls: 5, windowMs: undefined },
      { _tag: "Consecutive", failures: 4 }
    ],
    openForMs: [200],
    probeTimeoutMs: 150
  })],
  ["failure rate over 1 s (ten buckets)", policy({
    trips: [{ _tag: "FailureRate", threshold: 0.5, minimumCalls: 4, windowCalls: undefined, windowMs: 1_000 }],
    openForMs: [150, 150, 400],
    probes: 3,
    successesToClose: 2,
    probeTimeoutMs: 500
  })],
  ["consecutive(1), 2 probes with leases of 60 ms renewed at random", policy({
    trips: [{ _tag: "Consecutive", failures: 1 }],
    openForMs: [50, 120],
    probes: 2,
    successesToClose: 2,
    probeTimeoutMs: 400,
    probeLeaseMs: 60
  })],
  ["slow calls over 6 calls and over 750 ms", policy({
    trips: [
      { _tag: "SlowCalls", slowerThanMs: 40, threshold: 0.5, minimumCalls: 3, windowCalls: 6, windowMs: undefined },
      { _tag: "SlowCalls", slowerThanMs: 90, threshold: 0.7, minimumCalls: 2, windowCalls: undefined, windowMs: 750 }
    ],
    openForMs: [100],
    probes: 2,
    probeTimeoutMs: 200
  })]
]

/**
 * Random sequences of `admit`, `record` (of running calls, with random
 * outcomes and durations, and again with permits already reported), `read`
 * and `force`, with time moving forward by random steps: every admission,
 * transition and reading of the store under test equals the in-memory
 * store's (permits are compared through the calls they belong to: each
 * store numbers its own).
 */
export const differential = <R>(setup: StoreSetup<R>, options: { readonly seeds: number; readonly steps: number }): void => {
  describe("the same decisions as the in-memory store on random sequences of admit, record, read, force and renew", () => {
    for (const [name, p] of policies) {
      setup.test(name, () =>
        Effect.gen(function*() {
          for (let seed = 1; seed <= options.seeds; seed++) {
            const store = yield* setup.makeStore
            const memory = CircuitBreakerStore.memory()
            const next = random(seed * 104_729)
            const running: Array<{ key: string; mine: number; theirs: number; startedAt: number }> = []
            const reported: Array<{ key: string; mine: number; theirs: number; startedAt: number }> = []
            let now = T0 + Math.floor(next() * 1_000)
            const log: Array<string> = []
            const same = (got: unknown, expected: unknown, what: string) =>
              assert.deepStrictEqual(got, expected, `seed ${seed}: ${what}\n${log.slice(-12).join("\n")}`)
            for (let step = 0; step < options.steps; step++) {
              now += [0, 1, 5, 20, 45, 90, 160, 320][Math.floor(next() * 8)]
              const key = next() < 0.8 ? "a" : "b"
              // With leases, running calls' leases are renewed now and then (probes' renewals say true).
              if (p.probeLeaseMs !== undefined && running.length > 0 && next() < 0.3) {
                const call = running[Math.floor(next() * running.length)]
                log.push(`step ${step}: renew(${call.key}, +${now - T0})`)
                same(
                  yield* store.renew!(call.key, p, call.mine, now),
                  yield* memory.renew!(call.key, p, call.theirs, now),
                  `renew(${call.key}, +${now - T0})`
                )
                continue
              }
              const roll = next()
              if (roll < 0.45) {
                const [got, expected] = [yield* store.admit(key, p, now), yield* memory.admit(key, p, now)]
                log.push(`step ${step}: admit(${key}, +${now - T0}) -> ${expected._tag}`)
                const strip = (a: Admission) => (a._tag === "Admitted" ? { ...a, permit: 0 } : a)
                same(strip(got), strip(expected), `admit(${key}, +${now - T0})`)
                if (got._tag === "Admitted" && expected._tag === "Admitted") {
                  running.push({ key, mine: got.permit, theirs: expected.permit, startedAt: now })
                }
              } else if (roll < 0.8) {
                const stale = next() < 0.15 && reported.length > 0
                const pool = stale ? reported : running
                if (pool.length === 0) continue
                const index = Math.floor(next() * pool.length)
                const call = pool[index]
                if (!stale) {
                  running.splice(index, 1)
                  reported.push(call)
                }
                const outcome = (["Success", "Success", "Failure", "Ignored"] as const)[Math.floor(next() * 4)]
                const elapsed = now - call.startedAt
                log.push(`step ${step}: record(${call.key}, ${outcome}, ${elapsed} ms, +${now - T0}${stale ? ", stale" : ""})`)
                same(
                  yield* store.record(call.key, p, call.mine, outcome, elapsed, now),
                  yield* memory.record(call.key, p, call.theirs, outcome, elapsed, now),
                  `record(${call.key}, ${outcome}, ${elapsed}, +${now - T0})`
                )
              } else if (roll < 0.95) {
                log.push(`step ${step}: read(${key}, +${now - T0})`)
                same(yield* store.read(key, p, now), yield* memory.read(key, p, now), `read(${key}, +${now - T0})`)
              } else {
                const to = (["Closed", "Closed", "Isolated", "Disabled"] as const)[Math.floor(next() * 4)]
                log.push(`step ${step}: force(${key}, ${to}, +${now - T0})`)
                same(yield* store.force(key, p, to, now), yield* memory.force(key, p, to, now), `force(${key}, ${to})`)
              }
            }
          }
        }))
    }
  })
}
