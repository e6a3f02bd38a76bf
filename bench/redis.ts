/**
 * The Redis suites: decisions of Bulwark's `RateLimiter` and `CircuitBreaker`
 * on `@bulwark/redis` stores, on loopback, against a redis-server that this
 * suite starts itself (on a free port, stopped by its pid; never 6379), side
 * by side with Effect's own `persistence` RateLimiter and CircuitBreaker on
 * their Redis stores, and with the in-memory stores for scale.
 *
 * 1. `redis-ratelimiter`: latency of one decision at a time (median and p99),
 *    throughput with 64 fibers on one connection, round trips per decision.
 * 2. `redis-circuitbreaker`: the same for a guarded call (one round trip to
 *    admit, one to record) and for a rejection by an open circuit.
 *
 * Round trips are counted two ways: `MONITOR` on a sample (every command a
 * client sent, told apart from the commands scripts ran) and `INFO
 * commandstats` over the throughput run (`EVALSHA` calls per decision; no
 * `EVAL` or `SCRIPT LOAD` once warm).
 *
 * Never part of `npm test`. Without redis-server the suites report that and
 * measure nothing. Standalone: `npm run -s build && node --expose-gc
 * bench/run.ts --only=redis-ratelimiter,redis-circuitbreaker`.
 */
import { CircuitBreaker, RateLimiter } from "@bulwark/core"
import { RedisCircuitBreakerStore, RedisRateLimiterStore } from "@bulwark/redis"
import * as NodeRedis from "@effect/platform-node/NodeRedis"
import { type Context, Effect, Exit, Layer, References, Scope } from "effect"
import { CircuitBreaker as EffectCircuitBreaker, RateLimiter as EffectRateLimiter, Redis } from "effect/persistence"
import { type ChildProcess, spawn } from "node:child_process"
import { existsSync } from "node:fs"
import { createConnection, createServer } from "node:net"
import { delimiter, join } from "node:path"
import type { Goal, Row, ScenarioResult, Table } from "./bulkhead.ts"
import { fmt, gc, latency, type Subject } from "./harness.ts"

// -----------------------------------------------------------------------------
// a redis-server of the suite's own
// -----------------------------------------------------------------------------

const redisServerPath = (): string | undefined => {
  if (process.env.REDIS_SERVER !== undefined && existsSync(process.env.REDIS_SERVER)) return process.env.REDIS_SERVER
  const dirs = [...(process.env.PATH ?? "").split(delimiter), "/usr/bin", "/usr/sbin", "/usr/local/bin"]
  return dirs.filter((d) => d.length > 0).map((d) => join(d, "redis-server")).find((p) => existsSync(p))
}

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => (typeof address === "object" && address !== null ? resolve(address.port) : reject(new Error("no port"))))
    })
  })

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Sends raw RESP commands on a connection of its own and collects what comes back until `until` says so. */
const raw = (port: number, command: string, until: (output: string) => boolean, timeoutMs = 1000): Promise<string> =>
  new Promise((resolve) => {
    const socket = createConnection({ host: "127.0.0.1", port })
    let output = ""
    const done = () => {
      socket.destroy()
      resolve(output)
    }
    socket.setTimeout(timeoutMs, done)
    socket.once("error", done)
    socket.once("connect", () => socket.write(command))
    socket.on("data", (chunk) => {
      output += chunk
      if (until(output)) done()
    })
  })

interface Server {
  readonly port: number
  readonly url: string
  readonly stop: () => Promise<void>
}

const running = new Set<ChildProcess>()
process.once("exit", () => {
  for (const child of running) if (child.pid !== undefined) process.kill(child.pid, "SIGKILL")
})

const startRedis = async (binary: string): Promise<Server> => {
  const port = await freePort()
  const child = spawn(binary, ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
    stdio: "ignore"
  })
  running.add(child)
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
  for (let i = 0; i < 250; i++) {
    if ((await raw(port, "PING\r\n", (o) => o.includes("\r\n"), 200)).startsWith("+PONG")) {
      return {
        port,
        url: `redis://127.0.0.1:${port}`,
        stop: async () => {
          running.delete(child)
          if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, "SIGTERM")
          await exited
        }
      }
    }
    await sleep(20)
  }
  if (child.pid !== undefined) process.kill(child.pid, "SIGKILL")
  throw new Error(`redis-server did not answer on port ${port}`)
}

