/**
 * DistributedBulkhead and BulkheadStore on the in-memory store: one
 * `describe` per rule of issue 5 (distributed bulkhead), all on `TestClock`.
 *
 * The store contract and the rules that depend on the store are the shared
 * suites of test/support/bulkheadStoreContract.ts, run here against the
 * memory store and in test/redis against a real redis-server. What follows
 * them is specific to the in-memory run: exact timings (polls, renewals,
 * leases, probes) on virtual time, store failures injected by a wrapper
 * around a real in-process store, interruption races, options,
 * observability, and a property test over random interleavings of calls,
 * interruptions, crashes and time.
 */
import { assert, describe, it } from "@effect/vitest"
import { BulkheadFull, BulkheadStore, DistributedBulkhead, InvalidOptions, type Store, StoreError } from "@bulwark/core"
import { Cause, Clock, Context, Deferred, Duration, Effect, Exit, Fiber, Layer, Metric, Schema, Scope, Stream, Tracer } from "effect"
import * as Arbitrary from "effect/Arbitrary"
import { TestClock } from "effect/testing"
import { contract, rules, type StoreSetup } from "../support/bulkheadStoreContract.ts"

// -----------------------------------------------------------------------------
// helpers
// -----------------------------------------------------------------------------

const now = Clock.currentTimeMillis

/** Lets every ready fiber run up to its next wait. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 20; i++) yield* Effect.yieldNow
})

const ms = (d: Duration.Duration) => Duration.toMillis(d)

type Operation = BulkheadStore.Operation

/**
 * A real in-process store behind a switch: its operations can be made to
 * fail (a process cut off from the store, an outage), with a chosen reason,
 * or to take effect and then report a timeout (an answer lost on the way
 * back). Every operation that reaches the inner store is logged with its time.
 */
const faulty = (inner: BulkheadStore.BulkheadStore = BulkheadStore.memory()) => {
  const down = new Set<Operation>()
  const lost = new Set<Operation>()
  let reason: Store.Reason = "Unavailable"
  const log: Array<{ readonly operation: Operation; readonly at: number; readonly token?: string }> = []
  const error = (operation: Operation, why: Store.Reason) =>
    new StoreError({ store: "test", operation, reason: why, message: `${operation}: store down (test)` })
  const wrap = <A>(operation: Operation, at: number, token: string | undefined, effect: Effect.Effect<A, StoreError>) => {
    if (down.has(operation)) return Effect.fail(error(operation, reason))
    const logged = Effect.tap(effect, () => Effect.sync(() => log.push(token === undefined ? { operation, at } : { operation, at, token })))
    return lost.has(operation) ? Effect.andThen(logged, Effect.fail(error(operation, "Timeout"))) : logged
  }
  const store = BulkheadStore.make({
    acquire: (request) => wrap("acquire", request.now, request.token, inner.acquire(request)),
    renew: (name, token, leaseMs, t) => wrap("renew", t, token, inner.renew(name, token, leaseMs, t)),
    release: (name, token, t) => wrap("release", t, token, inner.release(name, token, t)),
    inspect: (name, t) => inner.inspect(name, t)
  })
  return {
    store,
    inner,
    log,
    down: (...operations: ReadonlyArray<Operation>) => operations.forEach((o) => down.add(o)),
    /** The operation takes effect, but its answer is lost: it fails with reason Timeout. */
    loseAnswers: (...operations: ReadonlyArray<Operation>) => operations.forEach((o) => lost.add(o)),
    up: () => {
      down.clear()
      lost.clear()
    },
    failWith: (r: Store.Reason) => (reason = r)
  }
}

let names = 0
const fresh = (options?: Partial<DistributedBulkhead.Options>) =>
  DistributedBulkhead.make({ name: `db-${++names}`, maxConcurrent: 2, ...options })

/** A call that records its start and end times in `log`, and holds its slot for `takes` ms. */
const timed = (log: Array<string>, id: string, takes: number) =>
  Effect.gen(function*() {
    log.push(`${id} start ${yield* now}`)
    yield* Effect.sleep(takes)
    log.push(`${id} end ${yield* now}`)
    return id
  })

const occupancy = (b: DistributedBulkhead.DistributedBulkhead) => DistributedBulkhead.occupancy(b)

// -----------------------------------------------------------------------------
// the shared suites, on the memory store
// -----------------------------------------------------------------------------

const memory: StoreSetup<never> = {
  test: (name, body) => it.effect(name, body),
  makeStore: Effect.sync(() => BulkheadStore.memory()),
  advance: (millis) => TestClock.adjust(millis),
  leaseMs: 1000,
  virtualTime: true
}

describe("BulkheadStore.memory keeps the store contract", () => contract(memory))

describe("DistributedBulkhead on the memory store", () => rules(memory))

// -----------------------------------------------------------------------------
// rule: a global cap
// -----------------------------------------------------------------------------

describe("the cap is global: at most maxConcurrent calls hold a slot, whichever instance (process) they run in", () => {
  it.effect("40 calls of random lengths through 3 instances sharing a store never run more than maxConcurrent at once", () =>
    Effect.gen(function*() {
      const store = BulkheadStore.memory()
      const options = { name: "shared", maxConcurrent: 3, maxQueue: 40, pollInterval: 50, store } as const
      const instances = [
        yield* DistributedBulkhead.make(options),
        yield* DistributedBulkhead.make(options),
        yield* DistributedBulkhead.make(options)
      ]
      let running = 0
      let peak = 0
      const body = (takes: number) =>
        Effect.sync(() => {
          running++
          peak = Math.max(peak, running)
        }).pipe(Effect.andThen(Effect.sleep(takes)), Effect.ensuring(Effect.sync(() => running--)))
      const fibers = []
      for (let i = 0; i < 40; i++) {
        fibers.push(yield* Effect.forkChild(body(10 + ((i * 37) % 90)).pipe(DistributedBulkhead.guard(instances[i % 3]))))
        if (i % 5 === 0) yield* TestClock.adjust(7)
      }
      for (let t = 0; t < 400 && fibers.some((f) => f.pollUnsafe() === undefined); t++) yield* TestClock.adjust(10)
      for (const fiber of fibers) yield* Fiber.join(fiber)
      assert.strictEqual(peak, 3)
      assert.deepStrictEqual(yield* occupancy(instances[0]), { inFlight: 0, queued: 0 })
      const admitted = yield* Effect.forEach(instances, (b) => Effect.map(DistributedBulkhead.stats(b), (s) => s.admitted))
      assert.strictEqual(admitted.reduce((a, b) => a + b, 0), 40)
    }))
})

// -----------------------------------------------------------------------------
// rule: waiting
// -----------------------------------------------------------------------------

