/**
 * Idempotency and IdempotencyStore on the in-memory store: one `describe`
 * per rule of issue 5 (Idempotency section), all on `TestClock`.
 *
 * The store contract and the rules that depend on the store are the shared
 * suites of test/support/idempotencyContract.ts, run here against the
 * memory store and in test/redis against a real redis-server. What follows
 * them is specific to the in-memory run: exact timings (polling, leases,
 * renewals) on virtual time, store failures injected by a wrapper, options,
 * observability, and a property test over random interleavings of calls,
 * completions, failures, crashes and time against a small reference model.
 */
import { assert, describe, it } from "@effect/vitest"
import { Idempotency, IdempotencyError, IdempotencyStore, InvalidOptions } from "@bulwark/core"
import { Cause, Clock, Context, Duration, Effect, Exit, Fiber, Metric, Schema, Scope, Stream, Tracer } from "effect"
import * as Arbitrary from "effect/Arbitrary"
import { TestClock } from "effect/testing"
import { idempotencyRules, type StoreSetup, storeContract } from "../support/idempotencyContract.ts"

// -----------------------------------------------------------------------------
// helpers
// -----------------------------------------------------------------------------

const now = Clock.currentTimeMillis

/** Lets every ready fiber run up to its next wait. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 20; i++) yield* Effect.yieldNow
})

const ms = (d: Duration.Duration | undefined) => (d === undefined ? undefined : Duration.toMillis(d))

/**
 * A store in front of another, whose operations can be made to fail (a
 * process cut off from the store, an outage) and which logs every claim.
 */
const faulty = (inner: IdempotencyStore.IdempotencyStore = IdempotencyStore.memory()) => {
  const down = new Set<IdempotencyStore.Operation>()
  const claims: Array<{ readonly key: string; readonly at: number; readonly tag: string }> = []
  let reason: IdempotencyStore.StoreErrorReason = "Unavailable"
  const fail = (operation: IdempotencyStore.Operation) =>
    Effect.fail(new IdempotencyStore.StoreError({ store: "test", operation, reason, message: `${operation}: store down (test)` }))
  const store = IdempotencyStore.make({
    claim: (key, leaseMs, t) =>
      down.has("claim")
        ? fail("claim")
        : Effect.tap(inner.claim(key, leaseMs, t), (c) => Effect.sync(() => claims.push({ key, at: t, tag: c._tag }))),
    complete: (key, token, encoded, ttlMs, t) =>
      down.has("complete") ? fail("complete") : inner.complete(key, token, encoded, ttlMs, t),
    abandon: (key, token, t) => down.has("abandon") ? fail("abandon") : inner.abandon(key, token, t),
    renew: (key, token, leaseMs, t) => down.has("renew") ? fail("renew") : inner.renew(key, token, leaseMs, t)
  })
  return {
    store,
    inner,
    claims,
    down: (...operations: ReadonlyArray<IdempotencyStore.Operation>) => operations.forEach((o) => down.add(o)),
    up: () => down.clear(),
    failWith: (r: IdempotencyStore.StoreErrorReason) => (reason = r)
  }
}

/** The `InvalidOptions` a call died with. */
const diedWith = (exit: Exit.Exit<unknown, unknown>): unknown => {
  if (!Exit.isFailure(exit)) throw new Error("expected the call to die")
  const defect = exit.cause.reasons.find(Cause.isDieReason)
  if (defect === undefined) throw new Error(`expected a defect, got ${Cause.pretty(exit.cause)}`)
  return defect.defect
}

class Declined extends Schema.TaggedError<Declined>()("Declined", { code: Schema.String }) {}
class Unreachable extends Schema.TaggedError<Unreachable>()("Unreachable", {}) {}

// -----------------------------------------------------------------------------
// the shared suites, on the memory store
// -----------------------------------------------------------------------------

const memory: StoreSetup<never> = {
  test: (name, body) => it.effect(name, body),
  makeStore: Effect.sync(() => IdempotencyStore.memory()),
  advance: (millis) => TestClock.adjust(millis),
  leaseMs: 1000,
  virtualTime: true
}

describe("IdempotencyStore.memory keeps the store contract", () => storeContract(memory))

describe("Idempotency on the memory store", () => idempotencyRules(memory))

// -----------------------------------------------------------------------------
// rule: a concurrent duplicate fails, or waits for the result
// -----------------------------------------------------------------------------