/** Commands the clients sent while `during` ran (MONITOR), and how many ran inside scripts. */
const monitored = async (port: number, during: () => Promise<void>) => {
  const socket = createConnection({ host: "127.0.0.1", port })
  let output = ""
  socket.on("data", (chunk) => (output += chunk))
  await new Promise<void>((resolve) => socket.once("connect", () => resolve()))
  socket.write("MONITOR\r\n")
  while (!output.startsWith("+OK")) await sleep(2)
  await during()
  await sleep(100)
  socket.destroy()
  const clients = new Map<string, number>()
  let scripts = 0
  for (const line of output.split("\r\n")) {
    const match = /^\+[\d.]+ \[\d+ ([^\]]+)\] "([^"]+)"/.exec(line)
    if (match === null) continue
    if (match[1] === "lua") scripts++
    else clients.set(match[2].toUpperCase(), (clients.get(match[2].toUpperCase()) ?? 0) + 1)
  }
  return { clients, scripts }
}

/** `INFO commandstats` as calls per command. */
const commandstats = async (port: number): Promise<Map<string, number>> => {
  const output = await raw(port, "INFO commandstats\r\n", (o) => {
    const header = /^\$(\d+)\r\n/.exec(o)
    return header !== null && o.length >= header[0].length + Number(header[1])
  })
  return new Map([...output.matchAll(/cmdstat_([^:]+):calls=(\d+)/g)].map(([, name, calls]) => [name, Number(calls)]))
}

const delta = (before: Map<string, number>, after: Map<string, number>, command: string) =>
  (after.get(command) ?? 0) - (before.get(command) ?? 0)

// -----------------------------------------------------------------------------
// measuring
// -----------------------------------------------------------------------------

/** A decision to time: one round of `run` is one decision (or one guarded call). */
const LATENCY_ROUNDS = 5
const LATENCY_CALLS = 1_000
const THROUGHPUT_CALLS = 20_000
const FIBERS = 64

/**
 * Throughput: `FIBERS` fibers share one connection (node-redis pipelines
 * their commands) until `THROUGHPUT_CALLS` decisions are done. The figure is
 * wall time per decision in microseconds; decisions per second go in the
 * extra column. Round trips come from `INFO commandstats`.
 */
const throughput = async (
  subjects: ReadonlyArray<Subject>,
  context: Context.Context<never>,
  port: number
): Promise<Array<Row & { readonly roundTrips: number }>> => {
  const rows: Array<Row & { readonly roundTrips: number }> = []
  for (const s of subjects) {
    gc()
    const before = await commandstats(port)
    const start = performance.now()
    let left = THROUGHPUT_CALLS
    await Effect.runPromise(
      Effect.all(
        Array.from({ length: FIBERS }, () =>
          Effect.gen(function*() {
            while (left > 0) {
              left--
              yield* s.run
            }
          })),
        { concurrency: "unbounded", discard: true }
      ).pipe(Effect.provideContext(context))
    )
    const seconds = (performance.now() - start) / 1000
    const after = await commandstats(port)
    const trips = delta(before, after, "evalsha") + delta(before, after, "eval") + delta(before, after, "script|load") +
      delta(before, after, "ping")
    const perCall = (seconds * 1e6) / THROUGHPUT_CALLS
    rows.push({
      peer: s.peer,
      variant: s.variant,
      value: perCall,
      min: perCall,
      max: perCall,
      rounds: 1,
      extra: THROUGHPUT_CALLS / seconds,
      roundTrips: trips / THROUGHPUT_CALLS,
      ...(s.reference === true ? { reference: true } : {})
    })
  }
  return rows
}

// -----------------------------------------------------------------------------
// the suites
// -----------------------------------------------------------------------------

/** Far above what a run takes: every rate limiter decision admits. */
const HUGE = 1e12

const pingScript = Redis.script(() => [], { numberOfKeys: 0, lua: "return 1" }).withReturnType<number>()