describe("waiting is FIFO by ticket order; maxQueue and queueTimeout bound it", () => {
  it.effect("calls waiting in one instance start in arrival order", () =>
    Effect.gen(function*() {
      const b = yield* fresh({ maxConcurrent: 1, maxQueue: 10 })
      const log: Array<string> = []
      const fibers = []
      for (let i = 0; i < 5; i++) {
        fibers.push(yield* Effect.forkChild(timed(log, `c${i}`, 100).pipe(DistributedBulkhead.guard(b))))
        yield* settle
      }
      yield* TestClock.adjust(500)
      for (const fiber of fibers) yield* Fiber.join(fiber)
      // Each released slot goes to the next waiter of this process at once (no poll delay).
      assert.deepStrictEqual(log.filter((l) => l.includes("start")), [
        "c0 start 0",
        "c1 start 100",
        "c2 start 200",
        "c3 start 300",
        "c4 start 400"
      ])
      const s = yield* DistributedBulkhead.stats(b)
      assert.deepStrictEqual([s.admitted, s.admittedAfterWait, ms(s.totalWait), ms(s.maxWait)], [5, 4, 1000, 400])
    }))

  it.effect("waiters of two instances are admitted in ticket order, whichever polls first", () =>
    Effect.gen(function*() {
      const store = BulkheadStore.memory()
      const options = { name: "fifo", maxConcurrent: 1, maxQueue: 10, pollInterval: 40, store } as const
      const a = yield* DistributedBulkhead.make(options)
      const b = yield* DistributedBulkhead.make(options)
      const log: Array<string> = []
      const holder = yield* Effect.forkChild(timed(log, "holder", 1000).pipe(DistributedBulkhead.guard(a)))
      yield* settle
      const order = [["b1", b], ["a1", a], ["b2", b], ["a2", a], ["b3", b]] as const
      const fibers = []
      for (const [id, instance] of order) {
        fibers.push(yield* Effect.forkChild(timed(log, id, 30).pipe(DistributedBulkhead.guard(instance))))
        yield* settle
        yield* TestClock.adjust(3)
      }
      assert.deepStrictEqual(yield* occupancy(a), { inFlight: 1, queued: 5 })
      for (let t = 0; t < 400; t++) yield* TestClock.adjust(5)
      yield* Fiber.join(holder)
      for (const fiber of fibers) yield* Fiber.join(fiber)
      const starts = log.filter((l) => l.includes("start")).map((l) => l.split(" ")[0])
      assert.deepStrictEqual(starts, ["holder", "b1", "a1", "b2", "a2", "b3"])
    }))

  it.effect("a slot released in a process goes to its own first waiter at once; a waiter elsewhere polls within pollInterval", () =>
    Effect.gen(function*() {
      const store = BulkheadStore.memory()
      const options = { name: "wake", maxConcurrent: 1, maxQueue: 10, pollInterval: 100, store } as const
      const a = yield* DistributedBulkhead.make(options)
      const b = yield* DistributedBulkhead.make(options)
      const log: Array<string> = []
      yield* Effect.forkChild(timed(log, "holder", 1000).pipe(DistributedBulkhead.guard(a)))
      yield* settle
      const remote = yield* Effect.forkChild(timed(log, "remote", 0).pipe(DistributedBulkhead.guard(b)))
      yield* settle
      yield* TestClock.adjust(1000)
      yield* settle
      // Released at 1000; b's waiter polls at 10, 30, 70, 150, 250, ... (doubling up to 100 ms).
      assert.notInclude(log.join(), "remote start")
      yield* TestClock.adjust(100)
      yield* Fiber.join(remote)
      const remoteStart = Number(log.find((l) => l.startsWith("remote start"))!.split(" ")[2])
      assert.isTrue(remoteStart > 1000 && remoteStart <= 1100, `remote started at ${remoteStart}`)

      const local = yield* Effect.forkChild(timed(log, "h2", 500).pipe(DistributedBulkhead.guard(a)))
      yield* settle
      const next = yield* Effect.forkChild(timed(log, "local", 0).pipe(DistributedBulkhead.guard(a)))
      yield* settle
      yield* TestClock.adjust(500)
      yield* Fiber.join(local)
      yield* Fiber.join(next)
      const t0 = Number(log.find((l) => l.startsWith("h2 start"))!.split(" ")[2])
      assert.include(log, `local start ${t0 + 500}`)
    }))

  it.effect("maxQueue bounds the waiting room shared by every instance: the next call is rejected with QueueFull at once", () =>
    Effect.gen(function*() {
      const store = BulkheadStore.memory()
      const options = { name: "bounded", maxConcurrent: 1, maxQueue: 2, store } as const
      const a = yield* DistributedBulkhead.make(options)
      const b = yield* DistributedBulkhead.make(options)
      const held = [
        yield* Effect.forkChild(Effect.never.pipe(DistributedBulkhead.guard(a))),
        yield* Effect.forkChild(Effect.never.pipe(DistributedBulkhead.guard(a))),
        yield* Effect.forkChild(Effect.never.pipe(DistributedBulkhead.guard(b)))
      ]
      yield* settle
      const e = yield* Effect.flip(Effect.void.pipe(DistributedBulkhead.guard(b)))
      assert.instanceOf(e, BulkheadFull)
      assert.isTrue(Schema.is(BulkheadFull)(e))
      assert.deepStrictEqual([e.reason, e.name, e.maxConcurrent, e.maxQueue, ms(e.waited)], ["QueueFull", "bounded", 1, 2, 0])
      assert.include(e.message, `Bulkhead "bounded" rejected the call: QueueFull`)
      // Closing an instance waits for its running calls: end them first.
      yield* Fiber.interruptAll(held)
    }))

  it.effect("a waiter gives up at queueTimeout exactly, with QueueTimeout and the time it waited; its ticket is given back", () =>
    Effect.gen(function*() {
      const b = yield* fresh({ maxConcurrent: 1, maxQueue: 5, queueTimeout: "500 millis" })
      const holder = yield* Effect.forkChild(Effect.never.pipe(DistributedBulkhead.guard(b)))
      yield* settle
      const waiter = yield* Effect.forkChild(Effect.flip(Effect.void.pipe(DistributedBulkhead.guard(b))))
      const short = yield* Effect.forkChild(Effect.flip(Effect.void.pipe(DistributedBulkhead.guard(b, { queueTimeout: 120 }))))
      yield* settle
      assert.strictEqual((yield* occupancy(b)).queued, 2)
      yield* TestClock.adjust(119)
      assert.isUndefined(short.pollUnsafe())
      yield* TestClock.adjust(1)
      const e1 = yield* Fiber.join(short)
      assert.deepStrictEqual([e1.reason, ms(e1.waited)], ["QueueTimeout", 120])
      yield* TestClock.adjust(379)
      assert.isUndefined(waiter.pollUnsafe())
      yield* TestClock.adjust(1)
      const e2 = yield* Fiber.join(waiter)
      assert.deepStrictEqual([e2.reason, ms(e2.waited)], ["QueueTimeout", 500])
      assert.deepStrictEqual(yield* occupancy(b), { inFlight: 1, queued: 0 })
      const s = yield* DistributedBulkhead.stats(b)
      assert.deepStrictEqual([s.rejected.QueueTimeout, s.queued, s.cancelled], [2, 0, 0])
      yield* Fiber.interrupt(holder)
    }))

  it.effect("with no time to wait (queueTimeout 0) a call that finds no slot takes no ticket: QueueTimeout; with maxQueue 0: QueueFull", () =>
    Effect.gen(function*() {
      const store = BulkheadStore.memory()
      const a = yield* DistributedBulkhead.make({ name: "zero", maxConcurrent: 1, maxQueue: 3, queueTimeout: 0, store })
      const b = yield* DistributedBulkhead.make({ name: "zero", maxConcurrent: 1, store })
      const holder = yield* Effect.forkChild(Effect.never.pipe(DistributedBulkhead.guard(a)))
      yield* settle
      assert.strictEqual((yield* Effect.flip(Effect.void.pipe(DistributedBulkhead.guard(a)))).reason, "QueueTimeout")
      assert.strictEqual((yield* Effect.flip(Effect.void.pipe(DistributedBulkhead.guard(b)))).reason, "QueueFull")
      assert.deepStrictEqual(yield* occupancy(a), { inFlight: 1, queued: 0 })
      yield* Fiber.interrupt(holder)
    }))

  it.effect("a crashed waiter blocks the head of the queue only until its ticket runs out (max(2 s, 10 × pollInterval))", () =>
    Effect.gen(function*() {
      const store = BulkheadStore.memory()
      const b = yield* DistributedBulkhead.make({ name: "ghost", maxConcurrent: 1, maxQueue: 5, pollInterval: 100, store })
      const holder = yield* Effect.forkChild(Effect.sleep(100).pipe(DistributedBulkhead.guard(b)))
      yield* settle
      // A process that took a ticket and died: it never polls again.
      const t = yield* now
      yield* store.acquire({ name: "ghost", token: "ghost", limit: 1, leaseMs: 30_000, maxQueue: 5, ticketMs: 2000, now: t })
      const log: Array<string> = []
      const live = yield* Effect.forkChild(timed(log, "live", 0).pipe(DistributedBulkhead.guard(b)))
      yield* settle
      yield* TestClock.adjust(100)
      yield* Fiber.join(holder)
      yield* TestClock.adjust(1850)
      assert.deepStrictEqual(log, [])
      yield* TestClock.adjust(150)
      yield* Fiber.join(live)
      const started = Number(log[0].split(" ")[2])
      assert.isTrue(started >= 2000 && started <= 2100, `started at ${started}`)
    }))
})

