/**
 * RedisCircuitBreakerStore against a real redis-server (started by this file
 * on a loopback port of its own, see test/support/redis.ts; never mocked):
 *
 * - the store contract, the same suite as the in-memory store runs
 *   (test/support/circuitBreakerStoreContract.ts), with `clock: "caller"`;
 *   and random sequences of operations that must decide exactly as the
 *   in-memory store does;
 * - what is particular to Redis: the key layout and expiries (open time,
 *   probe leases, manual states), the server's clock, values Bulwark did
 *   not write, scripts flushed, a server that does not answer in time,
 *   options, one round trip per decision (MONITOR);
 * - CircuitBreaker on the store in real time, as several processes would
 *   use it: a trip seen by every instance, one probe across instances, a
 *   lost probe's lease running out, fencing across instances;
 * - an outage: each `onStoreError` policy observed, nothing hanging;
 *   restarted, the store decides again;
 * - four OS processes (test/redis/workers/breaker.ts) on one circuit: the
 *   trip is seen by all, and exactly one probe (in one of them) closes it.
 */
import { afterAll, assert, describe, layer } from "@effect/vitest"
import { it as vitest } from "vitest"
import { CircuitBreaker, type CircuitOpen, InvalidOptions } from "@bulwark/core"
import { RedisCircuitBreakerStore } from "@bulwark/redis"
import * as NodeRedis from "@effect/platform-node/NodeRedis"
import { Cause, Data, Deferred, Duration, Effect, Exit, Fiber, Metric, Option, References, Stream } from "effect"
import * as Redis from "effect/persistence/Redis"
import { differential, type StoreSetup, storeContract } from "../support/circuitBreakerStoreContract.ts"
import { describeRedis, monitor, redisServerPath, startRedis } from "../support/redis.ts"
import { runWorkers } from "../support/workers.ts"

const server = redisServerPath === undefined ? undefined : await startRedis()
afterAll(() => server?.stop())

const url = server?.url ?? "redis://127.0.0.1:1"
/** Offline commands fail at once instead of waiting in node-redis' queue. */
const connect = (to: string) => NodeRedis.layer({ url: to, disableOfflineQueue: true })
/** The client logs a warning per failed reconnect while a server is down: expected here. */
const quiet = Effect.provideService(References.MinimumLogLevel, "Error")

let prefixes = 0
/** A store with a prefix of its own: no other test sees its keys. */
const freshStore = (options?: RedisCircuitBreakerStore.Options) =>
  Effect.suspend(() => RedisCircuitBreakerStore.make({ prefix: `t${++prefixes}:`, ...options })).pipe(Effect.orDie)

class Boom extends Data.TaggedError("Boom") {}

const succeed = (b: CircuitBreaker.CircuitBreaker) => Effect.exit(Effect.succeed("ok").pipe(CircuitBreaker.guard(b)))
const fail = (b: CircuitBreaker.CircuitBreaker) => Effect.exit(Effect.fail(new Boom()).pipe(CircuitBreaker.guard(b)))

const opened = (exit: Exit.Exit<unknown, unknown>): CircuitOpen => {
  if (Exit.isSuccess(exit)) return assert.fail("expected CircuitOpen, got a success")
  const error = Cause.squash(exit.cause) as CircuitOpen
  assert.strictEqual(error._tag, "CircuitOpen", String(error))
  return error
}

const outcomeOf = (exit: Exit.Exit<unknown, unknown>): string => {
  if (Exit.isSuccess(exit)) return "ran"
  const error = Cause.squash(exit.cause) as { readonly _tag: string; readonly reason?: string }
  return error._tag === "CircuitOpen" ? String(error.reason) : error._tag
}

/** A guarded call that runs until `gate` is completed. */
const start = (b: CircuitBreaker.CircuitBreaker) =>
  Effect.gen(function*() {
    const gate = yield* Deferred.make<string, Boom>()
    const fiber = yield* Effect.forkChild(Deferred.await(gate).pipe(CircuitBreaker.guard(b)))
    yield* Effect.sleep(20) // the admission is a round trip
    return { gate, fiber }
  })

