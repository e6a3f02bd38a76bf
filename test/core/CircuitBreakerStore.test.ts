/**
 * The CircuitBreakerStore contract (issue 3: state behind a store interface designed for an
 * atomic remote store, one round trip per decision), in two parts:
 *
 * 1. The contract itself (test/support/circuitBreakerStoreContract.ts, which the Redis store
 *    runs too), on `CircuitBreakerStore.memory()` through its `Effect` operations (`admit`,
 *    `record`, `read`, `force`), with explicit times: permits and fencing, trips, half-open
 *    probes, lost probes, backoff, manual control; then what is particular to memory():
 *    bounded and idle-reclaimed keys, the in-process side.
 * 2. The breaker's important behaviours again through a store that exposes only the `Effect`
 *    interface (the in-memory store without its `inProcess` side, as a remote store would be),
 *    under TestClock.
 */
import { assert, describe, it } from "@effect/vitest"
import { CircuitBreaker, CircuitBreakerStore, CircuitOpen, InvalidOptions } from "@bulwark/core"
import { Cause, Data, Deferred, Duration, Effect, Exit, Fiber, Metric, Scope, Stream } from "effect"
import { TestClock } from "effect/testing"
import { admitted, policy, storeContract, t } from "../support/circuitBreakerStoreContract.ts"

// -----------------------------------------------------------------------------
// 1. the contract, on memory()
// -----------------------------------------------------------------------------

describe("CircuitBreakerStore contract on memory()", () => {
  storeContract({
    test: (name, body) => it.effect(name, body),
    makeStore: Effect.sync(() => CircuitBreakerStore.memory())
  })
})

describe("CircuitBreakerStore.memory: permits come from one counter for the process", () => {
  it.effect("permits only grow, across keys and after a key was dropped and created again", () =>
    Effect.gen(function*() {
      const store = CircuitBreakerStore.memory({ maxKeys: 1 })
      const p = policy()
      const seen: Array<number> = []
      for (const key of ["a", "b", "a", "b", "a"]) seen.push(admitted(yield* store.admit(key, p, 0)))
      for (let i = 1; i < seen.length; i++) assert.isAbove(seen[i], seen[i - 1])
      // the first "a" was evicted: its permit does not count for the new "a"
      assert.strictEqual(yield* store.record("a", p, seen[0], "Failure", 0, 0), undefined)
      assert.strictEqual((yield* store.read("a", p, 0)).state, "Closed")
      assert.deepStrictEqual(yield* store.record("a", p, seen[4], "Failure", 0, 0), t("Closed", "Open", 0))
    }))
})

