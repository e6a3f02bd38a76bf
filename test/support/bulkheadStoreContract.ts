/**
 * The contract every bulkhead store keeps, and the rules of
 * `DistributedBulkhead` that depend on the store, written once and run
 * against each store: the in-memory store (on `TestClock`) and the Redis
 * store (on a real redis-server, in real time).
 *
 * A suite receives how to run a test, how to make a fresh store (a store
 * whose names no other test sees) and how to let time pass:
 * `TestClock.adjust` for the memory store, a real sleep for Redis, whose
 * leases and tickets are expiries kept by the server's clock.
 */
import { assert, describe } from "@effect/vitest"
import { BulkheadStore, DistributedBulkhead } from "@bulwark/core"
import { Clock, Deferred, Effect, Exit, Fiber, type Scope } from "effect"

/** How a suite runs against one store. */
export interface StoreSetup<R> {
  /** Registers a test whose body needs `R` and a Scope. */
  readonly test: (name: string, body: () => Effect.Effect<void, unknown, R | Scope.Scope>) => void
  /** A fresh store: no other test sees its names. */
  readonly makeStore: Effect.Effect<BulkheadStore.BulkheadStore, never, R>
  /** Lets `ms` of the store's time pass. */
  readonly advance: (ms: number) => Effect.Effect<void>
  /** A lease short enough to wait out in a test (long enough for several round trips). */
  readonly leaseMs: number
  /** Time is `TestClock`'s: fibers that sleep move only when the test advances it. */
  readonly virtualTime: boolean
}

const now = Clock.currentTimeMillis

/**
 * Waits until `condition` holds: other fibers run first, and in real time a
 * store round trip may be needed too; on `TestClock`, polls need time to
 * pass, so the clock moves by `step` each turn.
 */
export const eventually = (
  condition: Effect.Effect<boolean, unknown>,
  what: string,
  setup: { readonly virtualTime: boolean; readonly advance: (ms: number) => Effect.Effect<void> },
  step = 10
) =>
  Effect.gen(function*() {
    for (let turn = 0; turn < 1000; turn++) {
      if (yield* condition) return
      yield* Effect.yieldNow
      if (turn > 20) yield* (setup.virtualTime ? setup.advance(step) : Effect.sleep(5))
    }
    throw new Error(`gave up waiting until ${what}`)
  })

let names = 0

