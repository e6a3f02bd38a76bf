/**
 * The contract every idempotency store keeps, and the rules of
 * `Idempotency.once` that depend on the store, written once and run against
 * each store: the in-memory store (on `TestClock`) and the Redis store (on
 * a real redis-server, in real time).
 *
 * A suite receives how to run a test, how to make a fresh store (a store
 * whose keys no other test sees) and how to let time pass: `TestClock.adjust`
 * for the memory store, a real sleep for Redis, whose leases and lifetimes
 * are expiries that the server keeps.
 */
import { assert, describe } from "@effect/vitest"
import { Idempotency, IdempotencyStore } from "@bulwark/core"
import { Cause, Clock, Deferred, Effect, Exit, Fiber, Schema, type Scope } from "effect"

/** How a suite runs against one store. */
export interface StoreSetup<R> {
  /** Registers a test whose body needs `R` and a Scope. */
  readonly test: (name: string, body: () => Effect.Effect<void, unknown, R | Scope.Scope>) => void
  /** A fresh store: no other test sees its keys. */
  readonly makeStore: Effect.Effect<IdempotencyStore.IdempotencyStore, never, R>
  /** Lets `ms` of the store's time pass. */
  readonly advance: (ms: number) => Effect.Effect<void>
  /** A lease short enough to wait out in a test (long enough for a round trip). */
  readonly leaseMs: number
  /** Time is `TestClock`'s: fibers that sleep move only when the test advances it. */
  readonly virtualTime: boolean
}

const now = Clock.currentTimeMillis

/**
 * Waits until `condition` holds: other fibers run first, and in real time a
 * store round trip may be needed too (a few milliseconds each turn).
 */
const eventually = (condition: Effect.Effect<boolean>, what: string, virtualTime: boolean) =>
  Effect.gen(function*() {
    for (let turn = 0; turn < 1000; turn++) {
      if (yield* condition) return
      yield* Effect.yieldNow
      if (!virtualTime && turn > 20) yield* Effect.sleep(5)
    }
    throw new Error(`gave up waiting until ${what}`)
  })

const claimed = (claim: IdempotencyStore.Claim): string => {
  if (claim._tag !== "Claimed") throw new Error(`expected Claimed, got ${JSON.stringify(claim)}`)
  return claim.token
}

/**
 * The store contract of `IdempotencyStore` (see its module documentation),
 * one test per clause.
 */