// -----------------------------------------------------------------------------
// rule: leases
// -----------------------------------------------------------------------------

describe("leases: renewed every third of the lease by a fiber tied to the call; a lost lease is counted", () => {
  it.effect("renewals at lease/3, 2·lease/3, ... while the call runs, none after it ends", () =>
    Effect.gen(function*() {
      const { log, store } = faulty()
      const b = yield* fresh({ lease: "3 seconds", store })
      yield* Effect.sleep(3500).pipe(DistributedBulkhead.guard(b), Effect.forkChild)
      yield* TestClock.adjust(10_000)
      assert.deepStrictEqual(log.map((e) => `${e.operation} ${e.at}`), [
        "acquire 0",
        "renew 1000",
        "renew 2000",
        "renew 3000",
        "release 3500"
      ])
      assert.strictEqual((yield* DistributedBulkhead.stats(b)).renewals, 3)
    }))

  it.effect("the default lease is 30 seconds, renewed every 10 seconds", () =>
    Effect.gen(function*() {
      const { log, store } = faulty()
      const b = yield* fresh({ store })
      const fiber = yield* Effect.never.pipe(DistributedBulkhead.guard(b), Effect.forkChild)
      yield* TestClock.adjust(25_000)
      assert.deepStrictEqual(log.map((e) => `${e.operation} ${e.at}`), ["acquire 0", "renew 10000", "renew 20000"])
      yield* Fiber.interrupt(fiber)
    }))

  it.effect("a call whose renewals fail for a whole lease loses its slot to another call; it goes on, and the loss is counted", () =>
    Effect.gen(function*() {
      const { down, store, up } = faulty()
      const b = yield* fresh({ maxConcurrent: 1, lease: 900, store, onStoreError: "fail-closed" })
      const events: Array<DistributedBulkhead.Event> = []
      yield* DistributedBulkhead.events(b).pipe(Stream.runForEach((e) => Effect.sync(() => events.push(e))), Effect.forkChild)
      yield* settle
      const gate = yield* Deferred.make<void>()
      const first = yield* Effect.forkChild(Deferred.await(gate).pipe(Effect.as("first"), DistributedBulkhead.guard(b)))
      yield* settle
      down("renew")
      yield* TestClock.adjust(899)
      assert.strictEqual((yield* Effect.flip(Effect.void.pipe(DistributedBulkhead.guard(b)))).reason, "QueueFull")
      yield* TestClock.adjust(1)
      // The lease ran out: another call takes the slot while the first one still runs.
      const second = yield* Effect.forkChild(Effect.never.pipe(DistributedBulkhead.guard(b)))
      yield* settle
      assert.deepStrictEqual(yield* occupancy(b), { inFlight: 1, queued: 0 })
      up()
      yield* TestClock.adjust(300)
      yield* Deferred.succeed(gate, undefined)
      assert.strictEqual(yield* Fiber.join(first), "first")
      const s = yield* DistributedBulkhead.stats(b)
      assert.deepStrictEqual([s.leasesLost, s.storeErrors.Unavailable, s.inFlight], [1, 3, 1])
      assert.strictEqual(events.filter((e) => e._tag === "LeaseLost").length, 1)
      // The second call's slot is untouched by the first one's release.
      assert.deepStrictEqual(yield* occupancy(b), { inFlight: 1, queued: 0 })
      yield* Fiber.interrupt(second)
    }))
})

// -----------------------------------------------------------------------------
// rule: interruption safety
// -----------------------------------------------------------------------------