export const contract = <R>(setup: StoreSetup<R>): void => {
  const { advance, leaseMs, makeStore, test } = setup
  const ticketMs = leaseMs
  /**
   * Slots and tickets that outlive any test by default: in real time a busy
   * machine may pause a test for a while, and only the tests about expiry
   * should see anything expire (they pass `leaseMs` or `ticketMs`).
   */
  const longMs = leaseMs * 20
  /** An acquire with the defaults of these tests: limit 2, no waiting room. */
  const request = (name: string, token: string, options?: Partial<BulkheadStore.AcquireRequest>) =>
    Effect.flatMap(now, (t): Effect.Effect<BulkheadStore.AcquireRequest> =>
      Effect.succeed({ name, token, limit: 2, leaseMs: longMs, maxQueue: 0, ticketMs: longMs, now: t, ...options }))
  const fresh = Effect.map(makeStore, (store) => {
    const name = `contract-${++names}`
    const acquire = (token: string, options?: Partial<BulkheadStore.AcquireRequest>) =>
      Effect.flatMap(request(name, token, options), store.acquire)
    const release = (token: string) => Effect.flatMap(now, (t) => store.release(name, token, t))
    const renew = (token: string, ms = leaseMs) => Effect.flatMap(now, (t) => store.renew(name, token, ms, t))
    const inspect = Effect.flatMap(now, (t) => store.inspect(name, t))
    return { store, name, acquire, release, renew, inspect }
  })

  describe("acquire: at most limit slots, each under its own token", () => {
    test("limit tokens acquire, the next one is Full and holds nothing", () =>
      Effect.gen(function*() {
        const { acquire, inspect } = yield* fresh
        assert.deepStrictEqual(yield* acquire("a"), { _tag: "Acquired", inFlight: 1 })
        assert.deepStrictEqual(yield* acquire("b"), { _tag: "Acquired", inFlight: 2 })
        assert.deepStrictEqual(yield* acquire("c"), { _tag: "Full", inFlight: 2, queued: 0 })
        assert.deepStrictEqual(yield* inspect, { inFlight: 2, queued: 0 })
      }))

    test("a repeated acquire of a held token (its answer was lost) is Acquired again and takes no second slot", () =>
      Effect.gen(function*() {
        const { acquire, inspect } = yield* fresh
        yield* acquire("a")
        assert.deepStrictEqual(yield* acquire("a"), { _tag: "Acquired", inFlight: 1 })
        assert.deepStrictEqual(yield* inspect, { inFlight: 1, queued: 0 })
      }))

    test("concurrent acquires of one name: exactly limit are Acquired", () =>
      Effect.gen(function*() {
        const { acquire, inspect } = yield* fresh
        const answers = yield* Effect.all(Array.from({ length: 20 }, (_, i) => acquire(`t${i}`, { limit: 5 })), {
          concurrency: "unbounded"
        })
        assert.strictEqual(answers.filter((a) => a._tag === "Acquired").length, 5)
        assert.strictEqual(answers.filter((a) => a._tag === "Full").length, 15)
        assert.strictEqual((yield* inspect).inFlight, 5)
      }))

    test("names are independent", () =>
      Effect.gen(function*() {
        const one = yield* fresh
        const store = one.store
        yield* one.acquire("a", { limit: 1 })
        const other = yield* request(`${one.name}-other`, "a", { limit: 1 })
        assert.strictEqual((yield* store.acquire(other))._tag, "Acquired")
        assert.strictEqual((yield* one.acquire("b", { limit: 1 }))._tag, "Full")
      }))
  })

  describe("release gives back the slot; a lease that is not renewed runs out", () => {
    test("release returns true once and frees the slot for the next token", () =>
      Effect.gen(function*() {
        const { acquire, release } = yield* fresh
        yield* acquire("a", { limit: 1 })
        assert.strictEqual((yield* acquire("b", { limit: 1 }))._tag, "Full")
        assert.isTrue(yield* release("a"))
        assert.isFalse(yield* release("a"))
        assert.isFalse(yield* release("never-acquired"))
        assert.strictEqual((yield* acquire("b", { limit: 1 }))._tag, "Acquired")
      }))

    test("a slot whose lease runs out is free again (a crashed holder); its token can neither renew nor release it", () =>
      Effect.gen(function*() {
        const { acquire, inspect, release, renew } = yield* fresh
        yield* acquire("crashed", { limit: 1, leaseMs })
        yield* advance(leaseMs * 2)
        assert.deepStrictEqual(yield* inspect, { inFlight: 0, queued: 0 })
        assert.isFalse(yield* renew("crashed"))
        assert.isFalse(yield* release("crashed"))
        assert.strictEqual((yield* acquire("next", { limit: 1 }))._tag, "Acquired")
      }))

    test("renew extends the lease from now; another token's renew changes nothing", () =>
      Effect.gen(function*() {
        const { acquire, renew } = yield* fresh
        yield* acquire("a", { limit: 1, leaseMs: leaseMs * 2 })
        yield* advance(leaseMs)
        assert.isTrue(yield* renew("a", leaseMs * 4))
        assert.isFalse(yield* renew("b", leaseMs * 4))
        yield* advance(leaseMs * 2)
        // Without the renewal the lease would have run out by now.
        assert.strictEqual((yield* acquire("b", { limit: 1 }))._tag, "Full")
      }))
  })

  describe("the waiting room: at most maxQueue tickets, FIFO by ticket order", () => {
    test("a token finding no slot gets a ticket at the end while fewer than maxQueue are held, else Full", () =>
      Effect.gen(function*() {
        const { acquire, inspect } = yield* fresh
        const q = { limit: 1, maxQueue: 2 }
        assert.strictEqual((yield* acquire("a", q))._tag, "Acquired")
        assert.deepStrictEqual(yield* acquire("b", q), { _tag: "Queued", position: 0, inFlight: 1 })
        assert.deepStrictEqual(yield* acquire("c", q), { _tag: "Queued", position: 1, inFlight: 1 })
        assert.deepStrictEqual(yield* acquire("d", q), { _tag: "Full", inFlight: 1, queued: 2 })
        // Polling again keeps the place.
        assert.deepStrictEqual(yield* acquire("c", q), { _tag: "Queued", position: 1, inFlight: 1 })
        assert.deepStrictEqual(yield* inspect, { inFlight: 1, queued: 2 })
      }))

    test("a freed slot goes to the head ticket: neither a later ticket nor a new arrival takes it", () =>
      Effect.gen(function*() {
        const { acquire, release } = yield* fresh
        const q = { limit: 1, maxQueue: 5 }
        yield* acquire("a", q)
        yield* acquire("b", q)
        yield* acquire("c", q)
        assert.isTrue(yield* release("a"))
        // c polls first, and a newcomer arrives: both stay behind b.
        assert.deepStrictEqual(yield* acquire("c", q), { _tag: "Queued", position: 1, inFlight: 0 })
        assert.deepStrictEqual(yield* acquire("new", q), { _tag: "Queued", position: 2, inFlight: 0 })
        assert.deepStrictEqual(yield* acquire("b", q), { _tag: "Acquired", inFlight: 1 })
        assert.deepStrictEqual(yield* acquire("c", q), { _tag: "Queued", position: 0, inFlight: 1 })
        assert.isTrue(yield* release("b"))
        assert.deepStrictEqual(yield* acquire("c", q), { _tag: "Acquired", inFlight: 1 })
      }))

    test("a later ticket is admitted when the free slots cover every ticket ahead of it too", () =>
      Effect.gen(function*() {
        const { acquire, release } = yield* fresh
        const q = { limit: 2, maxQueue: 5 }
        yield* acquire("a", q)
        yield* acquire("b", q)
        yield* acquire("c", q)
        yield* acquire("d", q)
        yield* release("a")
        yield* release("b")
        // Two free slots, c at 0 and d at 1: d may go first, c still fits.
        assert.deepStrictEqual(yield* acquire("d", q), { _tag: "Acquired", inFlight: 1 })
        assert.deepStrictEqual(yield* acquire("c", q), { _tag: "Acquired", inFlight: 2 })
      }))

    test("a new arrival is admitted at once when the free slots cover every ticket", () =>
      Effect.gen(function*() {
        const { acquire, release } = yield* fresh
        const q = { limit: 3, maxQueue: 5 }
        yield* acquire("a", q)
        yield* acquire("b", q)
        yield* acquire("c", q)
        yield* acquire("d", q)
        yield* release("a")
        yield* release("b")
        assert.deepStrictEqual(yield* acquire("new", q), { _tag: "Acquired", inFlight: 2 })
        assert.deepStrictEqual(yield* acquire("d", q), { _tag: "Acquired", inFlight: 3 })
      }))

    test("release gives back a ticket: the tickets behind it move up", () =>
      Effect.gen(function*() {
        const { acquire, inspect, release } = yield* fresh
        const q = { limit: 1, maxQueue: 5 }
        yield* acquire("a", q)
        yield* acquire("b", q)
        yield* acquire("c", q)
        assert.isTrue(yield* release("b"))
        assert.deepStrictEqual(yield* acquire("c", q), { _tag: "Queued", position: 0, inFlight: 1 })
        assert.deepStrictEqual(yield* inspect, { inFlight: 1, queued: 1 })
      }))

    test("a ticket not refreshed within ticketMs runs out (a crashed waiter): the next one becomes the head", () =>
      Effect.gen(function*() {
        const { acquire, inspect, release } = yield* fresh
        const q = { limit: 1, maxQueue: 5, ticketMs }
        yield* acquire("a", q)
        yield* acquire("crashed", q)
        yield* acquire("live", q)
        // The live waiter keeps polling (every third of a ticket's life); the crashed one does not.
        for (let i = 0; i < 6; i++) {
          yield* advance(Math.round(ticketMs / 3))
          assert.strictEqual((yield* acquire("live", q))._tag, "Queued")
        }
        assert.deepStrictEqual(yield* acquire("live", q), { _tag: "Queued", position: 0, inFlight: 1 })
        assert.deepStrictEqual(yield* inspect, { inFlight: 1, queued: 1 })
        assert.isFalse(yield* release("crashed"))
        yield* release("a")
        assert.strictEqual((yield* acquire("live", q))._tag, "Acquired")
      }))
  })

  describe("inspect: slots and tickets held now, expired ones not counted", () => {
    test("an idle name reads as empty", () =>
      Effect.gen(function*() {
        const { acquire, inspect, release } = yield* fresh
        assert.deepStrictEqual(yield* inspect, { inFlight: 0, queued: 0 })
        yield* acquire("a", { limit: 1, maxQueue: 1 })
        yield* acquire("b", { limit: 1, maxQueue: 1, ticketMs })
        yield* release("a")
        yield* advance(ticketMs * 2)
        assert.deepStrictEqual(yield* inspect, { inFlight: 0, queued: 0 })
      }))
  })
}