describe("a duplicate in flight gets a typed DuplicateInFlight, or waits for the result (onDuplicate)", () => {
  it.effect("fail: the error says how long the other call's lease has left and never carries the key", () =>
    Effect.gen(function*() {
      const using = yield* Idempotency.make({ name: "orders" })
      const options = { ttl: "1 hour", result: Schema.String, lease: "10 seconds", using } as const
      const first = yield* Effect.forkChild(Idempotency.once("secret-key", Effect.never, options))
      yield* settle
      yield* TestClock.adjust("2 seconds")
      const e = yield* Effect.flip(Idempotency.once("secret-key", Effect.succeed("x"), options))
      assert.instanceOf(e, IdempotencyError)
      assert.isTrue(Schema.is(IdempotencyError)(e))
      assert.deepStrictEqual([e.reason, e.name, ms(e.waited), "key" in e], ["DuplicateInFlight", "orders", 0, false])
      // Renewed at 3.33 s? Not yet: the lease taken at 0 has 8 s left.
      assert.strictEqual(ms(e.leaseLeft), 8000)
      assert.notInclude(e.message, "secret-key")
      assert.include(e.message, `Idempotency "orders" did not run the call: DuplicateInFlight`)
      yield* Fiber.interrupt(first)
    }))

  it.effect("wait: polls at 10 ms, doubling up to 1 s, and fails with DuplicateInFlight at maxWait exactly", () =>
    Effect.gen(function*() {
      const { claims, store } = faulty()
      const using = yield* Idempotency.make({ name: "w", store })
      const owner = yield* Effect.forkChild(Idempotency.once("k", Effect.never, { ttl: 60_000, result: Schema.Number, using }))
      yield* settle
      const waiter = yield* Effect.forkChild(Effect.flip(
        Idempotency.once("k", Effect.succeed(1), { ttl: 60_000, result: Schema.Number, onDuplicate: "wait", maxWait: "3 seconds", using })
      ))
      yield* settle
      yield* TestClock.adjust("5 seconds")
      const e = yield* Fiber.join(waiter)
      assert.deepStrictEqual([e.reason, ms(e.waited)], ["DuplicateInFlight", 3000])
      assert.deepStrictEqual(
        claims.slice(1).map((c) => c.at),
        [0, 10, 30, 70, 150, 310, 630, 1270, 2270, 3000]
      )
      const s = yield* Idempotency.stats(using)
      assert.deepStrictEqual([s.waited, s.duplicates, s.claims], [1, 1, 1])
      yield* Fiber.interrupt(owner)
    }))

  it.effect("wait: maxWait defaults to the lease", () =>
    Effect.gen(function*() {
      const using = yield* Idempotency.make({ name: "w" })
      const options = { ttl: 60_000, result: Schema.Number, lease: "2 seconds", onDuplicate: "wait", using } as const
      const owner = yield* Effect.forkChild(Idempotency.once("k", Effect.never, options))
      yield* settle
      const waiter = yield* Effect.forkChild(Effect.flip(Idempotency.once("k", Effect.succeed(1), options)))
      yield* settle
      yield* TestClock.adjust("10 seconds")
      // The owner renews its lease, so the key stays in flight the whole time.
      assert.strictEqual(ms((yield* Fiber.join(waiter)).waited), 2000)
      yield* Fiber.interrupt(owner)
    }))

  it.effect("wait: when the owner fails (not cached), a waiter takes the claim and runs the effect itself", () =>
    Effect.gen(function*() {
      const using = yield* Idempotency.make({ name: "w" })
      let runs = 0
      const options = { ttl: 60_000, result: Schema.Number, onDuplicate: "wait", using } as const
      const owner = yield* Effect.forkChild(Effect.flip(Idempotency.once(
        "k",
        Effect.sleep("100 millis").pipe(Effect.andThen(Effect.sync(() => ++runs)), Effect.andThen(Effect.fail(new Declined({ code: "x" })))),
        options
      )))
      yield* settle
      const waiter = yield* Effect.forkChild(Idempotency.once("k", Effect.sync(() => ++runs), options))
      yield* settle
      yield* TestClock.adjust("1 second")
      assert.strictEqual((yield* Fiber.join(owner))._tag, "Declined")
      assert.strictEqual(yield* Fiber.join(waiter), 2)
      assert.strictEqual(runs, 2)
    }))

  it.effect("wait: a crashed owner's claim is taken over the moment its lease runs out", () =>
    Effect.gen(function*() {
      const using = yield* Idempotency.make({ name: "w" })
      yield* using.store.claim("w:k", 1000, yield* now) // a process that claimed and crashed
      const ranAt = yield* Effect.forkChild(Idempotency.once("k", now, {
        ttl: 60_000,
        result: Schema.Number,
        onDuplicate: "wait",
        maxWait: "1 minute",
        using
      }))
      yield* settle
      yield* TestClock.adjust("5 seconds")
      // Polls at 0, 10, 30, 70, 150, 310, 630, then the sleep stops at the lease's end.
      assert.strictEqual(yield* Fiber.join(ranAt), 1000)
    }))

  it.effect("interrupting a waiting duplicate holds nothing and refuses nothing", () =>
    Effect.gen(function*() {
      const using = yield* Idempotency.make({ name: "w" })
      const options = { ttl: 60_000, result: Schema.Number, onDuplicate: "wait", using } as const
      const owner = yield* Effect.forkChild(Idempotency.once("k", Effect.sleep("1 second").pipe(Effect.as(7)), options))
      yield* settle
      const waiter = yield* Effect.forkChild(Idempotency.once("k", Effect.succeed(8), options))
      yield* settle
      yield* TestClock.adjust("100 millis")
      yield* Fiber.interrupt(waiter)
      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* Fiber.join(owner), 7)
      const s = yield* Idempotency.stats(using)
      assert.deepStrictEqual([s.waited, s.duplicates, s.claims, s.stored, s.inFlight], [1, 0, 1, 1, 0])
    }))
})

// -----------------------------------------------------------------------------
// rule: leases, renewal and fencing
// -----------------------------------------------------------------------------