describe("CircuitBreakerStore.memory: bounded keys, idle reclaiming, and the in-process side", () => {
  it.effect("read creates nothing; force and admit create; the in-process circuits are the same state as the Effect operations'", () =>
    Effect.gen(function*() {
      const store = CircuitBreakerStore.memory()
      const local = store.inProcess!
      const p = policy()
      yield* store.read("a", p, 0)
      assert.strictEqual(local.size(), 0)
      yield* store.force("a", p, "Isolated", 0)
      yield* store.admit("b", p, 0)
      assert.deepStrictEqual(local.keys(), ["a", "b"])
      assert.strictEqual(local.find("a")?.state, "Isolated")
      const b = local.find("b")!
      const permit = b.admit(TestClockless(0), () => {})
      assert.isAtLeast(permit, 0)
      b.record(permit, "Failure", 0, TestClockless(0), () => {})
      assert.strictEqual((yield* store.read("b", p, 0)).state, "Open")
    }))

  it.effect("at maxKeys a new key evicts the least recently used circuit, one with no call running first", () =>
    Effect.gen(function*() {
      const store = CircuitBreakerStore.memory({ maxKeys: 2 })
      const local = store.inProcess!
      const p = policy()
      const a = admitted(yield* store.admit("a", p, 0)) // a call of a is running
      yield* store.record("b", p, admitted(yield* store.admit("b", p, 0)), "Success", 0, 0)
      yield* store.admit("c", p, 0) // b is idle: b goes, not a (the least recently used)
      assert.deepStrictEqual(local.keys(), ["a", "c"])
      yield* store.record("a", p, a, "Success", 0, 0)
      yield* store.admit("d", p, 0) // c has a call running: a goes
      assert.deepStrictEqual(local.keys(), ["c", "d"])
      assert.strictEqual(local.reclaimed(), 2)
    }))

  it.effect("the late report of a call to a dropped circuit leaves the key's new circuit alone: its own running call still protects it", () =>
    Effect.gen(function*() {
      const store = CircuitBreakerStore.memory({ maxKeys: 2 })
      const local = store.inProcess!
      const p = policy()
      const oldA = admitted(yield* store.admit("a", p, 0))
      const b = admitted(yield* store.admit("b", p, 0))
      yield* store.record("c", p, admitted(yield* store.admit("c", p, 0)), "Success", 0, 0) // every circuit busy: a goes
      assert.deepStrictEqual(local.keys(), ["b", "c"])
      admitted(yield* store.admit("a", p, 0)) // a new circuit for a (c, idle, goes), with a call running
      assert.deepStrictEqual(local.keys(), ["b", "a"])
      assert.strictEqual(yield* store.record("a", p, oldA, "Failure", 0, 0), undefined)
      yield* store.record("b", p, b, "Success", 0, 0) // b idle, and the most recently used
      yield* store.admit("d", p, 0) // a still has its call running: b goes
      assert.deepStrictEqual(local.keys(), ["a", "d"])
    }))

  it.effect("a circuit idle for idleTimeToLive is dropped when a new key arrives; one with a call running, or Open with time to go, is kept", () =>
    Effect.gen(function*() {
      const store = CircuitBreakerStore.memory({ idleTimeToLive: "1 minute" })
      const local = store.inProcess!
      const p = policy({ openForMs: [120_000] })
      const running = admitted(yield* store.admit("running", p, 0))
      yield* store.record("open", p, admitted(yield* store.admit("open", p, 0)), "Failure", 0, 0)
      yield* store.record("idle", p, admitted(yield* store.admit("idle", p, 0)), "Success", 0, 0)
      yield* store.admit("new", p, 60_000)
      assert.deepStrictEqual(local.keys(), ["running", "open", "new"])
      yield* store.record("running", p, running, "Success", 0, 60_000) // idle from 60 000 ms
      yield* store.admit("newer", p, 120_000) // open time over; running idle 60 s
      assert.deepStrictEqual(local.keys(), ["new", "newer"])
    }))

  it.effect("isCircuitBreakerStore; make builds a store from operations; bad memory options are refused", () =>
    Effect.gen(function*() {
      const memory = CircuitBreakerStore.memory()
      assert.isTrue(CircuitBreakerStore.isCircuitBreakerStore(memory))
      assert.isFalse(CircuitBreakerStore.isCircuitBreakerStore({ admit: memory.admit }))
      const made = CircuitBreakerStore.make({ admit: memory.admit, record: memory.record, read: memory.read, force: memory.force })
      assert.isTrue(CircuitBreakerStore.isCircuitBreakerStore(made))
      assert.strictEqual(made.inProcess, undefined)
      assert.throws(() => CircuitBreakerStore.memory({ maxKeys: 0 }), /maxKeys/)
      assert.throws(() => CircuitBreakerStore.memory({ maxKeys: 1.5 }), /maxKeys/)
    }))
})

/** A time source stopped at `now`, for calling in-process circuits directly. */
function TestClockless(now: number): CircuitBreakerStore.TimeSource {
  return { currentTimeMillisUnsafe: () => now }
}

// -----------------------------------------------------------------------------
// 2. the breaker through a store with only the Effect interface
// -----------------------------------------------------------------------------

class Boom extends Data.TaggedError("Boom") {}

interface Calls {
  admit: number
  record: number
  read: number
  force: number
}

/**
 * The in-memory store seen only through its `Effect` operations, as a remote store would be,
 * counting the calls; `admitDelay` makes every admission take that long (a round trip).
 */