/** A redis-server, a connection to it and a scope for the primitives; `undefined` without redis-server. */
const setUp = async () => {
  const binary = redisServerPath()
  if (binary === undefined) return undefined
  const server = await startRedis(binary)
  const scope = Scope.makeUnsafe()
  const context = await Effect.runPromise(
    Layer.buildWithScope(NodeRedis.layer({ url: server.url, disableOfflineQueue: true }), scope).pipe(
      Effect.provideService(References.MinimumLogLevel, "Error")
    )
  )
  const inScope = <A, E>(effect: Effect.Effect<A, E, Redis.Redis | Scope.Scope>): Promise<A> =>
    Effect.runPromise(effect.pipe(Scope.provide(scope), Effect.provideContext(context)))
  return {
    server,
    context: context as Context.Context<never>,
    inScope,
    close: async () => {
      await Effect.runPromise(Scope.close(scope, Exit.void))
      await server.stop()
    }
  }
}

const skipped = (id: string, title: string, started: number): ScenarioResult => ({
  id,
  title,
  tables: [],
  goals: [{ text: "redis-server found", met: false, detail: "no redis-server on PATH (or REDIS_SERVER): nothing measured" }],
  seconds: (performance.now() - started) / 1000
})

const roundTripGoal = (what: string, measured: number, expected: number): Goal => ({
  text: `${what}: ${expected} round trip${expected === 1 ? "" : "s"}`,
  met: Math.abs(measured - expected) < 0.005,
  detail: `${fmt(measured, 3)} measured`
})