describe("a leased claim is renewed while the effect runs; a lost claim never overwrites a newer owner", () => {
  it.effect("a call running for many leases keeps its claim: it renews every third of the lease", () =>
    Effect.gen(function*() {
      const using = yield* Idempotency.make({ name: "long" })
      const options = { ttl: 60_000, result: Schema.String, lease: "3 seconds", using } as const
      const owner = yield* Effect.forkChild(Idempotency.once("k", Effect.sleep("20 seconds").pipe(Effect.as("done")), options))
      yield* settle
      for (let t = 0; t < 19; t++) {
        yield* TestClock.adjust("1 second")
        const e = yield* Effect.flip(Idempotency.once("k", Effect.succeed("dup"), options))
        assert.strictEqual(e.reason, "DuplicateInFlight")
        // Renewed at every multiple of 1 s: never less than two thirds of the lease left.
        assert.isAtLeast(ms(e.leaseLeft)!, 2000)
      }
      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* Fiber.join(owner), "done")
      assert.strictEqual(yield* Idempotency.once("k", Effect.succeed("dup"), options), "done")
      assert.strictEqual((yield* Idempotency.stats(using)).leasesLost, 0)
    }))

  it.effect("an owner cut off from the store loses its claim at the lease's end; its late result is not stored (fencing)", () =>
    Effect.gen(function*() {
      const shared = IdempotencyStore.memory()
      const a = faulty(shared)
      const b = faulty(shared)
      const processA = yield* Idempotency.make({ name: "pay", store: a.store })
      const processB = yield* Idempotency.make({ name: "pay", store: b.store })
      const options = { ttl: 60_000, result: Schema.String, lease: "3 seconds" } as const
      const slowA = yield* Effect.forkChild(
        Idempotency.once("k", Effect.sleep("10 seconds").pipe(Effect.as("from A")), { ...options, using: processA })
      )
      yield* settle
      a.down("renew") // A can no longer renew: its lease runs out at 3 s
      yield* TestClock.adjust("4 seconds")
      assert.strictEqual(yield* Idempotency.once("k", Effect.succeed("from B"), { ...options, using: processB }), "from B")
      a.up()
      yield* TestClock.adjust("10 seconds")
      assert.strictEqual(yield* Fiber.join(slowA), "from A") // A's effect ran: its outcome stands
      assert.strictEqual(yield* Idempotency.once("k", Effect.succeed("again"), { ...options, using: processA }), "from B")
      const sa = yield* Idempotency.stats(processA)
      // Renewals failed at 1, 2, 3 and 4 s; the one at 5 s found the claim gone.
      assert.deepStrictEqual([sa.leasesLost, sa.stored, sa.storeErrors.Unavailable], [1, 0, 4])
    }))
})

// -----------------------------------------------------------------------------
// rule: interruption abandons the claim
// -----------------------------------------------------------------------------

describe("interrupting a running call abandons its claim, or leaves it to run out when the store is unreachable", () => {
  it.effect("an interrupted call's claim is released at once, and its effect's finalizers run", () =>
    Effect.gen(function*() {
      const using = yield* Idempotency.make({ name: "i" })
      const finalized: Array<string> = []
      const options = { ttl: 60_000, result: Schema.String, using } as const
      const fiber = yield* Effect.forkChild(
        Idempotency.once("k", Effect.never.pipe(Effect.ensuring(Effect.sync(() => finalized.push("closed")))), options)
      )
      yield* settle
      yield* Fiber.interrupt(fiber)
      assert.deepStrictEqual(finalized, ["closed"])
      assert.strictEqual(yield* Idempotency.once("k", Effect.succeed("next"), options), "next")
    }))

  it.effect("with the store unreachable, the claim stays until its lease runs out, then the key is free", () =>
    Effect.gen(function*() {
      const { down, store, up } = faulty()
      const using = yield* Idempotency.make({ name: "i", store })
      const options = { ttl: 60_000, result: Schema.String, lease: "5 seconds", using } as const
      const fiber = yield* Effect.forkChild(Idempotency.once("k", Effect.never, options))
      yield* settle
      down("abandon", "renew")
      yield* Fiber.interrupt(fiber)
      up()
      assert.strictEqual((yield* Effect.flip(Idempotency.once("k", Effect.succeed("x"), options))).reason, "DuplicateInFlight")
      yield* TestClock.adjust("5 seconds")
      assert.strictEqual(yield* Idempotency.once("k", Effect.succeed("x"), options), "x")
      const s = yield* Idempotency.stats(using)
      assert.deepStrictEqual([s.abandoned, s.storeErrors.Unavailable, s.inFlight], [0, 1, 0])
    }))
})

// -----------------------------------------------------------------------------
// rule: store failures are typed and counted
// -----------------------------------------------------------------------------

describe("a store failure is a typed reason, counted, and never runs the effect without a claim", () => {
  it.effect("a claim the store cannot decide fails with StoreUnavailable, StoreTimeout or StoreRejected; the effect does not run", () =>
    Effect.gen(function*() {
      const { down, failWith, store } = faulty()
      const using = yield* Idempotency.make({ name: "s", store })
      let runs = 0
      const options = { ttl: 60_000, result: Schema.Number, using } as const
      down("claim")
      const seen: Array<[string, string | undefined]> = []
      for (const reason of ["Unavailable", "Timeout", "Rejected"] as const) {
        failWith(reason)
        const e = yield* Effect.flip(Idempotency.once("k", Effect.sync(() => ++runs), options))
        seen.push([e.reason, e.storeMessage])
      }
      assert.deepStrictEqual(seen, [
        ["StoreUnavailable", "claim: store down (test)"],
        ["StoreTimeout", "claim: store down (test)"],
        ["StoreRejected", "claim: store down (test)"]
      ])
      assert.strictEqual(runs, 0)
      const s = yield* Idempotency.stats(using)
      assert.deepStrictEqual(s.storeErrors, { Unavailable: 1, Timeout: 1, Rejected: 1 })
      assert.deepStrictEqual([s.rejected.StoreUnavailable, s.rejected.StoreTimeout, s.rejected.StoreRejected], [1, 1, 1])
    }))

  it.effect("a result the store cannot take is still returned: the effect ran, and its outcome stands", () =>
    Effect.gen(function*() {
      const { down, store } = faulty()
      const using = yield* Idempotency.make({ name: "s", store })
      down("complete")
      assert.strictEqual(yield* Idempotency.once("k", Effect.succeed(5), { ttl: 60_000, result: Schema.Number, using }), 5)
      const s = yield* Idempotency.stats(using)
      assert.deepStrictEqual([s.stored, s.storeErrors.Unavailable, s.claims], [0, 1, 1])
    }))
})