const effectOnly = (options: { readonly admitDelay?: Duration.Input; readonly memory?: CircuitBreakerStore.CircuitBreakerStore } = {}) => {
  const memory = options.memory ?? CircuitBreakerStore.memory()
  const calls: Calls = { admit: 0, record: 0, read: 0, force: 0 }
  const store = CircuitBreakerStore.make({
    admit: (key, p, now) => {
      const admit = Effect.suspend(() => {
        calls.admit++
        return memory.admit(key, p, now)
      })
      return options.admitDelay === undefined ? admit : Effect.delay(admit, options.admitDelay)
    },
    record: (...args) => Effect.suspend(() => (calls.record++, memory.record(...args))),
    read: (...args) => Effect.suspend(() => (calls.read++, memory.read(...args))),
    force: (...args) => Effect.suspend(() => (calls.force++, memory.force(...args)))
  })
  return { store, calls, memory }
}

const settle = Effect.gen(function*() {
  for (let i = 0; i < 10; i++) yield* Effect.yieldNow
})

const rejection = (exit: Exit.Exit<unknown, unknown>): CircuitOpen => {
  if (Exit.isSuccess(exit)) return assert.fail("expected a rejection, got a success")
  const reason = exit.cause.reasons[0]
  if (!Cause.isFailReason(reason) || !(reason.error instanceof CircuitOpen)) {
    return assert.fail(`expected CircuitOpen, got ${Cause.pretty(exit.cause)}`)
  }
  return reason.error
}

const call = (b: CircuitBreaker.CircuitBreaker, ok: boolean, key?: string) =>
  Effect.exit((ok ? Effect.succeed("ok") : Effect.fail(new Boom())).pipe(CircuitBreaker.guard(b, key === undefined ? undefined : { key })))

/** Launches a guarded call that runs until `gate` is completed. */
const start = (b: CircuitBreaker.CircuitBreaker) =>
  Effect.gen(function*() {
    const gate = yield* Deferred.make<string, Boom>()
    let started = false
    const fiber = yield* Effect.forkChild(
      Effect.suspend(() => {
        started = true
        return Deferred.await(gate)
      }).pipe(CircuitBreaker.guard(b))
    )
    yield* settle
    return { gate, fiber, started: () => started }
  })

describe("CircuitBreaker through a store with only the Effect interface: one store call per decision", () => {
  it.effect("an admitted call makes one admit and one record; a rejection one admit; reads and manual control one call each", () =>
    Effect.gen(function*() {
      const { calls, store } = effectOnly()
      const b = yield* CircuitBreaker.make({ name: "remote", trip: CircuitBreaker.consecutive(1), openFor: "1 second", store })
      yield* call(b, true)
      assert.deepStrictEqual(calls, { admit: 1, record: 1, read: 0, force: 0 })
      yield* call(b, false)
      assert.deepStrictEqual(calls, { admit: 2, record: 2, read: 0, force: 0 })
      const error = rejection(yield* call(b, true))
      assert.deepStrictEqual([error.reason, error.state, Duration.toMillis(error.retryAfter), error.name], ["Open", "Open", 1_000, "remote"])
      assert.deepStrictEqual(calls, { admit: 3, record: 2, read: 0, force: 0 })
      yield* CircuitBreaker.state(b)
      yield* CircuitBreaker.isolate(b)
      assert.deepStrictEqual(calls, { admit: 3, record: 2, read: 1, force: 1 })
    }))
})

