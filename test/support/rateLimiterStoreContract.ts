/**
 * The contract every `RateLimiterStore` keeps (see the module documentation
 * of `RateLimiterStore`), written once and run against each store: the
 * in-memory store (test/core/RateLimiterStore.test.ts) and the Redis store
 * (test/redis/RedisRateLimiterStore.test.ts, on a real redis-server, with
 * `clock: "caller"` so that the explicit times below are the store's).
 *
 * Every clause goes through the store's `Effect` operations with explicit
 * times. Times start at `T0`, a multiple of every window and refill period
 * used here (windows and ticks are aligned to the epoch).
 *
 * A store other than the reference also runs `differential`: random
 * sequences of `consume`, `refund` and `block` on it and on the in-memory
 * store must give exactly the same decisions.
 */
import { assert, describe } from "@effect/vitest"
import { RateLimiterStore } from "@bulwark/core"
import { Effect, type Scope } from "effect"

/** How a suite runs against one store. */
export interface StoreSetup<R> {
  /** Registers a test whose body needs `R` and a Scope. */
  readonly test: (name: string, body: () => Effect.Effect<void, unknown, R | Scope.Scope>) => void
  /** A fresh store: no other test sees its keys. */
  readonly makeStore: Effect.Effect<RateLimiterStore.RateLimiterStore, never, R>
}

type Algorithm = RateLimiterStore.Algorithm
type Decision = RateLimiterStore.Decision

/** A multiple of every window and period used below: 10^9 ms after the epoch. */
export const T0 = 1_000_000_000

const bucket = (capacity: number, refill: number, perMillis: number): Algorithm => ({
  _tag: "TokenBucket",
  capacity,
  refill,
  perMillis
})
const gcra = (rate: number, perMillis: number, burst: number): Algorithm => ({ _tag: "Gcra", rate, perMillis, burst })
const fixed = (limit: number, windowMillis: number): Algorithm => ({ _tag: "FixedWindow", limit, windowMillis })
const sliding = (limit: number, windowMillis: number): Algorithm => ({ _tag: "SlidingWindow", limit, windowMillis })

const allFour: ReadonlyArray<Algorithm> = [bucket(2, 1, 100), gcra(2, 200, 2), fixed(2, 100), sliding(2, 100)]

const admittedAt = (d: Decision, at: number, what = "") => {
  assert.isTrue(d.admitted, `${what} expected admitted at ${at}, got ${JSON.stringify(d)}`)
  assert.strictEqual(d.at, at, what)
}

const refusedUntil = (d: Decision, at: number, blocked = false, what = "") => {
  assert.isFalse(d.admitted, `${what} expected refused until ${at}, got ${JSON.stringify(d)}`)
  assert.strictEqual(d.at, at, what)
  assert.strictEqual(d.blocked, blocked, `${what} blocked`)
}

/**
 * The store contract of `RateLimiterStore`, one test per clause.
 */