// -----------------------------------------------------------------------------
// rule: results are encoded with the user's Schema
// -----------------------------------------------------------------------------

describe("a completed key replays its result, encoded as JSON with the Schema the user provides", () => {
  it.effect("the stored text is JSON of the Schema's encoded form; void, bigint and Duration round-trip", () =>
    Effect.gen(function*() {
      const store = IdempotencyStore.memory()
      const using = yield* Idempotency.make({ name: "json", store })
      const Payload = Schema.Struct({ total: Schema.BigInt, took: Schema.Duration })
      const value = { total: 12345678901234567890n, took: Duration.seconds(3) }
      yield* Idempotency.once("p", Effect.succeed(value), { ttl: 60_000, result: Payload, using })
      const read = yield* store.claim("json:p", 1000, yield* now)
      assert.strictEqual(read._tag, "Completed")
      if (read._tag === "Completed") {
        assert.deepStrictEqual(JSON.parse(read.encoded), {
          _tag: "Success",
          value: { total: "12345678901234567890", took: { _tag: "Millis", value: 3000 } }
        })
      }
      const replay = yield* Idempotency.once("p", Effect.die("not again"), { ttl: 60_000, result: Payload, using })
      assert.strictEqual(replay.total, value.total)
      assert.isTrue(Duration.equals(replay.took, value.took))
      assert.isUndefined(yield* Idempotency.once("v", Effect.void, { ttl: 60_000, result: Schema.Void, using }))
      assert.isUndefined(yield* Idempotency.once("v", Effect.die("not again"), { ttl: 60_000, result: Schema.Void, using }))
    }))

  it.effect("a stored result that no longer decodes fails with Undecodable and does not run the effect", () =>
    Effect.gen(function*() {
      const using = yield* Idempotency.make({ name: "u" })
      yield* Idempotency.once("k", Effect.succeed("text"), { ttl: 60_000, result: Schema.String, using })
      let runs = 0
      const e = yield* Effect.flip(Idempotency.once("k", Effect.sync(() => ++runs), { ttl: 60_000, result: Schema.Number, using }))
      assert.deepStrictEqual([e.reason, runs], ["Undecodable", 0])
    }))

  it.effect("a result the Schema rejects is a defect (a programming error); nothing is stored and the claim is released", () =>
    Effect.gen(function*() {
      const using = yield* Idempotency.make({ name: "e" })
      const Positive = Schema.Number.check(Schema.isGreaterThan(0))
      const died = diedWith(yield* Effect.exit(Idempotency.once("k", Effect.succeed(-1), { ttl: 60_000, result: Positive, using })))
      assert.include(String(died), `Idempotency "e": the result does not match the result Schema, nothing was stored`)
      assert.strictEqual(yield* Idempotency.once("k", Effect.succeed(2), { ttl: 60_000, result: Positive, using }), 2)
    }))

  it.effect("a result expires after ttl: then the effect runs again", () =>
    Effect.gen(function*() {
      const using = yield* Idempotency.make({ name: "t" })
      let runs = 0
      const options = { ttl: "1 hour", result: Schema.Number, using } as const
      assert.strictEqual(yield* Idempotency.once("k", Effect.sync(() => ++runs), options), 1)
      yield* TestClock.adjust("59 minutes")
      assert.strictEqual(yield* Idempotency.once("k", Effect.sync(() => ++runs), options), 1)
      yield* TestClock.adjust("1 minute")
      assert.strictEqual(yield* Idempotency.once("k", Effect.sync(() => ++runs), options), 2)
    }))
})

describe("failures are not cached unless asked; only typed failures the error Schema accepts are", () => {
  it.effect("with cacheFailures, errors the Schema does not accept, defects and interruptions are not stored", () =>
    Effect.gen(function*() {
      const using = yield* Idempotency.make({ name: "f" })
      let runs = 0
      const options = { ttl: 60_000, result: Schema.Number, cacheFailures: { error: Declined }, using } as const
      const other = Effect.suspend(() => (++runs, Effect.fail(new Unreachable())))
      assert.strictEqual((yield* Effect.flip(Idempotency.once("a", other, options)))._tag, "Unreachable")
      assert.strictEqual((yield* Effect.flip(Idempotency.once("a", other, options)))._tag, "Unreachable")
      const defect = Effect.suspend(() => (++runs, Effect.die("boom")))
      yield* Effect.exit(Idempotency.once("b", defect, options))
      yield* Effect.exit(Idempotency.once("b", defect, options))
      assert.strictEqual(runs, 4)
      const s = yield* Idempotency.stats(using)
      assert.deepStrictEqual([s.abandoned, s.stored, s.replays], [4, 0, 0])
    }))

  it.effect("a stored failure read by a call without cacheFailures is Undecodable, not a success", () =>
    Effect.gen(function*() {
      const using = yield* Idempotency.make({ name: "f" })
      yield* Effect.flip(Idempotency.once("k", Effect.fail(new Declined({ code: "no" })), {
        ttl: 60_000,
        result: Schema.Number,
        cacheFailures: { error: Declined },
        using
      }))
      const e = yield* Effect.flip(Idempotency.once("k", Effect.succeed(1), { ttl: 60_000, result: Schema.Number, using }))
      assert.strictEqual(e.reason, "Undecodable")
      assert.strictEqual((yield* Idempotency.stats(using)).replayedFailures, 0)
    }))
})