describe("the slot is given back on every exit: success, failure, defect, interruption, queued or running", () => {
  class Boom extends Schema.TaggedError<Boom>()("Boom", {}) {}

  it.effect("success, failure, defect and interruption each release the slot, told by a Released event", () =>
    Effect.gen(function*() {
      const b = yield* fresh({ maxConcurrent: 1 })
      const events: Array<DistributedBulkhead.Event> = []
      yield* DistributedBulkhead.events(b).pipe(Stream.runForEach((e) => Effect.sync(() => events.push(e))), Effect.forkChild)
      yield* settle
      yield* Effect.void.pipe(DistributedBulkhead.guard(b))
      yield* Effect.flip(Effect.fail(new Boom()).pipe(DistributedBulkhead.guard(b)))
      yield* Effect.exit(Effect.die("defect").pipe(DistributedBulkhead.guard(b)))
      const f = yield* Effect.forkChild(Effect.never.pipe(DistributedBulkhead.guard(b)))
      yield* settle
      yield* Fiber.interrupt(f)
      yield* settle
      assert.deepStrictEqual(
        events.filter((e) => e._tag === "Released").map((e) => e._tag === "Released" && e.outcome),
        ["Success", "Failure", "Defect", "Interrupted"]
      )
      assert.deepStrictEqual(yield* occupancy(b), { inFlight: 0, queued: 0 })
      const s = yield* DistributedBulkhead.stats(b)
      assert.deepStrictEqual([s.admitted, s.completed, s.inFlight, s.running], [4, 4, 0, 0])
    }))

  it.effect("interrupted while its acquire is in flight: the acquire lands, the call never runs, the slot is released before the fiber ends", () =>
    Effect.gen(function*() {
      const inner = BulkheadStore.memory()
      const slow = BulkheadStore.make({ ...inner, acquire: (request) => Effect.andThen(Effect.sleep(50), inner.acquire(request)) })
      const b = yield* fresh({ maxConcurrent: 1, store: slow })
      let ran = false
      const fiber = yield* Effect.forkChild(Effect.sync(() => (ran = true)).pipe(DistributedBulkhead.guard(b)))
      yield* TestClock.adjust(10)
      const interrupting = yield* Effect.forkChild(Fiber.interrupt(fiber))
      yield* settle
      // The store call is not cut short: the interruption waits for it.
      assert.isUndefined(interrupting.pollUnsafe())
      yield* TestClock.adjust(40)
      yield* Fiber.join(interrupting)
      const exit = yield* Fiber.await(fiber)
      assert.isTrue(Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause))
      assert.isFalse(ran)
      assert.deepStrictEqual(yield* inner.inspect(b.name, yield* now), { inFlight: 0, queued: 0 })
    }))

  it.effect("a waiter interrupted in the very instant its slot frees: whether it ran or not, nothing stays held", () =>
    Effect.gen(function*() {
      for (const order of ["interrupt-first", "release-first"] as const) {
        const b = yield* fresh({ maxConcurrent: 1, maxQueue: 2 })
        yield* Effect.forkChild(Effect.sleep(100).pipe(DistributedBulkhead.guard(b)))
        yield* settle
        const waiter = yield* Effect.forkChild(Effect.never.pipe(DistributedBulkhead.guard(b)))
        yield* settle
        if (order === "interrupt-first") {
          yield* TestClock.setTime(100)
          yield* Fiber.interrupt(waiter)
        } else {
          yield* TestClock.adjust(100)
          yield* Fiber.interrupt(waiter)
        }
        yield* settle
        assert.deepStrictEqual(yield* occupancy(b), { inFlight: 0, queued: 0 }, order)
        const s = yield* DistributedBulkhead.stats(b)
        assert.deepStrictEqual([s.inFlight, s.queued, s.running], [0, 0, 0], order)
        yield* TestClock.setTime(0)
      }
    }))

  it.effect("a waiter interrupted in the very instant its queueTimeout fires: one outcome, and its ticket is given back", () =>
    Effect.gen(function*() {
      const b = yield* fresh({ maxConcurrent: 1, maxQueue: 2, queueTimeout: 200 })
      const holder = yield* Effect.forkChild(Effect.never.pipe(DistributedBulkhead.guard(b)))
      yield* settle
      const waiter = yield* Effect.forkChild(Effect.void.pipe(DistributedBulkhead.guard(b)))
      yield* settle
      yield* TestClock.adjust(200)
      yield* Fiber.interrupt(waiter)
      const exit = yield* Fiber.await(waiter)
      assert.isTrue(Exit.isFailure(exit))
      assert.deepStrictEqual(yield* occupancy(b), { inFlight: 1, queued: 0 })
      const s = yield* DistributedBulkhead.stats(b)
      assert.strictEqual(s.rejected.QueueTimeout + s.cancelled, 1)
      yield* Fiber.interrupt(holder)
    }))

  it.effect("closing the scope rejects waiting calls with Closed, gives back their tickets, and waits for running calls", () =>
    Effect.gen(function*() {
      const store = BulkheadStore.memory()
      const scope = yield* Scope.make()
      const b = yield* DistributedBulkhead.make({ name: "closing", maxConcurrent: 1, maxQueue: 2, store }).pipe(Scope.provide(scope))
      const running = yield* Effect.forkChild(Effect.sleep(1000).pipe(Effect.as("done"), DistributedBulkhead.guard(b)))
      yield* settle
      const waiter = yield* Effect.forkChild(Effect.flip(Effect.void.pipe(DistributedBulkhead.guard(b))))
      yield* settle
      const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
      yield* settle
      const e = yield* Fiber.join(waiter)
      assert.strictEqual(e.reason, "Closed")
      assert.isUndefined(closing.pollUnsafe())
      assert.strictEqual((yield* Effect.flip(Effect.void.pipe(DistributedBulkhead.guard(b)))).reason, "Closed")
      assert.deepStrictEqual(yield* store.inspect("closing", yield* now), { inFlight: 1, queued: 0 })
      yield* TestClock.adjust(1000)
      yield* Fiber.join(closing)
      assert.strictEqual(yield* Fiber.join(running), "done")
      assert.deepStrictEqual(yield* store.inspect("closing", yield* now), { inFlight: 0, queued: 0 })
    }))
})

// -----------------------------------------------------------------------------
// rule: onStoreError
// -----------------------------------------------------------------------------