export const storeContract = <R>(setup: StoreSetup<R>): void => {
  const { advance, leaseMs, makeStore, test } = setup
  const ttlMs = leaseMs * 20

  describe("claim: a free key is claimed, a claimed key is in flight, a completed key is read back", () => {
    test("a free key is claimed; while the lease runs the key reads as in flight, with the lease time left", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        claimed(yield* store.claim("k", leaseMs, yield* now))
        const again = yield* store.claim("k", leaseMs, yield* now)
        assert.strictEqual(again._tag, "InFlight")
        if (again._tag === "InFlight") {
          assert.isAbove(again.leaseLeftMs, 0)
          assert.isAtMost(again.leaseLeftMs, leaseMs)
        }
      }))

    test("complete with the owner's token stores the text; every later claim reads it back exactly", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const token = claimed(yield* store.claim("k", leaseMs, yield* now))
        const text = `{"_tag":"Success","value":"naïve | ünïcödé ✓ | c|1|x"}`
        assert.isTrue(yield* store.complete("k", token, text, ttlMs, yield* now))
        for (let i = 0; i < 2; i++) {
          const read = yield* store.claim("k", leaseMs, yield* now)
          assert.strictEqual(read._tag, "Completed")
          if (read._tag === "Completed") {
            assert.strictEqual(read.encoded, text)
            assert.isTrue(Number.isFinite(read.storedAt) && read.storedAt >= 0)
          }
        }
      }))

    test("a large result round-trips unchanged", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const token = claimed(yield* store.claim("big", leaseMs, yield* now))
        const text = JSON.stringify({ _tag: "Success", value: "x|".repeat(100_000) })
        assert.isTrue(yield* store.complete("big", token, text, ttlMs, yield* now))
        const read = yield* store.claim("big", leaseMs, yield* now)
        assert.strictEqual(read._tag === "Completed" ? read.encoded : undefined, text)
      }))

    test("concurrent claims of one key: exactly one is Claimed, the others are in flight", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const t = yield* now
        const claims = yield* Effect.all(Array.from({ length: 20 }, () => store.claim("k", leaseMs * 10, t)), {
          concurrency: "unbounded"
        })
        assert.strictEqual(claims.filter((c) => c._tag === "Claimed").length, 1)
        assert.strictEqual(claims.filter((c) => c._tag === "InFlight").length, 19)
      }))

    test("keys are independent", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const a = claimed(yield* store.claim("a", leaseMs, yield* now))
        const b = claimed(yield* store.claim("b", leaseMs, yield* now))
        assert.notStrictEqual(a, b)
        assert.isTrue(yield* store.complete("a", a, "A", ttlMs, yield* now))
        assert.strictEqual((yield* store.claim("b", leaseMs, yield* now))._tag, "InFlight")
      }))
  })

  describe("fencing: only the token that owns the key completes, abandons or renews it", () => {
    test("another token changes nothing", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const token = claimed(yield* store.claim("k", leaseMs * 10, yield* now))
        assert.isFalse(yield* store.complete("k", `${token}x`, "other", ttlMs, yield* now))
        assert.isFalse(yield* store.abandon("k", `${token}x`, yield* now))
        assert.isFalse(yield* store.renew("k", `${token}x`, leaseMs, yield* now))
        assert.strictEqual((yield* store.claim("k", leaseMs, yield* now))._tag, "InFlight")
        assert.isTrue(yield* store.complete("k", token, "mine", ttlMs, yield* now))
      }))

    test("an owner whose lease ran out cannot complete, abandon or renew; a newer owner can", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const stale = claimed(yield* store.claim("k", leaseMs, yield* now))
        yield* advance(leaseMs * 2)
        // Nobody claimed it again: the key is free, and still not the stale owner's.
        assert.isFalse(yield* store.renew("k", stale, leaseMs, yield* now))
        assert.isFalse(yield* store.complete("k", stale, "late", ttlMs, yield* now))
        const fresh = claimed(yield* store.claim("k", leaseMs * 10, yield* now))
        assert.notStrictEqual(fresh, stale)
        assert.isFalse(yield* store.complete("k", stale, "late", ttlMs, yield* now))
        assert.isFalse(yield* store.abandon("k", stale, yield* now))
        assert.isTrue(yield* store.complete("k", fresh, "fresh", ttlMs, yield* now))
        const read = yield* store.claim("k", leaseMs, yield* now)
        assert.strictEqual(read._tag === "Completed" ? read.encoded : undefined, "fresh")
      }))

    test("a completed key cannot be completed, abandoned or renewed again, even by its owner", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const token = claimed(yield* store.claim("k", leaseMs, yield* now))
        assert.isTrue(yield* store.complete("k", token, "first", ttlMs, yield* now))
        assert.isFalse(yield* store.complete("k", token, "second", ttlMs, yield* now))
        assert.isFalse(yield* store.abandon("k", token, yield* now))
        assert.isFalse(yield* store.renew("k", token, leaseMs, yield* now))
        const read = yield* store.claim("k", leaseMs, yield* now)
        assert.strictEqual(read._tag === "Completed" ? read.encoded : undefined, "first")
      }))
  })

  describe("leases and lifetimes: claims and results expire", () => {
    test("abandon frees the key: the next claim gets a new token", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const first = claimed(yield* store.claim("k", leaseMs, yield* now))
        assert.isTrue(yield* store.abandon("k", first, yield* now))
        const second = claimed(yield* store.claim("k", leaseMs, yield* now))
        assert.notStrictEqual(second, first)
      }))

    test("a lease that runs out frees the key (the claim of a crashed owner)", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const crashed = claimed(yield* store.claim("k", leaseMs, yield* now))
        yield* advance(leaseMs * 2)
        assert.notStrictEqual(claimed(yield* store.claim("k", leaseMs, yield* now)), crashed)
      }))

    test("renew extends the lease from now", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const token = claimed(yield* store.claim("k", leaseMs * 2, yield* now))
        yield* advance(leaseMs)
        assert.isTrue(yield* store.renew("k", token, leaseMs * 4, yield* now))
        yield* advance(leaseMs * 2)
        // Without the renewal the lease would have run out by now.
        assert.strictEqual((yield* store.claim("k", leaseMs, yield* now))._tag, "InFlight")
        assert.isTrue(yield* store.complete("k", token, "done", ttlMs, yield* now))
      }))

    test("a stored result expires after its time to live", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const token = claimed(yield* store.claim("k", leaseMs, yield* now))
        assert.isTrue(yield* store.complete("k", token, "done", leaseMs, yield* now))
        assert.strictEqual((yield* store.claim("k", leaseMs * 10, yield* now))._tag, "Completed")
        yield* advance(leaseMs * 2)
        claimed(yield* store.claim("k", leaseMs, yield* now))
      }))
  })
}