// -----------------------------------------------------------------------------
// rule: options are validated
// -----------------------------------------------------------------------------

describe("options are validated: bad ones are InvalidOptions naming every field", () => {
  it.effect("make fails with InvalidOptions naming each bad field", () =>
    Effect.gen(function*() {
      const e = yield* Effect.flip(Idempotency.make({ name: " ", store: {} as any, exposeKeys: "yes" as any }))
      assert.instanceOf(e, InvalidOptions)
      assert.strictEqual(e.primitive, "Idempotency")
      const fields = e.message.split("\n").map((line) => line.split(":")[0])
      assert.deepStrictEqual(fields, ["name", "store", "exposeKeys"])
      assert.include(e.message, "Expected an IdempotencyStore")
    }))

  it.effect("a call with bad options dies with InvalidOptions naming each field; the effect never runs", () =>
    Effect.gen(function*() {
      const using = yield* Idempotency.make({ name: "o" })
      let runs = 0
      const body = Effect.sync(() => ++runs)
      const bad = { ttl: 0, result: 42, lease: "soon", onDuplicate: "maybe", cacheFailures: { error: "x" }, using } as unknown as Idempotency.CallOptions<number, never, Idempotency.Idempotency>
      const died = diedWith(yield* Effect.exit(Idempotency.once("k", body, bad)))
      assert.instanceOf(died, InvalidOptions)
      const message = (died as InvalidOptions).message
      for (const field of ["ttl", "result", "lease", "onDuplicate", "cacheFailures.error"]) {
        assert.match(message, new RegExp(`^${field.replace(".", "\\.")}: `, "m"), `${field} in:\n${message}`)
      }
      const fail = diedWith(yield* Effect.exit(Idempotency.once("k", body, { ttl: 1000, result: Schema.Number, maxWait: 5, using })))
      assert.strictEqual((fail as InvalidOptions).message, `maxWait: Expected no maxWait unless onDuplicate is "wait"`)
      const notAnInstance = diedWith(yield* Effect.exit(Idempotency.once("k", body, { ttl: 1000, result: Schema.Number, using: {} as Idempotency.Idempotency })))
      assert.include((notAnInstance as InvalidOptions).message, "using: Expected an Idempotency instance or its service key")
      const fractional = diedWith(yield* Effect.exit(Idempotency.once("k", body, { ttl: 1.5, result: Schema.Number, using })))
      assert.include((fractional as InvalidOptions).message, "ttl: Expected a whole number of milliseconds >= 1")
      const emptyKey = diedWith(yield* Effect.exit(Idempotency.once("", body, { ttl: 1000, result: Schema.Number, using })))
      assert.include(String(emptyKey), "Idempotency.once: the key must be a non-empty string")
      assert.strictEqual(runs, 0)
    }))

  it.effect("a guard is validated once when built: with bad options every call dies", () =>
    Effect.gen(function*() {
      const using = yield* Idempotency.make({ name: "o" })
      const guarded = Idempotency.guard("k", { ttl: -5, result: Schema.Number, using })
      for (let i = 0; i < 2; i++) assert.instanceOf(diedWith(yield* Effect.exit(guarded(Effect.succeed(1)))), InvalidOptions)
    }))
})

// -----------------------------------------------------------------------------
// rule: instances, services and guards
// -----------------------------------------------------------------------------