describe("CircuitBreaker through a store with only the Effect interface: the important behaviours", () => {
  it.effect("trips, rejects while open, probes after the open time and closes; stats, state and transitions as with the in-memory store", () =>
    Effect.gen(function*() {
      const { store } = effectOnly()
      const b = yield* CircuitBreaker.make({ name: "payments", trip: CircuitBreaker.consecutive(3), openFor: "100 millis", store })
      const seen = yield* Effect.forkChild(Stream.runCollect(Stream.take(CircuitBreaker.transitions(b), 3)), { startImmediately: true })
      for (let i = 0; i < 3; i++) yield* call(b, false)
      const info = yield* CircuitBreaker.state(b)
      assert.deepStrictEqual([info.state, Duration.toMillis(info.retryAfter), info.consecutiveOpenings], ["Open", 100, 1])
      yield* TestClock.adjust("40 millis")
      assert.strictEqual(Duration.toMillis(rejection(yield* call(b, true)).retryAfter), 60)
      yield* TestClock.adjust("60 millis")
      assert.isTrue(Exit.isSuccess(yield* call(b, true)))
      assert.strictEqual((yield* CircuitBreaker.state(b)).state, "Closed")
      assert.deepStrictEqual(
        (yield* Fiber.join(seen)).map((x) => `${x.from} -> ${x.to} @${x.at}`),
        ["Closed -> Open @0", "Open -> HalfOpen @100", "HalfOpen -> Closed @100"]
      )
      const stats = yield* CircuitBreaker.stats(b)
      assert.deepStrictEqual(
        [stats.state, stats.successes, stats.failures, stats.rejected.Open, stats.transitions, stats.openings, stats.circuits],
        ["Closed", 1, 3, 1, 3, 1, 1]
      )
    }))

  it.effect("half-open: at most `probes` probes, the others rejected ProbesBusy; an interrupted probe frees its slot", () =>
    Effect.gen(function*() {
      const { store } = effectOnly()
      const b = yield* CircuitBreaker.make({
        name: "inventory",
        trip: CircuitBreaker.consecutive(1),
        openFor: "50 millis",
        halfOpen: { probes: 2, successesToClose: 2 },
        store
      })
      yield* call(b, false)
      yield* TestClock.adjust("50 millis")
      const p1 = yield* start(b)
      const p2 = yield* start(b)
      assert.isTrue(p1.started() && p2.started())
      assert.strictEqual((yield* CircuitBreaker.state(b)).probing, 2)
      const busy = rejection(yield* call(b, true))
      assert.deepStrictEqual([busy.reason, busy.state, Duration.toMillis(busy.retryAfter)], ["ProbesBusy", "HalfOpen", 0])
      yield* Fiber.interrupt(p1.fiber)
      assert.strictEqual((yield* CircuitBreaker.state(b)).probing, 1)
      const p3 = yield* start(b)
      assert.isTrue(p3.started(), "the freed slot takes a new probe")
      yield* Deferred.succeed(p2.gate, "stock")
      yield* Deferred.succeed(p3.gate, "stock")
      yield* Fiber.await(p2.fiber)
      yield* Fiber.await(p3.fiber)
      assert.strictEqual((yield* CircuitBreaker.state(b)).state, "Closed")
      assert.strictEqual((yield* CircuitBreaker.stats(b)).ignored, 1)
    }))

  it.effect("an interruption while the store is deciding still reports the permit taken: no probe slot leaks", () =>
    Effect.gen(function*() {
      const { calls, store } = effectOnly({ admitDelay: "10 millis" })
      const b = yield* CircuitBreaker.make({
        name: "slow-store",
        trip: CircuitBreaker.consecutive(1),
        openFor: "1 second",
        halfOpen: { probes: 1, probeTimeout: "1 hour" },
        store
      })
      const first = yield* Effect.forkChild(call(b, false))
      yield* settle
      yield* TestClock.adjust("10 millis")
      yield* Fiber.join(first)
      yield* TestClock.adjust("1 second")
      const probe = yield* start(b) // its admission takes 10 ms
      assert.isFalse(probe.started())
      const interrupting = yield* Effect.forkChild(Fiber.interrupt(probe.fiber))
      yield* settle
      yield* TestClock.adjust("10 millis") // the store answers: a probe permit, then the interruption
      yield* Fiber.join(interrupting)
      assert.isFalse(probe.started(), "the call itself never ran")
      assert.strictEqual(calls.record, 2, "the probe's permit was reported")
      const after = yield* Effect.forkChild(call(b, true))
      yield* settle
      yield* TestClock.adjust("10 millis")
      assert.isTrue(Exit.isSuccess(yield* Fiber.join(after)), "the slot was free for the next probe")
      assert.strictEqual((yield* CircuitBreaker.state(b)).state, "Closed")
    }))

  it.effect("fencing: a call admitted before a trip finishes normally and its failure changes nothing", () =>
    Effect.gen(function*() {
      const { store } = effectOnly()
      const b = yield* CircuitBreaker.make({ name: "fenced", trip: CircuitBreaker.consecutive(2), openFor: "1 second", store })
      const early = yield* start(b)
      yield* call(b, false)
      yield* call(b, false) // opens
      yield* TestClock.adjust("1 second")
      yield* call(b, true) // a probe closes it again
      yield* Deferred.fail(early.gate, new Boom())
      const exit = yield* Fiber.await(early.fiber)
      assert.isTrue(Exit.isFailure(exit) && Cause.isFailReason(exit.cause.reasons[0]) && exit.cause.reasons[0].error instanceof Boom)
      yield* call(b, false) // one failure of the new closed period: still closed
      const s = yield* CircuitBreaker.stats(b)
      assert.deepStrictEqual([s.state, s.failures, s.openings], ["Closed", 4, 1])
    }))

  it.effect("a lost probe is noticed by a state read and reopens the circuit; its late success changes nothing", () =>
    Effect.gen(function*() {
      const { store } = effectOnly()
      const b = yield* CircuitBreaker.make({
        name: "lost",
        trip: CircuitBreaker.consecutive(1),
        openFor: "1 second",
        halfOpen: { probeTimeout: "5 seconds" },
        store
      })
      yield* call(b, false)
      yield* TestClock.adjust("1 second")
      const hung = yield* start(b)
      yield* TestClock.adjust("5 seconds")
      assert.strictEqual((yield* CircuitBreaker.state(b)).state, "HalfOpen")
      yield* TestClock.adjust("1 millis")
      const info = yield* CircuitBreaker.state(b)
      assert.deepStrictEqual([info.state, info.consecutiveOpenings, info.probing], ["Open", 2, 0])
      yield* Deferred.succeed(hung.gate, "late")
      yield* Fiber.await(hung.fiber)
      const s = yield* CircuitBreaker.stats(b)
      assert.deepStrictEqual([s.state, s.openings, s.transitions, s.successes], ["Open", 2, 3, 1])
    }))

  it.effect("isolate, disable and reset go through the store; the state gauge shows the last state seen", () =>
    Effect.gen(function*() {
      const { store } = effectOnly()
      const registry: Metric.MetricRegistry = new Map()
      const scope = yield* Scope.make()
      const b = yield* CircuitBreaker.make({ name: "ledger", trip: CircuitBreaker.consecutive(1), openFor: "1 minute", store }).pipe(
        Scope.provide(scope),
        Effect.provideService(Metric.MetricRegistry, registry)
      )
      const gauge = Effect.map(
        Metric.snapshot.pipe(Effect.provideService(Metric.MetricRegistry, registry)),
        (s) => Number((s.find((m) => m.id === "bulwark.circuitbreaker.state")!.state as Metric.GaugeState<number>).value)
      )
      assert.strictEqual(yield* gauge, 0)
      yield* CircuitBreaker.isolate(b)
      assert.strictEqual(rejection(yield* call(b, true)).reason, "Isolated")
      assert.strictEqual(yield* gauge, 3)
      yield* CircuitBreaker.disable(b)
      for (let i = 0; i < 3; i++) assert.isTrue(Exit.isFailure(yield* call(b, false)))
      assert.strictEqual(yield* gauge, 4)
      yield* CircuitBreaker.reset(b)
      yield* call(b, false)
      assert.strictEqual(yield* gauge, 2)
      const s = yield* CircuitBreaker.stats(b)
      assert.deepStrictEqual([s.failures, s.rejected.Isolated, s.transitions, s.openings], [1, 1, 4, 1])
      yield* Scope.close(scope, Exit.void)
    }))

  it.effect("keyed: one circuit per key, kept in the store as `name:key`; keys in errors only with exposeKeys", () =>
    Effect.gen(function*() {
      const { memory, store } = effectOnly()
      const b = yield* CircuitBreaker.make({
        name: "hosts",
        trip: CircuitBreaker.consecutive(1),
        openFor: "30 seconds",
        keys: { maxKeys: 10, exposeKeys: true },
        store
      })
      yield* call(b, false, "eu-2")
      const error = rejection(yield* call(b, true, "eu-2"))
      assert.strictEqual(error.key, "eu-2")
      assert.isTrue(Exit.isSuccess(yield* call(b, true, "eu-1")))
      assert.strictEqual((yield* CircuitBreaker.state(b, "eu-2")).state, "Open")
      assert.strictEqual((yield* CircuitBreaker.state(b, "eu-1")).state, "Closed")
      assert.deepStrictEqual(memory.inProcess!.keys(), ["hosts:eu-2", "hosts:eu-1"])
      const s = yield* CircuitBreaker.stats(b)
      assert.deepStrictEqual([s.state, s.circuits], [undefined, 0], "a remote store's circuits are not counted here")
    }))

  it.effect("breakers with the same name on one store share their circuit (as processes sharing a remote store); other names do not", () =>
    Effect.gen(function*() {
      const { store } = effectOnly()
      const options = { trip: CircuitBreaker.consecutive(2), openFor: "1 second", store } as const
      const processA = yield* CircuitBreaker.make({ name: "payments", ...options })
      const processB = yield* CircuitBreaker.make({ name: "payments", ...options })
      const other = yield* CircuitBreaker.make({ name: "search", ...options })
      yield* call(processA, false)
      yield* call(processB, false) // the second failure in a row, counted across both
      assert.strictEqual(rejection(yield* call(processA, true)).reason, "Open")
      assert.strictEqual((yield* CircuitBreaker.state(processB)).state, "Open")
      assert.isTrue(Exit.isSuccess(yield* call(other, true)))
      yield* TestClock.adjust("1 second")
      const probe = yield* start(processA)
      assert.strictEqual(rejection(yield* call(processB, true)).reason, "ProbesBusy", "one probe across both")
      yield* Deferred.succeed(probe.gate, "ok")
      yield* Fiber.await(probe.fiber)
      assert.strictEqual((yield* CircuitBreaker.state(processB)).state, "Closed")
    }))
})