describe("onStoreError: when the store cannot decide, fail-closed rejects, fail-open runs, local decides in-process", () => {
  it.effect("fail-closed: BulkheadFull with reason StoreUnavailable at once, every store reason counted; the store back, calls are admitted", () =>
    Effect.gen(function*() {
      const { down, failWith, store, up } = faulty()
      const b = yield* fresh({ store, onStoreError: "fail-closed" })
      down("acquire")
      let ran = 0
      const call = Effect.sync(() => ++ran).pipe(DistributedBulkhead.guard(b))
      for (const reason of ["Unavailable", "Timeout", "Rejected"] as const) {
        failWith(reason)
        const e = yield* Effect.flip(call)
        assert.deepStrictEqual([e._tag, e.reason, ms(e.waited)], ["BulkheadFull", "StoreUnavailable", 0])
      }
      assert.strictEqual(ran, 0)
      up()
      assert.strictEqual(yield* call, 1)
      const s = yield* DistributedBulkhead.stats(b)
      assert.deepStrictEqual(s.storeErrors, { Unavailable: 1, Timeout: 1, Rejected: 1 })
      assert.deepStrictEqual([s.rejected.StoreUnavailable, s.mode, s.admitted], [3, "Store", 1])
    }))

  it.effect("fail-open: the call runs without a slot (admittedWithoutStore), nothing is held; the store back, the cap applies again", () =>
    Effect.gen(function*() {
      const { down, inner, store, up } = faulty()
      const b = yield* fresh({ maxConcurrent: 1, store, onStoreError: "fail-open" })
      down("acquire")
      const fibers = [
        yield* Effect.forkChild(Effect.never.pipe(DistributedBulkhead.guard(b))),
        yield* Effect.forkChild(Effect.never.pipe(DistributedBulkhead.guard(b)))
      ]
      yield* settle
      let s = yield* DistributedBulkhead.stats(b)
      assert.deepStrictEqual([s.running, s.inFlight, s.admittedWithoutStore, s.mode], [2, 0, 2, "Store"])
      assert.deepStrictEqual(yield* inner.inspect(b.name, yield* now), { inFlight: 0, queued: 0 })
      up()
      const held = yield* Effect.forkChild(Effect.never.pipe(DistributedBulkhead.guard(b)))
      yield* settle
      assert.strictEqual((yield* Effect.flip(Effect.void.pipe(DistributedBulkhead.guard(b)))).reason, "QueueFull")
      for (const f of [...fibers, held]) yield* Fiber.interrupt(f)
      s = yield* DistributedBulkhead.stats(b)
      assert.deepStrictEqual([s.running, s.completed], [0, 3])
    }))

  it.effect("local: an insurance bulkhead of the same maxConcurrent decides; the store is tried after 100 ms, backing off; when it answers it decides again", () =>
    Effect.gen(function*() {
      const { down, log, store, up } = faulty()
      const b = yield* fresh({ maxConcurrent: 2, store })
      const events: Array<DistributedBulkhead.Event> = []
      yield* DistributedBulkhead.events(b).pipe(Stream.runForEach((e) => Effect.sync(() => events.push(e))), Effect.forkChild)
      yield* settle
      down("acquire")
      const hold = () => Effect.forkChild(Effect.never.pipe(DistributedBulkhead.guard(b)))
      const first = yield* hold()
      const second = yield* hold()
      yield* settle
      // Local cap: 2 per process, and the store was asked only once.
      assert.strictEqual((yield* Effect.flip(Effect.void.pipe(DistributedBulkhead.guard(b)))).reason, "QueueFull")
      let s = yield* DistributedBulkhead.stats(b)
      assert.deepStrictEqual(
        [s.mode, s.admittedLocally, s.running, s.rejected.QueueFull, s.storeErrors.Unavailable, s.localSwitches],
        ["Local", 2, 2, 1, 1, 1]
      )
      // 100 ms later a call tries the store again; it still fails: the next try is 200 ms later.
      yield* TestClock.adjust(100)
      yield* Fiber.interrupt(first)
      const probe = yield* hold()
      yield* settle
      yield* TestClock.adjust(150)
      yield* Effect.flip(Effect.void.pipe(DistributedBulkhead.guard(b)))
      s = yield* DistributedBulkhead.stats(b)
      assert.deepStrictEqual([s.mode, s.storeErrors.Unavailable, s.admittedLocally], ["Local", 2, 3])
      up()
      yield* TestClock.adjust(50)
      // At 300 ms the store answers: it decides again (the calls admitted locally finish outside its count).
      assert.strictEqual(yield* Effect.succeed("store").pipe(DistributedBulkhead.guard(b)), "store")
      s = yield* DistributedBulkhead.stats(b)
      assert.deepStrictEqual([s.mode, s.admitted, s.localSwitches], ["Store", 1, 1])
      yield* settle
      assert.deepStrictEqual(log.map((e) => e.operation), ["acquire", "release"])
      assert.deepStrictEqual(
        events.filter((e) => e._tag === "ModeChanged" || e._tag === "StoreFailed").map((e) =>
          e._tag === "ModeChanged" ? `mode ${e.mode}` : `failed ${e._tag === "StoreFailed" && e.operation}`
        ),
        ["failed acquire", "mode Local", "failed acquire", "mode Store"]
      )
      assert.deepStrictEqual(
        events.filter((e) => e._tag === "Admitted").map((e) => e._tag === "Admitted" && e.via),
        ["Local", "Local", "Local", "Store"]
      )
      yield* Fiber.interrupt(second)
      yield* Fiber.interrupt(probe)
    }))

  it.effect("local: the probe backoff doubles up to 2 seconds while the store keeps failing", () =>
    Effect.gen(function*() {
      const { down, store } = faulty()
      const b = yield* fresh({ store })
      down("acquire")
      const tries: Array<number> = []
      let last = 0
      for (let t = 0; t <= 6000; t += 50) {
        yield* TestClock.setTime(t)
        yield* Effect.void.pipe(DistributedBulkhead.guard(b))
        const errors = (yield* DistributedBulkhead.stats(b)).storeErrors.Unavailable
        if (errors > last) tries.push(t)
        last = errors
      }
      assert.deepStrictEqual(tries, [0, 100, 300, 700, 1500, 3100, 5100])
    }))

  it.effect("local: localMaxConcurrent sets the insurance bulkhead's cap per process", () =>
    Effect.gen(function*() {
      const { down, store } = faulty()
      const b = yield* fresh({ maxConcurrent: 10, localMaxConcurrent: 1, store })
      down("acquire")
      const f = yield* Effect.forkChild(Effect.never.pipe(DistributedBulkhead.guard(b)))
      yield* settle
      const e = yield* Effect.flip(Effect.void.pipe(DistributedBulkhead.guard(b)))
      assert.deepStrictEqual([e.reason, e.maxConcurrent], ["QueueFull", 1])
      yield* Fiber.interrupt(f)
    }))

  it.effect("a store failure while waiting: fail-closed rejects (with the wait so far), fail-open runs, local waits locally", () =>
    Effect.gen(function*() {
      for (const policy of ["fail-closed", "fail-open", "local"] as const) {
        const { down, store, up } = faulty()
        const b = yield* fresh({ maxConcurrent: 1, maxQueue: 2, queueTimeout: 5000, pollInterval: 100, store, onStoreError: policy })
        const holder = yield* Effect.forkChild(Effect.never.pipe(DistributedBulkhead.guard(b)))
        yield* settle
        const waiter = yield* Effect.forkChild(Effect.exit(Effect.succeed(policy).pipe(DistributedBulkhead.guard(b))))
        yield* settle
        // Polls at 10, 30, 70, 150 ms ...: the one at 70 ms fails.
        yield* TestClock.adjust(60)
        down("acquire")
        yield* TestClock.adjust(100)
        const exit = yield* Fiber.join(waiter)
        if (policy === "fail-closed") {
          assert.isTrue(Exit.isFailure(exit))
          const e = Cause.findErrorOption(Exit.isFailure(exit) ? exit.cause : Cause.empty)
          assert.isTrue(e._tag === "Some" && e.value.reason === "StoreUnavailable" && ms(e.value.waited) === 70, policy)
        } else {
          // fail-open runs it without a slot; local admits it in the (empty) insurance bulkhead.
          assert.deepStrictEqual(exit, Exit.succeed(policy))
        }
        const s = yield* DistributedBulkhead.stats(b)
        assert.deepStrictEqual([s.queued, s.storeErrors.Unavailable], [0, 1], policy)
        up()
        yield* Fiber.interrupt(holder)
      }
    }))

  it.effect("an acquire whose answer is lost (Timeout) may have taken a slot: the call's finalizer releases its token", () =>
    Effect.gen(function*() {
      const { inner, loseAnswers, store } = faulty()
      const b = yield* fresh({ maxConcurrent: 1, store, onStoreError: "fail-closed" })
      loseAnswers("acquire")
      const e = yield* Effect.flip(Effect.void.pipe(DistributedBulkhead.guard(b)))
      assert.strictEqual(e.reason, "StoreUnavailable")
      assert.deepStrictEqual(yield* inner.inspect(b.name, yield* now), { inFlight: 0, queued: 0 })
      assert.strictEqual((yield* DistributedBulkhead.stats(b)).storeErrors.Timeout, 1)
    }))

  it.effect("a release that cannot reach the store is counted, and the slot comes back when its lease runs out", () =>
    Effect.gen(function*() {
      const { down, inner, store, up } = faulty()
      const b = yield* fresh({ maxConcurrent: 1, lease: 600, store, onStoreError: "fail-closed" })
      down("release")
      yield* Effect.void.pipe(DistributedBulkhead.guard(b))
      up()
      assert.deepStrictEqual(yield* inner.inspect(b.name, yield* now), { inFlight: 1, queued: 0 })
      assert.strictEqual((yield* Effect.flip(Effect.void.pipe(DistributedBulkhead.guard(b)))).reason, "QueueFull")
      yield* TestClock.adjust(600)
      yield* Effect.void.pipe(DistributedBulkhead.guard(b))
      const s = yield* DistributedBulkhead.stats(b)
      assert.deepStrictEqual([s.storeErrors.Unavailable, s.admitted, s.inFlight], [1, 2, 0])
    }))
})