describe("the store is a service; guard is pipeable and data-first and takes an instance or a key", () => {
  it.effect("once and guard use the Store service by default, or the instance or key given as using", () =>
    Effect.gen(function*() {
      class Payments extends Context.Service<Payments, Idempotency.Idempotency>()("test/Payments") {}
      const options = { ttl: 60_000, result: Schema.String } as const
      const viaService = Idempotency.once("k", Effect.succeed("service"), options) // R = Idempotency.Store
      const piped = Effect.succeed("piped").pipe(Idempotency.guard("k", options))
      const dataFirst = Idempotency.guard(Effect.succeed("data-first"), "k", options)
      const viaKey = Effect.succeed("key").pipe(Idempotency.guard("k", { ...options, using: Payments })) // R = Payments
      const results = yield* Effect.all([viaService, piped, dataFirst]).pipe(Effect.provide(Idempotency.layerMemory()))
      assert.deepStrictEqual(results, ["service", "service", "service"])
      const own = yield* Idempotency.make({ name: "own" })
      assert.strictEqual(yield* Idempotency.once("k", Effect.succeed("instance"), { ...options, using: own }), "instance")
      assert.strictEqual(yield* viaKey.pipe(Effect.provide(Idempotency.layer(Payments, { name: "payments" }))), "key")
      assert.isTrue(Idempotency.isIdempotency(own))
      assert.deepStrictEqual((own as unknown as { toJSON(): unknown }).toJSON(), { _id: "Idempotency", name: "own" })
    }))

  it.effect("a guard built once applies to many calls; each call claims anew", () =>
    Effect.gen(function*() {
      const using = yield* Idempotency.make({ name: "g" })
      let runs = 0
      const onlyOnce = Idempotency.guard("k", { ttl: 60_000, result: Schema.Number, using })
      const results = yield* Effect.all([1, 2, 3].map(() => onlyOnce(Effect.sync(() => ++runs))))
      assert.deepStrictEqual([results, runs], [[1, 1, 1], 1])
    }))

  it.effect("the name namespaces keys: instances with different names sharing a store never see each other's keys", () =>
    Effect.gen(function*() {
      const store = IdempotencyStore.memory()
      const orders = yield* Idempotency.make({ name: "orders", store })
      const refunds = yield* Idempotency.make({ name: "refunds", store })
      const ordersAgain = yield* Idempotency.make({ name: "orders", store })
      const call = (using: Idempotency.Idempotency, value: string) =>
        Idempotency.once("42", Effect.succeed(value), { ttl: 60_000, result: Schema.String, using })
      assert.deepStrictEqual(
        [yield* call(orders, "order"), yield* call(refunds, "refund"), yield* call(ordersAgain, "other")],
        ["order", "refund", "order"]
      )
    }))
})

// -----------------------------------------------------------------------------
// rule: stats, events, metrics
// -----------------------------------------------------------------------------

describe("stats, events and pull-based metrics bulwark.idempotency.* (labels name and reason only)", () => {
  it.effect("events tell each call's story; keys appear only with exposeKeys", () =>
    Effect.gen(function*() {
      const hidden = yield* Idempotency.make({ name: "hidden" })
      const shown = yield* Idempotency.make({ name: "shown", exposeKeys: true })
      const collected = yield* Effect.forkChild(Stream.runCollect(
        Stream.merge(Idempotency.events(hidden), Idempotency.events(shown)).pipe(Stream.take(8))
      ))
      yield* settle
      for (const using of [hidden, shown]) {
        const options = { ttl: 60_000, result: Schema.Number, using } as const
        const owner = yield* Effect.forkChild(Idempotency.once("tenant-secret", Effect.never, options))
        yield* settle
        yield* Effect.flip(Idempotency.once("tenant-secret", Effect.succeed(1), options))
        yield* Fiber.interrupt(owner)
        yield* Idempotency.once("other", Effect.succeed(1), options)
        yield* Idempotency.once("other", Effect.succeed(1), options)
      }
      const events = Array.from(yield* Fiber.join(collected))
      const story = (name: string) => events.filter((e) => e.name === name).map((e) => e._tag)
      assert.deepStrictEqual(story("hidden").slice(0, 3), ["Claimed", "Rejected", "Abandoned"])
      assert.isFalse(events.filter((e) => e.name === "hidden").some((e) => "key" in e))
      assert.isTrue(events.filter((e) => e.name === "shown").every((e) => "key" in e && e.key !== undefined))
      const shownError = yield* Effect.gen(function*() {
        const options = { ttl: 60_000, result: Schema.Number, using: shown } as const
        const owner = yield* Effect.forkChild(Idempotency.once("tenant-secret", Effect.never, options))
        yield* settle
        const e = yield* Effect.flip(Idempotency.once("tenant-secret", Effect.succeed(1), options))
        yield* Fiber.interrupt(owner)
        return e
      })
      assert.strictEqual(shownError.key, "tenant-secret")
      assert.include(shownError.message, "[tenant-secret]")
    }))

  it.effect("stats count claims, replays, duplicates, store errors; metrics read the same counters and go with the scope", () =>
    Effect.gen(function*() {
      const registry: Metric.MetricRegistry = new Map()
      const withRegistry = Effect.provideService(Metric.MetricRegistry, registry)
      const scope = yield* Scope.make()
      const { down, store, up } = faulty()
      const using = yield* Idempotency.make({ name: "m", store }).pipe(withRegistry, Scope.provide(scope))
      const options = { ttl: 60_000, result: Schema.Number, using } as const
      yield* Idempotency.once("a", Effect.succeed(1), options)
      yield* Idempotency.once("a", Effect.succeed(1), options)
      const owner = yield* Effect.forkChild(Idempotency.once("b", Effect.never, options))
      yield* settle
      yield* Effect.flip(Idempotency.once("b", Effect.succeed(1), options))
      down("claim")
      yield* Effect.flip(Idempotency.once("c", Effect.succeed(1), options))
      up()
      const s = yield* Idempotency.stats(using)
      assert.deepStrictEqual(
        [s.name, s.sequence, s.claims, s.replays, s.stored, s.duplicates, s.inFlight, s.storeErrors.Unavailable],
        ["m", 1, 2, 1, 1, 1, 1, 1]
      )
      assert.strictEqual((yield* Idempotency.stats(using)).sequence, 2)
      const snapshot = yield* Metric.snapshot.pipe(withRegistry)
      const find = (id: string, attributes: Record<string, string>) =>
        snapshot.find((m) => m.id === id && JSON.stringify(m.attributes) === JSON.stringify(attributes))?.state as
          | { readonly count?: number; readonly value?: number }
          | undefined
      assert.strictEqual(find("bulwark.idempotency.claims", { name: "m" })?.count, 2)
      assert.strictEqual(find("bulwark.idempotency.replays", { name: "m" })?.count, 1)
      assert.strictEqual(find("bulwark.idempotency.stored", { name: "m" })?.count, 1)
      assert.strictEqual(find("bulwark.idempotency.in_flight", { name: "m" })?.value, 1)
      assert.strictEqual(find("bulwark.idempotency.rejected", { name: "m", reason: "DuplicateInFlight" })?.count, 1)
      assert.strictEqual(find("bulwark.idempotency.rejected", { name: "m", reason: "StoreUnavailable" })?.count, 1)
      assert.strictEqual(find("bulwark.idempotency.store_errors", { name: "m", reason: "Unavailable" })?.count, 1)
      const labels = new Set(snapshot.filter((m) => m.id.startsWith("bulwark.idempotency.")).flatMap((m) => Object.keys(m.attributes ?? {})))
      assert.deepStrictEqual([...labels].sort(), ["name", "reason"])
      yield* Fiber.interrupt(owner)
      yield* Scope.close(scope, Exit.void)
      const after = yield* Metric.snapshot.pipe(withRegistry)
      assert.isFalse(after.some((m) => m.id.startsWith("bulwark.idempotency.")))
    }))
})