class Receipt extends Schema.Class<Receipt>("Receipt")({ id: Schema.String, at: Schema.Date, cents: Schema.Int }) {}
class Declined extends Schema.TaggedError<Declined>()("Declined", { code: Schema.String }) {}

/**
 * The rules of `Idempotency.once` that involve the store: the same
 * behaviour whichever store holds the keys.
 */
export const idempotencyRules = <R>(setup: StoreSetup<R>): void => {
  const { advance, leaseMs, makeStore, test, virtualTime } = setup
  const instance = Effect.flatMap(makeStore, (store) => Idempotency.make({ name: "rules", store }))

  describe("at most one execution per key", () => {
    test("concurrent duplicates: one call runs, the others fail with DuplicateInFlight while it runs", () =>
      Effect.gen(function*() {
        const using = yield* instance
        let runs = 0
        const started = yield* Deferred.make<void>()
        const gate = yield* Deferred.make<void>()
        const body = Effect.sync(() => ++runs).pipe(
          Effect.tap(() => Deferred.succeed(started, undefined)),
          Effect.tap(() => Deferred.await(gate))
        )
        const options = { ttl: 60_000, result: Schema.Number, using } as const
        const first = yield* Effect.forkChild(Idempotency.once("order-1", body, options))
        yield* Deferred.await(started)
        const duplicates = yield* Effect.all(
          Array.from({ length: 5 }, () => Effect.flip(Idempotency.once("order-1", body, options))),
          { concurrency: "unbounded" }
        )
        for (const e of duplicates) assert.strictEqual(e.reason, "DuplicateInFlight")
        yield* Deferred.succeed(gate, undefined)
        assert.strictEqual(yield* Fiber.join(first), 1)
        assert.strictEqual(yield* Idempotency.once("order-1", body, options), 1)
        assert.strictEqual(runs, 1)
        const s = yield* Idempotency.stats(using)
        assert.deepStrictEqual([s.claims, s.duplicates, s.replays, s.stored], [1, 5, 1, 1])
      }))

    test("with onDuplicate wait, duplicates wait and get the first call's result", () =>
      Effect.gen(function*() {
        const using = yield* instance
        let runs = 0
        const started = yield* Deferred.make<void>()
        const gate = yield* Deferred.make<void>()
        const body = Effect.sync(() => `ran ${++runs}`).pipe(
          Effect.tap(() => Deferred.succeed(started, undefined)),
          Effect.tap(() => Deferred.await(gate))
        )
        const options = { ttl: 60_000, result: Schema.String, onDuplicate: "wait", maxWait: 60_000, using } as const
        const first = yield* Effect.forkChild(Idempotency.once("k", body, options))
        yield* Deferred.await(started)
        const waiters = yield* Effect.forkChild(
          Effect.all(Array.from({ length: 4 }, () => Idempotency.once("k", body, options)), { concurrency: "unbounded" })
        )
        // Every waiter has found the key in flight before the first call ends.
        const waiting = Effect.map(Idempotency.stats(using), (s) => s.waited === 4)
        yield* eventually(waiting, "the 4 duplicates wait", virtualTime)
        yield* Deferred.succeed(gate, undefined)
        // The waiters poll the store at 10, 20, 40 ... ms: on TestClock that time must pass.
        if (virtualTime) yield* advance(2000)
        assert.deepStrictEqual(yield* Fiber.join(waiters), ["ran 1", "ran 1", "ran 1", "ran 1"])
        assert.strictEqual(yield* Fiber.join(first), "ran 1")
        assert.strictEqual(runs, 1)
        assert.strictEqual((yield* Idempotency.stats(using)).waited, 4)
      }))
  })

  describe("replay: a completed key answers with the stored result, decoded with the Schema", () => {
    test("the replay is a Receipt again (class, Date and all) and the effect does not run", () =>
      Effect.gen(function*() {
        const using = yield* instance
        let runs = 0
        const charge = Effect.sync(() => new Receipt({ id: `r${++runs}`, at: new Date(Date.UTC(2026, 0, 2)), cents: 4200 }))
        const options = { ttl: 60_000, result: Receipt, using } as const
        const first = yield* Idempotency.once("pay", charge, options)
        const replay = yield* Idempotency.once("pay", charge, options)
        assert.instanceOf(replay, Receipt)
        assert.instanceOf(replay.at, Date)
        assert.deepStrictEqual(replay, first)
        assert.strictEqual(runs, 1)
      }))
  })

  describe("failures are not cached unless asked", () => {
    test("by default a failure releases the key and the next call runs again", () =>
      Effect.gen(function*() {
        const using = yield* instance
        let runs = 0
        const flaky = Effect.suspend(() => ++runs === 1 ? Effect.fail(new Declined({ code: "busy" })) : Effect.succeed(runs))
        const options = { ttl: 60_000, result: Schema.Number, using } as const
        assert.strictEqual((yield* Effect.flip(Idempotency.once("k", flaky, options)))._tag, "Declined")
        assert.strictEqual(yield* Idempotency.once("k", flaky, options), 2)
        assert.strictEqual(yield* Idempotency.once("k", flaky, options), 2)
        assert.strictEqual((yield* Idempotency.stats(using)).abandoned, 1)
      }))

    test("with cacheFailures, a typed failure the Schema accepts is stored and replayed as the same error", () =>
      Effect.gen(function*() {
        const using = yield* instance
        let runs = 0
        const decline = Effect.suspend(() => {
          runs++
          return Effect.fail(new Declined({ code: "insufficient_funds" }))
        })
        const options = { ttl: 60_000, result: Schema.Number, cacheFailures: { error: Declined }, using } as const
        const first = yield* Effect.flip(Idempotency.once("k", decline, options))
        const replay = yield* Effect.flip(Idempotency.once("k", decline, options))
        assert.instanceOf(replay, Declined)
        assert.deepStrictEqual(replay, first)
        assert.strictEqual(runs, 1)
      }))
  })

  describe("leases: a crashed owner's claim frees itself; an interrupted call releases its claim", () => {
    test("a claim left by a crashed process blocks duplicates until its lease runs out, then the effect runs", () =>
      Effect.gen(function*() {
        const using = yield* instance
        // The crashed process: it claimed the key and will never complete, abandon or renew it.
        claimed(yield* using.store.claim("rules:k", leaseMs, yield* now))
        const options = { ttl: 60_000, result: Schema.String, using } as const
        const refused = yield* Effect.flip(Idempotency.once("k", Effect.succeed("ran"), options))
        assert.strictEqual(refused.reason, "DuplicateInFlight")
        yield* advance(leaseMs * 2)
        assert.strictEqual(yield* Idempotency.once("k", Effect.succeed("ran"), options), "ran")
      }))

    test("interrupting a running call abandons its claim: the next call runs", () =>
      Effect.gen(function*() {
        const using = yield* instance
        const started = yield* Deferred.make<void>()
        const options = { ttl: 60_000, result: Schema.String, using } as const
        const hanging = Effect.andThen(Deferred.succeed(started, undefined), Effect.never)
        const fiber = yield* Effect.forkChild(Idempotency.once("k", hanging, options))
        yield* Deferred.await(started)
        const exit = yield* Fiber.interrupt(fiber).pipe(Effect.andThen(Fiber.await(fiber)))
        assert.isTrue(Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause))
        assert.strictEqual(yield* Idempotency.once("k", Effect.succeed("second"), options), "second")
        const s = yield* Idempotency.stats(using)
        assert.deepStrictEqual([s.abandoned, s.inFlight, s.claims], [1, 0, 2])
      }))
  })
}