export const rateLimiter = async (): Promise<ScenarioResult> => {
  const started = performance.now()
  const env = await setUp()
  if (env === undefined) return skipped("redis-ratelimiter", "Redis: rate limiter decisions", started)
  try {
    const store = await env.inScope(RedisRateLimiterStore.make({ prefix: "bench:" }))
    const make = (name: string, algorithm: RateLimiter.Algorithm) =>
      env.inScope(RateLimiter.make({ name, algorithm, store, onStoreError: "fail-closed" }))
    const bucket = await make("bucket", RateLimiter.tokenBucket({ capacity: HUGE, refill: HUGE, per: "1 second" }))
    const gcra = await make("gcra", RateLimiter.gcra({ rate: HUGE, per: "1 second", burst: HUGE }))
    const fixed = await make("fixed", RateLimiter.fixedWindow({ limit: HUGE, window: "1 hour" }))
    const sliding = await make("sliding", RateLimiter.slidingWindow({ limit: HUGE, window: "100 millis" }))
    const memory = await env.inScope(
      RateLimiter.make({ name: "memory", algorithm: RateLimiter.tokenBucket({ capacity: HUGE, refill: HUGE, per: "1 second" }) })
    )
    const effectLimiter = await env.inScope(
      EffectRateLimiter.make.pipe(Effect.provide(EffectRateLimiter.layerStoreRedis({ prefix: "bench-effect:" })))
    )
    const redis = await env.inScope(Effect.map(Redis.Redis, (service) => service))
    const ping = redis.eval(pingScript)
    const guard = (l: RateLimiter.RateLimiter) => Effect.void.pipe(RateLimiter.guard(l))
    const subjects: Array<Subject> = [
      { peer: "Bulwark", variant: "token bucket on Redis: `guard(Effect.void)`", run: guard(bucket) },
      { peer: "Bulwark", variant: "GCRA on Redis", run: guard(gcra) },
      { peer: "Bulwark", variant: "fixed window on Redis", run: guard(fixed) },
      { peer: "Bulwark", variant: "sliding window (exact log) on Redis, 100 ms window", run: guard(sliding) },
      {
        peer: "Effect RateLimiter",
        variant: "`consume` token-bucket on `layerStoreRedis`",
        run: effectLimiter.consume({ key: "bench", limit: 1_000_000_000, window: "1 hour", algorithm: "token-bucket" })
      },
      { peer: "(reference)", variant: "EVALSHA of `return 1` (the round trip alone)", reference: true, run: ping() },
      { peer: "(reference)", variant: "Bulwark token bucket, in-memory store", reference: true, run: guard(memory) }
    ]
    const latencyRows = await latency(subjects, { rounds: LATENCY_ROUNDS, calls: LATENCY_CALLS, context: env.context })
    const throughputRows = await throughput(subjects.slice(0, 5), env.context, env.server.port)
    // Round trips, exactly: every command the client sent for 500 decisions.
    const sample = await monitored(env.server.port, () =>
      Effect.runPromise(Effect.gen(function*() {
        for (let i = 0; i < 500; i++) yield* guard(bucket)
      })))
    const sampleTrips = [...sample.clients.values()].reduce((a, b) => a + b, 0) / 500
    const bulwarkTrips = throughputRows.slice(0, 4).map((r) => r.roundTrips)
    const tables: Array<Table> = [
      {
        id: "redis-ratelimiter-latency",
        title: `One decision at a time, one fiber, loopback (${LATENCY_ROUNDS} x ${LATENCY_CALLS.toLocaleString("en-US")} decisions each)`,
        unit: "µs/decision",
        base: 0,
        rows: latencyRows,
        extraHeader: "p99 (µs)",
        notes: [
          "Every decision admits (limits far above the run). The round-trip reference is the floor: a decision costs one of them plus the script.",
          `MONITOR over 500 token bucket decisions: ${[...sample.clients].map(([c, n]) => `${n} ${c}`).join(", ")} from the client (${
            fmt(sampleTrips, 2)
          } per decision), ${sample.scripts} commands run inside the script.`
        ]
      },
      {
        id: "redis-ratelimiter-throughput",
        title: `${THROUGHPUT_CALLS.toLocaleString("en-US")} decisions by ${FIBERS} fibers on one connection (pipelined)`,
        unit: "µs of wall time/decision",
        base: 0,
        rows: throughputRows,
        extraHeader: "decisions/s",
        notes: [
          `Round trips per decision (INFO commandstats: EVALSHA, EVAL, SCRIPT LOAD): ${
            throughputRows.map((r) => `${r.variant.split(" on ")[0].replace(/`/g, "")} ${fmt(r.roundTrips, 3)}`).join("; ")
          }.`
        ]
      }
    ]
    const goals: Array<Goal> = [
      roundTripGoal("Rate limiter decision on Redis (every algorithm, commandstats)", Math.max(...bulwarkTrips), 1),
      roundTripGoal("Rate limiter decision on Redis (MONITOR, every client command)", sampleTrips, 1),
      {
        text: "Decision latency on loopback within 3x the bare round trip",
        met: latencyRows[0].value <= 3 * latencyRows[5].value,
        detail: `token bucket ${fmt(latencyRows[0].value)} µs, round trip ${fmt(latencyRows[5].value)} µs (median)`
      }
    ]
    return { id: "redis-ratelimiter", title: "Redis: rate limiter decisions", tables, goals, seconds: (performance.now() - started) / 1000 }
  } finally {
    await env.close()
  }
}

export const circuitBreaker = async (): Promise<ScenarioResult> => {
  const started = performance.now()
  const env = await setUp()
  if (env === undefined) return skipped("redis-circuitbreaker", "Redis: circuit breaker calls", started)
  try {
    const store = await env.inScope(RedisCircuitBreakerStore.make({ prefix: "bench:" }))
    const make = (name: string, trip: CircuitBreaker.TripPolicy) =>
      env.inScope(CircuitBreaker.make({ name, trip, openFor: "1 hour", store, onStoreError: "fail-closed" }))
    const closed = await make("closed", CircuitBreaker.consecutive(5))
    const rate = await make("rate", CircuitBreaker.failureRate({ threshold: 0.5, minimumCalls: 20, window: "1 minute" }))
    const open = await make("open", CircuitBreaker.consecutive(1))
    await Effect.runPromise(Effect.exit(Effect.fail("down").pipe(CircuitBreaker.guard(open))))
    const memory = await env.inScope(CircuitBreaker.make({ name: "memory", trip: CircuitBreaker.consecutive(5), openFor: "1 hour" }))
    const effectBreaker = await env.inScope(
      EffectCircuitBreaker.make({ tripPolicy: EffectCircuitBreaker.consecutive(5), openDuration: "1 hour" }).pipe(
        Effect.provide(EffectCircuitBreaker.layerStoreRedis({ prefix: "bench-effect:" }))
      )
    )
    const redis = await env.inScope(Effect.map(Redis.Redis, (service) => service))
    const ping = redis.eval(pingScript)
    const rejected = Effect.ignore(Effect.void.pipe(CircuitBreaker.guard(open)))
    const subjects: Array<Subject> = [
      { peer: "Bulwark", variant: "closed, consecutive(5): `guard(Effect.void)` (admit + record)", run: Effect.void.pipe(CircuitBreaker.guard(closed)) },
      { peer: "Bulwark", variant: "closed, failure rate over 1 minute (admit + record)", run: Effect.void.pipe(CircuitBreaker.guard(rate)) },
      { peer: "Bulwark", variant: "open: the call rejected (admit only)", run: rejected },
      { peer: "Effect CircuitBreaker", variant: "`execute` closed, consecutive(5), `layerStoreRedis`", run: Effect.void.pipe(effectBreaker.execute({ key: "bench" })) },
      { peer: "(reference)", variant: "EVALSHA of `return 1` (the round trip alone)", reference: true, run: ping() },
      { peer: "(reference)", variant: "Bulwark closed, in-memory store", reference: true, run: Effect.void.pipe(CircuitBreaker.guard(memory)) }
    ]
    const latencyRows = await latency(subjects, { rounds: LATENCY_ROUNDS, calls: LATENCY_CALLS, context: env.context })
    const throughputRows = await throughput(subjects.slice(0, 4), env.context, env.server.port)
    const sample = await monitored(env.server.port, () =>
      Effect.runPromise(Effect.gen(function*() {
        for (let i = 0; i < 250; i++) yield* Effect.void.pipe(CircuitBreaker.guard(closed))
        for (let i = 0; i < 250; i++) yield* rejected
      })))
    const sampleTrips = [...sample.clients.values()].reduce((a, b) => a + b, 0)
    const tables: Array<Table> = [
      {
        id: "redis-circuitbreaker-latency",
        title: `One call at a time, one fiber, loopback (${LATENCY_ROUNDS} x ${LATENCY_CALLS.toLocaleString("en-US")} calls each)`,
        unit: "µs/call",
        base: 0,
        rows: latencyRows,
        extraHeader: "p99 (µs)",
        notes: [
          "A call that runs is two decisions, each one round trip: admit before it, record after it. A rejection is one.",
          `MONITOR over 250 guarded calls and 250 rejections: ${[...sample.clients].map(([c, n]) => `${n} ${c}`).join(", ")} from the client, ${sample.scripts} commands run inside the scripts.`
        ]
      },
      {
        id: "redis-circuitbreaker-throughput",
        title: `${THROUGHPUT_CALLS.toLocaleString("en-US")} calls by ${FIBERS} fibers on one connection (pipelined)`,
        unit: "µs of wall time/call",
        base: 0,
        rows: throughputRows,
        extraHeader: "calls/s",
        notes: [
          `Round trips per call (INFO commandstats): ${throughputRows.map((r) => `${r.peer} ${r.variant.split(":")[0].replace(/`/g, "")} ${fmt(r.roundTrips, 3)}`).join("; ")}.`
        ]
      }
    ]
    const goals: Array<Goal> = [
      roundTripGoal("Guarded call on Redis (admit + record, commandstats)", throughputRows[0].roundTrips, 2),
      roundTripGoal("Rejection by an open circuit on Redis (commandstats)", throughputRows[2].roundTrips, 1),
      roundTripGoal("250 guarded calls + 250 rejections (MONITOR, every client command, per call)", sampleTrips / 250, 3)
    ]
    return { id: "redis-circuitbreaker", title: "Redis: circuit breaker calls", tables, goals, seconds: (performance.now() - started) / 1000 }
  } finally {
    await env.close()
  }
}

export const suites: ReadonlyArray<{ readonly name: string; readonly run: () => Promise<ScenarioResult> }> = [
  { name: "redis-ratelimiter", run: rateLimiter },
  { name: "redis-circuitbreaker", run: circuitBreaker }
]