// -----------------------------------------------------------------------------
// rule: options
// -----------------------------------------------------------------------------

describe("options are a Schema: make and layer fail with InvalidOptions naming every bad field", () => {
  it.effect("every bad field at once", () =>
    Effect.gen(function*() {
      const e = yield* Effect.flip(DistributedBulkhead.make({
        name: " ",
        maxConcurrent: 0,
        lease: "soon",
        maxQueue: -1,
        queueTimeout: -5,
        pollInterval: 0.5,
        onStoreError: "ignore",
        localMaxConcurrent: 1.5,
        store: {},
        extra: true
      } as any))
      assert.instanceOf(e, InvalidOptions)
      assert.strictEqual(e.primitive, "DistributedBulkhead")
      const fields = e.message.split("\n").filter((line) => !line.startsWith(" ")).map((line) => line.split(":")[0])
      assert.deepStrictEqual([...new Set(fields)].sort(), [
        "extra",
        "lease",
        "localMaxConcurrent",
        "maxConcurrent",
        "maxQueue",
        "name",
        "onStoreError",
        "pollInterval",
        "queueTimeout",
        "store"
      ])
      const short = yield* Effect.flip(fresh({ lease: 2 }))
      assert.include(short.message, "lease: Expected a whole number of milliseconds >= 3")
    }))

  it.effect("a layer with bad options fails to build; bad guard options make every call die with InvalidOptions", () =>
    Effect.gen(function*() {
      class Db extends Context.Service<Db, DistributedBulkhead.DistributedBulkhead>()("test/Db") {}
      const built = yield* Effect.flip(Layer.build(DistributedBulkhead.layer(Db, { name: "db", maxConcurrent: -1 })))
      assert.instanceOf(built, InvalidOptions)
      const b = yield* fresh()
      const exit = yield* Effect.exit(Effect.void.pipe(DistributedBulkhead.guard(b, { queueTimeout: "soon" as any })))
      assert.isTrue(Exit.isFailure(exit))
      const defect = Exit.isFailure(exit) ? exit.cause.reasons.find(Cause.isDieReason)?.defect : undefined
      assert.instanceOf(defect, InvalidOptions)
    }))

  it.effect("a layer's instance is shared through its key; guard works data-first and with the key", () =>
    Effect.gen(function*() {
      class Db extends Context.Service<Db, DistributedBulkhead.DistributedBulkhead>()("test/Db") {}
      const program = Effect.gen(function*() {
        const a = yield* Effect.succeed(1).pipe(DistributedBulkhead.guard(Db))
        const c = yield* DistributedBulkhead.guard(Effect.succeed(2), Db)
        const s = yield* DistributedBulkhead.stats(Db)
        return [a, c, s.admitted, s.name]
      })
      assert.deepStrictEqual(
        yield* program.pipe(Effect.provide(DistributedBulkhead.layer(Db, { name: "keyed", maxConcurrent: 1 }))),
        [1, 2, 2, "keyed"]
      )
      const b = yield* fresh()
      assert.strictEqual(yield* DistributedBulkhead.guard(Effect.succeed(3), b, { queueTimeout: 10 }), 3)
      assert.deepStrictEqual(JSON.parse(JSON.stringify(b)), { _id: "DistributedBulkhead", name: b.name })
    }))
})

// -----------------------------------------------------------------------------
// rule: observability
// -----------------------------------------------------------------------------