describeRedis("RedisCircuitBreakerStore on a real redis-server", () => {
  layer(connect(url), { excludeTestServices: true })("one connection", (it) => {
    const setup: StoreSetup<Redis.Redis> = {
      test: (name, body) => it.effect(name, body),
      makeStore: freshStore({ clock: "caller" })
    }

    describe("the store contract (clock: caller, so that the contract's explicit times are the store's)", () => storeContract(setup))

    differential(setup, { seeds: 4, steps: 150 })

    describe("Redis: one hash per circuit, prefixed; it lives while it matters", () => {
      it.effect("<prefix>breaker:<name>[:<key>]; closed: idleTimeToLive; open: at least its open time; isolated: no expiry", () =>
        Effect.gen(function*() {
          const redis = yield* Redis.Redis
          const store = yield* RedisCircuitBreakerStore.make({ prefix: "shop:", idleTimeToLive: "2 seconds" })
          const b = yield* CircuitBreaker.make({ name: "layout", trip: CircuitBreaker.consecutive(1), openFor: "30 seconds", store })
          yield* succeed(b)
          assert.strictEqual(yield* redis.send("TYPE", "shop:breaker:layout"), "hash")
          assert.strictEqual(yield* redis.send("HGET", "shop:breaker:layout", "st"), "C")
          const idle = Number(yield* redis.send("PTTL", "shop:breaker:layout"))
          assert.isTrue(idle > 1_500 && idle <= 2_000, `closed: PTTL ${idle}`)
          yield* fail(b)
          const open = Number(yield* redis.send("PTTL", "shop:breaker:layout"))
          assert.isTrue(open > 29_000 && open <= 30_000, `open: PTTL ${open}`)
          yield* CircuitBreaker.isolate(b)
          assert.strictEqual(Number(yield* redis.send("PTTL", "shop:breaker:layout")), -1, "isolated: never expires")
          yield* CircuitBreaker.reset(b)
          assert.isAbove(Number(yield* redis.send("PTTL", "shop:breaker:layout")), 0)
          const keyed = yield* CircuitBreaker.make({
            name: "hosts",
            trip: CircuitBreaker.consecutive(1),
            openFor: "1 second",
            keys: { maxKeys: 10 },
            store
          })
          yield* Effect.exit(Effect.void.pipe(CircuitBreaker.guard(keyed, { key: "eu-1" })))
          assert.strictEqual(yield* redis.send("EXISTS", "shop:breaker:hosts:eu-1"), 1)
        }))

      it.effect("a half-open circuit lives at least until its probes' leases end", () =>
        Effect.gen(function*() {
          const redis = yield* Redis.Redis
          const store = yield* RedisCircuitBreakerStore.make({ prefix: "lease:", idleTimeToLive: 50 })
          const b = yield* CircuitBreaker.make({
            name: "p",
            trip: CircuitBreaker.consecutive(1),
            openFor: 20,
            halfOpen: { probeTimeout: "10 seconds" },
            store
          })
          yield* fail(b)
          yield* Effect.sleep(30)
          const probe = yield* start(b)
          const ttl = Number(yield* redis.send("PTTL", "lease:breaker:p"))
          assert.isTrue(ttl > 9_000 && ttl <= 10_001, `PTTL ${ttl}`)
          yield* Deferred.succeed(probe.gate, "ok")
          yield* Fiber.join(probe.fiber)
          assert.strictEqual((yield* CircuitBreaker.state(b)).state, "Closed")
        }))
    })

    describe("Redis: the server's clock decides", () => {
      it.effect("open time and leases run on Redis TIME, whatever now the caller passes", () =>
        Effect.gen(function*() {
          const store = yield* freshStore()
          const p = {
            trips: [{ _tag: "Consecutive", failures: 1 }],
            openForMs: [5_000],
            probes: 1,
            successesToClose: 1,
            probeTimeoutMs: 1_000
          } as const
          const admission = yield* store.admit("k", p, 0) // a caller whose clock says 1970
          assert.strictEqual(admission._tag, "Admitted")
          const permit = admission._tag === "Admitted" ? admission.permit : -1
          const trip = yield* store.record("k", p, permit, "Failure", 1, 0)
          assert.deepStrictEqual(trip, { from: "Closed", to: "Open", at: 0 }, "reported at the caller's now")
          const read = yield* store.read("k", p, Date.now() + 3_600_000) // and one an hour ahead
          assert.strictEqual(read.state, "Open")
          assert.isTrue(read.retryAfterMs > 4_900 && read.retryAfterMs <= 5_000, `retryAfter ${read.retryAfterMs}`)
        }))
    })

    describe("Redis: failures are StoreError with a reason; nothing Bulwark did not write is overwritten", () => {
      it.effect("a key holding another type fails with Rejected (WRONGTYPE); a foreign hash with BULWARK_BAD_ENTRY", () =>
        Effect.gen(function*() {
          const redis = yield* Redis.Redis
          const store = yield* RedisCircuitBreakerStore.make({ prefix: "foreign:" })
          yield* redis.send("SET", "foreign:breaker:text", "garbage")
          yield* redis.send("HSET", "foreign:breaker:hash", "field", "value")
          const p = { trips: [], openForMs: [1], probes: 1, successesToClose: 1, probeTimeoutMs: 1 }
          const text = yield* Effect.flip(store.admit("text", p, 0))
          const hash = yield* Effect.flip(store.force("hash", p, "Isolated", 0))
          assert.deepStrictEqual([text.store, text.operation, text.reason], ["redis", "admit", "Rejected"])
          assert.include(text.message, "WRONGTYPE")
          assert.deepStrictEqual([hash.operation, hash.reason], ["force", "Rejected"])
          assert.include(hash.message, "BULWARK_BAD_ENTRY")
          assert.strictEqual(yield* redis.send("HGET", "foreign:breaker:hash", "field"), "value")
        }))

      it.effect("scripts are loaded again after SCRIPT FLUSH; a server that does not answer in time fails with Timeout", () =>
        Effect.gen(function*() {
          const redis = yield* Redis.Redis
          const b = yield* CircuitBreaker.make({
            name: "flush",
            trip: CircuitBreaker.consecutive(1),
            openFor: "1 second",
            store: yield* freshStore({ timeout: "50 millis" }),
            onStoreError: "fail-closed"
          })
          assert.strictEqual(outcomeOf(yield* succeed(b)), "ran")
          yield* redis.send("SCRIPT", "FLUSH")
          assert.strictEqual(outcomeOf(yield* succeed(b)), "ran")
          yield* redis.send("CLIENT", "PAUSE", "300", "ALL")
          const started = Date.now()
          const e = opened(yield* succeed(b))
          assert.isBelow(Date.now() - started, 250)
          assert.deepStrictEqual([e.reason, e.state], ["StoreUnavailable", "Unknown"])
          assert.deepStrictEqual((yield* CircuitBreaker.stats(b)).storeErrors, { Unavailable: 0, Timeout: 1, Rejected: 0 })
          yield* Effect.sleep(350)
        }))

      it.effect("bad options are InvalidOptions naming each field", () =>
        Effect.gen(function*() {
          const e = yield* Effect.flip(
            RedisCircuitBreakerStore.make({ prefix: 1, timeout: -1, clock: "wall", idleTimeToLive: "forever", transitions: "yes", x: 1 } as any)
          )
          assert.instanceOf(e, InvalidOptions)
          assert.strictEqual(e.primitive, "RedisCircuitBreakerStore")
          const fields = e.message.split("\n").map((line) => line.split(":")[0])
          assert.deepStrictEqual(fields.sort(), ["clock", "idleTimeToLive", "prefix", "timeout", "transitions", "x"])
        }))
    })

    describe("Redis: one round trip per decision", () => {
      it.effect("a call that runs is one EVALSHA to admit and one to record; a rejection is one EVALSHA (MONITOR)", () =>
        Effect.gen(function*() {
          const prefix = `rt${++prefixes}:`
          const b = yield* CircuitBreaker.make({
            name: "trips",
            trip: CircuitBreaker.consecutive(20),
            openFor: "1 minute",
            store: yield* RedisCircuitBreakerStore.make({ prefix })
          })
          yield* succeed(b) // loads the script
          // The transitions subscription is made in the background on a connection of its own: wait for it,
          // so that its set-up commands are not counted as the decisions' round trips.
          const redis = yield* Redis.Redis
          while (Number((yield* redis.send<Array<unknown>>("PUBSUB", "NUMSUB", `${prefix}breaker-transitions`))[1]) < 1) {
            yield* Effect.sleep(5)
          }
          const watch = yield* Effect.promise(() => monitor(server!.port))
          for (let i = 0; i < 19; i++) yield* fail(b)
          yield* fail(b) // the 20th failure trips it
          for (let i = 0; i < 10; i++) yield* succeed(b) // rejected
          const seen = yield* Effect.promise(() => watch.stop())
          assert.deepStrictEqual(seen.fromClients, Array.from({ length: 50 }, () => "EVALSHA"))
          assert.strictEqual((yield* CircuitBreaker.stats(b)).rejected.Open, 10)
        }))
    })

    describe("CircuitBreaker on the store, as several processes use it", () => {
      it.effect("a trip by one instance rejects the calls of every instance; one probe across instances closes it for all", () =>
        Effect.gen(function*() {
          const store = yield* freshStore()
          const options = { name: "shared", trip: CircuitBreaker.consecutive(2), openFor: 100, store } as const
          const a = yield* CircuitBreaker.make(options)
          const b = yield* CircuitBreaker.make(options)
          yield* fail(a)
          yield* fail(b) // the second failure in a row, counted across both
          assert.strictEqual(opened(yield* succeed(a)).reason, "Open")
          assert.strictEqual(opened(yield* succeed(b)).reason, "Open")
          yield* Effect.sleep(110)
          const probe = yield* start(a)
          assert.strictEqual(opened(yield* succeed(b)).reason, "ProbesBusy", "one probe across both")
          yield* Deferred.succeed(probe.gate, "ok")
          yield* Fiber.join(probe.fiber)
          assert.strictEqual(outcomeOf(yield* succeed(b)), "ran")
          assert.strictEqual((yield* CircuitBreaker.state(b)).state, "Closed")
        }))

      it.effect("a probe that never reports loses its lease after probeTimeout: the next admission reopens; its late success changes nothing", () =>
        Effect.gen(function*() {
          const store = yield* freshStore()
          const options = {
            name: "lease",
            trip: CircuitBreaker.consecutive(1),
            openFor: 50,
            halfOpen: { probeTimeout: 150 },
            store
          } as const
          const crashed = yield* CircuitBreaker.make(options)
          const other = yield* CircuitBreaker.make(options)
          yield* fail(other)
          yield* Effect.sleep(60)
          const hung = yield* start(crashed)
          assert.strictEqual(opened(yield* succeed(other)).reason, "ProbesBusy")
          yield* Effect.sleep(160)
          const reopened = opened(yield* succeed(other))
          assert.strictEqual(reopened.reason, "Open", "the lease ran out: the circuit opened again")
          assert.isAbove(Duration.toMillis(reopened.retryAfter), 30)
          yield* Deferred.succeed(hung.gate, "late")
          yield* Fiber.join(hung.fiber)
          const info = yield* CircuitBreaker.state(other)
          assert.deepStrictEqual([info.state, info.consecutiveOpenings], ["Open", 2], "the late success did not close it")
        }))

      it.effect("fencing: a call admitted before another instance tripped the circuit reports a failure that changes nothing", () =>
        Effect.gen(function*() {
          const store = yield* freshStore()
          const options = { name: "fenced", trip: CircuitBreaker.consecutive(1), openFor: 50, store } as const
          const a = yield* CircuitBreaker.make(options)
          const b = yield* CircuitBreaker.make(options)
          const early = yield* start(a)
          yield* fail(b) // opens
          yield* Effect.sleep(60)
          yield* succeed(b) // a probe closes it again
          yield* Deferred.fail(early.gate, new Boom())
          yield* Fiber.await(early.fiber)
          assert.strictEqual((yield* CircuitBreaker.state(a)).state, "Closed", "the stale failure did not trip the new closed period")
        }))

      it.effect("a failure rate over a time window, in real time", () =>
        Effect.gen(function*() {
          const b = yield* CircuitBreaker.make({
            name: "rate",
            trip: CircuitBreaker.failureRate({ threshold: 0.5, minimumCalls: 4, window: "400 millis" }),
            openFor: "1 minute",
            store: yield* freshStore()
          })
          yield* fail(b)
          yield* fail(b)
          yield* Effect.sleep(450) // both left the window
          yield* succeed(b)
          yield* succeed(b)
          yield* fail(b)
          assert.strictEqual((yield* CircuitBreaker.state(b)).state, "Closed", "1 failure in 3 calls")
          yield* fail(b)
          assert.strictEqual((yield* CircuitBreaker.state(b)).state, "Open", "2 failures in 4 calls")
        }))
    })

    describe("transitions other processes cause are reported as events", () => {
      it.effect("a trip through another store instance shows on this breaker's events as a remote Transition; this breaker's own are not repeated; other names are not reported", () =>
        Effect.gen(function*() {
          const prefix = `ev${++prefixes}:`
          const here = yield* RedisCircuitBreakerStore.make({ prefix })
          const there = yield* RedisCircuitBreakerStore.make({ prefix }) // another process's store
          const options = { trip: CircuitBreaker.consecutive(1), openFor: "1 minute" } as const
          const mine = yield* CircuitBreaker.make({ name: "pay", ...options, store: here })
          const unrelated = yield* CircuitBreaker.make({ name: "mail", ...options, store: here })
          const theirs = yield* CircuitBreaker.make({ name: "pay", ...options, store: there })
          const seen = yield* Effect.forkChild(Stream.runCollect(Stream.take(CircuitBreaker.events(mine), 4)))
          const unrelatedSeen: Array<CircuitBreaker.Event> = []
          yield* Effect.forkChild(Stream.runForEach(CircuitBreaker.events(unrelated), (e) => Effect.sync(() => void unrelatedSeen.push(e))))
          yield* Effect.sleep(100) // the subscription is made
          const before = Date.now()
          // The other process trips the circuit ...
          yield* fail(theirs)
          yield* Effect.sleep(50)
          // ... this one is rejected, and resets it: its own transition is reported once, not twice ...
          assert.strictEqual(outcomeOf(yield* succeed(mine)), "Open")
          yield* CircuitBreaker.reset(mine)
          // ... and the other process isolates it.
          yield* CircuitBreaker.isolate(theirs)
          const events = Array.from(yield* Fiber.join(seen))
          assert.deepStrictEqual(events.map((e) => [e._tag, "from" in e ? e.from : "", "to" in e ? e.to : "", "remote" in e ? e.remote : undefined]), [
            ["Transition", "Closed", "Open", true],
            ["Rejected", "", "", undefined],
            ["Transition", "Open", "Closed", undefined],
            ["Transition", "Closed", "Isolated", true]
          ])
          const remote = events[0] as CircuitBreaker.Transition
          assert.isAtLeast(remote.at, before - 1000) // the server's clock
          assert.strictEqual(remote.name, "pay")
          // The state this breaker tells without asking the store is the last it heard of.
          const next = yield* Effect.forkChild(Stream.runHead(Stream.filter(CircuitBreaker.events(mine), (e) => e._tag === "Transition")))
          yield* Effect.sleep(20)
          yield* CircuitBreaker.disable(theirs)
          const transition = Option.getOrThrow(yield* Fiber.join(next)) as CircuitBreaker.Transition
          assert.deepStrictEqual([transition.to, transition.remote], ["Disabled", true])
          // Remote transitions are reported, not counted: the process that caused them counts them.
          assert.strictEqual((yield* CircuitBreaker.stats(mine)).transitions, 1)
          assert.deepStrictEqual(unrelatedSeen, [], "a breaker of another name hears nothing")
        }))

      it.effect("transitions: false publishes nothing and listens to nothing", () =>
        Effect.gen(function*() {
          const prefix = `ev${++prefixes}:`
          const here = yield* RedisCircuitBreakerStore.make({ prefix, transitions: false })
          const there = yield* RedisCircuitBreakerStore.make({ prefix })
          const options = { trip: CircuitBreaker.consecutive(1), openFor: "1 minute" } as const
          const quiet = yield* CircuitBreaker.make({ name: "pay", ...options, store: here })
          const loud = yield* CircuitBreaker.make({ name: "pay", ...options, store: there })
          const heard: Array<CircuitBreaker.Event> = []
          const unheard: Array<CircuitBreaker.Event> = []
          yield* Effect.forkChild(Stream.runForEach(CircuitBreaker.events(loud), (e) => Effect.sync(() => void heard.push(e))))
          yield* Effect.forkChild(Stream.runForEach(CircuitBreaker.events(quiet), (e) => Effect.sync(() => void unheard.push(e))))
          yield* Effect.sleep(100)
          yield* fail(quiet) // trips it, published nowhere
          yield* CircuitBreaker.isolate(loud) // published, but the quiet breaker does not listen
          yield* Effect.sleep(200)
          assert.deepStrictEqual(heard.map((e) => e._tag === "Transition" ? `${e.from} -> ${e.to}${e.remote ? " (remote)" : ""}` : e._tag), ["Open -> Isolated"])
          assert.deepStrictEqual(unheard.map((e) => e._tag === "Transition" ? `${e.from} -> ${e.to}${e.remote ? " (remote)" : ""}` : e._tag), ["Closed -> Open", "Recorded"])
        }))
    })
  })

  describe("an outage: the server killed mid-run, then restarted", () => {
    vitest("each onStoreError policy is observed and nothing hangs; after the restart the store decides again", async () => {
      const own = await startRedis()
      try {
        const registry: Metric.MetricRegistry = new Map()
        const program = Effect.gen(function*() {
          const store = yield* RedisCircuitBreakerStore.make({ prefix: "outage:", timeout: "300 millis" })
          const make = (onStoreError: "local" | "fail-open" | "fail-closed") =>
            CircuitBreaker.make({ name: onStoreError, trip: CircuitBreaker.consecutive(2), openFor: "1 minute", store, onStoreError })
          const local = yield* make("local")
          const open = yield* make("fail-open")
          const closed = yield* make("fail-closed")
          const all = [local, open, closed]
          for (const b of all) assert.strictEqual(outcomeOf(yield* succeed(b)), "ran", `${b.name} before the outage`)

          yield* Effect.promise(() => own.stop("SIGKILL"))
          const during: Record<string, Array<string>> = {}
          let longest = 0
          for (const b of all) {
            during[b.name] = []
            for (const ok of [false, false, true, true]) {
              const started = Date.now()
              during[b.name].push(outcomeOf(yield* (ok ? succeed(b) : fail(b))))
              longest = Math.max(longest, Date.now() - started)
            }
          }
          assert.deepStrictEqual(during, {
            // This process's own circuit: two failures in a row trip it.
            local: ["Boom", "Boom", "Open", "Open"],
            "fail-open": ["Boom", "Boom", "ran", "ran"],
            "fail-closed": ["StoreUnavailable", "StoreUnavailable", "StoreUnavailable", "StoreUnavailable"]
          })
          assert.isBelow(longest, 300, "offline commands fail at once, well within the timeout")

          yield* Effect.promise(() => own.restart())
          let back = false
          for (let attempt = 0; attempt < 100 && !back; attempt++) {
            yield* Effect.sleep(50)
            back = outcomeOf(yield* succeed(closed)) === "ran"
          }
          assert.isTrue(back, "fail-closed runs calls again once the store answers")
          const s = yield* CircuitBreaker.stats(closed)
          assert.isAtLeast(s.storeErrors.Unavailable, 1)
          const series = (yield* Metric.snapshot).find((m) =>
            m.id === "bulwark.circuitbreaker.store_errors" && m.attributes?.name === "fail-closed" &&
            m.attributes?.reason === "Unavailable"
          )?.state as { readonly count: number } | undefined
          assert.strictEqual(series?.count, s.storeErrors.Unavailable)
          // The restarted server is empty: the shared circuit starts closed, and local's stand-in is no longer asked.
          assert.strictEqual(outcomeOf(yield* succeed(local)), "ran")
        }).pipe(Effect.scoped, Effect.provide(connect(own.url)), Effect.provideService(Metric.MetricRegistry, registry), quiet)
        await Effect.runPromise(program)
      } finally {
        await own.stop()
      }
    }, 20_000)
  })

  describe("four OS processes on one circuit", () => {
    vitest("a trip is seen by every process; one probe, in one process, closes it for all", async () => {
      const prefix = "fleet:"
      // The trip happens here, once every worker is ready and before they start calling.
      const trip = Effect.gen(function*() {
        const b = yield* CircuitBreaker.make({
          name: "fleet",
          trip: CircuitBreaker.consecutive(3),
          openFor: 600,
          halfOpen: { probes: 1, probeTimeout: "5 seconds" },
          store: yield* RedisCircuitBreakerStore.make({ prefix })
        })
        for (let i = 0; i < 3; i++) yield* fail(b)
        assert.strictEqual((yield* CircuitBreaker.state(b)).state, "Open")
      }).pipe(Effect.scoped, Effect.provide(connect(url)))
      const { reports } = await runWorkers<{ readonly outcomes: ReadonlyArray<string>; readonly transitions: ReadonlyArray<string> }>({
        worker: "breaker.ts",
        count: 4,
        env: { REDIS_URL: url, PREFIX: prefix, OPEN_MS: "600", RUN_MS: "1200" },
        limitMs: 20_000,
        beforeGo: () => Effect.runPromise(trip)
      })
      assert.strictEqual(reports.length, 4)
      for (const r of reports) {
        assert.strictEqual(r.outcomes[0], "Open", "every process sees the trip it did not cause")
        assert.strictEqual(r.outcomes[r.outcomes.length - 1], "ran", "and the circuit closed again for every process")
        assert.notInclude(r.outcomes, "StoreUnavailable")
      }
      const own = reports.flatMap((r) => r.transitions).filter((t) => !t.startsWith("remote "))
      assert.deepStrictEqual(
        own.filter((t) => t === "Open -> HalfOpen" || t === "HalfOpen -> Closed").sort(),
        ["HalfOpen -> Closed", "Open -> HalfOpen"],
        "exactly one probe across the processes"
      )
      // Every process saw the whole story on its events: the trip and the probe of others as remote transitions.
      for (const r of reports) {
        assert.deepStrictEqual(
          r.transitions.map((t) => t.replace("remote ", "")),
          ["Closed -> Open", "Open -> HalfOpen", "HalfOpen -> Closed"],
          JSON.stringify(r.transitions)
        )
        assert.strictEqual(r.transitions[0], "remote Closed -> Open")
      }
      assert.strictEqual(reports.filter((r) => r.transitions[2] === "HalfOpen -> Closed").length, 1, "one process closed it, the others heard")
    }, 30_000)
  })
})