describe("tracing: the decision is an event on the caller's span, with the key only under exposeKeys", () => {
  it.effect("claimed, replayed and rejected are span events with the instance's name and the reason", () =>
    Effect.gen(function*() {
      const spans: Array<Tracer.NativeSpan> = []
      const tracer = Tracer.make({
        span: (options) => {
          const span = new Tracer.NativeSpan(options)
          spans.push(span)
          return span
        }
      })
      const hidden = yield* Idempotency.make({ name: "traced" })
      const shown = yield* Idempotency.make({ name: "shown", exposeKeys: true })
      const handler = (using: Idempotency.Idempotency, body: Effect.Effect<number>) =>
        Idempotency.once("k-secret", body, { ttl: 60_000, result: Schema.Number, using }).pipe(
          Effect.withSpan("handler"),
          Effect.withTracer(tracer)
        )
      yield* handler(hidden, Effect.succeed(1))
      yield* handler(hidden, Effect.succeed(2))
      const owner = yield* Effect.forkChild(handler(shown, Effect.never))
      yield* settle
      yield* Effect.flip(handler(shown, Effect.succeed(3)))
      yield* Fiber.interrupt(owner)
      const events = spans.map((span) => (span._events ?? []).map(([name, , attributes]) => [name, attributes]))
      assert.deepStrictEqual(events, [
        [["bulwark.idempotency.claimed", { "bulwark.name": "traced" }]],
        [["bulwark.idempotency.replayed", { "bulwark.name": "traced" }]],
        [["bulwark.idempotency.claimed", { "bulwark.name": "shown", "bulwark.idempotency.key": "k-secret" }]],
        [["bulwark.idempotency.rejected", {
          "bulwark.name": "shown",
          "bulwark.idempotency.reason": "DuplicateInFlight",
          "bulwark.idempotency.key": "k-secret"
        }]]
      ])
    }))
})

// -----------------------------------------------------------------------------
// property: random interleavings against a reference model
// -----------------------------------------------------------------------------

type Step =
  | {
    readonly _tag: "Call"
    readonly process: number
    readonly key: number
    readonly outcome: "Succeed" | "Fail" | "Die"
    readonly takes: number
    readonly wait: boolean
  }
  | { readonly _tag: "Advance"; readonly millis: number }
  | { readonly _tag: "Crash"; readonly process: number }

const int = (minimum: number, maximum: number) => Arbitrary.schema(Schema.Int.check(Schema.isBetween({ minimum, maximum })))

const step = Arbitrary.all([int(0, 99), int(0, 2), int(0, 1), int(0, 9), int(0, 8), int(0, 1)]).pipe(
  Arbitrary.map(([kind, process, key, outcome, x, wait]): Step => {
    if (kind < 60) {
      return {
        _tag: "Call",
        process,
        key,
        outcome: outcome < 6 ? "Succeed" : outcome < 9 ? "Fail" : "Die",
        takes: x * 100,
        wait: wait === 1
      }
    }
    if (kind < 90) return { _tag: "Advance", millis: x * 150 }
    return { _tag: "Crash", process }
  })
)

const leaseMs = 1000
const ttlMs = 3000
const keys = ["k0", "k1"] as const

interface Reached {
  runs?: number
  [what: string]: number | undefined
}

/**
 * Runs a program: three processes, each an `Idempotency` instance named
 * "prop" over one shared memory store, each behind a kill switch. A crash
 * interrupts the process's running calls *and* cuts it off from the store
 * (its abandon and renewals never arrive), then replaces it with a fresh
 * process. Key k1 caches failures, k0 does not.
 *
 * The model records every result the store accepts (through a recorder in
 * front of the shared store) with its expiry, and every body that runs.
 * Checked whenever a body starts: no other body of its key is running, and
 * no stored result of its key is live ("at most once while the key's result
 * is stored"). At the end, every call has ended and every success was
 * produced by a body of its key.
 */