describe("observability: stats, pull-based metrics bulwark.distributed_bulkhead.* (labels name and reason), events, span events", () => {
  it.effect("metrics read the same counters as stats, carry only name and reason, and go with the scope", () =>
    Effect.gen(function*() {
      const registry: Metric.MetricRegistry = new Map()
      const withRegistry = Effect.provideService(Metric.MetricRegistry, registry)
      const scope = yield* Scope.make()
      const { down, store, up } = faulty()
      const b = yield* DistributedBulkhead.make({ name: "m", maxConcurrent: 1, maxQueue: 1, store }).pipe(
        withRegistry,
        Scope.provide(scope)
      )
      yield* Effect.void.pipe(DistributedBulkhead.guard(b))
      const held = yield* Effect.forkChild(Effect.never.pipe(DistributedBulkhead.guard(b)))
      yield* settle
      const waiting = yield* Effect.forkChild(Effect.never.pipe(DistributedBulkhead.guard(b)))
      yield* settle
      yield* Effect.flip(Effect.void.pipe(DistributedBulkhead.guard(b)))
      const find = (snapshot: ReadonlyArray<Metric.Metric.Snapshot>, id: string, attributes: Record<string, string>) =>
        snapshot.find((m) => m.id === id && JSON.stringify(m.attributes) === JSON.stringify(attributes))?.state as
          | { readonly count?: number; readonly value?: number }
          | undefined
      let snapshot = yield* Metric.snapshot.pipe(withRegistry)
      const p = "bulwark.distributed_bulkhead"
      assert.strictEqual(find(snapshot, `${p}.admitted`, { name: "m" })?.count, 2)
      assert.strictEqual(find(snapshot, `${p}.completed`, { name: "m" })?.count, 1)
      assert.strictEqual(find(snapshot, `${p}.in_flight`, { name: "m" })?.value, 1)
      assert.strictEqual(find(snapshot, `${p}.queued`, { name: "m" })?.value, 1)
      assert.strictEqual(find(snapshot, `${p}.local`, { name: "m" })?.value, 0)
      assert.strictEqual(find(snapshot, `${p}.rejected`, { name: "m", reason: "QueueFull" })?.count, 1)
      yield* Fiber.interrupt(waiting)
      yield* Fiber.interrupt(held)
      down("acquire")
      yield* Effect.void.pipe(DistributedBulkhead.guard(b))
      up()
      snapshot = yield* Metric.snapshot.pipe(withRegistry)
      assert.strictEqual(find(snapshot, `${p}.store_errors`, { name: "m", reason: "Unavailable" })?.count, 1)
      assert.strictEqual(find(snapshot, `${p}.degraded`, { name: "m", reason: "Local" })?.count, 1)
      assert.strictEqual(find(snapshot, `${p}.degraded`, { name: "m", reason: "FailOpen" })?.count, 0)
      assert.strictEqual(find(snapshot, `${p}.local`, { name: "m" })?.value, 1)
      assert.strictEqual(find(snapshot, `${p}.leases_lost`, { name: "m" })?.count, 0)
      const labels = new Set(snapshot.filter((m) => m.id.startsWith(`${p}.`)).flatMap((m) => Object.keys(m.attributes ?? {})))
      assert.deepStrictEqual([...labels].sort(), ["name", "reason"])
      const s = yield* DistributedBulkhead.stats(b)
      assert.deepStrictEqual(
        [s.admitted, s.admittedLocally, s.completed, s.cancelled, s.rejectedTotal, s.sequence],
        [2, 1, 3, 1, 1, 1]
      )
      assert.strictEqual((yield* DistributedBulkhead.stats(b)).sequence, 2)
      yield* Scope.close(scope, Exit.void)
      const after = yield* Metric.snapshot.pipe(withRegistry)
      assert.isFalse(after.some((m) => m.id.startsWith(`${p}.`)))
    }))

  it.effect("events tell each call's story: Queued, Admitted (with the wait), Rejected, Released; the stream ends with the scope", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const b = yield* DistributedBulkhead.make({ name: "ev", maxConcurrent: 1, maxQueue: 1 }).pipe(Scope.provide(scope))
      const collected = yield* DistributedBulkhead.events(b).pipe(Stream.runCollect, Effect.forkChild)
      yield* settle
      yield* Effect.forkChild(Effect.sleep(100).pipe(DistributedBulkhead.guard(b)))
      yield* settle
      yield* Effect.forkChild(Effect.void.pipe(DistributedBulkhead.guard(b)))
      yield* settle
      yield* Effect.flip(Effect.void.pipe(DistributedBulkhead.guard(b)))
      yield* TestClock.adjust(100)
      yield* settle
      yield* Scope.close(scope, Exit.void)
      const events = Array.from(yield* Fiber.join(collected)).map((e) => {
        switch (e._tag) {
          case "Admitted":
            return `Admitted ${e.via} ${ms(e.waited)}`
          case "Queued":
            return `Queued ${e.position}`
          case "Rejected":
            return `Rejected ${e.reason}`
          case "Released":
            return `Released ${e.via} ${e.outcome}`
          default:
            return e._tag
        }
      })
      assert.deepStrictEqual(events, [
        "Admitted Store 0",
        "Queued 0",
        "Rejected QueueFull",
        "Released Store Success",
        "Admitted Store 100",
        "Released Store Success",
        "Closed"
      ])
    }))

  it.effect("a rejection, a wait and a degraded admission are span events on the caller's span", () =>
    Effect.gen(function*() {
      const spans: Array<Tracer.NativeSpan> = []
      const tracer = Tracer.make({
        span: (options) => {
          const span = new Tracer.NativeSpan(options)
          spans.push(span)
          return span
        }
      })
      const { down, store } = faulty()
      const b = yield* fresh({ name: "traced", maxConcurrent: 1, maxQueue: 1, store })
      const traced = <A, E, R>(self: Effect.Effect<A, E, R>) => self.pipe(Effect.withSpan("handler"), Effect.withTracer(tracer))
      const held = yield* Effect.forkChild(traced(Effect.never.pipe(DistributedBulkhead.guard(b))))
      yield* settle
      const waiting = yield* Effect.forkChild(traced(Effect.never.pipe(DistributedBulkhead.guard(b))))
      yield* settle
      yield* Effect.flip(traced(Effect.void.pipe(DistributedBulkhead.guard(b))))
      yield* Fiber.interrupt(waiting)
      yield* Fiber.interrupt(held)
      down("acquire")
      yield* traced(Effect.void.pipe(DistributedBulkhead.guard(b)))
      const events = spans.map((span) => (span._events ?? []).map(([name, , attributes]) => [name, attributes]))
      assert.deepStrictEqual(events, [
        [],
        [["bulwark.distributed_bulkhead.queued", { "bulwark.name": "traced", "bulwark.distributed_bulkhead.position": 0 }]],
        [["bulwark.distributed_bulkhead.rejected", { "bulwark.name": "traced", "bulwark.distributed_bulkhead.reason": "QueueFull" }]],
        [["bulwark.distributed_bulkhead.degraded", { "bulwark.name": "traced", "bulwark.distributed_bulkhead.via": "Local" }]]
      ])
    }))
})

// -----------------------------------------------------------------------------
// property: random interleavings
// -----------------------------------------------------------------------------

type Step =
  | { readonly _tag: "Call"; readonly process: number; readonly takes: number; readonly outcome: "Succeed" | "Fail" | "Die" }
  | { readonly _tag: "Advance"; readonly millis: number }
  | { readonly _tag: "Interrupt"; readonly call: number }
  | { readonly _tag: "Crash"; readonly process: number }

const int = (minimum: number, maximum: number) => Arbitrary.schema(Schema.Int.check(Schema.isBetween({ minimum, maximum })))

const step = Arbitrary.all([int(0, 99), int(0, 2), int(0, 9), int(0, 39)]).pipe(
  Arbitrary.map(([kind, process, x, call]): Step => {
    if (kind < 55) return { _tag: "Call", process, takes: x * 60, outcome: x < 7 ? "Succeed" : x < 9 ? "Fail" : "Die" }
    if (kind < 85) return { _tag: "Advance", millis: x * 40 }
    if (kind < 95) return { _tag: "Interrupt", call }
    return { _tag: "Crash", process }
  })
)