export const storeContract = <R>(setup: StoreSetup<R>): void => {
  const { makeStore, test } = setup

  describe("consume: a call that fits passes now and is committed; one that does not is refused with the earliest time it could pass", () => {
    test("token bucket: the bucket empties, is refused until the next refill tick, and nothing is committed by a refusal", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const a = bucket(2, 1, 100)
        const first = yield* store.consume("k", a, 1, T0, 0)
        admittedAt(first, T0)
        assert.deepStrictEqual([first.remaining, first.resetAt, first.blocked], [1, T0 + 100, false])
        const second = yield* store.consume("k", a, 1, T0 + 10, 0)
        admittedAt(second, T0 + 10)
        assert.deepStrictEqual([second.remaining, second.resetAt], [0, T0 + 200])
        refusedUntil(yield* store.consume("k", a, 1, T0 + 20, 0), T0 + 100)
        refusedUntil(yield* store.consume("k", a, 1, T0 + 30, 0), T0 + 100, false, "a refusal commits nothing")
        const refilled = yield* store.consume("k", a, 1, T0 + 100, 0)
        admittedAt(refilled, T0 + 100)
        assert.strictEqual(refilled.remaining, 0)
        // A bucket left alone for long holds its capacity, never more.
        const later = yield* store.consume("k", a, 2, T0 + 10_000, 0)
        admittedAt(later, T0 + 10_000)
        refusedUntil(yield* store.consume("k", a, 1, T0 + 10_000, 0), T0 + 10_100)
      }))

    test("GCRA: a burst, then one call every per / rate", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const a = gcra(2, 1_000, 2) // one every 500 ms, two at once
        admittedAt(yield* store.consume("k", a, 1, T0, 0), T0)
        const second = yield* store.consume("k", a, 1, T0, 0)
        admittedAt(second, T0)
        assert.deepStrictEqual([second.remaining, second.resetAt], [0, T0 + 1_000])
        refusedUntil(yield* store.consume("k", a, 1, T0 + 100, 0), T0 + 500)
        admittedAt(yield* store.consume("k", a, 1, T0 + 500, 0), T0 + 500)
        refusedUntil(yield* store.consume("k", a, 1, T0 + 600, 0), T0 + 1_000)
        const rested = yield* store.consume("k", a, 2, T0 + 5_000, 0)
        admittedAt(rested, T0 + 5_000)
        assert.strictEqual(rested.remaining, 0)
      }))

    test("GCRA with a rate that does not divide the period: each slot is its theoretical time rounded up to a whole millisecond, and the rounding never accumulates", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const a = gcra(3, 1_000, 1) // one every 333.3 ms
        const times: Array<number> = []
        for (let i = 0; i < 7; i++) {
          const d = yield* store.consume("k", a, 1, T0, Infinity)
          assert.isTrue(d.admitted)
          times.push(d.at - T0)
        }
        // 3 per second exactly: one every 333.3 ms, never early, never more than 1 ms late.
        assert.deepStrictEqual(times, [0, 334, 667, 1000, 1334, 1667, 2000])
      }))

    test("fixed window: at most limit per window, windows aligned to multiples of the window since the epoch", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const a = fixed(2, 100)
        admittedAt(yield* store.consume("k", a, 1, T0 + 50, 0), T0 + 50)
        const full = yield* store.consume("k", a, 1, T0 + 99, 0)
        admittedAt(full, T0 + 99)
        assert.deepStrictEqual([full.remaining, full.resetAt], [0, T0 + 100])
        refusedUntil(yield* store.consume("k", a, 1, T0 + 99, 0), T0 + 100)
        const next = yield* store.consume("k", a, 2, T0 + 100, 0)
        admittedAt(next, T0 + 100)
        assert.deepStrictEqual([next.remaining, next.resetAt], [0, T0 + 200])
      }))

    test("sliding window: at most limit in any window (t - window, t]; a call waits for the oldest entries to leave", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const a = sliding(3, 100)
        admittedAt(yield* store.consume("k", a, 1, T0, 0), T0)
        admittedAt(yield* store.consume("k", a, 1, T0 + 40, 0), T0 + 40)
        const third = yield* store.consume("k", a, 1, T0 + 60, 0)
        admittedAt(third, T0 + 60)
        assert.deepStrictEqual([third.remaining, third.resetAt], [0, T0 + 160])
        refusedUntil(yield* store.consume("k", a, 1, T0 + 70, 0), T0 + 100)
        refusedUntil(yield* store.consume("k", a, 2, T0 + 70, 0), T0 + 140, false, "two must wait for two entries to leave")
        const later = yield* store.consume("k", a, 1, T0 + 100, 0)
        admittedAt(later, T0 + 100)
        assert.strictEqual(later.remaining, 0)
      }))
  })

  describe("consume with maxWait: the earliest slot is reserved at arrival, and later callers never overtake", () => {
    test("fixed window: reservations fill the next windows in order; a slot beyond maxWait is refused without committing", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const a = fixed(2, 100)
        admittedAt(yield* store.consume("k", a, 2, T0, 1_000), T0)
        admittedAt(yield* store.consume("k", a, 2, T0, 1_000), T0 + 100, "reserved")
        admittedAt(yield* store.consume("k", a, 1, T0, 1_000), T0 + 200, "behind the reservation")
        const tooFar = yield* store.consume("k", a, 2, T0, 250)
        refusedUntil(tooFar, T0 + 300)
        admittedAt(yield* store.consume("k", a, 1, T0, 1_000), T0 + 200, "the refusal committed nothing")
        const waiting = yield* store.consume("k", a, 1, T0 + 10, 0)
        refusedUntil(waiting, T0 + 300, false, "a caller that cannot wait")
        assert.strictEqual(waiting.remaining, 0, "nothing left while callers wait for later windows")
      }))

    test("token bucket: a cheap caller queues behind an expensive one (FIFO)", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const a = bucket(4, 1, 100)
        admittedAt(yield* store.consume("k", a, 4, T0, 0), T0)
        admittedAt(yield* store.consume("k", a, 3, T0, Infinity), T0 + 300)
        admittedAt(yield* store.consume("k", a, 1, T0, Infinity), T0 + 400)
        const d = yield* store.consume("k", a, 1, T0 + 350, 0)
        refusedUntil(d, T0 + 500)
        assert.strictEqual(d.remaining, 0)
      }))

    test("sliding window and GCRA: reservations follow each other in order", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const s = sliding(2, 100)
        admittedAt(yield* store.consume("s", s, 2, T0, 0), T0)
        admittedAt(yield* store.consume("s", s, 1, T0, Infinity), T0 + 100)
        admittedAt(yield* store.consume("s", s, 1, T0, Infinity), T0 + 100, "same millisecond, merged")
        admittedAt(yield* store.consume("s", s, 1, T0, Infinity), T0 + 200)
        const g = gcra(1, 100, 1)
        admittedAt(yield* store.consume("g", g, 1, T0, Infinity), T0)
        admittedAt(yield* store.consume("g", g, 1, T0, Infinity), T0 + 100)
        admittedAt(yield* store.consume("g", g, 1, T0 + 50, Infinity), T0 + 200)
      }))
  })

  describe("a cost above what the algorithm can ever admit is refused with at = Infinity", () => {
    test("every algorithm, at once and with an unbounded wait; nothing is committed", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        for (const a of allFour) {
          const d = yield* store.consume(a._tag, a, 3, T0, Infinity)
          refusedUntil(d, Infinity, false, a._tag)
          admittedAt(yield* store.consume(a._tag, a, 2, T0, 0), T0, a._tag)
        }
      }))
  })

  describe("block: nothing passes before until; a later block extends, an earlier one changes nothing", () => {
    test("calls are refused (blocked) until the end of the block, or reserve their slot at its end when maxWait covers it", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        for (const a of allFour) {
          yield* store.block(a._tag, a, T0 + 500, T0)
          const d = yield* store.consume(a._tag, a, 1, T0 + 10, 0)
          refusedUntil(d, T0 + 500, true, a._tag)
          assert.strictEqual(d.remaining, 0, `${a._tag}: nothing left while blocked`)
          assert.isAtLeast(d.resetAt, T0 + 500, a._tag)
          admittedAt(yield* store.consume(a._tag, a, 1, T0 + 10, 1_000), T0 + 500, a._tag)
          yield* store.block(a._tag, a, T0 + 200, T0 + 20)
          refusedUntil(yield* store.consume(a._tag, a, 1, T0 + 30, 0), T0 + 500, true, `${a._tag}: an earlier block changes nothing`)
          yield* store.block(a._tag, a, T0 + 800, T0 + 40)
          const extended = yield* store.consume(a._tag, a, 1, T0 + 50, 100)
          refusedUntil(extended, T0 + 800, true, `${a._tag}: a later block extends`)
        }
      }))

    test("a call that cannot fit within maxWait for another reason is not reported as blocked", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const a = fixed(1, 1_000)
        admittedAt(yield* store.consume("k", a, 1, T0, 0), T0)
        yield* store.block("k", a, T0 + 100, T0)
        refusedUntil(yield* store.consume("k", a, 1, T0 + 10, 500), T0 + 1_000, false)
      }))
  })

  describe("refund: a reservation whose time has not come goes back; the store may forfeit one it cannot credit exactly", () => {
    test("token bucket: the latest reservation is undone exactly; one that is not the latest is forfeited", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const a = bucket(1, 1, 100)
        admittedAt(yield* store.consume("k", a, 1, T0, 0), T0)
        const first = (yield* store.consume("k", a, 1, T0, Infinity)).at
        const second = (yield* store.consume("k", a, 1, T0, Infinity)).at
        assert.deepStrictEqual([first, second], [T0 + 100, T0 + 200])
        yield* store.refund("k", a, 1, first, T0) // not the latest: crediting it would let two pass at T0 + 200
        admittedAt(yield* store.consume("k", a, 1, T0, Infinity), T0 + 300)
        yield* store.refund("k", a, 1, T0 + 300, T0)
        yield* store.refund("k", a, 1, second, T0)
        yield* store.refund("k", a, 1, first, T0)
        admittedAt(yield* store.consume("k", a, 1, T0, Infinity), T0 + 100, "every reservation undone, newest first")
      }))

    test("GCRA: the latest reservation is undone exactly", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const a = gcra(3, 1_000, 1)
        admittedAt(yield* store.consume("k", a, 1, T0, 0), T0)
        const r1 = (yield* store.consume("k", a, 1, T0, Infinity)).at
        const r2 = (yield* store.consume("k", a, 1, T0, Infinity)).at
        assert.deepStrictEqual([r1, r2], [T0 + 334, T0 + 667])
        yield* store.refund("k", a, 1, r2, T0 + 10)
        yield* store.refund("k", a, 1, r1, T0 + 10)
        admittedAt(yield* store.consume("k", a, 1, T0 + 10, Infinity), T0 + 334)
      }))

    test("windows: exact in any order, and a later caller still never goes before the last reservation", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const f = fixed(1, 100)
        admittedAt(yield* store.consume("f", f, 1, T0, 0), T0)
        const w1 = (yield* store.consume("f", f, 1, T0, Infinity)).at
        admittedAt(yield* store.consume("f", f, 1, T0, Infinity), T0 + 200)
        yield* store.refund("f", f, 1, w1, T0)
        const d = yield* store.consume("f", f, 1, T0, Infinity)
        admittedAt(d, T0 + 300, "FIFO: never before the last reservation")
        assert.strictEqual(d.resetAt, T0 + 400)
        yield* store.refund("f", f, 1, T0 + 300, T0)
        yield* store.refund("f", f, 1, T0 + 200, T0)
        admittedAt(yield* store.consume("f", f, 1, T0, Infinity), T0 + 100, "every reservation undone")

        const s = sliding(2, 100)
        admittedAt(yield* store.consume("s", s, 2, T0, 0), T0)
        admittedAt(yield* store.consume("s", s, 1, T0, Infinity), T0 + 100)
        admittedAt(yield* store.consume("s", s, 1, T0, Infinity), T0 + 100)
        admittedAt(yield* store.consume("s", s, 1, T0, Infinity), T0 + 200)
        yield* store.refund("s", s, 1, T0 + 100, T0) // a middle entry
        admittedAt(yield* store.consume("s", s, 1, T0, Infinity), T0 + 200, "never before the last reservation")
        yield* store.refund("s", s, 1, T0 + 200, T0)
        yield* store.refund("s", s, 1, T0 + 200, T0)
        admittedAt(yield* store.consume("s", s, 1, T0, Infinity), T0 + 100, "back behind the remaining entry")
      }))

    test("a refund whose time has come, or of a key never seen, changes nothing", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const a = fixed(1, 100)
        admittedAt(yield* store.consume("k", a, 1, T0, 0), T0)
        yield* store.refund("k", a, 1, T0, T0)
        refusedUntil(yield* store.consume("k", a, 1, T0, 0), T0 + 100)
        yield* store.refund("nobody", a, 1, T0 + 100, T0)
        admittedAt(yield* store.consume("nobody", a, 1, T0, 0), T0)
      }))
  })

  describe("state per key; a key used with another algorithm starts over; a state back at rest is as new", () => {
    test("keys are independent, and a new algorithm on a key starts from a fresh state", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        admittedAt(yield* store.consume("a", fixed(1, 1_000), 1, T0, 0), T0)
        admittedAt(yield* store.consume("b", fixed(1, 1_000), 1, T0, 0), T0)
        refusedUntil(yield* store.consume("a", fixed(1, 1_000), 1, T0, 0), T0 + 1_000)
        admittedAt(yield* store.consume("a", sliding(1, 1_000), 1, T0, 0), T0)
      }))

    test("resetAt is when the state is back at rest; after it a call sees the full limit", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        for (const a of allFour) {
          const d = yield* store.consume(a._tag, a, 2, T0, 0)
          admittedAt(d, T0, a._tag)
          assert.isAbove(d.resetAt, T0, a._tag)
          const rested = yield* store.consume(a._tag, a, 1, d.resetAt, 0)
          admittedAt(rested, d.resetAt, a._tag)
          assert.strictEqual(rested.remaining, 1, a._tag)
        }
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
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const algorithms: ReadonlyArray<Algorithm> = [
  bucket(3, 1, 50),
  bucket(5, 2, 100),
  gcra(3, 200, 2),
  gcra(7, 1_000, 3),
  fixed(3, 100),
  fixed(5, 250),
  sliding(3, 100),
  sliding(5, 300)
]

/**
 * Random sequences of `consume` (at once, with a bounded or unbounded
 * wait), `refund` (the latest reservation, an older one, or one whose time
 * has come) and `block`, with time moving forward by random steps: every
 * decision of the store under test equals the in-memory store's.
 */
export const differential = <R>(setup: StoreSetup<R>, options: { readonly seeds: number; readonly steps: number }): void => {
  describe("the same decisions as the in-memory store on random sequences of consume, refund and block", () => {
    for (const algorithm of algorithms) {
      setup.test(`${algorithm._tag} ${JSON.stringify(Object.values(algorithm).slice(1))}`, () =>
        Effect.gen(function*() {
          for (let seed = 1; seed <= options.seeds; seed++) {
            const store = yield* setup.makeStore
            const memory = RateLimiterStore.memory()
            const next = random(seed * 7919)
            const reservations: Array<{ readonly key: string; readonly cost: number; readonly at: number }> = []
            let now = T0 + Math.floor(next() * 1_000)
            const log: Array<string> = []
            for (let step = 0; step < options.steps; step++) {
              now += [0, 0, 1, 7, 25, 60, 150, 400][Math.floor(next() * 8)]
              const key = next() < 0.8 ? "a" : "b"
              const roll = next()
              if (roll < 0.65) {
                const cost = 1 + Math.floor(next() * 3)
                const maxWait = [0, 0, 100, 300, Infinity][Math.floor(next() * 5)]
                const [got, expected] = [
                  yield* store.consume(key, algorithm, cost, now, maxWait),
                  yield* memory.consume(key, algorithm, cost, now, maxWait)
                ]
                const what = `seed ${seed} step ${step}: consume(${key}, cost ${cost}, now +${now - T0}, maxWait ${maxWait})`
                log.push(what)
                assert.deepStrictEqual(
                  { ...got },
                  { ...expected },
                  `${what}\n${log.slice(-12).join("\n")}`
                )
                if (got.admitted && got.at > now) reservations.push({ key, cost, at: got.at })
              } else if (roll < 0.9) {
                if (reservations.length === 0) continue
                // Mostly the latest, sometimes an older one (the store may forfeit it).
                const index = next() < 0.7 ? reservations.length - 1 : Math.floor(next() * reservations.length)
                const [r] = reservations.splice(index, 1)
                log.push(`seed ${seed} step ${step}: refund(${r.key}, cost ${r.cost}, at +${r.at - T0}, now +${now - T0})`)
                yield* store.refund(r.key, algorithm, r.cost, r.at, now)
                yield* memory.refund(r.key, algorithm, r.cost, r.at, now)
              } else {
                const until = now + Math.floor(next() * 300)
                log.push(`seed ${seed} step ${step}: block(${key}, until +${until - T0}, now +${now - T0})`)
                yield* store.block(key, algorithm, until, now)
                yield* memory.block(key, algorithm, until, now)
              }
            }
          }
        }))
    }
  })
}