describe("CircuitBreaker with a store given in the options", () => {
  it.effect("an in-process store shared by breakers of different names: each sees its own circuits and keys", () =>
    Effect.gen(function*() {
      const shared = CircuitBreakerStore.memory({ maxKeys: 100 })
      const plain = yield* CircuitBreaker.make({ name: "plain", trip: CircuitBreaker.consecutive(1), openFor: "1 second", store: shared })
      const keyed = yield* CircuitBreaker.make({
        name: "hosts",
        trip: CircuitBreaker.consecutive(1),
        openFor: "1 second",
        keys: { maxKeys: 100, exposeKeys: true },
        store: shared
      })
      yield* call(plain, false)
      yield* call(keyed, true, "a")
      yield* call(keyed, false, "b")
      assert.strictEqual((yield* CircuitBreaker.state(plain)).state, "Open")
      assert.strictEqual((yield* CircuitBreaker.state(keyed, "a")).state, "Closed")
      assert.strictEqual((yield* CircuitBreaker.state(keyed, "b")).state, "Open")
      assert.deepStrictEqual(yield* CircuitBreaker.keys(keyed), ["a", "b"])
      assert.strictEqual((yield* CircuitBreaker.stats(keyed)).circuits, 2)
      assert.deepStrictEqual(shared.inProcess!.keys(), ["plain", "hosts:a", "hosts:b"])
    }))

  it.effect("a value that is not a store fails make with InvalidOptions naming `store`", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        CircuitBreaker.make({ name: "cb", trip: CircuitBreaker.consecutive(1), openFor: "1 second", store: {} as any })
      )
      assert.instanceOf(error, InvalidOptions)
      assert.include(error.message, "store")
    }))
})

describe("CircuitBreaker with its own in-memory store: a circuit evicted with a call running", () => {
  it.effect("the call's late failure changes nothing (no transition, no opening); the key starts again Closed", () =>
    Effect.gen(function*() {
      const b = yield* CircuitBreaker.make({
        name: "hosts",
        trip: CircuitBreaker.consecutive(1),
        openFor: "1 second",
        keys: { maxKeys: 1, exposeKeys: true }
      })
      const gate = yield* Deferred.make<string, Boom>()
      const running = yield* Effect.forkChild(Deferred.await(gate).pipe(CircuitBreaker.guard(b, { key: "a" })))
      yield* settle
      yield* call(b, true, "b") // at maxKeys with every circuit busy: a is evicted anyway
      assert.deepStrictEqual(yield* CircuitBreaker.keys(b), ["b"])
      yield* Deferred.fail(gate, new Boom())
      yield* Fiber.await(running)
      const s = yield* CircuitBreaker.stats(b)
      assert.deepStrictEqual([s.failures, s.transitions, s.openings, s.reclaimed], [1, 0, 0, 1])
      assert.strictEqual((yield* CircuitBreaker.state(b, "a")).state, "Closed")
    }))
})