const runProgram = (steps: ReadonlyArray<Step>, reached: Reached) =>
  Effect.gen(function*() {
    const shared = IdempotencyStore.memory()
    const stored = new Map<string, { readonly expiresAt: number }>()
    const recorder = IdempotencyStore.make({
      claim: shared.claim,
      complete: (key, token, encoded, ttl, t) =>
        Effect.tap(shared.complete(key, token, encoded, ttl, t), (ok) =>
          Effect.sync(() => {
            if (ok) stored.set(key, { expiresAt: t + ttl })
          })),
      abandon: shared.abandon,
      renew: shared.renew
    })
    const running = new Map<string, number>()
    const producedBy = new Map<string, string>() // body result -> key
    const violations: Array<string> = []
    let bodies = 0

    const makeProcess = Effect.gen(function*() {
      const link = faulty(recorder)
      const scope = yield* Scope.make()
      const instance = yield* Idempotency.make({ name: "prop", store: link.store }).pipe(Scope.provide(scope))
      return { link, instance, fibers: [] as Array<Fiber.Fiber<unknown, unknown>> }
    })
    const processes = [yield* makeProcess, yield* makeProcess, yield* makeProcess]
    const calls: Array<{ readonly key: string; readonly fiber: Fiber.Fiber<string, unknown> }> = []

    const body = (key: string, outcome: "Succeed" | "Fail" | "Die", takes: number) =>
      Effect.gen(function*() {
        const t = yield* now
        const id = `${key}#${++bodies}`
        if ((running.get(key) ?? 0) > 0) violations.push(`${id} started at ${t} while another body of ${key} runs`)
        const result = stored.get(`prop:${key}`)
        if (result !== undefined && result.expiresAt > t) violations.push(`${id} started at ${t} while a result is stored`)
        running.set(key, (running.get(key) ?? 0) + 1)
        yield* Effect.sleep(takes).pipe(Effect.ensuring(Effect.sync(() => running.set(key, running.get(key)! - 1))))
        if (outcome === "Die") return yield* Effect.die("defect")
        if (outcome === "Fail") return yield* Effect.fail(new Declined({ code: id }))
        producedBy.set(id, key)
        return id
      })

    for (const s of steps) {
      switch (s._tag) {
        case "Call": {
          const key = keys[s.key]
          const p = processes[s.process]
          const fiber = yield* Effect.forkDetach(Idempotency.once(key, body(key, s.outcome, s.takes), {
            ttl: ttlMs,
            lease: leaseMs,
            result: Schema.String,
            onDuplicate: s.wait ? "wait" : "fail",
            maxWait: s.wait ? 2000 : undefined,
            cacheFailures: key === "k1" ? { error: Declined } : undefined,
            using: p.instance
          }))
          p.fibers.push(fiber)
          calls.push({ key, fiber })
          break
        }
        case "Advance":
          yield* TestClock.adjust(s.millis)
          break
        case "Crash": {
          const p = processes[s.process]
          p.link.down("claim", "complete", "abandon", "renew")
          for (const fiber of p.fibers) yield* Fiber.interrupt(fiber)
          if (p.fibers.length > 0) reached["crash with calls"] = (reached["crash with calls"] ?? 0) + 1
          processes[s.process] = yield* makeProcess
          break
        }
      }
      yield* settle
    }
    // Let every call end: bodies take at most 0.9 s, waits 2 s, crashed leases 1 s.
    for (let i = 0; i < 10; i++) yield* TestClock.adjust(1000)

    for (const { fiber, key } of calls) {
      const exit = fiber.pollUnsafe()
      if (exit === undefined) {
        violations.push(`a call of ${key} never ended`)
        continue
      }
      if (Exit.isSuccess(exit)) {
        if (producedBy.get(exit.value as string) !== key) violations.push(`${key} returned ${String(exit.value)}`)
        continue
      }
      const error = Cause.findErrorOption(exit.cause)
      if (error._tag === "Some") {
        const e = error.value
        if (e instanceof IdempotencyError) reached[`rejected ${e.reason}`] = (reached[`rejected ${e.reason}`] ?? 0) + 1
        else if (!(e instanceof Declined)) violations.push(`unexpected error ${String(e)}`)
      }
    }
    for (const p of processes) {
      const s = yield* Idempotency.stats(p.instance)
      if (s.replays > 0) reached.replays = (reached.replays ?? 0) + 1
      if (s.waited > 0) reached.waited = (reached.waited ?? 0) + 1
      if (s.replayedFailures > 0) reached["replayed failures"] = (reached["replayed failures"] ?? 0) + 1
    }
    reached.runs = (reached.runs ?? 0) + 1
    assert.deepStrictEqual(violations, [])
  })

const runs = Number(process.env.BULWARK_PROPERTY_RUNS ?? 150)

describe("property: at most one execution per key while its result is stored, over random interleavings", () => {
  const reached: Reached = {}
  it.effect.prop(
    "calls (fail or wait), successes, failures, defects, crashes and time, on three processes sharing a store",
    { steps: Arbitrary.array(step, { minLength: 5, maxLength: 40 }) },
    ({ steps }) => runProgram(steps, reached),
    { arbitrary: { runs, size: 40 } }
  )
  it("the programs reached duplicates, waits, replays, cached failures and crashes", () => {
    if ((reached.runs ?? 0) < runs) return
    for (const what of ["rejected DuplicateInFlight", "waited", "replays", "replayed failures", "crash with calls"]) {
      assert.isAbove(reached[what] ?? 0, 0, `no run reached: ${what}`)
    }
  })
})