interface Reached {
  runs?: number
  [what: string]: number | undefined
}

const cap = 2
const lease = 900

class Declined extends Schema.TaggedError<Declined>()("Declined", {}) {}

/**
 * Three processes (instances named "prop") share one memory store, each
 * behind a kill switch. A crash interrupts the process's calls *and* cuts it
 * off from the store first (its releases never arrive), then replaces it.
 * A recorder in front of the shared store notes every token that got a slot
 * and every release that gave one back.
 *
 * Checked whenever a body starts: fewer than `cap` bodies run already
 * (bodies of crashed processes are interrupted, so they do not run), and the
 * store never holds more than `cap` slots. At the end, every call has ended,
 * every slot taken by a live process was released, and once a lease has
 * passed the store holds nothing: the crashed processes' slots expired.
 */
const runProgram = (steps: ReadonlyArray<Step>, reached: Reached) =>
  Effect.gen(function*() {
    const shared = BulkheadStore.memory()
    const violations: Array<string> = []
    const acquired = new Map<string, number>() // token -> process generation
    const released = new Set<string>()
    const recorder = BulkheadStore.make({
      ...shared,
      acquire: (request) =>
        Effect.tap(shared.acquire(request), (answer) =>
          Effect.sync(() => {
            if (answer._tag === "Acquired") acquired.set(request.token, generation.get(request.token) ?? -1)
            if (answer.inFlight > cap) violations.push(`the store held ${answer.inFlight} slots`)
          })),
      release: (name, token, t) =>
        Effect.tap(shared.release(name, token, t), (ok) => Effect.sync(() => ok && released.add(token)))
    })
    const generation = new Map<string, number>()
    let generations = 0
    let running = 0

    const makeProcess = Effect.gen(function*() {
      const link = faulty(recorder)
      const id = ++generations
      // Tokens are chosen by the instance: the recorder learns each one's process from the request.
      const tagged = BulkheadStore.make({
        ...link.store,
        acquire: (request) => Effect.andThen(Effect.sync(() => generation.set(request.token, id)), link.store.acquire(request))
      })
      const scope = yield* Scope.make()
      const instance = yield* DistributedBulkhead.make({
        name: "prop",
        maxConcurrent: cap,
        maxQueue: 3,
        queueTimeout: 700,
        lease,
        pollInterval: 50,
        onStoreError: "fail-closed",
        store: tagged
      }).pipe(Scope.provide(scope))
      return { link, instance, id }
    })
    const processes = [yield* makeProcess, yield* makeProcess, yield* makeProcess]
    const crashedIds = new Set<number>()
    const calls: Array<{ readonly fiber: Fiber.Fiber<unknown, unknown>; readonly process: number }> = []

    const body = (takes: number, outcome: "Succeed" | "Fail" | "Die") =>
      Effect.gen(function*() {
        if (running >= cap) violations.push(`a body started at ${yield* now} while ${running} ran`)
        running++
        yield* Effect.sleep(takes).pipe(Effect.ensuring(Effect.sync(() => running--)))
        if (outcome === "Die") return yield* Effect.die("defect")
        if (outcome === "Fail") return yield* Effect.fail(new Declined())
        return "ok"
      })

    for (const s of steps) {
      switch (s._tag) {
        case "Call": {
          const p = processes[s.process]
          const fiber = yield* Effect.forkDetach(body(s.takes, s.outcome).pipe(DistributedBulkhead.guard(p.instance)))
          calls.push({ fiber, process: p.id })
          break
        }
        case "Advance":
          yield* TestClock.adjust(s.millis)
          break
        case "Interrupt": {
          const call = calls[s.call]
          if (call !== undefined) {
            if (call.fiber.pollUnsafe() === undefined) reached.interrupts = (reached.interrupts ?? 0) + 1
            yield* Fiber.interrupt(call.fiber)
          }
          break
        }
        case "Crash": {
          const p = processes[s.process]
          p.link.down("acquire", "renew", "release")
          crashedIds.add(p.id)
          const own = calls.filter((c) => c.process === p.id && c.fiber.pollUnsafe() === undefined)
          if ((yield* DistributedBulkhead.stats(p.instance)).inFlight > 0) reached["crash holding slots"] = (reached["crash holding slots"] ?? 0) + 1
          for (const c of own) yield* Fiber.interrupt(c.fiber)
          processes[s.process] = yield* makeProcess
          break
        }
      }
      yield* settle
    }
    // Let every call end: bodies take at most 540 ms, waits 700 ms.
    for (let i = 0; i < 30; i++) yield* TestClock.adjust(100)
    for (const { fiber } of calls) {
      const exit = fiber.pollUnsafe()
      if (exit === undefined) {
        violations.push("a call never ended")
        continue
      }
      if (Exit.isFailure(exit)) {
        const error = Cause.findErrorOption(exit.cause)
        if (error._tag === "Some" && error.value instanceof BulkheadFull) {
          reached[`rejected ${error.value.reason}`] = (reached[`rejected ${error.value.reason}`] ?? 0) + 1
        }
      }
    }
    for (const [token, id] of acquired) {
      if (!crashedIds.has(id) && !released.has(token)) violations.push(`a slot of live process ${id} was never released`)
    }
    for (const p of processes) {
      const s = yield* DistributedBulkhead.stats(p.instance)
      if (s.admittedAfterWait > 0) reached.waited = (reached.waited ?? 0) + 1
    }
    // Crashed processes' slots expire within a lease (3 s have passed since the last step).
    const left = yield* shared.inspect("prop", yield* now)
    if (left.inFlight !== 0 || left.queued !== 0) violations.push(`the store still holds ${JSON.stringify(left)}`)
    reached.runs = (reached.runs ?? 0) + 1
    assert.deepStrictEqual(violations, [])
  })

const runs = Number(process.env.BULWARK_PROPERTY_RUNS ?? 150)

describe("property: the cap is never exceeded, and every acquired slot is released or expires, over random interleavings", () => {
  const reached: Reached = {}
  it.effect.prop(
    "calls (successes, failures, defects), interruptions, crashes and time, on three processes sharing a store",
    { steps: Arbitrary.array(step, { minLength: 5, maxLength: 40 }) },
    ({ steps }) => runProgram(steps, reached),
    { arbitrary: { runs, size: 40 } }
  )
  it("the programs reached waits, QueueFull, QueueTimeout, interruptions and crashes holding slots", () => {
    if ((reached.runs ?? 0) < runs) return
    for (const what of ["waited", "rejected QueueFull", "rejected QueueTimeout", "interrupts", "crash holding slots"]) {
      assert.isAbove(reached[what] ?? 0, 0, `no run reached: ${what}`)
    }
  })
})