/**
 * The rules of `DistributedBulkhead` that involve the store: the same
 * behaviour whichever store holds the slots.
 */
export const rules = <R>(setup: StoreSetup<R>): void => {
  const { advance, leaseMs, makeStore, test, virtualTime } = setup
  // Leases of running calls: long enough that a late renewal on a busy machine loses nothing.
  const lease = leaseMs * 4
  const instance = (store: BulkheadStore.BulkheadStore, options?: Partial<DistributedBulkhead.Options>) =>
    DistributedBulkhead.make({ name: `rules-${++names}`, maxConcurrent: 2, lease, pollInterval: 20, store, ...options })

  describe("one cap for every instance (process) sharing the store", () => {
    test("two instances of one name share maxConcurrent slots; a release lets the other in", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const a = yield* instance(store)
        const b = yield* DistributedBulkhead.make({ name: a.name, maxConcurrent: 2, lease, store })
        const started = yield* Deferred.make<void>()
        const gate = yield* Deferred.make<void>()
        const hold = Effect.andThen(Deferred.succeed(started, undefined), Deferred.await(gate))
        const first = yield* Effect.forkChild(hold.pipe(DistributedBulkhead.guard(a)))
        yield* Deferred.await(started)
        const second = yield* Effect.forkChild(Deferred.await(gate).pipe(DistributedBulkhead.guard(b)))
        yield* eventually(Effect.map(DistributedBulkhead.occupancy(a), (o) => o.inFlight === 2), "both slots are held", setup)
        const full = yield* Effect.flip(Effect.succeed(1).pipe(DistributedBulkhead.guard(b)))
        assert.strictEqual(full.reason, "QueueFull")
        assert.strictEqual(full.name, a.name)
        yield* Deferred.succeed(gate, undefined)
        yield* Fiber.join(first)
        yield* Fiber.join(second)
        assert.strictEqual(yield* Effect.succeed("in").pipe(DistributedBulkhead.guard(b)), "in")
        assert.deepStrictEqual(yield* DistributedBulkhead.occupancy(a), { inFlight: 0, queued: 0 })
      }))

    test("a waiting call in one instance is admitted when a call of the other releases its slot", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const a = yield* instance(store, { maxConcurrent: 1 })
        const b = yield* DistributedBulkhead.make({ name: a.name, maxConcurrent: 1, maxQueue: 4, lease, pollInterval: 20, store })
        const gate = yield* Deferred.make<void>()
        const first = yield* Effect.forkChild(Deferred.await(gate).pipe(DistributedBulkhead.guard(a)))
        yield* eventually(Effect.map(DistributedBulkhead.occupancy(a), (o) => o.inFlight === 1), "a holds the slot", setup)
        const waiter = yield* Effect.forkChild(Effect.succeed("waited").pipe(DistributedBulkhead.guard(b)))
        yield* eventually(Effect.map(DistributedBulkhead.occupancy(a), (o) => o.queued === 1), "b waits", setup)
        yield* Deferred.succeed(gate, undefined)
        yield* Fiber.join(first)
        if (virtualTime) yield* advance(100)
        assert.strictEqual(yield* Fiber.join(waiter), "waited")
        const s = yield* DistributedBulkhead.stats(b)
        assert.deepStrictEqual([s.admitted, s.admittedAfterWait], [1, 1])
      }))
  })

  describe("leases: a crashed holder's slot comes back; a running call's lease is renewed", () => {
    test("a slot taken by a process that died (never renewed, never released) is free within one lease", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const b = yield* instance(store, { maxConcurrent: 1 })
        const t = yield* now
        // The crashed process: it took the only slot and will never renew or release it.
        yield* store.acquire({ name: b.name, token: "crashed", limit: 1, leaseMs, maxQueue: 0, ticketMs: leaseMs, now: t })
        assert.strictEqual((yield* Effect.flip(Effect.void.pipe(DistributedBulkhead.guard(b)))).reason, "QueueFull")
        yield* advance(leaseMs + 50)
        assert.strictEqual(yield* Effect.succeed("back").pipe(DistributedBulkhead.guard(b)), "back")
      }))

    test("a call running for several leases keeps its slot: renewals every third of a lease", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        // Twice the suite's lease: renewed every 200 ms in real time (a late one loses nothing).
        const renewed = leaseMs * 2
        const b = yield* instance(store, { maxConcurrent: 1, lease: renewed })
        const started = yield* Deferred.make<void>()
        const long = Effect.andThen(Deferred.succeed(started, undefined), Effect.sleep(renewed * 3))
        const fiber = yield* Effect.forkChild(long.pipe(DistributedBulkhead.guard(b)))
        yield* Deferred.await(started)
        for (let i = 0; i < 5; i++) {
          yield* advance(renewed / 2)
          assert.strictEqual((yield* DistributedBulkhead.occupancy(b)).inFlight, 1, `after ${(i + 1) / 2} leases`)
        }
        if (virtualTime) yield* advance(renewed)
        yield* Fiber.join(fiber)
        const s = yield* DistributedBulkhead.stats(b)
        assert.isAtLeast(s.renewals, 6)
        assert.strictEqual(s.leasesLost, 0)
        assert.deepStrictEqual(yield* DistributedBulkhead.occupancy(b), { inFlight: 0, queued: 0 })
      }))

    test("interrupting a running call and a waiting call gives back the slot and the ticket", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const b = yield* instance(store, { maxConcurrent: 1, maxQueue: 2 })
        const started = yield* Deferred.make<void>()
        const running = yield* Effect.forkChild(
          Effect.andThen(Deferred.succeed(started, undefined), Effect.never).pipe(DistributedBulkhead.guard(b))
        )
        yield* Deferred.await(started)
        const waiting = yield* Effect.forkChild(Effect.void.pipe(DistributedBulkhead.guard(b)))
        yield* eventually(Effect.map(DistributedBulkhead.occupancy(b), (o) => o.queued === 1), "the second call waits", setup)
        yield* Fiber.interrupt(waiting)
        yield* Fiber.interrupt(running)
        assert.isTrue(Exit.hasInterrupts(yield* Fiber.await(running)))
        assert.deepStrictEqual(yield* DistributedBulkhead.occupancy(b), { inFlight: 0, queued: 0 })
        const s = yield* DistributedBulkhead.stats(b)
        assert.deepStrictEqual([s.inFlight, s.queued, s.cancelled, s.completed], [0, 0, 1, 1])
      }))
  })
}
